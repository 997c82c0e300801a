//! The router: the one thread that owns the peer table and decides where
//! every frame goes.
//!
//! It waits on all of its inputs at once and never blocks on an output:
//! outboxes always take a push (and say when they are over their high-water
//! mark), and output for stdout that does not fit in its queue waits in a
//! backlog while the router stops taking received messages. So a slow peer
//! slows only stdin, and a slow stdout slows only the peers' senders.
//!
//! A connection becomes a peer in two steps. When its HELLO has arrived the
//! router *admits* it (ACCEPT goes out) or *refuses* it (BYE instead); the
//! peer counts once the other side's ACCEPT has arrived too. Lines from stdin
//! go only to such peers, and stdin is read only while there is one.
//!
//! The router also keeps the books: per peer, messages written to its socket
//! and confirmed, and messages it could not get; the exit summary and the
//! exit code come from them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Select, Sender, TrySendError};

use crate::books::{plural, Books, Settled, Totals};
use crate::event::{
    ConnId, DialOutcome, DialTicket, Direction, Ending, Event, Handover, Inbound, Output, PeerInfo,
};
use crate::frame::NodeId;
use crate::handshake::HANDSHAKE_TIMEOUT;
use crate::node::{Node, HANDSHAKES_PER_IP};
use crate::outbox::{Batch, Close, Outbox, HIGH_WATER};
use crate::ratelog;
use crate::shutdown::{Cause, Never};
use crate::stdio::{Chunk, StdinGate};

/// How long a node stopping on a signal waits for its peers to take what is
/// queued for them and close politely.
pub const FLUSH_DEADLINE: Duration = Duration::from_secs(2);
/// A peer connected at least this long has its end always logged; shorter
/// ones are rate-limited per address, like other warnings a stranger can
/// cause.
const ESTABLISHED: Duration = Duration::from_secs(5);
/// Peer events waiting for a blocked stdout, at most; later ones are
/// counted and logged instead of printed.
const MAX_PENDING_EVENTS: usize = 1024;
struct Entry {
    info: PeerInfo,
    outbox: Outbox,
    /// We sent ACCEPT (false: we refused it, or it lost a tie-break).
    admitted: bool,
    /// Both sides have accepted: lines from stdin go to it.
    up: bool,
    /// No new messages go to a closing connection.
    closing: bool,
    /// Dialers waiting to hear when this peer is gone.
    tickets: Vec<DialTicket>,
    since: Instant,
    gate: Option<Sender<Never>>,
    handover: Handover,
    /// Message batches received from it, and its ending once the reader
    /// is done: the entry goes when every batch it sent has arrived.
    batches: u64,
    down: Option<(Ending, u64)>,
    /// Messages too big for its --max-frame, left out.
    too_big: u64,
}

/// The BYE reason of a connection closed in a mutual-dial tie-break.
const DUPLICATE: &str = "duplicate connection";

/// Lines for a node whose connection was closed as a duplicate, waiting for
/// the connection that replaces it.
struct Transition {
    info: PeerInfo,
    since: Instant,
    batches: Vec<Batch>,
    bytes: usize,
    too_big: u64,
    /// Its key in `full` while it holds more than the high-water mark.
    key: ConnId,
}

impl Transition {
    fn new(info: PeerInfo) -> Self {
        Transition {
            key: info.conn,
            info,
            since: Instant::now(),
            batches: Vec::new(),
            bytes: 0,
            too_big: 0,
        }
    }
}

/// How the node's run ended, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every line read reached every peer connected when it was read (or
    /// the node was not asked to deliver: it stopped on a signal).
    Complete,
    /// Under `--exit-on-eof`: some peer missed lines; the summary says who.
    Incomplete,
    /// `--connect-timeout` passed before enough peers connected.
    NoPeers,
}

