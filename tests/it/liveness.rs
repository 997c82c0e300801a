//! Dead peers: a peer that stops answering (a frozen host, a pulled cable)
//! is dropped within 3 x this node's --keepalive, whatever the peer
//! announced; a healthy peer that pings less often than we do is not.

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{node, Node};

/// Whether `n` logs a "member down" within `window` from now. Its log
/// must not end first: a node that exited says nothing either way.
fn member_down_within(n: &Node, window: Duration) -> bool {
    let from = Instant::now();
    let down = n.log.wait_until(window, |lines| {
        lines
            .iter()
            .any(|l| String::from_utf8_lossy(l).contains("member down"))
    });
    assert!(
        from.elapsed() >= window || down,
        "{}'s log ended early",
        n.name
    );
    down
}

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

/// c's stdout is never read, so its router holds back frames from its
/// peers (a's STATUS frames among them) while it waits for stdout. Before,
/// its timers ran on and it declared a down, "silent for 3s", though a was
/// alive and talking; now silence is not counted while c is not listening.
/// A member announces itself every keepalive of its own: a node with a
/// shorter `--keepalive` must not take it for down between two of its
/// STATUS frames. Before, a node at `--keepalive 1` took an idle member at
/// `--keepalive 4` for down 3 s after each of its STATUS frames and back
/// up a second later, over and over (attack47 F1, with 5: 8 times in 40 s).
#[test]
fn a_member_with_a_longer_keepalive_is_not_taken_for_down_between_its_announcements() {
    let z = node("z").args(&["--keepalive", "4"]).start();
    let k = node("k").args(&["--keepalive", "1"]).dial(&z).start();
    k.wait_log("member up: z");
    // Over a keepalive of z and a half: the first false "down" came 3 s
    // after z's STATUS.
    let wrongly_down = member_down_within(&k, Duration::from_secs(6));
    assert!(!wrongly_down, "k called z down:\n{}", k.log_text());
    drop(z);
}

/// A member's keepalive counts up to 60 s (12 of ours, if more): one
/// announcing more is taken for down between its announcements, and the
/// node says so, once, naming the member and the bound (attack50 F2: a
/// member at 240 s flapped with no word why).
#[test]
fn a_member_announcing_a_keepalive_beyond_what_is_counted_is_warned_about() {
    use peercat::frame::{Frame, Status};
    let a = node("a").start();
    let mut r = crate::support::RawPeer::handshake_as(&a, "r", 0x5eed);
    for (member, name) in [(0x5eed, "r"), (0x5eee, "r2")] {
        r.send(
            &Frame::Status(Status {
                life: 1,
                keepalive_secs: 240,
                member,
                status_seq: 1,
                hops: 1,
                ttl: 16,
                sent_seq: 0,
                flags: 0,
                name: name.into(),
                addrs: Vec::new(),
                acks: Vec::new(),
                misses: Vec::new(),
            })
            .to_bytes(),
        );
    }
    a.wait_log("member up: r2");
    let line = a.wait_log("announces --keepalive 240s");
    assert!(
        line.contains("[WARN]")
            && line.contains("member r (0000000000005eed)")
            && line.contains("more than this node counts (60s)"),
        "{line}"
    );
    assert_eq!(a.count_log("announces --keepalive"), 1, "{}", a.log_text());
}

#[test]
fn a_node_with_a_blocked_stdout_does_not_call_live_members_silent() {
    use std::io::{BufRead, BufReader};
    const LINES: u64 = 20_000;
    let args = ["--keepalive", "1", "--stall-timeout", "60"];
    let mut a = node("a").args(&args).start();
    let mut c = node("c")
        .args(&args)
        .arg("-v")
        .raw_stdout()
        .dial(&a)
        .start();
    let stdout = c.take_stdout(); // not read until the end
    a.wait_log("member up: c");
    a.send(&crate::support::padded_lines(1, LINES, 100));
    c.wait_log("stdout is blocked: frames from peers wait unread");
    // Twice 3 x keepalive: the member-down would have come by then.
    let wrongly_down = member_down_within(&c, Duration::from_secs(6));
    assert!(
        !wrongly_down,
        "c called a live member down:\n{}",
        c.log_text()
    );
    // Its stdout read at last, c prints every line.
    let printed = BufReader::new(stdout)
        .lines()
        .take(LINES as usize)
        .filter(|l| l.is_ok())
        .count();
    assert_eq!(printed as u64, LINES);
    assert_eq!(c.count_log("member down"), 0, "{}", c.log_text());
    drop(a);
}

