//! Connections: handshake deadline, self-connection, mutual dialing, the
//! peer limit, and redialing with backoff.

use std::time::{Duration, Instant};

use crate::support::{free_port, node, texts, RawPeer};

#[test]
fn a_peer_that_says_nothing_is_dropped_after_the_handshake_timeout() {
    let a = node("a").start();
    let mut silent = RawPeer::connect(&a);
    let started = Instant::now();
    silent.read_hello();
    assert!(
        silent.read_until_closed(Duration::from_secs(15)),
        "still open after 15s"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    let line = a.wait_log("handshake timed out");
    assert!(
        line.contains(&silent.local_addr()),
        "names the peer: {line}"
    );
}

#[test]
fn a_node_that_dials_itself_notices_and_stops_dialing() {
    let port = free_port();
    let a = node("a")
        .args(&[
            "-l",
            &format!("127.0.0.1:{port}"),
            &format!("127.0.0.1:{port}"),
        ])
        .start();
    a.wait_log("connected to itself");
    a.wait_log(&format!(
        "127.0.0.1:{port} is this node itself; not dialing it again"
    ));
    assert_eq!(a.count_log("peer up"), 0);
}

#[test]
fn two_nodes_dialing_each_other_keep_exactly_one_connection() {
    let (pa, pb) = (free_port(), free_port());
    let a = node("a")
        .args(&[
            "-v",
            "-f",
            "json",
            "-l",
            &format!("127.0.0.1:{pa}"),
            &format!("127.0.0.1:{pb}"),
        ])
        .start();
    let mut b = node("b")
        .args(&[
            "-v",
            "-f",
            "json",
            "-l",
            &format!("127.0.0.1:{pb}"),
            &format!("127.0.0.1:{pa}"),
        ])
        .start();
    a.wait_peer("b");
    b.wait_peer("a");
    // Both dials succeed, so each node sees two connections and both close
    // the same one.
    a.wait_log("two connections to b");
    b.wait_log("two connections to a");
    a.wait_log("extra connection");
    b.wait_log("extra connection");
    b.send(b"once\nmarker\n");
    let lines = texts(&a.wait_lines(3));
    let msgs: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("\"type\":\"msg\""))
        .collect();
    assert_eq!(msgs.len(), 2, "each message exactly once: {lines:?}");
    assert_eq!(
        lines.iter().filter(|l| l.contains("peer_up")).count(),
        1,
        "{lines:?}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.contains("peer_down")).count(),
        0,
        "{lines:?}"
    );
}

#[test]
fn max_peers_refuses_connections_beyond_the_limit() {
    let a = node("a").args(&["--max-peers", "1"]).start();
    let b = node("b").dial(&a).start();
    b.wait_peer("a");
    let c = node("c").dial(&a).start();
    let refusal = a.wait_log("refusing c");
    assert!(refusal.contains("peer limit reached (1)"), "{refusal}");
    c.wait_log("refused the connection: peer limit reached (1)");
    // The peer that got in is not disturbed.
    assert_eq!(b.count_log("peer down"), 0);
}

/// The delays in "dialing again in 0.31s" lines.
fn redial_delays(log: &str) -> Vec<f64> {
    log.lines()
        .filter_map(|l| l.split("dialing again in ").nth(1))
        .map(|d| d.trim_end_matches('s').parse().unwrap())
        .collect()
}

#[test]
fn dialed_peers_are_redialed_with_growing_delays_until_they_answer() {
    let port = free_port();
    let target = format!("127.0.0.1:{port}");
    let a = node("a").arg(&target).start();
    a.wait_log(&format!("cannot connect to {target}"));
    // Three failed attempts: delays grow (base doubles, jitter is ±25%).
    a.wait_log_count("dialing again", 3);
    let delays = redial_delays(&a.log_text());
    assert!(delays.len() >= 3, "{delays:?}");
    assert!(delays[0] < delays[1] && delays[1] < delays[2], "{delays:?}");
    // The peer comes up: the next attempt reaches it.
    let b = node("b").args(&["-l", &target]).start();
    a.wait_peer("b");
    b.wait_peer("a");
    // It goes away and comes back: dialed again.
    drop(b);
    a.wait_log("peer down: b");
    let b = node("b").args(&["-l", &target]).start();
    b.wait_peer("a");
    a.wait_log_count("peer up: b", 2);
}

#[test]
fn silent_connections_beyond_max_peers_are_closed_at_once() {
    let a = node("a").args(&["-v", "--max-peers", "2"]).start();
    let _first = RawPeer::connect(&a);
    let _second = RawPeer::connect(&a);
    a.wait_log_count("accepted a connection", 2);
    let mut third = RawPeer::connect(&a);
    assert!(
        third.read_until_closed(Duration::from_secs(3)),
        "a third silent connection was kept"
    );
    let line = a.wait_log("connections are already in handshake; closing this one");
    assert!(line.contains(&third.local_addr()), "{line}");
}

/// Each peer costs one file descriptor (its socket, shared by its reader and
/// writer threads), so a node with the usual limit of 1024 can hold hundreds.
#[test]
#[cfg(target_os = "linux")]
fn each_peer_costs_one_file_descriptor() {
    let a = node("a").args(&["--max-peers", "100"]).start();
    let fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", a.pid))
            .unwrap()
            .count()
    };
    // Counted once the node is fully up (its stdout thread has its own
    // descriptor by then).
    let _first = RawPeer::handshake(&a, "first");
    let before = fds();
    let peers: Vec<RawPeer> = (0..20)
        .map(|i| RawPeer::handshake(&a, &format!("p{i}")))
        .collect();
    a.wait_log("; 21 connected");
    assert_eq!(fds() - before, peers.len());
}
