//! The connection manager: dials what it is asked to, a few at a time.
//!
//! The mesh decides what to dial; the router sends its requests with
//! [`Dialer::dial`] ([`plug::spawn`] starts the manager for the node). The manager thread runs at most [`MAX_DIALS_AT_ONCE`]
//! connects at once, each on a short-lived thread, and queues the rest (at
//! most [`MAX_DIALS_QUEUED`]); a request for a target already queued or
//! connecting is merged with it. A target is resolved afresh at every
//! attempt (a host name's address may change). A connected socket goes to
//! [`Plug::connected`], which hands it to the peer threads exactly as an
//! accepted one (the handshake and the router report the rest: up, refused
//! with alternatives, ourselves); a connect that fails goes to
//! [`Plug::failed`] with the reason.
//!
//! [`probe`] is the other kind of connect: one try per address of a member
//! whose link ended without a goodbye, to learn whether anything still
//! listens there (the router runs it on a thread of its own).
//!
//! The manager knows targets only through its [`Plug`], so the same code
//! serves the mesh's `DialTarget` and the command-line loop's PEER index,
//! and tests drive it without a node.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::hash::Hash;
use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{select, unbounded, Receiver, Sender};

use crate::config::PeerAddr;
use crate::mesh::ProbeResult;
use crate::shutdown::Shutdown;
use crate::threads::Threads;
use crate::wire::describe;

pub mod plug;

/// How long one connect (to one address of a target) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Connects under way at once; more wait in the queue. A few are enough to
/// join a mesh quickly, and few enough that a list of dead addresses does
/// not cost a thread each.
pub const MAX_DIALS_AT_ONCE: usize = 8;
/// Requests waiting for a free slot; beyond this a request fails at once.
pub const MAX_DIALS_QUEUED: usize = 1024;

/// What the manager needs to know about targets, and where results go.
pub trait Plug: Send + Sync + 'static {
    type Target: Clone + Eq + Hash + fmt::Debug + Send + 'static;
    /// The target for log lines and thread names.
    fn name(&self, target: &Self::Target) -> String;
    /// Its addresses, resolved now.
    fn addrs(&self, target: &Self::Target) -> Result<Vec<SocketAddr>, Failure>;
    /// A connected socket: start the handshake. Called once the connect's
    /// slot is free again, so it may take its time.
    fn connected(&self, stream: TcpStream, target: Self::Target);
    /// The target could not be connected to (or was not dialed at all).
    fn failed(&self, target: Self::Target, failure: Failure);
}

/// Why a dial did not get as far as a connected socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The host name did not resolve.
    Unresolvable(String),
    /// No address of it accepted the connection.
    Unreachable(String),
    /// Not tried: the queue was full, or no thread could be started.
    NotDialed(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Unresolvable(why) | Failure::Unreachable(why) | Failure::NotDialed(why) => {
                f.write_str(why)
            }
        }
    }
}

/// Resolves a command-line PEER afresh.
pub fn resolve(peer: &PeerAddr) -> Result<Vec<SocketAddr>, Failure> {
    match (peer.host.as_str(), peer.port).to_socket_addrs() {
        Ok(addrs) => Ok(addrs.collect()),
        Err(e) => Err(Failure::Unresolvable(format!(
            "cannot resolve {} (for {peer}): {}",
            peer.host,
            describe(&e)
        ))),
    }
}

/// The handle that asks the manager to dial. Cheap to clone; the manager
/// stops when the node stops or when every handle is dropped.
pub struct Dialer<T> {
    requests: Sender<T>,
}

impl<T> Clone for Dialer<T> {
    fn clone(&self) -> Self {
        Dialer {
            requests: self.requests.clone(),
        }
    }
}

impl<T> Dialer<T> {
    /// Asks for `target` to be dialed; never blocks.
    pub fn dial(&self, target: T) {
        let _ = self.requests.send(target);
    }
}

/// Starts a connection manager (the thread `dialer`).
pub fn spawn<P: Plug>(
    plug: P,
    threads: &Arc<Threads>,
    shutdown: &Arc<Shutdown>,
) -> io::Result<Dialer<P::Target>> {
    let (requests, incoming) = unbounded();
    let manager = Manager {
        plug: Arc::new(plug),
        threads: threads.clone(),
        shutdown: shutdown.clone(),
    };
    threads.spawn("dialer".to_owned(), move || manager.run(&incoming))?;
    Ok(Dialer { requests })
}

