//! The relay: de-duplication by (origin, seq), per-origin order with a
//! bounded hold-back buffer, ttl, forwarding one shared re-encoded buffer
//! per inbound batch along the broadcast tree (`tree.rs`: duplicates prune
//! links, holes graft them back), our own lines, REPAIR and GRAFT answers,
//! and holes: asked of neighbours, of the origin (dialed if need be), and
//! given up as gaps only after `--stall-timeout` without progress since
//! the last new path to the lines (at most three stall timeouts).

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use byteorder::{BigEndian, ByteOrder};

use super::origin::{kept_cost, Arrival, Hole, Kept, Run};
use super::table::Table;
use super::{Action, Bytes, Conn, Delivery, Mesh, MsgRef, NodeId};
use crate::frame::{
    self, Frame, Status, LEN_PREFIX, MAX_RUN_ENTRIES, MAX_RUN_LEN, MSG_HEADER_LEN, MSG_HOPS_AT,
    MSG_LIFE_AT,
};

/// How long a hole may be in-flight reordering before the first REPAIR.
const REPAIR_DELAY: Duration = Duration::from_millis(250);
/// How long a REPAIR is given before another neighbour is asked.
const REPAIR_RETRY: Duration = Duration::from_secs(1);
/// How many missing runs beyond the first a hole's ask also names (see
/// `check_hole`).
const LATER_RUNS_ASKED: usize = 16;
/// However often new paths restart a hole's clock, it is given up at the
/// latest this many stall timeouts after it was seen.
const HOLE_LIMIT: u32 = 3;
/// Neighbours asked in vain, at most, before a hole its origin no longer
/// keeps (an unkept entry) is given up.
const UNKEPT_ASKS: usize = 3;
/// A parent that sent nothing for this many keepalives has stopped.
const PARENT_SILENT: f64 = 1.5;

