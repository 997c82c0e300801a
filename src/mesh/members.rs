//! Membership: our STATUS (announcement plus acknowledgements), other
//! members' STATUS merged and flooded once each, DOWN reports, silence
//! timeouts, the probe of a neighbour lost without a goodbye, and the peer
//! exchange when a neighbour comes up.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::table::Filed;
use super::{Action, Bytes, Conn, MemberBooks, Mesh, NodeId, ProbeResult};
use crate::frame::{Ack, Frame, Status, FLAG_LEAVING, FLAG_NO_RELAY, MAX_STATUS_ACKS};

/// What we know of another member.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub addrs: Vec<SocketAddr>,
    pub status_seq: u64,
    /// The highest `sent_seq` its STATUS frames gave (of this life): one
    /// process never gives less in a newer STATUS.
    pub sent_seq: u64,
    /// When its last new STATUS arrived.
    pub heard: Instant,
    pub up: bool,
    /// Why it went down (while down).
    pub down: Option<String>,
    /// The highest status_seq of a STATUS of its that flooded (not
    /// [`FLAG_ROUTED`]): what every member has heard, so what a DOWN
    /// about it is judged against (a routed one reached only the members
    /// on its way, and proves nothing about after the cut).
    pub flood_seq: u64,
    /// The highest status_seq a DOWN reported for it: DOWNs are flooded
    /// once per (member, status_seq).
    pub down_seq: Option<u64>,
    /// Its latest STATUS as we forward it, for new neighbours.
    pub last_status: Option<Bytes>,
    /// Its acknowledgement of our own lines: (base, delivered, skipped).
    pub ack: Option<(u64, u64, u64)>,
    /// The first of our seqs it owes delivery of; `None` while unknown.
    pub owed_from: u64,
    /// One past the last of our seqs it owes (set when it went down).
    pub owed_end: Option<u64>,
    /// Our last seq when it last came back up after we took it for down
    /// (0: never back): lines up to here that it lacks were sent while it
    /// was away, and those no longer in our cache nobody keeps for it
    /// (`lost.rs`, [`miss_entry`](super::lost)).
    pub back_at: u64,
    /// Where we start delivering its messages, from its first STATUS,
    /// until it has per-origin state; 0 = no STATUS seen.
    pub base_hint: u64,
    /// Where the table's indexes file it.
    pub filed: Filed,
    /// It left with final acknowledgements (`leave.rs`): what they leave
    /// out of the lines it owed, it never printed.
    pub left_final: bool,
    /// Its stdin ended under `--exit-on-eof`: it leaves soon (`leave.rs`);
    /// `sending`: lines it read still wait to go out.
    pub draining: bool,
    pub sending: bool,
    /// Its STATUS says its stdout is stuck (`stuck.rs`): it is cut, not
    /// dialed to heal; it dials again once it prints.
    pub stuck: bool,
    /// Since when it has owed us lines without acknowledging more, and how
    /// far it had acknowledged then (`find_stalled`).
    pub waiting: Option<(Instant, u64)>,
    /// It acknowledged none of our lines for 2 × `--stall-timeout` while it
    /// owed some: it no longer holds our window or `--exit-on-eof` back.
    pub stalled: bool,
    /// How many lines its last STATUS with acknowledgements says it
    /// printed, of every sender (`printed_count`), and when that count
    /// last rose: its stdout takes lines. A member prints the senders'
    /// lines in the order they reach it, so ours may wait behind others'
    /// for long while it prints on: it is not stalled (`find_stalled`).
    pub printed: u64,
    pub printing: Option<Instant>,
    /// The books of its earlier lives (processes that ran under its id,
    /// restarted with the same `--key`), oldest first, at most
    /// [`LIVES_KEPT`].
    pub lives: Vec<MemberBooks>,
    /// The life its newest STATUS gave (0: none yet): only its MSG frames
    /// of that life are its lines (see `relay.rs`).
    pub life: u64,
    /// The `--keepalive` its newest STATUS gave (zero: none yet), at most
    /// [`HONOURED_KEEPALIVES`] of ours or [`HONOURED_AT_LEAST`]: it floods
    /// a STATUS at least this often (`Mesh::silence_limit`).
    pub keepalive: Duration,
}

impl Member {
    /// One we have just heard of, down until its STATUS says otherwise.
    fn new(status_seq: u64, now: Instant) -> Member {
        Member {
            name: String::new(),
            addrs: Vec::new(),
            status_seq,
            sent_seq: 0,
            flood_seq: status_seq,
            heard: now,
            up: false,
            down: None,
            down_seq: None,
            last_status: None,
            ack: None,
            owed_from: 0,
            owed_end: None,
            back_at: 0,
            base_hint: 0,
            filed: Filed {
                lossy: false,
                at: now,
            },
            left_final: false,
            draining: false,
            sending: false,
            stuck: false,
            waiting: None,
            stalled: false,
            printed: 0,
            printing: None,
            lives: Vec::new(),
            life: 0,
            keepalive: Duration::ZERO,
        }
    }

    pub fn is_live(&self) -> bool {
        self.up
    }

    /// Whether it is live, or down only because we stopped hearing it (no
    /// one said it left or was cut): its lines may still be held for us.
    pub fn maybe_live(&self) -> bool {
        self.up || self.down.as_deref().is_some_and(|r| r.starts_with(SILENT))
    }

    /// Addresses one could dial (not the unspecified ones).
    pub fn dialable(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.addrs
            .iter()
            .copied()
            .filter(|a| !a.ip().is_unspecified() && a.port() != 0)
    }

    /// The highest of our seqs it has, for the window: every owed one up to
    /// here is delivered, or reported lost (skipped). An acknowledgement
    /// whose base is above the first line it owes says nothing of the owed
    /// lines below that base: its base came from a STATUS that overtook
    /// them, and our miss entry makes it fetch them (or report them) and
    /// lower its base. Until then they stay in the window, so that they
    /// are still in our cache and our neighbours' when it asks: counted
    /// done at once, they left every cache while it was being told, and a
    /// live member lost lines the origin had held for it.
    pub fn done(&self) -> u64 {
        let floor = self.owed_from.saturating_sub(1);
        match self.ack {
            Some((base, _, _)) if base > self.owed_from => floor,
            Some((_, delivered, _)) => delivered.max(floor),
            None => floor,
        }
    }

