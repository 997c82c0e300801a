//! The vocabulary the node's threads speak to each other: connection ids,
//! who a peer is, how a connection ended, the events connection threads
//! send the router, and what the router hands the stdout thread.
//!
//! It sits low in the layering (it imports only the codec, the mesh's
//! vocabulary and the outbox), so that no queue imports the thread it feeds.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crossbeam_channel::Sender;
use parking_lot::Mutex;

use crate::frame::NodeId;
use crate::mesh::{Bytes, Delivery, DialTarget, MsgRef, ProbeResult};
use crate::outbox::Outbox;
use crate::shutdown::Never;

/// Identifies one connection for the life of the process.
pub type ConnId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// They dialed us.
    In,
    /// We dialed them.
    Out,
}

/// Who is at the other end of a connection, as its HELLO said.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub conn: ConnId,
    pub node_id: NodeId,
    pub name: Arc<str>,
    pub addr: SocketAddr,
    pub direction: Direction,
    pub listen_port: u16,
    pub max_frame: usize,
    /// How often the peer pings when it has nothing to send (from its HELLO).
    pub keepalive: Duration,
}

impl fmt::Display for PeerInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.addr)
    }
}

/// Frames decoded from one read, sharing the buffer they arrived in:
/// messages and the mesh's control frames, in the order they came.
pub struct Inbound {
    pub conn: ConnId,
    pub buf: Bytes,
    pub frames: Vec<InFrame>,
}

/// One frame inside an [`Inbound::buf`].
#[derive(Debug, Clone, Copy)]
pub enum InFrame {
    Msg(MsgRef),
    /// A STATUS, DOWN, REPAIR or PEERS frame at `start..end` (length
    /// prefix included), decoded again by the router.
    Control {
        start: usize,
        end: usize,
    },
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The peer sent BYE, then closed: the polite way.
    Goodbye(String),
    /// The peer closed between two frames without saying BYE.
    Eof,
    /// The peer closed in the middle of a frame.
    Truncated { have: usize, frame: Option<usize> },
    /// "Connection reset by peer": the peer vanished without a polite close.
    Reset,
    /// Nothing arrived for 3 x `--keepalive`: presumed dead.
    Silent(Duration),
    /// Our writer could send nothing for `--stall-timeout`.
    Stalled(Duration),
    /// A PING that followed our messages went unanswered for
    /// `--stall-timeout`, with no PONG and no byte taken meanwhile: the
    /// peer reads nothing (stopped, or its reader stuck).
    Unanswered(Duration),
    /// The peer's STATUS said its stdout has taken nothing for its
    /// `--stall-timeout` (`mesh::FLAG_STUCK`): we cut it.
    OutputStuck,
    /// The peer answered our HELLO with BYE: it does not take us as a peer.
    Refused(String),
    /// The peer did not close its side within this long of our BYE.
    NoClose(Duration),
    /// The peer broke the protocol.
    Protocol(String),
    /// Some other socket error.
    Io(String),
    /// This node is stopping and stopped reading.
    Stopping,
}

impl Ending {
    /// Whether this is an orderly end rather than a failure.
    pub fn is_polite(&self) -> bool {
        matches!(
            self,
            Ending::Goodbye(_) | Ending::Stopping | Ending::Refused(_)
        )
    }
}

impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ending::Goodbye(reason) if reason.is_empty() => write!(f, "said goodbye"),
            Ending::Goodbye(reason) => write!(f, "said goodbye: {reason}"),
            Ending::Eof => write!(f, "closed the connection without saying goodbye"),
            Ending::Truncated {
                have,
                frame: Some(len),
            } => write!(
                f,
                "closed the connection in the middle of a frame ({have} of {len} bytes)"
            ),
            Ending::Truncated { have, frame: None } => {
                write!(
                    f,
                    "closed the connection in the middle of a frame header ({have} bytes)"
                )
            }
            Ending::Reset => write!(f, "connection reset by peer"),
            Ending::Silent(d) => write!(
                f,
                "no data for {}s (3 x keepalive): presumed dead",
                d.as_secs()
            ),
            Ending::Stalled(d) => write!(
                f,
                "stalled: accepted no data for {}s (--stall-timeout)",
                d.as_secs()
            ),
            Ending::Unanswered(d) => write!(
                f,
                "stalled: read none of our messages for {}s (a PING after them unanswered; --stall-timeout)",
                d.as_secs()
            ),
            Ending::OutputStuck => write!(
                f,
                "stalled: its stdout took nothing for its --stall-timeout (its STATUS says so)"
            ),
            Ending::Refused(reason) => write!(f, "refused the connection: {reason}"),
            Ending::NoClose(d) => write!(
                f,
                "did not close within {}s of our goodbye; closed it anyway",
                d.as_secs()
            ),
            Ending::Protocol(reason) => write!(f, "protocol error: {reason}"),
            Ending::Io(reason) => write!(f, "connection error: {reason}"),
            Ending::Stopping => write!(f, "this node is stopping"),
        }
    }
}

