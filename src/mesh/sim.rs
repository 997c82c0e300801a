//! A deterministic simulator: many [`Mesh`] instances in one process,
//! joined by simulated links with delays, polite closes, cuts and node
//! crashes, driven by a virtual clock and one seeded RNG. Nodes may be
//! stopped (SIGSTOP) and resumed, and may acknowledge only what their
//! simulated stdout printed, some time after delivery
//! ([`SimConfig::print_lag`]).
//!
//! It checks, as every delivery and gap happens, that each node sees each
//! origin exactly once and in order, and that nothing is skipped without a
//! gap: per (node, origin), every delivery or gap starts right where the
//! previous one ended. Used by the tests below and by `benches/mesh_sim.rs`
//! (this module is public for it).

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::rng::Rng;
use super::{
    Action, Bytes, Conn, DialResult, DialTarget, Mesh, MeshConfig, MsgRef, NodeId, ProbeResult,
};
use crate::frame::{self, Frame};

/// Per (node, origin): what was delivered or reported lost.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// The first seq delivered or reported (the node's base for the origin).
    pub first: u64,
    /// The last seq delivered or reported: the next must be this + 1.
    pub covered_to: u64,
    pub delivered: u64,
    pub lost: u64,
}

pub struct SimNode {
    pub mesh: Mesh,
    pub id: NodeId,
    pub addr: SocketAddr,
    pub alive: bool,
    /// Command-line PEERs: node indexes.
    pub seeds: Vec<usize>,
    pub seen: HashMap<NodeId, Seen>,
    pub gaps: u64,
    /// Our own lines sent so far (the highest seq).
    pub sent: u64,
    /// MSG frames that arrived, for duplicates per delivery.
    pub msgs_in: u64,
    pub deliveries: u64,
    /// When and with how many hops the latest delivery happened.
    pub last_delivery: Option<(Duration, u8)>,
    pub members_up: u64,
    pub members_down: u64,
    tick_at: Option<Duration>,
    /// Stopped ([`Sim::stall`]), so it may resume: its connections then,
    /// and what its stdout was to print meanwhile (printed after it
    /// resumes, as its stdout thread was stopped too).
    stopped: Option<Vec<Conn>>,
    prints_held: Vec<(NodeId, u64)>,
}

#[derive(Debug, Clone)]
struct Link {
    ends: [(usize, Conn); 2],
    delay: Duration,
    closing: bool,
}

