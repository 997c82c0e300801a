//! The listening socket's thread: accepts connections and starts a
//! [`peer`](crate::peer) for each.
//!
//! `accept` blocks, and nothing portable interrupts it, so at shutdown the
//! node connects to its own listener to wake this thread up.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::select;

use crate::node::Node;
use crate::peer::{self, Direction};
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
                // Each handshake holds a thread for up to HANDSHAKE_TIMEOUT;
                // a flood of silent connections must not pile them up.
                let pending = node.pending_handshakes();
                if pending >= node.config.max_peers {
                    log::warn!(
                        "{addr}: {pending} connections are already in handshake; closing this one"
                    );
                    continue;
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
