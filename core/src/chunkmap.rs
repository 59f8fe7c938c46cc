//! A fixed-size summary of the mirror's state for the heatmap.
//!
//! However large the disk, there are at most [`MAX_CELLS`] cells; each covers
//! a run of chunks and keeps lock-free counters the engine updates as it goes
//! and the GUI reads every frame without taking a lock.

use std::ops::Range;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

/// The most cells a map has: 64 Ki cells × 32 bytes = 2 MiB, for any disk.
pub const MAX_CELLS: u64 = 1 << 16;

#[derive(Default)]
struct Cell {
    dirty: AtomicU64,
    in_flight: AtomicU64,
    failed: AtomicU64,
    copies: AtomicU32,
    heat: AtomicU32,
}

/// A snapshot of one cell's counters, in chunks (heat in recent writes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CellCounts {
    /// Chunks this cell covers.
    pub total: u64,
    /// Chunks waiting to be copied (never copied, or written since).
    pub dirty: u64,
    /// Chunks being copied right now.
    pub in_flight: u64,
    /// Chunks whose last copy failed and that are still dirty.
    pub failed: u64,
    /// Copy operations that completed in this cell; 0 means never touched.
    pub copies: u32,
    /// Recent writes to this cell, decaying over time.
    pub heat: u32,
}

/// What a cell (or a bucket of cells) shows, most urgent first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellState {
    /// A copy failed and the chunks are still dirty.
    Failed,
    /// Being copied now.
    Copying,
    /// Never copied yet and waiting.
    Pending,
    /// Copied before, written since: waiting to be copied again.
    Dirty,
    /// Nothing to do: in sync (or not part of the job).
    Synced,
}

impl CellCounts {
    pub fn state(&self) -> CellState {
        if self.failed > 0 {
            CellState::Failed
        } else if self.in_flight > 0 {
            CellState::Copying
        } else if self.dirty > 0 && self.copies == 0 {
            CellState::Pending
        } else if self.dirty > 0 {
            CellState::Dirty
        } else {
            CellState::Synced
        }
    }

    /// Adds another cell's counts into this one.
    pub fn merge(&mut self, o: &CellCounts) {
        self.total += o.total;
        self.dirty += o.dirty;
        self.in_flight += o.in_flight;
        self.failed += o.failed;
        self.copies = self.copies.saturating_add(o.copies);
        self.heat = self.heat.saturating_add(o.heat);
    }
}

/// The heatmap summary of a device of `chunks` chunks.
pub struct ChunkMap {
    chunks: u64,
    granularity: u64,
    chunks_per_cell: u64,
    cells: Box<[Cell]>,
}

impl ChunkMap {
    pub fn new(chunks: u64, granularity: u64) -> Self {
        let chunks_per_cell = chunks.div_ceil(MAX_CELLS).max(1);
        let n = chunks.div_ceil(chunks_per_cell) as usize;
        ChunkMap {
            chunks,
            granularity,
            chunks_per_cell,
            cells: (0..n).map(|_| Cell::default()).collect(),
        }
    }

    /// Number of cells (≤ [`MAX_CELLS`]).
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// Bytes per chunk.
    pub fn granularity(&self) -> u64 {
        self.granularity
    }

    /// Chunks each cell covers (the last one may cover fewer).
    pub fn chunks_per_cell(&self) -> u64 {
        self.chunks_per_cell
    }

    /// The chunks covered by cell `i`.
    pub fn cell_chunks(&self, i: usize) -> Range<u64> {
        let start = i as u64 * self.chunks_per_cell;
        start..(start + self.chunks_per_cell).min(self.chunks)
    }

    /// The bytes covered by cell `i` on a device of `device_len` bytes.
    pub fn cell_bytes(&self, i: usize, device_len: u64) -> Range<u64> {
        let c = self.cell_chunks(i);
        (c.start * self.granularity).min(device_len)..(c.end * self.granularity).min(device_len)
    }

    /// A snapshot of cell `i`.
    pub fn counts(&self, i: usize) -> CellCounts {
        let c = &self.cells[i];
        let r = self.cell_chunks(i);
        CellCounts {
            total: r.end - r.start,
            dirty: c.dirty.load(Relaxed),
            in_flight: c.in_flight.load(Relaxed),
            failed: c.failed.load(Relaxed),
            copies: c.copies.load(Relaxed),
            heat: c.heat.load(Relaxed),
        }
    }

    /// The cells folded into `buckets` equal runs (fewer if there are fewer
    /// cells): what a display with that many places draws.
    pub fn summary(&self, buckets: usize) -> Vec<CellCounts> {
        let n = self.len();
        let buckets = buckets.min(n).max(usize::from(n > 0));
        let mut out = vec![CellCounts::default(); buckets];
        for i in 0..n {
            out[i * buckets / n].merge(&self.counts(i));
        }
        out
    }

