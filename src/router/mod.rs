//! The router: the one thread that owns the peer table and drives the mesh
//! state machine.
//!
//! It waits on all of its inputs at once and never blocks on an output:
//! outboxes always take a push (and say when they are over their high-water
//! mark), and output for stdout that does not fit in its queue waits in a
//! backlog while the router stops taking received frames. So a slow peer
//! slows only stdin, and a slow stdout slows only the peers' senders.
//!
//! A connection becomes a peer (a *neighbour* of the mesh) in two steps.
//! When its HELLO has arrived the router *admits* it (ACCEPT goes out) or
//! *refuses* it (PEERS with other members to try, then BYE); the peer counts
//! once the other side's ACCEPT has arrived too. Then every frame it sends
//! goes to the [`Mesh`], and every [`Action`](crate::mesh::Action) the mesh
//! returns is carried out here: frames into outboxes, messages onto stdout,
//! dials to the dialer, polite closes.
//!
//! Layout: this file has the loop, its timers and the end; `peers` the
//! peer table (admission, duplicates, up and down); `group` the mesh's
//! inputs and actions, the stdin gate and `--exit-on-eof`; `stdout` the
//! output backlog.

mod group;
mod peers;
mod stdout;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Select, Sender};

use crate::books::{missed, plural, Books, Totals};
use crate::dialer::Dialer;
use crate::discovery::Found;
use crate::event::{ConnId, Event, Inbound, Output};
use crate::frame::NodeId;
use crate::mesh::{DialTarget, Mesh, MeshConfig};
use crate::node::Node;
use crate::outbox::Close;
use crate::ratelog;
use crate::shutdown::{Cause, Never};
use crate::stdio::{Chunk, StdinGate};

use peers::Entry;

/// How long a node stopping on a signal waits for its peers to take what is
/// queued for them and close politely.
pub const FLUSH_DEADLINE: Duration = Duration::from_secs(2);
/// How long a node stopped by a signal waits for the group to acknowledge
/// its lines and for the lines on their way to it to be printed, before it
/// leaves anyway (see `Router::begin_stop`).
const SETTLE_WAIT: Duration = Duration::from_secs(2);
/// How often `--peer-cache` is written while the node runs.
const CACHE_EVERY: Duration = Duration::from_secs(10);
/// How many closed connections' names are kept for `via` (see
/// `Router::closed_names`): a held message waits at most `--stall-timeout`.
const CLOSED_NAMES: usize = 256;
/// How soon it is written after a member comes up: a node killed a few
/// seconds after joining still finds the group again.
const CACHE_SOON: Duration = Duration::from_secs(1);
/// After a stop (SIGSTOP, a starved process), how long stdin waits while
/// the readers hand over what neighbours sent meanwhile: lines read first
/// went to members whose goodbye sat unread in our socket buffers, and
/// were booked as lost to them (attack23 F4).
const RESUMED_READS: Duration = Duration::from_millis(500);
/// The most "peer up" lines logged per 10 s for peers that dialed us: in an
/// open group a stranger completes a handshake per connection, and each
/// was a line (attack44 F3: 773 in 8 s). The JSON events are not limited.
const PEER_UP_LINES: u64 = 64;
/// The most "member up" and "member down" lines logged per 10 s: in an
/// open group a stranger can announce (and let expire) a member per
/// STATUS frame, about 2,000 lines per 15 s before this limit. A group
/// of a hundred members starting at once still shows every line; the
/// JSON events are not limited.
const MEMBER_LINES: u64 = 128;

/// How the router's run ended: the outcome, and the summary lines the
/// node logs last, after what its stdout thread did at exit (lines it
/// did not take), so that the summary is the last word before `stopped`.
pub struct Finished {
    pub outcome: Outcome,
    pub summary: Vec<(log::Level, String)>,
}

/// How the node's run ended, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every line read reached every member that was owed it (or the node
    /// was not asked to deliver: it stopped on a signal).
    Complete,
    /// Under `--exit-on-eof`: some member missed lines; the summary says who.
    Incomplete,
    /// `--connect-timeout` passed before enough peers connected.
    NoPeers,
}

