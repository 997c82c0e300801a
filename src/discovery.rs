//! `--discover`: finding members on the local network by UDP multicast.
//!
//! A node sends a small [`Beacon`] to the group (default
//! `239.255.71.17:7117`) when it starts and then every [`INTERVAL`] (±25 %),
//! and answers every other node's announcement by unicast, so a newcomer
//! learns everyone within one round trip and everyone learns the newcomer
//! from its announcement. Each node seen is reported as a [`Found`]: its id
//! and the address to dial, the sender's IP with the listen port its beacon
//! names. Our own beacons (they loop back) and beacons of nodes that do not
//! listen are not reported; the same node is reported again only after
//! [`REPORT_AGAIN`], so a busy group does not flood the caller.
//!
//! Two sockets: one bound to the group's port (shared with other nodes on
//! the host: `SO_REUSEADDR`) that only hears announcements, and one on an
//! ephemeral port that sends our beacons and hears the answers to them;
//! answers go to the announcer's ephemeral port, which is its alone.
//! Multicast TTL is 1: beacons stay on the local segment. A datagram that is
//! not a beacon of ours is ignored with a rate-limited warning
//! ([`ratelog`]); answers are capped at [`MAX_ANSWERS_PER_SEC`], so spoofed
//! announcements cannot turn a node into a flood source.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use socket2::{Domain, Protocol, Socket, Type};

use crate::frame::NodeId;
use crate::node::{random_u64, Node};
use crate::ratelog;
use crate::shutdown::Shutdown;
use crate::threads::Threads;
use crate::wire::describe;

/// The first bytes of every beacon.
pub const MAGIC: [u8; 4] = *b"PCDS";
/// The beacon format this build speaks.
pub const VERSION: u8 = 1;
/// A beacon's size: magic, version, kind, node id, listen port.
pub const BEACON_LEN: usize = 4 + 1 + 1 + 8 + 2;
/// How often a node announces itself (spread by ±25 %).
pub const INTERVAL: Duration = Duration::from_secs(5);
/// How soon the same node (id and address) is reported again.
pub const REPORT_AGAIN: Duration = Duration::from_secs(30);
/// Answers sent per second, at most; more announcements go unanswered
/// (their senders announce again).
pub const MAX_ANSWERS_PER_SEC: usize = 64;
/// Nodes remembered for [`REPORT_AGAIN`]; beyond it the memory starts over.
const MAX_REMEMBERED: usize = 4096;
/// How long a socket read waits before the thread looks at the stop signal.
const POLL: Duration = Duration::from_millis(200);

/// What a beacon says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// "Here I am; answer me": to the group.
    Announce = 1,
    /// "Here I am", to one announcer; not answered.
    Answer = 2,
}

/// One datagram of the discovery protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Beacon {
    pub kind: Kind,
    pub node_id: NodeId,
    /// The TCP port the node accepts peers on; 0: it does not listen.
    pub listen_port: u16,
}

/// Why a datagram is not a beacon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BeaconError {
    Length(usize),
    Magic,
    Version(u8),
    Kind(u8),
}

impl fmt::Display for BeaconError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BeaconError::Length(n) => {
                write!(f, "{n} bytes, a beacon has {BEACON_LEN}")
            }
            BeaconError::Magic => f.write_str("no peercat beacon magic"),
            BeaconError::Version(v) => {
                write!(f, "beacon version {v} (this build speaks {VERSION})")
            }
            BeaconError::Kind(k) => write!(f, "unknown beacon kind {k}"),
        }
    }
}

