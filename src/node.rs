//! The node: what every thread shares, and [`run`], which starts the threads,
//! runs the router until the node stops, and takes everything down again.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::{
    IpAddr, Shutdown as SocketShutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs,
};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use parking_lot::Mutex;

use crate::config::Config;
use crate::error::Error;
use crate::event::{ConnId, Event, Inbound, STDOUT_MOVING};
use crate::frame::{Hello, NodeId};
use crate::mesh::Mesh;
use crate::router::{self, Outcome, Router, Wiring};
use crate::shutdown::{Cause, Never, Shutdown};
use crate::stdio::StdinGate;
use crate::threads::Threads;
use crate::{acceptor, dialer, discovery, peer_cache, ratelog, stdio};

/// Batches of received messages waiting for the router. Readers block when
/// it is full, which is how a slow stdout pushes back on the peers.
const INBOUND_QUEUE: usize = 16;
/// Chunks of stdin lines waiting for the router.
const STDIN_QUEUE: usize = 4;
/// Members found by LAN discovery waiting for the router; more are dropped
/// (discovery reports them again).
const FOUND_QUEUE: usize = 64;
/// Batches waiting to be printed.
const STDOUT_QUEUE: usize = 16;
/// Spare read buffers kept for reuse, and the largest one worth keeping:
/// together they bound what the pool can hold (16 MiB).
const SPARE_BUFFERS: usize = 8;
pub const SPARE_BUFFER_MAX: usize = 2 * 1024 * 1024;
/// How long the end of `run` waits for threads after the router is done.
const JOIN_DEADLINE: Duration = Duration::from_millis(500);

/// Handshakes one source (an IPv4 address or an IPv6 /64) may have under
/// way at once, below the global cap (`--max-peers`), so that one address
/// cannot hold every slot.
pub const HANDSHAKES_PER_IP: usize = 8;

/// Log target of the lines a node always logs, even under `-q`.
pub const ANNOUNCE: &str = "peercat::announce";

/// What every thread of a node shares.
pub struct Node {
    pub config: Config,
    pub id: NodeId,
    /// This process under `id`: random, never 0, in every MSG and STATUS
    /// it sends, so that members tell its lines from those of an earlier
    /// process under the same id (the same `--key`), whose seqs were the
    /// same numbers.
    pub life: u64,
    /// The port we accept peers on (0 with `--no-listen`), for our HELLO.
    pub listen_port: u16,
    pub started: Instant,
    pub shutdown: Arc<Shutdown>,
    pub threads: Arc<Threads>,
    /// Control events for the router; unbounded, because they are few and
    /// small and a reader must never block on announcing a peer's end.
    pub events: Sender<Event>,
    /// Received messages for the router; bounded (`INBOUND_QUEUE`).
    pub inbound: Sender<Inbound>,
    /// Read buffers whose messages have been printed, for readers to reuse
    /// instead of allocating and zeroing new ones.
    pub spare_buffers: Receiver<Vec<u8>>,
    pub recycle: Sender<Vec<u8>>,
    /// stdin lines skipped as longer than `--max-frame`, for the summary.
    pub stdin_skipped: AtomicU64,
    /// `--secret-file`/`--allow`: the keys every link is encrypted with.
    pub security: Option<crate::secure::Security>,
    /// What the router has delivered, per origin: readers drop duplicates.
    pub delivered: crate::delivered::Delivered,
    /// What the stdout thread has written out, for acknowledgements.
    pub printed: crate::event::PrintedSoFar,
    next_conn: AtomicU64,
    handshakes: AtomicUsize,
    /// Inbound handshakes under way, per source address; an address is
    /// removed when its count drops to zero, so the map stays as small as
    /// the number of handshakes. Mutex: the acceptor checks it while
    /// connection threads finish their handshakes.
    handshakes_by_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Every open socket, so that the end of `run` can shut them all down
    /// whatever their threads are blocked in. Mutex: connection threads add
    /// and remove themselves while the main thread may be reading it.
    streams: Mutex<HashMap<ConnId, Arc<TcpStream>>>,
}

impl Node {
    pub fn next_conn_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Our HELLO.
    pub fn hello(&self) -> Hello {
        Hello {
            node_id: self.id,
            listen_port: self.listen_port,
            max_frame: self.config.max_frame as u32,
            keepalive_secs: crate::frame::keepalive_secs(self.config.keepalive),
            name: self.config.name.clone(),
        }
    }

