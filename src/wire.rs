//! Moving frames between sockets and memory: a read buffer that hands whole
//! frames over without copying them, a vectored `write_all`, and the one place
//! where socket errors are sorted into what they mean.

use std::io::{self, IoSlice, Read, Write};
use std::time::{Duration, Instant};

use crate::frame::{self, LEN_PREFIX};

/// A reader starts small, so an idle peer costs little memory...
const INITIAL_CAPACITY: usize = 4 * 1024;
/// ...and grows to this when the peer is busy, so a flood costs few syscalls
/// and, above all, few batches: each wakes the router, the writers it
/// forwards to and the stdout thread (at 64 KiB, a fan-out through a mesh
/// took a third more context switches and CPU; BENCHMARKS.md).
pub const BUSY_CAPACITY: usize = 128 * 1024;

/// Bytes read from a socket, of which `buf[..pos]` have been decoded.
///
/// The buffer is always fully initialised (`buf.len()` is its usable size);
/// `filled` marks how much of it holds data. Decoded frames can be taken out
/// whole with [`ReadBuf::take_decoded`], which swaps in a fresh buffer rather
/// than copying the frames.
///
/// Memory follows the bytes that arrived, never a length prefix alone: a
/// stranger's header announcing a 1 MiB frame gets no 1 MiB buffer. The
/// buffer doubles when data fills it (so it holds at most twice what
/// arrived, capped by the frame that has begun), and a frame that has
/// begun is given room for all of it at once only if this connection has
/// already delivered a whole frame that big, which keeps a stream of large
/// messages at one allocation per buffer.
pub struct ReadBuf {
    buf: Vec<u8>,
    filled: usize,
    pos: usize,
    /// The last read filled all the room it had: the peer is busy.
    busy: bool,
    /// The largest frame consumed so far: what this peer has shown it sends.
    largest: usize,
}

impl Default for ReadBuf {
    fn default() -> Self {
        ReadBuf {
            buf: vec![0; INITIAL_CAPACITY],
            filled: 0,
            pos: 0,
            busy: false,
            largest: 0,
        }
    }
}

impl ReadBuf {
    /// The undecoded bytes.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.pos..self.filled]
    }

    /// Bytes of buffer this reader holds now, whatever is in them: what a
    /// peer's stream costs in memory (the fuzz targets bound it).
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Offset of `pending()` within the buffer `take_decoded` will return.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Marks `n` more bytes (one frame, for the caller that decodes frames)
    /// as decoded.
    pub fn consume(&mut self, n: usize) {
        debug_assert!(self.pos + n <= self.filled);
        self.pos += n;
        self.largest = self.largest.max(n);
    }

    /// Takes the buffer holding every decoded byte (`[..pos]` of the result;
    /// the rest is stale), leaving the undecoded tail at the start of a
    /// fresh buffer: `spare` if it is big enough, else a new one.
    ///
    /// The taken buffer keeps its full length, so once its frames have been
    /// used it can come back as someone's `spare` without being zeroed again.
    pub fn take_decoded(&mut self, spare: Option<Vec<u8>>, limit: usize) -> Vec<u8> {
        let tail = self.filled - self.pos;
        // Room for the frame that has begun, as far as this peer has shown
        // it sends frames that big; otherwise the usual size (one huge frame
        // should not leave every later buffer huge).
        let next_frame = self.next_frame_len(limit).unwrap_or(0);
        let wanted = tail
            .max(next_frame.min(self.largest))
            .max(self.buf.len().min(BUSY_CAPACITY));
        // A spare much bigger than needed would sit idle in a quiet reader.
        let fits =
            |spare: &Vec<u8>| (wanted..=2 * wanted.max(BUSY_CAPACITY)).contains(&spare.len());
        let mut fresh = match spare {
            Some(spare) if fits(&spare) => spare,
            _ => vec![0; wanted],
        };
        fresh[..tail].copy_from_slice(&self.buf[self.pos..self.filled]);
        let taken = std::mem::replace(&mut self.buf, fresh);
        self.pos = 0;
        self.filled = tail;
        taken
    }

    /// Makes room for the next read, then reads once from `r`.
    ///
    /// `limit` bounds the frame length; a frame whose length prefix is over it
    /// is an error before any room is made for it (so a hostile 0xFFFFFFFF
    /// allocates nothing).
    pub fn read_from(&mut self, r: &mut impl Read, limit: usize) -> io::Result<usize> {
        self.make_room(limit)?;
        let room = self.buf.len() - self.filled;
        let n = r.read(&mut self.buf[self.filled..])?;
        self.filled += n;
        self.busy = n == room;
        Ok(n)
    }

    fn make_room(&mut self, limit: usize) -> io::Result<()> {
        // A frame whose length is known must fit in the buffer whole.
        let frame_len = self
            .next_frame_len(limit)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let full = self.filled == self.buf.len();
        if full || self.pos + frame_len > self.buf.len() {
            self.compact();
        }
        let mut size = self.buf.len();
        if self.busy {
            // More was waiting than fitted: read more at once next time.
            size = size.max((size * 2).min(BUSY_CAPACITY));
        }
        // Room for the whole frame that has begun, if this peer has already
        // sent one that big; a length prefix alone earns nothing.
        size = size.max(frame_len.min(self.largest));
        if self.filled == size {
            // Full of bytes that arrived: doubling allocates no more than
            // came in, and never beyond the frame that has begun.
            let grown = (size * 2).max(INITIAL_CAPACITY);
            size = if frame_len > size {
                grown.min(frame_len)
            } else {
                grown
            };
        }
        if size > self.buf.len() {
            self.buf.resize(size, 0);
        }
        Ok(())
    }

    /// The whole size of the frame that has begun in `pending()`, length
    /// prefix included; 0 while its length prefix is incomplete.
    fn next_frame_len(&self, limit: usize) -> Result<usize, frame::FrameError> {
        Ok(frame::peek_len(self.pending(), limit)?.map_or(0, |len| LEN_PREFIX + len))
    }

    fn compact(&mut self) {
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.filled, 0);
            self.filled -= self.pos;
            self.pos = 0;
        }
    }
}

