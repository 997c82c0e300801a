//! Driving the mesh: frames and stdin lines in, the mesh's actions out, the
//! stdin gate, and `--exit-on-eof` across the group.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::Router;
use crate::books::plural;
use crate::dialer::{self, PROBE_TIMEOUT};
use crate::event::Event;
use crate::event::{ConnId, InFrame, Inbound, Line, Lines, Output};
use crate::frame::{self, Frame, NodeId};
use crate::mesh::{memory_budget, Action, Bytes, MsgRef, ProbeResult};
use crate::outbox::{Batch, Close};
use crate::peer_cache;
use crate::ratelog;
use crate::shutdown::Cause;
use crate::stdio::Chunk;

/// How long a node whose lines are all acknowledged at the end of stdin
/// waits at most for lines still on their way to it before it leaves.
const LEAVE_WAIT: Duration = Duration::from_secs(2);

impl Router {
    /// Frames from a neighbour, in the order they came: runs of messages
    /// and each control frame go to the mesh.
    pub(super) fn on_inbound(&mut self, batch: Inbound) {
        let conn = batch.conn;
        self.count_dropped();
        let Some((admitted, up)) = self.is_admitted(conn) else {
            log::debug!("frames from connection {conn}, which is gone; dropped");
            return;
        };
        if let Some(entry) = self.peers.get_mut(&conn) {
            entry.batches += 1;
        }
        // Only PEERS may come before the peer's ACCEPT (its reader checks):
        // any other frame means the ACCEPT came first.
        let accepted_us = batch.frames.iter().any(|f| !is_peers(&batch.buf, f));
        if admitted && !up && accepted_us {
            self.peer_up(conn);
        }
        // Frames of a mutual-dial pair's other link count as the node's
        // in-mesh link's: the two sides may have put different links into
        // their meshes, and nothing the other side sent may be dropped.
        let source = self.mesh_source(conn);
        let now = Instant::now();
        let mut msgs: Vec<MsgRef> = Vec::with_capacity(batch.frames.len());
        for f in &batch.frames {
            match *f {
                InFrame::Msg(m) => msgs.push(m),
                InFrame::Control { start, end } => {
                    self.msgs_to_mesh(now, conn, source, &batch.buf, &mut msgs);
                    self.on_control(now, conn, source, &batch.buf[start..end]);
                }
            }
        }
        self.msgs_to_mesh(now, conn, source, &batch.buf, &mut msgs);
        self.finish_down(conn);
    }

    /// Duplicates the readers dropped (see [`crate::delivered`]) were
    /// received all the same: into the books.
    pub(super) fn count_dropped(&mut self) {
        let (msgs, bytes) = self.node.delivered.take_dropped();
        self.books.totals.msgs_in += msgs;
        self.books.totals.bytes_in += bytes;
    }

    /// Hands a run of received messages to the mesh.
    fn msgs_to_mesh(
        &mut self,
        now: Instant,
        conn: ConnId,
        source: Option<ConnId>,
        buf: &Bytes,
        msgs: &mut Vec<MsgRef>,
    ) {
        if msgs.is_empty() {
            return;
        }
        self.books.totals.msgs_in += msgs.len() as u64;
        self.books.totals.bytes_in += msgs.iter().map(|m| (m.end - m.start) as u64).sum::<u64>();
        if let Some(source) = source {
            self.mesh.on_msgs(now, source, buf, msgs);
        } else {
            log::debug!(
                "connection {conn}: dropped {} from a connection we refused",
                plural(msgs.len() as u64, "message")
            );
        }
        msgs.clear();
    }

    fn on_control(&mut self, now: Instant, conn: ConnId, source: Option<ConnId>, bytes: &[u8]) {
        let Ok(Some((frame, _))) = frame::decode(bytes, usize::MAX) else {
            return; // the reader decoded it once already
        };
        let in_mesh = self.peers.get(&conn).is_some_and(|e| e.in_mesh);
        match frame {
            Frame::Peers(list) if !in_mesh => {
                // Before the BYE of a refusal: members to try instead.
                if let Some(entry) = self.peers.get_mut(&conn) {
                    entry.alternatives = list;
                }
            }
            other => {
                if let Some(source) = source {
                    self.mesh.on_frame(now, source, &other);
                }
            }
        }
    }

