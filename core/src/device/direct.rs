//! Unbuffered access to a file or disk, beside its buffered handle:
//! `O_DIRECT` on Linux, `FILE_FLAG_NO_BUFFERING` on Windows.
//!
//! Unbuffered I/O must be aligned in memory, offset and length; the host
//! says how much (see [`sys::open_direct`](super::sys::open_direct)). A
//! [`FileDevice`](super::FileDevice) keeps its ordinary handle and, when
//! direct I/O was asked for and the device allows it, a second unbuffered
//! one: aligned requests go direct, the rest (a 512-byte write to a
//! 4K-aligned file, the short tail of an odd-sized image) stay buffered.
//! Mixing is coherent because the kernel writes back and drops cached pages
//! of a range before direct I/O on it, and the mirror never has two
//! overlapping requests in flight on one device.

use std::fs::File;
use std::io;
use std::path::Path;

use super::sys;
use crate::buffer::AlignedBuf;

/// An unbuffered handle and the alignment it needs.
pub(super) struct Direct {
    file: File,
    mem_align: usize,
    offset_align: u64,
}

impl Direct {
    /// Opens `path` unbuffered, or `None` when the device cannot do direct
    /// I/O (then everything stays buffered).
    pub(super) fn open(path: &Path, write: bool, logical_block_size: u32) -> Option<Direct> {
        let (file, mem_align, offset_align) = sys::open_direct(path, write, logical_block_size)?;
        Some(Direct { file, mem_align, offset_align })
    }

    /// Takes `file`, already opened `O_DIRECT` (by a privileged helper), or
    /// `None` when it cannot do direct I/O.
    #[cfg(target_os = "linux")]
    pub(super) fn of_file(file: File, logical_block_size: u32) -> Option<Direct> {
        let (mem_align, offset_align) = sys::direct_alignment(&file, logical_block_size)?;
        Some(Direct { file, mem_align, offset_align })
    }

    /// Reads direct when the request is aligned, else through `buffered`.
    pub(super) fn read_exact_at(
        &self,
        buffered: &File,
        buf: &mut [u8],
        offset: u64,
    ) -> io::Result<()> {
        let file = if self.fits(buf, offset) { &self.file } else { buffered };
        sys::read_exact_at(file, buf, offset)
    }

    /// Writes `buf` direct when its range is aligned — through an aligned
    /// copy if only its memory is not (a client's buffer) — else through
    /// `buffered`.
    pub(super) fn write_all_at(&self, buffered: &File, buf: &[u8], offset: u64) -> io::Result<()> {
        if self.fits(buf, offset) {
            sys::write_all_at(&self.file, buf, offset)
        } else if self.range_fits(offset, buf.len()) {
            sys::write_all_at(&self.file, &AlignedBuf::copy_of(buf), offset)
        } else {
            sys::write_all_at(buffered, buf, offset)
        }
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
}
