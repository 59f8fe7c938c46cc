//! Reading both sides for a verify, in pieces, skipping what both report
//! as holes or zeroes.
//!
//! From the media ([`Reading::Medium`]) the reads go ahead of the
//! comparison, so a pass runs at the speed of the slower device rather than
//! at the sum of read and compare times: one planner thread cuts the ranges
//! into pieces, each side has [`READERS`] reader threads, piece *j* goes to
//! reader *j* mod [`READERS`] of each side, so several reads per side are
//! in flight while the caller's thread compares the piece before, and the
//! caller takes the pieces in order from the readers in turn (no
//! reordering buffer). Each reader owns [`BUFFERS`] buffers, handed back
//! after each comparison: memory is fixed (`2 × READERS × BUFFERS ×
//! piece`), whatever the size. An error (a read, or a block status)
//! travels in the piece's place and ends the comparison; dropping the
//! channels stops every thread.
//!
//! Through the page cache ([`Reading::Cached`]) the same readers serve a
//! side the cache does not hold (cold, each reader's read waits for the
//! disk, with the kernel's readahead). When both sides are nearly all
//! cached (`cachestat`, [`BlockDevice::cached_bytes`]), a read is a copy
//! from memory: threads would only contend for the same memory bandwidth,
//! and a piece copied on one core and compared on another is compared
//! from a colder cache. The caller's thread then reads both sides itself,
//! into two small buffers that stay in its core's cache for the comparison
//! (what `qemu-img compare` does). Measured on the 2 GiB pair of
//! `benches/verify.sh`, eight interleaved cold runs each: the readers
//! 1.18–2.45 s (median 2.1), the calling thread 1.14–4.03 s (median 2.6);
//! warm, the readers 0.20–0.30 s, the calling thread 0.18 s.

use std::ops::Range;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use super::Reading;
use crate::buffer::AlignedBuf;
use crate::device::{self, Allocation, BlockDevice, Extent, extents};
use crate::error::{IoFailure, IoOperation, Side};

/// Reader threads per side, and buffers per reader.
const READERS: usize = 2;
const BUFFERS: usize = 2;
/// Bytes per read by the readers: large for sequential speed off a disk (a
/// direct read this size is split into several requests in flight).
const READ_PIECE: u64 = 4 << 20;
/// Bytes per read on the comparing thread, from the cache: small enough
/// that both sides' pieces stay in the core's cache until compared.
const CACHED_PIECE: u64 = 512 << 10;
/// The share of a device the page cache must hold for it to count as
/// cached, in tenths.
const CACHED_TENTHS: u64 = 9;

/// A piece of a range: its bytes, and whether both sides read as zeroes
/// there (then neither is read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Piece {
    pub offset: u64,
    pub len: u64,
    pub zero: bool,
}

/// A piece as one reader delivers it: the bytes, unless both sides are zero.
type Delivery = Result<(Piece, Option<AlignedBuf>), IoFailure>;

/// Calls `each` with every piece of `ranges` in order, with both sides'
/// bytes for the pieces that are read. Stops at the first error.
pub(super) fn for_each_piece(
    source: &dyn BlockDevice,
    target: &dyn BlockDevice,
    ranges: impl Iterator<Item = Range<u64>> + Send,
    reading: Reading,
    mut each: impl FnMut(Piece, Option<(&[u8], &[u8])>),
) -> Result<(), IoFailure> {
    if reading == Reading::Cached && both_cached(source, target) {
        return inline(source, target, ranges, CACHED_PIECE, each);
    }
    std::thread::scope(|s| {
        let mut jobs = Vec::new();
        let mut lanes = Vec::new();
        for (side, dev) in [(Side::Source, source), (Side::Target, target)] {
            for _ in 0..READERS {
                let (job_tx, job_rx) = sync_channel::<Result<Piece, IoFailure>>(BUFFERS);
                let (out_tx, out_rx) = sync_channel::<Delivery>(BUFFERS);
                let (back_tx, back_rx) = sync_channel::<AlignedBuf>(BUFFERS);
                s.spawn(move || {
                    read_pieces(dev, side, reading, READ_PIECE, job_rx, out_tx, back_rx)
                });
                jobs.push(job_tx);
                lanes.push((out_rx, back_tx));
            }
        }
        s.spawn(move || plan(source, target, ranges, READ_PIECE, jobs));
        let (sources, targets) = lanes.split_at(READERS);
        let mut j = 0;
        loop {
            let (a_rx, a_back) = &sources[j % READERS];
            let (b_rx, b_back) = &targets[j % READERS];
            // A closed lane is the planner's end: every piece was delivered.
            let Ok(a) = a_rx.recv() else { return Ok(()) };
            let (piece, a) = a?;
            let (_, b) = b_rx.recv().expect("both sides deliver every piece")?;
            match (a, b) {
                (Some(a), Some(b)) => {
                    let n = piece.len as usize;
                    each(piece, Some((&a[..n], &b[..n])));
                    // A reader that ended has no use for its buffer.
                    let _ = a_back.send(a);
                    let _ = b_back.send(b);
                }
                _ => each(piece, None),
            }
            j += 1;
        }
    })
}

