//! The mesh: a pure state machine that turns a node's neighbours into a
//! group. It relays messages along a broadcast tree per origin (flooding
//! until duplicates prune it) with de-duplication and per-origin order,
//! keeps the membership, picks whom to dial, and runs the end-to-end flow
//! control window.
//!
//! Nothing here touches a socket, a thread, the clock or a global RNG:
//! every input is a method call carrying `now`, every output an [`Action`]
//! the caller drains with [`Mesh::poll_action`]. The router drives it in
//! the real node; a deterministic simulator drives hundreds of instances in
//! the tests. `PROTOCOL.md` ("The mesh") states the rules this implements.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::ops::Range;
use std::time::{Duration, Instant};

use crate::frame::Frame;
pub use crate::frame::NodeId;

mod dial;
mod flow;
mod leave;
mod lost;
mod members;
mod origin;
mod relay;
mod rng;
#[doc(hidden)]
pub mod sim;
mod stuck;
mod table;
#[cfg(test)]
mod tests;
mod tree;

use dial::DialPolicy;
use flow::Own;
use leave::Leaving;
pub use lost::NOT_OWED;
pub use origin::memory_budget;
use origin::Origins;
use rng::Rng;
pub use stuck::{FLAG_PRINTING, FLAG_STUCK};
use table::Table;
pub use table::MAX_MEMBERS;
use tree::Tree;

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
    /// This process's life under `id` (see [`crate::frame::Status::life`]).
    pub life: u64,
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

impl MeshConfig {
    /// Whether `ack` acknowledges our lines: ours, and of this process (an
    /// earlier process under our id counted its seqs from 1 too).
    pub(super) fn acknowledges_us(&self, ack: &crate::frame::Ack) -> bool {
        ack.origin == self.id && ack.life == self.life
    }
}

/// One message inside a received buffer: an entry of a MSG frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsgRef {
    pub origin: NodeId,
    pub seq: u64,
    /// As in its frame's header.
    pub hops: u8,
    pub ttl: u8,
    /// The life of the origin that sent it (see [`crate::frame::Status::life`]).
    pub life: u64,
    /// `start..end` is the entry: its payload, then its newline.
    pub start: usize,
    pub end: usize,
}

impl MsgRef {
    /// One reference per entry of a MSG frame with `header` whose checked
    /// `entries` start at `base` in their buffer, in order: what a reader
    /// makes of it.
    #[inline]
    pub fn each_in(
        entries: &[u8],
        base: usize,
        header: crate::frame::MsgHeader,
    ) -> impl Iterator<Item = MsgRef> + '_ {
        let crate::frame::MsgHeader {
            origin,
            seq,
            hops,
            ttl,
            life,
        } = header;
        let mut start = base;
        crate::frame::entry_ends(entries)
            .enumerate()
            .map(move |(i, end)| {
                let msg = MsgRef {
                    origin,
                    // The last entry's seq is checked not to overflow.
                    seq: seq + i as u64,
                    hops,
                    ttl,
                    life,
                    start,
                    end: base + end,
                };
                start = base + end;
                msg
            })
    }
}

/// Messages to print, in order per origin: consecutive entries of one
/// origin, seqs `first..=last`, back to back in `bytes[entries]`, all with
/// `hops`. A batch that arrived in order is one delivery per frame it came
/// in, whatever its length.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub origin: NodeId,
    pub first: u64,
    pub last: u64,
    pub hops: u8,
    /// The neighbour they came from.
    pub via: Option<Conn>,
    pub bytes: Bytes,
    pub entries: Range<usize>,
}

impl Delivery {
    /// The one message whose entry is `bytes[entry]`.
    pub fn one(
        origin: NodeId,
        seq: u64,
        hops: u8,
        via: Option<Conn>,
        bytes: &Bytes,
        entry: Range<usize>,
    ) -> Self {
        Delivery {
            origin,
            first: seq,
            last: seq,
            hops,
            via,
            bytes: bytes.clone(),
            entries: entry,
        }
    }

    /// Adds `next` if it continues this run (same origin, hops and
    /// neighbour, the next seqs, right behind it in the same buffer);
    /// false if not.
    pub fn extend(&mut self, next: &Delivery) -> bool {
        let more = next.origin == self.origin
            && next.first == self.last.wrapping_add(1)
            && next.hops == self.hops
            && next.via == self.via
            && next.entries.start == self.entries.end
            && std::sync::Arc::ptr_eq(&next.bytes, &self.bytes);
        if more {
            self.last = next.last;
            self.entries.end = next.entries.end;
        }
        more
    }

    /// How many messages.
    pub fn len(&self) -> u64 {
        self.last - self.first + 1
    }

    /// Takes off the front of this run as many whole lines as fit in
    /// `max` bytes (at least one), if the run holds more than that; `None`
    /// when it fits as it is, or is one line.
    pub fn split_front_within(&mut self, max: usize) -> Option<Delivery> {
        let entries = &self.bytes[self.entries.clone()];
        if entries.len() <= max {
            return None;
        }
        let end = match memchr::memrchr(b'\n', &entries[..max]) {
            Some(at) => at + 1,
            None => memchr::memchr(b'\n', entries)? + 1,
        };
        if end >= entries.len() {
            return None;
        }
        let count = memchr::memchr_iter(b'\n', &entries[..end]).count() as u64;
        let front = Delivery {
            last: self.first + count - 1,
            entries: self.entries.start..self.entries.start + end,
            bytes: self.bytes.clone(),
            ..*self
        };
        self.first += count;
        self.entries.start += end;
        Some(front)
    }