    /// A chunk of our own lines: the mesh numbers, caches and floods them.
    pub(super) fn on_stdin(&mut self, chunk: Chunk) {
        let lines = chunk.frames as u64;
        self.books.lines_read += lines;
        if self.stdin_after.is_some_and(|at| at > Instant::now()) {
            // Taken in the turn that woke from a stop: it waits, as stdin
            // does, until the readers had their turn (`RESUMED_READS`).
            self.unsent = Some(chunk);
            return;
        }
        self.send_stdin(chunk);
    }

    /// After a stop, once what neighbours sent meanwhile had its turn: a
    /// chunk of stdin taken in the wake-up goes out now.
    pub(super) fn resumed_reads_done(&mut self) {
        if self.stdin_after.is_some_and(|at| at <= Instant::now()) {
            self.stdin_after = None;
            if let Some(chunk) = self.unsent.take() {
                self.send_stdin(chunk);
            }
        }
    }

    fn send_stdin(&mut self, chunk: Chunk) {
        // Peers may be up while none is a neighbour of the mesh yet (each
        // waits for the link it replaces in a mutual dial): a line sent now
        // would go to nobody.
        if self.live_peers() == 0 || self.mesh.neighbour_count() == 0 {
            log::debug!(
                "no peer to take {}; they wait for one",
                plural(chunk.frames as u64, "line")
            );
            self.unsent = Some(chunk);
            return;
        }
        let lines = chunk.frames as u64;
        let last = chunk.first_seq + lines - 1;
        self.mesh
            .local(Instant::now(), &chunk.bytes, chunk.first_seq, last);
    }

    pub(super) fn stdin_ended(&mut self) {
        self.stdin_open = false;
        if self.node.config.exit_on_eof {
            log::info!("stdin ended: stopping once every member has acknowledged every line");
            self.eof_pending = true;
            self.held_at_eof = Some(self.mesh.held_back_in_all(Instant::now()));
            self.mesh.draining();
        } else {
            log::info!("stdin ended; still relaying and printing until Ctrl-C");
        }
    }

    /// Carries out everything the mesh asked for, then lets stdin follow.
    pub(super) fn drain_actions(&mut self) {
        while let Some(action) = self.mesh.poll_action() {
            self.act(action);
        }
        self.update_gate();
        self.check_eof();
    }