    /// Whether it owes nothing more of our lines up to `last`.
    pub fn settled(&self, last: u64) -> bool {
        !self.up || self.stalled || self.owed_from > last || self.done() >= last
    }

    /// How many of our lines before the first it owes it acknowledged
    /// anyway, less every line it skipped (never more than it printed).
    fn printed_before_owed(&self) -> u64 {
        match self.ack {
            Some((base, delivered, skipped)) if base < self.owed_from => {
                let to = delivered.min(self.owed_from - 1);
                (to + 1).saturating_sub(base).saturating_sub(skipped)
            }
            _ => 0,
        }
    }

    /// What it got of our lines. Lost are only the lines it will provably
    /// never deliver: those below its base and those it skipped as gaps
    /// (its acknowledgement says so). The rest of what it did not
    /// acknowledge may still have been printed (a member stopped, cut,
    /// then resumed prints what its buffers held): not acknowledged, never
    /// claimed lost.
    pub fn books(&self, id: NodeId, last: u64) -> Option<MemberBooks> {
        let end = self.owed_end.unwrap_or(last + 1);
        if self.owed_from == 0 || self.owed_from >= end {
            return None;
        }
        let owed = self.owed_from..end.max(self.owed_from);
        let (base, delivered, skipped) =
            self.ack.unwrap_or((self.owed_from, self.owed_from - 1, 0));
        let got_from = base.max(self.owed_from);
        let got_to = delivered.min(owed.end.saturating_sub(1));
        let covered = (got_to + 1).saturating_sub(got_from);
        // Skipped lines (gaps) are lost, not delivered. (A member whose
        // base is below what it owes may have skipped some of the lines
        // before: counted here too, the cautious side.)
        let skipped = skipped.min(covered);
        let got = covered - skipped;
        let owed_count = owed.end - owed.start;
        let mut lost = base.saturating_sub(self.owed_from).min(owed_count) + skipped;
        if self.left_final {
            lost = owed_count;
        }
        Some(MemberBooks {
            id,
            name: self.name.clone(),
            owed,
            delivered: got,
            lost: lost.min(owed_count - got),
            down: self.down.clone(),
            stalled: self.stalled && self.up,
            before_up: self.owed_from - 1,
            printed_before_up: self.printed_before_owed(),
            after_down: self
                .owed_end
                .map_or(0, |end| (last + 1).saturating_sub(end)),
        })
    }
}

/// Earlier lives' books kept per member; the books of older ones are
/// summed with those of forgotten members.
pub const LIVES_KEPT: usize = 8;

/// A member silent for this many of its keepalives is down.
const SILENT_KEEPALIVES: u32 = 3;
/// A member's keepalive counts up to this many of ours, or up to
/// [`HONOURED_AT_LEAST`] if that is more. In an open group a stranger's
/// invented members each announcing `--keepalive 3600` would otherwise
/// stay live for three hours after one STATUS each, holding the member
/// table's places (and judging links over an hour, `dial.rs`); so they
/// last at most 3 min (36 of our keepalives, if more), and a member with
/// a keepalive up to 60 s, or up to 36 of ours, never looks silent (with
/// 12 × ours alone, a member at 60 s among nodes at 1 s went down after
/// 36 s of each minute: attack49 F2).
const HONOURED_KEEPALIVES: u32 = 12;
const HONOURED_AT_LEAST: Duration = Duration::from_secs(60);
/// A member announcing more is warned about at most this often (one
/// line, whoever announces it: a stranger's invented members may all).
const LONG_KEEPALIVE_WARN_EVERY: Duration = Duration::from_secs(600);

/// How the reason of a member down for silence starts.
const SILENT: &str = "silent for";

/// Why a member is down whose link ended without a goodbye and whose
/// listen addresses all refused our probe (see [`Mesh::probe`]).
pub const GONE: &str =
    "gone: its link closed without a goodbye and its address refuses connections";

/// Probes under way at most: beyond, a member lost meanwhile is left to
/// the silence rule (memory stays bounded whatever a stranger does).
const MAX_PROBES: usize = 16;

/// How often a DOWN about us is refuted at once (see `refute_down`).
const REFUTE_EVERY: Duration = Duration::from_secs(1);
/// A STATUS under our id from before our first, newer than one that came
/// this long before it, is from a live process, not the last frames of an
/// earlier life still on their way (`foreign_status`).
pub const ID_CONFLICT_AFTER: Duration = Duration::from_secs(2);

/// Where `hops` (then `ttl`) sits in an encoded STATUS frame: length
/// prefix, type, member, status_seq.
const STATUS_HOPS_AT: usize = 4 + 1 + 8 + 8;
/// Where the flags sit: after hops, ttl and sent_seq.
const STATUS_FLAGS_AT: usize = STATUS_HOPS_AT + 1 + 1 + 8;
/// STATUS flags bit 5: the STATUS carries news only for the origins it
/// acknowledges, and goes toward them along their trees instead of
/// flooding (see `Mesh::own_route`). Older nodes ignore the bit and flood
/// it, which loses nothing.
pub const FLAG_ROUTED: u8 = 32;
/// How many members that left a greeting names (see `lately_left`).
const GREET_LEFT: usize = 32;

