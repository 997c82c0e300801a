//! Lines provably lost, never silently: a member reports every run of an
//! origin's seqs it will not deliver as a `gap` and counts it as skipped
//! in its acknowledgement; an origin that sees a member acknowledge a base
//! above the first line it owes that member tells it so in its STATUS
//! (a miss entry), so that the member reports that run too; one that
//! came back after it was taken for down is told which of the lines it
//! lacks the origin no longer keeps (an unkept entry), so that it gives
//! them up once its neighbours (three at most) had nothing for it,
//! instead of after a stall timeout.
//!
//! Repairs cost the answering node at most a window per neighbour: a
//! neighbour that asks again and again and reads nothing gets no second
//! copy of the cache queued while the first still waits for its writer.

use std::sync::Arc;

use super::members::Member;
use super::{Action, Bytes, Conn, Mesh, NodeId};
use crate::frame::{Miss, Status, MAX_STATUS_MISSES};

/// The reason of a `gap` that is no loss: lines an origin sent before it
/// knew us, which we waited for (our base came from an old STATUS of
/// it) until it told us where ours start. The event says where this
/// origin's lines start here; the node does not count the run as lost.
pub const NOT_OWED: &str = "sent before this node joined, none of them owed to it";

impl Mesh {
    /// Whether a REPAIR answer for `conn` may be queued: the answers still
    /// waiting for its writer (their buffers shared with its queue) add up
    /// to less than a window, and those for all neighbours to less than
    /// the node-wide bound ([`super::origin::memory_budget`]). Without the
    /// first, each 25-byte REPAIR from a neighbour that reads nothing
    /// queued up to a window of messages; without the second, 60 such
    /// neighbours took a node to 457 MB (attack15 F2): an answer is a copy.
    pub(super) fn repair_room(&mut self, conn: Conn) -> bool {
        let window = self.cfg.window;
        let mut all = 0;
        for n in self.neighbours.values_mut() {
            n.answers.retain(|(a, _)| a.strong_count() > 0);
            all += n.answers.iter().map(|(_, len)| len).sum::<usize>();
        }
        let Some(n) = self.neighbours.get(&conn) else {
            return false;
        };
        let queued: usize = n.answers.iter().map(|(_, len)| len).sum();
        if queued >= window || all >= super::origin::memory_budget(window) {
            log::debug!(
                "REPAIR from connection {conn} not answered: {queued} bytes of earlier \
                 answers still wait to be sent to it, {all} to all neighbours"
            );
            return false;
        }
        true
    }

    /// Keeps track of an answer queued for `conn` (see [`Mesh::repair_room`]).
    pub(super) fn answered(&mut self, conn: Conn, answer: &Bytes) {
        if let Some(n) = self.neighbours.get_mut(&conn) {
            n.answers.push((Arc::downgrade(answer), answer.len()));
        }
    }

    /// Reports `origin`'s seqs `first..=last` as lost to this node. Our
    /// acknowledgements changed (the run counts as skipped): a STATUS is due.
    pub(super) fn gap(&mut self, origin: NodeId, first: u64, last: u64, reason: &str) {
        self.status_due = true;
        self.push(Action::Gap {
            origin,
            first,
            last,
            reason: reason.to_owned(),
        });
    }

    /// The miss entries of our STATUS ([`miss_entry`], one per live member
    /// to be told). At most [`MAX_STATUS_MISSES`], rotating with the
    /// status_seq when there are more, so that every member is told in
    /// turn.
    pub(super) fn misses(&self) -> Vec<Miss> {
        let last = self.own.last_seq;
        let kept_from = self.kept_from();
        let mut misses: Vec<Miss> = self
            .members
            .iter()
            .filter(|(_, m)| m.up)
            .filter_map(|(id, m)| miss_entry(*id, m, last, kept_from))
            .collect();
        if misses.len() > MAX_STATUS_MISSES {
            let turn = (self.own.status_seq % misses.len() as u64) as usize;
            misses.rotate_left(turn);
            misses.truncate(MAX_STATUS_MISSES);
        }
        misses
    }

    /// After a member's STATUS: a miss entry for us is acted on, and a
    /// member newly in need of an entry of ours is told soon.
    pub(super) fn after_status(&mut self, status: &Status) {
        let acked = status.acks.iter().any(|a| self.cfg.acknowledges_us(a));
        let (last, kept_from) = (self.own.last_seq, self.kept_from());
        if acked
            && self
                .members
                .get(&status.member)
                .is_some_and(|m| m.up && miss_entry(status.member, m, last, kept_from).is_some())
        {
            self.status_due = true;
        }
        self.told_missed(status);
    }

    /// The lowest of our own seqs we still keep (our cache holds the last
    /// window of them); one past our last when we keep none.
    fn kept_from(&self) -> u64 {
        let next = self.own.last_seq + 1;
        self.origins
            .get(self.cfg.id)
            .and_then(|o| o.first_cached())
            .map_or(next, |first| first.min(next))
    }

