//! The state shared by the job and the writers: which chunks are dirty, which
//! are being copied or written, and the copy mode.
//!
//! The correctness argument lives here:
//! * A copy clears its chunks' dirty bits *before* reading the source, and a
//!   write marks its chunks dirty *after* it lands. So a write that races
//!   with a copy is either seen by the copy's read or re-dirties the chunk.
//! * A chunk is copied by at most one operation at a time: a chunk re-dirtied
//!   while its copy runs waits until that copy finishes, so an older copy can
//!   never overwrite a newer one on the target.
//! * In write-blocking mode a write owns its chunks while it writes source
//!   and target, excluding copies of the same chunks; only then may it clear
//!   dirty bits it fully covered.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::bitmap::DirtyBitmap;
use crate::chunkmap::ChunkMap;
use crate::device::BlockDevice;
use crate::error::IoFailure;
use crate::options::CopyMode;

/// Converts between bytes and chunks of one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub len: u64,
    pub granularity: u64,
}

impl Geometry {
    pub fn chunks(&self) -> u64 {
        self.len.div_ceil(self.granularity)
    }

    /// Chunks touched by the byte range.
    pub fn covering(&self, offset: u64, len: u64) -> Range<u64> {
        if len == 0 {
            return 0..0;
        }
        offset / self.granularity..(offset + len).div_ceil(self.granularity)
    }

    /// Chunks entirely inside the byte range (the device's short last chunk
    /// counts as covered when the range reaches the end).
    pub fn fully_covered(&self, offset: u64, len: u64) -> Range<u64> {
        let end = offset + len;
        let last = if end >= self.len { self.chunks() } else { end / self.granularity };
        let first = offset.div_ceil(self.granularity);
        first..last.max(first)
    }

    /// The bytes of a chunk range, clipped to the device: `(offset, len)`.
    pub fn bytes(&self, chunks: &Range<u64>) -> (u64, u64) {
        let start = (chunks.start * self.granularity).min(self.len);
        let end = (chunks.end * self.granularity).min(self.len);
        (start, end - start)
    }
}

/// Tracks dirty and busy chunks for one job.
pub struct Tracker {
    pub geometry: Geometry,
    pub target: Arc<dyn BlockDevice>,
    pub map: Arc<ChunkMap>,
    state: Mutex<State>,
    /// Signalled whenever a busy range is released.
    released: Condvar,
    /// Wakes the job when chunks become dirty.
    pub wake: Notify,
    write_blocking: AtomicBool,
    /// Write-through failures not yet seen by the job (at most
    /// [`MAX_PENDING_FAILURES`]: more of them would say nothing new).
    failures: Mutex<Vec<IoFailure>>,
    /// One past the offset of the first live write past `geometry.len`
    /// (0: none). Only a job onto a smaller target is shorter than its
    /// source; such a write makes the target no copy of it.
    past_end: AtomicU64,
}

/// Write-through failures kept for the job between two of its looks.
const MAX_PENDING_FAILURES: usize = 16;

struct State {
    dirty: DirtyBitmap,
    /// Chunk ranges being copied by the job or written by a blocking write.
    busy: Vec<Range<u64>>,
    /// Whole-cluster copying: clusters (in units of `cow_chunks` chunks)
    /// already copied once. `None` when the target needs no such care.
    cow: Option<CowState>,
}

struct CowState {
    chunks_per_cluster: u64,
    copied: DirtyBitmap,
}

/// What the job wants next: how far to look and how much to take.
pub struct Pick {
    pub from: u64,
    pub max_chunks: u64,
}

fn overlaps(a: &Range<u64>, b: &Range<u64>) -> bool {
    a.start < b.end && b.start < a.end
}

