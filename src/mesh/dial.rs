//! Whom to dial and whom to let go: command-line PEERs until reached once,
//! learned member addresses while below `--degree` (per-address backoff
//! with jitter), now and then a remembered member that is not in the view
//! (partition heal), at once a member cut off by a lost link (the dial
//! across), trimming above 2 × degree, and the check by a node let go
//! that trims at once did not split the group ([`LetGo`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::rng::Rng;
use super::{Action, Conn, DialResult, DialTarget, Mesh, Neighbour, NodeId};
use crate::frame::Frame;

/// The first retry after a failed dial; doubled after each failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often a remembered member outside the view is tried (jittered).
const HEAL_EVERY: Duration = Duration::from_secs(10);
/// How soon after members fell silent the first heal dial goes out: an
/// island (a part of the group that lost its links to the rest) notices
/// after 3 × keepalive of silence, and should not wait another 10 s. Also
/// how often heal dials go out while below `--degree`.
const HEAL_SOON: Duration = Duration::from_secs(1);
/// The most addresses remembered; more are ignored until some go.
const MAX_ADDRS: usize = 16384;
/// How many keepalives a link's evidence of lying on a cycle lasts.
const CYCLE_KEEPALIVES: u32 = 3;
/// Up to this many times the degree, bridges and links not yet judged are
/// kept (see `trim`).
const BRIDGES_KEPT: usize = 3;

/// What `trim` knows of a link; the later variants go first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Standing {
    /// Some member's announcements reach us only through it.
    Bridge,
    /// Up for less than a keepalive, on no known cycle.
    Unjudged,
    /// Judged, and no bridge.
    NoBridge,
    /// A STATUS showed it lies on a cycle: closing it splits nothing.
    OnCycle,
    /// Up for a keepalive, and its neighbour is no live member (it never
    /// announced itself, or went silent for 3 × keepalive): no member's
    /// lines or news depend on it. A stranger's handshakes that then sat
    /// idle were kept while real members' links on cycles went (attack44
    /// F2).
    NoMember,
}

#[derive(Debug, Clone)]
struct Attempt {
    pending: bool,
    next_try: Instant,
    backoff: Duration,
}

impl Attempt {
    fn new(now: Instant) -> Self {
        Attempt {
            pending: false,
            next_try: now,
            backoff: FIRST_BACKOFF,
        }
    }

    fn ready(&self, now: Instant) -> bool {
        !self.pending && now >= self.next_try
    }

