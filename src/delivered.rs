//! What the router has delivered, per origin, shared with the readers: a
//! message whose seq lies between the first seq delivered from its origin
//! and the last has been delivered (or given up as a gap) already, so the
//! mesh would drop it as a duplicate. (A seq below the first one delivered
//! still goes to the mesh: it may be owed, and must end in delivery or in a
//! `gap` event, never in silence.) The reader drops it instead, without handing it over: with
//! flooding, most copies a member receives are such duplicates (scenario 10
//! of BENCHMARKS.md), and each one cost the router a wake-up and a pass.
//!
//! A mark only ever lags what the router knows, never leads it, so a
//! message the router would deliver is never dropped here. The dropped
//! messages still count as received in the books.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;

use crate::frame::NodeId;

/// Origins remembered, at most (as many as the mesh keeps state for); past
/// it the table starts again empty, which only means fewer early drops.
pub const MAX_MARKS: usize = 4096;

/// RwLock: the router writes once per delivered batch, every reader reads
/// once per run of one origin in what it decoded.
#[derive(Default)]
pub struct Delivered {
    marks: RwLock<HashMap<NodeId, RangeInclusive<u64>>>,
    dropped_msgs: AtomicU64,
    dropped_bytes: AtomicU64,
}

impl Delivered {
    /// Router: `origin` has seqs `first..=last` delivered, and every seq
    /// between its first delivered and `last` delivered or skipped. Marks
    /// only widen.
    pub fn mark(&self, runs: &[(NodeId, u64, u64)]) {
        if runs.is_empty() {
            return;
        }
        let mut marks = self.marks.write();
        for &(origin, first, last) in runs {
            if marks.len() >= MAX_MARKS && !marks.contains_key(&origin) {
                marks.clear();
            }
            let mark = marks.entry(origin).or_insert(first..=last);
            *mark = (*mark.start()).min(first)..=(*mark.end()).max(last);
        }
    }

    /// Router: `origin` restarted, its seqs count from 1 again: nothing
    /// of its new life is known delivered.
    pub fn forget(&self, origin: NodeId) {
        self.marks.write().remove(&origin);
    }

    /// Reader: the seqs of `origin` known delivered; empty = none.
    pub fn mark_of(&self, origin: NodeId) -> RangeInclusive<u64> {
        #[allow(clippy::reversed_empty_ranges)]
        let none = 1..=0;
        self.marks.read().get(&origin).cloned().unwrap_or(none)
    }

    /// Reader: it dropped `msgs` duplicates of `bytes` bytes (whole frames).
    pub fn dropped(&self, msgs: u64, bytes: u64) {
        if msgs > 0 {
            self.dropped_msgs.fetch_add(msgs, Ordering::Relaxed);
            self.dropped_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// Router: what readers dropped since the last call, for the books.
    pub fn take_dropped(&self) -> (u64, u64) {
        (
            self.dropped_msgs.swap(0, Ordering::Relaxed),
            self.dropped_bytes.swap(0, Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_only_widen_and_unknown_origins_have_none() {
        let d = Delivered::default();
        assert!(d.mark_of(7).is_empty());
        d.mark(&[(7, 5, 10), (8, 1, 3)]);
        d.mark(&[(7, 6, 8)]);
        assert_eq!((d.mark_of(7), d.mark_of(8)), (5..=10, 1..=3));
        assert!(d.mark_of(9).is_empty());
        // A seq below the first delivered is not covered: it may be owed.
        assert!(!d.mark_of(7).contains(&4));
        d.mark(&[(7, 3, 4)]);
        assert_eq!(d.mark_of(7), 3..=10);
    }

    #[test]
    fn the_table_is_bounded() {
        let d = Delivered::default();
        for id in 0..MAX_MARKS as u64 {
            d.mark(&[(id, 1, 1)]);
        }
        d.mark(&[(0, 2, 2)]);
        assert_eq!(
            d.marks.read().len(),
            MAX_MARKS,
            "a known origin adds nothing"
        );
        d.mark(&[(u64::MAX, 5, 5)]);
        assert!(d.marks.read().len() <= MAX_MARKS);
        assert_eq!(d.mark_of(u64::MAX), 5..=5);
    }

    #[test]
    fn dropped_duplicates_are_counted_once() {
        let d = Delivered::default();
        d.dropped(3, 261);
        d.dropped(0, 0);
        assert_eq!(d.take_dropped(), (3, 261));
        assert_eq!(d.take_dropped(), (0, 0));
    }
}
