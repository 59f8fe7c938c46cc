//! One copy operation: a run of chunks from source to target, run on a
//! blocking worker thread.
//!
//! Zeroes are never copied as data: runs the source reports as holes or
//! zeroes, and chunks that read as all-zero, become zero-writes (holes on a
//! sparse target), and are skipped altogether where the target already reads
//! as zero. So a sparse source gives an equally sparse target.

use std::io;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use crate::buffer::{BufferPool, is_zero};
use crate::device::{BlockDevice, extents};
use crate::error::{IoFailure, IoOperation, Side};

use crate::live::Geometry;

/// What one operation did, in bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CopyStats {
    pub data: u64,
    pub zeroed: u64,
    pub skipped: u64,
    /// Shared with the source by reflink instead of copied.
    pub cloned: u64,
}

/// The alignment a reflinked range needs on every filesystem that does
/// them (their block size; 4 KiB on XFS and btrfs as made by default).
const REFLINK_ALIGN: u64 = 4096;

/// The devices a copy works on, and the buffers it reads into.
pub struct CopyContext {
    pub source: Arc<dyn BlockDevice>,
    pub target: Arc<dyn BlockDevice>,
    pub geometry: Geometry,
    /// Page-aligned, reused buffers: `O_DIRECT` needs the alignment, and a
    /// fresh megabyte per operation costs more than copying it.
    pub buffers: Arc<BufferPool>,
    /// The source is written around livemirror (kernel tracking, compare
    /// passes): read it past any cache those writes do not keep coherent,
    /// or a block cached before a filesystem rewrote it on the disk would
    /// be copied stale. (An `O_DIRECT` source does this at no cost.)
    pub read_uncached: bool,
    /// Still worth trying a reflink: both sides are regular files, and no
    /// clone has been refused yet (another filesystem, or one without
    /// shared extents, refuses every one of them).
    pub reflink: AtomicBool,
}

impl CopyContext {
    /// Copies `chunks`. On failure nothing is assumed about the target range:
    /// the caller leaves it dirty.
    pub fn copy(&self, chunks: &Range<u64>) -> Result<CopyStats, IoFailure> {
        let (offset, len) = self.geometry.bytes(chunks);
        let end = offset + len;
        let mut stats = CopyStats::default();
        if self.cloned(offset, len) {
            stats.cloned = len;
            return Ok(stats);
        }
        let mut buf = self.buffers.take();
        for run in extents(&*self.source, offset..end) {
            let run = run.map_err(|e| e.failure(Side::Source))?;
            if run.status.reads_zero() {
                self.zero(run.offset, run.len, &mut stats)?;
                continue;
            }
            // An operation is at most one buffer long, except when widened to
            // whole clusters: then its data goes through in buffer-sized steps.
            let (mut pos, run_end) = (run.offset, run.end());
            while pos < run_end {
                let n = (run_end - pos).min(buf.len() as u64);
                let piece = &mut buf[..n as usize];
                let read = if self.read_uncached {
                    self.source.read_uncached(piece, pos)
                } else {
                    self.source.read_at(piece, pos)
                };
                read.map_err(|e| IoFailure::new(Side::Source, IoOperation::Read, pos, n, &e))?;
                self.write_data(piece, pos, &mut stats)?;
                pos += n;
            }
        }
        Ok(stats)
    }

    /// Shares `len` bytes at `offset` with the source by reflink, if the
    /// pair can. A refusal falls back to copying, and no clone is tried
    /// again (a filesystem that cannot refuses them all); a real I/O error
    /// shows itself, with its range, in the copy that follows.
    ///
    /// Writes racing the clone are safe as they are for a copy: the clone
    /// runs with both files locked, before or after a write, and the write
    /// marks its chunks dirty again either way.
    fn cloned(&self, offset: u64, len: u64) -> bool {
        let aligned = offset.is_multiple_of(REFLINK_ALIGN)
            && (len.is_multiple_of(REFLINK_ALIGN) || offset + len == self.source.len());
        if !aligned || !self.reflink.load(Relaxed) {
            return false;
        }
        match crate::device::clone_range(&*self.source, &*self.target, offset, len) {
            Ok(true) => true,
            Ok(false) | Err(_) => {
                self.reflink.store(false, Relaxed);
                false
            }
        }
    }

    /// Writes `buf` (read from `offset`): each chunk is checked for zeroes
    /// once, and neighbours of the same kind go to the target in one call,
    /// data as a write, zeroes as a zero-write (or nothing, see [`zero`]).
    ///
    /// [`zero`]: Self::zero
    fn write_data(&self, buf: &[u8], offset: u64, stats: &mut CopyStats) -> Result<(), IoFailure> {
        let g = self.geometry.granularity;
        // Where the chunk holding buffer position `p` ends, within the buffer.
        let chunk_end = |p: usize| {
            let abs = offset + p as u64;
            ((abs / g + 1) * g - offset).min(buf.len() as u64) as usize
        };
        let mut group: Option<(usize, bool)> = None;
        let mut start = 0usize;
        while start < buf.len() {
            let end = chunk_end(start);
            let zero = is_zero(&buf[start..end]);
            match group {
                Some((from, was_zero)) if was_zero != zero => {
                    self.put(&buf[from..start], offset + from as u64, was_zero, stats)?;
                    group = Some((start, zero));
                }
                Some(_) => {}
                None => group = Some((start, zero)),
            }
            start = end;
        }
        match group {
            Some((from, zero)) => self.put(&buf[from..], offset + from as u64, zero, stats),
            None => Ok(()),
        }
    }

