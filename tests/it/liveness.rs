//! Dead peers: a peer that stops answering (a frozen host, a pulled cable)
//! is dropped within 3 x this node's --keepalive, whatever the peer
//! announced; a healthy peer that pings less often than we do is not.

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::node;

#[test]
fn a_frozen_peer_is_dropped_within_three_keepalive_periods() {
    let a = node("a").args(&["--keepalive", "1"]).start();
    let b = node("b").args(&["--keepalive", "1"]).dial(&a).start();
    a.wait_peer("b");
    let frozen = Instant::now();
    b.signal("STOP"); // the process freezes; its kernel still ACKs, like a hung host
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

/// The silence limit is 3 x this node's own keepalive, whatever the peer
/// announced: b announces 5 (3 x 5 = 15s), a runs with 1 and must drop the
/// frozen b after 3s.
#[test]
fn a_frozen_peer_that_announced_a_longer_keepalive_is_dropped_on_our_clock() {
    let a = node("a").args(&["--keepalive", "1"]).start();
    let b = node("b").args(&["--keepalive", "5"]).dial(&a).start();
    a.wait_peer("b");
    let frozen = Instant::now();
    b.signal("STOP");
    let line = a.wait_log("peer down: b");
    let took = frozen.elapsed();
    b.signal("CONT");
    assert!(line.contains("no data for 3s"), "{line}");
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
fn a_healthy_peer_with_a_longer_keepalive_is_not_taken_for_dead() {
    // a pings after 1s of sending nothing, b after 4s. While a streams lines
    // to b, a never pings, so all a hears from b are b's pings, 4s apart:
    // longer than 3 x a's keepalive, well within 3 x b's.
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
