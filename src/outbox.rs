//! One peer's queue of bytes to send, between the router and that peer's
//! writer thread.
//!
//! The router never blocks on it: `push` always succeeds, and reports when
//! the queue has grown past its high-water mark. The router then stops taking
//! new stdin lines until the writer has drained the queue below the low-water
//! mark and said so (the `drained` callback, which the connection turns into
//! a router event). That is the whole flow control:
//! stdin slows to the pace of the slowest live peer, and memory per peer stays
//! near the high-water mark. A peer that drains nothing at all is dropped by
//! its writer's stall rule (`--stall-timeout`).
//!
//! The outbox also keeps the peer's delivery ledger (messages queued, written
//! to the socket, dropped), which the exit summary and `--stats` read, and it
//! can be *held*: a connection that replaces another one to the same node
//! sends no message until the old one has finished, so that the peer gets
//! every message in order.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

/// Queue size at which the router stops reading stdin for everyone.
pub const HIGH_WATER: usize = 1024 * 1024;
/// Queue size at which it starts again.
pub const LOW_WATER: usize = 256 * 1024;
/// PINGs remembered while their PONGs are outstanding.
const PINGS_KEPT: usize = 8;

/// What the outbox calls when it drains below the low-water mark.
type Drained = Box<dyn Fn() + Send + Sync>;

/// Frames as encoded bytes, shared by every outbox they are queued in.
pub type Bytes = Arc<Vec<u8>>;

/// Encoded message frames and how many messages they hold.
#[derive(Clone)]
pub struct Batch {
    pub bytes: Bytes,
    pub msgs: u64,
}

/// How a connection should end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Close {
    /// Send what is queued, then BYE with this reason, then FIN; then wait
    /// a while (2 x keepalive) for the peer's FIN.
    Graceful(String),
    /// Refuse the peer: BYE with this reason instead of ACCEPT, then FIN;
    /// wait at most a second for the peer's FIN.
    Refuse(String),
    /// Drop what is queued: the connection is already gone or broken.
    Abort,
}

/// A peer's delivery ledger, in messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ledger {
    /// Handed to this outbox.
    pub queued: u64,
    /// Written to the socket in full.
    pub written: u64,
    pub written_bytes: u64,
    /// Queued, then dropped unwritten (the connection broke, or was aborted).
    pub dropped: u64,
}

impl Ledger {
    /// Queued but neither written nor dropped yet.
    pub fn pending(&self) -> u64 {
        self.queued - self.written - self.dropped
    }
}

#[derive(Clone)]
pub struct Outbox {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// Called when the queue drops back under the low-water mark.
    drained: Drained,
}

#[derive(Default)]
struct State {
    queue: Vec<Batch>,
    queued_bytes: usize,
    /// Over the high-water mark, and the router has been told.
    over: bool,
    /// An ACCEPT to send before anything else.
    accept: bool,
    /// A PONG to send, with the PING's token.
    pong: Option<u64>,
    close: Option<Close>,
    /// Messages wait until the connection this one replaces is done.
    held: bool,
    /// Batches the writer has taken and not yet reported written.
    in_flight: u64,
    ledger: Ledger,
    /// PINGs awaiting their PONG: token, and messages written before it.
    pings: VecDeque<(u64, u64)>,
    /// Messages the peer has provably read: its PONG answered a PING sent
    /// after them.
    confirmed: u64,
    /// The peer has said BYE, or its side of the connection is closed: it
    /// sends no more PINGs.
    peer_done: bool,
}

impl State {
    fn has_work(&self) -> bool {
        self.accept
            || self.pong.is_some()
            || self.close == Some(Close::Abort)
            || (!self.held && (!self.queue.is_empty() || self.close.is_some()))
    }
}

/// What a writer that has sent its BYE does next.
#[derive(Debug, PartialEq, Eq)]
pub enum AfterBye {
    /// Answer a PING the peer sent before its own BYE.
    Pong(u64),
    /// The peer has said BYE or closed: send FIN.
    PeerDone,
    /// The connection is gone.
    Abort,
    /// The peer neither said BYE nor closed in time.
    TimedOut,
}

/// What the writer should do next.
#[derive(Default)]
pub struct Work {
    pub batches: Vec<Batch>,
    pub accept: bool,
    pub pong: Option<u64>,
    /// Set once the queue has been handed out whole: this is the last work.
    pub close: Option<Close>,
}

