//! Raw image files and whole disks, partitions or volumes.
//!
//! Host-independent: positional I/O, native zeroing (with a plain-write
//! fallback when the host says no), discard and allocation queries are the
//! host calls in [`sys`](super::sys).
//!
//! With [`OpenOptions::direct`], I/O that meets the device's alignment
//! bypasses the page cache (see [`direct`](super::direct)); the rest, and
//! every device that refuses unbuffered I/O, stays buffered. With
//! [`OpenOptions::write_behind`] writes stay buffered but are written back
//! and dropped from the cache right behind the writer (Linux; see
//! [`writebehind`](super::writebehind)).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::direct::Direct;
use super::sys;
#[cfg(target_os = "linux")]
use super::writebehind::WriteBehind;
use super::{Allocation, BlockDevice, DeviceId, check_range, write_zeroes_by_writing};
use crate::error::Error;

/// How to open a [`FileDevice`].
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenOptions {
    write: bool,
    direct: bool,
    write_behind: bool,
}

impl OpenOptions {
    /// Read-only, the safe default: nothing is written unless asked.
    pub fn new() -> Self {
        Self::default()
    }

    /// Open for writing too.
    pub fn write(mut self, write: bool) -> Self {
        self.write = write;
        self
    }

    /// True when these options open for writing.
    pub fn writes(&self) -> bool {
        self.write
    }

    /// True when these options ask for [`direct`](Self::direct) I/O.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// Bypass the page cache (`O_DIRECT`) for aligned I/O when the device
    /// allows it; silently buffered where it does not (tmpfs, some network
    /// filesystems). A clone then neither evicts the host's useful cache nor
    /// pays for page-cache memory, and the final flush has little to do.
    pub fn direct(mut self, direct: bool) -> Self {
        self.direct = direct;
        self
    }

    /// Write through the page cache, but start writeback of each write at
    /// once and drop it from the cache once it is on disk, a bounded window
    /// behind (Linux; plain buffered elsewhere): the kernel still merges
    /// writes into large requests, yet the cache never holds more than the
    /// window and the final flush has little left to do. Ignored with
    /// [`direct`](Self::direct).
    pub fn write_behind(mut self, write_behind: bool) -> Self {
        self.write_behind = write_behind;
        self
    }

    /// Open `path` with these options.
    pub fn open(self, path: impl AsRef<Path>) -> Result<FileDevice, Error> {
        FileDevice::open_with(path.as_ref(), self)
    }

    /// Create a new sparse image file of `len` bytes at `path` and open it
    /// with these options (for writing, whatever they say). Refuses to touch
    /// a file that already exists.
    pub fn create(self, path: impl AsRef<Path>, len: u64) -> Result<FileDevice, Error> {
        let path = path.as_ref();
        let ctx = |source: io::Error| Error::Open { path: path.to_owned(), source };
        let file =
            std::fs::OpenOptions::new().write(true).create_new(true).open(path).map_err(ctx)?;
        sys::make_sparse(&file).map_err(ctx)?;
        file.set_len(len).map_err(ctx)?;
        drop(file);
        self.write(true).open(path)
    }
}

/// A raw image file or a block device.
pub struct FileDevice {
    file: File,
    path: PathBuf,
    len: u64,
    is_block: bool,
    logical_block_size: u32,
    id: DeviceId,
    /// A second, unbuffered handle, when asked for and allowed.
    direct: Option<Direct>,
    /// Write-behind of buffered writes, when asked for.
    #[cfg(target_os = "linux")]
    write_behind: Option<WriteBehind>,
    /// Set by [`buffer_writes`](BlockDevice::buffer_writes): writes no longer
    /// use the direct handle or write-behind (reads still go direct).
    buffered_writes: AtomicBool,
}

