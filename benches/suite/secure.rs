//! Scenario 11: the cost of encryption. The same one-hop, 1 MiB, fan-out
//! and latency runs as scenarios 1-4, with `--secret-file` on every node,
//! alternating with the same runs unencrypted in the same session.

use crate::scenarios::*;
use crate::{median, percentile, Row, Suite};

impl Suite<'_> {
    pub(crate) fn encrypted(&self) -> Vec<Row> {
        let secret = self.dir.join("team.secret");
        std::fs::write(&secret, b"benchmark group secret\n").unwrap();
        let secret = secret.to_str().unwrap().to_owned();
        let enc: [&str; 2] = ["--secret-file", &secret];
        let mut rows = Vec::new();
        rows.extend(self.encrypted_one_hop(&enc));
        rows.extend(self.encrypted_big(&enc));
        rows.extend(self.encrypted_fan_out(&enc));
        rows.extend(self.encrypted_latency(&enc));
        rows
    }

    fn encrypted_one_hop(&self, enc: &[&str]) -> Vec<Row> {
        let (inputs, n) = (self.inputs, self.sizes.lines);
        // Timed from the moment the link is up: the key derivation at
        // start-up (on purpose slow, against guessing) is no link cost.
        let (ours, plain) = self.alternate(
            "encrypted one hop (s), peer = unencrypted",
            || one_hop_connected(&inputs.lines, enc),
            || one_hop_connected(&inputs.lines, &[]),
        );
        let rate = |secs: f64| n as f64 / secs;
        let (ours, plain) = (rate(median(ours)), rate(median(plain)));
        vec![Row {
            scenario: "11. encrypted one hop",
            metric: "lines/s",
            ours,
            peer: Some(("peercat unencrypted", plain)),
            target: Some(("≥ 0.6 × unencrypted".into(), ours >= 0.6 * plain)),
        }]
    }

    fn encrypted_big(&self, enc: &[&str]) -> Vec<Row> {
        let inputs = self.inputs;
        let big = |extra: &[&str]| {
            let mut args = vec!["--max-frame", "2097152"];
            args.extend(extra);
            one_hop_connected(&inputs.big, &args)
        };
        let (ours, plain) = self.alternate(
            "encrypted 1 MiB messages (s), peer = unencrypted",
            || big(enc),
            || big(&[]),
        );
        let mbps = |secs: f64| inputs.big.len() as f64 / secs / 1e6;
        let (ours, plain) = (mbps(median(ours)), mbps(median(plain)));
        vec![Row {
            scenario: "11. encrypted 1 MiB messages",
            metric: "MB/s",
            ours,
            peer: Some(("peercat unencrypted", plain)),
            // 1 Gbit/s is 125 MB/s.
            target: Some(("≥ 125 MB/s (1 Gbit/s)".into(), ours >= 125.0)),
        }]
    }

    fn encrypted_fan_out(&self, enc: &[&str]) -> Vec<Row> {
        let (inputs, n) = (self.inputs, self.sizes.lines);
        let (ours, plain) = self.alternate(
            "encrypted fan-out to 4 (s), peer = unencrypted",
            || fan_out_connected(inputs, enc),
            || fan_out_connected(inputs, &[]),
        );
        let rate = |secs: f64| 4.0 * n as f64 / secs;
        let (ours, plain) = (rate(median(ours)), rate(median(plain)));
        vec![Row {
            scenario: "11. encrypted fan-out to 4",
            metric: "deliveries/s",
            ours,
            peer: Some(("peercat unencrypted", plain)),
            target: None,
        }]
    }

    fn encrypted_latency(&self, enc: &[&str]) -> Vec<Row> {
        let count = self.sizes.latency_msgs;
        let stats = |v: Vec<f64>| [percentile(&v, 0.5), percentile(&v, 0.99)];
        let (ours, plain) = self.alternate(
            "encrypted latency p50/p99 (µs), peer = unencrypted",
            || stats(latency_peercat_with(count, enc)),
            || stats(latency_peercat_with(count, &[])),
        );
        let pick = |v: &[[f64; 2]], i: usize| median(v.iter().map(|s| s[i]).collect());
        let row = |metric, i| Row {
            scenario: "11. encrypted latency, 1 line/ms",
            metric,
            ours: pick(&ours, i),
            peer: Some(("peercat unencrypted", pick(&plain, i))),
            target: None,
        };
        vec![row("p50 µs", 0), row("p99 µs", 1)]
    }
}