    /// Never: a delivery holds one message at least.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Payload bytes, newlines not counted.
    pub fn payload_bytes(&self) -> usize {
        self.entries.len() - self.len() as usize
    }

    /// What these messages count against their origin's window
    /// ([`crate::frame::entries_cost`]).
    pub fn cost(&self) -> usize {
        crate::frame::entries_cost(self.entries.len(), self.len() as usize)
    }

    /// Each message: its seq, hops and payload.
    pub fn msgs(&self) -> impl Iterator<Item = (u64, u8, &[u8])> + '_ {
        let entries = &self.bytes[self.entries.clone()];
        (self.first..=self.last)
            .zip(crate::frame::entries(entries))
            .map(|(seq, payload)| (seq, self.hops, payload))
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

/// How a probe of a member's listen addresses ([`Action::Probe`]) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeResult {
    /// Every address refused the connection (ECONNREFUSED): nothing
    /// listens there any more.
    Refused,
    /// An address accepted the connection: something lives there.
    Answered,
    /// No answer in time, or another error: no evidence either way.
    NoAnswer,
}

/// What the caller must do.
#[derive(Debug, Clone)]
pub enum Action {
    /// Queue encoded frames for a neighbour; their MSG frames hold `msgs`
    /// messages.
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
    /// Connect once to each of `member`'s listen addresses (a short
    /// connect timeout, no handshake) and report it with [`Mesh::probed`]:
    /// its link ended without a goodbye (see `members.rs`, `probe`).
    Probe {
        member: NodeId,
        addrs: Vec<SocketAddr>,
    },
    /// The neighbour on `conn` is a member whose acknowledgements rose: its
    /// stdout takes lines, so it reads, however slowly. Its link's stall
    /// clock restarts (`Outbox::progress_seen`): our PINGs may wait behind
    /// more than it reads in a --stall-timeout.
    Reading {
        conn: Conn,
    },
    /// Cut this neighbour: its STATUS says its stdout has taken nothing
    /// for its `--stall-timeout` ([`FLAG_STUCK`]). Reported to the group
    /// like a link that took nothing ([`Mesh::neighbour_down`] with a
    /// reason).
    Cut {
        conn: Conn,
    },
    /// Close this neighbour politely (BYE `reason`), PEERS `alternatives`
    /// first (also when empty: it tells the other end we let it go).
    Close {
        conn: Conn,
        reason: String,
        alternatives: Vec<(NodeId, SocketAddr)>,
    },
    /// `origin` restarted (a new process under its id: a STATUS of
    /// another life): its seqs count from 1 again, so what was
    /// delivered of its earlier life no longer makes a line a duplicate.
    Restarted {
        origin: NodeId,
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
    /// Up, but it acknowledged none of our lines for 2 × `--stall-timeout`.
    pub stalled: bool,
    /// Our lines sent before it joined, and after it went down: not owed
    /// to it.
    pub before_up: u64,
    /// Of those sent before it joined, how many it acknowledged anyway
    /// (a member whose first lines came from a neighbour's cache or an
    /// older STATUS, as a restarted one's do): printed, though not owed.
    pub printed_before_up: u64,
    pub after_down: u64,
}

/// A neighbour: one connection that completed its handshake.
#[derive(Debug, Clone)]
struct Neighbour {
    node: NodeId,
    remote: SocketAddr,
    /// A command-line PEER link: never trimmed.
    seed: bool,
    added: Instant,
    /// When a frame from it last reached the mesh: a parent silent for a
    /// while is about to be cut (see `relay.rs`, `parent_silent`).
    heard: Instant,
    /// We asked the caller to close it (degree trimming).
    closing: bool,
    /// It sent PEERS: it is letting us go (trimming us) and named whom to
    /// dial instead, so its end is no cut (see `dial.rs`, `dial_across`).
    lets_us_go: bool,
    /// The highest status_seq of its own flooded STATUS that came through
    /// this link: a newer one coming through another link after it let
    /// us go shows the group is still one (see `dial.rs`, `LetGo`).
    direct_seq: u64,
    /// When a STATUS last showed this link lies on a cycle (see
    /// `dial.rs`, `heard_status_via`): trimming it leaves no one alone.
    on_cycle: Option<Instant>,
    /// When a STATUS of a member other than this neighbour last came
    /// through it (see `dial.rs`, `trim`): it is one of our ways to the
    /// rest of the group, not only to its own node.
    relayed: Option<Instant>,
    /// REPAIR answers we queued for it, while its writer still holds them
    /// (see `lost.rs`, `repair_room`).
    /// Weak: an answer the router did not queue (its queue was over the
    /// bound) must not stay alive here (attack15 F2: 60 neighbours that
    /// read nothing kept 3.8 MB each).
    answers: Vec<(std::sync::Weak<Vec<u8>>, usize)>,
    /// When we last greeted it again because it came back (see
    /// `members.rs`, `merge_status`): at most once a keepalive.
    regreeted: Option<Instant>,
}

impl Neighbour {
    /// We are trimming this link, or the other end is letting us go.
    fn ending(&self) -> bool {
        self.closing || self.lets_us_go
    }
}

/// The state machine. See the module documentation.
pub struct Mesh {
    cfg: MeshConfig,
    actions: VecDeque<Action>,
    rng: Rng,
    /// Ordered maps throughout: a simulation run must be reproducible.
    neighbours: BTreeMap<Conn, Neighbour>,
    origins: Origins,
    /// Other members, live or remembered as down (capped).
    members: Table,
    /// New members refused (the member table is full).
    refused_members: Refusals,
    /// Messages from origins no member announced, dropped with the origin
    /// table full of such (`Origins::admit`).
    refused_origin_msgs: Refusals,
    /// Messages of another life than the one known of their origin (an
    /// earlier process under its id, or a newer one not yet announced),
    /// dropped since the last log line (`Origin::of_life`).
    other_life_msgs: Refusals,
    /// Members' restarts (new lives) not logged one by one: a stranger in
    /// an open group can forge one per STATUS (attack42 F2: 477,000 log
    /// lines in a minute).
    restarts: Refusals,
    /// Messages held back or cached that were dropped to keep what origins
    /// hold within [`origin::memory_budget`] since the last warning.
    shed: origin::Shed,
    shed_warned: Option<Instant>,
    /// When a DOWN about us was last refuted with a STATUS at once.
    refuted: Option<Instant>,
    /// Since when the router has held back frames from neighbours (its
    /// stdout is blocked), and how long it did before: silence is measured
    /// on a clock that stops meanwhile (see [`Mesh::inbound_held`]).
    held_since: Option<Instant>,
    held_before: Duration,
    /// The last time the router held back frames for half a stall timeout
    /// or more: from when to when (see [`Mesh::held_back_lately`]).
    last_hold: Option<(Instant, Instant)>,
    /// Since when lines wait for our stdout ([`Mesh::output_waiting`]),
    /// when it last printed one ([`Mesh::printed`]), and whether our
    /// STATUS says it is stuck (`stuck.rs`).
    waiting_since: Option<Instant>,
    last_printed: Option<Instant>,
    stuck: bool,
    /// Origins that may have a missing run of seqs.
    holes: BTreeSet<NodeId>,
    /// Per origin, which neighbours get its messages (the broadcast tree).
    tree: Tree,
    own: Own,
    /// The router reads no stdin until a neighbour's queue drains, and
    /// stdin has not ended (see [`Mesh::stdin_held_by_queues`]).
    stdin_held: bool,
    /// Our final acknowledgements once we left with them (`leave.rs`).
    leaving: Leaving,
    dial: DialPolicy,
    /// When our next keepalive STATUS is due.
    next_keepalive: Instant,
    /// When members are next checked for silence.
    next_scan: Instant,
    /// When the last STATUS went out, and whether another is wanted soon
    /// (acknowledgements advanced or new lines went out).
    last_status: Option<Instant>,
    /// The last STATUS of ours that went out (see `greeting_status`).
    own_sent: Option<crate::frame::Status>,
    /// The last STATUS of ours that flooded, and when: a routed one may
    /// follow only while it is recent and still says the same.
    flooded: Option<(Instant, crate::frame::Status)>,
    /// Our next STATUS floods whatever it says: a keepalive, a refutation.
    flood_due: bool,
    status_due: bool,
    /// What the lines delivered since our last STATUS count against their
    /// origins' windows ([`Delivery::cost`]): past a quarter of the window,
    /// acknowledgements are urgent (the origins may be waiting).
    unacked_delivered: usize,
    /// When we last delivered or sent a line.
    last_activity: Instant,
    last_tick: Instant,
    /// Acknowledge only what the caller says was printed
    /// ([`Mesh::acknowledge_printed_only`]), not what was delivered.
    ack_printed: bool,
    /// Members being probed (see `members.rs`, `probe`).
    probes: BTreeSet<NodeId>,
    /// When we last warned of a member announcing a longer keepalive than
    /// we count (`members.rs`, `merge_status`): at most every 10 min.
    long_keepalive_warned: Option<Instant>,
    /// Another process announces itself under our id (`members.rs`,
    /// `foreign_status`): what we know of it, once seen.
    id_conflict: Option<String>,
    /// The newest STATUS under our id from before our first one (an
    /// earlier life's, or a process started before us), and when it came.
    foreign_status: Option<(u64, Instant)>,
    /// A neighbour was ever up: members may have heard our STATUS.
    joined: bool,
    /// Our stdout took output since our last STATUS without finishing a
    /// line ([`FLAG_PRINTING`]).
    moved_unsaid: bool,
    /// When a STATUS saying our stdout moved last went to every neighbour,
    /// not only to our parents (`stuck.rs`, `printing_to_all`).
    printing_told_all: Option<Instant>,
}

/// Something refused again and again (a stranger's doing, as often as
/// not): counted, and told on the log at most every [`REFUSAL_LOG_EVERY`].
#[derive(Debug, Default)]
struct Refusals {
    /// Refused since the last warning.
    count: u64,
    warned: Option<Instant>,
}

impl Refusals {
    fn add(&mut self, n: u64) {
        self.count += n;
    }