pub struct Router {
    node: Arc<Node>,
    events: Receiver<Event>,
    inbound: Receiver<Inbound>,
    stdin: Receiver<Chunk>,
    stdout: Sender<Output>,
    gate: Arc<StdinGate>,
    /// Peers needed before stdin is read for the first time (`--wait-peers`,
    /// at least one); after that, one.
    needed: usize,
    peers: HashMap<ConnId, Entry>,
    /// The one connection that stands for each admitted node.
    by_node: HashMap<NodeId, ConnId>,
    /// Nodes announced as up (peer_up printed), to announce each once.
    announced: HashSet<NodeId>,
    /// Peers that have been up, ever.
    announced_any: u64,
    /// Connections held back until the one they replace is gone.
    successors: HashMap<ConnId, ConnId>,
    /// The last sequence number delivered from each connected node.
    last_seq: HashMap<NodeId, u64>,
    /// Connections whose outbox is over its high-water mark.
    full: HashSet<ConnId>,
    /// Lines read from stdin that no peer could take yet; stdin waits
    /// until they are sent.
    unsent: Option<Chunk>,
    /// Nodes between a connection closed as a duplicate and the one that
    /// replaces it.
    transitions: HashMap<NodeId, Transition>,
    backlog: VecDeque<Output>,
    events_in_backlog: usize,
    events_not_printed: u64,
    /// Peers whose peer_up was not printed (their peer_down will not be).
    unprinted_ups: HashSet<NodeId>,
    stdin_open: bool,
    stopping: bool,
    deadline: Option<Instant>,
    connect_deadline: Option<Instant>,
    next_stats: Option<Instant>,
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
    Stop,
    Hurry,
    Timer,
}

impl Router {
    pub fn new(
        node: Arc<Node>,
        events: Receiver<Event>,
        inbound: Receiver<Inbound>,
        stdin: Receiver<Chunk>,
        stdout: Sender<Output>,
        gate: Arc<StdinGate>,
    ) -> Self {
        let now = Instant::now();
        let config = &node.config;
        Router {
            needed: config.wait_peers.max(1),
            connect_deadline: config.connect_timeout.map(|t| now + t),
            next_stats: config.stats.map(|t| now + t),
            next_flush: now + ratelog::WINDOW,
            node,
            events,
            inbound,
            stdin,
            stdout,
            gate,
            peers: HashMap::new(),
            by_node: HashMap::new(),
            announced: HashSet::new(),
            announced_any: 0,
            successors: HashMap::new(),
            last_seq: HashMap::new(),
            full: HashSet::new(),
            unsent: None,
            transitions: HashMap::new(),
            backlog: VecDeque::new(),
            events_in_backlog: 0,
            events_not_printed: 0,
            unprinted_ups: HashSet::new(),
            stdin_open: true,
            stopping: false,
            deadline: None,
            outcome: Outcome::Complete,
            books: Books::default(),
        }
    }

    /// Routes until the node has stopped and every peer is closed (or the
    /// flush deadline has passed), then logs the summary.
    pub fn run(mut self) -> Outcome {
        let stop = self.node.shutdown.stopping();
        let hurry = self.node.shutdown.hurrying();
        while !(self.stopping && self.peers.is_empty()) {
            match self.next_step(&stop, &hurry) {
                Step::Event(event) => self.on_event(event),
                Step::Inbound(batch) => self.on_inbound(batch),
                Step::Stdin(Some(chunk)) => {
                    self.books.lines_read += chunk.frames as u64;
                    self.broadcast(chunk);
                }
                Step::Stdin(None) => self.stdin_ended(),
                Step::Printed => {}
                Step::Stop => self.begin_stop(),
                Step::Hurry => self.hurry(),
                Step::Timer => {
                    if self.on_timer() {
                        break;
                    }
                }
            }
        }
        self.gate.shut();
        self.finish()
    }