/// The router's channels and handles to the other threads.
pub struct Wiring {
    pub events: Receiver<Event>,
    pub inbound: Receiver<Inbound>,
    pub stdin: Receiver<Chunk>,
    /// Members found by `--discover`.
    pub found: Receiver<Found>,
    pub stdout: Sender<Output>,
    pub gate: Arc<StdinGate>,
    /// The connection manager, which carries out the mesh's dials.
    pub dialer: Dialer<DialTarget>,
}

pub struct Router {
    node: Arc<Node>,
    events: Receiver<Event>,
    inbound: Receiver<Inbound>,
    stdin: Receiver<Chunk>,
    /// `None` once discovery is known to be off or stopped.
    found: Option<Receiver<Found>>,
    stdout: Sender<Output>,
    gate: Arc<StdinGate>,
    dialer: Dialer<DialTarget>,
    mesh: Mesh,
    /// Peers and members needed before stdin is read for the first time
    /// (`--wait-peers`, at least one, and `--wait-members`); `None` once
    /// they were there.
    first: Option<(usize, usize)>,
    peers: HashMap<ConnId, Entry>,
    /// The one connection that stands for each admitted node.
    by_node: HashMap<NodeId, ConnId>,
    /// Nodes announced as up (peer_up printed), to announce each once.
    announced: HashSet<NodeId>,
    /// Peers that have been up, ever.
    announced_any: u64,
    /// The "peer up" lines of peers that dialed us ([`PEER_UP_LINES`]).
    peer_up_lines: ratelog::Burst,
    /// The "member up" and "member down" lines ([`MEMBER_LINES`]).
    member_lines: ratelog::Burst,
    /// Connections held back until the one they replace is gone.
    successors: HashMap<ConnId, ConnId>,
    /// Connections whose outbox is over its high-water mark.
    full: HashSet<ConnId>,
    /// Members' names, for printing what they sent.
    names: HashMap<NodeId, Arc<str>>,
    /// The names of the last [`CLOSED_NAMES`] connections that closed: a
    /// message held back (waiting for an earlier one) that one of them
    /// brought still names it as `via` when it is released.
    closed_names: VecDeque<(ConnId, Arc<str>)>,
    /// Members the mesh announced as up and not yet as down.
    members: HashSet<NodeId>,
    backlog: VecDeque<Output>,
    events_in_backlog: usize,
    events_not_printed: u64,
    /// Peers whose peer_up was not printed (their peer_down will not be).
    unprinted_ups: HashSet<NodeId>,
    stdin_open: bool,
    /// Lines a read already under way brought in while no peer was up: they
    /// wait for the next peer (a member that joins later is owed only lines
    /// sent after it came).
    unsent: Option<Chunk>,
    /// stdin ended under `--exit-on-eof`: stop once the group has every line.
    eof_pending: bool,
    /// Every line of ours is acknowledged: we leave once we have printed
    /// what the group sent us, or at this deadline (see `check_eof`).
    leave_by: Option<Instant>,
    /// We stopped printing to leave (at the end of stdin, or on a signal):
    /// until our stdout thread has written out what it was handed, or this
    /// deadline, our leaving STATUS waits (see `Router::drain_to_leave`).
    drain_by: Option<Instant>,
    /// When we stopped printing to leave, and whether a stdout that still
    /// moves (slowly) may push `drain_by` on, up to `--stall-timeout`
    /// later (at the end of stdin, not on a signal).
    drain_since: Option<(Instant, bool)>,
    /// How long our links had waited unread behind our stdout in all when
    /// stdin ended (`--exit-on-eof`).
    held_at_eof: Option<Duration>,
    /// At the end of stdin our stdout was stuck or behind: we stopped
    /// waiting for acknowledgements before we leave (`check_eof`).
    eof_gave_up: bool,
    /// Our leaving STATUS went out.
    left: bool,
    /// Stopping on a signal: until then we wait for the group to
    /// acknowledge our lines and for what it sent us to be printed, before
    /// we leave (see `settle`).
    settle_by: Option<Instant>,
    /// Woken long after we slept to (a stop, a starved process): stdin is
    /// read again only from here on, so that what neighbours sent meanwhile
    /// (a member's goodbye among it) is read first ([`RESUMED_READS`]).
    stdin_after: Option<Instant>,
    /// When the last wait for work ended (`next_step`).
    woke: Instant,
    /// Seeds whose failures were logged as warnings since they last
    /// worked, with whether the failure said this node cannot join there
    /// (each kind is warned about once).
    seeds_warned: HashSet<(usize, bool)>,
    /// A node with no PEER said that its peer cache's members do not answer.
    cache_warned: bool,
    stopping: bool,
    deadline: Option<Instant>,
    connect_deadline: Option<Instant>,
    next_stats: Option<Instant>,
    next_cache: Option<Instant>,
    /// Writing `--peer-cache` failed last time (logged once).
    cache_failing: bool,
    /// When to log the counts of rate-limited warnings whose window ended.
    next_flush: Instant,
    outcome: Outcome,
    books: Books,
}

