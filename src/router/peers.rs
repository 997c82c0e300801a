//! The peer table: admitting and refusing connections, the mutual-dial
//! tie-break, and peers coming up and going down. A peer that is up joins
//! the mesh as a neighbour; its end leaves it.

use std::net::SocketAddr;
use std::time::Instant;

use crossbeam_channel::Sender;

use super::Router;
use crate::books::plural;
use crate::event::{ConnId, DialFailure, Direction, Ending, Handover, Output, PeerInfo};
use crate::frame::{Frame, NodeId, MAX_PEERS_ENTRIES};
use crate::handshake::HANDSHAKE_TIMEOUT;
use crate::mesh::{DialResult, DialTarget};
use crate::node::HANDSHAKES_PER_IP;
use crate::outbox::{Batch, Close, Outbox};
use crate::ratelog;
use crate::shutdown::Never;

/// A peer connected at least this long has its end always logged; shorter
/// ones are rate-limited per address, like other warnings a stranger can
/// cause.
const ESTABLISHED: std::time::Duration = std::time::Duration::from_secs(5);
/// How long the first read of stdin waits for an up peer's first STATUS.
const ANNOUNCE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
/// The BYE reason of a connection closed in a mutual-dial tie-break.
const DUPLICATE: &str = "duplicate connection";

/// The other end closed this connection in a mutual-dial tie-break: it
/// kept the other one, so nothing was refused.
fn lost_tie_break(ending: &Ending) -> bool {
    matches!(ending, Ending::Refused(r) if r == DUPLICATE)
}

pub(super) struct Entry {
    pub info: PeerInfo,
    pub outbox: Outbox,
    /// We sent ACCEPT (false: we refused it, or it lost a tie-break).
    admitted: bool,
    /// Both sides have accepted.
    up: bool,
    /// A neighbour of the mesh: its frames go to the mesh.
    pub in_mesh: bool,
    /// No new frames go to a closing connection.
    pub closing: bool,
    /// What the mesh dialed, for a connection we dialed.
    dialed: Option<DialTarget>,
    /// Members to try instead, from the PEERS before a refusal.
    pub alternatives: Vec<(NodeId, SocketAddr)>,
    /// The connection this one replaces: it joins the mesh once that one
    /// is gone.
    waiting_for: Option<ConnId>,
    since: Instant,
    gate: Option<Sender<Never>>,
    handover: Handover,
    /// Frame batches received from it, and its ending once the reader is
    /// done: the entry goes when every batch it sent has arrived.
    pub batches: u64,
    pub down: Option<(Ending, u64)>,
}

/// The reason a node refuses a second link to a node it has a link to;
/// the name of the one it has follows.
const ALREADY_CONNECTED: &str = "already connected";

impl Entry {
    /// Queues a PEERS frame naming `alternatives`, members to dial instead,
    /// ahead of the goodbye that follows it.
    pub(super) fn hand_alternatives(&mut self, alternatives: Vec<(NodeId, SocketAddr)>) {
        self.outbox.push(Batch {
            bytes: Frame::Peers(alternatives).to_bytes().into(),
            msgs: 0,
        });
    }
}

impl Router {
    pub(super) fn admit(
        &mut self,
        info: PeerInfo,
        outbox: Outbox,
        dialed: Option<DialTarget>,
        gate: Sender<Never>,
        handover: Handover,
    ) {
        let conn = info.conn;
        let mut entry = Entry {
            info,
            outbox,
            admitted: false,
            up: false,
            in_mesh: false,
            closing: false,
            dialed,
            alternatives: Vec::new(),
            waiting_for: None,
            since: Instant::now(),
            gate: Some(gate),
            handover,
            batches: 0,
            down: None,
        };
        if self.stopping {
            Self::refuse(&mut entry, "shutting down", Vec::new());
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
            Self::refuse(&mut entry, reason, Vec::new());
        } else if self.by_node.len() >= self.node.config.max_peers && !self.evict_unconfirmed() {
            let reason = format!("peer limit reached ({})", self.node.config.max_peers);
            ratelog::warn("refused peers", entry.info.addr.ip(), || {
                format!("refusing {}: {reason}", entry.info)
            });
            // The refused dialer gets other members to try (Gnutella's
            // X-Try), so it joins the group anyway.
            let alternatives = self.alternatives_to(entry.info.node_id);
            Self::refuse(&mut entry, &reason, alternatives);
        } else {
            self.by_node.insert(entry.info.node_id, conn);
            entry.admitted = true;
            entry.outbox.accept();
            entry.gate = None;
        }
        self.peers.insert(conn, entry);
    }

