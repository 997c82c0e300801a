//! Messages: boundaries, bytes, order, and the output formats.

use std::io::Write;
use std::thread;
use std::time::Duration;

use crate::support::{node, texts, DEADLINE};

#[test]
fn hello_and_world_arrive_as_two_messages_both_ways() {
    let mut b = node("b").start();
    let mut a = node("a").dial(&b).start();
    a.wait_peer("b");
    b.wait_peer("a");
    a.send(b"Hello\nWorld!\n");
    assert_eq!(texts(&b.wait_lines(2)), ["Hello", "World!"]);
    b.send(b"Hel");
    b.send(b"lo\nWor");
    b.send(b"ld!\n");
    assert_eq!(texts(&a.wait_lines(2)), ["Hello", "World!"]);
    // A node never prints its own messages.
    assert_eq!(a.out.len(), 2);
    assert_eq!(b.out.len(), 2);
}

#[test]
fn messages_are_byte_exact_and_an_overlong_line_is_skipped_alone() {
    let b = node("b").args(&["--max-frame", "1000"]).start();
    let mut a = node("a").args(&["--max-frame", "1000"]).dial(&b).start();
    a.wait_peer("b");
    let exact = vec![b'x'; 1000];
    let mut input = Vec::new();
    input.extend_from_slice(b"\xff\xfe not utf-8\n");
    input.extend_from_slice(b"carriage\r\n");
    input.extend_from_slice(b"\n");
    input.extend_from_slice(b"nul\0byte\n");
    input.extend_from_slice(&exact);
    input.push(b'\n');
    input.extend_from_slice(&[b'y'; 1001]);
    input.push(b'\n');
    input.extend_from_slice(b"after the long one\n");
    a.send(&input);
    let got = b.wait_lines(6);
    let expected: Vec<Vec<u8>> = vec![
        b"\xff\xfe not utf-8".to_vec(),
        b"carriage\r".to_vec(),
        b"".to_vec(),
        b"nul\0byte".to_vec(),
        exact,
        b"after the long one".to_vec(),
    ];
    assert_eq!(got, expected);
    let warning = a.wait_log("stdin line 6 is longer than --max-frame");
    assert!(warning.contains("limit 1000"), "{warning}");
}

#[test]
fn a_peer_with_a_smaller_limit_is_spared_messages_it_cannot_take() {
    let small = node("small").args(&["--max-frame", "10"]).start();
    let big = node("big").start();
    let mut a = node("a").dial(&small).dial(&big).start();
    a.wait_peer("small");
    a.wait_peer("big");
    a.send(b"short\nthis line is too long for small\nend\n");
    assert_eq!(
        texts(&big.wait_lines(3)),
        ["short", "this line is too long for small", "end"]
    );
    assert_eq!(texts(&small.wait_lines(2)), ["short", "end"]);
    a.wait_log("not sent to it");
    // The connection survived.
    assert_eq!(small.count_log("peer down"), 0);
}

/// A member with a smaller --max-frame costs the group no time: its
/// neighbour tells it each line over its limit will not come (TOO_BIG),
/// and it reports each as a gap at once. Before, each was a hole given
/// up only after --stall-timeout, and the sender's window waited for it
/// meanwhile: one oversized line per 10 s for the whole group (attack16
/// F2), 80 of them here, where this takes a second or two.
#[test]
fn a_member_with_a_smaller_limit_reports_each_line_over_it_at_once_and_holds_nobody_up() {
    const LINES: usize = 4_000;
    const BIG_EVERY: usize = 50; // 80 lines over small's limit
    let limit = ["--max-frame", "1000"];
    let big = node("big").args(&limit).start();
    let small = node("small")
        .args(&["--max-frame", "500", "-f", "json"])
        .dial(&big)
        .start();
    let mut a = node("a")
        .args(&limit)
        .args(&["--window", "64K", "--wait-members", "2", "--exit-on-eof"])
        .dial(&big)
        .start();
    a.wait_log("reading stdin");
    let mut text = Vec::new();
    for n in 1..=LINES {
        let pad = if n % BIG_EVERY == 0 { 900 } else { 400 };
        writeln!(text, "{n:06} {}", "m".repeat(pad)).unwrap();
    }
    let started = std::time::Instant::now();
    // From a thread: stdin is read only as fast as the window allows.
    let mut stdin = a.take_stdin();
    let feeder = thread::spawn(move || {
        let _ = stdin.write_all(&text);
    });
    let status = a.expect_exit(Duration::from_secs(60));
    feeder.join().unwrap();
    let took = started.elapsed();
    let log = a.log_text();
    assert_eq!(status.code(), Some(3), "lines lost to small:\n{log}");
    assert!(took < Duration::from_secs(10), "took {took:?}:\n{log}");
    let summary = a.wait_log("summary");
    let oversized = LINES / BIG_EVERY;
    assert!(
        summary.contains(&format!(
            "{} lines delivered, {oversized} lost",
            LINES - oversized
        )),
        "{summary}"
    );
    assert_eq!(big.wait_lines(LINES).len(), LINES);
    let kinds = |lines: &[Vec<u8>], kind: &str| {
        let tag = format!("{{\"type\":\"{kind}\"");
        lines
            .iter()
            .filter(|l| l.starts_with(tag.as_bytes()))
            .count()
    };
    let count = |lines: &[Vec<u8>]| (kinds(lines, "msg"), kinds(lines, "gap"));
    small.out.wait_until(DEADLINE, |lines| {
        let (msgs, gaps) = count(lines);
        msgs + gaps >= LINES
    });
    assert_eq!(
        count(&small.out.snapshot()),
        (LINES - oversized, oversized),
        "small's lines and gaps"
    );
    let gap = small
        .out
        .snapshot()
        .into_iter()
        .map(|l| crate::support::text(&l))
        .find(|l| l.contains("\"type\":\"gap\""))
        .unwrap();
    assert!(gap.contains("over this node's --max-frame of 500"), "{gap}");
}

