//! Leaving the group politely, with final acknowledgements.
//!
//! A node that leaves sends its STATUS with the leaving flag; the origins
//! then owe it no more lines and count what it acknowledged. Lines still
//! on their way to it when it left were printed all the same, but never
//! acknowledged, and the origins booked them as missed ("member down:
//! left", exit 3 under `--exit-on-eof`). So a node leaving at the end of
//! its stdin first waits (the router bounds the wait) until it is
//! [`caught up`](Mesh::caught_up): every live member's lines it knows were
//! sent are delivered and written out. Then its leaving STATUS carries
//! *final* acknowledgements ([`FLAG_FINAL`]): they cover everything it
//! printed, it prints nothing after them, and every later STATUS of ours
//! repeats them. An origin counts the lines a final acknowledgement
//! leaves out as lost, not merely unacknowledged (see PROTOCOL.md, "Exit
//! on EOF across the mesh").
//!
//! Under steady traffic a node is never caught up (lines keep arriving):
//! it leaves at the router's bound all the same, and with final
//! acknowledgements too. So that they cover exactly what it printed, the
//! router first [stops printing](Mesh::stop_printing) (what arrives from
//! then on is counted, not delivered), waits until its stdout thread has
//! written out what it was handed, takes what that thread printed, and
//! only then leaves. (Leaving at the bound without final
//! acknowledgements, a node kept printing what it had queued and what
//! still arrived, none of it acknowledged: its senders exited 3 with
//! "N not acknowledged" for lines it had printed.)

use std::time::{Duration, Instant};

use super::members::Member;
use super::{Delivery, Mesh, NodeId};
use crate::frame::{Ack, FLAG_LEAVING};

/// STATUS flags bit 2, only with the leaving flag: the acknowledgements
/// are final (the member printed nothing it does not acknowledge, and
/// prints nothing more). Older nodes ignore the bit.
pub const FLAG_FINAL: u8 = 4;
/// STATUS flags bit 3: the member's stdin ended under `--exit-on-eof`, and
/// it leaves once its lines are acknowledged. Members leaving themselves
/// keep relaying for it meanwhile (see [`Mesh::others_leaving`]).
pub const FLAG_DRAINING: u8 = 8;
/// STATUS flags bit 4: lines it read still wait for room in its window, or
/// its window is more than three quarters full, or its stdin waits for a
/// neighbour's queue to drain (its stdin is read only as the window and
/// the queues have room, so a member sending a file at full speed rarely
/// has lines waiting): more of its lines are coming. A node about to
/// leave waits for them (see [`Mesh::caught_up`] and
/// [`Mesh::members_sending`], within the router's bounds). Before, only a
/// member whose stdin had ended (bit 3) said so; a member still reading
/// whose window was full said nothing, and under load (every window full
/// for 100 ms) members that had finished took themselves for caught up and
/// left without half its lines (attack15 F3).
pub const FLAG_SENDING: u8 = 16;

/// A member whose lines arrived this recently, and whose stdin has not
/// ended, is still sending ([`Mesh::members_sending`]).
const SENDING_LATELY: Duration = Duration::from_secs(1);

/// How long no line may have arrived (or gone out) before a node counts
/// as caught up: a member still sending streams lines that are owed to us
/// until it hears that we left; waiting for a pause (within the router's
/// bound) lets them arrive and be acknowledged instead of dropped.
const LEAVE_QUIET: Duration = Duration::from_millis(100);

/// Our side of leaving.
#[derive(Debug, Default)]
pub struct Leaving {
    /// The acknowledgements frozen when we left with final ones.
    final_acks: Option<Vec<Ack>>,
    /// Nothing more is delivered: we are about to leave
    /// ([`Mesh::stop_printing`]).
    closed: bool,
    /// Our stdin ended under `--exit-on-eof` ([`FLAG_DRAINING`]).
    draining: bool,
    /// Messages that arrived after our final acknowledgements: not
    /// printed (they would have printed lines we said we never would).
    pub dropped: u64,
    /// Per origin, the first and last seq of those: one run each, as
    /// deliveries come in order.
    dropped_runs: std::collections::BTreeMap<NodeId, (u64, u64)>,
}

