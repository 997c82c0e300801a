//! The mesh at scale, in the deterministic simulator (no sockets): nodes
//! join one after another through a random earlier member; then one line
//! floods the group (a new origin's first lines flood: the tree forms from
//! their duplicates, see `src/mesh/tree.rs`); then 30% of the nodes are killed at once and another
//! line floods the survivors. Reports duplicates per delivered message,
//! hops and time of the last delivery, and how long membership took to
//! converge (every live node counting every other live node as a member)
//! after the joins and after the kill. Times are simulated time; link
//! delays are 1-20 ms.
//!
//! Run: cargo bench --bench mesh_sim  [MESH_SIM_NODES=1000] [MESH_SIM_SEED=1]
//! [MESH_SIM_KEEPALIVE=5 (seconds)]
//!
//! The issue asks for 10,000 nodes. Every node keeps every member and
//! every STATUS is flooded, so the full simulation's work and memory grow
//! with nodes² (1,000 nodes: 71 s of CPU and 1.5 GB; 3,000: 1,280 s and
//! 12.6 GB; 10,000 would need about 140 GB and 5 hours),
//! hence the smaller default; see BENCHMARKS.md. Above 1,024 nodes each node's member cap
//! is raised to the group's size: a real node keeps at most
//! `MAX_MEMBERS` live members.
//!
//! `MESH_SIM_MODE=relay` measures the relay alone, at 10,000 nodes and
//! more: the links carry no STATUS or DOWN (`SimConfig::membership`), so
//! nodes keep no per-member state; each joiner dials `MESH_SIM_LINKS` (3)
//! random earlier nodes as its command-line PEERs, through the real dial,
//! accept and degree-trimming code, and that graph is what the real relay
//! code floods. It reports duplicates and the last delivery, before and
//! after killing 30 %; there is no membership to converge, and nothing
//! re-dials after the kill (that needs membership), so the second flood
//! runs on the graph the kill left. Run it at 1,000 too and compare with
//! the full mode to see how close its graph is to the one the mesh forms.

use std::time::{Duration, Instant};

use std::sync::Arc;

use peercat::frame;
use peercat::mesh::sim::{Sim, SimConfig};
use peercat::mesh::{Action, Mesh, MeshConfig, MsgRef};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Live members each live node counts (from its member_up/down events).
fn converged(sim: &Sim) -> bool {
    let live = sim.nodes.iter().filter(|n| n.alive).count() as u64;
    sim.nodes
        .iter()
        .filter(|n| n.alive)
        .all(|n| n.members_up - n.members_down == live - 1)
}

/// Runs in steps of 100 ms until `done`, at most `limit`; returns the
/// simulated time it took, or `None`.
fn run_until(sim: &mut Sim, limit: Duration, done: impl Fn(&Sim) -> bool) -> Option<Duration> {
    let start = sim.now;
    while sim.now < start + limit {
        if done(sim) {
            return Some(sim.now - start);
        }
        sim.run_for(Duration::from_millis(100));
    }
    done(sim).then(|| sim.now - start)
}

/// One line from `sender` to every live node: duplicates per delivery,
/// and the time and hops of the last delivery.
fn flood(sim: &mut Sim, sender: usize) -> String {
    for n in sim.nodes.iter_mut() {
        n.msgs_in = 0;
        n.deliveries = 0;
        n.last_delivery = None;
    }
    let start = sim.now;
    assert_eq!(sim.send_lines(sender, 1), 1, "the window has room");
    let live = sim.nodes.iter().filter(|n| n.alive).count() - 1;
    // Done when every live node has it, or when nothing was delivered for
    // a second (longer than 32 hops of the slowest link): the rest cannot
    // be reached.
    let all = run_until(sim, Duration::from_secs(30), |s| {
        let last = s.nodes.iter().filter_map(|n| n.last_delivery).max();
        s.nodes.iter().filter(|n| n.deliveries > 0).count() >= live
            || last.is_some_and(|(at, _)| s.now >= at + Duration::from_secs(1))
    })
    .filter(|_| sim.nodes.iter().filter(|n| n.deliveries > 0).count() >= live);
    let got: u64 = sim.nodes.iter().map(|n| n.deliveries).sum();
    let frames: u64 = sim.nodes.iter().map(|n| n.msgs_in).sum();
    let (last_at, hops) = sim
        .nodes
        .iter()
        .filter_map(|n| n.last_delivery)
        .max()
        .unwrap_or_default();
    format!(
        "delivered to {got} of {live} ({}); {:.2} duplicates per delivered message; \
         last delivery after {:.0} ms, {hops} hops",
        if all.is_some() { "all" } else { "NOT all" },
        (frames - got) as f64 / got.max(1) as f64,
        (last_at - start).as_secs_f64() * 1e3
    )
}