impl Mesh {
    /// Peer exchange: a new neighbour gets our STATUS and the latest
    /// STATUS of every live member we know, in one send.
    pub(super) fn greet(&mut self, now: Instant, conn: Conn) {
        let mut out = Vec::new();
        self.greeting_status(now).encode(&mut out);
        // A leaf passes on no STATUS: who only reaches the group through
        // it cannot exchange lines with the group, so is no member of it.
        let relay = self.cfg.relay;
        // Nor one of a member silent for 3 of its own keepalives: we may
        // keep it longer (our keepalive is longer), but a newcomer would
        // owe it lines, and wait for it (attack48 F2: a node with
        // `--keepalive 60` handed a member stopped 11 s before, announcing
        // every second, to a sender that then exited 3 naming it).
        // And over our keepalive too, if shorter: what a greeting passes
        // on, its receiver takes as just heard, and keeps for 3 of the
        // member's keepalives in turn; a stranger's invented members,
        // announced once, went from greeting to greeting, each newcomer
        // keeping them 3 min more, as long as one joined every 3 min
        // (attack49 F1).
        let clock = self.silence_clock(now);
        let fresh = |m: &Member| {
            let its = match m.keepalive.is_zero() {
                true => self.cfg.keepalive,
                false => m.keepalive.min(self.cfg.keepalive),
            };
            clock.saturating_duration_since(m.heard) <= SILENT_KEEPALIVES * its
        };
        for m in self.members.values().filter(|m| m.up && relay && fresh(m)) {
            if let Some(status) = &m.last_status {
                // Stored as forwarded (hops already counts the next link):
                // one that came at its ttl's last hop goes no further.
                let (hops, ttl) = (status[STATUS_HOPS_AT], status[STATUS_HOPS_AT + 1]);
                if hops <= ttl {
                    out.extend_from_slice(status);
                }
            }
        }
        if relay {
            for status in self.lately_left() {
                out.extend_from_slice(&status);
            }
        }
        self.push(Action::Send {
            to: conn,
            frames: Arc::new(out),
            msgs: 0,
        });
    }

    /// Greets again a neighbour that came back after we took it for down
    /// (stopped, or cut by another neighbour, its link to us kept): it
    /// missed the goodbyes and STATUS frames of that time, as a node
    /// linking up after a break does, and without them it did not know how
    /// far a sender that left got, and silently printed no more of its
    /// lines (attack16 F3). At most once a keepalive per link.
    fn regreet(&mut self, now: Instant, id: NodeId) {
        let keepalive = self.cfg.keepalive;
        let Some((&conn, n)) = self.neighbours.iter_mut().find(|(_, n)| n.node == id) else {
            return;
        };
        if n.regreeted
            .is_some_and(|at| now.saturating_duration_since(at) < keepalive)
        {
            return;
        }
        n.regreeted = Some(now);
        self.greet(now, conn);
    }

    /// The leaving STATUS of the members that left most lately (at most
    /// [`GREET_LEFT`]), for a greeting: a node linking up after a break
    /// (stopped, cut, partitioned) missed their goodbye. Told, it knows
    /// they left and how far their lines went, so it fetches what it
    /// missed or reports it as a gap, instead of waiting in silence for
    /// lines that will never come. Only a STATUS that carries the leaving
    /// flag: a member cut or gone silent is not announced again.
    fn lately_left(&self) -> Vec<Bytes> {
        let mut left: Vec<(Instant, Bytes)> = self
            .members
            .values()
            .filter(|m| !m.up)
            .filter_map(|m| {
                let status = m.last_status.as_ref()?;
                let (hops, ttl) = (status[STATUS_HOPS_AT], status[STATUS_HOPS_AT + 1]);
                let leaving = status[STATUS_FLAGS_AT] & FLAG_LEAVING != 0;
                (leaving && hops <= ttl).then(|| (m.heard, status.clone()))
            })
            .collect();
        left.sort_by_key(|(heard, _)| std::cmp::Reverse(*heard));
        left.truncate(GREET_LEFT);
        left.into_iter().map(|(_, status)| status).collect()
    }

    /// Our STATUS for a new neighbour: the last one we sent, as it was,
    /// when another neighbour already carried it to the group and it still
    /// says everything (only its status_seq may differ); else a new one.
    /// A new status_seq is news to every member, so it floods the whole
    /// group: one per link formed made each join cost a flood per link
    /// at both ends (members × degree receptions each). A neighbour that
    /// lacks the last one takes it as news all the same; one that took us
    /// for gone since it has an older one (silence needs keepalives we
    /// sent meanwhile); and when we have no other neighbour, whatever we
    /// sent may have reached no one, so it is a new one then.
    fn greeting_status(&mut self, now: Instant) -> Status {
        if self.neighbours.len() > 1 {
            if let Some(last) = &self.own_sent {
                let mut same = self.status_now();
                same.status_seq = last.status_seq;
                if same == *last {
                    return same;
                }
            }
        }
        self.own_status(now)
    }

    /// Our STATUS as it goes out now; counts a new status_seq.
    fn own_status(&mut self, now: Instant) -> Status {
        self.own.status_seq = self.own.status_seq.saturating_add(1);
        self.last_status = Some(now);
        self.status_due = false;
        self.unacked_delivered = 0;
        let status = self.status_now();
        self.moved_unsaid = false;
        self.own_sent = Some(status.clone());
        status
    }

    /// What our STATUS says now, under the current status_seq.
    fn status_now(&self) -> Status {
        let addrs = match self.cfg.advertise {
            Some(addr) => vec![addr],
            None if self.cfg.listen_port != 0 => vec![SocketAddr::new(
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                self.cfg.listen_port,
            )],
            None => Vec::new(),
        };
        let mut flags = 0;
        if !self.cfg.relay {
            flags |= FLAG_NO_RELAY;
        }
        if self.own.leaving {
            flags |= FLAG_LEAVING;
        }
        flags |= self.leave_flags();
        if self.stuck {
            flags |= super::FLAG_STUCK;
        }
        if self.moved_unsaid {
            flags |= super::FLAG_PRINTING;
        }
        Status {
            member: self.cfg.id,
            status_seq: self.own.status_seq,
            hops: 1,
            ttl: self.cfg.ttl,
            sent_seq: self.own.last_seq,
            flags,
            keepalive_secs: crate::frame::keepalive_secs(self.cfg.keepalive),
            life: self.cfg.life,
            name: self.cfg.name.clone(),
            addrs,
            acks: self.status_acks(),
            misses: self.misses(),
        }
    }