impl Outbox {
    pub fn new(drained: impl Fn() + Send + Sync + 'static) -> Self {
        Outbox {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                wake: Condvar::new(),
                drained: Box::new(drained),
            }),
        }
    }

    /// Queues `batch`; returns true if the queue is now over the high-water
    /// mark (and the writer will call `drained` when it is not).
    /// A closing outbox takes nothing and says so with `None`.
    pub fn push(&self, batch: Batch) -> Option<bool> {
        let mut state = self.shared.state.lock();
        if state.close.is_some() {
            return None;
        }
        state.queued_bytes += batch.bytes.len();
        state.ledger.queued += batch.msgs;
        state.queue.push(batch);
        if state.queued_bytes > HIGH_WATER {
            state.over = true;
        }
        let over = state.over;
        drop(state);
        self.shared.wake.notify_one();
        Some(over)
    }

    /// Admits the peer: ACCEPT goes out first, whatever else is queued or held.
    pub fn accept(&self) {
        self.shared.state.lock().accept = true;
        self.shared.wake.notify_one();
    }

    pub fn owe_pong(&self, token: u64) {
        self.shared.state.lock().pong = Some(token);
        self.shared.wake.notify_one();
    }

    /// Holds messages back (they queue, nothing is written) until `release`.
    pub fn hold(&self) {
        self.shared.state.lock().held = true;
    }

    pub fn release(&self) {
        self.shared.state.lock().held = false;
        self.shared.wake.notify_one();
    }

    /// Asks the writer to finish. An abort overrides a graceful close.
    pub fn close(&self, how: Close) {
        let mut state = self.shared.state.lock();
        let stronger = match (&state.close, &how) {
            (None, _) => true,
            (Some(Close::Graceful(_) | Close::Refuse(_)), Close::Abort) => true,
            (Some(_), _) => false,
        };
        if stronger {
            if how == Close::Abort {
                let dropped: u64 = state.queue.drain(..).map(|b| b.msgs).sum();
                state.ledger.dropped += dropped + std::mem::take(&mut state.in_flight);
                state.queued_bytes = 0;
            }
            state.close = Some(how);
        }
        drop(state);
        self.shared.wake.notify_one();
    }

    /// The ledger so far, and the bytes still queued.
    pub fn ledger(&self) -> (Ledger, usize) {
        let state = self.shared.state.lock();
        (state.ledger, state.queued_bytes)
    }

    /// Writer side: waits for something to do, or until `until`; `None`
    /// when the time came first.
    pub fn wait(&self, until: Instant) -> Option<Work> {
        let mut state = self.shared.state.lock();
        while !state.has_work() {
            if self.shared.wake.wait_until(&mut state, until).timed_out() {
                return None;
            }
        }
        // Held: no message and no goodbye yet (an abort goes through).
        let (batches, close) = if state.held && state.close != Some(Close::Abort) {
            (Vec::new(), None)
        } else {
            (std::mem::take(&mut state.queue), state.close.clone())
        };
        state.in_flight += batches.iter().map(|b| b.msgs).sum::<u64>();
        Some(Work {
            accept: std::mem::take(&mut state.accept),
            pong: state.pong.take(),
            close,
            batches,
        })
    }

    /// Reader side: the peer has said BYE, or closed its side.
    pub fn peer_done(&self) {
        self.shared.state.lock().peer_done = true;
        self.shared.wake.notify_one();
    }

    /// Writer side, after its BYE: waits for a PING to answer, the peer's
    /// own goodbye, or `until`.
    pub fn after_bye(&self, until: Instant) -> AfterBye {
        let mut state = self.shared.state.lock();
        loop {
            if state.close == Some(Close::Abort) {
                return AfterBye::Abort;
            }
            if let Some(token) = state.pong.take() {
                return AfterBye::Pong(token);
            }
            if state.peer_done {
                return AfterBye::PeerDone;
            }
            if self.shared.wake.wait_until(&mut state, until).timed_out() {
                return AfterBye::TimedOut;
            }
        }
    }

    /// Writer side: a PING with `token` went out after every message
    /// written so far.
    pub fn pinged(&self, token: u64) {
        let mut state = self.shared.state.lock();
        if state.pings.len() == PINGS_KEPT {
            state.pings.pop_front();
        }
        let written = state.ledger.written;
        state.pings.push_back((token, written));
    }

    /// Reader side: the peer answered the PING with `token`, so it has read
    /// every message written before that PING.
    pub fn ponged(&self, token: u64) {
        let mut state = self.shared.state.lock();
        if let Some(at) = state.pings.iter().position(|&(t, _)| t == token) {
            let (_, written) = state.pings[at];
            state.confirmed = state.confirmed.max(written);
            state.pings.drain(..=at);
        }
    }

    /// Whether a PING is still waiting for its PONG.
    pub fn awaiting_pong(&self) -> bool {
        !self.shared.state.lock().pings.is_empty()
    }

    /// Messages the peer has confirmed reading.
    pub fn confirmed(&self) -> u64 {
        self.shared.state.lock().confirmed
    }

    /// Writer side: these batches have been written in full.
    pub fn written(&self, batches: &[Batch]) {
        let msgs: u64 = batches.iter().map(|b| b.msgs).sum();
        let bytes: usize = batches.iter().map(|b| b.bytes.len()).sum();
        let mut state = self.shared.state.lock();
        if state.close == Some(Close::Abort) && state.in_flight == 0 {
            // An abort already counted these as dropped.
            return;
        }
        state.in_flight = state.in_flight.saturating_sub(msgs);
        state.ledger.written += msgs;
        state.ledger.written_bytes += bytes as u64;
        state.queued_bytes = state.queued_bytes.saturating_sub(bytes);
        if state.over && state.queued_bytes <= LOW_WATER {
            state.over = false;
            drop(state);
            (self.shared.drained)();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::unbounded;
    use std::time::Duration;

    fn batch(bytes: usize, msgs: u64) -> Batch {
        Batch {
            bytes: Arc::new(vec![0; bytes]),
            msgs,
        }
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_millis(20)
    }

    /// An outbox whose router is not listening.
    fn outbox() -> Outbox {
        Outbox::new(|| {})
    }

    #[test]
    fn crossing_the_marks_is_reported_once_each_way() {
        let (tx, rx) = unbounded();
        let outbox = Outbox::new(move || tx.send(7).unwrap());
        let half = batch(HIGH_WATER / 2 + 1, 3);
        assert_eq!(outbox.push(half.clone()), Some(false));
        assert_eq!(outbox.push(half.clone()), Some(true));
        let work = outbox.wait(soon()).unwrap();
        assert_eq!(work.batches.len(), 2);
        outbox.written(&work.batches[..1]);
        assert!(rx.try_recv().is_err(), "still over the low-water mark");
        outbox.written(&work.batches[1..]);
        assert!(matches!(rx.try_recv(), Ok(7)));
        outbox.written(&[]);
        assert!(rx.try_recv().is_err());
        let (ledger, queued) = outbox.ledger();
        assert_eq!((ledger.queued, ledger.written, ledger.dropped), (6, 6, 0));
        assert_eq!(queued, 0);
    }

    #[test]
    fn an_idle_wait_ends_at_the_deadline() {
        let outbox = outbox();
        assert!(outbox.wait(soon()).is_none());
    }

    #[test]
    fn abort_overrides_graceful_and_counts_what_was_never_written() {
        let outbox = outbox();
        outbox.push(batch(10, 2));
        let in_flight = outbox.wait(soon()).unwrap();
        assert_eq!(in_flight.batches.len(), 1);
        outbox.push(batch(10, 5));
        outbox.close(Close::Graceful("bye".into()));
        outbox.close(Close::Abort);
        outbox.close(Close::Graceful("again".into()));
        let work = outbox.wait(soon()).unwrap();
        assert!(work.batches.is_empty());
        assert_eq!(work.close, Some(Close::Abort));
        assert_eq!(
            outbox.push(batch(1, 1)),
            None,
            "closed outboxes take nothing"
        );
        let (ledger, queued) = outbox.ledger();
        assert_eq!((ledger.queued, ledger.written, ledger.dropped), (7, 0, 7));
        assert_eq!((ledger.pending(), queued), (0, 0));
        // A write that finished after the abort is not counted twice.
        outbox.written(&in_flight.batches);
        assert_eq!(outbox.ledger().0.written + outbox.ledger().0.dropped, 7);
    }

    #[test]
    fn a_held_outbox_sends_accept_and_pongs_but_no_message_until_released() {
        let outbox = outbox();
        outbox.hold();
        outbox.push(batch(10, 1));
        outbox.accept();
        outbox.close(Close::Graceful("bye".into()));
        let work = outbox.wait(soon()).unwrap();
        assert!(work.accept && work.batches.is_empty() && work.close.is_none());
        assert!(outbox.wait(soon()).is_none(), "held: nothing to do");
        outbox.owe_pong(9);
        let work = outbox.wait(soon()).unwrap();
        assert_eq!((work.pong, work.batches.len()), (Some(9), 0));
        outbox.release();
        let work = outbox.wait(soon()).unwrap();
        assert_eq!(work.batches.len(), 1);
        assert_eq!(work.close, Some(Close::Graceful("bye".into())));
    }

    #[test]
    fn a_pong_confirms_what_was_written_before_its_ping() {
        let outbox = outbox();
        outbox.push(batch(10, 3));
        let work = outbox.wait(soon()).unwrap();
        outbox.written(&work.batches);
        outbox.pinged(100);
        outbox.push(batch(10, 2));
        let work = outbox.wait(soon()).unwrap();
        outbox.written(&work.batches);
        outbox.pinged(200);
        assert!(outbox.awaiting_pong());
        outbox.ponged(999);
        assert_eq!(outbox.confirmed(), 0, "an unknown token confirms nothing");
        outbox.ponged(100);
        assert_eq!(outbox.confirmed(), 3);
        assert!(outbox.awaiting_pong());
        outbox.ponged(200);
        assert_eq!(outbox.confirmed(), 5);
        assert!(!outbox.awaiting_pong());
    }

    #[test]
    fn after_its_bye_the_writer_answers_pings_until_the_peer_is_done() {
        let outbox = outbox();
        outbox.owe_pong(5);
        assert_eq!(outbox.after_bye(soon()), AfterBye::Pong(5));
        assert_eq!(outbox.after_bye(soon()), AfterBye::TimedOut);
        outbox.owe_pong(6);
        outbox.peer_done();
        assert_eq!(
            outbox.after_bye(soon()),
            AfterBye::Pong(6),
            "the last PING first"
        );
        assert_eq!(outbox.after_bye(soon()), AfterBye::PeerDone);
        outbox.close(Close::Abort);
        assert_eq!(outbox.after_bye(soon()), AfterBye::Abort);
    }
}
