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

    /// Waits until the stream has ended (every line read); false at the
    /// deadline.
    pub fn wait_closed(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut lines = self.lines.lock();
        while !*self.closed.lock() {
            if self.grew.wait_until(&mut lines, deadline).timed_out() {
                return *self.closed.lock();
            }
        }
        true
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

pub fn text(line: &[u8]) -> String {
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

#[path = "../../benches/suite/ports.rs"]
mod ports;
pub use ports::free_port;

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
        // A node greets a peer with its STATUS once it has taken it as a
        // peer. (Its "peer up" lines for peers that dialed it stop at 64
        // per 10 s, so they cannot be waited for.)
        while let Some((kind, _)) = peer.read_frame() {
            if kind == peercat::frame::kind::STATUS {
                return peer;
            }
        }
        panic!("{name}: the node closed the connection before greeting it");
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

/// The number right after `marker` in `line` (a count in a log line).
pub fn number_after(line: &str, marker: &str) -> Option<u64> {
    line.split(marker).nth(1)?.split(' ').next()?.parse().ok()
}

/// Lines as text, for readable assertions.
pub fn texts(lines: &[Vec<u8>]) -> Vec<String> {
    lines.iter().map(|l| text(l)).collect()
}

// ---------------------------------------------------------------------------
// Groups of nodes (the mesh tests): start N nodes on free ports with a given
// topology, parse what they print, and wait for what the group should do.
// ---------------------------------------------------------------------------

/// A value in one `-f json` line. Numbers keep their text.
#[derive(Debug, Clone, PartialEq)]
pub enum JVal {
    Str(String),
    Num(String),
    Bool(bool),
    Null,
    Arr(Vec<JVal>),
    Obj(Vec<(String, JVal)>),
}

/// One `-f json` line: an object, its keys in order.
#[derive(Debug, Clone)]
pub struct Json(pub Vec<(String, JVal)>);

impl Json {
    pub fn parse(line: &[u8]) -> Result<Json, String> {
        let mut p = JsonParser { s: line, at: 0 };
        match p.value()? {
            JVal::Obj(fields) => Ok(Json(fields)),
            other => Err(format!("not an object: {other:?}")),
        }
    }

    pub fn get(&self, key: &str) -> Option<&JVal> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        match self.get(key)? {
            JVal::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn num(&self, key: &str) -> Option<u64> {
        match self.get(key)? {
            JVal::Num(n) => n.parse().ok(),
            _ => None,
        }
    }

    /// The event's kind: `type` in the existing output, `event` in the
    /// mesh brief's examples; either is accepted.
    pub fn kind(&self) -> &str {
        self.str("type").or_else(|| self.str("event")).unwrap_or("")
    }

    /// The payload of a msg event (`text`, or the exact bytes in `base64`;
    /// `data` as the mesh brief spells it).
    pub fn payload(&self) -> Vec<u8> {
        self.str("text")
            .or_else(|| self.str("data"))
            .unwrap_or("")
            .as_bytes()
            .to_vec()
    }
}

impl std::fmt::Display for Json {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{{")?;
        for (i, (k, v)) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            write!(f, "{sep}{k}:{v:?}")?;
        }
        write!(f, "}}")
    }
}

struct JsonParser<'a> {
    s: &'a [u8],
    at: usize,
}

impl JsonParser<'_> {
    fn ws(&mut self) {
        while self.s.get(self.at).is_some_and(|b| b.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    fn eat(&mut self, b: u8) -> Result<(), String> {
        self.ws();
        if self.s.get(self.at) == Some(&b) {
            self.at += 1;
            Ok(())
        } else {
            Err(format!("expected {:?} at byte {}", b as char, self.at))
        }
    }

    fn value(&mut self) -> Result<JVal, String> {
        self.ws();
        match self.s.get(self.at) {
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => self.string().map(JVal::Str),
            Some(b't') => self.word("true", JVal::Bool(true)),
            Some(b'f') => self.word("false", JVal::Bool(false)),
            Some(b'n') => self.word("null", JVal::Null),
            Some(b) if *b == b'-' || b.is_ascii_digit() => {
                let start = self.at;
                while self
                    .s
                    .get(self.at)
                    .is_some_and(|b| b"+-.eE".contains(b) || b.is_ascii_digit())
                {
                    self.at += 1;
                }
                Ok(JVal::Num(text(&self.s[start..self.at])))
            }
            _ => Err(format!("unexpected byte at {}", self.at)),
        }
    }

    fn word(&mut self, word: &str, v: JVal) -> Result<JVal, String> {
        if self.s[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            Ok(v)
        } else {
            Err(format!("bad literal at byte {}", self.at))
        }
    }

    fn object(&mut self) -> Result<JVal, String> {
        self.eat(b'{')?;
        let mut fields = Vec::new();
        self.ws();
        if self.s.get(self.at) == Some(&b'}') {
            self.at += 1;
            return Ok(JVal::Obj(fields));
        }
        loop {
            self.ws();
            let key = self.string()?;
            self.eat(b':')?;
            fields.push((key, self.value()?));
            self.ws();
            match self.s.get(self.at) {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(JVal::Obj(fields));
                }
                _ => return Err(format!("expected , or }} at byte {}", self.at)),
            }
        }
    }

    fn array(&mut self) -> Result<JVal, String> {
        self.eat(b'[')?;
        let mut items = Vec::new();
        self.ws();
        if self.s.get(self.at) == Some(&b']') {
            self.at += 1;
            return Ok(JVal::Arr(items));
        }
        loop {
            items.push(self.value()?);
            self.ws();
            match self.s.get(self.at) {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(JVal::Arr(items));
                }
                _ => return Err(format!("expected , or ] at byte {}", self.at)),
            }
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.eat(b'"')?;
        let mut out = Vec::new();
        loop {
            let Some(&b) = self.s.get(self.at) else {
                return Err("unterminated string".into());
            };
            self.at += 1;
            match b {
                b'"' => return Ok(String::from_utf8_lossy(&out).into_owned()),
                b'\\' => {
                    let Some(&e) = self.s.get(self.at) else {
                        return Err("unterminated escape".into());
                    };
                    self.at += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'u' => {
                            let hex = self.s.get(self.at..self.at + 4).ok_or("short \\u")?;
                            self.at += 4;
                            let code = u32::from_str_radix(&text(hex), 16)
                                .map_err(|e| format!("bad \\u: {e}"))?;
                            let c = char::from_u32(code).unwrap_or('\u{fffd}');
                            out.extend_from_slice(c.to_string().as_bytes());
                        }
                        other => out.push(other),
                    }
                }
                other => out.push(other),
            }
        }
    }
}

/// One msg event, the fields the mesh tests check.
#[derive(Debug, Clone)]
pub struct Msg {
    pub from: String,
    pub origin: String,
    pub seq: u64,
    pub hops: u64,
    pub via: String,
    pub data: Vec<u8>,
}

/// Per origin (by name): how many numbered lines arrived and the last one.
#[derive(Debug, Clone, Copy, Default)]
pub struct OriginTally {
    pub count: u64,
    pub last: u64,
}

/// What one node printed so far, checked as it arrives: every payload is a
/// line number, and per origin the numbers must run 1, 2, 3, ... without a
/// repeat or a hole (exactly once, in order).
#[derive(Default)]
pub struct Printed {
    pub per_origin: std::collections::HashMap<String, OriginTally>,
    pub total: u64,
    /// Every msg, when the group keeps them (`-f json` tests).
    pub msgs: Vec<Msg>,
    /// Every other json event, with when it arrived.
    pub events: Vec<(Instant, Json)>,
    /// What broke the rules: out-of-order, repeated, unparsable lines.
    pub errors: Vec<String>,
    pub closed: bool,
}

impl Printed {
    fn numbered(&mut self, from: &str, payload: &[u8]) {
        self.total += 1;
        // The line's number is its first word; padding may follow.
        let n: Option<u64> = std::str::from_utf8(payload)
            .ok()
            .and_then(|p| p.split(' ').next())
            .and_then(|p| p.parse().ok());
        let tally = self.per_origin.entry(from.to_owned()).or_default();
        match n {
            Some(n) if n == tally.last + 1 => {
                tally.count += 1;
                tally.last = n;
            }
            _ => {
                tally.count += 1;
                if self.errors.len() < 20 {
                    self.errors.push(format!(
                        "from {from}: {:?} after line {}",
                        text(payload),
                        tally.last
                    ));
                }
            }
        }
    }

    /// Events of `kind` (member_up, member_down, gap, peer_up, peer_down).
    pub fn events_of(&self, kind: &str) -> Vec<&Json> {
        self.events
            .iter()
            .filter(|(_, e)| e.kind() == kind)
            .map(|(_, e)| e)
            .collect()
    }

    /// Names of the members this node currently believes up: member_up
    /// seen, not followed by a member_down for the same id.
    pub fn live_members(&self) -> std::collections::BTreeSet<String> {
        let mut live = std::collections::BTreeMap::new();
        for (_, e) in &self.events {
            let (Some(id), Some(name)) = (e.str("id"), e.str("name")) else {
                continue;
            };
            match e.kind() {
                "member_up" => {
                    live.insert(id.to_owned(), name.to_owned());
                }
                "member_down" => {
                    live.remove(id);
                }
                _ => {}
            }
        }
        live.into_values().collect()
    }

    pub fn count_from(&self, origin: &str) -> u64 {
        self.per_origin.get(origin).map_or(0, |t| t.count)
    }
}

/// A node's stdout, parsed on a thread as it arrives.
#[derive(Default)]
pub struct Stdout {
    printed: Mutex<Printed>,
    grew: Condvar,
}

impl Stdout {
    /// Reads `stream`: JSON objects, or `NAME> line` under `-f tagged`.
    /// `keep_msgs` keeps every msg event (memory grows with the test).
    fn collect(stream: impl Read + Send + 'static, keep_msgs: bool) -> Arc<Stdout> {
        let out = Arc::new(Stdout::default());
        let sink = out.clone();
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
                        sink.take(&line, keep_msgs);
                    }
                }
            }
            sink.printed.lock().closed = true;
            sink.grew.notify_all();
        });
        out
    }

    fn take(&self, line: &[u8], keep_msgs: bool) {
        let mut p = self.printed.lock();
        if line.first() == Some(&b'{') {
            match Json::parse(line) {
                Ok(json) if json.kind() == "msg" => {
                    let from = json.str("from").unwrap_or("?").to_owned();
                    let payload = json.payload();
                    p.numbered(&from, &payload);
                    if keep_msgs {
                        p.msgs.push(Msg {
                            from,
                            origin: json.str("origin").unwrap_or("").to_owned(),
                            seq: json.num("seq").unwrap_or(0),
                            hops: json.num("hops").unwrap_or(0),
                            via: json.str("via").unwrap_or("").to_owned(),
                            data: payload,
                        });
                    }
                }
                Ok(json) => p.events.push((Instant::now(), json)),
                Err(e) => p.errors.push(format!("bad json ({e}): {}", text(line))),
            }
        } else if let Some(at) = memchr::memmem::find(line, b"> ") {
            let from = text(&line[..at]);
            p.numbered(&from, &line[at + 2..]);
        } else {
            p.errors.push(format!("untagged line: {}", text(line)));
        }
        drop(p);
        self.grew.notify_all();
    }

    /// Waits until `done` holds; false at the deadline (or once stdout
    /// closed without it).
    pub fn wait_until(&self, timeout: Duration, mut done: impl FnMut(&Printed) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut p = self.printed.lock();
        loop {
            if done(&p) {
                return true;
            }
            if p.closed || self.grew.wait_until(&mut p, deadline).timed_out() {
                return done(&p);
            }
        }
    }

    pub fn with<T>(&self, f: impl FnOnce(&Printed) -> T) -> T {
        f(&self.printed.lock())
    }
}

