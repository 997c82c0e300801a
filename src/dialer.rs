//! Dialing one PEER address, and dialing it again after every failure or
//! disconnect, with capped exponential backoff and jitter.
//!
//! Each PEER gets a thread. After a successful connect it hands the socket to
//! [`peer::start`] with a [`DialTicket`], and waits: the connection reports
//! a failed handshake on the ticket, and the router reports when the node it
//! reached is no longer connected (over this connection or any other).

use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{bounded, select, Sender};

use crate::config::PeerAddr;
use crate::node::{random_u64, Node};
use crate::peer::{self, Direction};
use crate::wire::describe;

/// How long one connect attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
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

pub fn spawn(node: &Arc<Node>, target: PeerAddr) -> io::Result<()> {
    let node_ = node.clone();
    node.threads
        .spawn(format!("dial-{target}"), move || dial_loop(&node_, &target))
}

fn dial_loop(node: &Arc<Node>, target: &PeerAddr) {
    let stopping = node.shutdown.stopping();
    let mut backoff = Backoff::new(random_u64());
    loop {
        log::debug!("dialing {target}");
        let why = match connect(target) {
            Err(e) => format!("cannot connect to {target}: {e}"),
            Ok(stream) => {
                let (ticket, outcome) = bounded(1);
                peer::start(node, stream, Direction::Out, Some(ticket));
                let outcome = select! {
                    recv(outcome) -> outcome => outcome,
                    recv(stopping) -> _ => return,
                };
                match outcome {
                    // Dropped unanswered: the router is gone, or the
                    // connection's threads could not start.
                    Err(_) if node.shutdown.is_triggered() => return,
                    Err(_) => format!("{target}: the connection could not be set up"),
                    Ok(DialOutcome::ItsMe) => {
                        log::info!("{target} is this node itself; not dialing it again");
                        return;
                    }
                    Ok(DialOutcome::Failed(reason)) => format!("{target}: {reason}"),
                    Ok(DialOutcome::Ended { lasted }) => {
                        if lasted >= STABLE {
                            backoff.reset();
                        }
                        format!("connection to {target} ended")
                    }
                }
            }
        };
        let delay = backoff.next_delay();
        log::info!("{why}; dialing again in {:.2}s", delay.as_secs_f64());
        select! {
            recv(stopping) -> _ => return,
            default(delay) => {}
        }
    }
}

/// Resolves `target` afresh (its address may have changed) and connects to
/// the first address that answers.
fn connect(target: &PeerAddr) -> Result<TcpStream, String> {
    let addrs = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {}", target.host, describe(&e)))?;
    let mut last = format!("{} has no address", target.host);
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = describe(&e),
        }
    }
    Err(last)
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
