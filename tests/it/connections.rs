//! Connections: handshake deadline, self-connection, mutual dialing, the
//! peer limit, and redialing with backoff.

use std::io::Write;
use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{free_port, node, text, texts, Node, RawPeer, DEADLINE};

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
fn a_node_that_dials_itself_notices_and_does_not_dial_that_address_again() {
    let port = free_port();
    let a = node("a")
        .args(&[
            "-l",
            &format!("127.0.0.1:{port}"),
            &format!("127.0.0.1:{port}"),
        ])
        .start();
    a.wait_log("connected to itself");
    // The mesh never dials an address that is itself again (a real member
    // listening there later is learned like any other).
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
    // Both dials succeed. Whichever node sees both connections at once
    // closes the one dialed by the larger id; the other node either sees
    // both too and closes the same one, or hears the goodbye first (its
    // handshake on the second one had not reached its router yet) and
    // then takes the second one as a new peer.
    let settled = |n: &Node, other: &str| {
        n.log.wait_until(DEADLINE, |lines| {
            lines.iter().map(|l| text(l)).any(|l| {
                l.contains(&format!("two connections to {other}"))
                    || l.contains("said goodbye: duplicate connection")
            })
        })
    };
    assert!(settled(&a, "b"), "a never settled:\n{}", a.log_text());
    assert!(settled(&b, "a"), "b never settled:\n{}", b.log_text());
    assert!(
        a.count_log("two connections to b") + b.count_log("two connections to a") >= 1,
        "neither node saw two connections:\n{}\n{}",
        a.log_text(),
        b.log_text()
    );
    b.send(b"once\nmarker\n");
    let msgs_so_far = |lines: &[Vec<u8>]| {
        texts(lines)
            .iter()
            .filter(|l| l.contains("\"type\":\"msg\""))
            .count()
    };
    a.out.wait_until(DEADLINE, |lines| msgs_so_far(lines) >= 2);
    // Anything extra would have arrived with the marker.
    let lines = texts(&a.out.snapshot());
    let msgs: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("\"type\":\"msg\""))
        .collect();
    assert_eq!(msgs.len(), 2, "each message exactly once: {lines:?}");
    let ups = lines.iter().filter(|l| l.contains("peer_up")).count();
    let downs = lines.iter().filter(|l| l.contains("peer_down")).count();
    assert_eq!(ups, downs + 1, "one connection left: {lines:?}");
    assert!(ups <= 2, "{lines:?}");
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
fn silent_connections_beyond_the_cap_per_address_are_closed_at_once() {
    let a = node("a").args(&["-v"]).start();
    let _held: Vec<RawPeer> = (0..8).map(|_| RawPeer::connect(&a)).collect();
    a.wait_log_count("accepted a connection", 8);
    let mut ninth = RawPeer::connect(&a);
    assert!(
        ninth.read_until_closed(Duration::from_secs(3)),
        "a ninth silent connection from one address was kept"
    );
    let line = a.wait_log("8 connections from 127.0.0.1 are already in handshake");
    assert!(line.contains(&ninth.local_addr()), "{line}");
}