/// A node of a group: the process and its parsed stdout.
pub struct Member {
    pub node: Node,
    pub out: Arc<Stdout>,
}

impl std::ops::Deref for Member {
    type Target = Node;
    fn deref(&self) -> &Node {
        &self.node
    }
}

impl std::ops::DerefMut for Member {
    fn deref_mut(&mut self) -> &mut Node {
        &mut self.node
    }
}

/// What a group member reads on stdin.
pub enum Input {
    /// A pipe the test writes to (`Node::send`, `Node::take_stdin`).
    Pipe,
    /// Lines 1..=n, one number per line, from a file (ends with EOF).
    Numbered(u64),
    /// Nothing, and at once EOF.
    Empty,
}

/// One node of a group to start.
pub struct Spec {
    pub name: String,
    pub args: Vec<String>,
    /// Indexes of the group's nodes this one dials (its PEER arguments).
    pub dials: Vec<usize>,
    pub input: Input,
}

impl Spec {
    pub fn new(name: impl Into<String>) -> Spec {
        Spec {
            name: name.into(),
            args: Vec::new(),
            dials: Vec::new(),
            input: Input::Pipe,
        }
    }

    pub fn args(mut self, args: &[&str]) -> Spec {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    pub fn dial(mut self, i: usize) -> Spec {
        self.dials.push(i);
        self
    }

    pub fn input(mut self, input: Input) -> Spec {
        self.input = input;
        self
    }
}

/// Numbered lines `first..=last`, one number per line.
pub fn numbered_lines(first: u64, last: u64) -> Vec<u8> {
    padded_lines(first, last, 0)
}

/// Numbered lines padded with letters to `pad` bytes (when longer).
pub fn padded_lines(first: u64, last: u64, pad: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for n in first..=last {
        let start = out.len();
        out.extend_from_slice(n.to_string().as_bytes());
        if out.len() - start + 1 < pad {
            out.push(b' ');
            while out.len() - start < pad {
                out.push(b'a' + ((out.len() - start) % 26) as u8);
            }
        }
        out.push(b'\n');
    }
    out
}

/// A folder for one test's files, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("peercat-it-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("make a temp folder");
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn input_file(dir: &TempDir, name: &str, bytes: &[u8]) -> Stdio {
    let path = dir.path(&format!("{name}.in"));
    std::fs::write(&path, bytes).expect("write an input file");
    Stdio::from(std::fs::File::open(&path).expect("open an input file"))
}

/// How a group's nodes print, and what the test keeps of it.
#[derive(Clone, Copy, PartialEq)]
pub enum Fmt {
    /// `-f json`, every msg kept (origin, seq, hops, via checked later).
    Json,
    /// `-f json`, msgs only counted and checked for order (big floods).
    JsonCounted,
    /// `-f tagged`, msgs only counted and checked for order.
    Tagged,
}

impl Fmt {
    fn flag(self) -> &'static str {
        match self {
            Fmt::Tagged => "tagged",
            _ => "json",
        }
    }
}

