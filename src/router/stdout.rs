//! Handing output to the stdout thread without ever blocking on it.

use std::time::Instant;

use crossbeam_channel::TrySendError;

use super::{Router, FLUSH_DEADLINE};
use crate::books::plural;
use crate::event::Output;

/// Events waiting for a blocked stdout, at most; later ones are counted
/// and logged instead of printed.
const MAX_PENDING_EVENTS: usize = 1024;

impl Router {
    /// Events that find stdout blocked wait in a bounded backlog; messages
    /// never wait there long, since the router takes no more frames while
    /// they do.
    pub(super) fn output(&mut self, output: Output) {
        let is_event = !matches!(output, Output::Msgs(_));
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

    /// At the end: what waits for stdout gets a bounded time to go out;
    /// what cannot is counted on the log, not dropped silently.
    pub(super) fn drain_backlog(&mut self) {
        let deadline = Instant::now() + FLUSH_DEADLINE;
        while let Some(output) = self.backlog.pop_front() {
            let Err(e) = self.stdout.send_deadline(output, deadline) else {
                continue;
            };
            let mut msgs = 0;
            for output in std::iter::once(e.into_inner()).chain(self.backlog.drain(..)) {
                match output {
                    Output::Msgs(batch) => {
                        msgs += batch.lines.iter().map(|l| l.msg.len()).sum::<u64>()
                    }
                    _ => self.events_not_printed += 1,
                }
            }
            if msgs > 0 {
                log::warn!(
                    "stdout is blocked or closed: {} received were not printed",
                    plural(msgs, "message")
                );
            }
        }
    }

    fn push_backlog(&mut self, output: Output, is_event: bool) {
        if is_event {
            self.events_in_backlog += 1;
        }
        self.backlog.push_back(output);
    }
}