impl Beacon {
    pub fn encode(&self) -> [u8; BEACON_LEN] {
        let mut out = [0u8; BEACON_LEN];
        out[0..4].copy_from_slice(&MAGIC);
        out[4] = VERSION;
        out[5] = self.kind as u8;
        out[6..14].copy_from_slice(&self.node_id.to_be_bytes());
        out[14..16].copy_from_slice(&self.listen_port.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Beacon, BeaconError> {
        // The magic first: a stranger's datagram of another length is
        // told apart from a peercat beacon of another version.
        if bytes.len() < 5 || bytes[0..4] != MAGIC {
            return Err(match bytes.len() {
                n if n < 5 => BeaconError::Length(n),
                _ => BeaconError::Magic,
            });
        }
        if bytes[4] != VERSION {
            return Err(BeaconError::Version(bytes[4]));
        }
        if bytes.len() != BEACON_LEN {
            return Err(BeaconError::Length(bytes.len()));
        }
        let kind = match bytes[5] {
            1 => Kind::Announce,
            2 => Kind::Answer,
            k => return Err(BeaconError::Kind(k)),
        };
        let mut id = [0u8; 8];
        id.copy_from_slice(&bytes[6..14]);
        Ok(Beacon {
            kind,
            node_id: NodeId::from_be_bytes(id),
            listen_port: u16::from_be_bytes([bytes[14], bytes[15]]),
        })
    }
}

/// A node seen on the network: its id and the address to dial it at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub id: NodeId,
    pub addr: SocketAddr,
}

/// What to do about one datagram.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Response {
    /// Report this node.
    pub found: Option<Found>,
    /// Send this answer to the datagram's sender.
    pub answer: Option<[u8; BEACON_LEN]>,
    /// Not a beacon: log this (rate-limited).
    pub garbage: Option<BeaconError>,
}

/// The protocol's decisions, apart from sockets and clock: what to report,
/// whom to answer.
pub struct Responder {
    id: NodeId,
    listen_port: u16,
    /// When each (node, address) was last reported.
    reported: HashMap<(NodeId, SocketAddr), Instant>,
    /// When the answers of the last second were sent.
    answers: VecDeque<Instant>,
}

impl Responder {
    pub fn new(id: NodeId, listen_port: u16) -> Self {
        Responder {
            id,
            listen_port,
            reported: HashMap::new(),
            answers: VecDeque::new(),
        }
    }

    /// Our beacon of `kind`.
    pub fn beacon(&self, kind: Kind) -> [u8; BEACON_LEN] {
        Beacon {
            kind,
            node_id: self.id,
            listen_port: self.listen_port,
        }
        .encode()
    }

    pub fn on_datagram(&mut self, from: SocketAddr, bytes: &[u8], now: Instant) -> Response {
        let beacon = match Beacon::decode(bytes) {
            Ok(beacon) => beacon,
            Err(e) => {
                return Response {
                    garbage: Some(e),
                    ..Response::default()
                }
            }
        };
        if beacon.node_id == self.id {
            return Response::default(); // our own, looped back
        }
        let answer = (beacon.kind == Kind::Announce && self.may_answer(now))
            .then(|| self.beacon(Kind::Answer));
        // A sender without a source address (a route that gave it none)
        // cannot be dialed: answered, not reported.
        let dialable = beacon.listen_port != 0 && !from.ip().is_unspecified();
        let found = dialable
            .then(|| Found {
                id: beacon.node_id,
                addr: SocketAddr::new(from.ip(), beacon.listen_port),
            })
            .filter(|found| self.news(*found, now));
        Response {
            found,
            answer,
            garbage: None,
        }
    }

    fn may_answer(&mut self, now: Instant) -> bool {
        while let Some(&at) = self.answers.front() {
            if now.duration_since(at) < Duration::from_secs(1) {
                break;
            }
            self.answers.pop_front();
        }
        if self.answers.len() >= MAX_ANSWERS_PER_SEC {
            return false;
        }
        self.answers.push_back(now);
        true
    }

    fn news(&mut self, found: Found, now: Instant) -> bool {
        let key = (found.id, found.addr);
        if let Some(&at) = self.reported.get(&key) {
            if now.duration_since(at) < REPORT_AGAIN {
                return false;
            }
        }
        if self.reported.len() >= MAX_REMEMBERED {
            self.reported.clear();
        }
        self.reported.insert(key, now);
        true
    }
}

/// What discovery needs: the group, who we are, where to start threads,
/// the stop signal, and where found nodes go.
pub struct Parts {
    pub group: SocketAddr,
    pub id: NodeId,
    pub listen_port: u16,
    pub threads: Arc<Threads>,
    pub shutdown: Arc<Shutdown>,
    /// Found nodes; a full channel drops the report (the node is seen again).
    pub found: Sender<Found>,
}

