//! The six scenarios, each as a peercat run and a run of the tool a user
//! would pick instead. Every run checks its output against its input and
//! panics on any difference: a fast wrong answer is not a result.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver};
use peercat::frame::{self, Frame, Hello};

use crate::procs::{
    busy_cpu_secs, finish, free_port, sink, timed_lines, Input, Proc, STEP_DEADLINE,
};

/// Sizes for one run of the suite.
pub struct Sizes {
    pub lines: usize,
    pub latency_msgs: usize,
    pub big_msgs: usize,
    pub many_peers: usize,
    /// Scenario 9: lines sent, one every 2 ms.
    pub probes: usize,
}

/// The payload of every ordinary line: 64 bytes, numbered.
pub const LINE_LEN: usize = 64;
/// The payload of a big message: 1 MiB.
pub const BIG_LEN: usize = 1 << 20;

/// Input files, made once per suite run.
pub struct Inputs {
    pub lines: Arc<[u8]>,
    pub lines_path: PathBuf,
    pub big: Arc<[u8]>,
    pub big_path: PathBuf,
}

/// Line `n` of an input: its number, then letters up to `len` bytes, then
/// a newline, appended to `out`.
fn push_numbered(out: &mut Vec<u8>, n: usize, len: usize) {
    let start = out.len();
    out.extend_from_slice(format!("{n:08} ").as_bytes());
    let mut letters = len - (out.len() - start);
    while letters > 0 {
        let take = letters.min(26);
        out.extend_from_slice(&b"abcdefghijklmnopqrstuvwxyz"[..take]);
        letters -= take;
    }
    out.push(b'\n');
}

pub fn numbered(n: usize, len: usize) -> Vec<u8> {
    let mut line = Vec::with_capacity(len + 1);
    push_numbered(&mut line, n, len);
    line
}

/// `count` numbered lines of `len` bytes, written to `path` too.
pub fn input(count: usize, len: usize, path: &Path) -> Arc<[u8]> {
    let mut all = Vec::with_capacity(count * (len + 1));
    for n in 0..count {
        push_numbered(&mut all, n, len);
    }
    std::fs::write(path, &all).unwrap();
    all.into()
}

impl Inputs {
    /// Makes the ordinary lines, and the 1 MiB lines only if `big` is set
    /// (a gigabyte is not worth making for nothing).
    pub fn make(sizes: &Sizes, dir: &Path, big: bool) -> Inputs {
        let lines_path = dir.join("lines.txt");
        let big_path = dir.join("big.txt");
        Inputs {
            lines: input(sizes.lines, LINE_LEN, &lines_path),
            lines_path,
            big: input(if big { sizes.big_msgs } else { 0 }, BIG_LEN, &big_path),
            big_path,
        }
    }
}

/// One timed run, and how many cores the whole machine kept busy meanwhile.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub secs: f64,
    pub cores: f64,
}

impl Run {
    fn new(start: Instant, busy_at_start: f64, done: Instant) -> Run {
        let secs = secs(start, done);
        Run {
            secs,
            cores: (busy_cpu_secs() - busy_at_start) / secs,
        }
    }
}

fn secs(from: Instant, to: Instant) -> f64 {
    to.duration_since(from).as_secs_f64()
}

/// A listening peercat (`-q`, any port on 127.0.0.1) whose stdout is
/// checked against `expected`: the process, its sink and its address.
fn receiver(
    name: &str,
    expected: &Arc<[u8]>,
    extra: &[&str],
) -> (Proc, Receiver<Result<Instant, String>>, String) {
    let mut args = vec!["-q", "-l", "127.0.0.1:0"];
    args.extend(extra);
    let mut r = Proc::peercat(name, &args, Input::Null);
    let addr = format!("127.0.0.1:{}", r.listening_port());
    let out = sink(r.take_stdout(), expected.clone());
    (r, out, addr)
}

/// Once `sender` (started with `Input::Pipe`, without `-q`) is linked to
/// `peers` receivers (named r...), writes `input` to its stdin on a
/// thread: the instant it began, and the writer. Scenario 11 times from
/// here, so that start-up (with `--secret-file`, deriving the key from the
/// secret on purpose slowly) is not counted against the links' throughput.
fn feed_once_linked(
    sender: &mut Proc,
    peers: usize,
    input: &Arc<[u8]>,
) -> (Instant, JoinHandle<std::io::Result<()>>) {
    sender.wait_stderr_count("peer up: r", peers);
    let mut stdin = sender.stdin.take().expect("stdin");
    let feed = input.clone();
    let start = Instant::now();
    (start, thread::spawn(move || stdin.write_all(&feed)))
}

