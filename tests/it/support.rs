//! Starting real `peercat` processes on 127.0.0.1 and watching what they do.
//!
//! Everything waits for an event (a log line, a stdout line, an exit) with a
//! deadline; nothing sleeps and hopes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver};
use parking_lot::{Condvar, Mutex};
use peercat::frame::{Frame, Hello};

/// Long enough for a loaded CI machine, short enough to fail fast.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Lines that some thread keeps appending to, and a way to wait for them.
#[derive(Default)]
pub struct Lines {
    lines: Mutex<Vec<Vec<u8>>>,
    grew: Condvar,
    closed: Mutex<bool>,
}

impl Lines {
    fn push(&self, line: Vec<u8>) {
        self.lines.lock().push(line);
        self.grew.notify_all();
    }

    fn close(&self) {
        *self.closed.lock() = true;
        let _guard = self.lines.lock();
        self.grew.notify_all();
    }

    pub fn snapshot(&self) -> Vec<Vec<u8>> {
        self.lines.lock().clone()
    }

    pub fn len(&self) -> usize {
        self.lines.lock().len()
    }

    /// Waits until `done` holds for the lines so far; false at the deadline.
    pub fn wait_until(&self, timeout: Duration, mut done: impl FnMut(&[Vec<u8>]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut lines = self.lines.lock();
        loop {
            if done(&lines) {
                return true;
            }
            if self.grew.wait_until(&mut lines, deadline).timed_out() {
                return done(&lines);
            }
        }
    }
}

fn text(line: &[u8]) -> String {
    String::from_utf8_lossy(line).into_owned()
}

/// One running `peercat`.
pub struct Node {
    pub name: String,
    pub pid: u32,
    /// The port it listens on (0 with --no-listen).
    pub port: u16,
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    pub log: Arc<Lines>,
    pub out: Arc<Lines>,
    exit: Receiver<ExitStatus>,
    status: Option<ExitStatus>,
}

pub struct Builder {
    name: String,
    args: Vec<String>,
    listen: bool,
    stdin: Option<Stdio>,
    raw_stdout: bool,
    netns: Option<String>,
}

/// A node called `name`, listening on 127.0.0.1 at a free port unless the
/// arguments say otherwise.
pub fn node(name: &str) -> Builder {
    Builder {
        name: name.to_owned(),
        args: Vec::new(),
        listen: true,
        stdin: None,
        raw_stdout: false,
        netns: None,
    }
}

impl Builder {
    pub fn args(mut self, args: &[&str]) -> Self {
        for arg in args {
            if matches!(*arg, "-l" | "--listen" | "--no-listen") {
                self.listen = false;
            }
            self.args.push((*arg).to_owned());
        }
        self
    }

    pub fn arg(self, arg: impl AsRef<str>) -> Self {
        self.args(&[arg.as_ref()])
    }

    /// Dials `other`.
    pub fn dial(self, other: &Node) -> Self {
        self.arg(format!("127.0.0.1:{}", other.port))
    }

    pub fn stdin(mut self, stdin: Stdio) -> Self {
        self.stdin = Some(stdin);
        self
    }

    /// Runs the node in a network namespace (`ip netns exec`, which execs
    /// peercat in place, so the pid is still peercat's).
    pub fn netns(mut self, name: &str) -> Self {
        self.netns = Some(name.to_owned());
        self
    }

    /// Leaves stdout to the test (`Node::take_stdout`) instead of collecting it.
    pub fn raw_stdout(mut self) -> Self {
        self.raw_stdout = true;
        self
    }

    /// Starts the node and waits until it says where it listens.
    pub fn start(self) -> Node {
        let mut node = self.start_quiet();
        node.port = node.listening_port();
        node
    }

