//! Whom to dial and whom to let go: command-line PEERs until reached once,
//! learned member addresses while below `--degree` (per-address backoff
//! with jitter), now and then a remembered member that is not in the view
//! (partition heal), and trimming above 2 × degree.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::rng::Rng;
use super::{Action, DialResult, DialTarget, Mesh, NodeId};

/// The first retry after a failed dial; doubled after each failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often a remembered member outside the view is tried (jittered).
const HEAL_EVERY: Duration = Duration::from_secs(10);
/// The most addresses remembered; more are ignored until some go.
const MAX_ADDRS: usize = 16384;

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
        }
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

    pub fn connected(&mut self, target: &DialTarget, node: Option<NodeId>) {
        match target {
            DialTarget::Seed(i) => {
                if let Some(seed) = self.seeds.get_mut(*i) {
                    seed.reached = true;
                    seed.attempt.pending = false;
                }
            }
            DialTarget::Addr(addr) => {
                self.dialing.remove(addr);
                if let Some(known) = self.addrs.get_mut(addr) {
                    known.attempt = Attempt::new(known.attempt.next_try);
                    if node.is_some() {
                        known.node = node;
                    }
                }
            }
        }
    }

    pub fn result(
        &mut self,
        now: Instant,
        target: &DialTarget,
        result: &DialResult,
        rng: &mut Rng,
    ) {
        match (target, result) {
            (_, DialResult::Connected) => self.connected(target, None),
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
    pub(super) fn dial_tick(&mut self, now: Instant) {
        self.dial_seeds(now);
        self.dial_for_degree(now);
        self.dial_to_heal(now);
        self.trim(now);
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
            Some(node) => node != self.cfg.id && !self.neighbours.values().any(|n| n.node == node),
            None => true,
        }
    }

    fn dial_for_degree(&mut self, now: Instant) {
        let have = self.neighbours.len() + self.dial.pending();
        if have >= self.cfg.degree {
            return;
        }
        let mut candidates: Vec<SocketAddr> = self
            .dial
            .addrs
            .iter()
            .filter(|(_, k)| self.may_dial(k, now))
            .filter(|(_, k)| {
                k.node
                    .map_or(true, |n| self.members.get(&n).map_or(true, |m| m.up))
            })
            .map(|(a, _)| *a)
            .collect();
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
            self.dial.dialing(addr);
            self.push(Action::Dial(DialTarget::Addr(addr)));
        }
    }

    /// Now and then, one remembered member that is not in the view: the
    /// two sides of a healed partition find each other this way.
    fn dial_to_heal(&mut self, now: Instant) {
        if now < self.dial.next_heal {
            return;
        }
        self.dial.next_heal = now + self.rng.jitter(HEAL_EVERY);
        if self.neighbours.is_empty() {
            return;
        }
        let candidates: Vec<SocketAddr> = self
            .dial
            .addrs
            .iter()
            .filter(|(_, k)| self.may_dial(k, now))
            .filter(|(_, k)| {
                k.node
                    .is_some_and(|n| self.members.get(&n).map_or(true, |m| !m.up))
            })
            .map(|(a, _)| *a)
            .collect();
        if candidates.is_empty() {
            return;
        }
        let addr = candidates[self.rng.below(candidates.len())];
        self.dial.dialing(addr);
        self.push(Action::Dial(DialTarget::Addr(addr)));
    }

    /// Above 2 × degree, the most recently added non-PEER links are closed
    /// politely, with alternatives; never below the degree.
    fn trim(&mut self, _now: Instant) {
        let limit = 2 * self.cfg.degree;
        let open = self.neighbours.values().filter(|n| !n.closing).count();
        if open <= limit {
            return;
        }
        let mut extra: Vec<(Instant, u64)> = self
            .neighbours
            .iter()
            .filter(|(_, n)| !n.seed && !n.closing)
            .map(|(c, n)| (n.added, *c))
            .collect();
        extra.sort_by(|a, b| b.cmp(a));
        for (_, conn) in extra.into_iter().take(open - limit) {
            self.neighbours.get_mut(&conn).expect("listed").closing = true;
            let alternatives = self.alternatives(8);
            self.push(Action::Close {
                conn,
                reason: "too many neighbours".to_owned(),
                alternatives,
            });
        }
    }
}

impl Mesh {
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