    fn failed(&mut self, now: Instant, rng: &mut Rng) {
        self.pending = false;
        self.next_try = now + rng.jitter(self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }
}

#[derive(Debug, Clone)]
struct Seed {
    reached: bool,
    attempt: Attempt,
}

#[derive(Debug, Clone)]
struct Known {
    node: Option<NodeId>,
    /// This address is ourselves: never dialed again.
    myself: bool,
    attempt: Attempt,
}

#[derive(Debug)]
pub struct DialPolicy {
    seeds: Vec<Seed>,
    addrs: BTreeMap<SocketAddr, Known>,
    /// Addresses being dialed now (their results are pending).
    dialing: BTreeSet<SocketAddr>,
    next_heal: Instant,
    /// Alternatives a neighbour handed us as it let us go (PEERS before a
    /// "too many neighbours" BYE, or a refusal): members in its part of
    /// the group, dialed before any other learned address, so that a
    /// trimmed node rejoins that group instead of pairing with the others
    /// trimmed at the same moment. Cleared once a dial connects.
    preferred: Vec<SocketAddr>,
    /// Per member, how its newest STATUS reached us (see
    /// `heard_status_via`); emptied when it reaches `MAX_ADDRS` members.
    first_via: HashMap<NodeId, Heard>,
    /// Neighbours that let us go while we kept other links, until their
    /// next STATUS reaches us through one of those (see [`LetGo`]).
    let_go: Vec<LetGo>,
    /// Members that let us go, and when: full, so among the alternatives
    /// we were handed, those are dialed last (see `skip_full`). A node
    /// alone hands each alternative that lets it go its own kept
    /// neighbours, one of them the member that let it go a moment before:
    /// with `--degree 1`, where a group is a tree of members full at two
    /// links, it went back and forth between full members (a node let go
    /// 208 times in 20 s, attack35 F2; in the simulator, 20 nodes joining
    /// one seed at once fell alone again 305-538 times in 20 s, now
    /// 81-101).
    full: BTreeMap<NodeId, Instant>,
}

/// How long a member that let us go counts as full.
const FULL_FOR: Duration = Duration::from_secs(10);
/// The most such members remembered; the oldest gives way.
const FULL_KEPT: usize = 64;

/// A neighbour that let us go (PEERS, then BYE "too many neighbours")
/// while we kept other links. Each trim is safe alone, but two nodes
/// trimming at once can close two links of one cycle and split the group
/// into islands where every node still has its degree, so nobody dials
/// (attack34 F1: nothing crossed for 16.5 s, until members fell silent).
/// So a trimmer floods a new STATUS of its own right after it trims, on
/// the links it keeps (no STATUS crosses a link either end is closing:
/// `Mesh::flood_status`), and the node it let go waits for that STATUS to
/// come round through its other links. If it does not within
/// [`Mesh::let_go_wait`], the trimmer is in another part of the group:
/// we dial one of the members it handed us, whatever our degree. The last
/// trim of any set that splits the group crossed the split, and its
/// STATUS went out after every other trim of the set: its node let go
/// sees the split.
#[derive(Debug, Clone)]
struct LetGo {
    node: NodeId,
    /// The newest of its flooded STATUS frames that came to us through
    /// the link it closed (it sends its newest there right before PEERS):
    /// a newer one went out after the trim, and only on other links.
    seq: u64,
    due: Instant,
    alternatives: Vec<SocketAddr>,
}

/// The most trimmers watched at once; an older watch gives way.
const LET_GO_WATCHED: usize = 8;

/// How a member's newest STATUS reached us.
#[derive(Debug, Clone, Copy)]
struct Heard {
    seq: u64,
    /// The neighbour its first copy came through, and when.
    first: Conn,
    at: Instant,
    /// A copy of this STATUS, or of the one before, came through another
    /// neighbour: we have more than one path to the member. (The one
    /// before too: copies of the newest may still be on their way.)
    other: bool,
    other_before: bool,
    /// A copy came through a link that was up when the first came: not a
    /// greeting repeating what it had from us. The first link is no
    /// bridge to the member, as far as this STATUS shows (see `bridges`).
    round: bool,
}

impl DialPolicy {
    pub fn new(seeds: usize, now: Instant, rng: &mut Rng) -> Self {
        DialPolicy {
            seeds: vec![
                Seed {
                    reached: false,
                    attempt: Attempt::new(now),
                };
                seeds
            ],
            addrs: BTreeMap::new(),
            dialing: BTreeSet::new(),
            next_heal: now + rng.jitter(HEAL_EVERY),
            preferred: Vec::new(),
            first_via: HashMap::new(),
            let_go: Vec::new(),
            full: BTreeMap::new(),
        }
    }

    /// Whether a dial of `addr` reached this node itself.
    pub fn is_myself(&self, addr: &SocketAddr) -> bool {
        self.addrs.get(addr).is_some_and(|k| k.myself)
    }

    pub fn learn(&mut self, addr: SocketAddr, node: Option<NodeId>, now: Instant) {
        if addr.ip().is_unspecified() || addr.port() == 0 {
            return;
        }
        if let Some(known) = self.addrs.get_mut(&addr) {
            if node.is_some() {
                known.node = node;
            }
        } else if self.addrs.len() < MAX_ADDRS {
            self.addrs.insert(
                addr,
                Known {
                    node,
                    myself: false,
                    attempt: Attempt::new(now),
                },
            );
        }
    }

    /// Members just fell silent, or were found gone: try one of them soon.
    pub fn heal_soon(&mut self, now: Instant, rng: &mut Rng) {
        self.next_heal = self.next_heal.min(now + rng.jitter(HEAL_SOON));
    }

    /// `node` let us go (PEERS, then "too many neighbours"): it is full
    /// for a while (see `full`), and its addresses wait their backoff, as
    /// after a failed dial. A member with nobody to hand us let us go
    /// again as soon as we were back, and we dialed it again at once,
    /// ten times a second for as long as it stayed full (attack39 F1).
    pub fn let_us_go(&mut self, node: NodeId, now: Instant, rng: &mut Rng) {
        if self.full.len() >= FULL_KEPT && !self.full.contains_key(&node) {
            let oldest = self.full.iter().min_by_key(|(_, at)| **at).map(|(n, _)| *n);
            if let Some(oldest) = oldest {
                self.full.remove(&oldest);
            }
        }
        self.full.insert(node, now);
        for known in self.addrs.values_mut().filter(|k| k.node == Some(node)) {
            if !known.attempt.pending {
                known.attempt.failed(now, rng);
            }
        }
    }