    pub(super) fn act(&mut self, action: Action) {
        match action {
            Action::Send { to, frames, msgs } => self.send(to, frames, msgs),
            Action::Deliver(deliveries) => {
                // Names are looked up once per run of one origin (or one
                // neighbour), not per line: a batch is mostly such runs.
                let mut from: Option<(NodeId, Arc<str>)> = None;
                let mut via: Option<(Option<u64>, Option<Arc<str>>)> = None;
                let mut lines = Vec::with_capacity(deliveries.len());
                // Per run of one origin, the first and last seq delivered:
                // readers drop copies of these from now on.
                let mut runs: Vec<(NodeId, u64, u64)> = Vec::new();
                for msg in deliveries {
                    self.books.delivered += msg.len();
                    match runs.last_mut() {
                        Some((id, _, last)) if *id == msg.origin => *last = msg.last,
                        _ => runs.push((msg.origin, msg.first, msg.last)),
                    }
                    let from = match &from {
                        Some((id, name)) if *id == msg.origin => name.clone(),
                        _ => from
                            .insert((msg.origin, self.name_of(msg.origin)))
                            .1
                            .clone(),
                    };
                    let via = match &via {
                        Some((conn, name)) if *conn == msg.via => name.clone(),
                        _ => {
                            let name = msg.via.and_then(|conn| self.via_name(conn));
                            via.insert((msg.via, name)).1.clone()
                        }
                    };
                    lines.push(Line { from, via, msg });
                }
                self.node.delivered.mark(&runs);
                let at = SystemTime::now();
                for lines in in_pieces(lines, OUTPUT_PIECE) {
                    self.output(Output::Msgs(Lines { at, lines }));
                }
            }
            Action::MemberUp { id, name, addrs } => {
                self.names.insert(id, name.as_str().into());
                self.members.insert(id);
                if let Some(at) = self.next_cache {
                    self.next_cache = Some(at.min(Instant::now() + super::CACHE_SOON));
                }
                if self.member_lines.admit(Instant::now()) {
                    let at: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
                    log::info!(
                        "member up: {name} ({id:016x}) at {}; {} known",
                        if at.is_empty() {
                            "no address".to_owned()
                        } else {
                            at.join(", ")
                        },
                        plural(self.members.len() as u64, "member")
                    );
                }
                self.output(Output::MemberUp { id, name, addrs });
            }
            Action::MemberDown { id, name, reason } => {
                self.names.remove(&id);
                self.members.remove(&id);
                if self.member_lines.admit(Instant::now()) {
                    log::info!(
                        "member down: {name} ({id:016x}): {reason}; {} known",
                        plural(self.members.len() as u64, "member")
                    );
                }
                self.output(Output::MemberDown { id, name, reason });
            }
            Action::Gap {
                origin,
                first,
                last,
                reason,
            } => {
                let name = self.name_of(origin);
                // Saturating: a stranger's seqs may span nearly 2^64.
                let lost = last.saturating_sub(first).saturating_add(1);
                if reason == crate::mesh::NOT_OWED {
                    // No loss: where its lines start for us (attack45 F2
                    // saw them counted as "lost to this node").
                    log::info!(
                        "not waiting for {} from {name} ({origin:016x}), seq {first} to \
                         {last}: {reason}",
                        plural(lost, "message")
                    );
                } else {
                    self.books.gaps = self.books.gaps.saturating_add(lost);
                    log::warn!(
                        "lost {} from {name} ({origin:016x}), seq {first} to {last}: {reason}",
                        plural(lost, "message")
                    );
                }
                self.output(Output::Gap {
                    origin,
                    name,
                    first,
                    last,
                    reason,
                });
            }
            Action::Dial(target) => {
                if self.stopping {
                    return;
                }
                self.dialer.dial(target);
            }
            Action::Close {
                conn,
                reason,
                alternatives,
            } => self.close_politely(conn, reason, alternatives),
            Action::Probe { member, addrs } => self.probe(member, addrs),
            Action::Cut { conn } => {
                if let Some(entry) = self.peers.get(&conn) {
                    entry.outbox.cut();
                }
            }
            Action::Restarted { origin } => self.node.delivered.forget(origin),
            Action::Reading { conn } => {
                if let Some(entry) = self.peers.get(&conn) {
                    entry.outbox.progress_seen();
                }
            }
        }
    }

    /// Probes a member's listen addresses on a thread of its own (a
    /// connect may take up to [`PROBE_TIMEOUT`] per address); the result
    /// comes back as [`Event::Probed`]. No thread: no evidence.
    fn probe(&mut self, member: NodeId, addrs: Vec<SocketAddr>) {
        let at: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
        log::debug!(
            "probing member {} ({member:016x}) at {}: its link ended without a goodbye",
            self.name_of(member),
            at.join(", ")
        );
        let events = self.node.events.clone();
        let spawned = self
            .node
            .threads
            .spawn(format!("probe-{member:016x}"), move || {
                let result = dialer::probe(&addrs, PROBE_TIMEOUT);
                let _ = events.send(Event::Probed { member, result });
            });
        if let Err(e) = spawned {
            log::debug!("no thread to probe {member:016x} from: {e}");
            self.mesh
                .probed(Instant::now(), member, ProbeResult::NoAnswer);
        }
    }

