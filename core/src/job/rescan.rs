//! Compare passes: read source and target, mark every chunk that differs
//! dirty. Two uses:
//!
//! * `compare` tracking, for sources whose writers do not go through the
//!   live source (a mounted disk written by its OS): such writes never mark
//!   chunks dirty, so before Ready a whole pass must find no difference.
//! * The final comparison of a job that verifies: during the last drain,
//!   passes run until one finds nothing; if [`Rescan::demand`]'s limit of
//!   passes in a row still find differences, someone keeps writing the
//!   source around livemirror and the job says so instead of "identical".
//! * Kernel tracking that could not name every written chunk
//!   ([`Rescan::recover`]): one whole pass marks what differs, and writes
//!   behind its cursor are tracked again, so that one pass restores an
//!   exact map whatever it finds.
//!
//! A pass compares one range at one instant: a write behind its cursor is
//! not seen by that pass. That is why a pass proves the copy only while
//! nobody writes around livemirror, and why the job words its claim by
//! tracking kind. The source is read past the page cache
//! ([`BlockDevice::read_uncached`]), which a mounted filesystem's writes do
//! not keep coherent with the block device. Steps are short, so commands
//! (cancel, pause) are still answered during a pass.
//!
//! [`BlockDevice::read_uncached`]: crate::device::BlockDevice::read_uncached

use std::sync::Arc;

use super::copy::CopyContext;
use super::persist::Resume;
use crate::error::IoFailure;
use crate::live::Tracker;
use crate::verify::{self, Reading, TargetRead, differing_chunks, read_both};

/// Where the passes are and what they have found.
#[derive(Debug, Default)]
pub struct Rescan {
    /// A clean pass is still needed.
    due: bool,
    /// Next byte to compare.
    pos: u64,
    /// First differing byte found in this pass.
    first_difference: Option<u64>,
    /// Passes in a row that found differences.
    differing_passes: u32,
    /// Give up after this many differing passes in a row (0: never).
    max_passes: u32,
    /// One pass ends the need, whatever it finds ([`Rescan::recover`]).
    one_pass: bool,
}

/// How a pass ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassEnd {
    /// Nothing differed: in sync as of this pass.
    Clean,
    /// Differences were marked dirty; another pass follows their copy.
    Differed,
    /// The limit of differing passes was reached.
    GaveUp { first_difference: u64 },
}

impl Rescan {
    /// `compare`: passes are needed before Ready, with no limit.
    pub fn new(compare: bool) -> Self {
        Rescan { due: compare, ..Default::default() }
    }

    /// True while the job must not call itself in sync.
    pub fn due(&self) -> bool {
        self.due
    }

    /// Demands a fresh clean pass, giving up after `max_passes` passes in a
    /// row that find differences.
    pub fn demand(&mut self, max_passes: u32) {
        *self = Rescan { due: true, max_passes, ..Default::default() };
    }

    /// Writes may have gone unseen by a tracker that sees every later one:
    /// one whole pass from the start is needed. A pass already due starts
    /// over (what it compared may predate the unseen writes) and keeps its
    /// own rule for when it is done.
    pub fn recover(&mut self) {
        if self.due {
            self.pos = 0;
            self.first_difference = None;
        } else {
            *self = Rescan { due: true, one_pass: true, ..Default::default() };
        }
    }

    /// Compares `step` bytes from the current position and marks differing
    /// chunks dirty; says how the pass ended when this step ended it. Runs
    /// on a blocking thread.
    pub fn step(
        &mut self,
        ctx: &Arc<CopyContext>,
        tracker: &Arc<Tracker>,
        step: u64,
    ) -> Result<Option<PassEnd>, IoFailure> {
        let g = tracker.geometry;
        let start = self.pos;
        let len = step.min(g.len - start);
        let mut a = vec![0u8; len as usize];
        let mut b = vec![0u8; len as usize];
        let (source, target) = (&*ctx.source, &*ctx.target);
        read_both(source, target, TargetRead::Cached, &mut a, &mut b, start)?;
        for (at, offset) in differing_chunks(&a, &b, start, g.granularity as usize) {
            tracker.mark_dirty(g.covering(at, 1));
            self.first_difference.get_or_insert(offset);
        }
        self.pos = start + len;
        if self.pos < g.len {
            return Ok(None);
        }
        self.pos = 0;
        let end = match self.first_difference.take() {
            _ if self.one_pass => {
                *self = Rescan::default();
                PassEnd::Clean
            }
            None => {
                self.due = false;
                self.differing_passes = 0;
                PassEnd::Clean
            }
            Some(first_difference) => {
                self.differing_passes += 1;
                if self.max_passes > 0 && self.differing_passes >= self.max_passes {
                    self.due = false;
                    PassEnd::GaveUp { first_difference }
                } else {
                    PassEnd::Differed
                }
            }
        };
        Ok(Some(end))
    }
}

/// Sync mode `differing`: one pass over the whole range marks dirty every
/// chunk where source and target differ, so only those are copied.
pub fn mark_differing(ctx: &CopyContext, tracker: &Tracker) -> Result<(), IoFailure> {
    let g = tracker.geometry;
    let (source, target) = (&*ctx.source, &*ctx.target);
    verify::compare(source, target, std::iter::once(0..g.len), Reading::Medium, |d| {
        tracker.mark_dirty(g.covering(d.offset, d.len));
    })?;
    Ok(())
}

/// A resumed job: marks the saved map's dirty chunks, and when the source
/// may have been written while nobody tracked it, compares the chunks the
/// map calls clean and marks those that differ too.
pub fn mark_resumed(
    ctx: &CopyContext,
    tracker: &Tracker,
    resume: &Resume,
) -> Result<(), IoFailure> {
    let g = tracker.geometry;
    for run in resume.dirty.runs() {
        tracker.mark_dirty(run);
    }
    if !resume.compare_clean {
        return Ok(());
    }
    // The gaps between dirty runs, compared in one pass.
    let ends = resume.dirty.runs().chain(std::iter::once(g.chunks()..g.chunks()));
    let starts = std::iter::once(0).chain(resume.dirty.runs().map(|r| r.end));
    let clean = starts.zip(ends).filter(|(from, run)| run.start > *from).map(|(from, run)| {
        let (offset, len) = g.bytes(&(from..run.start));
        offset..offset + len
    });
    verify::compare(&*ctx.source, &*ctx.target, clean, Reading::Medium, |d| {
        tracker.mark_dirty(g.covering(d.offset, d.len));
    })?;
    Ok(())
}
