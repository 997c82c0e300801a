//! The `peercat` binary: arguments -> logging -> Ctrl-C handler -> run ->
//! exit code.

use std::fs::OpenOptions;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use log::LevelFilter;
use peercat::shutdown::{Cause, Shutdown};
use peercat::{Config, Error};
use simplelog::{ColorChoice, ConfigBuilder, TermLogger, TerminalMode, WriteLogger};

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
        Ok(()) => ExitCode::SUCCESS,
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
    let format = ConfigBuilder::new()
        .set_target_level(LevelFilter::Off)
        .set_thread_level(LevelFilter::Off)
        .set_location_level(LevelFilter::Off)
        .build();
    let result = match &config.log_file {
        Some(path) => {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| Error::LogFile {
                    path: path.clone(),
                    source,
                })?;
            WriteLogger::init(config.log_level, format, file)
        }
        None => {
            // termcolor's Auto looks at TERM only; a pipe or file wants no colours.
            let color = if std::io::stderr().is_terminal() {
                ColorChoice::Auto
            } else {
                ColorChoice::Never
            };
            TermLogger::init(config.log_level, format, TerminalMode::Stderr, color)
        }
    };
    // Fails only if a logger is already set, which main never does twice.
    result.expect("the logger is set once");
    Ok(())
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
