//! Tests of the mesh state machine: each behaviour on a few nodes, and a
//! 200-node simulation with churn.

use std::time::Duration;

use super::sim::{Sim, SimConfig};

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Every live node has, from each live origin, every line from its base to
/// the origin's last one, delivered or reported as a gap (the simulator
/// already checked order, uniqueness and continuity as they happened).
fn assert_complete(sim: &Sim, senders: &[usize]) {
    for (i, n) in sim.nodes.iter().enumerate().filter(|(_, n)| n.alive) {
        for &s in senders {
            let origin = &sim.nodes[s];
            if s == i || !origin.alive || origin.sent == 0 {
                continue;
            }
            let seen = n.seen.get(&origin.id);
            let covered = seen.map_or(0, |s| s.covered_to);
            assert_eq!(
                covered, origin.sent,
                "n{i} has n{s}'s lines up to {covered} of {} ({seen:?})",
                origin.sent
            );
        }
    }
}

#[test]
fn two_hundred_nodes_with_churn_deliver_exactly_once_in_order_and_report_every_loss() {
    let mut sim = Sim::new(SimConfig {
        keepalive: secs(3.0),
        ..SimConfig::default()
    });
    let first = sim.add_node(vec![]);
    for i in 1..200 {
        let seed = sim.rng.below(i);
        sim.add_node(vec![seed]);
        sim.run_for(secs(0.01));
    }
    let _ = first;
    sim.run_for(secs(2.0));
    assert!(sim.connected_graph(), "the joins formed one group");
    let senders: Vec<usize> = (0..200).step_by(40).collect();
    let mut round = 0;
    let start = sim.now;
    while sim.now < start + secs(2.5) {
        for &s in &senders {
            sim.send_lines(s, 3);
        }
        sim.run_for(secs(0.05));
        round += 1;
        if round == 20 {
            // Churn: crash 10 relays, cut 10 links, add 5 nodes.
            for k in 0..10 {
                let victim = 1 + (k * 19 + 7) % 199;
                if !senders.contains(&victim) {
                    sim.crash(victim);
                }
            }
            for _ in 0..10 {
                let a = sim.rng.below(200);
                if let Some(&b) = sim.neighbours_of(a).first() {
                    sim.cut(a, b);
                }
            }
            for _ in 0..5 {
                // A joiner names a live member (one naming a dead one
                // rightly stays alone).
                let mut seed = sim.rng.below(200);
                while !sim.nodes[seed].alive {
                    seed = sim.rng.below(200);
                }
                sim.add_node(vec![seed]);
            }
        }
    }
    sim.run_for(secs(5.0));
    let comps = sim.components();
    if comps.len() > 1 {
        for c in &comps {
            if c.len() < 10 {
                for &i in c {
                    let n = &sim.nodes[i];
                    eprintln!(
                        "n{i}: deg {} members {} dial {:?}",
                        sim.degree_of(i),
                        n.mesh.live_members(),
                        n.mesh.dial
                    );
                }
            }
        }
    }
    assert!(
        sim.connected_graph(),
        "the survivors stay one group: {:?}",
        comps.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert_complete(&sim, &senders);
    let gaps: u64 = sim.nodes.iter().map(|n| n.gaps).sum();
    let deliveries: u64 = sim.nodes.iter().map(|n| n.deliveries).sum();
    let links: usize = (0..sim.nodes.len()).map(|i| sim.degree_of(i)).sum();
    eprintln!(
        "deliveries {deliveries}, msgs in {}, gaps {gaps}, frames {}, statuses {}, mean degree {:.1}",
        sim.nodes.iter().map(|n| n.msgs_in).sum::<u64>(),
        sim.frames,
        sim.statuses,
        links as f64 / sim.nodes.iter().filter(|n| n.alive).count() as f64
    );
    assert!(deliveries > 100_000);
}
