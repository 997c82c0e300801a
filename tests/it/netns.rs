//! A pulled cable, for real: two hosts made of network namespaces joined by
//! a veth pair, and the link taken down under a live connection. No FIN, no
//! reset, nothing: only keepalive can tell. Needs root and iproute2, so it
//! is `#[ignore]`d in a plain `cargo test` (which lists it as ignored) and
//! run by `.ci/run` as root with `cargo test --test it -- --ignored netns`;
//! there, missing namespaces fail it.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::node;

/// Two namespaces, `a` at 10.77.0.1 and `b` at 10.77.0.2, removed on drop.
struct TwoHosts {
    a: String,
    b: String,
}

fn ip(args: &[&str]) -> bool {
    try_ip(args).is_ok()
}

/// Runs `ip`; on failure, what went wrong, for the test's message.
fn try_ip(args: &[&str]) -> Result<(), String> {
    match Command::new("ip").args(args).output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("cannot run `ip` (install iproute2): {e}")),
    }
}

impl TwoHosts {
    fn create() -> Result<TwoHosts, String> {
        let id = std::process::id();
        let hosts = TwoHosts {
            a: format!("pcat-a-{id}"),
            b: format!("pcat-b-{id}"),
        };
        try_ip(&["netns", "add", &hosts.a])?;
        let (a, b) = (hosts.a.as_str(), hosts.b.as_str());
        try_ip(&["netns", "add", b])?;
        try_ip(&[
            "-n", a, "link", "add", "veth0", "type", "veth", "peer", "name", "veth0", "netns", b,
        ])?;
        try_ip(&["-n", a, "addr", "add", "10.77.0.1/24", "dev", "veth0"])?;
        try_ip(&["-n", b, "addr", "add", "10.77.0.2/24", "dev", "veth0"])?;
        for ns in [a, b] {
            try_ip(&["-n", ns, "link", "set", "lo", "up"])?;
            try_ip(&["-n", ns, "link", "set", "veth0", "up"])?;
        }
        Ok(hosts)
    }

    /// Takes the link down on both ends: packets vanish silently.
    fn pull_cable(&self) {
        assert!(ip(&["-n", &self.a, "link", "set", "veth0", "down"]));
        assert!(ip(&["-n", &self.b, "link", "set", "veth0", "down"]));
    }
}

impl Drop for TwoHosts {
    fn drop(&mut self) {
        ip(&["netns", "del", &self.a]);
        ip(&["netns", "del", &self.b]);
    }
}

#[test]
#[ignore = "needs root and iproute2; .ci/run runs it: cargo test --test it -- --ignored netns"]
fn a_peer_behind_a_pulled_cable_is_dropped_within_three_keepalive_periods() {
    let hosts = TwoHosts::create().unwrap_or_else(|e| {
        panic!("cannot create network namespaces (this test needs root and iproute2): {e}")
    });
    let a = node("a")
        .netns(&hosts.a)
        .args(&["-l", "10.77.0.1:0", "--keepalive", "1"])
        .start();
    let b = node("b")
        .netns(&hosts.b)
        .args(&["-l", "10.77.0.2:0", "--keepalive", "1"])
        .arg(format!("10.77.0.1:{}", a.port))
        .start();
    a.wait_peer("b");
    b.wait_peer("a");
    let pulled = Instant::now();
    hosts.pull_cable();
    for (node, other) in [(&a, "b"), (&b, "a")] {
        let line = node.wait_log(&format!("peer down: {other}"));
        let took = pulled.elapsed();
        assert!(line.contains("presumed dead"), "{line}");
        assert!(
            took <= Duration::from_millis(4000),
            "{} noticed after {took:?}",
            node.name
        );
    }
}

/// A namespace of its own with multicast routed over `lo`, removed on drop.
struct Lan(String);

impl Lan {
    fn create() -> Result<Lan, String> {
        let lan = Lan(format!("pcat-lan-{}", std::process::id()));
        try_ip(&["netns", "add", &lan.0])?;
        try_ip(&["-n", &lan.0, "link", "set", "lo", "up"])?;
        try_ip(&["-n", &lan.0, "route", "add", "224.0.0.0/4", "dev", "lo"])?;
        Ok(lan)
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        ip(&["netns", "del", &self.0]);
    }
}

/// `--discover` with no PEER: the nodes find each other by multicast, the
/// router hands what discovery finds to the mesh, the mesh dials, and a
/// line goes through.
#[test]
#[ignore = "needs root and iproute2; .ci/run runs it: cargo test --test it -- --ignored netns"]
fn netns_nodes_with_discover_and_no_peer_form_a_group() {
    let lan = Lan::create().unwrap_or_else(|e| {
        panic!("cannot create a network namespace (this test needs root and iproute2): {e}")
    });
    let a = node("a")
        .netns(&lan.0)
        .args(&["-l", "127.0.0.1:0", "--discover"])
        .start();
    let mut b = node("b")
        .netns(&lan.0)
        .args(&["-l", "127.0.0.1:0", "--discover", "--wait-members", "1"])
        .start();
    b.wait_log("member up: a");
    a.wait_log("member up: b");
    b.send(b"found you\n");
    assert_eq!(crate::support::texts(&a.wait_lines(1)), ["found you"]);
}