    /// How many were refused since the last warning, if there were any
    /// and a warning is due now (then it counts as given).
    fn due(&mut self, now: Instant) -> Option<u64> {
        let due = self.warned.map_or(true, |at| {
            now.saturating_duration_since(at) >= REFUSAL_LOG_EVERY
        });
        if self.count == 0 || !due {
            return None;
        }
        self.warned = Some(now);
        Some(std::mem::take(&mut self.count))
    }
}

/// How long a STATUS carrying urgent acknowledgements waits after the
/// previous one at least. A sender moves at most a window per this long
/// (one hop was capped near 400 MB/s at 10 ms with the default window).
const STATUS_GAP: Duration = Duration::from_millis(2);
/// Any other prompt STATUS (acknowledgements advanced a little, new lines
/// sent) goes out once traffic has paused this long...
const STATUS_QUIET: Duration = Duration::from_millis(50);
/// ... or, while traffic flows without pause, this long after the last:
/// acks reach `--exit-on-eof` senders soon after the last line, without a
/// flooded STATUS per delivery while lines stream.
const STATUS_LAZY: Duration = Duration::from_secs(1);
/// The longest a caller may wait between ticks.
const TICK: Duration = Duration::from_millis(100);
/// How often a full member table says it refuses newcomers.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

impl Mesh {
    pub fn new(cfg: MeshConfig, now: Instant) -> Mesh {
        let mut rng = Rng::new(cfg.rng_seed ^ cfg.id);
        let dial = DialPolicy::new(cfg.seeds, now, &mut rng);
        let keepalive = cfg.keepalive;
        Mesh {
            own: Own::new(cfg.window),
            stdin_held: false,
            cfg,
            actions: VecDeque::new(),
            rng,
            neighbours: BTreeMap::new(),
            origins: Origins::default(),
            members: Table::default(),
            refused_members: Refusals::default(),
            refused_origin_msgs: Refusals::default(),
            other_life_msgs: Refusals::default(),
            restarts: Refusals::default(),
            shed: origin::Shed::default(),
            shed_warned: None,
            refuted: None,
            held_since: None,
            held_before: Duration::ZERO,
            last_hold: None,
            waiting_since: None,
            last_printed: None,
            stuck: false,
            holes: BTreeSet::new(),
            tree: Tree::default(),
            leaving: Leaving::default(),
            dial,
            next_keepalive: now + keepalive,
            next_scan: now + keepalive / 2,
            last_status: None,
            own_sent: None,
            flooded: None,
            flood_due: false,
            status_due: false,
            unacked_delivered: 0,
            last_activity: now,
            last_tick: now,
            ack_printed: false,
            probes: BTreeSet::new(),
            id_conflict: None,
            long_keepalive_warned: None,
            joined: false,
            moved_unsaid: false,
            printing_told_all: None,
            foreign_status: None,
        }
    }

