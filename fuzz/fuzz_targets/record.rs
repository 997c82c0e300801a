//! `cargo +nightly fuzz run record`: see [`peercat_fuzz::record::record`].
#![no_main]

use libfuzzer_sys::fuzz_target;
use peercat_fuzz::alloc::{bounded, Counting};
use peercat_fuzz::record;

/// Heap an input may cost at once: an opener's two record buffers
/// (128 KiB), and the harness's own copies of what it sealed (up to 256 KiB
/// of plaintext and a piece of 128 KiB more, each kept as plaintext, sealed
/// and opened, in vectors that double: about 3 MiB).
const BASE: usize = 4 << 20;
const PER_BYTE: usize = 16;

#[global_allocator]
static HEAP: Counting = Counting;

fuzz_target!(|data: &[u8]| {
    bounded(data, BASE, PER_BYTE, record::record);
});