    /// Whether `node` let us go in the last [`FULL_FOR`].
    fn was_full(&self, node: Option<NodeId>, now: Instant) -> bool {
        node.and_then(|n| self.full.get(&n))
            .is_some_and(|at| now.saturating_duration_since(*at) < FULL_FOR)
    }

    /// Leaves out of `candidates` the addresses of members that let us go
    /// in the last [`FULL_FOR`], unless that leaves none: they are full,
    /// and each would let us go again at once.
    fn skip_full(&self, candidates: &mut Vec<SocketAddr>, now: Instant) {
        let full = |a: &SocketAddr| self.was_full(self.addrs.get(a).and_then(|k| k.node), now);
        if candidates.iter().any(|a| !full(a)) {
            candidates.retain(|a| !full(a));
        }
    }

    /// Alternatives to dial first (see `preferred`).
    pub fn prefer(&mut self, addrs: impl Iterator<Item = SocketAddr>) {
        self.preferred = addrs.filter(|a| self.addrs.contains_key(a)).collect();
    }

    pub fn connected(&mut self, now: Instant, target: &DialTarget, node: Option<NodeId>) {
        self.preferred.clear();
        match target {
            DialTarget::Seed(i) => {
                if let Some(seed) = self.seeds.get_mut(*i) {
                    seed.reached = true;
                    seed.attempt.pending = false;
                }
            }
            DialTarget::Addr(addr) => {
                self.dialing.remove(addr);
                let node = node.or(self.addrs.get(addr).and_then(|k| k.node));
                // A member that let us go lately keeps its backoff
                // growing: it may let us go again at once.
                let keep_backoff = self.was_full(node, now);
                if let Some(known) = self.addrs.get_mut(addr) {
                    known.attempt.pending = false;
                    if !keep_backoff {
                        known.attempt.backoff = FIRST_BACKOFF;
                    }
                    known.node = node;
                }
            }
        }
    }

    /// `neighbours`: how many we have; a PEER that refused us without
    /// alternatives while we have none is dialed again (it may have room
    /// later), otherwise a refusal counts as its answer.
    pub fn result(
        &mut self,
        now: Instant,
        target: &DialTarget,
        result: &DialResult,
        neighbours: usize,
        rng: &mut Rng,
    ) {
        match (target, result) {
            (_, DialResult::Connected) => self.connected(now, target, None),
            (DialTarget::Seed(i), DialResult::Myself) => {
                // A PEER that is ourselves is "reached": never dialed again.
                if let Some(seed) = self.seeds.get_mut(*i) {
                    seed.reached = true;
                    seed.attempt.pending = false;
                }
            }
            (DialTarget::Addr(addr), DialResult::Myself) => {
                self.dialing.remove(addr);
                if let Some(known) = self.addrs.get_mut(addr) {
                    known.myself = true;
                    known.attempt.pending = false;
                }
            }
            (DialTarget::Seed(i), DialResult::Refused { alternatives })
                if !alternatives.is_empty() || neighbours > 0 =>
            {
                // It answered: full, naming others to try, or "already
                // connected" (we reached it another way). Dialing it again
                // would only be refused again.
                if let Some(seed) = self.seeds.get_mut(*i) {
                    seed.reached = true;
                    seed.attempt.pending = false;
                }
            }
            (DialTarget::Seed(i), _) => {
                if let Some(seed) = self.seeds.get_mut(*i) {
                    seed.attempt.failed(now, rng);
                }
            }
            (DialTarget::Addr(addr), _) => {
                self.dialing.remove(addr);
                if let Some(known) = self.addrs.get_mut(addr) {
                    known.attempt.failed(now, rng);
                }
            }
        }
    }

    fn pending(&self) -> usize {
        self.dialing.len()
    }

    /// Marks `addr` as being dialed.
    fn dialing(&mut self, addr: SocketAddr) {
        if let Some(known) = self.addrs.get_mut(&addr) {
            known.attempt.pending = true;
            self.dialing.insert(addr);
        }
    }
}

impl Mesh {
    /// Dials the learned address `addr` (pending until its result).
    fn dial_addr(&mut self, addr: SocketAddr) {
        self.dial.dialing(addr);
        self.push(Action::Dial(DialTarget::Addr(addr)));
    }

