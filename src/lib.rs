//! peercat: a peer-to-peer broadcast pipe. Every node listens for peers and
//! may dial peers; each line of a node's stdin goes to all its peers as one
//! message, and every message a node receives is printed on its stdout.
//!
//! The design is blocking `std::net` with a thread per connection. Threads
//! share no mutable state except through channels, the per-peer outboxes,
//! and a few guarded registries (each says why it needs its lock).
//!
//! ```text
//!            stdin                                             stdout
//!              |                                                  ^
//!        [stdin thread] --chunks--> +----------+ --output--> [stdout thread]
//!                                   |          |
//!   [acceptor] --+                  |  router  | --push--> outbox --> [writer] --> socket
//!                +--> [reader] ---> |  (owns   | --push--> outbox --> [writer] --> socket
//!   [dialer]  ---+   handshake,     | the peer |
//!                    then frames -> |  table)  |
//!   socket ---------> [reader] ---> +----------+
//! ```
//!
//! Data in: socket -> reader -> router -> stdout. Data out: stdin -> router ->
//! each peer's outbox -> writer -> socket; the router lets the stdin thread
//! read only while some peer can take a line. A new peer: acceptor or dialer
//! -> reader (HELLOs) -> router admits it (ACCEPT) or refuses it (BYE) -> up
//! once the other side's ACCEPT arrives. Delivery is confirmed by PONGs to
//! PINGs sent after the messages; the router keeps the books per peer and
//! logs them at exit (`--exit-on-eof`: exit 3 if anyone missed a line).
//! Ctrl-C: shutdown trigger -> router closes every peer politely (flush,
//! PING, BYE, FIN) -> main shuts down every socket still open -> threads
//! joined.
//!
//! # Layout
//! - [`config`]: the command line, parsed and validated into a `Config`.
//! - [`error`]: the errors that end a node.
//! - [`frame`]: frames and their pure codec; `PROTOCOL.md` is its prose twin.
//! - [`wire`]: read buffers, vectored writes, and sorting socket errors.
//! - [`handshake`]: the HELLO exchange under a deadline.
//! - [`acceptor`]: inbound connections.
//! - [`dialer`]: the connection manager: dials targets on request, a few at
//!   a time; `dialer::redial` keeps the command-line PEERs dialed.
//! - [`peer`]: one connection's reader and writer threads.
//! - [`discovery`]: `--discover`, members found by UDP multicast beacons.
//! - [`peer_cache`]: `--peer-cache`, known members' addresses in a file.
//! - [`outbox`]: one peer's send queue, its delivery ledger, and the flow
//!   control built on it.
//! - [`router`]: the thread that owns the peer table and routes every frame.
//! - [`books`]: what each peer got; the exit summary and `--stats` lines.
//! - [`stdio`]: stdin lines into message frames; messages onto stdout.
//! - [`output`]: the `plain`, `tagged` and `json` stdout formats.
//! - [`logging`]: the log sink; a queue and a `log` thread, so logging never blocks.
//! - [`ratelog`]: warnings a stranger can trigger, rate-limited per source.
//! - [`shutdown`]: one trigger, many listeners.
//! - [`threads`]: named threads, all joined, a panic in one stops the node.
//! - [`node`]: what the threads share, and `run`, which ties them together.

pub mod acceptor;
pub mod books;
pub mod config;
pub mod dialer;
pub mod discovery;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod logging;
pub mod node;
pub mod outbox;
pub mod output;
pub mod peer;
pub mod peer_cache;
pub mod ratelog;
pub mod router;
pub mod shutdown;
pub mod stdio;
pub mod threads;
pub mod wire;

pub use config::Config;
pub use error::Error;
pub use node::run;