    /// Starts the node without waiting for its log (which may go elsewhere).
    pub fn start_quiet(self) -> Node {
        let bin = env!("CARGO_BIN_EXE_peercat");
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, bin]);
                c
            }
            None => Command::new(bin),
        };
        if self.listen {
            cmd.args(["-l", "127.0.0.1:0"]);
        }
        cmd.args(["-n", &self.name]).args(&self.args);
        cmd.stdin(self.stdin.unwrap_or_else(Stdio::piped))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start peercat");
        let log = Arc::new(Lines::default());
        let out = Arc::new(Lines::default());
        collect(child.stderr.take().unwrap(), log.clone());
        let mut stdout = child.stdout.take();
        if !self.raw_stdout {
            collect(stdout.take().unwrap(), out.clone());
        }
        let stdin = child.stdin.take();
        let pid = child.id();
        let exit = wait_in_background(child);
        Node {
            name: self.name,
            pid,
            port: 0,
            stdin,
            stdout,
            log,
            out,
            exit,
            status: None,
        }
    }
}

fn collect(stream: impl Read + Send + 'static, lines: Arc<Lines>) {
    thread::spawn(move || {
        let mut reader = BufReader::with_capacity(256 * 1024, stream);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if line.last() == Some(&b'\n') {
                        line.pop();
                    }
                    lines.push(line.clone());
                }
            }
        }
        lines.close();
    });
}

fn wait_in_background(mut child: Child) -> Receiver<ExitStatus> {
    let (tx, rx) = bounded(1);
    thread::spawn(move || {
        if let Ok(status) = child.wait() {
            let _ = tx.send(status);
        }
    });
    rx
}

impl Node {
    fn listening_port(&self) -> u16 {
        let mut port = None;
        let found = self.log.wait_until(DEADLINE, |lines| {
            lines.iter().any(|l| {
                let l = text(l);
                if let Some(at) = l.find("listening on ") {
                    port = l[at..]
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.trim().parse().ok());
                    return true;
                }
                l.contains("not listening") || l.contains("error")
            })
        });
        assert!(
            found,
            "{} never said where it listens:\n{}",
            self.name,
            self.log_text()
        );
        port.unwrap_or(0)
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log_text(&self) -> String {
        self.log.snapshot().iter().map(|l| text(l) + "\n").collect()
    }

    /// Waits for a log line containing `needle` and returns it.
    pub fn wait_log(&self, needle: &str) -> String {
        self.wait_log_for(needle, DEADLINE)
    }

    pub fn wait_log_for(&self, needle: &str, timeout: Duration) -> String {
        let mut found = None;
        self.log.wait_until(timeout, |lines| {
            found = lines.iter().map(|l| text(l)).find(|l| l.contains(needle));
            found.is_some()
        });
        found.unwrap_or_else(|| {
            panic!(
                "{} did not log {needle:?} within {timeout:?}; its log:\n{}",
                self.name,
                self.log_text()
            )
        })
    }

    /// Waits until `n` log lines contain `needle`.
    pub fn wait_log_count(&self, needle: &str, n: usize) {
        let enough = self.log.wait_until(DEADLINE, |lines| {
            lines.iter().filter(|l| text(l).contains(needle)).count() >= n
        });
        assert!(
            enough,
            "{} logged {needle:?} fewer than {n} times; its log:\n{}",
            self.name,
            self.log_text()
        );
    }

    /// How many log lines contain `needle` so far.
    pub fn count_log(&self, needle: &str) -> usize {
        self.log
            .snapshot()
            .iter()
            .filter(|l| text(l).contains(needle))
            .count()
    }

    /// Waits until this node is connected to a peer called `name`.
    pub fn wait_peer(&self, name: &str) {
        self.wait_log(&format!("peer up: {name} "));
    }

    /// Waits for `n` lines on stdout and returns all of them.
    pub fn wait_lines(&self, n: usize) -> Vec<Vec<u8>> {
        self.wait_lines_for(n, DEADLINE)
    }

    pub fn wait_lines_for(&self, n: usize, timeout: Duration) -> Vec<Vec<u8>> {
        if !self.out.wait_until(timeout, |lines| lines.len() >= n) {
            panic!(
                "{} printed {} of {n} lines within {timeout:?}; its log:\n{}",
                self.name,
                self.out.len(),
                self.log_text()
            );
        }
        self.out.snapshot()
    }

    pub fn send(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin is piped");
        stdin.write_all(bytes).expect("write to peercat's stdin");
        stdin.flush().unwrap();
    }

