//! `cargo +nightly fuzz run mesh`: see [`peercat_fuzz::harness::mesh`].
#![no_main]

use libfuzzer_sys::fuzz_target;
use peercat_fuzz::alloc::{bounded, Counting};
use peercat_fuzz::harness;

/// Heap an input may cost at once: the mesh's tables and each origin's window grow with the frames fed, not beyond.
const BASE: usize = 2 << 20;
const PER_BYTE: usize = 64;

#[global_allocator]
static HEAP: Counting = Counting;

fuzz_target!(|data: &[u8]| {
    bounded(data, BASE, PER_BYTE, harness::mesh);
});