    /// A neighbour's connection is up (both ACCEPTs exchanged).
    /// `dialed`: the target we dialed it as, `None` when it dialed us.
    #[allow(clippy::too_many_arguments)]
    pub fn neighbour_up(
        &mut self,
        now: Instant,
        conn: Conn,
        node: NodeId,
        _name: &str,
        remote: SocketAddr,
        listen_port: u16,
        dialed: Option<DialTarget>,
    ) {
        let seed = matches!(dialed, Some(DialTarget::Seed(_)));
        self.joined = true;
        if let Some(target) = &dialed {
            self.dial.connected(now, target, Some(node));
        }
        if listen_port != 0 {
            let addr = SocketAddr::new(remote.ip(), listen_port);
            self.dial.learn(addr, Some(node), now);
        }
        self.neighbours.insert(
            conn,
            Neighbour {
                node,
                remote,
                seed,
                added: now,
                heard: now,
                closing: false,
                lets_us_go: false,
                direct_seq: 0,
                on_cycle: None,
                relayed: None,
                answers: Vec::new(),
                regreeted: None,
            },
        );
        self.greet(now, conn);
        self.graft_new_neighbour(now, conn);
        self.release_own(now);
    }

    /// A neighbour's connection ended. `cut`: it was cut for stalling (the
    /// reason text), so the mesh floods DOWN for it.
    pub fn neighbour_down(&mut self, now: Instant, conn: Conn, cut: Option<&str>) {
        let Some(gone) = self.neighbours.remove(&conn) else {
            return;
        };
        self.regraft(now, conn);
        if let Some(reason) = cut {
            self.report_down(now, gone.node, reason);
        }
        if !gone.closing && !gone.lets_us_go {
            self.dial_across(now, conn, gone.node);
        }
    }

    /// A neighbour's connection ended without a goodbye (EOF without BYE,
    /// a reset, an error): as [`Mesh::neighbour_down`], and the member is
    /// probed at its listen addresses (see `members.rs`, `probe`).
    pub fn neighbour_lost(&mut self, now: Instant, conn: Conn) {
        let lost = self
            .neighbours
            .get(&conn)
            .filter(|n| !n.closing && !n.lets_us_go)
            .map(|n| n.node);
        self.neighbour_down(now, conn, None);
        if let Some(node) = lost {
            self.probe(node);
        }
    }

