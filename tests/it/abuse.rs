//! A node under a stream of hostile connections gives back everything they
//! cost: 1,000 garbage and half-finished connections from eight loopback
//! addresses, while two members keep talking through it, leave its
//! threads, descriptors and memory where they were, its log short, and the
//! members' lines all delivered, in order.

use std::collections::VecDeque;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

use crate::support::{hello, node, texts, Node, DEADLINE};

/// Connections the attack opens.
const CONNECTIONS: usize = 1000;
/// A line from each member every this many connections.
const LINE_EVERY: usize = 10;
/// Silent connections the attacker keeps open at once (the oldest is closed
/// when another comes): more than the node's limit of 8 per address would
/// let through, from 8 addresses.
const HELD: usize = 24;
/// How far above its baseline the node's resident memory may stay once
/// the attack is over: freed heap and thread stacks are not all handed
/// back to the OS at once (glibc keeps per-thread arenas and a stack
/// cache), but nothing the attack allocated may stay in use.
const RSS_SLACK_KIB: u64 = 8 * 1024;
/// Log lines the attack may cause: rate-limited warnings, one per kind and
/// address per 10 s window, and the summaries of what they held back.
const LOG_BUDGET: usize = 100;

/// What the node holds, from /proc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Usage {
    threads: usize,
    fds: usize,
    rss_kib: u64,
}

fn usage(node: &Node) -> Usage {
    let count = |what: &str| {
        std::fs::read_dir(format!("/proc/{}/{what}", node.pid))
            .unwrap_or_else(|e| panic!("cannot read /proc/{}/{what}: {e}", node.pid))
            .count()
    };
    Usage {
        threads: count("task"),
        fds: count("fd"),
        rss_kib: node.rss_kib(),
    }
}

/// A small deterministic generator: the attack is the same on every run.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// The ways a stranger opens a connection, one after the other.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Random bytes, then a close.
    Garbage,
    /// The first bytes of a HELLO, then silence.
    PartialHello,
    /// A length prefix far over any limit, then a close.
    Oversized,
    /// A few bytes, then a reset (SO_LINGER 0).
    Reset,
    /// Connect, close at once.
    ConnectClose,
    /// A whole HELLO, then silence: never the ACCEPT.
    HelloNoAccept,
    /// Text, as from a browser or someone typing into nc.
    Http,
}

const KINDS: [Kind; 7] = [
    Kind::Garbage,
    Kind::PartialHello,
    Kind::Oversized,
    Kind::Reset,
    Kind::ConnectClose,
    Kind::HelloNoAccept,
    Kind::Http,
];

/// Where connection `i` comes from: every other one from one of eight
/// addresses, which each open more than the node lets one address have in
/// handshake at once; the rest each from an address of its own, 250 in
/// all, as an attacker with many addresses would (the log must not grow
/// with them).
fn source(i: usize) -> Ipv4Addr {
    if i % 2 == 0 {
        Ipv4Addr::new(127, 0, 0, 2 + (i / 2 / KINDS.len() % 8) as u8)
    } else {
        Ipv4Addr::new(127, 0, 1, 1 + (i / 2 % 250) as u8)
    }
}

/// Connects to `to` from `from` (any address in 127.0.0.0/8 is loopback).
fn connect_from(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.bind(&SocketAddr::from((from, 0)).into())?;
    socket.connect_timeout(&to.into(), Duration::from_secs(5))?;
    Ok(socket)
}

/// Opens one hostile connection; returns it if it is to be held open.
/// Writes may fail (the node closes first): that is the node's right.
fn attack(kind: Kind, from: Ipv4Addr, to: SocketAddr, rng: &mut XorShift) -> Option<TcpStream> {
    let socket = match connect_from(from, to) {
        Ok(socket) => socket,
        Err(e) => panic!("{from} could not connect to the node ({kind:?}): {e}"),
    };
    let mut stream: TcpStream = socket.into();
    match kind {
        Kind::Garbage => {
            let n = 1 + rng.below(200);
            let _ = stream.write_all(&rng.bytes(n));
        }
        Kind::PartialHello => {
            let whole = hello("stranger", rng.next());
            let _ = stream.write_all(&whole[..1 + rng.below(whole.len() - 1)]);
            return Some(stream);
        }
        Kind::Oversized => {
            let len = 0x8000_0000u32 | rng.next() as u32;
            let _ = stream.write_all(&len.to_be_bytes());
            let _ = stream.write_all(&rng.bytes(16));
        }
        Kind::Reset => {
            let n = 1 + rng.below(8);
            let _ = stream.write_all(&rng.bytes(n));
            Socket::from(stream)
                .set_linger(Some(Duration::ZERO))
                .expect("SO_LINGER 0");
            return None; // dropped: a reset
        }
        Kind::ConnectClose => {}
        Kind::HelloNoAccept => {
            let _ = stream.write_all(&hello("stranger", rng.next()));
            return Some(stream);
        }
        Kind::Http => {
            let _ = stream.write_all(b"GET / HTTP/1.1\r\nHost: peercat\r\n\r\n");
        }
    }
    None
}