/// What a failed dial says about the address dialed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialFailure {
    /// Not reached, or the connection failed: try again later.
    Failed,
    /// The HELLO was our own: the address is this node.
    Myself,
    /// A node there that this one cannot join as it is configured (a
    /// private group, a refusal in the handshake, a key that is not its
    /// id): the user must hear it, even after earlier failures.
    CannotJoin,
}

/// What connection threads tell the router.
pub enum Event {
    /// HELLOs exchanged: admit or refuse this connection.
    Admit {
        info: PeerInfo,
        outbox: Outbox,
        /// What we dialed, for a connection we dialed.
        dialed: Option<DialTarget>,
        /// Dropped to let the connection deliver messages.
        gate: Sender<Never>,
        handover: Handover,
    },
    /// The peer sent ACCEPT: it takes us as its peer.
    Accepted { conn: ConnId },
    /// The peer said BYE (with this reason): answer in kind.
    Bye { conn: ConnId, reason: String },
    /// The connection is over; its threads are finishing. `batches` is how
    /// many frame batches its reader handed over in all.
    Down {
        conn: ConnId,
        ending: Ending,
        batches: u64,
    },
    /// The outbox went back under its low-water mark.
    Drained { conn: ConnId },
    /// A dial asked for by the mesh did not get as far as a HELLO.
    DialFailed {
        target: DialTarget,
        reason: String,
        kind: DialFailure,
    },
    /// The probe of a member asked for by the mesh ended.
    Probed { member: NodeId, result: ProbeResult },
    /// Addresses found outside the mesh (LAN discovery).
    Learned(Vec<(Option<NodeId>, SocketAddr)>),
    /// The stdout thread wrote out more lines ([`PrintedSoFar`]).
    Printed,
}

/// A stdout that wrote something within this long still moves
/// ([`PrintedSoFar::moving`]).
pub const STDOUT_MOVING: std::time::Duration = std::time::Duration::from_secs(1);

/// How far the stdout thread has written each origin's lines out (flushed
/// to the pipe or file), since the router last looked. The mesh
/// acknowledges only printed lines: a line handed to a blocked stdout is
/// not yet delivered, and would be lost if the node stopped then.
/// Mutex: the stdout thread records, the router takes.
#[derive(Default)]
pub struct PrintedSoFar {
    seqs: Mutex<(std::collections::HashMap<NodeId, u64>, usize)>,
    /// An [`Event::Printed`] is on its way: one is enough.
    told: std::sync::atomic::AtomicBool,
    /// Messages delivered in all (the router sets it when it finishes) and
    /// written out: what a node stopping with stdout blocked did not print
    /// is said, not lost in silence.
    pub handed: std::sync::atomic::AtomicU64,
    pub written: std::sync::atomic::AtomicU64,
    /// Set at exit: the stdout thread finishes the write under way and
    /// starts no other, so that its output ends with a whole line and
    /// `written` says exactly what it printed.
    pub stop: std::sync::atomic::AtomicBool,
    /// When a write to stdout last returned having written something.
    pub last_write: Mutex<Option<std::time::Instant>>,
    /// A write returned having written something since the router last
    /// looked ([`PrintedSoFar::take_moved`]): stdout moves, even in the
    /// middle of a long line.
    moved: std::sync::atomic::AtomicBool,
    /// What stdout took last does not end with a newline: a long line
    /// goes out in pieces, or its reader stopped in the middle of one.
    pub mid_line: std::sync::atomic::AtomicBool,
    /// Since when the write to stdout under way has waited, if one is.
    pub writing_since: Mutex<Option<std::time::Instant>>,
    /// stdout failed (closed) after taking part of what was not counted as
    /// printed yet: some of the lines not in `seqs` may have been printed,
    /// so no acknowledgement can say exactly which were not.
    pub failed_mid_write: std::sync::atomic::AtomicBool,
}

