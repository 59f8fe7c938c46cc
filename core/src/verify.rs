//! Verify a copy against its source, and repair it: `livemirror verify`.
//!
//! Both devices are read in pieces ([`pipeline`]): both sides at once and
//! ahead of the comparison, so a pass runs at the speed of the slower
//! device; on the comparing thread when both are already in the page
//! cache. Runs that both sides report as holes or zeroes are skipped
//! without reading. Equal pieces cost one `memcmp`; an unequal one
//! is searched chunk by chunk (the same comparison the job's compare
//! passes use: [`differing_chunks`]) and reported as merged extents, in
//! order, as the pass finds them.
//!
//! [`Reading`] says what a pass reads: what the media hold (the default of
//! `livemirror verify`, and what a copy just written must be checked
//! against, since its pages may still be in the page cache), or what the
//! host's page cache serves (fast when both sides are cached).
//!
//! [`repair`] copies exactly the differing extents from source to target
//! and flushes; the caller then verifies those extents again.

use std::ops::Range;

use crate::buffer::AlignedBuf;
use crate::device::BlockDevice;
use crate::error::{IoFailure, IoOperation, Side};

mod pipeline;

/// Differences are located to this unit (a page: what a filesystem writes).
pub const CHUNK: u64 = 4096;
/// Bytes [`repair`] copies per step.
pub const STEP: u64 = 8 << 20;

/// What a verify pass reads, on both sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reading {
    /// What the media hold now ([`BlockDevice::read_uncached`]: direct I/O
    /// on a device opened for it, else the range dropped from the page
    /// cache first). A copy just written is checked on the medium, not in
    /// the cache its writes went through.
    #[default]
    Medium,
    /// Through the page cache ([`BlockDevice::read_at`]): as fast as
    /// memory when the data are cached, but a cached page proves nothing
    /// about the medium under it.
    Cached,
}

/// A range of bytes that differs between source and target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Difference {
    pub offset: u64,
    pub len: u64,
}

impl Difference {
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// What a verify pass covered and found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Bytes compared, read or skipped as holes on both sides.
    pub compared: u64,
    /// Of those, bytes skipped because both sides read as zeroes.
    pub skipped: u64,
    /// Bytes in differing ranges (whole chunks).
    pub differing: u64,
    /// Number of merged differing ranges.
    pub ranges: u64,
}

impl Summary {
    pub fn identical(&self) -> bool {
        self.differing == 0
    }
}

/// The chunks (of `chunk` bytes) where `a` and `b` differ, as the absolute
/// offset of the chunk (`start` is where `a` and `b` begin) and of its first
/// differing byte. The one comparison shared by compare passes and verify.
pub fn differing_chunks<'a>(
    a: &'a [u8],
    b: &'a [u8],
    start: u64,
    chunk: usize,
) -> impl Iterator<Item = (u64, u64)> + 'a {
    // The usual answer, none, in one memcmp over the whole piece.
    let (a, b) = if a == b { (&a[..0], &b[..0]) } else { (a, b) };
    a.chunks(chunk).zip(b.chunks(chunk)).enumerate().filter(|(_, (x, y))| x != y).map(
        move |(i, (x, y))| {
            let at = start + (i * chunk) as u64;
            let first = x.iter().zip(y.iter()).position(|(p, q)| p != q).unwrap_or(0);
            (at, at + first as u64)
        },
    )
}

/// How the target is read by [`read_both`]: the source always past the
/// cache; the target as the caller needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetRead {
    /// Through the cache: the job's own writes, which it reads back.
    Cached,
    /// As the medium holds it (verify: a cached page proves nothing).
    Uncached,
}

