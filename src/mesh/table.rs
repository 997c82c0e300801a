//! The member table: every other member we know, live or remembered as
//! down, with a hard cap, and two ordered indexes so that nothing a
//! stranger can announce costs more than O(log n) per frame:
//! live members by when they were last heard (the silence expiry pops the
//! oldest), and down members by how much they matter (the one forgotten
//! first when the table is full: one that missed nothing, the longest
//! silent).
//!
//! Why a cap: without keys, anyone who can reach a node can announce as
//! many members as it likes, each STATUS with a fresh id. The cap bounds
//! the memory and the work (acks, window, books, dialing) those cost.
//! Live members are never evicted by newcomers: a full table refuses new
//! ones instead, so a flood cannot push real members out.

use std::collections::btree_map::{Iter, Values};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::members::Member;
use super::{MemberBooks, NodeId};

/// The most live members a node keeps; a STATUS that would add one more
/// is ignored (not merged, not forwarded).
pub const MAX_MEMBERS: usize = 1024;
/// The most members remembered, live and down: beyond it the least useful
/// down member is forgotten.
pub const MAX_REMEMBERED: usize = 2 * MAX_MEMBERS;

/// Where a member is filed: under `at` (when last heard) in the live or
/// the down index; a down member that missed lines of ours is `lossy`.
#[derive(Debug, Clone, Copy)]
pub struct Filed {
    pub lossy: bool,
    pub at: Instant,
}

#[derive(Debug)]
pub struct Table {
    /// The most live members: [`MAX_MEMBERS`] (see [`Table::set_cap`]).
    cap: usize,
    map: BTreeMap<NodeId, Member>,
    /// Live members by when they were last heard.
    silence: BTreeSet<(Instant, NodeId)>,
    /// Down members, the first to forget first.
    gone: BTreeSet<(bool, Instant, NodeId)>,
    /// Lines of ours that members forgotten while down missed (never
    /// acknowledged; their books live on here, so the exit status still
    /// says someone missed lines).
    pub forgotten_lost: u64,
    pub forgotten: u64,
}

impl Default for Table {
    fn default() -> Self {
        Table {
            cap: MAX_MEMBERS,
            map: BTreeMap::new(),
            silence: BTreeSet::new(),
            gone: BTreeSet::new(),
            forgotten_lost: 0,
            forgotten: 0,
        }
    }
}

impl Table {
    /// Another cap than [`MAX_MEMBERS`] (and twice it remembered): for the
    /// simulator's groups larger than a real node accepts.
    pub fn set_cap(&mut self, cap: usize) {
        self.cap = cap;
    }

    pub fn get(&self, id: &NodeId) -> Option<&Member> {
        self.map.get(id)
    }

    /// For fields other than `up`, `heard` and `filed`: those change only
    /// through [`Table::heard`] and [`Table::set_up`], which keep the
    /// indexes right.
    pub fn get_mut(&mut self, id: &NodeId) -> Option<&mut Member> {
        self.map.get_mut(id)
    }

    /// As [`Table::get_mut`], for every member.
    pub fn iter_mut(&mut self) -> std::collections::btree_map::IterMut<'_, NodeId, Member> {
        self.map.iter_mut()
    }

    pub fn values(&self) -> Values<'_, NodeId, Member> {
        self.map.values()
    }

    pub fn iter(&self) -> Iter<'_, NodeId, Member> {
        self.map.iter()
    }

    /// How many members are live.
    pub fn live(&self) -> usize {
        self.silence.len()
    }

    /// Whether a member not yet live may become live.
    pub fn has_room(&self) -> bool {
        self.live() < self.cap
    }

    /// Adds `member` (down) under `id` if it is new, first forgetting the
    /// least useful down member when the table is full. `last` is our
    /// last seq (for the books of the one forgotten).
    pub fn insert_down(&mut self, id: NodeId, now: Instant, last: u64, member: Member) {
        if self.map.contains_key(&id) {
            return;
        }
        if self.map.len() >= MAX_REMEMBERED / MAX_MEMBERS * self.cap {
            self.forget_one(last);
        }
        let mut member = member;
        member.up = false;
        member.heard = now;
        member.filed = Filed {
            lossy: false,
            at: now,
        };
        self.gone.insert((false, now, id));
        self.map.insert(id, member);
    }

    /// Sums up `books` (of a member's earlier life no longer kept apart)
    /// with those of forgotten members.
    pub fn forget_books(&mut self, books: &MemberBooks) {
        let missed = crate::books::missed(books);
        if missed > 0 {
            self.forgotten += 1;
            self.forgotten_lost += missed;
        }
    }

    fn forget_one(&mut self, last: u64) {
        let Some((_, _, id)) = self.gone.pop_first() else {
            return; // cannot happen: live ones are at most half the table
        };
        if let Some(m) = self.map.remove(&id) {
            let books = m.books(id, last);
            for books in m.lives.iter().chain(books.as_ref()) {
                self.forget_books(books);
            }
        }
    }

    /// A new STATUS from `id` arrived at `now`.
    pub fn heard(&mut self, id: NodeId, now: Instant) {
        let Some(m) = self.map.get_mut(&id) else {
            return;
        };
        let old = m.filed;
        m.heard = now;
        m.filed.at = now;
        if m.up {
            self.silence.remove(&(old.at, id));
            self.silence.insert((now, id));
        } else {
            self.gone.remove(&(old.lossy, old.at, id));
            self.gone.insert((old.lossy, now, id));
        }
    }

    /// Moves `id` between the live and the down index. `lossy`: (going
    /// down) it missed lines of ours, so it is remembered longer.
    pub fn set_up(&mut self, id: NodeId, up: bool, lossy: bool) {
        let Some(m) = self.map.get_mut(&id) else {
            return;
        };
        let old = m.filed;
        if m.up {
            self.silence.remove(&(old.at, id));
        } else {
            self.gone.remove(&(old.lossy, old.at, id));
        }
        m.up = up;
        m.filed.lossy = lossy && !up;
        if up {
            self.silence.insert((old.at, id));
        } else {
            self.gone.insert((m.filed.lossy, old.at, id));
        }
    }

    /// Live members not heard from for longer than their `limit`, oldest
    /// first, with that limit. No limit is below `least`: O(log n) for
    /// each member silent for longer than that, nothing for the others.
    pub fn silent(
        &self,
        now: Instant,
        least: Duration,
        limit: impl Fn(&Member) -> Duration,
    ) -> Vec<(NodeId, Duration)> {
        self.silence
            .iter()
            .take_while(|(heard, _)| now.saturating_duration_since(*heard) > least)
            .filter_map(|(heard, id)| {
                let limit = limit(self.map.get(id)?);
                (now.saturating_duration_since(*heard) > limit).then_some((*id, limit))
            })
            .collect()
    }
}