    /// A second connection to an admitted node. If the two are a mutual
    /// dial (one each way, both young), both nodes keep the one dialed by
    /// the node with the smaller id, so they agree without another message.
    /// Otherwise the newcomer is refused: an established connection is
    /// never replaced by one claiming its id.
    fn duplicate(&mut self, existing: ConnId, new: &mut Entry) {
        let old = &self.peers[&existing];
        let mutual_dial =
            old.since.elapsed() < HANDSHAKE_TIMEOUT && old.info.direction != new.info.direction;
        if !mutual_dial {
            let line = || {
                format!(
                    "refusing {}: node {:016x} is already connected from {}",
                    new.info, new.info.node_id, old.info.addr
                )
            };
            if new.dialed.is_some() {
                // The mesh dialed an address of a node it is connected to.
                log::debug!("{}", line());
            } else {
                ratelog::warn("refused peers", new.info.addr.ip(), line);
            }
            // Naming the node we have: a dialer under the same id (the
            // same --key) but another name is another process.
            let reason = format!("{ALREADY_CONNECTED} (as {})", old.info.name);
            Self::refuse(new, &reason, Vec::new());
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
            Self::refuse(new, DUPLICATE, Vec::new());
            return;
        }
        let old = self.peers.get_mut(&existing).expect("present");
        old.closing = true;
        old.outbox.close(Close::Graceful(DUPLICATE.to_owned()));
        self.full.remove(&existing);
        // The new connection delivers nothing until the old one has
        // delivered everything, and joins the mesh once the old one has
        // left it: the mesh never has two connections to one node.
        new.outbox.hold();
        if let Some(gate) = new.gate.take() {
            old.handover.pass_on(gate);
        }
        new.up = old.up;
        new.waiting_for = Some(existing);
        self.successors.insert(existing, new.info.conn);
        new.admitted = true;
        new.outbox.accept();
        self.by_node.insert(new.info.node_id, new.info.conn);
    }

    /// The peer said goodbye on this connection.
    pub(super) fn peer_bye(&mut self, conn: ConnId, _reason: &str) {
        // Its reader has already asked the writer to answer in kind.
        if let Some(entry) = self.peers.get_mut(&conn) {
            entry.closing = true;
            self.full.remove(&conn);
        }
    }

    /// Refuses a connection: PEERS with `alternatives` (if any), then BYE.
    fn refuse(entry: &mut Entry, reason: &str, alternatives: Vec<(NodeId, SocketAddr)>) {
        log::debug!(
            "refusing connection {} to {}: {reason}",
            entry.info.conn,
            entry.info
        );
        entry.closing = true;
        if !alternatives.is_empty() {
            entry.hand_alternatives(alternatives);
        }
        entry.outbox.close(Close::Refuse(reason.to_owned()));
        // Whatever it sends is dropped; its reader must not wait for us.
        entry.gate = None;
    }