/// A buffer of frames decoded once for all the neighbours it goes to.
#[derive(Debug)]
enum Item {
    Msgs(Vec<MsgRef>),
    /// Owns everything it holds, so it lives as long as the buffer.
    Status(Frame<'static>),
    /// Any other frame, decoded where it arrives: `bytes[range]`.
    Other(std::ops::Range<usize>),
}

#[derive(Debug)]
struct Decoded {
    bytes: Bytes,
    items: Vec<Item>,
    msgs: u64,
}

impl Decoded {
    /// Decodes as a peer reader would: runs of MSG frames as one batch,
    /// every other frame on its own.
    fn new(bytes: Bytes) -> Self {
        let mut items = Vec::new();
        let mut run: Vec<MsgRef> = Vec::new();
        let mut at = 0;
        let mut msgs = 0;
        while let Some((frame, used)) =
            frame::decode(&bytes[at..], usize::MAX).expect("the mesh encodes valid frames")
        {
            match frame.msg_header() {
                Some(header) => {
                    let before = run.len();
                    run.extend(MsgRef::each_in(
                        &bytes[at + frame::MSG_HEADER_LEN..at + used],
                        at + frame::MSG_HEADER_LEN,
                        header,
                    ));
                    msgs += (run.len() - before) as u64;
                }
                None => {
                    if !run.is_empty() {
                        items.push(Item::Msgs(std::mem::take(&mut run)));
                    }
                    items.push(match frame {
                        Frame::Status(s) => Item::Status(Frame::Status(s)),
                        _ => Item::Other(at..at + used),
                    });
                }
            }
            at += used;
        }
        if !run.is_empty() {
            items.push(Item::Msgs(run));
        }
        Decoded { bytes, items, msgs }
    }
}

#[derive(Debug)]
enum Ev {
    Frames {
        node: usize,
        conn: Conn,
        frames: Arc<Decoded>,
    },
    Tick {
        node: usize,
    },
    Connect {
        from: usize,
        to: usize,
        target: DialTarget,
    },
    LinkDown {
        link: u64,
        alternatives: Vec<(NodeId, SocketAddr)>,
        closer: usize,
    },
    NeighbourDown {
        node: usize,
        conn: Conn,
    },
    /// The writer of `node`'s link `conn` gave up on a peer that accepted
    /// nothing: it cuts the link and says why.
    Cut {
        node: usize,
        conn: Conn,
        reason: String,
    },
    /// `node`'s probe of `member`'s addresses ended.
    Probed {
        node: usize,
        member: NodeId,
        result: ProbeResult,
    },
    /// `node`'s stdout wrote out `origin`'s lines up to `seq`.
    Printed {
        node: usize,
        origin: NodeId,
        seq: u64,
    },
}

/// Knobs of a simulation.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub degree: usize,
    pub max_peers: usize,
    pub ttl: u8,
    pub window: usize,
    pub keepalive: Duration,
    pub stall_timeout: Duration,
    /// Link delays are drawn from this range.
    pub min_delay: Duration,
    pub max_delay: Duration,
    pub seed: u64,
    /// False: links carry no STATUS or DOWN, so nodes learn no members
    /// and keep no per-member state. The relay (MSG) path is the real one,
    /// on the links that the nodes' command-line seeds give; nothing is
    /// learned, so nothing else is dialed. For relay measurements at sizes
    /// where every node knowing every member does not fit.
    pub membership: bool,
    /// Each node's member table cap ([`super::MAX_MEMBERS`] by default, as
    /// in a real node): raised for groups larger than that.
    pub max_members: usize,
    /// Some: nodes acknowledge only what their stdout printed
    /// ([`Mesh::acknowledge_printed_only`], as a real node does), and a
    /// delivery is printed this long after it (a stopped node prints
    /// nothing until it resumes). None: acknowledged on delivery.
    pub print_lag: Option<Duration>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            degree: 3,
            max_peers: 32,
            ttl: 16,
            window: 64 * 1024,
            keepalive: Duration::from_secs(1),
            stall_timeout: Duration::from_secs(4),
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(20),
            seed: 1,
            membership: true,
            max_members: super::MAX_MEMBERS,
            print_lag: None,
        }
    }
}

pub struct Sim {
    pub cfg: SimConfig,
    base: Instant,
    pub now: Duration,
    pub nodes: Vec<SimNode>,
    links: BTreeMap<u64, Link>,
    conn_link: HashMap<Conn, u64>,
    /// Per node, its links' ids: degree and neighbours without a scan of
    /// every link (a 10,000-node run dials tens of thousands of times).
    node_links: Vec<Vec<u64>>,
    by_addr: HashMap<SocketAddr, usize>,
    /// Events by when they happen, in the order they were scheduled
    /// within one instant: a calendar, cheaper than a heap of millions of
    /// events in flight (most share one of a few thousand instants).
    queue: BTreeMap<Duration, Vec<Ev>>,
    next_conn: Conn,
    next_link: u64,
    pub rng: Rng,
    /// Frames delivered to nodes, of any kind.
    pub frames: u64,
    /// STATUS frames delivered to nodes.
    pub statuses: u64,
    /// STATUS and DOWN frames dropped on the links (`membership: false`).
    pub membership_dropped: u64,
    /// While set, nodes on different sides (by index) cannot connect.
    pub partition: Option<Vec<bool>>,
    /// The last buffer sent, decoded: a broadcast is decoded once.
    last_decoded: Option<Arc<Decoded>>,
}