    pub(super) fn dial_tick(&mut self, now: Instant) {
        if self.stuck {
            // Our stdout takes nothing: our neighbours cut us for it, and
            // a link made now would only be cut again (attack17 F5: a
            // stuck member redialed at once, again and again, and the
            // group waited for it each time). We dial once it prints.
            return;
        }
        self.dial_seeds(now);
        self.dial_for_degree(now);
        self.dial_to_heal(now);
        self.dial_past_trim(now);
        self.trim(now);
    }

    /// How long a node let go waits for its trimmer's STATUS through its
    /// other links (see [`LetGo`]): a flood crosses a group in
    /// milliseconds, and half a keepalive keeps a split shorter than the
    /// 3 × keepalive of silence that finds it otherwise.
    pub(super) fn let_go_wait(&self) -> Duration {
        (self.cfg.keepalive / 2).max(Duration::from_millis(500))
    }

    /// `node` is letting us go and handed us `alternatives`; `seq` is the
    /// newest of its flooded STATUS frames that came through its link.
    pub(super) fn watch_let_go(
        &mut self,
        now: Instant,
        node: NodeId,
        seq: u64,
        alternatives: Vec<SocketAddr>,
    ) {
        self.dial.let_us_go(node, now, &mut self.rng);
        // Its new STATUS may have come round before its PEERS did.
        if self.members.get(&node).is_some_and(|m| m.flood_seq > seq) {
            return;
        }
        let due = now + self.let_go_wait();
        let watches = &mut self.dial.let_go;
        watches.retain(|w| w.node != node);
        if watches.len() >= LET_GO_WATCHED {
            watches.remove(0);
        }
        watches.push(LetGo {
            node,
            seq,
            due,
            alternatives,
        });
    }

    /// A flooded STATUS of `member` (seq `seq`) came through `conn`: if we
    /// watch for it after it let us go, the group is still one.
    pub(super) fn heard_flooded_status(&mut self, conn: Conn, member: NodeId, seq: u64) {
        let Some(n) = self.neighbours.get_mut(&conn) else {
            return;
        };
        if n.node == member {
            n.direct_seq = n.direct_seq.max(seq);
        }
        if n.ending() {
            return;
        }
        self.dial
            .let_go
            .retain(|w| w.node != member || seq <= w.seq);
    }

    /// Watches over with no new STATUS of the trimmer through our other
    /// links: we are in another part of the group than it is, and dial
    /// one of the members it handed us (its part), whatever our degree.
    /// With no link left, the degree dialer does that anyway.
    fn dial_past_trim(&mut self, now: Instant) {
        if self.own.leaving {
            self.dial.let_go.clear();
            return;
        }
        let (due, kept): (Vec<LetGo>, Vec<LetGo>) = std::mem::take(&mut self.dial.let_go)
            .into_iter()
            .partition(|w| w.due <= now);
        self.dial.let_go = kept;
        for w in due {
            if self.linked_to(w.node) || !self.neighbours.values().any(|n| !n.ending()) {
                continue;
            }
            let mut candidates: Vec<SocketAddr> = w
                .alternatives
                .iter()
                .filter(|a| {
                    self.dial
                        .addrs
                        .get(a)
                        .is_some_and(|k| self.may_dial(k, now))
                })
                .copied()
                .collect();
            candidates.sort_unstable();
            self.dial.skip_full(&mut candidates, now);
            let name = self.members.get(&w.node).map_or("", |m| m.name.as_str());
            log::info!(
                "no STATUS of {name} (node {:016x}) came round in {:.1}s since it let us go: \
                 the group may be split, dialing one of the members it named",
                w.node,
                self.let_go_wait().as_secs_f64()
            );
            if candidates.is_empty() {
                self.dial_member(now, w.node);
            } else {
                let addr = candidates[self.rng.below(candidates.len())];
                self.dial_addr(addr);
            }
        }
    }

    fn dial_seeds(&mut self, now: Instant) {
        for i in 0..self.dial.seeds.len() {
            let seed = &mut self.dial.seeds[i];
            if !seed.reached && seed.attempt.ready(now) {
                seed.attempt.pending = true;
                self.push(Action::Dial(DialTarget::Seed(i)));
            }
        }
    }

    /// Whether `addr` (believed to be `node`) may be dialed now.
    fn may_dial(&self, known: &Known, now: Instant) -> bool {
        if known.myself || !known.attempt.ready(now) {
            return false;
        }
        match known.node {
            Some(node) => node != self.cfg.id && !self.linked_to(node),
            None => true,
        }
    }