#[test]
fn per_sender_order_is_kept_and_concurrent_senders_never_interleave() {
    const LINES: usize = 20_000;
    let sink = node("sink").start();
    let mut senders: Vec<_> = (0..3)
        .map(|i| node(&format!("s{i}")).dial(&sink).start())
        .collect();
    for s in &senders {
        s.wait_peer("sink");
    }
    let feeders: Vec<_> = senders
        .iter_mut()
        .enumerate()
        .map(|(i, s)| {
            let mut stdin = s.take_stdin();
            thread::spawn(move || {
                let mut text = Vec::new();
                for n in 0..LINES {
                    writeln!(text, "s{i} {n:06} {}", "z".repeat(n % 50)).unwrap();
                }
                // Odd-sized writes, so lines are split across reads.
                for part in text.chunks(777 + i * 1000) {
                    stdin.write_all(part).unwrap();
                }
            })
        })
        .collect();
    for f in feeders {
        f.join().unwrap();
    }
    let lines = sink.wait_lines(3 * LINES);
    let mut next = [0usize; 3];
    for line in texts(&lines) {
        let mut parts = line.split(' ');
        let who: usize = parts.next().unwrap()[1..].parse().unwrap();
        let n: usize = parts.next().unwrap().parse().unwrap();
        assert_eq!(n, next[who], "sender {who} out of order");
        assert_eq!(
            parts.next().unwrap_or(""),
            "z".repeat(n % 50),
            "line {line:?} mangled"
        );
        next[who] += 1;
    }
    assert_eq!(next, [LINES; 3]);
}

#[test]
fn tagged_and_json_formats_name_the_sender_and_json_tells_of_peers() {
    let tagged = node("t").args(&["--format", "tagged"]).start();
    let json = node("j").args(&["--format", "json"]).start();
    let mut alice = node("alice")
        .arg("--exit-on-eof")
        .dial(&tagged)
        .dial(&json)
        .start();
    alice.wait_peer("t");
    alice.wait_peer("j");
    alice.send(b"hi there\n\"quoted\"\n");
    assert_eq!(
        texts(&tagged.wait_lines(2)),
        ["alice> hi there", "alice> \"quoted\""]
    );
    // The peer, the members (alice, and t through her), the messages.
    let lines = texts(&json.wait_lines(5));
    assert!(
        lines[0].starts_with("{\"type\":\"peer_up\",\"name\":\"alice\",\"id\":\""),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("\"direction\":\"in\""), "{}", lines[0]);
    let msgs: Vec<&String> = lines.iter().filter(|l| l.contains("\"msg\"")).collect();
    assert!(
        msgs[0].starts_with("{\"type\":\"msg\",\"from\":\"alice\",\"origin\":\""),
        "{}",
        msgs[0]
    );
    assert!(
        msgs[0].ends_with("\"hops\":1,\"via\":\"alice\",\"seq\":1,\"text\":\"hi there\"}"),
        "{}",
        msgs[0]
    );
    assert!(
        msgs[1].ends_with("\"seq\":2,\"text\":\"\\\"quoted\\\"\"}"),
        "{}",
        msgs[1]
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("{\"type\":\"member_up\",\"id\":\"")
                && l.contains("\"name\":\"alice\"")),
        "{lines:?}"
    );
    // Its peer and member events too: alice leaves politely.
    alice.close_stdin();
    assert!(json.out.wait_until(Duration::from_secs(10), |lines| {
        lines.iter().any(|l| {
            let l = String::from_utf8_lossy(l);
            l.starts_with("{\"type\":\"peer_down\",\"name\":\"alice\"")
                && l.ends_with(",\"reason\":\"said goodbye: shutting down\",\"polite\":true}")
        })
    }));
    // The member_down may come just after the peer_down.
    let left = json.out.wait_until(Duration::from_secs(10), |lines| {
        lines.iter().any(|l| {
            let l = String::from_utf8_lossy(l);
            l.starts_with("{\"type\":\"member_down\",\"id\":\"")
                && l.contains("\"name\":\"alice\",\"reason\":\"left\"")
        })
    });
    assert!(left, "{:?}", texts(&json.out.snapshot()));
}

