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
//!
//! And it keeps what the writer's second stall rule needs: when each PING
//! that followed unconfirmed messages went out, when the last PONG came
//! back, when the peer's STATUS last showed its stdout taking lines (the
//! router says so: a PING may wait behind megabytes it reads slowly), and
//! whether this node's own reader is waiting for its router (then a
//! missing PONG says nothing about the peer).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

/// Queue size at which the router stops reading stdin for everyone.
pub const HIGH_WATER: usize = 1024 * 1024;
/// Queue size at which it starts again.
pub const LOW_WATER: usize = 256 * 1024;
/// PINGs remembered while their PONGs are outstanding: enough for one
/// PING every [`PING_EVERY_BYTES`] through the socket buffers on the way.
const PINGS_KEPT: usize = 256;
/// The writer hands at most this many bytes of queued frames to one write
/// and sends a PING after every this many bytes of messages, so that a
/// peer working through a backlog answers a PING each time it has read
/// about this much (see `Outbox::stall_clock`).
pub const PING_EVERY_BYTES: usize = 128 * 1024;

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
    /// PINGs awaiting their PONG, oldest first.
    pings: VecDeque<Ping>,
    /// When the last PONG arrived (any token: each proves the peer read on).
    last_pong: Option<Instant>,
    /// When the router last saw the peer's acknowledgements rise: its
    /// stdout took more lines, so it reads (see `progress_seen`).
    progress: Option<Instant>,
    /// This node's reader is waiting for its router (a full inbound queue,
    /// or the handover gate), not reading the socket.
    reader_waiting: bool,
    /// When the reader last stopped waiting for its router.
    reader_resumed: Option<Instant>,
    /// Messages the peer has provably read: its PONG answered a PING sent
    /// after them.
    confirmed: u64,
    /// The peer has said BYE, or its side of the connection is closed: it
    /// sends no more PINGs.
    peer_done: bool,
    /// The router cut the peer ([`Outbox::cut`]).
    cut: bool,
}

/// A PING awaiting its PONG.
#[derive(Debug, Clone, Copy)]
struct Ping {
    token: u64,
    /// Messages written before it.
    written: u64,
    /// When it went out.
    sent: Instant,
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

    /// Cuts the peer: its STATUS says its stdout is stuck. What is queued
    /// is dropped (as [`Close::Abort`]), and the writer shuts the socket
    /// with [`Ending::OutputStuck`](crate::event::Ending::OutputStuck).
    pub fn cut(&self) {
        self.shared.state.lock().cut = true;
        self.close(Close::Abort);
    }

