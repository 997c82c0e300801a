//! The broadcast tree (Plumtree-style, after Leitão, Pereira and
//! Rodrigues, "Epidemic Broadcast Trees", SRDS 2007): per origin, which
//! neighbours we relay its messages to (eager) and which asked us not to
//! (lazy), whom we asked not to, and which neighbour is our parent.
//!
//! All neighbours start eager, so the first messages flood. A copy that
//! arrives again through another neighbour shows a redundant link: we send
//! that neighbour a PRUNE for the origin and it stops relaying that
//! origin's messages to us. What is left is the tree of first arrivals.
//! There are no IHAVE frames: members' STATUS frames already say what they
//! have (the origin's `sent_seq`, neighbours' acknowledgements), so a node
//! that lacks lines others have sees a hole and sends GRAFT, a REPAIR that
//! also makes the neighbour relay that origin to us again. Pure data; the
//! mesh (`relay.rs`) decides when to call what. `PROTOCOL.md` ("The
//! tree") gives the rules and why they keep every guarantee.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::origin::MAX_ORIGINS;
use super::{Conn, NodeId};

/// A neighbour we pruned that still sends us copies (its PRUNE crossed
/// copies in flight, or its side of the link was replaced) is told again,
/// at most this often per origin.
pub const PRUNE_AGAIN: Duration = Duration::from_secs(1);

/// One origin's part of the tree.
#[derive(Debug, Default, Clone)]
struct Branch {
    /// Neighbours that pruned us: they get none of this origin's messages
    /// until they graft.
    lazy: Vec<Conn>,
    /// Neighbours we pruned, and when we last told them.
    pruned: Vec<(Conn, Instant)>,
    /// The neighbour the newest copy delivered in order came from, and
    /// its hops.
    parent: Option<(Conn, u8)>,
    /// The neighbour whose own STATUS acknowledged the most of this
    /// origin beyond what we had, and how far: whom to graft first.
    ahead: Option<(Conn, u64)>,
    /// The first seq of the open hole, when last checked (0: none).
    hole_first: u64,
    /// The last ask went to `ahead`: the next goes round the neighbours.
    skip_ahead: bool,
}

impl Branch {
    fn is_empty(&self) -> bool {
        self.lazy.is_empty()
            && self.pruned.is_empty()
            && self.parent.is_none()
            && self.ahead.is_none()
            && self.hole_first == 0
    }

    fn has_pruned(&self, conn: Conn) -> bool {
        self.pruned.iter().any(|(c, _)| *c == conn)
    }
}

/// The tree of every origin. Bounded to [`MAX_ORIGINS`] branches: a
/// branch forgotten only makes its links eager again (a few duplicates,
/// pruned anew) or leaves a lost parent to the hole checker.
#[derive(Debug, Default)]
pub struct Tree {
    /// Ordered: a simulation run must be reproducible.
    branches: BTreeMap<NodeId, Branch>,
}

impl Tree {
    fn branch(&mut self, origin: NodeId) -> &mut Branch {
        if !self.branches.contains_key(&origin) && self.branches.len() >= MAX_ORIGINS {
            self.branches.pop_first();
        }
        self.branches.entry(origin).or_default()
    }

    /// Whether `conn` pruned us for `origin`.
    pub fn is_lazy(&self, origin: NodeId, conn: Conn) -> bool {
        self.branches
            .get(&origin)
            .is_some_and(|b| b.lazy.contains(&conn))
    }

    /// Whether any neighbour pruned us for `origin`.
    pub fn has_lazy(&self, origin: NodeId) -> bool {
        self.branches
            .get(&origin)
            .is_some_and(|b| !b.lazy.is_empty())
    }

    /// `conn` sent PRUNE for `origin`.
    pub fn pruned_by(&mut self, origin: NodeId, conn: Conn) {
        let b = self.branch(origin);
        if !b.lazy.contains(&conn) {
            b.lazy.push(conn);
        }
    }

    /// `conn` sent GRAFT for `origin`: it is eager again.
    pub fn grafted_by(&mut self, origin: NodeId, conn: Conn) {
        if let Some(b) = self.branches.get_mut(&origin) {
            b.lazy.retain(|c| *c != conn);
        }
    }

    /// A copy of `origin`'s delivered in order came from `conn` with
    /// `hops`: it is our parent for that origin.
    pub fn new_copy(&mut self, origin: NodeId, conn: Conn, hops: u8) {
        let b = self.branch(origin);
        b.parent = Some((conn, hops));
    }