    /// How the probe of `member` asked for with [`Action::Probe`] ended.
    pub fn probed(&mut self, now: Instant, member: NodeId, result: ProbeResult) {
        self.probe_ended(now, member, result);
        self.release_own(now);
    }

    /// The messages of MSG frames read from `conn` (one reference per
    /// entry), all inside `buf`.
    pub fn on_msgs(&mut self, now: Instant, conn: Conn, buf: &Bytes, msgs: &[MsgRef]) {
        self.heard_from(now, conn);
        self.relay(now, conn, buf, msgs);
    }

    /// A STATUS, DOWN, REPAIR, PRUNE, GRAFT, TOO_BIG or PEERS frame from
    /// `conn`; others are ignored.
    pub fn on_frame(&mut self, now: Instant, conn: Conn, frame: &Frame<'_>) {
        self.heard_from(now, conn);
        match frame {
            Frame::Status(status) => {
                self.heard_status_via(now, conn, status.member, status.status_seq);
                if status.flags & members::FLAG_ROUTED == 0 {
                    self.heard_flooded_status(conn, status.member, status.status_seq);
                }
                self.on_status(now, conn, status);
                self.heard_acks(conn, status);
            }
            Frame::Down {
                member,
                status_seq,
                hops,
                ttl,
                reason,
            } => self.on_down(now, conn, *member, *status_seq, *hops, *ttl, reason),
            Frame::Repair {
                origin,
                from_seq,
                to_seq,
            } => self.answer_repair(conn, *origin, *from_seq, *to_seq),
            Frame::Prune { origin } => self.tree.pruned_by(*origin, conn),
            Frame::TooBig { origin, seq, size } => self.too_big(*origin, *seq, *size),
            Frame::Graft {
                origin,
                from_seq,
                to_seq,
            } => self.on_graft(now, conn, *origin, *from_seq, *to_seq),
            Frame::Peers(entries) => {
                // Sent just before a neighbour lets us go: where to go next.
                let addrs: Vec<_> = entries.iter().map(|(n, a)| (Some(*n), *a)).collect();
                self.learned(now, &addrs);
                self.dial.prefer(entries.iter().map(|(_, a)| *a));
                if let Some(n) = self.neighbours.get_mut(&conn) {
                    n.lets_us_go = true;
                    let (node, seq) = (n.node, n.direct_seq);
                    let alternatives = entries.iter().map(|(_, a)| *a).collect();
                    self.watch_let_go(now, node, seq, alternatives);
                }
            }
            _ => {}
        }
        // Acknowledgements, or a member gone, may have made room.
        self.release_own(now);
    }

    /// Our own lines, already encoded by the stdin thread as MSG frames with
    /// seqs `first..=last`.
    pub fn local(&mut self, now: Instant, frames: &Bytes, first: u64, last: u64) {
        // They wait for room in the window (see `flow`).
        self.own.queue(frames, first, last);
        self.release_own(now);
    }

    /// Addresses learned outside the mesh (peer cache, discovery, PEERS).
    pub fn learned(&mut self, now: Instant, addrs: &[(Option<NodeId>, SocketAddr)]) {
        for (node, addr) in addrs {
            if *node != Some(self.cfg.id) {
                self.dial.learn(*addr, *node, now);
            }
        }
    }

    /// How a dial asked for with [`Action::Dial`] ended.
    pub fn dial_result(&mut self, now: Instant, target: &DialTarget, result: DialResult) {
        let neighbours = self.neighbours.len();
        self.dial
            .result(now, target, &result, neighbours, &mut self.rng);
        if let DialResult::Refused { alternatives } = &result {
            let addrs: Vec<_> = alternatives.iter().map(|(n, a)| (Some(*n), *a)).collect();
            self.learned(now, &addrs);
            if !alternatives.is_empty() {
                self.dial.prefer(alternatives.iter().map(|(_, a)| *a));
            }
        }
    }

    /// Time passes: keepalive STATUS, silence timeouts, repair, dialing.
    pub fn tick(&mut self, now: Instant) {
        self.last_tick = now;
        self.check_stuck(now);
        self.say_moved(now);
        if now >= self.next_keepalive {
            self.next_keepalive = now + self.cfg.keepalive;
            self.status_due = true;
            // The announcement members count our liveness by.
            self.flood_due = true;
        }
        self.maybe_send_status(now);
        if now >= self.next_scan {
            self.next_scan = now + (self.cfg.keepalive / 4).max(Duration::from_millis(10));
            self.find_silent(now);
            self.find_stalled(now);
            self.warn_refused_origins(now);
            self.log_other_lives(now);
            if let Some(more) = self.restarts.due(now) {
                log::info!(
                    "{} more members restarted (a new process under a member's id) since the \
                     last such line, not logged one by one",
                    more
                );
            }
            self.warn_shed(now);
        }
        self.check_holes(now);
        self.dial_tick(now);
        self.release_own(now);
    }