/// Fills `a` from the source (uncached) and `b` from the target at
/// `offset`, both at once on two threads.
pub fn read_both(
    source: &dyn BlockDevice,
    target: &dyn BlockDevice,
    how: TargetRead,
    a: &mut [u8],
    b: &mut [u8],
    offset: u64,
) -> Result<(), IoFailure> {
    let len = a.len() as u64;
    let (ra, rb) = std::thread::scope(|s| {
        let t = s.spawn(|| match how {
            TargetRead::Cached => target.read_at(b, offset),
            TargetRead::Uncached => target.read_uncached(b, offset),
        });
        let ra = source.read_uncached(a, offset);
        // A panic on the reading thread is a bug in a backend: pass it on.
        let rb = t.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        (ra, rb)
    });
    ra.map_err(|e| IoFailure::new(Side::Source, IoOperation::Read, offset, len, &e))?;
    rb.map_err(|e| IoFailure::new(Side::Target, IoOperation::Read, offset, len, &e))
}

/// Why a verify could not run.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{0}")]
    Io(IoFailure),
    #[error(
        "the target ({target_len} bytes) is smaller than the source ({source_len} bytes): it cannot hold a byte-for-byte copy"
    )]
    TargetSmaller { source_len: u64, target_len: u64 },
}

impl From<IoFailure> for VerifyError {
    fn from(f: IoFailure) -> Self {
        VerifyError::Io(f)
    }
}

/// Compares `ranges` (sorted, within the source) of source and target, read
/// as `reading` says, calling `found` with each merged differing range as
/// soon as it is complete. A target larger than the source is compared
/// over the source's length (a clone leaves the rest alone).
pub fn verify(
    source: &dyn BlockDevice,
    target: &dyn BlockDevice,
    ranges: &[Range<u64>],
    reading: Reading,
    found: impl FnMut(Difference),
) -> Result<Summary, VerifyError> {
    if target.len() < source.len() {
        return Err(VerifyError::TargetSmaller {
            source_len: source.len(),
            target_len: target.len(),
        });
    }
    Ok(compare(source, target, ranges.iter().cloned(), reading, found)?)
}

/// [`verify`] over `ranges` (sorted) that lie within both devices.
pub fn compare(
    source: &dyn BlockDevice,
    target: &dyn BlockDevice,
    ranges: impl Iterator<Item = Range<u64>> + Send,
    reading: Reading,
    mut found: impl FnMut(Difference),
) -> Result<Summary, IoFailure> {
    let mut summary = Summary::default();
    let mut open: Option<Difference> = None;
    let read = pipeline::for_each_piece(source, target, ranges, reading, |piece, bytes| {
        summary.compared += piece.len;
        let Some((a, b)) = bytes else {
            summary.skipped += piece.len;
            return;
        };
        let end = piece.offset + piece.len;
        for (at, _) in differing_chunks(a, b, piece.offset, CHUNK as usize) {
            let len = CHUNK.min(end - at);
            match &mut open {
                Some(d) if d.end() == at => d.len += len,
                _ => {
                    if let Some(d) = open.replace(Difference { offset: at, len }) {
                        summary.differing += d.len;
                        summary.ranges += 1;
                        found(d);
                    }
                }
            }
        }
    });
    // A difference found before an error is still reported.
    if let Some(d) = open {
        summary.differing += d.len;
        summary.ranges += 1;
        found(d);
    }
    read.map(|()| summary)
}

