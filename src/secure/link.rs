//! The seam between a connection's threads and its socket: the reader reads
//! and the writer writes through these halves, plaintext or encrypted
//! alike. Each half belongs to one thread, so encryption happens in the
//! writer and decryption in the reader, never on the router thread, and the
//! halves share no lock.

use std::io::{self, IoSlice, Read};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::keys::Key;
use super::noise::{self, SecureError};
use super::record::{self, Opener, Sealer};
use super::{fingerprint, Security};
use crate::event::Direction;
use crate::frame::NodeId;
use crate::ratelog;
use crate::wire::{write_all_patiently, ReadBuf};

/// Records sealed per write, at most (256 KiB): the encrypted copy is
/// bounded, and a large batch still goes out in few syscalls.
const SEAL_BATCH: usize = 4;

/// The reading half.
pub enum RecvHalf {
    Plain,
    Noise(Box<Opener>),
}

/// The writing half.
pub enum SendHalf {
    Plain,
    Noise {
        sealer: Box<Sealer>,
        /// Records waiting to be written; reused from write to write.
        out: Vec<u8>,
    },
}

/// Both halves, and the peer's authenticated key on an encrypted link.
pub struct Link {
    pub rx: RecvHalf,
    pub tx: SendHalf,
    pub remote: Option<Key>,
}

impl Link {
    /// The node id the peer's key proves, which its HELLO must claim.
    pub fn proven_id(&self) -> Option<NodeId> {
        self.remote.as_ref().map(super::node_id_of)
    }
}

/// Opens a link on a new connection: plaintext without `security`, else
/// the Noise handshake. A failure is logged here (naming the address and
/// the peer's key where known) and returned as the reason for the dialer.
pub fn open(
    security: Option<&Security>,
    stream: &TcpStream,
    addr: SocketAddr,
    direction: Direction,
    timeout: Duration,
) -> Result<Link, String> {
    let Some(security) = security else {
        return Ok(Link {
            rx: RecvHalf::Plain,
            tx: SendHalf::Plain,
            remote: None,
        });
    };
    match noise::handshake(security, stream, direction == Direction::Out, timeout) {
        Ok(secured) => {
            let name = security.name_of(&secured.remote);
            log::debug!(
                "{addr}: encrypted link up, key {}{}",
                fingerprint(&secured.remote),
                name.map_or(String::new(), |n| format!(" ({n})"))
            );
            Ok(Link {
                rx: RecvHalf::Noise(Box::new(secured.opener)),
                tx: SendHalf::Noise {
                    sealer: Box::new(secured.sealer),
                    out: Vec::new(),
                },
                remote: Some(secured.remote),
            })
        }
        Err(e) => {
            log_refusal(addr, &e, direction);
            let _ = stream.shutdown(std::net::Shutdown::Both);
            Err(format!("{addr}: {e}"))
        }
    }
}

/// Refusals and failures of the encrypted handshake. Those a stranger can
/// cause (any inbound connection) are rate-limited per address; those of a
/// peer we dialed are the dialer's to log.
fn log_refusal(addr: SocketAddr, e: &SecureError, direction: Direction) {
    let quiet = matches!(e, SecureError::Closed | SecureError::Timeout(_));
    if let (SecureError::SameKey(_), Direction::In) = (e, direction) {
        // Only a holder of our private key gets this far: no stranger can
        // flood it, and the user must hear of it. (A dialer's line says it
        // for an outbound link.)
        log::error!("{addr}: {e}");
        return;
    }
    match direction {
        Direction::In if quiet => log::debug!("{addr}: {e}; closing"),
        Direction::In => ratelog::warn(refusal_kind(e), addr.ip(), || {
            format!(
                "{addr}: {e} (more like it from {} are counted, not logged, for {}s)",
                ratelog::describe_source(addr.ip()),
                ratelog::WINDOW.as_secs()
            )
        }),
        // The dialer logs the reason in its own line, which also says when
        // it dials again: one line per attempt.
        Direction::Out => log::debug!("{addr}: {e}; closing"),
    }
}

/// The rate-limit kind of a refusal: each reason from one source gets its
/// own first line, so a flood of one kind hides no other (a plaintext node
/// after a wrong secret, say).
fn refusal_kind(e: &SecureError) -> &'static str {
    match e {
        SecureError::Plaintext(_) => "refused plaintext nodes",
        SecureError::Mode { .. } | SecureError::OldSecret => "refused nodes of another kind",
        SecureError::WrongSecret(_) => "refused wrong group secrets",
        SecureError::NotAllowed(_) | SecureError::WeakKey(_) => "refused keys",
        SecureError::Refused { .. } => "refusals by peers",
        _ => "refused connections",
    }
}

impl RecvHalf {
    /// One read from `stream` into `rb` (see [`ReadBuf::read_from`]).
    pub fn read_into(
        &mut self,
        stream: &TcpStream,
        rb: &mut ReadBuf,
        limit: usize,
    ) -> io::Result<usize> {
        match self {
            RecvHalf::Plain => rb.read_from(&mut &*stream, limit),
            RecvHalf::Noise(opener) => rb.read_from(&mut Opened { opener, stream }, limit),
        }
    }
}

/// An [`Opener`] reading from a socket, as a `Read` of the plaintext.
struct Opened<'a> {
    opener: &'a mut Opener,
    stream: &'a TcpStream,
}

impl Read for Opened<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.opener.read(&mut &*self.stream, out)
    }
}

impl SendHalf {
    /// Writes every byte of `bufs` (see [`crate::wire::write_all_vectored`]).
    pub fn write_all(
        &mut self,
        stream: &TcpStream,
        bufs: &mut [IoSlice<'_>],
        patience: Duration,
    ) -> io::Result<()> {
        self.write_all_patiently(stream, bufs, patience, &|| None)
            .map(|_| ())
    }

    /// Writes every byte of `bufs` (see [`write_all_patiently`]); whether
    /// a write waited for room.
    pub fn write_all_patiently(
        &mut self,
        stream: &TcpStream,
        bufs: &mut [IoSlice<'_>],
        patience: Duration,
        alive: &dyn Fn() -> Option<Instant>,
    ) -> io::Result<bool> {
        let (sealer, out) = match self {
            SendHalf::Plain => return write_all_patiently(&mut &*stream, bufs, patience, alive),
            SendHalf::Noise { sealer, out } => (sealer, out),
        };
        let mut bufs = bufs;
        let mut left: usize = bufs.iter().map(|b| b.len()).sum();
        let small = left <= record::MAX_PLAINTEXT;
        let mut waited_for_room = false;
        while left > 0 {
            out.clear();
            let n = sealer
                .seal(bufs, SEAL_BATCH, out)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            IoSlice::advance_slices(&mut bufs, n);
            left -= n;
            waited_for_room |=
                write_all_patiently(&mut &*stream, &mut [IoSlice::new(out)], patience, alive)?;
        }
        // A quiet link gives back what a burst made it hold (256 KiB).
        if small && out.capacity() > record::MAX_RECORD {
            *out = Vec::new();
        }
        Ok(waited_for_room)
    }
}
