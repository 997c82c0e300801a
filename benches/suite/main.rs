//! The benchmark suite: peercat side by side with what a user would pick
//! instead, in the same run, on this machine. `scripts/bench.sh` runs it;
//! `BENCHMARKS.md` has the latest table and what each change bought.
//!
//! Runs alternate (peercat, peer, peercat, peer, ...), every run checks its
//! output, and the table shows medians. `--quick` is a smoke run for CI.

mod mesh;
mod ports;
mod procs;
mod scenarios;
mod secure;

use std::process::Command;
use std::time::Instant;

use scenarios::*;

const USAGE: &str = "usage: bench [--quick] [--runs N] [--only 1,3,...] (scenarios 1-11)";

struct Row {
    scenario: &'static str,
    metric: &'static str,
    ours: f64,
    peer: Option<(&'static str, f64)>,
    /// How the target reads, and whether it is met.
    target: Option<(String, bool)>,
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn number(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

fn shell(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            // ncat prints its version on stderr.
            let out = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&out).trim().to_owned()
        })
        .unwrap_or_default()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = shell("uname", &["-sr"]);
    let ncat = shell("ncat", &["--version"]);
    let ncat = ncat
        .lines()
        .next()
        .unwrap_or("ncat ?")
        .replace(" ( https://nmap.org/ncat )", "");
    let peercat = match std::env::var("PEERCAT_BIN") {
        Ok(path) => format!("peercat from PEERCAT_BIN={path}"),
        Err(_) => format!("peercat {}", env!("CARGO_PKG_VERSION")),
    };
    format!("{cpu} · {cores} cores (nproc) · {kernel} · {peercat} · {ncat}")
}

fn main() {
    let mut quick = false;
    let mut runs = None;
    let mut only: Vec<u32> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--runs" => runs = args.next().and_then(|n| n.parse().ok()),
            "--only" => {
                let list = args.next().unwrap_or_default();
                only = list
                    .split(',')
                    .filter_map(|n| n.trim().parse().ok())
                    .collect();
            }
            "--bench" => {} // added by `cargo bench`
            _ => {
                eprintln!("unknown argument {arg:?}\n{USAGE}");
                std::process::exit(2);
            }
        }
    }
    let runs: usize = runs.unwrap_or(if quick { 3 } else { 5 });
    let sizes = if quick {
        Sizes {
            lines: 100_000,
            latency_msgs: 1_000,
            big_msgs: 100,
            many_peers: 64,
            probes: 200,
        }
    } else {
        Sizes {
            lines: 1_000_000,
            latency_msgs: 5_000,
            big_msgs: 1_000,
            // 2 x the highest --degree: a node closes links beyond that.
            many_peers: 128,
            probes: 2_000,
        }
    };
    let started = Instant::now();
    let machine = machine();
    eprintln!("machine: {machine}");
    let dir = TempDir::new();
    let want = |scenario: u32| only.is_empty() || only.contains(&scenario);
    let inputs = Inputs::make(&sizes, &dir.0, want(4) || want(11));
    let suite = Suite {
        inputs: &inputs,
        sizes: &sizes,
        runs,
        dir: &dir.0,
        quick,
    };

    let mut rows = Vec::new();
    let mut hop_secs = None;
    if want(1) {
        let (hop_rows, secs) = suite.one_hop();
        rows.extend(hop_rows);
        hop_secs = Some(secs);
    }
    if want(2) {
        rows.extend(suite.fan_out());
    }
    if want(3) {
        rows.extend(suite.latency());
    }
    if want(4) {
        rows.extend(suite.big_messages());
    }
    if want(5) {
        rows.extend(suite.idle_peers(quick));
    }
    if want(6) {
        rows.extend(suite.flood(hop_secs));
    }
    if want(7) {
        rows.extend(suite.relay_chain());
    }
    if want(8) {
        rows.extend(suite.mesh_fan_out());
    }
    if want(9) {
        rows.extend(suite.propagation());
    }
    if want(10) {
        rows.extend(suite.bytes_per_delivered());
    }
    if want(11) {
        rows.extend(suite.encrypted());
    }
    print_table(&rows, &machine, &sizes, runs, quick);
    eprintln!("suite took {:.0}s", started.elapsed().as_secs_f64());
}

/// The input files' folder, removed however the run ends.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!("peercat-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Suite<'a> {
    inputs: &'a Inputs,
    sizes: &'a Sizes,
    runs: usize,
    dir: &'a std::path::Path,
    quick: bool,
}

