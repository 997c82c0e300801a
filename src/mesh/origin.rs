//! What a node keeps per origin: the next seq to deliver, a bounded
//! hold-back buffer for out-of-order arrivals, a bounded cache of recent
//! messages for REPAIR answers, and the open hole, if any. Origins are kept
//! in a bounded LRU table that outlives membership, so a jump in seq after a
//! partition heals is seen as a gap, not as a new start.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Range;
use std::time::Instant;

use super::{Bytes, Conn, MsgRef, NodeId};
use crate::frame::{entries_cost, entry_cost, entry_end};

/// The most origins remembered; the least recently used is forgotten first.
pub const MAX_ORIGINS: usize = 4096;

/// What a held message costs beyond what the window counts it: its place
/// in the hold-back map (a B-tree half full after ascending inserts) and,
/// held alone, the allocation of its copy. An empty line counts 23 bytes
/// against the window but took about 200 of memory (attack14 F2).
pub const HELD_OVERHEAD: usize = 192;
/// What a cached run costs beyond its entries: its place in the cache.
pub const RUN_OVERHEAD: usize = std::mem::size_of::<Run>();
/// A node holds back and caches at most this many windows of lines in all
/// (at least [`MIN_MEMORY`]): the origins' windows bound what one origin
/// takes, this bounds what thousands of invented ones take.
pub const MEMORY_WINDOWS: usize = 16;
/// The node-wide bound's floor, for small windows.
pub const MIN_MEMORY: usize = 16 << 20;

/// The node-wide bound on what origins hold (`Origins::shed_to`).
pub fn memory_budget(window: usize) -> usize {
    window.saturating_mul(MEMORY_WINDOWS).max(MIN_MEMORY)
}

/// What a message whose entry is `entry_len` bytes counts against the
/// hold-back buffer and the cache when it keeps alive a `share` of the
/// buffer it came in: what the window counts it ([`entry_cost`]: its bytes
/// and a fixed overhead per message), or its share if that is more.
#[inline]
pub fn kept_cost(entry_len: usize, share: usize) -> usize {
    entry_cost(entry_len).max(share)
}

/// A message kept by reference into the buffer it arrived in.
#[derive(Debug, Clone)]
pub struct Kept {
    pub via: Option<Conn>,
    /// As its frame's header said.
    pub hops: u8,
    pub ttl: u8,
    pub bytes: Bytes,
    /// Its entry: length, then payload.
    pub entry: Range<usize>,
    /// What it counts against the bounds ([`kept_cost`]): at least its
    /// share of the buffer it keeps alive.
    pub cost: usize,
}

/// Messages of one origin cached for REPAIR answers: seqs `first..=last`,
/// in order, as consecutive entries in `bytes[entries]`, all with `hops`
/// and `ttl`. A frame that arrived (or went out) in order costs one entry
/// and one reference to its buffer, not one per message.
#[derive(Debug, Clone)]
pub struct Run {
    pub first: u64,
    pub last: u64,
    /// As it arrived from a neighbour (a repair answer adds the hop it
    /// crosses to us), rather than as we sent it on or sent it ourselves.
    pub received: bool,
    pub hops: u8,
    pub ttl: u8,
    pub bytes: Bytes,
    pub entries: Range<usize>,
    /// An entry counts at least this much against the bound: its share of
    /// the buffer it keeps alive (0: the entries fill their buffer).
    pub share: usize,
    /// What the whole run counts against the bound.
    pub cost: usize,
}

impl Run {
    /// A run of the one message `seq` whose entry is `bytes[entry]`.
    pub fn one(seq: u64, received: bool, kept: &Kept, share: usize) -> Run {
        Run {
            first: seq,
            last: seq,
            received,
            hops: kept.hops,
            ttl: kept.ttl,
            bytes: kept.bytes.clone(),
            cost: kept_cost(kept.entry.len(), share),
            entries: kept.entry.clone(),
            share,
        }
    }

    /// Adds the message `seq` whose entry is `kept`'s if it continues the
    /// run (the next seq, with the same hops, right behind it in the same
    /// buffer); false if it does not.
    pub fn extend(&mut self, seq: u64, received: bool, kept: &Kept) -> bool {
        if seq != self.last.wrapping_add(1)
            || kept.entry.start != self.entries.end
            || received != self.received
            || (kept.hops, kept.ttl) != (self.hops, self.ttl)
            || !std::sync::Arc::ptr_eq(&kept.bytes, &self.bytes)
        {
            return false;
        }
        self.last = seq;
        self.entries.end = kept.entry.end;
        self.cost += kept_cost(kept.entry.len(), self.share);
        true
    }

    /// The run's entries with their seqs, in order.
    pub fn entries(&self) -> impl Iterator<Item = (u64, Range<usize>)> + '_ {
        let mut at = self.entries.start;
        (self.first..=self.last).map(move |seq| {
            let end = entry_end(&self.bytes, at);
            let entry = at..end;
            at = end;
            (seq, entry)
        })
    }

    /// Drops the first message; what it counted. The run must hold two or
    /// more.
    fn drop_first(&mut self) -> usize {
        let at = self.entries.start;
        let len = entry_end(&self.bytes, at) - at;
        let cost = kept_cost(len, self.share);
        self.entries.start += len;
        self.first += 1;
        self.cost -= cost;
        cost
    }
}

/// A cached message found for a REPAIR answer.
#[derive(Debug, Clone)]
pub struct Cached<'a> {
    pub seq: u64,
    pub received: bool,
    pub hops: u8,
    pub ttl: u8,
    /// Its entry: length, then payload.
    pub entry: &'a [u8],
}

