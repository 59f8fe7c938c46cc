//! Block devices: the one interface the engine reads and writes through.
//!
//! Every backend (raw file or block device, qcow2 image, in-memory,
//! fault-injecting wrapper, an NBD client, and the live source itself) implements [`BlockDevice`]. The trait is
//! synchronous and positional: the mirror job runs each copy on a blocking
//! worker thread, so many copies are in flight at once without an async
//! runtime inside the backends (the same shape as crosvm's `disk` crate).

mod direct;
mod extents;
mod faulty;
mod file;
mod image_format;
mod memory;
pub mod nbd_client;
mod prefix;
mod qcow2;
mod sys;
#[cfg(not(target_os = "linux"))]
pub(crate) use sys::write_all_at;
#[cfg(target_os = "linux")]
mod writebehind;
#[cfg(target_os = "linux")]
pub(crate) use writebehind::WriteBehind;

use std::io;

pub use extents::{Extent, Extents, StatusError, extents, top_extents};
pub use faulty::{Fault, FaultyDevice, Op};
pub use file::{FileDevice, OpenOptions, create_image};
pub use image_format::ImageFormat;
pub use memory::MemoryDevice;
pub use nbd_client::{NbdDevice, NbdError, NbdUri};
pub use prefix::Prefix;
pub use qcow2::Qcow2Device;
#[cfg(windows)]
pub use sys::ioctl;
pub use sys::{DeviceId, disk_serial, mounts_on};

/// Makes `len` bytes at `offset` of `target` share the extents of the same
/// bytes of `source` (a reflink: `FICLONERANGE` on Linux): no reads, no
/// writes, no space, and a later write to either side copies only what it
/// changes, on that side. `Ok(false)` when the pair are not two regular
/// files, or on a platform without it; an error when the filesystem
/// refuses (another filesystem, no reflink support, a misaligned range).
pub fn clone_range(
    source: &dyn BlockDevice,
    target: &dyn BlockDevice,
    offset: u64,
    len: u64,
) -> io::Result<bool> {
    let (Some(src), Some(dst)) = (source.regular_file(), target.regular_file()) else {
        return Ok(false);
    };
    #[cfg(target_os = "linux")]
    {
        sys::clone_range(src, dst, offset, len).map(|()| true)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (src, dst, offset, len);
        Ok(false)
    }
}

/// What a range of a device holds, as reported by [`BlockDevice::block_status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocation {
    /// Allocated data: must be read to know what it holds.
    Data,
    /// Allocated, but known to read as zeroes.
    Zero,
    /// Not allocated: reads as zeroes, takes no space.
    Hole,
}

impl Allocation {
    /// True when the range is known to read as zeroes without reading it.
    pub fn reads_zero(self) -> bool {
        matches!(self, Allocation::Zero | Allocation::Hole)
    }
}

/// The [`BlockDevice`] methods a wrapper passes to the device it wraps as
/// they are, because it changes neither the storage nor its geometry:
/// `cluster_size`, `partial_cluster_write_fills_from_backing`,
/// `logical_block_size`, `id`, how the storage below caches writes
/// (`buffer_writes`) and where it is (`remote`). Used inside the wrapper's `impl
/// BlockDevice` as `forward_geometry!(field);` (fault injection, prefix
/// views, the tests' stalling device), so a method added to the trait is
/// forwarded in one place.
#[macro_export]
macro_rules! forward_geometry {
    ($inner:ident) => {
        fn cluster_size(&self) -> Option<u64> {
            self.$inner.cluster_size()
        }

        fn partial_cluster_write_fills_from_backing(&self) -> bool {
            self.$inner.partial_cluster_write_fills_from_backing()
        }

        fn logical_block_size(&self) -> u32 {
            self.$inner.logical_block_size()
        }

        fn buffer_writes(&self) {
            self.$inner.buffer_writes()
        }

        fn remote(&self) -> bool {
            self.$inner.remote()
        }

        fn cached_bytes(&self, offset: u64, len: u64) -> Option<u64> {
            self.$inner.cached_bytes(offset, len)
        }

        fn id(&self) -> $crate::device::DeviceId {
            self.$inner.id()
        }
    };
}

/// Positional, thread-safe block I/O.
///
/// Contracts shared by every implementation:
/// * `read_at` and `write_at` transfer the whole buffer or fail: never a
///   short read or write. Ranges past `len()` are an error (`EINVAL`).
/// * After `write_zeroes(.., may_unmap)` the range reads as zeroes; with
///   `may_unmap` the backend may free the space (punch a hole).
/// * `discard` is a hint: afterwards the range's content is unspecified
///   unless the backend documents otherwise.
/// * `block_status(offset, max_len)` returns the allocation at `offset` and
///   how many bytes from there (at least 1, at most `max_len`) share it.
pub trait BlockDevice: Send + Sync {
    /// Size in bytes; fixed for the device's lifetime.
    fn len(&self) -> u64;

    /// True for a zero-sized device.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fill `buf` from `offset`.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;

    /// Write all of `buf` at `offset`.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;

    /// Make every completed write durable.
    fn flush(&self) -> io::Result<()>;

