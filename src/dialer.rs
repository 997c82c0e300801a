//! Dialing: one attempt per dial the mesh asks for ([`dial`]), and the
//! pieces a connection manager builds on: [`RedialPlan`] decides, without
//! touching a socket, how long to wait and how loudly to log each failure
//! (one line per attempt, a warning when the failure is news), and
//! [`Backoff`] spreads retries. (The mesh keeps its own backoff per address;
//! the connection manager on branch `edges` replaces this file.)

use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use crate::config::PeerAddr;
use crate::event::Direction;
use crate::mesh::DialTarget;
use crate::node::Node;
use crate::peer;
use crate::wire::describe;

/// How long one connect attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// First delay before dialing again.
pub const BACKOFF_MIN: Duration = Duration::from_millis(250);
/// The delay doubles up to this.
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A connection that lasted this long resets the delay to the minimum.
pub const STABLE: Duration = Duration::from_secs(10);

/// How long to wait before dialing again an address that answered with our
/// own node id. Long, because it is most likely ourselves again; not
/// forever, because a real peer may listen there later (a port reused, an
/// address moved).
pub const ECHO_BACKOFF: Duration = Duration::from_secs(300);

/// Dials `target` once, on a thread of its own: a connection that answers
/// goes to [`peer::start`], which reports what became of it; one that
/// cannot be made is reported as [`Event::DialFailed`](crate::event::Event::DialFailed). Whether and when to
/// dial again is the mesh's decision.
pub fn dial(node: &Arc<Node>, target: DialTarget) -> io::Result<()> {
    let node_ = node.clone();
    let name = match &target {
        DialTarget::Seed(i) => format!("dial-seed-{i}"),
        DialTarget::Addr(addr) => format!("dial-{addr}"),
    };
    node.threads.spawn(name, move || dial_once(&node_, target))
}

fn dial_once(node: &Arc<Node>, target: DialTarget) {
    let attempt = match &target {
        DialTarget::Seed(i) => match node.config.peers.get(*i) {
            Some(peer) => connect(peer),
            None => Err(Attempt::Unresolvable(format!("no PEER number {i}"))),
        },
        DialTarget::Addr(addr) => TcpStream::connect_timeout(addr, CONNECT_TIMEOUT).map_err(|e| {
            Attempt::Unreachable(format!("cannot connect to {addr}: {}", describe(&e)))
        }),
    };
    if node.shutdown.is_triggered() {
        return;
    }
    match attempt {
        Ok(stream) => peer::start(node, stream, Direction::Out, Some(target)),
        Err(Attempt::Unresolvable(reason) | Attempt::Unreachable(reason)) => {
            peer::dial_failed(&node.events, Some(target), reason, false)
        }
        Err(other) => peer::dial_failed(&node.events, Some(target), format!("{other:?}"), false),
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

/// Resolves `target` afresh (its address may have changed) and connects to
/// the first address that answers.
fn connect(target: &PeerAddr) -> Result<TcpStream, Attempt> {
    let addrs = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| {
            Attempt::Unresolvable(format!(
                "cannot resolve {} (for {target}): {}",
                target.host,
                describe(&e)
            ))
        })?;
    let mut last = format!("{} has no address", target.host);
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = describe(&e),
        }
    }
    Err(Attempt::Unreachable(format!(
        "cannot connect to {target}: {last}"
    )))
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