impl Sim {
    pub fn new(cfg: SimConfig) -> Self {
        Sim {
            rng: Rng::new(cfg.seed),
            cfg,
            base: Instant::now(),
            now: Duration::ZERO,
            nodes: Vec::new(),
            links: BTreeMap::new(),
            conn_link: HashMap::new(),
            node_links: Vec::new(),
            by_addr: HashMap::new(),
            queue: BTreeMap::new(),
            next_conn: 1,
            next_link: 1,
            frames: 0,
            last_decoded: None,
            statuses: 0,
            membership_dropped: 0,
            partition: None,
        }
    }

    pub fn instant(&self) -> Instant {
        self.base + self.now
    }

    /// Starts a node that dials `seeds` (node indexes); returns its index.
    pub fn add_node(&mut self, seeds: Vec<usize>) -> usize {
        self.add_node_with_degree(seeds, self.cfg.degree)
    }

    /// As [`Sim::add_node`], with a `--degree` of its own.
    pub fn add_node_with_degree(&mut self, seeds: Vec<usize>, degree: usize) -> usize {
        self.add_node_with(seeds, degree, true)
    }

    /// As [`Sim::add_node`], with a `--degree` of its own; `relay` false
    /// for a `--no-relay` leaf.
    pub fn add_node_with(&mut self, seeds: Vec<usize>, degree: usize, relay: bool) -> usize {
        let index = self.nodes.len();
        let id = self.rng.next_u64();
        let addr = SocketAddr::new(
            Ipv4Addr::new(10, (index >> 16) as u8, (index >> 8) as u8, index as u8).into(),
            7117,
        );
        let cfg = MeshConfig {
            id,
            life: sim_life(id),
            name: format!("n{index}"),
            listen_port: 7117,
            advertise: None,
            ttl: self.cfg.ttl,
            relay,
            degree,
            max_peers: self.cfg.max_peers,
            window: self.cfg.window,
            max_frame: 1 << 20,
            keepalive: self.cfg.keepalive,
            stall_timeout: self.cfg.stall_timeout,
            seeds: seeds.len(),
            rng_seed: self.rng.next_u64(),
        };
        let mut mesh = Mesh::new(cfg, self.instant());
        mesh.set_member_cap(self.cfg.max_members);
        if self.cfg.print_lag.is_some() {
            mesh.acknowledge_printed_only();
        }
        self.nodes.push(SimNode {
            mesh,
            id,
            addr,
            alive: true,
            seeds,
            seen: HashMap::new(),
            gaps: 0,
            sent: 0,
            msgs_in: 0,
            deliveries: 0,
            last_delivery: None,
            members_up: 0,
            members_down: 0,
            tick_at: None,
            stopped: None,
            prints_held: Vec::new(),
        });
        self.by_addr.insert(addr, index);
        self.node_links.push(Vec::new());
        self.schedule(Duration::ZERO, Ev::Tick { node: index });
        index
    }

    fn schedule(&mut self, after: Duration, ev: Ev) {
        self.queue.entry(self.now + after).or_default().push(ev);
    }

    fn add_link(&mut self, link: Link) {
        let id = self.next_link;
        self.next_link += 1;
        for (node, conn) in link.ends {
            self.conn_link.insert(conn, id);
            self.node_links[node].push(id);
        }
        self.links.insert(id, link);
    }

    /// Removes link `id` from every index; its ends' conns stop mapping.
    fn remove_link(&mut self, id: u64) -> Option<Link> {
        let link = self.links.remove(&id)?;
        for (node, conn) in link.ends {
            self.conn_link.remove(&conn);
            self.node_links[node].retain(|l| *l != id);
        }
        Some(link)
    }

    fn delay(&mut self) -> Duration {
        let span = (self.cfg.max_delay - self.cfg.min_delay).as_micros() as usize;
        self.cfg.min_delay + Duration::from_micros(self.rng.below(span + 1) as u64)
    }