    /// When [`Mesh::tick`] next has something to do (at the latest).
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut at = self
            .next_keepalive
            .min(self.next_scan)
            .min(self.last_tick + TICK);
        if self.status_due {
            at = at.min(self.status_at());
        }
        Some(at)
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The router stopped (`true`) or went back to (`false`) taking frames
    /// from its neighbours, because its own stdout is blocked. Meanwhile
    /// members' STATUS frames wait unread in our own queues, so their
    /// silence is not counted: a member is down for silence only after 3 ×
    /// keepalive during which we were listening.
    pub fn inbound_held(&mut self, now: Instant, held: bool) {
        match (self.held_since, held) {
            (None, true) => self.held_since = Some(now),
            (Some(since), false) => {
                self.held_before += now.saturating_duration_since(since);
                self.held_since = None;
                // Only a long one: a short hold right after (stdout busy
                // with what the long one held back) must not hide it.
                if now.saturating_duration_since(since) >= self.cfg.stall_timeout / 2 {
                    self.last_hold = Some((since, now));
                }
            }
            _ => {}
        }
    }

    /// How long the router has held back its neighbours' frames in all
    /// (its stdout blocked, or the process stopped), up to `now`.
    pub fn held_back_in_all(&self, now: Instant) -> Duration {
        self.held_before
            + self
                .held_since
                .map_or(Duration::ZERO, |since| now.saturating_duration_since(since))
    }

    /// How long the router held back its neighbours' frames (its stdout
    /// blocked, or the process stopped), if that lasted half a stall
    /// timeout or more and is going on or ended less than a stall timeout
    /// ago: long enough for a neighbour to cut us as stalled. A link that
    /// ends without a goodbye then most likely ended so, and the log says
    /// it (a node cut that way did not learn why: attack13 F3).
    pub fn held_back_lately(&self, now: Instant) -> Option<Duration> {
        let stall = self.cfg.stall_timeout;
        let held = match (self.held_since, self.last_hold) {
            (Some(since), _) => now.saturating_duration_since(since),
            (None, Some((since, until))) if now.saturating_duration_since(until) <= stall => {
                until.saturating_duration_since(since)
            }
            _ => return None,
        };
        (held >= stall / 2).then_some(held)
    }

    /// From now on our acknowledgements say what [`Mesh::printed`] reports
    /// as written out, not what was handed over in `Deliver`: a line
    /// waiting for a blocked stdout is not delivered yet, and would be lost
    /// if this node stopped then (the node turns this on; the simulator
    /// and most tests acknowledge on delivery). Turned on before any line
    /// arrives: origins already known keep acknowledging on delivery.
    pub fn acknowledge_printed_only(&mut self) {
        self.ack_printed = true;
        self.origins.printing = true;
    }

    /// The caller wrote out `origin`'s lines up to `seq`s (counting
    /// `bytes` against their origins' windows in all, [`Delivery::cost`]):
    /// acknowledgements advance.
    pub fn printed(
        &mut self,
        now: Instant,
        seqs: impl IntoIterator<Item = (NodeId, u64)>,
        bytes: usize,
    ) {
        for (origin, seq) in seqs {
            if let Some(o) = self.origins.get_mut(origin) {
                if o.print_to(seq) {
                    self.status_due = true;
                    self.last_printed = Some(now);
                }
            }
        }
        if self.ack_printed {
            self.unacked_delivered += bytes;
        }
        self.maybe_send_status(now);
    }

    /// Whether [`Mesh::inbound_held`] said the router holds frames back.
    pub fn is_inbound_held(&self) -> bool {
        self.held_since.is_some()
    }

    /// `now` on the clock silence is measured by: real time less the time
    /// the router held back frames from neighbours.
    fn silence_clock(&self, now: Instant) -> Instant {
        now.checked_sub(self.held_back_in_all(now)).unwrap_or(now)
    }

    /// Bytes of our own lines that may be read now.
    pub fn window_room(&self) -> usize {
        self.own.room()
    }

    /// Lines read from stdin that wait for room in the window.
    pub fn waiting_lines(&self) -> u64 {
        self.own.waiting()
    }

    /// Whether a neighbour was ever up (members may know our STATUS).
    pub fn has_joined(&self) -> bool {
        self.joined
    }

    /// How many neighbours the mesh has: our lines go nowhere without one.
    pub fn neighbour_count(&self) -> usize {
        self.neighbours.len()
    }

    /// Our STATUS frames count from `first` on (the router passes the
    /// nanoseconds since the epoch as it greets its first neighbour,
    /// [`Mesh::has_joined`]): a node restarted under the same id
    /// (`--key`) must announce newer STATUS frames than its last life did,
    /// or every member takes them for old ones, ignores them and keeps it
    /// down until it forgets that life (about 20 s: attack20, its lines
    /// meanwhile printed in slices between gaps). (Which process a STATUS
    /// is from, its life says, since protocol version 7.)
    pub fn count_status_from(&mut self, first: u64) {
        self.own.status_seq = self.own.status_seq.max(first);
        self.own.first_status_seq = self.own.status_seq;
    }

