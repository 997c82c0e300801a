//! The mesh: a pure state machine that turns a node's neighbours into a
//! group. It floods messages with de-duplication and per-origin order,
//! keeps the membership, picks whom to dial, and runs the end-to-end flow
//! control window.
//!
//! Nothing here touches a socket, a thread, the clock or a global RNG:
//! every input is a method call carrying `now`, every output an [`Action`]
//! the caller drains with [`Mesh::poll_action`]. The router drives it in
//! the real node; a deterministic simulator drives hundreds of instances in
//! the tests. `PROTOCOL.md` ("The mesh") states the rules this implements.

use std::net::SocketAddr;
use std::ops::Range;
use std::time::{Duration, Instant};

use crate::frame::Frame;
pub use crate::frame::NodeId;

/// The router's `ConnId` value: names one neighbour connection.
pub type Conn = u64;
/// Encoded frames, shared by all outboxes they are queued on.
pub type Bytes = std::sync::Arc<Vec<u8>>;

/// Whom to dial.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DialTarget {
    /// `config.peers[i]`, as given on the command line (maybe a host name).
    Seed(usize),
    /// An address learned from the mesh, a peer cache, discovery or PEERS.
    Addr(SocketAddr),
}

/// What the state machine needs to know about its node.
#[derive(Debug, Clone)]
pub struct MeshConfig {
    pub id: NodeId,
    pub name: String,
    /// The port we accept peers on; 0 = we do not listen.
    pub listen_port: u16,
    /// `--advertise`; `None`: "the address each neighbour sees us at".
    pub advertise: Option<SocketAddr>,
    pub ttl: u8,
    /// `false` with `--no-relay`.
    pub relay: bool,
    pub degree: usize,
    pub max_peers: usize,
    /// `--window`: bytes of our own messages that may be unacknowledged.
    pub window: usize,
    pub max_frame: usize,
    pub keepalive: Duration,
    pub stall_timeout: Duration,
    /// How many command-line PEERs there are (`DialTarget::Seed(0..seeds)`).
    pub seeds: usize,
    /// Seeds the jitter RNG, so that a simulation is reproducible.
    pub rng_seed: u64,
}

/// One MSG frame inside a received buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsgRef {
    pub origin: NodeId,
    pub seq: u64,
    pub hops: u8,
    pub ttl: u8,
    /// `start..end` is the whole frame, length prefix included.
    pub start: usize,
    pub end: usize,
}

/// A message to print, in order per origin.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub origin: NodeId,
    pub seq: u64,
    pub hops: u8,
    /// The neighbour it came from.
    pub via: Option<Conn>,
    /// The payload: `bytes[range]`.
    pub payload: (Bytes, Range<usize>),
}

impl Delivery {
    pub fn payload(&self) -> &[u8] {
        &self.payload.0[self.payload.1.clone()]
    }
}

/// How a dial we asked for ([`Action::Dial`]) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialResult {
    Connected,
    Failed,
    /// Refused (BYE), maybe with a PEERS list of other members to try.
    Refused {
        alternatives: Vec<(NodeId, SocketAddr)>,
    },
    /// The HELLO carried our own id: that address is us.
    Myself,
}

/// What the caller must do.
#[derive(Debug, Clone)]
pub enum Action {
    /// Queue encoded frames for a neighbour; `msgs` of them are MSG frames.
    Send {
        to: Conn,
        frames: Bytes,
        msgs: u64,
    },
    /// Print these, in this order (in order per origin).
    Deliver(Vec<Delivery>),
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
    /// `origin`'s messages `first..=last` are lost to this node.
    Gap {
        origin: NodeId,
        first: u64,
        last: u64,
        reason: String,
    },
    Dial(DialTarget),
    /// Close this neighbour politely (BYE `reason`), PEERS `alternatives` first.
    Close {
        conn: Conn,
        reason: String,
        alternatives: Vec<(NodeId, SocketAddr)>,
    },
}