    /// Runs events until the virtual clock reaches `until`.
    pub fn run_until(&mut self, until: Duration) {
        // Events scheduled for the instant being run land in a new entry
        // for it, run next: the order is the order of scheduling.
        while let Some(entry) = self.queue.first_entry() {
            if *entry.key() > until {
                break;
            }
            let (at, events) = entry.remove_entry();
            self.now = at;
            for ev in events {
                self.handle(ev);
            }
        }
        self.now = until;
    }

    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    fn handle(&mut self, ev: Ev) {
        let now = self.instant();
        match ev {
            Ev::Frames { node, conn, frames } => {
                if !self.nodes[node].alive || !self.conn_link.contains_key(&conn) {
                    return;
                }
                self.feed(node, conn, &frames);
                self.after(node);
            }
            Ev::Tick { node } => {
                let n = &mut self.nodes[node];
                if !n.alive || n.tick_at.is_some_and(|t| t > self.now) {
                    return;
                }
                n.tick_at = None;
                n.mesh.tick(now);
                self.after(node);
            }
            Ev::Connect { from, to, target } => self.connect(from, to, target),
            Ev::LinkDown {
                link,
                alternatives,
                closer,
            } => {
                let Some(l) = self.remove_link(link) else {
                    return;
                };
                for (node, conn) in l.ends {
                    if !self.nodes[node].alive {
                        continue;
                    }
                    // As the router does: PEERS (empty too) arrive before
                    // the BYE.
                    if node != closer {
                        let peers = Frame::Peers(alternatives.clone());
                        self.nodes[node].mesh.on_frame(now, conn, &peers);
                    }
                    self.nodes[node].mesh.neighbour_down(now, conn, None);
                    self.after(node);
                }
            }
            Ev::Cut { node, conn, reason } => {
                let Some(link) = self.conn_link.get(&conn).copied() else {
                    return;
                };
                self.remove_link(link);
                if self.nodes[node].alive {
                    self.nodes[node]
                        .mesh
                        .neighbour_down(now, conn, Some(&reason));
                    self.after(node);
                }
            }
            Ev::Printed { node, origin, seq } => {
                let n = &mut self.nodes[node];
                if n.alive {
                    n.mesh.printed(now, [(origin, seq)], 0);
                    self.after(node);
                } else if n.stopped.is_some() {
                    n.prints_held.push((origin, seq));
                }
            }
            Ev::NeighbourDown { node, conn } => {
                // No goodbye: a crash or a cut link.
                if self.nodes[node].alive {
                    self.nodes[node].mesh.neighbour_lost(now, conn);
                    self.after(node);
                }
            }
            Ev::Probed {
                node,
                member,
                result,
            } => {
                if self.nodes[node].alive {
                    self.nodes[node].mesh.probed(now, member, result);
                    self.after(node);
                }
            }
        }
    }

    fn feed(&mut self, node: usize, conn: Conn, decoded: &Decoded) {
        let now = self.instant();
        let n = &mut self.nodes[node];
        n.msgs_in += decoded.msgs;
        for item in &decoded.items {
            self.frames += 1;
            match item {
                Item::Msgs(msgs) => n.mesh.on_msgs(now, conn, &decoded.bytes, msgs),
                Item::Status(_) if !self.cfg.membership => self.membership_dropped += 1,
                Item::Status(status) => {
                    self.statuses += 1;
                    n.mesh.on_frame(now, conn, status)
                }
                Item::Other(range) => {
                    let (frame, _) = frame::decode(&decoded.bytes[range.clone()], usize::MAX)
                        .expect("valid")
                        .expect("whole");
                    if !self.cfg.membership && matches!(frame, Frame::Down { .. }) {
                        self.membership_dropped += 1;
                        continue;
                    }
                    n.mesh.on_frame(now, conn, &frame);
                }
            }
        }
    }

    /// Carries out what `node`'s mesh asked for, then schedules its tick.
    fn after(&mut self, node: usize) {
        while let Some(action) = self.nodes[node].mesh.poll_action() {
            self.act(node, action);
        }
        let deadline = self.nodes[node].mesh.next_deadline();
        if let Some(d) = deadline {
            let at = d
                .saturating_duration_since(self.base)
                .max(self.now + Duration::from_micros(100));
            let n = &mut self.nodes[node];
            if n.tick_at.map_or(true, |t| at < t) {
                n.tick_at = Some(at);
                let after = at - self.now;
                self.schedule(after, Ev::Tick { node });
            }
        }
    }

