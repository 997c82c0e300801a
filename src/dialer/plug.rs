//! The node's [`Plug`]: targets are the mesh's [`DialTarget`]s; a connected
//! socket starts a peer that knows what was dialed (the router reports how
//! it ended to the mesh), a failed connect goes to the router as
//! [`Event::DialFailed`](crate::event::Event::DialFailed).

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use super::{resolve, Dialer, Failure, Plug};
use crate::event::{DialFailure, Direction};
use crate::mesh::DialTarget;
use crate::node::Node;
use crate::peer;

/// Starts the connection manager for `node`.
pub fn spawn(node: &Arc<Node>) -> io::Result<Dialer<DialTarget>> {
    super::spawn(
        MeshPlug { node: node.clone() },
        &node.threads,
        &node.shutdown,
    )
}

struct MeshPlug {
    node: Arc<Node>,
}

impl Plug for MeshPlug {
    type Target = DialTarget;

    fn name(&self, target: &DialTarget) -> String {
        match target {
            DialTarget::Seed(i) => self
                .node
                .config
                .peers
                .get(*i)
                .map_or_else(|| format!("PEER {i}"), |p| p.to_string()),
            DialTarget::Addr(addr) => addr.to_string(),
        }
    }

    fn addrs(&self, target: &DialTarget) -> Result<Vec<SocketAddr>, Failure> {
        match target {
            DialTarget::Seed(i) => match self.node.config.peers.get(*i) {
                Some(peer) => resolve(peer),
                None => Err(Failure::NotDialed(format!("there is no PEER {i}"))),
            },
            DialTarget::Addr(addr) => Ok(vec![*addr]),
        }
    }

    fn connected(&self, stream: TcpStream, target: DialTarget) {
        peer::start(&self.node, stream, Direction::Out, Some(target));
    }

    fn failed(&self, target: DialTarget, failure: Failure) {
        peer::dial_failed(
            &self.node.events,
            Some(target),
            failure.to_string(),
            DialFailure::Failed,
        );
    }
}