    fn dial_for_degree(&mut self, now: Instant) {
        let have = self.neighbours.len() + self.dial.pending();
        if have >= self.cfg.degree {
            return;
        }
        // Live members, not one that says its stdout is stuck (it would be
        // cut again at once).
        let wanted = |k: &Known| {
            self.may_dial(k, now)
                && k.node.map_or(true, |n| {
                    self.members.get(&n).map_or(true, |m| m.up && !m.stuck)
                })
        };
        let mut candidates: Vec<SocketAddr> = self
            .dial
            .preferred
            .iter()
            .filter(|a| self.dial.addrs.get(a).is_some_and(wanted))
            .copied()
            .collect();
        self.dial.skip_full(&mut candidates, now);
        if candidates.is_empty() {
            candidates = self
                .dial
                .addrs
                .iter()
                .filter(|(_, k)| wanted(k))
                .map(|(a, _)| *a)
                .collect();
        }
        // One connection per node: two addresses of one member count once.
        let mut chosen_nodes = Vec::new();
        for _ in have..self.cfg.degree {
            if candidates.is_empty() {
                break;
            }
            let addr = candidates.swap_remove(self.rng.below(candidates.len()));
            let known = self.dial.addrs.get_mut(&addr).expect("candidate");
            if let Some(node) = known.node {
                if chosen_nodes.contains(&node) {
                    continue;
                }
                chosen_nodes.push(node);
            }
            self.dial_addr(addr);
        }
    }

    /// Dials `node` now, whatever the degree, if one of its addresses may
    /// be dialed (not ourselves, not a neighbour, not being dialed, its
    /// backoff over): the origin of a hole no neighbour fills holds the
    /// lines (see `relay.rs`, `check_hole`). Whether a dial went out.
    pub(super) fn dial_member(&mut self, now: Instant, node: NodeId) -> bool {
        let addr = self
            .dial
            .addrs
            .iter()
            .find(|(_, k)| k.node == Some(node) && self.may_dial(k, now))
            .map(|(a, _)| *a);
        let Some(addr) = addr else {
            return false;
        };
        self.dial_addr(addr);
        true
    }

    /// Now and then, one remembered member that is not in the view: the
    /// two sides of a healed partition find each other this way. Every
    /// `HEAL_SOON` while we are below `--degree` (each address still keeps
    /// its backoff): a node whose links all went to the other side of a
    /// partition is alone in its own half, and with one heal dial per
    /// `HEAL_EVERY`, each to a random member, most of them behind the
    /// partition, it took 20 s and more to find the members on its side
    /// (the netns lab failed on that: "each half sees the other go").
    fn dial_to_heal(&mut self, now: Instant) {
        if now < self.dial.next_heal {
            return;
        }
        let every = if self.neighbours.len() < self.cfg.degree {
            HEAL_SOON
        } else {
            HEAL_EVERY
        };
        self.dial.next_heal = now + self.rng.jitter(every);
        // Also with no neighbour left: then nothing else dials a member
        // that went down (the degree dialer skips them, a PEER is dialed
        // only until reached once), and a node whose one neighbour was
        // killed and restarted at the same address would stay alone.
        let candidates: Vec<SocketAddr> = self
            .dial
            .addrs
            .iter()
            .filter(|(_, k)| self.may_dial(k, now))
            .filter(|(_, k)| k.node.is_some_and(|n| self.heal_candidate(n)))
            .map(|(a, _)| *a)
            .collect();
        if candidates.is_empty() {
            return;
        }
        let addr = candidates[self.rng.below(candidates.len())];
        self.dial_addr(addr);
    }

    /// A member worth a heal dial: one that was live and went down (maybe
    /// behind a partition), and did not say its stdout is stuck. Not one
    /// we only know from beyond our ttl: it was never a member for us, and
    /// dialing it would undo the ttl.
    fn heal_candidate(&self, node: NodeId) -> bool {
        self.members
            .get(&node)
            .is_some_and(|m| !m.up && m.down.is_some() && !m.stuck)
    }