    /// Puts one group of chunks on the target: data, or zeroes.
    fn put(
        &self,
        data: &[u8],
        at: u64,
        zero: bool,
        stats: &mut CopyStats,
    ) -> Result<(), IoFailure> {
        let len = data.len() as u64;
        if zero {
            return self.zero(at, len, stats);
        }
        self.target
            .write_at(data, at)
            .map_err(|e| self.target_failure(IoOperation::Write, at, len, &e))?;
        stats.data += len;
        Ok(())
    }

    /// Makes the target range read as zeroes, doing nothing if it already
    /// does.
    fn zero(&self, offset: u64, len: u64, stats: &mut CopyStats) -> Result<(), IoFailure> {
        if self.target_reads_zero(offset, len) {
            stats.skipped += len;
            return Ok(());
        }
        self.target
            .write_zeroes(offset, len, true)
            .map_err(|e| self.target_failure(IoOperation::WriteZeroes, offset, len, &e))?;
        stats.zeroed += len;
        Ok(())
    }

    /// A failed target request. An `EIO` may be one bad sector or a disk
    /// that is gone (an unplugged USB disk fails everything with it): a
    /// read of the target's first block tells them apart.
    fn target_failure(&self, op: IoOperation, offset: u64, len: u64, e: &io::Error) -> IoFailure {
        let failure = IoFailure::new(Side::Target, op, offset, len, e);
        #[cfg(unix)]
        if failure.errno == libc::EIO {
            let block = (self.target.logical_block_size().max(512) as u64).min(self.target.len());
            let mut probe = crate::buffer::AlignedBuf::new(block as usize);
            let lost = self.target.read_uncached(&mut probe, 0).is_err();
            return IoFailure { lost, ..failure };
        }
        failure
    }

    fn target_reads_zero(&self, offset: u64, len: u64) -> bool {
        // Unknown counts as "not zero": writing zeroes is always safe.
        extents(&*self.target, offset..offset + len)
            .all(|run| run.is_ok_and(|r| r.status.reads_zero()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::{Fault, FaultyDevice, MemoryDevice, Op};

    fn ctx(src: MemoryDevice, dst: Arc<dyn BlockDevice>, g: u64) -> CopyContext {
        let len = src.len();
        CopyContext {
            source: Arc::new(src),
            target: dst,
            geometry: Geometry { len, granularity: g },
            buffers: BufferPool::new(16 * 1024),
            read_uncached: false,
            reflink: AtomicBool::new(true),
        }
    }

    #[test]
    fn zero_chunks_become_holes_and_known_zeroes_are_skipped() {
        let mut data = vec![0u8; 64 * 1024];
        data[4096..8192].fill(9);
        let src = MemoryDevice::from_bytes(data.clone());
        let dst = Arc::new(MemoryDevice::new(64 * 1024));
        let c = ctx(src, dst.clone(), 4096);
        let stats = c.copy(&(0..16)).unwrap();
        assert_eq!(stats, CopyStats { data: 4096, zeroed: 0, skipped: 60 * 1024, cloned: 0 });
        assert_eq!(dst.contents(), data);
        assert_eq!(dst.allocated_bytes(), 4096);
    }

    #[test]
    fn stale_target_data_is_zeroed() {
        let src = MemoryDevice::new(16384);
        let dst = Arc::new(MemoryDevice::from_bytes(vec![5; 16384]));
        let stats = ctx(src, dst.clone(), 4096).copy(&(0..4)).unwrap();
        assert_eq!(stats.zeroed, 16384);
        assert_eq!(dst.contents(), vec![0; 16384]);
    }

    #[test]
    fn failures_name_side_operation_and_range() {
        let src = MemoryDevice::from_bytes(vec![1; 16384]);
        let dst = Arc::new(FaultyDevice::new(Arc::new(MemoryDevice::new(16384))));
        dst.inject(Fault::persistent(Op::Write, 8192..8193, libc::ENOSPC));
        let err = ctx(src, dst, 4096).copy(&(0..4)).unwrap_err();
        assert_eq!(
            (err.side, err.operation, err.errno),
            (Side::Target, IoOperation::Write, libc::ENOSPC)
        );
        assert_eq!((err.offset, err.len), (0, 16384));
    }

    #[test]
    fn operations_larger_than_a_buffer_go_through_in_steps() {
        let data: Vec<u8> = (0..64 * 1024u32).map(|i| (i / 4096) as u8).collect();
        let dst = Arc::new(MemoryDevice::new(64 * 1024));
        let mut c = ctx(MemoryDevice::from_bytes(data.clone()), dst.clone(), 4096);
        c.buffers = BufferPool::new(12 * 1024);
        let stats = c.copy(&(0..16)).unwrap();
        assert_eq!(dst.contents(), data);
        assert_eq!((stats.data, stats.skipped), (60 * 1024, 4096));
        assert_eq!(c.buffers.idle(), 1, "one buffer, returned");
    }
}
