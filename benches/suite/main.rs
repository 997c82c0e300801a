//! The benchmark suite: peercat side by side with what a user would pick
//! instead, in the same run, on this machine. `scripts/bench.sh` runs it;
//! `BENCHMARKS.md` has the latest table and what each change bought.
//!
//! Runs alternate (peercat, peer, peercat, peer, ...), every run checks its
//! output, and the table shows medians. `--quick` is a smoke run for CI.

mod procs;
mod scenarios;

use std::process::Command;
use std::time::Instant;

use scenarios::*;

const USAGE: &str = "usage: bench [--quick] [--runs N]";

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
    } else if x >= 1e4 {
        format!("{:.0}", x)
    } else if x >= 100.0 {
        format!("{:.0}", x)
    } else {
        format!("{:.2}", x)
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
    format!(
        "{} · {cores} cores (nproc) · {kernel} · peercat {} · {ncat}",
        cpu,
        env!("CARGO_PKG_VERSION")
    )
}

fn main() {
    let mut quick = false;
    let mut runs = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--runs" => runs = args.next().and_then(|n| n.parse().ok()),
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
        }
    } else {
        Sizes {
            lines: 1_000_000,
            latency_msgs: 5_000,
            big_msgs: 1_000,
            many_peers: 256,
        }
    };
    let started = Instant::now();
    let machine = machine();
    eprintln!("machine: {machine}");
    let dir = std::env::temp_dir().join(format!("peercat-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let inputs = Inputs::make(&sizes, &dir);
    let n = sizes.lines;
    let line_bytes = (LINE_LEN + 1) as f64;

    let mut rows = Vec::new();
    let (mut ours, mut peer) = (Vec::new(), Vec::new());

    // 1. One hop.
    for run in 1..=runs {
        ours.push(one_hop_peercat(&inputs.lines, &inputs.lines_path, n, &[]));
        peer.push(one_hop_ncat(&inputs.lines, &inputs.lines_path, n));
        eprintln!(
            "one hop {run}/{runs}: peercat {:.3}s, ncat {:.3}s",
            ours[run - 1],
            peer[run - 1]
        );
    }
    let (hop_ours, hop_peer) = (median(ours.clone()), median(peer.clone()));
    let rate = |secs: f64| n as f64 / secs;
    rows.push(Row {
        scenario: "1. one hop",
        metric: "lines/s",
        ours: rate(hop_ours),
        peer: Some(("ncat pipe", rate(hop_peer))),
        target: Some(("≥ 1.0 × ncat".into(), hop_peer / hop_ours >= 1.0)),
    });
    rows.push(Row {
        scenario: "1. one hop",
        metric: "MB/s",
        ours: rate(hop_ours) * line_bytes / 1e6,
        peer: Some(("ncat pipe", rate(hop_peer) * line_bytes / 1e6)),
        target: None,
    });

    // 2. Fan-out to four.
    let (mut ours, mut peer) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        ours.push(fan_out_peercat(&inputs, n));
        peer.push(fan_out_ncat(&inputs, n));
        eprintln!(
            "fan-out {run}/{runs}: peercat {:.3}s, ncat --broker {:.3}s",
            ours[run - 1],
            peer[run - 1]
        );
    }
    let (o, p) = (median(ours), median(peer));
    rows.push(Row {
        scenario: "2. fan-out to 4",
        metric: "deliveries/s",
        ours: 4.0 * n as f64 / o,
        peer: Some(("ncat --broker", 4.0 * n as f64 / p)),
        target: Some(("≥ 1.0 × (stretch 1.5 ×)".into(), p / o >= 1.0)),
    });

    // 3. Latency.
    let mut ours: Vec<[f64; 3]> = Vec::new();
    let mut peer: Vec<[f64; 3]> = Vec::new();
    let stats = |v: Vec<f64>| {
        [
            percentile(&v, 0.5),
            percentile(&v, 0.99),
            *v.last().unwrap(),
        ]
    };
    for run in 1..=runs {
        ours.push(stats(latency_peercat(sizes.latency_msgs)));
        peer.push(stats(latency_ncat(sizes.latency_msgs)));
        eprintln!(
            "latency {run}/{runs}: peercat p50 {:.0}µs p99 {:.0}µs, ncat p50 {:.0}µs p99 {:.0}µs",
            ours[run - 1][0],
            ours[run - 1][1],
            peer[run - 1][0],
            peer[run - 1][1]
        );
    }
    let pick = |v: &[[f64; 3]], i: usize| median(v.iter().map(|s| s[i]).collect());
    let (p50, p50_peer) = (pick(&ours, 0), pick(&peer, 0));
    let p99 = pick(&ours, 1);
    rows.push(Row {
        scenario: "3. latency, 1 line/ms",
        metric: "p50 µs",
        ours: p50,
        peer: Some(("ncat pipe", p50_peer)),
        target: Some(("≤ 1.2 × ncat".into(), p50 <= 1.2 * p50_peer)),
    });
    rows.push(Row {
        scenario: "3. latency, 1 line/ms",
        metric: "p99 µs",
        ours: p99,
        peer: Some(("ncat pipe", pick(&peer, 1))),
        target: Some(("≤ 2000 µs".into(), p99 <= 2000.0)),
    });
    rows.push(Row {
        scenario: "3. latency, 1 line/ms",
        metric: "max µs",
        ours: pick(&ours, 2),
        peer: Some(("ncat pipe", pick(&peer, 2))),
        target: None,
    });

    // 4. Big messages.
    let (mut ours, mut peer) = (Vec::new(), Vec::new());
    let big_args = ["--max-frame", "2097152"];
    for run in 1..=runs {
        ours.push(one_hop_peercat(
            &inputs.big,
            &inputs.big_path,
            sizes.big_msgs,
            &big_args,
        ));
        peer.push(tcp_limit(inputs.big.len()));
        eprintln!(
            "1 MiB messages {run}/{runs}: peercat {:.3}s, raw TCP {:.3}s",
            ours[run - 1],
            peer[run - 1]
        );
    }
    let mbps = |secs: f64| inputs.big.len() as f64 / secs / 1e6;
    let (o, p) = (mbps(median(ours)), mbps(median(peer)));
    rows.push(Row {
        scenario: "4. 1 MiB messages",
        metric: "MB/s",
        ours: o,
        peer: Some(("loopback TCP, 1 stream", p)),
        target: Some(("≥ 0.3 × TCP".into(), o >= 0.3 * p)),
    });

    // 5. Many idle peers.
    let (mut ours, mut peer) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        ours.push(crowd_peercat(sizes.many_peers));
        peer.push(crowd_ncat(sizes.many_peers));
        let (o, p) = (&ours[run - 1], &peer[run - 1]);
        eprintln!(
            "{} idle peers {run}/{runs}: peercat {:.1} KiB {:.1} threads per peer, reached in {:.2} ms; \
             ncat --broker {:.1} KiB, {:.2} ms",
            sizes.many_peers, o.rss_per_peer_kib, o.threads_per_peer, o.reach_ms, p.rss_per_peer_kib, p.reach_ms
        );
    }
    let field = |v: &[Crowd], f: fn(&Crowd) -> f64| median(v.iter().map(f).collect());
    let scenario: &'static str = if quick {
        "5. 64 idle peers"
    } else {
        "5. 256 idle peers"
    };
    let kib = field(&ours, |c| c.rss_per_peer_kib);
    rows.push(Row {
        scenario,
        metric: "KiB RSS per peer",
        ours: kib,
        peer: Some(("ncat --broker", field(&peer, |c| c.rss_per_peer_kib))),
        target: Some(("≤ 64 KiB".into(), kib <= 64.0)),
    });
    rows.push(Row {
        scenario,
        metric: "threads per peer",
        ours: field(&ours, |c| c.threads_per_peer),
        peer: Some(("ncat --broker", field(&peer, |c| c.threads_per_peer))),
        target: None,
    });
    let reach = field(&ours, |c| c.reach_ms);
    rows.push(Row {
        scenario,
        metric: "ms to reach all",
        ours: reach,
        peer: Some(("ncat --broker", field(&peer, |c| c.reach_ms))),
        target: Some(("≤ 50 ms".into(), reach <= 50.0)),
    });

    // 6. Flood both ways.
    let (mut ours, mut peer) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        ours.push(flood_peercat(&inputs, n));
        peer.push(flood_ncat(&inputs, n));
        eprintln!(
            "both ways {run}/{runs}: peercat {:.3}s, ncat {:.3}s",
            ours[run - 1],
            peer[run - 1]
        );
    }
    let (o, p) = (median(ours), median(peer));
    rows.push(Row {
        scenario: "6. flood both ways",
        metric: "seconds",
        ours: o,
        peer: Some(("ncat, both ways", p)),
        target: Some((
            format!("≤ 2 × peercat one hop ({hop_ours:.3} s)"),
            o <= 2.0 * hop_ours,
        )),
    });

    std::fs::remove_dir_all(&dir).unwrap();
    print_table(&rows, &machine, &sizes, runs, quick);
    eprintln!("suite took {:.0}s", started.elapsed().as_secs_f64());
}

fn print_table(rows: &[Row], machine: &str, sizes: &Sizes, runs: usize, quick: bool) {
    let date = shell("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    println!("{date} · {machine}");
    println!();
    println!(
        "{}{} runs each, alternating; medians. {} lines of {LINE_LEN} bytes; {} probes for latency; \
         {} messages of 1 MiB; all on 127.0.0.1.",
        if quick { "QUICK RUN (smoke test, not for comparison): " } else { "" },
        runs,
        sizes.lines,
        sizes.latency_msgs,
        sizes.big_msgs
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
