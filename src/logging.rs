//! The log sink: records go into a bounded in-memory queue, and one `log`
//! thread writes them to stderr or the `--log-file`. No other thread ever
//! waits on a write to the log: when nobody drains stderr, the `log` thread
//! blocks alone, the queue fills, and further lines are dropped and counted;
//! the count is logged once the writer catches up.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use log::{Level, LevelFilter, Log as _, Record};
use parking_lot::Mutex;
use simplelog::{CombinedLogger, ConfigBuilder, SharedLogger, WriteLogger};

use crate::error::Error;
use crate::node::ANNOUNCE;
use crate::output::rfc3339_micros;
use crate::wire::describe;

/// Lines that may wait for the writer: enough for any burst a healthy stderr
/// absorbs, small enough (a few hundred KiB) to bound the memory.
const QUEUE_LINES: usize = 4096;

/// Bytes the writer gathers into one `write` call.
const BATCH_BYTES: usize = 64 * 1024;

enum Entry {
    Line(Vec<u8>),
    /// Answered once every line queued before it has been written.
    Flush(Sender<()>),
}

/// Where the lines go, and what to tell the user when they were dropped.
enum Target {
    Stderr,
    File { file: File, path: PathBuf },
}

/// Kept by `main`: flushes what is queued before the process exits.
#[derive(Clone)]
pub struct LogSink {
    tx: Sender<Entry>,
}

impl LogSink {
    /// Waits at most `timeout` until every line logged so far is written.
    /// False if the writer is stuck (stderr not read): then they are lost.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (ack_tx, ack_rx) = bounded(1);
        self.tx
            .send_deadline(Entry::Flush(ack_tx), deadline)
            .is_ok()
            && ack_rx.recv_deadline(deadline).is_ok()
    }
}

/// Installs the logger: `level` for everything, plus the `listening on`
/// announcement at any level (scripts read the port from it, even under -q).
/// The log file gets RFC 3339 timestamps (a file outlives the day); stderr
/// keeps the short time. A log file that cannot be written is an error here.
pub fn init(level: LevelFilter, log_file: Option<&Path>) -> Result<LogSink, Error> {
    let target = match log_file {
        Some(path) => Target::File {
            file: open_log_file(path)?,
            path: path.to_owned(),
        },
        None => Target::Stderr,
    };
    let to_file = matches!(target, Target::File { .. });
    let (tx, rx) = bounded(QUEUE_LINES);
    let dropped = Arc::new(AtomicU64::new(0));
    let queue = || QueueWriter::new(tx.clone(), dropped.clone(), to_file);
    let mut loggers: Vec<Box<dyn SharedLogger>> =
        vec![WriteLogger::new(level, format(to_file, false), queue())];
    if level < LevelFilter::Info {
        loggers.push(WriteLogger::new(
            LevelFilter::Info,
            format(to_file, true),
            queue(),
        ));
    }
    let writer = Writer::new(target, dropped);
    std::thread::Builder::new()
        .name("log".to_owned())
        // Never joined on purpose: it may be stuck in a write to a stderr
        // nobody reads, and the process must still be able to exit.
        .spawn(move || writer.run(&rx))
        .map_err(Error::Spawn)?;
    // Fails only if a logger is already set, which main never does twice.
    CombinedLogger::init(loggers).expect("the logger is set once");
    Ok(LogSink { tx })
}

/// The log line format; `announcements_only` lets through nothing but the
/// `listening on` line.
fn format(to_file: bool, announcements_only: bool) -> simplelog::Config {
    let mut format = ConfigBuilder::new();
    format
        .set_target_level(LevelFilter::Off)
        .set_thread_level(LevelFilter::Off)
        .set_location_level(LevelFilter::Off);
    if to_file {
        // The queue writer dates each line itself (`QueueWriter::stamp`).
        format.set_time_level(LevelFilter::Off);
    }
    if announcements_only {
        format.add_filter_allow_str(ANNOUNCE);
    }
    format.build()
}

