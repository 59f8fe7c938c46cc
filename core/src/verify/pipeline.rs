//! Reading both sides ahead of the comparison, so a verify runs at the speed
//! of the slower device rather than at the sum of read and compare times.
//!
//! One planner thread cuts the ranges into pieces of at most
//! [`Reading::piece`] bytes, asking both sides' block status so that a run
//! of holes or zeroes on both is a piece that nobody reads. Each side has
//! [`READERS`] reader threads; piece *j* goes to reader *j* mod
//! [`READERS`] of each side, so several reads per side are in flight while
//! the caller's thread compares the piece before, and the caller takes the
//! pieces in order from the readers in turn (no reordering buffer). Each
//! reader owns [`BUFFERS`] buffers, handed back after each comparison:
//! memory is fixed (`2 × READERS × BUFFERS × piece`), whatever the size.
//!
//! An error (a read, or a block status) travels in the piece's place and
//! ends the comparison; dropping the channels stops every thread.

use std::ops::Range;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use super::Reading;
use crate::buffer::AlignedBuf;
use crate::device::BlockDevice;
use crate::error::{IoFailure, IoOperation, Side};

/// Reader threads per side, and buffers per reader.
const READERS: usize = 2;
const BUFFERS: usize = 2;

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
    let max = reading.piece();
    std::thread::scope(|s| {
        let mut jobs = Vec::new();
        let mut lanes = Vec::new();
        for (side, dev) in [(Side::Source, source), (Side::Target, target)] {
            for _ in 0..READERS {
                let (job_tx, job_rx) = sync_channel::<Result<Piece, IoFailure>>(BUFFERS);
                let (out_tx, out_rx) = sync_channel::<Delivery>(BUFFERS);
                let (back_tx, back_rx) = sync_channel::<AlignedBuf>(BUFFERS);
                s.spawn(move || read_pieces(dev, side, reading, max, job_rx, out_tx, back_rx));
                jobs.push(job_tx);
                lanes.push((out_rx, back_tx));
            }
        }
        s.spawn(move || plan(source, target, ranges, max, jobs));
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
    let mut j = 0;
    for range in ranges {
        let mut pos = range.start;
        while pos < range.end {
            let piece = both_zero_run(source, target, pos, (range.end - pos).min(max))
                .map(|(zero, len)| Piece { offset: pos, len, zero });
            for side in 0..2 {
                if jobs[side * READERS + j % READERS].send(piece.clone()).is_err() {
                    return; // the comparison ended
                }
            }
            // An error ends the plan: the comparison stops at it.
            let Ok(piece) = piece else { return };
            pos += piece.len;
            j += 1;
        }
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

/// From `pos`, at most `max` bytes: whether both sides read as zeroes, and
/// for how long that stays so (a data run keeps going over neighbouring
/// runs that are not zero on both sides, so reads stay large).
fn both_zero_run(
    source: &dyn BlockDevice,
    target: &dyn BlockDevice,
    pos: u64,
    max: u64,
) -> Result<(bool, u64), IoFailure> {
    let status = |dev: &dyn BlockDevice, side, at: u64, len: u64| {
        dev.block_status(at, len)
            .map_err(|e| IoFailure::new(side, IoOperation::BlockStatus, at, len, &e))
    };
    let mut len = 0;
    let mut zero_start = None;
    while len < max {
        let at = pos + len;
        let (s, sr) = status(source, Side::Source, at, max - len)?;
        let (t, tr) = status(target, Side::Target, at, max - len)?;
        let both_zero = s.reads_zero() && t.reads_zero();
        let run = sr.min(tr);
        match zero_start {
            None if len == 0 => zero_start = Some(both_zero),
            Some(z) if z != both_zero => break,
            _ => {}
        }
        len += run;
    }
    Ok((zero_start.unwrap_or(false), len.min(max)))
}
