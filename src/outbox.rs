//! One peer's queue of bytes to send, between the router and that peer's
//! writer thread.
//!
//! The router never blocks on it: `push` always succeeds, and reports when
//! the queue has grown past its high-water mark. The router then stops taking
//! new stdin lines until the writer has drained the queue below the low-water
//! mark and said so with [`Event::Drained`]. That is the whole flow control:
//! stdin slows to the pace of the slowest live peer, and memory per peer stays
//! near the high-water mark. A peer that drains nothing at all is dropped by
//! its writer's send timeout (`--stall-timeout`).

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Sender;
use parking_lot::{Condvar, Mutex};

use crate::peer::ConnId;
use crate::router::Event;

/// Queue size at which the router stops reading stdin for everyone.
pub const HIGH_WATER: usize = 1024 * 1024;
/// Queue size at which it starts again.
pub const LOW_WATER: usize = 256 * 1024;

/// Frames as encoded bytes, shared by every outbox they are queued in.
pub type Bytes = Arc<Vec<u8>>;

/// How a connection should end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Close {
    /// Send what is queued, then BYE with this reason, then FIN.
    Graceful(String),
    /// Drop what is queued: the connection is already gone or broken.
    Abort,
}

#[derive(Clone)]
pub struct Outbox {
    shared: Arc<Shared>,
}

struct Shared {
    conn: ConnId,
    state: Mutex<State>,
    wake: Condvar,
    events: Sender<Event>,
}

#[derive(Default)]
struct State {
    queue: Vec<Bytes>,
    queued_bytes: usize,
    /// Over the high-water mark, and the router has been told.
    over: bool,
    /// A PONG to send, with the PING's token.
    pong: Option<u64>,
    close: Option<Close>,
}

/// What the writer should do next.
pub struct Work {
    pub chunks: Vec<Bytes>,
    pub pong: Option<u64>,
    /// Set once the queue has been handed out whole: this is the last work.
    pub close: Option<Close>,
    /// Nothing was queued until the deadline: time for a keepalive PING.
    pub idle: bool,
}

impl Outbox {
    pub fn new(conn: ConnId, events: Sender<Event>) -> Self {
        Outbox {
            shared: Arc::new(Shared {
                conn,
                state: Mutex::new(State::default()),
                wake: Condvar::new(),
                events,
            }),
        }
    }

    /// Queues `chunk`; returns true if the queue is now over the high-water
    /// mark (and the writer will send [`Event::Drained`] when it is not).
    pub fn push(&self, chunk: Bytes) -> bool {
        let mut state = self.shared.state.lock();
        if state.close.is_some() {
            return false;
        }
        state.queued_bytes += chunk.len();
        state.queue.push(chunk);
        if state.queued_bytes > HIGH_WATER {
            state.over = true;
        }
        let over = state.over;
        drop(state);
        self.shared.wake.notify_one();
        over
    }

    pub fn owe_pong(&self, token: u64) {
        self.shared.state.lock().pong = Some(token);
        self.shared.wake.notify_one();
    }

    /// Asks the writer to finish. An abort overrides a graceful close.
    pub fn close(&self, how: Close) {
        let mut state = self.shared.state.lock();
        let stronger = match (&state.close, &how) {
            (None, _) => true,
            (Some(Close::Graceful(_)), Close::Abort) => true,
            (Some(_), _) => false,
        };
        if stronger {
            if how == Close::Abort {
                state.queue.clear();
                state.queued_bytes = 0;
            }
            state.close = Some(how);
        }
        drop(state);
        self.shared.wake.notify_one();
    }

    /// Writer side: waits for something to do, or until `idle_at`.
    pub fn wait(&self, idle_at: Instant) -> Work {
        let mut state = self.shared.state.lock();
        while state.queue.is_empty() && state.pong.is_none() && state.close.is_none() {
            if self.shared.wake.wait_until(&mut state, idle_at).timed_out() {
                break;
            }
        }
        let chunks = std::mem::take(&mut state.queue);
        Work {
            idle: chunks.is_empty() && state.pong.is_none() && state.close.is_none(),
            pong: state.pong.take(),
            close: state.close.clone(),
            chunks,
        }
    }

    /// Writer side: `n` queued bytes have been written.
    pub fn written(&self, n: usize) {
        let mut state = self.shared.state.lock();
        state.queued_bytes = state.queued_bytes.saturating_sub(n);
        if state.over && state.queued_bytes <= LOW_WATER {
            state.over = false;
            drop(state);
            // The router may already be gone at shutdown; nothing to tell then.
            let _ = self.shared.events.send(Event::Drained {
                conn: self.shared.conn,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::unbounded;
    use std::time::Duration;

    #[test]
    fn crossing_the_marks_is_reported_once_each_way() {
        let (tx, rx) = unbounded();
        let outbox = Outbox::new(7, tx);
        let chunk: Bytes = Arc::new(vec![0; HIGH_WATER / 2 + 1]);
        assert!(!outbox.push(chunk.clone()));
        assert!(outbox.push(chunk.clone()));
        let work = outbox.wait(Instant::now());
        assert_eq!(work.chunks.len(), 2);
        outbox.written(chunk.len());
        assert!(rx.try_recv().is_err(), "still over the low-water mark");
        outbox.written(chunk.len());
        assert!(matches!(rx.try_recv(), Ok(Event::Drained { conn: 7 })));
        outbox.written(0);
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn an_idle_wait_ends_at_the_deadline() {
        let (tx, _rx) = unbounded();
        let outbox = Outbox::new(1, tx);
        let work = outbox.wait(Instant::now() + Duration::from_millis(20));
        assert!(work.idle && work.chunks.is_empty() && work.close.is_none());
    }

    #[test]
    fn abort_overrides_graceful_and_drops_the_queue() {
        let (tx, _rx) = unbounded();
        let outbox = Outbox::new(1, tx);
        outbox.push(Arc::new(vec![1; 10]));
        outbox.close(Close::Graceful("bye".into()));
        outbox.close(Close::Abort);
        outbox.close(Close::Graceful("again".into()));
        let work = outbox.wait(Instant::now());
        assert!(work.chunks.is_empty());
        assert_eq!(work.close, Some(Close::Abort));
        assert!(
            !outbox.push(Arc::new(vec![1])),
            "closed outboxes take nothing"
        );
        assert_eq!(outbox.shared.state.lock().queued_bytes, 0);
    }
}
