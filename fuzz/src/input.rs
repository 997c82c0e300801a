//! Fuzz input as a source of choices, and a reader that hands bytes out in
//! chunks as a socket does: shared by every target, and free of peercat's
//! API so that any branch's targets can use it.

use std::io::{self, Read};

/// Choices taken off the front of the fuzz input; an exhausted input
/// answers zeros, so every input is a complete run.
pub struct Input<'a>(pub &'a [u8]);

impl<'a> Input<'a> {
    pub fn u8(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        b
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }

    /// Fewer than `max` bytes, as many as the next byte says.
    pub fn some(&mut self, max: usize) -> &'a [u8] {
        let n = self.u8() as usize % max;
        self.bytes(n)
    }

    pub fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.u8() as usize % from.len()]
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A reader that hands out its bytes in chunks whose sizes the input
/// picks, as a socket does; then EOF.
pub struct Chunks<'a> {
    data: &'a [u8],
    sizes: &'a [u8],
    next: usize,
}

impl<'a> Chunks<'a> {
    pub fn new(data: &'a [u8], sizes: &'a [u8]) -> Self {
        Chunks {
            data,
            sizes,
            next: 0,
        }
    }
}

impl Read for Chunks<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let size = match self.sizes.get(self.next % self.sizes.len().max(1)) {
            // A size byte of 0 means "a big read": whatever fits.
            Some(0) | None => usize::MAX,
            Some(&s) => s as usize,
        };
        self.next += 1;
        let n = size.min(out.len()).min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}
