//! peercat's fuzz targets: the bodies live in [`harness`] (shared with the
//! corpus replay in `tests/it/fuzz_corpus.rs`), and [`alloc`] counts the
//! heap so that each target can bound the memory an input costs;
//! [`record`] fuzzes the encrypted links' records.

pub mod alloc;
pub mod harness;
pub mod input;
/// The encrypted links' record layer.
pub mod record;
