//! The record layer of an encrypted link (PROTOCOL.md, "Private groups").
//!
//! Everything on an encrypted link after the preamble is a record:
//! `kind: u8 | len: u16 (big-endian) | body[len]`. A Noise message is at most
//! 65,535 bytes, so peercat's frames (up to `--max-frame`, 1 MiB by default)
//! travel as a byte stream cut into data records of at most
//! [`MAX_PLAINTEXT`] bytes each; the receiver decrypts them back into the
//! stream the frame decoder reads, which checks each frame's length against
//! `--max-frame` before it makes room for it. A record is at most
//! [`MAX_RECORD`] bytes, so a stranger's length prefix can never ask for
//! more.
//!
//! [`decode`] is pure (bytes in, a record or "need more" out), for tests and
//! fuzzing. [`Sealer`] and [`Opener`] are one direction each, owned by the
//! writer and the reader thread respectively: each has its own key and
//! nonce counter, so no lock is shared between them.

use std::fmt;
use std::io::{self, IoSlice, Read};
use std::time::{Duration, Instant};

use snow::params::CipherChoice;
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::Cipher;

/// The record header: kind and length.
pub const HEADER: usize = 3;
/// The largest record body: a Noise message.
pub const MAX_BODY: usize = u16::MAX as usize;
pub const MAX_RECORD: usize = HEADER + MAX_BODY;
/// The AEAD tag every data record carries.
pub const TAG: usize = 16;
/// The most plaintext one data record carries.
pub const MAX_PLAINTEXT: usize = MAX_BODY - TAG;

/// Rekey after this many records in one direction, or after
/// [`REKEY_AFTER_TIME`], whichever comes first (PROTOCOL.md says why).
pub const REKEY_AFTER_RECORDS: u64 = 1 << 20;
pub const REKEY_AFTER_TIME: Duration = Duration::from_secs(120);

/// What a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A Noise handshake message.
    Handshake = 1,
    /// Encrypted stream bytes.
    Data = 2,
    /// Encrypted stream bytes, after which the sender's key changes.
    DataThenRekey = 3,
    /// A refusal: a plain UTF-8 reason, the last record on the link.
    Refusal = 4,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Handshake,
            2 => Kind::Data,
            3 => Kind::DataThenRekey,
            4 => Kind::Refusal,
            _ => return None,
        })
    }
}

/// One record, borrowed from the buffer it was decoded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub kind: Kind,
    /// The header, which data records authenticate as associated data.
    pub header: [u8; HEADER],
    pub body: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// The first byte is no record kind.
    UnknownKind(u8),
    /// A data record too short to hold its tag.
    Short(usize),
    /// A data record that does not decrypt: wrong key, or altered.
    Forged,
    /// 2^64 - 1 records under one key chain: the link must end.
    NoncesUsedUp,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::UnknownKind(b) => write!(f, "unknown record kind {b}"),
            RecordError::Short(n) => {
                write!(
                    f,
                    "a data record of {n} bytes, shorter than its {TAG}-byte tag"
                )
            }
            RecordError::Forged => write!(
                f,
                "an encrypted record failed authentication (altered, or another key)"
            ),
            RecordError::NoncesUsedUp => write!(f, "record numbers used up"),
        }
    }
}

impl std::error::Error for RecordError {}

/// Decodes one record from the start of `bytes`: `Ok(None)` until it is
/// all there. Pure, and never allocates.
pub fn decode(bytes: &[u8]) -> Result<Option<(Record<'_>, usize)>, RecordError> {
    let Some(&first) = bytes.first() else {
        return Ok(None);
    };
    let kind = Kind::from_byte(first).ok_or(RecordError::UnknownKind(first))?;
    if bytes.len() < HEADER {
        return Ok(None);
    }
    let len = usize::from(u16::from_be_bytes([bytes[1], bytes[2]]));
    if matches!(kind, Kind::Data | Kind::DataThenRekey) && len < TAG {
        return Err(RecordError::Short(len));
    }
    let Some(body) = bytes.get(HEADER..HEADER + len) else {
        return Ok(None);
    };
    let header = [bytes[0], bytes[1], bytes[2]];
    Ok(Some((Record { kind, header, body }, HEADER + len)))
}

/// Appends a record of `kind` with `body` (at most [`MAX_BODY`] bytes).
pub fn encode(kind: Kind, body: &[u8], out: &mut Vec<u8>) {
    debug_assert!(body.len() <= MAX_BODY);
    out.push(kind as u8);
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
}