/// One turn of the loop: what arrived.
enum Step {
    Event(Event),
    Inbound(Inbound),
    Stdin(Option<Chunk>),
    Printed,
    /// Nothing to do (a channel that closed for good was dropped).
    Idle,
    Stop,
    Hurry,
    Timer,
}

/// The mesh's settings from the node's.
pub fn mesh_config(node: &Node, advertise: Option<SocketAddr>) -> MeshConfig {
    let config = &node.config;
    MeshConfig {
        id: node.id,
        life: node.life,
        name: config.name.clone(),
        listen_port: node.listen_port,
        advertise,
        ttl: config.ttl,
        relay: config.relay,
        degree: config.degree,
        max_peers: config.max_peers,
        window: config.window,
        max_frame: config.max_frame,
        keepalive: config.keepalive,
        stall_timeout: config.stall_timeout,
        seeds: config.peers.len(),
        rng_seed: crate::node::random_u64(),
    }
}

impl Router {
    pub fn new(node: Arc<Node>, mesh: Mesh, wiring: Wiring) -> Self {
        let now = Instant::now();
        let config = &node.config;
        Router {
            first: Some((config.wait_peers.max(1), config.wait_members)),
            connect_deadline: config.connect_timeout.map(|t| now + t),
            next_stats: config.stats.map(|t| now + t),
            next_cache: config.peer_cache.as_ref().map(|_| now + CACHE_EVERY),
            cache_failing: false,
            next_flush: now + ratelog::WINDOW,
            node,
            mesh,
            events: wiring.events,
            inbound: wiring.inbound,
            stdin: wiring.stdin,
            found: Some(wiring.found),
            stdout: wiring.stdout,
            gate: wiring.gate,
            dialer: wiring.dialer,
            peers: HashMap::new(),
            by_node: HashMap::new(),
            announced: HashSet::new(),
            announced_any: 0,
            peer_up_lines: ratelog::Burst::new("peers up that dialed us", PEER_UP_LINES),
            member_lines: ratelog::Burst::new("members up or down", MEMBER_LINES),
            successors: HashMap::new(),
            full: HashSet::new(),
            names: HashMap::new(),
            closed_names: VecDeque::new(),
            members: HashSet::new(),
            backlog: VecDeque::new(),
            events_in_backlog: 0,
            events_not_printed: 0,
            unprinted_ups: HashSet::new(),
            stdin_open: true,
            unsent: None,
            eof_pending: false,
            leave_by: None,
            settle_by: None,
            stdin_after: None,
            woke: Instant::now(),
            drain_by: None,
            drain_since: None,
            held_at_eof: None,
            eof_gave_up: false,
            left: false,
            seeds_warned: HashSet::new(),
            cache_warned: false,
            stopping: false,
            deadline: None,
            outcome: Outcome::Complete,
            books: Books::default(),
        }
    }

