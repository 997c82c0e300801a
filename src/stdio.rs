//! stdin lines in, stdout messages out.
//!
//! The stdin thread reads large blocks and frames every line as a message as
//! soon as its newline arrives; a block's lines become a [`Chunk`] of encoded
//! frames that every peer's outbox shares (a very long line, a chunk of its
//! own). The stdout thread prints what the router hands it through a large
//! buffer, flushed whenever nothing more is waiting, and gives each printed
//! batch's buffer back to the readers for reuse.

use std::io::{self, BufWriter, IoSlice, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::atomic::Ordering;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Condvar, Mutex};

use crate::event::{Event, Line, Lines, Output};
use crate::frame::{self, MsgHeader, NodeId, MSG_HEADER_LEN};
use crate::node::{Node, SPARE_BUFFER_MAX};
use crate::outbox::Bytes;
use crate::output;
use crate::shutdown::{Cause, Never};
use crate::wire::describe;

/// Bytes asked of stdin per read: a pipe gives at most 64 KiB at a time, a
/// file or socket more.
const READ_SIZE: usize = 128 * 1024;
/// Bytes of output gathered before a write to stdout.
const WRITE_SIZE: usize = 64 * 1024;
/// While stdout reads slowly, output is written and counted as printed
/// in steps of whole lines of at most this many bytes: `PIPE_BUF` on
/// Linux, so that each write to a pipe is all or nothing. A stdout read
/// slowly then shows progress (the node's acknowledgements rise, so
/// neither it nor its neighbours take it for stuck) each time its reader
/// took that much; and a node that exits while a write waits for room
/// leaves whole lines only, each counted. Whole runs, up to a frame's
/// worth, were written at once before: a reader taking 30 KB/s showed no
/// progress for over 3 s and was cut at `--stall-timeout 3` (attack17
/// F1); with steps of 8 KiB, a node stopped by a signal while its reader
/// took 5 KB/s still ended its output with half a line (attack22). A
/// line longer than this is written alone, in writes of this size
/// ([`Pieces`]), each of which counts as progress.
const PIPE_STEP: usize = 4096;
/// A stdout that took this many flushes in a row at once reads fast: its
/// output goes out in larger writes (half the buffer), runs whole, as
/// before the steps (fan-out to 4 delivered 17 % less with steps kept
/// on: more writes and acknowledgements). A flush that blocks for
/// `SLOW_FLUSH` (a reader under about 600 KB/s: far above what the
/// steps are for, yet not so short that a reader merely waiting for a
/// CPU counts) brings the steps back.
const QUICK_FLUSHES: u32 = 64;
const SLOW_FLUSH: Duration = Duration::from_millis(50);

/// Encoded message frames, ready to be queued for any number of peers.
pub struct Chunk {
    pub bytes: Bytes,
    pub frames: usize,
    /// The sequence number of its first message; the rest follow on.
    pub first_seq: u64,
    /// The largest payload in the chunk, to compare with a peer's limit.
    pub largest: usize,
}

/// Whether the stdin thread may read: only while a line read now can reach
/// a peer. The router opens and closes it as peers come and go; a line is
/// never read while nobody would get it. Mutex and condition variable: the
/// router sets it, the stdin thread waits on it.
#[derive(Default)]
pub struct StdinGate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Default)]
struct GateState {
    open: bool,
    /// The node is stopping: stdin is not read again.
    shut: bool,
}

impl StdinGate {
    pub fn set_open(&self, open: bool) {
        self.state.lock().open = open;
        self.changed.notify_all();
    }

    pub fn shut(&self) {
        self.state.lock().shut = true;
        self.changed.notify_all();
    }

    pub fn is_open(&self) -> bool {
        self.state.lock().open
    }

    /// Waits until stdin may be read; false once the node is stopping.
    fn wait_open(&self) -> bool {
        let mut state = self.state.lock();
        while !state.open && !state.shut {
            self.changed.wait(&mut state);
        }
        !state.shut
    }
}