    /// Another process uses our id (the same `--key` on two machines, or
    /// a restart that did not wait for the old process): what we know of
    /// it. Members cannot tell its lines and acknowledgements from ours,
    /// so no delivery we count can be trusted.
    pub fn id_conflict(&self) -> Option<&str> {
        self.id_conflict.as_deref()
    }

    /// A STATUS under our id from before our first came, not a goodbye,
    /// and too recently to tell whether its process still runs: a live
    /// one announces itself again within a keepalive. A node leaving at
    /// the end of stdin waits that out, so that it does not exit 0 while
    /// a process started before it sends lines under our id (the newer
    /// process learns of the older one only this way).
    pub fn id_in_doubt(&self, now: Instant) -> bool {
        self.id_conflict.is_none()
            && self.foreign_status.is_some_and(|(_, first_seen)| {
                now < first_seen + self.cfg.keepalive + members::ID_CONFLICT_AFTER
            })
    }

    /// Lifts the member table's cap ([`MAX_MEMBERS`] live members) to
    /// `cap`: only for simulated groups larger than a node accepts.
    #[doc(hidden)]
    pub fn set_member_cap(&mut self, cap: usize) {
        self.members.set_cap(cap);
    }

    /// Other live members, not counting ourselves.
    pub fn live_members(&self) -> usize {
        self.members.live()
    }

    pub fn member_name(&self, id: NodeId) -> Option<&str> {
        if id == self.cfg.id {
            return Some(&self.cfg.name);
        }
        self.members.get(&id).map(|m| m.name.as_str())
    }

    /// Up to `n` members' addresses to hand a refused dialer.
    pub fn alternatives(&self, n: usize) -> Vec<(NodeId, SocketAddr)> {
        let mut all = self.live_addrs();
        // Neighbours' neighbours are spread best by taking a random sample.
        let mut rng = Rng::new(self.own.last_seq ^ self.cfg.id ^ all.len() as u64);
        let mut out = Vec::new();
        while out.len() < n && !all.is_empty() {
            out.push(all.swap_remove(rng.below(all.len())));
        }
        out
    }

    /// Every member address we know, for `--peer-cache`, but those a dial
    /// found to be this node (an earlier run's, under its id then): live
    /// members first, since the cache keeps the first ones
    /// (`peer_cache::MAX_ENTRIES`), then members down or gone, which may
    /// come back at their address.
    pub fn known_addrs(&self) -> Vec<(NodeId, SocketAddr)> {
        let mut known: Vec<(bool, NodeId, SocketAddr)> = self
            .members
            .iter()
            .flat_map(|(id, m)| m.dialable().map(move |a| (!m.up, *id, a)))
            .filter(|(_, _, a)| !self.dial.is_myself(a))
            .collect();
        known.sort_by_key(|(down, _, _)| *down);
        known.into_iter().map(|(_, id, a)| (id, a)).collect()
    }

    /// Every owed line acknowledged by every owing member, or it is down.
    pub fn eof_settled(&self) -> bool {
        self.own.waiting() == 0 && self.members.values().all(|m| m.settled(self.own.last_seq))
    }

    /// Per member: what it owed, got and lost of our lines.
    pub fn books(&self) -> Vec<MemberBooks> {
        let last = self.own.last_seq;
        let mut books: Vec<MemberBooks> = self
            .members
            .iter()
            .flat_map(|(id, m)| m.lives.iter().cloned().chain(m.books(*id, last)))
            .collect();
        if self.members.forgotten_lost > 0 {
            // Members forgotten to make room (see MAX_MEMBERS) keep their
            // losses on the books, summed.
            // What they missed is not acknowledged: 0 of that many.
            books.push(MemberBooks {
                id: 0,
                name: format!("{} forgotten members", self.members.forgotten),
                owed: 0..self.members.forgotten_lost,
                delivered: 0,
                lost: 0,
                down: Some("forgotten: the member table was full".to_owned()),
                stalled: false,
                before_up: 0,
                printed_before_up: 0,
                after_down: 0,
            });
        }
        books
    }

    /// Bytes held back and cached for all origins: bounded by the window
    /// per origin.
    pub fn footprint(&self) -> usize {
        self.origins.iter().map(|(_, o)| o.footprint()).sum()
    }

    /// Bytes of memory held back and cached messages take, for all
    /// origins: bounded by [`origin::memory_budget`] (plus a batch).
    pub fn memory(&self) -> usize {
        self.origins.iter().map(|(_, o)| o.memory()).sum()
    }

    /// Keeps what origins hold back and cache within the node-wide bound
    /// ([`origin::Origins::shed_to`]).
    fn keep_memory(&mut self) {
        let budget = origin::memory_budget(self.cfg.window);
        let kept = relay::kept_origins(&self.members, self.cfg.id);
        let shed = self.origins.shed_to(budget, self.cfg.id, kept);
        self.shed.merge(shed);
    }

