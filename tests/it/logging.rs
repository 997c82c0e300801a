//! The log: it never holds up the data, a log file that cannot be written
//! is an error at start, and a log file carries dated timestamps. Unix:
//! the tests signal processes.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;

use crate::support::{free_port, node, DEADLINE};

/// Lines each way; -vv logs one trace line per message received, so the
/// log alone is far more than a pipe holds (64 KiB on Linux).
const LINES: usize = 20_000;

#[test]
fn a_node_whose_stderr_is_never_read_still_relays_and_stops_on_ctrl_c() {
    let port = free_port();
    let mut a = Command::new(env!("CARGO_BIN_EXE_peercat"))
        .args(["-vv", "-n", "a", "-l", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start peercat");
    // Held open and never read: a's log has nowhere to go.
    let _stderr = a.stderr.take().unwrap();
    let stdout = a.stdout.take().unwrap();
    let (printed_tx, printed) = bounded(1);
    std::thread::spawn(move || {
        let lines = BufReader::new(stdout).lines().map_while(Result::ok);
        let _ = printed_tx.send(lines.take(LINES).count());
    });
    let mut b = node("b").arg(format!("127.0.0.1:{port}")).start();
    b.wait_peer("a");
    let text: String = (0..LINES).map(|n| format!("line {n}\n")).collect();
    b.send(text.as_bytes());
    let mut stdin = a.stdin.take().unwrap();
    stdin.write_all(text.as_bytes()).unwrap();
    stdin.flush().unwrap();
    assert_eq!(
        printed.recv_timeout(DEADLINE),
        Ok(LINES),
        "a stopped printing"
    );
    assert_eq!(b.wait_lines(LINES).len(), LINES);
    let stopped = Instant::now();
    // SAFETY: kill(2) on a child we started and have not reaped.
    assert_eq!(
        unsafe { libc::kill(a.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    let status = loop {
        if let Some(status) = a.try_wait().unwrap() {
            break status;
        }
        if stopped.elapsed() > Duration::from_secs(5) {
            let _ = a.kill();
            panic!("a did not exit within 5 s of Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "{status:?}");
    b.wait_log("peer down: a");
}

#[test]
#[cfg(target_os = "linux")]
fn a_log_file_that_takes_no_bytes_is_an_error_at_start_with_exit_1() {
    let mut a = node("a").args(&["--log-file", "/dev/full"]).start_quiet();
    let status = a.expect_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{status:?}");
    let line = a.wait_log("/dev/full");
    assert_eq!(
        line,
        "error: cannot write to log file /dev/full: no space left on device"
    );
}

#[test]
fn a_log_file_keeps_every_line_to_the_last_with_dated_timestamps() {
    let path = std::env::temp_dir().join(format!("peercat-dated-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let mut a = node("a")
        .args(&["-v", "--log-file", path.to_str().unwrap()])
        .start_quiet();
    let port = wait_for_port(&path);
    let b = node("b").arg(format!("127.0.0.1:{port}")).start();
    b.wait_peer("a");
    a.signal("INT");
    assert!(a.expect_exit(Duration::from_secs(5)).success());
    let log = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(a.log_text().is_empty(), "stderr: {}", a.log_text());
    for needle in ["logs here", "listening on", "peer up: b", "interrupted"] {
        assert!(log.contains(needle), "no {needle:?} in\n{log}");
    }
    // The last line is written before the process exits.
    assert!(log.trim_end().ends_with("stopped"), "{log}");
    for line in log.lines() {
        assert!(is_rfc3339_stamped(line), "not dated: {line}");
    }
    // One width for every stamp (microseconds, trailing zeros kept): a
    // plain `sort` of merged logs keeps them in time order.
    let widths: std::collections::BTreeSet<usize> =
        log.lines().filter_map(|l| l.find(' ')).collect();
    assert_eq!(widths.len(), 1, "stamps of several widths:\n{log}");
}

/// `2026-11-27T08:01:02.123Z ...` or with an offset.
fn is_rfc3339_stamped(line: &str) -> bool {
    let Some((stamp, _)) = line.split_once(' ') else {
        return false;
    };
    let b = stamp.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(7) == Some(&b'-')
        && digits(8..10)
        && b.get(10) == Some(&b'T')
        && digits(11..13)
        && b.get(13) == Some(&b':')
        && (stamp.ends_with('Z') || stamp[19..].contains(['+', '-']))
}

/// Reads the port from the `listening on` line of a log file.
fn wait_for_port(path: &std::path::Path) -> u16 {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(port) = log.lines().find_map(listening_port) {
            return port;
        }
        assert!(Instant::now() < deadline, "no port in the log file:\n{log}");
        // A file has no event to wait on; poll it.
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A log file that fails after the start (here a FIFO whose reader goes
/// away) is not silence: a warning on stderr, and the log goes on there.
#[test]
fn a_log_file_that_fails_later_is_a_warning_and_the_log_moves_to_stderr() {
    let fifo = std::env::temp_dir().join(format!("peercat-fifo-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&fifo);
    let made = Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo {}", fifo.display());
    let (port_tx, port_rx) = bounded(1);
    let fifo_ = fifo.clone();
    // The reader takes lines until `listening on`, then closes its end.
    std::thread::spawn(move || {
        let reader = BufReader::new(std::fs::File::open(&fifo_).unwrap());
        for line in reader.lines().map_while(Result::ok) {
            if let Some(port) = listening_port(&line) {
                let _ = port_tx.send(port);
                return;
            }
        }
    });
    let a = node("a")
        .args(&["--log-file", fifo.to_str().unwrap()])
        .start_quiet();
    let port = port_rx.recv_timeout(DEADLINE).expect("a's listening line");
    let b = node("b").arg(format!("127.0.0.1:{port}")).start();
    b.wait_peer("a");
    let warning = a.wait_log("cannot write log file");
    std::fs::remove_file(&fifo).unwrap();
    assert!(
        warning.starts_with(&format!(
            "warning: cannot write log file {}: ",
            fifo.display()
        )) && warning.ends_with("; logging to stderr from now on"),
        "{warning}"
    );
    a.wait_peer("b");
}

/// The port of a `listening on ADDR` line.
fn listening_port(line: &str) -> Option<u16> {
    let at = line.find("listening on ")?;
    line[at..].rsplit(':').next()?.trim().parse().ok()
}

/// A stall timeout as long as the silence that takes members for down
/// (3 × keepalive) cuts a stopped relay only after the members beyond it
/// went down, and `--exit-on-eof` senders give up on live members
/// (attack24 N1): said at start. Not with the defaults (10 s against 15).
#[test]
fn a_stall_timeout_near_three_keepalives_is_warned_about_at_start() {
    let long = node("long")
        .args(&["--keepalive", "2", "--stall-timeout", "6"])
        .start();
    let said = long.wait_log("--stall-timeout 6s is not well below 3 x --keepalive (6s)");
    assert!(
        said.contains("[WARN]") && said.contains("at 4s or less"),
        "{said}"
    );
    let defaults = node("defaults").start();
    defaults.wait_log("listening on");
    let fine = node("fine")
        .args(&["--keepalive", "1", "--stall-timeout", "2"])
        .start();
    fine.wait_log("listening on");
    // The warning would come before this one.
    for n in [&defaults, &fine] {
        n.wait_log("links are not encrypted");
        assert_eq!(n.count_log("--stall-timeout"), 0, "{}", n.log_text());
    }
}
