//! The router: the one thread that owns the peer table and decides where
//! every frame goes.
//!
//! It waits on all of its inputs at once and never blocks on an output:
//! outboxes always take a push (and say when they are over their high-water
//! mark), and output for stdout that does not fit in its queue waits in a
//! backlog while the router stops taking received messages. So a slow peer
//! slows only stdin, and a slow stdout slows only the peers' senders.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Select, Sender, TrySendError};

use crate::dialer::{DialOutcome, DialTicket};
use crate::frame::NodeId;
use crate::node::Node;
use crate::outbox::{Close, Outbox};
use crate::peer::{ConnId, Direction, Ending, Inbound, PeerInfo};
use crate::shutdown::{Cause, Never};
use crate::stdio::Chunk;

/// How long a node stopping on a signal waits for its peers to take what is
/// queued for them and close politely.
pub const FLUSH_DEADLINE: Duration = Duration::from_secs(2);

/// What connection threads tell the router.
pub enum Event {
    /// A handshake is done: a new connection to a peer.
    Up {
        info: PeerInfo,
        outbox: Outbox,
        ticket: Option<DialTicket>,
    },
    /// The peer said BYE: answer in kind.
    Bye { conn: ConnId },
    /// The connection is over; its threads are finishing.
    Down { conn: ConnId, ending: Ending },
    /// The outbox went back under its low-water mark.
    Drained { conn: ConnId },
}

/// What the router gives the stdout thread.
pub enum Output {
    Msgs(Inbound),
    PeerUp(PeerInfo),
    PeerDown(PeerInfo, Ending),
}

struct Entry {
    info: PeerInfo,
    outbox: Outbox,
    /// No new messages go to a closing connection.
    closing: bool,
    /// Dialers waiting to hear when this peer is gone.
    tickets: Vec<DialTicket>,
    since: Instant,
}

pub struct Router {
    node: Arc<Node>,
    events: Receiver<Event>,
    inbound: Receiver<Inbound>,
    stdin: Receiver<Chunk>,
    stdout: Sender<Output>,
    /// Dropped once `--wait-peers` peers are connected, which lets the stdin
    /// thread start reading.
    ready: Option<Sender<Never>>,
    peers: HashMap<ConnId, Entry>,
    /// The one connection that stands for each connected node.
    by_node: HashMap<NodeId, ConnId>,
    /// Connections whose outbox is over its high-water mark.
    full: HashSet<ConnId>,
    backlog: VecDeque<Output>,
    stdin_open: bool,
    stopping: bool,
    deadline: Option<Instant>,
    sent: u64,
    received: u64,
}

/// One turn of the loop: what arrived.
enum Step {
    Event(Event),
    Inbound(Inbound),
    Stdin(Option<Chunk>),
    Printed,
    Stop,
    Hurry,
    DeadlinePassed,
}

impl Router {
    pub fn new(
        node: Arc<Node>,
        events: Receiver<Event>,
        inbound: Receiver<Inbound>,
        stdin: Receiver<Chunk>,
        stdout: Sender<Output>,
        ready: Sender<Never>,
    ) -> Self {
        Router {
            node,
            events,
            inbound,
            stdin,
            stdout,
            ready: Some(ready),
            peers: HashMap::new(),
            by_node: HashMap::new(),
            full: HashSet::new(),
            backlog: VecDeque::new(),
            stdin_open: true,
            stopping: false,
            deadline: None,
            sent: 0,
            received: 0,
        }
    }

    /// Routes until the node has stopped and every peer is closed (or the
    /// flush deadline has passed).
    pub fn run(mut self) {
        self.check_ready();
        let stop = self.node.shutdown.stopping();
        let hurry = self.node.shutdown.hurrying();
        while !(self.stopping && self.peers.is_empty()) {
            match self.next_step(&stop, &hurry) {
                Step::Event(event) => self.on_event(event),
                Step::Inbound(batch) => {
                    self.received += batch.msgs.len() as u64;
                    self.output(Output::Msgs(batch));
                }
                Step::Stdin(Some(chunk)) => self.broadcast(chunk),
                Step::Stdin(None) => self.stdin_ended(),
                Step::Printed => {}
                Step::Stop => self.begin_stop(),
                Step::Hurry => self.hurry(),
                Step::DeadlinePassed => {
                    log::warn!(
                        "{} peers did not close within {}s; closing them anyway",
                        self.peers.len(),
                        FLUSH_DEADLINE.as_secs()
                    );
                    break;
                }
            }
        }
        log::info!("sent {} messages, received {}", self.sent, self.received);
    }