impl Suite<'_> {
    /// Runs `ours` and `peer` alternately, `runs` times each.
    fn alternate<T>(
        &self,
        what: &str,
        mut ours: impl FnMut() -> T,
        mut peer: impl FnMut() -> T,
    ) -> (Vec<T>, Vec<T>)
    where
        T: std::fmt::Debug,
    {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for run in 1..=self.runs {
            a.push(ours());
            b.push(peer());
            eprintln!(
                "{what} {run}/{}: peercat {:.3?}, peer {:.3?}",
                self.runs,
                a[run - 1],
                b[run - 1]
            );
        }
        (a, b)
    }

    fn one_hop(&self) -> (Vec<Row>, f64) {
        let (inputs, n) = (self.inputs, self.sizes.lines);
        let (ours, peer) = self.alternate(
            "one hop (s)",
            || one_hop_peercat(&inputs.lines, &inputs.lines_path, &[]),
            || one_hop_ncat(&inputs.lines, &inputs.lines_path),
        );
        let cores = |runs: &[Run]| median(runs.iter().map(|r| r.cores).collect());
        let (ours_cores, peer_cores) = (cores(&ours), cores(&peer));
        let secs = |runs: Vec<Run>| median(runs.into_iter().map(|r| r.secs).collect());
        let (ours, peer) = (secs(ours), secs(peer));
        let rate = |secs: f64| n as f64 / secs;
        let mbps = |secs: f64| rate(secs) * (LINE_LEN + 1) as f64 / 1e6;
        let rows = vec![
            Row {
                scenario: "1. one hop",
                metric: "lines/s",
                ours: rate(ours),
                peer: Some(("ncat pipe", rate(peer))),
                target: Some(("≥ 1.0 × ncat".into(), peer / ours >= 1.0)),
            },
            Row {
                scenario: "1. one hop",
                metric: "MB/s",
                ours: mbps(ours),
                peer: Some(("ncat pipe", mbps(peer))),
                target: None,
            },
            Row {
                scenario: "1. one hop",
                metric: "cores busy (machine)",
                ours: ours_cores,
                peer: Some(("ncat pipe", peer_cores)),
                target: None,
            },
        ];
        (rows, ours)
    }

    fn fan_out(&self) -> Vec<Row> {
        let (inputs, n) = (self.inputs, self.sizes.lines);
        let (ours, peer) = self.alternate(
            "fan-out (s)",
            || fan_out_peercat(inputs),
            || fan_out_ncat(inputs),
        );
        let rate = |secs: f64| 4.0 * n as f64 / secs;
        let (ours, peer) = (median(ours), median(peer));
        vec![Row {
            scenario: "2. fan-out to 4",
            metric: "deliveries/s",
            ours: rate(ours),
            peer: Some(("ncat --broker", rate(peer))),
            target: Some(("≥ 1.0 × (stretch 1.5 ×)".into(), peer / ours >= 1.0)),
        }]
    }

    fn latency(&self) -> Vec<Row> {
        let count = self.sizes.latency_msgs;
        let stats = |v: Vec<f64>| {
            [
                percentile(&v, 0.5),
                percentile(&v, 0.99),
                *v.last().unwrap(),
            ]
        };
        let (ours, peer) = self.alternate(
            "latency p50/p99/max (µs)",
            || stats(latency_peercat(count)),
            || stats(latency_ncat(count)),
        );
        let pick = |v: &[[f64; 3]], i: usize| median(v.iter().map(|s| s[i]).collect());
        let row = |metric, i, target| Row {
            scenario: "3. latency, 1 line/ms",
            metric,
            ours: pick(&ours, i),
            peer: Some(("ncat pipe", pick(&peer, i))),
            target,
        };
        let (p50, p50_peer, p99) = (pick(&ours, 0), pick(&peer, 0), pick(&ours, 1));
        vec![
            row(
                "p50 µs",
                0,
                Some(("≤ 1.2 × ncat".into(), p50 <= 1.2 * p50_peer)),
            ),
            row("p99 µs", 1, Some(("≤ 2000 µs".into(), p99 <= 2000.0))),
            row("max µs", 2, None),
        ]
    }

    fn big_messages(&self) -> Vec<Row> {
        let inputs = self.inputs;
        let (ours, tcp) = self.alternate(
            "1 MiB messages (s), peer = raw TCP",
            || one_hop_peercat(&inputs.big, &inputs.big_path, &["--max-frame", "2097152"]).secs,
            || tcp_limit(inputs.big.len()),
        );
        // Context: what the same lines achieve through a plain ncat pipe,
        // which pays for the same stdin and stdout pipes as peercat.
        let (_, ncat) = self.alternate(
            "1 MiB messages (s), peer = ncat pipe",
            || 0.0,
            || one_hop_ncat(&inputs.big, &inputs.big_path).secs,
        );
        let mbps = |secs: f64| inputs.big.len() as f64 / secs / 1e6;
        let (ours, tcp, ncat) = (mbps(median(ours)), mbps(median(tcp)), mbps(median(ncat)));
        vec![
            Row {
                scenario: "4. 1 MiB messages",
                metric: "MB/s",
                ours,
                peer: Some(("loopback TCP, 1 stream", tcp)),
                target: Some(("≥ 0.3 × TCP".into(), ours >= 0.3 * tcp)),
            },
            Row {
                scenario: "4. 1 MiB messages",
                metric: "MB/s",
                ours,
                peer: Some(("ncat pipe (context)", ncat)),
                target: None,
            },
        ]
    }

    fn idle_peers(&self, quick: bool) -> Vec<Row> {
        let count = self.sizes.many_peers;
        let (ours, peer) =
            self.alternate("idle peers", || crowd_peercat(count), || crowd_ncat(count));
        let field = |v: &[Crowd], f: fn(&Crowd) -> f64| median(v.iter().map(f).collect());
        let scenario: &'static str = if quick {
            "5. 64 idle peers"
        } else {
            "5. 128 idle peers"
        };
        let row = |metric, f: fn(&Crowd) -> f64, target: Option<(&str, f64)>| {
            let value = field(&ours, f);
            Row {
                scenario,
                metric,
                ours: value,
                peer: Some(("ncat --broker", field(&peer, f))),
                target: target.map(|(text, limit)| (text.to_owned(), value <= limit)),
            }
        };
        vec![
            row(
                "KiB RSS per peer",
                |c| c.rss_per_peer_kib,
                Some(("≤ 64 KiB", 64.0)),
            ),
            row("threads per peer", |c| c.threads_per_peer, None),
            row("descriptors per peer", |c| c.fds_per_peer, None),
            row("ms to reach all", |c| c.reach_ms, Some(("≤ 50 ms", 50.0))),
        ]
    }

    /// Runs for the mesh scenarios: each forms a group of up to 17 nodes,
    /// so the smoke run does one of each.
    fn mesh_runs(&self) -> Suite<'_> {
        Suite {
            inputs: self.inputs,
            sizes: self.sizes,
            runs: if self.quick { 1 } else { self.runs },
            dir: self.dir,
            quick: self.quick,
        }
    }

    fn relay_chain(&self) -> Vec<Row> {
        let (inputs, n, dir) = (self.inputs, self.sizes.lines, self.dir);
        let (ours, peer) = self.mesh_runs().alternate(
            "relay chain of 5 (s)",
            || mesh::chain_peercat(inputs, dir),
            || mesh::chain_ncat(inputs, dir),
        );
        let rate = |secs: f64| n as f64 / secs;
        let (ours, peer) = (median(ours), median(peer));
        vec![Row {
            scenario: "7. relay chain of 5",
            metric: "lines/s at the far end",
            ours: rate(ours),
            peer: Some(("ncat relays (ncat -l → tee → ncat)", rate(peer))),
            target: Some(("≥ 1.0 ×".into(), peer / ours >= 1.0)),
        }]
    }

    fn mesh_fan_out(&self) -> Vec<Row> {
        let (inputs, n, dir) = (self.inputs, self.sizes.lines, self.dir);
        let (ours, peer) = self.mesh_runs().alternate(
            "fan-out to 8 through a degree-3 mesh (s)",
            || mesh::mesh_fan_out_peercat(inputs, dir),
            || mesh::mesh_fan_out_ncat(inputs),
        );
        let rate = |secs: f64| 8.0 * n as f64 / secs;
        let (ours, peer) = (median(ours), median(peer));
        vec![Row {
            scenario: "8. fan-out to 8, degree-3 mesh",
            metric: "deliveries/s",
            ours: rate(ours),
            peer: Some(("ncat --broker, 8 clients", rate(peer))),
            target: Some(("≥ 1.0 ×".into(), peer / ours >= 1.0)),
        }]
    }

    fn propagation(&self) -> Vec<Row> {
        let (count, dir) = (self.sizes.probes, self.dir);
        let stats = |v: Vec<f64>| [percentile(&v, 0.5), percentile(&v, 0.99)];
        let (ours, peer) = self.mesh_runs().alternate(
            "one line to 16 members p50/p99 (µs)",
            || stats(mesh::propagation_peercat(count, dir)),
            || stats(mesh::propagation_ncat(count)),
        );
        let pick = |v: &[[f64; 2]], i: usize| median(v.iter().map(|s| s[i]).collect());
        let p99 = pick(&ours, 1);
        let row = |metric, i, target| Row {
            scenario: "9. one line to 16 members",
            metric,
            ours: pick(&ours, i),
            peer: Some(("ncat --broker, 16 clients", pick(&peer, i))),
            target,
        };
        vec![
            row("p50 µs", 0, None),
            row("p99 µs", 1, Some(("≤ 5000 µs".into(), p99 <= 5000.0))),
        ]
    }

    fn bytes_per_delivered(&self) -> Vec<Row> {
        let lines = self.sizes.lines / 10;
        let path = self.dir.join("mesh-bytes.txt");
        let input = scenarios::input(lines, LINE_LEN, &path);
        let inputs = Inputs {
            lines: input,
            lines_path: path,
            big: self.inputs.big.clone(),
            big_path: self.inputs.big_path.clone(),
        };
        let runs = self.mesh_runs().runs;
        let ratios: Vec<f64> = (1..=runs)
            .map(|run| {
                let r = mesh::bytes_per_delivered(&inputs, self.dir);
                eprintln!("bytes received per byte delivered {run}/{runs}: {r:.2}");
                r
            })
            .collect();
        vec![Row {
            scenario: "10. degree-4 mesh of 16",
            metric: "bytes received ÷ bytes delivered",
            ours: median(ratios),
            peer: None,
            target: None,
        }]
    }

    fn flood(&self, hop_secs: Option<f64>) -> Vec<Row> {
        let inputs = self.inputs;
        let (ours, peer) = self.alternate(
            "both ways (s)",
            || flood_peercat(inputs),
            || flood_ncat(inputs),
        );
        let cores = |runs: &[Run]| median(runs.iter().map(|r| r.cores).collect());
        let (ours_cores, peer_cores) = (cores(&ours), cores(&peer));
        let secs = |runs: Vec<Run>| median(runs.into_iter().map(|r| r.secs).collect());
        let (ours, peer) = (secs(ours), secs(peer));
        vec![
            Row {
                scenario: "6. flood both ways",
                metric: "seconds",
                ours,
                peer: Some(("ncat, both ways", peer)),
                target: hop_secs.map(|hop| {
                    (
                        format!("≤ 2 × peercat one hop ({hop:.3} s)"),
                        ours <= 2.0 * hop,
                    )
                }),
            },
            Row {
                scenario: "6. flood both ways",
                metric: "cores busy (machine)",
                ours: ours_cores,
                peer: Some(("ncat, both ways", peer_cores)),
                target: None,
            },
        ]
    }
}