    /// The peer has accepted us too (its ACCEPT, or a frame after it).
    pub(super) fn peer_up(&mut self, conn: ConnId) {
        let Some(entry) = self.peers.get_mut(&conn) else {
            return;
        };
        if !entry.admitted || entry.closing {
            return;
        }
        if entry.up {
            // Already up (a successor inherits it): only joining is left.
            self.join_mesh(conn);
            return;
        }
        entry.up = true;
        let info = entry.info.clone();
        if let Some(target) = entry.dialed.clone() {
            if let DialTarget::Seed(i) = target {
                self.seeds_warned.retain(|(seed, _)| *seed != i);
            }
            self.mesh
                .dial_result(Instant::now(), &target, DialResult::Connected);
        }
        if self.announced.insert(info.node_id) {
            self.announced_any += 1;
            let shown = match info.direction {
                Direction::In => self.peer_up_lines.admit(Instant::now()),
                Direction::Out => true,
            };
            if shown {
                log::info!(
                    "peer up: {info}{} [{}], node {:016x}; {} connected",
                    self.listed_as(&info),
                    match info.direction {
                        Direction::In => "they dialed",
                        Direction::Out => "we dialed",
                    },
                    info.node_id,
                    self.live_peers()
                );
            }
            self.output(Output::PeerUp(info));
        }
        self.join_mesh(conn);
    }

    /// " (key listed as bob)" when the allow-list names the peer's key
    /// otherwise than its HELLO does: a name is claimed, a key proven.
    fn listed_as(&self, info: &PeerInfo) -> String {
        let listed = self
            .node
            .security
            .as_ref()
            .and_then(|s| s.listed_name(info.node_id));
        match listed {
            Some(name) if name != &*info.name => format!(" (key listed as {name})"),
            _ => String::new(),
        }
    }

    /// Makes an up peer a neighbour of the mesh, unless it still waits for
    /// the connection it replaces.
    fn join_mesh(&mut self, conn: ConnId) {
        let Some(entry) = self.peers.get_mut(&conn) else {
            return;
        };
        if !entry.up || entry.closing || entry.in_mesh || entry.waiting_for.is_some() {
            return;
        }
        entry.in_mesh = true;
        let info = &entry.info;
        if !self.mesh.has_joined() {
            self.mesh.count_status_from(crate::node::epoch_nanos());
        }
        self.mesh.neighbour_up(
            Instant::now(),
            conn,
            info.node_id,
            &info.name,
            info.addr,
            info.listen_port,
            entry.dialed.clone(),
        );
    }

    /// Removes a connection whose reader is done, once every frame batch
    /// it read has been routed.
    pub(super) fn finish_down(&mut self, conn: ConnId) {
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
        self.account(&entry);
        if self.closed_names.len() == super::CLOSED_NAMES {
            self.closed_names.pop_front();
        }
        self.closed_names.push_back((conn, entry.info.name.clone()));
        if entry.in_mesh {
            // A neighbour our writer cut for stalling (its socket took
            // nothing, or it answered no PING after our messages) is
            // reported to the group, so that everyone forgets it and
            // windows free.
            let cut = match &ending {
                Ending::Stalled(d) | Ending::Unanswered(d) => {
                    Some(format!("cut: accepted nothing for {}s", d.as_secs()))
                }
                Ending::OutputStuck => Some("cut: its stdout took nothing".to_owned()),
                _ => None,
            };
            let now = Instant::now();
            if cut.is_none() && no_goodbye(&ending) && !self.successors.contains_key(&conn) {
                // Maybe killed: the mesh probes its address (see
                // `Mesh::neighbour_lost`).
                self.mesh.neighbour_lost(now, conn);
            } else {
                self.mesh.neighbour_down(now, conn, cut.as_deref());
            }
        }
        if let Some(successor) = self.successors.remove(&conn) {
            if let Some(next) = self.peers.get_mut(&successor) {
                next.outbox.release();
                next.waiting_for = None;
            }
            self.join_mesh(successor);
        }
        if !entry.up {
            self.dial_ended_early(&entry, &ending);
        }
        let current = self.by_node.get(&entry.info.node_id) == Some(&conn);
        if !current {
            log::debug!("extra connection {conn} to {} closed: {ending}", entry.info);
            return;
        }
        self.by_node.remove(&entry.info.node_id);
        if self.announced.remove(&entry.info.node_id) {
            self.log_peer_down(&entry, &ending);
            self.output(Output::PeerDown(entry.info, ending));
        } else if entry.dialed.is_none() {
            let line = || format!("{}: ended before it was a peer: {ending}", entry.info);
            if lost_tie_break(&ending) {
                // Its dialer kept the connection we dialed in a mutual
                // dial: a tie-break, no failure (as in `dial_ended_early`).
                log::debug!("{} (a mutual dial: the other connection is kept)", line());
            } else if ending.is_polite() {
                log::info!("{}", line());
            } else if self.node.security.is_some() {
                log::warn!("{}", line()); // a member: see log_peer_down
            } else {
                ratelog::warn("failed connections", entry.info.addr.ip(), line);
            }
        }
    }

