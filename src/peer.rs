//! One connection: a reader thread and a writer thread.
//!
//! The reader does the handshake, starts the writer, announces the peer to
//! the router, then decodes frames until the connection ends. Messages go to
//! the router in batches that share the buffer they were read into; PINGs are
//! answered through the outbox; the end is reported with its [`Ending`].
//!
//! The writer does all the sending on the socket, which it shares with the
//! reader (one descriptor per peer). It takes everything queued in the
//! outbox at once and writes it with one vectored `write`, sends a PING when
//! it has had nothing to send for `--keepalive`, and gives up on a peer whose
//! socket accepts nothing for `--stall-timeout`.

use std::fmt;
use std::io::IoSlice;
use std::net::{Shutdown as SocketShutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver};
use parking_lot::Mutex;

use crate::dialer::{DialOutcome, DialTicket};
use crate::frame::{self, Frame, NodeId, MSG_HEADER_LEN};
use crate::handshake::{self, HandshakeError, HANDSHAKE_TIMEOUT};
use crate::node::{Node, PendingHandshake};
use crate::outbox::{Close, Outbox};
use crate::ratelog;
use crate::router::Event;
use crate::shutdown::Never;
use crate::wire::{classify, describe, write_all_vectored, IoFailure, ReadBuf};

/// Identifies one connection for the life of the process.
pub type ConnId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// They dialed us.
    In,
    /// We dialed them.
    Out,
}

/// Who is at the other end of a connection, as its HELLO said.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub conn: ConnId,
    pub node_id: NodeId,
    pub name: Arc<str>,
    pub addr: SocketAddr,
    pub direction: Direction,
    pub listen_port: u16,
    pub max_frame: usize,
    /// How often the peer pings when it has nothing to send (from its HELLO).
    pub keepalive: Duration,
}

impl fmt::Display for PeerInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.addr)
    }
}

/// Messages decoded from one read, sharing the buffer they arrived in.
pub struct Inbound {
    pub conn: ConnId,
    pub from: Arc<str>,
    pub buf: Vec<u8>,
    pub msgs: Vec<MsgMeta>,
}

/// Where one message frame sits in its [`Inbound::buf`].
#[derive(Debug, Clone, Copy)]
pub struct MsgMeta {
    pub origin: NodeId,
    pub seq: u64,
    pub start: usize,
    pub end: usize,
}

impl MsgMeta {
    pub fn payload<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.start + MSG_HEADER_LEN..self.end]
    }
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The peer sent BYE, then closed: the polite way.
    Goodbye(String),
    /// The peer closed between two frames without saying BYE.
    Eof,
    /// The peer closed in the middle of a frame.
    Truncated { have: usize, frame: Option<usize> },
    /// "Connection reset by peer": the peer vanished without a polite close.
    Reset,
    /// Nothing arrived for 3 x `--keepalive`: presumed dead.
    Silent(Duration),
    /// Our writer could send nothing for `--stall-timeout`.
    Stalled(Duration),
    /// The peer broke the protocol.
    Protocol(String),
    /// Some other socket error.
    Io(String),
    /// This node is stopping and stopped reading.
    Stopping,
}

impl Ending {
    /// Whether this is an orderly end rather than a failure.
    pub fn is_polite(&self) -> bool {
        matches!(self, Ending::Goodbye(_) | Ending::Stopping)
    }
}

impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ending::Goodbye(reason) if reason.is_empty() => write!(f, "said goodbye"),
            Ending::Goodbye(reason) => write!(f, "said goodbye: {reason}"),
            Ending::Eof => write!(f, "closed the connection without saying goodbye"),
            Ending::Truncated {
                have,
                frame: Some(len),
            } => write!(
                f,
                "closed the connection in the middle of a frame ({have} of {len} bytes)"
            ),
            Ending::Truncated { have, frame: None } => {
                write!(
                    f,
                    "closed the connection in the middle of a frame header ({have} bytes)"
                )
            }
            Ending::Reset => write!(f, "connection reset by peer"),
            Ending::Silent(d) => write!(
                f,
                "no data for {}s (3 x keepalive): presumed dead",
                d.as_secs()
            ),
            Ending::Stalled(d) => write!(
                f,
                "stalled: accepted no data for {}s (--stall-timeout)",
                d.as_secs()
            ),
            Ending::Protocol(reason) => write!(f, "protocol error: {reason}"),
            Ending::Io(reason) => write!(f, "connection error: {reason}"),
            Ending::Stopping => write!(f, "this node is stopping"),
        }
    }
}

/// The writer's reason for ending a connection, read by the reader when its
/// own read then fails. Mutex: written by one thread, read by the other.
type Fault = Arc<Mutex<Option<Ending>>>;

