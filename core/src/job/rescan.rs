//! Compare passes, for sources whose writers do not go through the live
//! source (a mounted disk written by its OS, an image a VM writes directly).
//!
//! Such writes never mark chunks dirty, so "nothing dirty" proves nothing.
//! Instead, before Ready and again before the job ends, the job compares
//! source and target one step at a time and marks every chunk that differs
//! dirty. It is only in sync after a whole pass finds no difference. Steps
//! are short so commands (cancel, pause) are still answered during a pass.

use std::sync::Arc;

use super::copy::CopyContext;
use super::tracker::Tracker;
use crate::error::{IoFailure, IoOperation, Side};

/// Where a pass is and what it has found.
#[derive(Debug, Default)]
pub struct Rescan {
    /// Next byte to compare.
    pos: u64,
    /// Chunks found different in this pass.
    found: u64,
    /// A whole pass found nothing since the last reset.
    clean: bool,
}

impl Rescan {
    /// True when the job must not call itself in sync yet.
    pub fn due(&self) -> bool {
        !self.clean
    }

    /// Demands a fresh clean pass (at Complete, with writes held).
    pub fn reset(&mut self) {
        *self = Rescan::default();
    }

    /// Compares `step` bytes from the current position and marks differing
    /// chunks dirty. Runs on a blocking thread.
    pub fn step(
        &mut self,
        ctx: &Arc<CopyContext>,
        tracker: &Arc<Tracker>,
        step: u64,
    ) -> Result<(), IoFailure> {
        let g = tracker.geometry;
        let start = self.pos;
        let len = step.min(g.len - start);
        let mut a = vec![0u8; len as usize];
        let mut b = vec![0u8; len as usize];
        ctx.source
            .read_at(&mut a, start)
            .map_err(|e| IoFailure::new(Side::Source, IoOperation::Read, start, len, &e))?;
        ctx.target
            .read_at(&mut b, start)
            .map_err(|e| IoFailure::new(Side::Target, IoOperation::Read, start, len, &e))?;
        let chunk = g.granularity as usize;
        for (i, (x, y)) in a.chunks(chunk).zip(b.chunks(chunk)).enumerate() {
            if x != y {
                tracker.mark_dirty(g.covering(start + (i * chunk) as u64, 1));
                self.found += 1;
            }
        }
        self.pos = start + len;
        if self.pos >= g.len {
            self.clean = self.found == 0;
            self.pos = 0;
            self.found = 0;
        }
        Ok(())
    }
}
