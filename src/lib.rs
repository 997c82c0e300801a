//! peercat: a peer-to-peer broadcast pipe for a group. A node joins by
//! dialing any member; the nodes form a mesh, and each line of a node's
//! stdin reaches every member once, in order per sender, relayed along the
//! mesh; every message a node receives is printed on its stdout.
//!
//! The design is blocking `std::net` with a thread per connection. Threads
//! share no mutable state except through channels, the per-peer outboxes,
//! and a few guarded registries (each says why it needs its lock). The
//! group's logic is a pure state machine ([`mesh`]) that the router drives.
//!
//! ```text
//!            stdin                                             stdout
//!              |                                                  ^
//!        [stdin thread] --chunks--> +----------+ --output--> [stdout thread]
//!                                   |  router  |
//!   [acceptor] --+                  | +------+ | --push--> outbox --> [writer] --> socket
//!                +--> [reader] ---> | | mesh | | --push--> outbox --> [writer] --> socket
//!   [dialer]  ---+   handshake,     | +------+ |
//!       ^            then frames -> | (peer    |
//!       +------------- dial -------- |  table)  |
//!   socket ---------> [reader] ---> +----------+
//! ```
//!
//! Data in: socket -> reader -> router -> mesh (de-duplicate, order, relay)
//! -> stdout, and relayed copies -> other peers' outboxes. Data out: stdin ->
//! router -> mesh (numbered, cached) -> each neighbour's outbox -> writer ->
//! socket. In a private group (`--secret-file`, `--allow`) each writer
//! encrypts and each reader decrypts its own connection's bytes (the router
//! and the outboxes see only plaintext frames, shared by every peer). The
//! router lets the stdin thread read only while a peer is up, a member is
//! known, and the end-to-end window has room. A new peer: acceptor or
//! dialer -> reader (in a private group the Noise handshake, then HELLOs)
//! -> router admits it (ACCEPT) or refuses it
//! (PEERS, BYE) -> up once the other side's ACCEPT arrives -> a neighbour of
//! the mesh, which exchanges STATUS with it. Members acknowledge in their
//! STATUS the lines their stdout took (the stdout thread reports what it
//! wrote out, `event::PrintedSoFar`, in steps of 4 KiB of lines while
//! stdout reads slowly, `stdio::Printer`, a longer line in pieces of 4 KiB
//! that each count as stdout moving, `stdio::Pieces`); a line over a neighbour's
//! `--max-frame` is left out for it, a TOO_BIG in its place, and it reports
//! the gap at once (`Mesh::too_big`); a STATUS that only acknowledges goes
//! up the senders' trees instead of flooding (`Mesh::send_status`); the
//! mesh keeps the books per member and the router logs
//! them at exit (`--exit-on-eof`: exit 3 if a member missed a line; a node
//! leaving at the end of its stdin first prints what is on its way to it
//! (at most 2 s, or `--stall-timeout` while a member still sends,
//! `Mesh::members_sending`), then stops printing, and once stdout took
//! what it was handed (at most 1 s, or `--stall-timeout` while stdout
//! still moves) its leaving STATUS acknowledges exactly that,
//! finally, `mesh::leave`; lines it did not print are reported as gaps;
//! once it prints no more, it reads its links at once, not at its
//! stdout's pace, `Router::next_step`; with its stdout stuck, or behind
//! (its links held back for `--stall-timeout` since stdin ended) while
//! its lines wait for acknowledgements, it goes on to leave without
//! waiting for them, `Router::check_eof`).
//! What a node holds of other senders' lines, what it queues for each
//! neighbour and its repair answers are bounded node-wide
//! (`mesh::memory_budget`, `Router::queue_has_room`, `Mesh::repair_room`),
//! so a stranger's invented senders cannot take its memory.
//! A member that acknowledges none of an origin's lines, nor more of any
//! other origin's, for 2 x `--stall-timeout` stops holding that origin
//! back (`Mesh::find_stalled`); a member's STATUS showing more lines
//! printed also keeps its links from being cut as stalled
//! (`Action::Reading` -> `Outbox::progress_seen`). A node whose stdout
//! printed nothing for `--stall-timeout` while lines wait says so in its
//! STATUS (`mesh::FLAG_STUCK`), and its neighbours cut it
//! (`Action::Cut` -> `Outbox::cut`). A member back after it was taken for
//! down is told which of its lines each sender no longer keeps (unkept
//! entries, `mesh::lost`); a member restarted under the same `--key` is
//! told from its last life by the `life` in its STATUS and MSG frames
//! (a random number per process): each sender keeps
//! books per life and forgets where its lines stood (`Mesh::new_life`),
//! and lines of another life than the member's are dropped
//! (`Origin::of_life`);
//! two processes running at once under one id find each other and count
//! no delivery as certain (`Mesh::id_conflict`). A node woken long after
//! its deadline, or whose turn took over a second (stopped), reads its
//! neighbours for half a second before more stdin
//! (`router::RESUMED_READS`). A member whose stdout takes part of a long
//! line says so (`mesh::FLAG_PRINTING`), so its senders wait for it, and
//! to every neighbour now and then (`Mesh::printing_to_all`), so that none
//! whose frames wait behind its stdout cuts it.
//! Ctrl-C: shutdown trigger -> router waits (at most 2 s) for our lines to be
//! acknowledged -> stops printing, lets stdout take what it was handed (at
//! most 1 s) -> tells the group it leaves, with acknowledgements of exactly
//! what it printed, closes every
//! peer politely (flush, PING, BYE, FIN) -> main shuts down every socket
//! still open -> threads joined; a stdout thread still writing finishes
//! its write under way while it moves, at most `--stall-timeout`
//! (`node::finish_stdout`).
//!
//! # Layout
//! - [`config`]: the command line, parsed and validated into a `Config`.
//! - [`error`]: the errors that end a node.
//! - [`event`]: the types threads hand each other (connection ids, peer
//!   info, endings, router events and output), low in the
//!   layering so that no queue imports the thread it feeds.
//! - [`frame`]: frames and their pure codec; `PROTOCOL.md` is its prose twin.
//! - [`wire`]: read buffers, vectored writes, and sorting socket errors.
//! - [`secure`]: private groups: keys, the Noise handshake, the encrypted
//!   record layer, and the link halves the connection threads read and
//!   write through (plaintext or encrypted).
//! - [`handshake`]: the HELLO exchange under a deadline.
//! - [`acceptor`]: inbound connections.
//! - [`dialer`]: the connection manager: dials the targets the mesh asks
//!   for, a few at a time; and the probe of a member whose link ended
//!   without a goodbye (its address refusing: it is gone).
//! - [`peer`]: one connection's reader and writer threads.
//! - [`discovery`]: `--discover`, members found by UDP multicast beacons.
//! - [`peer_cache`]: `--peer-cache`, known members' addresses in a file.
//! - [`outbox`]: one peer's send queue, its delivery ledger, and the flow
//!   control built on it.
//! - [`delivered`]: per origin, what the router has delivered, so that
//!   readers drop duplicate copies before handing them over (the first of
//!   a run still goes to the mesh, which prunes its sender).
//! - [`mesh`]: the pure mesh state machine: relay along a broadcast tree
//!   per origin (PRUNE, GRAFT) with de-duplication and order, membership (a capped member table), dialing policy, end-to-end
//!   flow control.
//! - [`router`]: the thread that owns the peer table and drives the mesh.
//! - [`books`]: what each member got; the exit summary and `--stats` lines.
//! - [`stdio`]: stdin lines into MSG frames (a run of lines each, the lines
//!   as they are, each ending in its newline); messages onto stdout (under
//!   `-f plain` a run's lines written as they came).
//! - [`output`]: the `plain`, `tagged` and `json` stdout formats.
//! - [`logging`]: the log sink; a queue and a `log` thread, so logging never blocks.
//! - [`ratelog`]: warnings a stranger can trigger, rate-limited per source.
//! - [`shutdown`]: one trigger, many listeners.
//! - [`threads`]: named threads, all joined, a panic in one stops the node.
//! - [`node`]: what the threads share, and `run`, which ties them together.

pub mod acceptor;
pub mod books;
pub mod config;
pub mod delivered;
pub mod dialer;
pub mod discovery;
pub mod error;
pub mod event;
pub mod frame;
pub mod handshake;
pub mod logging;
pub mod mesh;
pub mod node;
pub mod outbox;
pub mod output;
pub mod peer;
pub mod peer_cache;
pub mod ratelog;
pub mod router;
pub mod secure;
pub mod shutdown;
pub mod stdio;
pub mod threads;
pub mod wire;

pub use config::Config;
pub use error::Error;
pub use node::run;
