//! Frames, the unit of the wire protocol, and a pure codec for them.
//!
//! Nothing here does I/O. [`Frame::encode`] appends bytes to a `Vec`;
//! [`decode`] looks at a byte slice and says one of three things: here is a
//! whole frame and how many bytes it used, not enough bytes yet (`Ok(None)`,
//! an expected answer on a stream), or these bytes can never be a valid frame.
//! `PROTOCOL.md` describes every byte; the tests at the bottom check its
//! test vectors.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::{Range, RangeInclusive};

use byteorder::{BigEndian, ByteOrder};

/// A node's random 64-bit identity, chosen at start-up.
pub type NodeId = u64;

/// The first bytes of every HELLO body: tells a peercat peer from a stranger.
pub const MAGIC: [u8; 4] = *b"PCAT";
/// The one protocol version this build speaks (5: TOO_BIG; 4: MSG carries
/// a run of messages; version 3's one-message MSG is not spoken).
pub const VERSION: u16 = 8;
/// The default `--ttl`: the most links a message crosses.
pub const DEFAULT_TTL: u8 = 16;
/// Size of the length prefix in front of every frame.
pub const LEN_PREFIX: usize = 4;
/// Bytes in front of a MSG frame's entries: length, type, origin, first
/// sequence, hops, ttl, life.
pub const MSG_HEADER_LEN: usize = LEN_PREFIX + 1 + 8 + 8 + 1 + 1 + 8;
/// The longest MSG frame (length field) that carries two messages or more:
/// every node takes it, whatever its `--max-frame` (it is below
/// [`MAX_STATUS_LEN`]); a message too long to share a frame goes alone.
pub const MAX_RUN_LEN: usize = 64 * 1024;
/// The most messages one MSG frame may carry; more is a protocol error.
/// Each message a reader takes from a frame becomes a reference of its own
/// (48 bytes, and work for the router), so a frame of newlines must not
/// make a million of them. 4096 is about what a run of 15-byte lines fills
/// [`MAX_RUN_LEN`] with: longer lines fill a frame by its bytes first, and
/// shorter ones pay a header (31 bytes) per 4096 lines at most, under 1%
/// of their bytes. Keep it in the error text below.
pub const MAX_RUN_ENTRIES: usize = 4096;
/// What a message counts against the windows, the hold-back buffers and
/// the caches beyond its entry's bytes: a version 3 frame's header less
/// the newline (the header has grown since, by the life), so that an
/// empty line counts 23 bytes, as its frame did then. A message held back
/// costs a node about 200 bytes whatever its length (its entry in the
/// hold-back map and a copy of its own: 205 measured for an empty one),
/// one cached alone about 64. Counted at its
/// one byte, a window (4 MiB) of a stranger's empty lines held back behind
/// a jump in seq was four million messages, some 800 MB per origin; at 23
/// it is 182,361, about 37 MB, as in version 3. Counting all 200 would
/// shrink the window of honest short lines as much (a 64-byte line would
/// count 265 bytes, not 87), and the window bounds what an origin has in
/// flight: a window per round of acknowledgements.
pub const ENTRY_OVERHEAD: usize = 22;
/// Where the `hops` byte sits in an encoded MSG frame (length prefix
/// included): a relay rewrites it in place.
pub const MSG_HOPS_AT: usize = LEN_PREFIX + 1 + 8 + 8;
/// Where the `life` of an encoded MSG frame starts (length prefix
/// included).
pub const MSG_LIFE_AT: usize = MSG_HOPS_AT + 2;
/// The most addresses a STATUS or PEERS entry list may carry per member.
pub const MAX_STATUS_ADDRS: usize = 8;
/// The most acknowledgement entries one STATUS may carry.
pub const MAX_STATUS_ACKS: usize = 4096;
/// The most "you missed" entries one STATUS may carry.
pub const MAX_STATUS_MISSES: usize = 64;
/// The most entries one PEERS frame may carry.
pub const MAX_PEERS_ENTRIES: usize = 32;
/// The longest reason a DOWN may carry (its length is one byte).
pub const MAX_DOWN_REASON: usize = 255;
/// STATUS body bytes before the name: member, status_seq, hops, ttl,
/// sent_seq, flags, life, keepalive, name_len.
const STATUS_FIXED: usize = 8 + 8 + 1 + 1 + 8 + 1 + 8 + 2 + 1;
/// Bytes of one encoded address: family, IPv6 address, port (the largest).
const MAX_ADDR_LEN: usize = 1 + 16 + 2;
/// Bytes of one acknowledgement entry: origin, base, delivered, skipped,
/// life.
const ACK_LEN: usize = 40;
/// Bytes of one "you missed" entry: member, first, last.
const MISS_LEN: usize = 24;
/// Length field of the largest STATUS: every node must be able to take it,
/// whatever its `--max-frame`, or membership would break on small limits.
pub const MAX_STATUS_LEN: usize = 1
    + STATUS_FIXED
    + MAX_NAME_LEN
    + 1
    + MAX_STATUS_ADDRS * MAX_ADDR_LEN
    + 2
    + MAX_STATUS_ACKS * ACK_LEN
    + 2
    + MAX_STATUS_MISSES * MISS_LEN;
/// STATUS flag: this member forwards nothing (`--no-relay`).
pub const FLAG_NO_RELAY: u8 = 1;
/// STATUS flag: this member is leaving the group politely.
pub const FLAG_LEAVING: u8 = 2;
/// The longest node name a HELLO can carry (its length is one byte).
pub const MAX_NAME_LEN: usize = 255;
/// The longest reason a BYE may carry.
pub const MAX_BYE_REASON: usize = 255;
/// Length field of the largest HELLO. It is the only frame accepted before
/// the handshake, so a stranger can never make us buffer more than this.
pub const MAX_HELLO_LEN: usize = 1 + HELLO_FIXED + MAX_NAME_LEN;
/// The keepalive a HELLO may announce, in seconds: the bounds of
/// `--keepalive`. Zero would mean pinging without pause; more than an hour
/// would let a stranger hold a connection open for days.
pub const KEEPALIVE_SECS: RangeInclusive<u16> = 1..=3600;

/// A `--keepalive` as HELLO and STATUS give it: whole seconds within
/// [`KEEPALIVE_SECS`] (the command line allows no other).
pub fn keepalive_secs(keepalive: std::time::Duration) -> u16 {
    let secs = keepalive.as_secs().clamp(
        (*KEEPALIVE_SECS.start()).into(),
        (*KEEPALIVE_SECS.end()).into(),
    );
    secs as u16
}
/// The `max_frame` a HELLO may announce: the bounds of `--max-frame`. Zero
/// would make every message too big for that peer.
pub const MAX_FRAME: RangeInclusive<u32> = 1..=1 << 30;
/// HELLO body bytes before the name: magic, version, node id, listen port,
/// max frame, keepalive, name length.
const HELLO_FIXED: usize = 4 + 2 + 8 + 2 + 4 + 2 + 1;

/// Frame type bytes.
pub mod kind {
    pub const HELLO: u8 = 0x01;
    pub const MSG: u8 = 0x02;
    pub const PING: u8 = 0x03;
    pub const PONG: u8 = 0x04;
    pub const BYE: u8 = 0x05;
    pub const ACCEPT: u8 = 0x06;
    pub const STATUS: u8 = 0x07;
    pub const DOWN: u8 = 0x08;
    pub const REPAIR: u8 = 0x09;
    pub const PEERS: u8 = 0x0a;
    pub const PRUNE: u8 = 0x0b;
    pub const GRAFT: u8 = 0x0c;
    pub const TOO_BIG: u8 = 0x0d;
}

/// What `count` messages whose entries (payloads and newlines) are
/// `entries_len` bytes in all count against a window, a hold-back buffer
/// or a cache: [`ENTRY_OVERHEAD`] each beyond their bytes. The one
/// measure of messages for the flow control, on the sender and on every
/// receiver alike (PROTOCOL.md, "Flow control").
#[inline]
pub fn entries_cost(entries_len: usize, count: usize) -> usize {
    entries_len + count * ENTRY_OVERHEAD
}

/// What one message whose entry is `entry_len` bytes (its payload and
/// newline) counts: [`entries_cost`] of one.
#[inline]
pub fn entry_cost(entry_len: usize) -> usize {
    entries_cost(entry_len, 1)
}

/// The largest length field a node with `--max-frame max_frame` accepts
/// after the handshake: a MSG frame of one message whose payload is exactly
/// `max_frame` bytes, or the largest STATUS, whichever is longer.
pub fn frame_limit(max_frame: usize) -> usize {
    (MSG_HEADER_LEN - LEN_PREFIX + max_frame + 1).max(MAX_STATUS_LEN)
}

/// What a node says about itself when a connection opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub node_id: NodeId,
    /// The port this node accepts peers on; 0 when it does not listen.
    pub listen_port: u16,
    /// The largest message payload this node accepts, so that senders can
    /// skip a message for this peer instead of breaking the connection;
    /// within [`MAX_FRAME`].
    pub max_frame: u32,
    /// How often this node pings, in seconds. Informational: a receiver
    /// times silence on its own keepalive; checked against
    /// [`KEEPALIVE_SECS`] all the same.
    pub keepalive_secs: u16,
    /// Display name; at most 255 bytes of UTF-8 that [`name_problem`]
    /// accepts.
    pub name: String,
}