    /// Keeps a handle on `stream` until the returned guard is dropped.
    pub fn register(&self, conn: ConnId, stream: &Arc<TcpStream>) -> Registered<'_> {
        self.streams.lock().insert(conn, stream.clone());
        Registered { node: self, conn }
    }

    /// Counts a connection as "in handshake" until the guard is dropped;
    /// `from`, for a connection a stranger opened, also counts it against
    /// that address.
    pub fn pending_handshake(self: &Arc<Self>, from: Option<IpAddr>) -> PendingHandshake {
        self.handshakes.fetch_add(1, Ordering::Relaxed);
        let from = from.map(ratelog::source_of);
        if let Some(ip) = from {
            *self.handshakes_by_ip.lock().entry(ip).or_insert(0) += 1;
        }
        PendingHandshake(self.clone(), from)
    }

    pub fn pending_handshakes(&self) -> usize {
        self.handshakes.load(Ordering::Relaxed)
    }

    /// Inbound handshakes under way from `ip`'s source (its IPv4 address or
    /// IPv6 /64, see [`ratelog::source_of`]).
    pub fn pending_handshakes_from(&self, ip: IpAddr) -> usize {
        let by_ip = self.handshakes_by_ip.lock();
        by_ip.get(&ratelog::source_of(ip)).copied().unwrap_or(0)
    }

    /// Shuts down every socket still open, waking every thread blocked on one.
    fn shut_all_streams(&self) {
        let streams = self.streams.lock();
        if !streams.is_empty() {
            log::debug!("shutting down {} remaining connections", streams.len());
        }
        for stream in streams.values() {
            let _ = stream.shutdown(SocketShutdown::Both);
        }
    }
}

pub struct Registered<'a> {
    node: &'a Node,
    conn: ConnId,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.node.streams.lock().remove(&self.conn);
    }
}

/// A connection in handshake; moves into the connection's thread.
pub struct PendingHandshake(Arc<Node>, Option<IpAddr>);

impl Drop for PendingHandshake {
    fn drop(&mut self) {
        self.0.handshakes.fetch_sub(1, Ordering::Relaxed);
        if let Some(ip) = self.1 {
            let mut by_ip = self.0.handshakes_by_ip.lock();
            if let Some(count) = by_ip.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    by_ip.remove(&ip);
                }
            }
        }
    }
}

/// A random 64-bit number from the OS-seeded keys of std's `RandomState`,
/// mixed with the time: enough for node ids and jitter, with no dependency.
pub fn random_u64() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    hasher.write_u128(now);
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// The members remembered in `--peer-cache`, to dial as well as the PEERs.
/// A file that cannot be read is a warning: the node can still join
/// through its PEERs or be dialed.
fn load_peer_cache(path: &std::path::Path) -> Vec<peer_cache::Entry> {
    match peer_cache::load(path) {
        Ok(entries) => {
            if !entries.is_empty() {
                log::info!(
                    "peer cache {}: {} remembered",
                    path.display(),
                    crate::peer_cache::addresses(entries.len())
                );
            }
            entries
        }
        Err(e) => {
            log::warn!(
                "cannot read peer cache {}: {}; starting without it",
                path.display(),
                crate::wire::describe(&e)
            );
            Vec::new()
        }
    }
}

/// A stopped relay is cut once `--stall-timeout` has passed; the members
/// beyond it, whose announcements it no longer passes on, are taken for
/// down once silent for 3 × keepalive, counted from their last STATUS
/// (up to about half a keepalive before the stop, while lines stream).
/// With a stall timeout that long, they go down first, and `--exit-on-eof`
/// senders give up on them, exit 3, before the ends of the broken path
/// link around it (attack24 N1: a chain at `--stall-timeout 15` with the
/// default keepalive lost 6,000 lines between live members). Said at
/// start, since only the user can choose.
fn warn_stall_against_keepalive(config: &Config) {
    let (stall, keepalive) = (config.stall_timeout, config.keepalive);
    if stall * 2 >= keepalive * 5 {
        log::warn!(
            "--stall-timeout {}s is not well below 3 x --keepalive ({}s): a stopped relay \
             is then cut after the members beyond it are taken for down (silent), and \
             --exit-on-eof senders may give up on those before links form around it; keep \
             --stall-timeout at {}s or less, or raise --keepalive",
            stall.as_secs(),
            (keepalive * 3).as_secs(),
            // Whole seconds under 2.5 keepalives (the option takes seconds).
            (keepalive.as_secs() * 5).saturating_sub(1) / 2
        );
    }
}

