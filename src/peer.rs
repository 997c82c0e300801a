//! One connection: a reader thread and a writer thread.
//!
//! The reader does the handshake, starts the writer, asks the router to
//! admit the peer, then decodes frames until the connection ends. Messages
//! go to the router in batches that share the buffer they were read into,
//! once the router has opened the connection's delivery gate (see
//! [`Handover`]); PINGs are answered through the outbox, PONGs confirm
//! delivery; the end is reported with its [`Ending`].
//!
//! The writer does all the sending on the socket, which it shares with the
//! reader (one descriptor per peer). It takes everything queued in the
//! outbox at once and writes it with one vectored `write`, sends a PING every
//! `--keepalive` and after written messages, gives up on a peer whose socket
//! takes no byte for `--stall-timeout` or that answers no PING sent after
//! our messages for as long (while nothing else shows it reads: a PONG, or
//! its STATUS showing its stdout took lines), and after
//! its BYE waits a bounded time for the peer to close.

use std::io::IoSlice;
use std::net::{Shutdown as SocketShutdown, SocketAddr, TcpStream};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, select, Receiver, TryRecvError};
use parking_lot::Mutex;

use crate::event::{
    ConnId, DialFailure, Direction, Ending, Event, Handover, InFrame, Inbound, PeerInfo,
};
use crate::frame::{self, Frame, NodeId};
use crate::handshake::{self, HandshakeError, HANDSHAKE_TIMEOUT};
use crate::mesh::{DialTarget, MsgRef};
use crate::node::{Node, PendingHandshake};
use crate::outbox::{AfterBye, Batch, Close, Outbox, Work, PING_EVERY_BYTES};
use crate::ratelog;
use crate::secure::link::{self, RecvHalf, SendHalf};
use crate::shutdown::Never;
use crate::wire::{classify, describe, IoFailure, ReadBuf};

/// The writer's reason for ending a connection, read by the reader when its
/// own read then fails. Mutex: written by one thread, read by the other.
type Fault = Arc<Mutex<Option<Ending>>>;

/// Starts the threads for a new TCP connection.
pub fn start(
    node: &Arc<Node>,
    stream: TcpStream,
    direction: Direction,
    dialed: Option<DialTarget>,
) {
    let conn = node.next_conn_id();
    let addr = match stream.peer_addr() {
        Ok(addr) => addr,
        Err(e) => {
            log::debug!(
                "connection {conn} closed before it started: {}",
                describe(&e)
            );
            dial_failed(&node.events, dialed, describe(&e), DialFailure::Failed);
            return;
        }
    };
    let node_ = node.clone();
    let pending = node.pending_handshake((direction == Direction::In).then_some(addr.ip()));
    let spawned = node.threads.spawn(format!("rx-{conn}"), move || {
        connection(node_, conn, stream, addr, direction, dialed, pending)
    });
    if let Err(e) = spawned {
        log::error!("cannot start a thread for {addr}: {}", describe(&e));
    }
}