impl Mesh {
    /// A polite exit: floods our STATUS with the leaving flag. `final_acks`:
    /// we are caught up and print nothing more, so our acknowledgements
    /// are final (see the module documentation); only when we had not left
    /// already (a STATUS sent again says the same).
    pub fn leave(&mut self, now: Instant, final_acks: bool) {
        if final_acks && !self.own.leaving {
            self.leaving.final_acks = Some(self.acks());
        }
        self.own.leaving = true;
        self.send_status(now);
    }

    /// Whether everything live members sent that we know of is delivered
    /// and written out: for each live member that sent lines, nothing
    /// missing up to what its STATUS says it sent, nothing held back, and
    /// (when acknowledging what was printed) everything delivered printed;
    /// and no line arrived for `LEAVE_QUIET`, and no live member says more
    /// of its lines are coming (`FLAG_SENDING`).
    pub fn caught_up(&self, now: Instant) -> bool {
        if now.saturating_duration_since(self.last_activity) < LEAVE_QUIET {
            return false;
        }
        if self.members.values().any(|m| m.up && m.sending) {
            return false;
        }
        self.origins.iter().all(|(id, o)| {
            let live = *id != self.cfg.id && self.members.get(id).is_some_and(|m| m.up);
            if !live || o.next == 0 {
                return true;
            }
            // A gap is never printed: printing passes it (`Origin::ack`).
            let printed = o.ack().0 + 1 >= o.next;
            o.missing().is_none() && printed
        })
    }

    /// We are about to leave: from now on nothing is delivered (what
    /// arrives is relayed, and counted in [`Mesh::dropped_after_leaving`]),
    /// so that once what was delivered is written out, our
    /// acknowledgements cover everything we print and can be final.
    pub fn stop_printing(&mut self) {
        self.leaving.closed = true;
    }

    /// Whether we stopped printing to leave ([`Mesh::stop_printing`]):
    /// what arrives now is counted, not handed to stdout.
    pub fn printing_stopped(&self) -> bool {
        self.leaving.closed
    }

    /// Lines that arrived after we stopped printing to leave, and were
    /// not printed.
    pub fn dropped_after_leaving(&self) -> u64 {
        self.leaving.dropped
    }

    /// Reports the lines that arrived after we stopped printing to leave
    /// as gaps, one per origin: they were owed to us (their senders sent
    /// them before they heard that we left, and count them as lost to
    /// us), and a hole is never silent.
    pub fn report_dropped_after_leaving(&mut self) {
        for (origin, (first, last)) in std::mem::take(&mut self.leaving.dropped_runs) {
            self.gap(
                origin,
                first,
                last,
                "arrived after this node left the group, not printed",
            );
        }
    }

    /// The acknowledgements our STATUS carries: the final ones once we
    /// left with them, else the current ones.
    pub(super) fn status_acks(&self) -> Vec<Ack> {
        match &self.leaving.final_acks {
            Some(acks) => acks.clone(),
            None => self.acks(),
        }
    }

    /// The router reads no more of our stdin (which has not ended) until a
    /// neighbour's queue drains: more of our lines are coming.
    pub fn stdin_held_by_queues(&mut self, held: bool) {
        self.stdin_held = held;
    }

    /// Reports, as this node stops, every other origin's lines it knows
    /// were sent and never delivered (a hole not yet repaired or given up,
    /// lines held back behind it, lines a STATUS announced that never
    /// came): a node stopped while it lacked them must not end its output
    /// as if it had everything (attack16 F3: a member resumed after a stop
    /// printed half a sender's lines and stopped, with no gap).
    pub fn report_undelivered_at_exit(&mut self) {
        let me = self.cfg.id;
        let mut missing: Vec<(NodeId, u64, u64)> = self
            .origins
            .iter()
            .filter(|(id, _)| **id != me)
            .filter_map(|(id, o)| o.undelivered().map(|(first, last)| (*id, first, last)))
            .collect();
        missing.sort_unstable();
        for (origin, first, last) in missing {
            self.gap(origin, first, last, "not received before this node stopped");
        }
    }

