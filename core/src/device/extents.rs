//! Walking a device's allocation run by run: the one loop over
//! [`BlockDevice::block_status`] (and [`BlockDevice::top_allocation`]) that
//! the copy, the size check, the NBD server, the flash and the tools share.

use std::io;
use std::ops::Range;

use super::{Allocation, BlockDevice};
use crate::error::{IoFailure, IoOperation, Side};

/// `len` bytes at `offset` that all have the same status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent<T> {
    pub offset: u64,
    pub len: u64,
    pub status: T,
}

impl<T> Extent<T> {
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// A status query that failed: where, and why.
#[derive(Debug)]
pub struct StatusError {
    /// The range asked about (from the failed position to the range's end).
    pub offset: u64,
    pub len: u64,
    pub error: io::Error,
}

impl StatusError {
    /// The failure, as the job and the checks report it.
    pub fn failure(&self, side: Side) -> IoFailure {
        IoFailure::new(side, IoOperation::BlockStatus, self.offset, self.len, &self.error)
    }
}

impl From<StatusError> for io::Error {
    fn from(e: StatusError) -> io::Error {
        e.error
    }
}

type Query<T> = fn(&dyn BlockDevice, u64, u64) -> io::Result<(T, u64)>;

/// The runs of one status query over a range, in order. Each `next` asks
/// the device once; a run is never empty (a device answering 0 bytes is
/// taken to mean 1) nor longer than what is left of the range. After an
/// error the walk ends.
pub struct Extents<'a, T> {
    dev: &'a dyn BlockDevice,
    query: Query<T>,
    pos: u64,
    end: u64,
}

/// The block status of `range`, run by run (see [`Extents`]).
pub fn extents(dev: &dyn BlockDevice, range: Range<u64>) -> Extents<'_, Allocation> {
    Extents { dev, query: |d, at, len| d.block_status(at, len), pos: range.start, end: range.end }
}

/// Whether each run of `range` is allocated in the device's top layer
/// ([`BlockDevice::top_allocation`]), run by run.
pub fn top_extents(dev: &dyn BlockDevice, range: Range<u64>) -> Extents<'_, bool> {
    Extents { dev, query: |d, at, len| d.top_allocation(at, len), pos: range.start, end: range.end }
}

impl<T> Iterator for Extents<'_, T> {
    type Item = Result<Extent<T>, StatusError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.end {
            return None;
        }
        let (offset, left) = (self.pos, self.end - self.pos);
        match (self.query)(self.dev, offset, left) {
            Ok((status, run)) => {
                let len = run.clamp(1, left);
                self.pos += len;
                Some(Ok(Extent { offset, len, status }))
            }
            Err(error) => {
                self.pos = self.end;
                Some(Err(StatusError { offset, len: left, error }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::MemoryDevice;

    #[test]
    fn walks_the_runs_of_a_range_in_order() {
        let dev = MemoryDevice::new(1 << 20);
        dev.write_at(&[1; 4096], 8192).unwrap();
        let runs: Vec<_> = extents(&dev, 4096..20480).map(Result::unwrap).collect();
        assert_eq!(runs.first().map(|e| e.offset), Some(4096));
        assert_eq!(runs.last().map(Extent::end), Some(20480));
        for pair in runs.windows(2) {
            assert_eq!(pair[0].end(), pair[1].offset, "runs are contiguous: {runs:?}");
        }
        let data: u64 = runs.iter().filter(|e| e.status == Allocation::Data).map(|e| e.len).sum();
        assert_eq!(data, 4096);
        assert!(extents(&dev, 5..5).next().is_none());
    }

    #[test]
    fn an_error_names_where_and_ends_the_walk() {
        let dev = MemoryDevice::new(1 << 20);
        // Past the device's end: block status refuses (EINVAL).
        let mut walk = extents(&dev, 1 << 20..(1 << 20) + 4096);
        let e = walk.next().unwrap().unwrap_err();
        assert_eq!((e.offset, e.len), (1 << 20, 4096));
        assert_eq!(e.error.kind(), io::ErrorKind::InvalidInput);
        let failure = e.failure(Side::Source);
        assert_eq!((failure.operation, failure.offset), (IoOperation::BlockStatus, 1 << 20));
        assert!(walk.next().is_none());
    }
}
