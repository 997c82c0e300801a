//! The listening socket's thread: accepts connections and starts a
//! [`crate::peer`] for each.
//!
//! `accept` blocks, and nothing portable interrupts it, so at shutdown the
//! node connects to its own listener to wake this thread up.
//!
//! Strangers are bounded here: at most [`handshake_cap`] handshakes at once
//! (256, or 4 x `--max-peers` if more), at most [`HANDSHAKES_PER_IP`] of them
//! from one address; a connection beyond
//! either is closed at once, and the refusal is logged once per address
//! and window (see [`ratelog`]).

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::select;

use crate::event::Direction;
use crate::node::{Node, HANDSHAKES_PER_IP};
use crate::peer;
use crate::ratelog;
use crate::wire::{classify, describe, IoFailure};

pub fn spawn(node: &Arc<Node>, listener: TcpListener) -> io::Result<()> {
    let node_ = node.clone();
    node.threads.spawn("acceptor".to_owned(), move || {
        accept_loop(&node_, &listener)
    })
}

fn accept_loop(node: &Arc<Node>, listener: &TcpListener) {
    let stopping = node.shutdown.stopping();
    loop {
        let accepted = listener.accept();
        if node.shutdown.is_triggered() {
            return;
        }
        match accepted {
            Ok((stream, addr)) => {
                ratelog::flush();
                if let Some(refusal) = refusal(node, addr) {
                    ratelog::warn(refusal.kind, addr.ip(), || refusal.message);
                    continue; // dropping the stream closes it at once
                }
                log::debug!("{addr}: accepted a connection");
                peer::start(node, stream, Direction::In, None);
            }
            Err(e) if classify(&e) == IoFailure::Interrupted => {}
            Err(e) => {
                // Out of file descriptors, most likely: wait instead of spinning.
                log::warn!("cannot accept a connection: {}", describe(&e));
                select! {
                    recv(stopping) -> _ => return,
                    default(Duration::from_millis(100)) => {}
                }
            }
        }
    }
}

/// Why a new connection is closed before its handshake.
struct Refusal {
    /// For the rate-limited log: one line per kind and source, then a count.
    kind: &'static str,
    message: String,
}

/// Each handshake holds a thread for up to HANDSHAKE_TIMEOUT, so a flood of
/// silent connections must not pile them up (the global cap), and one
/// address must not take every slot and lock the others out (the cap per
/// address). Only this thread admits inbound handshakes, so counting and
/// then starting one cannot race with another admission.
fn refusal(node: &Node, addr: SocketAddr) -> Option<Refusal> {
    let pending = node.pending_handshakes();
    if pending >= handshake_cap(node.config.max_peers) {
        return Some(Refusal {
            kind: "refused connections (too many handshakes)",
            message: format!(
                "{addr}: {pending} connections are already in handshake; closing this one \
                 (more like it are counted, not logged, for {}s)",
                ratelog::WINDOW.as_secs()
            ),
        });
    }
    let from_ip = node.pending_handshakes_from(addr.ip());
    if from_ip >= HANDSHAKES_PER_IP {
        let ip = ratelog::describe_source(addr.ip());
        return Some(Refusal {
            kind: "refused connections (too many handshakes from one address)",
            message: format!(
                "{addr}: {from_ip} connections from {ip} are already in handshake, \
                 the most one address may have; closing this one \
                 (more like it are counted, not logged, for {}s)",
                ratelog::WINDOW.as_secs()
            ),
        });
    }
    None
}

/// Handshakes under way at once, from all addresses: generous (a handshake
/// costs a thread for at most 5 s), so that many attacking addresses are
/// needed to fill it, and never below the peers the node takes.
pub fn handshake_cap(max_peers: usize) -> usize {
    (4 * max_peers).max(256)
}

/// Wakes the acceptor blocked in `accept` on `listening`, so that it sees
/// the shutdown.
pub fn wake(listening: SocketAddr) {
    let mut target = listening;
    if target.ip().is_unspecified() {
        target.set_ip(match target {
            SocketAddr::V4(_) => [127, 0, 0, 1].into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    if let Err(e) = TcpStream::connect_timeout(&target, Duration::from_secs(1)) {
        log::debug!("could not wake the acceptor at {target}: {}", describe(&e));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handshake_cap_is_generous_whatever_the_peer_limit() {
        assert_eq!(handshake_cap(1), 256);
        assert_eq!(handshake_cap(64), 256);
        assert_eq!(handshake_cap(1000), 4000);
        assert!(handshake_cap(1) > 8 * HANDSHAKES_PER_IP);
    }
}