/// Writes every byte of `bufs`, in as few `write` calls as the OS allows.
///
/// A write timeout (a socket's send timeout) is retried until no byte has
/// moved for `patience`: so a peer is stalled after that long without
/// progress, however the wait is cut into `write` calls. With a patience of
/// zero the first timeout is the error.
pub fn write_all_vectored(
    w: &mut impl Write,
    bufs: &mut [IoSlice<'_>],
    patience: Duration,
) -> io::Result<()> {
    write_all_patiently(w, bufs, patience, &|| None).map(|_| ())
}

/// A `write` call that took this long waited for room in the socket's
/// buffers (copying 128 KiB into them takes well under a millisecond).
pub const ROOM_WAIT: Duration = Duration::from_millis(10);

/// [`write_all_vectored`], where the patience also runs from the last sign
/// of the reader taking data further on (`alive`): a peer whose stdout
/// takes lines reads its sockets, if only in turn with its other links.
///
/// Returns whether it waited for room: a `write` took part of what it was
/// handed, timed out, or took [`ROOM_WAIT`] or more. Only then did the
/// bytes moving show that the peer reads: a stopped peer's socket buffers
/// (megabytes on loopback) take a slow stream for minutes.
pub fn write_all_patiently(
    w: &mut impl Write,
    mut bufs: &mut [IoSlice<'_>],
    patience: Duration,
    alive: &dyn Fn() -> Option<Instant>,
) -> io::Result<bool> {
    // Drops leading empty slices, so the loop ends when all are written.
    IoSlice::advance_slices(&mut bufs, 0);
    let mut moved_at = Instant::now();
    let mut waited_for_room = false;
    while !bufs.is_empty() {
        let called = Instant::now();
        let result = w.write_vectored(bufs);
        let returned = Instant::now();
        waited_for_room |= returned - called >= ROOM_WAIT;
        match result {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                IoSlice::advance_slices(&mut bufs, n);
                // Slices left over: the write took part of them.
                waited_for_room |= !bufs.is_empty();
                moved_at = returned;
            }
            Err(e) => match classify(&e) {
                IoFailure::Interrupted => {}
                IoFailure::Timeout if waited(moved_at, alive) < patience => {
                    waited_for_room = true;
                }
                _ => return Err(e),
            },
        }
    }
    Ok(waited_for_room)
}

/// How long since bytes moved or the reader last showed it takes data.
fn waited(moved_at: Instant, alive: &dyn Fn() -> Option<Instant>) -> Duration {
    alive().map_or(moved_at, |at| at.max(moved_at)).elapsed()
}

/// What a socket error means for the connection, decided in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoFailure {
    /// A socket timeout expired. Unix says `WouldBlock`, Windows `TimedOut`.
    Timeout,
    /// A signal interrupted the call: just try again.
    Interrupted,
    /// The peer reset the connection (the seed article's WSAECONNRESET).
    Reset,
    /// Anything else: the connection is broken.
    Broken,
}