    /// Write all of `buf` at `offset`, durable before this returns (NBD's
    /// FUA, "force unit access"): what a client's FUA write asks of the
    /// export, and of the target a write-blocking job writes it through
    /// to. The default writes, then flushes; a device that can make one
    /// write durable by itself does less.
    fn write_at_fua(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.write_at(buf, offset)?;
        self.flush()
    }

    /// Make `len` bytes at `offset` read as zeroes. The default writes zeroes.
    fn write_zeroes(&self, offset: u64, len: u64, _may_unmap: bool) -> io::Result<()> {
        write_zeroes_by_writing(self, offset, len)
    }

    /// Tell the device the range is no longer needed. The default does nothing.
    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        check_range(self.len(), offset, len)
    }

    /// Allocation state at `offset` and the length of the run that shares it.
    /// The default reports everything as data.
    fn block_status(&self, offset: u64, max_len: u64) -> io::Result<(Allocation, u64)> {
        check_range(self.len(), offset, max_len.max(1))?;
        Ok((Allocation::Data, max_len.min(self.len() - offset)))
    }

    /// Fill `buf` from `offset` as the medium holds it now, past any cache
    /// that writes by others (a mounted filesystem's) do not keep coherent.
    /// Compare passes read the source this way. The default is `read_at`.
    fn read_uncached(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.read_at(buf, offset)
    }

    /// How many bytes of `offset..offset + len` the host's page cache
    /// holds, where the device can tell (a local file or disk on Linux
    /// 6.5+, `cachestat`): a reader through the cache then knows whether it
    /// will copy memory or wait for the disk. `None` when it cannot tell.
    fn cached_bytes(&self, offset: u64, len: u64) -> Option<u64> {
        let _ = (offset, len);
        None
    }

    /// True when aligned reads bypass every host cache (`O_DIRECT`), so a
    /// write made on the medium around this device (a mounted filesystem's)
    /// is always read as it is: what kernel tracking's copies need, since
    /// dropping a cached range before a read races the kernel's readahead.
    fn reads_direct(&self) -> bool {
        false
    }

    /// The regular file this device reads and writes at the same offsets,
    /// if it is one: two files of a filesystem that shares extents (XFS,
    /// btrfs) are then copied by reflink ([`clone_range`]). `None` for
    /// disks and for layered, remote or fault-injecting devices.
    fn regular_file(&self) -> Option<&std::fs::File> {
        None
    }

    /// True for an overlay over a backing layer (a qcow2 image with a
    /// backing file): sync `top` then copies only what this layer holds.
    fn has_backing(&self) -> bool {
        false
    }

    /// Whether `offset` is allocated in this layer rather than read from
    /// the backing one, and how many bytes from there share that. The
    /// default treats everything but holes as this layer's.
    fn top_allocation(&self, offset: u64, max_len: u64) -> io::Result<(bool, u64)> {
        let (alloc, run) = self.block_status(offset, max_len)?;
        Ok((alloc != Allocation::Hole, run))
    }

    /// The allocation unit, if the format has one (qcow2 clusters, modelled
    /// clusters in tests). Raw files and disks have none.
    fn cluster_size(&self) -> Option<u64> {
        None
    }

    /// True when a write covering part of an unallocated cluster fills the
    /// rest of it from somewhere other than this device's own data (a backing
    /// image): the mirror must then copy whole clusters the first time.
    fn partial_cluster_write_fills_from_backing(&self) -> bool {
        false
    }

    /// The smallest I/O unit the device accepts (512 for most disks).
    fn logical_block_size(&self) -> u32 {
        512
    }

    /// From now on, write through the page cache only (no `O_DIRECT`, no
    /// write-behind). A job switched to write-blocking mode asks this of
    /// its target when its cache was picked for background copies: every
    /// writer then waits for its target write, and a page-cache write is
    /// the one that returns soonest (README, Performance: Live). A no-op
    /// where writes are already buffered or the device has no page cache.
    fn buffer_writes(&self) {}

    /// True when requests travel over a network (an NBD export): their time
    /// is mostly waiting for the other end, not this machine's CPUs, so
    /// limits meant to leave CPUs to local writers do not apply.
    fn remote(&self) -> bool {
        false
    }

    /// What the device is, for refusing to mirror a device into itself.
    fn id(&self) -> DeviceId;

    /// A short human-readable name (a path, "memory #3").
    fn describe(&self) -> String;
}

/// Fails with `EINVAL` unless `offset..offset+len` lies within a device of
/// `dev_len` bytes. Shared by every backend so range errors read the same.
pub fn check_range(dev_len: u64, offset: u64, len: u64) -> io::Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= dev_len => Ok(()),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("range {offset}+{len} is past the end of a {dev_len}-byte device"),
        )),
    }
}

/// The fallback for devices that cannot zero a range natively.
pub fn write_zeroes_by_writing<D: BlockDevice + ?Sized>(
    dev: &D,
    offset: u64,
    len: u64,
) -> io::Result<()> {
    check_range(dev.len(), offset, len)?;
    const STEP: u64 = 1 << 20;
    let zeroes = vec![0u8; STEP.min(len) as usize];
    let mut pos = offset;
    let end = offset + len;
    while pos < end {
        let n = (end - pos).min(STEP) as usize;
        dev.write_at(&zeroes[..n], pos)?;
        pos += n as u64;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod conformance;