    /// Routes until the node has stopped and every peer is closed (or the
    /// flush deadline has passed); returns the outcome and the summary
    /// lines, which the node logs last.
    pub fn run(mut self) -> Finished {
        let stop = self.node.shutdown.stopping();
        let hurry = self.node.shutdown.hurrying();
        // The mesh dials the command-line PEERs on its first tick.
        self.mesh.tick(Instant::now());
        self.drain_actions();
        while !(self.stopping && self.peers.is_empty()) {
            match self.next_step(&stop, &hurry) {
                Step::Event(event) => self.on_event(event),
                Step::Inbound(batch) => self.on_inbound(batch),
                Step::Stdin(Some(chunk)) => self.on_stdin(chunk),
                Step::Stdin(None) => self.stdin_ended(),
                Step::Printed | Step::Idle => {}
                Step::Stop => self.begin_stop(),
                // A signal readies both at once, and a select picks either:
                // the stop goes first, or a hurry's deadline could expire
                // while the stop waited for acknowledgements, and the node
                // closed its links with no goodbye (attack43 F2).
                Step::Hurry if self.stop_pending() => self.begin_stop(),
                Step::Hurry => self.hurry(),
                Step::Timer => {
                    if self.on_timer() {
                        break;
                    }
                }
            }
            // While outputs wait for stdout, frames from neighbours wait
            // unread (next_step): the mesh stops counting their silence.
            let held = !self.backlog.is_empty() && !self.mesh.printing_stopped();
            if held != self.mesh.is_inbound_held() {
                log::debug!(
                    "{}",
                    if held {
                        "stdout is blocked: frames from peers wait unread"
                    } else {
                        "stdout takes output again: reading frames from peers"
                    }
                );
                self.mesh.inbound_held(Instant::now(), held);
            }
            // Lines handed to stdout and not yet written out: a stdout
            // that takes none of them for --stall-timeout is stuck.
            let written = self.node.printed.written.load(Ordering::Relaxed);
            let waiting = held || self.books.delivered > written;
            if waiting != self.mesh.is_output_waiting() {
                self.mesh.output_waiting(Instant::now(), waiting);
            }
            // Stopping at the end of stdin has no deadline of its own
            // (our peers close at once), but a link's end waits behind
            // stdout (`finish_down`): a stuck stdout gets one, or the node
            // never exited (attack26 F2).
            if self.stopping && self.deadline.is_none() && self.mesh.is_output_stuck() {
                log::info!("stdout is stuck: closing the connections within 2s");
                self.hurry();
            }
            // Whatever woke us: the turn of the readers after a stop may
            // be over (busy links may leave no turn to the timer).
            self.resumed_reads_done();
            self.drain_actions();
            self.settle();
        }
        self.gate.shut();
        self.finish()
    }