    fn next_step(&mut self, stop: &Receiver<Never>, hurry: &Receiver<Never>) -> Step {
        let mut sel = Select::new();
        let events = sel.recv(&self.events);
        let (inbound, printed) = if self.backlog.is_empty() {
            (sel.recv(&self.inbound), usize::MAX)
        } else {
            (usize::MAX, sel.send(&self.stdout))
        };
        // With the gate shut, stdin is watched only for its end: a chunk can
        // still slip in (the stdin thread's one-byte look ahead), and then
        // waits in `unsent` like any line no peer could take.
        let takes_stdin = self.stdin_open
            && !self.stopping
            && self.full.is_empty()
            && (self.gate.is_open() || self.stdin.is_empty())
            && self.unsent.is_none();
        let stdin = if takes_stdin {
            sel.recv(&self.stdin)
        } else {
            usize::MAX
        };
        let stop_i = if self.stopping {
            usize::MAX
        } else {
            sel.recv(stop)
        };
        let hurry_i = if self.deadline.is_some() {
            usize::MAX
        } else {
            sel.recv(hurry)
        };
        let transition_ends = self
            .transitions
            .values()
            .map(|t| t.since + HANDSHAKE_TIMEOUT)
            .min();
        let timer = [
            self.deadline,
            self.connect_deadline,
            self.next_stats,
            Some(self.next_flush),
            transition_ends,
        ]
        .into_iter()
        .flatten()
        .min();
        let oper = match timer {
            Some(at) => match sel.select_deadline(at) {
                Ok(oper) => oper,
                Err(_) => return Step::Timer,
            },
            None => sel.select(),
        };
        match oper.index() {
            i if i == events => {
                Step::Event(oper.recv(&self.events).expect("the node holds a sender"))
            }
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
                if self.backlog.is_empty() && self.events_not_printed > 0 {
                    log::warn!(
                        "stdout was blocked: {} peer events were not printed",
                        self.events_not_printed
                    );
                    self.events_not_printed = 0;
                }
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
    /// (exit 3: stdin was not sent in full).
    fn give_up_waiting(&mut self) {
        let secs = self
            .node
            .config
            .connect_timeout
            .unwrap_or_default()
            .as_secs();
        if self.announced_any == 0 {
            log::error!(
                "{} within {secs}s (--connect-timeout); giving up",
                match self.needed {
                    1 => "no peer connected".to_owned(),
                    n => format!(
                        "{} of {n} peers (--wait-peers) connected",
                        self.live_peers()
                    ),
                }
            );
            self.outcome = Outcome::NoPeers;
        } else {
            log::error!(
                "no peer connected for {secs}s (--connect-timeout); giving up \
                 before the end of stdin"
            );
            self.outcome = Outcome::Incomplete;
        }
        self.node.shutdown.trigger(Cause::NoPeers);
    }

    /// Handles whichever timers are due; true if the router must stop now.
    fn on_timer(&mut self) -> bool {
        let now = Instant::now();
        self.expire_transitions(false);
        if self.next_flush <= now {
            self.next_flush = now + ratelog::WINDOW;
            ratelog::flush();
        }
        if self.next_stats.is_some_and(|at| at <= now) {
            self.log_stats();
        }
        if self.connect_deadline.is_some_and(|at| at <= now) {
            self.connect_deadline = None;
            self.give_up_waiting();
        }
        if self.deadline.is_some_and(|at| at <= now) {
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
                ticket,
                gate,
                handover,
            } => self.admit(info, outbox, ticket, gate, handover),
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
                self.update_gate();
            }
            Event::Drained { conn } => {
                self.full.remove(&conn);
            }
        }
    }

    fn admit(
        &mut self,
        info: PeerInfo,
        outbox: Outbox,
        ticket: Option<DialTicket>,
        gate: Sender<Never>,
        handover: Handover,
    ) {
        let conn = info.conn;
        let mut entry = Entry {
            info,
            outbox,
            admitted: false,
            up: false,
            closing: false,
            tickets: ticket.into_iter().collect(),
            since: Instant::now(),
            gate: Some(gate),
            handover,
            batches: 0,
            down: None,
            too_big: 0,
        };
        if self.stopping {
            Self::refuse(&mut entry, "shutting down");
        } else if let Some(&existing) = self.by_node.get(&entry.info.node_id) {
            self.duplicate(existing, &mut entry);
        } else if self.unconfirmed_from(entry.info.addr) >= HANDSHAKES_PER_IP {
            // Admitted peers that never send ACCEPT would hold slots for a
            // few seconds each: one address gets no more of those than of
            // handshakes.
            let reason = "too many connections from this address waiting to accept";
            ratelog::warn("refused peers", entry.info.addr.ip(), || {
                format!("refusing {}: {reason}", entry.info)
            });
            Self::refuse(&mut entry, reason);
        } else if self.by_node.len() >= self.node.config.max_peers && !self.evict_unconfirmed() {
            let reason = format!("peer limit reached ({})", self.node.config.max_peers);
            ratelog::warn("refused peers", entry.info.addr.ip(), || {
                format!("refusing {}: {reason}", entry.info)
            });
            Self::refuse(&mut entry, &reason);
        } else {
            self.by_node.insert(entry.info.node_id, conn);
            entry.admitted = true;
            entry.outbox.accept();
            entry.gate = None;
            self.take_transition(&mut entry);
        }
        self.peers.insert(conn, entry);
        self.update_gate();
    }