    /// A STATUS of `member` (seq `seq`) came through `conn`. A copy that
    /// comes after the first, through another neighbour, shows that this
    /// link lies on a cycle: the first copy went from its member to us
    /// along one path, this one along another that ends with this link and
    /// crosses it once (we forward a STATUS once, so the second path may
    /// pass through us, but not back through us), and together they close
    /// a walk through this link: closing it splits nothing and leaves no
    /// one alone, as long as the links those copies took stand (hence the
    /// evidence lasts a few keepalives). Only when the first copy came
    /// after this link did: a greeting repeats the STATUS frames its
    /// sender already had, maybe from links it no longer has (a node
    /// trimmed a moment ago). The copies come anyway, as every STATUS
    /// floods; nothing is sent for it.
    pub(super) fn heard_status_via(&mut self, now: Instant, conn: Conn, member: NodeId, seq: u64) {
        if member != self.cfg.id {
            if let Some(n) = self.neighbours.get_mut(&conn).filter(|n| n.node != member) {
                n.relayed = Some(now);
            }
        }
        let came_round = match self.dial.first_via.get_mut(&member) {
            Some(h) if h.seq == seq => {
                h.other |= h.first != conn;
                let round =
                    h.first != conn && self.neighbours.get(&conn).is_some_and(|n| h.at > n.added);
                h.round |= round;
                round
            }
            Some(h) if h.seq > seq => return,
            old => {
                let other_before = old.is_some_and(|h| h.other);
                if self.dial.first_via.len() >= MAX_ADDRS {
                    self.dial.first_via.clear();
                }
                let heard = Heard {
                    seq,
                    first: conn,
                    at: now,
                    other: false,
                    other_before,
                    round: false,
                };
                self.dial.first_via.insert(member, heard);
                return;
            }
        };
        if came_round {
            if let Some(n) = self.neighbours.get_mut(&conn) {
                n.on_cycle = Some(now);
            }
        }
    }

    /// The link to neighbour `conn` (node `gone`) ended, not because we
    /// trimmed it or it let us go with alternatives (PEERS): members whose STATUS
    /// reached us only through it (no copy of the last two came through
    /// another neighbour) are cut off from us, unless they find another
    /// way. Each side of the split sees this at once, while a silence
    /// timeout takes 3 × keepalive: one of them, live and not a neighbour,
    /// is dialed now, whatever the degree. One dial per link lost, to a
    /// member whose backoff is over: in a well-knit group every member's
    /// STATUS comes through several neighbours and nothing is dialed.
    pub(super) fn dial_across(&mut self, now: Instant, conn: Conn, gone: NodeId) {
        if self.own.leaving {
            // Our own links are ending because we leave.
            return;
        }
        let mut cut_off: Vec<NodeId> = self
            .dial
            .first_via
            .iter()
            .filter(|(_, h)| h.first == conn && !h.other && !h.other_before)
            .map(|(id, _)| *id)
            .filter(|id| *id != gone && self.members.get(id).is_some_and(|m| m.is_live()))
            .collect();
        // Sorted first: a simulation run must be reproducible.
        cut_off.sort_unstable();
        while !cut_off.is_empty() {
            let node = cut_off.swap_remove(self.rng.below(cut_off.len()));
            if self.dial_member(now, node) {
                return;
            }
        }
    }