impl FileDevice {
    fn open_with(path: &Path, opts: OpenOptions) -> Result<Self, Error> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(opts.write)
            .open(path)
            .map_err(|source| Error::Open { path: path.to_owned(), source })?;
        let mut dev = Self::from_file(file, path)?;
        if opts.direct {
            dev.direct = Direct::open(path, opts.write, dev.logical_block_size);
        }
        #[cfg(target_os = "linux")]
        if opts.write_behind && opts.write && dev.direct.is_none() {
            dev.write_behind = Some(WriteBehind::new());
        }
        Ok(dev)
    }

    /// Wraps a file or block device that is already open, e.g. a descriptor
    /// handed over by a privileged helper (udisks2's `OpenDevice`) for a disk
    /// this process may not open itself. `path` is what errors and
    /// [`describe`](BlockDevice::describe) name; whether it can be written
    /// is decided by how `file` was opened.
    pub fn from_file(file: File, path: impl Into<PathBuf>) -> Result<Self, Error> {
        let path = path.into();
        let ctx = |source: io::Error| Error::Open { path: path.clone(), source };
        let sys::Probe { is_block, len, logical_block_size, id } =
            sys::probe(&file, &path).map_err(ctx)?;
        Ok(FileDevice {
            file,
            path,
            len,
            is_block,
            logical_block_size,
            id,
            direct: None,
            #[cfg(target_os = "linux")]
            write_behind: None,
            buffered_writes: AtomicBool::new(false),
        })
    }

    /// Adds `file`, the same device opened again with `O_DIRECT` (by a
    /// privileged helper, as [`from_file`](Self::from_file)'s), as its
    /// unbuffered handle: what [`OpenOptions::direct`] gives a device this
    /// process opens itself. Stays buffered when the device cannot do
    /// direct I/O.
    #[cfg(target_os = "linux")]
    pub fn with_direct_handle(mut self, file: File) -> Self {
        self.direct = Direct::of_file(file, self.logical_block_size);
        self
    }

    /// The path this device was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when aligned I/O bypasses the page cache.
    pub fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// True for a disk, partition or volume; false for a regular file.
    pub fn is_block_device(&self) -> bool {
        self.is_block
    }
}

impl BlockDevice for FileDevice {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        check_range(self.len, offset, buf.len() as u64)?;
        match &self.direct {
            Some(d) => d.read_exact_at(&self.file, buf, offset),
            None => sys::read_exact_at(&self.file, buf, offset),
        }
    }

    fn reads_direct(&self) -> bool {
        self.direct.is_some()
    }

    fn cached_bytes(&self, offset: u64, len: u64) -> Option<u64> {
        sys::cached_bytes(&self.file, offset, len)
            .inspect_err(|e| tracing::debug!(error = %e, "cannot tell what the page cache holds"))
            .ok()
    }

    fn regular_file(&self) -> Option<&std::fs::File> {
        (!self.is_block).then_some(&self.file)
    }

    fn read_uncached(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        // What does not go direct (no direct handle, or a request it cannot
        // take: an odd-sized image's tail) is dropped from the cache first.
        if !self.direct.as_ref().is_some_and(|d| d.fits(buf, offset)) {
            check_range(self.len, offset, buf.len() as u64)?;
            sys::drop_cached(&self.file, offset, buf.len() as u64)?;
        }
        self.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        check_range(self.len, offset, buf.len() as u64)?;
        if self.buffered_writes.load(Ordering::Relaxed) {
            return sys::write_all_at(&self.file, buf, offset);
        }
        #[cfg(target_os = "linux")]
        if let Some(wb) = &self.write_behind {
            return wb.write_all_at(&self.file, buf, offset);
        }
        match &self.direct {
            Some(d) => d.write_all_at(&self.file, buf, offset),
            None => sys::write_all_at(&self.file, buf, offset),
        }
    }

    /// Safe at any moment: a direct write already returned is on the
    /// medium, one still running finishes as it began, and the kernel keeps
    /// direct and buffered I/O of one file coherent (a direct read writes
    /// back the cached pages of its range first).
    fn buffer_writes(&self) {
        self.buffered_writes.store(true, Ordering::Relaxed);
    }

    fn flush(&self) -> io::Result<()> {
        self.file.sync_data()?;
        #[cfg(target_os = "linux")]
        if let Some(wb) = &self.write_behind {
            wb.check()?;
        }
        Ok(())
    }

    fn write_zeroes(&self, offset: u64, len: u64, may_unmap: bool) -> io::Result<()> {
        check_range(self.len, offset, len)?;
        if len == 0 {
            return Ok(());
        }
        if sys::zero_range(&self.file, self.is_block, offset, len, may_unmap)? {
            return Ok(());
        }
        write_zeroes_by_writing(self, offset, len)
    }

    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        check_range(self.len, offset, len)?;
        if len == 0 {
            return Ok(());
        }
        sys::discard_range(&self.file, self.is_block, offset, len)
    }

    fn block_status(&self, offset: u64, max_len: u64) -> io::Result<(Allocation, u64)> {
        check_range(self.len, offset, 1)?;
        let limit = offset.saturating_add(max_len.max(1)).min(self.len);
        if self.is_block {
            return Ok((Allocation::Data, limit - offset));
        }
        sys::allocation(&self.file, offset, limit)
    }

    fn logical_block_size(&self) -> u32 {
        self.logical_block_size
    }

    fn id(&self) -> DeviceId {
        self.id
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// Creates a new sparse image file of `len` bytes at `path`, open for
/// writing through the page cache. Refuses to touch a file that exists.
pub fn create_image(path: impl AsRef<Path>, len: u64) -> Result<FileDevice, Error> {
    OpenOptions::new().write(true).create(path, len)
}