/// The relay hot path alone: batches of 256 new 100-byte messages from one
/// neighbour, delivered and forwarded to three others; messages per second
/// through `Mesh::on_msgs` (one thread, no I/O).
fn relay_rate() -> f64 {
    let t0 = Instant::now();
    let mut mesh = Mesh::new(
        MeshConfig {
            life: 1,
            id: 1,
            name: "bench".into(),
            listen_port: 7000,
            advertise: None,
            ttl: 16,
            relay: true,
            degree: 4,
            max_peers: 64,
            window: 4 << 20,
            max_frame: 1 << 20,
            keepalive: Duration::from_secs(5),
            stall_timeout: Duration::from_secs(10),
            seeds: 0,
            rng_seed: 1,
        },
        t0,
    );
    for conn in 1..=4 {
        let remote = format!("127.0.0.{conn}:4000").parse().unwrap();
        mesh.neighbour_up(t0, conn, 100 + conn, "", remote, 7000, None);
    }
    while mesh.poll_action().is_some() {}
    let payload = [b'x'; 100 - frame::MSG_HEADER_LEN];
    let (batches, per_batch) = (4000u64, 256u64);
    let start = Instant::now();
    let mut delivered = 0u64;
    for b in 0..batches {
        let mut buf = Vec::with_capacity(per_batch as usize * 100);
        let first = b * per_batch + 1;
        let payloads = vec![&payload[..]; per_batch as usize];
        let entries = frame::put_run(&mut buf, frame::MsgHeader::new(7, first), &payloads);
        let refs: Vec<MsgRef> = (first..)
            .zip(entries)
            .map(|(seq, entry)| MsgRef {
                life: 1,
                origin: 7,
                seq,
                hops: 1,
                ttl: 16,
                start: entry.start,
                end: entry.end,
            })
            .collect();
        mesh.on_msgs(t0, 1, &Arc::new(buf), &refs);
        while let Some(action) = mesh.poll_action() {
            if let Action::Deliver(d) = action {
                delivered += d.iter().map(|d| d.len()).sum::<u64>();
            }
        }
    }
    assert_eq!(delivered, batches * per_batch);
    delivered as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    println!(
        "relay hot path: {:.1} M messages/s (100-byte frames, 1 in, 3 out, batches of 256)",
        relay_rate() / 1e6
    );
    if std::env::var("MESH_SIM_MODE").as_deref() == Ok("relay") {
        relay_only();
        return;
    }
    let nodes = env("MESH_SIM_NODES", 1_000) as usize;
    let seed = env("MESH_SIM_SEED", 1);
    let keepalive = env("MESH_SIM_KEEPALIVE", 5);
    let wall = Instant::now();
    let mut sim = Sim::new(SimConfig {
        degree: 4,
        max_peers: 64,
        ttl: 32,
        keepalive: Duration::from_secs(keepalive),
        seed,
        // A real node keeps at most MAX_MEMBERS live members.
        max_members: nodes.max(peercat::mesh::MAX_MEMBERS),
        ..SimConfig::default()
    });
    println!(
        "mesh_sim: {nodes} nodes, degree 4, ttl 32, keepalive {keepalive} s, seed {seed}, \
         member cap {}",
        sim.cfg.max_members
    );
    sim.add_node(vec![]);
    for i in 1..nodes {
        let seed = sim.rng.below(i);
        sim.add_node(vec![seed]);
        sim.run_for(Duration::from_millis(1));
    }
    let joined = run_until(&mut sim, Duration::from_secs(60), converged);
    println!(
        "joins (one per ms): membership converged {} after the last join (wall {:.1} s)",
        joined.map_or("NOT within 60 s".to_owned(), |d| format!(
            "{:.2} s",
            d.as_secs_f64()
        )),
        wall.elapsed().as_secs_f64()
    );
    let links: usize = (0..sim.nodes.len()).map(|i| sim.degree_of(i)).sum();
    println!(
        "mean degree {:.2}; one group: {}; {} STATUS frames received so far (peak RSS {})",
        links as f64 / nodes as f64,
        groups(&sim),
        sim.statuses,
        peak_rss_mib()
    );
    println!(
        "flood: {} (wall {:.1} s)",
        flood(&mut sim, 0),
        wall.elapsed().as_secs_f64()
    );

    let killed = kill_30_percent(&mut sim, nodes);
    let healed = run_until(&mut sim, Duration::from_secs(120), converged);
    let links: usize = (0..sim.nodes.len()).map(|i| sim.degree_of(i)).sum();
    println!(
        "killed {killed} (30%): membership converged {} later; one group: {}; mean degree {:.2} \
         (wall {:.1} s)",
        healed.map_or("NOT within 120 s".to_owned(), |d| format!(
            "{:.2} s",
            d.as_secs_f64()
        )),
        groups(&sim),
        links as f64 / (nodes - killed) as f64,
        wall.elapsed().as_secs_f64()
    );
    println!(
        "flood after the kill: {} (wall {:.1} s, {} STATUS frames received in all, peak RSS {})",
        flood(&mut sim, 0),
        wall.elapsed().as_secs_f64(),
        sim.statuses,
        peak_rss_mib()
    );
}

