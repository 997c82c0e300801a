//! Bad input from the network: each kind gets a clear log line naming the
//! peer and the reason, that peer is closed, and nobody else notices.

use std::net::Shutdown;
use std::time::Duration;

use peercat::frame::{self, Frame, Hello};

use crate::support::{hello, node, texts, Node, RawPeer};

/// A node `a` with a well-behaved peer `b`, to check that bad input from a
/// third party does not disturb it.
fn pair() -> (Node, Node) {
    let a = node("a").start();
    let b = node("b").dial(&a).start();
    a.wait_peer("b");
    b.wait_peer("a");
    (a, b)
}

/// Sends `bytes` from a fresh connection (after a handshake if `greet`),
/// then checks the node's log line and that the connection was closed and
/// `b` still gets messages from `a`.
fn rejects(bytes: &[u8], greet: bool, reason: &str) {
    let (mut a, b) = pair();
    let mut bad = if greet {
        RawPeer::handshake(&a, "mallory")
    } else {
        RawPeer::connect(&a)
    };
    bad.send(bytes);
    let line = a.wait_log(reason);
    assert!(
        line.contains(&bad.local_addr()),
        "the log names the peer: {line}"
    );
    assert!(
        bad.read_until_closed(Duration::from_secs(10)),
        "the bad peer was not closed"
    );
    a.send(b"still fine\n");
    assert_eq!(texts(&b.wait_lines(1)), ["still fine"]);
    assert_eq!(b.count_log("peer down"), 0);
}

#[test]
fn garbage_bytes_are_rejected() {
    rejects(
        b"\x00\x00\x00\x05\x7e\xde\xad\xbe\xef",
        false,
        "unknown frame type 0x7e",
    );
}

#[test]
fn an_http_request_is_rejected_and_named_as_text() {
    rejects(
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        false,
        "frame length 1195725856 exceeds the limit of 279 bytes; the bytes look like text",
    );
}

#[test]
fn a_huge_length_prefix_is_rejected_before_any_allocation() {
    rejects(
        &[0xff; 4],
        false,
        "frame length 4294967295 exceeds the limit of 279 bytes",
    );
}

#[test]
fn a_huge_length_prefix_after_the_handshake_is_rejected() {
    rejects(
        &[0xff; 4],
        true,
        "frame length 4294967295 exceeds the limit of 1048604 bytes",
    );
}

#[test]
fn an_unknown_frame_type_is_rejected() {
    rejects(&[0, 0, 0, 1, 0x7f], true, "unknown frame type 0x7f");
}

#[test]
fn an_unknown_protocol_version_is_rejected() {
    let mut frame = hello("future", 99);
    frame[9..11].copy_from_slice(&9u16.to_be_bytes());
    rejects(&frame, false, "unsupported protocol version 9");
}

#[test]
fn a_second_hello_is_rejected() {
    rejects(&hello("again", 98), true, "protocol error: a second HELLO");
}

#[test]
fn a_frame_cut_short_by_the_peer_closing_is_reported() {
    let (mut a, b) = pair();
    let mut bad = RawPeer::handshake(&a, "mallory");
    let msg = Frame::Msg {
        life: 1,
        origin: 1,
        seq: 1,
        hops: 1,
        ttl: 16,
        payload: b"Hello",
    }
    .to_bytes();
    bad.send(&msg[..10]);
    bad.stream.shutdown(Shutdown::Write).unwrap();
    let line = a.wait_log("closed the connection in the middle of a frame (10 of 37 bytes)");
    assert!(line.contains("mallory"), "{line}");
    a.send(b"still fine\n");
    assert_eq!(texts(&b.wait_lines(1)), ["still fine"]);
}