/// One decoded frame. Payloads borrow from the buffer they were decoded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    Hello(Hello),
    /// A MSG frame holding one message: one line of some node's stdin.
    Msg {
        origin: NodeId,
        seq: u64,
        /// Links this copy has crossed when it arrives; the origin writes 1.
        hops: u8,
        /// The origin's `--ttl`: a relay forwards a copy only if `hops < ttl`.
        ttl: u8,
        /// Which process under the origin's id read it (its STATUS says
        /// the same): a restarted member counts its seqs from 1 again.
        life: u64,
        payload: &'a [u8],
    },
    /// A MSG frame holding two messages or more: `origin`'s seqs `seq..`,
    /// all with these hops and ttl; `entries` are the encoded entries
    /// (each a length and a payload), read with [`entries`].
    Run {
        origin: NodeId,
        seq: u64,
        hops: u8,
        ttl: u8,
        life: u64,
        /// How many entries (at least 2).
        count: u64,
        entries: &'a [u8],
    },
    Ping(u64),
    Pong(u64),
    /// "I am closing this connection politely, and why."
    Bye(&'a [u8]),
    /// "You are my peer": the answer to a HELLO that the node admits. Each
    /// side counts the other as a peer only once it has received this, so a
    /// refused connection (BYE instead) is never mistaken for one.
    Accept,
    /// A member's announcement and acknowledgements, flooded.
    Status(Status),
    /// "This member is gone", flooded.
    Down {
        member: NodeId,
        /// The last status_seq the reporter saw from the member.
        status_seq: u64,
        hops: u8,
        ttl: u8,
        /// Raw text; made printable by whoever prints it.
        reason: &'a [u8],
    },
    /// "Send me `origin`'s messages `from_seq..=to_seq` if you still have them."
    Repair {
        origin: NodeId,
        from_seq: u64,
        to_seq: u64,
    },
    /// Other members to dial, sent before the BYE of a refusal.
    Peers(Vec<(NodeId, SocketAddr)>),
    /// "A copy of `origin`'s messages reached me through you that I had
    /// already: stop relaying that origin's messages to me" (the tree).
    Prune {
        origin: NodeId,
    },
    /// "Send me `origin`'s messages `from_seq..=to_seq` if you still have
    /// them, and relay its new ones to me again" (the tree; a REPAIR that
    /// undoes a PRUNE). `to_seq` may be `u64::MAX`: all you have.
    Graft {
        origin: NodeId,
        from_seq: u64,
        to_seq: u64,
    },
    /// "`origin`'s message `seq`, of `size` bytes, is over your
    /// `--max-frame`: it will not come to you from me" (in the place of
    /// the message in the stream; not forwarded).
    TooBig {
        origin: NodeId,
        seq: u64,
        size: u32,
    },
}

/// The body of a STATUS frame.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Status {
    pub member: NodeId,
    /// Counts the member's STATUS frames: a newer one replaces an older one.
    pub status_seq: u64,
    pub hops: u8,
    pub ttl: u8,
    /// The highest message seq this member has sent; 0 = none.
    pub sent_seq: u64,
    /// [`FLAG_NO_RELAY`], [`FLAG_LEAVING`]; other bits are ignored.
    pub flags: u8,
    /// Which process under the member's id this is: random, never 0, the
    /// same in its MSG frames. A new one is a new life (it restarted).
    pub life: u64,
    /// The member's `--keepalive`, in seconds (within
    /// [`KEEPALIVE_SECS`]): it floods a STATUS at least this often, so
    /// members time its silence on it (or on their own, if longer).
    pub keepalive_secs: u16,
    /// Validated like a HELLO name.
    pub name: String,
    /// At most [`MAX_STATUS_ADDRS`]; an unspecified IP means "the address
    /// my neighbour sees me at".
    pub addrs: Vec<SocketAddr>,
    /// At most [`MAX_STATUS_ACKS`].
    pub acks: Vec<Ack>,
    /// At most [`MAX_STATUS_MISSES`]: members this origin owed lines that
    /// they provably never delivered (their base is above what they owed).
    pub misses: Vec<Miss>,
}

/// "I deliver `origin`'s messages from `base` on, and have dealt with every
/// one up to `delivered`: delivered it, or skipped it as part of a gap;
/// `skipped` of them were skipped" (`base - 1 <= delivered`, `skipped <=
/// delivered - base + 1`), of the origin's process `life` (the seqs of a
/// process restarted under the same id start at 1 again).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ack {
    pub origin: NodeId,
    pub base: u64,
    pub delivered: u64,
    pub skipped: u64,
    pub life: u64,
}

/// In an origin's STATUS: "`member` was owed my lines `first..=last` but
/// acknowledges a base above them: it never got them"; or, with `last` 0
/// (a start entry, [`Miss::is_start`]), "`member` is owed my lines from
/// `first` on, none before: it waits for earlier ones and delivered none".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Miss {
    pub member: NodeId,
    pub first: u64,
    pub last: u64,
}

impl Miss {
    /// A start entry: the member's lines from this origin start at
    /// `first` (those before were read before the origin knew it).
    pub fn start(member: NodeId, first: u64) -> Miss {
        Miss {
            member,
            first,
            last: 0,
        }
    }

    pub fn is_start(&self) -> bool {
        self.last == 0
    }
}

/// Bytes that can never become a valid frame. The connection is beyond repair.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// A length prefix of zero: every frame has at least a type byte.
    Empty,
    /// The length prefix is over the limit; found before anything is buffered.
    TooLong { len: usize, max: usize },
    /// A type byte this version does not know.
    UnknownType(u8),
    /// A HELLO that does not start with `PCAT`.
    BadMagic([u8; 4]),
    /// A HELLO from a protocol version this build does not speak.
    UnsupportedVersion(u16),
    /// A HELLO field outside the bounds this protocol allows.
    OutOfBounds {
        field: &'static str,
        value: u64,
        min: u64,
        max: u64,
    },
    /// A known frame type whose body has the wrong shape.
    Malformed {
        kind: &'static str,
        reason: &'static str,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Empty => write!(f, "empty frame (length prefix 0)"),
            FrameError::TooLong { len, max } => {
                write!(f, "frame length {len} exceeds the limit of {max} bytes")
            }
            FrameError::UnknownType(t) => write!(f, "unknown frame type 0x{t:02x}"),
            FrameError::BadMagic(m) => {
                write!(
                    f,
                    "bad magic {:?} (expected \"PCAT\")",
                    m.escape_ascii().to_string()
                )
            }
            FrameError::UnsupportedVersion(v) => write!(
                f,
                "unsupported protocol version {v} (this build speaks version {VERSION})"
            ),
            FrameError::OutOfBounds {
                field,
                value,
                min,
                max,
            } => write!(
                f,
                "HELLO announces {field} {value}, outside the allowed {min}..={max}"
            ),
            FrameError::Malformed { kind, reason } => write!(f, "malformed {kind} frame: {reason}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Decodes the frame at the start of `buf`.
///
/// `max_len` bounds the length prefix; it is checked as soon as the four
/// prefix bytes are there, before waiting for (or buffering) the rest.
/// Returns the frame and the number of bytes it used, `Ok(None)` when `buf`
/// holds only part of a frame, or the reason the bytes are not a frame.
pub fn decode(buf: &[u8], max_len: usize) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
    let Some(len) = peek_len(buf, max_len)? else {
        return Ok(None);
    };
    let Some(frame) = buf.get(LEN_PREFIX..LEN_PREFIX + len) else {
        return Ok(None);
    };
    let body = &frame[1..];
    let decoded = match frame[0] {
        kind::HELLO => Frame::Hello(decode_hello(body)?),
        kind::MSG => decode_msg(body)?,
        kind::PING => Frame::Ping(decode_token(body, "ping")?),
        kind::PONG => Frame::Pong(decode_token(body, "pong")?),
        kind::BYE => {
            if body.len() > MAX_BYE_REASON {
                return Err(malformed("bye", "reason longer than 255 bytes"));
            }
            Frame::Bye(body)
        }
        kind::ACCEPT => {
            if !body.is_empty() {
                return Err(malformed("accept", "body is not empty"));
            }
            Frame::Accept
        }
        kind::STATUS => Frame::Status(decode_status(body)?),
        kind::DOWN => decode_down(body)?,
        kind::REPAIR => decode_repair(body)?,
        kind::PEERS => decode_peers(body)?,
        kind::PRUNE => decode_prune(body)?,
        kind::GRAFT => decode_graft(body)?,
        kind::TOO_BIG => decode_too_big(body)?,
        other => return Err(FrameError::UnknownType(other)),
    };
    Ok(Some((decoded, LEN_PREFIX + len)))
}

fn decode_msg(body: &[u8]) -> Result<Frame<'_>, FrameError> {
    let m = decode_msg_body(body)?;
    let count = m.count();
    Ok(if count == 1 {
        Frame::Msg {
            origin: m.origin,
            seq: m.seq,
            hops: m.hops,
            ttl: m.ttl,
            life: m.life,
            payload: &m.entries[..m.entries.len() - 1],
        }
    } else {
        Frame::Run {
            origin: m.origin,
            seq: m.seq,
            hops: m.hops,
            ttl: m.ttl,
            life: m.life,
            count,
            entries: m.entries,
        }
    })
}

/// The fields of one MSG frame (a run of one origin's consecutive
/// messages), borrowed from the buffer: what [`decode_msg_frame`] returns
/// instead of a whole [`Frame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Msg<'a> {
    pub origin: NodeId,
    /// The first message's seq; the others follow it by one.
    pub seq: u64,
    pub hops: u8,
    pub ttl: u8,
    pub life: u64,
    /// The entries, checked: read them with [`entries`] or [`entry_ends`].
    pub entries: &'a [u8],
}

impl Msg<'_> {
    /// How many messages: at least 1. Counted when asked (a reader finds
    /// each entry's end anyway).
    pub fn count(&self) -> u64 {
        count_newlines(self.entries)
    }
}

/// Decodes the frame at the start of `buf` if it is a whole MSG frame,
/// checked exactly as [`decode`] checks it; `Ok(None)` for anything else
/// (another type, or not all there yet: ask [`decode`]). The readers' hot
/// path: a `Frame` is a large value, and moving one out of `decode` per
/// frame was most of a reader's own work. The entries start at
/// `MSG_HEADER_LEN` in `buf`.
#[inline]
pub fn decode_msg_frame(
    buf: &[u8],
    max_len: usize,
) -> Result<Option<(Msg<'_>, usize)>, FrameError> {
    if buf.get(LEN_PREFIX) != Some(&kind::MSG) {
        return Ok(None);
    }
    let Some(len) = peek_len(buf, max_len)? else {
        return Ok(None);
    };
    let Some(frame) = buf.get(LEN_PREFIX + 1..LEN_PREFIX + len) else {
        return Ok(None);
    };
    Ok(Some((decode_msg_body(frame)?, LEN_PREFIX + len)))
}