    fn send(&mut self, to: ConnId, frames: Bytes, msgs: u64) {
        let Some(mut entry) = self.peers.get(&to) else {
            return;
        };
        if entry.closing {
            // A link closing in a mutual-dial tie-break: what the mesh sends
            // it goes to the link that replaces it, which sends it once the
            // closing one is done (its outbox is held till then).
            let Some(next) = self.successors.get(&to).and_then(|c| self.peers.get(c)) else {
                return;
            };
            if next.closing {
                return;
            }
            entry = next;
        }
        let limit = entry.info.max_frame;
        let batch = if limit < self.node.config.max_frame && msgs > 0 {
            // A neighbour that takes smaller messages than we do is spared
            // the larger ones, and told so (TOO_BIG): it reports each as a
            // gap at once.
            let (batch, skipped) = spare(&frames, msgs, limit);
            if skipped > 0 {
                ratelog::warn("messages too big to send to", entry.info.addr.ip(), || {
                    format!(
                        "{} over the --max-frame of {} ({limit} bytes); not sent to it",
                        plural(skipped, "message"),
                        entry.info
                    )
                });
            }
            batch
        } else {
            Batch {
                bytes: frames,
                msgs,
            }
        };
        if !self.queue_has_room(entry, batch.bytes.len()) {
            let (ip, name) = (entry.info.addr.ip(), entry.info.to_string());
            ratelog::warn("frames not queued to", ip, || {
                format!(
                    "{name} is behind by more than a neighbour may be (its queue over the \
                     bound): a frame of {} not queued for it (it asks for them again, or is \
                     cut if it reads nothing)",
                    plural(batch.msgs, "message")
                )
            });
            return;
        }
        if entry.outbox.push(batch) == Some(true) {
            self.full.insert(entry.info.conn);
        }
    }

    /// Whether `bytes` more may be queued for `entry`'s neighbour: its
    /// queue stays within a window per live member and two more (what
    /// honest senders may have in flight to it: each waits for its
    /// acknowledgement), and at least [`memory_budget`] (16 windows).
    /// Relays never block, so nothing else bounds a queue when lines come
    /// faster than a neighbour reads them and no window holds their sender
    /// back: an invented sender's lines relayed to a neighbour that reads
    /// slowly took a node to 1.5 GB (attack15 F1). What is not queued, the
    /// neighbour repairs as any hole. (A bound of 16 windows alone, and
    /// twice that for all queues, dropped honest lines in a group of 20
    /// senders at full speed, and members left before they had them.)
    fn queue_has_room(&self, entry: &super::peers::Entry, bytes: usize) -> bool {
        let window = self.node.config.window;
        let members = self.mesh.live_members() + 2;
        let cap = memory_budget(window).max(window.saturating_mul(members));
        entry.outbox.ledger().1 + bytes <= cap
    }

    /// The mesh trims a neighbour: PEERS with other members, then BYE.
    fn close_politely(
        &mut self,
        conn: ConnId,
        reason: String,
        alternatives: Vec<(NodeId, std::net::SocketAddr)>,
    ) {
        let Some(entry) = self.peers.get_mut(&conn) else {
            return;
        };
        if entry.closing {
            return;
        }
        log::info!("closing the connection to {}: {reason}", entry.info);
        entry.closing = true;
        // Empty too: PEERS tells the other end we let it go, and it waits
        // its backoff before it dials us again (attack39 F1: with nobody
        // to hand, a node let go dialed back ten times a second).
        entry.hand_alternatives(alternatives);
        entry.outbox.close(Close::Graceful(reason));
        self.full.remove(&conn);
    }

    /// The name of the neighbour connection `conn`, also if it has closed
    /// since it brought a message that waited in the hold-back buffer.
    fn via_name(&self, conn: ConnId) -> Option<Arc<str>> {
        if let Some(entry) = self.peers.get(&conn) {
            return Some(entry.info.name.clone());
        }
        let closed = self.closed_names.iter().rev().find(|(c, _)| *c == conn);
        closed.map(|(_, name)| name.clone())
    }