/// Turns a byte stream into MSG frames, one entry (the line and its
/// newline) per line.
///
/// A line is everything up to `\n` (not included): any other bytes, `\r`
/// and NUL among them, belong to the message, and an empty line is an empty
/// message. A line longer than `max_frame` is reported and skipped without
/// being buffered. A last line without a newline is still a message.
///
/// Lines that arrive whole are entries of the current frame (a frame of
/// several lines stays within [`frame::MAX_RUN_LEN`], so any peer takes
/// it, and holds at most [`frame::MAX_RUN_ENTRIES`]: short lines fill a
/// frame by their count first). A line split across reads is gathered behind room for its header,
/// so a long one becomes a chunk of its own without being copied again.
pub struct LineFramer {
    origin: NodeId,
    max_frame: usize,
    next_seq: u64,
    /// Lines ended so far.
    lines: u64,
    chunk: Vec<u8>,
    /// Where the open frame starts in `chunk` (its header is written when
    /// it closes), and its first seq.
    open: Option<(usize, u64)>,
    frames: usize,
    largest: usize,
    /// Chunks finished before `chunk`, in order.
    ready: Vec<Chunk>,
    /// A line whose newline has not arrived yet: header room, then payload.
    /// Empty when there is none.
    partial: Vec<u8>,
    /// The current line is too long: drop bytes until its newline.
    skipping: bool,
    pub skipped: u64,
    /// Written into every message: the origin's `--ttl`.
    ttl: u8,
    /// Written into every message: this process's life under its id.
    life: u64,
}

/// A line at least this long goes out as a chunk of its own.
const OWN_CHUNK: usize = 64 * 1024;
/// Room in front of a line gathered across reads: a frame's header.
const ROOM: usize = MSG_HEADER_LEN;

impl LineFramer {
    pub fn new(origin: NodeId, max_frame: usize) -> Self {
        LineFramer {
            origin,
            max_frame,
            next_seq: 1,
            lines: 0,
            chunk: Vec::new(),
            open: None,
            frames: 0,
            largest: 0,
            ready: Vec::new(),
            partial: Vec::new(),
            skipping: false,
            skipped: 0,
            ttl: frame::DEFAULT_TTL,
            life: 1,
        }
    }

    /// Messages framed from now on carry `life` (see
    /// [`crate::frame::Status::life`]; 1 until then).
    pub fn with_life(mut self, life: u64) -> Self {
        self.life = life.max(1);
        self
    }

    /// Messages framed from now on carry `ttl` (the origin's `--ttl`).
    pub fn with_ttl(mut self, ttl: u8) -> Self {
        self.ttl = ttl.max(1);
        self
    }

    pub fn push(&mut self, mut data: &[u8]) {
        while let Some(newline) = memchr::memchr(b'\n', data) {
            self.end_line(&data[..newline]);
            data = &data[newline + 1..];
        }
        if !data.is_empty() && !self.skipping {
            let have = self.partial_len();
            if have + data.len() > self.max_frame {
                self.skip_line(have + data.len());
            } else {
                if self.partial.is_empty() {
                    self.partial.extend_from_slice(&[0; ROOM]);
                }
                self.partial.extend_from_slice(data);
            }
        }
    }

    /// stdin has ended: an unterminated last line is still a message.
    pub fn finish(&mut self) {
        if !self.partial.is_empty() {
            self.end_line(&[]);
        }
    }

    /// The chunks framed so far, in order.
    pub fn take(&mut self) -> Vec<Chunk> {
        self.seal_chunk();
        std::mem::take(&mut self.ready)
    }

    pub fn lines(&self) -> u64 {
        self.lines
    }

    fn partial_len(&self) -> usize {
        self.partial.len().saturating_sub(ROOM)
    }