    /// Above 2 × degree, non-PEER links are closed politely, with
    /// alternatives, never below the degree: first the links up for a
    /// keepalive to a neighbour that is no live member (before that, such
    /// a link does not count), then the newest of the links known to lie
    /// on a cycle (see `heard_status_via`), one per turn, then, once no
    /// link is waiting to be judged, the newest of the judged ones that are
    /// no bridge (see `bridges`); of the links that relay other members'
    /// STATUS frames, `degree` are kept before any that relays nothing.
    /// Bridges and links not judged yet are kept up to 3 × degree; past it
    /// the newest go, whatever they are, those that relay last.
    ///
    /// We do not know a neighbour's degree. The newest link is the likeliest
    /// to be the other side's only one (a node joining through us): trimmed
    /// first, late joiners reaching full members were let go by each, and
    /// handed others just as full, over and over (15 trims in 0.5 s for one
    /// node of 600 in the simulator). A link on a cycle is no one's only
    /// link, and closing it splits nothing. Trimming an older link of
    /// unknown shape instead could cut a bridge: a hub's kept `--degree 1`
    /// spoke and the spoke that joined through it became an island. And
    /// the newest link may be the bridge: a node healing a split dialed
    /// full members of the other part, and each closed the new link at
    /// once (attack37 F1: `--degree 1` groups split for 7-25 s).
    fn trim(&mut self, now: Instant) {
        let limit = 2 * self.cfg.degree;
        let keepalive = self.cfg.keepalive;
        let members = &self.members;
        // A member's greeting announces it at once. A link whose neighbour
        // has not announced itself neither counts nor is closed during its
        // first keepalive, and goes first after it: a stranger's idle
        // handshakes made members' links on a cycle go, at once and then
        // again each time the stranger came back (attack44 F2).
        let live = |n: &Neighbour| members.get(&n.node).is_some_and(|m| m.is_live());
        let counts = |n: &Neighbour| !n.closing && (live(n) || now >= n.added + keepalive);
        let open = self.neighbours.values().filter(|n| counts(n)).count();
        if open <= limit {
            return;
        }
        // Evidence older than a few keepalives may be stale: the cycle's
        // other links may be gone (every member's keepalive STATUS renews
        // it while the cycle stands). Evidence that makes a link go (it
        // lies on a cycle) counts over our keepalive; evidence that keeps
        // one (a bridge, a relay) over the longest in the group: a member
        // announcing less often than we do renews it less often, and its
        // only link must not look like no bridge between two of its STATUS.
        let group_keepalive = self.group_keepalive();
        let within = |keepalive: Duration| {
            let since = now.checked_sub(keepalive * CYCLE_KEEPALIVES);
            move |at: &Instant| since.map_or(true, |s| *at >= s)
        };
        let fresh = within(group_keepalive);
        let fresh_cycle = within(keepalive);
        let bridges = self.bridges(fresh);
        let standing = |c: &Conn, n: &Neighbour| {
            if now >= n.added + keepalive && !live(n) {
                Standing::NoMember
            } else if n.on_cycle.as_ref().is_some_and(fresh_cycle) {
                Standing::OnCycle
            } else if now < n.added + group_keepalive {
                // Not up for a keepalive yet: some member's keepalive
                // STATUS may still have to come through it, or round.
                Standing::Unjudged
            } else if bridges.contains(c) {
                Standing::Bridge
            } else {
                Standing::NoBridge
            }
        };
        // Every link we may close, then cut down to those we do.
        let mut extra: Vec<(Standing, Instant, Conn)> = self
            .neighbours
            .iter()
            .filter(|(_, n)| !n.seed && counts(n))
            .map(|(c, n)| (standing(c, n), n.added, *c))
            .collect();
        // The order they go in: no member behind it, on a cycle, no
        // bridge, the rest; each newest first.
        extra.sort_by(|a, b| b.cmp(a));
        // An unjudged link may turn out no bridge, newer than the others.
        let judging = extra.iter().any(|l| l.0 == Standing::Unjudged);
        // One link on a cycle per turn: two links of the same cycle may be
        // our only ways to the rest of the group (strangers that announced
        // themselves took the other places: a node closed both its
        // members' links at once, and had only the strangers' left,
        // attack45 F1). Closing it breaks the cycles the others were seen
        // on, so their evidence goes too; a STATUS coming round again
        // renews it where a cycle still stands.
        //
        // And at least `degree` links that relay other members' STATUS
        // frames stay: links that carry only their neighbour's own (a
        // leaf, or a stranger that announced itself and sits idle) go
        // before those. Strangers that filled a node's places made it
        // close its members' links, one after another, as they came back.
        let relays: BTreeSet<Conn> = self
            .neighbours
            .iter()
            .filter(|(_, n)| counts(n) && n.relayed.as_ref().is_some_and(fresh))
            .map(|(c, _)| *c)
            .collect();
        let mut relays_kept = relays.len();
        let mut cycle_closed = false;
        let mut closing: Vec<(Standing, Instant, Conn)> = Vec::new();
        for &link in &extra {
            let relay = relays.contains(&link.2);
            let close = match link.0 {
                _ if relay && relays_kept <= self.cfg.degree => false,
                Standing::NoMember => true,
                Standing::OnCycle => !std::mem::replace(&mut cycle_closed, true),
                Standing::NoBridge => !judging,
                Standing::Bridge | Standing::Unjudged => false,
            };
            if close && closing.len() < open - limit {
                closing.push(link);
                relays_kept -= usize::from(relay);
            }
        }
        // Past 3 × degree the newest go, whatever they are: those that
        // relay last.
        let past_hard = open.saturating_sub(BRIDGES_KEPT * self.cfg.degree);
        for relay in [false, true] {
            for &link in &extra {
                if closing.len() >= past_hard {
                    break;
                }
                if relays.contains(&link.2) == relay && !closing.contains(&link) {
                    closing.push(link);
                }
            }
        }
        let extra = closing;
        if extra.iter().any(|l| l.0 == Standing::OnCycle) {
            for n in self.neighbours.values_mut() {
                n.on_cycle = None;
            }
        }
        for &(_, _, conn) in &extra {
            self.neighbours.get_mut(&conn).expect("listed").closing = true;
        }
        // Our newest STATUS goes first on each link we close: the node let
        // go then holds every one of ours from before the trim, and only
        // the one we flood below is newer (see `LetGo`). Without it, a new
        // status_seq we greeted another neighbour with a moment before
        // reached it round the group as if it were that one (attack35 F1).
        let newest = self
            .own_sent
            .clone()
            .map(|status| Arc::new(Frame::Status(status).to_bytes()));
        for (_, _, conn) in extra {
            if let Some(frames) = &newest {
                self.send_each(&[conn], frames, 0);
            }
            let alternatives = self.trim_alternatives(8);
            self.push(Action::Close {
                conn,
                reason: "too many neighbours".to_owned(),
                alternatives,
            });
        }
        // The STATUS each node we let go waits for (see `LetGo`).
        self.flood_due = true;
        self.send_status(now);
    }
}

impl Mesh {
    /// The links that are bridges, as far as we can tell: the newest
    /// STATUS of some member other than its neighbour came through it
    /// (lately: `fresh`), and no copy came round through another link
    /// since. Closing one splits that member off from us. A copy that
    /// comes round refutes it: a STATUS a node was greeted with a moment
    /// before it greeted us comes through the group too, a moment later.
    /// A copy through a link newer than the first copy refutes nothing: a
    /// greeting repeats what its sender had, maybe from us.
    fn bridges(&self, fresh: impl Fn(&Instant) -> bool) -> BTreeSet<Conn> {
        self.dial
            .first_via
            .iter()
            .filter(|(_, h)| !h.round && fresh(&h.at))
            // Not our own STATUS, which a greeting repeats back to us. A
            // member that just left counts: its final acknowledgements
            // come that way (a node leaving at the end of its stdin lost
            // its last link to a trim, and its senders counted a line it
            // printed as lost).
            .filter(|(member, _)| **member != self.cfg.id)
            .filter(|(member, h)| {
                self.neighbours
                    .get(&h.first)
                    .is_some_and(|n| n.node != **member)
            })
            .map(|(_, h)| h.first)
            .collect()
    }