/// Opens the log file for appending and writes its first line at once, so a
/// file that takes no bytes (`/dev/full`, a full disk) fails here, at start.
fn open_log_file(path: &Path) -> Result<File, Error> {
    let error = |source| Error::LogFile {
        path: path.to_owned(),
        source,
    };
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(error)?;
    let probe = Probe {
        file: file.try_clone().map_err(error)?,
        error: Arc::new(Mutex::new(None)),
        line: Vec::new(),
    };
    let failed = probe.error.clone();
    let logger = WriteLogger::new(LevelFilter::Info, format(true, false), probe);
    logger.log(
        &Record::builder()
            .level(Level::Info)
            .args(format_args!(
                "peercat {} (pid {}) logs here",
                env!("CARGO_PKG_VERSION"),
                std::process::id()
            ))
            .build(),
    );
    logger.flush();
    let failed = failed.lock().take();
    match failed {
        Some(source) => Err(error(source)),
        None => Ok(file),
    }
}

/// The log file, remembering the first failed write (simplelog drops them).
struct Probe {
    file: File,
    error: Arc<Mutex<Option<io::Error>>>,
    /// The line so far, dated as the queue writer dates its lines.
    line: Vec<u8>,
}

impl Write for Probe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        stamp_line(&mut self.line, true);
        self.line.extend_from_slice(buf);
        if !buf.ends_with(b"\n") {
            return Ok(buf.len());
        }
        let line = std::mem::take(&mut self.line);
        self.file.write_all(&line).inspect_err(|e| {
            self.error
                .lock()
                .get_or_insert_with(|| io::Error::new(e.kind(), e.to_string()));
        })?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Starts a log file's line (`line` empty) with the date and time: RFC
/// 3339 in UTC, microseconds, always as many digits (simplelog's own RFC
/// 3339 dropped trailing zeros, so a plain `sort` of merged logs put lines
/// out of order).
fn stamp_line(line: &mut Vec<u8>, stamp: bool) {
    if stamp && line.is_empty() {
        line.extend_from_slice(rfc3339_micros(SystemTime::now()).as_bytes());
        line.push(b' ');
    }
}

/// What the loggers write into: whole lines go onto the queue, or are
/// counted as dropped when it is full. Never blocks.
struct QueueWriter {
    tx: Sender<Entry>,
    dropped: Arc<AtomicU64>,
    line: Vec<u8>,
    /// Each line starts with the date and time (the log file's lines,
    /// `stamp_line`).
    stamp: bool,
}

impl QueueWriter {
    fn new(tx: Sender<Entry>, dropped: Arc<AtomicU64>, stamp: bool) -> QueueWriter {
        QueueWriter {
            tx,
            dropped,
            line: Vec::new(),
            stamp,
        }
    }
}

