//! Our own lines and the end-to-end window: an origin may have at most
//! `--window` bytes of its messages not yet acknowledged by every live
//! member that owes them. Relays never block; this window is what bounds
//! what they hold (see PROTOCOL.md, "Flow control").
//!
//! Stdin is read while the window has room, and one read may bring more
//! lines than the room left: those wait here, numbered, until
//! acknowledgements make room for them. A member's hold-back buffer (one
//! window) then never overflows behind a hole, which would drop lines that
//! only a REPAIR could bring back.

use std::collections::VecDeque;
use std::time::Instant;

use super::{Bytes, Mesh};
use crate::frame;

/// Our lines read but not sent yet: `bytes` holds MSG frames of seqs
/// `first..`; those before `at` (a frame's start, or an entry's inside
/// the frame starting at `frame`) are sent.
#[derive(Debug)]
struct Pending {
    bytes: Bytes,
    frame: usize,
    at: usize,
    first: u64,
    last: u64,
}

#[derive(Debug)]
pub struct Own {
    window: usize,
    /// The highest seq of our own lines handed to the mesh; 0 = none.
    pub last_seq: u64,
    pub status_seq: u64,
    /// Where our STATUS frames started counting: every one we sent is
    /// above it (see `Mesh::count_status_from`).
    pub first_status_seq: u64,
    pub leaving: bool,
    /// (seq, cost) of our lines above the low mark: what each counts
    /// against the window ([`frame::entry_cost`]).
    sizes: VecDeque<(u64, usize)>,
    unacked: usize,
    /// Every owing live member has every one of our lines up to here.
    low: u64,
    /// Lines read beyond the window, oldest first.
    pending: VecDeque<Pending>,
    /// How many lines wait in `pending`.
    pending_lines: u64,
}

impl Own {
    pub fn new(window: usize) -> Self {
        Own {
            window,
            last_seq: 0,
            status_seq: 0,
            first_status_seq: 0,
            leaving: false,
            sizes: VecDeque::new(),
            unacked: 0,
            low: 0,
            pending: VecDeque::new(),
            pending_lines: 0,
        }
    }

    /// Lines read from stdin, MSG frames `first..=last`: they wait for room.
    pub fn queue(&mut self, bytes: &Bytes, first: u64, last: u64) {
        self.pending.push_back(Pending {
            bytes: bytes.clone(),
            frame: 0,
            at: frame::MSG_HEADER_LEN,
            first,
            last,
        });
        self.pending_lines += last + 1 - first;
    }

    /// How many lines read from stdin wait for room in the window.
    pub fn waiting(&self) -> u64 {
        self.pending_lines
    }