/// Scenario 1 and 4: everything in `input` from one node's stdin to
/// another's stdout. Returns seconds until the last line was printed.
pub fn one_hop_peercat(input: &Arc<[u8]>, path: &Path, extra: &[&str]) -> Run {
    let (_r, out, addr) = receiver("r", input, extra);
    let mut args = vec![
        "-q",
        "--no-listen",
        "--wait-peers",
        "1",
        "--exit-on-eof",
        &addr,
    ];
    args.extend(extra);
    let (start, busy) = (Instant::now(), busy_cpu_secs());
    let mut a = Proc::peercat("a", &args, Input::File(path));
    let done = finish(&out, "peercat one hop");
    let run = Run::new(start, busy, done);
    a.wait_success();
    run
}

/// Scenario 11's one hop: as [`one_hop_peercat`], but timed from the
/// moment the link is up ([`feed_once_linked`]). Seconds from the first
/// byte written to the sender's stdin to the last line printed.
pub fn one_hop_connected(input: &Arc<[u8]>, extra: &[&str]) -> f64 {
    let (_r, out, addr) = receiver("r", input, extra);
    let mut args = vec!["--no-listen", "--exit-on-eof", &addr];
    args.extend(extra);
    let mut a = Proc::peercat("a", &args, Input::Pipe);
    let (start, writer) = feed_once_linked(&mut a, 1, input);
    let done = finish(&out, "peercat one hop, connected first");
    writer.join().unwrap().expect("write the sender's stdin");
    a.wait_success();
    secs(start, done)
}

pub fn one_hop_ncat(input: &Arc<[u8]>, path: &Path) -> Run {
    let port = free_port().to_string();
    let mut b = Proc::ncat(
        "b",
        &["-v", "-l", "127.0.0.1", &port, "--recv-only"],
        Input::Null,
    );
    b.wait_stderr("Listening on");
    let out = sink(b.take_stdout(), input.clone());
    let (start, busy) = (Instant::now(), busy_cpu_secs());
    let _a = Proc::ncat("a", &["--send-only", "127.0.0.1", &port], Input::File(path));
    Run::new(start, busy, finish(&out, "ncat pipe"))
}

/// Scenario 2: one sender, four receivers. Returns seconds until every
/// receiver has every line.
pub fn fan_out_peercat(inputs: &Inputs) -> f64 {
    fan_out(inputs, &[], false)
}

/// Scenario 11's fan-out: the clock starts once the sender is connected to
/// all four (see [`one_hop_connected`]).
pub fn fan_out_connected(inputs: &Inputs, extra: &[&str]) -> f64 {
    fan_out(inputs, extra, true)
}

fn fan_out(inputs: &Inputs, extra: &[&str], connected_first: bool) -> f64 {
    let mut receivers = Vec::new();
    let mut sinks = Vec::new();
    let mut addrs = Vec::new();
    for i in 0..4 {
        let (r, out, addr) = receiver(&format!("r{i}"), &inputs.lines, extra);
        receivers.push(r);
        sinks.push(out);
        addrs.push(addr);
    }
    let mut args = vec!["--no-listen", "--wait-peers", "4", "--exit-on-eof"];
    if !connected_first {
        args.push("-q");
    }
    args.extend(extra);
    args.extend(addrs.iter().map(String::as_str));
    let (start, mut s, writer) = if connected_first {
        let mut s = Proc::peercat("s", &args, Input::Pipe);
        let (start, writer) = feed_once_linked(&mut s, 4, &inputs.lines);
        (start, s, Some(writer))
    } else {
        let start = Instant::now();
        let s = Proc::peercat("s", &args, Input::File(&inputs.lines_path));
        (start, s, None)
    };
    let done = sinks
        .iter()
        .map(|out| finish(out, "peercat fan-out"))
        .max()
        .unwrap();
    if let Some(writer) = writer {
        writer.join().unwrap().expect("write the sender's stdin");
    }
    s.wait_success();
    secs(start, done)
}