/// `--advertise HOST:PORT` as an address, resolved once at start; a name
/// that does not resolve is logged and left out (neighbours then tell the
/// group the address they see us at). Without it, a node listening on one
/// address (not a wildcard) announces that one: the address a neighbour
/// sees it at is where it dials from, which may not be where it listens
/// (attack23 F6: listening on 127.0.0.3, dialing from 127.0.0.1, it was
/// announced at 127.0.0.1, where every member's dial was refused).
fn advertise(config: &Config, listening: Option<SocketAddr>) -> Option<SocketAddr> {
    let Some(peer) = config.advertise.as_ref() else {
        return listening.filter(|addr| !addr.ip().is_unspecified());
    };
    match (peer.host.as_str(), peer.port).to_socket_addrs() {
        Ok(mut addrs) => addrs.next(),
        Err(e) => {
            log::warn!(
                "cannot resolve --advertise {peer}: {}; members will dial the \
                 address our neighbours see",
                crate::wire::describe(&e)
            );
            None
        }
    }
}

/// Nanoseconds since the epoch: where our STATUS frames count from
/// ([`Mesh::count_status_from`]), so a process restarted under the same
/// id announces newer ones than its last life did. (Before protocol
/// version 7 the size of that jump told a restart from the same process;
/// now the life in every STATUS does.) A u64 holds them until the year
/// 2554.
pub fn epoch_nanos() -> u64 {
    let since_epoch = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX / 2)
}

/// Runs a node until it stops: Ctrl-C, stdin EOF under `--exit-on-eof`, or
/// stdout closed. Returns once everything has been flushed and closed.
/// At exit, a stdout thread still writing (a slow reader) finishes the
/// write under way and starts no other: the output ends with a whole
/// line, and what it wrote is counted as printed. Exiting in the middle
/// of its write left half a line (a JSON object cut short) and counted
/// the lines of that write as not printed though they reached stdout
/// (attack21 F2). It is waited for while it moves (a piece of it went out
/// within [`STDOUT_MOVING`]), at most `--stall-timeout`: a 30 KB line read
/// at 8 KB/s takes nearly 4 s, and a second's wait cut it (attack25). A
/// stdout that took nothing for [`STDOUT_MOVING`] is not waited for (a pipe
/// nobody reads), and the log says that its last line is cut.
fn finish_stdout(node: &Node, done: &Receiver<Never>) {
    node.printed.stop.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + node.config.stall_timeout.max(STDOUT_MOVING);
    loop {
        let now = Instant::now();
        let moving = node.printed.moving();
        let wait = match moving && now < deadline {
            true => (deadline - now).min(STDOUT_MOVING / 4),
            // An idle thread ends at once: the router is done with it.
            false => Duration::from_millis(100),
        };
        match done.recv_timeout(wait) {
            Err(crossbeam_channel::RecvTimeoutError::Timeout) if moving && now < deadline => {}
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => break,
            Ok(never) => match never {},
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        }
    }
    if node.printed.mid_line.load(Ordering::Relaxed) {
        log::warn!(
            "stdout stopped taking a line in the middle at exit: its output ends with part \
             of a line"
        );
    }
}