    /// The oldest waiting lines that fit the window now, as one buffer of
    /// MSG frames with their first and last seq. A line always fits when
    /// nothing is unacknowledged (`--window` is at least one message). A
    /// line costs [`frame::entry_cost`] of its entry.
    fn take_fitting(&mut self) -> Option<(Bytes, u64, u64)> {
        let front = self.pending.front_mut()?;
        let start = (front.frame, front.at);
        // The usual case: the whole chunk fits (its bytes count every
        // entry, so with the overhead of each line they are more than its
        // lines cost), taken without a look at its lines.
        let lines = (front.last + 1 - front.first) as usize;
        let most = frame::entries_cost(front.bytes.len(), lines);
        if start == (0, frame::MSG_HEADER_LEN) && self.unacked + most <= self.window {
            let p = self.pending.pop_front().expect("front");
            self.pending_lines -= p.last + 1 - p.first;
            return Some((p.bytes, p.first, p.last));
        }
        let mut used = 0;
        let mut count = 0;
        let bytes = front.bytes.clone();
        'frames: for f in frame::msg_frames(&bytes[start.0..]) {
            let (frame_at, end) = (start.0 + f.frame.start, start.0 + f.frame.end);
            let mut at = if frame_at == start.0 {
                start.1
            } else {
                frame_at + frame::MSG_HEADER_LEN
            };
            let base = at;
            for entry_end in frame::entry_ends(&bytes[base..end]) {
                let len = base + entry_end - at;
                let cost = frame::entry_cost(len);
                if self.unacked + used + cost > self.window && (self.unacked > 0 || used > 0) {
                    front.frame = frame_at;
                    front.at = at;
                    break 'frames;
                }
                used += cost;
                count += 1;
                at += len;
            }
            front.frame = end;
            front.at = end + frame::MSG_HEADER_LEN;
        }
        if count == 0 {
            return None;
        }
        let first = front.first;
        let last = first + count - 1;
        self.pending_lines -= count;
        front.first = last + 1;
        let all_sent = front.frame >= front.bytes.len();
        let whole = start == (0, frame::MSG_HEADER_LEN) && all_sent;
        let bytes = if whole {
            front.bytes.clone()
        } else {
            // Split at the window (rare: once per window filled): the
            // part that fits is framed anew, the rest keeps waiting in
            // place.
            Bytes::new(reframe(&front.bytes, start, (front.frame, front.at), first))
        };
        if all_sent {
            self.pending.pop_front();
        }
        Some((bytes, first, last))
    }

    /// Our line `seq` went out; it counts `cost` against the window.
    pub fn sent(&mut self, seq: u64, cost: usize) {
        self.last_seq = self.last_seq.max(seq);
        if seq > self.low {
            self.sizes.push_back((seq, cost));
            self.unacked += cost;
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

    /// Bytes of our own lines that may be read now: none while read lines
    /// still wait for room.
    pub fn room(&self) -> usize {
        if self.pending.is_empty() {
            self.window.saturating_sub(self.unacked)
        } else {
            0
        }
    }

    #[cfg(test)]
    pub fn unacked(&self) -> usize {
        self.unacked
    }
}

/// The messages of the MSG frames in `bytes` from `from` to `to` (each a
/// frame's start and an entry's position in it), as MSG frames anew; the
/// first message's seq is `first`.
fn reframe(bytes: &[u8], from: (usize, usize), to: (usize, usize), mut first: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frame::msg_frames(&bytes[from.0..]) {
        let (frame_at, end) = (from.0 + f.frame.start, from.0 + f.frame.end);
        if frame_at > to.0 || (frame_at == to.0 && to.1 <= frame_at + frame::MSG_HEADER_LEN) {
            break;
        }
        let a = if frame_at == from.0 {
            from.1
        } else {
            frame_at + frame::MSG_HEADER_LEN
        };
        let z = if frame_at == to.0 { to.1 } else { end };
        let entries = &bytes[a..z];
        out.extend_from_slice(
            &frame::MsgHeader {
                origin: f.origin,
                seq: first,
                hops: f.hops,
                ttl: f.ttl,
                life: f.life,
            }
            .encode(entries.len()),
        );
        out.extend_from_slice(entries);
        first += frame::entries(entries).count() as u64;
    }
    out
}

impl Mesh {
    /// Sends the waiting lines that fit the window, if there is a
    /// neighbour to send them to.
    pub(super) fn release_own(&mut self, now: Instant) {
        while !self.neighbours.is_empty() {
            let Some((frames, first, last)) = self.own.take_fitting() else {
                return;
            };
            self.send_local(now, &frames, first, last);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines of a frame that fit the window go out framed anew (seqs
    /// and bytes as they were); the rest wait, and go out as a frame of
    /// their own once acknowledgements make room.
    #[test]
    fn a_frame_is_split_at_the_window_into_frames_of_their_own() {
        let mut own = Own::new(250);
        let mut bytes = Vec::new();
        let lines: Vec<Vec<u8>> = (1..=5u8).map(|i| vec![b'0' + i; 99]).collect();
        let payloads: Vec<&[u8]> = lines.iter().map(|l| &l[..]).collect();
        frame::put_run(&mut bytes, frame::MsgHeader::new(9, 1), &payloads);
        own.queue(&Bytes::new(bytes), 1, 5);
        let decoded = |b: &Bytes| -> Vec<(u64, Vec<u8>)> {
            frame::msg_frames(b)
                .map(|f| (f.seq, b[f.entries].to_vec()))
                .collect()
        };
        let text = |range: std::ops::Range<usize>| -> Vec<u8> {
            lines[range]
                .iter()
                .flat_map(|l| [&l[..], b"\n"].concat())
                .collect()
        };
        let (first, a, z) = own.take_fitting().unwrap();
        assert_eq!((a, z), (1, 2));
        assert_eq!(decoded(&first), [(1, text(0..2))]);
        for seq in 1..=2 {
            own.sent(seq, frame::entry_cost(100));
        }
        assert!(own.take_fitting().is_none(), "the window is full");
        own.acked_to(2);
        let (rest, a, z) = own.take_fitting().unwrap();
        assert_eq!((a, z), (3, 4));
        assert_eq!(decoded(&rest), [(3, text(2..4))]);
        for seq in 3..=4 {
            own.sent(seq, frame::entry_cost(100));
        }
        own.acked_to(4);
        let (last, a, z) = own.take_fitting().unwrap();
        assert_eq!((a, z, own.waiting()), (5, 5, 0));
        assert_eq!(decoded(&last), [(5, text(4..5))]);
    }

    /// Our own empty lines count 23 bytes each against the window, as
    /// every receiver's hold-back buffer counts them: a window of 23,000
    /// bytes lets 1,000 go, not 23,000 (the bytes they take on the wire).
    #[test]
    fn empty_lines_count_as_an_entry_and_the_overhead_of_a_message() {
        let mut own = Own::new(23_000);
        let mut bytes = Vec::new();
        for first in (1..=10_000u64).step_by(frame::MAX_RUN_ENTRIES) {
            let n = frame::MAX_RUN_ENTRIES.min(10_001 - first as usize);
            frame::put_run(
                &mut bytes,
                frame::MsgHeader::new(9, first),
                &vec![&b""[..]; n],
            );
        }
        own.queue(&Bytes::new(bytes), 1, 10_000);
        let (frames, a, z) = own.take_fitting().unwrap();
        assert_eq!((a, z, own.waiting()), (1, 1000, 9000));
        let sent: u64 = frame::msg_frames(&frames)
            .map(|f| frame::entries(&frames[f.entries]).count() as u64)
            .sum();
        assert_eq!(sent, 1000);
    }

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
