//! Ports for the nodes a harness starts; the tests use this file too
//! (`tests/it/support.rs`).

use std::net::TcpListener;

/// A port that was free a moment ago, chosen below the range the system
/// takes ports for outgoing connections from (32768-60999 on Linux): a
/// port the kernel handed out for a bind to port 0 could be taken by any
/// outgoing connection (the nodes' dials and probes) before the node that
/// was to listen on it binds it. Each call tries the next port of a
/// sequence that starts at a place of its own per process.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    const LOW: u16 = 20_000;
    const SPAN: u16 = 12_000;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = (std::process::id() % u32::from(SPAN)) as u16;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = LOW + (start + n % SPAN) % SPAN;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