struct Manager<P> {
    plug: Arc<P>,
    threads: Arc<Threads>,
    shutdown: Arc<Shutdown>,
}

impl<P: Plug> Manager<P> {
    fn run(&self, incoming: &Receiver<P::Target>) {
        let stopping = self.shutdown.stopping();
        let (done_tx, done) = unbounded();
        let mut queue = Queue::default();
        loop {
            let start = select! {
                recv(incoming) -> target => match target {
                    Ok(target) => self.admit(&mut queue, target),
                    Err(_) => return,
                },
                recv(done) -> target => queue.finished(&target.expect("we hold a sender")),
                recv(stopping) -> _ => return,
            };
            if let Some(target) = start {
                if let Err(e) = self.start(target.clone(), &done_tx) {
                    let _ = done_tx.send(target.clone());
                    let why = format!("no thread to dial from: {}", describe(&e));
                    self.plug.failed(target, Failure::NotDialed(why));
                }
            }
        }
    }

    fn admit(&self, queue: &mut Queue<P::Target>, target: P::Target) -> Option<P::Target> {
        match queue.request(target.clone()) {
            Admission::Start => Some(target),
            Admission::Queued | Admission::Merged => None,
            Admission::Full => {
                let why = format!("not dialed: {MAX_DIALS_QUEUED} dials already wait");
                self.plug.failed(target, Failure::NotDialed(why));
                None
            }
        }
    }

    fn start(&self, target: P::Target, done: &Sender<P::Target>) -> io::Result<()> {
        let plug = self.plug.clone();
        let shutdown = self.shutdown.clone();
        let done = done.clone();
        let name = format!("dial-{}", plug.name(&target));
        self.threads.spawn(name, move || {
            log::debug!("dialing {}", plug.name(&target));
            let result = connect(&*plug, &target);
            let _ = done.send(target.clone());
            match result {
                Ok(_) if shutdown.is_triggered() => {}
                Ok(stream) => plug.connected(stream, target),
                Err(failure) => plug.failed(target, failure),
            }
        })
    }
}

/// Connects to the first of the target's addresses that answers.
fn connect<P: Plug>(plug: &P, target: &P::Target) -> Result<TcpStream, Failure> {
    let mut last = "no address".to_owned();
    for addr in plug.addrs(target)? {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = describe(&e),
        }
    }
    Err(Failure::Unreachable(format!(
        "cannot connect to {}: {last}",
        plug.name(target)
    )))
}

/// How long a probe's connect (to one address) may take: on a LAN or
/// loopback a refusal comes back in well under a millisecond; a link cut
/// on the way answers nothing, and then the probe says nothing.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Probes a member whose link ended without a goodbye: one connect to each
/// address, closed again at once (no HELLO: the far side logs a failed
/// handshake if a node listens there). Blocks up to [`PROBE_TIMEOUT`] per
/// address: run it on a thread of its own. Anything but a refusal is
/// tried once more after [`PROBE_AGAIN`]: a process killed is torn down
/// socket by socket, and its listener may still take a connection just
/// after the link to us closed.
pub fn probe(addrs: &[SocketAddr], timeout: Duration) -> ProbeResult {
    match probe_once(addrs, timeout) {
        ProbeResult::Refused => ProbeResult::Refused,
        _ => {
            std::thread::sleep(PROBE_AGAIN);
            probe_once(addrs, timeout)
        }
    }
}

/// How long a probe that got no refusal waits before its second try.
pub const PROBE_AGAIN: Duration = Duration::from_millis(250);

fn probe_once(addrs: &[SocketAddr], timeout: Duration) -> ProbeResult {
    let mut refused = !addrs.is_empty();
    for addr in addrs {
        match TcpStream::connect_timeout(addr, timeout) {
            Ok(_) => return ProbeResult::Answered,
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
            Err(_) => refused = false,
        }
    }
    if refused {
        ProbeResult::Refused
    } else {
        ProbeResult::NoAnswer
    }
}

