//! `cargo +nightly fuzz run hello`: see [`peercat_fuzz::harness::hello`].
#![no_main]

use libfuzzer_sys::fuzz_target;
use peercat_fuzz::alloc::{bounded, Counting};
use peercat_fuzz::harness;

/// Heap an input may cost at once: one HELLO's worth of buffer, whatever arrives.
const BASE: usize = 64 * 1024;
const PER_BYTE: usize = 2;

#[global_allocator]
static HEAP: Counting = Counting;

fuzz_target!(|data: &[u8]| {
    bounded(data, BASE, PER_BYTE, harness::hello);
});