/// Waits until the node's threads and descriptors are back to `base` and
/// its memory near it; the last usage seen if not by the deadline.
fn settles(node: &Node, base: Usage, deadline: Duration) -> Result<Usage, Usage> {
    let until = Instant::now() + deadline;
    loop {
        let now = usage(node);
        let back = now.threads <= base.threads
            && now.fds <= base.fds
            && now.rss_kib <= base.rss_kib + RSS_SLACK_KIB;
        if back {
            return Ok(now);
        }
        if Instant::now() >= until {
            return Err(now);
        }
        // Polling /proc: there is no event to block on.
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[cfg(target_os = "linux")]
fn a_thousand_hostile_connections_leave_no_trace_and_lines_still_arrive() {
    let mut a = node("a").start();
    let mut b = node("b").dial(&a).start();
    a.wait_peer("b");
    b.wait_peer("a");
    a.send(b"a warm-up\n");
    b.send(b"b warm-up\n");
    b.wait_lines(1);
    a.wait_lines(1);
    let base = usage(&a);
    let log_before = a.log.len();
    let target: SocketAddr = a.addr().parse().unwrap();

    let started = Instant::now();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut held = VecDeque::new();
    let mut sent = 0;
    let mut peak = base;
    for i in 0..CONNECTIONS {
        let kind = KINDS[i % KINDS.len()];
        let from = source(i);
        if let Some(stream) = attack(kind, from, target, &mut rng) {
            held.push_back(stream);
            if held.len() > HELD {
                held.pop_front();
            }
        }
        if i % 50 == 0 {
            let now = usage(&a);
            peak.threads = peak.threads.max(now.threads);
            peak.fds = peak.fds.max(now.fds);
            peak.rss_kib = peak.rss_kib.max(now.rss_kib);
        }
        if i % LINE_EVERY == 0 {
            a.send(format!("a {sent}\n").as_bytes());
            b.send(format!("b {sent}\n").as_bytes());
            sent += 1;
        }
    }
    let attack_took = started.elapsed();

    // Every line each member sent reached the other, once, in order.
    let from = |name: &str| -> Vec<String> {
        std::iter::once(format!("{name} warm-up"))
            .chain((0..sent).map(|n| format!("{name} {n}")))
            .collect()
    };
    assert_eq!(texts(&b.wait_lines(sent + 1)), from("a"), "b's stdout");
    assert_eq!(texts(&a.wait_lines(sent + 1)), from("b"), "a's stdout");

    // The last silent connections stay open: the node must give them up
    // by itself (the handshake deadline, 5 s, and the ACCEPT deadline).
    let settled = settles(&a, base, DEADLINE);
    drop(held);
    let after = settled.unwrap_or_else(|now| {
        panic!(
            "20 s after the attack the node still holds {now:?}, against {base:?} before it; \
             its log:\n{}",
            a.log_text()
        )
    });
    let logged = a.log.len() - log_before;
    eprintln!(
        "{CONNECTIONS} hostile connections in {attack_took:?}; before {base:?}, at most \
         {peak:?}, after {after:?} ({:?} after the attack); {logged} log lines",
        started.elapsed() - attack_took
    );
    assert!(
        logged <= LOG_BUDGET,
        "the attack made the node log {logged} lines:\n{}",
        a.log_text()
    );
    if std::env::var_os("PEERCAT_SHOW_LOG").is_some() {
        eprintln!("{}", a.log_text());
    }
    assert!(
        a.log_text().contains("are counted, not logged"),
        "the attack was never noticed:\n{}",
        a.log_text()
    );
    assert!(
        peak.threads > base.threads + 8 && peak.fds > base.fds + 8,
        "the attack never showed in the node ({peak:?} at most, {base:?} before): \
         nothing was tested"
    );
    assert_eq!(a.count_log("peer down"), 0, "{}", a.log_text());
}