    fn log_peer_down(&self, entry: &Entry, ending: &Ending) {
        let left = self.live_peers();
        let held = no_goodbye(ending)
            .then(|| self.mesh.held_back_lately(Instant::now()))
            .flatten();
        let why = held.map_or(String::new(), |held| {
            format!(
                " (this node held back its frames for {:.1}s, its stdout blocked or the \
                 process stopped: it probably cut this node as stalled, --stall-timeout)",
                held.as_secs_f64()
            )
        });
        let line = || format!("peer down: {} {ending}{why}; {left} connected", entry.info);
        if ending.is_polite() {
            log::info!("{}", line());
        } else if entry.since.elapsed() >= ESTABLISHED || self.node.security.is_some() {
            // In a private group the peer proved the secret or a listed
            // key: a member, whose broken link is always worth its line.
            log::warn!("{}", line());
        } else {
            // Short-lived: a stranger cycling connections must not flood
            // the log.
            ratelog::warn("broken connections", entry.info.addr.ip(), line);
        }
    }

    /// A connection we dialed ended before it was up: tell the mesh how.
    fn dial_ended_early(&mut self, entry: &Entry, ending: &Ending) {
        let Some(target) = entry.dialed.clone() else {
            return;
        };
        if self
            .by_node
            .get(&entry.info.node_id)
            .is_some_and(|kept| *kept != entry.info.conn)
        {
            // A mutual dial: we kept the connection the node dialed, and
            // closed ours (`duplicate`). The dial reached its node; nothing
            // refused it (attack46 F4 saw it warned as a refusal).
            log::debug!("{}: {ending} (connected through its own dial)", entry.info);
            self.mesh
                .dial_result(Instant::now(), &target, DialResult::Connected);
            return;
        }
        let result = match ending {
            Ending::Refused(_) => DialResult::Refused {
                alternatives: entry.alternatives.clone(),
            },
            _ => DialResult::Failed,
        };
        if let Ending::Refused(reason) = ending {
            self.refused_as_connected(entry, reason);
        }
        self.mesh.dial_result(Instant::now(), &target, result);
        let line = format!("{}: {ending}", entry.info);
        if lost_tie_break(ending) {
            // The other side of a mutual dial kept its own connection,
            // which we have not admitted yet: a tie-break, no refusal.
            log::debug!("{line} (a mutual dial: its connection is kept)");
        } else {
            self.log_dial_failure(&target, &line, DialFailure::Failed);
        }
        if !entry.alternatives.is_empty() {
            // Detail for an address the mesh learned, as its failures are.
            let level = match target {
                DialTarget::Seed(_) => log::Level::Info,
                DialTarget::Addr(_) => log::Level::Debug,
            };
            log::log!(
                level,
                "{} refused us and named {} to try instead",
                entry.info,
                plural(entry.alternatives.len() as u64, "other member")
            );
        }
    }