impl PrintedSoFar {
    /// Whether a write to stdout wrote something within the last
    /// [`STDOUT_MOVING`]: a stdout that takes output, if slowly. A node
    /// leaving waits for such a stdout, at most `--stall-timeout`
    /// (`router::stdout`, `node::finish_stdout`).
    pub fn moving(&self) -> bool {
        self.last_write
            .lock()
            .is_some_and(|at| at.elapsed() < STDOUT_MOVING)
    }

    /// Whether a write to stdout has waited for at least `long`: its
    /// reader takes nothing, or next to nothing.
    pub fn blocked_for(&self, long: std::time::Duration) -> bool {
        self.writing_since
            .lock()
            .is_some_and(|since| since.elapsed() >= long)
    }
}

impl PrintedSoFar {
    /// Records the runs written out (origin, last seq, what they count
    /// against the window, messages), emptying `runs`; true if the router
    /// must be told.
    pub fn record(&self, runs: &mut Vec<(NodeId, u64, usize, u64)>) -> bool {
        let mut seqs = self.seqs.lock();
        for (origin, last, bytes, count) in runs.drain(..) {
            self.written
                .fetch_add(count, std::sync::atomic::Ordering::Relaxed);
            let seq = seqs.0.entry(origin).or_insert(last);
            *seq = (*seq).max(last);
            seqs.1 += bytes;
        }
        !self.told.swap(true, std::sync::atomic::Ordering::AcqRel)
    }

    /// A write to stdout wrote something at `now`; true if the router
    /// must be told.
    pub fn moved(&self, now: std::time::Instant) -> bool {
        *self.last_write.lock() = Some(now);
        self.moved.store(true, std::sync::atomic::Ordering::Relaxed);
        !self.told.swap(true, std::sync::atomic::Ordering::AcqRel)
    }

    /// Whether stdout wrote anything since the last call.
    pub fn take_moved(&self) -> bool {
        self.moved.swap(false, std::sync::atomic::Ordering::Relaxed)
    }

    /// What was written out since the last call.
    /// Per origin the last seq, and what the lines count against their
    /// windows in all.
    pub fn take(&self) -> (std::collections::HashMap<NodeId, u64>, usize) {
        self.told.store(false, std::sync::atomic::Ordering::Release);
        std::mem::take(&mut *self.seqs.lock())
    }
}

/// What the router gives the stdout thread.
pub enum Output {
    Msgs(Lines),
    PeerUp(PeerInfo),
    PeerDown(PeerInfo, Ending),
    MemberUp {
        id: NodeId,
        name: String,
        addrs: Vec<SocketAddr>,
    },
    MemberDown {
        id: NodeId,
        name: String,
        reason: String,
    },
    Gap {
        origin: NodeId,
        name: Arc<str>,
        first: u64,
        last: u64,
        reason: String,
    },
}

/// Messages delivered in one go, with the names they are printed under.
pub struct Lines {
    /// When they were delivered.
    pub at: SystemTime,
    pub lines: Vec<Line>,
}

/// One delivery (a run of one origin's messages, see [`Delivery`]) and the
/// names its lines are printed under.
pub struct Line {
    pub msg: Delivery,
    /// The origin's name (its id in hex while the mesh does not know it).
    pub from: Arc<str>,
    /// The neighbour it came from.
    pub via: Option<Arc<str>>,
}

/// Lets a connection that replaces another one to the same node hand the
/// router its frames only once the old one has handed over everything it
/// read, so that the mesh hears that node on one link at a time. Mutex: the
/// old connection's reader finishes while the router may be handing it a
/// successor.
#[derive(Clone, Default)]
pub struct Handover(Arc<Mutex<HandoverState>>);

#[derive(Default)]
struct HandoverState {
    finished: bool,
    /// The successor's delivery gate, opened (dropped) when this one finishes.
    successor: Option<Sender<Never>>,
}

impl Handover {
    /// Opens `gate` once this connection has delivered all it read.
    pub fn pass_on(&self, gate: Sender<Never>) {
        let mut state = self.0.lock();
        if !state.finished {
            state.successor = Some(gate);
        }
    }

    pub fn finish(&self) {
        let mut state = self.0.lock();
        state.finished = true;
        state.successor = None;
    }
}
