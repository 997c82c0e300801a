//! The command-line PEERs, dialed again after every failure or disconnect
//! with capped exponential backoff and jitter: today's redial policy, in one
//! replaceable piece until the mesh decides what to dial (then the router
//! sends the requests, and this goes).
//!
//! [`spawn_seeds`] starts the connection manager with a [`Plug`] whose
//! targets are PEER indexes, asks it to dial every PEER, and runs a thread
//! that reads what became of each attempt and asks again when
//! [`RedialPlan`] says. A connection gets a [`DialTicket`] as before: the
//! handshake reports a failure on it, the router the end of the peer.
//! [`RedialPlan`] decides, without touching a socket, how long to wait and
//! how loudly to log each failure: one line per attempt, a warning when the
//! failure is news. An address that answers with our own node id is dialed
//! again only after [`ECHO_BACKOFF`].

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{at, bounded, never, select, unbounded, Receiver, Sender};

use super::{resolve, Dialer, Failure, Plug};
use crate::config::PeerAddr;
use crate::node::{random_u64, Node};
use crate::peer::{self, Direction};

/// First delay before dialing again.
pub const BACKOFF_MIN: Duration = Duration::from_millis(250);
/// The delay doubles up to this.
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A connection that lasted this long resets the delay to the minimum.
pub const STABLE: Duration = Duration::from_secs(10);

/// What became of a dialed connection.
#[derive(Debug)]
pub enum DialOutcome {
    /// The handshake failed.
    Failed(String),
    /// The address leads back to this node.
    ItsMe,
    /// The node we reached is no longer connected.
    Ended { lasted: Duration },
}

/// Where the fate of a dialed connection is reported.
pub type DialTicket = Sender<DialOutcome>;

/// How long to wait before dialing again an address that answered with our
/// own node id. Long, because it is most likely ourselves again; not
/// forever, because a real peer may listen there later (a port reused, an
/// address moved).
pub const ECHO_BACKOFF: Duration = Duration::from_secs(300);

/// Starts the connection manager and keeps every command-line PEER dialed.
pub fn spawn_seeds(node: &Arc<Node>) -> io::Result<()> {
    let (attempts_tx, attempts) = unbounded();
    let plug = Seeds {
        node: node.clone(),
        attempts: attempts_tx,
    };
    let dialer = super::spawn(plug, &node.threads, &node.shutdown)?;
    let node_ = node.clone();
    node.threads.spawn("redial".to_owned(), move || {
        redial_loop(&node_, &dialer, &attempts)
    })
}

/// The manager's view of the PEERs: target `i` is `config.peers[i]`.
struct Seeds {
    node: Arc<Node>,
    /// How each attempt ended, for the redial loop.
    attempts: Sender<(usize, Attempt)>,
}

impl Plug for Seeds {
    type Target = usize;

    fn name(&self, i: &usize) -> String {
        self.node.config.peers[*i].to_string()
    }

    fn addrs(&self, i: &usize) -> Result<Vec<SocketAddr>, Failure> {
        resolve(&self.node.config.peers[*i])
    }

    /// Starts the handshake and waits for the connection's fate, as the
    /// dial thread of each PEER did (the connect slot is already free).
    fn connected(&self, stream: TcpStream, i: usize) {
        let (ticket, outcome) = bounded(1);
        peer::start(&self.node, stream, Direction::Out, Some(ticket));
        let outcome = select! {
            recv(outcome) -> outcome => outcome,
            recv(self.node.shutdown.stopping()) -> _ => return,
        };
        let attempt = match outcome {
            // Dropped unanswered: the router is gone, or the connection's
            // threads could not start.
            Err(_) if self.node.shutdown.is_triggered() => return,
            Err(_) => Attempt::Lost,
            Ok(DialOutcome::ItsMe) => Attempt::ItsMe,
            Ok(DialOutcome::Failed(reason)) => Attempt::HandshakeFailed(reason),
            Ok(DialOutcome::Ended { lasted }) => Attempt::Ended { lasted },
        };
        let _ = self.attempts.send((i, attempt));
    }