    /// Refused as "already connected" while our only link to that node
    /// is this one: it holds a link to a node with our id that is not
    /// ours. Under another name, that is another process using our
    /// `--key` (attack23 F2: joined through a node the first one was
    /// linked to, the second redialed it for ever without a word, and
    /// exited 0); under ours, it may be our earlier run's link, not yet
    /// closed, so only a warning.
    fn refused_as_connected(&mut self, entry: &Entry, reason: &str) {
        let Some(rest) = reason.strip_prefix(ALREADY_CONNECTED) else {
            return;
        };
        let other_link = self
            .by_node
            .get(&entry.info.node_id)
            .is_some_and(|c| *c != entry.info.conn);
        if other_link {
            return;
        }
        let name = rest.strip_prefix(" (as ").and_then(|r| r.strip_suffix(')'));
        match name {
            Some(name) if name != self.node.config.name => {
                self.mesh.id_conflict_found(format!(
                    "{} is linked to another process under our id {:016x} (name {name:?}): \
                     the same --key used twice?",
                    entry.info, self.node.id
                ));
            }
            _ => ratelog::warn("refused as already connected", entry.info.addr.ip(), || {
                format!(
                    "{} refused us: it is already connected to a node with our id {:016x} \
                     (our earlier run's link, not yet closed, or another process using the \
                     same --key)",
                    entry.info, self.node.id
                )
            }),
        }
    }

    /// A dial that never reached a HELLO.
    pub(super) fn dial_failed(&mut self, target: DialTarget, reason: String, kind: DialFailure) {
        if kind == DialFailure::Myself {
            let what = match &target {
                DialTarget::Seed(i) => self.node.config.peers.get(*i).map(|p| p.to_string()),
                DialTarget::Addr(addr) => Some(addr.to_string()),
            };
            log::info!(
                "{reason}: {} is this node itself; not dialing it again",
                what.unwrap_or_default()
            );
            self.mesh
                .dial_result(Instant::now(), &target, DialResult::Myself);
            return;
        }
        self.mesh
            .dial_result(Instant::now(), &target, DialResult::Failed);
        self.log_dial_failure(&target, &reason, kind);
    }

    /// One line per failed dial, saying when the next one comes. A
    /// command-line PEER that fails is a warning the first time (so a
    /// mistyped PEER shows even under `-q`), and again the first time it
    /// says this node cannot join (a private group, a refusal), then info
    /// until it works; an address the mesh learned is detail, unless this
    /// node cannot join it (a warning, rate-limited per address).
    fn log_dial_failure(&mut self, target: &DialTarget, reason: &str, kind: DialFailure) {
        let again = match self.mesh.next_dial_at(target) {
            Some(at) => format!(
                "; dialing again in {:.2}s",
                at.saturating_duration_since(Instant::now()).as_secs_f64()
            ),
            None => String::new(),
        };
        let cannot_join = kind == DialFailure::CannotJoin;
        match target {
            DialTarget::Seed(i) if self.seeds_warned.insert((*i, cannot_join)) => {
                log::warn!("{reason}{again}")
            }
            DialTarget::Seed(_) => log::info!("{reason}{again}"),
            DialTarget::Addr(addr) if cannot_join => {
                ratelog::warn("dials that cannot join, to", addr.ip(), || {
                    format!("{reason}{again}")
                })
            }
            // With no PEER and no link yet, the remembered members are all
            // there is to join through: the first failure says so, or a node
            // restarted after the group was gone said nothing (attack40 F5).
            DialTarget::Addr(_) if self.alone_with_the_cache() => {
                self.cache_warned = true;
                log::warn!(
                    "{reason}{again} (no PEER given and no peer connected yet: the members \
                     remembered in --peer-cache are tried again with backoff, and this node \
                     waits to be dialed; the next failures are logged with -v)"
                )
            }
            DialTarget::Addr(_) => log::debug!("{reason}{again}"),
        }
    }

    /// No PEER on the command line, a peer cache, no link up, and no
    /// warning about it yet.
    fn alone_with_the_cache(&self) -> bool {
        !self.cache_warned
            && self.node.config.peers.is_empty()
            && self.node.config.peer_cache.is_some()
            && self.live_peers() == 0
    }