    /// A second connection to an admitted node. If the two are a mutual
    /// dial (one each way, both young), both nodes keep the one dialed by
    /// the node with the smaller id, so they agree without another message.
    /// Otherwise the newcomer is refused: an established connection is
    /// never replaced by one claiming its id.
    fn duplicate(&mut self, existing: ConnId, new: &mut Entry) {
        let old = &self.peers[&existing];
        // A mutual dial is one connection each way, both young.
        let mutual_dial =
            old.since.elapsed() < HANDSHAKE_TIMEOUT && old.info.direction != new.info.direction;
        if !mutual_dial {
            ratelog::warn("refused peers", new.info.addr.ip(), || {
                format!(
                    "refusing {}: node {:016x} is already connected from {}",
                    new.info, new.info.node_id, old.info.addr
                )
            });
            Self::refuse(new, "already connected");
            return;
        }
        let dialer = |info: &PeerInfo| match info.direction {
            Direction::Out => self.node.id,
            Direction::In => info.node_id,
        };
        let keep_new = dialer(&new.info) < dialer(&old.info);
        log::info!(
            "two connections to {}: keeping the {} one (dialed by the smaller id)",
            new.info.name,
            if keep_new { "newer" } else { "older" }
        );
        if !keep_new {
            let old = self.peers.get_mut(&existing).expect("present");
            old.tickets.append(&mut new.tickets);
            Self::refuse(new, DUPLICATE);
            return;
        }
        let old = self.peers.get_mut(&existing).expect("present");
        new.tickets.append(&mut old.tickets);
        old.closing = true;
        old.outbox.close(Close::Graceful(DUPLICATE.to_owned()));
        self.full.remove(&existing);
        // Order: the new connection sends nothing until the old one has
        // sent everything, and delivers nothing until the old one has
        // delivered everything.
        new.outbox.hold();
        if let Some(gate) = new.gate.take() {
            old.handover.pass_on(gate);
        }
        self.successors.insert(existing, new.info.conn);
        new.admitted = true;
        // Lines go on to the node without a gap: into the new connection,
        // held until the old one is done.
        new.up = old.up;
        new.outbox.accept();
        self.by_node.insert(new.info.node_id, new.info.conn);
        self.take_transition(new);
    }

    /// The peer closed this connection because it keeps another one to us
    /// (a mutual dial it saw first): lines for it wait, in order, for that
    /// connection, at most HANDSHAKE_TIMEOUT.
    fn peer_bye(&mut self, conn: ConnId, reason: &str) {
        // Its reader has already asked the writer to answer in kind.
        if let Some(entry) = self.peers.get_mut(&conn) {
            entry.closing = true;
            self.full.remove(&conn);
            let current = self.by_node.get(&entry.info.node_id) == Some(&conn);
            let node_id = entry.info.node_id;
            if current && entry.up && reason == DUPLICATE {
                log::debug!("{}: its other connection should follow", entry.info);
                self.transitions
                    .entry(node_id)
                    .or_insert_with(|| Transition::new(entry.info.clone()));
            } else if current {
                // A real goodbye: lines that its outbox no longer took are lost.
                self.expire_transition(node_id);
            }
        }
        self.update_gate();
    }

    /// Hands the lines that waited for this node to its new connection.
    fn take_transition(&mut self, entry: &mut Entry) {
        let Some(transition) = self.transitions.remove(&entry.info.node_id) else {
            return;
        };
        self.full.remove(&transition.key);
        entry.up = true;
        entry.too_big += transition.too_big;
        for batch in transition.batches {
            if entry.outbox.push(batch) == Some(true) {
                self.full.insert(entry.info.conn);
            }
        }
    }