impl Mesh {
    /// The hot path: one pass over the batch, one forward buffer shared by
    /// every other neighbour, deliveries by reference into `buf`.
    pub(super) fn relay(&mut self, now: Instant, conn: Conn, buf: &Bytes, msgs: &[MsgRef]) {
        // `conn` may be no neighbour (a mutual-dial pair's other link).
        let forwarding = self.cfg.relay && self.neighbours.keys().any(|&c| c != conn);
        let mut late = Vec::new();
        let mut deliveries = Vec::new();
        // A message's share of the buffer it keeps alive when held or cached.
        let share = buf.len() / msgs.len().max(1);
        // Room for the forward buffer: the batch's frames, re-encoded, take
        // about as many bytes as they came in. Not the buffer's length: a
        // read buffer keeps its size (128 KiB once busy) whatever part of
        // it a batch holds, and a batch of one frame then forwarded a 4 KiB
        // frame in 128 KiB that each outbox and the cache kept alive.
        let mut fwd = Outgoing::with_room(msgs.last().map_or(0, |m| m.end));
        let window = self.cfg.window;
        // Whom to PRUNE, for which origin: duplicates show redundant links.
        let mut prunes: Vec<(NodeId, Conn)> = Vec::new();
        // Origins with a TOO_BIG noted and a message held behind it: given
        // up once this batch's deliveries are out (they come first).
        let mut too_big: Vec<NodeId> = Vec::new();
        // A batch is mostly runs of one origin: its state is looked up once
        // per run, not per message (the lookup was a fifth of a relay's time).
        for run in msgs.chunk_by(|a, b| a.origin == b.origin && a.life == b.life) {
            let id = run[0].origin;
            if id == self.cfg.id {
                // Our own lines come back only over redundant links.
                if let Some(to) = self.tree.duplicate(now, id, conn, run[0].hops, true) {
                    prunes.push((id, to));
                }
                continue;
            }
            // The newest copy delivered's hops, and the fewest a duplicate had.
            let mut newest: Option<u8> = None;
            let mut dup: Option<u8> = None;
            // A leaf of this origin's tree (every other neighbour pruned
            // it) forwards nothing, and caches the copies as they came
            // instead of copying each to rewrite its hops.
            let eager = forwarding
                && (!self.tree.has_lazy(id)
                    || self
                        .neighbours
                        .keys()
                        .any(|&c| c != conn && !self.tree.is_lazy(id, c)));
            let kept = kept_origins(&self.members, self.cfg.id);
            let Some(origin) = self.origins.admit(id, kept) else {
                // An origin no member announced, with the table full of
                // such: neither delivered nor passed on (see `admit`).
                self.refused_origin_msgs.add(run.len() as u64);
                continue;
            };
            // The member's life is looked up only for a state that has
            // none yet: this runs once per run of every batch.
            let members = &self.members;
            let announced = || members.get(&id).map_or(0, |m| m.life);
            if !origin.of_life(run[0].life, announced) {
                // Another process's under its id: neither delivered nor
                // passed on, nor taken for a duplicate (no PRUNE).
                self.other_life_msgs.add(run.len() as u64);
                continue;
            }
            let memory_before = origin.memory();
            origin.last_arrival = Some(now);
            if origin.next == 0 {
                match self.members.get(&id).map(|m| m.base_hint) {
                    Some(hint) if hint > 0 => origin.start_at(hint),
                    _ => {}
                }
            }
            // What is cached as it arrived, one entry per in-order stretch.
            let mut cached: Option<Run> = None;
            let mut i = 0;
            while i < run.len() {
                // The common case first: the next seqs in order, back to back,
                // nothing held back. Delivered, cached and forwarded as one
                // stretch, with no work per message beyond checking it.
                let k = origin.in_order(&run[i..], eager);
                if k > 0 {
                    let head = &run[i..i + k];
                    i += k;
                    // Back to back: the entries of one frame, one hops.
                    let (a, z) = (&head[0], &head[k - 1]);
                    let entries = a.start..z.end;
                    origin.next = z.seq + 1;
                    newest = Some(z.hops);
                    let stretch = Delivery {
                        origin: id,
                        first: a.seq,
                        last: z.seq,
                        hops: a.hops,
                        via: Some(conn),
                        bytes: buf.clone(),
                        entries: entries.clone(),
                    };
                    deliver(&mut deliveries, stretch);
                    if origin.missing().is_some() {
                        self.holes.insert(id);
                    }
                    if eager {
                        fwd.put(Stretch::passed_on(a, z), &buf[entries]);
                    } else {
                        let cost = head.iter().map(|m| kept_cost(m.end - m.start, share)).sum();
                        let stretch = Run {
                            first: a.seq,
                            last: z.seq,
                            received: true,
                            hops: a.hops,
                            ttl: a.ttl,
                            bytes: buf.clone(),
                            entries,
                            share,
                            cost,
                        };
                        if let Some(done) = cached.take() {
                            origin.cache(done, window);
                        }
                        origin.cache(stretch, window);
                    }
                    continue;
                }
                let m = &run[i];
                i += 1;
                // A copy that crossed more links than its origin's ttl
                // allows came along no correct path: neither delivered nor
                // passed on (a hole, if it was the only copy: repaired or
                // reported).
                if m.hops > m.ttl {
                    continue;
                }
                // Kept (a reference into `buf`) only if held back.
                let kept = || Kept {
                    via: Some(conn),
                    hops: m.hops,
                    ttl: m.ttl,
                    bytes: buf.clone(),
                    entry: m.start..m.end,
                    cost: kept_cost(m.end - m.start, share),
                };
                // Held messages cost what the window counts them
                // (`Origin::hold`).
                match origin.arrive(m.seq, frame::entry_cost(m.end - m.start), window) {
                    Arrival::Duplicate => {
                        // Below the base it was never ours: not a second copy.
                        if m.seq >= origin.base {
                            dup = Some(dup.map_or(m.hops, |h| h.min(m.hops)));
                        }
                        continue;
                    }
                    Arrival::Overflow => continue,
                    Arrival::Late => {
                        late.extend(origin.lower_base(m.seq).map(|(f, l)| (id, f, l)));
                        continue;
                    }
                    Arrival::Deliver => {
                        origin.next = origin.next.saturating_add(1);
                        let one = Delivery::one(id, m.seq, m.hops, Some(conn), buf, m.start..m.end);
                        deliver(&mut deliveries, one);
                        while let Some((seq, held)) = origin.take_next_held() {
                            deliver(&mut deliveries, held_delivery(id, seq, held));
                        }
                        if origin.missing().is_some() {
                            self.holes.insert(id);
                        }
                        // Only a copy delivered in order makes a parent: a
                        // new link may bring later lines at once (held), while
                        // the lines before them are still on their way along
                        // the old path, which must not be pruned for that.
                        newest = Some(m.hops);
                    }
                    Arrival::Hold => {
                        origin.hold(m.seq, kept());
                        self.holes.insert(id);
                        if origin.too_big.is_some() && too_big.last() != Some(&id) {
                            too_big.push(id);
                        }
                    }
                }
                if eager && m.hops < m.ttl {
                    fwd.put(Stretch::passed_on(m, m), &buf[m.start..m.end]);
                } else {
                    let kept = kept();
                    let more = cached
                        .as_mut()
                        .is_some_and(|r| r.extend(m.seq, true, &kept));
                    if !more {
                        let next = Run::one(m.seq, true, &kept, share);
                        if let Some(done) = cached.replace(next) {
                            origin.cache(done, window);
                        }
                    }
                }
            }
            if let Some(done) = cached {
                origin.cache(done, window);
            }
            let grew = origin.memory().saturating_sub(memory_before);
            self.origins.grew(grew);
            // Duplicates first: where two neighbours' streams overlap, a
            // run holds the other's last lines and then new ones, and as
            // copy by copy, the duplicate is judged against the parent
            // before this run (a run that always brought something new
            // would never be pruned).
            if let Some(hops) = dup {
                if let Some(to) = self.tree.duplicate(now, id, conn, hops, false) {
                    prunes.push((id, to));
                }
            }
            if let Some(hops) = newest {
                self.tree.new_copy(id, conn, hops);
            }
        }
        for (origin, to) in prunes {
            self.send_frame(to, &Frame::Prune { origin });
        }
        if !fwd.runs.is_empty() {
            let fwd_runs = fwd.runs;
            let fwd: Bytes = Arc::new(fwd.out);
            for (id, first, last, frame) in &fwd_runs {
                // The forward buffer holds nothing else: its entries cost
                // what the window counts them.
                let entries = frame.start + MSG_HEADER_LEN..frame.end;
                let count = (last - first + 1) as usize;
                let run = Run {
                    first: *first,
                    last: *last,
                    received: false,
                    hops: fwd[frame.start + MSG_HOPS_AT],
                    ttl: fwd[frame.start + MSG_HOPS_AT + 1],
                    bytes: fwd.clone(),
                    cost: frame::entries_cost(entries.len(), count),
                    entries,
                    share: 0,
                };
                let kept = kept_origins(&self.members, self.cfg.id);
                self.origins.cache(*id, kept, run, window);
            }
            self.forward(&fwd, &fwd_runs, Some(conn));
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
        for origin in too_big {
            self.give_up_too_big(origin);
        }
        self.keep_memory();
        self.maybe_send_status(now);
    }

    /// Sends the frames of `fwd` (`runs`: origin, first and last seq, and
    /// range of each stretch of consecutive seqs) to every neighbour but
    /// `except` that has not pruned their origin: the whole buffer to those
    /// eager for all of it (the usual case: a batch is mostly one origin),
    /// a copy of their part to the others.
    fn forward(
        &mut self,
        fwd: &Bytes,
        runs: &[(NodeId, u64, u64, Range<usize>)],
        except: Option<Conn>,
    ) {
        let count = |r: &(NodeId, u64, u64, Range<usize>)| (r.2 - r.1).saturating_add(1);
        let total: u64 = runs.iter().map(count).sum();
        if !runs.iter().any(|r| self.tree.has_lazy(r.0)) {
            self.broadcast(fwd, total, except);
            return;
        }
        let conns: Vec<Conn> = self.neighbours.keys().copied().collect();
        for conn in conns.into_iter().filter(|c| Some(*c) != except) {
            let eager: Vec<&(NodeId, u64, u64, Range<usize>)> = runs
                .iter()
                .filter(|r| !self.tree.is_lazy(r.0, conn))
                .collect();
            let msgs: u64 = eager.iter().map(|r| count(r)).sum();
            let frames = if eager.len() == runs.len() {
                fwd.clone()
            } else if eager.is_empty() {
                continue;
            } else {
                let mut part = Vec::new();
                for r in eager {
                    part.extend_from_slice(&fwd[r.3.clone()]);
                }
                Arc::new(part)
            };
            self.push(Action::Send {
                to: conn,
                frames,
                msgs,
            });
        }
    }

    /// One control frame to one neighbour.
    pub(super) fn send_frame(&mut self, to: Conn, frame: &Frame<'_>) {
        self.push(Action::Send {
            to,
            frames: Arc::new(frame.to_bytes()),
            msgs: 0,
        });
    }

    /// Hands deliveries to the caller; acknowledgements advanced.
    fn delivered(&mut self, deliveries: Vec<Delivery>) {
        if !deliveries.is_empty() && self.may_deliver(&deliveries) {
            self.status_due = true;
            // Acknowledged on printing instead: counted in `printed`.
            if !self.ack_printed {
                self.unacked_delivered += deliveries.iter().map(Delivery::cost).sum::<usize>();
            }
            self.push(Action::Deliver(deliveries));
        }
    }

    /// Our own lines: to every neighbour, into our cache, into the window.
    pub(super) fn send_local(&mut self, now: Instant, frames: &Bytes, first: u64, last: u64) {
        let mut runs = Vec::new();
        let mut count = 0;
        for f in frame::msg_frames(frames) {
            let mut seq = f.seq;
            let mut at = 0;
            for end in frame::entry_ends(&frames[f.entries.clone()]) {
                self.own.sent(seq, frame::entry_cost(end - at));
                (at, seq) = (end, seq + 1);
            }
            count += seq - f.seq;
            // Each frame's seqs back to back: one cache entry.
            let run = Run {
                first: f.seq,
                last: seq - 1,
                received: false,
                hops: f.hops,
                ttl: f.ttl,
                bytes: frames.clone(),
                cost: frame::entries_cost(f.entries.len(), (seq - f.seq) as usize),
                entries: f.entries,
                share: 0,
            };
            let kept = kept_origins(&self.members, self.cfg.id);
            self.origins.cache(self.cfg.id, kept, run, self.cfg.window);
            runs.push((self.cfg.id, f.seq, seq - 1, f.frame));
        }
        debug_assert_eq!(count, last + 1 - first);
        if count > 0 {
            self.forward(frames, &runs, None);
        }
        self.update_window();
        self.keep_memory();
        self.status_due = true;
        self.last_activity = now;
        self.maybe_send_status(now);
    }

    /// Answers a REPAIR with the frames we still have, one buffer. An
    /// answer is a forward: a `--no-relay` node answers only for its own
    /// lines, and a copy goes out with one hop more than it came with, and
    /// only within its origin's ttl.
    pub(super) fn answer_repair(&mut self, conn: Conn, origin: NodeId, from: u64, to: u64) {
        if origin != self.cfg.id && !self.cfg.relay {
            return;
        }
        if !self.repair_room(conn) {
            return;
        }
        let Some(state) = self.origins.get(origin) else {
            return;
        };
        // What is cached is of the life known here (0: none, nor a line).
        let life = match origin == self.cfg.id {
            true => self.cfg.life,
            false => state.life,
        };
        if life == 0 {
            return;
        }
        let mut out = Outgoing::with_room(0);
        for cached in state.cached(from, to) {
            // Cached as it arrived (via a neighbour), or as we sent it on.
            let hops = cached.hops.saturating_add(u8::from(cached.received));
            if hops > cached.ttl {
                continue;
            }
            let one = Stretch {
                origin,
                first: cached.seq,
                last: cached.seq,
                hops,
                ttl: cached.ttl,
                life,
            };
            out.put(one, cached.entry);
        }
        if out.msgs == 0 {
            return;
        }
        let msgs = out.msgs;
        let frames = Arc::new(out.out);
        self.answered(conn, &frames);
        self.push(Action::Send {
            to: conn,
            frames,
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

    /// A neighbour says `origin`'s message `seq` (`size` bytes) is over our
    /// `--max-frame` and will not come from it (TOO_BIG, in the message's
    /// place in its stream). Waiting `--stall-timeout` for a repair that
    /// cannot come held the origin's window, and the whole group, one
    /// oversized line per stall timeout (attack16 F2); so such lines are
    /// given up at once, as a gap, but only lines the word can be true of
    /// (a stranger sent TOO_BIG for a member's next thousand lines,
    /// before they were sent, and the member skipped them all: attack17
    /// F2): a size over our limit, from the next seq we lack on (one run,
    /// noted), and only once a later message, or the origin's STATUS,
    /// shows the origin sent them ([`Mesh::give_up_too_big`]).
    pub(super) fn too_big(&mut self, origin: NodeId, seq: u64, size: u32) {
        if size as usize <= self.cfg.max_frame {
            log::debug!(
                "a TOO_BIG for {origin:016x}/{seq} of {size} bytes, within our --max-frame: ignored"
            );
            return;
        }
        let Some(o) = self.origins.get_mut(origin) else {
            return;
        };
        o.too_big = match o.too_big {
            _ if o.next == 0 || seq < o.next => return,
            Some((first, last, most)) if seq == last + 1 => Some((first, seq, most.max(size))),
            _ if seq == o.next => Some((seq, seq, size)),
            keep => keep,
        };
        self.give_up_too_big(origin);
    }

    /// Gives up `origin`'s noted TOO_BIG run as a gap if it starts at the
    /// next seq we lack and a later message is held, or the origin's
    /// STATUS says it sent the run; drops the note once we are past it.
    pub(super) fn give_up_too_big(&mut self, origin: NodeId) {
        let Some(o) = self.origins.get_mut(origin) else {
            return;
        };
        let Some((first, last, size)) = o.too_big else {
            return;
        };
        if o.next > last || o.next > first {
            o.too_big = None;
            return;
        }
        let sent = o.first_held().is_some_and(|h| h > last) || o.known_sent >= last;
        if o.next < first || !sent {
            return;
        }
        o.too_big = None;
        let reason = format!(
            "{}{size} bytes, over this node's --max-frame of {}",
            if first == last { "" } else { "up to " },
            self.cfg.max_frame
        );
        self.give_up(origin, first, last, &reason);
    }

    /// Gives up `origin`'s missing `first..=last` (the next seqs we lack)
    /// as a gap for `reason`: what was held behind them is delivered, and
    /// a missing run after that is a hole to check.
    pub(super) fn give_up(&mut self, origin: NodeId, first: u64, last: u64, reason: &str) {
        let Some(o) = self.origins.get_mut(origin) else {
            return;
        };
        o.skip_to(last);
        o.hole = None;
        let mut released = Vec::new();
        while let Some((seq, held)) = o.take_next_held() {
            deliver(&mut released, held_delivery(origin, seq, held));
        }
        if o.missing().is_some() {
            self.holes.insert(origin);
        }
        self.gap(origin, first, last, reason);
        self.delivered(released);
    }

    fn check_hole(&mut self, real_now: Instant, id: NodeId) {
        let stall = self.cfg.stall_timeout;
        let asks_needed = self.neighbours.len().clamp(1, UNKEPT_ASKS) as u64;
        let parent_silent = self.parent_silent(real_now, id);
        // A hole ages on the silence clock: while our stdout is blocked the
        // router reads no frames, and the lines may wait unread in our own
        // queues and socket buffers (a member printing slowly reported the
        // lines on their way to it lost, "not repaired": F1 of round 13).
        let now = self.silence_clock(real_now);
        let Some(origin) = self.origins.get_mut(id) else {
            self.holes.remove(&id);
            self.tree.hole_closed(id);
            return;
        };
        let Some((first, last)) = origin.missing() else {
            origin.hole = None;
            self.holes.remove(&id);
            self.tree.hole_closed(id);
            return;
        };
        // Lines arrived since the last check: what is missing now is a new
        // hole, timed from now (a stream that lags what a STATUS showed,
        // but moves, is no hole to give up on).
        if self.tree.hole_moved(id, first) {
            origin.hole = None;
        }
        let hole = origin
            .hole
            .get_or_insert_with(|| Hole::new(now, now + REPAIR_DELAY));
        // Half a stall timeout with no progress: the neighbours cannot
        // fill it; the origin can (it holds every line we have not
        // acknowledged), so we link to it, once per hole, whatever our
        // degree (a link too many is trimmed later like any other).
        let dial_origin = !hole.dialed_origin && now >= hole.since + stall / 2;
        let stalled = now >= hole.since + stall && !parent_silent;
        if stalled || now >= hole.seen + stall * HOLE_LIMIT {
            let reason = format!("not repaired within {}s", stall.as_secs_f64());
            self.give_up(id, first, last, &reason);
            return;
        }
        // The origin keeps none of them (they were sent while we were
        // away): a repair asked in vain of each neighbour (of three at
        // most, a second apart) is enough; copies still on their way to us
        // had that long to arrive. (One ask was not: a neighbour that
        // lacked a line another one still cached made it a gap, attack21.)
        let unkept = origin
            .unkept
            .filter(|(from, to)| (*from..=*to).contains(&first));
        if let Some((_, to)) = unkept {
            if hole.asks >= asks_needed && now >= hole.next_repair {
                origin.unkept = None;
                self.give_up(
                    id,
                    first,
                    last.min(to),
                    "sent while this node was away, no longer kept by its sender",
                );
                return;
            }
        }
        let dialed = dial_origin && self.origin_reachable(id) && self.dial_member(real_now, id);
        if dialed {
            log::debug!("{id:016x}'s lines from {first} not repaired by any neighbour: dialing it");
        }
        let Some(origin) = self.origins.get_mut(id) else {
            return;
        };
        let Some(hole) = origin.hole.as_mut() else {
            return;
        };
        hole.dialed_origin |= dialed;
        if now >= hole.next_repair && !self.neighbours.is_empty() {
            // Every other ask goes to the origin, if it is a neighbour: it
            // holds every line we have not acknowledged (its window). The
            // rest, or all when it is not, alternate between the neighbour
            // whose STATUS says it has the run, if one does, and the
            // others in turn, in case it has them no more.
            hole.asks += 1;
            let origin_conn = self
                .neighbours
                .iter()
                .find(|(_, n)| n.node == id)
                .map(|(c, _)| *c)
                .filter(|_| hole.asks % 2 == 1);
            let ahead = origin_conn.or_else(|| {
                self.tree
                    .ahead_turn(id, first)
                    .filter(|c| self.neighbours.contains_key(c))
            });
            hole.next_repair = now + REPAIR_RETRY;
            let conn = match ahead {
                Some(conn) => conn,
                None => {
                    let rank = hole.rr % self.neighbours.len();
                    hole.rr += 1;
                    *self.neighbours.keys().nth(rank).expect("rank < len")
                }
            };
            // Nothing held back: what we lack may go on past what we know
            // of, so ask for all the neighbour has.
            let to = if origin.first_held().is_some() {
                last
            } else {
                u64::MAX
            };
            // And the runs missing between the lines held back, in the
            // same turn: one hole at a time, a member whose relay could
            // not carry every other line (a smaller --max-frame) got them
            // from the origin one per 0.4 s (attack17 F3).
            let later = origin.later_missing(LATER_RUNS_ASKED);
            self.graft(id, conn, first, to);
            for (from_seq, to_seq) in later {
                let repair = Frame::Repair {
                    origin: id,
                    from_seq,
                    to_seq,
                };
                self.send_frame(conn, &repair);
            }
        }
    }

    /// Asks `conn` for `origin`'s `from..=to` and to relay its new
    /// messages to us again (GRAFT).
    pub(super) fn graft(&mut self, origin: NodeId, conn: Conn, from: u64, to: u64) {
        // Rare (a hole 250 ms old, at most one ask a second, or a lost
        // parent): worth a debug line.
        if let Some(n) = self.neighbours.get(&conn) {
            log::debug!(
                "asking neighbour {:016x} for {origin:016x}'s lines from {from} and to relay them to us again (GRAFT)",
                n.node
            );
        }
        self.tree.grafting(origin, conn);
        self.send_frame(
            conn,
            &Frame::Graft {
                origin,
                from_seq: from,
                to_seq: to,
            },
        );
    }

    /// A neighbour is gone: for each origin it was our parent for, graft
    /// at once every other neighbour, asking for what we lack from `next`
    /// on (the hole checker would get there too, but only once a STATUS
    /// shows the hole). Not only those we pruned: a child of ours that
    /// gets the graft has lost its supply too and grafts its own
    /// neighbours, down the tree to the first node with another path.
    pub(super) fn regraft(&mut self, now: Instant, conn: Conn) {
        for id in self.tree.neighbour_down(conn) {
            self.graft_all(id, None);
            self.new_path(now, id);
        }
    }

    /// A neighbour came up: for every origin with an open hole, it is
    /// grafted at once (it may have the lines, or a path to them that the
    /// others lack: a node linking up after its relay was cut), and the
    /// hole's clock starts over.
    pub(super) fn graft_new_neighbour(&mut self, now: Instant, conn: Conn) {
        let ids: Vec<NodeId> = self.holes.iter().copied().collect();
        for id in ids {
            let Some(origin) = self.origins.get(id) else {
                continue;
            };
            let Some((first, last)) = origin.missing() else {
                continue;
            };
            let to = if origin.first_held().is_some() {
                last
            } else {
                u64::MAX
            };
            self.graft(id, conn, first, to);
            self.new_path(now, id);
        }
    }

    /// Whether our parent for `id`, an origin not known to be gone, is
    /// still a neighbour but has sent us nothing for [`PARENT_SILENT`]
    /// keepalives (every neighbour sends its STATUS each keepalive): it
    /// has stopped, and will be cut (by our writer after the stall
    /// timeout, or as dead after 3 × keepalive of silence), which is a new
    /// path. Until then the hole waits (within [`HOLE_LIMIT`]): a parent
    /// that stops is often cut a little after the stall timeout of a hole
    /// seen when it stopped.
    fn parent_silent(&self, now: Instant, id: NodeId) -> bool {
        // An origin that left or was cut holds nothing for us any more:
        // then the stall timeout alone decides. One we only stopped
        // hearing may be silent because the stopped parent carried its
        // STATUS to us too.
        let origin_live = self.members.get(&id).is_some_and(|m| m.maybe_live());
        let Some(conn) = self.tree.parent(id).filter(|_| origin_live) else {
            return false;
        };
        let Some(n) = self.neighbours.get(&conn) else {
            return false;
        };
        // It sends its STATUS every keepalive of its own.
        let every = self
            .members
            .get(&n.node)
            .map_or(self.cfg.keepalive, |m| self.longer_keepalive(m));
        let silent = every.mul_f64(PARENT_SILENT);
        now.saturating_duration_since(n.heard) >= silent
    }

    /// Whether `id` may still hold lines for us and is not a neighbour.
    fn origin_reachable(&self, id: NodeId) -> bool {
        self.members.get(&id).is_some_and(|m| m.maybe_live()) && !self.linked_to(id)
    }

    /// A new path to `id`'s missing lines is being tried: the hole's
    /// clock starts over, so that it becomes a gap only after
    /// `--stall-timeout` without progress along that path too (and at the
    /// latest [`HOLE_LIMIT`] stall timeouts after it was seen). Without
    /// this, a hole whose parent stalled was as old as the stall timeout
    /// by the time the parent was cut, and was given up at once, before
    /// the grafts that the cut set off could bring the lines.
    fn new_path(&mut self, now: Instant, id: NodeId) {
        let now = self.silence_clock(now);
        if let Some(hole) = self.origins.get_mut(id).and_then(|o| o.hole.as_mut()) {
            hole.since = now;
            hole.next_repair = hole.next_repair.min(now + REPAIR_RETRY);
        }
    }

    /// A GRAFT from `conn`: it wants `origin`'s lines from us again, and
    /// those it lacks. If it is our parent for that origin, our supply is
    /// cut as if it had gone: we graft our other neighbours.
    pub(super) fn on_graft(
        &mut self,
        now: Instant,
        conn: Conn,
        origin: NodeId,
        from: u64,
        to: u64,
    ) {
        self.tree.grafted_by(origin, conn);
        if self.tree.orphaned_by(origin, conn) {
            self.graft_all(origin, Some(conn));
            self.new_path(now, origin);
        }
        self.answer_repair(conn, origin, from, to);
    }

    /// Grafts every neighbour but `except` for what we lack of `origin`,
    /// from `next` on.
    fn graft_all(&mut self, id: NodeId, except: Option<Conn>) {
        let Some(origin) = self.origins.get(id) else {
            return;
        };
        if origin.next == 0 {
            return;
        }
        let from = origin.next;
        let to = origin.first_held().map_or(u64::MAX, |held| held - 1);
        if to < from {
            return;
        }
        let conns: Vec<Conn> = self.neighbours.keys().copied().collect();
        for c in conns.into_iter().filter(|c| Some(*c) != except) {
            self.graft(id, c, from, to);
        }
    }

    /// A neighbour's own STATUS: where it acknowledges more of an origin
    /// than we have, we lack lines it has (the lazy push of the tree: no
    /// IHAVE frames needed). They count as known sent, so the hole checker
    /// grafts for them (first from that neighbour) if they do not arrive
    /// within [`REPAIR_DELAY`].
    pub(super) fn heard_acks(&mut self, conn: Conn, status: &Status) {
        let direct = status.hops == 1
            && self
                .neighbours
                .get(&conn)
                .is_some_and(|n| n.node == status.member);
        if !direct {
            return;
        }
        for ack in &status.acks {
            let Some(origin) = self.origins.get_mut(ack.origin) else {
                continue;
            };
            // Of another life, its seqs are not this one's lines.
            if origin.next == 0 || ack.delivered < origin.next || ack.life != origin.life {
                continue;
            }
            origin.known_sent = origin.known_sent.max(ack.delivered);
            self.holes.insert(ack.origin);
            self.tree.ahead(ack.origin, conn, ack.delivered);
        }
    }
}

/// The origins whose state a full origin table never drops for a new one
/// (`Origins::entry`): members we know (live or remembered down: late
/// copies of a departed member's lines must stay duplicates) and us.
pub(super) fn kept_origins(members: &Table, me: NodeId) -> impl Fn(NodeId) -> bool + '_ {
    move |id| id == me || members.get(&id).is_some()
}

/// Consecutive messages of one origin, as they go out in one MSG frame.
#[derive(Debug, Clone, Copy)]
struct Stretch {
    origin: NodeId,
    first: u64,
    last: u64,
    hops: u8,
    ttl: u8,
    life: u64,
}

impl Stretch {
    /// The messages `first..=last` of one received frame (or `first`
    /// alone), as we pass them on: one hop more.
    fn passed_on(first: &MsgRef, last: &MsgRef) -> Stretch {
        Stretch {
            origin: first.origin,
            first: first.seq,
            last: last.seq,
            hops: first.hops + 1,
            ttl: first.ttl,
            life: first.life,
        }
    }
}

/// MSG frames being written to go out: a forward or a repair answer.
struct Outgoing {
    out: Vec<u8>,
    /// Per frame: origin, first and last seq, and where it is in `out`.
    runs: Vec<(NodeId, u64, u64, Range<usize>)>,
    msgs: u64,
    /// Reserved at the first message, not before: most batches a leaf
    /// relays forward nothing.
    room: usize,
}

impl Outgoing {
    fn with_room(room: usize) -> Outgoing {
        Outgoing {
            out: Vec::new(),
            runs: Vec::new(),
            msgs: 0,
            room,
        }
    }

    /// Adds the messages of `stretch`, whose entries are `entries`.
    fn put(&mut self, stretch: Stretch, entries: &[u8]) {
        if self.out.is_empty() {
            self.out.reserve(self.room);
        }
        self.msgs += stretch.last - stretch.first + 1;
        put_fwd(&mut self.out, &mut self.runs, stretch, entries);
    }
}

/// Appends the messages of `stretch` (their `entries`) to `out`, a buffer
/// of MSG frames whose frames are listed in `runs` (origin, first and last
/// seq, the frame): into its last frame if they continue it (same origin,
/// hops and ttl, the next seqs, the frame still under [`MAX_RUN_LEN`] and
/// [`MAX_RUN_ENTRIES`]), else as a frame of their own. A stretch is never
/// longer than that: it is a stretch of one frame a reader checked, or
/// one message.
fn put_fwd(
    out: &mut Vec<u8>,
    runs: &mut Vec<(NodeId, u64, u64, Range<usize>)>,
    stretch: Stretch,
    entries: &[u8],
) {
    let Stretch {
        origin,
        first,
        last,
        hops,
        ttl,
        life,
    } = stretch;
    debug_assert!(last - first < MAX_RUN_ENTRIES as u64);
    if let Some((o, start_seq, end_seq, frame)) = runs.last_mut() {
        let header = &out[frame.start..frame.start + MSG_HEADER_LEN];
        let continues = *o == origin
            && end_seq.wrapping_add(1) == first
            && frame.end == out.len()
            && (header[MSG_HOPS_AT], header[MSG_HOPS_AT + 1]) == (hops, ttl)
            && BigEndian::read_u64(&header[MSG_LIFE_AT..]) == life
            && frame.len() - LEN_PREFIX + entries.len() <= MAX_RUN_LEN
            && last - *start_seq < MAX_RUN_ENTRIES as u64;
        if continues {
            out.extend_from_slice(entries);
            *end_seq = last;
            frame.end = out.len();
            let len = (frame.len() - LEN_PREFIX) as u32;
            BigEndian::write_u32(&mut out[frame.start..], len);
            return;
        }
    }
    let at = out.len();
    out.extend_from_slice(
        &frame::MsgHeader {
            origin,
            seq: first,
            hops,
            ttl,
            life,
        }
        .encode(entries.len()),
    );
    out.extend_from_slice(entries);
    runs.push((origin, first, last, at..out.len()));
}

/// A held message, now next: its delivery.
fn held_delivery(id: NodeId, seq: u64, held: Kept) -> Delivery {
    Delivery::one(id, seq, held.hops, held.via, &held.bytes, held.entry)
}

/// Adds a message to the deliveries: to the last run if it continues it.
fn deliver(deliveries: &mut Vec<Delivery>, next: Delivery) {
    if !deliveries.last_mut().is_some_and(|d| d.extend(&next)) {
        deliveries.push(next);
    }
}