    /// A member's name for printing: from its STATUS, or its id in hex
    /// while the mesh does not know it.
    pub(super) fn name_of(&mut self, id: NodeId) -> Arc<str> {
        if let Some(name) = self.names.get(&id) {
            return name.clone();
        }
        match self.mesh.member_name(id) {
            Some(name) => {
                let name: Arc<str> = name.into();
                self.names.insert(id, name.clone());
                name
            }
            None => format!("{id:016x}").into(),
        }
    }

    /// Lets stdin be read while a line read now can go out: once
    /// `--wait-peers` peers (at least one) are up, each has announced itself
    /// (so the first lines are owed to it), and `--wait-members` members are
    /// known, for the first time; then while a peer is up; and only while
    /// the window has room (end-to-end flow control).
    fn update_gate(&mut self) {
        let live = self.live_peers();
        // The members the mesh announced (kept here: counting the mesh's is a
        // scan, and this runs after every input).
        let members = self.members.len();
        let (peers_needed, members_needed) = self.first.unwrap_or((1, 0));
        let there =
            live >= peers_needed && members >= members_needed && self.unannounced_until().is_none();
        if there && self.first.take().is_some() {
            if peers_needed > 1 || members_needed > 1 {
                log::info!(
                    "{} connected, {} known; reading stdin",
                    plural(live as u64, "peer"),
                    plural(members as u64, "member")
                );
            }
            self.connect_deadline = None;
        }
        let room = self.mesh.window_room() > 0;
        let linked = self.mesh.neighbour_count() > 0;
        let open = there && room && linked && !self.stopping && self.stdin_open;
        if self.first.is_none() {
            self.watch_for_no_peers(live);
        }
        let resuming = self.stdin_after.is_some_and(|at| at > Instant::now());
        if live > 0 && !resuming {
            if let Some(chunk) = self.unsent.take() {
                self.send_stdin(chunk);
            }
        }
        if open != self.gate.is_open() {
            if !open && self.stdin_open && !self.stopping {
                if live == 0 {
                    log::info!("no peer connected: stdin waits until one is");
                } else if !room {
                    log::debug!("the window is full: stdin waits for acknowledgements");
                }
            }
            self.gate.set_open(open);
        }
    }

    /// Under `--exit-on-eof`, a node whose last peer has gone while lines
    /// wait to be read or acknowledged gives up after `--connect-timeout`.
    fn watch_for_no_peers(&mut self, live: usize) {
        if live > 0 {
            self.connect_deadline = None;
            return;
        }
        let waiting = self.stdin_open
            || self.unsent.is_some()
            || (self.eof_pending && !self.mesh.eof_settled());
        if self.node.config.exit_on_eof && waiting && self.connect_deadline.is_none() {
            self.connect_deadline = self.node.config.connect_timeout.map(|t| Instant::now() + t);
        }
    }

    /// After stdin's end under `--exit-on-eof`: once every line is
    /// acknowledged by every member that owes it (or that member is down),
    /// leave the group and stop. Lines the others sent us may still be on
    /// their way: we leave once we have printed every line we know was
    /// sent (at most [`LEAVE_WAIT`] later), with final acknowledgements
    /// of exactly what we printed (`ready_to_leave`); then we keep
    /// relaying while other members are about to leave too (at most
    /// [`LEAVE_WAIT`] more), so that their final acknowledgements still
    /// find a path (see `mesh::leave`).
    fn check_eof(&mut self) {
        if !self.eof_pending || self.stopping || self.unsent.is_some() {
            return;
        }
        let now = Instant::now();
        if !self.left {
            if !self.mesh.eof_settled() && !self.eof_acks_behind_stdout(now) {
                return;
            }
            let Some(final_acks) = self.ready_to_leave(now, LEAVE_WAIT) else {
                return;
            };
            self.left = true;
            self.mesh.leave(now, final_acks);
            // Out now, not at the next turn of the loop: lines its senders
            // send meanwhile are owed to us and no longer printed.
            while let Some(action) = self.mesh.poll_action() {
                self.act(action);
            }
            self.leave_by = Some(now + LEAVE_WAIT);
        }
        if self.mesh.others_leaving() && self.leave_by.is_some_and(|at| now < at) {
            return;
        }
        self.eof_pending = false;
        self.leave_by = None;
        self.node.shutdown.trigger(Cause::StdinEof);
    }