    /// An origin's STATUS says we never got lines it owed us. If we have
    /// delivered nothing of it since our base, they become a hole (copies
    /// may still be on their way, or in neighbours' caches): repaired, or
    /// a gap. Otherwise they are a gap now, counted as skipped (our base
    /// moves down to them), so that the origin stops listing us.
    fn told_missed(&mut self, status: &Status) {
        let me = self.cfg.id;
        let Some(miss) = status.misses.iter().find(|m| m.member == me) else {
            return;
        };
        if miss.is_start() {
            // Lines start at most one past what it says it sent: an
            // origin tells a member of lines it owes, and owes none it
            // has not read.
            if miss.first <= status.sent_seq.saturating_add(1) {
                self.told_start(status.member, miss.first);
            }
            return;
        }
        let Some(origin) = self.origins.get_mut(status.member) else {
            return;
        };
        if origin.next != 0 && miss.first > origin.base {
            // An unkept entry: lines from one past what we acknowledged
            // on, which it no longer keeps. (A miss entry never starts
            // above our base: it starts at the first line owed to us, and
            // our base comes down to it at most.) Only lines it says it
            // sent; a hole in them is given up once each neighbour (three
            // at most) was asked in vain (`check_hole`).
            if miss.last <= status.sent_seq {
                origin.unkept = Some((miss.first, miss.last));
                if origin.missing().is_some() {
                    self.holes.insert(status.member);
                }
            }
            return;
        }
        if origin.reopen(miss.first) {
            self.holes.insert(status.member);
            self.status_due = true;
            return;
        }
        if let Some((first, last)) = origin.lower_base(miss.first) {
            self.gap(
                status.member,
                first,
                last,
                "owed to this node but never reached it",
            );
        }
    }

    /// An origin's STATUS says our lines from it start at `first`, and we
    /// have delivered none since our base. If our base is above `first`,
    /// it came from a STATUS sent after the lines owed to us: they become
    /// a hole, repaired from caches (the origin keeps them until we
    /// acknowledge them). If it is below, we wait for earlier ones: we took our base from
    /// an old STATUS of it that reached us as we joined (a greeting repeats
    /// the STATUS frames a neighbour last saw, and relays run seconds
    /// behind a fast sender), and no cache keeps the lines between for us,
    /// since none was owed to us. Our base moves up to
    /// `first` at once, reported as a gap (they were never owed, so not
    /// counted as skipped). Before, we waited `--stall-timeout` on a hole
    /// nobody could fill, and the origin's window on us: a node joining
    /// a group while a member streamed froze that member for a stall
    /// timeout (attack19 F2: 116,508 lines owed, 0 printed in 3 s).
    fn told_start(&mut self, origin: NodeId, first: u64) {
        let Some(o) = self.origins.get_mut(origin) else {
            return;
        };
        if o.next == 0 || o.next != o.base || o.next == first {
            return;
        }
        if first < o.next {
            // Our base came from a STATUS of the origin sent after the
            // lines it owes us from `first` on: they are a hole (the
            // origin keeps them until we acknowledge them), not lines
            // to skip.
            if o.reopen(first) {
                self.holes.insert(origin);
                self.status_due = true;
            }
            return;
        }
        let next = o.next;
        self.give_up(origin, next, first - 1, NOT_OWED);
    }
}

/// Our STATUS's entry for `member` (`m`), `last` being our last seq and
/// `kept_from` the lowest of ours we still keep:
/// - a miss entry (`owed_from..=base - 1`) when its base is above the
///   first line it owes us: it reports them as a gap, or fetches them;
/// - a start entry ([`Miss::start`]) when its base is below the first
///   line it owes and it delivered nothing since, so that it likely waits
///   for lines nobody keeps for it; or when it has acknowledged none of
///   our lines yet, so that we do not know its base;
/// - an unkept entry (`delivered + 1..=kept_from - 1`, at most up to
///   `back_at`) when it came back after we took it for down and still
///   lacks lines sent while it was away that we no longer keep: nobody is
///   bound to keep them (every cache holds a window of the latest), so it
///   gives them up once its neighbours had nothing. Without it, it waited
///   `--stall-timeout` for them, printing nothing (attack18 G5);
/// - else none.
fn miss_entry(member: NodeId, m: &Member, last: u64, kept_from: u64) -> Option<Miss> {
    let owed_from = m.owed_from;
    if owed_from == 0 || owed_from > last {
        return None;
    }
    let Some((base, delivered, _)) = m.ack else {
        // It has acknowledged none of our lines yet, so we cannot know
        // where it starts them: it may have taken its base from a STATUS
        // of ours that said we had sent far more than the lines we read
        // while we knew it (a link to us came up while we streamed, and
        // our lines along other paths ran behind). Told where they start,
        // it waits for them instead of delivering the later ones first
        // and then giving these up (attack44 F1).
        return Some(Miss::start(member, owed_from));
    };
    if base < owed_from && delivered < base {
        return Some(Miss::start(member, owed_from));
    }
    if base > owed_from {
        return Some(Miss {
            member,
            first: owed_from,
            last: (base - 1).min(last),
        });
    }
    let first = delivered.saturating_add(1).max(owed_from);
    let unkept = kept_from.saturating_sub(1).min(m.back_at);
    (m.back_at > 0 && first <= unkept).then_some(Miss {
        member,
        first,
        last: unkept,
    })
}