#[inline]
fn decode_msg_body(body: &[u8]) -> Result<Msg<'_>, FrameError> {
    const HEADER: usize = MSG_HEADER_LEN - LEN_PREFIX - 1;
    if body.len() < HEADER {
        return Err(malformed("message", "shorter than its 26-byte header"));
    }
    let (hops, ttl) = (body[16], body[17]);
    if ttl == 0 {
        return Err(malformed("message", "ttl is 0"));
    }
    let life = BigEndian::read_u64(&body[18..26]);
    if life == 0 {
        return Err(malformed("message", "life is 0"));
    }
    // Seqs start at 1 (0 means "none" in STATUS and acknowledgements).
    let seq = BigEndian::read_u64(&body[8..16]);
    if seq == 0 {
        return Err(malformed("message", "seq is 0"));
    }
    let entries = &body[HEADER..];
    check_entries(entries)?;
    // A frame holds no more messages than bytes: only one with more bytes
    // than messages allowed needs them counted.
    let count = if entries.len() > MAX_RUN_ENTRIES {
        let count = count_newlines(entries);
        if count > MAX_RUN_ENTRIES as u64 {
            return Err(malformed(
                "message",
                "its run holds more than 4096 messages",
            ));
        }
        Some(count)
    } else {
        None
    };
    // The last message's seq must be below 2^64 - 1: seqs never wrap, and
    // after 2^64 - 1 a receiver has no next seq to expect, so a message
    // with it was printed again when another copy came. Only a seq within
    // a frame's length of the top needs the messages counted.
    let most = count.unwrap_or(entries.len() as u64);
    if seq.checked_add(most).is_none()
        && seq
            .checked_add(count.unwrap_or_else(|| count_newlines(entries)))
            .is_none()
    {
        return Err(malformed("message", "its seqs run past the largest seq"));
    }
    Ok(Msg {
        origin: BigEndian::read_u64(&body[0..8]),
        seq,
        hops,
        ttl,
        life,
        entries,
    })
}

/// Checks a MSG frame's entries: each a payload and its newline, filling
/// the frame exactly (any bytes up to a newline are a payload: only the
/// last byte can be wrong).
#[inline]
fn check_entries(entries: &[u8]) -> Result<(), FrameError> {
    match entries.last() {
        None => return Err(malformed("message", "it holds no message")),
        Some(&b'\n') => {}
        // A payload cannot end the frame: each message is a line, and
        // its newline is what ends it.
        Some(_) => return Err(malformed("message", "its last message has no newline")),
    }
    Ok(())
}

/// How many newlines `bytes` holds. Counted in bytes per 255-byte block,
/// which the compiler turns into whole-vector compares and adds.
fn count_newlines(bytes: &[u8]) -> u64 {
    bytes
        .chunks(255)
        .map(|block| {
            let n = block.iter().fold(0u8, |n, &b| n + u8::from(b == b'\n'));
            u64::from(n)
        })
        .sum()
}

/// The payload of the entry at `at` in `buf`: up to its newline (entries
/// checked by the reader, or written by us: never a stranger's unchecked
/// bytes). The entry ends one byte after it.
#[inline]
pub fn entry_at(buf: &[u8], at: usize) -> Range<usize> {
    let rest = &buf[at..];
    let len = find_newline(rest).expect("entries are checked when read");
    at..at + len
}

/// Where the entry at `at` in `buf` ends: just past its newline.
#[inline]
pub fn entry_end(buf: &[u8], at: usize) -> usize {
    entry_at(buf, at).end + 1
}

/// Appends an entry: `payload` and its newline. A newline inside
/// `payload` would end a message there: callers pass lines (tests and
/// fuzzers may pass anything, to see what a receiver makes of it).
pub fn put_entry(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(payload);
    out.push(b'\n');
}

/// The payloads of checked entries, in order.
pub fn entries(entries: &[u8]) -> impl Iterator<Item = &[u8]> + '_ {
    let mut at = 0;
    entry_ends(entries).map(move |end| {
        let payload = &entries[at..end - 1];
        at = end;
        payload
    })
}

/// Where each of checked entries ends (just past its newline), in order:
/// memchr's iterator, which finds the next newline a vector at a time.
#[inline]
pub fn entry_ends(entries: &[u8]) -> impl Iterator<Item = usize> + '_ {
    memchr::memchr_iter(b'\n', entries).map(|at| at + 1)
}

/// Where the first newline of `bytes` is: by hand for a line's worth
/// (memchr's dispatch costs more than a short search), by memchr beyond.
#[inline]
fn find_newline(bytes: &[u8]) -> Option<usize> {
    const SHORT: usize = 128;
    let head = &bytes[..bytes.len().min(SHORT)];
    match head.iter().position(|&b| b == b'\n') {
        Some(at) => Some(at),
        None if bytes.len() > SHORT => memchr::memchr(b'\n', &bytes[SHORT..]).map(|at| at + SHORT),
        None => None,
    }
}

/// Reads a frame body front to back; every read names the frame kind in its
/// error, so a short body is reported as that kind's malformation.
struct Body<'a> {
    rest: &'a [u8],
    kind: &'static str,
}

impl<'a> Body<'a> {
    fn new(rest: &'a [u8], kind: &'static str) -> Self {
        Body { rest, kind }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.rest.len() < n {
            return Err(malformed(self.kind, "body ends early"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, FrameError> {
        Ok(BigEndian::read_u16(self.take(2)?))
    }

    fn u32(&mut self) -> Result<u32, FrameError> {
        Ok(BigEndian::read_u32(self.take(4)?))
    }

    fn u64(&mut self) -> Result<u64, FrameError> {
        Ok(BigEndian::read_u64(self.take(8)?))
    }

    fn addr(&mut self) -> Result<SocketAddr, FrameError> {
        let ip = match self.u8()? {
            4 => IpAddr::V4(Ipv4Addr::from(
                <[u8; 4]>::try_from(self.take(4)?).expect("4"),
            )),
            6 => IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(self.take(16)?).expect("16"),
            )),
            _ => return Err(malformed(self.kind, "address family is neither 4 nor 6")),
        };
        Ok(SocketAddr::new(ip, self.u16()?))
    }

    fn end(self) -> Result<(), FrameError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(malformed(self.kind, "bytes after the last field"))
        }
    }
}

fn decode_status(body: &[u8]) -> Result<Status, FrameError> {
    let mut b = Body::new(body, "status");
    let member = b.u64()?;
    let status_seq = b.u64()?;
    let hops = b.u8()?;
    let ttl = b.u8()?;
    let sent_seq = b.u64()?;
    let flags = b.u8()?;
    let life = b.u64()?;
    let keepalive_secs = b.u16()?;
    let name_len = b.u8()? as usize;
    let name = std::str::from_utf8(b.take(name_len)?)
        .map_err(|_| malformed("status", "name is not valid UTF-8"))?;
    if let Some(reason) = name_problem(name) {
        return Err(malformed("status", reason));
    }
    let addr_count = b.u8()? as usize;
    if addr_count > MAX_STATUS_ADDRS {
        return Err(malformed("status", "more than 8 addresses"));
    }
    let mut addrs = Vec::with_capacity(addr_count);
    for _ in 0..addr_count {
        addrs.push(b.addr()?);
    }
    let ack_count = b.u16()? as usize;
    if ack_count > MAX_STATUS_ACKS {
        return Err(malformed("status", "more than 4096 acknowledgements"));
    }
    // The count is checked against the bytes present before allocating.
    if b.rest.len() < ack_count * ACK_LEN + 2 {
        return Err(malformed(
            "status",
            "acknowledgement count does not match the frame length",
        ));
    }
    let mut acks = Vec::with_capacity(ack_count);
    for _ in 0..ack_count {
        let ack = Ack {
            origin: b.u64()?,
            base: b.u64()?,
            delivered: b.u64()?,
            skipped: b.u64()?,
            life: b.u64()?,
        };
        if ack.base == 0 || ack.delivered < ack.base - 1 {
            return Err(malformed("status", "an acknowledgement below its base"));
        }
        if ack.life == 0 {
            return Err(malformed("status", "an acknowledgement of life 0"));
        }
        if ack.skipped > ack.delivered - (ack.base - 1) {
            return Err(malformed(
                "status",
                "an acknowledgement skipped more than it covers",
            ));
        }
        acks.push(ack);
    }
    let miss_count = b.u16()? as usize;
    if miss_count > MAX_STATUS_MISSES {
        return Err(malformed("status", "more than 64 missed ranges"));
    }
    if b.rest.len() != miss_count * MISS_LEN {
        return Err(malformed(
            "status",
            "missed-range count does not match the frame length",
        ));
    }
    let mut misses = Vec::with_capacity(miss_count);
    for _ in 0..miss_count {
        let miss = Miss {
            member: b.u64()?,
            first: b.u64()?,
            last: b.u64()?,
        };
        if miss.first == 0 || (miss.last < miss.first && !miss.is_start()) {
            return Err(malformed("status", "an empty or backward missed range"));
        }
        misses.push(miss);
    }
    b.end()?;
    if ttl == 0 {
        return Err(malformed("status", "ttl is 0"));
    }
    if life == 0 {
        return Err(malformed("status", "life is 0"));
    }
    if !KEEPALIVE_SECS.contains(&keepalive_secs) {
        return Err(malformed("status", "keepalive outside 1..=3600 s"));
    }
    Ok(Status {
        member,
        status_seq,
        hops,
        ttl,
        sent_seq,
        flags,
        life,
        keepalive_secs,
        name: name.to_owned(),
        addrs,
        acks,
        misses,
    })
}

fn decode_down(body: &[u8]) -> Result<Frame<'_>, FrameError> {
    let mut b = Body::new(body, "down");
    let member = b.u64()?;
    let status_seq = b.u64()?;
    let hops = b.u8()?;
    let ttl = b.u8()?;
    let reason_len = b.u8()? as usize;
    let reason = b.take(reason_len)?;
    b.end()?;
    if ttl == 0 {
        return Err(malformed("down", "ttl is 0"));
    }
    Ok(Frame::Down {
        member,
        status_seq,
        hops,
        ttl,
        reason,
    })
}

fn decode_repair(body: &[u8]) -> Result<Frame<'_>, FrameError> {
    let (origin, from_seq, to_seq) = decode_range(body, "repair")?;
    Ok(Frame::Repair {
        origin,
        from_seq,
        to_seq,
    })
}

/// The body REPAIR and GRAFT share: an origin and a non-empty, forward
/// range of its seqs.
fn decode_range(body: &[u8], what: &'static str) -> Result<(u64, u64, u64), FrameError> {
    let mut b = Body::new(body, what);
    let origin = b.u64()?;
    let from_seq = b.u64()?;
    let to_seq = b.u64()?;
    b.end()?;
    if from_seq == 0 || to_seq < from_seq {
        return Err(malformed(what, "an empty or backward range"));
    }
    Ok((origin, from_seq, to_seq))
}

fn decode_prune(body: &[u8]) -> Result<Frame<'_>, FrameError> {
    let mut b = Body::new(body, "prune");
    let origin = b.u64()?;
    b.end()?;
    Ok(Frame::Prune { origin })
}

fn decode_graft(body: &[u8]) -> Result<Frame<'_>, FrameError> {
    let (origin, from_seq, to_seq) = decode_range(body, "graft")?;
    Ok(Frame::Graft {
        origin,
        from_seq,
        to_seq,
    })
}