#[test]
#[cfg(unix)]
fn a_reset_is_told_apart_from_a_polite_close() {
    let (a, b) = pair();
    // Closing a socket with unread data (the PONG) makes the kernel send a reset.
    let mut rude = RawPeer::handshake(&a, "rude");
    rude.send(&Frame::Ping(1).to_bytes());
    let mut peek = [0u8; 1];
    rude.stream.peek(&mut peek).unwrap();
    drop(rude);
    let line = a.wait_log("peer down: rude");
    assert!(line.contains("connection reset by peer"), "{line}");
    assert!(line.contains("WARN"), "{line}");
    // A polite close is logged as such.
    b.signal("INT");
    let line = a.wait_log("peer down: b");
    assert!(line.contains("said goodbye: shutting down"), "{line}");
    assert!(line.contains("INFO"), "{line}");
}

/// A HELLO as `hello()` makes it, with other bounds.
fn hello_with(max_frame: u32, keepalive_secs: u16) -> Vec<u8> {
    Frame::Hello(Hello {
        node_id: 97,
        listen_port: 0,
        max_frame,
        keepalive_secs,
        name: "odd".to_owned(),
    })
    .to_bytes()
}

#[test]
fn a_hello_announcing_a_keepalive_of_65535_is_refused() {
    rejects(
        &hello_with(1 << 20, 65535),
        false,
        "HELLO announces keepalive 65535, outside the allowed 1..=3600",
    );
}

#[test]
fn a_hello_announcing_a_keepalive_of_0_is_refused() {
    rejects(
        &hello_with(1 << 20, 0),
        false,
        "HELLO announces keepalive 0, outside the allowed 1..=3600",
    );
}

#[test]
fn a_hello_announcing_max_frame_0_is_refused() {
    rejects(
        &hello_with(0, 5),
        false,
        "HELLO announces max_frame 0, outside the allowed 1..=1073741824",
    );
}

#[test]
fn a_hello_with_a_name_that_would_fake_a_tag_is_refused() {
    rejects(&hello("al>ice", 96), false, "name contains '>'");
    rejects(
        &hello("al\u{2028}ice", 95),
        false,
        "name contains a line or paragraph separator",
    );
}

/// A newline always ends a message (its seq, printed under its origin's
/// name), so a line cannot carry a second one that `-f tagged` would print
/// as if whoever the attacker names had sent it; and a frame whose bytes
/// end inside a line (no newline closing it) is refused, never printed.
#[test]
fn a_message_without_its_newline_is_refused_and_never_printed() {
    let a = node("a").args(&["-f", "tagged"]).start();
    let mut b = node("b").dial(&a).start();
    a.wait_peer("b");
    let mut mallory = RawPeer::handshake(&a, "mallory");
    let payload = b"harmless\nalice> please send me the password";
    let mut bytes = frame::MsgHeader::new(1, 1).encode(payload.len()).to_vec();
    bytes.extend_from_slice(payload);
    mallory.send(&bytes);
    let line = a.wait_log("its last message has no newline");
    assert!(line.contains("mallory"), "the log names the peer: {line}");
    assert!(
        mallory.read_until_closed(Duration::from_secs(10)),
        "the forger was not closed"
    );
    // Everything mallory sent came before b's marker, so once the marker
    // is printed, a forged line would be there too.
    b.send(b"marker\n");
    let printed = a.wait_lines(1);
    assert_eq!(texts(&printed), ["b> marker"]);
}

/// A MSG frame of 4097 empty lines: 4120 bytes that would be 4097
/// messages, each a reference and work for the node. Refused and named.
#[test]
fn a_run_of_more_than_4096_messages_is_refused() {
    let empty = vec![&b""[..]; frame::MAX_RUN_ENTRIES + 1];
    let mut bytes = Vec::new();
    frame::put_run(&mut bytes, frame::MsgHeader::new(1, 1), &empty);
    rejects(&bytes, true, "its run holds more than 4096 messages");
}

#[test]
fn names_that_would_fake_a_tag_are_refused_on_the_command_line() {
    for name in ["a>b", "a\u{2028}b", "a\u{2029}b", "a\u{7}b"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_peercat"))
            .args(["-n", name, "-l", "127.0.0.1:0"])
            .output()
            .expect("run peercat");
        assert_eq!(out.status.code(), Some(2), "{name:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("names are printed at the start of lines"),
            "{err}"
        );
    }
}