    /// At the end of stdin, whether we go on to leave though our lines
    /// still wait for acknowledgements, because those wait unread behind
    /// our stdout on our links (true once that was logged).
    /// - Our stdout is stuck: we told our neighbours, they cut us, and we
    ///   read nothing from our links while stdout takes nothing (a link's
    ///   end included: its reader's last frames wait behind stdout). No
    ///   acknowledgement can reach us, so we wait for none, and our lines
    ///   not acknowledged by then count as such (exit 3). Before, such a
    ///   node (`peercat --exit-on-eof | less`, paused) waited for its
    ///   members forever, its links taken for up (attack26 F2).
    /// - Our stdout is behind: since stdin ended, our links waited unread
    ///   behind it for `--stall-timeout` in all (a member streaming to us
    ///   fills them; a stdout that merely lags a batch holds nothing back
    ///   that long, and a member slow to acknowledge is waited for as
    ///   before, `Mesh::find_stalled`). We stop printing (at most a
    ///   catch-up wait later, `ready_to_leave`), and from then on read our
    ///   links at once (`next_step`), so that the acknowledgements reach
    ///   our books before we go. Before, a node whose stdout took 20 KB/s
    ///   while a member streamed to it waited minutes, and exited 3 on a
    ///   signal with its lines "not acknowledged" by a member that had
    ///   them (attack27 F1).
    fn eof_acks_behind_stdout(&mut self, now: Instant) -> bool {
        let stuck = self.mesh.is_output_stuck();
        let behind = self.held_at_eof.is_some_and(|at_eof| {
            let held = self.mesh.held_back_in_all(now).saturating_sub(at_eof);
            held >= self.node.config.stall_timeout
        });
        if !stuck && !behind {
            return false;
        }
        if !self.eof_gave_up {
            self.eof_gave_up = true;
            if stuck {
                log::warn!(
                    "stdout is stuck, so this node reads nothing from its links: not \
                     waiting for the members to acknowledge our lines"
                );
            } else {
                log::info!(
                    "stdout is behind, and the acknowledgements of our lines wait behind \
                     it on our links: leaving now, to read them"
                );
            }
        }
        true
    }

    /// Whether `addr` is where this node listens: its listen address, or,
    /// listening on every address, a loopback one with its port.
    fn is_own_addr(&self, addr: SocketAddr) -> bool {
        let Some(listen) = self.node.config.listen else {
            return false;
        };
        if addr.port() != self.node.listen_port {
            return false;
        }
        match listen.ip().is_unspecified() {
            true => addr.ip().is_loopback(),
            false => addr.ip() == listen.ip(),
        }
    }

    /// Writes `--peer-cache` (if set) with the members' addresses we know
    /// (not our own), atomically (a crash leaves the old file or the new
    /// one). An empty list leaves the file alone: a node that never joined
    /// keeps what it remembered.
    pub(super) fn save_peer_cache(&mut self) {
        let Some(path) = &self.node.config.peer_cache else {
            return;
        };
        let mut known = self.mesh.known_addrs();
        // Our own address comes back from the members under an earlier
        // run's id (a restart without --key): not a member to rejoin by.
        known.retain(|(_, addr)| !self.is_own_addr(*addr));
        if known.is_empty() {
            return;
        }
        match peer_cache::save(path, &known) {
            Ok(()) => {
                self.cache_failing = false;
                log::debug!(
                    "peer cache {}: wrote {}",
                    path.display(),
                    peer_cache::addresses(known.len())
                );
            }
            // Once per run of failures, not every 10 s.
            Err(e) if !self.cache_failing => {
                self.cache_failing = true;
                log::warn!(
                    "cannot write peer cache {}: {}",
                    path.display(),
                    crate::wire::describe(&e)
                );
            }
            Err(_) => {}
        }
    }
}