fn connection(
    node: Arc<Node>,
    conn: ConnId,
    stream: TcpStream,
    addr: SocketAddr,
    direction: Direction,
    dialed: Option<DialTarget>,
    pending: PendingHandshake,
) {
    // One socket, one descriptor, shared: std reads and writes through a
    // `&TcpStream`, so the reader, the writer and the node's registry need
    // no clones.
    let stream = Arc::new(stream);
    let _registered = node.register(conn, &stream);
    let _ = stream.set_nodelay(true);
    let mut rb = ReadBuf::default();
    // Plaintext, or the Noise handshake first (which logs its refusals).
    let opened = link::open(
        node.security.as_ref(),
        &stream,
        addr,
        direction,
        HANDSHAKE_TIMEOUT,
    );
    let mut link = match opened {
        Ok(link) => link,
        Err(reason) => {
            dial_failed(&node.events, dialed, reason, DialFailure::Failed);
            return;
        }
    };
    let handshake = handshake::exchange(
        &stream,
        &mut link,
        &mut rb,
        &node.hello(),
        HANDSHAKE_TIMEOUT,
    );
    drop(pending);
    let hello = match handshake {
        Ok(hello) => hello,
        Err(e) => {
            let kind = match e {
                HandshakeError::ItsMe => DialFailure::Myself,
                HandshakeError::Private
                | HandshakeError::Refused(_)
                | HandshakeError::NotItsId { .. } => DialFailure::CannotJoin,
                _ => DialFailure::Failed,
            };
            // A dial's failure is logged by the router, with when it dials
            // again; only the other side's are logged here.
            if direction == Direction::In {
                handshake_failed(&addr, &e);
            }
            close_failed(&stream, &mut link.tx, &e);
            dial_failed(&node.events, dialed, format!("{addr}: {e}"), kind);
            return;
        }
    };
    let info = PeerInfo {
        conn,
        node_id: hello.node_id,
        name: hello.name.into(),
        addr,
        direction,
        listen_port: hello.listen_port,
        max_frame: hello.max_frame as usize,
        keepalive: Duration::from_secs(hello.keepalive_secs.into()),
    };
    log::debug!("handshake with {info} done: node {:016x}", info.node_id);
    let events = node.events.clone();
    // The router may already be gone at shutdown; nothing to tell then.
    let outbox = Outbox::new(move || {
        let _ = events.send(Event::Drained { conn });
    });
    let fault = Fault::default();
    let (reading, reader_done) = bounded::<Never>(0);
    let writer_done =
        match start_writer(&node, &stream, link.tx, &info, &outbox, &fault, reader_done) {
            Ok(done) => done,
            Err(e) => {
                log::warn!("{info}: cannot start its writer: {}", describe(&e));
                let _ = stream.shutdown(SocketShutdown::Both);
                dial_failed(&node.events, dialed, describe(&e), DialFailure::Failed);
                return;
            }
        };
    let (gate_tx, gate) = bounded::<Never>(0);
    let handover = Handover::default();
    let _ = node.events.send(Event::Admit {
        info: info.clone(),
        outbox: outbox.clone(),
        dialed,
        gate: gate_tx,
        handover: handover.clone(),
    });
    let mut reader = Reader {
        node: &node,
        info: &info,
        stream: &stream,
        rx: link.rx,
        rb,
        outbox: &outbox,
        fault: &fault,
        gate: Some(gate),
        accepted: false,
        bye: None,
        batches: 0,
    };
    let mut ending = reader.run();
    outbox.peer_done();
    // Everything this connection delivered is in the router's queue: a
    // connection that replaces this one may deliver now.
    handover.finish();
    drop(reading);
    if let Some(writers) = fault.lock().take() {
        // Our writer gave up first and shut the socket, which is what ended
        // the read: its reason is the real one, unless the peer had said
        // goodbye.
        if !ending.is_polite() {
            ending = writers;
        }
    }
    if matches!(
        ending,
        Ending::Goodbye(_) | Ending::Eof | Ending::Refused(_)
    ) {
        // The peer has closed its side. Let our writer finish its own polite
        // close (what is queued, BYE, FIN) before the socket goes. A write
        // error now (the peer is gone entirely) does not change the ending.
        outbox.close(Close::Graceful("answering your goodbye".to_owned()));
        let _ = writer_done.recv_timeout(node.config.stall_timeout);
    }
    outbox.close(Close::Abort);
    let _ = stream.shutdown(SocketShutdown::Both);
    let _ = node.events.send(Event::Down {
        conn,
        ending,
        batches: reader.batches,
    });
}

/// Tells the router that a dial the mesh asked for ended before the peer
/// was admitted or refused (connections they dialed us need no report).
pub fn dial_failed(
    events: &crossbeam_channel::Sender<Event>,
    dialed: Option<DialTarget>,
    reason: String,
    kind: DialFailure,
) {
    if let Some(target) = dialed {
        let _ = events.send(Event::DialFailed {
            target,
            reason,
            kind,
        });
    }
}

/// A peer's text (a BYE reason) safe for one log line: control and line
/// separator characters become visible escapes (`\u{1b}`); the rest,
/// quotes included, stays as sent, so JSON escapes it only once.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            c if frame::breaks_a_line(c) => c.escape_unicode().to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// Logs a failed handshake on a connection we did not dial: one a
/// stranger opened is logged here, rate-limited per address (a stranger
/// can fail handshakes as fast as it can connect). A connection we dialed
/// is logged by the router, in the one line that also says when it dials
/// again (`Router::log_dial_failure`).
fn handshake_failed(addr: &SocketAddr, e: &HandshakeError) {
    match e {
        // Anyone who has seen our HELLO can echo our id back.
        HandshakeError::ItsMe => ratelog::log(log::Level::Info, "echoed ids", addr.ip(), || {
            format!("{addr}: {e}; closing that connection")
        }),
        // Not a byte sent: a member checking that an address still answers
        // (a node restarted at a dead member's address gets those), or a
        // port scan. Nothing went wrong.
        HandshakeError::Closed { got: 0 } => ratelog::log(
            log::Level::Info,
            "connections closed before a byte",
            addr.ip(),
            || format!("{addr}: {e}"),
        ),
        _ => ratelog::warn("failed handshakes", addr.ip(), || {
            format!(
                "{addr}: {e}; closing (more failures from {} are counted, not logged, for {}s)",
                ratelog::describe_source(addr.ip()),
                ratelog::WINDOW.as_secs()
            )
        }),
    }
}

