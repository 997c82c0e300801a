//! Handing output to the stdout thread without ever blocking on it, and
//! closing stdout before the node leaves the group.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::TrySendError;

use super::{Router, FLUSH_DEADLINE};
use crate::books::plural;
use crate::config::Format;
use crate::event::{Output, STDOUT_MOVING};
use crate::shutdown::Cause;

/// Events waiting for a blocked stdout, at most; later ones are counted
/// and logged instead of printed.
const MAX_PENDING_EVENTS: usize = 1024;
/// How long a node about to leave waits at most for its stdout thread to
/// write out what it was handed, before it leaves without final
/// acknowledgements (stdout is blocked).
const DRAIN_WAIT: Duration = Duration::from_secs(1);

impl Router {
    /// Events that find stdout blocked wait in a bounded backlog; messages
    /// never wait there long, since the router takes no more frames while
    /// they do.
    pub(super) fn output(&mut self, output: Output) {
        let is_event = !matches!(output, Output::Msgs(_));
        // Only `-f json` prints events: in another format they were queued
        // for nothing, and counted as "not printed" behind a blocked stdout.
        if is_event && self.node.config.format != Format::Json {
            return;
        }
        // Peer events go unprinted in pairs: a peer_up that was not printed
        // takes its peer_down with it, and a printed one keeps it (there
        // are at most as many of those as peers).
        match &output {
            Output::PeerUp(info) if self.events_in_backlog >= MAX_PENDING_EVENTS => {
                self.unprinted_ups.insert(info.node_id);
                self.events_not_printed += 1;
                return;
            }
            Output::PeerDown(info, _) if self.unprinted_ups.remove(&info.node_id) => {
                self.events_not_printed += 1;
                return;
            }
            Output::MemberUp { .. } | Output::MemberDown { .. } | Output::Gap { .. }
                if self.events_in_backlog >= MAX_PENDING_EVENTS =>
            {
                self.events_not_printed += 1;
                return;
            }
            _ => {}
        }
        if self.backlog.is_empty() {
            match self.stdout.try_send(output) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                Err(TrySendError::Full(output)) => self.push_backlog(output, is_event),
            }
        } else {
            self.push_backlog(output, is_event);
        }
    }

    /// An output from the backlog went to stdout.
    pub(super) fn backlog_sent(&mut self) {
        if self.backlog.is_empty() && self.events_not_printed > 0 {
            log::warn!(
                "stdout was blocked: {} peer events were not printed",
                self.events_not_printed
            );
            self.events_not_printed = 0;
        }
    }

    /// At the end: what waits for stdout goes out within the stop's
    /// deadline (the peers' [`FLUSH_DEADLINE`], which has passed when they
    /// did not close in time: a blocked stdout adds no wait of its own to
    /// them). Messages it did not take are counted once, with every other
    /// one stdout did not print, when the node has stopped
    /// (`event::PrintedSoFar`); peer events here.
    pub(super) fn drain_backlog(&mut self) {
        let deadline = self
            .deadline
            .unwrap_or_else(|| Instant::now() + FLUSH_DEADLINE);
        while let Some(output) = self.backlog.pop_front() {
            let Err(e) = self.stdout.send_deadline(output, deadline) else {
                continue;
            };
            for output in std::iter::once(e.into_inner()).chain(self.backlog.drain(..)) {
                if !matches!(output, Output::Msgs(_)) {
                    self.events_not_printed += 1;
                }
            }
        }
    }

    /// Whether the node may leave now, at the end of stdin, and with
    /// final acknowledgements (`mesh::leave`). First it waits until it is
    /// caught up (lines still on their way to it printed), at most
    /// `catch_up`; and, caught up or not, while a member is still sending
    /// ([`Mesh::members_sending`](crate::mesh::Mesh::members_sending)),
    /// at most `--stall-timeout`: when a whole group sends files and
    /// exits together, under load members that had finished left after
    /// 2 s without half of the others' files (attack15 F3, attack16 F1),
    /// or as caught up in a pause between two bursts of a sender's lines.
    /// Then it stops printing (what arrives from now on is
    /// counted, not delivered) and waits until the stdout thread has
    /// written out every message it was handed, at most [`DRAIN_WAIT`];
    /// then what that thread printed goes to the mesh, so that the final
    /// acknowledgements cover exactly what this node printed: its senders
    /// count as delivered what it printed, and as lost what it did not.
    /// A stdout that did not take it all in time: the acknowledgements
    /// are not final (what it still writes may be printed after we left).
    pub(super) fn ready_to_leave(&mut self, now: Instant, catch_up: Duration) -> Option<bool> {
        if self.drain_by.is_none() {
            let leave_by = *self.leave_by.get_or_insert(now + catch_up);
            // Lines handed to stdout and not written yet are not "on their
            // way": the drain below waits for them (attack45 F2 saw the
            // warning below from a node that then printed every line).
            let arrived = self.mesh.caught_up(now);
            let caught_up = arrived && self.backlog.is_empty();
            let longest = leave_by - catch_up + self.node.config.stall_timeout;
            let others_send = self.mesh.members_sending(now) && now < longest;
            if (!caught_up && now < leave_by) || others_send || self.mesh.id_in_doubt(now) {
                return None;
            }
            log::info!("every member that was owed a line has it, is gone, or was given up on");
            // Info: a heads-up, no loss. What does arrive from now on is
            // warned about and printed as a gap ("arrived after this node
            // left the group"); a member still flagged as sending, or
            // lines still waiting for stdout, may well bring nothing more
            // (attack46 F2: a node that then printed every line warned).
            if !arrived {
                log::info!(
                    "a member said more lines were coming, or lines were still on \
                     their way to this node after {:.0}s: \
                     leaving without printing more",
                    (now - (leave_by - catch_up)).as_secs_f64()
                );
            }
        }
        self.drain_to_leave(now)
    }

    /// Leaving: stops printing (what arrives from now on is counted, not
    /// delivered), and once our stdout thread has written out everything
    /// it was handed (at most [`DRAIN_WAIT`] later), tells the mesh what
    /// was printed, so that our last acknowledgements say exactly that;
    /// `Some(true)` if they can be final, `None` while it still writes.
    /// At the end of stdin (not on a signal: the user asked us to stop),
    /// a stdout that still moves ([`STDOUT_MOVING`]: a slow reader, a long line
    /// going out in pieces) is waited for up to `--stall-timeout`: its
    /// senders then count what it printed as delivered. After a second,
    /// a node left with a 40 KB line half printed at 8 KB/s, finished it
    /// after its goodbye, and its sender booked it "not acknowledged"
    /// (exit 3).
    pub(super) fn drain_to_leave(&mut self, now: Instant) -> Option<bool> {
        let drain_by = match self.drain_by {
            Some(at) => at,
            None => {
                self.mesh.stop_printing();
                // A stdout whose write has waited half that long already
                // (a pipe nobody reads) is not waited for.
                let wait = match self.node.printed.blocked_for(DRAIN_WAIT / 2) {
                    true => Duration::ZERO,
                    false => DRAIN_WAIT,
                };
                let extends = self.node.shutdown.cause() != Some(Cause::Signal);
                self.drain_since = Some((now, extends));
                *self.drain_by.insert(now + wait)
            }
        };
        let written = self.node.printed.written.load(Ordering::Relaxed);
        let drained = self.backlog.is_empty() && written >= self.books.delivered;
        if !drained && now < drain_by {
            return None;
        }
        let since = match self.drain_since {
            Some((since, true)) => {
                let longest = since + self.node.config.stall_timeout;
                if !drained && now < longest && self.node.printed.moving() {
                    self.drain_by = Some((now + STDOUT_MOVING / 4).min(longest));
                    return None;
                }
                since
            }
            Some((since, false)) => since,
            None => now,
        };
        self.drain_by = None;
        self.drain_since = None;
        self.record_printed(now);
        if !drained {
            log::warn!(
                "stdout did not take {} (waited {:.1}s for it): leaving without final \
                 acknowledgements",
                plural(self.books.delivered - written, "message"),
                (now - since).as_secs_f64()
            );
        }
        Some(drained)
    }

    /// Our stdout was closed (`peercat | head -1`): nothing more will be
    /// printed, so we leave at once with final acknowledgements of
    /// exactly what was (the stdout thread counted every write that went
    /// through before the one that failed). Its senders count the rest as
    /// lost to us, which it is. Before, the goodbye was not final, and
    /// they counted those lines as "not acknowledged" (attack47 F2).
    ///
    /// Unless stdout closed in the middle of a write: then some of the
    /// lines not counted may have been printed, and final
    /// acknowledgements would count them as lost (attack49 F3: a sender
    /// booked 4,949 lines a member printed as lost to it). It leaves
    /// with acknowledgements that are not final: those lines are "not
    /// acknowledged", which is true.
    pub(super) fn leave_printed_for_good(&mut self) {
        let now = Instant::now();
        self.mesh.stop_printing();
        self.record_printed(now);
        let exact = !self.node.printed.failed_mid_write.load(Ordering::Relaxed);
        if !exact {
            log::info!(
                "stdout closed in the middle of a write: some of the lines it was handed \
                 may have been printed, so the goodbye does not say which were not"
            );
        }
        self.left = true;
        self.mesh.leave(now, exact);
    }

    /// Tells the mesh what the stdout thread wrote out since it last
    /// looked: what our acknowledgements say we printed.
    fn record_printed(&mut self, now: Instant) {
        let (seqs, bytes) = self.node.printed.take();
        self.mesh.printed(now, seqs, bytes);
    }

    fn push_backlog(&mut self, output: Output, is_event: bool) {
        if is_event {
            self.events_in_backlog += 1;
        }
        self.backlog.push_back(output);
    }
}
