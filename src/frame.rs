//! Frames, the unit of the wire protocol, and a pure codec for them.
//!
//! Nothing here does I/O. [`Frame::encode`] appends bytes to a `Vec`;
//! [`decode`] looks at a byte slice and says one of three things: here is a
//! whole frame and how many bytes it used, not enough bytes yet (`Ok(None)`,
//! an expected answer on a stream), or these bytes can never be a valid frame.
//! `PROTOCOL.md` describes every byte; the tests at the bottom check its
//! test vectors.

use std::fmt;
use std::ops::RangeInclusive;

use byteorder::{BigEndian, ByteOrder};

/// A node's random 64-bit identity, chosen at start-up.
pub type NodeId = u64;

/// The first bytes of every HELLO body: tells a peercat peer from a stranger.
pub const MAGIC: [u8; 4] = *b"PCAT";
/// The one protocol version this build speaks.
pub const VERSION: u16 = 1;
/// Size of the length prefix in front of every frame.
pub const LEN_PREFIX: usize = 4;
/// Bytes in front of a message's payload: length, type, origin, sequence.
pub const MSG_HEADER_LEN: usize = LEN_PREFIX + 1 + 8 + 8;
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
}

/// The largest length field a node with `--max-frame max_frame` accepts: a
/// message frame whose payload is exactly `max_frame` bytes.
pub fn frame_limit(max_frame: usize) -> usize {
    (MSG_HEADER_LEN - LEN_PREFIX + max_frame).max(MAX_HELLO_LEN)
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
    /// One message: one line of some node's stdin.
    Msg {
        origin: NodeId,
        seq: u64,
        payload: &'a [u8],
    },
    Ping(u64),
    Pong(u64),
    /// "I am closing this connection politely, and why."
    Bye(&'a [u8]),
    /// "You are my peer": the answer to a HELLO that the node admits. Each
    /// side counts the other as a peer only once it has received this, so a
    /// refused connection (BYE instead) is never mistaken for one.
    Accept,
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
        kind::MSG => {
            if body.len() < 16 {
                return Err(malformed("message", "shorter than its 16-byte header"));
            }
            let payload = &body[16..];
            // A line never holds its own terminator: a newline inside a
            // payload could only forge a second line on the receiver's
            // stdout (`-f tagged` would print it under any name).
            if memchr::memchr(b'\n', payload).is_some() {
                return Err(malformed("message", "payload contains a newline"));
            }
            Frame::Msg {
                origin: BigEndian::read_u64(&body[0..8]),
                seq: BigEndian::read_u64(&body[8..16]),
                payload,
            }
        }
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
        other => return Err(FrameError::UnknownType(other)),
    };
    Ok(Some((decoded, LEN_PREFIX + len)))
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
            Frame::Msg {
                origin,
                seq,
                payload,
            } => {
                out.extend_from_slice(&msg_header(*origin, *seq, payload.len()));
                out.extend_from_slice(payload);
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
        }
    }

    /// This frame as a fresh byte vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// The header of a message frame whose payload is `payload_len` bytes long.