/// Nodes started together on 127.0.0.1, each on a port chosen before any
/// of them starts, so any topology (a ring too) can be dialed at once.
pub struct Group {
    pub nodes: Vec<Member>,
    pub ports: Vec<u16>,
    _dir: TempDir,
}

impl Group {
    /// Starts every node of `specs` at (nearly) the same instant, then waits
    /// until each says it listens.
    pub fn start(tag: &str, specs: Vec<Spec>, fmt: Fmt) -> Group {
        let dir = TempDir::new(tag);
        let ports = group_ports(specs.len());
        let mut nodes = Vec::new();
        for (i, spec) in specs.into_iter().enumerate() {
            nodes.push(Group::spawn(&dir, &ports, i, spec, fmt));
        }
        for m in &nodes {
            m.wait_listening();
        }
        Group {
            nodes,
            ports,
            _dir: dir,
        }
    }

    fn spawn(dir: &TempDir, ports: &[u16], i: usize, spec: Spec, fmt: Fmt) -> Member {
        let mut b = node(&spec.name)
            .args(&["-l", &format!("127.0.0.1:{}", ports[i]), "-f", fmt.flag()])
            .raw_stdout();
        for a in &spec.args {
            b = b.arg(a);
        }
        for &j in &spec.dials {
            b = b.arg(format!("127.0.0.1:{}", ports[j]));
        }
        b = match spec.input {
            Input::Pipe => b,
            Input::Empty => b.stdin(Stdio::null()),
            Input::Numbered(n) => b.stdin(input_file(dir, &spec.name, &numbered_lines(1, n))),
        };
        let mut node = b.start_quiet();
        node.port = ports[i];
        let out = Stdout::collect(node.take_stdout(), fmt == Fmt::Json);
        Member { node, out }
    }