fn decode_too_big(body: &[u8]) -> Result<Frame<'_>, FrameError> {
    let what = "too_big";
    let mut b = Body::new(body, what);
    let origin = b.u64()?;
    let seq = b.u64()?;
    let size = b.u32()?;
    b.end()?;
    if seq == 0 || seq == u64::MAX {
        return Err(malformed(what, "seq 0 or past the largest seq"));
    }
    Ok(Frame::TooBig { origin, seq, size })
}

fn decode_peers(body: &[u8]) -> Result<Frame<'_>, FrameError> {
    let mut b = Body::new(body, "peers");
    let count = b.u8()? as usize;
    if count > MAX_PEERS_ENTRIES {
        return Err(malformed("peers", "more than 32 entries"));
    }
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let node = b.u64()?;
        entries.push((node, b.addr()?));
    }
    b.end()?;
    Ok(Frame::Peers(entries))
}

/// The length prefix at the start of `buf`, once it is complete and within
/// `max_len`. Lets a reader size its buffer for a frame it has not yet got.
pub fn peek_len(buf: &[u8], max_len: usize) -> Result<Option<usize>, FrameError> {
    if buf.len() < LEN_PREFIX {
        return Ok(None);
    }
    let len = BigEndian::read_u32(buf) as usize;
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > max_len {
        return Err(FrameError::TooLong { len, max: max_len });
    }
    Ok(Some(len))
}

fn malformed(kind: &'static str, reason: &'static str) -> FrameError {
    FrameError::Malformed { kind, reason }
}

fn decode_token(body: &[u8], kind: &'static str) -> Result<u64, FrameError> {
    if body.len() != 8 {
        return Err(malformed(kind, "body is not exactly 8 bytes"));
    }
    Ok(BigEndian::read_u64(body))
}

fn decode_hello(body: &[u8]) -> Result<Hello, FrameError> {
    // Magic and version come first and are checked first: a later version may
    // lay out the rest differently, and a stranger should be named as such.
    if body.len() < 6 {
        return Err(malformed("hello", "too short for magic and version"));
    }
    let magic: [u8; 4] = body[0..4].try_into().expect("4 bytes");
    if magic != MAGIC {
        return Err(FrameError::BadMagic(magic));
    }
    let version = BigEndian::read_u16(&body[4..6]);
    if version != VERSION {
        return Err(FrameError::UnsupportedVersion(version));
    }
    if body.len() < HELLO_FIXED {
        return Err(malformed("hello", "too short"));
    }
    let name_len = body[HELLO_FIXED - 1] as usize;
    if body.len() != HELLO_FIXED + name_len {
        return Err(malformed(
            "hello",
            "name length does not match the frame length",
        ));
    }
    let name = std::str::from_utf8(&body[HELLO_FIXED..])
        .map_err(|_| malformed("hello", "name is not valid UTF-8"))?;
    if let Some(reason) = name_problem(name) {
        return Err(malformed("hello", reason));
    }
    let max_frame = BigEndian::read_u32(&body[16..20]);
    check_bounds("max_frame", max_frame, &MAX_FRAME)?;
    let keepalive_secs = BigEndian::read_u16(&body[20..22]);
    check_bounds("keepalive", keepalive_secs, &KEEPALIVE_SECS)?;
    Ok(Hello {
        node_id: BigEndian::read_u64(&body[6..14]),
        listen_port: BigEndian::read_u16(&body[14..16]),
        max_frame,
        keepalive_secs,
        name: name.to_owned(),
    })
}

fn check_bounds<T: Copy + PartialOrd + Into<u64>>(
    field: &'static str,
    value: T,
    bounds: &RangeInclusive<T>,
) -> Result<(), FrameError> {
    if bounds.contains(&value) {
        return Ok(());
    }
    Err(FrameError::OutOfBounds {
        field,
        value: value.into(),
        min: (*bounds.start()).into(),
        max: (*bounds.end()).into(),
    })
}

/// Why `name` cannot be a node name, if it cannot. Names are printed at the
/// start of lines (`-f tagged` prints `NAME> message`), so a name must not
/// break a line (control characters, U+2028, U+2029) or fake where the name
/// ends (`>`). The command line and the HELLO decoder both ask this.
pub fn name_problem(name: &str) -> Option<&'static str> {
    if name.len() > MAX_NAME_LEN {
        return Some("name is longer than 255 bytes");
    }
    name.chars().find_map(name_char_problem)
}

/// Why `c` cannot stand in a node name, if it cannot.
pub fn name_char_problem(c: char) -> Option<&'static str> {
    match c {
        c if c.is_control() => Some("name contains control characters"),
        c if breaks_a_line(c) => Some("name contains a line or paragraph separator"),
        '>' => Some("name contains '>'"),
        _ => None,
    }
}

/// Whether `c` can start a new line when printed: a control character, or
/// the Unicode line and paragraph separators. Text from a peer that is
/// printed on one line (a name, a BYE reason) must not hold one.
pub fn breaks_a_line(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

impl Frame<'_> {
    /// A MSG frame's header (origin, first seq, hops, ttl, life), whether
    /// it holds one message or a run; `None` for any other frame.
    pub fn msg_header(&self) -> Option<MsgHeader> {
        match *self {
            Frame::Msg {
                origin,
                seq,
                hops,
                ttl,
                life,
                ..
            }
            | Frame::Run {
                origin,
                seq,
                hops,
                ttl,
                life,
                ..
            } => Some(MsgHeader {
                origin,
                seq,
                hops,
                ttl,
                life,
            }),
            _ => None,
        }
    }

    /// Appends this frame, length prefix included, to `out`.
    ///
    /// A HELLO name or BYE reason over 255 bytes is cut at a character
    /// boundary; callers validate names earlier, so this only guards the wire.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Frame::Hello(hello) => {
                let name = truncate_utf8(&hello.name, MAX_NAME_LEN);
                put_header(out, kind::HELLO, HELLO_FIXED + name.len());
                out.extend_from_slice(&MAGIC);
                out.extend_from_slice(&VERSION.to_be_bytes());
                out.extend_from_slice(&hello.node_id.to_be_bytes());
                out.extend_from_slice(&hello.listen_port.to_be_bytes());
                out.extend_from_slice(&hello.max_frame.to_be_bytes());
                out.extend_from_slice(&hello.keepalive_secs.to_be_bytes());
                out.push(name.len() as u8);
                out.extend_from_slice(name.as_bytes());
            }
            Frame::Msg { payload, .. } => {
                let header = self.msg_header().expect("a MSG frame has one");
                out.extend_from_slice(&header.encode(payload.len() + 1));
                put_entry(out, payload);
            }
            Frame::Run { entries, .. } => {
                let header = self.msg_header().expect("a MSG frame has one");
                out.extend_from_slice(&header.encode(entries.len()));
                out.extend_from_slice(entries);
            }
            Frame::Ping(token) => {
                put_header(out, kind::PING, 8);
                out.extend_from_slice(&token.to_be_bytes());
            }
            Frame::Pong(token) => {
                put_header(out, kind::PONG, 8);
                out.extend_from_slice(&token.to_be_bytes());
            }
            Frame::Bye(reason) => {
                let reason = &reason[..reason.len().min(MAX_BYE_REASON)];
                put_header(out, kind::BYE, reason.len());
                out.extend_from_slice(reason);
            }
            Frame::Accept => put_header(out, kind::ACCEPT, 0),
            Frame::Status(status) => status.encode(out),
            Frame::Down {
                member,
                status_seq,
                hops,
                ttl,
                reason,
            } => {
                let reason = &reason[..reason.len().min(MAX_DOWN_REASON)];
                put_header(out, kind::DOWN, 8 + 8 + 1 + 1 + 1 + reason.len());
                out.extend_from_slice(&member.to_be_bytes());
                out.extend_from_slice(&status_seq.to_be_bytes());
                out.push(*hops);
                out.push(*ttl);
                out.push(reason.len() as u8);
                out.extend_from_slice(reason);
            }
            Frame::Repair {
                origin,
                from_seq,
                to_seq,
            } => put_range(out, kind::REPAIR, *origin, *from_seq, *to_seq),
            Frame::Peers(entries) => {
                let entries = &entries[..entries.len().min(MAX_PEERS_ENTRIES)];
                let body: usize = 1 + entries.iter().map(|(_, a)| 8 + addr_len(a)).sum::<usize>();
                put_header(out, kind::PEERS, body);
                out.push(entries.len() as u8);
                for (node, addr) in entries {
                    out.extend_from_slice(&node.to_be_bytes());
                    put_addr(out, addr);
                }
            }
            Frame::Prune { origin } => {
                put_header(out, kind::PRUNE, 8);
                out.extend_from_slice(&origin.to_be_bytes());
            }
            Frame::Graft {
                origin,
                from_seq,
                to_seq,
            } => put_range(out, kind::GRAFT, *origin, *from_seq, *to_seq),
            Frame::TooBig { origin, seq, size } => {
                put_header(out, kind::TOO_BIG, 8 + 8 + 4);
                out.extend_from_slice(&origin.to_be_bytes());
                out.extend_from_slice(&seq.to_be_bytes());
                out.extend_from_slice(&size.to_be_bytes());
            }
        }
    }

    /// This frame as a fresh byte vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// What a MSG frame's header says of the messages it holds: whose
/// (origin and life) and where (the first one's seq, the hops so far, the
/// hops allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsgHeader {
    pub origin: NodeId,
    /// The first message's seq; the others follow it.
    pub seq: u64,
    pub hops: u8,
    pub ttl: u8,
    pub life: u64,
}

impl MsgHeader {
    /// `origin`'s messages from `seq` on as they leave it, in its first
    /// life with the default `--ttl`: for tests, benchmarks and tools.
    pub fn new(origin: NodeId, seq: u64) -> MsgHeader {
        MsgHeader {
            origin,
            seq,
            hops: 1,
            ttl: DEFAULT_TTL,
            life: 1,
        }
    }

    /// The header of a MSG frame whose entries are `entries_len` bytes
    /// long. Lets a caller write entries straight after it without
    /// building a `Frame`.
    pub fn encode(&self, entries_len: usize) -> [u8; MSG_HEADER_LEN] {
        let mut header = [0u8; MSG_HEADER_LEN];
        let len = u32::try_from(MSG_HEADER_LEN - LEN_PREFIX + entries_len)
            .expect("a frame is bounded by --max-frame");
        BigEndian::write_u32(&mut header[0..4], len);
        header[4] = kind::MSG;
        BigEndian::write_u64(&mut header[5..13], self.origin);
        BigEndian::write_u64(&mut header[13..21], self.seq);
        header[MSG_HOPS_AT] = self.hops;
        header[MSG_HOPS_AT + 1] = self.ttl;
        BigEndian::write_u64(&mut header[MSG_LIFE_AT..MSG_LIFE_AT + 8], self.life);
        header
    }
}