/// Closes a connection whose handshake failed, telling a peercat peer why
/// where that helps it.
fn close_failed(stream: &TcpStream, tx: &mut SendHalf, e: &HandshakeError) {
    let reason = match e {
        HandshakeError::Protocol(reason) => Some(reason.clone()),
        HandshakeError::NotItsId { .. } => Some(e.to_string()),
        _ => None,
    };
    if let Some(reason) = reason {
        // Tell a peercat peer why; a stranger will not mind the bytes.
        let bye = Frame::Bye(reason.as_bytes()).to_bytes();
        let _ = tx.write_all(stream, &mut [IoSlice::new(&bye)], Duration::ZERO);
    }
    let _ = stream.shutdown(SocketShutdown::Both);
}

fn start_writer(
    node: &Arc<Node>,
    stream: &Arc<TcpStream>,
    tx: SendHalf,
    info: &PeerInfo,
    outbox: &Outbox,
    fault: &Fault,
    reader_done: Receiver<Never>,
) -> std::io::Result<Receiver<Never>> {
    let (done_tx, done_rx) = bounded(0);
    let writer = Writer {
        stream: stream.clone(),
        tx: std::cell::RefCell::new(tx),
        outbox: outbox.clone(),
        fault: fault.clone(),
        keepalive: node.config.keepalive,
        stall: node.config.stall_timeout,
        started: node.started,
        label: info.to_string(),
        reader_done,
    };
    node.threads.spawn(format!("tx-{}", info.conn), move || {
        let _done = done_tx;
        writer.run()
    })?;
    Ok(done_rx)
}

struct Reader<'a> {
    node: &'a Node,
    info: &'a PeerInfo,
    stream: &'a TcpStream,
    /// Reads the socket: plaintext, or opening encrypted records.
    rx: RecvHalf,
    rb: ReadBuf,
    outbox: &'a Outbox,
    /// Set once our writer has given up on the connection: then nothing
    /// more is read from it.
    fault: &'a Fault,
    /// Closed (disconnected) once this connection may deliver messages;
    /// `None` once it has opened.
    gate: Option<Receiver<Never>>,
    /// The peer has sent ACCEPT: it counts us as its peer.
    accepted: bool,
    /// The reason in the peer's BYE, once it has sent one.
    bye: Option<String>,
    /// Message batches handed to the router.
    batches: u64,
}