/// Copies each of `diffs` from source to target (zeroes as zero-writes, so
/// a sparse target stays sparse), then flushes the target. Returns the
/// bytes copied.
pub fn repair(
    source: &dyn BlockDevice,
    target: &dyn BlockDevice,
    diffs: &[Difference],
) -> Result<u64, IoFailure> {
    let mut buf = AlignedBuf::new(STEP as usize);
    let mut copied = 0;
    for d in diffs {
        let mut pos = d.offset;
        while pos < d.end() {
            let n = (d.end() - pos).min(STEP);
            let piece = &mut buf[..n as usize];
            source
                .read_uncached(piece, pos)
                .map_err(|e| IoFailure::new(Side::Source, IoOperation::Read, pos, n, &e))?;
            let written = if crate::buffer::is_zero(piece) {
                target.write_zeroes(pos, n, true).map_err(|e| (IoOperation::WriteZeroes, e))
            } else {
                target.write_at(piece, pos).map_err(|e| (IoOperation::Write, e))
            };
            written.map_err(|(op, e)| IoFailure::new(Side::Target, op, pos, n, &e))?;
            copied += n;
            pos += n;
        }
    }
    let end = diffs.last().map_or(0, Difference::end);
    target.flush().map_err(|e| IoFailure::new(Side::Target, IoOperation::Flush, 0, end, &e))?;
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{Fault, FaultyDevice, MemoryDevice, Op};
    use livemirror_testkit::pattern;

    fn pair(len: usize) -> (MemoryDevice, MemoryDevice) {
        let data = pattern(len, 7);
        let (s, t) = (MemoryDevice::new(len as u64), MemoryDevice::new(len as u64));
        s.write_at(&data, 0).unwrap();
        t.write_at(&data, 0).unwrap();
        (s, t)
    }

    /// Two image files both in the page cache: a cached pass compares them
    /// on the calling thread (no readers), and still finds a flipped byte.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_cached_pass_over_cached_files_finds_a_flipped_byte() {
        use crate::device::OpenOptions;
        let len = 8 << 20;
        let dir = tempfile::tempdir().unwrap();
        let mut data = pattern(len, 3);
        std::fs::write(dir.path().join("s"), &data).unwrap();
        data[5_000_001] ^= 1;
        std::fs::write(dir.path().join("t"), &data).unwrap();
        let open = |name| OpenOptions::new().open(dir.path().join(name)).unwrap();
        let (s, t) = (open("s"), open("t"));
        // Just written: their pages are in the cache (read them to be sure).
        let mut buf = vec![0; len];
        s.read_at(&mut buf, 0).unwrap();
        t.read_at(&mut buf, 0).unwrap();
        assert!(pipeline::both_cached(&s, &t), "both files are cached");
        let mut found = Vec::new();
        let whole = 0..len as u64;
        verify(&s, &t, std::slice::from_ref(&whole), Reading::Cached, |d| found.push(d)).unwrap();
        assert_eq!(found, [Difference { offset: 5_000_001 / CHUNK * CHUNK, len: CHUNK }]);
    }

    fn run(s: &dyn BlockDevice, t: &dyn BlockDevice) -> (Summary, Vec<Difference>) {
        let mut found = Vec::new();
        let whole = 0..s.len();
        let summary =
            verify(s, t, std::slice::from_ref(&whole), Reading::Medium, |d| found.push(d)).unwrap();
        (summary, found)
    }

    #[test]
    fn identical_devices_have_no_difference() {
        let (s, t) = pair((3 << 20) + 1536);
        let (summary, found) = run(&s, &t);
        assert!(summary.identical() && found.is_empty());
        assert_eq!(summary.compared, s.len());
    }

    #[test]
    fn differences_merge_into_ranges_that_contain_them() {
        let len = (20 << 20) + 1536;
        let (s, t) = pair(len);
        // One flipped byte; a run across a step boundary; the odd tail.
        t.write_at(&[!pattern(len, 7)[123_457]], 123_457).unwrap();
        t.write_at(&vec![0xAA; 3 * 4096], STEP - 4096).unwrap();
        t.write_at(&[0x55], len as u64 - 1).unwrap();
        let (summary, found) = run(&s, &t);
        let expect = [
            Difference { offset: 122_880, len: 4096 },
            Difference { offset: STEP - 4096, len: 3 * 4096 },
            Difference { offset: len as u64 - 1536, len: 1536 },
        ];
        assert_eq!(found, expect);
        assert_eq!(summary.ranges, 3);
        assert_eq!(summary.differing, 4096 + 3 * 4096 + 1536);
    }

    #[test]
    fn repair_copies_only_the_differences_and_then_they_are_gone() {
        let len = 9 << 20;
        let (s, t) = pair(len);
        t.write_at(&[1, 2, 3], 5 << 20).unwrap();
        t.write_zeroes(1 << 20, 8192, false).unwrap();
        let (_, found) = run(&s, &t);
        let copied = repair(&s, &t, &found).unwrap();
        assert_eq!(copied, 4096 + 8192);
        let (summary, _) = run(&s, &t);
        assert!(summary.identical());
    }

    #[test]
    fn holes_on_both_sides_are_skipped_and_a_hole_against_data_is_not() {
        let len = 16u64 << 20;
        let (s, t) = (MemoryDevice::new(len), MemoryDevice::new(len));
        s.write_at(&pattern(1 << 20, 3), 4 << 20).unwrap();
        t.write_at(&pattern(1 << 20, 3), 4 << 20).unwrap();
        t.write_at(&[9], 10 << 20).unwrap();
        let (summary, found) = run(&s, &t);
        assert_eq!(found, [Difference { offset: 10 << 20, len: 4096 }]);
        assert!(summary.skipped > 0 && summary.skipped < len, "{summary:?}");
        assert_eq!(summary.compared, len);
    }

    #[test]
    fn a_smaller_target_is_refused_and_a_larger_one_compared_over_the_source() {
        let (s, _) = pair(1 << 20);
        let small = MemoryDevice::new(4096);
        assert!(matches!(
            verify(&s, &small, std::slice::from_ref(&(0..s.len())), Reading::Medium, |_| {}),
            Err(VerifyError::TargetSmaller { .. })
        ));
        let large = MemoryDevice::new(2 << 20);
        large.write_at(&pattern(1 << 20, 7), 0).unwrap();
        large.write_at(&[1], (1 << 20) + 5).unwrap();
        assert!(run(&s, &large).0.identical());
    }

    #[test]
    fn pieces_are_compared_in_order_and_a_difference_across_pieces_is_one_range() {
        let len = 24 << 20;
        let (s, t) = pair(len);
        // Across the boundary of two pieces (512 KiB from the cache, 4 MiB
        // from the medium), and one in each of two ranges.
        for at in [(4 << 20) - 4096, (9 << 20) + 100, (17 << 20) + 7] {
            t.write_at(&[0xEE; 8192], at).unwrap();
        }
        let ranges = [(1 << 20)..(12 << 20), (16 << 20)..(20 << 20)];
        for reading in [Reading::Medium, Reading::Cached] {
            let mut found = Vec::new();
            let summary = verify(&s, &t, &ranges, reading, |d| found.push(d)).unwrap();
            let expect = [
                Difference { offset: (4 << 20) - 4096, len: 8192 },
                Difference { offset: 9 << 20, len: 12288 },
                Difference { offset: 17 << 20, len: 12288 },
            ];
            assert_eq!(found, expect, "{reading:?}");
            assert_eq!(summary.compared, (11 << 20) + (4 << 20));
        }
    }

    #[test]
    fn an_error_midway_ends_the_pass_with_it_after_what_came_before() {
        let len = 64 << 20;
        let (s, t) = pair(len);
        t.write_at(&[1], 1 << 20).unwrap();
        let s = FaultyDevice::new(std::sync::Arc::new(s));
        s.inject(Fault::persistent(Op::Read, (40 << 20)..(40 << 20) + 1, 5));
        let mut found = Vec::new();
        let err =
            compare(&s, &t, std::iter::once(0..len as u64), Reading::Medium, |d| found.push(d))
                .unwrap_err();
        assert_eq!((err.side, err.offset), (Side::Source, 40 << 20), "{err}");
        assert_eq!(found, [Difference { offset: 1 << 20, len: 4096 }]);
    }

    #[test]
    fn a_read_error_names_its_side() {
        let (s, t) = pair(1 << 20);
        let t = FaultyDevice::new(std::sync::Arc::new(t));
        t.inject(Fault::persistent(Op::Read, 0..1 << 20, 5));
        let whole = 0..s.len();
        let err =
            verify(&s, &t, std::slice::from_ref(&whole), Reading::Cached, |_| {}).unwrap_err();
        assert!(matches!(err, VerifyError::Io(IoFailure { side: Side::Target, .. })), "{err}");
    }
}