/// One MSG frame in a buffer of MSG frames that we wrote or checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsgFrameAt {
    pub origin: NodeId,
    /// Its first message's seq.
    pub seq: u64,
    pub hops: u8,
    pub ttl: u8,
    pub life: u64,
    /// The whole frame, length prefix included.
    pub frame: Range<usize>,
    /// Its entries.
    pub entries: Range<usize>,
}

/// The MSG frames back to back in `buf` (written by us, or checked when
/// read: never a stranger's unchecked bytes).
pub fn msg_frames(buf: &[u8]) -> impl Iterator<Item = MsgFrameAt> + '_ {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at + MSG_HEADER_LEN > buf.len() {
            return None;
        }
        let end = at + LEN_PREFIX + BigEndian::read_u32(&buf[at..]) as usize;
        let found = MsgFrameAt {
            origin: BigEndian::read_u64(&buf[at + 5..]),
            seq: BigEndian::read_u64(&buf[at + 13..]),
            hops: buf[at + MSG_HOPS_AT],
            ttl: buf[at + MSG_HOPS_AT + 1],
            life: BigEndian::read_u64(&buf[at + MSG_LIFE_AT..]),
            frame: at..end,
            entries: at + MSG_HEADER_LEN..end,
        };
        at = end;
        Some(found)
    })
}

/// Appends one MSG frame holding `payloads` (at least one) as the seqs
/// from `header.seq` on; where each entry went in `out`. For tests,
/// benchmarks and tools: the node's own paths write entries straight into
/// their buffers.
pub fn put_run(out: &mut Vec<u8>, header: MsgHeader, payloads: &[&[u8]]) -> Vec<Range<usize>> {
    let len: usize = payloads.iter().map(|p| p.len() + 1).sum();
    out.extend_from_slice(&header.encode(len));
    payloads
        .iter()
        .map(|p| {
            let at = out.len();
            put_entry(out, p);
            at..out.len()
        })
        .collect()
}

impl Status {
    /// Appends this STATUS as a frame. Names over 255 bytes are cut, and
    /// addresses and acknowledgements beyond their bounds are left out.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let name = truncate_utf8(&self.name, MAX_NAME_LEN);
        let addrs = &self.addrs[..self.addrs.len().min(MAX_STATUS_ADDRS)];
        let acks = &self.acks[..self.acks.len().min(MAX_STATUS_ACKS)];
        let misses = &self.misses[..self.misses.len().min(MAX_STATUS_MISSES)];
        let body = STATUS_FIXED
            + name.len()
            + 1
            + addrs.iter().map(addr_len).sum::<usize>()
            + 2
            + acks.len() * ACK_LEN
            + 2
            + misses.len() * MISS_LEN;
        put_header(out, kind::STATUS, body);
        out.extend_from_slice(&self.member.to_be_bytes());
        out.extend_from_slice(&self.status_seq.to_be_bytes());
        out.push(self.hops);
        out.push(self.ttl);
        out.extend_from_slice(&self.sent_seq.to_be_bytes());
        out.push(self.flags);
        out.extend_from_slice(&self.life.to_be_bytes());
        out.extend_from_slice(&self.keepalive_secs.to_be_bytes());
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        out.push(addrs.len() as u8);
        for addr in addrs {
            put_addr(out, addr);
        }
        out.extend_from_slice(&(acks.len() as u16).to_be_bytes());
        for ack in acks {
            out.extend_from_slice(&ack.origin.to_be_bytes());
            out.extend_from_slice(&ack.base.to_be_bytes());
            out.extend_from_slice(&ack.delivered.to_be_bytes());
            out.extend_from_slice(&ack.skipped.to_be_bytes());
            out.extend_from_slice(&ack.life.to_be_bytes());
        }
        out.extend_from_slice(&(misses.len() as u16).to_be_bytes());
        for miss in misses {
            out.extend_from_slice(&miss.member.to_be_bytes());
            out.extend_from_slice(&miss.first.to_be_bytes());
            out.extend_from_slice(&miss.last.to_be_bytes());
        }
    }
}

fn addr_len(addr: &SocketAddr) -> usize {
    match addr {
        SocketAddr::V4(_) => 1 + 4 + 2,
        SocketAddr::V6(_) => 1 + 16 + 2,
    }
}