impl Tracker {
    pub fn new(
        geometry: Geometry,
        target: Arc<dyn BlockDevice>,
        map: Arc<ChunkMap>,
        mode: CopyMode,
    ) -> Self {
        let chunks = geometry.chunks();
        let cow = target
            .cluster_size()
            .filter(|c| {
                *c > geometry.granularity && target.partial_cluster_write_fills_from_backing()
            })
            .map(|cluster| {
                let per = cluster / geometry.granularity;
                CowState { chunks_per_cluster: per, copied: DirtyBitmap::new(chunks.div_ceil(per)) }
            });
        Tracker {
            geometry,
            target,
            map,
            state: Mutex::new(State { dirty: DirtyBitmap::new(chunks), busy: Vec::new(), cow }),
            released: Condvar::new(),
            wake: Notify::new(),
            write_blocking: AtomicBool::new(mode == CopyMode::WriteBlocking),
            failures: Mutex::new(Vec::new()),
            past_end: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn copy_mode(&self) -> CopyMode {
        if self.write_blocking.load(Ordering::Acquire) {
            CopyMode::WriteBlocking
        } else {
            CopyMode::Background
        }
    }

    /// Only called with the live source's write gate closed, so no write is
    /// half-way through under the old mode.
    pub fn set_copy_mode(&self, mode: CopyMode) {
        self.write_blocking.store(mode == CopyMode::WriteBlocking, Ordering::Release);
    }

    /// A write-blocking write reached the source but not the target: its
    /// chunks are dirty again, and the job applies the target's error
    /// policy to the failure, as QEMU does for active mirroring.
    pub fn report_failure(&self, failure: IoFailure) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if f.len() < MAX_PENDING_FAILURES {
            f.push(failure);
        }
        drop(f);
        self.wake.notify_one();
    }

    /// The failures reported since the last call.
    pub fn take_failures(&self) -> Vec<IoFailure> {
        std::mem::take(&mut *self.failures.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Records a live write at `offset`, past what the job mirrors, and
    /// wakes the job so it fails.
    pub fn note_written_past_end(&self, offset: u64) {
        // Only the first such write is kept: a failed exchange means one was.
        let _ = self.past_end.compare_exchange(0, offset + 1, Ordering::AcqRel, Ordering::Acquire);
        self.wake.notify_one();
    }

    /// Where the first live write past the job's range landed, if one did.
    pub fn written_past_end(&self) -> Option<u64> {
        self.past_end.load(Ordering::Acquire).checked_sub(1)
    }

    pub fn dirty_chunks(&self) -> u64 {
        self.lock().dirty.count()
    }

    /// The dirty map with every chunk being copied or written counted as
    /// dirty: what may be called copied once the target is flushed (see
    /// [`crate::persist`]'s crash rule).
    pub fn snapshot(&self) -> DirtyBitmap {
        let st = self.lock();
        let mut map = st.dirty.clone();
        for b in &st.busy {
            map.set(b.clone());
        }
        map
    }

    /// Marks chunks dirty and wakes the job.
    pub fn mark_dirty(&self, chunks: Range<u64>) {
        let mut st = self.lock();
        self.set_dirty(&mut st, chunks);
        drop(st);
        self.wake.notify_one();
    }

    fn set_dirty(&self, st: &mut State, chunks: Range<u64>) {
        for (cell, r) in self.map.split(chunks) {
            let n = st.dirty.set(r);
            self.map.add_dirty(cell, n);
        }
    }

    fn clear_dirty(&self, st: &mut State, chunks: Range<u64>) {
        for (cell, r) in self.map.split(chunks) {
            let n = st.dirty.clear(r);
            self.map.sub_dirty(cell, n);
        }
    }

    /// Picks the next copy: the first dirty chunk at or after `pick.from`
    /// (wrapping around) that is not busy, extended over following dirty,
    /// non-busy chunks up to `pick.max_chunks` (and to whole clusters the
    /// first time a cluster is copied). Its chunks become busy and clean.
    pub fn begin_copy(&self, pick: Pick) -> Option<Range<u64>> {
        let mut st = self.lock();
        let total = st.dirty.len();
        let mut pos = pick.from.min(total);
        let mut wrapped = false;
        loop {
            let start = match st.dirty.next_dirty(pos) {
                Some(c) if !wrapped || c < pick.from => c,
                _ if !wrapped => {
                    wrapped = true;
                    pos = 0;
                    continue;
                }
                _ => return None,
            };
            if let Some(b) = st.busy.iter().find(|b| b.contains(&start)) {
                pos = b.end;
                continue;
            }
            let next_busy = st.busy.iter().map(|b| b.start).filter(|s| *s > start).min();
            let limit = (start + pick.max_chunks.max(1)).min(next_busy.unwrap_or(total));
            let mut range = start..st.dirty.dirty_run_end(start, limit);
            if let Some(cow) = &st.cow {
                range = cow.widen(range, total);
                if st.busy.iter().any(|b| overlaps(b, &range)) {
                    // Part of the cluster is busy: try again once it is not.
                    pos = start + 1;
                    continue;
                }
            }
            self.clear_dirty(&mut st, range.clone());
            st.busy.push(range.clone());
            self.map.add_in_flight(range.clone());
            return Some(range);
        }
    }

    /// Ends a copy begun by [`begin_copy`](Self::begin_copy). A failed copy
    /// leaves its chunks dirty for a later attempt.
    pub fn end_copy(&self, chunks: Range<u64>, ok: bool) {
        let mut st = self.lock();
        if ok {
            if let Some(cow) = &mut st.cow {
                cow.mark_copied(&chunks, self.geometry.chunks());
            }
        } else {
            self.set_dirty(&mut st, chunks.clone());
        }
        Self::release(&mut st, &chunks);
        drop(st);
        self.map.finish(chunks, ok);
        self.released.notify_all();
        if !ok {
            self.wake.notify_one();
        }
    }

    fn release(st: &mut State, chunks: &Range<u64>) {
        if let Some(i) = st.busy.iter().position(|b| b == chunks) {
            st.busy.swap_remove(i);
        }
    }

    /// Takes `chunks` for a blocking write: waits until no copy or other
    /// blocking write holds any of them. Released when the guard drops.
    pub fn claim(&self, chunks: Range<u64>) -> Claim<'_> {
        let mut st = self.lock();
        while st.busy.iter().any(|b| overlaps(b, &chunks)) {
            st = self.released.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        st.busy.push(chunks.clone());
        Claim { tracker: self, chunks }
    }

    /// True when a blocking write to `chunks` may go straight to the target:
    /// no cluster it touches still needs its first whole-cluster copy.
    pub fn may_write_through(&self, chunks: &Range<u64>) -> bool {
        match &self.lock().cow {
            None => true,
            Some(cow) => cow.all_copied(chunks),
        }
    }
}

/// Chunks held by a blocking write.
pub struct Claim<'a> {
    tracker: &'a Tracker,
    chunks: Range<u64>,
}

impl Claim<'_> {
    /// The write reached source and target: chunks it fully covered are in
    /// sync now.
    pub fn written_through(&self, fully_covered: Range<u64>) {
        let mut st = self.tracker.lock();
        self.tracker.clear_dirty(&mut st, fully_covered);
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut st = self.tracker.lock();
        Tracker::release(&mut st, &self.chunks);
        drop(st);
        self.tracker.released.notify_all();
    }
}

impl CowState {
    /// Widens `range` to whole clusters at either end not yet copied.
    fn widen(&self, range: Range<u64>, total: u64) -> Range<u64> {
        let per = self.chunks_per_cluster;
        let first = range.start / per;
        let last = (range.end - 1) / per;
        let start = if self.copied.is_dirty(first) { range.start } else { first * per };
        let end =
            if self.copied.is_dirty(last) { range.end } else { ((last + 1) * per).min(total) };
        start..end
    }