/// What [`Queue::request`] did with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Start it now.
    Start,
    /// It waits for a free slot.
    Queued,
    /// The same target is already queued or connecting: one result serves both.
    Merged,
    /// The queue is full: it is not dialed.
    Full,
}

/// The manager's bookkeeping, apart from its threads: which targets are
/// connecting, which wait, and which starts next.
pub struct Queue<T> {
    /// Connecting or waiting.
    known: HashSet<T>,
    waiting: VecDeque<T>,
    running: usize,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Queue {
            known: HashSet::new(),
            waiting: VecDeque::new(),
            running: 0,
        }
    }
}

impl<T: Clone + Eq + Hash> Queue<T> {
    pub fn request(&mut self, target: T) -> Admission {
        if self.known.contains(&target) {
            return Admission::Merged;
        }
        if self.running < MAX_DIALS_AT_ONCE {
            self.known.insert(target);
            self.running += 1;
            return Admission::Start;
        }
        if self.waiting.len() >= MAX_DIALS_QUEUED {
            return Admission::Full;
        }
        self.known.insert(target.clone());
        self.waiting.push_back(target);
        Admission::Queued
    }

    /// `target`'s connect is over; returns the target to start in its slot.
    pub fn finished(&mut self, target: &T) -> Option<T> {
        self.known.remove(target);
        self.running = self.running.saturating_sub(1);
        let next = self.waiting.pop_front()?;
        self.running += 1;
        Some(next)
    }

    pub fn running(&self) -> usize {
        self.running
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::time::Instant;

    use crate::shutdown::Cause;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn at_most_eight_connect_at_once_and_the_rest_wait_in_order() {
        let mut q = Queue::default();
        for port in 1..=8 {
            assert_eq!(q.request(port), Admission::Start);
        }
        assert_eq!(q.request(9), Admission::Queued);
        assert_eq!(q.request(10), Admission::Queued);
        assert_eq!(q.running(), MAX_DIALS_AT_ONCE);
        assert_eq!(q.finished(&3), Some(9));
        assert_eq!(q.finished(&1), Some(10));
        assert_eq!(q.finished(&2), None);
        assert_eq!(q.running(), 7);
    }

    #[test]
    fn a_target_already_connecting_or_waiting_is_merged() {
        let mut q = Queue::default();
        assert_eq!(q.request(0), Admission::Start);
        assert_eq!(q.request(0), Admission::Merged);
        for port in 1..=7 {
            q.request(port);
        }
        assert_eq!(q.request(50), Admission::Queued);
        assert_eq!(q.request(50), Admission::Merged);
        q.finished(&0);
        assert_eq!(
            q.request(0),
            Admission::Queued,
            "asked again after it ended"
        );
    }

    #[test]
    fn the_queue_is_bounded() {
        let mut q = Queue::default();
        for port in 0..MAX_DIALS_AT_ONCE + MAX_DIALS_QUEUED {
            assert_ne!(q.request(port), Admission::Full);
        }
        assert_eq!(q.request(usize::MAX), Admission::Full);
    }

    /// Targets are addresses or names; results come back to the test.
    struct TestPlug {
        connected: Sender<(TcpStream, String)>,
        failed: Sender<(String, Failure)>,
    }

    impl Plug for TestPlug {
        type Target = String;
        fn name(&self, target: &String) -> String {
            target.clone()
        }
        fn addrs(&self, target: &String) -> Result<Vec<SocketAddr>, Failure> {
            match target.parse() {
                Ok(addr) => Ok(vec![addr]),
                Err(_) => Err(Failure::Unresolvable(format!("cannot resolve {target}"))),
            }
        }
        fn connected(&self, stream: TcpStream, target: String) {
            let _ = self.connected.send((stream, target));
        }
        fn failed(&self, target: String, failure: Failure) {
            let _ = self.failed.send((target, failure));
        }
    }

    struct Harness {
        dialer: Dialer<String>,
        connected: Receiver<(TcpStream, String)>,
        failed: Receiver<(String, Failure)>,
        shutdown: Arc<Shutdown>,
        threads: Arc<Threads>,
    }

    impl Harness {
        fn new() -> Harness {
            let shutdown = Arc::new(Shutdown::default());
            let threads = Threads::new(shutdown.clone());
            let (connected_tx, connected) = unbounded();
            let (failed_tx, failed) = unbounded();
            let plug = TestPlug {
                connected: connected_tx,
                failed: failed_tx,
            };
            let dialer = spawn(plug, &threads, &shutdown).unwrap();
            Harness {
                dialer,
                connected,
                failed,
                shutdown,
                threads,
            }
        }
    }

    impl Drop for Harness {
        fn drop(&mut self) {
            self.shutdown.trigger(Cause::Signal);
            // A thread may still be returning; a panic in one shows as Fatal.
            let (_, panicked) = self.threads.join_all(Instant::now() + DEADLINE);
            if !std::thread::panicking() {
                assert!(!panicked && self.shutdown.cause() == Some(Cause::Signal));
            }
        }
    }

    const DEADLINE: Duration = Duration::from_secs(10);

    #[test]
    fn a_connected_socket_is_handed_off_with_its_target() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = listener.local_addr().unwrap().to_string();
        let h = Harness::new();
        h.dialer.dial(target.clone());
        let (stream, got) = h.connected.recv_timeout(DEADLINE).unwrap();
        assert_eq!(got, target);
        assert_eq!(stream.peer_addr().unwrap().to_string(), target);
        assert!(h.failed.is_empty());
    }

