//! Dead peers: a peer that stops answering (a frozen host, a pulled cable)
//! is dropped within 3 x this node's --keepalive, whatever the peer
//! announced; a healthy peer that pings less often than we do is not.

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::node;

/// Freezes b (its kernel still ACKs, like a hung host) and checks that a,
/// running `--keepalive 1`, drops it 3 s later, whatever b announced.
fn a_drops_a_frozen_b_after_3s(b_keepalive: &str) {
    let a = node("a").args(&["--keepalive", "1"]).start();
    let b = node("b")
        .args(&["--keepalive", b_keepalive])
        .dial(&a)
        .start();
    a.wait_peer("b");
    let frozen = Instant::now();
    b.signal("STOP");
    let line = a.wait_log("peer down: b");
    let took = frozen.elapsed();
    b.signal("CONT");
    assert!(
        line.contains("no data for 3s (3 x keepalive): presumed dead"),
        "{line}"
    );
    assert!(
        took <= Duration::from_millis(4000),
        "detected after {took:?}"
    );
    assert!(
        took >= Duration::from_millis(1900),
        "detected too early: {took:?}"
    );
}

#[test]
fn a_frozen_peer_is_dropped_within_three_keepalive_periods() {
    a_drops_a_frozen_b_after_3s("1");
}

/// The silence limit is 3 x this node's own keepalive, whatever the peer
/// announced: b announces 5 (3 x 5 = 15s), a must drop it after 3s.
#[test]
fn a_frozen_peer_that_announced_a_longer_keepalive_is_dropped_on_our_clock() {
    a_drops_a_frozen_b_after_3s("5");
}

#[test]
fn a_healthy_peer_with_a_longer_keepalive_is_not_taken_for_dead() {
    // b pings only every 4s, longer than 3 x a's keepalive; a pings every
    // second, streaming or not, and b answers at once, so a never goes 3s
    // without hearing from b.
    let mut a = node("a").args(&["--keepalive", "1"]).start();
    let b = node("b").args(&["--keepalive", "4"]).dial(&a).start();
    a.wait_peer("b");
    let mut stdin = a.take_stdin();
    let feeder = thread::spawn(move || {
        for n in 0..30 {
            if writeln!(stdin, "line {n}").is_err() {
                return;
            }
            // Pacing the load, not waiting for an event.
            thread::sleep(Duration::from_millis(200));
        }
    });
    let lines = b.wait_lines(30);
    feeder.join().unwrap();
    assert_eq!(lines.len(), 30);
    assert_eq!(a.count_log("peer down"), 0, "{}", a.log_text());
    assert_eq!(b.count_log("peer down"), 0, "{}", b.log_text());
}