    /// Our acknowledgements: every origin that has sent something, live
    /// members first when there are more than fit.
    pub(super) fn acks(&self) -> Vec<Ack> {
        let mut acks: Vec<(bool, Ack)> = self
            .origins
            .iter()
            .filter(|(id, o)| {
                **id != self.cfg.id && o.life != 0 && o.next > 0 && (o.next > 1 || o.known_sent > 0)
            })
            .map(|(id, o)| {
                let live = self.members.get(id).is_some_and(|m| m.up);
                // When acknowledging what was printed: only what is
                // written out, and the gaps printing passed (a gap is
                // never printed).
                let (delivered, skipped) = o.ack();
                let ack = Ack {
                    origin: *id,
                    base: o.base,
                    delivered,
                    skipped,
                    life: o.life,
                };
                debug_assert!(well_formed(&ack), "a malformed acknowledgement: {ack:?}");
                (!live, ack)
            })
            .collect();
        acks.sort_by_key(|(dead, ack)| (*dead, ack.origin));
        acks.truncate(MAX_STATUS_ACKS);
        acks.into_iter().map(|(_, ack)| ack).collect()
    }

    pub(super) fn send_status(&mut self, now: Instant) {
        let status = self.own_status(now);
        match self.own_route(now, &status) {
            Some(mut to) => {
                self.printing_to_all(now, &status, &mut to);
                let mut routed = status;
                routed.flags |= FLAG_ROUTED;
                let bytes = Arc::new(Frame::Status(routed).to_bytes());
                self.send_each(&to, &bytes, 0);
            }
            None => {
                let bytes = Arc::new(Frame::Status(status.clone()).to_bytes());
                self.flood_due = false;
                if status.flags & super::FLAG_PRINTING != 0 {
                    self.printing_told_all = Some(now);
                }
                self.flooded = Some((now, status));
                self.flood_status(&bytes, None);
            }
        }
    }

    /// Where our STATUS goes when it need not flood ([`FLAG_ROUTED`]): its
    /// only news is acknowledgements, and it says nothing else the group
    /// has not heard from us since our last flooded one, less than a
    /// keepalive ago (same flags, sent_seq, name, addresses; no misses; the
    /// keepalive STATUS itself always floods). Then it goes to our parent
    /// for each live origin it acknowledges: the origins wait for it,
    /// nobody else does, and a flood crosses every link of the group (most
    /// of a fan-out's STATUS traffic, and the thread wake-ups it costs,
    /// were acknowledgements flooded to members that had no use for them).
    /// `None`: flood it.
    fn own_route(&self, now: Instant, status: &Status) -> Option<Vec<Conn>> {
        let (at, flooded) = self.flooded.as_ref()?;
        let fresh = now.saturating_duration_since(*at) < self.cfg.keepalive;
        if self.flood_due {
            return None;
        }
        let mut same = status.clone();
        same.status_seq = flooded.status_seq;
        same.acks.clone_from(&flooded.acks);
        // Progress is news for the origins only, as acknowledgements are.
        same.flags = (same.flags & !super::FLAG_PRINTING) | (flooded.flags & super::FLAG_PRINTING);
        if !fresh || !status.misses.is_empty() || same != *flooded {
            return None;
        }
        self.ack_route(&status.acks, None)
            .filter(|to| !to.is_empty())
    }

    /// The neighbours toward the live origins `acks` acknowledge (their
    /// tree parents), `except` the link a routed STATUS came by; `None`
    /// (flood instead) when one of them has no parent we can use, or is
    /// no member we know.
    fn ack_route(&self, acks: &[Ack], except: Option<Conn>) -> Option<Vec<Conn>> {
        let mut to = Vec::new();
        for ack in acks {
            if ack.origin == self.cfg.id {
                continue;
            }
            // A member we know is down waits for nothing; one we do not
            // know at all may be live beyond us: flood.
            if !self.members.get(&ack.origin)?.up {
                continue;
            }
            let parent = self.tree.parent(ack.origin)?;
            // A parent that is the link it came by is a loop in parents
            // still settling: flooding cannot lose it.
            if Some(parent) == except || !self.neighbours.contains_key(&parent) {
                return None;
            }
            if !to.contains(&parent) {
                to.push(parent);
            }
        }
        Some(to)
    }

    /// A prompt STATUS when one is due and the last is old enough.
    pub(super) fn maybe_send_status(&mut self, now: Instant) {
        if self.status_due && now >= self.status_at() {
            self.send_status(now);
        }
    }

    /// A STATUS under our id. Ours come back to us around cycles; one
    /// above the last we sent, or one from before our first that a newer
    /// one follows [`ID_CONFLICT_AFTER`] later or more (an earlier life's
    /// last frames, still on their way when we started, come at once),
    /// is another process's: it announces itself under our id, and every
    /// member mixes its lines and acknowledgements with ours. We say so
    /// once, and the books say it at exit (attack23 F2: two processes
    /// under one key both exited 0, "100 lines delivered" to members that
    /// printed the other's lines in their place).
    fn foreign_status(&mut self, now: Instant, status: &Status) {
        let seq = status.status_seq;
        // An earlier life leaving politely while its restart runs already
        // is no conflict: members take the restart for its new life.
        let live = if status.flags & FLAG_LEAVING != 0 && seq <= self.own.first_status_seq {
            false
        } else if seq > self.own.status_seq {
            true
        } else if seq <= self.own.first_status_seq {
            match self.foreign_status {
                Some((last, _)) if seq <= last => false,
                Some((_, first_seen)) => {
                    self.foreign_status = Some((seq, first_seen));
                    now.saturating_duration_since(first_seen) >= ID_CONFLICT_AFTER
                }
                None => {
                    self.foreign_status = Some((seq, now));
                    false
                }
            }
        } else {
            false
        };
        if !live || self.id_conflict.is_some() {
            return;
        }
        self.id_conflict_found(format!(
            "another process announces itself under our id {:016x} (name {:?}): the same \
             --key used twice?",
            self.cfg.id, status.name
        ));
        // Tell the other process too: members take the newer of two
        // STATUS frames under one id and drop the other as stale, so our
        // next one must be newer than the other's (once: two processes
        // doing so at every frame would flood the group in turn).
        if seq > self.own.status_seq && seq < u64::MAX / 2 {
            self.own.status_seq = seq;
        }
        self.status_due = true;
        self.flood_due = true;
    }

    /// Another process uses our id (`what` says how we know): said once,
    /// and at exit (`Mesh::id_conflict`).
    pub fn id_conflict_found(&mut self, what: String) {
        if self.id_conflict.is_some() {
            return;
        }
        log::error!(
            "{what} Members cannot tell its lines and acknowledgements from ours: no \
             delivery counted from now on is certain"
        );
        self.id_conflict = Some(what);
    }