    fn act(&mut self, node: usize, action: Action) {
        match action {
            Action::Send { to, frames, .. } => {
                let decoded = match &self.last_decoded {
                    Some(d) if Arc::ptr_eq(&d.bytes, &frames) => d.clone(),
                    _ => {
                        let d = Arc::new(Decoded::new(frames));
                        self.last_decoded = Some(d.clone());
                        d
                    }
                };
                let Some(link) = self.conn_link.get(&to).and_then(|l| self.links.get(l)) else {
                    return;
                };
                if link.closing {
                    return;
                }
                let (peer, peer_conn) = if link.ends[0].1 == to {
                    link.ends[1]
                } else {
                    link.ends[0]
                };
                let delay = link.delay;
                self.schedule(
                    delay,
                    Ev::Frames {
                        node: peer,
                        conn: peer_conn,
                        frames: decoded,
                    },
                );
            }
            Action::Deliver(deliveries) => {
                let now = self.now;
                let n = &mut self.nodes[node];
                let mut printed = Vec::new();
                for d in deliveries {
                    for (seq, hops, payload) in d.msgs() {
                        n.deliveries += 1;
                        n.last_delivery = Some((now, hops));
                        record(n, d.origin, seq, seq, false);
                        assert!(
                            !payload.contains(&b'\n'),
                            "a delivered payload holds a newline"
                        );
                    }
                    printed.extend(d.msgs().last().map(|(seq, ..)| (d.origin, seq)));
                }
                if let Some(lag) = self.cfg.print_lag {
                    for (origin, seq) in printed {
                        self.schedule(lag, Ev::Printed { node, origin, seq });
                    }
                }
            }
            Action::Gap {
                origin,
                first,
                last,
                ..
            } => {
                let n = &mut self.nodes[node];
                n.gaps += 1;
                record(n, origin, first, last, true);
            }
            Action::MemberUp { id, .. } => {
                assert_ne!(id, self.nodes[node].id, "member_up for the node itself");
                self.nodes[node].members_up += 1;
            }
            Action::MemberDown { id, .. } => {
                assert_ne!(id, self.nodes[node].id, "member_down for the node itself");
                self.nodes[node].members_down += 1;
            }
            Action::Dial(target) => {
                let to = match &target {
                    DialTarget::Seed(i) => self.nodes[node].seeds[*i],
                    DialTarget::Addr(a) => match self.by_addr.get(a) {
                        Some(&to) => to,
                        None => {
                            let now = self.instant();
                            self.nodes[node]
                                .mesh
                                .dial_result(now, &target, DialResult::Failed);
                            return;
                        }
                    },
                };
                let delay = self.delay();
                self.schedule(
                    delay,
                    Ev::Connect {
                        from: node,
                        to,
                        target,
                    },
                );
            }
            Action::Probe { member, addrs } => {
                let result = self.probe(node, &addrs);
                let delay = self.delay();
                self.schedule(
                    delay,
                    Ev::Probed {
                        node,
                        member,
                        result,
                    },
                );
            }
            // The sim's links cut a stopped node only (`Sim::stall`).
            Action::Reading { .. } | Action::Restarted { .. } => {}
            // A simulated stdout is never stuck; a cut ends the link at
            // both ends, as a neighbour's writer does.
            Action::Cut { conn } => {
                if let Some(&link) = self.conn_link.get(&conn) {
                    let other = self.links[&link].ends.into_iter().find(|(n, _)| *n != node);
                    self.schedule(
                        Duration::ZERO,
                        Ev::Cut {
                            node,
                            conn,
                            reason: "cut: its stdout took nothing".to_owned(),
                        },
                    );
                    if let Some((n, c)) = other {
                        self.schedule(Duration::ZERO, Ev::NeighbourDown { node: n, conn: c });
                    }
                }
            }
            Action::Close {
                conn, alternatives, ..
            } => {
                let Some(&link) = self.conn_link.get(&conn) else {
                    return;
                };
                let l = self.links.get_mut(&link).expect("conn has a link");
                // Frames already sent still arrive; nothing new is sent.
                l.closing = true;
                let delay = l.delay + Duration::from_micros(1);
                self.schedule(
                    delay,
                    Ev::LinkDown {
                        link,
                        alternatives,
                        closer: node,
                    },
                );
            }
        }
    }