    fn failed(&self, i: usize, failure: Failure) {
        let attempt = match failure {
            Failure::Unresolvable(why) => Attempt::Unresolvable(why),
            Failure::Unreachable(why) => Attempt::Unreachable(why),
            Failure::NotDialed(_) => Attempt::Lost,
        };
        let _ = self.attempts.send((i, attempt));
    }
}

/// Dials every PEER, then each again when its attempt has ended and its
/// delay has passed.
fn redial_loop(node: &Arc<Node>, dialer: &Dialer<usize>, attempts: &Receiver<(usize, Attempt)>) {
    let peers: &[PeerAddr] = &node.config.peers;
    let stopping = node.shutdown.stopping();
    let mut plans: Vec<RedialPlan> = peers
        .iter()
        .map(|_| RedialPlan::new(random_u64()))
        .collect();
    // (when, which PEER), earliest first.
    let mut due = BinaryHeap::new();
    for i in 0..peers.len() {
        dialer.dial(i);
    }
    loop {
        let timer = due
            .peek()
            .map_or_else(never, |Reverse((when, _)): &Reverse<(Instant, usize)>| {
                at(*when)
            });
        select! {
            recv(attempts) -> attempt => {
                let Ok((i, attempt)) = attempt else { return };
                let redial = plans[i].after(&peers[i], attempt);
                log::log!(redial.level, "{}", redial.line);
                due.push(Reverse((Instant::now() + redial.delay, i)));
            }
            recv(timer) -> _ => {
                if let Some(Reverse((_, i))) = due.pop() {
                    log::debug!("dialing {}", peers[i]);
                    dialer.dial(i);
                }
            }
            recv(stopping) -> _ => return,
        }
    }
}

/// How one attempt to reach a PEER ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The host name did not resolve.
    Unresolvable(String),
    /// No address of it accepted the connection.
    Unreachable(String),
    /// It accepted, but the handshake failed.
    HandshakeFailed(String),
    /// It answered with our own node id.
    ItsMe,
    /// We were connected; that connection has ended.
    Ended { lasted: Duration },
    /// The connection could not be set up on our side.
    Lost,
}

/// What to do after an attempt: wait `delay`, and say so in one line at
/// `level`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redial {
    pub delay: Duration,
    pub level: log::Level,
    pub line: String,
}

/// The dial loop's decisions, apart from its sockets and its clock.
///
/// A failure is a warning (seen under `-q`) when it is news: the first one
/// since the start or since the last connection, or one of another kind
/// than the last (an address that stops resolving). Repeats are info, so a
/// peer that is down for an hour does not fill a quiet log.
pub struct RedialPlan {
    backoff: Backoff,
    /// The kind of the last failure, while failures follow each other.
    failing: Option<std::mem::Discriminant<Attempt>>,
}

impl RedialPlan {
    pub fn new(seed: u64) -> Self {
        RedialPlan {
            backoff: Backoff::new(seed),
            failing: None,
        }
    }

    pub fn after(&mut self, target: &PeerAddr, attempt: Attempt) -> Redial {
        let why = match &attempt {
            Attempt::ItsMe => {
                self.failing = None;
                return Redial {
                    delay: ECHO_BACKOFF,
                    level: log::Level::Info,
                    line: format!(
                        "{target} is this node itself; dialing it again in {}s, \
                         in case a real peer listens there by then",
                        ECHO_BACKOFF.as_secs()
                    ),
                };
            }
            Attempt::Ended { lasted } => {
                if *lasted >= STABLE {
                    self.backoff.reset();
                }
                self.failing = None;
                // The router has logged the peer's end; this is detail.
                let delay = self.backoff.next_delay();
                return Redial {
                    delay,
                    level: log::Level::Debug,
                    line: format!(
                        "connection to {target} ended; dialing again in {:.2}s",
                        delay.as_secs_f64()
                    ),
                };
            }
            Attempt::Unresolvable(e) | Attempt::Unreachable(e) => e.clone(),
            Attempt::HandshakeFailed(e) => format!("{target}: {e}"),
            Attempt::Lost => format!("{target}: the connection could not be set up"),
        };
        let kind = std::mem::discriminant(&attempt);
        let news = self.failing != Some(kind);
        self.failing = Some(kind);
        let delay = self.backoff.next_delay();
        Redial {
            delay,
            level: if news {
                log::Level::Warn
            } else {
                log::Level::Info
            },
            line: format!("{why}; dialing again in {:.2}s", delay.as_secs_f64()),
        }
    }
}