    /// A copy of one of `origin`'s messages that we had already came from
    /// `conn` with `hops`.
    /// Returns the neighbour to send PRUNE to, if any: normally `conn`;
    /// the parent instead when the duplicate came the shorter way (the
    /// tree keeps paths short, and the ttl reachable); nobody when `conn`
    /// is our parent or our parent is one we pruned (pruning both ends of
    /// a race would leave us with no eager link at all).
    pub fn duplicate(
        &mut self,
        now: Instant,
        origin: NodeId,
        conn: Conn,
        hops: u8,
        own: bool,
    ) -> Option<Conn> {
        let b = self.branch(origin);
        if let Some(told) = b.pruned.iter_mut().find(|(c, _)| *c == conn) {
            if now.saturating_duration_since(told.1) < PRUNE_AGAIN {
                return None;
            }
            told.1 = now;
            return Some(conn);
        }
        // Our own lines: every copy that comes back is redundant.
        let victim = if own {
            conn
        } else {
            match b.parent {
                Some((p, _)) if p == conn || b.has_pruned(p) => return None,
                Some((p, ph)) if hops < ph => {
                    b.parent = Some((conn, hops));
                    p
                }
                Some(_) => conn,
                None => return None,
            }
        };
        b.pruned.push((victim, now));
        Some(victim)
    }

    /// We send GRAFT to `conn` for `origin`: no longer pruned by us.
    pub fn grafting(&mut self, origin: NodeId, conn: Conn) {
        if let Some(b) = self.branches.get_mut(&origin) {
            b.pruned.retain(|(c, _)| *c != conn);
        }
    }

    /// `conn`'s own STATUS acknowledged `origin` up to `delivered`, which
    /// is more than we have.
    pub fn ahead(&mut self, origin: NodeId, conn: Conn, delivered: u64) {
        let b = self.branch(origin);
        match b.ahead {
            Some((c, d)) if c != conn && d >= delivered => {}
            _ => b.ahead = Some((conn, delivered)),
        }
    }

    /// Whom to ask for `origin`'s lines from `seq` on, if it is the turn
    /// of the neighbour known to have them: every other ask, when one is
    /// known (the others go round the neighbours, in case it has them no
    /// more).
    pub fn ahead_turn(&mut self, origin: NodeId, seq: u64) -> Option<Conn> {
        let b = self.branches.get_mut(&origin)?;
        let (conn, delivered) = b.ahead?;
        if delivered < seq {
            return None;
        }
        let turn = !b.skip_ahead;
        b.skip_ahead = turn;
        turn.then_some(conn)
    }

    /// `conn` is gone. Returns the origins it was our parent for: to
    /// graft at once.
    pub fn neighbour_down(&mut self, conn: Conn) -> Vec<NodeId> {
        let mut orphaned = Vec::new();
        for (origin, b) in self.branches.iter_mut() {
            b.lazy.retain(|c| *c != conn);
            b.pruned.retain(|(c, _)| *c != conn);
            if b.ahead.is_some_and(|(c, _)| c == conn) {
                b.ahead = None;
            }
            if b.parent.is_some_and(|(c, _)| c == conn) {
                b.parent = None;
                orphaned.push(*origin);
            }
        }
        self.branches.retain(|_, b| !b.is_empty());
        orphaned
    }

    /// Records that `origin`'s open hole starts at `first`; whether it
    /// started elsewhere before (lines arrived meanwhile: a new hole).
    pub fn hole_moved(&mut self, origin: NodeId, first: u64) -> bool {
        let b = self.branch(origin);
        let moved = b.hole_first != 0 && b.hole_first != first;
        b.hole_first = first;
        moved
    }

    /// `origin` has no open hole.
    pub fn hole_closed(&mut self, origin: NodeId) {
        if let Some(b) = self.branches.get_mut(&origin) {
            b.hole_first = 0;
        }
    }

    /// `conn` grafted us for `origin`. Whether it was our parent for it:
    /// then it lacks lines itself, and we have no parent.
    pub fn orphaned_by(&mut self, origin: NodeId, conn: Conn) -> bool {
        let Some(b) = self.branches.get_mut(&origin) else {
            return false;
        };
        if b.parent.map(|(c, _)| c) != Some(conn) {
            return false;
        }
        b.parent = None;
        true
    }

    /// The parent of `origin`'s branch.
    pub fn parent(&self, origin: NodeId) -> Option<Conn> {
        self.branches.get(&origin)?.parent.map(|(c, _)| c)
    }

    /// How many neighbours we pruned for `origin`.
    #[cfg(test)]
    pub fn pruned_for(&self, origin: NodeId) -> usize {
        self.branches.get(&origin).map_or(0, |b| b.pruned.len())
    }
}