/// Whether the page cache holds (nearly) all of both devices.
pub(super) fn both_cached(source: &dyn BlockDevice, target: &dyn BlockDevice) -> bool {
    [source, target].iter().all(|d| {
        let len = d.len();
        d.cached_bytes(0, len).is_some_and(|held| held >= len / 10 * CACHED_TENTHS)
    })
}

/// The planner: cuts `ranges` into pieces and gives piece *j* to reader *j*
/// mod [`READERS`] of each side (`jobs` holds the source's readers, then
/// the target's).
fn plan(
    source: &dyn BlockDevice,
    target: &dyn BlockDevice,
    ranges: impl Iterator<Item = Range<u64>>,
    max: u64,
    jobs: Vec<SyncSender<Result<Piece, IoFailure>>>,
) {
    for (j, piece) in Pieces::new(source, target, ranges, max).enumerate() {
        for side in 0..2 {
            if jobs[side * READERS + j % READERS].send(piece.clone()).is_err() {
                return; // the comparison ended
            }
        }
    }
}

/// [`for_each_piece`] on the caller's thread, through the page cache.
fn inline(
    source: &dyn BlockDevice,
    target: &dyn BlockDevice,
    ranges: impl Iterator<Item = Range<u64>>,
    max: u64,
    mut each: impl FnMut(Piece, Option<(&[u8], &[u8])>),
) -> Result<(), IoFailure> {
    let (mut a, mut b) = (AlignedBuf::new(max as usize), AlignedBuf::new(max as usize));
    for piece in Pieces::new(source, target, ranges, max) {
        let piece = piece?;
        if piece.zero {
            each(piece, None);
            continue;
        }
        let (n, at) = (piece.len as usize, piece.offset);
        for (side, dev, buf) in [(Side::Source, source, &mut a), (Side::Target, target, &mut b)] {
            dev.read_at(&mut buf[..n], at)
                .map_err(|e| IoFailure::new(side, IoOperation::Read, at, piece.len, &e))?;
        }
        each(piece, Some((&a[..n], &b[..n])));
    }
    Ok(())
}

/// The pieces of `ranges` in order (data pieces at most `max` bytes); an
/// error is the last item.
struct Pieces<'a, R> {
    sides: [StatusCursor<'a>; 2],
    ranges: R,
    /// The range being cut, from its next byte.
    current: Range<u64>,
    max: u64,
    failed: bool,
}

impl<'a, R: Iterator<Item = Range<u64>>> Pieces<'a, R> {
    fn new(source: &'a dyn BlockDevice, target: &'a dyn BlockDevice, ranges: R, max: u64) -> Self {
        let sides =
            [StatusCursor::new(source, Side::Source), StatusCursor::new(target, Side::Target)];
        Pieces { sides, ranges, current: 0..0, max, failed: false }
    }
}

impl<R: Iterator<Item = Range<u64>>> Iterator for Pieces<'_, R> {
    type Item = Result<Piece, IoFailure>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        while self.current.is_empty() {
            self.current = self.ranges.next()?;
        }
        let (pos, end) = (self.current.start, self.current.end);
        let piece = both_zero_run(&mut self.sides, pos, end, self.max).map(|(zero, len)| Piece {
            offset: pos,
            len,
            zero,
        });
        match &piece {
            Ok(p) => self.current.start += p.len,
            Err(_) => self.failed = true,
        }
        Some(piece)
    }
}