/// Each peer costs one file descriptor (its socket, shared by its reader and
/// writer threads), so a node with the usual limit of 1024 can hold hundreds.
#[test]
#[cfg(target_os = "linux")]
fn each_peer_costs_one_file_descriptor() {
    // --degree 50: the default (4) trims links above 8, which may close
    // some of these peers before all 21 are counted.
    let a = node("a")
        .args(&["--max-peers", "100", "--degree", "50"])
        .start();
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

/// A mistyped PEER shows under -q: the first failure is a warning.
#[test]
fn the_first_failure_to_reach_a_peer_shows_under_quiet() {
    let target = format!("127.0.0.1:{}", free_port());
    let a = node("a").args(&["-q", &target]).start();
    let line = a.wait_log(&format!("cannot connect to {target}"));
    assert!(line.contains("WARN"), "{line}");
}

#[test]
fn an_unresolvable_host_shows_under_quiet() {
    let a = node("a").args(&["-q", "no-such-host.invalid:7117"]).start();
    let line = a.wait_log("cannot resolve no-such-host.invalid");
    assert!(line.contains("WARN"), "{line}");
}

/// Repeats of the same failure are info, so they leave a quiet log alone.
#[test]
fn repeated_failures_to_reach_a_peer_are_info() {
    let target = format!("127.0.0.1:{}", free_port());
    let a = node("a").arg(&target).start();
    a.wait_log_count(&format!("cannot connect to {target}"), 3);
    let lines: Vec<String> = a
        .log_text()
        .lines()
        .filter(|l| l.contains("cannot connect"))
        .map(str::to_owned)
        .collect();
    assert!(lines[0].contains("WARN"), "{lines:?}");
    assert!(lines[1..].iter().all(|l| l.contains("INFO")), "{lines:?}");
}

/// A dialed address that answers with garbage: one log line for that
/// attempt (it used to be two: a warning from the connection, then the
/// dialer's "dialing again").
#[test]
fn a_failed_handshake_with_a_dialed_peer_is_one_line() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        // Dropping the listener too: the next attempt is refused.
    });
    let a = node("a").arg(&target).start();
    server.join().unwrap();
    // The next attempt's line comes after the first attempt's lines.
    a.wait_log(&format!("cannot connect to {target}"));
    let about_it: Vec<String> = a
        .log_text()
        .lines()
        .filter(|l| l.contains("protocol error in handshake"))
        .map(str::to_owned)
        .collect();
    assert_eq!(about_it.len(), 1, "{}", a.log_text());
    assert!(about_it[0].contains("WARN"), "{about_it:?}");
    assert!(about_it[0].contains("dialing again in"), "{about_it:?}");
}

/// `--advertise` is the address the group is told to dial for a node.
#[test]
fn members_learn_the_advertised_address() {
    let a = node("a").args(&["--advertise", "127.0.0.9:7777"]).start();
    let b = node("b").args(&["-f", "json"]).dial(&a).start();
    let line = b.wait_log("member up: a");
    assert!(line.contains("at 127.0.0.9:7777;"), "{line}");
}

/// A node started with `--peer-cache` and no PEER, whose remembered
/// members all refuse, says so once at the default level (attack40 F5: it
/// logged nothing, and a user restarting after the group was gone could
/// not tell why nothing happened); the next failures are detail.
#[test]
fn a_node_whose_cached_members_all_refuse_says_so_once() {
    let dir = crate::support::TempDir::new("dead-cache");
    let cache = dir.path("cache");
    std::fs::write(&cache, format!("127.0.0.1:{}\n", free_port())).unwrap();
    let a = node("a")
        .args(&["--peer-cache", cache.to_str().unwrap()])
        .start();
    let line = a.wait_log("remembered in --peer-cache are tried again");
    assert!(line.contains("[WARN]"), "{line}");
    assert!(line.contains("refused"), "{line}");
}

/// `--peer-cache` is written soon after a member comes up (not only every
/// 10 s and at exit), so a node killed right after joining can rejoin.
#[test]
fn the_peer_cache_is_written_soon_after_a_member_comes_up() {
    let dir = crate::support::TempDir::new("early-cache");
    let cache = dir.path("cache");
    let a = node("a").start();
    let b = node("b")
        .args(&["-v", "--peer-cache", cache.to_str().unwrap()])
        .dial(&a)
        .start();
    b.wait_log("member up: a");
    let joined = Instant::now();
    b.wait_log(": wrote 1 member address");
    assert!(
        joined.elapsed() < Duration::from_secs(5),
        "written after {:?}",
        joined.elapsed()
    );
    let text = std::fs::read_to_string(&cache).unwrap();
    assert!(text.contains(&format!(":{}", a.port)), "{text}");
    drop(b); // SIGKILL: nothing is written at exit
}
