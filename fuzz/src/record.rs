//! The fuzz target of the encrypted links' record layer
//! (`peercat::secure::record`).
//!
//! Two kinds of input, chosen by the first byte: raw bytes, which the
//! record decoder and a receiving [`Opener`] must refuse or take without a
//! fault; and a stream that a [`Sealer`] really sealed (with a rekey every
//! few records), cut into reads of sizes the input picks, with refusal or
//! handshake records slipped in and bytes flipped: the [`Opener`] must hand
//! over exactly the plaintext of the records before the first one touched,
//! and all of it when none was.

use std::io::IoSlice;
use std::time::Duration;

use peercat::secure::record::{
    self, Kind, Opener, RekeyPolicy, Sealer, HEADER, MAX_BODY, MAX_PLAINTEXT, TAG,
};

use super::input::{Chunks, Input};

const KEY: [u8; 32] = [7; 32];
/// Plaintext one input may seal at most: keeps a run short.
const MAX_SEALED: usize = 256 * 1024;

pub fn record(data: &[u8]) {
    let mut input = Input(data);
    if input.u8() % 2 == 0 {
        raw(input);
    } else {
        sealed(input);
    }
}

/// Arbitrary bytes: each record the decoder accepts is whole and encodes
/// back to its bytes; an [`Opener`] reading them ends cleanly or with an
/// error, handing over no more than arrived.
fn raw(mut input: Input<'_>) {
    let sizes = input.some(8);
    let out_size = 1 + input.u16() as usize;
    let bytes = input.0;
    let mut rest = bytes;
    while let Ok(Some((rec, used))) = record::decode(rest) {
        assert_eq!(used, HEADER + rec.body.len());
        assert!(rec.body.len() <= MAX_BODY && used <= rest.len());
        let mut again = Vec::new();
        record::encode(rec.kind, rec.body, &mut again);
        assert_eq!(again, &rest[..used]);
        rest = &rest[used..];
    }
    let (got, _) = open_all(bytes, sizes, out_size);
    assert!(got.len() <= bytes.len());
}

/// A stream a [`Sealer`] made, perhaps tampered with.
fn sealed(mut input: Input<'_>) {
    let every = 1 + u64::from(input.u8() % 4);
    let policy = RekeyPolicy {
        records: every,
        time: Duration::from_secs(3600),
    };
    let sizes = input.some(8);
    let out_size = 1 + input.u16() as usize;
    let mut sealer = Sealer::new(&KEY, policy);
    let mut wire = Vec::new();
    let mut plain = Vec::new();
    // Plaintext sealed before the first record that was touched.
    let mut intact: Option<usize> = None;
    while !input.is_empty() && plain.len() < MAX_SEALED {
        let (wire_before, plain_before) = (wire.len(), plain.len());
        match input.u8() % 8 {
            0 => {
                let reason = input.some(32);
                record::encode(Kind::Refusal, reason, &mut wire);
                intact.get_or_insert(plain_before);
            }
            1 => {
                let body = input.some(64);
                record::encode(Kind::Handshake, body, &mut wire);
                intact.get_or_insert(plain_before);
            }
            2 if plain_before > 0 => {
                // Flip one byte of the records sealed last.
                let at = wire_before.saturating_sub(1 + input.u8() as usize);
                let before = plain_before_record_at(&wire, at);
                wire[at] ^= 1 << (input.u8() % 8);
                intact = Some(intact.map_or(before, |i| i.min(before)));
            }
            _ => {
                // Stream bytes: a few slices, some spanning records.
                let len = input.u16() as usize % (2 * MAX_PLAINTEXT);
                let fill = input.u8();
                let piece: Vec<u8> = (0..len).map(|i| fill ^ i as u8).collect();
                let cut = 1 + input.u16() as usize;
                let slices: Vec<IoSlice<'_>> = piece.chunks(cut).map(IoSlice::new).collect();
                let taken = sealer
                    .seal(&slices, usize::MAX, &mut wire)
                    .expect("nonces last");
                assert_eq!(taken, len, "the sealer took all it was given");
                plain.extend_from_slice(&piece);
            }
        }
    }
    let (got, clean) = open_all(&wire, sizes, out_size);
    match intact {
        None => {
            assert!(clean, "an untouched stream did not end cleanly");
            assert!(
                got == plain,
                "an untouched stream did not open to its plaintext"
            );
        }
        Some(before) => {
            assert!(
                got.len() >= before,
                "records before the first one touched were not all opened"
            );
            assert!(
                plain.starts_with(&got),
                "a tampered stream opened to bytes that were never sealed"
            );
            assert!(!clean || got.len() == plain.len());
        }
    }
}

/// The plaintext of the data records in `wire` before the record holding
/// byte `at`: what an opener hands over before it meets that record.
fn plain_before_record_at(wire: &[u8], at: usize) -> usize {
    let (mut pos, mut plain) = (0, 0);
    while let Ok(Some((rec, used))) = record::decode(&wire[pos..]) {
        if pos + used > at {
            break;
        }
        if matches!(rec.kind, Kind::Data | Kind::DataThenRekey) {
            plain += rec.body.len() - TAG;
        }
        pos += used;
    }
    plain
}

/// Reads `bytes` through an [`Opener`] in reads of `sizes`, into buffers of
/// `out_size`: the plaintext, and whether it ended cleanly.
fn open_all(bytes: &[u8], sizes: &[u8], out_size: usize) -> (Vec<u8>, bool) {
    let mut src = Chunks::new(bytes, sizes);
    let mut opener = Opener::new(&KEY, &[]);
    let mut out = vec![0; out_size];
    let mut got = Vec::new();
    loop {
        match opener.read(&mut src, &mut out) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&out[..n]),
            Err(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
                assert!(!e.to_string().is_empty());
                return (got, false);
            }
        }
    }
}