    fn connect(&mut self, from: usize, to: usize, target: DialTarget) {
        let now = self.instant();
        if !self.nodes[from].alive {
            return;
        }
        let result = if from == to {
            DialResult::Myself
        } else if !self.nodes[to].alive || self.split(from, to) {
            DialResult::Failed
        } else if self.connected(from, to) {
            // The router refuses a second connection: "already connected".
            DialResult::Refused {
                alternatives: Vec::new(),
            }
        } else if self.degree_of(to) >= self.cfg.max_peers {
            DialResult::Refused {
                alternatives: self.nodes[to].mesh.alternatives(8),
            }
        } else {
            DialResult::Connected
        };
        if result == DialResult::Connected {
            let delay = self.delay();
            let (ca, cb) = (self.next_conn, self.next_conn + 1);
            self.next_conn += 2;
            self.add_link(Link {
                ends: [(from, ca), (to, cb)],
                delay,
                closing: false,
            });
            let (a_id, b_id) = (self.nodes[from].id, self.nodes[to].id);
            let (a_addr, b_addr) = (self.nodes[from].addr, self.nodes[to].addr);
            let remote_a = SocketAddr::new(a_addr.ip(), 40000);
            self.nodes[from].mesh.neighbour_up(
                now,
                ca,
                b_id,
                "",
                b_addr,
                b_addr.port(),
                Some(target.clone()),
            );
            self.nodes[to]
                .mesh
                .neighbour_up(now, cb, a_id, "", remote_a, 7117, None);
            self.after(to);
        }
        self.nodes[from].mesh.dial_result(now, &target, result);
        self.after(from);
    }

    /// A probe of `addrs` from `from`, as TCP answers it: a process that
    /// runs there (or is stopped: its kernel still accepts) answers; a
    /// crashed one's port refuses; across a partition nothing answers.
    fn probe(&self, from: usize, addrs: &[SocketAddr]) -> ProbeResult {
        let mut refused = true;
        for to in addrs.iter().filter_map(|a| self.by_addr.get(a)) {
            let n = &self.nodes[*to];
            if self.split(from, *to) {
                refused = false;
            } else if n.alive || n.stopped.is_some() {
                return ProbeResult::Answered;
            }
        }
        if refused {
            ProbeResult::Refused
        } else {
            ProbeResult::NoAnswer
        }
    }

    fn split(&self, a: usize, b: usize) -> bool {
        self.partition
            .as_ref()
            .is_some_and(|side| side.get(a) != side.get(b))
    }

    /// Splits the nodes into two sides (`side[i]`): links across are cut,
    /// and no new ones form until [`Sim::heal`].
    pub fn split_network(&mut self, side: Vec<bool>) {
        let across: Vec<(usize, usize)> = self
            .links
            .values()
            .map(|l| (l.ends[0].0, l.ends[1].0))
            .filter(|(a, b)| side.get(*a) != side.get(*b))
            .collect();
        self.partition = Some(side);
        for (a, b) in across {
            self.cut(a, b);
        }
    }

    pub fn heal(&mut self) {
        self.partition = None;
    }

    fn connected(&self, a: usize, b: usize) -> bool {
        self.neighbours_of(a).contains(&b)
    }

    pub fn degree_of(&self, node: usize) -> usize {
        self.node_links[node].len()
    }

    /// The node's neighbours, by index, in the order the links formed.
    pub fn neighbours_of(&self, node: usize) -> Vec<usize> {
        self.node_links[node]
            .iter()
            .map(|id| {
                let l = &self.links[id];
                if l.ends[0].0 == node {
                    l.ends[1].0
                } else {
                    l.ends[0].0
                }
            })
            .collect()
    }

