//! Strangers are bounded: what one address can make a node spend (memory,
//! handshake slots, log lines) does not grow with what it merely announces
//! or with how many sockets it opens.

use std::io::Read;
use std::time::{Duration, Instant};

use peercat::frame::{self, Frame};

use crate::support::{node, RawPeer, DEADLINE};

/// Waits until every reader thread (`rx-N`) of process `pid` is asleep,
/// three samples in a row: blocked in `read`, done with whatever the last
/// bytes made it do. False at the deadline.
#[cfg(target_os = "linux")]
fn readers_idle(pid: u32) -> bool {
    let busy = || {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
        tasks.flatten().any(|task| {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            let state = stat.rsplit(") ").next().and_then(|s| s.chars().next());
            comm.starts_with("rx-") && matches!(state, Some('R' | 'D'))
        })
    };
    let deadline = Instant::now() + DEADLINE;
    let mut quiet = 0;
    while Instant::now() < deadline {
        quiet = if busy() { 0 } else { quiet + 1 };
        if quiet == 3 {
            return true;
        }
        // Polling /proc: there is no event to block on.
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Reads frames from `peer` until a PONG carrying `token` arrives.
fn wait_pong(peer: &mut RawPeer, token: u64) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some((frame, used)) = frame::decode(&buf, 1 << 20).unwrap() {
            if frame == Frame::Pong(token) {
                return;
            }
            buf.drain(..used);
        }
        let n = peer.stream.read(&mut chunk).expect("read from the node");
        assert!(n > 0, "the node closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// 200 peers each announce a 1 MiB message and send none of it. Before,
/// the node reserved 1 MiB for each as soon as the header arrived.
#[test]
#[cfg(target_os = "linux")]
fn a_length_header_alone_costs_no_memory() {
    const PEERS: usize = 200;
    let a = node("a").args(&["--max-peers", "300"]).start();
    let mut peers: Vec<RawPeer> = (0..PEERS)
        .map(|i| RawPeer::handshake(&a, &format!("p{i}")))
        .collect();
    let before = a.rss_kib();
    for (token, peer) in peers.iter_mut().enumerate() {
        // A PING, then the header of a 1 MiB message: the PONG shows that
        // the reader has decoded up to the header and is waiting for the body.
        let mut bytes = Frame::Ping(token as u64).to_bytes();
        let len = (frame::MSG_HEADER_LEN - frame::LEN_PREFIX + (1 << 20)) as u32;
        bytes.extend_from_slice(&len.to_be_bytes());
        peer.send(&bytes);
    }
    for (token, peer) in peers.iter_mut().enumerate() {
        wait_pong(peer, token as u64);
    }
    assert!(
        readers_idle(a.pid),
        "the node's readers were still busy after {DEADLINE:?}"
    );
    let grown = a.rss_kib().saturating_sub(before);
    assert!(
        grown < 40 * 1024,
        "{PEERS} headers announcing 1 MiB each grew the node by {grown} KiB"
    );
    assert_eq!(a.count_log("peer down"), 0, "{}", a.log_text());
    drop(peers);
}
