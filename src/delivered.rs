//! What the router has delivered, per origin, shared with the readers: a
//! message whose seq is at or below its origin's mark has been delivered
//! (or given up as a gap) already, so the mesh would drop it as a
//! duplicate. The reader drops it instead, without handing it over: with
//! flooding, most copies a member receives are such duplicates (scenario 10
//! of BENCHMARKS.md), and each one cost the router a wake-up and a pass.
//!
//! A mark only ever lags what the router knows, never leads it, so a
//! message the router would deliver is never dropped here. The dropped
//! messages still count as received in the books.

use std::collections::HashMap;
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
    marks: RwLock<HashMap<NodeId, u64>>,
    dropped_msgs: AtomicU64,
    dropped_bytes: AtomicU64,
}

impl Delivered {
    /// Router: `origin` has every seq up to `seq` delivered or skipped.
    /// Marks never go down.
    pub fn mark(&self, runs: &[(NodeId, u64)]) {
        if runs.is_empty() {
            return;
        }
        let mut marks = self.marks.write();
        for &(origin, seq) in runs {
            if marks.len() >= MAX_MARKS && !marks.contains_key(&origin) {
                marks.clear();
            }
            let mark = marks.entry(origin).or_insert(0);
            *mark = (*mark).max(seq);
        }
    }

    /// Reader: the highest seq of `origin` known delivered; 0 = none.
    pub fn mark_of(&self, origin: NodeId) -> u64 {
        self.marks.read().get(&origin).copied().unwrap_or(0)
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
    fn marks_only_go_up_and_unknown_origins_have_none() {
        let d = Delivered::default();
        assert_eq!(d.mark_of(7), 0);
        d.mark(&[(7, 10), (8, 3)]);
        d.mark(&[(7, 4)]);
        assert_eq!((d.mark_of(7), d.mark_of(8), d.mark_of(9)), (10, 3, 0));
    }

    #[test]
    fn the_table_is_bounded() {
        let d = Delivered::default();
        for id in 0..MAX_MARKS as u64 {
            d.mark(&[(id, 1)]);
        }
        d.mark(&[(0, 2)]);
        assert_eq!(
            d.marks.read().len(),
            MAX_MARKS,
            "a known origin adds nothing"
        );
        d.mark(&[(u64::MAX, 5)]);
        assert!(d.marks.read().len() <= MAX_MARKS);
        assert_eq!(d.mark_of(u64::MAX), 5);
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