    fn end_line(&mut self, tail: &[u8]) {
        let len = self.partial_len() + tail.len();
        if self.skipping {
            self.skipping = false;
        } else if len > self.max_frame {
            self.skip_line(len);
            self.skipping = false;
        } else if self.partial.is_empty() {
            self.emit(tail);
        } else {
            let mut frame = std::mem::take(&mut self.partial);
            frame.extend_from_slice(tail);
            if len >= OWN_CHUNK {
                // Framed in place: the header goes into the room left for
                // it, the newline after the payload.
                let header = self.header(self.next_seq).encode(len + 1);
                frame[..MSG_HEADER_LEN].copy_from_slice(&header);
                frame.push(b'\n');
                self.next_seq += 1;
                self.seal_chunk();
                self.ready.push(Chunk {
                    bytes: Arc::new(frame),
                    frames: 1,
                    first_seq: self.next_seq - 1,
                    largest: len,
                });
            } else {
                self.emit(&frame[ROOM..]);
                frame.clear();
                self.partial = frame;
            }
        }
        self.lines += 1;
    }

    fn skip_line(&mut self, at_least: usize) {
        log::warn!(
            "stdin line {} is longer than --max-frame ({at_least}+ bytes, limit {}); skipped",
            self.lines + 1,
            self.max_frame
        );
        self.skipping = true;
        self.skipped += 1;
        self.partial = Vec::new();
    }

    fn emit(&mut self, payload: &[u8]) {
        let entry = payload.len() + 1;
        if let Some((at, first)) = self.open {
            let full = self.next_seq - first >= frame::MAX_RUN_ENTRIES as u64;
            if full || self.chunk.len() - at - frame::LEN_PREFIX + entry > frame::MAX_RUN_LEN {
                self.close_frame();
            }
        }
        if self.open.is_none() {
            self.open = Some((self.chunk.len(), self.next_seq));
            self.chunk.extend_from_slice(&[0; MSG_HEADER_LEN]);
        }
        frame::put_entry(&mut self.chunk, payload);
        self.next_seq += 1;
        self.frames += 1;
        self.largest = self.largest.max(payload.len());
    }

    /// The header of our own messages from `seq` on.
    fn header(&self, seq: u64) -> MsgHeader {
        MsgHeader {
            origin: self.origin,
            seq,
            hops: 1,
            ttl: self.ttl,
            life: self.life,
        }
    }

    /// Writes the open frame's header, now that its entries are known.
    fn close_frame(&mut self) {
        if let Some((at, first)) = self.open.take() {
            let entries = self.chunk.len() - at - MSG_HEADER_LEN;
            let header = self.header(first).encode(entries);
            self.chunk[at..at + MSG_HEADER_LEN].copy_from_slice(&header);
        }
    }

    /// Moves the frames gathered in `chunk` to `ready`.
    fn seal_chunk(&mut self) {
        if self.frames == 0 {
            return;
        }
        self.close_frame();
        let capacity = self.chunk.len();
        let bytes = std::mem::replace(&mut self.chunk, Vec::with_capacity(capacity));
        self.ready.push(Chunk {
            bytes: Arc::new(bytes),
            frames: self.frames,
            first_seq: self.next_seq - self.frames as u64,
            largest: self.largest,
        });
        self.frames = 0;
        self.largest = 0;
    }
}

pub fn spawn_stdin(
    node: &Arc<Node>,
    chunks: Sender<Chunk>,
    gate: Arc<StdinGate>,
) -> io::Result<()> {
    let node_ = node.clone();
    node.threads.spawn_detached("stdin".to_owned(), move || {
        read_stdin(&node_, &chunks, &gate)
    })
}

fn read_stdin(node: &Node, chunks: &Sender<Chunk>, gate: &StdinGate) {
    if !gate.is_open() {
        match (node.config.wait_peers, node.config.wait_members) {
            (0 | 1, 0) => log::info!("waiting for a peer before reading stdin"),
            (n, 0) => log::info!("waiting for peers before reading stdin (--wait-peers {n})"),
            (_, m) => log::info!("waiting for members before reading stdin (--wait-members {m})"),
        }
    }
    let mut framer = LineFramer::new(node.id, node.config.max_frame)
        .with_ttl(node.config.ttl)
        .with_life(node.life);
    let mut stdin = io::stdin().lock();
    let mut buf = vec![0u8; READ_SIZE];
    let mut probed = false;
    loop {
        // While no peer can take a line, read at most one byte: enough to
        // notice the end of stdin (so that --exit-on-eof can finish), never
        // a line ahead.
        let want = if gate.is_open() || probed {
            if !gate.wait_open() {
                return;
            }
            probed = false;
            READ_SIZE
        } else {
            probed = true;
            1
        };
        let n = match stdin.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::error!("cannot read stdin: {}", describe(&e));
                break;
            }
        };
        if node.shutdown.is_triggered() {
            return;
        }
        framer.push(&buf[..n]);
        node.stdin_skipped.store(framer.skipped, Ordering::Relaxed);
        for chunk in framer.take() {
            if chunks.send(chunk).is_err() {
                return;
            }
        }
    }
    framer.finish();
    for chunk in framer.take() {
        let _ = chunks.send(chunk);
    }
    log::debug!(
        "stdin: {} lines, {} skipped as too long",
        framer.lines(),
        framer.skipped
    );
    // Dropping `chunks` now tells the router that stdin has ended.
}

