//! A fault-injecting wrapper: fails chosen operations in chosen ranges with a
//! chosen errno, once, N times, or until cleared. Used by the error-policy
//! tests and by the demo's "bad sector".

use std::io;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use super::{Allocation, BlockDevice};

/// Which operations a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Read,
    /// Writes, zero-writes and discards: everything that changes data.
    Write,
    Flush,
}

/// One injected fault.
#[derive(Debug, Clone)]
pub struct Fault {
    pub op: Op,
    /// Byte range; an operation fails if it overlaps it. Ignored for flush.
    pub range: Range<u64>,
    pub errno: i32,
    /// How many more times it fires; `None` until cleared.
    pub remaining: Option<u32>,
}

impl Fault {
    /// A fault that fires until [`FaultyDevice::clear`].
    pub fn persistent(op: Op, range: Range<u64>, errno: i32) -> Self {
        Fault { op, range, errno, remaining: None }
    }

    /// A fault that fires `times` times, then disappears.
    pub fn times(op: Op, range: Range<u64>, errno: i32, times: u32) -> Self {
        Fault { op, range, errno, remaining: Some(times) }
    }
}

/// Wraps a device and fails operations that match an injected [`Fault`].
pub struct FaultyDevice {
    inner: Arc<dyn BlockDevice>,
    faults: Mutex<Vec<Fault>>,
    fired: std::sync::atomic::AtomicU64,
}

impl FaultyDevice {
    pub fn new(inner: Arc<dyn BlockDevice>) -> Self {
        FaultyDevice { inner, faults: Mutex::new(Vec::new()), fired: Default::default() }
    }

    /// Add a fault; it applies to operations that start after this call.
    pub fn inject(&self, fault: Fault) {
        self.lock().push(fault);
    }

    /// Remove every fault: the device behaves like the one it wraps.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// How many operations have failed because of an injected fault.
    pub fn fired(&self) -> u64 {
        self.fired.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Fault>> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check(&self, op: Op, offset: u64, len: u64) -> io::Result<()> {
        let mut faults = self.lock();
        let end = offset + len.max(1);
        let hit = faults.iter_mut().position(|f| {
            f.op == op && (op == Op::Flush || (f.range.start < end && offset < f.range.end))
        });
        let Some(i) = hit else { return Ok(()) };
        let errno = faults[i].errno;
        if let Some(n) = &mut faults[i].remaining {
            *n -= 1;
            if *n == 0 {
                faults.remove(i);
            }
        }
        self.fired.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Err(io::Error::from_raw_os_error(errno))
    }
}

impl BlockDevice for FaultyDevice {
    fn len(&self) -> u64 {
        self.inner.len()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.check(Op::Read, offset, buf.len() as u64)?;
        self.inner.read_at(buf, offset)
    }

    fn read_uncached(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.check(Op::Read, offset, buf.len() as u64)?;
        self.inner.read_uncached(buf, offset)
    }

    fn reads_direct(&self) -> bool {
        self.inner.reads_direct()
    }

    fn has_backing(&self) -> bool {
        self.inner.has_backing()
    }

    fn top_allocation(&self, offset: u64, max_len: u64) -> io::Result<(bool, u64)> {
        self.inner.top_allocation(offset, max_len)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.check(Op::Write, offset, buf.len() as u64)?;
        self.inner.write_at(buf, offset)
    }

    fn flush(&self) -> io::Result<()> {
        self.check(Op::Flush, 0, 0)?;
        self.inner.flush()
    }

    fn write_zeroes(&self, offset: u64, len: u64, may_unmap: bool) -> io::Result<()> {
        self.check(Op::Write, offset, len)?;
        self.inner.write_zeroes(offset, len, may_unmap)
    }

    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        self.check(Op::Write, offset, len)?;
        self.inner.discard(offset, len)
    }

    fn block_status(&self, offset: u64, max_len: u64) -> io::Result<(Allocation, u64)> {
        self.inner.block_status(offset, max_len)
    }

    crate::forward_geometry!(inner);

    fn describe(&self) -> String {
        format!("{} (with injected faults)", self.inner.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::MemoryDevice;

    #[test]
    fn faults_fire_in_range_the_given_number_of_times() {
        let dev = FaultyDevice::new(Arc::new(MemoryDevice::new(8192)));
        dev.inject(Fault::times(Op::Write, 4096..4100, libc::ENOSPC, 2));
        let mut buf = [0u8; 512];
        assert!(dev.write_at(&buf, 0).is_ok(), "outside the range");
        assert!(dev.read_at(&mut buf, 4096).is_ok(), "reads are not faulted");
        for _ in 0..2 {
            let e = dev.write_at(&buf, 3800).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        }
        assert!(dev.write_at(&buf, 3800).is_ok(), "fault used up");
        assert_eq!(dev.fired(), 2);
    }

    #[test]
    fn persistent_faults_fire_until_cleared() {
        let dev = FaultyDevice::new(Arc::new(MemoryDevice::new(8192)));
        dev.inject(Fault::persistent(Op::Read, 0..8192, libc::EIO));
        let mut buf = [0u8; 512];
        for _ in 0..5 {
            assert_eq!(dev.read_at(&mut buf, 0).unwrap_err().raw_os_error(), Some(libc::EIO));
        }
        dev.clear();
        assert!(dev.read_at(&mut buf, 0).is_ok());
    }
}