#[test]
fn wait_peers_holds_stdin_until_enough_peers_are_connected() {
    let mut a = node("a").args(&["--wait-peers", "2"]).start();
    a.send(b"sent before anyone was there\n");
    a.wait_log("waiting for peers");
    let b = node("b").dial(&a).start();
    b.wait_peer("a");
    let c = node("c").dial(&a).start();
    c.wait_peer("a");
    assert_eq!(texts(&b.wait_lines(1)), ["sent before anyone was there"]);
    assert_eq!(texts(&c.wait_lines(1)), ["sent before anyone was there"]);
}

/// --wait-members counts members known through the mesh, not connections:
/// a reads nothing while only b is there, and c, which joins through b,
/// gets the line too.
#[test]
fn wait_members_holds_stdin_until_enough_members_are_known() {
    let one = ["--degree", "1"];
    let mut a = node("a").args(&one).args(&["--wait-members", "2"]).start();
    a.send(b"for both\n");
    let b = node("b").args(&one).dial(&a).start();
    a.wait_log("member up: b");
    a.wait_log("waiting for members before reading stdin (--wait-members 2)");
    assert_eq!(a.count_log("; reading stdin"), 0, "{}", a.log_text());
    let c = node("c").args(&one).dial(&b).start();
    a.wait_log("2 members known; reading stdin");
    assert_eq!(texts(&b.wait_lines(1)), ["for both"]);
    assert_eq!(texts(&c.wait_lines(1)), ["for both"]);
}

/// A chain a - b - c (each dials the one before, `--degree 1`, so nobody
/// dials beyond): lines cross b both ways, tagged with their origin's
/// name, with the hops they took.
#[test]
fn a_chain_of_three_relays_through_the_middle_and_tags_the_origin() {
    let one = ["--degree", "1"];
    let mut a = node("a").args(&one).args(&["-f", "tagged"]).start();
    let b = node("b").args(&one).dial(&a).start();
    let mut c = node("c").args(&one).args(&["-f", "json"]).dial(&b).start();
    a.wait_log("member up: c");
    c.wait_log("member up: a");
    a.send(b"from a\n");
    let is_msg = |l: &Vec<u8>| l.starts_with(b"{\"type\":\"msg\"");
    assert!(c.out.wait_until(DEADLINE, |lines| lines.iter().any(is_msg)));
    let snapshot = c.out.snapshot();
    let line = String::from_utf8_lossy(snapshot.iter().find(|l| is_msg(l)).unwrap());
    assert!(
        line.contains("\"from\":\"a\"") && line.contains("\"hops\":2,\"via\":\"b\""),
        "{line}"
    );
    c.send(b"from c\n");
    assert_eq!(texts(&a.wait_lines(1)), ["c> from c"]);
    assert_eq!(a.count_log("peer up: c"), 0, "a dialed c: {}", a.log_text());
}

#[test]
fn three_nodes_each_hear_their_direct_peers() {
    let mut b = node("b").start();
    let c = node("c").start();
    let mut a = node("a").dial(&b).dial(&c).start();
    a.wait_peer("b");
    a.wait_peer("c");
    c.wait_peer("a");
    a.send(b"from a\n");
    assert_eq!(texts(&b.wait_lines(1)), ["from a"]);
    assert_eq!(texts(&c.wait_lines(1)), ["from a"]);
    b.send(b"from b\n");
    assert_eq!(texts(&a.wait_lines(1)), ["from b"]);
}
