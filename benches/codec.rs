//! Frame codec speed: encoding messages into MSG frames (runs of lines) in
//! memory (GB/s of frame bytes) and decoding them (ns per message; decoding
//! borrows the payloads, and finding where each ends is one newline search).
//!
//! Run: cargo bench --bench codec

use std::hint::black_box;
use std::time::Instant;

use peercat::frame::{self, Frame};

/// `count` messages of `payload`, in MSG frames of at most
/// `frame::MAX_RUN_LEN` bytes (one message alone when it is longer), as a
/// sender frames its lines.
fn encode(payload: &[u8], count: usize) -> Vec<u8> {
    let entry = payload.len() + 1;
    let per_frame = ((frame::MAX_RUN_LEN - 19) / entry).max(1);
    let mut out = Vec::with_capacity(count * entry + count / per_frame * 23 + 23);
    let mut seq = 1;
    while seq <= count as u64 {
        let n = per_frame.min(count + 1 - seq as usize);
        frame::put_run(&mut out, frame::MsgHeader::new(7, seq), &vec![payload; n]);
        seq += n as u64;
    }
    out
}

/// Messages decoded from `stream`.
fn decode_all(stream: &[u8]) -> usize {
    let mut rest = stream;
    let mut msgs = 0;
    while let Some((frame, used)) = frame::decode(rest, usize::MAX).unwrap() {
        match frame {
            Frame::Msg { payload, .. } => {
                black_box(payload);
                msgs += 1;
            }
            Frame::Run { entries, .. } => {
                for payload in frame::entries(entries) {
                    black_box(payload);
                    msgs += 1;
                }
            }
            _ => {}
        }
        rest = &rest[used..];
    }
    msgs
}

fn gbps(bytes: usize, started: Instant) -> f64 {
    bytes as f64 / started.elapsed().as_secs_f64() / 1e9
}

fn main() {
    println!("| payload | messages | encode GB/s | decode ns/message |");
    println!("|---:|---:|---:|---:|");
    for (size, count) in [(64usize, 2_000_000usize), (1024, 500_000), (1 << 20, 500)] {
        let payload = vec![b'x'; size];
        let started = Instant::now();
        let stream = black_box(encode(&payload, count));
        let enc = gbps(stream.len(), started);
        let started = Instant::now();
        assert_eq!(decode_all(black_box(&stream)), count);
        let elapsed = started.elapsed();
        println!(
            "| {size} | {count} | {enc:.2} | {:.1} |",
            elapsed.as_nanos() as f64 / count as f64
        );
    }
}
