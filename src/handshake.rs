//! The HELLO exchange that opens every connection, under a deadline.
//!
//! Both sides send their HELLO at once and then read the other's, so neither
//! waits for the other to speak first. Until a valid HELLO has arrived the
//! peer is a stranger: it may send at most one HELLO's worth of bytes, and it
//! gets a few seconds to do so.
//!
//! On an encrypted link the HELLOs travel inside the link's records (see
//! [`crate::secure`]), and the id a HELLO claims must be the one the peer's
//! key proves. A plaintext node that meets a private one sees its preamble
//! and says so, instead of a puzzling frame error.

use std::fmt;
use std::io;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::frame::{self, Frame, FrameError, Hello, NodeId, MAX_HELLO_LEN};
use crate::secure::link::Link;
use crate::secure::noise::MAGIC;
use crate::secure::record::OpenError;
use crate::wire::{classify, describe, IoFailure, ReadBuf};

/// How long a new connection may take to say HELLO.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub enum HandshakeError {
    /// The peer said nothing valid within the deadline.
    Timeout(Duration),
    /// The peer closed the connection before its HELLO was complete.
    Closed { got: usize },
    /// The bytes that arrived are not a peercat HELLO.
    Protocol(String),
    /// The HELLO carries our own node id: we dialed ourselves.
    ItsMe,
    /// The HELLO claims another id than the one its key proves.
    NotItsId { claimed: NodeId, proven: NodeId },
    /// The peer is a private (encrypted) node and we are not.
    Private,
    /// The peer said BYE instead of HELLO: it refuses us.
    Refused(String),
    /// The socket failed.
    Io(io::Error),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Timeout(t) => {
                write!(f, "handshake timed out: no HELLO within {}s", t.as_secs())
            }
            HandshakeError::Closed { got: 0 } => {
                write!(f, "closed the connection before sending HELLO")
            }
            HandshakeError::Closed { got } => {
                write!(
                    f,
                    "closed the connection after {got} bytes of an incomplete HELLO"
                )
            }
            HandshakeError::Protocol(reason) => write!(f, "protocol error in handshake: {reason}"),
            HandshakeError::ItsMe => write!(f, "connected to itself"),
            HandshakeError::NotItsId { claimed, proven } => write!(
                f,
                "its HELLO claims node {claimed:016x} but its key is node {proven:016x}; refusing it"
            ),
            HandshakeError::Private => write!(
                f,
                "a private peercat node (encrypted links, --secret-file or --allow) and this \
                 node has neither: it cannot join that group"
            ),
            HandshakeError::Refused(reason) => write!(f, "refused by the peer: {reason}"),
            HandshakeError::Io(e) => write!(f, "handshake failed: {}", describe(e)),
        }
    }
}

/// Sends our HELLO through `link` and returns the peer's. Frames that
/// arrive right after the peer's HELLO stay in `rb` for the reader.
pub fn exchange(
    stream: &TcpStream,
    link: &mut Link,
    rb: &mut ReadBuf,
    ours: &Hello,
    timeout: Duration,
) -> Result<Hello, HandshakeError> {
    let deadline = Instant::now() + timeout;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(HandshakeError::Io)?;
    let hello = Frame::Hello(ours.clone()).to_bytes();
    link.tx
        .write_all(stream, &mut [std::io::IoSlice::new(&hello)], Duration::ZERO)
        .map_err(|e| match classify(&e) {
            IoFailure::Timeout => HandshakeError::Timeout(timeout),
            _ => HandshakeError::Io(e),
        })?;
    loop {
        let seen = rb.pending().len().min(MAGIC.len());
        let preamble = link.remote.is_none() && seen > 0 && rb.pending()[..seen] == MAGIC[..seen];
        if preamble && seen == MAGIC.len() {
            return Err(HandshakeError::Private);
        }
        // Perhaps a private node's preamble: wait for all of it.
        let parsed = if preamble {
            None
        } else {
            parse_hello(rb.pending(), ours.node_id)?
        };
        if let Some((theirs, used)) = parsed {
            rb.consume(used);
            if let Some(proven) = link.proven_id() {
                if theirs.node_id != proven {
                    return Err(HandshakeError::NotItsId {
                        claimed: theirs.node_id,
                        proven,
                    });
                }
            }
            return Ok(theirs);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HandshakeError::Timeout(timeout));
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(HandshakeError::Io)?;
        match link.rx.read_into(stream, rb, MAX_HELLO_LEN) {
            Ok(0) => {
                return Err(HandshakeError::Closed {
                    got: rb.pending().len(),
                })
            }
            Ok(_) => {}
            Err(e) => match classify(&e) {
                IoFailure::Timeout | IoFailure::Interrupted => {}
                // A bad record on an encrypted link, or a refusal.
                _ if e.kind() == std::io::ErrorKind::InvalidData => {
                    let refused = e
                        .get_ref()
                        .and_then(|inner| inner.downcast_ref::<OpenError>());
                    return Err(match refused {
                        Some(OpenError::Refused(reason)) => HandshakeError::Refused(reason.clone()),
                        _ => HandshakeError::Protocol(e.to_string()),
                    });
                }
                _ => return Err(HandshakeError::Io(e)),
            },
        }
    }
}

