//! A global allocator that counts live heap bytes and their peak, so that a
//! fuzz target can fail an input that makes the code allocate more than a
//! bound (libFuzzer's own `-malloc_limit_mb` sees one allocation at a time,
//! and `-rss_limit_mb` only the whole process).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counted.
pub struct Counting;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Relaxed);
            grew(new_size);
        }
        p
    }
}

fn grew(by: usize) {
    let live = LIVE.fetch_add(by, Relaxed) + by;
    PEAK.fetch_max(live, Relaxed);
}

/// Runs `f` on `data` and panics if the heap it used at its peak (above
/// what was live before) exceeds `base + per_byte * data.len()`.
pub fn bounded(data: &[u8], base: usize, per_byte: usize, f: fn(&[u8])) {
    let before = LIVE.load(Relaxed);
    PEAK.store(before, Relaxed);
    f(data);
    let used = PEAK.load(Relaxed).saturating_sub(before);
    let bound = base + per_byte * data.len();
    assert!(
        used <= bound,
        "{} input bytes made the code hold {used} heap bytes at once (bound {bound})",
        data.len()
    );
}