/// "true", or "false" and the components' sizes, and which nodes are
/// alone (between links: trimmed, dialing the next).
fn groups(sim: &Sim) -> String {
    let comps = sim.components();
    if comps.len() <= 1 {
        return "true".to_owned();
    }
    let sizes: Vec<usize> = comps.iter().map(Vec::len).collect();
    let alone: Vec<usize> = comps
        .iter()
        .filter(|c| c.len() == 1)
        .map(|c| c[0])
        .collect();
    format!("false (components of {sizes:?}; alone at this instant: nodes {alone:?})")
}

/// Kills 30 % of the nodes (never node 0, the sender); returns how many.
fn kill_30_percent(sim: &mut Sim, nodes: usize) -> usize {
    let mut killed = 0;
    while killed < nodes * 3 / 10 {
        let victim = 1 + sim.rng.below(nodes - 1);
        if sim.nodes[victim].alive {
            sim.crash(victim);
            killed += 1;
        }
    }
    killed
}

/// Peak resident memory of this process, from /proc (Linux), in MiB.
fn peak_rss_mib() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or("unknown".to_owned(), |kib| format!("{} MiB", kib / 1024))
}

/// `MESH_SIM_MODE=relay`: the relay at scale, without membership.
fn relay_only() {
    let nodes = env("MESH_SIM_NODES", 10_000) as usize;
    let links = env("MESH_SIM_LINKS", 3) as usize;
    let seed = env("MESH_SIM_SEED", 1);
    let wall = Instant::now();
    let mut sim = Sim::new(SimConfig {
        degree: 4,
        max_peers: 64,
        ttl: 32,
        keepalive: Duration::from_secs(5),
        seed,
        membership: false,
        ..SimConfig::default()
    });
    println!(
        "mesh_sim relay-only (no STATUS/DOWN on the links, no member state): {nodes} nodes, \
         each dials {links} random earlier nodes as PEERs; degree 4, ttl 32, seed {seed}"
    );
    sim.add_node(vec![]);
    for i in 1..nodes {
        let mut seeds: Vec<usize> = Vec::new();
        while seeds.len() < links.min(i) {
            let s = sim.rng.below(i);
            if !seeds.contains(&s) {
                seeds.push(s);
            }
        }
        sim.add_node(seeds);
        sim.run_for(Duration::from_millis(1));
    }
    // Dials, accepts and degree trimming settle well within this.
    sim.run_for(Duration::from_secs(5));
    let total: usize = (0..nodes).map(|i| sim.degree_of(i)).sum();
    println!(
        "graph: mean degree {:.2}; one group: {}; {} STATUS/DOWN frames dropped on the links \
         (wall {:.1} s)",
        total as f64 / nodes as f64,
        sim.connected_graph(),
        sim.membership_dropped,
        wall.elapsed().as_secs_f64()
    );
    println!(
        "flood: {} (wall {:.1} s)",
        flood(&mut sim, 0),
        wall.elapsed().as_secs_f64()
    );
    let killed = kill_30_percent(&mut sim, nodes);
    sim.run_for(Duration::from_secs(1));
    let alive: Vec<usize> = (0..nodes).filter(|&i| sim.nodes[i].alive).collect();
    let live_links: usize = alive.iter().map(|&i| sim.degree_of(i)).sum();
    println!(
        "killed {killed} (30%), no re-dial (no membership): mean degree of the survivors {:.2}; \
         one group: {}; {} components",
        live_links as f64 / alive.len() as f64,
        sim.connected_graph(),
        sim.components().len()
    );
    println!(
        "flood after the kill: {} (wall {:.1} s, peak RSS {})",
        flood(&mut sim, 0),
        wall.elapsed().as_secs_f64(),
        peak_rss_mib()
    );
}
