//! What one hand-off between threads costs on this machine: a token passes
//! along a chain of threads, each parked on a crossbeam channel, once per
//! millisecond (so every thread is asleep when the token reaches it, as in
//! peercat's latency scenario). peercat's design puts four such hand-offs
//! on each message's path that a single-threaded ncat pipe does not have
//! (stdin -> router -> writer, reader -> router -> stdout); this shows what
//! they cost.
//!
//! Run: cargo bench --bench handoff

use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;

/// Median and 99th percentile, in microseconds, of sending a token through
/// `hops` threads and back to the caller (`hops + 1` wake-ups; none when
/// `hops` is 0 and the caller receives its own token).
fn chain(hops: usize, rounds: usize) -> (f64, f64) {
    let (first, mut rx) = bounded::<Instant>(1);
    let mut threads = Vec::new();
    for _ in 0..hops {
        let (tx, next) = bounded::<Instant>(1);
        let input = rx;
        threads.push(thread::spawn(move || {
            for token in input.iter() {
                if tx.send(token).is_err() {
                    break;
                }
            }
        }));
        rx = next;
    }
    let mut micros = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        thread::sleep(Duration::from_millis(1));
        first.send(Instant::now()).unwrap();
        let sent = rx.recv().unwrap();
        micros.push(sent.elapsed().as_secs_f64() * 1e6);
    }
    drop(first);
    for t in threads {
        t.join().unwrap();
    }
    micros.sort_by(f64::total_cmp);
    (micros[rounds / 2], micros[rounds * 99 / 100])
}

fn main() {
    let rounds = 3000;
    println!("| hops | wake-ups | p50 µs | p99 µs | p50 per wake-up µs |");
    println!("|---:|---:|---:|---:|---:|");
    for hops in [0, 1, 2, 4] {
        let (p50, p99) = chain(hops, rounds);
        // With no hops the caller sends to itself: no thread wakes up.
        let wakeups = if hops == 0 { 0 } else { hops + 1 };
        let per = if hops == 0 {
            "—".to_owned()
        } else {
            format!("{:.1}", p50 / wakeups as f64)
        };
        println!("| {hops} | {wakeups} | {p50:.1} | {p99:.1} | {per} |");
    }
}