/// `frames` without the messages whose payload is over `limit`, and how
/// many were left out. The messages kept are framed anew (a frame of
/// several stays within `MAX_RUN_LEN`, which every node takes; each holds
/// messages of one frame of `frames`, so no more than `MAX_RUN_ENTRIES`).
fn spare(frames: &Bytes, msgs: u64, limit: usize) -> (Batch, u64) {
    let mut kept = Vec::with_capacity(frames.len());
    let mut skipped = 0;
    let mut rest = &frames[..];
    while let Ok(Some((frame, used))) = frame::decode(rest, usize::MAX) {
        match frame.msg_header() {
            Some(header) => {
                let mut open: Option<(usize, u64)> = None;
                let mut at = frame::MSG_HEADER_LEN;
                let (origin, mut seq) = (header.origin, header.seq);
                while at < used {
                    let payload = frame::entry_at(rest, at);
                    let entry = &rest[at..payload.end + 1];
                    at = payload.end + 1;
                    if payload.len() > limit {
                        // In its place, word that it will not come: the
                        // neighbour reports the gap at once.
                        skipped += 1;
                        open = None;
                        let size = u32::try_from(payload.len()).unwrap_or(u32::MAX);
                        Frame::TooBig { origin, seq, size }.encode(&mut kept);
                    } else {
                        let header = frame::MsgHeader { seq, ..header };
                        open = Some(put_entry(&mut kept, open, header, entry));
                    }
                    seq = seq.wrapping_add(1);
                }
            }
            None => kept.extend_from_slice(&rest[..used]),
        }
        rest = &rest[used..];
    }
    let batch = Batch {
        bytes: Arc::new(kept),
        msgs: msgs - skipped,
    };
    (batch, skipped)
}

/// Appends the entry of message `header.seq` to the open frame (its start, and
/// the seq it expects next) if it fits there, else in a frame of its own;
/// the frame it went into.
fn put_entry(
    out: &mut Vec<u8>,
    open: Option<(usize, u64)>,
    header: frame::MsgHeader,
    entry: &[u8],
) -> (usize, u64) {
    let seq = header.seq;
    if let Some((start, next)) = open {
        let len = out.len() - start - frame::LEN_PREFIX + entry.len();
        if next == seq && len <= frame::MAX_RUN_LEN {
            out.extend_from_slice(entry);
            out[start..start + frame::LEN_PREFIX].copy_from_slice(&(len as u32).to_be_bytes());
            return (start, seq.wrapping_add(1));
        }
    }
    let start = out.len();
    out.extend_from_slice(&header.encode(entry.len()));
    out.extend_from_slice(entry);
    (start, seq.wrapping_add(1))
}

/// Whether the frame is a PEERS frame.
fn is_peers(buf: &[u8], f: &InFrame) -> bool {
    match *f {
        InFrame::Control { start, .. } => {
            buf.get(start + frame::LEN_PREFIX) == Some(&frame::kind::PEERS)
        }
        InFrame::Msg(_) => false,
    }
}

/// Payload bytes per output handed to stdout, about. The stdout thread
/// counts an output printed (and our acknowledgements move) only once it
/// wrote all of it: a hole filled can release a window's worth (4 MiB) in
/// one delivery, which a stdout read at 300 KB/s took over 10 s to print,
/// its acknowledgements still, and its senders gave up on it and cut it
/// as stalled (F1 of attack round 13). A read's batch (128 KiB) still
/// goes whole: with pieces of 32 KiB (four hand-offs and flushes per
/// batch instead of one) fan-out to eight measured 0.94-1.17x the broker
/// in six alternating rounds, against 1.10-1.19x without them.
const OUTPUT_PIECE: usize = 128 * 1024;