impl Write for QueueWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        stamp_line(&mut self.line, self.stamp);
        self.line.extend_from_slice(buf);
        // simplelog writes a record in pieces and ends it with "\n".
        if buf.ends_with(b"\n") {
            let line = std::mem::take(&mut self.line);
            if let Err(TrySendError::Full(_)) = self.tx.try_send(Entry::Line(line)) {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Tells how many lines were dropped, and why (a test watches it).
type Report = Box<dyn Fn(u64, &str) + Send>;

/// The `log` thread's state: the destination and the count of lost lines.
struct Writer {
    out: Box<dyn Write + Send>,
    /// Some while writing to the log file; None once on stderr.
    file: Option<PathBuf>,
    dropped: Arc<AtomicU64>,
    report: Report,
}

impl Writer {
    fn new(target: Target, dropped: Arc<AtomicU64>) -> Writer {
        let report = Box::new(|n: u64, why: &str| {
            let s = if n == 1 { "" } else { "s" };
            log::warn!("{n} log line{s} dropped: {why}");
        });
        match target {
            Target::Stderr => Writer {
                out: Box::new(io::stderr()),
                file: None,
                dropped,
                report,
            },
            Target::File { file, path } => Writer {
                out: Box::new(file),
                file: Some(path),
                dropped,
                report,
            },
        }
    }

    fn run(mut self, rx: &Receiver<Entry>) {
        let mut batch = Vec::new();
        let mut acks = Vec::new();
        while let Ok(entry) = rx.recv() {
            let mut next = Some(entry);
            while let Some(entry) = next {
                match entry {
                    Entry::Line(line) => batch.extend_from_slice(&line),
                    Entry::Flush(ack) => acks.push(ack),
                }
                next = if batch.len() < BATCH_BYTES {
                    rx.try_recv().ok()
                } else {
                    None
                };
            }
            self.write(&batch);
            batch.clear();
            for ack in acks.drain(..) {
                let _ = ack.send(());
            }
            self.report_drops();
        }
    }

    /// Writes a batch. A log file that fails is never silent: say so on
    /// stderr, and log there from now on.
    fn write(&mut self, batch: &[u8]) {
        let result = self.out.write_all(batch).and_then(|()| self.out.flush());
        if let (Err(e), Some(path)) = (result, &self.file) {
            let mut stderr = io::stderr();
            let _ = writeln!(
                stderr,
                "warning: cannot write log file {}: {}; logging to stderr from now on",
                path.display(),
                describe(&e)
            );
            let _ = stderr.write_all(batch);
            self.out = Box::new(stderr);
            self.file = None;
        }
        // A failing stderr has nowhere to complain to.
    }

    /// Once the writer has caught up, says how many lines the full queue lost.
    fn report_drops(&self) {
        let n = self.dropped.swap(0, Ordering::Relaxed);
        if n > 0 {
            let why = match self.file {
                Some(_) => "the log file could not keep up",
                None => "stderr was not being read",
            };
            (self.report)(n, why);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A destination that takes nothing until `open` is sent, then
    /// collects everything.
    struct Gate {
        open: Receiver<()>,
        opened: bool,
        got: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if !self.opened {
                self.opened = self.open.recv().is_ok();
            }
            self.got.lock().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stuck_writer_drops_lines_without_blocking_and_reports_the_count() {
        let (tx, rx) = bounded(QUEUE_LINES);
        let dropped = Arc::new(AtomicU64::new(0));
        let (open_tx, open_rx) = bounded(1);
        let got = Arc::new(Mutex::new(Vec::new()));
        let (report_tx, report_rx) = bounded(1);
        let writer = Writer {
            out: Box::new(Gate {
                open: open_rx,
                opened: false,
                got: got.clone(),
            }),
            file: None,
            dropped: dropped.clone(),
            report: Box::new(move |n, why: &str| {
                let _ = report_tx.send((n, why.to_owned()));
            }),
        };
        std::thread::spawn(move || writer.run(&rx));
        let mut queue = QueueWriter::new(tx.clone(), dropped.clone(), false);
        let lines = 10 * QUEUE_LINES;
        let started = Instant::now();
        for n in 0..lines {
            write!(queue, "line ").unwrap();
            writeln!(queue, "{n}").unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        let lost = dropped.load(Ordering::Relaxed);
        // The writer holds one batch (lines of 7 bytes or more), the queue
        // at most QUEUE_LINES more; the rest is dropped.
        assert!(
            lost as usize >= lines - QUEUE_LINES - BATCH_BYTES / 7,
            "{lost}"
        );
        open_tx.send(()).unwrap();
        let sink = LogSink { tx };
        assert!(sink.flush(Duration::from_secs(10)));
        let (n, why) = report_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(n, lost);
        assert_eq!(why, "stderr was not being read");
        let written = got.lock().iter().filter(|&&b| b == b'\n').count();
        assert_eq!(written as u64 + lost, lines as u64);
        assert!(got.lock().starts_with(b"line 0\nline 1\n"));
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_log_file_that_takes_no_bytes_fails_at_open() {
        let path = Path::new("/dev/full");
        let err = open_log_file(path).unwrap_err();
        assert!(err.to_string().contains("/dev/full"), "{err}");
    }
}