    /// Starts one more node outside the group's start (a late joiner, a
    /// restart), listening on a free port, with `args`.
    pub fn extra(name: &str, args: &[String], fmt: Fmt) -> Member {
        let mut b = node(name).args(&["-f", fmt.flag()]).raw_stdout();
        for a in args {
            b = b.arg(a);
        }
        let mut node = b.start();
        let out = Stdout::collect(node.take_stdout(), fmt == Fmt::Json);
        Member { node, out }
    }

    /// `127.0.0.1:PORT` of node `i`.
    pub fn addr(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.ports[i])
    }

    pub fn names(&self) -> Vec<String> {
        self.nodes.iter().map(|m| m.name.clone()).collect()
    }

    /// Waits until every node in `who` has printed `per_origin` lines from
    /// each other node in `from` (by name); on the deadline, says who has
    /// what.
    pub fn wait_complete(&self, who: &[usize], from: &[usize], per_origin: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for &i in who {
            let m = &self.nodes[i];
            let origins: Vec<&str> = from
                .iter()
                .filter(|&&j| j != i)
                .map(|&j| self.nodes[j].name.as_str())
                .collect();
            let done = m
                .out
                .wait_until(deadline.saturating_duration_since(Instant::now()), |p| {
                    !p.errors.is_empty() || origins.iter().all(|o| p.count_from(o) >= per_origin)
                });
            let report = self.report();
            assert!(
                done,
                "{} did not print {per_origin} lines from each of {origins:?} within {timeout:?}\n{report}\nits log:\n{}",
                m.name,
                tail(&m.log_text(), 40)
            );
            m.out.with(|p| {
                assert!(
                    p.errors.is_empty(),
                    "{} printed lines out of order or twice: {:?}\n{report}",
                    m.name,
                    p.errors
                )
            });
        }
    }

    /// Every node: what it printed from whom, and its events, for messages.
    pub fn report(&self) -> String {
        let mut s = String::new();
        for m in &self.nodes {
            m.out.with(|p| {
                let mut per: Vec<_> = p.per_origin.iter().collect();
                per.sort_by(|a, b| a.0.cmp(b.0));
                s.push_str(&format!(
                    "  {}: {} msgs {:?}; members {:?}; errors {:?}\n",
                    m.name,
                    p.total,
                    per.iter()
                        .map(|(o, t)| format!("{o}:{}", t.count))
                        .collect::<Vec<_>>(),
                    p.live_members(),
                    p.errors.iter().take(3).collect::<Vec<_>>()
                ))
            });
        }
        s
    }

    /// Waits until every node in `who` counts `n` other live members.
    pub fn wait_members(&self, who: &[usize], n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for &i in who {
            let m = &self.nodes[i];
            let ok = m
                .out
                .wait_until(deadline.saturating_duration_since(Instant::now()), |p| {
                    p.live_members().len() >= n
                });
            assert!(
                ok,
                "{} did not see {n} members within {timeout:?}\n{}its log:\n{}",
                m.name,
                self.report(),
                tail(&m.log_text(), 40)
            );
        }
    }
}