/// A run of missing seqs being repaired.
#[derive(Debug, Clone)]
pub struct Hole {
    /// When its clock started: when it was seen, or when a new path to
    /// the lines was last tried (our parent for the origin went and the
    /// others were grafted, or a neighbour came up and was grafted).
    pub since: Instant,
    /// When it was seen: new paths restart its clock, but it is given up
    /// at the latest a few stall timeouts after this (never waited on
    /// forever, however often links come and go).
    pub seen: Instant,
    pub next_repair: Instant,
    /// Which neighbour (by rank) the next round-robin ask goes to.
    pub rr: usize,
    /// How many asks went out: every other one goes to the origin itself
    /// when it is a neighbour.
    pub asks: u64,
    /// We dialed the origin for it (once per hole).
    pub dialed_origin: bool,
}

impl Hole {
    pub fn new(now: Instant, first_ask: Instant) -> Hole {
        Hole {
            since: now,
            seen: now,
            next_repair: first_ask,
            rr: 0,
            asks: 0,
            dialed_origin: false,
        }
    }
}

/// What to do with a message that arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// It is the next one: deliver it, then what it unblocks.
    Deliver,
    /// Later than the next one: kept in the hold-back buffer.
    Hold,
    /// Already delivered, already held, or before a base that came from
    /// the origin's STATUS once a line from the base on was delivered (the
    /// origin's miss entry tells us if it was owed).
    Duplicate,
    /// Before a base that only the first message set: the origin sent it
    /// before the message we started with, and it can no longer be
    /// delivered in order. Reported as a gap, never dropped silently.
    Late,
    /// Later than the next one, but the hold-back buffer is full: dropped,
    /// to be repaired.
    Overflow,
}

#[derive(Debug, Default)]
pub struct Origin {
    /// Lowest seq not yet delivered; 0 = no base yet.
    pub next: u64,
    /// The first seq this node delivers of this origin.
    pub base: u64,
    /// The highest seq the origin said (STATUS) it has sent.
    pub known_sent: u64,
    /// Seqs in `base..next` skipped as gaps, never delivered: our
    /// acknowledgement says so, so that the origin counts them as lost.
    pub skipped: u64,
    /// The highest seq written out ([`super::Mesh::printed`]; 0 = none).
    pub printed: u64,
    /// Our acknowledgement says what was printed, not what was delivered
    /// ([`Origins::printing`]): `dealt` and the gaps ahead are kept.
    printing: bool,
    /// Every seq from the base up to here is printed or skipped: what an
    /// acknowledgement of what was printed covers ([`Origin::printed_ack`]).
    dealt: u64,
    /// Runs skipped beyond `dealt`, oldest first, `skipped_ahead` seqs in
    /// all: a gap is never printed, so printing passes it once it reaches
    /// the line before it; until then no acknowledgement counts it (it
    /// would claim lines skipped beyond those it covers). Two runs always
    /// have a line between them that is delivered and not yet printed, so
    /// there are at most as many as lines wait for stdout (bounded: the
    /// router stops reading frames while stdout lags).
    gaps_ahead: VecDeque<(u64, u64)>,
    skipped_ahead: u64,
    /// The base came from the first message, not from a STATUS: we do not
    /// know what the origin sent before it.
    pub base_from_msg: bool,
    /// Seqs from here up to `base - 1` were reported as a gap before we
    /// delivered anything (0 = none): the base moved up past them.
    lead_gap_from: u64,
    held: BTreeMap<u64, Kept>,
    held_bytes: usize,
    cache: VecDeque<Run>,
    cache_bytes: usize,
    pub hole: Option<Hole>,
    /// When a message of it last arrived (relayed to us).
    pub last_arrival: Option<Instant>,
    /// Seqs `first..=last` a neighbour said are over our `--max-frame`
    /// (TOO_BIG), from the next one we lack on, and the largest size it
    /// gave: given up once a later message shows they were sent
    /// ([`super::Mesh::too_big`]).
    pub too_big: Option<(u64, u64, u32)>,
    /// The origin said (an unkept entry in its STATUS) that it keeps none
    /// of its lines in `first..=last`, lines we lacked when it last heard
    /// from us: a hole starting in there is given up once each neighbour
    /// (three at most) was asked in vain, not after `--stall-timeout`.
    pub unkept: Option<(u64, u64)>,
    /// The life of the process whose lines these are (0: none yet): see
    /// [`Origin::of_life`].
    pub life: u64,
    used: u64,
}

impl Origin {
    /// Whether a message of `life` is one of this origin's lines here: of
    /// the life its STATUS gave (`announced()`, asked only while this
    /// state has no life yet; 0 if no STATUS came), or
    /// failing that of the first life a message brought. Any other life's
    /// is an earlier process's under the same id, whose seqs were the same
    /// numbers (a relay that was stopped kept it, attack41 F1), or a newer
    /// one's whose STATUS has not reached us; dropped either way (a newer
    /// one's STATUS starts this state over, and its lines are repaired).
    pub fn of_life(&mut self, life: u64, announced: impl FnOnce() -> u64) -> bool {
        if self.life == 0 {
            let announced = announced();
            if announced != 0 && life != announced {
                return false;
            }
            self.life = life;
        }
        self.life == life
    }

    /// Sets the base if there is none: from the origin's STATUS
    /// (`sent_seq + 1`) or its first message.
    pub fn start_at(&mut self, seq: u64) {
        if self.next == 0 {
            self.next = seq.max(1);
            self.base = self.next;
            self.dealt = self.base - 1;
        }
    }

    /// Stdout wrote out this origin's lines up to `seq`. False if that
    /// is not news.
    pub fn print_to(&mut self, seq: u64) -> bool {
        if seq <= self.printed {
            return false;
        }
        self.printed = seq;
        self.dealt = self.dealt.max(seq);
        self.pass_gaps();
        true
    }