/// One direction's key and record counter. The counter is the Noise nonce:
/// never sent (TCP keeps records in order), never reused.
struct Direction {
    cipher: Box<dyn Cipher>,
    nonce: u64,
    /// Records and time since the last key change.
    records: u64,
    keyed_at: Instant,
}

impl Direction {
    fn new(key: &[u8; 32]) -> Direction {
        let mut cipher = DefaultResolver
            .resolve_cipher(&CipherChoice::ChaChaPoly)
            .expect("snow is built with ChaChaPoly");
        cipher.set(key);
        Direction {
            cipher,
            nonce: 0,
            records: 0,
            keyed_at: Instant::now(),
        }
    }

    /// The nonce for the next record; u64::MAX is Noise's, for rekeying.
    fn next_nonce(&mut self) -> Result<u64, RecordError> {
        let n = self.nonce;
        if n == u64::MAX - 1 {
            return Err(RecordError::NoncesUsedUp);
        }
        self.nonce += 1;
        self.records += 1;
        Ok(n)
    }

    /// Noise's REKEY: the next key is derived one way from this one, so a
    /// key taken from memory later does not open the records before it.
    fn rekey(&mut self) {
        self.cipher.rekey();
        self.records = 0;
        self.keyed_at = Instant::now();
    }
}

/// When a sender changes its key; the receiver follows the sender's marks.
#[derive(Debug, Clone, Copy)]
pub struct RekeyPolicy {
    pub records: u64,
    pub time: Duration,
}

impl Default for RekeyPolicy {
    fn default() -> Self {
        RekeyPolicy {
            records: REKEY_AFTER_RECORDS,
            time: REKEY_AFTER_TIME,
        }
    }
}

/// The sending half: turns stream bytes into data records.
pub struct Sealer {
    dir: Direction,
    policy: RekeyPolicy,
    /// Plaintext gathered for the next record.
    plain: Vec<u8>,
}

impl Sealer {
    pub fn new(key: &[u8; 32], policy: RekeyPolicy) -> Sealer {
        Sealer {
            dir: Direction::new(key),
            policy,
            plain: Vec::new(),
        }
    }

    /// Appends `bufs` to `out` as data records of at most
    /// [`MAX_PLAINTEXT`] bytes each (only the last may be shorter), at most
    /// `records` of them; returns how many plaintext bytes it took (advance
    /// `bufs` by that).
    pub fn seal(
        &mut self,
        bufs: &[IoSlice<'_>],
        records: usize,
        out: &mut Vec<u8>,
    ) -> Result<usize, RecordError> {
        let budget = records.saturating_mul(MAX_PLAINTEXT);
        let mut slices = bufs.iter().map(|s| &s[..]).filter(|s| !s.is_empty());
        let mut current: &[u8] = slices.next().unwrap_or(&[]);
        let mut taken = 0;
        while taken < budget && !current.is_empty() {
            let want = MAX_PLAINTEXT.min(budget - taken);
            if current.len() >= want {
                // Sealed where it lies.
                let (piece, rest) = current.split_at(want);
                self.seal_one(piece, out)?;
                current = rest;
                taken += want;
            } else {
                // A record that spans slices is gathered first.
                let mut plain = std::mem::take(&mut self.plain);
                plain.clear();
                while plain.len() < want && !current.is_empty() {
                    let n = current.len().min(want - plain.len());
                    plain.extend_from_slice(&current[..n]);
                    current = &current[n..];
                    if current.is_empty() {
                        current = slices.next().unwrap_or(&[]);
                    }
                }
                let sealed = self.seal_one(&plain, out);
                taken += plain.len();
                self.plain = plain;
                sealed?;
            }
            if current.is_empty() {
                current = slices.next().unwrap_or(&[]);
            }
        }
        Ok(taken)
    }

    /// Appends one data record holding `plain`.
    pub fn seal_one(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), RecordError> {
        let rekey = self.dir.records + 1 >= self.policy.records
            || self.dir.keyed_at.elapsed() >= self.policy.time;
        let kind = if rekey {
            Kind::DataThenRekey
        } else {
            Kind::Data
        };
        let len = plain.len() + TAG;
        let header = [kind as u8, (len >> 8) as u8, len as u8];
        let nonce = self.dir.next_nonce()?;
        let start = out.len();
        out.extend_from_slice(&header);
        out.resize(start + HEADER + len, 0);
        self.dir
            .cipher
            .encrypt(nonce, &header, plain, &mut out[start + HEADER..]);
        if rekey {
            self.dir.rekey();
        }
        Ok(())
    }
}

/// The receiving half: reads records from a socket and yields the stream
/// bytes inside them. Its buffers start small (an idle link costs little)
/// and grow to one record each at most.
pub struct Opener {
    dir: Direction,
    /// Bytes read from the socket: `cbuf[cstart..cend]` not yet opened.
    cbuf: Vec<u8>,
    cstart: usize,
    cend: usize,
    /// A record's plaintext that did not fit the caller's buffer:
    /// `plain[pstart..pend]` still to hand over.
    plain: Vec<u8>,
    pstart: usize,
    pend: usize,
    /// A record has been opened: the peer proved its keys on this link.
    opened: bool,
}

/// An opener's first read buffer.
const INITIAL_CBUF: usize = 4096;

impl Opener {
    /// `pending`: bytes already read past the handshake (at most a record).
    pub fn new(key: &[u8; 32], pending: &[u8]) -> Opener {
        debug_assert!(pending.len() <= MAX_RECORD);
        let n = pending.len().min(MAX_RECORD);
        let mut cbuf = vec![0; INITIAL_CBUF.max(n)];
        cbuf[..n].copy_from_slice(&pending[..n]);
        Opener {
            dir: Direction::new(key),
            cbuf,
            cstart: 0,
            cend: n,
            plain: Vec::new(),
            pstart: 0,
            pend: 0,
            opened: false,
        }
    }