pub fn classify(e: &io::Error) -> IoFailure {
    use io::ErrorKind::*;
    match e.kind() {
        WouldBlock | TimedOut => IoFailure::Timeout,
        Interrupted => IoFailure::Interrupted,
        ConnectionReset | ConnectionAborted | BrokenPipe => IoFailure::Reset,
        _ => IoFailure::Broken,
    }
}

/// An I/O error as a short lower-case phrase, without the "(os error N)"
/// suffix: "connection reset by peer", "address already in use".
pub fn describe(e: &io::Error) -> String {
    let text = e.to_string();
    let text = match text.find(" (os error") {
        Some(at) => text[..at].to_owned(),
        None => text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

/// A reader that hands out at most `step` bytes per call, for the tests of
/// everything that reads a stream in pieces (this module, the records of
/// encrypted links).
#[cfg(test)]
pub(crate) struct Trickle<'a> {
    pub data: &'a [u8],
    pub step: usize,
}

#[cfg(test)]
impl Read for Trickle<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.step.min(out.len()).min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Frame;

    /// The byte message `seq` is filled with (never a newline).
    fn fill(seq: u64) -> u8 {
        b'a' + (seq % 26) as u8
    }

    fn messages(count: usize, size: usize) -> Vec<u8> {
        let mut bytes = Vec::new();
        for seq in 1..=count {
            let payload = vec![fill(seq as u64); size + seq % 7];
            Frame::Msg {
                life: 1,
                origin: 1,
                seq: seq as u64,
                hops: 1,
                ttl: 16,
                payload: &payload,
            }
            .encode(&mut bytes);
        }
        bytes
    }

    /// Reads everything through a ReadBuf, taking decoded frames out as the
    /// peer reader does, and returns the sequence numbers seen.
    fn read_all(data: &[u8], step: usize, limit: usize) -> Vec<u64> {
        let mut src = Trickle { data, step };
        let mut rb = ReadBuf::default();
        let mut seqs = Vec::new();
        loop {
            let mut any = false;
            while let Some((frame, used)) = frame::decode(rb.pending(), limit).unwrap() {
                let Frame::Msg { seq, payload, .. } = frame else {
                    panic!()
                };
                assert!(payload.iter().all(|&b| b == fill(seq)));
                seqs.push(seq);
                rb.consume(used);
                any = true;
            }
            if any {
                let taken = rb.take_decoded(None, 1 << 20);
                assert!(frame::decode(&taken, limit).unwrap().is_some());
            }
            if rb.read_from(&mut src, limit).unwrap() == 0 {
                assert!(rb.pending().is_empty());
                return seqs;
            }
        }
    }

    #[test]
    fn frames_survive_any_read_size() {
        let data = messages(200, 100);
        for step in [1, 2, 3, 7, 64, 1000, 4096, 100_000] {
            assert_eq!(
                read_all(&data, step, 1 << 20),
                (1..=200).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn a_busy_peer_gets_bigger_reads_even_as_batches_are_taken() {
        let data = messages(5000, 50);
        let mut src = Trickle {
            data: &data,
            step: usize::MAX,
        };
        let mut rb = ReadBuf::default();
        let mut largest = 0;
        for _ in 0..20 {
            largest = largest.max(rb.read_from(&mut src, 1 << 20).unwrap());
            while let Some((_, used)) = frame::decode(rb.pending(), 1 << 20).unwrap() {
                rb.consume(used);
            }
            rb.take_decoded(None, 1 << 20);
        }
        assert!(largest > BUSY_CAPACITY / 2, "largest read {largest}");
    }

    #[test]
    fn a_spare_buffer_is_reused_only_if_big_enough() {
        let data = messages(10, 20);
        let mut rb = ReadBuf::default();
        rb.read_from(
            &mut Trickle {
                data: &data,
                step: 100,
            },
            1 << 20,
        )
        .unwrap();
        let (_, used) = frame::decode(rb.pending(), 1 << 20).unwrap().unwrap();
        rb.consume(used);
        let spare = vec![7u8; 2 * INITIAL_CAPACITY];
        let spare_at = spare.as_ptr();
        let taken = rb.take_decoded(Some(spare), 1 << 20);
        assert_eq!(
            taken.len(),
            INITIAL_CAPACITY,
            "the taken buffer keeps its length"
        );
        assert_eq!(rb.buf.as_ptr(), spare_at, "a big enough spare is used");
        assert_eq!(rb.pending(), &data[used..100]);
        rb.consume(rb.pending().len());
        rb.take_decoded(Some(vec![0u8; 16]), 1 << 20);
        assert_eq!(rb.buf.len(), 2 * INITIAL_CAPACITY, "a small spare is not");
        rb.take_decoded(Some(vec![0u8; 4 * BUSY_CAPACITY]), 1 << 20);
        assert_eq!(rb.buf.len(), 2 * INITIAL_CAPACITY, "nor a far bigger one");
    }

    /// Reads from `src` until a whole frame is buffered, consumes it, and
    /// returns its length.
    fn read_one_frame(rb: &mut ReadBuf, src: &mut Trickle<'_>) -> usize {
        loop {
            if let Some((_, used)) = frame::decode(rb.pending(), 1 << 20).unwrap() {
                rb.consume(used);
                return used;
            }
            assert!(rb.read_from(src, 1 << 20).unwrap() > 0, "ran out of data");
        }
    }

    #[test]
    fn a_big_frame_gets_a_buffer_it_fits_in_once_the_peer_has_sent_one() {
        let data = messages(3, 200_000);
        let mut src = Trickle {
            data: &data,
            step: 1000,
        };
        let mut rb = ReadBuf::default();
        let first = read_one_frame(&mut rb, &mut src);
        assert!(first >= 200_000);
        // The next frame has begun: it gets room for all of it at once.
        rb.read_from(&mut src, 1 << 20).unwrap();
        let taken = rb.take_decoded(None, 1 << 20);
        assert!(taken.len() >= first);
        assert!(rb.buf.len() >= 200_000 + frame::MSG_HEADER_LEN);
        rb.read_from(&mut src, 1 << 20).unwrap();
        assert!(rb.buf.len() >= 200_000 + frame::MSG_HEADER_LEN);
    }

    #[test]
    fn a_length_prefix_alone_reserves_nothing() {
        // A header announcing a 1 MiB frame, then the frame's bytes slowly:
        // the buffer never holds much more than twice what arrived.
        let data = messages(1, 1 << 20);
        let frame_len = data.len();
        let mut src = Trickle {
            data: &data,
            step: 4,
        };
        let mut rb = ReadBuf::default();
        rb.read_from(&mut src, 2 << 20).unwrap();
        rb.read_from(&mut src, 2 << 20).unwrap();
        assert_eq!(rb.buf.len(), INITIAL_CAPACITY, "after the header");
        src.step = 1000;
        let mut arrived = 8;
        while arrived < frame_len {
            arrived += rb.read_from(&mut src, 2 << 20).unwrap();
            assert!(
                rb.buf.len() <= (2 * arrived).max(BUSY_CAPACITY),
                "{} bytes of buffer for {arrived} bytes arrived",
                rb.buf.len()
            );
        }
        assert!(rb.buf.len() <= frame_len, "capped by the frame");
        let (_, used) = frame::decode(rb.pending(), 2 << 20).unwrap().unwrap();
        assert_eq!(used, frame_len);
    }

    #[test]
    fn a_spare_buffer_is_not_a_way_to_reserve_ahead() {
        // A peer that sent one small message and a header announcing a big
        // one gets no big spare from the pool.
        let mut data = messages(1, 10);
        data.extend_from_slice(&[0, 0x10, 0, 0]);
        let mut rb = ReadBuf::default();
        rb.read_from(
            &mut Trickle {
                data: &data,
                step: usize::MAX,
            },
            2 << 20,
        )
        .unwrap();
        let (_, used) = frame::decode(rb.pending(), 2 << 20).unwrap().unwrap();
        rb.consume(used);
        rb.take_decoded(Some(vec![0u8; 1 << 20]), 2 << 20);
        assert!(rb.buf.len() < 1 << 20, "took the big spare");
    }

    #[test]
    fn the_buffer_grows_for_a_frame_bigger_than_itself() {
        let data = messages(3, 300_000);
        assert_eq!(read_all(&data, 8192, 1 << 20), vec![1, 2, 3]);
    }

    #[test]
    fn an_oversized_length_allocates_nothing() {
        let mut rb = ReadBuf::default();
        let mut src = Trickle {
            data: &[0xff, 0xff, 0xff, 0xff, 0],
            step: 4,
        };
        rb.read_from(&mut src, 1000).unwrap();
        let err = rb.read_from(&mut src, 1000).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(rb.buf.len(), INITIAL_CAPACITY);
    }

    /// A writer that takes at most three bytes a call.
    struct Slow(Vec<u8>);

    impl Write for Slow {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let n = b.len().min(3);
            self.0.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn vectored_writes_send_everything() {
        let mut out = Slow(Vec::new());
        let mut slices = [
            IoSlice::new(b"hello "),
            IoSlice::new(b""),
            IoSlice::new(b"world"),
        ];
        write_all_vectored(&mut out, &mut slices, Duration::ZERO).unwrap();
        assert_eq!(out.0, b"hello world");
    }

    /// Bytes that a socket's buffers take at once show nothing about its
    /// reader (a stopped peer's take megabytes); a write cut short, or one
    /// that timed out, waited for the reader to make room.
    #[test]
    fn only_a_write_that_waited_for_room_says_so() {
        let none = &|| None;
        let mut roomy = Vec::new();
        let mut slices = [IoSlice::new(b"hello "), IoSlice::new(b"world")];
        assert!(!write_all_patiently(&mut roomy, &mut slices, Duration::ZERO, none).unwrap());
        assert_eq!(roomy, b"hello world");
        let mut partial = Slow(Vec::new());
        let mut slices = [IoSlice::new(b"hello")];
        assert!(write_all_patiently(&mut partial, &mut slices, Duration::ZERO, none).unwrap());
        let mut sluggish = Sluggish {
            written: Vec::new(),
            stuck: false,
        };
        let mut slices = [IoSlice::new(b"a")];
        let patience = Duration::from_secs(5);
        assert!(write_all_patiently(&mut sluggish, &mut slices, patience, none).unwrap());
    }

    /// A writer whose every other call times out, as a socket with a send
    /// timeout does when the peer drains slowly.
    struct Sluggish {
        written: Vec<u8>,
        stuck: bool,
    }

    impl Write for Sluggish {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.stuck = !self.stuck;
            if self.stuck {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.written.push(b[0]);
            Ok(1)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn timeouts_are_retried_while_bytes_keep_moving() {
        let mut slow = Sluggish {
            written: Vec::new(),
            stuck: false,
        };
        let mut slices = [IoSlice::new(b"abc")];
        write_all_vectored(&mut slow, &mut slices, Duration::from_secs(10)).unwrap();
        assert_eq!(slow.written, b"abc");
        let mut slices = [IoSlice::new(b"abc")];
        let e = write_all_vectored(&mut slow, &mut slices, Duration::ZERO).unwrap_err();
        assert_eq!(classify(&e), IoFailure::Timeout);
    }

    /// A peer's socket takes nothing while it shows it reads on (its
    /// stdout takes lines; it gets to our link in turn): the write waits
    /// `patience` from the last such sign, then gives up.
    #[test]
    fn a_sign_of_life_extends_the_patience_of_a_stuck_write() {
        struct Stuck;
        impl Write for Stuck {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::WouldBlock.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let start = Instant::now();
        let signs_until = start + Duration::from_millis(300);
        let alive = || Some(Instant::now().min(signs_until));
        let mut slices = [IoSlice::new(b"abc")];
        let patience = Duration::from_millis(50);
        let e = write_all_patiently(&mut Stuck, &mut slices, patience, &alive).unwrap_err();
        assert_eq!(classify(&e), IoFailure::Timeout);
        assert!(start.elapsed() >= Duration::from_millis(350));
    }

    #[test]
    fn errors_are_described_without_os_codes() {
        let e = io::Error::from_raw_os_error(98);
        if cfg!(target_os = "linux") {
            assert_eq!(describe(&e), "address already in use");
        }
        assert_eq!(
            classify(&io::ErrorKind::ConnectionReset.into()),
            IoFailure::Reset
        );
        assert_eq!(
            classify(&io::ErrorKind::WouldBlock.into()),
            IoFailure::Timeout
        );
    }
}