    fn next_step(&mut self, stop: &Receiver<Never>, hurry: &Receiver<Never>) -> Step {
        let mut sel = Select::new();
        let events = sel.recv(&self.events);
        let (inbound, printed) = if self.backlog.is_empty() {
            (sel.recv(&self.inbound), usize::MAX)
        } else {
            (usize::MAX, sel.send(&self.stdout))
        };
        let takes_stdin = self.stdin_open && !self.stopping && self.full.is_empty();
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
        let oper = match self.deadline {
            Some(deadline) => match sel.select_deadline(deadline) {
                Ok(oper) => oper,
                Err(_) => return Step::DeadlinePassed,
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
                // A closed stdout has already stopped the node; drop the output.
                let _ = oper.send(&self.stdout, output);
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

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Up {
                info,
                outbox,
                ticket,
            } => self.peer_up(info, outbox, ticket),
            Event::Bye { conn } => {
                // Its reader has already asked the writer to answer in kind.
                if let Some(entry) = self.peers.get_mut(&conn) {
                    entry.closing = true;
                    self.full.remove(&conn);
                }
            }
            Event::Down { conn, ending } => self.peer_down(conn, ending),
            Event::Drained { conn } => {
                self.full.remove(&conn);
            }
        }
    }

    fn peer_up(&mut self, info: PeerInfo, outbox: Outbox, ticket: Option<DialTicket>) {
        let conn = info.conn;
        let mut entry = Entry {
            info,
            outbox,
            closing: false,
            tickets: ticket.into_iter().collect(),
            since: Instant::now(),
        };
        if self.stopping {
            Self::refuse(&mut entry, "shutting down");
        } else if let Some(&existing) = self.by_node.get(&entry.info.node_id) {
            self.duplicate(existing, &mut entry);
        } else if self.by_node.len() >= self.node.config.max_peers {
            let reason = format!("peer limit reached ({})", self.node.config.max_peers);
            log::warn!("refusing {}: {reason}", entry.info);
            Self::refuse(&mut entry, &reason);
        } else {
            self.by_node.insert(entry.info.node_id, conn);
            log::info!(
                "peer up: {} [{}], node {:016x}; {} connected",
                entry.info,
                match entry.info.direction {
                    Direction::In => "they dialed",
                    Direction::Out => "we dialed",
                },
                entry.info.node_id,
                self.by_node.len()
            );
            self.output(Output::PeerUp(entry.info.clone()));
        }
        self.peers.insert(conn, entry);
        self.check_ready();
    }

    /// Two connections to one node: both nodes keep the one dialed by the
    /// node with the smaller id, so they agree without another message.
    fn duplicate(&mut self, existing: ConnId, new: &mut Entry) {
        let dialer = |info: &PeerInfo| match info.direction {
            Direction::Out => self.node.id,
            Direction::In => info.node_id,
        };
        let old = &self.peers[&existing];
        let keep_new = dialer(&new.info) < dialer(&old.info);
        log::info!(
            "two connections to {}: keeping the one {} dialed",
            new.info.name,
            if keep_new { "just" } else { "first" }
        );
        if keep_new {
            let mut old = self.peers.remove(&existing).expect("present");
            new.tickets.append(&mut old.tickets);
            Self::refuse(&mut old, "duplicate connection");
            self.full.remove(&existing);
            self.by_node.insert(new.info.node_id, new.info.conn);
            self.peers.insert(existing, old);
        } else {
            let old = self.peers.get_mut(&existing).expect("present");
            old.tickets.append(&mut new.tickets);
            Self::refuse(new, "duplicate connection");
        }
    }

    fn refuse(entry: &mut Entry, reason: &str) {
        log::debug!(
            "closing connection {} to {}: {reason}",
            entry.info.conn,
            entry.info
        );
        entry.closing = true;
        entry.outbox.close(Close::Graceful(reason.to_owned()));
    }

    fn peer_down(&mut self, conn: ConnId, ending: Ending) {
        let Some(entry) = self.peers.remove(&conn) else {
            return;
        };
        self.full.remove(&conn);
        entry.outbox.close(Close::Abort);
        let lasted = entry.since.elapsed();
        for ticket in entry.tickets {
            let _ = ticket.send(DialOutcome::Ended { lasted });
        }
        if self.by_node.get(&entry.info.node_id) != Some(&conn) {
            log::debug!("extra connection {conn} to {} closed: {ending}", entry.info);
            return;
        }
        self.by_node.remove(&entry.info.node_id);
        let left = self.by_node.len();
        if ending.is_polite() {
            log::info!("peer down: {} {ending}; {left} connected", entry.info);
        } else {
            log::warn!("peer down: {} {ending}; {left} connected", entry.info);
        }
        self.output(Output::PeerDown(entry.info, ending));
    }

    /// Queues a chunk of stdin lines for every live peer.
    fn broadcast(&mut self, chunk: Chunk) {
        self.sent += chunk.frames as u64;
        let mut reached = 0;
        for (&conn, entry) in &self.peers {
            if entry.closing || self.by_node.get(&entry.info.node_id) != Some(&conn) {
                continue;
            }
            let bytes = if chunk.largest <= entry.info.max_frame {
                chunk.bytes.clone()
            } else {
                chunk.for_smaller_limit(entry.info.max_frame, &entry.info)
            };
            if entry.outbox.push(bytes) {
                self.full.insert(conn);
            }
            reached += 1;
        }
        if reached == 0 {
            log::debug!("no peer connected: {} lines went nowhere", chunk.frames);
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
        let cause = self.node.shutdown.cause();
        log::info!(
            "stopping ({}): closing connections politely ({} open)",
            match cause {
                Some(Cause::Signal) => "signal",
                Some(Cause::StdinEof) => "stdin ended",
                Some(Cause::StdoutClosed) => "stdout closed",
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

    fn check_ready(&mut self) {
        if self.ready.is_some() && self.by_node.len() >= self.node.config.wait_peers {
            if self.node.config.wait_peers > 0 {
                log::info!("peers connected: {}; reading stdin", self.by_node.len());
            }
            self.ready = None;
        }
    }

    /// Hands output to the stdout thread without ever blocking on it.
    fn output(&mut self, output: Output) {
        if !self.backlog.is_empty() {
            self.backlog.push_back(output);
            return;
        }
        match self.stdout.try_send(output) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(output)) => self.backlog.push_back(output),
        }
    }
}