    /// Our acknowledgement: (delivered, skipped). Every seq from the base
    /// up to `delivered` was delivered (printed, when acknowledging what
    /// was printed) or skipped, and `skipped` counts the skipped ones
    /// among them, none beyond.
    pub fn ack(&self) -> (u64, u64) {
        if !self.printing {
            return (self.next.saturating_sub(1), self.skipped);
        }
        let delivered = self
            .dealt
            .max(self.base.saturating_sub(1))
            .min(self.next.saturating_sub(1));
        (delivered, self.skipped - self.skipped_ahead)
    }

    /// Moves `dealt` past the skipped runs that printing has reached.
    fn pass_gaps(&mut self) {
        while let Some(&(first, last)) = self.gaps_ahead.front() {
            if first > self.dealt.saturating_add(1) {
                break;
            }
            self.dealt = self.dealt.max(last);
            self.skipped_ahead -= last + 1 - first;
            self.gaps_ahead.pop_front();
        }
    }

    /// `first..=last` (in `base..next`, above every run noted before) is
    /// skipped: acknowledged as skipped once printing passes it.
    fn note_skipped(&mut self, first: u64, last: u64) {
        if !self.printing {
            return;
        }
        match self.gaps_ahead.back_mut() {
            Some(back) if back.1.saturating_add(1) == first => back.1 = last,
            _ => self.gaps_ahead.push_back((first, last)),
        }
        self.skipped_ahead += last + 1 - first;
        self.pass_gaps();
    }

    pub fn arrive(&mut self, seq: u64, cost: usize, window: usize) -> Arrival {
        if self.next == 0 {
            self.start_at(seq);
            self.base_from_msg = true;
        } else if seq < self.base && !self.base_from_msg && self.held.is_empty() {
            // A STATUS set the base (`sent_seq + 1`) and nothing was
            // delivered or held since: the origin may have known us before
            // we knew it, and a line it read then is owed to us. Taken,
            // with the lines after it, as the base a first message sets:
            // the stream that brought it brings the rest in order. Dropped,
            // a line owed to us was a gap as soon as its origin's miss
            // entry came round, for we had delivered the lines after it by
            // then (a late joiner behind a slow path lost its first line
            // so). Not while later lines are held: another path already
            // brings those, and the lines in between may be no one's to
            // fetch for us (sent before we joined).
            self.reopen(seq);
        }
        if seq < self.base && self.base_from_msg {
            Arrival::Late
        } else if seq < self.next || self.held.contains_key(&seq) {
            Arrival::Duplicate
        } else if seq == self.next {
            Arrival::Deliver
        } else if self.held_bytes + cost > window {
            Arrival::Overflow
        } else {
            Arrival::Hold
        }
    }

    /// How many of `msgs` (this origin's, in the order they came) are the
    /// next seqs, back to back in their buffer and within their ttl (below
    /// it when `forwarding`), with nothing held back: each would be
    /// delivered as it came, so they can be taken as one stretch.
    pub fn in_order(&self, msgs: &[MsgRef], forwarding: bool) -> usize {
        if self.next == 0 || !self.held.is_empty() {
            return 0;
        }
        let (mut seq, mut end) = (self.next, msgs.first().map_or(0, |m| m.start));
        for (i, m) in msgs.iter().enumerate() {
            let fits = m.hops < m.ttl || (m.hops == m.ttl && !forwarding);
            if m.seq != seq || m.start != end || !fits || seq == u64::MAX {
                return i;
            }
            seq += 1;
            end = m.end;
        }
        msgs.len()
    }

    pub fn hold(&mut self, seq: u64, mut kept: Kept) {
        let alone = entry_cost(kept.entry.len());
        if kept.cost > alone {
            // Held alone, not by a share of the buffer it came in: the
            // hold-back buffer takes a whole window of messages, as the
            // origin's window lets that many be in flight to us.
            kept.bytes = Bytes::new(kept.bytes[kept.entry.clone()].to_vec());
            kept.entry = 0..kept.entry.len();
            kept.cost = alone;
        }
        self.held_bytes += kept.cost;
        self.held.insert(seq, kept);
    }

    /// The held message that is next, if it is there; advances `next`.
    pub fn take_next_held(&mut self) -> Option<(u64, Kept)> {
        let seq = self.next;
        let kept = self.held.remove(&seq)?;
        self.held_bytes -= kept.cost;
        // Saturating: a stranger may send seq u64::MAX.
        self.next = self.next.saturating_add(1);
        Some((seq, kept))
    }

    /// Every seq from `next` up to the last one known to be sent (held
    /// back, or what the origin's STATUS said): what this node has not
    /// delivered, if anything.
    pub fn undelivered(&self) -> Option<(u64, u64)> {
        if self.next == 0 {
            return None;
        }
        let held = self.held.keys().next_back().copied().unwrap_or(0);
        let last = self.known_sent.max(held);
        (last >= self.next).then_some((self.next, last))
    }

    /// The missing runs after the first ([`Origin::missing`]) that lie
    /// between messages held back (not those after the last one held: a
    /// stream's lines on their way would all be asked for again); at most
    /// `limit` of them.
    pub fn later_missing(&self, limit: usize) -> Vec<(u64, u64)> {
        let mut runs = Vec::new();
        let mut held = self.held.keys().copied();
        let Some(mut from) = held.next().map(|h| h + 1) else {
            return runs;
        };
        for seq in held {
            if runs.len() == limit {
                break;
            }
            if seq > from {
                runs.push((from, seq - 1));
            }
            from = seq + 1;
        }
        runs
    }

    /// The lowest cached seq, if any.
    pub fn first_cached(&self) -> Option<u64> {
        self.cache.front().map(|run| run.first)
    }