    fn mark_copied(&mut self, chunks: &Range<u64>, total: u64) {
        let per = self.chunks_per_cluster;
        let first = chunks.start.div_ceil(per);
        let end = if chunks.end >= total { total.div_ceil(per) } else { chunks.end / per };
        self.copied.set(first..end.max(first));
    }

    fn all_copied(&self, chunks: &Range<u64>) -> bool {
        let per = self.chunks_per_cluster;
        (chunks.start / per..chunks.end.div_ceil(per)).all(|c| self.copied.is_dirty(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::MemoryDevice;

    fn tracker(chunks: u64, target: Arc<dyn BlockDevice>, gran: u64) -> Tracker {
        let g = Geometry { len: chunks * gran, granularity: gran };
        Tracker::new(g, target, Arc::new(ChunkMap::new(chunks, gran)), CopyMode::Background)
    }

    #[test]
    fn geometry_rounds_the_short_last_chunk() {
        let g = Geometry { len: 10_000, granularity: 4096 };
        assert_eq!(g.chunks(), 3);
        assert_eq!(g.covering(4095, 2), 0..2);
        assert_eq!(g.covering(5, 0), 0..0);
        assert_eq!(g.fully_covered(4095, 4097), 1..2);
        assert_eq!(g.fully_covered(4095, 4096), 1..1);
        assert_eq!(g.fully_covered(8192, 1808), 2..3);
        assert_eq!(g.bytes(&(2..3)), (8192, 1808));
    }

    #[test]
    fn copies_merge_dirty_runs_and_skip_busy_chunks() {
        let t = tracker(100, Arc::new(MemoryDevice::new(100 * 512)), 512);
        t.mark_dirty(10..20);
        t.mark_dirty(30..31);
        let a = t.begin_copy(Pick { from: 0, max_chunks: 4 }).unwrap();
        assert_eq!(a, 10..14);
        t.mark_dirty(12..13); // written while in flight: waits for the copy
        let b = t.begin_copy(Pick { from: 14, max_chunks: 100 }).unwrap();
        assert_eq!(b, 14..20);
        let c = t.begin_copy(Pick { from: 20, max_chunks: 100 }).unwrap();
        assert_eq!(c, 30..31);
        assert_eq!(t.begin_copy(Pick { from: 31, max_chunks: 100 }), None, "12 is busy");
        t.end_copy(a, true);
        assert_eq!(t.begin_copy(Pick { from: 31, max_chunks: 100 }), Some(12..13));
        t.end_copy(b.clone(), false);
        assert_eq!(t.dirty_chunks(), 6, "a failed copy stays dirty");
    }

    #[test]
    fn first_copy_of_a_backed_cluster_takes_the_whole_cluster() {
        let target = MemoryDevice::with_backing(vec![0; 64 * 1024], 16 * 1024);
        let t = tracker(16, Arc::new(target), 4096);
        t.mark_dirty(5..6);
        let r = t.begin_copy(Pick { from: 0, max_chunks: 16 }).unwrap();
        assert_eq!(r, 4..8);
        assert!(!t.may_write_through(&(5..6)));
        t.end_copy(r, true);
        assert!(t.may_write_through(&(5..6)));
        t.mark_dirty(6..7);
        assert_eq!(t.begin_copy(Pick { from: 0, max_chunks: 16 }), Some(6..7));
    }
}