    /// Transitions whose new connection did not come: their lines are lost.
    fn expire_transitions(&mut self, all: bool) {
        let expired: Vec<NodeId> = self
            .transitions
            .iter()
            .filter(|(_, t)| all || t.since.elapsed() >= HANDSHAKE_TIMEOUT)
            .map(|(&id, _)| id)
            .collect();
        for id in expired {
            self.expire_transition(id);
        }
    }

    fn expire_transition(&mut self, id: NodeId) {
        if let Some(t) = self.transitions.remove(&id) {
            self.full.remove(&t.key);
            let msgs = t.batches.iter().map(|b| b.msgs).sum();
            if msgs > 0 {
                log::warn!(
                    "{}: its connection closed and none replaced it; {} not sent to it",
                    t.info,
                    plural(msgs, "message")
                );
            }
            self.books.lost(&t.info, msgs, t.too_big);
        }
    }

    fn refuse(entry: &mut Entry, reason: &str) {
        log::debug!(
            "refusing connection {} to {}: {reason}",
            entry.info.conn,
            entry.info
        );
        entry.closing = true;
        entry.outbox.close(Close::Refuse(reason.to_owned()));
        // Whatever it sends is dropped; its reader must not wait for us.
        entry.gate = None;
    }

    /// The peer has accepted us too (its ACCEPT, or a message after it).
    fn peer_up(&mut self, conn: ConnId) {
        let Some(entry) = self.peers.get_mut(&conn) else {
            return;
        };
        if !entry.admitted || entry.closing {
            return;
        }
        entry.up = true;
        let info = entry.info.clone();
        if self.announced.insert(info.node_id) {
            self.announced_any += 1;
            log::info!(
                "peer up: {info} [{}], node {:016x}; {} connected",
                match info.direction {
                    Direction::In => "they dialed",
                    Direction::Out => "we dialed",
                },
                info.node_id,
                self.live_peers()
            );
            self.output(Output::PeerUp(info));
        }
        self.update_gate();
    }

    /// Removes a connection whose reader is done, once every message batch
    /// it read has been routed.
    fn finish_down(&mut self, conn: ConnId) {
        let Some(entry) = self.peers.get(&conn) else {
            return;
        };
        match &entry.down {
            Some((_, batches)) if *batches <= entry.batches => {}
            _ => return,
        }
        let entry = self.peers.remove(&conn).expect("present");
        let (ending, _) = entry.down.clone().expect("down");
        entry.outbox.close(Close::Abort);
        if let Some(successor) = self.successors.remove(&conn) {
            if let Some(next) = self.peers.get(&successor) {
                next.outbox.release();
            }
        }
        let lasted = entry.since.elapsed();
        let outcome = || {
            if entry.up {
                DialOutcome::Ended { lasted }
            } else {
                DialOutcome::Failed(ending.to_string())
            }
        };
        for ticket in &entry.tickets {
            let _ = ticket.send(outcome());
        }
        if entry.admitted {
            self.account(&entry, &ending);
        }
        let current = self.by_node.get(&entry.info.node_id) == Some(&conn);
        if !current {
            log::debug!("extra connection {conn} to {} closed: {ending}", entry.info);
            self.update_gate();
            return;
        }
        self.by_node.remove(&entry.info.node_id);
        self.last_seq.remove(&entry.info.node_id);
        if !self.announced.remove(&entry.info.node_id) {
            // A dialer says what became of its own connections.
            if entry.tickets.is_empty() {
                let line = || format!("{}: ended before it was a peer: {ending}", entry.info);
                if ending.is_polite() {
                    log::info!("{}", line());
                } else {
                    ratelog::warn("failed connections", entry.info.addr.ip(), line);
                }
            }
        } else {
            let left = self.live_peers();
            let line = || format!("peer down: {} {ending}; {left} connected", entry.info);
            if ending.is_polite() {
                log::info!("{}", line());
            } else if lasted >= ESTABLISHED {
                log::warn!("{}", line());
            } else {
                // Short-lived: a stranger cycling connections must not
                // flood the log.
                ratelog::warn("broken connections", entry.info.addr.ip(), line);
            }
            self.output(Output::PeerDown(entry.info, ending));
        }
        self.update_gate();
    }