    /// Adds a finished connection's traffic to the totals.
    pub(super) fn account(&mut self, entry: &Entry) {
        let (ledger, _) = entry.outbox.ledger();
        self.books.totals.msgs_out += ledger.written;
        self.books.totals.bytes_out += ledger.written_bytes;
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
        // Like a refused dialer, it gets other members to try: it may have
        // our ACCEPT and count us as a peer already, and without them it
        // only dialed us again (attack40 F1).
        let alternatives = self.alternatives_to(node_id);
        let entry = self.peers.get_mut(&conn).expect("present");
        log::debug!(
            "{}: has not accepted us; its slot goes to a newcomer ({} named to it)",
            entry.info,
            plural(alternatives.len() as u64, "other member")
        );
        entry.closing = true;
        if !alternatives.is_empty() {
            entry.hand_alternatives(alternatives);
        }
        entry.outbox.close(Close::Graceful(format!(
            "peer limit reached ({})",
            self.node.config.max_peers
        )));
        self.by_node.remove(&node_id);
        true
    }

    /// Up to a PEERS frame's worth of live members for `node` to dial
    /// instead of us, never itself.
    fn alternatives_to(&self, node: NodeId) -> Vec<(NodeId, SocketAddr)> {
        let mut alternatives = self.mesh.alternatives(MAX_PEERS_ENTRIES);
        alternatives.retain(|(id, _)| *id != node);
        alternatives
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

    /// Peers that are up: the direct links.
    pub(super) fn live_peers(&self) -> usize {
        self.by_node
            .values()
            .filter(|conn| {
                self.peers
                    .get(conn)
                    .is_some_and(|entry| entry.up && !entry.closing)
            })
            .count()
    }

    /// Before stdin is first read, the peers that are up but have not
    /// announced themselves yet (no STATUS, so not members): a line read
    /// now would not be owed to them. Waited for at most [`ANNOUNCE_GRACE`]
    /// each (a peer that never announces is not a member of the group).
    /// The earliest end of such a wait, if any.
    pub(super) fn unannounced_until(&self) -> Option<Instant> {
        self.first?;
        self.by_node
            .iter()
            .filter(|(id, _)| !self.members.contains(id))
            .filter_map(|(_, conn)| self.peers.get(conn))
            .filter(|e| e.up && !e.closing)
            .map(|e| e.since + ANNOUNCE_GRACE)
            .filter(|at| *at > Instant::now())
            .min()
    }

    /// The mesh neighbour a connection's frames count as coming from:
    /// itself when it is one; else another connection to the same node that
    /// is (the two links of a mutual dial: each side may have put a
    /// different one into its mesh); else itself, not yet a neighbour (a
    /// successor waiting for the link it replaces). `None` for a connection
    /// we never accepted: the other side cannot count us as its neighbour
    /// on it.
    pub(super) fn mesh_source(&self, conn: ConnId) -> Option<ConnId> {
        let entry = self.peers.get(&conn)?;
        if entry.in_mesh {
            return Some(conn);
        }
        if !entry.admitted {
            return None;
        }
        let node = entry.info.node_id;
        let linked = self
            .peers
            .iter()
            .find(|(_, e)| e.in_mesh && e.info.node_id == node);
        Some(linked.map_or(conn, |(c, _)| *c))
    }

    /// Whether a connection counts as up (for frames arriving on it).
    pub(super) fn is_admitted(&self, conn: ConnId) -> Option<(bool, bool)> {
        self.peers.get(&conn).map(|e| (e.admitted, e.up))
    }
}

/// Whether a connection ended without a goodbye from the peer's side and
/// not by our doing: its process may be gone. (BYE, a refusal, our own
/// stop or our BYE left unanswered are goodbyes or our doing; a stalled
/// peer is cut and reported as such.)
fn no_goodbye(ending: &Ending) -> bool {
    matches!(
        ending,
        Ending::Eof
            | Ending::Truncated { .. }
            | Ending::Reset
            | Ending::Silent(_)
            | Ending::Protocol(_)
            | Ending::Io(_)
    )
}