    /// The lowest held seq, if any.
    pub fn first_held(&self) -> Option<u64> {
        self.held.keys().next().copied()
    }

    /// The missing run starting at `next`, if there is one: up to the first
    /// held seq, or up to what the origin said it sent.
    pub fn missing(&self) -> Option<(u64, u64)> {
        if self.next == 0 {
            return None;
        }
        let last = match self.first_held() {
            Some(held) => held - 1,
            None => self.known_sent,
        };
        (last >= self.next).then_some((self.next, last))
    }

    /// Gives up on `next..=last`: the next seq is `last + 1`. The run
    /// counts as skipped; or, before anything was delivered, the base
    /// moves past it: the base may have come from an old STATUS, and lines
    /// before the first one owed to us must not count as lost to us (the
    /// origin tells us if some of them were owed: [`Origin::lower_base`]).
    pub fn skip_to(&mut self, last: u64) {
        let next = self.next.max(last.saturating_add(1));
        if self.next == self.base {
            if self.lead_gap_from == 0 {
                self.lead_gap_from = self.base;
            }
            self.base = next;
            self.dealt = self.dealt.max(next - 1);
        } else if next > self.next {
            self.skipped += next - self.next;
            self.note_skipped(self.next, next - 1);
        }
        self.next = next;
        // Anything held below the new next is now a duplicate.
        while let Some((&seq, _)) = self.held.first_key_value() {
            if seq >= self.next {
                break;
            }
            let kept = self.held.remove(&seq).expect("present");
            self.held_bytes -= kept.cost;
        }
    }

    /// Moves the base and `next` down to `first`, if nothing was delivered
    /// or reported since the base: lines owed to us that we took for not
    /// ours (a STATUS that overtook them). They become a hole: repaired,
    /// or reported as a gap. False if it is too late for that.
    pub fn reopen(&mut self, first: u64) -> bool {
        let fresh = self.next != 0 && self.next == self.base && self.lead_gap_from == 0;
        if !fresh || first == 0 || first >= self.base {
            return false;
        }
        // Nothing was delivered or skipped since the base: nothing noted.
        debug_assert!(self.gaps_ahead.is_empty() && self.skipped == 0);
        self.base = first;
        self.next = first;
        self.dealt = first - 1;
        true
    }

    /// Moves the base down to `first` (lines below our base that we now
    /// know were sent to us, or owed to us): they count as skipped.
    /// Returns the run to report as a gap, if any: the part not reported
    /// already.
    pub fn lower_base(&mut self, first: u64) -> Option<(u64, u64)> {
        if self.next == 0 || first == 0 || first >= self.base {
            return None;
        }
        let reported = match self.lead_gap_from {
            0 => self.base,
            from => from.max(first),
        };
        // The run starts at the new base and ends below the old one, so
        // `dealt` (never below the old base - 1) is past it already.
        self.skipped += self.base - first;
        self.base = first;
        // Reported now: from `first` on (the new run, then the old one).
        self.lead_gap_from = match self.lead_gap_from {
            0 => first,
            from => from.min(first),
        };
        (first < reported).then_some((first, reported - 1))
    }

    /// Caches a run of messages. The cache keeps at least the last
    /// `window` bytes: every line an origin's window lets be unacknowledged
    /// stays repairable. The oldest run goes whole, and only while the rest
    /// still holds a window (so the cache holds less than a window plus one
    /// run): trimming it frame by frame read each old frame's header, a
    /// cache miss per message that cost a receiver's router a quarter of
    /// its time. Only the newest run, alone over the bound, loses its
    /// oldest frames one by one.
    ///
    /// A run that counts more than its entries (its share of the buffer it
    /// came in is larger) is copied out of that buffer first, as a held
    /// message is: a read buffer keeps its size (128 KiB once busy), so a
    /// line that came alone kept 128 KiB alive, and a relay's window of
    /// such lines was a few dozen of them (attack22 F3: a neighbour back
    /// from a cut found 64 lines of a sender cached where a window held
    /// 730).
    pub fn cache(&mut self, mut run: Run, window: usize) {
        let count = (run.last - run.first + 1) as usize;
        let alone = entries_cost(run.entries.len(), count);
        if run.cost > alone {
            run.bytes = Bytes::new(run.bytes[run.entries.clone()].to_vec());
            run.entries = 0..run.entries.len();
            run.share = 0;
            run.cost = alone;
        }
        self.cache_bytes += run.cost;
        self.cache.push_back(run);
        while self.cache_bytes > window {
            let newest_alone = self.cache.len() == 1;
            let Some(front) = self.cache.front_mut() else {
                break;
            };
            if !newest_alone {
                if self.cache_bytes - front.cost < window {
                    break;
                }
                self.cache_bytes -= front.cost;
                self.cache.pop_front();
            } else if front.first == front.last {
                self.cache_bytes -= front.cost;
                self.cache.pop_front();
            } else {
                self.cache_bytes -= front.drop_first();
            }
        }
    }