    /// Whether more lines of a live member are coming: it says so
    /// (`FLAG_SENDING`), or lines it said it sent are still on their way
    /// to us, or its lines arrived within `SENDING_LATELY` and its stdin
    /// has not ended (no `FLAG_DRAINING`). Lines on their way count
    /// however long ago the last one came: a sender held back by its
    /// window sends its last lines after the STATUS that says so, which
    /// can overtake them by seconds along another path (a member of a
    /// group of 20 exiting together left 13 s after the last of them
    /// came, 1.3 s after that STATUS). The flag alone missed a
    /// member starved of CPU between its STATUS frames: in a group of 20
    /// exiting together on a loaded machine, the others left without its
    /// last lines. And a member whose stdin had just ended, its last lines
    /// sent, said neither: members that had finished left while its last
    /// 900 lines streamed in ("lines were still on their way to this node
    /// after 2s"), and its sender exited 3.
    pub fn members_sending(&self, now: Instant) -> bool {
        self.members.iter().any(|(id, m)| {
            let origin = self.origins.get(*id);
            let lately = origin
                .and_then(|o| o.last_arrival)
                .is_some_and(|at| now.saturating_duration_since(at) < SENDING_LATELY);
            let on_their_way = origin.is_some_and(|o| o.undelivered().is_some());
            m.up && (m.sending || on_their_way || (lately && !m.draining))
        })
    }

    /// Our stdin ended under `--exit-on-eof`: we leave once our lines are
    /// acknowledged, and our next STATUS (soon) says so.
    pub fn draining(&mut self) {
        self.leaving.draining = true;
        self.status_due = true;
    }

    /// Whether a live member says it leaves soon (`FLAG_DRAINING`). A
    /// node that left keeps its links (relaying, printing nothing) while
    /// one does, for a bounded time: when every member leaves at about
    /// the same moment, the first to close its links would cut the paths
    /// by which the others' final acknowledgements reach the origins, and
    /// the last one would wait for members it can no longer hear from.
    pub fn others_leaving(&self) -> bool {
        self.members.values().any(|m| m.up && m.draining)
    }

    /// The flags [`FLAG_FINAL`], [`FLAG_DRAINING`] and [`FLAG_SENDING`]
    /// add to our STATUS.
    pub(super) fn leave_flags(&self) -> u8 {
        let mut flags = 0;
        if self.leaving.final_acks.is_some() {
            flags |= FLAG_FINAL;
        }
        if self.leaving.draining {
            flags |= FLAG_DRAINING;
        }
        let window_full = self.own.room() < self.cfg.window / 4;
        if self.own.waiting() > 0 || window_full || self.stdin_held {
            flags |= FLAG_SENDING;
        }
        flags
    }

    /// False, and the messages counted, once we stopped printing to leave
    /// or our acknowledgements are final: what they do not cover is never
    /// printed.
    pub(super) fn may_deliver(&mut self, deliveries: &[Delivery]) -> bool {
        if self.leaving.final_acks.is_none() && !self.leaving.closed {
            return true;
        }
        for d in deliveries {
            self.leaving.dropped += d.len();
            let run = self
                .leaving
                .dropped_runs
                .entry(d.origin)
                .or_insert((d.first, d.last));
            *run = (run.0.min(d.first), run.1.max(d.last));
        }
        false
    }
}

