//! The `peercat` binary: arguments -> logging -> Ctrl-C handler -> run ->
//! exit code.

use std::fs::OpenOptions;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use log::LevelFilter;
use peercat::router::Outcome;
use peercat::shutdown::{Cause, Shutdown};
use peercat::{Config, Error};
use simplelog::{
    ColorChoice, CombinedLogger, ConfigBuilder, SharedLogger, TermLogger, TerminalMode, WriteLogger,
};

fn main() -> ExitCode {
    let config = match peercat::config::parse(std::env::args_os()) {
        Ok(config) => config,
        Err(e) => e.exit(), // usage errors: exit 2; --help and --version: exit 0
    };
    if let Err(e) = init_logging(&config) {
        eprintln!("error: {e}");
        return ExitCode::from(1);
    }
    let shutdown = Arc::new(Shutdown::default());
    handle_signals(shutdown.clone());
    let logs_to_file = config.log_file.is_some();
    match peercat::run(config, shutdown) {
        Ok(Outcome::Complete) => ExitCode::SUCCESS,
        // The summary on the log names who missed what.
        Ok(Outcome::Incomplete) => ExitCode::from(3),
        Ok(Outcome::NoPeers) => {
            if !logs_to_file {
                eprintln!("error: not enough peers connected in time (--connect-timeout)");
            }
            ExitCode::from(1)
        }
        Err(e) => {
            if logs_to_file {
                log::error!("{e}");
            }
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(config: &Config) -> Result<(), Error> {
    let mut loggers = vec![logger(config, config.log_level, false)?];
    if config.log_level < LevelFilter::Info {
        // Scripts find a node's port in the log, so even -q says it.
        loggers.push(logger(config, LevelFilter::Info, true)?);
    }
    // Fails only if a logger is already set, which main never does twice.
    CombinedLogger::init(loggers).expect("the logger is set once");
    Ok(())
}

/// A logger for the log file or stderr; `announcements_only` lets through
/// nothing but the `listening on` line.
fn logger(
    config: &Config,
    level: LevelFilter,
    announcements_only: bool,
) -> Result<Box<dyn SharedLogger>, Error> {
    let mut format = ConfigBuilder::new();
    format
        .set_target_level(LevelFilter::Off)
        .set_thread_level(LevelFilter::Off)
        .set_location_level(LevelFilter::Off);
    if announcements_only {
        format.add_filter_allow_str(peercat::node::ANNOUNCE);
    }
    let format = format.build();
    Ok(match &config.log_file {
        Some(path) => {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| Error::LogFile {
                    path: path.clone(),
                    source,
                })?;
            WriteLogger::new(level, format, file)
        }
        None => {
            // termcolor's Auto looks at TERM only; a pipe or file wants no colours.
            let color = if std::io::stderr().is_terminal() {
                ColorChoice::Auto
            } else {
                ColorChoice::Never
            };
            TermLogger::new(level, format, TerminalMode::Stderr, color)
        }
    })
}

/// First Ctrl-C (or SIGTERM): a polite shutdown. Second: exit at once.
fn handle_signals(shutdown: Arc<Shutdown>) {
    static SIGNALS: AtomicUsize = AtomicUsize::new(0);
    let installed = ctrlc::set_handler(move || {
        if SIGNALS.fetch_add(1, Ordering::SeqCst) == 0 {
            log::info!("interrupted: stopping politely (again to quit at once)");
            shutdown.trigger(Cause::Signal);
        } else {
            eprintln!("interrupted twice: quitting");
            std::process::exit(130);
        }
    });
    if let Err(e) = installed {
        log::warn!("cannot handle Ctrl-C: {e}; it will end peercat without a polite goodbye");
    }
}
