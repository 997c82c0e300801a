//! A pulled cable, for real: two hosts made of network namespaces joined by
//! a veth pair, and the link taken down under a live connection. No FIN, no
//! reset, nothing: only keepalive can tell. Needs root and iproute2; without
//! them the test says so and passes vacuously.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::node;

/// Two namespaces, `a` at 10.77.0.1 and `b` at 10.77.0.2, removed on drop.
struct TwoHosts {
    a: String,
    b: String,
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

impl TwoHosts {
    fn create() -> Option<TwoHosts> {
        let id = std::process::id();
        let hosts = TwoHosts {
            a: format!("pcat-a-{id}"),
            b: format!("pcat-b-{id}"),
        };
        if !ip(&["netns", "add", &hosts.a]) {
            return None;
        }
        let (a, b) = (hosts.a.as_str(), hosts.b.as_str());
        let ok = ip(&["netns", "add", b])
            && ip(&[
                "-n", a, "link", "add", "veth0", "type", "veth", "peer", "name", "veth0", "netns",
                b,
            ])
            && ip(&["-n", a, "addr", "add", "10.77.0.1/24", "dev", "veth0"])
            && ip(&["-n", b, "addr", "add", "10.77.0.2/24", "dev", "veth0"])
            && [a, b].iter().all(|ns| {
                ip(&["-n", ns, "link", "set", "lo", "up"])
                    && ip(&["-n", ns, "link", "set", "veth0", "up"])
            });
        ok.then_some(hosts)
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
fn a_peer_behind_a_pulled_cable_is_dropped_within_three_keepalive_periods() {
    let Some(hosts) = TwoHosts::create() else {
        eprintln!("skipped: creating network namespaces needs root and iproute2");
        return;
    };
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
