//! The HELLO exchange that opens every connection, under a deadline.
//!
//! Both sides send their HELLO at once and then read the other's, so neither
//! waits for the other to speak first. Until a valid HELLO has arrived the
//! peer is a stranger: it may send at most one HELLO's worth of bytes, and it
//! gets a few seconds to do so.

use std::fmt;
use std::io::{self, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::frame::{self, Frame, FrameError, Hello, NodeId, MAX_HELLO_LEN};
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
            HandshakeError::Io(e) => write!(f, "handshake failed: {}", describe(e)),
        }
    }
}

/// Sends our HELLO and returns the peer's. Frames that arrive right after the
/// peer's HELLO stay in `rb` for the reader.
pub fn exchange(
    stream: &TcpStream,
    rb: &mut ReadBuf,
    ours: &Hello,
    timeout: Duration,
) -> Result<Hello, HandshakeError> {
    let deadline = Instant::now() + timeout;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(HandshakeError::Io)?;
    (&mut &*stream)
        .write_all(&Frame::Hello(ours.clone()).to_bytes())
        .map_err(|e| match classify(&e) {
            IoFailure::Timeout => HandshakeError::Timeout(timeout),
            _ => HandshakeError::Io(e),
        })?;
    loop {
        if let Some((theirs, used)) = parse_hello(rb.pending(), ours.node_id)? {
            rb.consume(used);
            return Ok(theirs);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HandshakeError::Timeout(timeout));
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(HandshakeError::Io)?;
        match rb.read_from(&mut &*stream, MAX_HELLO_LEN) {
            Ok(0) => {
                return Err(HandshakeError::Closed {
                    got: rb.pending().len(),
                })
            }
            Ok(_) => {}
            Err(e) => match classify(&e) {
                IoFailure::Timeout | IoFailure::Interrupted => {}
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
        Frame::Msg { .. } => "MSG",
        Frame::Ping(_) => "PING",
        Frame::Pong(_) => "PONG",
        Frame::Bye(_) => "BYE",
        Frame::Accept => "ACCEPT",
        Frame::Status(_) => "STATUS",
        Frame::Down { .. } => "DOWN",
        Frame::Repair { .. } => "REPAIR",
        Frame::Peers(_) => "PEERS",
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