    /// `count` new lines from `node`, if its window has room; returns how
    /// many went.
    pub fn send_lines(&mut self, node: usize, count: u64) -> u64 {
        let now = self.instant();
        let n = &mut self.nodes[node];
        if !n.alive {
            return 0;
        }
        let first = n.sent + 1;
        let mut last = n.sent;
        let mut payloads = Vec::new();
        let mut cost = 0;
        for seq in first..first + count {
            let payload = format!("line {seq} from n{node}");
            // A line costs the window its entry and the overhead.
            cost += frame::entry_cost(1 + payload.len());
            if cost > n.mesh.window_room() {
                break;
            }
            payloads.push(payload);
            last = seq;
        }
        if last < first {
            return 0;
        }
        let mut frames = Vec::new();
        let payloads: Vec<&[u8]> = payloads.iter().map(|p| p.as_bytes()).collect();
        frame::put_run(
            &mut frames,
            frame::MsgHeader {
                origin: n.id,
                seq: first,
                hops: 1,
                ttl: self.cfg.ttl,
                life: sim_life(n.id),
            },
            &payloads,
        );
        n.sent = last;
        n.mesh.local(now, &Arc::new(frames), first, last);
        self.after(node);
        last + 1 - first
    }

    /// The node dies at once (SIGKILL): its neighbours see the connection
    /// end after the link delay.
    pub fn crash(&mut self, node: usize) {
        self.nodes[node].alive = false;
        self.nodes[node].stopped = None;
        let mut links = self.node_links[node].clone();
        links.sort_unstable();
        for id in links {
            let l = self.remove_link(id).expect("listed");
            for (n, conn) in l.ends {
                if n != node {
                    self.schedule(l.delay, Ev::NeighbourDown { node: n, conn });
                }
            }
        }
    }

    /// The node leaves politely: its leaving STATUS goes out to its
    /// neighbours, and once that has had time to arrive its connections
    /// end (as a real node closes them after its goodbye).
    pub fn leave(&mut self, node: usize) {
        let now = self.instant();
        self.nodes[node].mesh.leave(now, false);
        self.after(node);
        self.run_for(self.cfg.max_delay * 2);
        self.crash(node);
    }

    /// The node stops reading (SIGSTOP): it processes nothing more, and
    /// each neighbour's writer cuts it after the stall timeout.
    pub fn stall(&mut self, node: usize) {
        self.nodes[node].alive = false;
        let stall = self.cfg.stall_timeout;
        let reason = format!("cut: accepted nothing for {}s", stall.as_secs());
        let mut links = self.node_links[node].clone();
        links.sort_unstable();
        let own: Vec<Conn> = links
            .iter()
            .flat_map(|id| self.links[id].ends)
            .filter(|(n, _)| *n == node)
            .map(|(_, conn)| conn)
            .collect();
        self.nodes[node].stopped = Some(own);
        let ends: Vec<(usize, Conn)> = links
            .iter()
            .flat_map(|id| self.links[id].ends)
            .filter(|(n, _)| *n != node)
            .collect();
        for (n, conn) in ends {
            self.schedule(
                stall,
                Ev::Cut {
                    node: n,
                    conn,
                    reason: reason.clone(),
                },
            );
        }
    }

    /// A stopped node goes on (SIGCONT): it sees the links its neighbours
    /// cut meanwhile end and ticks again; its stdout prints what it held
    /// a print lag later (after the node's first steps). Frames sent to it while it was stopped are gone (a real
    /// node reads what its socket buffers held: the simulated one starts
    /// with holes instead, the harder case).
    pub fn resume(&mut self, node: usize) {
        let now = self.instant();
        let n = &mut self.nodes[node];
        let Some(conns) = n.stopped.take() else {
            return;
        };
        n.alive = true;
        n.tick_at = None;
        for conn in conns {
            if !self.conn_link.contains_key(&conn) {
                self.nodes[node].mesh.neighbour_down(now, conn, None);
            }
        }
        let held = std::mem::take(&mut self.nodes[node].prints_held);
        let lag = self.cfg.print_lag.unwrap_or_default();
        for (origin, seq) in held {
            self.schedule(lag, Ev::Printed { node, origin, seq });
        }
        self.after(node);
    }