    fn next_step(&mut self, stop: &Receiver<Never>, hurry: &Receiver<Never>) -> Step {
        // Stopped while it worked, not while it waited (the wait below
        // only sees a stop that began in it): the last turn took over a
        // second. Under load a SIGSTOP landed there often enough that a
        // node cut meanwhile did not say why (a CI run).
        let turn_began = self.woke;
        note_stop(
            &mut self.mesh,
            &mut self.woke,
            &mut self.stdin_after,
            turn_began,
        );
        let mut sel = Select::new();
        let events = sel.recv(&self.events);
        let found = match &self.found {
            Some(found) => sel.recv(found),
            None => usize::MAX,
        };
        // Frames wait while outputs wait for stdout, unless we stopped
        // printing to leave: then what they bring adds nothing to the
        // backlog but events (bounded), and the acknowledgements of our
        // lines and our neighbours' goodbyes among them come at once,
        // not at the pace of a slow stdout (attack27 F1).
        let reads = self.backlog.is_empty() || self.mesh.printing_stopped();
        let inbound = match reads {
            true => sel.recv(&self.inbound),
            false => usize::MAX,
        };
        let printed = match self.backlog.is_empty() {
            true => usize::MAX,
            false => sel.send(&self.stdout),
        };
        // With the gate shut, stdin is watched only for its end: a chunk can
        // still slip in (the stdin thread's one-byte look ahead, or a read
        // under way when the last peer left), and then waits in `unsent`.
        // Stdin waits for a neighbour's queue to drain: more of our lines
        // are coming, which our STATUS says (`FLAG_SENDING`).
        self.mesh
            .stdin_held_by_queues(self.stdin_open && !self.full.is_empty());
        let now = Instant::now();
        let resumed = self.stdin_after.is_some_and(|at| at > now);
        let takes_stdin = self.stdin_open
            && !resumed
            && !self.stopping
            && self.settle_by.is_none()
            && self.full.is_empty()
            && (self.gate.is_open() || self.stdin.is_empty())
            && self.unsent.is_none();
        let stdin = if takes_stdin {
            sel.recv(&self.stdin)
        } else {
            usize::MAX
        };
        let stop_i = if self.stopping || self.settle_by.is_some() {
            usize::MAX
        } else {
            sel.recv(stop)
        };
        // A signal makes the stop hurry, but while it settles (bounded by
        // `settle_by`) the hurry waits for it.
        let hurry_i = if self.deadline.is_some() || self.settle_by.is_some() {
            usize::MAX
        } else {
            sel.recv(hurry)
        };
        let timer = [
            self.stdin_after.filter(|at| *at > now),
            self.deadline,
            self.connect_deadline,
            self.next_stats,
            self.next_cache,
            Some(self.next_flush),
            self.mesh.next_deadline(),
            self.unannounced_until(),
            // Past it, we may still wait for members sending: the mesh's
            // ticks wake us for that (a past deadline here made the loop
            // spin, see below).
            self.leave_by.filter(|at| *at > now),
            self.drain_by,
            // Past it, we wait for stdout to drain: `drain_by` wakes us.
            self.settle_by.filter(|at| *at > now),
        ]
        .into_iter()
        .flatten()
        .min();
        let oper = match timer {
            Some(at) => {
                // A deadline already past is no sleep: measured from it,
                // every turn of the loop looked like a stop of the process,
                // and the mesh's silence clock went back by that much each
                // time (while a node leaving at the end of stdin waited
                // past `leave_by` for a member still sending, the loop
                // spun, and members stalled for 2 x --stall-timeout were
                // "printing again": the node never exited, attack17 F7).
                let oper = sel.select_deadline(at);
                let due = at.max(now);
                note_stop(&mut self.mesh, &mut self.woke, &mut self.stdin_after, due);
                match oper {
                    Ok(oper) => oper,
                    Err(_) => return Step::Timer,
                }
            }
            None => {
                let oper = sel.select();
                self.woke = Instant::now();
                oper
            }
        };
        match oper.index() {
            i if i == events => {
                Step::Event(oper.recv(&self.events).expect("the node holds a sender"))
            }
            i if i == found => match oper.recv(self.found.as_ref().expect("registered")) {
                Ok(found) => Step::Event(Event::Learned(vec![(Some(found.id), found.addr)])),
                Err(_) => {
                    // Discovery is off or stopped: nothing more will come.
                    self.found = None;
                    Step::Idle
                }
            },
            i if i == inbound => {
                Step::Inbound(oper.recv(&self.inbound).expect("the node holds a sender"))
            }
            i if i == printed => {
                let output = self.backlog.pop_front().expect("a backlog");
                if !matches!(output, Output::Msgs(_)) {
                    self.events_in_backlog -= 1;
                }
                // A closed stdout has already stopped the node; drop the output.
                let _ = oper.send(&self.stdout, output);
                self.backlog_sent();
                Step::Printed
            }
            i if i == stdin => Step::Stdin(oper.recv(&self.stdin).ok()),
            i if i == stop_i => {
                let _ = oper.recv(stop);
                Step::Stop
            }
            i if i == hurry_i => {
                let _ = oper.recv(hurry);
                Step::Hurry
            }
            _ => unreachable!("an operation nobody registered"),
        }
    }

    /// `--connect-timeout` passed while stdin waited for peers: before any
    /// peer came (exit 1), or under `--exit-on-eof` after the last peer left
    /// with lines not yet delivered (exit 3).
    fn give_up_waiting(&mut self) {
        let secs = self
            .node
            .config
            .connect_timeout
            .unwrap_or_default()
            .as_secs();
        if self.announced_any == 0 || self.first.is_some() {
            let (peers, members) = self.first.unwrap_or((1, 0));
            // Name the wait that was not met: members when it waited for
            // members (a peer may have come and gone meanwhile), else peers.
            let what = if members > 0 && self.announced_any > 0 {
                format!(
                    "{} of {members} members (--wait-members) known",
                    self.mesh.live_members()
                )
            } else if self.announced_any == 0 && peers == 1 {
                "no peer connected".to_owned()
            } else if self.live_peers() < peers {
                format!(
                    "{} of {peers} peers (--wait-peers) connected",
                    self.live_peers()
                )
            } else {
                format!(
                    "{} of {members} members (--wait-members) known",
                    self.mesh.live_members()
                )
            };
            log::error!("{what} within {secs}s (--connect-timeout); giving up");
            self.outcome = Outcome::NoPeers;
        } else {
            log::error!(
                "no peer connected for {secs}s (--connect-timeout); giving up {}",
                if self.stdin_open {
                    "before the end of stdin"
                } else {
                    "before every line was acknowledged"
                }
            );
            self.outcome = Outcome::Incomplete;
        }
        self.node.shutdown.trigger(Cause::NoPeers);
    }

