//! Dead peers: a peer that stops answering (a frozen host, a pulled cable)
//! is dropped by keepalive within 3 x --keepalive.

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
        line.contains("no data for 3s (3 x --keepalive): presumed dead"),
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