    /// Cuts one link: both ends see it end.
    pub fn cut(&mut self, a: usize, b: usize) {
        let mut links = self.node_links[a].clone();
        links.sort_unstable();
        let found = links.into_iter().find(|id| {
            let ends = (self.links[id].ends[0].0, self.links[id].ends[1].0);
            ends == (a, b) || ends == (b, a)
        });
        if let Some(id) = found {
            let l = self.remove_link(id).expect("found");
            for (n, conn) in l.ends {
                self.schedule(Duration::ZERO, Ev::NeighbourDown { node: n, conn });
            }
        }
    }

    /// The node at the other end of `node`'s connection `conn`, if it is up.
    pub fn peer_of(&self, node: usize, conn: Conn) -> Option<usize> {
        let link = self.links.get(self.conn_link.get(&conn)?)?;
        link.ends
            .iter()
            .find(|(n, c)| *n != node || *c != conn)
            .map(|(n, _)| *n)
    }

    /// MSG copies received per message delivered, less one, over every
    /// node since the last [`Sim::reset_counts`]: 0 when each member gets
    /// each message once (a settled tree), about degree - 1 when flooding.
    pub fn duplicates_per_delivery(&self) -> f64 {
        let copies: u64 = self.nodes.iter().map(|n| n.msgs_in).sum();
        let deliveries: u64 = self.nodes.iter().map(|n| n.deliveries).sum();
        copies.saturating_sub(deliveries) as f64 / deliveries.max(1) as f64
    }

    /// Starts counting copies and deliveries afresh.
    pub fn reset_counts(&mut self) {
        for n in &mut self.nodes {
            n.msgs_in = 0;
            n.deliveries = 0;
        }
    }

    /// Whether the live nodes form one connected graph.
    pub fn connected_graph(&self) -> bool {
        self.components().len() <= 1
    }

    /// The live nodes, grouped by connected component.
    pub fn components(&self) -> Vec<Vec<usize>> {
        let mut adj: HashMap<usize, Vec<usize>> = HashMap::new();
        for l in self.links.values() {
            adj.entry(l.ends[0].0).or_default().push(l.ends[1].0);
            adj.entry(l.ends[1].0).or_default().push(l.ends[0].0);
        }
        let mut seen = vec![false; self.nodes.len()];
        let mut out = Vec::new();
        for start in 0..self.nodes.len() {
            if seen[start] || !self.nodes[start].alive {
                continue;
            }
            let mut comp = vec![start];
            seen[start] = true;
            let mut i = 0;
            while i < comp.len() {
                for &m in adj.get(&comp[i]).map(Vec::as_slice).unwrap_or(&[]) {
                    if !seen[m] {
                        seen[m] = true;
                        comp.push(m);
                    }
                }
                i += 1;
            }
            out.push(comp);
        }
        out
    }
}

/// Checks and records a delivery (`gap` false, `first == last`) or a gap.
fn record(n: &mut SimNode, origin: NodeId, first: u64, last: u64, gap: bool) {
    let seen = n.seen.entry(origin).or_default();
    if seen.first == 0 {
        seen.first = first;
    } else if first != seen.covered_to + 1 {
        panic!(
            "{}: origin {origin:016x}: {} {first}..={last} after {} (duplicate, out of \
             order, or a silent hole)",
            n.mesh.cfg.name,
            if gap { "gap" } else { "delivery" },
            seen.covered_to
        );
    }
    assert!(last >= first);
    seen.covered_to = last;
    if gap {
        seen.lost += last + 1 - first;
    } else {
        seen.delivered += 1;
    }
}

/// A simulated node's life: derived from its id (never 0), so that adding
/// it draws nothing more from the simulation's random numbers.
fn sim_life(id: NodeId) -> u64 {
    id | 1
}