    /// Whom a trimmed neighbour should dial instead: the neighbours we
    /// keep (they are in our part of the group for sure, so it rejoins the
    /// group through them); other live members only if none of those has
    /// an address; never one being let go now (handing the trimmed ones
    /// each other is how islands formed).
    fn trim_alternatives(&mut self, n: usize) -> Vec<(NodeId, SocketAddr)> {
        let leaving: BTreeSet<NodeId> = self
            .neighbours
            .values()
            .filter(|x| x.closing)
            .map(|x| x.node)
            .collect();
        let kept: BTreeSet<NodeId> = self
            .neighbours
            .values()
            .filter(|x| !x.closing)
            .map(|x| x.node)
            .collect();
        let mut near = Vec::new();
        let mut far = Vec::new();
        for (id, addr) in self.live_addrs() {
            if kept.contains(&id) {
                near.push((id, addr));
            } else if !leaving.contains(&id) {
                far.push((id, addr));
            }
        }
        // Only the kept ones while there are any: any other member may be
        // one trimmed a moment ago elsewhere, not yet back in the group.
        let pool = if near.is_empty() { &mut far } else { &mut near };
        let mut out = Vec::new();
        while out.len() < n && !pool.is_empty() {
            let i = self.rng.below(pool.len());
            out.push(pool.swap_remove(i));
        }
        out
    }

    /// When `target` is due to be dialed again after a failed dial (for the
    /// caller's log line); `None` if it will not be (reached, or ourselves).
    pub fn next_dial_at(&self, target: &DialTarget) -> Option<Instant> {
        let attempt = match target {
            DialTarget::Seed(i) => self
                .dial
                .seeds
                .get(*i)
                .filter(|s| !s.reached)
                .map(|s| &s.attempt),
            DialTarget::Addr(addr) => self
                .dial
                .addrs
                .get(addr)
                .filter(|k| !k.myself)
                .map(|k| &k.attempt),
        };
        attempt.filter(|a| !a.pending).map(|a| a.next_try)
    }
}
