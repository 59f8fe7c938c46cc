//! `O_DIRECT` access to a file or disk, beside its buffered descriptor.
//!
//! Direct I/O must be aligned in memory, offset and length; the kernel says
//! how much with `statx(STATX_DIOALIGN)`. A [`FileDevice`](super::FileDevice)
//! keeps its ordinary descriptor and, when direct I/O was asked for and the
//! device allows it, a second one opened with `O_DIRECT`: aligned requests go
//! direct, the rest (a 512-byte write to a 4K-aligned file, the short tail of
//! an odd-sized image) stay buffered. Mixing is coherent because the kernel
//! writes back and drops cached pages of a range before direct I/O on it, and
//! the mirror never has two overlapping requests in flight on one device.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use crate::buffer::AlignedBuf;

/// An `O_DIRECT` descriptor and the alignment it needs.
pub(super) struct Direct {
    pub(super) file: File,
    mem_align: usize,
    offset_align: u64,
}

impl Direct {
    /// Opens `path` with `O_DIRECT`, or `None` when the device cannot do
    /// direct I/O (then everything stays buffered).
    pub(super) fn open(path: &Path, write: bool, logical_block_size: u32) -> Option<Direct> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(write)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .ok()?;
        let (mem_align, offset_align) = match dio_align(&file) {
            Some((0, _) | (_, 0)) => return None, // the kernel says: no direct I/O here
            Some((mem, offset)) => (mem as usize, u64::from(offset)),
            // An older kernel: the logical block size, but at least a page,
            // which every filesystem that takes O_DIRECT accepts.
            None => (crate::buffer::ALIGN, u64::from(logical_block_size).max(4096)),
        };
        Some(Direct { file, mem_align, offset_align })
    }

    /// True when a request at `offset` for `buf` can go direct.
    pub(super) fn fits(&self, buf: &[u8], offset: u64) -> bool {
        self.range_fits(offset, buf.len()) && (buf.as_ptr() as usize).is_multiple_of(self.mem_align)
    }

    fn range_fits(&self, offset: u64, len: usize) -> bool {
        len > 0
            && offset.is_multiple_of(self.offset_align)
            && (len as u64).is_multiple_of(self.offset_align)
    }

    /// Writes `buf` direct when its range is aligned — through an aligned
    /// copy if only its memory is not (a client's buffer) — else through
    /// `buffered`.
    pub(super) fn write_all_at(&self, buffered: &File, buf: &[u8], offset: u64) -> io::Result<()> {
        if self.fits(buf, offset) {
            self.file.write_all_at(buf, offset)
        } else if self.range_fits(offset, buf.len()) {
            self.file.write_all_at(&AlignedBuf::copy_of(buf), offset)
        } else {
            buffered.write_all_at(buf, offset)
        }
    }
}

/// `(memory, offset)` alignment for direct I/O, if the kernel reports it.
fn dio_align(file: &File) -> Option<(u32, u32)> {
    // SAFETY: all-zero is a valid statx; the kernel fills what it knows.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: an fd we own, an empty NUL-terminated path with AT_EMPTY_PATH
    // (meaning "this fd"), and a pointer to a statx we own.
    let r = unsafe {
        libc::statx(
            file.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_DIOALIGN,
            &mut stx,
        )
    };
    (r == 0 && stx.stx_mask & libc::STATX_DIOALIGN != 0)
        .then_some((stx.stx_dio_mem_align, stx.stx_dio_offset_align))
}