/// A node stopped (SIGSTOP) for longer than 3 × keepalive heard nothing
/// meanwhile because it was not running, not because its members fell
/// silent: on waking it must not call them down ("silent for 3s") before
/// it has read what they sent meanwhile. a keeps talking, a line every
/// 5 ms from before the stop until after the check (its lines, and the
/// STATUS frames that go with them; a member that falls quiet for 3 × c's
/// keepalive would rightly be called down, so a must never run out of
/// lines); its own keepalive is 30 s, so it keeps the link to the stopped
/// c (no data for 90 s) and does not cut it (--stall-timeout 60).
#[test]
fn a_node_resumed_after_a_stop_does_not_call_live_members_silent() {
    let mut a = node("a")
        .args(&["--keepalive", "30", "--stall-timeout", "60"])
        .start();
    let c = node("c")
        .args(&["--keepalive", "1", "--stall-timeout", "60"])
        .dial(&a)
        .start();
    a.wait_log("member up: c");
    let mut stdin = a.take_stdin();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_feeding = done.clone();
    let feeder = thread::spawn(move || {
        // At most 30 s of lines; the test ends long before.
        for n in 1..=6000 {
            if stop_feeding.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            if stdin.write_all(format!("{n}\n").as_bytes()).is_err() {
                break;
            }
            thread::sleep(Duration::from_millis(5));
        }
    });
    c.wait_lines(100);
    c.signal("STOP");
    // Stopped for 5 s, past c's 3 s silence limit; a must keep it.
    let cut = member_down_within(&a, Duration::from_secs(5));
    assert!(!cut, "a cut c:\n{}", a.log_text());
    c.signal("CONT");
    let wrongly_down = member_down_within(&c, Duration::from_secs(4));
    assert!(
        !wrongly_down,
        "c called a live member down:\n{}",
        c.log_text()
    );
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    feeder.join().unwrap();
    drop(a);
}

/// A node stopped (SIGSTOP) just after it sent messages and a PING: the
/// peer's PONG arrives while it is stopped, behind 4 MB of the peer's own
/// PINGs. On waking, its writer must not cut the peer for "read none of our
/// messages for 2s" before its reader has got to that PONG: the time the
/// node did not run says nothing about the peer (a resumed relay cut
/// healthy neighbours, and the group called them down).
#[test]
fn a_node_resumed_after_a_stop_does_not_cut_a_peer_whose_pong_waits_unread() {
    use crate::support::RawPeer;
    use peercat::frame::{kind, Frame};
    use std::io::Read;
    let mut a = node("a")
        .args(&["--stall-timeout", "2", "--keepalive", "30"])
        .start();
    let mut r = RawPeer::handshake_as(&a, "r", 0x5eed);
    // A member, so that lines are owed and sent to it.
    r.send(
        &Frame::Status(peercat::frame::Status {
            life: 1,
            keepalive_secs: 1,
            member: 0x5eed,
            status_seq: 1,
            hops: 1,
            ttl: 16,
            sent_seq: 0,
            flags: 0,
            name: "r".into(),
            addrs: Vec::new(),
            acks: Vec::new(),
            misses: Vec::new(),
        })
        .to_bytes(),
    );
    a.wait_log("member up: r");
    a.send(b"one\n");
    // a's message, then the PING that asks us to confirm it.
    let mut seen_msg = false;
    let token = loop {
        let (k, body) = r.read_frame().expect("a's frames");
        seen_msg |= k == kind::MSG;
        if k == kind::PING {
            let token = u64::from_be_bytes(body[..8].try_into().unwrap());
            if seen_msg {
                break token;
            }
            // Earlier PINGs are answered: only this one waits.
            r.send(&Frame::Pong(token).to_bytes());
        }
    };
    a.signal("STOP");
    // While a is stopped: 4 MB of our PINGs, then the PONG it waits for.
    let mut tx = r.stream.try_clone().unwrap();
    let backlog = thread::spawn(move || {
        let ping = Frame::Ping(1).to_bytes();
        let junk: Vec<u8> = ping.repeat(4_000_000 / ping.len());
        tx.write_all(&junk)?;
        tx.write_all(&Frame::Pong(token).to_bytes())?;
        Ok::<_, std::io::Error>(tx)
    });
    // Read what a writes after it wakes (its PONGs to our PINGs), until it
    // closes at the end of the test.
    let mut rx = r.stream.try_clone().unwrap();
    rx.set_read_timeout(None).unwrap();
    thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(n) = rx.read(&mut buf) {
            if n == 0 {
                return;
            }
        }
    });
    // Stopped past the stall timeout.
    let stopped = Instant::now();
    while stopped.elapsed() < Duration::from_secs(3) {
        thread::park_timeout(Duration::from_millis(100));
    }
    a.signal("CONT");
    backlog.join().unwrap().expect("write the backlog");
    // No new line was sent, so nothing can stall after the PONG: any cut
    // within the stall timeout is the one under test.
    let cut = a.log.wait_until(Duration::from_millis(1900), |lines| {
        lines
            .iter()
            .any(|l| String::from_utf8_lossy(l).contains("peer down"))
    });
    assert!(!cut, "a cut r after waking:\n{}", a.log_text());
}