fn put_addr(out: &mut Vec<u8>, addr: &SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

/// REPAIR and GRAFT: one body (origin, from_seq, to_seq), as they share
/// one decoder.
fn put_range(out: &mut Vec<u8>, kind: u8, origin: u64, from_seq: u64, to_seq: u64) {
    put_header(out, kind, 24);
    out.extend_from_slice(&origin.to_be_bytes());
    out.extend_from_slice(&from_seq.to_be_bytes());
    out.extend_from_slice(&to_seq.to_be_bytes());
}

fn put_header(out: &mut Vec<u8>, kind: u8, body_len: usize) {
    out.extend_from_slice(&(1 + body_len as u32).to_be_bytes());
    out.push(kind);
}

/// The longest prefix of `s` that is at most `max` bytes and ends on a
/// character boundary.
pub fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
impl Frame<'_> {
    /// A copy that borrows nothing, its byte slices leaked: for tests that
    /// keep decoded frames beyond their buffer.
    pub(crate) fn leak(self) -> Frame<'static> {
        match self {
            Frame::Msg {
                life,
                origin,
                seq,
                hops,
                ttl,
                payload,
            } => Frame::Msg {
                life,
                origin,
                seq,
                hops,
                ttl,
                payload: Box::leak(payload.to_vec().into_boxed_slice()),
            },
            Frame::Run {
                life,
                origin,
                seq,
                hops,
                ttl,
                count,
                entries,
            } => Frame::Run {
                life,
                origin,
                seq,
                hops,
                ttl,
                count,
                entries: Box::leak(entries.to_vec().into_boxed_slice()),
            },
            Frame::Down {
                member,
                status_seq,
                hops,
                ttl,
                reason,
            } => Frame::Down {
                member,
                status_seq,
                hops,
                ttl,
                reason: Box::leak(reason.to_vec().into_boxed_slice()),
            },
            Frame::Status(s) => Frame::Status(s),
            Frame::Repair {
                origin,
                from_seq,
                to_seq,
            } => Frame::Repair {
                origin,
                from_seq,
                to_seq,
            },
            Frame::Peers(p) => Frame::Peers(p),
            Frame::Prune { origin } => Frame::Prune { origin },
            Frame::Graft {
                origin,
                from_seq,
                to_seq,
            } => Frame::Graft {
                origin,
                from_seq,
                to_seq,
            },
            Frame::TooBig { origin, seq, size } => Frame::TooBig { origin, seq, size },
            Frame::Bye(reason) => Frame::Bye(Box::leak(reason.to_vec().into_boxed_slice())),
            Frame::Hello(h) => Frame::Hello(h),
            Frame::Ping(t) => Frame::Ping(t),
            Frame::Pong(t) => Frame::Pong(t),
            Frame::Accept => Frame::Accept,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = 1 << 20;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn sample_hello() -> Hello {
        Hello {
            node_id: 0x0123_4567_89ab_cdef,
            listen_port: 7117,
            max_frame: 1_048_576,
            keepalive_secs: 5,
            name: "alice".into(),
        }
    }

    /// The test vectors of PROTOCOL.md, byte for byte.
    fn vectors() -> Vec<(Frame<'static>, &'static str)> {
        vec![
            (
                Frame::Hello(sample_hello()),
                "0000001d 01 50434154 0008 0123456789abcdef 1bcd 00100000 0005 05 616c696365",
            ),
            (
                Frame::Msg {
                    life: 1,
                    origin: 0x0123_4567_89ab_cdef,
                    seq: 1,
                    hops: 1,
                    ttl: 16,
                    payload: b"Hello",
                },
                "00000021 02 0123456789abcdef 0000000000000001 01 10 0000000000000001 48656c6c6f 0a",
            ),
            (
                Frame::Msg {
                    life: 1,
                    origin: 0x0123_4567_89ab_cdef,
                    seq: 2,
                    hops: 3,
                    ttl: 16,
                    payload: b"",
                },
                "0000001c 02 0123456789abcdef 0000000000000002 03 10 0000000000000001 0a",
            ),
            (
                Frame::Run {
                    life: 1,
                    origin: 0x0123_4567_89ab_cdef,
                    seq: 3,
                    hops: 1,
                    ttl: 16,
                    count: 2,
                    entries: b"Hello\nWorld!\n",
                },
                "00000028 02 0123456789abcdef 0000000000000003 01 10 0000000000000001 48656c6c6f 0a 576f726c6421 0a",
            ),
            (Frame::Ping(42), "00000009 03 000000000000002a"),
            (Frame::Pong(42), "00000009 04 000000000000002a"),
            (
                Frame::Bye(b"shutting down"),
                "0000000e 05 7368757474696e6720646f776e",
            ),
            (Frame::Accept, "00000001 06"),
            (
                Frame::Status(sample_status()),
                "0000008b 07 0123456789abcdef 0000000000000007 01 10 0000000000000005 01 0000000000000001 \
                 0005 05 616c696365 02 04 7f000001 1bcd 06 00000000000000000000000000000000 1bce \
                 0001 fedcba9876543210 0000000000000003 0000000000000009 0000000000000002 \
                 0000000000000001 \
                 0001 1111222233334444 0000000000000001 0000000000000002",
            ),
            (
                Frame::Down {
                    member: 0x0123_4567_89ab_cdef,
                    status_seq: 7,
                    hops: 2,
                    ttl: 16,
                    reason: b"left",
                },
                "00000018 08 0123456789abcdef 0000000000000007 02 10 04 6c656674",
            ),
            (
                Frame::Repair {
                    origin: 0x0123_4567_89ab_cdef,
                    from_seq: 3,
                    to_seq: 5,
                },
                "00000019 09 0123456789abcdef 0000000000000003 0000000000000005",
            ),
            (
                Frame::Peers(vec![(
                    0xfedc_ba98_7654_3210,
                    "127.0.0.1:7117".parse().unwrap(),
                )]),
                "00000011 0a 01 fedcba9876543210 04 7f000001 1bcd",
            ),
            (
                Frame::Prune {
                    origin: 0x0123_4567_89ab_cdef,
                },
                "00000009 0b 0123456789abcdef",
            ),
            (
                Frame::Graft {
                    origin: 0x0123_4567_89ab_cdef,
                    from_seq: 3,
                    to_seq: u64::MAX,
                },
                "00000019 0c 0123456789abcdef 0000000000000003 ffffffffffffffff",
            ),
            (
                Frame::TooBig {
                    origin: 0x0123_4567_89ab_cdef,
                    seq: 7,
                    size: 2_000_000,
                },
                "00000015 0d 0123456789abcdef 0000000000000007 001e8480",
            ),
        ]
    }

    fn sample_status() -> Status {
        Status {
            life: 1,
            keepalive_secs: 5,
            member: 0x0123_4567_89ab_cdef,
            status_seq: 7,
            hops: 1,
            ttl: 16,
            sent_seq: 5,
            flags: FLAG_NO_RELAY,
            name: "alice".into(),
            addrs: vec![
                "127.0.0.1:7117".parse().unwrap(),
                "[::]:7118".parse().unwrap(),
            ],
            acks: vec![Ack {
                life: 1,
                origin: 0xfedc_ba98_7654_3210,
                base: 3,
                delivered: 9,
                skipped: 2,
            }],
            misses: vec![Miss {
                member: 0x1111_2222_3333_4444,
                first: 1,
                last: 2,
            }],
        }
    }

    #[test]
    fn protocol_md_vectors_encode_and_decode() {
        for (frame, expected) in vectors() {
            let bytes = frame.to_bytes();
            assert_eq!(hex(&bytes), hex(&unhex(expected)), "encoding {frame:?}");
            let (decoded, used) = decode(&bytes, LIMIT).unwrap().unwrap();
            assert_eq!(decoded, frame);
            assert_eq!(used, bytes.len());
        }
    }

    #[test]
    fn protocol_md_lists_the_same_vectors() {
        let doc = include_str!("../PROTOCOL.md");
        for (frame, expected) in vectors() {
            let expected = expected.split_whitespace().collect::<Vec<_>>().join(" ");
            let doc_flat = doc.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(
                doc_flat.contains(&expected),
                "PROTOCOL.md lacks the vector for {frame:?}: {expected}"
            );
        }
    }

    /// Many frames of every kind and size, as one stream.
    fn stream() -> (Vec<Frame<'static>>, Vec<u8>) {
        static PAYLOADS: [&[u8]; 6] =
            [b"Hello", b"World!", b"", b"\r\0\xff\xfe", b"x", &[7u8; 300]];
        let mut frames = vec![Frame::Hello(sample_hello()), Frame::Accept];
        for (seq, payload) in PAYLOADS.iter().enumerate() {
            frames.push(Frame::Msg {
                life: 1,
                origin: 9,
                seq: seq as u64 + 1,
                hops: seq as u8 + 1,
                ttl: 16,
                payload,
            });
            frames.push(Frame::Ping(seq as u64));
        }
        frames.push(Frame::Run {
            life: 1,
            origin: 9,
            seq: 7,
            hops: 2,
            ttl: 16,
            count: 3,
            entries: b"a\n\nb\r\n",
        });
        frames.push(Frame::Status(sample_status()));
        frames.push(Frame::Status(Status {
            ttl: 1,
            life: 1,
            keepalive_secs: 5,
            ..Status::default()
        }));
        frames.push(Frame::Down {
            member: 1,
            status_seq: 2,
            hops: 3,
            ttl: 4,
            reason: b"cut: accepted nothing for 10s",
        });
        frames.push(Frame::Repair {
            origin: 1,
            from_seq: 1,
            to_seq: u64::MAX,
        });
        frames.push(Frame::Peers(vec![
            (1, "[::1]:1".parse().unwrap()),
            (2, "10.0.0.1:65535".parse().unwrap()),
        ]));
        frames.push(Frame::Peers(Vec::new()));
        frames.push(Frame::Prune { origin: 3 });
        frames.push(Frame::Graft {
            origin: 3,
            from_seq: 4,
            to_seq: 4,
        });
        frames.push(Frame::TooBig {
            origin: 3,
            seq: 5,
            size: u32::MAX,
        });
        frames.push(Frame::Pong(u64::MAX));
        frames.push(Frame::Bye(b"bye"));
        let mut bytes = Vec::new();
        for frame in &frames {
            frame.encode(&mut bytes);
        }
        (frames, bytes)
    }

    /// Decodes `parts` as a receiver would: append each part, then take every
    /// whole frame that is buffered.
    fn decode_in_parts(parts: &[&[u8]]) -> Vec<Frame<'static>> {
        let mut buffered = Vec::new();
        let mut out = Vec::new();
        for part in parts {
            buffered.extend_from_slice(part);
            while let Some((frame, used)) = decode(&buffered, LIMIT).unwrap() {
                out.push(frame.leak());
                buffered.drain(..used);
            }
        }
        assert!(buffered.is_empty(), "bytes left over");
        out
    }

    #[test]
    fn a_stream_split_at_every_position_decodes_the_same() {
        let (frames, bytes) = stream();
        for cut in 0..=bytes.len() {
            let (a, b) = bytes.split_at(cut);
            assert_eq!(decode_in_parts(&[a, b]), frames, "split at {cut}");
        }
    }

    /// What `decode_msg_frame` must answer for `bytes`: `decode`'s MSG,
    /// its error for a MSG frame, and `None` for anything else.
    fn check_msg_fast_path(bytes: &[u8], limit: usize) {
        let fast = decode_msg_frame(bytes, limit);
        let full = decode(bytes, limit);
        let is_msg = bytes.get(LEN_PREFIX) == Some(&kind::MSG);
        match (fast, full) {
            (Ok(Some((m, used))), Ok(Some((frame, used_too)))) => {
                let as_frame = if m.count() == 1 {
                    Frame::Msg {
                        life: m.life,
                        origin: m.origin,
                        seq: m.seq,
                        hops: m.hops,
                        ttl: m.ttl,
                        payload: entries(m.entries).next().unwrap(),
                    }
                } else {
                    Frame::Run {
                        life: m.life,
                        origin: m.origin,
                        seq: m.seq,
                        hops: m.hops,
                        ttl: m.ttl,
                        count: m.count(),
                        entries: m.entries,
                    }
                };
                assert_eq!((as_frame, used), (frame, used_too), "{}", hex(bytes));
                assert_eq!(entries(m.entries).count() as u64, m.count());
            }
            (Ok(None), Ok(Some((frame, _)))) => {
                assert!(
                    !matches!(frame, Frame::Msg { .. } | Frame::Run { .. }),
                    "{}",
                    hex(bytes)
                )
            }
            (Ok(None), Ok(None)) => {}
            (Ok(None), Err(_)) => assert!(!is_msg, "{}", hex(bytes)),
            (Err(e), Err(e_too)) => assert_eq!(e, e_too, "{}", hex(bytes)),
            (fast, full) => panic!("{}: fast {fast:?}, full {full:?}", hex(bytes)),
        }
    }

    #[test]
    fn the_readers_msg_fast_path_agrees_with_decode() {
        let (_, bytes) = stream();
        for end in 0..=bytes.len() {
            for start in 0..end.min(40) {
                check_msg_fast_path(&bytes[start..end], LIMIT);
            }
            check_msg_fast_path(&bytes[end..], LIMIT);
        }
        for (text, _) in not_frames() {
            check_msg_fast_path(&unhex(text), LIMIT);
        }
        let msg = Frame::Msg {
            life: 1,
            origin: 1,
            seq: 2,
            hops: 3,
            ttl: 4,
            payload: b"abc",
        }
        .to_bytes();
        for i in 0..msg.len() {
            for v in [0u8, 1, 2, b'\n', 0x7f, 0xff] {
                let mut bad = msg.clone();
                bad[i] = v;
                for limit in [0, 5, 18, 19, 21, 22, LIMIT] {
                    check_msg_fast_path(&bad, limit);
                }
            }
        }
    }

    #[test]
    fn a_stream_fed_byte_by_byte_decodes_the_same() {
        let (frames, bytes) = stream();
        let parts: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(decode_in_parts(&parts), frames);
    }

    #[test]
    fn a_stream_merged_into_one_buffer_decodes_the_same() {
        let (frames, bytes) = stream();
        assert_eq!(decode_in_parts(&[&bytes]), frames);
    }

    #[test]
    fn hello_and_world_stay_two_messages_however_tcp_cuts_them() {
        let mut bytes = Vec::new();
        for (seq, word) in [&b"Hello"[..], b"World!"].iter().enumerate() {
            Frame::Msg {
                life: 1,
                origin: 1,
                seq: seq as u64 + 1,
                hops: 1,
                ttl: 16,
                payload: word,
            }
            .encode(&mut bytes);
        }
        // Every way of cutting the stream in three ("Hel" "loWorld!" and all the rest).
        for i in 0..=bytes.len() {
            for j in i..=bytes.len() {
                let frames = decode_in_parts(&[&bytes[..i], &bytes[i..j], &bytes[j..]]);
                let payloads: Vec<&[u8]> = frames
                    .iter()
                    .map(|f| match f {
                        Frame::Msg { payload, .. } => *payload,
                        other => panic!("unexpected {other:?}"),
                    })
                    .collect();
                assert_eq!(payloads, [&b"Hello"[..], b"World!"]);
            }
        }
    }

    #[test]
    fn the_length_is_checked_before_the_body_arrives() {
        assert_eq!(
            decode(&[0xff, 0xff, 0xff, 0xff], LIMIT),
            Err(FrameError::TooLong {
                len: 0xffff_ffff,
                max: LIMIT
            })
        );
        assert_eq!(decode(&[0, 0, 0, 0], LIMIT), Err(FrameError::Empty));
        // Within the limit but incomplete: wait for more.
        assert_eq!(decode(&[0, 0, 0, 9, kind::PING], LIMIT), Ok(None));
        assert_eq!(decode(&[0, 0], LIMIT), Ok(None));
    }

    #[test]
    fn a_message_at_the_limit_passes_and_one_byte_more_does_not() {
        let max_frame = 200_000;
        let msg = |len: usize| {
            Frame::Msg {
                life: 1,
                origin: 1,
                seq: 1,
                hops: 1,
                ttl: 16,
                payload: &vec![b'a'; len],
            }
            .to_bytes()
        };
        let limit = frame_limit(max_frame);
        assert!(decode(&msg(max_frame), limit).unwrap().is_some());
        assert_eq!(
            decode(&msg(max_frame + 1), limit),
            Err(FrameError::TooLong {
                len: limit + 1,
                max: limit
            })
        );
    }

    /// A MSG frame's body: origin 1, `seq`, hops 1, ttl 16, then `entries`.
    fn run_bytes(seq: u64, entries: &[u8]) -> Vec<u8> {
        let mut out = MsgHeader::new(1, seq).encode(entries.len()).to_vec();
        out.extend_from_slice(entries);
        out
    }

    #[test]
    fn malformed_runs_are_named() {
        let bad = |reason| malformed("message", reason);
        let cases: Vec<(Vec<u8>, FrameError)> = vec![
            (run_bytes(1, b""), bad("it holds no message")),
            (run_bytes(0, b"a\n"), bad("seq is 0")),
            (
                run_bytes(u64::MAX - 1, b"a\nb\nc\n"),
                bad("its seqs run past the largest seq"),
            ),
            // 2^64 - 1 itself: a receiver would have no next seq after it,
            // and printed it again when another copy came.
            (
                run_bytes(u64::MAX, b"a\n"),
                bad("its seqs run past the largest seq"),
            ),
            // Cut short: the last message lacks its newline.
            (
                run_bytes(1, b"a\nb"),
                bad("its last message has no newline"),
            ),
            (run_bytes(1, b"abc"), bad("its last message has no newline")),
        ];
        for (bytes, expected) in cases {
            assert_eq!(decode(&bytes, LIMIT), Err(expected), "{}", hex(&bytes));
            check_msg_fast_path(&bytes, LIMIT);
        }
        // The last seq may be the largest (2^64 - 2); an empty line is a
        // message.
        let at_end = run_bytes(u64::MAX - 2, b"a\n\n");
        let (frame, _) = decode(&at_end, LIMIT).unwrap().unwrap();
        let Frame::Run { count, entries, .. } = frame else {
            panic!("{frame:?}")
        };
        assert_eq!(count, 2);
        assert_eq!(
            super::entries(entries).collect::<Vec<_>>(),
            [&b"a"[..], b""]
        );
        // Too long: refused on the length prefix, before the body.
        let long = run_bytes(1, &b"a\n".repeat(40_000));
        assert!(matches!(
            decode(&long[..LEN_PREFIX], 70_000),
            Err(FrameError::TooLong { .. })
        ));
    }

    /// A frame carries at most MAX_RUN_ENTRIES messages: one more is a
    /// protocol error named as such, on the readers' fast path too, however
    /// the bytes are laid out (a frame of that many bytes holding fewer
    /// messages is fine).
    #[test]
    fn a_run_of_more_than_4096_messages_is_refused() {
        assert_eq!(MAX_RUN_ENTRIES, 4096, "the error text names it");
        let too_many = malformed("message", "its run holds more than 4096 messages");
        let empty = |n: usize| run_bytes(1, &b"\n".repeat(n));
        let short = |n: usize| run_bytes(1, &b"ab\n".repeat(n));
        for bytes in [empty(MAX_RUN_ENTRIES), short(MAX_RUN_ENTRIES)] {
            let (m, _) = decode_msg_frame(&bytes, LIMIT).unwrap().unwrap();
            assert_eq!(m.count(), MAX_RUN_ENTRIES as u64);
            check_msg_fast_path(&bytes, LIMIT);
        }
        let mut one_long = vec![b'x'; 3 * MAX_RUN_ENTRIES];
        one_long.push(b'\n');
        let one = run_bytes(1, &one_long);
        let (m, _) = decode_msg_frame(&one, LIMIT).unwrap().unwrap();
        assert_eq!(m.count(), 1);
        for bytes in [
            empty(MAX_RUN_ENTRIES + 1),
            short(MAX_RUN_ENTRIES + 1),
            empty(1 << 20),
        ] {
            // Compared as errors: a frame of 4097 entries prints long.
            assert_eq!(decode(&bytes, LIMIT * 2).err(), Some(too_many.clone()));
            assert_eq!(
                decode_msg_frame(&bytes, LIMIT * 2).err(),
                Some(too_many.clone())
            );
        }
        // Named before a seq overflow it may also have.
        let mut high = empty(MAX_RUN_ENTRIES + 1);
        high[13..21].copy_from_slice(&(u64::MAX - 1).to_be_bytes());
        assert_eq!(decode(&high, LIMIT).err(), Some(too_many));
        let mut fits = empty(MAX_RUN_ENTRIES);
        fits[13..21].copy_from_slice(&(u64::MAX - 4096).to_be_bytes());
        assert!(decode(&fits, LIMIT).is_ok(), "the last seq is u64::MAX - 1");
        fits[13..21].copy_from_slice(&(u64::MAX - 4095).to_be_bytes());
        assert_eq!(
            decode(&fits, LIMIT).err(),
            Some(malformed("message", "its seqs run past the largest seq"))
        );
    }

    /// Random bodies behind every mesh type byte, and every valid mesh
    /// frame with one byte changed: an error or a frame, never a panic.
    #[test]
    fn random_mesh_frames_never_panic() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let kind = [kind::STATUS, kind::DOWN, kind::REPAIR, kind::PEERS][next() as usize % 4];
            let len = next() as usize % 200;
            let mut bytes = ((len + 1) as u32).to_be_bytes().to_vec();
            bytes.push(kind);
            bytes.extend((0..len).map(|_| next() as u8));
            let _ = decode(&bytes, LIMIT);
        }
        for (frame, _) in vectors() {
            let bytes = frame.to_bytes();
            for i in LEN_PREFIX..bytes.len() {
                for v in [0u8, 1, 0x7f, 0xff] {
                    let mut bad = bytes.clone();
                    bad[i] = v;
                    let _ = decode(&bad, LIMIT);
                }
            }
        }
    }

    #[test]
    fn the_largest_status_fits_every_limit() {
        let status = Status {
            name: "n".repeat(MAX_NAME_LEN),
            addrs: vec!["[::1]:1".parse().unwrap(); MAX_STATUS_ADDRS],
            acks: vec![
                Ack {
                    life: 1,
                    origin: 1,
                    base: 1,
                    delivered: 0,
                    skipped: 0,
                };
                MAX_STATUS_ACKS
            ],
            misses: vec![
                Miss {
                    member: 1,
                    first: 1,
                    last: 1,
                };
                MAX_STATUS_MISSES
            ],
            ttl: 1,
            life: 1,
            keepalive_secs: 5,
            ..Status::default()
        };
        let bytes = Frame::Status(status.clone()).to_bytes();
        assert_eq!(bytes.len(), LEN_PREFIX + MAX_STATUS_LEN);
        let (back, _) = decode(&bytes, frame_limit(1)).unwrap().unwrap();
        assert_eq!(back, Frame::Status(status));
    }

    #[test]
    fn mesh_frames_out_of_bounds_are_named() {
        let status = |f: &dyn Fn(&mut Status)| {
            let mut s = sample_status();
            f(&mut s);
            Frame::Status(s).to_bytes()
        };
        let mut nine_addrs = status(&|_| {});
        // addr_count sits after the fixed part and the 5-byte name.
        nine_addrs[LEN_PREFIX + 1 + STATUS_FIXED + 5] = 9;
        let cases: Vec<(Vec<u8>, FrameError)> = vec![
            (nine_addrs, malformed("status", "more than 8 addresses")),
            (
                status(&|s| s.name = "a>b".into()),
                malformed("status", "name contains '>'"),
            ),
            (
                status(&|s| s.acks[0].delivered = 1),
                malformed("status", "an acknowledgement below its base"),
            ),
            (
                status(&|s| s.acks[0].skipped = 8),
                malformed("status", "an acknowledgement skipped more than it covers"),
            ),
            (
                status(&|s| s.acks[0].life = 0),
                malformed("status", "an acknowledgement of life 0"),
            ),
            (status(&|s| s.life = 0), malformed("status", "life is 0")),
            (
                status(&|s| {
                    s.misses[0].first = 5;
                    s.misses[0].last = 3;
                }),
                malformed("status", "an empty or backward missed range"),
            ),
            (
                status(&|s| s.misses[0].first = 0),
                malformed("status", "an empty or backward missed range"),
            ),
            (status(&|s| s.ttl = 0), malformed("status", "ttl is 0")),
            (
                unhex("00000019 09 0123456789abcdef 0000000000000005 0000000000000003"),
                malformed("repair", "an empty or backward range"),
            ),
            (
                unhex("00000019 0c 0123456789abcdef 0000000000000000 0000000000000003"),
                malformed("graft", "an empty or backward range"),
            ),
            (
                unhex("0000000a 0b 0123456789abcdef 00"),
                malformed("prune", "bytes after the last field"),
            ),
            (
                unhex("00000015 0d 0123456789abcdef 0000000000000000 00000001"),
                malformed("too_big", "seq 0 or past the largest seq"),
            ),
            (
                unhex("00000015 0d 0123456789abcdef ffffffffffffffff 00000001"),
                malformed("too_big", "seq 0 or past the largest seq"),
            ),
            (
                unhex("00000014 0d 0123456789abcdef 0000000000000001 000001"),
                malformed("too_big", "body ends early"),
            ),
            (
                unhex("0000000b 0a 01 fedcba9876543210 04"),
                malformed("peers", "body ends early"),
            ),
            (
                unhex("00000011 0a 01 fedcba9876543210 05 7f000001 1bcd"),
                malformed("peers", "address family is neither 4 nor 6"),
            ),
            (
                unhex("00000012 0a 01 fedcba9876543210 04 7f000001 1bcd 00"),
                malformed("peers", "bytes after the last field"),
            ),
            (
                unhex("00000003 0a 21 00"),
                malformed("peers", "more than 32 entries"),
            ),
            (
                unhex("00000018 08 0123456789abcdef 0000000000000007 02 10 05 6c656674"),
                malformed("down", "body ends early"),
            ),
            (
                unhex("0000001d 02 0123456789abcdef 0000000000000001 01 00 0000000000000001 6162"),
                malformed("message", "ttl is 0"),
            ),
            (
                unhex("0000001d 02 0123456789abcdef 0000000000000001 01 10 0000000000000000 6162"),
                malformed("message", "life is 0"),
            ),
            (
                unhex("0000001d 02 0123456789abcdef 0000000000000000 01 10 0000000000000001 6162"),
                malformed("message", "seq is 0"),
            ),
        ];
        for (bytes, expected) in cases {
            assert_eq!(decode(&bytes, LIMIT), Err(expected), "{}", hex(&bytes));
        }
        // A STATUS whose ack count claims more than the frame holds.
        let mut short = status(&|_| {});
        let at = short.len() - MISS_LEN - 2 - ACK_LEN - 2;
        short[at + 1] = 2;
        assert_eq!(
            decode(&short, LIMIT),
            Err(malformed(
                "status",
                "acknowledgement count does not match the frame length"
            ))
        );
    }

    #[test]
    fn bad_bodies_are_named() {
        let cases: Vec<(Vec<u8>, FrameError)> = vec![
            (unhex("00000001 7f"), FrameError::UnknownType(0x7f)),
            (
                unhex("00000002 06 00"),
                malformed("accept", "body is not empty"),
            ),
            (
                unhex("00000008 03 00000000000000"),
                malformed("ping", "body is not exactly 8 bytes"),
            ),
            (
                unhex("00000005 02 00000000"),
                malformed("message", "shorter than its 26-byte header"),
            ),
            (
                unhex(
                    "0000001d 01 47455420 0001 0123456789abcdef 1bcd 00100000 0005 05 616c696365",
                ),
                FrameError::BadMagic(*b"GET "),
            ),
            (
                unhex(
                    "0000001d 01 50434154 0009 0123456789abcdef 1bcd 00100000 0005 05 616c696365",
                ),
                FrameError::UnsupportedVersion(9),
            ),
            // Version 7 had no keepalive in STATUS, version 3 framed one
            // message per MSG frame: refused, not misread.
            (
                unhex(
                    "0000001d 01 50434154 0007 0123456789abcdef 1bcd 00100000 0005 05 616c696365",
                ),
                FrameError::UnsupportedVersion(7),
            ),
            (
                unhex(
                    "0000001d 01 50434154 0003 0123456789abcdef 1bcd 00100000 0005 05 616c696365",
                ),
                FrameError::UnsupportedVersion(3),
            ),
            (
                unhex(
                    "0000001d 01 50434154 0008 0123456789abcdef 1bcd 00100000 0005 06 616c696365",
                ),
                malformed("hello", "name length does not match the frame length"),
            ),
            (
                unhex(
                    "0000001d 01 50434154 0008 0123456789abcdef 1bcd 00100000 0005 05 616c69ff65",
                ),
                malformed("hello", "name is not valid UTF-8"),
            ),
            (
                unhex(
                    "0000001d 01 50434154 0008 0123456789abcdef 1bcd 00100000 0005 05 616c690a65",
                ),
                malformed("hello", "name contains control characters"),
            ),
            (
                unhex(
                    "0000001d 01 50434154 0008 0123456789abcdef 1bcd 00100000 0005 05 616c3e6365",
                ),
                malformed("hello", "name contains '>'"),
            ),
            (
                unhex(
                    "0000001f 01 50434154 0008 0123456789abcdef 1bcd 00100000 0005 07 61e280a8696365",
                ),
                malformed("hello", "name contains a line or paragraph separator"),
            ),
        ];
        for (bytes, expected) in cases {
            assert_eq!(decode(&bytes, LIMIT), Err(expected), "{}", hex(&bytes));
        }
    }

    /// The rows of PROTOCOL.md's table of bytes that are not frames, as
    /// (hex, error) pairs, for the rows this test knows how to check.
    fn not_frames() -> Vec<(&'static str, FrameError)> {
        vec![
            (
                "0000001e 02 0123456789abcdef 0000000000000001 01 10 0000000000000001 610a62",
                malformed("message", "its last message has no newline"),
            ),
            (
                "0000001b 02 0123456789abcdef 0000000000000001 01 10 0000000000000001",
                malformed("message", "it holds no message"),
            ),
            (
                "0000001d 02 0123456789abcdef ffffffffffffffff 01 10 0000000000000001 0a 0a",
                malformed("message", "its seqs run past the largest seq"),
            ),
            (
                "0000001d 01 50434154 0008 0123456789abcdef 1bcd 00100000 ffff 05 616c696365",
                FrameError::OutOfBounds {
                    field: "keepalive",
                    value: 65535,
                    min: 1,
                    max: 3600,
                },
            ),
            (
                "0000001d 01 50434154 0008 0123456789abcdef 1bcd 00100000 0000 05 616c696365",
                FrameError::OutOfBounds {
                    field: "keepalive",
                    value: 0,
                    min: 1,
                    max: 3600,
                },
            ),
            (
                "0000001d 01 50434154 0008 0123456789abcdef 1bcd 00000000 0005 05 616c696365",
                FrameError::OutOfBounds {
                    field: "max_frame",
                    value: 0,
                    min: 1,
                    max: 1 << 30,
                },
            ),
        ]
    }

    #[test]
    fn protocol_md_lists_the_same_bad_bytes() {
        let doc = include_str!("../PROTOCOL.md");
        for (bytes, expected) in not_frames() {
            assert_eq!(decode(&unhex(bytes), LIMIT), Err(expected.clone()));
            let row = format!("| `{bytes}` | {expected} |");
            assert!(doc.contains(&row), "PROTOCOL.md lacks the row {row}");
        }
        // A row whose bytes end in 4097 newlines says so in words.
        let head = "0000101c 02 0123456789abcdef 0000000000000001 01 10 0000000000000001";
        let mut bytes = unhex(head);
        bytes.extend_from_slice(&[b'\n'; MAX_RUN_ENTRIES + 1]);
        let expected = malformed("message", "its run holds more than 4096 messages");
        assert_eq!(decode(&bytes, LIMIT), Err(expected.clone()));
        let row = format!("| `{head}` and 4097 × `0a` | {expected} |");
        assert!(doc.contains(&row), "PROTOCOL.md lacks the row {row}");
    }

    #[test]
    fn hello_bounds_are_inclusive_and_match_the_command_line() {
        let with = |max_frame, keepalive_secs| {
            let bytes = Frame::Hello(Hello {
                max_frame,
                keepalive_secs,
                ..sample_hello()
            })
            .to_bytes();
            decode(&bytes, LIMIT).map(|_| ())
        };
        assert_eq!(with(1, 1), Ok(()));
        assert_eq!(with(1 << 30, 3600), Ok(()));
        assert!(with(1 << 30, 3601).is_err());
        assert!(with((1 << 30) + 1, 5).is_err());
        assert_eq!(*MAX_FRAME.end(), crate::config::MAX_FRAME_LIMIT);
        let keepalive =
            |secs: u16| crate::config::parse(["peercat", "--keepalive", &secs.to_string()]);
        assert!(keepalive(*KEEPALIVE_SECS.end()).is_ok());
        assert!(keepalive(KEEPALIVE_SECS.end() + 1).is_err());
        assert!(keepalive(KEEPALIVE_SECS.start() - 1).is_err());
    }

    /// A newline always ends a message: a line cannot carry a second one
    /// (which `-f tagged` would print as if another node had sent it),
    /// because the second is a message of its own, with its own seq,
    /// printed under its own origin's name.
    #[test]
    fn a_newline_always_ends_a_message() {
        let bytes = run_bytes(5, b"harmless\nalice> send the password\n");
        let (frame, _) = decode(&bytes, LIMIT).unwrap().unwrap();
        let Frame::Run {
            origin: 1,
            seq: 5,
            count: 2,
            entries,
            ..
        } = frame
        else {
            panic!("{frame:?}")
        };
        let lines: Vec<&[u8]> = super::entries(entries).collect();
        assert_eq!(lines, [&b"harmless"[..], b"alice> send the password"]);
        let cr = run_bytes(1, b"a\rb\0\n");
        assert!(
            matches!(
                decode(&cr, LIMIT),
                Ok(Some((
                    Frame::Msg {
                        payload: b"a\rb\0",
                        ..
                    },
                    _
                )))
            ),
            "any byte but \\n is data"
        );
    }

    /// Short lines are searched inline, long ones by memchr: a newline at
    /// any position of either ends the message there.
    #[test]
    fn a_newline_is_found_at_every_position_short_or_long() {
        for len in [
            1, 7, 8, 15, 16, 17, 63, 64, 65, 127, 128, 129, 255, 256, 257, 300, 1000,
        ] {
            let clean: Vec<u8> = (0..len)
                .map(|i| [b'a', b'\r', 0, 0xff, 0x0b][i % 5])
                .collect();
            assert_eq!(find_newline(&clean), None, "{len} bytes without one");
            for at in 0..len {
                let mut payload = clean.clone();
                payload[at] = b'\n';
                assert_eq!(find_newline(&payload), Some(at), "{len} bytes");
                payload.push(b'\n');
                let frame = run_bytes(1, &payload);
                let (m, _) = decode_msg_frame(&frame, LIMIT).unwrap().unwrap();
                assert_eq!(m.count(), 2, "{len}/{at}");
                assert_eq!(entry_at(m.entries, 0), 0..at);
            }
        }
    }

    #[test]
    fn names_that_would_break_a_tagged_line_are_named() {
        assert_eq!(name_problem("alice"), None);
        assert_eq!(name_problem("héllo wörld"), None);
        assert_eq!(name_problem("a>b"), Some("name contains '>'"));
        assert!(name_problem("a\u{2029}b").is_some());
        assert!(name_problem("a\u{1b}[31m").is_some());
        assert!(name_problem(&"x".repeat(256)).is_some());
    }

    #[test]
    fn errors_read_well() {
        assert_eq!(
            FrameError::TooLong {
                len: 4294967295,
                max: 1048593
            }
            .to_string(),
            "frame length 4294967295 exceeds the limit of 1048593 bytes"
        );
        assert_eq!(
            FrameError::BadMagic(*b"GET ").to_string(),
            "bad magic \"GET \" (expected \"PCAT\")"
        );
        assert_eq!(
            FrameError::UnknownType(0x7f).to_string(),
            "unknown frame type 0x7f"
        );
    }

    #[test]
    fn msg_header_matches_encode() {
        let mut bytes = MsgHeader::new(5, 6).encode(4).to_vec();
        bytes.extend_from_slice(b"abc\n");
        let expected = Frame::Msg {
            life: 1,
            origin: 5,
            seq: 6,
            hops: 1,
            ttl: 16,
            payload: b"abc",
        }
        .to_bytes();
        assert_eq!(bytes, expected);
    }

    #[test]
    fn long_names_are_cut_on_a_character_boundary() {
        assert_eq!(truncate_utf8("héllo", 2), "h");
        assert_eq!(truncate_utf8("héllo", 3), "hé");
        let hello = Hello {
            name: "é".repeat(200),
            ..sample_hello()
        };
        let bytes = Frame::Hello(hello).to_bytes();
        let (Frame::Hello(back), _) = decode(&bytes, LIMIT).unwrap().unwrap() else {
            panic!("not a hello")
        };
        assert_eq!(back.name.len(), 254);
    }
}