/// Starts the stdout thread; the receiver is disconnected once it is done.
pub fn spawn_stdout(node: &Arc<Node>, outputs: Receiver<Output>) -> io::Result<Receiver<Never>> {
    let node_ = node.clone();
    let (done_tx, done) = crossbeam_channel::bounded::<Never>(0);
    node.threads.spawn("stdout".to_owned(), move || {
        let _done = done_tx;
        write_stdout(&node_, &outputs)
    })?;
    Ok(done)
}

fn write_stdout(node: &Node, outputs: &Receiver<Output>) {
    let mut printer = Printer {
        node,
        out: BufWriter::with_capacity(
            WRITE_SIZE,
            Pieces {
                inner: raw_stdout(),
                node,
                size: PIPE_STEP,
                taken: 0,
            },
        ),
        scratch: Vec::new(),
        unflushed: Vec::new(),
        unflushed_bytes: 0,
        quick: 0,
    };
    let mut print = || -> io::Result<()> {
        // Ends when the router, the only sender, is done.
        for item in outputs.iter() {
            match item {
                Output::Msgs(batch) => {
                    printer.lines(&batch)?;
                    recycle(node, batch);
                }
                other => printer.event(&other)?,
            }
            // And flushed when nothing else waits.
            if outputs.is_empty() {
                printer.flush()?;
            }
        }
        printer.flush()
    };
    let printed = print();
    if printer.node.printed.stop.load(Ordering::Relaxed) {
        // Told to stop at exit: what is still buffered is not written
        // (dropped whole, BufWriter would flush it), and counts as not
        // printed.
        drop(printer.out.into_parts());
        return;
    }
    if let Err(e) = printed {
        // Bytes stdout took since the last count: lines that may have
        // reached it, or may not (`BufWriter` writes what fills it before
        // we count it as printed).
        if printer.out.get_ref().taken > 0 {
            node.printed.failed_mid_write.store(true, Ordering::Relaxed);
        }
        if e.kind() == io::ErrorKind::BrokenPipe {
            log::info!("stdout was closed: stopping");
        } else {
            log::error!("cannot write to stdout: {}; stopping", describe(&e));
        }
        node.shutdown.trigger(Cause::StdoutClosed);
    }
}

/// The stdout thread's buffer, and the lines written into it that count
/// as printed once it is flushed.
struct Printer<'a> {
    node: &'a Node,
    out: BufWriter<Pieces<'a>>,
    /// One line of output, formatted before it goes into `out` (while
    /// stdout reads slowly).
    scratch: Vec<u8>,
    /// Runs written into `out` and not yet flushed: (origin, last seq,
    /// what they count against its window, messages).
    unflushed: Vec<(NodeId, u64, usize, u64)>,
    /// Payload bytes written into `out` since it was last flushed.
    unflushed_bytes: usize,
    /// Flushes in a row that did not block: from [`QUICK_FLUSHES`] on,
    /// stdout is taken to read fast.
    quick: u32,
}

