//! Processes under test, and the sinks that read their stdout.
//!
//! A sink reads a child's stdout in large blocks on its own thread, keeps
//! every byte for checking afterwards, and notes the instant the expected
//! number of lines has arrived: that instant, not the process exit, ends a
//! throughput measurement.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};

pub use crate::ports::free_port;

/// The peercat under test: this build, or `PEERCAT_BIN` to measure another
/// (an older commit, say) with the same harness.
pub fn peercat_bin() -> String {
    std::env::var("PEERCAT_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_peercat").to_owned())
}
/// No scenario step should take longer than this; past it, the run failed.
pub const STEP_DEADLINE: Duration = Duration::from_secs(120);

/// CPU seconds spent busy so far by the whole machine, all cores, from
/// /proc/stat (user, nice, system, irq, softirq; 10 ms resolution).
pub fn busy_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    [0, 1, 2, 5, 6]
        .iter()
        .filter_map(|&i| ticks.get(i))
        .sum::<f64>()
        / 100.0
}

/// A child process, killed when dropped.
pub struct Proc {
    pub name: String,
    child: Child,
    /// stderr lines, as they arrive.
    stderr: Receiver<String>,
    seen: Vec<String>,
    pub stdin: Option<ChildStdin>,
}

pub enum Input<'a> {
    File(&'a Path),
    Pipe,
    Null,
}

impl Proc {
    pub fn spawn(name: &str, program: &str, args: &[String], input: Input<'_>) -> Proc {
        Proc::spawn_with(name, program, args, input, Stdio::piped())
    }

    /// A process whose stdout goes to `stdout` (a file, for a relay that
    /// prints what passes through it, as `tee` would).
    pub fn spawn_with(
        name: &str,
        program: &str,
        args: &[String],
        input: Input<'_>,
        stdout: Stdio,
    ) -> Proc {
        let mut cmd = Command::new(program);
        cmd.args(args).stdout(stdout).stderr(Stdio::piped());
        cmd.stdin(match input {
            Input::File(path) => Stdio::from(File::open(path).expect("open input file")),
            Input::Pipe => Stdio::piped(),
            Input::Null => Stdio::null(),
        });
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let (tx, rx) = unbounded();
        let stderr = child.stderr.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            name: name.to_owned(),
            stdin: child.stdin.take(),
            child,
            stderr: rx,
            seen: Vec::new(),
        }
    }

    /// A peercat node with `args`.
    pub fn peercat(name: &str, args: &[&str], input: Input<'_>) -> Proc {
        let mut all: Vec<String> = vec!["-n".into(), name.into()];
        all.extend(args.iter().map(|a| a.to_string()));
        Proc::spawn(name, &peercat_bin(), &all, input)
    }

    pub fn ncat(name: &str, args: &[&str], input: Input<'_>) -> Proc {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        Proc::spawn(name, "ncat", &args, input)
    }

    /// Waits for a stderr line containing `needle`; returns it.
    pub fn wait_stderr(&mut self, needle: &str) -> String {
        self.wait_stderr_count(needle, 1)
    }

    /// Waits until `n` stderr lines contain `needle`; returns the last.
    pub fn wait_stderr_count(&mut self, needle: &str, n: usize) -> String {
        let deadline = Instant::now() + STEP_DEADLINE;
        loop {
            let matching: Vec<&String> = self.seen.iter().filter(|l| l.contains(needle)).collect();
            if matching.len() >= n {
                return matching[n - 1].clone();
            }
            match self.stderr.recv_deadline(deadline) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!(
                    "{} did not log {needle:?} ({n} times); stderr so far:\n{}",
                    self.name,
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// The port a peercat node listens on, from its log.
    pub fn listening_port(&mut self) -> u16 {
        let line = self.wait_stderr("listening on ");
        line.rsplit(':').next().unwrap().trim().parse().unwrap()
    }

    pub fn take_stdout(&mut self) -> std::process::ChildStdout {
        self.child.stdout.take().expect("stdout")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to exit by itself; panics on failure.
    pub fn wait_success(&mut self) {
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{} failed: {status}", self.name);
    }

    /// (resident KiB, threads, open descriptors).
    pub fn footprint(&self) -> (u64, u64, u64) {
        let (rss, threads) = self.rss_and_threads();
        (rss, threads, self.fds())
    }

    /// Open file descriptors, from /proc.
    pub fn fds(&self) -> u64 {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).map_or(0, |d| d.count() as u64)
    }

    /// (resident KiB, threads) from /proc.
    pub fn rss_and_threads(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().trim_end_matches("kB").trim().parse().unwrap())
                .unwrap()
        };
        (field("VmRSS:"), field("Threads:"))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `stdout` on a thread until it has delivered exactly `expected`,
/// comparing each block as it arrives (so a gigabyte costs no memory).
/// Sends the instant the last byte arrived, or what went wrong.
pub fn sink(
    mut stdout: impl Read + Send + 'static,
    expected: Arc<[u8]>,
) -> Receiver<Result<Instant, String>> {
    let (tx, rx) = unbounded();
    thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 20];
        let mut at = 0;
        let result = loop {
            if at == expected.len() {
                break Ok(Instant::now());
            }
            let n = match stdout.read(&mut buf) {
                Ok(0) => {
                    break Err(format!(
                        "output ended after {at} of {} bytes",
                        expected.len()
                    ))
                }
                Err(e) => break Err(format!("reading output: {e}")),
                Ok(n) => n,
            };
            let want = &expected[at..(at + n).min(expected.len())];
            if &buf[..n] != want {
                let diff = buf[..n]
                    .iter()
                    .zip(want)
                    .position(|(a, b)| a != b)
                    .unwrap_or(want.len());
                break Err(format!("output differs from input at byte {}", at + diff));
            }
            at += n;
        };
        let _ = tx.send(result);
    });
    rx
}

/// Waits for a sink's verdict, bounded by [`STEP_DEADLINE`]; panics on any
/// difference: a fast wrong answer is not a result.
pub fn finish(sink: &Receiver<Result<Instant, String>>, what: &str) -> Instant {
    match sink.recv_timeout(STEP_DEADLINE) {
        Ok(Ok(done)) => done,
        Ok(Err(problem)) => panic!("{what}: {problem}"),
        Err(_) => panic!("{what}: not all output arrived within {STEP_DEADLINE:?}"),
    }
}

/// Reads lines from `stdout` on a thread and sends each line's number (its
/// first word) with the instant it arrived: the latency probe's receiver.
pub fn timed_lines(
    stdout: impl Read + Send + 'static,
    arrivals: Sender<(u64, Instant)>,
) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let now = Instant::now();
                    let seq = line.split_whitespace().next().and_then(|s| s.parse().ok());
                    if let Some(seq) = seq {
                        if arrivals.send((seq, now)).is_err() {
                            break;
                        }
                    }
                }
            }
        }
    })
}