pub fn fan_out_ncat(inputs: &Inputs) -> f64 {
    let port = free_port().to_string();
    let mut broker = Proc::ncat(
        "broker",
        &["-v", "-l", "--broker", "127.0.0.1", &port],
        Input::Null,
    );
    broker.wait_stderr("Listening on");
    let mut receivers = Vec::new();
    let mut sinks = Vec::new();
    for i in 0..4 {
        let mut r = Proc::ncat(
            &format!("r{i}"),
            &["--recv-only", "127.0.0.1", &port],
            Input::Null,
        );
        sinks.push(sink(r.take_stdout(), inputs.lines.clone()));
        receivers.push(r);
    }
    broker.wait_stderr_count("Connection from 127.0.0.1:", 4);
    let start = Instant::now();
    let _s = Proc::ncat(
        "s",
        &["--send-only", "127.0.0.1", &port],
        Input::File(&inputs.lines_path),
    );
    let done = sinks
        .iter()
        .map(|out| finish(out, "ncat --broker fan-out"))
        .max()
        .unwrap();
    secs(start, done)
}

/// Scenario 3: one line per millisecond into `stdin`, arrivals read from
/// `stdout`. Returns the latencies in microseconds, sorted.
fn latencies(mut stdin: impl Write, stdout: impl Read + Send + 'static, count: usize) -> Vec<f64> {
    let (arrivals_tx, arrivals) = unbounded();
    let reader = timed_lines(stdout, arrivals_tx);
    let start = Instant::now() + Duration::from_millis(10);
    let mut sent = Vec::with_capacity(count);
    for n in 0..count {
        let at = start + Duration::from_millis(n as u64);
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        let line = numbered(n, LINE_LEN);
        sent.push(Instant::now());
        stdin.write_all(&line).unwrap();
    }
    let deadline = Instant::now() + STEP_DEADLINE;
    let mut got = vec![None; count];
    for _ in 0..count {
        let (seq, at) = arrivals
            .recv_deadline(deadline)
            .expect("every latency probe arrives");
        let slot = got.get_mut(seq as usize).expect("a probe we sent");
        assert!(slot.is_none(), "probe {seq} arrived twice");
        *slot = Some(at);
    }
    drop(reader);
    let mut micros: Vec<f64> = got
        .iter()
        .zip(&sent)
        .map(|(at, sent)| at.unwrap().duration_since(*sent).as_secs_f64() * 1e6)
        .collect();
    micros.sort_by(f64::total_cmp);
    micros
}

pub fn latency_peercat(count: usize) -> Vec<f64> {
    latency_peercat_with(count, &[])
}

/// Scenario 3 with `extra` arguments for both nodes (scenario 11).
pub fn latency_peercat_with(count: usize, extra: &[&str]) -> Vec<f64> {
    let mut args = vec!["-q", "-l", "127.0.0.1:0"];
    args.extend(extra);
    let mut b = Proc::peercat("b", &args, Input::Null);
    let addr = format!("127.0.0.1:{}", b.listening_port());
    let mut args = vec!["--no-listen", &addr];
    args.extend(extra);
    let mut a = Proc::peercat("a", &args, Input::Pipe);
    a.wait_stderr("peer up");
    let stdin = a.stdin.take().unwrap();
    latencies(stdin, b.take_stdout(), count)
}

pub fn latency_ncat(count: usize) -> Vec<f64> {
    let port = free_port().to_string();
    let mut b = Proc::ncat(
        "b",
        &["-v", "-l", "127.0.0.1", &port, "--recv-only"],
        Input::Null,
    );
    b.wait_stderr("Listening on");
    let mut a = Proc::ncat("a", &["--send-only", "127.0.0.1", &port], Input::Pipe);
    b.wait_stderr("Connection from 127.0.0.1:");
    let stdin = a.stdin.take().unwrap();
    latencies(stdin, b.take_stdout(), count)
}

/// Scenario 4's yardstick: one raw TCP stream over loopback moving `total`
/// bytes in 1 MiB writes. Returns seconds.
pub fn tcp_limit(total: usize) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let reader = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0;
        while got < total {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "raw copy ended early");
            got += n;
        }
        Instant::now()
    });
    let start = Instant::now();
    let mut w = TcpStream::connect(addr).unwrap();
    let buf = vec![b'x'; 1 << 20];
    let mut sent = 0;
    while sent < total {
        let n = buf.len().min(total - sent);
        w.write_all(&buf[..n]).unwrap();
        sent += n;
    }
    let done = reader.join().unwrap();
    secs(start, done)
}