    /// Handles whichever timers are due; true if the router must stop now.
    fn on_timer(&mut self) -> bool {
        let now = Instant::now();
        if self.mesh.next_deadline().is_some_and(|at| at <= now) {
            self.mesh.tick(now);
        }
        if self.next_flush <= now {
            self.next_flush = now + ratelog::WINDOW;
            ratelog::flush();
            self.peer_up_lines.roll(now);
            self.member_lines.roll(now);
        }
        if self.next_stats.is_some_and(|at| at <= now) {
            self.log_stats();
        }
        if self.next_cache.is_some_and(|at| at <= now) {
            self.next_cache = Some(now + CACHE_EVERY);
            self.save_peer_cache();
        }
        if self.connect_deadline.is_some_and(|at| at <= now) {
            self.connect_deadline = None;
            self.give_up_waiting();
        }
        if self.deadline.is_some_and(|at| at <= now) {
            if self.peers.is_empty() {
                return true;
            }
            log::warn!(
                "{} did not close within {}s; closing them anyway",
                plural(self.peers.len() as u64, "connection"),
                FLUSH_DEADLINE.as_secs()
            );
            return true;
        }
        false
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Admit {
                info,
                outbox,
                dialed,
                gate,
                handover,
            } => self.admit(info, outbox, dialed, gate, handover),
            Event::Accepted { conn } => self.peer_up(conn),
            Event::Bye { conn, reason } => self.peer_bye(conn, &reason),
            Event::Down {
                conn,
                ending,
                batches,
            } => {
                if let Some(entry) = self.peers.get_mut(&conn) {
                    entry.closing = true;
                    entry.down = Some((ending, batches));
                    self.full.remove(&conn);
                    self.finish_down(conn);
                }
            }
            Event::Drained { conn } => {
                self.full.remove(&conn);
            }
            Event::DialFailed {
                target,
                reason,
                kind,
            } => self.dial_failed(target, reason, kind),
            Event::Learned(addrs) => self.mesh.learned(Instant::now(), &addrs),
            Event::Probed { member, result } => {
                if result != crate::mesh::ProbeResult::Refused {
                    log::info!(
                        "member {} ({member:016x}): its link ended without a goodbye, but its \
                         address {}: down only if it falls silent",
                        self.name_of(member),
                        match result {
                            crate::mesh::ProbeResult::Answered => "still answers",
                            _ => "did not answer within 1s",
                        }
                    );
                }
                self.mesh.probed(Instant::now(), member, result)
            }
            Event::Printed => {
                let now = Instant::now();
                let (seqs, bytes) = self.node.printed.take();
                if self.node.printed.take_moved() {
                    self.mesh.output_moved(now);
                }
                self.mesh.printed(now, seqs, bytes);
            }
        }
    }

    /// A stop was asked for. On a signal, or our stdout closed, while our
    /// lines are not all acknowledged, we first wait for that (at most
    /// [`SETTLE_WAIT`], reading no more stdin): a sender stopped
    /// mid-transfer then says what the group got (summary and exit code),
    /// not what was still on its way at the instant of the stop (a sender
    /// whose stdout closed counted every member "not acknowledged" for
    /// lines they all had, and exited 3: attack48 F3). (Lines on their way
    /// to us are not waited for: under steady traffic a node never catches
    /// up, and a receiver that waited for that stopped 2 s later into a
    /// stream it then could not close politely.)
    fn begin_stop(&mut self) {
        let (why, settles) = match self.node.shutdown.cause() {
            Some(Cause::Signal) if !self.left => ("signal", true),
            Some(Cause::StdoutClosed) if !self.left => {
                // Leaves at once: it prints nothing more.
                self.leave_printed_for_good();
                ("stdout closed", true)
            }
            _ => ("", false),
        };
        if !settles {
            self.stop_now();
            return;
        }
        self.gate.shut();
        if self.stdin_open && self.books.lines_read > 0 {
            log::info!(
                "stopping ({why}) before the end of stdin: {} read and sent, the rest not read",
                plural(self.books.lines_read, "line")
            );
        }
        let now = Instant::now();
        if self.mesh.eof_settled() {
            self.settle_by = Some(now);
        } else {
            self.settle_by = Some(now + SETTLE_WAIT);
            log::info!(
                "stopping ({why}): waiting up to {}s for the group to acknowledge our lines",
                SETTLE_WAIT.as_secs()
            );
        }
        self.settle();
    }

    /// While stopping on a signal: once settled or at the deadline, we
    /// stop printing and leave with acknowledgements of exactly what we
    /// printed, once our stdout thread has written out what it was handed
    /// (at most a second: `drain_to_leave`). Before, we left with what
    /// was acknowledged at that instant and printed on: a member stopped
    /// mid-stream printed lines its senders then booked as not
    /// acknowledged (attack20).
    fn settle(&mut self) {
        let Some(by) = self.settle_by else {
            return;
        };
        let now = Instant::now();
        if !self.left {
            if self.drain_by.is_none() && !self.mesh.eof_settled() && now < by {
                return;
            }
            let Some(final_acks) = self.drain_to_leave(now) else {
                return;
            };
            self.left = true;
            self.mesh.leave(now, final_acks);
        } else if !self.mesh.eof_settled() && now < by {
            // Left already (our stdout closed): the acknowledgements of
            // our lines may still come.
            return;
        }
        self.settle_by = None;
        self.stop_now();
    }

    fn stop_now(&mut self) {
        self.stopping = true;
        self.gate.shut();
        // The end-of-stdin leave is over (`check_eof` no longer runs): its
        // deadlines, once past, would wake the loop at every turn.
        self.leave_by = None;
        self.drain_by = None;
        self.drain_since = None;
        let cause = self.node.shutdown.cause();
        log::info!(
            "stopping ({}): closing connections politely ({} open)",
            match cause {
                Some(Cause::Signal) => "signal",
                Some(Cause::StdinEof) => "stdin ended",
                Some(Cause::StdoutClosed) => "stdout closed",
                Some(Cause::NoPeers) => "--connect-timeout passed",
                Some(Cause::Fatal) | None => "internal error",
            },
            self.peers.len()
        );
        // The group hears that we leave (our STATUS with the leaving flag)
        // before our goodbyes (at the end of stdin, it did already).
        if !self.left {
            self.left = true;
            self.mesh.leave(Instant::now(), false);
        }
        self.drain_actions();
        for entry in self.peers.values_mut() {
            entry.closing = true;
            entry
                .outbox
                .close(Close::Graceful("shutting down".to_owned()));
        }
        self.full.clear();
        if cause != Some(Cause::StdinEof) {
            self.hurry();
        }
    }

    /// Whether a stop was asked for and not yet taken up (`begin_stop`
    /// makes it stop, or settle first).
    fn stop_pending(&self) -> bool {
        self.node.shutdown.is_triggered() && !self.stopping && self.settle_by.is_none()
    }

    fn hurry(&mut self) {
        let deadline = Instant::now() + FLUSH_DEADLINE;
        self.deadline = Some(self.deadline.map_or(deadline, |d| d.min(deadline)));
    }

    fn log_stats(&mut self) {
        self.count_dropped();
        let every = self.node.config.stats.unwrap_or(Duration::from_secs(1));
        self.next_stats = Some(Instant::now() + every);
        let deepest = self
            .peers
            .values()
            .map(|e| e.outbox.ledger().1)
            .max()
            .unwrap_or(0);
        let mut now = self.current_totals();
        now.missed = self.mesh.books().iter().map(|m| m.lost).sum();
        let (live, members) = (self.live_peers(), self.mesh.live_members());
        let line = self.books.stats_line(now, every, live, members, deepest);
        log::info!("{line}");
    }

    /// Totals so far: finished connections plus the live ones' ledgers.
    fn current_totals(&self) -> Totals {
        let mut totals = self.books.totals;
        for entry in self.peers.values() {
            let (ledger, _) = entry.outbox.ledger();
            totals.msgs_out += ledger.written;
            totals.bytes_out += ledger.written_bytes;
        }
        totals
    }

    /// Closes what is still open, makes the summary lines and decides the
    /// outcome.
    fn finish(mut self) -> Finished {
        let conns: Vec<ConnId> = self.peers.keys().copied().collect();
        for conn in conns {
            let entry = self.peers.remove(&conn).expect("present");
            entry.outbox.close(Close::Abort);
            self.account(&entry);
        }
        self.count_dropped();
        self.save_peer_cache();
        let skipped = self.node.stdin_skipped.load(Ordering::Relaxed);
        let unsent =
            self.unsent.take().map_or(0, |chunk| chunk.frames as u64) + self.mesh.waiting_lines();
        ratelog::flush_all();
        self.peer_up_lines.flush();
        self.member_lines.flush();
        // Lines that arrived after we stopped printing to leave: `gap`
        // events, before the last events go to stdout.
        self.mesh.report_dropped_after_leaving();
        self.mesh.report_undelivered_at_exit();
        while let Some(action) = self.mesh.poll_action() {
            if let action @ crate::mesh::Action::Gap { .. } = action {
                self.act(action);
            }
        }
        self.drain_backlog();
        if self.events_not_printed > 0 {
            log::warn!(
                "stdout was blocked: {} peer events were not printed",
                self.events_not_printed
            );
        }
        // Everything delivered went to the stdout thread: the node compares
        // it with what was written out once that thread is done.
        self.node
            .printed
            .handed
            .store(self.books.delivered, Ordering::Relaxed);
        let members = self.mesh.books();
        let dropped = self.mesh.dropped_after_leaving();
        if dropped > 0 {
            log::warn!(
                "{} arrived after this node left the group and {} not printed \
                 (lost to it, for those their senders sent before they heard that it left)",
                plural(dropped, "message"),
                if dropped == 1 { "was" } else { "were" }
            );
        }
        let mut summary = vec![(
            log::Level::Info,
            self.books.summary(&members, skipped, unsent),
        )];
        if self.node.config.stats.is_some() {
            let mut books = std::mem::take(&mut self.books);
            books.totals.missed = members.iter().map(|m| m.lost).sum();
            summary.push((log::Level::Info, books.totals_line()));
        }
        // Two processes under one id: members may have printed the other
        // one's lines in place of ours, and acknowledged them as ours.
        let conflict = self.mesh.id_conflict();
        if let Some(what) = conflict {
            summary.push((
                log::Level::Error,
                format!(
                    "{what} The deliveries counted above are not certain: members may have \
                     printed its lines in place of ours"
                ),
            ));
        }
        let missed = members.iter().any(|m| missed(m) > 0)
            || skipped > 0
            || unsent > 0
            || conflict.is_some();
        let outcome = match self.outcome {
            Outcome::Complete if missed && self.node.config.exit_on_eof => Outcome::Incomplete,
            outcome => outcome,
        };
        Finished { outcome, summary }
    }
}

/// Now is long after `due` (the deadline we slept to, or the start of a
/// turn that should have been short): the process was stopped (SIGSTOP,
/// a suspended host) or starved meanwhile, and frames from neighbours
/// waited unread all that time. The mesh does not count it as their
/// silence (a resumed node called live members down, "silent for 15s",
/// before it had read what they sent), nor, when stdout was already
/// blocked, as our stdout taking nothing (`mesh::FLAG_STUCK`); and stdin
/// waits until the neighbours had their turn (`stdin_after`,
/// [`RESUMED_READS`]). Either way, `woke` is now. (The router's fields,
/// not the router: its channels are borrowed by the wait.)
fn note_stop(mesh: &mut Mesh, woke: &mut Instant, stdin_after: &mut Option<Instant>, due: Instant) {
    let now = Instant::now();
    *woke = now;
    if now <= due + crate::threads::OVERSLEPT {
        return;
    }
    mesh.overslept(now);
    if !mesh.is_inbound_held() {
        mesh.inbound_held(due, true);
        mesh.inbound_held(now, false);
    }
    *stdin_after = Some(now + RESUMED_READS);
}