    pub(super) fn on_status(&mut self, now: Instant, conn: Conn, status: &Status) {
        if status.member == self.cfg.id {
            self.foreign_status(now, status);
            return;
        }
        let fresh = match self.members.get(&status.member) {
            Some(m) => {
                status.status_seq > m.status_seq
                    && m.down_seq.map_or(true, |d| status.status_seq > d)
            }
            None => true,
        };
        if !fresh || !self.may_merge(now, conn, status) {
            return;
        }
        let mut status = status.clone();
        if status.hops == 1 {
            if let Some(n) = self.neighbours.get(&conn) {
                for addr in &mut status.addrs {
                    if addr.ip().is_unspecified() {
                        addr.set_ip(n.remote.ip());
                    }
                }
            }
        }
        let hops = status.hops;
        // Not what came through a link being closed (see `flood_status`).
        let through_ending = self.neighbours.get(&conn).is_some_and(|n| n.ending());
        let forward = hops < status.ttl && self.cfg.relay && !through_ending;
        status.hops = hops.saturating_add(1);
        let bytes = Arc::new(Frame::Status(status.clone()).to_bytes());
        let routed = status.flags & FLAG_ROUTED != 0;
        if forward {
            match routed.then(|| self.ack_route(&status.acks, Some(conn))) {
                Some(Some(to)) => self.send_each(&to, &bytes, 0),
                _ => self.flood_status(&bytes, Some(conn)),
            }
        }
        // Kept for new neighbours without its acks: they are stale by then
        // (its next STATUS brings fresh ones), and up to 4096 of them per
        // member would cost ~100 KB each. Not routed: a greeting tells the
        // new neighbour's side of the group.
        status.flags &= !FLAG_ROUTED;
        let kept = if status.acks.is_empty() && !routed {
            bytes
        } else {
            let acks = std::mem::take(&mut status.acks);
            let kept = Arc::new(Frame::Status(status.clone()).to_bytes());
            status.acks = acks;
            kept
        };
        status.hops = hops;
        self.merge_status(now, &status, kept);
        self.cut_if_stuck(conn, &status);
        if !routed {
            if let Some(m) = self.members.get_mut(&status.member) {
                m.flood_seq = status.status_seq;
            }
        }
        self.after_status(&status);
    }

    /// Whether the table has room for what `status` makes of its member:
    /// a new live member needs a free place (live members are never
    /// evicted); beyond the cap it is refused, with a rate-limited warning
    /// naming the neighbour it came from.
    fn may_merge(&mut self, now: Instant, conn: Conn, status: &Status) -> bool {
        let joins = status.hops <= self.cfg.ttl && status.flags & FLAG_LEAVING == 0;
        let live = self.members.get(&status.member).is_some_and(|m| m.up);
        if !joins || live || self.members.has_room() {
            return true;
        }
        self.refused_members.add(1);
        if let Some(refused) = self.refused_members.due(now) {
            let from = self.neighbours.get(&conn).map_or_else(
                || format!("connection {conn}"),
                |n| format!("{:016x} at {}", n.node, n.remote),
            );
            log::warn!(
                "{} known: refusing new member {:016x} (name {:?}) announced by neighbour {from}, \
                 {} refused since the last warning",
                super::table::MAX_MEMBERS,
                status.member,
                status.name,
                refused
            );
        }
        false
    }