/// Scenario 5's result.
#[derive(Debug)]
pub struct Crowd {
    pub rss_per_peer_kib: f64,
    pub threads_per_peer: f64,
    pub fds_per_peer: f64,
    pub reach_ms: f64,
}

impl Crowd {
    /// Waits until every peer thread has reported its message's arrival;
    /// `before` and `after` are (KiB, threads, descriptors) without and with
    /// the peers.
    fn tally(
        before: (u64, u64, u64),
        after: (u64, u64, u64),
        start: Instant,
        arrived: &Receiver<Instant>,
        peers: Vec<JoinHandle<()>>,
    ) -> Crowd {
        let count = peers.len();
        let last = (0..count)
            .map(|_| {
                arrived
                    .recv_timeout(STEP_DEADLINE)
                    .expect("the line reaches every peer")
            })
            .max()
            .unwrap();
        for p in peers {
            p.join().unwrap();
        }
        let per_peer = |before: u64, after: u64| (after as f64 - before as f64) / count as f64;
        Crowd {
            rss_per_peer_kib: per_peer(before.0, after.0),
            threads_per_peer: per_peer(before.1, after.1),
            fds_per_peer: per_peer(before.2, after.2),
            reach_ms: secs(start, last) * 1e3,
        }
    }
}

/// The one STATUS an idle peer sends: a member that has sent nothing,
/// relays nothing and is not passed on (ttl 1).
fn idle_status(id: u64, name: &str) -> Vec<u8> {
    Frame::Status(frame::Status {
        life: 1,
        keepalive_secs: 1,
        member: id,
        status_seq: 1,
        hops: 1,
        ttl: 1,
        sent_seq: 0,
        flags: frame::FLAG_NO_RELAY,
        name: name.to_owned(),
        addrs: Vec::new(),
        acks: Vec::new(),
        misses: Vec::new(),
    })
    .to_bytes()
}

/// Scenario 5: a node with `count` idle peers (hand-made connections that
/// handshake and then only listen). Measures the node's memory and threads
/// per peer, and the time for one line to reach them all.
pub fn crowd_peercat(count: usize) -> Crowd {
    let max = (count + 8).to_string();
    // A node keeps at most 2 x --degree links (the mesh closes the extra
    // ones): --degree 64, the highest, lets it keep 128.
    assert!(count <= 128, "a node keeps at most 128 links");
    let mut node = Proc::peercat(
        "hub",
        &["-l", "127.0.0.1:0", "--max-peers", &max, "--degree", "64"],
        Input::Pipe,
    );
    let port = node.listening_port();
    node.wait_stderr("this is node");
    let before = node.footprint();
    let (arrived_tx, arrived) = unbounded();
    let mut peers = Vec::new();
    for i in 0..count {
        let arrived = arrived_tx.clone();
        // One at a time, each admitted before the next: a burst of connects
        // can overflow the accept queue, and a node lets one address have
        // only a few handshakes in progress.
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let hello = Hello {
            node_id: 0x1000 + i as u64,
            listen_port: 0,
            max_frame: 1 << 20,
            keepalive_secs: 5,
            name: format!("idle{i}"),
        };
        s.write_all(&Frame::Hello(hello).to_bytes()).unwrap();
        s.write_all(&Frame::Accept.to_bytes()).unwrap();
        // Announce itself as a member, as a node does: the hub's first
        // stdin read waits (up to 5 s) for its up peers to do so.
        s.write_all(&idle_status(0x1000 + i as u64, &format!("idle{i}")))
            .unwrap();
        s.set_read_timeout(Some(STEP_DEADLINE)).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let mut admitted = false;
        while !admitted {
            let n = s.read(&mut chunk).expect("the hub's HELLO and ACCEPT");
            assert!(n > 0, "the hub closed idle peer {i}");
            buf.extend_from_slice(&chunk[..n]);
            while let Some((frame, used)) = frame::decode(&buf, 1 << 21).unwrap() {
                let accept = frame == Frame::Accept;
                buf.drain(..used);
                if accept {
                    admitted = true;
                    break;
                }
            }
        }
        peers.push(thread::spawn(move || loop {
            while let Some((frame, used)) = frame::decode(&buf, 1 << 21).unwrap() {
                if let Frame::Msg { payload, .. } = frame {
                    assert_eq!(payload, b"to everyone");
                    let _ = arrived.send(Instant::now());
                    return;
                }
                buf.drain(..used);
            }
            let n = s.read(&mut chunk).expect("the hub's message");
            assert!(n > 0, "the hub closed idle peer {i}");
            buf.extend_from_slice(&chunk[..n]);
        }));
    }
    node.wait_stderr(&format!("; {count} connected"));
    let after = node.footprint();
    let start = Instant::now();
    node.stdin
        .as_mut()
        .unwrap()
        .write_all(b"to everyone\n")
        .unwrap();
    Crowd::tally(before, after, start, &arrived, peers)
}