impl Reader<'_> {
    fn run(&mut self) -> Ending {
        // Our writer pings at least every keepalive period, and a live peer
        // answers every ping at once, so our own keepalive bounds a healthy
        // silence whatever the peer announced (a stranger announcing an hour
        // must not hold the connection for three).
        let keepalive = self.node.config.keepalive;
        let silence_limit = keepalive * 3;
        // Wake up often enough to notice silence close to the limit.
        let tick = (keepalive / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        if let Err(e) = self.stream.set_read_timeout(Some(tick)) {
            return Ending::Io(describe(&e));
        }
        let limit = frame::frame_limit(self.node.config.max_frame);
        let since = Instant::now();
        let mut last_heard = since;
        loop {
            if let Some(ending) = self.writer_gave_up() {
                return ending;
            }
            match self.decode_buffered(limit) {
                Ok(true) => last_heard = Instant::now(), // waited at the gate
                Ok(false) => {}
                Err(ending) => return ending,
            }
            if !self.accepted && self.bye.is_none() && since.elapsed() >= HANDSHAKE_TIMEOUT {
                return Ending::Protocol(format!(
                    "neither ACCEPT nor BYE within {}s of the HELLOs",
                    HANDSHAKE_TIMEOUT.as_secs()
                ));
            }
            match self.rx.read_into(self.stream, &mut self.rb, limit) {
                Ok(0) => return self.at_eof(limit),
                Ok(_) => last_heard = Instant::now(),
                Err(e) => match classify(&e) {
                    IoFailure::Timeout if last_heard.elapsed() >= silence_limit => {
                        return Ending::Silent(silence_limit)
                    }
                    IoFailure::Timeout | IoFailure::Interrupted => {}
                    // A reset right after BYE is still a polite close.
                    IoFailure::Reset if self.bye.is_some() => return self.said_goodbye(),
                    IoFailure::Reset => return Ending::Reset,
                    IoFailure::Broken if e.kind() == std::io::ErrorKind::InvalidData => {
                        return Ending::Protocol(e.to_string())
                    }
                    IoFailure::Broken => return Ending::Io(describe(&e)),
                },
            }
        }
    }

    /// Our writer's reason for ending the connection, once it has given up
    /// (stalled, reset, or a peer that did not close after our goodbye).
    /// Its `shutdown` does not stop the reads: on Linux the kernel still
    /// hands over what its receive buffer holds, megabytes under load,
    /// and a debug build took 18 s to pass them to the router while the
    /// connection was already lost.
    fn writer_gave_up(&self) -> Option<Ending> {
        self.fault.lock().clone()
    }

    /// Handles every whole frame in the buffer; messages go to the router
    /// in batches of fewer than 2 × [`BATCH_FRAMES`] frames and messages.
    /// Returns whether it had to wait at the delivery gate.
    fn decode_buffered(&mut self, limit: usize) -> Result<bool, Ending> {
        let mut waited = false;
        loop {
            let (gate, full) = self.decode_batch(limit)?;
            waited |= gate;
            if !full {
                return Ok(waited);
            }
            if let Some(ending) = self.writer_gave_up() {
                return Err(ending);
            }
        }
    }

    /// Decodes the buffer's whole frames until it is done or the batch
    /// holds [`BATCH_FRAMES`] frames and messages or more (a frame adds at
    /// most [`frame::MAX_RUN_ENTRIES`]); the batch goes to the router.
    /// Returns whether it had to wait at the delivery gate, and whether it
    /// stopped with the batch full (whole frames may still be buffered).
    fn decode_batch(&mut self, limit: usize) -> Result<(bool, bool), Ending> {
        // Room for what is buffered at a typical line's size: growing one
        // entry at a time was a tenth of a reader's work.
        let room = (self.rb.pending().len() / TYPICAL_FRAME).min(2 * BATCH_FRAMES);
        let mut msgs = MsgScan {
            frames: Vec::with_capacity(room),
            mark: None,
            dropped: 0,
            dropped_bytes: 0,
            dup_passed: None,
        };
        // Messages decoded before a bad frame are delivered; then the
        // connection ends.
        let mut full = false;
        let broken = loop {
            if msgs.frames.len() >= BATCH_FRAMES {
                // A buffer of frames full of empty lines would otherwise
                // be a reference per byte in one batch (128 Ki of them),
                // and the router's queue holds 16 batches: the rest of the
                // buffer goes in the next one.
                full = true;
                break None;
            }
            let at = self.rb.pos();
            // Messages first, without building a `Frame` for each.
            match frame::decode_msg_frame(self.rb.pending(), limit) {
                Ok(Some((msg, used))) => {
                    if let Err(ending) = self.on_msg(&mut msgs, msg, at) {
                        break Some(ending);
                    }
                    self.rb.consume(used);
                    continue;
                }
                Ok(None) => {}
                Err(e) => break Some(Ending::Protocol(e.to_string())),
            }
            let (frame, used) = match frame::decode(self.rb.pending(), limit) {
                Ok(Some(decoded)) => decoded,
                Ok(None) => break None,
                Err(e) => break Some(Ending::Protocol(e.to_string())),
            };
            match frame {
                Frame::Msg { .. } | Frame::Run { .. } => {
                    unreachable!("decode_msg_frame takes every whole MSG frame")
                }
                Frame::Accept => {
                    log::trace!("{}: <- accept", self.info);
                    if self.accepted {
                        break Some(Ending::Protocol("a second ACCEPT".to_owned()));
                    }
                    self.accepted = true;
                    let _ = self.node.events.send(Event::Accepted {
                        conn: self.info.conn,
                    });
                }
                Frame::Ping(token) => {
                    log::trace!("{}: <- ping {token}", self.info);
                    self.outbox.owe_pong(token);
                }
                Frame::Pong(token) => {
                    self.outbox.ponged(token);
                    let sent = Duration::from_micros(token);
                    let rtt = self.node.started.elapsed().saturating_sub(sent);
                    log::trace!("{}: <- pong, round trip {rtt:?}", self.info);
                }
                Frame::Bye(reason) => {
                    let reason = printable(&String::from_utf8_lossy(reason));
                    log::debug!("{}: <- goodbye ({reason})", self.info);
                    self.bye = Some(reason.clone());
                    // Answer in kind: finish sending, then BYE and FIN.
                    self.outbox
                        .close(Close::Graceful("answering your goodbye".to_owned()));
                    self.outbox.peer_done();
                    let _ = self.node.events.send(Event::Bye {
                        conn: self.info.conn,
                        reason,
                    });
                }
                Frame::Hello(_) => break Some(Ending::Protocol("a second HELLO".to_owned())),
                // The mesh's frames go to the router in order with the
                // messages. PEERS may precede the BYE of a refusal; the
                // others come only from a peer that accepted us.
                other @ (Frame::Status(_)
                | Frame::Down { .. }
                | Frame::Repair { .. }
                | Frame::Prune { .. }
                | Frame::Graft { .. }
                | Frame::TooBig { .. }
                | Frame::Peers(_)) => {
                    let kind = crate::handshake::frame_name(&other);
                    log::trace!("{}: <- {kind}", self.info);
                    if !self.accepted && !matches!(other, Frame::Peers(_)) {
                        break Some(Ending::Protocol(format!("a {kind} before ACCEPT")));
                    }
                    msgs.frames.push(InFrame::Control {
                        start: at,
                        end: at + used,
                    });
                }
            }
            self.rb.consume(used);
        };
        self.node
            .delivered
            .dropped(msgs.dropped, msgs.dropped_bytes);
        let waited = if msgs.frames.is_empty() {
            false
        } else {
            self.deliver(msgs.frames, limit)?
        };
        match broken {
            Some(ending) => Err(ending),
            None => Ok((waited, full)),
        }
    }

    /// One MSG frame of a batch (its header at `at`): each of its
    /// messages queued for the router, or dropped as a duplicate of what
    /// it has delivered.
    #[inline]
    fn on_msg(&self, scan: &mut MsgScan, msg: frame::Msg<'_>, at: usize) -> Result<(), Ending> {
        let frame::Msg {
            origin,
            seq,
            hops,
            ttl,
            life,
            entries,
        } = msg;
        log::trace!(
            "{}: <- message {origin:016x}/{seq}{}, {} bytes",
            self.info,
            more(msg.count()),
            entries.len()
        );
        if !self.accepted {
            return Err(Ending::Protocol("a message before ACCEPT".to_owned()));
        }
        let delivered = match &scan.mark {
            Some((id, range)) if *id == origin => range.clone(),
            _ => scan
                .mark
                .insert((origin, self.node.delivered.mark_of(origin)))
                .1
                .clone(),
        };
        let base = at + frame::MSG_HEADER_LEN;
        let header = frame::MsgHeader {
            origin,
            seq,
            hops,
            ttl,
            life,
        };
        for msg in MsgRef::each_in(entries, base, header) {
            // The first duplicate of each run still goes to the mesh: it
            // prunes the sender from that origin's tree.
            let duplicate = delivered.contains(&msg.seq);
            if duplicate && scan.dup_passed == Some(origin) {
                scan.dropped += 1;
                scan.dropped_bytes += (msg.end - msg.start) as u64;
                continue;
            }
            if duplicate {
                scan.dup_passed = Some(origin);
            }
            scan.frames.push(InFrame::Msg(msg));
        }
        Ok(())
    }

    /// Hands a batch of frames to the router, once the gate is open.
    fn deliver(&mut self, frames: Vec<InFrame>, limit: usize) -> Result<bool, Ending> {
        let waited = self.wait_at_gate()?;
        let buf = self
            .rb
            .take_decoded(self.node.spare_buffers.try_recv().ok(), limit);
        let batch = Inbound {
            conn: self.info.conn,
            buf: Arc::new(buf),
            frames,
        };
        let sent = match self.node.inbound.try_send(batch) {
            Ok(()) => Ok(()),
            Err(crossbeam_channel::TrySendError::Full(batch)) => {
                // Our router is behind (a slow stdout): while we wait for
                // it, PONGs queue up unread, so our writer must not take
                // their absence against the peer.
                self.outbox.reader_waiting(true);
                let sent = self.node.inbound.send(batch).map_err(|_| ());
                self.outbox.reader_waiting(false);
                sent
            }
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => Err(()),
        };
        if sent.is_err() {
            return Err(Ending::Stopping);
        }
        self.batches += 1;
        Ok(waited)
    }

    /// Waits until this connection may deliver (see [`Handover`]); reading
    /// stops meanwhile, so TCP holds the peer back. True if it waited.
    fn wait_at_gate(&mut self) -> Result<bool, Ending> {
        let Some(gate) = &self.gate else {
            return Ok(false);
        };
        let waited = match gate.try_recv() {
            Err(TryRecvError::Disconnected) => false,
            _ => {
                log::debug!("{}: waiting for the connection it replaces", self.info);
                let stopping = self.node.shutdown.stopping();
                self.outbox.reader_waiting(true);
                select! {
                    recv(gate) -> _ => {}
                    recv(stopping) -> _ => return Err(Ending::Stopping),
                }
                self.outbox.reader_waiting(false);
                true
            }
        };
        self.gate = None;
        Ok(waited)
    }

    fn at_eof(&mut self, limit: usize) -> Ending {
        let have = self.rb.pending().len();
        if have > 0 {
            let frame = frame::peek_len(self.rb.pending(), limit)
                .ok()
                .flatten()
                .map(|len| len + frame::LEN_PREFIX);
            return Ending::Truncated { have, frame };
        }
        if self.bye.is_some() {
            return self.said_goodbye();
        }
        Ending::Eof
    }

    fn said_goodbye(&mut self) -> Ending {
        let reason = self.bye.take().unwrap_or_default();
        if self.accepted {
            Ending::Goodbye(reason)
        } else {
            Ending::Refused(reason)
        }
    }
}

