//! Stopping: Ctrl-C, SIGTERM and SIGHUP are polite and quick, the same
//! signal repeated within half a second is one request, a later one is
//! immediate, SIGHUP ignored at start (nohup) stays ignored, --exit-on-eof delivers everything, a closed stdout ends the
//! node cleanly.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;
#[cfg(unix)]
use std::time::Instant;

use crate::support::{node, Node};

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
fn a_second_signal_after_half_a_second_exits_at_once_with_130() {
    let c = node("c").start();
    let mut a = node("a").dial(&c).start();
    a.wait_peer("c");
    // A stopped peer cannot answer our goodbye, so the polite shutdown
    // waits its full two seconds and the second Ctrl-C lands during it.
    c.signal("STOP");
    let first = Instant::now();
    a.signal("INT");
    a.wait_log("interrupted");
    // The point is the time: a repeat within 0.5 s would be the same request.
    std::thread::sleep(Duration::from_millis(600).saturating_sub(first.elapsed()));
    let started = Instant::now();
    a.signal("INT");
    let status = a.expect_exit(Duration::from_secs(2));
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
    c.signal("CONT");
}

/// GNU `timeout` sends SIGTERM to the child, then to its process group.
#[test]
#[cfg(unix)]
fn two_sigterms_10ms_apart_are_one_polite_stop_with_exit_0() {
    let mut a = node("a").start();
    let mut b = node("b").dial(&a).start();
    a.wait_peer("b");
    b.wait_peer("a");
    // A stopped peer cannot answer b's goodbye, so b's polite stop lasts
    // long enough for the second signal to land during it.
    a.signal("STOP");
    let started = Instant::now();
    kill(b.pid, libc::SIGTERM);
    // The second signal is the stimulus, 10 ms after the first.
    std::thread::sleep(Duration::from_millis(10));
    kill(b.pid, libc::SIGTERM);
    let status = b.wait_exit(Duration::from_secs(4));
    a.signal("CONT");
    let status = status.unwrap_or_else(|| panic!("b did not exit\n{}", b.log_text()));
    assert!(status.success(), "{status:?}\n{}", b.log_text());
    // Two seconds for the goodbye a cannot answer, and some slack.
    assert!(started.elapsed() < Duration::from_secs(4));
    let line = a.wait_log("peer down: b");
    assert!(line.contains("said goodbye: shutting down"), "{line}");
    a.signal("INT");
    assert!(a.expect_exit(Duration::from_secs(3)).success());
}

#[test]
#[cfg(unix)]
fn sighup_stops_politely_with_exit_0() {
    let a = node("a").start();
    let mut b = Spawned::dialing(&a, libc::SIG_DFL);
    a.wait_peer("b");
    let started = Instant::now();
    kill(b.pid(), libc::SIGHUP);
    let status = b.wait_exit(Duration::from_secs(3));
    assert!(status.success(), "{status:?}\n{}", b.log());
    assert!(started.elapsed() < Duration::from_secs(3));
    let line = a.wait_log("peer down: b");
    assert!(line.contains("said goodbye: shutting down"), "{line}");
}

/// `nohup peercat ... &` must outlive the SSH session that started it.
#[test]
#[cfg(unix)]
fn a_node_started_with_sighup_ignored_survives_it_and_keeps_working() {
    let a = node("a").start();
    let mut b = Spawned::dialing(&a, libc::SIG_IGN);
    a.wait_peer("b");
    kill(b.pid(), libc::SIGHUP);
    // A handled SIGHUP would have begun the stop at once; a line sent
    // after it, through b to a, proves b still works.
    b.send(b"after the hangup\n");
    assert_eq!(a.wait_lines(1), [b"after the hangup".to_vec()]);
    assert!(b.child.try_wait().unwrap().is_none(), "{}", b.log());
    assert_eq!(a.count_log("peer down: b"), 0, "{}", a.log_text());
    assert!(!b.log().contains("interrupted"), "{}", b.log());
    // And it still stops politely on SIGTERM.
    kill(b.pid(), libc::SIGTERM);
    let status = b.wait_exit(Duration::from_secs(3));
    assert!(status.success(), "{status:?}\n{}", b.log());
    a.wait_log("peer down: b");
}

#[cfg(unix)]
fn kill(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) on a child we started and have not yet reaped.
    let rc = unsafe { libc::kill(pid as libc::pid_t, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal})");
}

/// A node `b` started with SIGHUP set to `hup` (as `nohup` leaves it, or
/// the default whatever the test runner has), dialing `a`. Its log is
/// collected into a string, for failure messages.
#[cfg(unix)]
struct Spawned {
    child: std::process::Child,
    log: std::sync::Arc<parking_lot::Mutex<String>>,
}