/// Starts discovery for a node with `--discover`; does nothing without it.
pub fn spawn(node: &Arc<Node>, found: Sender<Found>) -> io::Result<()> {
    let Some(group) = node.config.discover else {
        return Ok(());
    };
    spawn_with(Parts {
        group,
        id: node.id,
        listen_port: node.listen_port,
        threads: node.threads.clone(),
        shutdown: node.shutdown.clone(),
        found,
    })
}

/// Opens the sockets (an error here is the caller's to report: a group
/// that cannot be joined) and starts the threads `discover-group`, which
/// hears announcements, and `discover`, which announces and hears answers.
pub fn spawn_with(parts: Parts) -> io::Result<()> {
    let group_socket = group_socket(parts.group)?;
    let unicast = Arc::new(unicast_socket(parts.group)?);
    log::info!("discovering members on {} (--discover)", parts.group);
    let parts = Arc::new(parts);
    let (p, u) = (parts.clone(), unicast.clone());
    parts.threads.spawn("discover-group".to_owned(), move || {
        hear(&p, &group_socket, &u)
    })?;
    let p = parts.clone();
    parts
        .threads
        .spawn("discover".to_owned(), move || announce(&p, &unicast))
}

/// The socket on the group's port, joined to the group on the interface
/// the routing table picks.
fn group_socket(group: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(group), Type::DGRAM, Some(Protocol::UDP))?;
    // Other nodes on this host listen on the same port.
    socket.set_reuse_address(true)?;
    let any: IpAddr = match group.ip() {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => {
            socket.set_only_v6(true)?;
            Ipv6Addr::UNSPECIFIED.into()
        }
    };
    socket.bind(&SocketAddr::new(any, group.port()).into())?;
    match group.ip() {
        IpAddr::V4(ip) => socket.join_multicast_v4(&ip, &Ipv4Addr::UNSPECIFIED)?,
        IpAddr::V6(ip) => socket.join_multicast_v6(&ip, 0)?,
    }
    let socket: UdpSocket = socket.into();
    socket.set_read_timeout(Some(POLL))?;
    Ok(socket)
}

/// The socket our beacons leave from and answers arrive at.
fn unicast_socket(group: SocketAddr) -> io::Result<UdpSocket> {
    let socket = match group.ip() {
        IpAddr::V4(_) => {
            let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
            s.set_multicast_ttl_v4(1)?;
            s.set_multicast_loop_v4(true)?; // nodes on this host hear us
            s
        }
        IpAddr::V6(_) => {
            let s = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0))?;
            s.set_multicast_loop_v6(true)?;
            s
        }
    };
    socket.set_read_timeout(Some(POLL))?;
    Ok(socket)
}

/// Hears announcements on the group and answers them.
fn hear(parts: &Parts, group: &UdpSocket, unicast: &UdpSocket) {
    let mut responder = Responder::new(parts.id, parts.listen_port);
    serve(parts, group, &mut responder, |answer, to| {
        if let Err(e) = unicast.send_to(answer, to) {
            log::debug!("discovery: cannot answer {to}: {}", describe(&e));
        }
    });
}

/// Announces us now and every [`INTERVAL`], and hears the answers.
fn announce(parts: &Parts, unicast: &UdpSocket) {
    let mut responder = Responder::new(parts.id, parts.listen_port);
    let beacon = responder.beacon(Kind::Announce);
    let mut jitter = random_u64() | 1;
    let mut next = Instant::now();
    while !parts.shutdown.is_triggered() {
        if Instant::now() >= next {
            if let Err(e) = unicast.send_to(&beacon, parts.group) {
                ratelog::warn("discovery beacons not sent", parts.group.ip(), || {
                    format!(
                        "discovery: cannot send to {}: {}",
                        parts.group,
                        describe(&e)
                    )
                });
            }
            next = Instant::now() + spread(INTERVAL, &mut jitter);
        }
        // Answers are not answered; one read per poll keeps `next` on time.
        serve_once(parts, unicast, &mut responder, |_, _| {});
    }
}

/// Reads datagrams until the node stops.
fn serve(
    parts: &Parts,
    socket: &UdpSocket,
    responder: &mut Responder,
    mut answer: impl FnMut(&[u8], SocketAddr),
) {
    while !parts.shutdown.is_triggered() {
        serve_once(parts, socket, responder, &mut answer);
    }
}