/// What one pass over the read buffer has gathered of its messages.
struct MsgScan {
    frames: Vec<InFrame>,
    /// Duplicates of what the router has delivered are dropped here
    /// (counted for the books); the mark is looked up once per run of one
    /// origin.
    mark: Option<(NodeId, RangeInclusive<u64>)>,
    dropped: u64,
    dropped_bytes: u64,
    dup_passed: Option<NodeId>,
}

struct Writer {
    stream: Arc<TcpStream>,
    /// Writes the socket: plaintext, or sealing encrypted records. A cell
    /// because only this thread writes, through `&self` methods.
    tx: std::cell::RefCell<SendHalf>,
    outbox: Outbox,
    fault: Fault,
    keepalive: Duration,
    stall: Duration,
    started: Instant,
    label: String,
    /// Disconnects when the reader has stopped reading.
    reader_done: Receiver<Never>,
}

/// How often a blocked send wakes up to check the stall rule.
const STALL_TICK: Duration = Duration::from_millis(100);
/// The least time between two PINGs that confirm written messages.
const ACK_EVERY: Duration = Duration::from_millis(100);
/// How long a refused peer gets to close after our BYE.
const REFUSED_LINGER: Duration = Duration::from_secs(1);
/// A line of text as a MSG entry, roughly: what a batch's list of messages
/// is sized for before decoding it.
const TYPICAL_FRAME: usize = 64;
/// A reader's batch for the router is full once it holds this many frames
/// and messages: one frame (at most [`frame::MAX_RUN_ENTRIES`] messages)
/// more and it goes, so a batch holds fewer than twice this many (each
/// message a 40-byte reference), whatever a peer sends. Honest lines of 64
/// bytes fill a 128 KiB read buffer with about 2,000.
const BATCH_FRAMES: usize = frame::MAX_RUN_ENTRIES;

