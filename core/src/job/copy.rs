//! One copy operation: a run of chunks from source to target, run on a
//! blocking worker thread.
//!
//! Zeroes are never copied as data: runs the source reports as holes or
//! zeroes, and chunks that read as all-zero, become zero-writes (holes on a
//! sparse target), and are skipped altogether where the target already reads
//! as zero. So a sparse source gives an equally sparse target.

use std::ops::Range;
use std::sync::Arc;

use crate::device::BlockDevice;
use crate::error::{IoFailure, IoOperation, Side};

use super::tracker::Geometry;

/// What one operation did, in bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CopyStats {
    pub data: u64,
    pub zeroed: u64,
    pub skipped: u64,
}

/// The devices a copy works on.
pub struct CopyContext {
    pub source: Arc<dyn BlockDevice>,
    pub target: Arc<dyn BlockDevice>,
    pub geometry: Geometry,
}

impl CopyContext {
    /// Copies `chunks`. On failure nothing is assumed about the target range:
    /// the caller leaves it dirty.
    pub fn copy(&self, chunks: &Range<u64>) -> Result<CopyStats, IoFailure> {
        let (offset, len) = self.geometry.bytes(chunks);
        let end = offset + len;
        let mut stats = CopyStats::default();
        let mut buf = Vec::new();
        let mut pos = offset;
        while pos < end {
            let (alloc, run) = self.source.block_status(pos, end - pos).map_err(|e| {
                IoFailure::new(Side::Source, IoOperation::BlockStatus, pos, end - pos, &e)
            })?;
            if alloc.reads_zero() {
                self.zero(pos, run, &mut stats)?;
            } else {
                buf.resize(run as usize, 0);
                self.source
                    .read_at(&mut buf, pos)
                    .map_err(|e| IoFailure::new(Side::Source, IoOperation::Read, pos, run, &e))?;
                self.write_data(&buf, pos, &mut stats)?;
            }
            pos += run;
        }
        Ok(stats)
    }

    /// Writes `buf` (read from `offset`), turning all-zero chunks into zero
    /// writes and merging neighbours of the same kind into one call.
    fn write_data(&self, buf: &[u8], offset: u64, stats: &mut CopyStats) -> Result<(), IoFailure> {
        let g = self.geometry.granularity;
        let mut start = 0usize;
        while start < buf.len() {
            // Pieces end on chunk boundaries of the device.
            let piece_end = |p: usize| {
                let abs = offset + p as u64;
                ((abs / g + 1) * g - offset).min(buf.len() as u64) as usize
            };
            let zero = is_zero(&buf[start..piece_end(start)]);
            let mut end = piece_end(start);
            while end < buf.len() && is_zero(&buf[end..piece_end(end)]) == zero {
                end = piece_end(end);
            }
            let at = offset + start as u64;
            if zero {
                self.zero(at, (end - start) as u64, stats)?;
            } else {
                self.target.write_at(&buf[start..end], at).map_err(|e| {
                    IoFailure::new(Side::Target, IoOperation::Write, at, (end - start) as u64, &e)
                })?;
                stats.data += (end - start) as u64;
            }
            start = end;
        }
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
            .map_err(|e| IoFailure::new(Side::Target, IoOperation::WriteZeroes, offset, len, &e))?;
        stats.zeroed += len;
        Ok(())
    }

    fn target_reads_zero(&self, offset: u64, len: u64) -> bool {
        let end = offset + len;
        let mut pos = offset;
        while pos < end {
            match self.target.block_status(pos, end - pos) {
                Ok((alloc, run)) if alloc.reads_zero() => pos += run,
                // Unknown counts as "not zero": writing zeroes is always safe.
                _ => return false,
            }
        }
        true
    }
}

/// True if every byte is zero; compares 16 bytes at a time.
pub fn is_zero(buf: &[u8]) -> bool {
    // SAFETY: u128 has no invalid bit patterns; align_to only reinterprets
    // the aligned middle of the slice.
    let (head, body, tail) = unsafe { buf.align_to::<u128>() };
    head.iter().all(|b| *b == 0) && body.iter().all(|w| *w == 0) && tail.iter().all(|b| *b == 0)
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
        assert_eq!(stats, CopyStats { data: 4096, zeroed: 0, skipped: 60 * 1024 });
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
    fn is_zero_checks_every_byte() {
        let mut b = vec![0u8; 1000];
        assert!(is_zero(&b[3..]));
        b[999] = 1;
        assert!(!is_zero(&b[3..]));
        assert!(is_zero(&[]));
    }
}