/// One reader: reads its pieces of one side into its own buffers, in order.
fn read_pieces(
    dev: &dyn BlockDevice,
    side: Side,
    reading: Reading,
    max: u64,
    jobs: Receiver<Result<Piece, IoFailure>>,
    out: SyncSender<Delivery>,
    back: Receiver<AlignedBuf>,
) {
    let mut free: Vec<AlignedBuf> = Vec::with_capacity(BUFFERS);
    let mut made = 0;
    for job in jobs {
        free.extend(back.try_iter());
        let delivery = match job {
            Err(e) => Err(e),
            Ok(piece) if piece.zero => Ok((piece, None)),
            Ok(piece) => {
                let buf = free.pop().or_else(|| {
                    (made < BUFFERS).then(|| {
                        made += 1;
                        AlignedBuf::new(max as usize)
                    })
                });
                // All lent out: wait for the comparison to hand one back
                // (none comes once it has ended).
                let Some(mut buf) = buf.or_else(|| back.recv().ok()) else { return };
                let bytes = &mut buf[..piece.len as usize];
                let read = match reading {
                    Reading::Medium => dev.read_uncached(bytes, piece.offset),
                    Reading::Cached => dev.read_at(bytes, piece.offset),
                };
                match read {
                    Ok(()) => Ok((piece, Some(buf))),
                    Err(e) => {
                        Err(IoFailure::new(side, IoOperation::Read, piece.offset, piece.len, &e))
                    }
                }
            }
        };
        let failed = delivery.is_err();
        if out.send(delivery).is_err() || failed {
            return;
        }
    }
}

/// Where one side's block status stands in the range being cut, walked
/// with [`extents`] and asked once per extent rather than once per piece:
/// an answer covers every piece up to the end of its run (a file's
/// `SEEK_DATA`/`SEEK_HOLE`, an NBD round trip).
struct StatusCursor<'a> {
    dev: &'a dyn BlockDevice,
    side: Side,
    /// The walk, and the end of the range it walks.
    walk: Option<(device::Extents<'a, Allocation>, u64)>,
    /// The run the last answer gave.
    known: Option<Extent<Allocation>>,
}

impl<'a> StatusCursor<'a> {
    fn new(dev: &'a dyn BlockDevice, side: Side) -> Self {
        StatusCursor { dev, side, walk: None, known: None }
    }

    /// Whether `pos` reads as zeroes, and where that run ends (at most
    /// `end`). Positions come in order: each is in the last run, at its
    /// end (the walk goes on), or in a new range (a new walk).
    fn at(&mut self, pos: u64, end: u64) -> Result<(bool, u64), IoFailure> {
        let known = |e: &Extent<Allocation>| (e.offset..e.end()).contains(&pos);
        if !self.known.as_ref().is_some_and(known) {
            let goes_on = self.known.is_some_and(|e| e.end() == pos);
            let walk = match &mut self.walk {
                Some((walk, walk_end)) if goes_on && *walk_end == end => walk,
                slot => &mut slot.insert((extents(self.dev, pos..end), end)).0,
            };
            let run = walk.next().expect("a walk from before its end has a run");
            self.known = Some(run.map_err(|e| e.failure(self.side))?);
        }
        let run = self.known.expect("known by now");
        Ok((run.status.reads_zero(), run.end().min(end)))
    }
}

/// From `pos`, before `end`: whether both sides read as zeroes, and for
/// how long that stays so — a zero run to its end (nothing is read), a data
/// run for at most `max` bytes, over neighbouring runs that are not zero on
/// both sides, so reads stay large.
fn both_zero_run(
    sides: &mut [StatusCursor; 2],
    pos: u64,
    end: u64,
    max: u64,
) -> Result<(bool, u64), IoFailure> {
    let data_stop = end.min(pos + max);
    let mut at = pos;
    let mut zero_start = None;
    let stop = |zero: Option<bool>| if zero == Some(true) { end } else { data_stop };
    while at < stop(zero_start) {
        let (s, s_end) = sides[0].at(at, end)?;
        let (t, t_end) = sides[1].at(at, end)?;
        let both_zero = s && t;
        match zero_start {
            None => zero_start = Some(both_zero),
            Some(z) if z != both_zero => break,
            _ => {}
        }
        at = s_end.min(t_end);
    }
    Ok((zero_start.unwrap_or(false), at.min(stop(zero_start)) - pos))
}