/// How a MSG frame's trace line names the messages after its first.
fn more(count: u64) -> String {
    match count {
        1 => String::new(),
        n => format!(" and {} more", n - 1),
    }
}

impl Writer {
    fn run(self) {
        if let Err(e) = self
            .stream
            .set_write_timeout(Some(STALL_TICK.min(self.stall)))
        {
            self.fail(Ending::Io(describe(&e)));
            return;
        }
        // A PING every keepalive period, busy or not: the peer answers at
        // once, which is how it knows we are alive and we know it is. A
        // PING also follows written messages (at most every ACK_EVERY while
        // one is unanswered, and after every PING_EVERY_BYTES regardless),
        // and its PONG confirms that the peer has read them.
        let mut next_ping = Instant::now() + self.keepalive;
        let mut last_ping = Instant::now()
            .checked_sub(ACK_EVERY)
            .unwrap_or_else(Instant::now);
        // Messages written with no PING after them yet: when to send one.
        let mut next_ack: Option<Instant> = None;
        // Bytes written since the last PING, and when a write last moved.
        let mut since_ping = 0usize;
        let mut moved = Instant::now();
        let mut last_token = 0;
        loop {
            // The second stall rule: a PING after our messages unanswered,
            // and nothing taken, for --stall-timeout.
            let stall_at = self
                .outbox
                .stall_clock()
                .map(|since| since.max(moved) + self.stall);
            if stall_at.is_some_and(|at| Instant::now() >= at) {
                self.fail(Ending::Unanswered(self.stall));
                return;
            }
            let until = [Some(next_ping), next_ack, stall_at]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(next_ping);
            let work = self.outbox.wait(until);
            let now = Instant::now();
            if now > until + crate::threads::OVERSLEPT {
                // We were not running (SIGSTOP, a suspended host): that time
                // says nothing about the peer, whose PONGs may be waiting
                // unread in our own socket. The stall rule starts over.
                moved = now;
            }
            let fresh = work.as_ref().is_some_and(|w| !w.batches.is_empty());
            let bytes: usize = work
                .as_ref()
                .map_or(0, |w| w.batches.iter().map(|b| b.bytes.len()).sum());
            let ack_due =
                next_ack.is_some_and(|at| now >= at) || (fresh && now >= last_ping + ACK_EVERY);
            let ack = ack_due && !self.outbox.awaiting_pong();
            if ack_due && !ack {
                // The last PING is unanswered: look again in a while.
                next_ack = Some(now + ACK_EVERY);
            }
            // A peer reading through a backlog meets a PING every
            // PING_EVERY_BYTES, and its PONGs show it reads.
            let bulk = since_ping + bytes >= PING_EVERY_BYTES;
            let ping = now >= next_ping || ack || bulk;
            let Some(work) = work.or_else(|| ping.then(Work::default)) else {
                continue;
            };
            let closing = matches!(work.close, Some(Close::Graceful(_)));
            let ping = ping || closing;
            let mut control = Vec::new();
            if work.accept {
                log::trace!("{}: -> accept", self.label);
                Frame::Accept.encode(&mut control);
            }
            if let Some(token) = work.pong {
                log::trace!("{}: -> pong {token}", self.label);
                Frame::Pong(token).encode(&mut control);
            }
            let mut after = Vec::new();
            // Distinct tokens, even for two PINGs within a microsecond.
            let token = (self.started.elapsed().as_micros() as u64).max(last_token + 1);
            if ping {
                log::trace!("{}: -> ping {token}", self.label);
                Frame::Ping(token).encode(&mut after);
                last_token = token;
                next_ping = now + self.keepalive;
                last_ping = now;
                next_ack = None;
            } else if !work.batches.is_empty() && next_ack.is_none() {
                next_ack = Some(last_ping + ACK_EVERY);
            }
            let linger = match &work.close {
                Some(Close::Graceful(reason)) | Some(Close::Refuse(reason)) => {
                    log::debug!("{}: -> goodbye ({reason})", self.label);
                    Frame::Bye(reason.as_bytes()).encode(&mut after);
                    Some(if closing {
                        2 * self.keepalive
                    } else {
                        REFUSED_LINGER
                    })
                }
                _ => None,
            };
            if log::log_enabled!(log::Level::Trace) {
                self.trace_messages(&work.batches);
            }
            let mut slices = Vec::with_capacity(work.batches.len() + 2);
            slices.push(IoSlice::new(&control));
            slices.extend(work.batches.iter().map(|b| IoSlice::new(&b.bytes)));
            slices.push(IoSlice::new(&after));
            if ping {
                // Before the write: its PONG may beat the write's return.
                let msgs = work.batches.iter().map(|b| b.msgs).sum();
                self.outbox.pinging(token, msgs);
            }
            let waited_for_room = match self.write_all(&mut slices) {
                Ok(waited) => waited,
                Err(e) => {
                    let ending = match classify(&e) {
                        IoFailure::Timeout => Ending::Stalled(self.stall),
                        IoFailure::Reset => Ending::Reset,
                        _ => Ending::Io(describe(&e)),
                    };
                    self.fail(ending);
                    return;
                }
            };
            self.outbox.written(&work.batches);
            let now = Instant::now();
            // Only messages taken once the socket's buffers were full count
            // as the peer moving: our own PINGs and STATUS frames fit in a
            // stopped peer's socket buffers for a long while (with them
            // counted a stopped peer was never cut while --stall-timeout
            // exceeded the keepalive period), and so do a slow stream's
            // lines (with every write counted, a stopped relay in a chain
            // fed 1,000 lines a second was never cut: attack23 F1).
            if waited_for_room && work.batches.iter().any(|b| b.msgs > 0) {
                moved = now;
            }
            since_ping = if ping { 0 } else { since_ping + bytes };
            if ping {
                self.outbox.pinged(token, now);
            }
            match (work.close, linger) {
                (Some(Close::Abort), _) => {
                    if self.outbox.is_cut() {
                        self.fail(Ending::OutputStuck);
                    }
                    return;
                }
                (Some(Close::Graceful(_)), Some(linger)) => {
                    self.finish_goodbye(linger);
                    return;
                }
                (_, Some(linger)) => {
                    let _ = self.stream.shutdown(SocketShutdown::Write);
                    self.await_their_close(linger);
                    return;
                }
                _ => {}
            }
        }
    }