    /// Adds a finished connection to the books.
    fn account(&mut self, entry: &Entry, ending: &Ending) {
        self.books.settle(Settled {
            info: &entry.info,
            ledger: entry.outbox.ledger().0,
            confirmed: entry.outbox.confirmed(),
            too_big: entry.too_big,
            ending,
        });
    }

    /// Received messages: in order, each once, then to stdout.
    fn on_inbound(&mut self, mut batch: Inbound) {
        let conn = batch.conn;
        let Some(entry) = self.peers.get_mut(&conn) else {
            log::debug!("messages from connection {conn}, which is gone; dropped");
            return;
        };
        entry.batches += 1;
        let (admitted, node_id, up) = (entry.admitted, entry.info.node_id, entry.up);
        if admitted {
            if !up {
                // A message means the peer sent ACCEPT before it.
                self.peer_up(conn);
            }
            let last = self.last_seq.entry(node_id).or_insert(0);
            let before = batch.msgs.len();
            batch.msgs.retain(|m| {
                let fresh = m.seq > *last;
                if fresh {
                    *last = m.seq;
                }
                fresh
            });
            let dropped = before - batch.msgs.len();
            if dropped > 0 {
                self.books.seq_dropped += dropped as u64;
                let peer = self.peers[&conn].info.addr;
                ratelog::warn("repeated messages", peer.ip(), || {
                    format!(
                        "{}: dropped {} with a repeated or backward sequence number",
                        batch.from,
                        plural(dropped as u64, "message")
                    )
                });
            }
            if !batch.msgs.is_empty() {
                self.books.totals.msgs_in += batch.msgs.len() as u64;
                self.books.totals.bytes_in += batch
                    .msgs
                    .iter()
                    .map(|m| (m.end - m.start) as u64)
                    .sum::<u64>();
                self.output(Output::Msgs(batch));
            }
        } else {
            log::debug!(
                "{}: dropped {} from a refused connection",
                batch.from,
                plural(batch.msgs.len() as u64, "message")
            );
        }
        self.finish_down(conn);
    }

    /// Queues a chunk of stdin lines for every live peer; if none can take
    /// it (the last one left since it was read), it waits for the next.
    fn broadcast(&mut self, chunk: Chunk) {
        let mut reached = 0;
        // Nodes whose connection refused this chunk: the peer's BYE is on
        // its way to the router (see `peer_bye`); the chunk waits for it.
        let mut refused: Vec<(PeerInfo, Batch)> = Vec::new();
        for (&conn, entry) in &mut self.peers {
            if entry.closing || !entry.up || self.by_node.get(&entry.info.node_id) != Some(&conn) {
                continue;
            }
            if self.transitions.contains_key(&entry.info.node_id) {
                continue; // its lines wait in the transition, in order
            }
            let batch = if chunk.largest <= entry.info.max_frame {
                chunk.batch()
            } else {
                let (batch, skipped) = chunk.for_smaller_limit(entry.info.max_frame);
                entry.too_big += skipped;
                ratelog::warn("messages too big", entry.info.addr.ip(), || {
                    format!(
                        "{} over the --max-frame of {} ({} bytes); not sent to it",
                        plural(skipped, "message"),
                        entry.info,
                        entry.info.max_frame
                    )
                });
                batch
            };
            match entry.outbox.push(batch.clone()) {
                Some(true) => {
                    self.full.insert(conn);
                }
                Some(false) => {}
                None => refused.push((entry.info.clone(), batch)),
            }
            reached += 1;
        }
        for transition in self.transitions.values_mut() {
            let batch = if chunk.largest <= transition.info.max_frame {
                chunk.batch()
            } else {
                let (batch, skipped) = chunk.for_smaller_limit(transition.info.max_frame);
                transition.too_big += skipped;
                batch
            };
            transition.bytes += batch.bytes.len();
            transition.batches.push(batch);
            if transition.bytes > HIGH_WATER {
                self.full.insert(transition.key);
            }
            reached += 1;
        }
        for (info, batch) in refused {
            let transition = self
                .transitions
                .entry(info.node_id)
                .or_insert_with(|| Transition::new(info));
            transition.bytes += batch.bytes.len();
            transition.batches.push(batch);
        }
        if reached == 0 {
            log::debug!(
                "no peer to take {}; they wait for one",
                plural(chunk.frames as u64, "line")
            );
            // Retried whenever the peer table changes (`update_gate`).
            self.unsent = Some(chunk);
        }
    }

