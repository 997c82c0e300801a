//! A member whose stdout takes nothing says so, and its neighbours cut it.
//!
//! A node whose stdout nobody reads stops taking frames from its links
//! (the router holds them back), and its neighbours' writers cut it once a
//! PING after their messages goes unanswered for `--stall-timeout`. But
//! only if something they sent waits unread: a node absorbs up to a window
//! of lines into its own buffers (socket buffers, readers' batches, the
//! queue to stdout) before it stops reading, and when that is all the
//! senders may send (their windows wait for its acknowledgements), every
//! link is idle, every PING answered, and no link rule fires. The group
//! then waited 2 × `--stall-timeout` for it (`find_stalled`), and it was
//! cut only a stall timeout after that, when new lines reached it: 30 s
//! at the defaults, where the promise is 10 (a CI failure, and 1 in 6 runs
//! of that test when run alone).
//!
//! The node itself knows: its stdout has printed nothing for a stall
//! timeout while lines wait for it (handed to the stdout thread, or held
//! back by the router, and not yet written out). Its STATUS then carries
//! [`FLAG_STUCK`], and each neighbour that hears it directly from the
//! member (one hop, on the member's own link: nobody else can get a member
//! cut this way) cuts its link ([`Action::Cut`]), like a link that took
//! nothing. The cut is reported to the group as any other: `member_down`
//! everywhere, windows free.

use std::time::Instant;

use super::{Action, Conn, Mesh};
use crate::frame::Status;

/// STATUS flags bit 6: this member's stdout has printed nothing for its
/// `--stall-timeout` while output waits for it. Its neighbours cut it.
/// Older nodes ignore the bit (they cut such a member later, by the
/// window rule).
pub const FLAG_STUCK: u8 = 64;

/// STATUS flags bit 7: this member's stdout took output since its last
/// STATUS, though no line was finished (part of a long line read
/// slowly). Its senders count it as printing (`find_stalled`), as when
/// its acknowledgements rise: a 100 KB line read at 8 KB/s acknowledges
/// nothing for 12 s, and at `--stall-timeout 3` its senders gave up on a
/// member that printed all along. Older nodes ignore the bit.
pub const FLAG_PRINTING: u8 = 128;

impl Mesh {
    /// Whether lines handed to stdout wait to be written out (`true`) or
    /// every one was (`false`), as the router sees it.
    pub fn output_waiting(&mut self, now: Instant, waiting: bool) {
        match (self.waiting_since, waiting) {
            (None, true) => self.waiting_since = Some(now),
            (Some(_), false) => self.waiting_since = None,
            _ => {}
        }
    }

    /// Whether our STATUS says our stdout is stuck ([`FLAG_STUCK`]): our
    /// neighbours cut us, and the frames they sent wait unread behind
    /// our stdout (acknowledgements of our lines among them).
    pub fn is_output_stuck(&self) -> bool {
        self.stuck
    }

    /// Whether [`Mesh::output_waiting`] last said lines wait.
    pub fn is_output_waiting(&self) -> bool {
        self.waiting_since.is_some()
    }

    /// Whether our stdout has printed nothing for `--stall-timeout` while
    /// lines waited for it.
    pub(super) fn output_stuck(&self, now: Instant) -> bool {
        let Some(since) = self.waiting_since else {
            return false;
        };
        let quiet = self.last_printed.map_or(since, |p| p.max(since));
        now.saturating_duration_since(quiet) >= self.cfg.stall_timeout
    }

    /// On each tick: a change of [`Mesh::output_stuck`] goes out in a
    /// STATUS soon, and the log says it.
    pub(super) fn check_stuck(&mut self, now: Instant) {
        let stuck = self.output_stuck(now);
        if stuck == self.stuck {
            return;
        }
        self.stuck = stuck;
        self.status_due = true;
        if stuck {
            log::warn!(
                "stdout has taken nothing for {}s while lines wait for it: telling the \
                 neighbours, which cut this node (--stall-timeout)",
                self.cfg.stall_timeout.as_secs_f64()
            );
        } else {
            log::info!("stdout takes lines again");
        }
    }

    /// The process did not run for a while (stopped, starved): that time
    /// says nothing about our stdout, which may take lines again now.
    pub fn overslept(&mut self, now: Instant) {
        self.output_moved(now);
    }

    /// Our stdout took part of a line at `now`: it is not stuck, though
    /// no whole line was printed (a long line read slowly). Our next
    /// STATUS says so ([`FLAG_PRINTING`]).
    pub fn output_moved(&mut self, now: Instant) {
        if self.waiting_since.is_some() {
            self.last_printed = Some(now);
            self.moved_unsaid = true;
        }
    }

    /// On each tick: stdout that moved while no STATUS went out for half
    /// a stall timeout gets one out, so that the senders, which give up
    /// on a member that shows no progress for 2 × `--stall-timeout`,
    /// hear of it.
    pub(super) fn say_moved(&mut self, now: Instant) {
        let quiet = self.last_status.map_or(true, |at| {
            now.saturating_duration_since(at) >= self.cfg.stall_timeout / 2
        });
        if self.moved_unsaid && quiet {
            self.status_due = true;
        }
    }

    /// Our routed STATUS goes `to` our parents; one saying our stdout
    /// moved ([`FLAG_PRINTING`]) goes to every neighbour now and then,
    /// at most every third of a stall timeout. Any neighbour's frames may
    /// wait unread behind our stdout, not only our parents': in a triangle
    /// a relay's copies of a sender's stream wait behind the sender's own
    /// link (the first arrivals, which make the sender our parent, until
    /// we read the copies and prune the relay). The relay's writer then
    /// cut us as "read none of our messages" after `--stall-timeout`, our
    /// stdout printing all along (attack29 F1), when our flooded STATUS
    /// comes only every keepalive. A neighbour not on the route passes it
    /// on toward the origins as any routed STATUS; they drop the copy.
    pub(super) fn printing_to_all(&mut self, now: Instant, status: &Status, to: &mut Vec<Conn>) {
        if status.flags & FLAG_PRINTING == 0 {
            return;
        }
        let due = self.printing_told_all.map_or(true, |at| {
            now.saturating_duration_since(at) >= self.cfg.stall_timeout / 3
        });
        if !due {
            return;
        }
        self.printing_told_all = Some(now);
        for conn in self.neighbours.keys() {
            if !to.contains(conn) {
                to.push(*conn);
            }
        }
    }

    /// `status` came on `conn`: a neighbour that says its stdout is stuck
    /// (one hop, on its own link) is cut.
    pub(super) fn cut_if_stuck(&mut self, conn: Conn, status: &Status) {
        let own_link = self
            .neighbours
            .get(&conn)
            .is_some_and(|n| n.node == status.member);
        if status.flags & FLAG_STUCK == 0 || status.hops != 1 || !own_link {
            return;
        }
        log::info!(
            "neighbour {} ({:016x}) says its stdout has taken nothing for its stall timeout: \
             cutting it",
            status.name,
            status.member
        );
        self.push(Action::Cut { conn });
    }
}