    /// Writes every byte of `bufs`; a peer that takes no byte at all for
    /// `--stall-timeout`, and whose STATUS shows no line printed meanwhile
    /// (`Outbox::progress_seen`: it reads its links in turn), is stalled.
    ///
    /// Returns whether a write waited for room in the socket's buffers
    /// (`wire::write_all_patiently`): only then does a write show that the
    /// peer reads.
    fn write_all(&self, bufs: &mut [IoSlice<'_>]) -> std::io::Result<bool> {
        let alive = || self.outbox.progress();
        self.tx
            .borrow_mut()
            .write_all_patiently(&self.stream, bufs, self.stall, &alive)
    }

    /// After our BYE, the peer may still send a PING (the one before its own
    /// BYE, if it is closing too): we answer it, so that it knows we read
    /// everything it sent. Once it has said BYE (or closed), our FIN goes,
    /// and we wait for its FIN; all within `linger`.
    fn finish_goodbye(&self, linger: Duration) {
        let end = Instant::now() + linger;
        loop {
            match self.outbox.after_bye(end) {
                AfterBye::Pong(token) => {
                    log::trace!("{}: -> pong {token}", self.label);
                    let pong = Frame::Pong(token).to_bytes();
                    if let Err(e) = self.write_all(&mut [IoSlice::new(&pong)]) {
                        self.fail(Ending::Io(describe(&e)));
                        return;
                    }
                }
                AfterBye::PeerDone => break,
                AfterBye::Abort => {
                    // Cut while we waited for its goodbye (its STATUS says
                    // its stdout is stuck): the socket goes now, as in the
                    // main loop. Returning alone left the link open, its
                    // reader reading on, and a node stopping at the end of
                    // stdin waited for it to close (the test of a member
                    // whose stdout nobody reads, 1 of 5 suite runs).
                    if self.outbox.is_cut() {
                        self.fail(Ending::OutputStuck);
                    }
                    return;
                }
                AfterBye::TimedOut => {
                    self.fail(Ending::NoClose(linger));
                    return;
                }
            }
        }
        let _ = self.stream.shutdown(SocketShutdown::Write);
        self.await_their_close(
            end.saturating_duration_since(Instant::now())
                .max(linger / 4),
        );
    }

    /// After our BYE and FIN, the peer closes its side; one that does not
    /// within `linger` is cut off, and the log says so.
    fn await_their_close(&self, linger: Duration) {
        select! {
            recv(self.reader_done) -> _ => {}
            default(linger) => self.fail(Ending::NoClose(linger)),
        }
    }

    fn trace_messages(&self, batches: &[Batch]) {
        for batch in batches {
            let mut rest = &batch.bytes[..];
            while let Ok(Some((frame, used))) = frame::decode(rest, usize::MAX) {
                let (origin, seq, count) = match frame {
                    Frame::Msg { origin, seq, .. } => (origin, seq, 1),
                    Frame::Run {
                        origin, seq, count, ..
                    } => (origin, seq, count),
                    _ => break,
                };
                log::trace!(
                    "{}: -> message {origin:016x}/{seq}{}, {used} bytes",
                    self.label,
                    more(count)
                );
                rest = &rest[used..];
            }
        }
    }

    /// Records why this connection must end and wakes the reader to end it.
    fn fail(&self, ending: Ending) {
        log::debug!("{}: writer stopped: {ending}", self.label);
        self.fault.lock().get_or_insert(ending);
        let _ = self.stream.shutdown(SocketShutdown::Both);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peers_text_is_made_printable_once() {
        assert_eq!(printable("bye \"x\"\u{1b}[2K"), "bye \"x\"\\u{1b}[2K");
        assert_eq!(printable("a\nb\u{2028}c"), "a\\u{a}b\\u{2028}c");
        assert_eq!(printable("plain, é"), "plain, é");
    }
}