    fn stdin_ended(&mut self) {
        self.stdin_open = false;
        if self.node.config.exit_on_eof {
            log::info!("stdin ended: delivering what is queued, then stopping");
            self.node.shutdown.trigger(Cause::StdinEof);
        } else {
            log::info!("stdin ended; still relaying and printing until Ctrl-C");
        }
    }

    fn begin_stop(&mut self) {
        self.stopping = true;
        self.gate.shut();
        let cause = self.node.shutdown.cause();
        log::info!(
            "stopping ({}): closing connections politely ({} open)",
            match cause {
                Some(Cause::Signal) => "signal",
                Some(Cause::StdinEof) => "stdin ended",
                Some(Cause::StdoutClosed) => "stdout closed",
                Some(Cause::NoPeers) => "no peers",
                Some(Cause::Fatal) | None => "internal error",
            },
            self.peers.len()
        );
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

    fn hurry(&mut self) {
        let deadline = Instant::now() + FLUSH_DEADLINE;
        self.deadline = Some(self.deadline.map_or(deadline, |d| d.min(deadline)));
    }

    /// At the peer limit, the oldest connection that was admitted but has
    /// not accepted us yet yields its slot to a newcomer, so that HELLOs
    /// without ACCEPT cannot keep real peers out. True if one did.
    fn evict_unconfirmed(&mut self) -> bool {
        let oldest = self
            .by_node
            .values()
            .filter_map(|conn| self.peers.get(conn))
            .filter(|e| e.admitted && !e.up && !e.closing)
            .min_by_key(|e| e.since)
            .map(|e| (e.info.conn, e.info.node_id));
        let Some((conn, node_id)) = oldest else {
            return false;
        };
        let entry = self.peers.get_mut(&conn).expect("present");
        log::debug!(
            "{}: has not accepted us; its slot goes to a newcomer",
            entry.info
        );
        entry.closing = true;
        entry.outbox.close(Close::Graceful(format!(
            "peer limit reached ({})",
            self.node.config.max_peers
        )));
        self.by_node.remove(&node_id);
        true
    }

    /// Admitted connections from `addr`'s source that have not accepted us.
    fn unconfirmed_from(&self, addr: SocketAddr) -> usize {
        let source = ratelog::source_of(addr.ip());
        self.peers
            .values()
            .filter(|e| e.admitted && !e.up && !e.closing)
            .filter(|e| ratelog::source_of(e.info.addr.ip()) == source)
            .count()
    }

    /// Peers that lines from stdin go to.
    fn live_peers(&self) -> usize {
        self.by_node
            .values()
            .filter(|conn| {
                self.peers
                    .get(conn)
                    .is_some_and(|entry| entry.up && !entry.closing)
            })
            .count()
    }

    /// Lets stdin be read while a line read now reaches a peer: once
    /// `--wait-peers` peers are up for the first time, then while one is.
    fn update_gate(&mut self) {
        let live = self.live_peers();
        let open = live >= self.needed && !self.stopping;
        if open && self.needed > 1 {
            log::info!("peers connected: {live}; reading stdin");
        }
        if open {
            self.needed = 1;
            self.connect_deadline = None;
            if let Some(chunk) = self.unsent.take() {
                self.broadcast(chunk);
                return;
            }
        }
        if open != self.gate.is_open() {
            let waiting = (self.stdin_open || self.unsent.is_some()) && !self.stopping;
            if !open && waiting {
                log::info!("no peer connected: stdin waits until one is");
                // A script that must finish does not wait forever.
                if self.node.config.exit_on_eof && self.connect_deadline.is_none() {
                    self.connect_deadline =
                        self.node.config.connect_timeout.map(|t| Instant::now() + t);
                }
            }
            self.gate.set_open(open);
        }
    }

    /// Hands output to the stdout thread without ever blocking on it. Peer
    /// events that find stdout blocked wait in a bounded backlog; messages
    /// never wait there long, since the router takes no more while they do.
    fn output(&mut self, output: Output) {
        let is_event = !matches!(output, Output::Msgs(_));
        // Events go unprinted in pairs: a peer_up that was not printed takes
        // its peer_down with it, and a printed one keeps it (there are at
        // most as many of those as peers).
        match &output {
            Output::PeerUp(info) if self.events_in_backlog >= MAX_PENDING_EVENTS => {
                self.unprinted_ups.insert(info.node_id);
                self.events_not_printed += 1;
                return;
            }
            Output::PeerDown(info, _) if self.unprinted_ups.remove(&info.node_id) => {
                self.events_not_printed += 1;
                return;
            }
            _ => {}
        }
        if self.backlog.is_empty() {
            match self.stdout.try_send(output) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                Err(TrySendError::Full(output)) => self.push_backlog(output, is_event),
            }
        } else {
            self.push_backlog(output, is_event);
        }
    }