    /// Cached messages with seqs in `from..=to`, in seq order, each once.
    pub fn cached(&self, from: u64, to: u64) -> Vec<Cached<'_>> {
        let mut found: Vec<Cached<'_>> = Vec::new();
        for run in &self.cache {
            if run.last < from || run.first > to {
                continue;
            }
            for (seq, entry) in run.entries() {
                if (from..=to).contains(&seq) {
                    found.push(Cached {
                        seq,
                        received: run.received,
                        hops: run.hops,
                        ttl: run.ttl,
                        entry: &run.bytes[entry],
                    });
                }
            }
        }
        found.sort_by_key(|c| c.seq);
        found.dedup_by_key(|c| c.seq);
        found
    }

    /// Bytes this origin holds back and caches, as the window counts them.
    pub fn footprint(&self) -> usize {
        self.held_bytes + self.cache_bytes
    }

    /// Bytes of memory this origin's held and cached messages take: what
    /// the window counts them and what each costs beyond that.
    pub fn memory(&self) -> usize {
        self.held_bytes
            + self.held.len() * HELD_OVERHEAD
            + self.cache_bytes
            + self.cache.len() * RUN_OVERHEAD
    }

    /// Frees at least `excess` bytes of [`Origin::memory`] if it holds
    /// that much: the oldest cached runs (only repairs need them), and
    /// with `held`, then the held messages furthest ahead (they are
    /// repaired again, or reported as a gap, like those a full hold-back
    /// buffer drops). Returns what it freed.
    pub fn shed(&mut self, excess: usize, held: bool) -> Shed {
        let mut shed = Shed::default();
        while shed.bytes < excess {
            let Some(run) = self.cache.pop_front() else {
                break;
            };
            self.cache_bytes -= run.cost;
            shed.bytes += run.cost + RUN_OVERHEAD;
            shed.cached += run.last - run.first + 1;
        }
        while held && shed.bytes < excess {
            let Some((_, kept)) = self.held.pop_last() else {
                break;
            };
            self.held_bytes -= kept.cost;
            shed.bytes += kept.cost + HELD_OVERHEAD;
            shed.held += 1;
        }
        shed
    }
}

/// What [`Origins::shed_to`] freed: bytes, and messages cached for
/// repairs and held back, of members, and of origins no member announced.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Shed {
    pub bytes: usize,
    pub cached: u64,
    pub held: u64,
    pub unannounced: u64,
}

impl Shed {
    /// Adds what another shedding freed.
    pub fn merge(&mut self, other: Shed) {
        self.bytes += other.bytes;
        self.cached += other.cached;
        self.held += other.held;
        self.unannounced += other.unannounced;
    }

    /// Adds what one origin's [`Origin::shed`] freed.
    fn add(&mut self, other: Shed, announced: bool) {
        self.bytes += other.bytes;
        if announced {
            self.cached += other.cached;
            self.held += other.held;
        } else {
            self.unannounced += other.cached + other.held;
        }
    }
}

/// The per-origin table, bounded to [`MAX_ORIGINS`] by least recent use.
#[derive(Debug, Default)]
pub struct Origins {
    map: HashMap<NodeId, Origin>,
    clock: u64,
    /// At least the sum of every origin's [`Origin::memory`]: each growth
    /// is added ([`Origins::grew`]), shrinking is not seen until
    /// [`Origins::shed_to`] counts it over again.
    memory: usize,
    /// Origins created from now on acknowledge what was printed
    /// ([`super::Mesh::acknowledge_printed_only`]).
    pub printing: bool,
}

impl Origins {
    pub fn get(&self, id: NodeId) -> Option<&Origin> {
        self.map.get(&id)
    }

    pub fn get_mut(&mut self, id: NodeId) -> Option<&mut Origin> {
        self.map.get_mut(&id)
    }

    /// Forgets `id`'s state: what it held and cached, where its lines
    /// stand. (The memory count only ever overestimates until the next
    /// [`Origins::shed_to`].)
    pub fn remove(&mut self, id: NodeId) {
        self.map.remove(&id);
    }

    /// The origin's state, created if there is none. When the table is
    /// full, the least recently used origin that is not `kept` makes room
    /// (the mesh keeps its members' and its own): a stranger announcing
    /// thousands of invented origins must not make us forget a member's
    /// state, and deliver its lines again or lose them. Only when every
    /// one is kept (more members than the table holds) does the least
    /// recently used of all go.
    pub fn entry(&mut self, id: NodeId, kept: impl Fn(NodeId) -> bool) -> &mut Origin {
        self.clock += 1;
        if !self.map.contains_key(&id) && self.map.len() >= MAX_ORIGINS {
            let lru = |only_unkept: bool| {
                self.map
                    .iter()
                    .filter(|(id, _)| !only_unkept || !kept(**id))
                    .min_by_key(|(_, o)| o.used)
                    .map(|(id, _)| *id)
            };
            let oldest = lru(true).or_else(|| lru(false)).expect("table is full");
            self.map.remove(&oldest);
        }
        let printing = self.printing;
        let origin = self.map.entry(id).or_insert_with(|| Origin {
            printing,
            ..Origin::default()
        });
        origin.used = self.clock;
        origin
    }

    /// As [`Origins::entry`], for an origin whose messages just arrived:
    /// when the table is full and `id` is not `kept`, `None` instead of
    /// forgetting another origin that is not kept either. So a stranger's
    /// invented origins fill the table once and no more: each is delivered
    /// once, and those beyond it never (forgotten and created again, each
    /// copy relayed back to us was delivered anew, up to 11 times). A real
    /// member announces itself (STATUS) before its lines, and is kept.
    pub fn admit(&mut self, id: NodeId, kept: impl Fn(NodeId) -> bool) -> Option<&mut Origin> {
        let full = self.map.len() >= MAX_ORIGINS;
        if full && !self.map.contains_key(&id) && !kept(id) {
            return None;
        }
        Some(self.entry(id, kept))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&NodeId, &Origin)> {
        self.map.iter()
    }

    /// Some origin's [`Origin::memory`] grew by `bytes`.
    pub fn grew(&mut self, bytes: usize) {
        self.memory = self.memory.saturating_add(bytes);
    }

    /// Caches `run` of `id`'s messages ([`Origin::cache`]), counting what
    /// it takes.
    pub fn cache(&mut self, id: NodeId, kept: impl Fn(NodeId) -> bool, run: Run, window: usize) {
        let origin = self.entry(id, kept);
        let before = origin.memory();
        origin.cache(run, window);
        let grew = origin.memory().saturating_sub(before);
        self.grew(grew);
    }

