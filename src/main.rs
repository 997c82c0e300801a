//! The `peercat` binary: arguments -> (`--generate`: print, exit) ->
//! logging -> signal handler -> run -> flush the log -> exit code.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use peercat::config::Generate;
use peercat::logging::LogSink;
use peercat::router::Outcome;
use peercat::shutdown::{Cause, Shutdown};

/// How long the exit waits for queued log lines to reach stderr or the log
/// file: the last lines ("stopped", the summary) matter, but a stderr
/// nobody reads must not hold the process.
const FLUSH_AT_EXIT: Duration = Duration::from_secs(1);

/// A signal repeated within this time is the same request: GNU `timeout`
/// sends SIGTERM to the child and then to its whole group.
const SAME_REQUEST: Duration = Duration::from_millis(500);

fn main() -> ExitCode {
    let config = match peercat::config::parse(std::env::args_os()) {
        Ok(config) => config,
        Err(e) => e.exit(), // usage errors: exit 2; --help and --version: exit 0
    };
    if let Some(what) = config.generate {
        return generate(what);
    }
    if let Some(path) = &config.keygen {
        return keygen(path);
    }
    heap::keep_freed_memory();
    // Before any thread starts, so that every thread inherits the mask.
    let hup_ignored = hup::keep_ignored();
    let log = match peercat::logging::init(config.log_level, config.log_file.as_deref()) {
        Ok(log) => log,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let shutdown = Arc::new(Shutdown::default());
    handle_signals(shutdown.clone(), log.clone(), hup_ignored);
    let logs_to_file = config.log_file.is_some();
    let result = peercat::run(config, shutdown);
    if let Err(e) = &result {
        if logs_to_file {
            log::error!("{e}");
        }
    }
    let flushed = log.flush(FLUSH_AT_EXIT);
    match result {
        Ok(Outcome::Complete) => ExitCode::SUCCESS,
        // The summary on the log names who missed what.
        Ok(Outcome::Incomplete) => ExitCode::from(3),
        Ok(Outcome::NoPeers) => {
            // The log said how many peers came; say it where the user looks.
            if logs_to_file {
                eprintln!("error: not enough peers connected in time (--connect-timeout)");
            }
            ExitCode::from(1)
        }
        Err(e) => {
            // Unless stderr is stuck: then this line would hang the exit.
            if flushed || logs_to_file {
                eprintln!("error: {e}");
            }
            ExitCode::from(1)
        }
    }
}

/// `--keygen PATH`: a new key pair in PATH and PATH.pub; the public key on
/// stdout, for the members' `--allow` lists, and its node id on stderr.
fn keygen(path: &std::path::Path) -> ExitCode {
    match peercat::secure::keygen(path) {
        Ok((public, fingerprint)) => {
            println!("{public}");
            eprintln!(
                "wrote {} (private, keep it) and {} (public, share it); \
                 the log shows this key as node {fingerprint}",
                path.display(),
                peercat::secure::keys::pub_path(path).display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// `--generate`: a completion script or the man page on stdout.
fn generate(what: Generate) -> ExitCode {
    use clap_complete::Shell;
    let mut cmd = peercat::config::command();
    let mut text = Vec::new();
    let shell = match what {
        Generate::CompleteBash => Some(Shell::Bash),
        Generate::CompleteZsh => Some(Shell::Zsh),
        Generate::CompleteFish => Some(Shell::Fish),
        Generate::CompletePowershell => Some(Shell::PowerShell),
        Generate::Man => None,
    };
    let rendered = match shell {
        Some(shell) => {
            clap_complete::generate(shell, &mut cmd, "peercat", &mut text);
            Ok(())
        }
        None => clap_mangen::Man::new(cmd).render(&mut text),
    };
    let written = rendered.and_then(|()| {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(&text)?;
        stdout.flush()
    });
    match written {
        Ok(()) => ExitCode::SUCCESS,
        // `peercat --generate man | head`: the reader had enough.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write to stdout: {e}");
            ExitCode::from(1)
        }
    }
}

/// The first Ctrl-C, SIGTERM or SIGHUP: a polite shutdown. A repeat within
/// `SAME_REQUEST` is the same request (the handler cannot tell the three
/// signals apart, so any repeat counts); a later one quits at once.
/// SIGHUP that was ignored at start (`nohup`) stays ignored.
fn handle_signals(shutdown: Arc<Shutdown>, log: LogSink, hup_ignored: bool) {
    let mut first: Option<Instant> = None;
    let installed = ctrlc::set_handler(move || match first {
        None => {
            first = Some(Instant::now());
            log::info!("interrupted: stopping politely (a second signal quits at once)");
            shutdown.trigger(Cause::Signal);
        }
        Some(at) if at.elapsed() < SAME_REQUEST => {
            log::debug!("the same signal again within {SAME_REQUEST:?}: one request");
        }
        Some(_) => {
            log::warn!("interrupted twice: quitting");
            log.flush(Duration::from_millis(200));
            std::process::exit(130);
        }
    });
    if let Err(e) = installed {
        log::warn!("cannot handle Ctrl-C: {e}; it will end peercat without a polite goodbye");
    }
    if hup_ignored {
        // ctrlc handles SIGHUP too; give it back to nohup.
        hup::ignore();
        log::debug!("SIGHUP was ignored at start (nohup): it stays ignored");
    }
}

/// How the C heap gives memory back to the system.
mod heap {
    /// Blocks below this come from the heap, not a mapping of their own:
    /// every read buffer (128 KiB when busy) and a 1 MiB message with room
    /// to spare.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    const MMAP_THRESHOLD: libc::c_int = 4 << 20;
    /// Free memory at the heap's top is handed back to the system only past
    /// this.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    const TRIM_THRESHOLD: libc::c_int = 64 << 20;

    /// Read buffers go from a reader to the router, the writers, the stdout
    /// thread and the mesh's cache, and are freed wherever the last one lets
    /// go. glibc's defaults hand such memory back to the system at once and
    /// fault it in again, page by page, for the next buffer: with these
    /// thresholds, the fan-out through a mesh took under half its page
    /// faults, and 1 MiB messages went faster (BENCHMARKS.md). The price:
    /// up to 64 MiB freed after a burst may stay with the process. Other C
    /// libraries: left as they are.
    pub fn keep_freed_memory() {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only sets the allocator's tuning parameters; it is
        // called before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        }
    }
}

/// SIGHUP's disposition, which the ctrlc crate does not look at.
#[cfg(unix)]
mod hup {
    /// True if SIGHUP is ignored now (as `nohup` leaves it). Then it is
    /// also blocked in this thread, and so in every thread started after:
    /// ctrlc's handler cannot run for it in the moment before `ignore`.
    pub fn keep_ignored() -> bool {
        // SAFETY: sigaction with a null new action only reads the current
        // one into a zeroed struct we own; the mask calls take sets we own.
        unsafe {
            let mut current: libc::sigaction = std::mem::zeroed();
            let ignored = libc::sigaction(libc::SIGHUP, std::ptr::null(), &mut current) == 0
                && current.sa_sigaction == libc::SIG_IGN;
            if ignored {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGHUP);
                libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            }
            ignored
        }
    }

    /// Ignores SIGHUP again, discarding one that came in the meantime.
    pub fn ignore() {
        // SAFETY: SIG_IGN is a valid disposition for SIGHUP; no handler runs.
        unsafe {
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
        }
    }
}

#[cfg(not(unix))]
mod hup {
    pub fn keep_ignored() -> bool {
        false
    }

    pub fn ignore() {}
}