fn print_table(rows: &[Row], machine: &str, sizes: &Sizes, runs: usize, quick: bool) {
    let date = shell("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    println!("{date} · {machine}");
    println!();
    println!(
        "{}{} runs each, alternating; medians. {} lines of {LINE_LEN} bytes; {} probes for latency; \
         {} messages of 1 MiB; mesh scenarios {} run(s), {} probes, scenario 10 with {} lines; \
         all on 127.0.0.1.",
        if quick { "QUICK RUN (smoke test, not for comparison): " } else { "" },
        runs,
        sizes.lines,
        sizes.latency_msgs,
        sizes.big_msgs,
        if quick { 1 } else { runs },
        sizes.probes,
        sizes.lines / 10
    );
    println!();
    println!(
        "| scenario | metric | peercat | compared with | its value | peercat ÷ it | target | met |"
    );
    println!("|---|---|---:|---|---:|---:|---|:-:|");
    for row in rows {
        let (peer_name, peer_value, ratio) = match row.peer {
            Some((name, value)) if value > 0.0 => {
                (name, number(value), format!("{:.2}", row.ours / value))
            }
            Some((name, value)) => (name, number(value), "—".to_owned()),
            None => ("", String::new(), String::new()),
        };
        let (target, met) = match &row.target {
            Some((text, ok)) => (text.as_str(), if *ok { "yes" } else { "**no**" }),
            None => ("", ""),
        };
        println!(
            "| {} | {} | {} | {peer_name} | {peer_value} | {ratio} | {target} | {met} |",
            row.scenario,
            row.metric,
            number(row.ours)
        );
    }
}