    /// Reads stream bytes into `out`, reading records from `r` as needed.
    /// `Ok(0)` only at a clean end (between records); a socket timeout is
    /// returned as it is, with nothing lost; a bad record is `InvalidData`.
    pub fn read(&mut self, r: &mut impl Read, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pend > self.pstart {
                let n = out.len().min(self.pend - self.pstart);
                out[..n].copy_from_slice(&self.plain[self.pstart..self.pstart + n]);
                self.pstart += n;
                return Ok(n);
            }
            match self.open_buffered(out) {
                Ok(Some(n)) if n > 0 => return Ok(n),
                // Opened into `plain`, or an empty record.
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
            if !self.fill(r)? {
                return Ok(0);
            }
        }
    }

    /// Opens the next whole buffered record, into `out` if it fits, else
    /// into `plain`. `None` if no whole record is buffered.
    fn open_buffered(&mut self, out: &mut [u8]) -> Result<Option<usize>, OpenError> {
        let (kind, header, len, used) = match decode(&self.cbuf[self.cstart..self.cend]) {
            Ok(Some((record, used))) => (record.kind, record.header, record.body.len(), used),
            Ok(None) => return Ok(None),
            Err(e) => return Err(OpenError::Record(e)),
        };
        let body = self.cstart + HEADER..self.cstart + HEADER + len;
        self.cstart += used;
        match kind {
            Kind::Data | Kind::DataThenRekey => {}
            // A refusal is plaintext, so anyone on the path could write
            // one: it is believed only as the first record (the responder
            // refusing our last handshake message), never once the peer
            // has sent encrypted data; its text is the peer's, escaped.
            Kind::Refusal if self.opened => {
                return Err(OpenError::Unexpected("a plaintext refusal"));
            }
            Kind::Refusal => {
                let reason = super::noise::printable_reason(&self.cbuf[body]);
                return Err(OpenError::Refused(reason));
            }
            Kind::Handshake => return Err(OpenError::Unexpected("a handshake record")),
        }
        let nonce = self.dir.next_nonce().map_err(OpenError::Record)?;
        let size = len - TAG;
        let (dest, direct) = if out.len() >= size {
            (&mut out[..size], true)
        } else {
            if self.plain.len() < size {
                self.plain.resize(size, 0);
            }
            (&mut self.plain[..size], false)
        };
        self.dir
            .cipher
            .decrypt(nonce, &header, &self.cbuf[body], dest)
            .map_err(|_| OpenError::Record(RecordError::Forged))?;
        self.opened = true;
        if kind == Kind::DataThenRekey {
            self.dir.rekey();
        }
        if direct {
            Ok(Some(size))
        } else {
            (self.pstart, self.pend) = (0, size);
            Ok(Some(0))
        }
    }