    /// Takes stdin, for a thread that feeds it.
    pub fn take_stdin(&mut self) -> ChildStdin {
        self.stdin.take().expect("stdin is piped")
    }

    pub fn take_stdout(&mut self) -> ChildStdout {
        self.stdout.take().expect("started with raw_stdout")
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    #[cfg(unix)]
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid.to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{signal} {}", self.pid);
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.exit.recv_timeout(timeout).ok();
        }
        self.status
    }

    pub fn expect_exit(&mut self, timeout: Duration) -> ExitStatus {
        match self.wait_exit(timeout) {
            Some(status) => status,
            None => panic!(
                "{} did not exit within {timeout:?}; its log:\n{}",
                self.name,
                self.log_text()
            ),
        }
    }

    /// Resident memory in KiB, from /proc.
    #[cfg(target_os = "linux")]
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.wait_exit(Duration::ZERO).is_none() {
            // It may have exited since; then kill has nothing to say.
            let pid = self.pid.to_string();
            let mut kill = if cfg!(windows) {
                let mut c = Command::new("taskkill");
                c.args(["/F", "/PID", &pid]);
                c
            } else {
                let mut c = Command::new("kill");
                c.args(["-KILL", &pid]);
                c
            };
            let _ = kill.stdout(Stdio::null()).stderr(Stdio::null()).status();
            let _ = self.wait_exit(Duration::from_secs(5));
        }
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A hand-made peer for feeding a node bytes that peercat itself never sends.
pub struct RawPeer {
    pub stream: TcpStream,
}

impl RawPeer {
    pub fn connect(node: &Node) -> RawPeer {
        let stream = TcpStream::connect(node.addr()).expect("connect to the node");
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        RawPeer { stream }
    }

    /// Connects and completes a handshake as node `name`.
    pub fn handshake(node: &Node, name: &str) -> RawPeer {
        // An id of its own per name, or the node would see duplicates.
        let id = name.bytes().fold(0x5eed_u64, |id, b| {
            id.wrapping_mul(31).wrapping_add(b.into())
        });
        RawPeer::handshake_as(node, name, id)
    }

    /// Connects and completes a handshake as node `name` with id `id`.
    pub fn handshake_as(node: &Node, name: &str, id: u64) -> RawPeer {
        let mut peer = RawPeer::connect(node);
        peer.send(&hello(name, id));
        peer.read_hello();
        peer.send(&Frame::Accept.to_bytes());
        node.wait_peer(name);
        peer
    }

    pub fn local_addr(&self) -> String {
        self.stream.local_addr().unwrap().to_string()
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads the node's HELLO.
    pub fn read_hello(&mut self) -> Hello {
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            if let Some((Frame::Hello(hello), _)) = peercat::frame::decode(&buf, 1 << 20).unwrap() {
                return hello;
            }
            let n = self.stream.read(&mut byte).expect("read the node's HELLO");
            assert_eq!(n, 1, "the node closed before its HELLO");
            buf.push(byte[0]);
        }
    }

    /// Reads the next whole frame: its type byte and body; `None` once the
    /// node has closed.
    pub fn read_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).ok()?;
        let mut frame = vec![0; u32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut frame).ok()?;
        let body = frame.split_off(1);
        Some((frame[0], body))
    }

    /// Reads until the node closes; true if it closed (EOF or reset), false
    /// if it was still open at the deadline.
    pub fn read_until_closed(&mut self, timeout: Duration) -> bool {
        self.stream.set_read_timeout(Some(timeout)).unwrap();
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return false
                }
                Err(_) => return true,
            }
        }
        false
    }
}

pub fn hello(name: &str, node_id: u64) -> Vec<u8> {
    Frame::Hello(Hello {
        node_id,
        listen_port: 0,
        max_frame: 1 << 20,
        keepalive_secs: 5,
        name: name.to_owned(),
    })
    .to_bytes()
}

/// Lines as text, for readable assertions.
pub fn texts(lines: &[Vec<u8>]) -> Vec<String> {
    lines.iter().map(|l| text(l)).collect()
}