    /// Keeps what all origins hold within `budget` bytes of memory: a
    /// stranger inventing thousands of origins, each with a window of
    /// held or cached lines, must not take gigabytes. Sheds first all that
    /// origins no member announced (not `kept`) hold, then the oldest runs
    /// cached for members, and only then members' held messages (they
    /// cost a repair each), the origin holding most first each time; never
    /// `me`'s (only we hold every line of ours a member lacks).
    pub fn shed_to(&mut self, budget: usize, me: NodeId, kept: impl Fn(NodeId) -> bool) -> Shed {
        let mut shed = Shed::default();
        if self.memory <= budget {
            return shed;
        }
        self.memory = self.map.values().map(Origin::memory).sum();
        if self.memory <= budget {
            return shed;
        }
        let mut victims: Vec<(bool, usize, NodeId)> = self
            .map
            .iter()
            .filter(|(id, o)| **id != me && o.memory() > 0)
            .map(|(id, o)| (kept(*id), o.memory(), *id))
            .collect();
        // Not kept first, then the most memory first; ids break ties, so
        // that a simulation stays reproducible.
        victims.sort_unstable_by_key(|&(kept, memory, id)| (kept, std::cmp::Reverse(memory), id));
        // Members' held messages only in a second pass.
        for members_held in [false, true] {
            for &(kept, _, id) in &victims {
                if self.memory <= budget {
                    return shed;
                }
                if members_held && !kept {
                    continue;
                }
                let origin = self.map.get_mut(&id).expect("listed");
                let freed = origin.shed(self.memory - budget, !kept || members_held);
                self.memory -= freed.bytes.min(self.memory);
                shed.add(freed, kept);
            }
        }
        shed
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn kept(cost: usize) -> Kept {
        Kept {
            via: None,
            hops: 1,
            ttl: 16,
            bytes: Arc::new(vec![0; cost]),
            entry: 0..cost,
            cost,
        }
    }

    /// Gives origin `id` `cached` runs of one 100-byte line each (seqs
    /// 1..), then `held` lines held back behind a missing seq, and counts
    /// what they take.
    fn fill(
        t: &mut Origins,
        id: NodeId,
        held: u64,
        cached: u64,
        kept_ids: impl Fn(NodeId) -> bool,
    ) {
        let o = t.entry(id, kept_ids);
        o.start_at(1);
        for seq in 1..=cached {
            let mut line = kept(100);
            line.bytes = Arc::new([&[b'x'; 99][..], b"\n"].concat());
            o.cache(Run::one(seq, true, &line, 0), 1 << 20);
        }
        for seq in cached + 2..cached + 2 + held {
            o.hold(seq, kept(100));
        }
        let memory = o.memory();
        t.grew(memory);
    }

    /// Over the node-wide bound, what goes first is what an origin no
    /// member announced holds, then the oldest runs cached for a member
    /// (its held lines last); never our own lines.
    #[test]
    fn shedding_takes_strangers_first_then_members_caches_never_our_own() {
        const ME: NodeId = 1;
        const MEMBER: NodeId = 2;
        const STRANGER: NodeId = 3;
        let kept_ids = |id: NodeId| id != STRANGER;
        let mut t = Origins::default();
        fill(&mut t, ME, 0, 10, kept_ids);
        fill(&mut t, MEMBER, 5, 10, kept_ids);
        fill(&mut t, STRANGER, 5, 10, kept_ids);
        let memory = |t: &Origins, id| t.get(id).unwrap().memory();
        let (me, member, stranger) = (memory(&t, ME), memory(&t, MEMBER), memory(&t, STRANGER));
        // Room for everything but the stranger's and half the member's
        // cache.
        let budget = me + member - 5 * (100 + RUN_OVERHEAD);
        let shed = t.shed_to(budget, ME, kept_ids);
        assert_eq!(memory(&t, STRANGER), 0);
        assert_eq!(memory(&t, ME), me, "our own lines stay");
        let o = t.get(MEMBER).unwrap();
        assert_eq!(o.held.len(), 5, "the member's held lines stay");
        assert_eq!(o.cached(1, 10).len(), 5, "its oldest cached runs went");
        assert_eq!(o.cached(6, 10).len(), 5);
        assert_eq!((shed.cached, shed.held, shed.unannounced), (5, 0, 15));
        assert_eq!(shed.bytes, stranger + member - memory(&t, MEMBER));
        assert!(me + memory(&t, MEMBER) <= budget);
    }

    /// Members' held messages go only once no member has cached runs
    /// left to drop: each costs a repair, a cached one costs nothing
    /// until a neighbour asks (and the origin still has it). An honest
    /// group of 17 senders at full speed lost held lines of the largest
    /// holder while others' caches stayed, and slowed enough for members
    /// to leave without a sender's last lines.
    #[test]
    fn members_held_messages_go_only_after_every_members_cached_runs() {
        let mut t = Origins::default();
        for (id, held, cached) in [(2, 20, 2), (3, 0, 10)] {
            fill(&mut t, id, held, cached, |_| true);
        }
        let total: usize = t.iter().map(|(_, o)| o.memory()).sum();
        let shed = t.shed_to(total - 8 * (100 + RUN_OVERHEAD), 1, |_| true);
        assert_eq!((shed.cached, shed.held, shed.unannounced), (8, 0, 0));
        assert_eq!(t.get(2).unwrap().held.len(), 20);
        assert_eq!(t.get(3).unwrap().cached(1, 10).len(), 4);
    }

    #[test]
    fn arrivals_are_sorted_into_deliver_hold_duplicate_and_overflow() {
        let mut o = Origin::default();
        assert_eq!(
            o.arrive(5, 10, 25),
            Arrival::Deliver,
            "the first sets the base"
        );
        assert_eq!(o.base, 5);
        o.next = 6;
        assert_eq!(o.arrive(5, 10, 25), Arrival::Duplicate);
        assert_eq!(
            o.arrive(4, 10, 25),
            Arrival::Late,
            "before a base a message set"
        );
        assert_eq!(o.arrive(8, 10, 25), Arrival::Hold);
        o.hold(8, kept(10));
        assert_eq!(o.arrive(8, 10, 25), Arrival::Duplicate, "already held");
        assert_eq!(o.arrive(9, 10, 25), Arrival::Hold);
        o.hold(9, kept(10));
        assert_eq!(
            o.arrive(10, 10, 25),
            Arrival::Overflow,
            "hold-back bounded by the window"
        );
        assert_eq!(o.missing(), Some((6, 7)));
        o.skip_to(7);
        assert_eq!(o.skipped, 2);
        assert_eq!(o.take_next_held().map(|(s, _)| s), Some(8));
        assert_eq!(o.take_next_held().map(|(s, _)| s), Some(9));
        assert_eq!(o.next, 10);
        assert_eq!(o.footprint(), 0);
    }

    #[test]
    fn lines_below_the_base_are_late_only_when_a_message_set_it() {
        let mut o = Origin::default();
        o.start_at(5); // from a STATUS: earlier lines may be ours
        assert_eq!(
            o.arrive(3, 10, 100),
            Arrival::Deliver,
            "nothing delivered yet"
        );
        assert_eq!((o.base, o.next), (3, 3));
        o.next = 4;
        assert_eq!(
            o.arrive(2, 10, 100),
            Arrival::Duplicate,
            "too late: not ours"
        );
        let mut o = Origin::default();
        o.start_at(5);
        assert_eq!(o.arrive(7, 10, 100), Arrival::Hold);
        o.hold(7, kept(10));
        assert_eq!(
            o.arrive(3, 10, 100),
            Arrival::Duplicate,
            "later lines held: not taken"
        );
        let mut o = Origin::default();
        assert_eq!(o.arrive(5, 10, 100), Arrival::Deliver);
        o.next = 6;
        assert_eq!(o.arrive(3, 10, 100), Arrival::Late);
        assert_eq!(o.lower_base(3), Some((3, 4)));
        assert_eq!((o.base, o.skipped), (3, 2));
        assert_eq!(o.arrive(4, 10, 100), Arrival::Duplicate, "reported once");
        assert_eq!(o.lower_base(3), None);
    }

    #[test]
    fn lines_owed_below_the_base_reopen_only_before_anything_was_delivered() {
        let mut o = Origin::default();
        o.start_at(51); // a STATUS overtook lines 1..=50
        assert!(o.reopen(1));
        assert_eq!((o.base, o.next, o.missing()), (1, 1, None));
        o.known_sent = 50;
        assert_eq!(o.missing(), Some((1, 50)));
        let mut o = Origin::default();
        o.start_at(51);
        o.next = 52; // 51 delivered: too late, a gap
        assert!(!o.reopen(1));
    }

    #[test]
    fn a_hole_before_the_first_delivery_moves_the_base_and_is_reported_once() {
        let mut o = Origin::default();
        o.start_at(3); // from an old STATUS
        o.known_sent = 9;
        assert_eq!(o.missing(), Some((3, 9)));
        o.skip_to(6); // reported as gap 3..=6
        assert_eq!((o.base, o.next, o.skipped), (7, 7, 0), "not ours to count");
        // The origin says we owed from 5: 5 and 6 are skipped, and were
        // reported already.
        assert_eq!(o.lower_base(5), None);
        assert_eq!((o.base, o.skipped), (5, 2));
        // Told we owed from 1: 1 and 2 are news.
        assert_eq!(o.lower_base(1), Some((1, 2)));
        assert_eq!((o.base, o.skipped), (1, 6));
    }

    #[test]
    fn printing_passes_a_gap_once_it_reaches_the_line_before_it() {
        let mut t = Origins {
            printing: true,
            ..Origins::default()
        };
        let o = t.entry(7, |_| false);
        o.start_at(1);
        o.next = 4; // 1..=3 delivered
        o.skip_to(5); // 4 and 5 a gap
        o.next = 8; // 6 and 7 delivered
        o.skip_to(9); // 8 and 9 a gap
        assert_eq!(o.ack(), (0, 0), "nothing printed");
        assert!(o.print_to(2));
        assert_eq!(o.ack(), (2, 0));
        assert!(o.print_to(3));
        assert_eq!(o.ack(), (5, 2), "past the gap after 3");
        assert!(!o.print_to(3), "no news");
        assert!(o.print_to(7));
        assert_eq!(o.ack(), (9, 4), "past the gap at the end");
        assert!(o.gaps_ahead.is_empty());
        // Acknowledging on delivery: everything delivered or skipped, and
        // no runs kept (nothing would ever pass them).
        let mut o = Origin::default();
        o.start_at(1);
        o.next = 4;
        o.skip_to(5);
        assert_eq!(o.ack(), (5, 2));
        assert!(o.gaps_ahead.is_empty());
    }

    /// The messages `seqs`, each counting `cost` ([`entry_cost`]: an entry
    /// 22 bytes shorter, its newline included) and starting with its seq,
    /// back to back in one buffer.
    fn frames(seqs: std::ops::RangeInclusive<u64>, cost: usize) -> (Bytes, Vec<Kept>) {
        let len = cost - crate::frame::ENTRY_OVERHEAD;
        let mut buf = Vec::new();
        let mut at = Vec::new();
        for seq in seqs {
            let start = buf.len();
            let mut payload = format!("{seq:08}").into_bytes();
            payload.resize(len - 1, b'x');
            crate::frame::put_entry(&mut buf, &payload);
            at.push(start..buf.len());
        }
        let bytes = Arc::new(buf);
        let kept = at
            .into_iter()
            .map(|entry| Kept {
                via: None,
                hops: 1,
                ttl: 16,
                bytes: bytes.clone(),
                cost: entry_cost(entry.len()),
                entry,
            })
            .collect();
        (bytes, kept)
    }

    fn seqs(found: &[Cached<'_>]) -> Vec<u64> {
        found
            .iter()
            .map(|c| {
                assert_eq!(c.entry[..8], *format!("{:08}", c.seq).as_bytes());
                c.seq
            })
            .collect()
    }

    #[test]
    fn the_cache_keeps_the_last_window_bytes() {
        let mut o = Origin::default();
        let (_, at) = frames(1..=10, 100);
        for seq in 1..=10u64 {
            o.cache(Run::one(seq, true, &at[seq as usize - 1], 0), 350);
        }
        // At least the last 350 bytes, in whole runs: four of them.
        assert_eq!(seqs(&o.cached(1, 10)), [7, 8, 9, 10]);
        assert!(o.cached(1, 6).is_empty());
        assert_eq!(o.cached(8, 8).len(), 1);
        assert_eq!(o.footprint(), 400);
    }

    #[test]
    fn a_run_is_one_entry_and_loses_its_oldest_frames_one_by_one() {
        let mut o = Origin::default();
        let (_, at) = frames(1..=10, 100);
        let mut run = Run::one(1, true, &at[0], 0);
        for seq in 2..=10u64 {
            assert!(run.extend(seq, true, &at[seq as usize - 1]));
        }
        assert!(!run.extend(12, true, &at[9]), "not the next seq");
        o.cache(run, 350);
        assert_eq!(o.cache.len(), 1);
        assert_eq!(seqs(&o.cached(1, 10)), [8, 9, 10]);
        assert_eq!(o.footprint(), 300);
        // A run that keeps alive a larger share of its buffer than its
        // entries is copied out of it, and counts its entries only: a
        // window holds as many lines as a window of them takes.
        let mut o = Origin::default();
        let mut run = Run::one(1, false, &at[0], 150);
        assert!(!run.extend(2, true, &at[1]), "received and sent do not mix");
        assert!(run.extend(2, false, &at[1]));
        assert_eq!(run.cost, 300);
        let shared = run.bytes.clone();
        o.cache(run, 200);
        assert_eq!((seqs(&o.cached(1, 2)), o.footprint()), (vec![1, 2], 200));
        let copy = &o.cache[0];
        assert!(!Arc::ptr_eq(&copy.bytes, &shared));
        assert_eq!(copy.bytes.len(), copy.entries.len());
        assert_eq!(o.cached(1, 2)[1].entry, &shared[at[1].entry.clone()]);
        // Runs overlapping in seq are answered in order, each seq once.
        let (_, at2) = frames(2..=3, 100);
        o.cache(Run::one(3, true, &at2[1], 0), 1000);
        o.cache(Run::one(2, true, &at2[0], 0), 1000);
        assert_eq!(seqs(&o.cached(1, 9)), [1, 2, 3]);
    }

    #[test]
    fn an_older_run_goes_whole_without_reading_its_frames() {
        let mut o = Origin::default();
        let (_, at) = frames(1..=6, 100);
        let mut old = Run::one(1, true, &at[0], 0);
        for seq in 2..=3u64 {
            assert!(old.extend(seq, true, &at[seq as usize - 1]));
        }
        let mut new = Run::one(4, true, &at[3], 0);
        for seq in 5..=6u64 {
            assert!(new.extend(seq, true, &at[seq as usize - 1]));
        }
        let mut both = Origin::default();
        both.cache(old.clone(), 500);
        both.cache(new.clone(), 500);
        // Without the older run less than a window is left: it stays, so
        // every line of the last window can still be repaired.
        assert_eq!(seqs(&both.cached(1, 6)), [1, 2, 3, 4, 5, 6]);
        o.cache(old, 300);
        o.cache(new, 300);
        // The newer run alone holds the window: the older one goes whole.
        assert_eq!(seqs(&o.cached(1, 6)), [4, 5, 6]);
        assert_eq!(o.footprint(), 300);
    }

    #[test]
    fn the_origin_table_forgets_the_least_recently_used() {
        let mut t = Origins::default();
        for id in 0..MAX_ORIGINS as u64 {
            t.entry(id, |_| false).next = 1;
        }
        t.entry(0, |_| false); // used again: now the most recent
        t.entry(u64::MAX, |_| false);
        assert_eq!(t.len(), MAX_ORIGINS);
        assert!(t.get(0).is_some());
        assert!(t.get(1).is_none(), "the least recently used went");
    }

    #[test]
    fn a_full_origin_table_forgets_an_origin_it_does_not_keep_first() {
        let mut t = Origins::default();
        // 1 and 2 are kept (members), and the least recently used.
        for id in 1..=MAX_ORIGINS as u64 {
            t.entry(id, |_| false).next = 1;
        }
        let kept = |id: NodeId| id <= 2;
        for id in 10_000..20_000 {
            t.entry(id, kept);
        }
        assert_eq!(t.len(), MAX_ORIGINS);
        assert!(t.get(1).is_some() && t.get(2).is_some());
        assert!(t.get(3).is_none());
        // All kept: the least recently used of all goes.
        let mut t = Origins::default();
        for id in 1..=MAX_ORIGINS as u64 {
            t.entry(id, |_| true);
        }
        t.entry(0, |_| true);
        assert!(t.get(1).is_none());
    }
}
