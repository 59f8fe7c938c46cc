//! A view of a device's first bytes: how a job mirrors between devices of
//! different sizes without the engine knowing. A larger target is seen
//! through a view of the source's length (so a pivot keeps serving the size
//! clients negotiated), and the source of a smaller target through a view of
//! what fits.

use std::io;
use std::sync::Arc;

use super::{Allocation, BlockDevice, check_range};

/// The first `len` bytes of another device.
pub struct Prefix {
    inner: Arc<dyn BlockDevice>,
    len: u64,
}

impl Prefix {
    /// A view of `inner`'s first `len` bytes (at most all of it).
    pub fn new(inner: Arc<dyn BlockDevice>, len: u64) -> Self {
        let len = len.min(inner.len());
        Prefix { inner, len }
    }
}

impl BlockDevice for Prefix {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        check_range(self.len, offset, buf.len() as u64)?;
        self.inner.read_at(buf, offset)
    }

    fn read_uncached(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        check_range(self.len, offset, buf.len() as u64)?;
        self.inner.read_uncached(buf, offset)
    }

    fn reads_direct(&self) -> bool {
        self.inner.reads_direct()
    }

    /// The same offsets: a prefix of a file is that file's first bytes.
    fn regular_file(&self) -> Option<&std::fs::File> {
        self.inner.regular_file()
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        check_range(self.len, offset, buf.len() as u64)?;
        self.inner.write_at(buf, offset)
    }

    fn flush(&self) -> io::Result<()> {
        self.inner.flush()
    }

    fn write_zeroes(&self, offset: u64, len: u64, may_unmap: bool) -> io::Result<()> {
        check_range(self.len, offset, len)?;
        self.inner.write_zeroes(offset, len, may_unmap)
    }

    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        check_range(self.len, offset, len)?;
        self.inner.discard(offset, len)
    }

    fn block_status(&self, offset: u64, max_len: u64) -> io::Result<(Allocation, u64)> {
        check_range(self.len, offset, max_len.max(1))?;
        self.inner.block_status(offset, max_len.min(self.len - offset))
    }

    // The same storage and geometry: a view never makes a device into
    // another one.
    crate::forward_geometry!(inner);

    fn describe(&self) -> String {
        self.inner.describe()
    }
}
