//! The errors that end a node, and their exit codes.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::wire::describe;

/// Why `peercat` could not run. Each variant maps to exit code 1; usage
/// errors (exit 2) are reported by the command-line parser before this.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The listening socket could not be opened (port busy, no permission).
    Listen { addr: SocketAddr, source: io::Error },
    /// The `--log-file` could not be opened, or took no bytes.
    LogFile { path: PathBuf, source: io::Error },
    /// The OS refused to start a thread.
    Spawn(io::Error),
    /// A worker thread panicked: a bug in peercat.
    Internal,
    /// `--secret-file`, `--key` or `--allow` could not be used (the text
    /// names the file, and the line of an `--allow` file).
    Keys(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Listen { addr, source } => {
                // strerror spelling, as the user knows it from other tools.
                let text = source.to_string();
                let text = text.split(" (os error").next().unwrap_or(&text);
                write!(f, "cannot listen on {addr}: {text}")
            }
            Error::LogFile { path, source } => {
                write!(
                    f,
                    "cannot write to log file {}: {}",
                    path.display(),
                    describe(source)
                )
            }
            Error::Spawn(e) => write!(f, "cannot start a thread: {}", describe(e)),
            Error::Keys(why) => f.write_str(why),
            Error::Internal => write!(
                f,
                "internal error: a worker thread panicked (a bug; see the log)"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Listen { source, .. } | Error::LogFile { source, .. } | Error::Spawn(source) => {
                Some(source)
            }
            Error::Internal | Error::Keys(_) => None,
        }
    }
}