/// Exponential backoff: each delay doubles, up to [`BACKOFF_MAX`], and is
/// spread by ±25% so that nodes that lost the same peer do not all dial it
/// again at the same instant.
pub struct Backoff {
    next: Duration,
    rng: u64,
}

impl Backoff {
    pub fn new(seed: u64) -> Self {
        Backoff {
            next: BACKOFF_MIN,
            rng: seed | 1,
        }
    }

    pub fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }

    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        // xorshift64: plenty for jitter.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let spread = (self.rng % 1000) as f64 / 1000.0; // 0.0 .. 1.0
        base.mul_f64(0.75 + 0.5 * spread)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use log::Level::{Debug, Info, Warn};

    fn target() -> PeerAddr {
        PeerAddr {
            host: "host2".to_owned(),
            port: 7117,
        }
    }

    fn levels(plan: &mut RedialPlan, attempts: &[Attempt]) -> Vec<log::Level> {
        attempts
            .iter()
            .map(|a| plan.after(&target(), a.clone()).level)
            .collect()
    }

    #[test]
    fn the_first_failure_is_a_warning_and_repeats_are_info() {
        let refused = Attempt::Unreachable("cannot connect to host2:7117: refused".into());
        let unknown = Attempt::Unresolvable("cannot resolve host2".into());
        let ended = Attempt::Ended {
            lasted: Duration::from_secs(1),
        };
        let mut plan = RedialPlan::new(1);
        assert_eq!(
            levels(
                &mut plan,
                &[
                    refused.clone(),
                    refused.clone(),
                    refused.clone(),
                    unknown.clone(),
                    unknown,
                    ended,
                    refused
                ]
            ),
            [Warn, Info, Info, Warn, Info, Debug, Warn]
        );
    }

    #[test]
    fn one_line_says_what_failed_and_when_the_next_try_is() {
        let mut plan = RedialPlan::new(1);
        let redial = plan.after(
            &target(),
            Attempt::HandshakeFailed("handshake timed out: no HELLO within 5s".into()),
        );
        assert!(
            redial.line.starts_with(
                "host2:7117: handshake timed out: no HELLO within 5s; dialing again in 0."
            ),
            "{}",
            redial.line
        );
        assert_eq!(redial.level, Warn);
    }

    #[test]
    fn an_echo_is_dialed_again_after_a_long_wait_not_abandoned() {
        let mut plan = RedialPlan::new(1);
        for _ in 0..3 {
            let redial = plan.after(&target(), Attempt::ItsMe);
            assert_eq!(redial.delay, ECHO_BACKOFF);
            assert_eq!(redial.level, Info);
            assert!(
                redial.line.contains("dialing it again in 300s"),
                "{}",
                redial.line
            );
        }
        assert!(ECHO_BACKOFF >= Duration::from_secs(60) * 5);
        // A real peer there later is dialed on the usual schedule.
        let ended = plan.after(
            &target(),
            Attempt::Ended {
                lasted: Duration::from_secs(60),
            },
        );
        assert!(ended.delay <= BACKOFF_MIN.mul_f64(1.25));
    }

    #[test]
    fn delays_double_up_to_the_cap_with_jitter() {
        let mut b = Backoff::new(12345);
        let mut base = BACKOFF_MIN;
        for _ in 0..20 {
            let d = b.next_delay();
            assert!(
                d >= base.mul_f64(0.75) && d <= base.mul_f64(1.25),
                "{d:?} vs {base:?}"
            );
            base = (base * 2).min(BACKOFF_MAX);
        }
        b.reset();
        assert!(b.next_delay() <= BACKOFF_MIN.mul_f64(1.25));
    }

    #[test]
    fn jitter_spreads_the_delays() {
        let delays: std::collections::HashSet<Duration> = (0..10)
            .map(|seed| Backoff::new(seed * 7919).next_delay())
            .collect();
        assert!(delays.len() > 5);
    }
}