/// Starts the threads for a new TCP connection.
pub fn start(
    node: &Arc<Node>,
    stream: TcpStream,
    direction: Direction,
    ticket: Option<DialTicket>,
) {
    let conn = node.next_conn_id();
    let addr = match stream.peer_addr() {
        Ok(addr) => addr,
        Err(e) => {
            log::debug!(
                "connection {conn} closed before it started: {}",
                describe(&e)
            );
            return;
        }
    };
    let node_ = node.clone();
    let pending = node.pending_handshake((direction == Direction::In).then_some(addr.ip()));
    let spawned = node.threads.spawn(format!("rx-{conn}"), move || {
        connection(node_, conn, stream, addr, direction, ticket, pending)
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
    ticket: Option<DialTicket>,
    pending: PendingHandshake,
) {
    // One socket, one descriptor, shared: std reads and writes through a
    // `&TcpStream`, so the reader, the writer and the node's registry need
    // no clones.
    let stream = Arc::new(stream);
    let _registered = node.register(conn, &stream);
    let _ = stream.set_nodelay(true);
    let mut rb = ReadBuf::default();
    let handshake = handshake::exchange(&stream, &mut rb, &node.hello(), HANDSHAKE_TIMEOUT);
    drop(pending);
    let hello = match handshake {
        Ok(hello) => hello,
        Err(e) => {
            handshake_failed(&stream, addr, &e, direction);
            if let Some(ticket) = ticket {
                let outcome = match e {
                    HandshakeError::ItsMe => DialOutcome::ItsMe,
                    other => DialOutcome::Failed(other.to_string()),
                };
                let _ = ticket.send(outcome);
            }
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
    let outbox = Outbox::new(conn, node.events.clone());
    let fault = Fault::default();
    let writer_done = match start_writer(&node, &stream, &info, &outbox, &fault) {
        Ok(done) => done,
        Err(e) => {
            log::warn!("{info}: cannot start its writer: {}", describe(&e));
            let _ = stream.shutdown(SocketShutdown::Both);
            return;
        }
    };
    let _ = node.events.send(Event::Up {
        info: info.clone(),
        outbox: outbox.clone(),
        ticket,
    });
    let mut reader = Reader {
        node: &node,
        info: &info,
        stream: &stream,
        rb,
        outbox: &outbox,
        bye: None,
    };
    let mut ending = reader.run();
    if let Some(writers) = fault.lock().take() {
        // Our writer gave up first and shut the socket, which is what ended
        // the read: its reason is the real one, unless the peer had said
        // goodbye.
        if !ending.is_polite() {
            ending = writers;
        }
    }
    if matches!(ending, Ending::Goodbye(_) | Ending::Eof) {
        // The peer has closed its side. Let our writer finish its own polite
        // close (what is queued, BYE, FIN) before the socket goes. A write
        // error now (the peer is gone entirely) does not change the ending.
        outbox.close(Close::Graceful("answering your goodbye".to_owned()));
        let _ = writer_done.recv_timeout(node.config.stall_timeout);
    }
    outbox.close(Close::Abort);
    let _ = stream.shutdown(SocketShutdown::Both);
    let _ = node.events.send(Event::Down { conn, ending });
}

/// Logs a failed handshake and closes the connection. A connection we
/// dialed is logged by its dialer, in the one line that also says when it
/// dials again; one a stranger opened is logged here, rate-limited per
/// address (a stranger can fail handshakes as fast as it can connect).
fn handshake_failed(stream: &TcpStream, addr: SocketAddr, e: &HandshakeError, dir: Direction) {
    match (e, dir) {
        // Anyone who has seen our HELLO can echo our id back.
        (HandshakeError::ItsMe, Direction::In) => {
            ratelog::log(log::Level::Info, "echoed ids", addr.ip(), || {
                format!("{addr}: {e}; closing that connection")
            })
        }
        (_, Direction::In) => ratelog::warn("failed handshakes", addr.ip(), || {
            format!(
                "{addr}: {e}; closing (more failures from {} are counted, not logged, for {}s)",
                ratelog::describe_source(addr.ip()),
                ratelog::WINDOW.as_secs()
            )
        }),
        (_, Direction::Out) => log::debug!("{addr}: {e}; closing"),
    }
    if let HandshakeError::Protocol(reason) = e {
        // Tell a peercat peer why; a stranger will not mind the bytes.
        let bye = Frame::Bye(reason.as_bytes()).to_bytes();
        let _ = std::io::Write::write_all(&mut &*stream, &bye);
    }
    let _ = stream.shutdown(SocketShutdown::Both);
}

fn start_writer(
    node: &Arc<Node>,
    stream: &Arc<TcpStream>,
    info: &PeerInfo,
    outbox: &Outbox,
    fault: &Fault,
) -> std::io::Result<Receiver<Never>> {
    let (done_tx, done_rx) = bounded(0);
    let writer = Writer {
        stream: stream.clone(),
        outbox: outbox.clone(),
        fault: fault.clone(),
        keepalive: node.config.keepalive,
        stall: node.config.stall_timeout,
        started: node.started,
        label: info.to_string(),
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
    rb: ReadBuf,
    outbox: &'a Outbox,
    /// The reason in the peer's BYE, once it has sent one.
    bye: Option<String>,
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
        let mut last_heard = Instant::now();
        loop {
            if let Err(ending) = self.decode_buffered(limit) {
                return ending;
            }
            match self.rb.read_from(&mut &*self.stream, limit) {
                Ok(0) => return self.at_eof(limit),
                Ok(_) => last_heard = Instant::now(),
                Err(e) => match classify(&e) {
                    IoFailure::Timeout if last_heard.elapsed() >= silence_limit => {
                        return Ending::Silent(silence_limit)
                    }
                    IoFailure::Timeout | IoFailure::Interrupted => {}
                    // A reset right after BYE is still a polite close.
                    IoFailure::Reset if self.bye.is_some() => {
                        return Ending::Goodbye(self.bye.take().unwrap_or_default())
                    }
                    IoFailure::Reset => return Ending::Reset,
                    IoFailure::Broken if e.kind() == std::io::ErrorKind::InvalidData => {
                        return Ending::Protocol(e.to_string())
                    }
                    IoFailure::Broken => return Ending::Io(describe(&e)),
                },
            }
        }
    }

    /// Handles every whole frame in the buffer; messages go to the router
    /// as one batch.
    fn decode_buffered(&mut self, limit: usize) -> Result<(), Ending> {
        let mut msgs = Vec::new();
        loop {
            let at = self.rb.pos();
            let (frame, used) = match frame::decode(self.rb.pending(), limit) {
                Ok(Some(decoded)) => decoded,
                Ok(None) => break,
                Err(e) => return Err(Ending::Protocol(e.to_string())),
            };
            match frame {
                Frame::Msg {
                    origin,
                    seq,
                    payload,
                } => {
                    log::trace!(
                        "{}: message {origin:016x}/{seq}, {} bytes",
                        self.info,
                        payload.len()
                    );
                    msgs.push(MsgMeta {
                        origin,
                        seq,
                        start: at,
                        end: at + used,
                    });
                }
                Frame::Ping(token) => {
                    log::trace!("{}: ping {token}", self.info);
                    self.outbox.owe_pong(token);
                }
                Frame::Pong(token) => {
                    let sent = Duration::from_micros(token);
                    let rtt = self.node.started.elapsed().saturating_sub(sent);
                    log::trace!("{}: pong, round trip {rtt:?}", self.info);
                }
                Frame::Bye(reason) => {
                    let reason = String::from_utf8_lossy(reason).escape_debug().to_string();
                    log::debug!("{}: received goodbye ({reason})", self.info);
                    self.bye = Some(reason);
                    // Answer in kind: finish sending, then BYE and FIN.
                    self.outbox
                        .close(Close::Graceful("answering your goodbye".to_owned()));
                    let _ = self.node.events.send(Event::Bye {
                        conn: self.info.conn,
                    });
                }
                Frame::Hello(_) => return Err(Ending::Protocol("a second HELLO".to_owned())),
            }
            self.rb.consume(used);
        }
        if !msgs.is_empty() {
            let batch = Inbound {
                conn: self.info.conn,
                from: self.info.name.clone(),
                buf: self
                    .rb
                    .take_decoded(self.node.spare_buffers.try_recv().ok(), limit),
                msgs,
            };
            if self.node.inbound.send(batch).is_err() {
                return Err(Ending::Stopping);
            }
        }
        Ok(())
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
        match self.bye.take() {
            Some(reason) => Ending::Goodbye(reason),
            None => Ending::Eof,
        }
    }
}

struct Writer {
    stream: Arc<TcpStream>,
    outbox: Outbox,
    fault: Fault,
    keepalive: Duration,
    stall: Duration,
    started: Instant,
    label: String,
}

impl Writer {
    fn run(self) {
        // A send that moves no byte for this long means the peer stopped
        // reading: the kernel buffers are full and so is its outbox.
        if let Err(e) = self.stream.set_write_timeout(Some(self.stall)) {
            self.fail(Ending::Io(describe(&e)));
            return;
        }
        let mut idle_at = Instant::now() + self.keepalive;
        loop {
            let work = self.outbox.wait(idle_at);
            let mut control = Vec::new();
            if let Some(token) = work.pong {
                Frame::Pong(token).encode(&mut control);
            }
            if work.idle {
                let token = self.started.elapsed().as_micros() as u64;
                log::trace!("{}: ping", self.label);
                Frame::Ping(token).encode(&mut control);
            }
            let mut bye = Vec::new();
            if let Some(Close::Graceful(reason)) = &work.close {
                Frame::Bye(reason.as_bytes()).encode(&mut bye);
            }
            let mut slices = Vec::with_capacity(work.chunks.len() + 2);
            slices.push(IoSlice::new(&control));
            slices.extend(work.chunks.iter().map(|chunk| IoSlice::new(chunk)));
            slices.push(IoSlice::new(&bye));
            if let Err(e) = write_all_vectored(&mut &*self.stream, &mut slices) {
                let ending = match classify(&e) {
                    IoFailure::Timeout => Ending::Stalled(self.stall),
                    IoFailure::Reset => Ending::Reset,
                    _ => Ending::Io(describe(&e)),
                };
                self.fail(ending);
                return;
            }
            self.outbox
                .written(work.chunks.iter().map(|chunk| chunk.len()).sum());
            idle_at = Instant::now() + self.keepalive;
            match work.close {
                Some(Close::Graceful(_)) => {
                    log::debug!("{}: sent goodbye", self.label);
                    let _ = self.stream.shutdown(SocketShutdown::Write);
                    return;
                }
                Some(Close::Abort) => return,
                None => {}
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
