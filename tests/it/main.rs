//! Integration tests: real `peercat` processes talking over 127.0.0.1.
//!
//! One module per group of behaviours in the README; each test names the
//! behaviour it proves. Process-level signal tests are unix-only.

mod support;

#[cfg(target_os = "linux")]
mod abuse;
mod bad_input;
mod connections;
#[cfg(unix)]
mod delivery;
#[cfg(target_os = "linux")]
mod discovery;
#[cfg(unix)]
mod flow;
mod fuzz_corpus;
#[cfg(target_os = "linux")]
mod lab;
#[cfg(unix)]
mod liveness;
#[cfg(unix)]
mod logging;
#[cfg(unix)]
mod mesh;
mod messages;
#[cfg(target_os = "linux")]
mod netns;
mod private;
mod shutdown;
mod strangers;
mod usage;
