//! Raw image files and Linux block devices.
//!
//! Positional I/O with `pread`/`pwrite`; zeroing and discard with
//! `fallocate` on files and `BLKZEROOUT`/`BLKDISCARD` on devices, each with a
//! plain-write (or no-op, for discard) fallback when the kernel says no;
//! allocation from `SEEK_DATA`/`SEEK_HOLE`.
//!
//! With [`OpenOptions::direct`], I/O that meets the device's `O_DIRECT`
//! alignment bypasses the page cache (see [`direct`](super::direct)); the
//! rest, and every device that refuses `O_DIRECT`, stays buffered. With
//! [`OpenOptions::write_behind`] writes stay buffered but are written back
//! and dropped from the cache right behind the writer (see
//! [`writebehind`](super::writebehind)).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};

use super::direct::Direct;
use super::sys::identify;
#[cfg(target_os = "linux")]
use super::writebehind::WriteBehind;
use super::{Allocation, BlockDevice, DeviceId, check_range, write_zeroes_by_writing};
use crate::error::Error;

// ioctl numbers from <linux/fs.h>.
const BLKSSZGET: libc::c_ulong = 0x1268;
const BLKDISCARD: libc::c_ulong = 0x1277;
const BLKZEROOUT: libc::c_ulong = 0x127f;
const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;

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
    /// A second descriptor opened with `O_DIRECT`, when asked for and allowed.
    direct: Option<Direct>,
    /// Write-behind of buffered writes, when asked for.
    #[cfg(target_os = "linux")]
    write_behind: Option<WriteBehind>,
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
        let meta = file.metadata().map_err(ctx)?;
        let is_block = meta.file_type().is_block_device();
        if !is_block && !meta.is_file() {
            return Err(ctx(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file or block device",
            )));
        }
        let (len, logical_block_size) = if is_block {
            let mut size: u64 = 0;
            // SAFETY: BLKGETSIZE64 writes one u64 through the pointer.
            ioctl_result(unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64, &mut size) })
                .map_err(ctx)?;
            let mut lbs: libc::c_int = 512;
            // SAFETY: BLKSSZGET writes one int through the pointer.
            let _ = ioctl_result(unsafe { libc::ioctl(file.as_raw_fd(), BLKSSZGET, &mut lbs) });
            (size, lbs.max(512) as u32)
        } else {
            (meta.len(), 512)
        };
        let id = identify(&file).map_err(ctx)?;
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
        })
    }

    /// The path this device was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when aligned I/O bypasses the page cache.
    pub fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// True for a block device, false for a regular file.
    pub fn is_block_device(&self) -> bool {
        self.is_block
    }

    fn fallocate(&self, mode: libc::c_int, offset: u64, len: u64) -> io::Result<()> {
        // SAFETY: plain syscall on an fd we own.
        let r = unsafe {
            libc::fallocate(self.file.as_raw_fd(), mode, offset as libc::off_t, len as libc::off_t)
        };
        if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
    }

    fn block_range_ioctl(&self, request: libc::c_ulong, offset: u64, len: u64) -> io::Result<()> {
        let range: [u64; 2] = [offset, len];
        // SAFETY: these ioctls read two u64s (start, length) through the pointer.
        ioctl_result(unsafe { libc::ioctl(self.file.as_raw_fd(), request, &range) })
    }

    fn seek(&self, offset: u64, whence: libc::c_int) -> io::Result<Option<u64>> {
        // SAFETY: lseek on an fd we own; we never rely on the file position
        // elsewhere (all I/O is positional), so moving it is harmless.
        let r = unsafe { libc::lseek(self.file.as_raw_fd(), offset as libc::off_t, whence) };
        if r >= 0 {
            return Ok(Some(r as u64));
        }
        match io::Error::last_os_error() {
            e if e.raw_os_error() == Some(libc::ENXIO) => Ok(None),
            e => Err(e),
        }
    }
}

fn ioctl_result(r: libc::c_int) -> io::Result<()> {
    if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Errors that mean "this kernel or filesystem can't do that", after which a
/// plain write is the right fallback.
fn unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::ENOTTY | libc::EINVAL | libc::ENOSYS))
}

impl BlockDevice for FileDevice {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        check_range(self.len, offset, buf.len() as u64)?;
        match &self.direct {
            Some(d) if d.fits(buf, offset) => d.file.read_exact_at(buf, offset),
            _ => self.file.read_exact_at(buf, offset),
        }
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        check_range(self.len, offset, buf.len() as u64)?;
        #[cfg(target_os = "linux")]
        if let Some(wb) = &self.write_behind {
            return wb.write_all_at(&self.file, buf, offset);
        }
        match &self.direct {
            Some(d) => d.write_all_at(&self.file, buf, offset),
            None => self.file.write_all_at(buf, offset),
        }
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
        let native = if self.is_block {
            self.block_range_ioctl(BLKZEROOUT, offset, len)
        } else if may_unmap {
            self.fallocate(libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, offset, len)
        } else {
            self.fallocate(libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE, offset, len)
        };
        match native {
            Err(e) if unsupported(&e) => write_zeroes_by_writing(self, offset, len),
            other => other,
        }
    }

    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        check_range(self.len, offset, len)?;
        if len == 0 {
            return Ok(());
        }
        let r = if self.is_block {
            self.block_range_ioctl(BLKDISCARD, offset, len)
        } else {
            self.fallocate(libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, offset, len)
        };
        match r {
            Err(e) if unsupported(&e) => Ok(()), // discard is only a hint
            other => other,
        }
    }

    fn block_status(&self, offset: u64, max_len: u64) -> io::Result<(Allocation, u64)> {
        check_range(self.len, offset, 1)?;
        let limit = offset.saturating_add(max_len.max(1)).min(self.len);
        if self.is_block {
            return Ok((Allocation::Data, limit - offset));
        }
        let run = |end: Option<u64>| end.unwrap_or(self.len).min(limit).max(offset + 1) - offset;
        match self.seek(offset, libc::SEEK_DATA)? {
            Some(data) if data <= offset => {
                let hole = self.seek(offset, libc::SEEK_HOLE)?;
                Ok((Allocation::Data, run(hole)))
            }
            next_data => Ok((Allocation::Hole, run(next_data))),
        }
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
