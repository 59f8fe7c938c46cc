//! An in-memory device for tests and the demo.
//!
//! Besides plain bytes it models allocation, so sparse handling can be tested
//! without a filesystem: the device is split into allocation units (the
//! cluster size if one is given, else 4 KiB); a unit is allocated by a write
//! and freed by `write_zeroes(may_unmap)` or `discard` when fully covered.
//!
//! With [`MemoryDevice::with_backing`] it models a qcow2 image over a backing
//! file: an unallocated cluster reads from the backing bytes, and a write to
//! part of one first fills the whole cluster from the backing, which is what
//! makes whole-cluster copies necessary in the mirror.

use std::io;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Allocation, BlockDevice, DeviceId, check_range};

const DEFAULT_UNIT: u64 = 4096;

/// A thread-safe device held in memory.
pub struct MemoryDevice {
    id: u64,
    unit: u64,
    cluster_size: Option<u64>,
    state: RwLock<State>,
}

struct State {
    data: Vec<u8>,
    allocated: Vec<bool>,
    backing: Option<Vec<u8>>,
}

fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl MemoryDevice {
    /// A device of `len` bytes, all unallocated (reads as zeroes).
    pub fn new(len: u64) -> Self {
        Self::build(len, DEFAULT_UNIT, None, None)
    }

    /// A device holding `data`, all of it allocated.
    pub fn from_bytes(data: Vec<u8>) -> Self {
        let dev = Self::build(data.len() as u64, DEFAULT_UNIT, None, None);
        {
            let mut st = dev.state.write().expect("fresh lock");
            st.data = data;
            st.allocated.fill(true);
        }
        dev
    }

    /// A device with `cluster_size` clusters over `backing` (same length):
    /// unallocated clusters read from `backing`, and a partial write to an
    /// unallocated cluster copies the rest of it from there first.
    pub fn with_backing(backing: Vec<u8>, cluster_size: u64) -> Self {
        let len = backing.len() as u64;
        Self::build(len, cluster_size, Some(cluster_size), Some(backing))
    }

    /// A device of `len` bytes reporting `cluster_size` clusters, no backing.
    pub fn with_clusters(len: u64, cluster_size: u64) -> Self {
        Self::build(len, cluster_size, Some(cluster_size), None)
    }

    fn build(len: u64, unit: u64, cluster_size: Option<u64>, backing: Option<Vec<u8>>) -> Self {
        assert!(unit.is_power_of_two(), "allocation unit must be a power of two");
        let units = len.div_ceil(unit) as usize;
        let data = match &backing {
            Some(b) => b.clone(),
            None => vec![0; len as usize],
        };
        MemoryDevice {
            id: next_id(),
            unit,
            cluster_size,
            state: RwLock::new(State { data, allocated: vec![false; units], backing }),
        }
    }

    /// A copy of the whole content, for comparisons in tests.
    pub fn contents(&self) -> Vec<u8> {
        self.read_state().data.clone()
    }

    /// Bytes held by allocated units: the analogue of a file's disk usage.
    pub fn allocated_bytes(&self) -> u64 {
        let st = self.read_state();
        st.allocated.iter().filter(|a| **a).count() as u64 * self.unit
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // A panic while holding the lock can only come from a bug in this
        // file; the bytes are still the best answer we have.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether this device's own data holds `offset` (not a hole, not the
    /// backing's), and how far from there the same holds, up to `max_len`.
    fn allocation_run(&self, st: &State, offset: u64, max_len: u64) -> io::Result<(bool, u64)> {
        let dev_len = st.data.len() as u64;
        check_range(dev_len, offset, 1)?;
        let limit = (offset + max_len.max(1)).min(dev_len);
        let mut i = (offset / self.unit) as usize;
        let state = st.allocated[i];
        let mut end = ((i as u64 + 1) * self.unit).min(limit);
        while end < limit && st.allocated[i + 1] == state {
            i += 1;
            end = ((i as u64 + 1) * self.unit).min(limit);
        }
        Ok((state, end - offset))
    }

    fn unit_range(&self, i: usize, len: u64) -> std::ops::Range<usize> {
        let start = i as u64 * self.unit;
        start as usize..(start + self.unit).min(len) as usize
    }

    /// Unallocate the units fully inside the range and make it read as zeroes
    /// (or as the backing, for unallocated clusters over a backing image).
    fn unmap(&self, offset: u64, len: u64) {
        let dev_len = self.len();
        let mut st = self.write_state();
        let first_full = offset.div_ceil(self.unit) as usize;
        let end_full = ((offset + len) / self.unit) as usize;
        for i in first_full..end_full.max(first_full) {
            let r = self.unit_range(i, dev_len);
            st.allocated[i] = false;
            let fill = st.backing.as_ref().map(|b| b[r.clone()].to_vec());
            match fill {
                Some(b) => st.data[r].copy_from_slice(&b),
                None => st.data[r].fill(0),
            }
        }
    }
}

impl BlockDevice for MemoryDevice {
    fn len(&self) -> u64 {
        self.read_state().data.len() as u64
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let st = self.read_state();
        check_range(st.data.len() as u64, offset, buf.len() as u64)?;
        let o = offset as usize;
        buf.copy_from_slice(&st.data[o..o + buf.len()]);
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let dev_len = self.len();
        check_range(dev_len, offset, buf.len() as u64)?;
        if buf.is_empty() {
            return Ok(());
        }
        let mut st = self.write_state();
        let first = (offset / self.unit) as usize;
        let last = ((offset + buf.len() as u64 - 1) / self.unit) as usize;
        for i in first..=last {
            // Data of an unallocated unit already holds its backing bytes
            // (or zeroes), so allocating it is just flipping the flag: a
            // partial write keeps the rest of the unit as the backing had it.
            st.allocated[i] = true;
        }
        let o = offset as usize;
        st.data[o..o + buf.len()].copy_from_slice(buf);
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        Ok(())
    }

    fn write_zeroes(&self, offset: u64, len: u64, may_unmap: bool) -> io::Result<()> {
        let dev_len = self.len();
        check_range(dev_len, offset, len)?;
        if len == 0 {
            return Ok(());
        }
        let mut st = self.write_state();
        let has_backing = st.backing.is_some();
        if may_unmap && !has_backing {
            drop(st);
            self.unmap(offset, len);
            st = self.write_state();
        }
        // What is left: partial units, everything when unmapping was not
        // allowed, and everything over a backing image (where a hole would
        // expose the backing). An unallocated unit without backing already
        // reads as zeroes and stays unallocated.
        let first = (offset / self.unit) as usize;
        let last = ((offset + len - 1) / self.unit) as usize;
        for i in first..=last {
            if !st.allocated[i] && !has_backing {
                continue;
            }
            st.allocated[i] = true;
            let r = self.unit_range(i, dev_len);
            let start = r.start.max(offset as usize);
            let end = r.end.min((offset + len) as usize);
            st.data[start..end].fill(0);
        }
        Ok(())
    }

    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        check_range(self.len(), offset, len)?;
        self.unmap(offset, len);
        Ok(())
    }

    fn block_status(&self, offset: u64, max_len: u64) -> io::Result<(Allocation, u64)> {
        let st = self.read_state();
        let (allocated, run) = self.allocation_run(&st, offset, max_len)?;
        let alloc = match (allocated, st.backing.is_some()) {
            (true, _) => Allocation::Data,
            // Over a backing image a hole reads as the backing, not as zeroes.
            (false, true) => Allocation::Data,
            (false, false) => Allocation::Hole,
        };
        Ok((alloc, run))
    }

    fn cluster_size(&self) -> Option<u64> {
        self.cluster_size
    }

    fn has_backing(&self) -> bool {
        self.read_state().backing.is_some()
    }

    fn top_allocation(&self, offset: u64, max_len: u64) -> io::Result<(bool, u64)> {
        self.allocation_run(&self.read_state(), offset, max_len)
    }

    fn partial_cluster_write_fills_from_backing(&self) -> bool {
        self.read_state().backing.is_some()
    }

    fn id(&self) -> DeviceId {
        DeviceId::Memory(self.id)
    }

    fn describe(&self) -> String {
        format!("memory device #{}", self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_write_over_backing_keeps_backing_in_rest_of_cluster() {
        let backing = vec![0xEE; 128 * 1024];
        let dev = MemoryDevice::with_backing(backing, 64 * 1024);
        dev.write_at(&[1; 4096], 8192).unwrap();
        let mut buf = vec![0; 64 * 1024];
        dev.read_at(&mut buf, 0).unwrap();
        assert!(buf[..8192].iter().all(|b| *b == 0xEE));
        assert!(buf[8192..12288].iter().all(|b| *b == 1));
        assert!(buf[12288..].iter().all(|b| *b == 0xEE));
        assert_eq!(dev.allocated_bytes(), 64 * 1024);
    }

    #[test]
    fn unmapping_zeroes_frees_whole_units_only() {
        let dev = MemoryDevice::from_bytes(vec![7; 16384]);
        dev.write_zeroes(1000, 10000, true).unwrap();
        assert_eq!(dev.allocated_bytes(), 16384 - 4096);
        let data = dev.contents();
        assert!(data[1000..11000].iter().all(|b| *b == 0));
        assert!(data[..1000].iter().all(|b| *b == 7));
        assert!(data[11000..].iter().all(|b| *b == 7));
        assert_eq!(dev.block_status(4096, 1 << 20).unwrap(), (Allocation::Hole, 4096));
    }
}
