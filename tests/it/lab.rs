//! The mesh on a simulated LAN: runs `scripts/netns-lab.sh` (network
//! namespaces on a bridge, one node per host, lossy rate-capped links,
//! discovery, a cut link, a killed and restarted host, a partition healed)
//! against this build. Needs root, iproute2 and nftables (the script
//! installs nftables when missing), so it is `#[ignore]`d in a plain
//! `cargo test`, which lists it as ignored; `.ci/run` runs it as root with
//! `cargo test --test it -- --ignored netns`, and there it must pass.

use std::process::{Command, Stdio};
use std::time::Duration;

use crossbeam_channel::bounded;

/// The script's own steps are bounded; this bounds the whole.
const LAB_DEADLINE: Duration = Duration::from_secs(600);

#[test]
#[ignore = "needs root, iproute2 and nftables; .ci/run runs it: cargo test --test it -- --ignored netns"]
fn netns_lab_discovery_loss_cut_restart_and_partition_on_a_bridge() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/netns-lab.sh");
    let child = Command::new("bash")
        .args([script, "--bin", env!("CARGO_BIN_EXE_peercat")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run scripts/netns-lab.sh");
    let pid = child.id();
    let (tx, rx) = bounded(1);
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(LAB_DEADLINE) {
        Ok(output) => output.expect("wait for the lab"),
        Err(_) => {
            // SIGTERM: the script's trap removes its namespaces and nodes.
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("the lab did not finish within {LAB_DEADLINE:?}");
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}");
    assert!(
        output.status.success() && stdout.contains("lab: passed"),
        "the lab failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
}