    /// Reads more of the socket into `cbuf`, moving a partial record to the
    /// front first when the rest of it would not fit. False at a clean end.
    fn fill(&mut self, r: &mut impl Read) -> io::Result<bool> {
        if self.cstart == self.cend {
            (self.cstart, self.cend) = (0, 0);
        }
        let need = peek_record_len(&self.cbuf[self.cstart..self.cend]).unwrap_or(HEADER);
        if self.cstart + need > self.cbuf.len() {
            self.cbuf.copy_within(self.cstart..self.cend, 0);
            self.cend -= self.cstart;
            self.cstart = 0;
        }
        if need > self.cbuf.len() || self.cend == self.cbuf.len() {
            // Room for the record that has begun (at most MAX_RECORD):
            // only an authenticated peer gets this far.
            let grown = (2 * self.cbuf.len()).max(need).min(MAX_RECORD);
            self.cbuf.resize(grown, 0);
        }
        let n = r.read(&mut self.cbuf[self.cend..])?;
        if n == 0 {
            return match self.cend - self.cstart {
                0 => Ok(false),
                have => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    OpenError::Truncated(have),
                )),
            };
        }
        self.cend += n;
        Ok(true)
    }
}

/// The whole size of the record that has begun, once its header is there.
fn peek_record_len(bytes: &[u8]) -> Option<usize> {
    (bytes.len() >= HEADER).then(|| HEADER + usize::from(u16::from_be_bytes([bytes[1], bytes[2]])))
}

/// Why the receiving half stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    Record(RecordError),
    /// The peer sent a refusal record: its reason.
    Refused(String),
    /// A record of a kind that has no place after the handshake.
    Unexpected(&'static str),
    /// The connection closed inside a record, after this many bytes of it.
    Truncated(usize),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Record(e) => e.fmt(f),
            OpenError::Refused(reason) => write!(f, "refused by the peer: {reason}"),
            OpenError::Unexpected(what) => write!(f, "{what} after the handshake"),
            OpenError::Truncated(have) => write!(
                f,
                "closed inside an encrypted record, after {have} bytes of it"
            ),
        }
    }
}

