//! The fuzz corpus, replayed on stable: every input kept in
//! `fuzz/corpus/<target>/` runs through the same entry points as the
//! libFuzzer targets (`fuzz/src/harness.rs`, included here), so `cargo test`
//! checks, without nightly, every case the fuzzer found worth keeping and
//! every crash it found (each fixed and kept as a corpus file).

use std::path::Path;

#[path = "../../fuzz/src/harness.rs"]
mod harness;
#[path = "../../fuzz/src/input.rs"]
mod input;
#[path = "../../fuzz/src/record.rs"]
mod record;

/// Runs every file in `fuzz/corpus/<target>/` through the target; a corpus
/// directory that is missing or empty fails the test rather than passing
/// vacuously.
fn replay(target: &str) {
    let (_, run) = harness::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .expect("a known target");
    replay_with(target, *run);
}

/// [`replay`] for a target outside `harness::TARGETS` (the record layer's,
/// `fuzz/src/record.rs`).
fn replay_with(target: &str, run: harness::Target) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the corpus {}: {e}", dir.display()));
    let mut count = 0;
    for entry in entries {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{} fails {target}", path.display());
        count += 1;
    }
    assert!(count >= 5, "only {count} inputs in {}", dir.display());
}

/// One input for one target, named by `PEERCAT_FUZZ_INPUT=target:path`:
/// reproduces a crash the fuzzer found, on stable and under a debugger.
/// Without the variable it has nothing to do and says so.
#[test]
fn replay_one_input_named_in_the_environment() {
    let Ok(spec) = std::env::var("PEERCAT_FUZZ_INPUT") else {
        eprintln!("PEERCAT_FUZZ_INPUT is not set: nothing to replay");
        return;
    };
    let (target, path) = spec.split_once(':').expect("target:path");
    let (_, run) = harness::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .expect("a known target");
    run(&std::fs::read(path).unwrap());
}

#[test]
fn the_frames_corpus_decodes_without_a_fault() {
    replay("frames");
}

#[test]
fn the_hello_corpus_is_refused_or_accepted_cleanly() {
    replay("hello");
}

#[test]
fn the_reassembly_corpus_reads_as_one_decode_does() {
    replay("reassembly");
}

#[test]
fn the_mesh_corpus_keeps_order_and_bounds() {
    replay("mesh");
}

#[test]
fn the_record_corpus_opens_only_what_was_sealed() {
    replay_with("record", record::record);
}
