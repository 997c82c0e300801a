//! The fuzz targets' bodies: each takes arbitrary bytes and drives the code
//! a stranger's bytes reach, checking what must hold whatever they are.
//!
//! The libFuzzer targets (`fuzz/fuzz_targets/`) call these under nightly;
//! `tests/it/fuzz_corpus.rs` includes this file and replays the corpus
//! (`fuzz/corpus/<target>/`) through the same functions on stable, so
//! `cargo test` keeps every input the fuzzer found interesting. A failed
//! check panics: libFuzzer reports it as a crash and keeps the input.
//!
//! This file uses only `peercat`'s public API, std and its sibling
//! `input.rs`, so that it compiles both inside the fuzz crate and inside
//! the integration tests.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::{Duration, Instant};

use peercat::frame::{self, Ack, Frame, Miss, Status, MAX_HELLO_LEN};
use peercat::handshake::{self, HandshakeError};
use peercat::mesh::{
    Action, Bytes, Conn, DialResult, DialTarget, Mesh, MeshConfig, MsgRef, NodeId, MAX_MEMBERS,
};
use peercat::wire::{ReadBuf, BUSY_CAPACITY};

use super::input::{Chunks, Input};

/// A fuzz target's body: any bytes in, a panic if a check fails.
pub type Target = fn(&[u8]);

/// The fuzz targets by name, as `cargo fuzz run NAME` and the corpus
/// directories know them.
pub const TARGETS: [(&str, Target); 4] = [
    ("frames", frames),
    ("hello", hello),
    ("reassembly", reassembly),
    ("mesh", mesh),
];

// ---------------------------------------------------------------- frames

/// The frame decoder on a stream of bytes, under a limit the input picks.
/// Every frame it accepts must encode back to exactly its bytes (the
/// encoding is canonical, so a relay forwards what it got), must not be
/// accepted from fewer bytes, and its length must be within the limit.
pub fn frames(data: &[u8]) {
    let mut input = Input(data);
    let limit = input.pick(&[
        usize::MAX,
        MAX_HELLO_LEN,
        frame::frame_limit(1),
        frame::frame_limit(1 << 20),
        64,
    ]);
    let mut rest = input.0;
    loop {
        match frame::decode(rest, limit) {
            Ok(Some((f, used))) => {
                assert!(used > frame::LEN_PREFIX && used <= rest.len());
                assert!(used - frame::LEN_PREFIX <= limit);
                assert_eq!(frame::peek_len(rest, limit), Ok(Some(used - 4)));
                assert_eq!(
                    f.to_bytes(),
                    &rest[..used],
                    "{} does not encode back to its bytes",
                    handshake::frame_name(&f)
                );
                assert_eq!(frame::decode(&rest[..used - 1], limit), Ok(None));
                rest = &rest[used..];
            }
            Ok(None) => return,
            Err(e) => {
                assert!(!e.to_string().is_empty());
                return;
            }
        }
    }
}

// ---------------------------------------------------------------- hello

/// Our node id in the handshake and mesh targets.
const ME: NodeId = 0x00ae;

