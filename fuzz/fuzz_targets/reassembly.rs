//! `cargo +nightly fuzz run reassembly`: see [`peercat_fuzz::harness::reassembly`].
#![no_main]

use libfuzzer_sys::fuzz_target;
use peercat_fuzz::alloc::{bounded, Counting};
use peercat_fuzz::harness;

/// Heap an input may cost at once: a read buffer, a taken one and a spare: each at most twice what arrived, or 128 KiB (`BUSY_CAPACITY`).
const BASE: usize = 512 * 1024;
const PER_BYTE: usize = 8;

#[global_allocator]
static HEAP: Counting = Counting;

fuzz_target!(|data: &[u8]| {
    bounded(data, BASE, PER_BYTE, harness::reassembly);
});