/// Lets a caller write a payload straight after it without building a `Frame`.
pub fn msg_header(origin: NodeId, seq: u64, payload_len: usize) -> [u8; MSG_HEADER_LEN] {
    let mut header = [0u8; MSG_HEADER_LEN];
    let len = u32::try_from(MSG_HEADER_LEN - LEN_PREFIX + payload_len)
        .expect("payload length is bounded by --max-frame");
    BigEndian::write_u32(&mut header[0..4], len);
    header[4] = kind::MSG;
    BigEndian::write_u64(&mut header[5..13], origin);
    BigEndian::write_u64(&mut header[13..21], seq);
    header
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
                "0000001d 01 50434154 0001 0123456789abcdef 1bcd 00100000 0005 05 616c696365",
            ),
            (
                Frame::Msg {
                    origin: 0x0123_4567_89ab_cdef,
                    seq: 1,
                    payload: b"Hello",
                },
                "00000016 02 0123456789abcdef 0000000000000001 48656c6c6f",
            ),
            (
                Frame::Msg {
                    origin: 0x0123_4567_89ab_cdef,
                    seq: 2,
                    payload: b"",
                },
                "00000011 02 0123456789abcdef 0000000000000002",
            ),
            (Frame::Ping(42), "00000009 03 000000000000002a"),
            (Frame::Pong(42), "00000009 04 000000000000002a"),
            (
                Frame::Bye(b"shutting down"),
                "0000000e 05 7368757474696e6720646f776e",
            ),
            (Frame::Accept, "00000001 06"),
        ]
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
            assert!(
                doc.contains(expected),
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
                origin: 9,
                seq: seq as u64,
                payload,
            });
            frames.push(Frame::Ping(seq as u64));
        }
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
                out.push(owned(frame));
                buffered.drain(..used);
            }
        }
        assert!(buffered.is_empty(), "bytes left over");
        out
    }

    fn owned(frame: Frame<'_>) -> Frame<'static> {
        match frame {
            Frame::Msg {
                origin,
                seq,
                payload,
            } => Frame::Msg {
                origin,
                seq,
                payload: Box::leak(payload.to_vec().into_boxed_slice()),
            },
            Frame::Bye(reason) => Frame::Bye(Box::leak(reason.to_vec().into_boxed_slice())),
            Frame::Hello(h) => Frame::Hello(h),
            Frame::Ping(t) => Frame::Ping(t),
            Frame::Pong(t) => Frame::Pong(t),
            Frame::Accept => Frame::Accept,
        }
    }

    #[test]
    fn a_stream_split_at_every_position_decodes_the_same() {
        let (frames, bytes) = stream();
        for cut in 0..=bytes.len() {
            let (a, b) = bytes.split_at(cut);
            assert_eq!(decode_in_parts(&[a, b]), frames, "split at {cut}");
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
                origin: 1,
                seq: seq as u64,
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
        let max_frame = 1000;
        let at = Frame::Msg {
            origin: 1,
            seq: 1,
            payload: &[b'a'; 1000],
        }
        .to_bytes();
        assert!(decode(&at, frame_limit(max_frame)).unwrap().is_some());
        let over = Frame::Msg {
            origin: 1,
            seq: 1,
            payload: &[b'a'; 1001],
        }
        .to_bytes();
        assert!(matches!(
            decode(&over, frame_limit(max_frame)),
            Err(FrameError::TooLong { .. })
        ));
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
                malformed("message", "shorter than its 16-byte header"),
            ),
            (
                unhex(
                    "0000001d 01 47455420 0001 0123456789abcdef 1bcd 00100000 0005 05 616c696365",
                ),
                FrameError::BadMagic(*b"GET "),
            ),
            (
                unhex(
                    "0000001d 01 50434154 0007 0123456789abcdef 1bcd 00100000 0005 05 616c696365",
                ),
                FrameError::UnsupportedVersion(7),
            ),
            (
                unhex(
                    "0000001d 01 50434154 0001 0123456789abcdef 1bcd 00100000 0005 06 616c696365",
                ),
                malformed("hello", "name length does not match the frame length"),
            ),
            (
                unhex(
                    "0000001d 01 50434154 0001 0123456789abcdef 1bcd 00100000 0005 05 616c69ff65",
                ),
                malformed("hello", "name is not valid UTF-8"),
            ),
            (
                unhex(
                    "0000001d 01 50434154 0001 0123456789abcdef 1bcd 00100000 0005 05 616c690a65",
                ),
                malformed("hello", "name contains control characters"),
            ),
            (
                unhex(
                    "0000001d 01 50434154 0001 0123456789abcdef 1bcd 00100000 0005 05 616c3e6365",
                ),
                malformed("hello", "name contains '>'"),
            ),
            (
                unhex(
                    "0000001f 01 50434154 0001 0123456789abcdef 1bcd 00100000 0005 07 61e280a8696365",
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
                "00000014 02 0123456789abcdef 0000000000000001 610a62",
                malformed("message", "payload contains a newline"),
            ),
            (
                "0000001d 01 50434154 0001 0123456789abcdef 1bcd 00100000 ffff 05 616c696365",
                FrameError::OutOfBounds {
                    field: "keepalive",
                    value: 65535,
                    min: 1,
                    max: 3600,
                },
            ),
            (
                "0000001d 01 50434154 0001 0123456789abcdef 1bcd 00100000 0000 05 616c696365",
                FrameError::OutOfBounds {
                    field: "keepalive",
                    value: 0,
                    min: 1,
                    max: 3600,
                },
            ),
            (
                "0000001d 01 50434154 0001 0123456789abcdef 1bcd 00000000 0005 05 616c696365",
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

    #[test]
    fn a_newline_anywhere_in_a_payload_is_refused() {
        for payload in [&b"\n"[..], b"harmless\nalice> send the password", b"end\n"] {
            let bytes = Frame::Msg {
                origin: 1,
                seq: 1,
                payload,
            }
            .to_bytes();
            assert_eq!(
                decode(&bytes, LIMIT),
                Err(malformed("message", "payload contains a newline"))
            );
        }
        let cr = Frame::Msg {
            origin: 1,
            seq: 1,
            payload: b"a\rb",
        }
        .to_bytes();
        assert!(decode(&cr, LIMIT).is_ok(), "any byte but \\n is data");
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
        let mut bytes = msg_header(5, 6, 3).to_vec();
        bytes.extend_from_slice(b"abc");
        let expected = Frame::Msg {
            origin: 5,
            seq: 6,
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
