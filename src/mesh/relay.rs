//! The flooding relay: de-duplication by (origin, seq), per-origin order
//! with a bounded hold-back buffer, ttl, forwarding one shared re-encoded
//! buffer per inbound batch, our own lines, REPAIR answers, and holes that
//! become gaps after `--stall-timeout`.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use byteorder::{BigEndian, ByteOrder};

use super::origin::{Arrival, Hole, Kept};
use super::{Action, Bytes, Conn, Delivery, Mesh, MsgRef, NodeId};
use crate::frame::{Frame, LEN_PREFIX, MSG_HEADER_LEN, MSG_HOPS_AT};

/// How long a hole may be in-flight reordering before the first REPAIR.
const REPAIR_DELAY: Duration = Duration::from_millis(250);
/// A neighbour's REPAIR answers are bounded to a window per this period. A
/// REPAIR is 29 bytes and its answer up to a window: without a bound, 8.7
/// KB of REPAIRs from a neighbour that reads nothing made a node queue 1.2
/// GB for it.
pub(super) const REPAIR_BUDGET_EVERY: Duration = Duration::from_secs(1);
/// How long a REPAIR is given before another neighbour is asked.
const REPAIR_RETRY: Duration = Duration::from_secs(1);

impl Mesh {
    /// The hot path: one pass over the batch, one forward buffer shared by
    /// every other neighbour, deliveries by reference into `buf`.
    pub(super) fn relay(&mut self, now: Instant, conn: Conn, buf: &Bytes, msgs: &[MsgRef]) {
        // `conn` may be no neighbour (a mutual-dial pair's other link).
        let forwarding = self.cfg.relay && self.neighbours.keys().any(|&c| c != conn);
        let mut late = Vec::new();
        let mut fwd: Vec<u8> = Vec::new();
        let mut fwd_seqs: Vec<(NodeId, u64, Range<usize>)> = Vec::new();
        let mut deliveries = Vec::new();
        // A message's share of the buffer it keeps alive when held or cached.
        let share = buf.len() / msgs.len().max(1);
        let window = self.cfg.window;
        // A batch is mostly runs of one origin: its state is looked up once
        // per run, not per message (the lookup was a fifth of a relay's time).
        for run in msgs.chunk_by(|a, b| a.origin == b.origin) {
            let id = run[0].origin;
            if id == self.cfg.id {
                continue;
            }
            let origin = self.origins.entry(id);
            if origin.next == 0 {
                match self.members.get(&id).map(|m| m.base_hint) {
                    Some(hint) if hint > 0 => origin.start_at(hint),
                    _ => {}
                }
            }
            for m in run {
                // A copy that crossed more links than its origin's ttl
                // allows came along no correct path: neither delivered nor
                // passed on (a hole, if it was the only copy: repaired or
                // reported).
                if m.hops > m.ttl {
                    continue;
                }
                let kept = Kept {
                    hops: m.hops,
                    via: Some(conn),
                    bytes: buf.clone(),
                    frame: m.start..m.end,
                    cost: (m.end - m.start).max(share),
                };
                match origin.arrive(m.seq, kept.cost, window) {
                    Arrival::Duplicate | Arrival::Overflow => continue,
                    Arrival::Late => {
                        late.extend(origin.lower_base(m.seq).map(|(f, l)| (id, f, l)));
                        continue;
                    }
                    Arrival::Deliver => {
                        origin.next = origin.next.saturating_add(1);
                        deliveries.push(delivery(id, m.seq, &kept));
                        while let Some((seq, held)) = origin.take_next_held() {
                            deliveries.push(delivery(id, seq, &held));
                        }
                        if origin.missing().is_some() {
                            self.holes.insert(id);
                        }
                    }
                    Arrival::Hold => {
                        origin.hold(m.seq, kept.clone());
                        self.holes.insert(id);
                    }
                }
                if forwarding && m.hops < m.ttl {
                    let at = fwd.len();
                    if at == 0 {
                        fwd.reserve(buf.len());
                    }
                    fwd.extend_from_slice(&buf[m.start..m.end]);
                    fwd[at + MSG_HOPS_AT] = m.hops + 1;
                    fwd_seqs.push((id, m.seq, at..fwd.len()));
                } else {
                    origin.cache(m.seq, kept, window);
                }
            }
        }
        if !fwd_seqs.is_empty() {
            let fwd: Bytes = Arc::new(fwd);
            let share = fwd.len() / fwd_seqs.len();
            for run in fwd_seqs.chunk_by(|a, b| a.0 == b.0) {
                let origin = self.origins.entry(run[0].0);
                for (_, seq, frame) in run {
                    let kept = Kept {
                        hops: fwd[frame.start + MSG_HOPS_AT],
                        via: None,
                        bytes: fwd.clone(),
                        frame: frame.clone(),
                        cost: frame.len().max(share),
                    };
                    origin.cache(*seq, kept, window);
                }
            }
            self.broadcast(&fwd, fwd_seqs.len() as u64, Some(conn));
        }
        if !deliveries.is_empty() {
            self.last_activity = now;
        }
        for (origin, first, last) in late {
            self.gap(
                origin,
                first,
                last,
                "arrived after later messages were delivered",
            );
        }
        self.delivered(deliveries);
        self.maybe_send_status(now);
    }

