//! The Noise handshake that opens an encrypted link, under a deadline.
//!
//! Both sides first send a 9-byte preamble (`PCNOISE1` and a mode byte: 0
//! keys only, 1 with a group secret), so that a plaintext node, a node of
//! the other mode and a stranger are each named as what they are. Then the
//! dialer (initiator) and the acceptor (responder) run Noise XX (XXpsk3 with
//! a secret) in handshake records; each side checks the other's static key
//! against its allow-list before it sends anything more. A side that refuses
//! says why in a refusal record and closes. Nothing about the group (no
//! HELLO, member or message) is sent before both checks have passed.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use snow::HandshakeState;

use super::keys::{Key, KEY_LEN};
use super::record::{self, Kind, Opener, RekeyPolicy, Sealer};
use super::{fingerprint, Security, PARAMS_PSK, PARAMS_XX};
use crate::frame::{self, Frame, MAX_HELLO_LEN};
use crate::wire::{classify, describe, IoFailure};

/// The first bytes of an encrypted link, before the mode byte.
pub const MAGIC: &[u8; 8] = b"PCNOISE1";
pub const PREAMBLE_LEN: usize = MAGIC.len() + 1;
/// The largest handshake or refusal record accepted (XX's longest message
/// is 96 bytes with an empty payload).
const MAX_HANDSHAKE_BODY: usize = 1024;
/// What the handshake reads at most at once; anything past the handshake
/// goes on to the record layer.
const BUF: usize = 4096;

/// Whether a group secret is in use, as the preamble says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    KeysOnly = 0,
    Secret = 1,
}

impl Mode {
    fn of(security: &Security) -> Mode {
        if security.psk.is_some() {
            Mode::Secret
        } else {
            Mode::KeysOnly
        }
    }
}

/// An encrypted link, ready for peercat's HELLO.
pub struct Secured {
    pub sealer: Sealer,
    pub opener: Opener,
    /// The peer's static public key, authenticated.
    pub remote: Key,
}

#[derive(Debug)]
pub enum SecureError {
    Timeout(Duration),
    /// The peer closed before the handshake was done.
    Closed,
    Io(io::Error),
    /// The peer is a plaintext peercat node (its HELLO's id and name).
    Plaintext(Option<(u64, String)>),
    /// The peer speaks something else entirely.
    NotPeercat(String),
    /// The peer has a group secret and we have none, or the other way round.
    Mode {
        ours: Mode,
    },
    /// The peer's last handshake message did not authenticate: it holds
    /// another group secret (or none).
    WrongSecret(Option<Key>),
    /// We refused the peer's key: not on our allow-list.
    NotAllowed(Key),
    /// The peer refused us, saying why.
    Refused {
        reason: String,
        key: Option<Key>,
    },
    /// Any other failure of the handshake.
    Noise(String),
}

impl fmt::Display for SecureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fp =
            |k: &Option<Key>| k.map_or(String::new(), |k| format!(" (key {})", fingerprint(&k)));
        match self {
            SecureError::Timeout(t) => {
                write!(f, "encrypted handshake not done within {}s", t.as_secs())
            }
            SecureError::Closed => write!(f, "closed the connection during the encrypted handshake"),
            SecureError::Io(e) => write!(f, "encrypted handshake failed: {}", describe(e)),
            SecureError::Plaintext(hello) => {
                write!(f, "a plaintext peercat node")?;
                if let Some((id, name)) = hello {
                    write!(f, " ({name}, node {id:016x})")?;
                }
                write!(
                    f,
                    " without --secret-file or --allow: this group is private; refusing it"
                )
            }
            SecureError::NotPeercat(what) => {
                write!(f, "not a private peercat node ({what}); refusing it")
            }
            SecureError::Mode { ours: Mode::Secret } => write!(
                f,
                "the peer has no --secret-file (keys only) and this group needs its secret; refusing it"
            ),
            SecureError::Mode { ours: Mode::KeysOnly } => write!(
                f,
                "the peer's group uses a --secret-file and this node has none; refusing it"
            ),
            SecureError::WrongSecret(key) => write!(
                f,
                "wrong group secret{}: its handshake does not authenticate with our --secret-file; refusing it",
                fp(key)
            ),
            SecureError::NotAllowed(key) => write!(
                f,
                "key {} is not on our --allow list; refusing it",
                fingerprint(key)
            ),
            SecureError::Refused { reason, key } => {
                write!(f, "refused by the peer{}: {reason}", fp(key))
            }
            SecureError::Noise(what) => write!(f, "encrypted handshake failed: {what}"),
        }
    }
}