    #[test]
    fn more_dials_than_slots_all_complete() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let h = Harness::new();
        // Distinct targets for one listener: 127.0.0.1, 127.0.0.2, ...
        let targets: Vec<String> = (1..=3 * MAX_DIALS_AT_ONCE as u8)
            .map(|i| format!("127.0.0.{i}:{port}"))
            .collect();
        for t in &targets {
            h.dialer.dial(t.clone());
        }
        let mut got = Vec::new();
        while got.len() < targets.len() {
            select! {
                recv(h.connected) -> c => got.push(c.unwrap().1),
                recv(h.failed) -> f => got.push(f.unwrap().0),
                default(DEADLINE) => panic!("only {} of {} dials ended", got.len(), targets.len()),
            }
        }
        got.sort();
        let mut want = targets;
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn a_closed_port_and_a_bad_name_are_reported_with_the_reason() {
        // A port nobody listens on: bind, learn it, close.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let h = Harness::new();
        h.dialer.dial(addr(port).to_string());
        h.dialer.dial("nowhere".to_owned());
        let mut got: Vec<_> = (0..2)
            .map(|_| h.failed.recv_timeout(DEADLINE).unwrap())
            .collect();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        match &got[0].1 {
            Failure::Unreachable(why) => {
                assert!(why.starts_with(&format!("cannot connect to 127.0.0.1:{port}: ")))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            got[1],
            (
                "nowhere".to_owned(),
                Failure::Unresolvable("cannot resolve nowhere".to_owned())
            )
        );
        assert!(h.connected.is_empty());
    }

    #[test]
    fn a_probe_tells_a_closed_port_from_a_listening_one() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap();
        let closed = addr(
            TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port(),
        );
        assert_eq!(probe(&[closed], PROBE_TIMEOUT), ProbeResult::Refused);
        assert_eq!(probe(&[closed, open], PROBE_TIMEOUT), ProbeResult::Answered);
        assert_eq!(probe(&[], PROBE_TIMEOUT), ProbeResult::NoAnswer);
    }

    /// A killed process's listener may outlive the link that told us it
    /// died by a moment: it takes the first try, and refuses the second.
    #[test]
    fn a_probe_tries_again_once_what_did_not_refuse() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let at = listener.local_addr().unwrap();
        let closer = std::thread::spawn(move || {
            std::thread::sleep(PROBE_AGAIN / 5);
            drop(listener);
        });
        assert_eq!(probe(&[at], PROBE_TIMEOUT), ProbeResult::Refused);
        closer.join().unwrap();
    }

    #[test]
    fn a_peer_that_does_not_resolve_says_so() {
        let peer = PeerAddr {
            host: "no-such-host.invalid".to_owned(),
            port: 7117,
        };
        match resolve(&peer) {
            Err(Failure::Unresolvable(why)) => assert!(
                why.starts_with(
                    "cannot resolve no-such-host.invalid (for no-such-host.invalid:7117): "
                ),
                "{why}"
            ),
            other => panic!("{other:?}"),
        }
    }
}