impl std::error::Error for OpenError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Trickle;

    const KEY: [u8; 32] = [7; 32];

    fn stream_bytes(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    /// Seals `data` cut into slices of `cut` bytes, in writes of `budget`.
    fn seal_all(data: &[u8], cut: usize, policy: RekeyPolicy) -> Vec<u8> {
        let mut sealer = Sealer::new(&KEY, policy);
        let slices: Vec<IoSlice<'_>> = data.chunks(cut).map(IoSlice::new).collect();
        let mut bufs = &mut slices.clone()[..];
        let mut wire = Vec::new();
        while !bufs.is_empty() {
            let n = sealer.seal(bufs, 2, &mut wire).unwrap();
            IoSlice::advance_slices(&mut bufs, n);
        }
        wire
    }

    fn open_all(wire: &[u8], step: usize, out_size: usize) -> io::Result<Vec<u8>> {
        let mut opener = Opener::new(&KEY, &[]);
        let mut src = Trickle { data: wire, step };
        let mut got = Vec::new();
        let mut out = vec![0; out_size];
        loop {
            match opener.read(&mut src, &mut out)? {
                0 => return Ok(got),
                n => got.extend_from_slice(&out[..n]),
            }
        }
    }

    #[test]
    fn a_stream_survives_any_slicing_read_size_and_buffer() {
        let data = stream_bytes(300_000);
        for (cut, step, out) in [
            (300_000, 1 << 20, 1 << 20),
            (1000, 7, 4096),
            (70_000, 65_538, 100),
            (1, 4096, 65_519),
            (65_519, 3, 1),
        ] {
            let wire = seal_all(
                &data[..if cut == 1 { 5000 } else { data.len() }],
                cut,
                RekeyPolicy::default(),
            );
            let want = &data[..if cut == 1 { 5000 } else { data.len() }];
            assert_eq!(
                open_all(&wire, step, out).unwrap(),
                want,
                "cut {cut} step {step} out {out}"
            );
        }
    }

    #[test]
    fn records_are_at_most_one_noise_message_and_carry_no_plaintext() {
        let data = vec![b'x'; 1 << 20];
        let wire = seal_all(&data, 1 << 20, RekeyPolicy::default());
        let mut rest = &wire[..];
        let mut records = 0;
        while let Some((record, used)) = decode(rest).unwrap() {
            assert_eq!(record.kind, Kind::Data);
            assert!(record.body.len() <= MAX_BODY);
            rest = &rest[used..];
            records += 1;
        }
        assert!(rest.is_empty());
        assert_eq!(records, (1usize << 20).div_ceil(MAX_PLAINTEXT));
        assert!(!wire.windows(64).any(|w| w.iter().all(|&b| b == b'x')));
    }

    #[test]
    fn both_sides_change_keys_at_the_senders_mark() {
        let data = stream_bytes(200_000);
        let policy = RekeyPolicy {
            records: 2,
            time: Duration::from_secs(3600),
        };
        let wire = seal_all(&data, 1000, policy);
        let kinds: Vec<Kind> = {
            let mut rest = &wire[..];
            let mut kinds = Vec::new();
            while let Some((r, used)) = decode(rest).unwrap() {
                kinds.push(r.kind);
                rest = &rest[used..];
            }
            kinds
        };
        assert_eq!(kinds[1], Kind::DataThenRekey);
        assert_eq!(kinds[3], Kind::DataThenRekey);
        assert_eq!(kinds[2], Kind::Data);
        assert_eq!(open_all(&wire, 5000, 70_000).unwrap(), data);
        // The keys did change: the same bytes sealed without rekeying differ
        // after the first mark.
        let plain = seal_all(&data, 1000, RekeyPolicy::default());
        let second = HEADER + MAX_BODY;
        assert_ne!(
            wire[2 * second + HEADER..][..32],
            plain[2 * second + HEADER..][..32]
        );
        // And a time bound marks the next record.
        let timed = RekeyPolicy {
            records: u64::MAX,
            time: Duration::ZERO,
        };
        let wire = seal_all(&data[..10], 10, timed);
        assert_eq!(decode(&wire).unwrap().unwrap().0.kind, Kind::DataThenRekey);
    }

    #[test]
    fn altered_replayed_truncated_and_refused_streams_are_errors() {
        let data = stream_bytes(100_000);
        let wire = seal_all(&data, 100_000, RekeyPolicy::default());
        let kind_of = |r: io::Result<Vec<u8>>| r.unwrap_err().kind();
        let mut altered = wire.clone();
        altered[HEADER + 10] ^= 1;
        assert_eq!(
            kind_of(open_all(&altered, 4096, 4096)),
            io::ErrorKind::InvalidData
        );
        // The header is authenticated too: a data record marked as a rekey.
        let mut marked = wire.clone();
        marked[0] = Kind::DataThenRekey as u8;
        assert_eq!(
            kind_of(open_all(&marked, 4096, 4096)),
            io::ErrorKind::InvalidData
        );
        // A record replayed (or dropped) breaks the nonce sequence.
        let first = HEADER + MAX_BODY;
        let mut replayed = wire[..first].to_vec();
        replayed.extend_from_slice(&wire[..first]);
        let e = open_all(&replayed, 4096, 4096).unwrap_err();
        assert!(e.to_string().contains("failed authentication"), "{e}");
        let e = open_all(&wire[..wire.len() - 1], 4096, 4096).unwrap_err();
        assert!(
            e.to_string().contains("closed inside an encrypted record"),
            "{e}"
        );
        let mut refused = Vec::new();
        encode(Kind::Refusal, b"not on the list", &mut refused);
        let e = open_all(&refused, 4096, 4096).unwrap_err();
        assert_eq!(e.to_string(), "refused by the peer: not on the list");
        // Its text is the peer's: escaped, never a line of our log.
        let mut forged = Vec::new();
        encode(
            Kind::Refusal,
            b"x\n12:00 [ERROR] forged\x1b[2J",
            &mut forged,
        );
        let e = open_all(&forged, 4096, 4096).unwrap_err().to_string();
        assert!(!e.contains('\n') && !e.contains('\x1b'), "{e}");
        // After encrypted data, a plaintext refusal is anyone's on the path.
        let mut late = wire.clone();
        late.extend_from_slice(&refused);
        let e = open_all(&late, 4096, 4096).unwrap_err().to_string();
        assert_eq!(e, "a plaintext refusal after the handshake");
    }

    #[test]
    fn decoding_needs_a_whole_record_and_rejects_nonsense() {
        let mut wire = Vec::new();
        encode(Kind::Handshake, b"hello", &mut wire);
        for cut in 0..wire.len() {
            assert_eq!(decode(&wire[..cut]), Ok(None));
        }
        let (record, used) = decode(&wire).unwrap().unwrap();
        assert_eq!(
            (record.kind, record.body, used),
            (Kind::Handshake, &b"hello"[..], 8)
        );
        assert_eq!(decode(&[0, 0, 0]), Err(RecordError::UnknownKind(0)));
        assert_eq!(decode(&[2, 0, 15]), Err(RecordError::Short(15)));
        assert_eq!(
            decode(b"GET / HTTP/1.1"),
            Err(RecordError::UnknownKind(b'G'))
        );
    }
}
