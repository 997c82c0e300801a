//! Flow control: nothing is lost to a live peer, stdin slows to the slowest
//! peer, a stopped peer is dropped after --stall-timeout, memory stays
//! bounded, and two nodes flooding each other do not deadlock.

use std::io::Write;
use std::process::ChildStdin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::support::{node, Node};

/// Line `n` of a flood: numbered, and long enough to fill buffers quickly.
fn line(n: usize) -> String {
    format!("{n:08} {}\n", "f".repeat(100))
}

/// Feeds `count` lines to `stdin` from a thread, counting bytes written.
fn feed(mut stdin: ChildStdin, count: usize, written: Arc<AtomicU64>) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut block = String::new();
        for n in 0..count {
            block.push_str(&line(n));
            if block.len() > 64 * 1024 || n + 1 == count {
                stdin.write_all(block.as_bytes()).expect("feed stdin");
                written.fetch_add(block.len() as u64, Ordering::SeqCst);
                block.clear();
            }
        }
    })
}

/// Checks that `node` printed exactly lines 0..count, in order.
fn assert_all_lines(node: &Node, count: usize) {
    let lines = node.wait_lines_for(count, Duration::from_secs(120));
    assert_eq!(lines.len(), count, "{} printed too many lines", node.name);
    for (n, got) in lines.iter().enumerate() {
        let expected = line(n);
        assert_eq!(
            got[..],
            expected.as_bytes()[..expected.len() - 1],
            "{} line {n}",
            node.name
        );
    }
}

#[test]
fn a_paused_peer_slows_stdin_without_losing_anything_and_memory_stays_bounded() {
    const LINES: usize = 500_000; // about 55 MB
    let b = node("b").start();
    let c = node("c").start();
    let mut a = node("a")
        .args(&["--stall-timeout", "60"])
        .dial(&b)
        .dial(&c)
        .start();
    a.wait_peer("b");
    a.wait_peer("c");
    let rss_before = a.rss_kib();
    c.signal("STOP");
    let written = Arc::new(AtomicU64::new(0));
    let feeder = feed(a.take_stdin(), LINES, written.clone());
    // While c is stopped, a takes from stdin only what fits in the kernel's
    // buffers and its outbox, so b (which gets everything a takes) must
    // never see more than that. Wait for b to pass the bound: it must not.
    let bound_bytes = 30 * 1024 * 1024;
    let bound_lines = bound_bytes / line(0).len();
    let started = b.out.wait_until(Duration::from_secs(20), |l| !l.is_empty());
    assert!(started, "b got nothing while c was stopped");
    let passed = b
        .out
        .wait_until(Duration::from_secs(3), |l| l.len() > bound_lines);
    let taken = written.load(Ordering::SeqCst);
    assert!(
        !passed,
        "b got more than {bound_bytes} bytes while c was stopped"
    );
    assert!(
        taken < bound_bytes as u64,
        "{taken} bytes of stdin taken with c stopped"
    );
    let rss_growth = a.rss_kib().saturating_sub(rss_before);
    assert!(
        rss_growth < 24 * 1024,
        "a grew by {rss_growth} KiB while c was stopped"
    );
    c.signal("CONT");
    feeder.join().unwrap();
    assert_all_lines(&b, LINES);
    assert_all_lines(&c, LINES);
    assert_eq!(a.count_log("peer down"), 0);
}

#[test]
fn a_stopped_peer_is_dropped_after_the_stall_timeout_and_the_others_carry_on() {
    const LINES: usize = 300_000;
    let b = node("b").start();
    let c = node("c").start();
    let mut a = node("a")
        .args(&["--stall-timeout", "2"])
        .dial(&b)
        .dial(&c)
        .start();
    a.wait_peer("b");
    a.wait_peer("c");
    c.signal("STOP");
    let feeder = feed(a.take_stdin(), LINES, Arc::default());
    let line = a.wait_log("peer down: c");
    assert!(line.contains("stalled: accepted no data for 2s"), "{line}");
    feeder.join().unwrap();
    assert_all_lines(&b, LINES);
    c.signal("CONT");
}

#[test]
fn two_nodes_flooding_each_other_do_not_deadlock() {
    const LINES: usize = 300_000;
    let mut b = node("b").start();
    let mut a = node("a").dial(&b).start();
    a.wait_peer("b");
    b.wait_peer("a");
    let fa = feed(a.take_stdin(), LINES, Arc::default());
    let fb = feed(b.take_stdin(), LINES, Arc::default());
    fa.join().unwrap();
    fb.join().unwrap();
    assert_all_lines(&a, LINES);
    assert_all_lines(&b, LINES);
}