#[cfg(unix)]
impl Spawned {
    fn dialing(a: &crate::support::Node, hup: libc::sighandler_t) -> Spawned {
        use std::io::Read;
        use std::os::unix::process::CommandExt;
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_peercat"));
        cmd.args(["--no-listen", "-n", "b", &a.addr()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: signal(2) is async-signal-safe, as pre_exec requires.
        unsafe {
            cmd.pre_exec(move || {
                libc::signal(libc::SIGHUP, hup);
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("start peercat");
        let log = std::sync::Arc::new(parking_lot::Mutex::new(String::new()));
        let mut stderr = child.stderr.take().unwrap();
        let log_ = log.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stderr.read(&mut buf) {
                log_.lock().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Spawned { child, log }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        self.log.lock().clone()
    }

    fn send(&mut self, bytes: &[u8]) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    /// Waits for the exit; polls, since `Child` has no wait with a timeout.
    fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "b did not exit within {timeout:?}; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[cfg(unix)]
impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
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

/// Like `peercat | head -1`: `sender` sends a line, `reader`'s stdout
/// (started with `raw_stdout`) is read up to it, then closed; the next
/// line `reader` prints fails with a broken pipe.
fn read_one_line_and_close_stdout(reader: &mut Node, sender: &mut Node) {
    let mut stdout = std::io::BufReader::new(reader.take_stdout());
    sender.send(b"first\n");
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    assert_eq!(first, "first\n");
}

#[test]
fn a_closed_stdout_stops_the_node_with_exit_0() {
    let mut a = node("a").raw_stdout().start();
    let mut b = node("b").dial(&a).start();
    b.wait_peer("a");
    read_one_line_and_close_stdout(&mut a, &mut b);
    // The next message makes a's write to stdout fail with a broken pipe.
    b.send(b"more\n");
    let status = a.expect_exit(Duration::from_secs(5));
    assert!(status.success(), "{status:?}");
    a.wait_log("stdout was closed");
}

/// A sender whose own stdout is closed stops reading stdin, but first
/// waits (up to 2 s) for the group to acknowledge the lines it sent, as
/// on a signal: it exits 0 when they all have them, and says the rest of
/// stdin was not read. Before, it stopped at once and counted the member
/// that had every line as "not acknowledged", exit 3 (attack48 F3).
#[test]
fn a_sender_whose_stdout_was_closed_waits_for_its_lines_to_be_acknowledged() {
    const LINES: u64 = 20_000;
    let mut s = node("s")
        .args(&["--exit-on-eof", "--keepalive", "1"])
        .raw_stdout()
        .start();
    let mut b = node("b").dial(&s).start();
    b.wait_peer("s");
    s.wait_log("member up: b");
    read_one_line_and_close_stdout(&mut s, &mut b);
    // s sends its lines while b's next line makes its stdout fail.
    s.send(&crate::support::numbered_lines(1, LINES));
    b.send(b"more\n");
    let status = s.expect_exit(Duration::from_secs(10));
    s.wait_log("stdout was closed");
    let summary = s.wait_log("summary:");
    let read = crate::support::number_after(&summary, "summary: read ").unwrap_or(0);
    assert!(read > 0, "{summary}");
    assert!(
        summary.contains("to b (") && !summary.contains("not acknowledged"),
        "{}",
        s.log_text()
    );
    assert!(status.success(), "{status:?}\n{}", s.log_text());
    assert_eq!(b.wait_lines(read as usize).len() as u64, read);
}

/// A member whose stdout is closed prints nothing more, and knows exactly
/// what it printed: it leaves with final acknowledgements, so its sender
/// books what it printed as delivered and the rest as lost to it. Before,
/// the sender called those lines "not acknowledged", as for a member that
/// might still print them (attack47 F2).
#[test]
fn a_member_whose_stdout_was_closed_leaves_with_final_acknowledgements() {
    let mut h = node("h").raw_stdout().start();
    let mut s = node("s")
        .args(&["--exit-on-eof", "--wait-members", "1"])
        .dial(&h)
        .start();
    read_one_line_and_close_stdout(&mut h, &mut s);
    // The next lines make h's write to stdout fail: h stops, and the
    // lines of that write were delivered to h but never printed.
    s.send(&crate::support::numbered_lines(2, 5_000));
    s.close_stdin();
    let status = h.expect_exit(Duration::from_secs(10));
    assert!(status.success(), "{status:?}\n{}", h.log_text());
    h.wait_log("stdout was closed");
    let status = s.expect_exit(Duration::from_secs(20));
    let summary = s.wait_log("summary:");
    let to_h = summary
        .split("to h (")
        .nth(1)
        .unwrap_or_else(|| panic!("h unnamed: {summary}"))
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert!(to_h.contains(" lost"), "{summary}");
    assert!(!to_h.contains("not acknowledged"), "{summary}");
    assert_eq!(status.code(), Some(3), "{}", s.log_text());
}