/// `lines` in order, cut after the line that brings a piece to `max`
/// payload bytes.
fn in_pieces(lines: Vec<Line>, max: usize) -> Vec<Vec<Line>> {
    let mut pieces = Vec::new();
    let mut piece = Vec::new();
    let mut bytes = 0;
    for line in lines {
        bytes += line.msg.payload_bytes();
        piece.push(line);
        if bytes >= max {
            pieces.push(std::mem::take(&mut piece));
            bytes = 0;
        }
    }
    if !piece.is_empty() || pieces.is_empty() {
        pieces.push(piece);
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every MSG frame of `bytes` as (first seq, payloads); 0 for others.
    fn frames(bytes: &[u8]) -> Vec<(u64, Vec<Vec<u8>>)> {
        let mut out = Vec::new();
        let mut rest = bytes;
        while let Some((frame, used)) = frame::decode(rest, usize::MAX).unwrap() {
            out.push(match frame {
                Frame::Msg { seq, payload, .. } => (seq, vec![payload.to_vec()]),
                Frame::Run { seq, entries, .. } => {
                    (seq, frame::entries(entries).map(<[u8]>::to_vec).collect())
                }
                Frame::TooBig { seq, size, .. } => (seq, vec![format!("{size} bytes").into()]),
                _ => (0, Vec::new()),
            });
            rest = &rest[used..];
        }
        out
    }

    #[test]
    fn a_large_delivery_goes_to_stdout_in_pieces_so_printing_is_counted_as_it_goes() {
        let mut buf = Vec::new();
        let mut entries = Vec::new();
        for seq in 1..=10 {
            let start = buf.len();
            crate::frame::put_entry(&mut buf, &[b'x'; 100]);
            entries.push((seq, start..buf.len()));
        }
        let buf = Arc::new(buf);
        let lines: Vec<Line> = entries
            .into_iter()
            .map(|(seq, entry)| Line {
                msg: crate::mesh::Delivery::one(7, seq, 1, None, &buf, entry),
                from: "a".into(),
                via: None,
            })
            .collect();
        let pieces = in_pieces(lines, 250);
        let seqs: Vec<Vec<u64>> = pieces
            .iter()
            .map(|p| p.iter().map(|l| l.msg.first).collect())
            .collect();
        assert_eq!(
            seqs,
            [vec![1, 2, 3], vec![4, 5, 6], vec![7, 8, 9], vec![10]]
        );
        assert_eq!(in_pieces(Vec::new(), 250).len(), 1, "an empty delivery");
    }

    /// A run holding a message too big for the neighbour is split around
    /// it: the neighbour still gets the others, each stretch in a frame,
    /// and in its place a TOO_BIG with its size.
    #[test]
    fn a_neighbour_with_a_smaller_limit_is_spared_only_the_larger_messages() {
        let mut bytes = Vec::new();
        let texts: [&[u8]; 4] = [b"short", b"this one is long", b"ok", b"fine"];
        frame::put_run(&mut bytes, frame::MsgHeader::new(42, 1), &texts);
        Frame::Repair {
            origin: 1,
            from_seq: 2,
            to_seq: 3,
        }
        .encode(&mut bytes);
        frame::put_run(
            &mut bytes,
            frame::MsgHeader::new(42, 5),
            &[b"more is too long"],
        );
        let (batch, skipped) = spare(&Arc::new(bytes), 5, 5);
        assert_eq!((batch.msgs, skipped), (3, 2));
        let ok = |seq: u64, texts: &[&[u8]]| (seq, texts.iter().map(|t| t.to_vec()).collect());
        assert_eq!(
            frames(&batch.bytes),
            [
                ok(1, &[b"short"]),
                ok(2, &[b"16 bytes"]),
                ok(3, &[b"ok", b"fine"]),
                (0, Vec::new()),
                ok(5, &[b"16 bytes"]),
            ]
        );
    }
}