    fn merge_status(&mut self, now: Instant, status: &Status, bytes: Bytes) {
        let id = status.member;
        let known = self.members.get(&id).is_some();
        let in_reach = status.hops <= self.cfg.ttl;
        let owed_from = self.own.last_seq + 1;
        let last = self.own.last_seq;
        let clock = self.silence_clock(now);
        // Its life tells a new process under its id (a restart with the
        // same `--key`) from the same process: with the same life it is
        // the same process, whatever its sent_seq, flags or status_seq say
        // (a joiner that had only the earlier life's goodbye took the new
        // life's second STATUS, saying fewer lines sent, for a restart:
        // attack42 F1). A member we owe nothing yet (`owed_from` 0) has no
        // books to close: another life only starts its state over.
        let (other_life, restarted) = match self.members.get(&id) {
            Some(m) if m.life != 0 && m.life != status.life => (true, m.owed_from != 0),
            _ => (false, false),
        };
        if restarted {
            self.new_life(now, id);
        } else if self
            .origins
            .get(id)
            .is_some_and(|o| o.life != 0 && o.life != status.life)
        {
            // Its lines we took before this STATUS came were of another
            // life (a relay kept them while it was stopped): that state
            // starts over, as for a restart.
            self.forget_earlier_life(id);
        }
        self.members
            .insert_down(id, clock, last, Member::new(0, clock));
        self.members.heard(id, clock);
        let m = self.members.get_mut(&id).expect("inserted");
        m.status_seq = status.status_seq;
        m.life = status.life;
        m.sent_seq = match restarted || other_life {
            true => status.sent_seq,
            false => m.sent_seq.max(status.sent_seq),
        };
        m.name.clone_from(&status.name);
        m.addrs.clone_from(&status.addrs);
        let announced = Duration::from_secs(status.keepalive_secs.into());
        let counted = (HONOURED_KEEPALIVES * self.cfg.keepalive).max(HONOURED_AT_LEAST);
        m.keepalive = announced.min(counted);
        if announced > counted {
            let warn = !self
                .long_keepalive_warned
                .is_some_and(|at| now.saturating_duration_since(at) < LONG_KEEPALIVE_WARN_EVERY);
            if warn {
                self.long_keepalive_warned = Some(now);
                log::warn!(
                    "member {} ({id:016x}) announces --keepalive {}s, more than this node counts \
                     ({}s): it is taken for down between its announcements; give every member \
                     a --keepalive within {}s",
                    status.name,
                    announced.as_secs(),
                    counted.as_secs(),
                    counted.as_secs()
                );
            }
        }
        m.last_status = Some(bytes);
        let mut window_moved = false;
        if let Some(ack) = status.acks.iter().find(|a| self.cfg.acknowledges_us(a)) {
            // The newest acknowledgement replaces the last (STATUS frames
            // are merged in status_seq order): a member's base may move up
            // past a gap before its first delivery, and a merged older,
            // lower base would claim the gap delivered.
            let merged = (ack.base, ack.delivered, ack.skipped);
            window_moved = m.ack != Some(merged);
            m.ack = Some(merged);
        }
        let printing = note_printed(m, status, clock);
        let leaving = status.flags & FLAG_LEAVING != 0;
        super::leave::note_flags(m, status.flags);
        let was_up = m.up;
        let addrs: Vec<SocketAddr> = m.dialable().collect();
        // A member down that says its stdout is stuck stays down: its
        // neighbours cut it for that (a newer STATUS of a member we took
        // for down brings it back, but this one must not, or the member
        // flapped up and down). It is back once a STATUS says it prints.
        let stuck = status.flags & super::FLAG_STUCK != 0;
        if leaving {
            if was_up {
                self.mark_down(id, "left");
            }
        } else if in_reach && !was_up && !stuck {
            self.members.set_up(id, true, false);
            let m = self.members.get_mut(&id).expect("inserted");
            // Back after we took it for gone (ids are never reused, so it
            // is the same process, maybe stopped a while): it owes every
            // line since it first did, those sent meanwhile too. Its
            // acknowledgements count from its base across the break; it
            // fetches what it missed, or reports it as a gap. So its books
            // stay one range, and lines it printed after the break count as
            // delivered, not as lost in an earlier life.
            if m.owed_from == 0 {
                m.owed_from = owed_from;
            } else {
                m.back_at = last;
            }
            m.owed_end = None;
            m.down = None;
            let name = m.name.clone();
            window_moved = true;
            self.push(Action::MemberUp {
                id,
                name,
                addrs: addrs.clone(),
            });
            if known && status.hops == 1 {
                self.regreet(now, id);
            }
        }
        for addr in addrs {
            self.dial.learn(addr, Some(id), now);
        }
        // An origin that has sent nothing gets no per-origin state yet
        // (a node knows every member, but few send): its base waits in
        // `base_hint` for its first message.
        let has_origin = self.origins.get(id).is_some();
        if has_origin || status.sent_seq > 0 {
            let hint = self.members.get(&id).map_or(0, |m| m.base_hint);
            let kept = super::relay::kept_origins(&self.members, self.cfg.id);
            let origin = self.origins.entry(id, kept);
            if origin.life == 0 {
                origin.life = status.life;
            }
            origin.start_at(if hint > 0 {
                hint
            } else {
                status.sent_seq.saturating_add(1)
            });
            origin.known_sent = origin.known_sent.max(status.sent_seq);
            if origin.missing().is_some() {
                self.holes.insert(id);
            }
            self.give_up_too_big(id);
        } else if let Some(m) = self.members.get_mut(&id) {
            if m.base_hint == 0 {
                m.base_hint = status.sent_seq.saturating_add(1);
            }
        }
        if window_moved && self.own.last_seq > 0 {
            self.update_window();
        }
        if printing {
            self.tell_links_reading(id);
        }
    }