    /// Splits a chunk range at cell boundaries: `(cell, sub-range)` pairs.
    pub fn split(&self, chunks: Range<u64>) -> impl Iterator<Item = (usize, Range<u64>)> + '_ {
        let end = chunks.end.min(self.chunks);
        let mut pos = chunks.start;
        std::iter::from_fn(move || {
            if pos >= end {
                return None;
            }
            let cell = (pos / self.chunks_per_cell) as usize;
            let stop = ((cell as u64 + 1) * self.chunks_per_cell).min(end);
            let r = pos..stop;
            pos = stop;
            Some((cell, r))
        })
    }

    pub(crate) fn add_dirty(&self, cell: usize, n: u64) {
        self.cells[cell].dirty.fetch_add(n, Relaxed);
    }

    pub(crate) fn sub_dirty(&self, cell: usize, n: u64) {
        saturating_sub(&self.cells[cell].dirty, n);
    }

    pub(crate) fn add_in_flight(&self, chunks: Range<u64>) {
        for (cell, r) in self.split(chunks) {
            self.cells[cell].in_flight.fetch_add(r.end - r.start, Relaxed);
        }
    }

    /// A copy of `chunks` finished: they leave the in-flight count, and
    /// failures are counted (or forgiven, after a success).
    pub(crate) fn finish(&self, chunks: Range<u64>, ok: bool) {
        for (cell, r) in self.split(chunks) {
            let c = &self.cells[cell];
            let n = r.end - r.start;
            saturating_sub(&c.in_flight, n);
            if ok {
                c.copies.fetch_add(1, Relaxed);
                saturating_sub(&c.failed, n);
            } else {
                c.failed.fetch_add(n, Relaxed);
            }
        }
    }

    /// A write landed on these chunks.
    pub(crate) fn heat(&self, chunks: Range<u64>) {
        for (cell, _) in self.split(chunks) {
            let h = &self.cells[cell].heat;
            // Cannot fail: the update always returns Some.
            let _ = h.fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_add(1)));
        }
    }

    /// Lets write heat fade: every cell keeps 3/4 of its heat. The job calls
    /// this on its progress tick, so heat halves about every half second.
    pub fn decay_heat(&self) {
        for c in self.cells.iter() {
            let v = c.heat.load(Relaxed);
            if v != 0 {
                c.heat.store(v - v.div_ceil(4), Relaxed);
            }
        }
    }
}

fn saturating_sub(a: &AtomicU64, n: u64) {
    // Cannot fail: the update always returns Some.
    let _ = a.fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(n)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_16_tib_disk_at_512_bytes_still_has_at_most_64k_cells() {
        let chunks = (16u64 << 40) / 512;
        let map = ChunkMap::new(chunks, 512);
        assert!(map.len() as u64 <= MAX_CELLS);
        let covered: u64 = (0..map.len()).map(|i| map.counts(i).total).sum();
        assert_eq!(covered, chunks);
        assert!(std::mem::size_of::<Cell>() * map.len() <= 4 << 20);
    }

    #[test]
    fn split_follows_cell_boundaries() {
        let map = ChunkMap::new(MAX_CELLS * 3 + 1, 4096);
        assert_eq!(map.chunks_per_cell(), 4);
        let parts: Vec<_> = map.split(2..11).collect();
        assert_eq!(parts, vec![(0, 2..4), (1, 4..8), (2, 8..11)]);
        assert_eq!(map.cell_chunks(map.len() - 1), MAX_CELLS * 3..MAX_CELLS * 3 + 1);
    }

    #[test]
    fn summary_folds_cells_and_states_follow_counts() {
        let map = ChunkMap::new(10, 4096);
        map.add_dirty(0, 1);
        map.add_dirty(9, 1);
        map.add_in_flight(9..10);
        let s = map.summary(4);
        assert_eq!(s.len(), 4);
        assert_eq!(s.iter().map(|c| c.total).sum::<u64>(), 10);
        assert_eq!(s[0].state(), CellState::Pending);
        assert_eq!(s[1].state(), CellState::Synced);
        assert_eq!(s[3].state(), CellState::Copying);
        map.finish(9..10, true);
        assert_eq!(map.summary(4)[3].state(), CellState::Dirty);
        map.sub_dirty(9, 1);
        assert_eq!(map.summary(4)[3].state(), CellState::Synced);
        assert!(ChunkMap::new(0, 4096).summary(8).is_empty());
    }

    #[test]
    fn counters_follow_the_copy_lifecycle() {
        let map = ChunkMap::new(100, 65536);
        map.add_dirty(5, 1);
        map.add_in_flight(5..6);
        assert_eq!(map.counts(5).in_flight, 1);
        map.finish(5..6, false);
        assert_eq!((map.counts(5).in_flight, map.counts(5).failed), (0, 1));
        map.add_in_flight(5..6);
        map.finish(5..6, true);
        map.sub_dirty(5, 1);
        let c = map.counts(5);
        assert_eq!((c.dirty, c.failed, c.copies), (0, 0, 1));
        map.heat(5..6);
        map.heat(5..6);
        assert_eq!(map.counts(5).heat, 2);
        map.decay_heat();
        map.decay_heat();
        assert_eq!(map.counts(5).heat, 0);
    }
}