/// Runs the handshake on `stream`; `initiator` for the side that dialed.
pub fn handshake(
    security: &Security,
    stream: &TcpStream,
    initiator: bool,
    timeout: Duration,
) -> Result<Secured, SecureError> {
    let mut io = HandshakeIo {
        stream,
        deadline: Instant::now() + timeout,
        timeout,
        buf: Vec::with_capacity(BUF),
        remote: None,
    };
    stream
        .set_write_timeout(Some(timeout))
        .map_err(SecureError::Io)?;
    let mode = Mode::of(security);
    let mut preamble = MAGIC.to_vec();
    preamble.push(mode as u8);
    io.write(&preamble)?;
    let theirs = io.read_preamble()?;
    if theirs != mode as u8 {
        return Err(SecureError::Mode { ours: mode });
    }
    let mut hs = build(security, initiator, &preamble)?;
    let mut msg = [0u8; MAX_HANDSHAKE_BODY];
    if initiator {
        io.send(&mut hs, &mut msg)?; // -> e
        io.receive(&mut hs, &mut msg, false)?; // <- e, ee, s, es
        io.check_allowed(security)?;
        io.send(&mut hs, &mut msg)?; // -> s, se (psk)
    } else {
        io.receive(&mut hs, &mut msg, false)?;
        io.send(&mut hs, &mut msg)?;
        io.receive(&mut hs, &mut msg, security.psk.is_some())?;
        io.check_allowed(security)?;
    }
    let remote = io
        .remote
        .ok_or_else(|| SecureError::Noise("no static key from the peer".to_owned()))?;
    let (to_responder, to_initiator) = hs.dangerously_get_raw_split();
    let (out_key, in_key) = if initiator {
        (to_responder, to_initiator)
    } else {
        (to_initiator, to_responder)
    };
    Ok(Secured {
        sealer: Sealer::new(&out_key, RekeyPolicy::default()),
        opener: Opener::new(&in_key, &io.buf),
        remote,
    })
}

fn build(
    security: &Security,
    initiator: bool,
    prologue: &[u8],
) -> Result<HandshakeState, SecureError> {
    let noise = |e: snow::Error| SecureError::Noise(e.to_string());
    let params = if security.psk.is_some() {
        PARAMS_PSK
    } else {
        PARAMS_XX
    };
    let mut builder = snow::Builder::new(params.parse().map_err(noise)?)
        .local_private_key(&security.private)
        .map_err(noise)?
        .prologue(prologue)
        .map_err(noise)?;
    if let Some(psk) = &security.psk {
        builder = builder.psk(3, psk).map_err(noise)?;
    }
    if initiator {
        builder.build_initiator()
    } else {
        builder.build_responder()
    }
    .map_err(noise)
}

/// The socket and the bytes read during the handshake.
struct HandshakeIo<'a> {
    stream: &'a TcpStream,
    deadline: Instant,
    timeout: Duration,
    /// Read, not yet used; what is left at the end goes to the [`Opener`].
    buf: Vec<u8>,
    /// The peer's static key, once the handshake has revealed it.
    remote: Option<Key>,
}