    /// `member`'s stdout took lines: the links to it restart their stall
    /// clocks ([`Action::Reading`]). Whichever way its STATUS came: it
    /// reaches us directly when we are its parent toward a sender (the
    /// links that carry it lines), and every keepalive anyway.
    fn tell_links_reading(&mut self, member: NodeId) {
        let conns: Vec<Conn> = self
            .neighbours
            .iter()
            .filter(|(_, n)| n.node == member)
            .map(|(conn, _)| *conn)
            .collect();
        for conn in conns {
            self.push(Action::Reading { conn });
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_down(
        &mut self,
        now: Instant,
        conn: Conn,
        member: NodeId,
        status_seq: u64,
        hops: u8,
        ttl: u8,
        reason: &[u8],
    ) {
        let reason = printable(reason);
        if member == self.cfg.id {
            if status_seq >= self.own.status_seq {
                self.refute_down(now);
            }
            return;
        }
        // A member we do not know is not recorded nor passed on: a stranger
        // could flood DOWNs with fresh ids, and none could be de-duplicated.
        let Some(m) = self.members.get(&member) else {
            return;
        };
        if m.down_seq.is_some_and(|d| d >= status_seq) || m.flood_seq > status_seq {
            return;
        }
        self.down_record(member, status_seq, now);
        if self.members.get(&member).is_some_and(|m| m.up) {
            self.mark_down(member, &reason);
        }
        if hops < ttl && self.cfg.relay {
            let frame = Frame::Down {
                member,
                status_seq,
                hops: hops + 1,
                ttl,
                reason: reason.as_bytes(),
            };
            self.broadcast(&Arc::new(frame.to_bytes()), 0, Some(conn));
        }
    }

    /// Reported gone while alive (we stalled, or a false alarm): say so
    /// with a newer STATUS, at once, but at most once per [`REFUTE_EVERY`]
    /// (then with the next keepalive, moved up to that mark). Each STATUS
    /// floods the whole group: a neighbour sending DOWN after DOWN about
    /// us must not turn each 30-byte frame into a group-wide flood.
    fn refute_down(&mut self, now: Instant) {
        match self.refuted {
            Some(at) if now.saturating_duration_since(at) < REFUTE_EVERY => {
                self.next_keepalive = self.next_keepalive.min(at + REFUTE_EVERY);
            }
            _ => {
                self.refuted = Some(now);
                self.flood_due = true;
                self.send_status(now);
            }
        }
    }

    fn down_record(&mut self, member: NodeId, status_seq: u64, now: Instant) {
        let last = self.own.last_seq;
        let clock = self.silence_clock(now);
        self.members
            .insert_down(member, clock, last, Member::new(status_seq, clock));
        let m = self.members.get_mut(&member).expect("inserted");
        m.down_seq = Some(status_seq.max(m.down_seq.unwrap_or(0)));
    }

    /// A neighbour's link ended without a goodbye: its process may be gone
    /// (killed, crashed), or only the link (a reset, a cut network). We
    /// dial its listen addresses once ([`Action::Probe`]); if every one
    /// refuses the connection, nothing listens there any more, and
    /// [`Mesh::probe_ended`] reports it down at once instead of after
    /// 3 × keepalive of silence. Not probed: a member that is down
    /// already, one that listens nowhere (`--no-listen`: the silence rule
    /// stays), one still linked to us otherwise, and any while we leave.
    pub(super) fn probe(&mut self, member: NodeId) {
        if self.own.leaving
            || self.probes.contains(&member)
            || self.probes.len() >= MAX_PROBES
            || self.linked_to(member)
        {
            return;
        }
        let Some(m) = self.members.get(&member).filter(|m| m.up) else {
            return;
        };
        let addrs: Vec<SocketAddr> = m.dialable().collect();
        if addrs.is_empty() {
            return;
        }
        self.probes.insert(member);
        self.push(Action::Probe { member, addrs });
    }

    /// The probe of `member` ended. Refused everywhere, and no new link to
    /// it since its link ended: it is down, and the group is told with a
    /// DOWN as for a member we cut. An answer (a live process there: the
    /// member itself, or a new process with a new id at its address) or
    /// no answer in time (a cut network, a host that drops packets) is no
    /// evidence: the silence rule decides, as before.
    pub(super) fn probe_ended(&mut self, now: Instant, member: NodeId, result: ProbeResult) {
        if !self.probes.remove(&member) {
            return;
        }
        // A STATUS of its that came since is no sign of life: the probe
        // ends within a round trip of the loss, and what arrives meanwhile
        // was sent before it (its last STATUS, passed on by a neighbour
        // that read it first; counting it, a killed sender was down only
        // by silence in half the runs). A live member whose address
        // refuses us (a wrong --advertise) refutes the DOWN.
        let heard_since = self
            .members
            .get(&member)
            .map_or(true, |m| !m.up || self.linked_to(member));
        if result == ProbeResult::Refused && !heard_since && !self.own.leaving {
            self.report_down(now, member, GONE);
            // Something may listen there again soon (a restart).
            self.dial.heal_soon(now, &mut self.rng);
        }
    }

    /// A neighbour we cut for stalling: everyone is told to forget it.
    pub(super) fn report_down(&mut self, now: Instant, member: NodeId, reason: &str) {
        let status_seq = self.members.get(&member).map_or(0, |m| m.status_seq);
        self.down_record(member, status_seq, now);
        if self.members.get(&member).is_some_and(|m| m.up) {
            self.mark_down(member, reason);
        }
        let frame = Frame::Down {
            member,
            status_seq,
            hops: 1,
            ttl: self.cfg.ttl,
            reason: reason.as_bytes(),
        };
        self.broadcast(&Arc::new(frame.to_bytes()), 0, None);
    }

    /// `id` is a new process under the same id (another life): the
    /// books of its earlier life close (what it printed then counts as
    /// delivered, what it did not as missed by that life), and the new one
    /// owes our lines from the next one we read, as a member that just
    /// joined. Before, one range of books ran across both lives: the new
    /// life acknowledged a base above the lines the earlier one had
    /// printed, our miss entry made it report them as a gap, and they were
    /// counted lost (a sender exited 3 for lines its member had printed).
    fn new_life(&mut self, now: Instant, id: NodeId) {
        let last = self.own.last_seq;
        let Some(m) = self.members.get_mut(&id) else {
            return;
        };
        let was_up = m.up;
        if was_up {
            m.owed_end = Some(last + 1);
        }
        let books = m.books(id, last);
        self.restarts.add(1);
        if self.restarts.due(now).is_some() {
            log::info!(
                "member {} ({id:016x}) restarted: a new process under its id; the books of its \
                 earlier life are closed",
                m.name
            );
        }
        if let Some(mut books) = books {
            books.name = format!("{} (an earlier life)", m.name);
            // A closed life is not up, so not "stalled" (which says why a
            // live member's lines are not acknowledged).
            books.stalled = false;
            if books.down.is_none() {
                books.down = Some("restarted".to_owned());
            }
            if m.lives.len() >= LIVES_KEPT {
                let oldest = m.lives.remove(0);
                self.members.forget_books(&oldest);
            }
            let m = self.members.get_mut(&id).expect("present");
            m.lives.push(books);
        }
        self.forget_earlier_life(id);
        let m = self.members.get_mut(&id).expect("present");
        m.base_hint = 0;
        m.owed_from = if was_up { last + 1 } else { 0 };
        m.owed_end = None;
        m.back_at = 0;
        m.ack = None;
        m.left_final = false;
        m.waiting = None;
        m.stalled = false;
        m.printed = 0;
        m.printing = None;
    }

    /// As a sender, a restarted member counts its seqs from 1 again: the
    /// lines of its earlier life we still lack are reported as a gap (that
    /// process is gone), what we held behind them is delivered, and its
    /// state here starts over, as for a new sender (its base from its
    /// STATUS or first line). Our cache of its earlier lines goes too, so
    /// no repair answers a new line with an old one. Before, its new lines
    /// 1, 2, ... were taken for duplicates of the earlier life's and
    /// dropped without a word.
    fn forget_earlier_life(&mut self, id: NodeId) {
        while let Some((first, last)) = self.origins.get(id).and_then(|o| o.missing()) {
            self.give_up(
                id,
                first,
                last,
                "sent by an earlier life of that member (it restarted), never received",
            );
        }
        self.origins.remove(id);
        self.holes.remove(&id);
        self.push(Action::Restarted { origin: id });
    }

    pub(super) fn mark_down(&mut self, id: NodeId, reason: &str) {
        let last = self.own.last_seq;
        let Some(m) = self.members.get_mut(&id) else {
            return;
        };
        if !m.up {
            return;
        }
        m.down = Some(reason.to_owned());
        m.owed_end = Some(last + 1);
        m.up = false;
        let lossy = m
            .books(id, last)
            .is_some_and(|b| crate::books::missed(&b) > 0);
        m.up = true;
        let name = m.name.clone();
        self.members.set_up(id, false, lossy);
        self.push(Action::MemberDown {
            id,
            name,
            reason: reason.to_owned(),
        });
        self.update_window();
    }

    /// Members silent for 3 × keepalive are down.
    pub(super) fn find_silent(&mut self, now: Instant) {
        let least = SILENT_KEEPALIVES * self.cfg.keepalive;
        let clock = self.silence_clock(now);
        let silent = self.members.silent(clock, least, |m| self.silence_limit(m));
        if !silent.is_empty() {
            self.dial.heal_soon(now, &mut self.rng);
        }
        for (id, limit) in silent {
            self.mark_down(id, &format!("{SILENT} {}s", limit.as_secs_f64()));
        }
    }

    /// How long `m` may be silent before it is down: 3 × its keepalive
    /// (it floods a STATUS at least that often), or 3 × ours if that is
    /// longer. On ours alone, a node with `--keepalive 1` took a member
    /// announcing every 5 s for down 3 s after each STATUS, and back up
    /// 2 s later (attack47 F1).
    fn silence_limit(&self, m: &Member) -> Duration {
        SILENT_KEEPALIVES * self.longer_keepalive(m)
    }

    /// How long `m` may go between two STATUS frames: its own keepalive,
    /// or ours if that is longer (our silence rules, and the advice on
    /// `--stall-timeout`, are set against our keepalive).
    pub(super) fn longer_keepalive(&self, m: &Member) -> Duration {
        self.cfg.keepalive.max(m.keepalive)
    }

    /// The longest keepalive in the group as far as we know: ours, or a
    /// live member's. Its STATUS may take that long to come round again,
    /// so evidence about the group's shape is judged over it (`dial.rs`).
    pub(super) fn group_keepalive(&self) -> Duration {
        self.members
            .values()
            .filter(|m| m.up)
            .map(|m| m.keepalive)
            .fold(self.cfg.keepalive, Duration::max)
    }

    /// Members that owe us lines and acknowledged none of them, nor more
    /// of any other sender's, for twice `--stall-timeout` (a stdout nobody
    /// reads: the node still takes our frames, so no link stalls and
    /// nobody cuts it) stop holding our window and `--exit-on-eof` back;
    /// their lines count as not acknowledged. Our lines then go out past
    /// them: once their node stops reading its links, its neighbours cut
    /// it like any stalled peer. A member that acknowledges again, ours or
    /// anyone's, holds the window again. Anyone's: it prints the senders'
    /// lines in the order they reached it, and a slow stdout spends many
    /// seconds on other senders' windows before it gets to ours (F1 of
    /// attack round 13: senders gave up on a member printing on, exit 3).
    pub(super) fn find_stalled(&mut self, now: Instant) {
        let now = self.silence_clock(now);
        let last = self.own.last_seq;
        // Twice the stall timeout: its acknowledgements trail what its
        // stdout took by up to two write buffers (ours and the pipe's,
        // 64 KiB each) and a STATUS interval, so a member reading slowly
        // but steadily (a link is cut below 128 KiB per stall timeout)
        // must not look stalled here first.
        let limit = self.cfg.stall_timeout * 2;
        let mut changed = false;
        for (id, m) in self.members.iter_mut() {
            let done = m.done();
            if !m.up || m.owed_from == 0 || m.owed_from > last || done >= last {
                m.waiting = None;
                changed |= std::mem::take(&mut m.stalled);
                continue;
            }
            match m.waiting {
                Some((since, at)) if at == done => {
                    let quiet_since = m.printing.map_or(since, |p| p.max(since));
                    let quiet = now.saturating_duration_since(quiet_since) >= limit;
                    if quiet && !m.stalled {
                        m.stalled = true;
                        changed = true;
                        log::warn!(
                            "member {} ({id:016x}) acknowledged none of our lines, nor any other \
                             sender's, for {}s ({} waiting): no longer waiting for it",
                            m.name,
                            limit.as_secs_f64(),
                            last - done
                        );
                    } else if !quiet && m.stalled {
                        log::info!("member {} ({id:016x}) prints again", m.name);
                        m.stalled = false;
                        changed = true;
                    }
                }
                _ => {
                    if m.stalled {
                        log::info!("member {} ({id:016x}) acknowledges our lines again", m.name);
                    }
                    m.waiting = Some((now, done));
                    changed |= std::mem::take(&mut m.stalled);
                }
            }
        }
        if changed {
            self.update_window();
        }
    }

    /// Recomputes the window's low mark from the members' acks.
    pub(super) fn update_window(&mut self) {
        let last = self.own.last_seq;
        let low = self
            .members
            .values()
            .filter(|m| m.up && !m.stalled && m.owed_from <= last)
            .map(Member::done)
            .min()
            .unwrap_or(last);
        self.own.acked_to(low);
    }
}

/// Notes the lines `status` (one of `m`'s) says it printed; true if
/// more than its last STATUS said, or if it says its stdout took part of
/// a line ([`FLAG_PRINTING`](super::FLAG_PRINTING)). A STATUS without
/// acknowledgements (one passed on in a greeting) says nothing either way.
fn note_printed(m: &mut Member, status: &Status, now: Instant) -> bool {
    if status.acks.is_empty() {
        return false;
    }
    let printed = printed_count(&status.acks);
    let rose = printed > m.printed || status.flags & super::FLAG_PRINTING != 0;
    m.printed = printed;
    if rose {
        m.printing = Some(now);
    }
    rose
}

/// The lines `acks` say were printed, summed over the senders: each
/// acknowledges everything from its base to `delivered`, less the lines
/// it skipped (gaps). So the sum grows only when lines were printed (where
/// acknowledgements mean printed, as they do once stdout reports), not
/// with a gap, a base moving up, or a new sender. (Saturating: the numbers
/// come from the network.)
fn printed_count(acks: &[Ack]) -> u64 {
    acks.iter()
        .map(|a| {
            a.delivered
                .saturating_add(1)
                .saturating_sub(a.base)
                .saturating_sub(a.skipped)
        })
        .fold(0, u64::saturating_add)
}

/// Whether an acknowledgement passes the decoder's rule (`frame.rs`,
/// PROTOCOL.md STATUS): a neighbour drops a STATUS carrying one that
/// does not as a protocol error.
fn well_formed(ack: &Ack) -> bool {
    ack.base >= 1 && ack.delivered >= ack.base - 1 && ack.skipped <= ack.delivered - (ack.base - 1)
}

/// Text from a stranger made safe to print on one line.
fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| {
            if crate::frame::breaks_a_line(c) {
                '?'
            } else {
                c
            }
        })
        .collect()
}
