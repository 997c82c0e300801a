//! `cargo +nightly fuzz run frames`: see [`peercat_fuzz::harness::frames`].
#![no_main]

use libfuzzer_sys::fuzz_target;
use peercat_fuzz::alloc::{bounded, Counting};
use peercat_fuzz::harness;

/// Heap an input may cost at once: decoding allocates only for what is present; re-encoding doubles it.
const BASE: usize = 64 * 1024;
const PER_BYTE: usize = 4;

#[global_allocator]
static HEAP: Counting = Counting;

fuzz_target!(|data: &[u8]| {
    bounded(data, BASE, PER_BYTE, harness::frames);
});