impl Printer<'_> {
    /// Writes a batch's runs: whole while stdout reads fast, else one
    /// message at a time, in steps of whole lines ([`PIPE_STEP`]).
    fn lines(&mut self, batch: &Lines) -> io::Result<()> {
        let ts = output::timestamp(self.node.config.format, batch.at);
        for line in &batch.lines {
            if self.fast() {
                self.run(line, &ts)?;
                continue;
            }
            // Plain lines are written as they are: as many as fit in
            // what is left of the step. Others are formatted one by one.
            let plain = self.node.config.format == crate::config::Format::Plain;
            let mut rest = line.msg.clone();
            loop {
                let one = if plain {
                    let room = PIPE_STEP.saturating_sub(self.out.buffer().len());
                    rest.split_front_within(room.max(1))
                } else {
                    rest.split_front_within(1)
                };
                let last = one.is_none();
                let one = Line {
                    msg: one.unwrap_or_else(|| rest.clone()),
                    from: line.from.clone(),
                    via: line.via.clone(),
                };
                self.run(&one, &ts)?;
                if last {
                    break;
                }
            }
        }
        Ok(())
    }

    /// One run. Flushed once a step's worth was written (before `out`
    /// would flush it by itself, uncounted): a stdout read slowly but
    /// steadily keeps the queue from ever running empty, and its lines
    /// must be counted as printed (and acknowledged) as they go out, not
    /// only when it catches up.
    fn run(&mut self, line: &Line, ts: &str) -> io::Result<()> {
        self.check_stop()?;
        let format = self.node.config.format;
        if self.fast() {
            output::write_line(&mut self.out, format, line, ts)?;
        } else {
            self.scratch.clear();
            output::write_line(&mut self.scratch, format, line, ts)?;
            self.put_scratch()?;
        }
        let msg = &line.msg;
        self.unflushed_bytes += msg.payload_bytes();
        // The mesh counts them as their origins' windows do.
        self.unflushed
            .push((msg.origin, msg.last, msg.cost(), msg.len()));
        let step = if self.fast() {
            WRITE_SIZE / 2
        } else {
            PIPE_STEP
        };
        if self.unflushed_bytes >= step || self.out.buffer().len() >= step {
            self.flush()?;
        }
        Ok(())
    }

    /// A peer, member or gap event (`-f json`).
    fn event(&mut self, event: &Output) -> io::Result<()> {
        let format = self.node.config.format;
        if self.fast() {
            return output::write(&mut self.out, format, event);
        }
        self.scratch.clear();
        output::write(&mut self.scratch, format, event)?;
        self.put_scratch()
    }

    /// Puts the line in `scratch` into `out`, first writing out what is
    /// there if both together would be over a step: each write is whole
    /// lines within [`PIPE_STEP`] (or one longer line alone).
    fn put_scratch(&mut self) -> io::Result<()> {
        let buffered = self.out.buffer().len();
        if buffered > 0 && buffered + self.scratch.len() > PIPE_STEP {
            self.flush()?;
        }
        self.out.write_all(&self.scratch)
    }

    /// Whether stdout has been reading fast (see [`QUICK_FLUSHES`]).
    fn fast(&self) -> bool {
        self.quick >= QUICK_FLUSHES
    }

    /// The node is exiting ([`PrintedSoFar::stop`](crate::event::PrintedSoFar)):
    /// no more writes.
    fn check_stop(&self) -> io::Result<()> {
        match self.node.printed.stop.load(Ordering::Relaxed) {
            true => Err(io::Error::other("the node is exiting")),
            false => Ok(()),
        }
    }

    /// Writes out what is buffered; the lines in it are printed. With
    /// nothing buffered (a long line went straight through), it starts
    /// no write, so it only records: even once the node is exiting.
    fn flush(&mut self) -> io::Result<()> {
        let start = Instant::now();
        if !self.out.buffer().is_empty() {
            self.check_stop()?;
            self.out.flush()?;
            self.quick = match start.elapsed() < SLOW_FLUSH {
                true => self.quick.saturating_add(1),
                false => 0,
            };
            self.out.get_mut().size = match self.fast() {
                true => WRITE_SIZE,
                false => PIPE_STEP,
            };
        }
        self.unflushed_bytes = 0;
        self.out.get_mut().taken = 0;
        if !self.unflushed.is_empty() && self.node.printed.record(&mut self.unflushed) {
            let _ = self.node.events.send(Event::Printed);
        }
        Ok(())
    }
}