impl Member {
    /// Waits until the node says it listens; fails at once, with its log,
    /// if it says `error` instead (a flag it does not know, a busy port).
    pub fn wait_listening(&self) {
        let mut listening = false;
        self.log.wait_until(DEADLINE, |lines| {
            let says = |s: &str| lines.iter().any(|l| text(l).contains(s));
            listening = says("listening on ");
            listening || says("error")
        });
        assert!(
            listening,
            "{} did not start listening; its log:\n{}",
            self.name,
            self.log_text()
        );
    }
}

/// `n` distinct free ports below the kernel's ephemeral range, for nodes
/// started together with the nodes that dial them. A port from `free_port`
/// (the ephemeral range) may meanwhile become the local end of some other
/// test's outgoing connection; ports below the range never do. Each is held
/// until all are chosen, so no two are the same.
pub fn group_ports(n: usize) -> Vec<u16> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(32768);
    let seed = u64::from(std::process::id()).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut held = Vec::new();
    for _ in 0..n * 100 {
        if held.len() == n || low <= 12_000 {
            break;
        }
        let i = NEXT.fetch_add(1, Ordering::Relaxed);
        // Spread over 10000..low, differently in every test process.
        let x = (seed ^ i.wrapping_mul(0xbf58_476d_1ce4_e5b9)).rotate_left(17);
        let port = (10_000 + x % (low - 10_000)) as u16;
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            held.push(listener);
        }
    }
    while held.len() < n {
        held.push(TcpListener::bind("127.0.0.1:0").unwrap());
    }
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// The last `n` lines of a log, for failure messages.
pub fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