/// Reads one datagram (or waits [`POLL`]) and acts on it.
fn serve_once(
    parts: &Parts,
    socket: &UdpSocket,
    responder: &mut Responder,
    mut answer: impl FnMut(&[u8], SocketAddr),
) {
    // One byte more than a beacon: a longer datagram shows as too long.
    let mut buf = [0u8; BEACON_LEN + 1];
    let (len, from) = match socket.recv_from(&mut buf) {
        Ok(got) => got,
        Err(e) if is_timeout(&e) => return,
        Err(e) => {
            log::debug!("discovery: receive failed: {}", describe(&e));
            return;
        }
    };
    let response = responder.on_datagram(from, &buf[..len], Instant::now());
    if let Some(e) = response.garbage {
        ratelog::warn("bad discovery beacons", from.ip(), || {
            format!("discovery: ignored a datagram from {from}: {e}")
        });
    }
    if let Some(bytes) = response.answer {
        answer(&bytes, from);
    }
    if let Some(found) = response.found {
        log::debug!("discovery: found {:016x} at {}", found.id, found.addr);
        let _ = parts.found.try_send(found);
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// `base` spread by ±25 %, so that nodes started together do not announce
/// in step.
fn spread(base: Duration, rng: &mut u64) -> Duration {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    base.mul_f64(0.75 + 0.5 * (*rng % 1000) as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    const ANNOUNCE: Beacon = Beacon {
        kind: Kind::Announce,
        node_id: 0x0123_4567_89ab_cdef,
        listen_port: 7117,
    };

    #[test]
    fn the_beacon_is_protocol_md_s_vector() {
        let bytes = ANNOUNCE.encode();
        assert_eq!(hex(&bytes), "5043445301010123456789abcdef1bcd");
        let doc = include_str!("../PROTOCOL.md");
        assert!(
            doc.contains("50434453 01 01 0123456789abcdef 1bcd"),
            "PROTOCOL.md lacks the beacon vector"
        );
        assert_eq!(Beacon::decode(&bytes), Ok(ANNOUNCE));
        let answer = Beacon {
            kind: Kind::Answer,
            ..ANNOUNCE
        };
        assert_eq!(Beacon::decode(&answer.encode()), Ok(answer));
    }

    #[test]
    fn what_is_not_a_beacon_says_why() {
        let good = ANNOUNCE.encode();
        assert_eq!(Beacon::decode(b""), Err(BeaconError::Length(0)));
        assert_eq!(
            Beacon::decode(b"GET / HTTP/1.1\r\n"),
            Err(BeaconError::Magic)
        );
        let mut v2 = good;
        v2[4] = 2;
        assert_eq!(Beacon::decode(&v2), Err(BeaconError::Version(2)));
        assert_eq!(
            Beacon::decode(&good[..BEACON_LEN - 1]),
            Err(BeaconError::Length(15))
        );
        let long = [&good[..], b"x"].concat();
        assert_eq!(Beacon::decode(&long), Err(BeaconError::Length(17)));
        let mut kind = good;
        kind[5] = 9;
        assert_eq!(Beacon::decode(&kind), Err(BeaconError::Kind(9)));
        assert_eq!(
            BeaconError::Version(2).to_string(),
            "beacon version 2 (this build speaks 1)"
        );
        // Every prefix and every single-byte change: an answer, never a panic.
        for n in 0..=BEACON_LEN {
            let _ = Beacon::decode(&good[..n]);
        }
        for i in 0..BEACON_LEN {
            for b in 0..=255u8 {
                let mut bytes = good;
                bytes[i] = b;
                let _ = Beacon::decode(&bytes);
            }
        }
    }

    #[test]
    fn an_announcement_is_answered_and_its_sender_reported_at_its_listen_port() {
        let mut r = Responder::new(1, 9000);
        let now = Instant::now();
        let got = r.on_datagram(from("10.0.0.7:40000"), &ANNOUNCE.encode(), now);
        assert_eq!(
            got.found,
            Some(Found {
                id: ANNOUNCE.node_id,
                addr: from("10.0.0.7:7117")
            })
        );
        let answer = Beacon::decode(&got.answer.unwrap()).unwrap();
        assert_eq!(
            answer,
            Beacon {
                kind: Kind::Answer,
                node_id: 1,
                listen_port: 9000
            }
        );
    }

    #[test]
    fn an_answer_is_reported_but_not_answered() {
        let mut r = Responder::new(1, 9000);
        let answer = Beacon {
            kind: Kind::Answer,
            ..ANNOUNCE
        };
        let got = r.on_datagram(from("10.0.0.7:40000"), &answer.encode(), Instant::now());
        assert!(got.found.is_some() && got.answer.is_none());
    }

    #[test]
    fn our_own_beacon_is_ignored() {
        let mut r = Responder::new(ANNOUNCE.node_id, 7117);
        let got = r.on_datagram(from("10.0.0.1:40000"), &ANNOUNCE.encode(), Instant::now());
        assert_eq!(got, Response::default());
    }

    #[test]
    fn a_node_that_does_not_listen_is_answered_not_reported() {
        let mut r = Responder::new(1, 9000);
        let silent = Beacon {
            listen_port: 0,
            ..ANNOUNCE
        };
        let got = r.on_datagram(from("10.0.0.7:40000"), &silent.encode(), Instant::now());
        assert!(got.found.is_none() && got.answer.is_some());
    }

    #[test]
    fn a_sender_without_a_source_address_is_answered_not_reported() {
        let mut r = Responder::new(1, 9000);
        let got = r.on_datagram(from("0.0.0.0:40000"), &ANNOUNCE.encode(), Instant::now());
        assert!(got.found.is_none() && got.answer.is_some());
    }

    #[test]
    fn a_node_is_reported_again_only_after_a_while() {
        let mut r = Responder::new(1, 9000);
        let t0 = Instant::now();
        let bytes = ANNOUNCE.encode();
        let sender = from("10.0.0.7:40000");
        assert!(r.on_datagram(sender, &bytes, t0).found.is_some());
        assert!(r.on_datagram(sender, &bytes, t0 + INTERVAL).found.is_none());
        assert!(r
            .on_datagram(sender, &bytes, t0 + REPORT_AGAIN)
            .found
            .is_some());
        // Elsewhere is news at once.
        let moved = from("10.0.0.8:40000");
        assert!(r
            .on_datagram(moved, &bytes, t0 + REPORT_AGAIN)
            .found
            .is_some());
    }

    #[test]
    fn answers_are_capped_per_second() {
        let mut r = Responder::new(1, 9000);
        let t0 = Instant::now();
        let answered = (0..1000u64)
            .filter(|i| {
                let b = Beacon {
                    node_id: 100 + i,
                    ..ANNOUNCE
                };
                r.on_datagram(from("10.0.0.7:40000"), &b.encode(), t0)
                    .answer
                    .is_some()
            })
            .count();
        assert_eq!(answered, MAX_ANSWERS_PER_SEC);
        let later = r.on_datagram(
            from("10.0.0.7:40000"),
            &ANNOUNCE.encode(),
            t0 + Duration::from_secs(1),
        );
        assert!(later.answer.is_some());
    }

    #[test]
    fn garbage_is_flagged_for_the_log_and_nothing_else() {
        let mut r = Responder::new(1, 9000);
        let got = r.on_datagram(from("10.0.0.7:1"), b"hello", Instant::now());
        assert_eq!(got.garbage, Some(BeaconError::Magic));
        assert!(got.found.is_none() && got.answer.is_none());
    }

    #[test]
    fn the_memory_of_reported_nodes_is_bounded() {
        let mut r = Responder::new(1, 9000);
        let now = Instant::now();
        for i in 0..(MAX_REMEMBERED as u64 + 10) {
            let b = Beacon {
                node_id: 100 + i,
                kind: Kind::Answer,
                ..ANNOUNCE
            };
            r.on_datagram(from("10.0.0.7:1"), &b.encode(), now);
        }
        assert!(r.reported.len() <= MAX_REMEMBERED);
    }

    #[test]
    fn announcements_are_spread() {
        let mut rng = 12345;
        for _ in 0..100 {
            let d = spread(INTERVAL, &mut rng);
            assert!(d >= INTERVAL.mul_f64(0.75) && d <= INTERVAL.mul_f64(1.25));
        }
    }
}