/// What a member's STATUS `flags` say about its leaving.
pub(super) fn note_flags(m: &mut Member, flags: u8) {
    m.left_final = flags & FLAG_LEAVING != 0 && flags & FLAG_FINAL != 0;
    m.draining = flags & FLAG_DRAINING != 0;
    m.sending = flags & FLAG_SENDING != 0;
    m.stuck = flags & super::FLAG_STUCK != 0;
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::frame::{self, Frame, Status};
    use crate::mesh::{Action, MsgRef, NodeId};

    const ME: NodeId = 0xaaaa;

    fn mesh(neighbours: u64) -> (Mesh, Instant) {
        let cfg = crate::mesh::tests::config();
        let t0 = Instant::now();
        let mut m = Mesh::new(cfg, t0);
        for c in 1..=neighbours {
            let remote = format!("10.0.0.{c}:4000").parse().unwrap();
            m.neighbour_up(t0, c, 100 + c, "", remote, 7000, None);
        }
        drain(&mut m);
        (m, t0)
    }

    fn drain(m: &mut Mesh) -> Vec<Action> {
        std::iter::from_fn(|| m.poll_action()).collect()
    }

    fn status(member: NodeId, status_seq: u64, sent_seq: u64, flags: u8, acks: Vec<Ack>) -> Status {
        Status {
            life: 1,
            keepalive_secs: 1,
            member,
            status_seq,
            hops: 1,
            ttl: 16,
            sent_seq,
            flags,
            name: format!("m{member:x}"),
            addrs: Vec::new(),
            acks,
            misses: Vec::new(),
        }
    }

    fn ack(origin: NodeId, delivered: u64) -> Vec<Ack> {
        vec![Ack {
            life: 1,
            origin,
            base: 1,
            delivered,
            skipped: 0,
        }]
    }

    /// `origin`'s messages `seqs` from neighbour 1; how many were delivered.
    fn feed(
        m: &mut Mesh,
        now: Instant,
        origin: NodeId,
        seqs: std::ops::RangeInclusive<u64>,
    ) -> u64 {
        let mut buf = Vec::new();
        let first = *seqs.start();
        let payloads = vec![&b"x"[..]; seqs.clone().count()];
        let entries = frame::put_run(&mut buf, frame::MsgHeader::new(origin, first), &payloads);
        let refs: Vec<MsgRef> = crate::mesh::tests::one_hop_refs(origin, seqs, entries).collect();
        m.on_msgs(now, 1, &Arc::new(buf), &refs);
        drain(m)
            .iter()
            .map(|a| match a {
                Action::Deliver(d) => d.iter().map(Delivery::len).sum(),
                _ => 0,
            })
            .sum()
    }

    fn statuses(actions: &[Action]) -> Vec<Status> {
        let mut out = Vec::new();
        for a in actions {
            if let Action::Send { frames, .. } = a {
                let mut rest = &frames[..];
                while let Some((f, used)) = frame::decode(rest, usize::MAX).unwrap() {
                    if let Frame::Status(s) = f.leak() {
                        out.push(s);
                    }
                    rest = &rest[used..];
                }
            }
        }
        out
    }

    #[test]
    fn caught_up_means_every_line_a_live_member_said_it_sent_is_printed() {
        let (mut m, t0) = mesh(1);
        let later = t0 + LEAVE_QUIET;
        m.acknowledge_printed_only();
        m.on_frame(t0, 1, &Frame::Status(status(7, 1, 0, 0, Vec::new())));
        assert!(m.caught_up(later), "7 has sent nothing");
        assert_eq!(feed(&mut m, t0, 7, 1..=2), 2);
        m.on_frame(t0, 1, &Frame::Status(status(7, 2, 3, 0, Vec::new())));
        m.printed(t0, [(7, 2)], 2);
        assert!(!m.caught_up(later), "7 says it sent 3: still on its way");
        assert_eq!(feed(&mut m, later, 7, 3..=3), 1);
        m.printed(later, [(7, 3)], 1);
        assert!(!m.caught_up(later), "a line just arrived: 7 may send more");
        let quiet = later + LEAVE_QUIET;
        assert!(m.caught_up(quiet));
        assert_eq!(feed(&mut m, quiet, 7, 4..=4), 1);
        assert!(
            !m.caught_up(quiet + LEAVE_QUIET),
            "delivered, not printed yet"
        );
        m.printed(quiet, [(7, 4)], 1);
        assert!(m.caught_up(quiet + LEAVE_QUIET));
    }

    #[test]
    fn a_final_leave_acknowledges_what_was_printed_and_prints_nothing_after() {
        let (mut m, t0) = mesh(1);
        m.on_frame(t0, 1, &Frame::Status(status(7, 1, 0, 0, Vec::new())));
        feed(&mut m, t0, 7, 1..=3);
        drain(&mut m);
        m.leave(t0, true);
        let st = statuses(&drain(&mut m));
        assert_eq!(st.len(), 1);
        assert_eq!(st[0].flags, FLAG_LEAVING | FLAG_FINAL);
        assert_eq!(st[0].acks, ack(7, 3));
        assert_eq!(feed(&mut m, t0, 7, 4..=5), 0, "after the final acks");
        assert_eq!(m.dropped_after_leaving(), 2);
        m.tick(t0 + Duration::from_secs(2));
        let later = statuses(&drain(&mut m));
        assert!(!later.is_empty(), "keepalive");
        assert!(later.iter().all(|s| s.acks == ack(7, 3)), "{later:?}");
    }

    #[test]
    fn a_node_that_stopped_printing_to_leave_acknowledges_only_what_it_printed() {
        let (mut m, t0) = mesh(1);
        m.acknowledge_printed_only();
        m.on_frame(t0, 1, &Frame::Status(status(7, 1, 0, 0, Vec::new())));
        assert_eq!(feed(&mut m, t0, 7, 1..=5), 5);
        m.printed(t0, [(7, 3)], 3);
        m.stop_printing();
        assert_eq!(feed(&mut m, t0, 7, 6..=8), 0, "not delivered any more");
        assert_eq!(m.dropped_after_leaving(), 3);
        // The stdout thread wrote out what it had been handed.
        m.printed(t0, [(7, 5)], 2);
        drain(&mut m);
        m.leave(t0, true);
        let st = statuses(&drain(&mut m));
        assert_eq!(st.len(), 1);
        assert_eq!(st[0].flags, FLAG_LEAVING | FLAG_FINAL);
        assert_eq!(st[0].acks, ack(7, 5));
        // What was not printed is reported as lost to us, one gap per
        // origin, once (attack13 F4: the log alone said it).
        feed(&mut m, t0, 7, 9..=10);
        m.report_dropped_after_leaving();
        let gaps = crate::mesh::tests::gap_reports(&drain(&mut m));
        let reason = "arrived after this node left the group, not printed".to_owned();
        assert_eq!(gaps, [(7, 6, 10, reason)]);
        m.report_dropped_after_leaving();
        assert!(drain(&mut m)
            .iter()
            .all(|a| !matches!(a, Action::Gap { .. })));
    }

    #[test]
    fn an_origin_counts_a_final_acknowledgement_and_what_it_leaves_out_as_lost() {
        let (mut m, t0) = mesh(1);
        for id in [7, 8, 9] {
            m.on_frame(t0, 1, &Frame::Status(status(id, 1, 0, 0, Vec::new())));
        }
        let mut buf = Vec::new();
        frame::put_run(&mut buf, frame::MsgHeader::new(ME, 1), &[&b"x"[..]; 6]);
        m.local(t0, &Arc::new(buf), 1, 6);
        let leaving = FLAG_LEAVING | FLAG_FINAL;
        // 7 printed all six, and that reaches us only with its leave.
        m.on_frame(t0, 1, &Frame::Status(status(7, 2, 0, leaving, ack(ME, 6))));
        // 8 left with four printed, for good: two are lost to it.
        m.on_frame(t0, 1, &Frame::Status(status(8, 2, 0, leaving, ack(ME, 4))));
        // 9 left without final acks: two are not acknowledged, not lost.
        let not_final = FLAG_LEAVING;
        m.on_frame(
            t0,
            1,
            &Frame::Status(status(9, 2, 0, not_final, ack(ME, 4))),
        );
        assert!(m.eof_settled());
        let books = m.books();
        let of = |id| {
            let b = books.iter().find(|b| b.id == id).unwrap();
            (b.delivered, b.lost, crate::books::missed(b))
        };
        assert_eq!(of(7), (6, 0, 0));
        assert_eq!(of(8), (4, 2, 2));
        assert_eq!(of(9), (4, 0, 2));
    }

    #[test]
    fn members_about_to_leave_are_known_from_their_status() {
        let (mut m, t0) = mesh(1);
        m.on_frame(t0, 1, &Frame::Status(status(7, 1, 0, 0, Vec::new())));
        assert!(!m.others_leaving());
        m.on_frame(
            t0,
            1,
            &Frame::Status(status(7, 2, 0, FLAG_DRAINING, Vec::new())),
        );
        assert!(m.others_leaving());
        let gone = FLAG_DRAINING | FLAG_LEAVING | FLAG_FINAL;
        m.on_frame(t0, 1, &Frame::Status(status(7, 3, 0, gone, Vec::new())));
        assert!(!m.others_leaving(), "it left");
        m.draining();
        m.tick(t0 + Duration::from_millis(100));
        let st = statuses(&drain(&mut m));
        assert!(st.iter().any(|s| s.flags & FLAG_DRAINING != 0), "{st:?}");
    }

    /// A member sending a file at full speed rarely has lines waiting: its
    /// stdin is read only as its window and its neighbours' queues have
    /// room. A window over three quarters full, or stdin held back by a
    /// full queue, says more lines are coming too.
    #[test]
    fn a_full_window_or_stdin_held_by_queues_says_more_lines_are_coming() {
        let (mut m, t0) = mesh(1);
        // A member that owes acknowledgements.
        m.on_frame(t0, 1, &Frame::Status(status(7, 1, 0, 0, Vec::new())));
        let mut buf = Vec::new();
        // 80 lines of 100 bytes: 9760 of a 10,000-byte window.
        frame::put_run(
            &mut buf,
            frame::MsgHeader::new(ME, 1),
            &[&[b'x'; 99][..]; 80],
        );
        m.local(t0, &Arc::new(buf), 1, 80);
        assert_eq!(m.waiting_lines(), 0);
        m.tick(t0 + LEAVE_QUIET);
        let st = statuses(&drain(&mut m));
        assert!(st.iter().any(|s| s.flags & FLAG_SENDING != 0), "{st:?}");
        let (mut m, t0) = mesh(1);
        m.stdin_held_by_queues(true);
        m.tick(t0 + Duration::from_secs(2));
        let st = statuses(&drain(&mut m));
        assert!(st.iter().all(|s| s.flags & FLAG_SENDING != 0), "{st:?}");
        m.stdin_held_by_queues(false);
        m.tick(t0 + Duration::from_secs(4));
        let st = statuses(&drain(&mut m));
        assert!(
            !st.is_empty() && st.iter().all(|s| s.flags & FLAG_SENDING == 0),
            "{st:?}"
        );
    }

    /// A member whose stdin has not ended and whose lines arrived within a
    /// second is still sending, flag or not; one whose stdin ended is
    /// not, unless it says so.
    #[test]
    fn a_member_whose_lines_arrived_lately_and_whose_stdin_goes_on_is_still_sending() {
        let (mut m, t0) = mesh(1);
        m.on_frame(t0, 1, &Frame::Status(status(7, 1, 0, 0, Vec::new())));
        assert!(!m.members_sending(t0), "nothing of it arrived");
        feed(&mut m, t0, 7, 1..=3);
        assert!(m.members_sending(t0 + Duration::from_millis(900)));
        assert!(!m.members_sending(t0 + SENDING_LATELY));
        let draining = FLAG_DRAINING;
        m.on_frame(t0, 1, &Frame::Status(status(7, 2, 0, draining, Vec::new())));
        assert!(!m.members_sending(t0), "its stdin ended");
        // Its stdin ended, its last lines sent and on their way to us:
        // still sending while they stream in.
        m.on_frame(
            t0,
            1,
            &Frame::Status(status(7, 3, 10, draining, Vec::new())),
        );
        feed(&mut m, t0, 7, 4..=6);
        assert!(m.members_sending(t0 + Duration::from_millis(900)));
        // None came lately, but 7..=10 are still on their way: a sender
        // held back by its window sends its last lines after its STATUS
        // said it sent them, and they may trail it by seconds.
        assert!(m.members_sending(t0 + SENDING_LATELY * 10));
        feed(&mut m, t0, 7, 7..=10);
        assert!(!m.members_sending(t0), "every line it sent is here");
    }

    #[test]
    fn a_node_is_not_caught_up_while_a_member_has_lines_waiting_for_its_window() {
        let (mut m, t0) = mesh(1);
        let later = t0 + LEAVE_QUIET;
        let sending = FLAG_DRAINING | FLAG_SENDING;
        m.on_frame(t0, 1, &Frame::Status(status(7, 1, 0, sending, Vec::new())));
        assert!(!m.caught_up(later), "7 has more lines coming");
        m.on_frame(
            t0,
            1,
            &Frame::Status(status(7, 2, 0, FLAG_DRAINING, Vec::new())),
        );
        assert!(m.caught_up(later));
        // A member still reading stdin, its window full (attack15 F3: under
        // load members that had finished left without half its lines).
        let full = FLAG_SENDING;
        m.on_frame(t0, 1, &Frame::Status(status(7, 3, 0, full, Vec::new())));
        assert!(!m.caught_up(later), "7 has more lines coming");
        m.on_frame(t0, 1, &Frame::Status(status(7, 4, 0, 0, Vec::new())));
        assert!(m.caught_up(later));
        // Our own STATUS says so while our lines wait for the window,
        // whether our stdin ended or not.
        let mut buf = Vec::new();
        frame::put_run(
            &mut buf,
            frame::MsgHeader::new(ME, 1),
            &[&[b'x'; 100][..]; 200],
        );
        m.local(t0, &Arc::new(buf), 1, 200);
        assert!(m.waiting_lines() > 0, "beyond the window");
        m.tick(later);
        let st = statuses(&drain(&mut m));
        assert!(st.iter().any(|s| s.flags == FLAG_SENDING), "{st:?}");
        m.draining();
        m.tick(later + Duration::from_millis(10));
        let st = statuses(&drain(&mut m));
        assert!(st.iter().any(|s| s.flags & FLAG_SENDING != 0), "{st:?}");
    }
}