    /// At the end: what waits for stdout gets a bounded time to go out;
    /// what cannot is counted on the log, not dropped silently.
    fn drain_backlog(&mut self) {
        let deadline = Instant::now() + FLUSH_DEADLINE;
        while let Some(output) = self.backlog.pop_front() {
            let Err(e) = self.stdout.send_deadline(output, deadline) else {
                continue;
            };
            let mut msgs = 0;
            for output in std::iter::once(e.into_inner()).chain(self.backlog.drain(..)) {
                match output {
                    Output::Msgs(batch) => msgs += batch.msgs.len() as u64,
                    _ => self.events_not_printed += 1,
                }
            }
            if msgs > 0 {
                log::warn!(
                    "stdout is blocked or closed: {} received were not printed",
                    plural(msgs, "message")
                );
            }
        }
    }

    fn push_backlog(&mut self, output: Output, is_event: bool) {
        if is_event {
            self.events_in_backlog += 1;
        }
        self.backlog.push_back(output);
    }

    fn log_stats(&mut self) {
        let every = self.node.config.stats.unwrap_or(Duration::from_secs(1));
        self.next_stats = Some(Instant::now() + every);
        let deepest = self
            .peers
            .values()
            .map(|e| e.outbox.ledger().1)
            .max()
            .unwrap_or(0);
        let now = self.current_totals();
        let line = self
            .books
            .stats_line(now, every, self.live_peers(), deepest);
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

    /// Settles the books of connections still open and logs the summary.
    fn finish(mut self) -> Outcome {
        let conns: Vec<ConnId> = self.peers.keys().copied().collect();
        for conn in conns {
            let entry = self.peers.remove(&conn).expect("present");
            entry.outbox.close(Close::Abort);
            if entry.admitted {
                let ending = entry.down.clone().map_or(Ending::Stopping, |(e, _)| e);
                let ending = match ending {
                    Ending::Stopping => Ending::Io("still open at exit".to_owned()),
                    other => other,
                };
                self.account(&entry, &ending);
            }
        }
        let skipped = self.node.stdin_skipped.load(Ordering::Relaxed);
        let unsent = self.unsent.take().map_or(0, |chunk| chunk.frames as u64);
        self.expire_transitions(true);
        ratelog::flush_all();
        self.drain_backlog();
        if self.events_not_printed > 0 {
            log::warn!(
                "stdout was blocked: {} peer events were not printed",
                self.events_not_printed
            );
        }
        log::info!("{}", self.books.summary(skipped, unsent));
        if self.node.config.stats.is_some() {
            log::info!("{}", self.books.totals_line());
        }
        let missed = self.books.any_missed() || skipped > 0 || unsent > 0;
        match self.outcome {
            Outcome::Complete if missed && self.node.config.exit_on_eof => Outcome::Incomplete,
            outcome => outcome,
        }
    }
}