/// stdout, written at most `size` bytes at a time, each write recorded
/// as the stdout thread's progress ([`PrintedSoFar`](crate::event::PrintedSoFar)):
/// a line longer than a step, read slowly, shows that it moves (the node
/// does not take its stdout for stuck while a 30 KB line goes out at
/// 8 KB/s: attack25), and a node exiting in the middle of it lets it
/// finish while it moves (`node::finish_stdout`). `BufWriter` flushes
/// and passes long lines through with as many writes as they take.
struct Pieces<'a> {
    inner: Box<dyn Write>,
    node: &'a Node,
    /// [`PIPE_STEP`] while stdout reads slowly, [`WRITE_SIZE`] else.
    size: usize,
    /// Bytes stdout took since the lines written were last counted as
    /// printed (`Printer::flush`).
    taken: u64,
}

impl Pieces<'_> {
    /// Runs one write to stdout, recording its wait and the progress it
    /// made; `ends_line` says whether the bytes it wrote end with a
    /// newline.
    fn timed(
        &mut self,
        write: impl FnOnce(&mut dyn Write) -> io::Result<usize>,
        ends_line: impl FnOnce(usize) -> bool,
    ) -> io::Result<usize> {
        let printed = &self.node.printed;
        *printed.writing_since.lock() = Some(Instant::now());
        let wrote = write(&mut *self.inner);
        *printed.writing_since.lock() = None;
        let wrote = wrote?;
        self.taken += wrote as u64;
        if wrote > 0 {
            printed.mid_line.store(!ends_line(wrote), Ordering::Relaxed);
            if printed.moved(Instant::now()) {
                let _ = self.node.events.send(Event::Printed);
            }
        }
        Ok(wrote)
    }
}