pub fn run(config: Config, shutdown: Arc<Shutdown>) -> Result<Outcome, Error> {
    let security = crate::secure::Security::load(&config).map_err(Error::Keys)?;
    let listener = match config.listen {
        Some(addr) => {
            Some(TcpListener::bind(addr).map_err(|source| Error::Listen { addr, source })?)
        }
        None => None,
    };
    let local = match &listener {
        Some(l) => Some(l.local_addr().map_err(|source| Error::Listen {
            addr: config.listen.expect("listening"),
            source,
        })?),
        None => None,
    };
    match local {
        Some(addr) => log::info!(target: ANNOUNCE, "listening on {addr}"),
        None => log::info!(target: ANNOUNCE, "not listening (--no-listen)"),
    }
    // With a key, the id is the key's: proven by every handshake.
    let id = security
        .as_ref()
        .map_or_else(random_u64, crate::secure::Security::node_id);
    log::info!("this is node {} ({id:016x})", config.name);
    warn_stall_against_keepalive(&config);
    match &security {
        Some(security) => log::info!("{}", security.describe()),
        None => log::warn!(
            "links are not encrypted and anyone who reaches the port can join \
             (--secret-file or --allow make the group private)"
        ),
    }

    let (events_tx, events_rx) = unbounded();
    let (inbound_tx, inbound_rx) = bounded(INBOUND_QUEUE);
    let (stdin_tx, stdin_rx) = bounded(STDIN_QUEUE);
    let (stdout_tx, stdout_rx) = bounded(STDOUT_QUEUE);
    let gate = Arc::new(StdinGate::default());
    let (recycle, spare_buffers) = bounded(SPARE_BUFFERS);
    let threads = Threads::new(shutdown.clone());
    let node = Arc::new(Node {
        listen_port: local.map_or(0, |addr| addr.port()),
        id,
        life: random_u64().max(1),
        started: Instant::now(),
        shutdown: shutdown.clone(),
        threads: threads.clone(),
        events: events_tx,
        inbound: inbound_tx,
        spare_buffers,
        recycle,
        stdin_skipped: AtomicU64::new(0),
        delivered: Default::default(),
        printed: Default::default(),
        security,
        next_conn: AtomicU64::new(1),
        handshakes: AtomicUsize::new(0),
        handshakes_by_ip: Mutex::new(HashMap::new()),
        streams: Mutex::new(HashMap::new()),
        config,
    });

    let (found_tx, found_rx) = bounded(FOUND_QUEUE);
    let mut stdout_done = None;
    let started = (|| {
        stdout_done = Some(stdio::spawn_stdout(&node, stdout_rx)?);
        stdio::spawn_stdin(&node, stdin_tx, gate.clone())?;
        if let Some(listener) = listener {
            acceptor::spawn(&node, listener)?;
        }
        discovery::spawn(&node, found_tx)?;
        dialer::plug::spawn(&node)
    })();
    let dialer = match started {
        Ok(dialer) => dialer,
        Err(e) => {
            shutdown.trigger(Cause::Fatal);
            return Err(Error::Spawn(e));
        }
    };

    let mut mesh = Mesh::new(
        router::mesh_config(&node, advertise(&node.config, local)),
        Instant::now(),
    );
    // A line is acknowledged once stdout took it, not when it was handed
    // to the stdout thread (see `event::PrintedSoFar`).
    mesh.acknowledge_printed_only();
    if let Some(path) = &node.config.peer_cache {
        mesh.learned(Instant::now(), &load_peer_cache(path));
    }
    let wiring = Wiring {
        events: events_rx,
        inbound: inbound_rx,
        stdin: stdin_rx,
        found: found_rx,
        stdout: stdout_tx,
        gate,
        dialer,
    };
    let finished = Router::new(node.clone(), mesh, wiring).run();

    node.shut_all_streams();
    if let Some(addr) = local {
        acceptor::wake(addr);
    }
    let (running, panicked) = threads.join_all(Instant::now() + JOIN_DEADLINE);
    if !running.is_empty() {
        log::debug!("leaving threads blocked at exit: {}", running.join(", "));
    }
    if let Some(done) = stdout_done {
        finish_stdout(&node, &done);
    }
    let handed = node.printed.handed.load(Ordering::Relaxed);
    let written = node.printed.written.load(Ordering::Relaxed);
    if handed > written {
        // Never acknowledged (see `event::PrintedSoFar`): the senders count
        // them as not acknowledged (as lost, after a stdout closed between
        // two writes: `Router::leave_printed_for_good`), and this node
        // says so too.
        let lost = handed - written;
        let why = match shutdown.cause() {
            Some(Cause::StdoutClosed) => "stdout was closed",
            _ if lost == 1 => "stdout did not take it before the node stopped",
            _ => "stdout did not take them before the node stopped",
        };
        log::warn!(
            "{} received {} not printed: {why}",
            crate::books::plural(lost, "message"),
            if lost == 1 { "was" } else { "were" },
        );
    }
    for (level, line) in finished.summary {
        log::log!(level, "{line}");
    }
    if panicked || shutdown.cause() == Some(Cause::Fatal) {
        return Err(Error::Internal);
    }
    log::info!("stopped");
    Ok(finished.outcome)
}
