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

/// Whether a group secret is in use, as the preamble says. The secret's
/// mode byte is also the version of its derivation into the PSK: 1 was one
/// BLAKE2s (before Argon2id), and is refused by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    KeysOnly = 0,
    Secret = 2,
}

/// The mode byte of a node whose secret is derived the old (fast) way.
const OLD_SECRET: u8 = 1;

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
    /// The peer derives its group secret the old way (an older peercat).
    OldSecret,
    /// The peer's static key is low-order: it proves nothing.
    WeakKey(Key),
    /// Another process proves our own key: two nodes share one key file.
    SameKey(Key),
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
            SecureError::OldSecret => write!(
                f,
                "an older peercat: its --secret-file is derived the old, fast way (the mode \
                 byte of its preamble is 1); upgrade it; refusing it"
            ),
            SecureError::WeakKey(key) => write!(
                f,
                "its key {} is a low-order (weak) key such as all zeros, which proves \
                 nothing; refusing it",
                fingerprint(key)
            ),
            SecureError::SameKey(key) => write!(
                f,
                "another node is using our key (node {}, from our --key file): two nodes \
                 with one key cannot link, and members cannot tell them apart; give each \
                 node its own key (peercat --keygen)",
                fingerprint(key)
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
    if theirs == OLD_SECRET {
        return Err(SecureError::OldSecret);
    }
    if theirs != mode as u8 {
        return Err(SecureError::Mode { ours: mode });
    }
    let mut hs = build(security, initiator, &preamble)?;
    let mut msg = [0u8; MAX_HANDSHAKE_BODY];
    // The encrypted payloads of messages 2 and 3 carry each side's
    // instance: a node holding our key that is not this process is a
    // copy of our key, not ourselves.
    let instance = &security.instance[..];
    if initiator {
        io.send(&mut hs, &mut msg, &[])?; // -> e
        let theirs = io.receive(&mut hs, &mut msg, false)?; // <- e, ee, s, es
        io.check_allowed(security)?;
        io.send(&mut hs, &mut msg, instance)?; // -> s, se (psk)
        io.check_same_key(security, &theirs)?;
    } else {
        io.receive(&mut hs, &mut msg, false)?;
        io.send(&mut hs, &mut msg, instance)?;
        let theirs = io.receive(&mut hs, &mut msg, security.psk.is_some())?;
        io.check_allowed(security)?;
        io.check_same_key(security, &theirs)?;
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
    fn send(
        &mut self,
        hs: &mut HandshakeState,
        msg: &mut [u8],
        payload: &[u8],
    ) -> Result<(), SecureError> {
        let n = hs
            .write_message(payload, msg)
            .map_err(|e| SecureError::Noise(e.to_string()))?;
        let mut out = Vec::with_capacity(record::HEADER + n);
        record::encode(Kind::Handshake, &msg[..n], &mut out);
        self.write(&out)
    }

    /// Reads the next handshake message and returns its payload; a refusal
    /// ends the handshake. `mixes_secret`: the message that proves the
    /// group secret (the initiator's last, read by the responder).
    fn receive(
        &mut self,
        hs: &mut HandshakeState,
        msg: &mut [u8],
        mixes_secret: bool,
    ) -> Result<Vec<u8>, SecureError> {
        let body = self.read_record()?;
        let read = hs.read_message(&body, msg);
        // snow has the static key even when what follows it fails.
        self.remote = self.remote.or_else(|| {
            hs.get_remote_static()
                .and_then(|k| k.get(..KEY_LEN))
                .and_then(|k| k.try_into().ok())
        });
        match read {
            Ok(n) => Ok(msg[..n].to_vec()),
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
        // snow does not refuse a DH result of zero: a low-order key would
        // authenticate without its private key.
        if super::is_low_order(&key) {
            self.refuse("a low-order (weak) static key proves nothing");
            return Err(SecureError::WeakKey(key));
        }
        if !security.admits(&key) {
            self.refuse(&format!(
                "key {} is not on this node's --allow list",
                fingerprint(&key)
            ));
            return Err(SecureError::NotAllowed(key));
        }
        Ok(())
    }

    /// Refuses a peer that proves our own key from another process: two
    /// nodes started with one --key file. (Our own process, dialed by
    /// mistake, sends our instance; the HELLO exchange says so.) A peer
    /// that sends no instance (an older peercat) is let through.
    fn check_same_key(&mut self, security: &Security, theirs: &[u8]) -> Result<(), SecureError> {
        let ours = &security.instance[..];
        if self.remote == Some(security.public) && theirs.len() == ours.len() && theirs != ours {
            self.refuse("this node uses the same --key as you: each node needs its own key");
            return Err(SecureError::SameKey(security.public));
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
pub(super) fn printable_reason(body: &[u8]) -> String {
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

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use snow::params::{CipherChoice, DHChoice, HashChoice};
    use snow::resolvers::{CryptoResolver, DefaultResolver};
    use snow::types::{Cipher, Dh, Hash, Random};

    use super::*;
    use crate::secure::keys::Allowed;
    use crate::secure::{generate_keypair, public_of};

    /// Curve25519 whose static key is all zeros: the public key a stranger
    /// with no private key claims, and whose every DH gives zeros.
    struct ZeroStatic {
        inner: Box<dyn Dh>,
        is_static: bool,
    }

    impl Dh for ZeroStatic {
        fn name(&self) -> &'static str {
            self.inner.name()
        }
        fn pub_len(&self) -> usize {
            self.inner.pub_len()
        }
        fn priv_len(&self) -> usize {
            self.inner.priv_len()
        }
        fn set(&mut self, privkey: &[u8]) {
            self.is_static = true;
            self.inner.set(privkey);
        }
        fn generate(&mut self, rng: &mut dyn Random) -> Result<(), snow::Error> {
            self.inner.generate(rng)
        }
        fn pubkey(&self) -> &[u8] {
            if self.is_static {
                &[0; KEY_LEN]
            } else {
                self.inner.pubkey()
            }
        }
        fn privkey(&self) -> &[u8] {
            self.inner.privkey()
        }
        fn dh(&self, pubkey: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
            if self.is_static {
                out[..KEY_LEN].fill(0);
                Ok(())
            } else {
                self.inner.dh(pubkey, out)
            }
        }
    }

    struct ZeroResolver;

    impl CryptoResolver for ZeroResolver {
        fn resolve_rng(&self) -> Option<Box<dyn Random>> {
            DefaultResolver.resolve_rng()
        }
        fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
            Some(Box::new(ZeroStatic {
                inner: DefaultResolver.resolve_dh(choice)?,
                is_static: false,
            }))
        }
        fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
            DefaultResolver.resolve_hash(choice)
        }
        fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
            DefaultResolver.resolve_cipher(choice)
        }
    }

    fn security(allow: Vec<Key>) -> Security {
        let private = generate_keypair().unwrap().0;
        Security {
            public: public_of(&private),
            private,
            psk: None,
            instance: [3; 16],
            allow: Some(
                allow
                    .into_iter()
                    .map(|key| Allowed {
                        key,
                        name: None,
                        line: 1,
                    })
                    .collect(),
            ),
        }
    }

    /// Reads one record's body from `stream`.
    fn read_record(stream: &mut TcpStream) -> (u8, Vec<u8>) {
        let mut head = [0; 3];
        stream.read_exact(&mut head).unwrap();
        let mut body = vec![0; usize::from(u16::from_be_bytes([head[1], head[2]]))];
        stream.read_exact(&mut body).unwrap();
        (head[0], body)
    }

    /// Noise XX as a stranger with no private key would run it: static key
    /// all zeros. Even listed (the list parser refuses such a key, this
    /// lists it behind its back), the handshake refuses it.
    #[test]
    fn a_low_order_static_key_is_refused_even_when_listed() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let node = thread_node(listener, security(vec![[0; KEY_LEN]]));
        let mut stream = TcpStream::connect(addr).unwrap();
        let mut preamble = MAGIC.to_vec();
        preamble.push(Mode::KeysOnly as u8);
        stream.write_all(&preamble).unwrap();
        let mut theirs = [0; PREAMBLE_LEN];
        stream.read_exact(&mut theirs).unwrap();
        assert_eq!(theirs.to_vec(), preamble);
        let mut hs =
            snow::Builder::with_resolver(PARAMS_XX.parse().unwrap(), Box::new(ZeroResolver))
                .local_private_key(&[1; KEY_LEN])
                .unwrap()
                .prologue(&preamble)
                .unwrap()
                .build_initiator()
                .unwrap();
        let (mut msg, mut payload) = ([0u8; 1024], [0u8; 1024]);
        let mut send = |hs: &mut HandshakeState, stream: &mut TcpStream| {
            let n = hs.write_message(&[], &mut msg).unwrap();
            let mut out = Vec::new();
            record::encode(Kind::Handshake, &msg[..n], &mut out);
            stream.write_all(&out).unwrap();
        };
        send(&mut hs, &mut stream);
        let (kind, body) = read_record(&mut stream);
        assert_eq!(kind, Kind::Handshake as u8);
        hs.read_message(&body, &mut payload).unwrap();
        send(&mut hs, &mut stream);
        assert_eq!(hs.get_remote_static().map(|k| k.len()), Some(KEY_LEN));
        match node.join().unwrap() {
            Err(SecureError::WeakKey(key)) => assert_eq!(key, [0; KEY_LEN]),
            Err(e) => panic!("refused, but not for its key: {e}"),
            Ok(_) => panic!("a stranger with an all-zero key got in"),
        }
        let (kind, body) = read_record(&mut stream);
        assert_eq!(kind, Kind::Refusal as u8);
        assert!(String::from_utf8_lossy(&body).contains("low-order"));
    }

    fn thread_node(
        listener: TcpListener,
        security: Security,
    ) -> thread::JoinHandle<Result<Secured, SecureError>> {
        thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            handshake(&security, &stream, false, Duration::from_secs(10))
        })
    }

    use std::thread;

    /// Both ends of one handshake over loopback.
    fn both_ends(
        dialer: Security,
        listener: Security,
    ) -> (Result<Secured, SecureError>, Result<Secured, SecureError>) {
        let socket = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let node = thread_node(socket, listener);
        let stream = TcpStream::connect(addr).unwrap();
        let ours = handshake(&dialer, &stream, true, Duration::from_secs(10));
        drop(stream);
        (ours, node.join().unwrap())
    }

    fn with_key(private: Key, instance: u8) -> Security {
        let mut security = security(vec![public_of(&private)]);
        security.private = private;
        security.public = public_of(&private);
        security.instance = [instance; crate::secure::INSTANCE_LEN];
        security
    }

    #[test]
    fn another_process_with_our_key_is_named_and_ourselves_is_not() {
        let private = generate_keypair().unwrap().0;
        let (a, b) = both_ends(with_key(private, 1), with_key(private, 2));
        for end in [a, b] {
            match end {
                Err(e @ SecureError::SameKey(_)) => {
                    assert!(e.to_string().starts_with("another node is using our key"))
                }
                Err(e) => panic!("{e}"),
                Ok(_) => panic!("two nodes with one key linked"),
            }
        }
        // Our own process (the same instance): the HELLO exchange tells.
        let (a, b) = both_ends(with_key(private, 1), with_key(private, 1));
        assert!(a.is_ok() && b.is_ok());
    }

    #[test]
    fn a_node_deriving_its_secret_the_old_way_is_named() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut ours = security(vec![]);
        ours.allow = None;
        ours.psk = Some([7; KEY_LEN]);
        let node = thread_node(listener, ours);
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(b"PCNOISE1\x01").unwrap();
        match node.join().unwrap() {
            Err(e @ SecureError::OldSecret) => assert!(e.to_string().contains("older peercat")),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("handshake done"),
        }
    }

    #[test]
    fn low_order_points_are_known_in_every_encoding() {
        let hex = |s: &str| -> Key {
            std::array::from_fn(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        };
        for weak in [
            "0000000000000000000000000000000000000000000000000000000000000000",
            "0100000000000000000000000000000000000000000000000000000000000000",
            "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
            "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "0000000000000000000000000000000000000000000000000000000000000080",
        ] {
            assert!(super::super::is_low_order(&hex(weak)), "{weak}");
        }
        for _ in 0..20 {
            let (_, public) = generate_keypair().unwrap();
            assert!(!super::super::is_low_order(&public));
        }
    }
}
