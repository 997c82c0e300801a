//! Frame codec speed: encoding message frames in memory (GB/s of frame
//! bytes) and decoding them (ns per frame; decoding borrows the payload, so
//! its cost does not grow with the payload).
//!
//! Run: cargo bench --bench codec

use std::hint::black_box;
use std::time::Instant;

use peercat::frame::{self, msg_header, Frame};

fn encode(payload: &[u8], count: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(count * (payload.len() + frame::MSG_HEADER_LEN));
    for seq in 1..=count as u64 {
        out.extend_from_slice(&msg_header(7, seq, 1, 16, payload.len()));
        out.extend_from_slice(payload);
    }
    out
}

fn decode_all(stream: &[u8]) -> usize {
    let mut rest = stream;
    let mut frames = 0;
    while let Some((frame, used)) = frame::decode(rest, usize::MAX).unwrap() {
        if let Frame::Msg { payload, .. } = frame {
            black_box(payload);
        }
        frames += 1;
        rest = &rest[used..];
    }
    frames
}

fn gbps(bytes: usize, started: Instant) -> f64 {
    bytes as f64 / started.elapsed().as_secs_f64() / 1e9
}

fn main() {
    println!("| payload | frames | encode GB/s | decode ns/frame |");
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