    /// Hands deliveries to the caller; acknowledgements advanced.
    fn delivered(&mut self, deliveries: Vec<Delivery>) {
        if !deliveries.is_empty() {
            self.status_due = true;
            self.unacked_delivered += deliveries.iter().map(|d| d.payload.1.len()).sum::<usize>();
            self.push(Action::Deliver(deliveries));
        }
    }

    /// Our own lines: to every neighbour, into our cache, into the window.
    pub(super) fn send_local(&mut self, now: Instant, frames: &Bytes, first: u64, last: u64) {
        let mut rest = 0;
        let mut count = 0;
        let window = self.cfg.window;
        while rest + MSG_HEADER_LEN <= frames.len() {
            let len = LEN_PREFIX + BigEndian::read_u32(&frames[rest..]) as usize;
            let seq = BigEndian::read_u64(&frames[rest + 13..]);
            let kept = Kept {
                hops: 1,
                via: None,
                bytes: frames.clone(),
                frame: rest..rest + len,
                cost: len,
            };
            self.origins.entry(self.cfg.id).cache(seq, kept, window);
            self.own.sent(seq, len);
            rest += len;
            count += 1;
        }
        debug_assert_eq!(count, last + 1 - first);
        self.broadcast(frames, count, None);
        self.update_window();
        self.status_due = true;
        self.last_activity = now;
        self.maybe_send_status(now);
    }

    /// Answers a REPAIR with the frames we still have, one buffer. An
    /// answer is a forward: a `--no-relay` node answers only for its own
    /// lines, and a copy goes out with one hop more than it came with, and
    /// only within its origin's ttl.
    ///
    /// A neighbour gets at most a window of answers per
    /// [`REPAIR_BUDGET_EVERY`]; the rest of a run it asked for goes out
    /// when it asks again (a hole is asked for every [`REPAIR_DELAY`]).
    pub(super) fn answer_repair(
        &mut self,
        now: Instant,
        conn: Conn,
        origin: NodeId,
        from: u64,
        to: u64,
    ) {
        if origin != self.cfg.id && !self.cfg.relay {
            return;
        }
        let Some(state) = self.origins.get(origin) else {
            return;
        };
        let Some(asker) = self.neighbours.get_mut(&conn) else {
            return;
        };
        if now.saturating_duration_since(asker.repair_since) >= REPAIR_BUDGET_EVERY {
            asker.repair_since = now;
            asker.repair_sent = 0;
        }
        let budget = self.cfg.window.saturating_sub(asker.repair_sent);
        let mut out = Vec::new();
        let mut msgs = 0;
        for kept in state.cached(from, to) {
            let frame = &kept.bytes[kept.frame.clone()];
            if out.len() + frame.len() > budget {
                break;
            }
            // Cached as it arrived (via a neighbour), or as we sent it on.
            let hops = kept.hops.saturating_add(u8::from(kept.via.is_some()));
            if hops > frame[MSG_HOPS_AT + 1] {
                continue;
            }
            let at = out.len();
            out.extend_from_slice(frame);
            out[at + MSG_HOPS_AT] = hops;
            msgs += 1;
        }
        if msgs == 0 {
            return;
        }
        asker.repair_sent += out.len();
        self.push(Action::Send {
            to: conn,
            frames: Arc::new(out),
            msgs,
        });
    }

    /// Asks for missing runs, and gives up on those open for
    /// `--stall-timeout`: a gap, then what was held back.
    pub(super) fn check_holes(&mut self, now: Instant) {
        let ids: Vec<NodeId> = self.holes.iter().copied().collect();
        for id in ids {
            self.check_hole(now, id);
        }
    }

    fn check_hole(&mut self, now: Instant, id: NodeId) {
        let stall = self.cfg.stall_timeout;
        let Some(origin) = self.origins.get_mut(id) else {
            self.holes.remove(&id);
            return;
        };
        let Some((first, last)) = origin.missing() else {
            origin.hole = None;
            self.holes.remove(&id);
            return;
        };
        let hole = origin.hole.get_or_insert(Hole {
            since: now,
            next_repair: now + REPAIR_DELAY,
            rr: 0,
        });
        if now >= hole.since + stall {
            origin.skip_to(last);
            origin.hole = None;
            let mut released = Vec::new();
            while let Some((seq, held)) = origin.take_next_held() {
                released.push(delivery(id, seq, &held));
            }
            let reason = format!("not repaired within {}s", stall.as_secs_f64());
            self.gap(id, first, last, &reason);
            self.delivered(released);
            return;
        }
        if now >= hole.next_repair && !self.neighbours.is_empty() {
            let rank = hole.rr % self.neighbours.len();
            hole.rr += 1;
            hole.next_repair = now + REPAIR_RETRY;
            let conn = *self.neighbours.keys().nth(rank).expect("rank < len");
            let frame = Frame::Repair {
                origin: id,
                from_seq: first,
                to_seq: last,
            };
            self.push(Action::Send {
                to: conn,
                frames: Arc::new(frame.to_bytes()),
                msgs: 0,
            });
        }
    }
}

fn delivery(origin: NodeId, seq: u64, kept: &Kept) -> Delivery {
    Delivery {
        origin,
        seq,
        hops: kept.hops,
        via: kept.via,
        payload: (
            kept.bytes.clone(),
            kept.frame.start + MSG_HEADER_LEN..kept.frame.end,
        ),
    }
}