    /// At most every [`REFUSAL_LOG_EVERY`]: what was dropped to keep
    /// within the node-wide bound. A warning when it cost something (held
    /// messages to repair again, or lines of senders no member announced:
    /// a stranger inventing senders?); members' oldest cached lines going
    /// is only a debug line: many members sending at full speed at once
    /// do that, and their origins still hold every line a member lacks.
    fn warn_shed(&mut self, now: Instant) {
        let due = self.shed_warned.map_or(true, |at| {
            now.saturating_duration_since(at) >= REFUSAL_LOG_EVERY
        });
        if self.shed.bytes == 0 || !due {
            return;
        }
        let shed = std::mem::take(&mut self.shed);
        self.shed_warned = Some(now);
        let line = format!(
            "over the node-wide bound of {} MiB ({} windows) of other senders' lines: dropped \
             {} KiB, {} cached for repairs, {} held back (to be repaired again), {} of \
             senders no member announced",
            origin::memory_budget(self.cfg.window) >> 20,
            origin::MEMORY_WINDOWS,
            shed.bytes / 1024,
            crate::books::plural(shed.cached, "message"),
            shed.held,
            shed.unannounced,
        );
        if shed.held > 0 || shed.unannounced > 0 {
            log::warn!("{line}");
        } else {
            log::debug!("{line}");
        }
    }

    /// When the due STATUS may go out: soon when acks are urgent (a
    /// quarter of a window delivered), once traffic pauses, and at the
    /// latest [`Mesh::status_lazy`] after the last one.
    fn status_at(&self) -> Instant {
        let Some(last) = self.last_status else {
            return self.last_tick;
        };
        let earliest = last + STATUS_GAP;
        if self.acks_urgent() {
            return earliest;
        }
        (self.last_activity + STATUS_QUIET)
            .min(last + self.status_lazy())
            .max(earliest)
    }

    /// The longest a due STATUS waits while lines stream: [`STATUS_LAZY`],
    /// or a quarter of the stall timeout if that is less. A STATUS showing
    /// that a member prints is what keeps its links from being cut as
    /// stalled while it reads slowly (`Action::Reading`): at
    /// `--stall-timeout 1` one a second left no margin.
    fn status_lazy(&self) -> Duration {
        STATUS_LAZY.min(self.cfg.stall_timeout / 4)
    }

    /// At most every [`REFUSAL_LOG_EVERY`]: how many messages from origins
    /// no member announced were dropped (`Origins::admit`).
    fn warn_refused_origins(&mut self, now: Instant) {
        let Some(dropped) = self.refused_origin_msgs.due(now) else {
            return;
        };
        log::warn!(
            "dropped {} from senders no member announced: this node keeps the state of \
             {} senders, all taken by such (a stranger inventing senders?)",
            crate::books::plural(dropped, "message"),
            origin::MAX_ORIGINS
        );
    }

    /// At most every [`REFUSAL_LOG_EVERY`]: how many messages of another
    /// life than their origin's were dropped ([`origin::Origin::of_life`]).
    fn log_other_lives(&mut self, now: Instant) {
        let Some(dropped) = self.other_life_msgs.due(now) else {
            return;
        };
        log::info!(
            "dropped {} of another process under a member's id than the one it announces \
             (an earlier life still on its way, or a newer one not yet announced)",
            crate::books::plural(dropped, "message"),
        );
    }

    /// A quarter of a window delivered since our last STATUS: the origins
    /// may be waiting for our acknowledgements.
    fn acks_urgent(&self) -> bool {
        self.unacked_delivered >= self.cfg.window / 4
    }

    fn heard_from(&mut self, now: Instant, conn: Conn) {
        if let Some(n) = self.neighbours.get_mut(&conn) {
            n.heard = now;
        }
    }

    fn push(&mut self, action: Action) {
        self.actions.push_back(action);
    }

    /// Sends `frames` to every neighbour but `except`.
    fn broadcast(&mut self, frames: &Bytes, msgs: u64, except: Option<Conn>) {
        for &conn in self.neighbours.keys() {
            if Some(conn) != except {
                self.actions.push_back(Action::Send {
                    to: conn,
                    frames: frames.clone(),
                    msgs,
                });
            }
        }
    }

    /// A flooded STATUS goes on every link but `except` that neither end
    /// is closing: a STATUS that crossed a link being trimmed could tell a
    /// node let go elsewhere at the same moment that it is still in the
    /// group when the two trims together split it (see `dial.rs`, `LetGo`).
    fn flood_status(&mut self, frames: &Bytes, except: Option<Conn>) {
        let to: Vec<Conn> = self
            .neighbours
            .iter()
            .filter(|(&conn, n)| Some(conn) != except && !n.ending())
            .map(|(&conn, _)| conn)
            .collect();
        self.send_each(&to, frames, 0);
    }

    /// Sends `frames` to each of the neighbours `to`.
    fn send_each(&mut self, to: &[Conn], frames: &Bytes, msgs: u64) {
        for &conn in to {
            self.actions.push_back(Action::Send {
                to: conn,
                frames: frames.clone(),
                msgs,
            });
        }
    }

    /// Whether one of our links goes to `node`.
    fn linked_to(&self, node: NodeId) -> bool {
        self.neighbours.values().any(|n| n.node == node)
    }

    fn live_addrs(&self) -> Vec<(NodeId, SocketAddr)> {
        self.members
            .iter()
            .filter(|(_, m)| m.is_live())
            .flat_map(|(id, m)| m.dialable().map(move |a| (*id, a)))
            .collect()
    }
}