/// The handshake as `handshake::exchange` runs it on a socket: bytes
/// arrive in chunks into a read buffer, and after each read the buffer is
/// asked for a HELLO. A stranger gets at most one HELLO's worth of buffer,
/// and every refusal has a message.
pub fn hello(data: &[u8]) {
    let mut input = Input(data);
    let sizes = input.some(8);
    let mut src = Chunks::new(input.0, sizes);
    let mut rb = ReadBuf::default();
    let outcome = loop {
        match handshake::parse_hello(rb.pending(), ME) {
            Ok(Some((theirs, used))) => {
                assert!(used <= rb.pending().len() && used <= 4 + MAX_HELLO_LEN);
                assert!(frame::name_problem(&theirs.name).is_none());
                assert!(frame::MAX_FRAME.contains(&theirs.max_frame));
                assert!(frame::KEEPALIVE_SECS.contains(&theirs.keepalive_secs));
                rb.consume(used);
                break Ok(theirs);
            }
            Ok(None) => {}
            Err(e) => break Err(e),
        }
        match rb.read_from(&mut src, MAX_HELLO_LEN) {
            Ok(0) => {
                break Err(HandshakeError::Closed {
                    got: rb.pending().len(),
                })
            }
            Ok(_) => {}
            Err(e) => break Err(HandshakeError::Protocol(e.to_string())),
        }
        assert!(
            rb.capacity() <= 4 * 1024,
            "a stranger made the handshake buffer {} bytes",
            rb.capacity()
        );
    };
    match outcome {
        Ok(theirs) => assert_ne!(theirs.node_id, ME),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

// ---------------------------------------------------------------- reassembly

/// A peer's stream after the handshake, as its reader takes it: read in
/// chunks the input picks into a [`ReadBuf`], frames decoded and consumed,
/// decoded buffers taken out (sometimes swapped for a spare), under the
/// frame limit of a `--max-frame` the input picks. The frames and the end
/// (an error, a clean EOF, or EOF inside a frame) must be the same as
/// decoding the whole stream at once, and the buffer must never be larger
/// than twice what has arrived (or the busy size): memory follows bytes
/// that came, never a length prefix alone.
pub fn reassembly(data: &[u8]) {
    let mut input = Input(data);
    let max_frame = input.pick(&[1, 16, 100, 1000, 4096, 1 << 16, 1 << 20, 1 << 30]);
    let limit = frame::frame_limit(max_frame);
    let spares = input.u8();
    let sizes = input.some(8);
    let stream = input.0;
    let expected = decode_whole(stream, limit);

    let mut src = Chunks::new(stream, sizes);
    let mut rb = ReadBuf::default();
    let mut got = Vec::new();
    let mut arrived = 0;
    let mut spare: Option<Vec<u8>> = None;
    let mut takes = 0u32;
    let end = loop {
        let mut any = false;
        let broken = loop {
            match frame::decode(rb.pending(), limit) {
                Ok(Some((f, used))) => {
                    got.push((handshake::frame_name(&f), used));
                    rb.consume(used);
                    any = true;
                }
                Ok(None) => break false,
                Err(_) => break true,
            }
        };
        if any {
            // The spare pool hands back buffers the router is done with.
            let offer = if spares & (1 << (takes % 8)) != 0 {
                spare.take()
            } else {
                None
            };
            let taken = rb.take_decoded(offer, limit);
            takes += 1;
            spare = Some(taken);
        }
        if broken {
            break End::Error;
        }
        match rb.read_from(&mut src, limit) {
            Ok(0) if rb.pending().is_empty() => break End::Eof,
            Ok(0) => break End::Truncated(rb.pending().len()),
            Ok(n) => arrived += n,
            Err(e) => {
                assert_eq!(e.kind(), io::ErrorKind::InvalidData);
                break End::Error;
            }
        }
        assert!(
            rb.capacity() <= (2 * arrived).max(BUSY_CAPACITY),
            "{} bytes of read buffer for {arrived} bytes arrived",
            rb.capacity()
        );
    };
    assert_eq!((got, end), expected);
}

#[derive(Debug, PartialEq, Eq)]
enum End {
    Error,
    Eof,
    /// EOF with this many bytes of an unfinished frame.
    Truncated(usize),
}

type Decoded = (Vec<(&'static str, usize)>, End);

/// The frames of `stream` and how it ends, decoded in one go.
fn decode_whole(mut stream: &[u8], limit: usize) -> Decoded {
    let mut frames = Vec::new();
    loop {
        match frame::decode(stream, limit) {
            Ok(Some((f, used))) => {
                frames.push((handshake::frame_name(&f), used));
                stream = &stream[used..];
            }
            Ok(None) if stream.is_empty() => return (frames, End::Eof),
            Ok(None) => return (frames, End::Truncated(stream.len())),
            Err(_) => return (frames, End::Error),
        }
    }
}

// ---------------------------------------------------------------- mesh

/// Node ids the fake neighbours speak of: a few members, and us.
const IDS: [NodeId; 6] = [0x0b, 0x0c, 0x0d, 0x0e, 0x0f, ME];
/// The lives frames claim: ours and a member's usual one (1), others (a
/// member restarted, or a relay passing an earlier life's lines on late),
/// and 0, which the decoder refuses.
const LIVES: [u64; 5] = [1, 1, 2, 3, 0];
/// The keepalives STATUS frames give, in seconds: the harness node's own
/// (1), longer ones (members then stay live longer), the longest allowed.
const KEEPALIVES: [u16; 4] = [1, 1, 5, 3600];
/// The fake neighbours' connections.
const CONNS: [Conn; 3] = [1, 2, 3];

/// The mesh state machine, fed by fake neighbours whatever frames the
/// input describes (each encoded, then decoded as a peer's reader and the
/// router do, so malformed ones end that neighbour's connection), with time
/// passing, our own lines, neighbours coming and going and dials ending.
/// It must not panic, must send only well-formed frames to neighbours that
/// are up, print each origin's lines in order without a silent hole, and
/// keep its tables within their caps.
pub fn mesh(data: &[u8]) {
    let mut input = Input(data);
    let window = input.pick(&[600, 4096, 1 << 16]);
    let t0 = Instant::now();
    let cfg = MeshConfig {
        life: 1,
        id: ME,
        name: "me".into(),
        listen_port: 7000,
        advertise: None,
        ttl: 16,
        relay: input.u8() % 4 != 0,
        degree: 2,
        max_peers: 8,
        window,
        max_frame: 1 << 16,
        keepalive: Duration::from_secs(1),
        stall_timeout: Duration::from_secs(5),
        seeds: 1,
        rng_seed: 7,
    };
    let mut fake = Fake {
        mesh: Mesh::new(cfg, t0),
        now: t0,
        up: BTreeMap::new(),
        printed: BTreeMap::new(),
        origins: BTreeSet::new(),
        dials: Vec::new(),
        own_seq: 0,
        held: false,
        window,
    };
    fake.up(1, 0x0b);
    while !input.is_empty() {
        fake.step(&mut input);
        fake.check();
    }
    // Let every timer run out: holes end in gaps, silent members go down.
    for _ in 0..40 {
        fake.now += Duration::from_millis(500);
        fake.mesh.tick(fake.now);
        fake.check();
    }
}

struct Fake {
    mesh: Mesh,
    now: Instant,
    /// Neighbours up, by connection: their node id.
    up: BTreeMap<Conn, NodeId>,
    /// Per origin, the seqs printed or reported lost.
    printed: BTreeMap<NodeId, RangeInclusive<u64>>,
    /// Every origin a MSG came from: each may cost the mesh a window.
    origins: BTreeSet<NodeId>,
    dials: Vec<DialTarget>,
    own_seq: u64,
    held: bool,
    window: usize,
}

impl Fake {
    fn step(&mut self, input: &mut Input<'_>) {
        let conn = input.pick(&CONNS);
        match input.u8() % 12 {
            0 => {
                let len = input.u8() as usize;
                let bytes = input.bytes(len).to_vec();
                self.feed(conn, bytes);
            }
            1 => self.feed(conn, msgs(input)),
            2 => self.feed(conn, Frame::Status(status(input)).to_bytes()),
            3 => {
                let reason = input.some(8);
                let down = Frame::Down {
                    member: input.pick(&IDS),
                    status_seq: input.u8().into(),
                    hops: input.u8(),
                    ttl: input.u8(),
                    reason,
                };
                self.feed(conn, down.to_bytes());
            }
            4 => {
                let repair = Frame::Repair {
                    origin: input.pick(&IDS),
                    from_seq: input.u16().into(),
                    to_seq: input.u16().into(),
                };
                self.feed(conn, repair.to_bytes());
            }
            5 => {
                let n = input.u8() % 4;
                let entries = (0..n).map(|_| (input.pick(&IDS), addr(input))).collect();
                self.feed(conn, Frame::Peers(entries).to_bytes());
            }
            6 => {
                self.now += Duration::from_millis(input.u16().into());
                self.mesh.tick(self.now);
            }
            7 => self.local(input),
            8 if self.up.contains_key(&conn) => self.down(conn, input.u8() & 1 == 0),
            8 => self.up(conn, input.pick(&IDS)),
            9 => {
                self.held = !self.held;
                self.mesh.inbound_held(self.now, self.held);
            }
            10 => {
                if let Some(target) = self.dials.pop() {
                    let result = match input.u8() % 4 {
                        0 => DialResult::Connected,
                        1 => DialResult::Failed,
                        2 => DialResult::Myself,
                        _ => DialResult::Refused {
                            alternatives: vec![(input.pick(&IDS), addr(input))],
                        },
                    };
                    self.mesh.dial_result(self.now, &target, result);
                }
            }
            _ => {
                let learned = vec![(Some(input.pick(&IDS)), addr(input))];
                self.mesh.learned(self.now, &learned);
            }
        }
    }

    fn up(&mut self, conn: Conn, node: NodeId) {
        if node == ME || self.up.values().any(|&n| n == node) {
            return; // the router refuses these before the mesh hears of them
        }
        let remote = SocketAddr::from(([10, 0, 0, conn as u8], 40000));
        self.mesh
            .neighbour_up(self.now, conn, node, "n", remote, 7000, None);
        self.up.insert(conn, node);
    }

    fn down(&mut self, conn: Conn, cut: bool) {
        // What the mesh asked for while the connection was up comes first,
        // as in the router, which drains the actions after every call.
        self.drain();
        if self.up.remove(&conn).is_none() {
            return;
        }
        let cut = cut.then_some("stalled");
        self.mesh.neighbour_down(self.now, conn, cut);
    }

    /// Frames from `conn`, as its reader and the router hand them over:
    /// runs of MSG frames as one batch sharing the buffer, the mesh's
    /// control frames one by one; the first bad frame ends the connection.
    fn feed(&mut self, conn: Conn, bytes: Vec<u8>) {
        if !self.up.contains_key(&conn) {
            return;
        }
        let limit = frame::frame_limit(1 << 16);
        let buf: Bytes = Arc::new(bytes);
        let mut at = 0;
        let mut run = Vec::new();
        loop {
            match frame::decode(&buf[at..], limit) {
                Ok(Some((f, used))) => {
                    if let Some(header) = f.msg_header() {
                        // One reference per entry, as the reader makes.
                        self.origins.insert(header.origin);
                        run.extend(MsgRef::each_in(
                            &buf[at + frame::MSG_HEADER_LEN..at + used],
                            at + frame::MSG_HEADER_LEN,
                            header,
                        ));
                    } else {
                        self.flush(conn, &buf, &mut run);
                        self.mesh.on_frame(self.now, conn, &f);
                    }
                    at += used;
                }
                Ok(None) => break self.flush(conn, &buf, &mut run),
                Err(_) => {
                    self.flush(conn, &buf, &mut run);
                    break self.down(conn, false);
                }
            }
        }
    }

    fn flush(&mut self, conn: Conn, buf: &Bytes, run: &mut Vec<MsgRef>) {
        if !run.is_empty() {
            self.mesh.on_msgs(self.now, conn, buf, run);
            run.clear();
        }
    }

    /// Our own lines, as the stdin thread encodes them, when the router
    /// would let stdin be read: a neighbour is up and the window has room.
    fn local(&mut self, input: &mut Input<'_>) {
        let lines = 1 + input.u8() % 4;
        let size = input.u8() as usize % 64;
        // A line costs the window its entry (payload and newline) and the
        // overhead of a message.
        let cost = lines as usize * frame::entry_cost(1 + size);
        if self.mesh.neighbour_count() == 0 || self.mesh.window_room() < cost {
            return;
        }
        let first = self.own_seq + 1;
        let payload = vec![b'x'; size];
        let mut bytes = Vec::new();
        frame::put_run(
            &mut bytes,
            frame::MsgHeader::new(ME, first),
            &vec![&payload[..]; lines as usize],
        );
        self.own_seq += u64::from(lines);
        self.mesh
            .local(self.now, &Arc::new(bytes), first, self.own_seq);
    }

    /// Drains the mesh's actions, checking each, and what it holds.
    fn check(&mut self) {
        self.drain();
        assert!(self.mesh.live_members() <= MAX_MEMBERS);
        let bound = 2 * self.window * (self.origins.len() + 1);
        assert!(
            self.mesh.footprint() <= bound,
            "the mesh holds {} bytes for {} origins, window {}",
            self.mesh.footprint(),
            self.origins.len(),
            self.window
        );
    }

    /// Takes the mesh's actions and checks each.
    fn drain(&mut self) {
        while let Some(action) = self.mesh.poll_action() {
            match action {
                Action::Send { to, frames, msgs } => {
                    assert!(self.up.contains_key(&to), "sent to connection {to}, not up");
                    assert_eq!(well_formed(&frames), msgs, "MSG count of a Send");
                }
                Action::Deliver(lines) => {
                    for run in lines {
                        for (seq, _, payload) in run.msgs() {
                            assert!(!payload.contains(&b'\n'));
                            self.printed(run.origin, seq, seq, "delivery");
                        }
                    }
                }
                Action::Gap {
                    origin,
                    first,
                    last,
                    ..
                } => self.printed(origin, first, last, "gap"),
                Action::Dial(target) => self.dials.push(target),
                // The router closes it: its reader then reports it down.
                Action::Close { conn, .. } => self.down(conn, false),
                // The router cuts it: its reader then reports it down, cut.
                Action::Cut { conn } => self.down(conn, true),
                // Never answered here (a probe may take as long as it
                // likes): the member is left to the silence rule.
                Action::Probe { .. } => {}
                Action::MemberUp { .. } | Action::MemberDown { .. } => {}
                // No writer here whose stall clock it would restart.
                Action::Reading { .. } => {}
                // A new life of that member: its seqs count from 1 again.
                Action::Restarted { origin } => {
                    self.printed.remove(&origin);
                }
            }
        }
    }

    /// Lines `first..=last` of `origin` were printed or reported lost.
    /// What a node has printed of an origin is one run of seqs: each
    /// delivery or gap extends it, upward right after its end, or (a gap
    /// only: lines sent before the first one we printed turned up late)
    /// downward right before its start. So no line is printed twice, and
    /// none is skipped without a gap.
    fn printed(&mut self, origin: NodeId, first: u64, last: u64, what: &str) {
        assert_ne!(origin, ME, "our own line came back as a {what}");
        assert!(first <= last, "{what} {first}..={last} is backwards");
        let run = match self.printed.get(&origin) {
            None => first..=last,
            Some(run) if run.end().checked_add(1) == Some(first) => *run.start()..=last,
            Some(run) if what == "gap" && last + 1 == *run.start() => first..=*run.end(),
            Some(run) => panic!("origin {origin:x}: {what} {first}..={last} after {run:?}"),
        };
        self.printed.insert(origin, run);
    }
}

/// Decodes every frame of a buffer the mesh sends, which must all be
/// whole and valid; returns how many are MSG frames.
fn well_formed(mut bytes: &[u8]) -> u64 {
    let mut msgs = 0;
    while !bytes.is_empty() {
        let (f, used) = frame::decode(bytes, usize::MAX)
            .expect("the mesh sends valid frames")
            .expect("the mesh sends whole frames");
        msgs += match f {
            Frame::Msg { .. } => 1,
            Frame::Run { count, .. } => count,
            _ => 0,
        };
        bytes = &bytes[used..];
    }
    msgs
}

/// MSG frames of a few origins, each of one to four messages, with seqs,
/// hops, ttls and payloads the input picks.
fn msgs(input: &mut Input<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..1 + input.u8() % 8 {
        let origin = input.pick(&IDS);
        let seq = input.u16().into();
        let (hops, ttl) = (input.u8(), input.u8());
        let payloads: Vec<&[u8]> = (0..1 + input.u8() % 4).map(|_| input.some(32)).collect();
        let life = input.pick(&LIVES);
        frame::put_run(
            &mut out,
            frame::MsgHeader {
                origin,
                seq,
                hops,
                ttl,
                life,
            },
            &payloads,
        );
    }
    out
}

/// A STATUS whose fields, acknowledgements and missed ranges the input
/// picks, valid or not (the decoder is the judge).
fn status(input: &mut Input<'_>) -> Status {
    let addrs = (0..input.u8() % 3).map(|_| addr(input)).collect();
    let acks = (0..input.u8() % 6)
        .map(|_| {
            let origin = input.pick(&IDS);
            let base = u64::from(input.u16());
            let delivered = (base + u64::from(input.u8())).saturating_sub(1);
            Ack {
                life: input.pick(&LIVES),
                origin,
                base,
                delivered,
                skipped: input.u8().into(),
            }
        })
        .collect();
    let misses = (0..input.u8() % 3)
        .map(|_| Miss {
            member: input.pick(&IDS),
            first: input.u16().into(),
            last: input.u16().into(),
        })
        .collect();
    Status {
        life: input.pick(&LIVES),
        keepalive_secs: input.pick(&KEEPALIVES),
        member: input.pick(&IDS),
        status_seq: input.u8().into(),
        hops: input.u8(),
        ttl: input.u8(),
        sent_seq: input.u16().into(),
        flags: input.u8(),
        name: "m".into(),
        addrs,
        acks,
        misses,
    }
}

fn addr(input: &mut Input<'_>) -> SocketAddr {
    let ip = match input.u8() % 4 {
        0 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        1 => IpAddr::V6(Ipv6Addr::LOCALHOST),
        _ => IpAddr::V4(Ipv4Addr::new(10, 0, 0, input.u8())),
    };
    SocketAddr::new(ip, input.u16())
}