pub fn crowd_ncat(count: usize) -> Crowd {
    let port = free_port();
    // ncat accepts 100 connections unless told otherwise.
    let max = (count + 8).to_string();
    let mut broker = Proc::ncat(
        "broker",
        &[
            "-v",
            "-l",
            "--broker",
            "-m",
            &max,
            "127.0.0.1",
            &port.to_string(),
        ],
        Input::Null,
    );
    broker.wait_stderr("Listening on");
    let before = broker.footprint();
    let (arrived_tx, arrived) = unbounded();
    let mut peers = Vec::new();
    for i in 0..count {
        let arrived = arrived_tx.clone();
        // One at a time: ncat's accept queue is short.
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        broker.wait_stderr_count("Connection from 127.0.0.1:", i + 1);
        peers.push(thread::spawn(move || {
            s.set_read_timeout(Some(STEP_DEADLINE)).unwrap();
            let mut got = Vec::new();
            let mut chunk = [0u8; 64];
            while !got.ends_with(b"\n") {
                let n = s.read(&mut chunk).expect("the broker's message");
                assert!(n > 0, "the broker closed an idle client");
                got.extend_from_slice(&chunk[..n]);
            }
            assert_eq!(got, b"to everyone\n");
            let _ = arrived.send(Instant::now());
        }));
    }
    let after = broker.footprint();
    let mut sender = TcpStream::connect(("127.0.0.1", port)).unwrap();
    broker.wait_stderr_count("Connection from 127.0.0.1:", count + 1);
    let start = Instant::now();
    sender.write_all(b"to everyone\n").unwrap();
    Crowd::tally(before, after, start, &arrived, peers)
}

/// Scenario 6: two nodes each sending the whole input to the other at
/// once. Returns seconds until both have printed everything.
pub fn flood_peercat(inputs: &Inputs) -> Run {
    let path = &inputs.lines_path;
    let mut a = Proc::peercat(
        "a",
        &["-q", "-l", "127.0.0.1:0", "--wait-peers", "1"],
        Input::File(path),
    );
    let addr = format!("127.0.0.1:{}", a.listening_port());
    let out_a = sink(a.take_stdout(), inputs.lines.clone());
    let (start, busy) = (Instant::now(), busy_cpu_secs());
    let mut b = Proc::peercat(
        "b",
        &["-q", "--no-listen", "--wait-peers", "1", &addr],
        Input::File(path),
    );
    let out_b = sink(b.take_stdout(), inputs.lines.clone());
    let done_a = finish(&out_a, "peercat flood, a");
    let done_b = finish(&out_b, "peercat flood, b");
    Run::new(start, busy, done_a.max(done_b))
}

pub fn flood_ncat(inputs: &Inputs) -> Run {
    let path = &inputs.lines_path;
    let port = free_port().to_string();
    let mut a = Proc::ncat("a", &["-v", "-l", "127.0.0.1", &port], Input::File(path));
    a.wait_stderr("Listening on");
    let out_a = sink(a.take_stdout(), inputs.lines.clone());
    let (start, busy) = (Instant::now(), busy_cpu_secs());
    let mut b = Proc::ncat("b", &["127.0.0.1", &port], Input::File(path));
    let out_b = sink(b.take_stdout(), inputs.lines.clone());
    let done_a = finish(&out_a, "ncat both ways, a");
    let done_b = finish(&out_b, "ncat both ways, b");
    Run::new(start, busy, done_a.max(done_b))
}
