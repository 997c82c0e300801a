//! Stopping: Ctrl-C and SIGTERM are polite and quick, a second Ctrl-C is
//! immediate, --exit-on-eof delivers everything, a closed stdout ends the
//! node cleanly.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;
#[cfg(unix)]
use std::time::Instant;

use crate::support::node;

#[cfg(unix)]
fn stops_politely_on(signal: &str) {
    let a = node("a").start();
    let mut b = node("b").dial(&a).start();
    a.wait_peer("b");
    b.wait_peer("a");
    let started = Instant::now();
    b.signal(signal);
    let status = b.expect_exit(Duration::from_secs(3));
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    let line = a.wait_log("peer down: b");
    assert!(line.contains("said goodbye: shutting down"), "{line}");
    // And b heard a's answer: a polite close on both sides.
    let line = b.wait_log("peer down: a");
    assert!(line.contains("said goodbye"), "{line}");
}

#[test]
#[cfg(unix)]
fn ctrl_c_disconnects_politely_and_exits_0_within_3s() {
    stops_politely_on("INT");
}

#[test]
#[cfg(unix)]
fn sigterm_disconnects_politely_and_exits_0_within_3s() {
    stops_politely_on("TERM");
}

#[test]
#[cfg(unix)]
fn a_second_ctrl_c_exits_at_once_with_130() {
    let c = node("c").start();
    let mut a = node("a").dial(&c).start();
    a.wait_peer("c");
    // A stopped peer cannot answer our goodbye, so the polite shutdown
    // waits its full two seconds and the second Ctrl-C lands during it.
    c.signal("STOP");
    a.signal("INT");
    a.wait_log("interrupted");
    let started = Instant::now();
    a.signal("INT");
    let status = a.expect_exit(Duration::from_secs(2));
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
    c.signal("CONT");
}

#[test]
fn exit_on_eof_with_wait_peers_delivers_every_line_to_every_peer() {
    const LINES: usize = 100_000;
    let file = std::env::temp_dir().join(format!("peercat-eof-{}.txt", std::process::id()));
    let mut text = Vec::new();
    for n in 0..LINES {
        writeln!(text, "line {n}").unwrap();
    }
    std::fs::write(&file, &text).unwrap();
    let mut a = node("a")
        .args(&["--wait-peers", "2", "--exit-on-eof"])
        .stdin(Stdio::from(std::fs::File::open(&file).unwrap()))
        .start();
    let b = node("b").dial(&a).start();
    let c = node("c").dial(&a).start();
    let status = a.expect_exit(Duration::from_secs(60));
    std::fs::remove_file(&file).unwrap();
    assert!(status.success(), "{status:?}");
    for peer in [&b, &c] {
        let lines = peer.wait_lines(LINES);
        assert_eq!(lines.len(), LINES);
        for (n, line) in lines.iter().enumerate() {
            assert_eq!(line, format!("line {n}").as_bytes());
        }
        let down = peer.wait_log("peer down: a");
        assert!(down.contains("said goodbye"), "{down}");
    }
}

#[test]
fn stdin_eof_without_exit_on_eof_keeps_the_node_running() {
    let mut a = node("a").start();
    a.close_stdin();
    let mut b = node("b").dial(&a).start();
    b.wait_peer("a");
    a.wait_log("stdin ended; still relaying");
    b.send(b"still listening\n");
    assert_eq!(a.wait_lines(1), [b"still listening".to_vec()]);
}

#[test]
fn a_closed_stdout_stops_the_node_with_exit_0() {
    let mut a = node("a").raw_stdout().start();
    let mut b = node("b").dial(&a).start();
    b.wait_peer("a");
    // Like `peercat | head -1`: read one line, then close the pipe.
    let mut stdout = std::io::BufReader::new(a.take_stdout());
    b.send(b"first\n");
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    assert_eq!(first, "first\n");
    drop(stdout);
    // The next message makes a's write to stdout fail with a broken pipe.
    b.send(b"more\n");
    let status = a.expect_exit(Duration::from_secs(5));
    assert!(status.success(), "{status:?}");
    a.wait_log("stdout was closed");
}