/// What one member got of our own lines, for the exit summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberBooks {
    pub id: NodeId,
    pub name: String,
    /// Our seqs this member owes us delivery of: `owed.start..owed.end`
    /// (empty when we sent it nothing after learning it).
    pub owed: Range<u64>,
    /// How many of the owed lines it acknowledged.
    pub delivered: u64,
    /// How many of the owed lines it will never get (it went down first).
    pub lost: u64,
    /// Why it went down, if it did.
    pub down: Option<String>,
}

/// The state machine. See the module documentation.
pub struct Mesh {
    cfg: MeshConfig,
    actions: std::collections::VecDeque<Action>,
}

impl Mesh {
    pub fn new(cfg: MeshConfig, _now: Instant) -> Mesh {
        Mesh {
            cfg,
            actions: Default::default(),
        }
    }

    /// A neighbour's connection is up (both ACCEPTs exchanged).
    /// `dialed`: the target we dialed it as, `None` when it dialed us.
    #[allow(clippy::too_many_arguments)]
    pub fn neighbour_up(
        &mut self,
        _now: Instant,
        _conn: Conn,
        _node: NodeId,
        _name: &str,
        _remote: SocketAddr,
        _listen_port: u16,
        _dialed: Option<DialTarget>,
    ) {
    }

    /// A neighbour's connection ended. `cut`: it was cut for stalling (the
    /// reason text), so the mesh floods DOWN for it.
    pub fn neighbour_down(&mut self, _now: Instant, _conn: Conn, _cut: Option<&str>) {}

    /// A batch of MSG frames read from `conn`, all inside `buf`.
    pub fn on_msgs(&mut self, _now: Instant, _conn: Conn, _buf: &Bytes, _msgs: &[MsgRef]) {}

    /// A STATUS, DOWN, REPAIR or PEERS frame from `conn`; others are ignored.
    pub fn on_frame(&mut self, _now: Instant, _conn: Conn, _frame: &Frame<'_>) {}

    /// Our own lines, already encoded by the stdin thread as MSG frames with
    /// seqs `first..=last`.
    pub fn local(&mut self, _now: Instant, _frames: &Bytes, _first: u64, _last: u64) {}

    /// Addresses learned outside the mesh (peer cache, discovery, PEERS).
    pub fn learned(&mut self, _now: Instant, _addrs: &[(Option<NodeId>, SocketAddr)]) {}

    /// How a dial asked for with [`Action::Dial`] ended.
    pub fn dial_result(&mut self, _now: Instant, _target: &DialTarget, _result: DialResult) {}

    /// Time passes: keepalive STATUS, silence timeouts, repair, dialing.
    pub fn tick(&mut self, _now: Instant) {}

    /// When [`Mesh::tick`] next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        None
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Bytes of our own lines that may be sent now.
    pub fn window_room(&self) -> usize {
        self.cfg.window
    }

    /// Other live members, not counting ourselves.
    pub fn live_members(&self) -> usize {
        0
    }

    pub fn member_name(&self, _id: NodeId) -> Option<&str> {
        None
    }

    /// Up to `n` members' addresses to hand a refused dialer.
    pub fn alternatives(&self, _n: usize) -> Vec<(NodeId, SocketAddr)> {
        Vec::new()
    }

    /// Every member address we know, for `--peer-cache`.
    pub fn known_addrs(&self) -> Vec<(NodeId, SocketAddr)> {
        Vec::new()
    }

    /// A polite exit: floods our STATUS with the leaving flag.
    pub fn leave(&mut self, _now: Instant) {}

    /// Every owed line acknowledged by every owing member, or it is down.
    pub fn eof_settled(&self) -> bool {
        true
    }

    /// Per member: what it owed, got and lost of our lines.
    pub fn books(&self) -> Vec<MemberBooks> {
        Vec::new()
    }
}