    /// Writer side: whether the router cut the peer ([`Outbox::cut`]).
    pub fn is_cut(&self) -> bool {
        self.shared.state.lock().cut
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
            let batches = take_chunk(&mut state.queue);
            let close = if state.queue.is_empty() {
                state.close.clone()
            } else {
                None
            };
            (batches, close)
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

    /// Writer side, before it writes a PING with `token` behind `msgs`
    /// messages of the same write: the PING follows every message written
    /// so far and those. Noted before the write, not after: the peer's
    /// PONG can come back, and our reader look for its PING, before the
    /// write call has returned to our writer (on a busy CPU the peer's
    /// threads and our reader run first). A PONG to a PING not yet noted
    /// confirmed nothing, and the PING then waited for an answer that had
    /// come: the peer was cut as stalled.
    pub fn pinging(&self, token: u64, msgs: u64) {
        let mut state = self.shared.state.lock();
        let written = state.ledger.written + msgs;
        let mut ping = Ping {
            token,
            written,
            sent: Instant::now(),
        };
        if state.pings.len() == PINGS_KEPT {
            // Forget the oldest, but not how long an answer has been owed:
            // a PONG to any later PING answers it too.
            let oldest = state.pings.pop_front().expect("full");
            if oldest.written > state.confirmed {
                state.pings.front_mut().unwrap_or(&mut ping).sent = oldest.sent;
            }
        }
        state.pings.push_back(ping);
    }

    /// Writer side: the PING with `token` went out (its write returned)
    /// at `sent`: an answer is owed from then, unless it has come already.
    pub fn pinged(&self, token: u64, sent: Instant) {
        let mut state = self.shared.state.lock();
        if let Some(ping) = state.pings.back_mut().filter(|p| p.token == token) {
            ping.sent = sent;
        }
    }

    /// Reader side: the peer answered the PING with `token`, so it has read
    /// every message written before that PING (and every earlier PING: the
    /// peer answers only the last of several that arrived together).
    pub fn ponged(&self, token: u64) {
        let mut state = self.shared.state.lock();
        state.last_pong = Some(Instant::now());
        if let Some(at) = state.pings.iter().position(|p| p.token == token) {
            let written = state.pings[at].written;
            state.confirmed = state.confirmed.max(written);
            state.pings.drain(..=at);
        }
    }

    /// Router side: the peer's own STATUS shows its acknowledgements rose
    /// (its stdout took more lines, of any sender). It answers our PINGs
    /// only when its reader gets to them, behind whatever it holds: the
    /// kernel's socket buffers (megabytes on a fast link) and its own
    /// queues, shared by all its links. Read slowly, a member meets a PING
    /// of ours less often than once per --stall-timeout, though it reads
    /// all the while; this shows it does, and restarts the stall clock as
    /// a PONG would (confirming no message). A stopped process, or one
    /// whose stdout takes nothing, sends no such STATUS.
    pub fn progress_seen(&self) {
        self.shared.state.lock().progress = Some(Instant::now());
    }

    /// When the peer's STATUS last showed its stdout taking lines: the
    /// writer's first stall rule (a socket taking nothing) counts from it
    /// too.
    pub fn progress(&self) -> Option<Instant> {
        self.shared.state.lock().progress
    }

    /// Reader side: it waits for the router (`true`) or reads again.
    pub fn reader_waiting(&self, waiting: bool) {
        let mut state = self.shared.state.lock();
        if state.reader_waiting && !waiting {
            state.reader_resumed = Some(Instant::now());
        }
        state.reader_waiting = waiting;
    }

    /// Writer side: the instant from which the peer has shown no sign of
    /// reading, if a PING that followed unconfirmed messages is unanswered:
    /// the latest of that PING's departure, the last PONG, the last sign
    /// of its stdout taking lines (`progress_seen`), and the moment this
    /// node's reader last resumed reading. `None` while no such PING
    /// is owed an answer, or while our own reader waits for our router (a
    /// PONG behind it cannot arrive: that says nothing about the peer).
    /// The writer adds its own last write that moved bytes.
    pub fn stall_clock(&self) -> Option<Instant> {
        let state = self.shared.state.lock();
        if state.reader_waiting {
            return None;
        }
        // A PING counts once it follows messages not yet confirmed; an
        // idle keepalive PING (or one whose messages a later PONG already
        // confirmed) does not.
        let confirmed = state.confirmed;
        let owed = state.pings.iter().find(|p| p.written > confirmed)?.sent;
        Some(
            [state.last_pong, state.progress, state.reader_resumed]
                .into_iter()
                .flatten()
                .fold(owed, Instant::max),
        )
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

/// Takes queued batches from the front, at least one and, beyond the
/// first, only while they stay within [`PING_EVERY_BYTES`].
fn take_chunk(queue: &mut Vec<Batch>) -> Vec<Batch> {
    let mut bytes = 0;
    let n = queue
        .iter()
        .take_while(|b| {
            let first = bytes == 0;
            bytes += b.bytes.len();
            first || bytes <= PING_EVERY_BYTES
        })
        .count();
    if n == queue.len() {
        std::mem::take(queue)
    } else {
        queue.drain(..n).collect()
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

    /// The writer's PING with `token`, written at `sent` after everything
    /// written so far.
    fn ping(outbox: &Outbox, token: u64, sent: Instant) {
        outbox.pinging(token, 0);
        outbox.pinged(token, sent);
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
        // Each is over PING_EVERY_BYTES: one write each.
        let first = outbox.wait(soon()).unwrap();
        let second = outbox.wait(soon()).unwrap();
        assert_eq!((first.batches.len(), second.batches.len()), (1, 1));
        outbox.written(&first.batches);
        assert!(rx.try_recv().is_err(), "still over the low-water mark");
        outbox.written(&second.batches);
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
        ping(&outbox, 100, Instant::now());
        outbox.push(batch(10, 2));
        let work = outbox.wait(soon()).unwrap();
        outbox.written(&work.batches);
        ping(&outbox, 200, Instant::now());
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

    /// Writes everything queued, as the writer would.
    fn write_all_queued(outbox: &Outbox) {
        while let Some(work) = outbox.wait(Instant::now()) {
            outbox.written(&work.batches);
        }
    }

    #[test]
    fn an_idle_keepalive_ping_starts_no_stall_clock() {
        let outbox = outbox();
        ping(&outbox, 1, Instant::now());
        assert_eq!(outbox.stall_clock(), None, "no message before it");
        outbox.push(batch(10, 1));
        write_all_queued(&outbox);
        ping(&outbox, 2, Instant::now());
        outbox.ponged(2);
        assert_eq!(outbox.confirmed(), 1);
        ping(&outbox, 3, Instant::now());
        assert_eq!(
            outbox.stall_clock(),
            None,
            "every message confirmed: a keepalive PING"
        );
    }

    #[test]
    fn a_ping_after_unconfirmed_messages_starts_the_clock_and_a_pong_moves_it() {
        let outbox = outbox();
        let t0 = Instant::now();
        outbox.push(batch(10, 2));
        write_all_queued(&outbox);
        ping(&outbox, 1, t0);
        assert_eq!(outbox.stall_clock(), Some(t0));
        // A later keepalive PING: the clock still runs from the first.
        ping(&outbox, 2, t0 + Duration::from_secs(5));
        assert_eq!(outbox.stall_clock(), Some(t0));
        // Any PONG shows the peer reads on; one to the last PING stops it.
        outbox.ponged(1);
        assert_eq!(outbox.stall_clock(), None, "PING 2 followed nothing new");
        outbox.push(batch(10, 1));
        write_all_queued(&outbox);
        ping(&outbox, 3, t0);
        let clock = outbox.stall_clock().unwrap();
        assert!(clock > t0, "counted from the last PONG");
        outbox.ponged(3);
        assert_eq!(outbox.stall_clock(), None);
    }

    #[test]
    fn a_pong_back_before_the_write_of_its_ping_returned_answers_it() {
        let outbox = outbox();
        outbox.push(batch(10, 2));
        let work = outbox.wait(soon()).unwrap();
        // The writer notes the PING it writes behind the two messages;
        // the peer reads both and answers while our write call returns.
        outbox.pinging(7, 2);
        outbox.ponged(7);
        outbox.written(&work.batches);
        outbox.pinged(7, Instant::now());
        assert_eq!(outbox.confirmed(), 2);
        assert!(!outbox.awaiting_pong(), "answered already");
        assert_eq!(outbox.stall_clock(), None, "nothing is owed");
    }

    /// F1 of attack round 13: a member printing three senders' lines at
    /// 100 KB/s met a PING of ours less often than every --stall-timeout
    /// (they wait behind megabytes in its socket buffers and queues) and
    /// was cut as stalled while it read all the while. Its STATUS showing
    /// its stdout taking lines restarts the clock; it confirms nothing.
    #[test]
    fn a_peer_whose_stdout_takes_lines_restarts_the_clock_without_confirming_them() {
        let outbox = outbox();
        let t0 = Instant::now()
            .checked_sub(Duration::from_secs(5))
            .expect("a clock that has run for 5 s");
        outbox.push(batch(10, 2));
        write_all_queued(&outbox);
        ping(&outbox, 1, t0);
        assert_eq!(outbox.stall_clock(), Some(t0));
        let seen = Instant::now();
        outbox.progress_seen();
        let clock = outbox.stall_clock().expect("the PING is still owed");
        assert!(clock >= seen, "counted from the progress seen");
        assert_eq!(outbox.confirmed(), 0, "no message confirmed");
        assert!(outbox.awaiting_pong());
        outbox.ponged(1);
        assert_eq!((outbox.stall_clock(), outbox.confirmed()), (None, 2));
    }

    #[test]
    fn while_our_reader_waits_for_the_router_no_stall_is_counted() {
        let outbox = outbox();
        let t0 = Instant::now();
        outbox.push(batch(10, 1));
        write_all_queued(&outbox);
        ping(&outbox, 1, t0);
        outbox.reader_waiting(true);
        assert_eq!(outbox.stall_clock(), None);
        outbox.reader_waiting(false);
        assert!(outbox.stall_clock().unwrap() > t0, "counted from resuming");
    }

    #[test]
    fn forgetting_old_pings_keeps_how_long_an_answer_is_owed() {
        let outbox = outbox();
        let t0 = Instant::now();
        outbox.push(batch(10, 1));
        write_all_queued(&outbox);
        ping(&outbox, 0, t0);
        for token in 1..=PINGS_KEPT as u64 {
            ping(&outbox, token, t0 + Duration::from_secs(token));
        }
        assert_eq!(outbox.stall_clock(), Some(t0));
        outbox.ponged(PINGS_KEPT as u64);
        assert_eq!((outbox.stall_clock(), outbox.confirmed()), (None, 1));
    }

    #[test]
    fn the_writer_takes_the_queue_in_chunks_so_pings_interleave() {
        let outbox = outbox();
        for _ in 0..4 {
            outbox.push(batch(PING_EVERY_BYTES / 2, 1));
        }
        outbox.push(batch(3 * PING_EVERY_BYTES, 1));
        outbox.close(Close::Graceful("bye".into()));
        let sizes: Vec<(usize, bool)> = std::iter::from_fn(|| outbox.wait(soon()))
            .take(3)
            .map(|w| (w.batches.len(), w.close.is_some()))
            .collect();
        assert_eq!(
            sizes,
            [(2, false), (2, false), (1, true)],
            "a big batch goes whole, the close with the last chunk"
        );
    }
}