impl Write for Pieces<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let piece = &buf[..buf.len().min(self.size)];
        self.timed(|out| out.write(piece), |n| piece.get(n - 1) == Some(&b'\n'))
    }

    /// A writev that fits in one piece stays one (a long line and its
    /// newline); a longer one goes a piece at a time.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let total = bufs.iter().map(|b| b.len()).fold(0, usize::saturating_add);
        let Some(first) = bufs.iter().find(|b| !b.is_empty()) else {
            return Ok(0);
        };
        if total > self.size {
            return self.write(first);
        }
        let ends = bufs
            .iter()
            .rev()
            .find(|b| !b.is_empty())
            .map(|b| b.ends_with(b"\n"));
        self.timed(
            |out| out.write_vectored(bufs),
            |n| n == total && ends == Some(true),
        )
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Gives read buffers that nobody else holds any more (the mesh keeps
/// recent messages for repairs) back to the readers; dropped if the pool is
/// full.
fn recycle(node: &Node, batch: Lines) {
    for line in batch.lines {
        if let Ok(buf) = Arc::try_unwrap(line.msg.bytes) {
            if buf.len() <= SPARE_BUFFER_MAX {
                let _ = node.recycle.try_send(buf);
            }
        }
    }
}

/// stdout without std's line buffering. `io::Stdout` is a `LineWriter`
/// that searches every write for its last newline, which costs as much as
/// the write itself for a large message; our own buffer already writes in
/// large blocks. On unix this is a duplicate of fd 1.
#[cfg(unix)]
fn raw_stdout() -> Box<dyn Write> {
    use std::os::fd::AsFd;
    match io::stdout().as_fd().try_clone_to_owned() {
        Ok(fd) => Box::new(std::fs::File::from(fd)),
        Err(_) => Box::new(io::stdout()),
    }
}

/// Elsewhere std's stdout, which also handles the console's encoding.
#[cfg(not(unix))]
fn raw_stdout() -> Box<dyn Write> {
    Box::new(io::stdout())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Frame;

    fn payloads(chunk: &Chunk) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        let mut rest = &chunk.bytes[..];
        while let Some((frame, used)) = frame::decode(rest, usize::MAX).unwrap() {
            match frame {
                Frame::Msg {
                    origin: 42,
                    seq,
                    hops: 1,
                    payload,
                    ..
                } => out.push((seq, payload.to_vec())),
                Frame::Run {
                    origin: 42,
                    seq,
                    hops: 1,
                    entries,
                    ..
                } => {
                    assert!(used <= frame::MAX_RUN_LEN + frame::LEN_PREFIX);
                    for (i, payload) in frame::entries(entries).enumerate() {
                        out.push((seq + i as u64, payload.to_vec()));
                    }
                }
                other => panic!("{other:?}"),
            }
            rest = &rest[used..];
        }
        assert!(rest.is_empty());
        out
    }

    fn frame_all(input: &[u8], max_frame: usize, step: usize) -> Vec<(u64, Vec<u8>)> {
        let mut framer = LineFramer::new(42, max_frame);
        let mut out = Vec::new();
        for part in input.chunks(step.max(1)) {
            framer.push(part);
            for chunk in framer.take() {
                out.extend(payloads(&chunk));
            }
        }
        framer.finish();
        for chunk in framer.take() {
            out.extend(payloads(&chunk));
        }
        out
    }

    #[test]
    fn every_chunk_knows_the_sequence_number_it_starts_at() {
        let mut framer = LineFramer::new(42, 1 << 20);
        framer.push(b"a\nb\n");
        let first = framer.take();
        framer.push(&vec![b'x'; OWN_CHUNK]);
        framer.push(b"\nc\n");
        let second = framer.take();
        let starts: Vec<(u64, usize)> = first
            .iter()
            .chain(&second)
            .map(|c| (c.first_seq, c.frames))
            .collect();
        assert_eq!(starts, [(1, 2), (3, 1), (4, 1)]);
    }

    /// The lines of a read share MSG frames: one header per 64 KiB of
    /// lines at most, the lines as they came, each ending in its newline.
    #[test]
    fn lines_read_together_share_a_frame_of_at_most_the_run_limit() {
        let mut framer = LineFramer::new(42, 1 << 20);
        let line = [b'y'; 63];
        let input: Vec<u8> = (0..3000)
            .flat_map(|_| line.iter().chain(b"\n"))
            .copied()
            .collect();
        framer.push(&input);
        let chunks = framer.take();
        assert_eq!(chunks.len(), 1);
        let bytes = &chunks[0].bytes;
        let frames: Vec<_> = frame::msg_frames(bytes).collect();
        // 3000 lines of 64 bytes with their newlines: 1024 fit in 65536.
        let per_frame = (frame::MAX_RUN_LEN - 19) / 64;
        assert_eq!(frames.len(), 3000usize.div_ceil(per_frame));
        let seqs: Vec<u64> = frames.iter().map(|f| f.seq).collect();
        assert_eq!(seqs, [1, 1 + per_frame as u64, 1 + 2 * per_frame as u64]);
        let text: Vec<u8> = frames
            .iter()
            .flat_map(|f| bytes[f.entries.clone()].to_vec())
            .collect();
        assert_eq!(text, input, "the entries are the lines as read");
        assert!(frames
            .iter()
            .all(|f| f.frame.len() <= frame::MAX_RUN_LEN + 4));
    }

    /// One-byte lines (and empty ones) fill a frame by their count, not
    /// their bytes: at most MAX_RUN_ENTRIES per frame, or every receiver
    /// would refuse the frame (and 64 KiB of newlines would be 65517
    /// messages in one frame).
    #[test]
    fn short_lines_fill_a_frame_with_at_most_the_run_entry_limit() {
        for line in [&b"\n"[..], b"x\n"] {
            let lines = 3 * frame::MAX_RUN_ENTRIES + 5;
            let input = line.repeat(lines);
            let mut framer = LineFramer::new(42, 1 << 20);
            framer.push(&input);
            let chunks = framer.take();
            let mut seqs = Vec::new();
            for chunk in &chunks {
                let mut rest = &chunk.bytes[..];
                while !rest.is_empty() {
                    let (m, used) = frame::decode_msg_frame(rest, frame::frame_limit(1 << 20))
                        .expect("a frame every node takes")
                        .expect("a whole MSG frame");
                    assert!(m.count() <= frame::MAX_RUN_ENTRIES as u64);
                    seqs.push((m.seq, m.count()));
                    rest = &rest[used..];
                }
            }
            let full = frame::MAX_RUN_ENTRIES as u64;
            assert_eq!(
                seqs,
                [
                    (1, full),
                    (1 + full, full),
                    (1 + 2 * full, full),
                    (1 + 3 * full, 5)
                ]
            );
            assert_eq!(payloads(&chunks[0]).len(), lines);
        }
    }

    #[test]
    fn lines_become_messages_byte_for_byte() {
        let input = b"Hello\nWorld!\n\n\r\n\xff\xfe\0\nlast";
        let expected: Vec<(u64, Vec<u8>)> =
            [&b"Hello"[..], b"World!", b"", b"\r", b"\xff\xfe\0", b"last"]
                .iter()
                .enumerate()
                .map(|(i, p)| (i as u64 + 1, p.to_vec()))
                .collect();
        for step in 1..=input.len() {
            assert_eq!(frame_all(input, 100, step), expected, "read size {step}");
        }
    }

    #[test]
    fn a_line_over_the_limit_is_skipped_and_nothing_else_is_lost() {
        let mut input = b"before\n".to_vec();
        input.extend(vec![b'x'; 11]);
        input.extend(b"\nexactly10!\nafter\n");
        for step in [1, 3, 5, 100] {
            let got = frame_all(&input, 10, step);
            let texts: Vec<&[u8]> = got.iter().map(|(_, p)| &p[..]).collect();
            assert_eq!(
                texts,
                [&b"before"[..], b"exactly10!", b"after"],
                "read size {step}"
            );
            let seqs: Vec<u64> = got.iter().map(|(s, _)| *s).collect();
            assert_eq!(seqs, [1, 2, 3], "sequence numbers have no gaps");
        }
    }

    #[test]
    fn every_message_leaves_with_hops_1_and_the_origins_ttl() {
        // Short lines share a chunk; a long one is framed in place.
        let mut framer = LineFramer::new(42, 1 << 20).with_ttl(3);
        framer.push(b"short\n");
        framer.push(&vec![b'z'; OWN_CHUNK]);
        framer.push(b"\n");
        let mut seen = Vec::new();
        for chunk in framer.take() {
            let mut rest = &chunk.bytes[..];
            while let Some((Frame::Msg { seq, hops, ttl, .. }, used)) =
                frame::decode(rest, usize::MAX).unwrap()
            {
                seen.push((seq, hops, ttl));
                rest = &rest[used..];
            }
        }
        assert_eq!(seen, [(1, 1, 3), (2, 1, 3)]);
    }

    #[test]
    fn a_long_line_is_never_buffered_past_the_limit() {
        let mut framer = LineFramer::new(42, 1000);
        for _ in 0..1000 {
            framer.push(&[b'y'; 1000]);
            assert!(framer.partial.capacity() <= 2000 + MSG_HEADER_LEN);
        }
        framer.push(b"\nok\n");
        let chunks = framer.take();
        assert_eq!(payloads(&chunks[0]), [(1, b"ok".to_vec())]);
        assert_eq!(framer.skipped, 1);
    }

    #[test]
    fn a_long_split_line_becomes_its_own_chunk_between_its_neighbours() {
        let long = vec![b'L'; OWN_CHUNK + 10];
        let mut input = b"one\ntwo\n".to_vec();
        input.extend_from_slice(&long);
        input.extend_from_slice(b"\nthree\n");
        let mut framer = LineFramer::new(42, 1 << 20);
        framer.push(&input[..20]);
        framer.push(&input[20..]);
        let chunks = framer.take();
        let sizes: Vec<usize> = chunks.iter().map(|c| c.frames).collect();
        assert_eq!(sizes, [2, 1, 1]);
        assert_eq!(chunks[1].largest, long.len());
        let all: Vec<(u64, Vec<u8>)> = chunks.iter().flat_map(payloads).collect();
        assert_eq!(
            all,
            [
                (1, b"one".to_vec()),
                (2, b"two".to_vec()),
                (3, long),
                (4, b"three".to_vec())
            ]
        );
    }
}
