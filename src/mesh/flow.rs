//! Our own lines and the end-to-end window: an origin may have at most
//! `--window` bytes of its messages not yet acknowledged by every live
//! member that owes them. Relays never block; this window is what bounds
//! what they hold (see PROTOCOL.md, "Flow control").

use std::collections::VecDeque;

#[derive(Debug)]
pub struct Own {
    window: usize,
    /// The highest seq of our own lines handed to the mesh; 0 = none.
    pub last_seq: u64,
    pub status_seq: u64,
    pub leaving: bool,
    /// (seq, frame bytes) of our lines above the low mark.
    sizes: VecDeque<(u64, usize)>,
    unacked: usize,
    /// Every owing live member has every one of our lines up to here.
    low: u64,
}

impl Own {
    pub fn new(window: usize) -> Self {
        Own {
            window,
            last_seq: 0,
            status_seq: 0,
            leaving: false,
            sizes: VecDeque::new(),
            unacked: 0,
            low: 0,
        }
    }

    pub fn sent(&mut self, seq: u64, len: usize) {
        self.last_seq = self.last_seq.max(seq);
        if seq > self.low {
            self.sizes.push_back((seq, len));
            self.unacked += len;
        }
    }

    /// Every owing member has our lines up to `low`.
    pub fn acked_to(&mut self, low: u64) {
        self.low = low;
        while let Some(&(seq, len)) = self.sizes.front() {
            if seq > low {
                break;
            }
            self.sizes.pop_front();
            self.unacked -= len;
        }
    }

    /// Bytes of our own lines that may be sent now.
    pub fn room(&self) -> usize {
        self.window.saturating_sub(self.unacked)
    }

    #[cfg(test)]
    pub fn unacked(&self) -> usize {
        self.unacked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_shrinks_with_unacknowledged_lines_and_grows_with_acks() {
        let mut own = Own::new(100);
        own.sent(1, 40);
        own.sent(2, 40);
        assert_eq!(own.room(), 20);
        own.acked_to(1);
        assert_eq!(own.room(), 60);
        own.sent(3, 80);
        assert_eq!(own.room(), 0, "never negative");
        own.acked_to(3);
        assert_eq!((own.room(), own.unacked()), (100, 0));
    }
}