/// What the bytes a peer has sent so far make of its HELLO: the HELLO and
/// the bytes it used, `Ok(None)` while it is incomplete, or why the
/// connection must end. The pure half of [`exchange`]; public so that the
/// fuzz targets (`fuzz/`) drive the very code a stranger reaches.
pub fn parse_hello(
    pending: &[u8],
    our_id: NodeId,
) -> Result<Option<(Hello, usize)>, HandshakeError> {
    match frame::decode(pending, MAX_HELLO_LEN) {
        Ok(Some((Frame::Hello(theirs), _))) if theirs.node_id == our_id => {
            Err(HandshakeError::ItsMe)
        }
        Ok(Some((Frame::Hello(theirs), used))) => Ok(Some((theirs, used))),
        Ok(Some((Frame::Bye(reason), _))) => Err(HandshakeError::Refused(
            String::from_utf8_lossy(reason)
                .chars()
                .take(200)
                .flat_map(char::escape_debug)
                .collect(),
        )),
        Ok(Some((other, _))) => Err(HandshakeError::Protocol(format!(
            "expected HELLO first, got {}",
            frame_name(&other)
        ))),
        Ok(None) => Ok(None),
        Err(e) => Err(HandshakeError::Protocol(explain_stranger(&e, pending))),
    }
}

pub fn frame_name(frame: &Frame<'_>) -> &'static str {
    match frame {
        Frame::Hello(_) => "HELLO",
        Frame::Msg { .. } | Frame::Run { .. } => "MSG",
        Frame::Ping(_) => "PING",
        Frame::Pong(_) => "PONG",
        Frame::Bye(_) => "BYE",
        Frame::Accept => "ACCEPT",
        Frame::Status(_) => "STATUS",
        Frame::Down { .. } => "DOWN",
        Frame::Repair { .. } => "REPAIR",
        Frame::Peers(_) => "PEERS",
        Frame::Prune { .. } => "PRUNE",
        Frame::Graft { .. } => "GRAFT",
        Frame::TooBig { .. } => "TOO_BIG",
    }
}

/// A frame error from a stranger, with a hint when the bytes are plainly
/// text: an HTTP request or someone typing into `nc`.
fn explain_stranger(e: &FrameError, bytes: &[u8]) -> String {
    let start = &bytes[..bytes.len().min(16)];
    let texty = start.len() >= 4
        && start
            .iter()
            .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace());
    if texty {
        format!(
            "{e}; the bytes look like text (\"{}\"), not peercat",
            start.escape_ascii()
        )
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_http_request_is_named_as_text() {
        let bytes = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let e = frame::decode(bytes, MAX_HELLO_LEN).unwrap_err();
        let text = explain_stranger(&e, bytes);
        assert_eq!(
            text,
            "frame length 1195725856 exceeds the limit of 279 bytes; \
             the bytes look like text (\"GET / HTTP/1.1\\r\\n\"), not peercat"
        );
    }

    #[test]
    fn binary_garbage_gets_the_plain_reason() {
        let bytes = [0xff, 0xff, 0xff, 0xff, 0x00];
        let e = frame::decode(&bytes, MAX_HELLO_LEN).unwrap_err();
        assert_eq!(
            explain_stranger(&e, &bytes),
            "frame length 4294967295 exceeds the limit of 279 bytes"
        );
    }
}