impl HandshakeIo<'_> {
    fn write(&self, bytes: &[u8]) -> Result<(), SecureError> {
        (&mut &*self.stream)
            .write_all(bytes)
            .map_err(|e| match classify(&e) {
                IoFailure::Timeout => SecureError::Timeout(self.timeout),
                _ => SecureError::Io(e),
            })
    }

    /// Reads once more, within the deadline.
    fn read_more(&mut self) -> Result<(), SecureError> {
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(SecureError::Timeout(self.timeout));
            }
            self.stream
                .set_read_timeout(Some(left))
                .map_err(SecureError::Io)?;
            let have = self.buf.len();
            self.buf.resize(BUF, 0);
            let read = (&mut &*self.stream).read(&mut self.buf[have..]);
            self.buf.truncate(have + *read.as_ref().unwrap_or(&0));
            match read {
                Ok(0) => return Err(SecureError::Closed),
                Ok(_) => return Ok(()),
                Err(e) => match classify(&e) {
                    IoFailure::Timeout | IoFailure::Interrupted => {}
                    IoFailure::Reset => return Err(SecureError::Closed),
                    IoFailure::Broken => return Err(SecureError::Io(e)),
                },
            }
        }
    }

    /// The peer's mode byte, or what the peer is if it sent no preamble.
    fn read_preamble(&mut self) -> Result<u8, SecureError> {
        loop {
            let n = self.buf.len().min(MAGIC.len());
            if self.buf[..n] != MAGIC[..n] {
                if let Some(e) = what_is_it(&self.buf) {
                    return Err(e);
                }
            } else if self.buf.len() >= PREAMBLE_LEN {
                let mode = self.buf[MAGIC.len()];
                self.buf.drain(..PREAMBLE_LEN);
                return Ok(mode);
            }
            if self.buf.len() == BUF {
                return Err(SecureError::NotPeercat("no preamble".to_owned()));
            }
            self.read_more()?;
        }
    }

    /// Writes the next handshake message.
    fn send(&mut self, hs: &mut HandshakeState, msg: &mut [u8]) -> Result<(), SecureError> {
        let n = hs
            .write_message(&[], msg)
            .map_err(|e| SecureError::Noise(e.to_string()))?;
        let mut out = Vec::with_capacity(record::HEADER + n);
        record::encode(Kind::Handshake, &msg[..n], &mut out);
        self.write(&out)
    }

    /// Reads the next handshake message; a refusal ends the handshake.
    /// `mixes_secret`: the message that proves the group secret (the
    /// initiator's last, read by the responder).
    fn receive(
        &mut self,
        hs: &mut HandshakeState,
        msg: &mut [u8],
        mixes_secret: bool,
    ) -> Result<(), SecureError> {
        let body = self.read_record()?;
        let read = hs.read_message(&body, msg);
        // snow has the static key even when what follows it fails.
        self.remote = self.remote.or_else(|| {
            hs.get_remote_static()
                .and_then(|k| k.get(..KEY_LEN))
                .and_then(|k| k.try_into().ok())
        });
        match read {
            Ok(_) => Ok(()),
            Err(snow::Error::Decrypt) if mixes_secret => {
                self.refuse("the group secret does not match this node's --secret-file");
                Err(SecureError::WrongSecret(self.remote))
            }
            Err(e) => Err(SecureError::Noise(e.to_string())),
        }
    }

    /// The body of the next handshake record.
    fn read_record(&mut self) -> Result<Vec<u8>, SecureError> {
        loop {
            match record::decode(&self.buf) {
                Ok(Some((rec, used))) => {
                    let body = rec.body.to_vec();
                    let kind = rec.kind;
                    self.buf.drain(..used);
                    return match kind {
                        Kind::Handshake => Ok(body),
                        Kind::Refusal => Err(SecureError::Refused {
                            reason: printable_reason(&body),
                            key: self.remote,
                        }),
                        _ => Err(SecureError::Noise(
                            "a data record before the handshake was done".to_owned(),
                        )),
                    };
                }
                Ok(None) => {}
                Err(e) => return Err(SecureError::Noise(e.to_string())),
            }
            if let Some(len) = self
                .buf
                .get(1..3)
                .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
            {
                if len > MAX_HANDSHAKE_BODY {
                    return Err(SecureError::Noise(format!(
                        "a handshake record of {len} bytes (at most {MAX_HANDSHAKE_BODY})"
                    )));
                }
            }
            self.read_more()?;
        }
    }

    /// Refuses the peer's key unless our allow-list has it.
    fn check_allowed(&mut self, security: &Security) -> Result<(), SecureError> {
        let Some(key) = self.remote else {
            return Err(SecureError::Noise("no static key from the peer".to_owned()));
        };
        if !security.admits(&key) {
            self.refuse(&format!(
                "key {} is not on this node's --allow list",
                fingerprint(&key)
            ));
            return Err(SecureError::NotAllowed(key));
        }
        Ok(())
    }

    /// Tells the peer why it is refused; it may not be listening.
    fn refuse(&self, reason: &str) {
        let mut out = Vec::new();
        record::encode(Kind::Refusal, reason.as_bytes(), &mut out);
        let _ = (&mut &*self.stream).write_all(&out);
    }
}

/// A peer's refusal reason, safe for one log line and short.
fn printable_reason(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    text.chars()
        .take(200)
        .flat_map(|c| {
            if frame::breaks_a_line(c) {
                c.escape_unicode().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// What sent bytes that are not our preamble: `None` while a plaintext
/// HELLO may still be arriving.
fn what_is_it(bytes: &[u8]) -> Option<SecureError> {
    match frame::decode(bytes, MAX_HELLO_LEN) {
        Ok(Some((Frame::Hello(hello), _))) => Some(SecureError::Plaintext(Some((
            hello.node_id,
            String::from_utf8_lossy(hello.name.as_bytes()).into_owned(),
        )))),
        Ok(Some((other, _))) => Some(SecureError::NotPeercat(format!(
            "it sent a plaintext {} first",
            crate::handshake::frame_name(&other)
        ))),
        Ok(None) => None,
        Err(e) => Some(SecureError::NotPeercat(e.to_string())),
    }
}
