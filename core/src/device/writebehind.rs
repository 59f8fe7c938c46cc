//! Write-behind: buffered writes that the kernel writes back right away, in
//! a bounded window, and that leave the page cache once they are on disk.
//!
//! Plain buffered writes let the kernel merge them into large requests, but
//! they pile up dirty pages until the final flush (a long stall at the end,
//! gigabytes of cache evicting the host's useful data) and, on VMs whose host
//! reclaims freed guest memory, each new page-cache page costs a host fault.
//! `O_DIRECT` avoids both but hands the disk only our own request sizes and
//! queue depth. Write-behind keeps the merging and bounds the cost:
//!
//! 1. after each write, `sync_file_range(WRITE)` starts writeback of the
//!    range, so the disk works while we go on copying;
//! 2. once more than [`WINDOW`] bytes have been started, the oldest ranges
//!    are waited for (`sync_file_range(WAIT_BEFORE | WRITE | WAIT_AFTER)`)
//!    and dropped from the cache (`posix_fadvise(DONTNEED)`), by whichever
//!    writer pushed the window over: that is the back-pressure that keeps
//!    writers from outrunning the disk, and the dropped pages are reused,
//!    still backed by the host, by the next writes.
//!
//! Only the cache is affected: dirty pages are never dropped (`DONTNEED`
//! skips them), so concurrent and overlapping writes stay correct. This is
//! the scheme of nbdcopy's file destination (libnbd `copy/file-ops.c`).
//! Works on regular files and block devices alike.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

/// Bytes whose writeback has been started but not yet waited for: the most
/// page cache the target uses. Large enough for the kernel to merge and queue
/// deeply behind 16 concurrent 1 MiB writes, small beside any RAM.
pub(super) const WINDOW: u64 = 64 << 20;

/// The write-behind state of one open device, shared by all its writers.
pub(crate) struct WriteBehind {
    window: u64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// `(offset, len)` of ranges started and not yet retired, oldest first;
    /// a write that continues the newest range extends it.
    started: VecDeque<(u64, u64)>,
    /// Sum of the lengths in `started`.
    bytes: u64,
    /// The first writeback error a wait reported (raw OS error).
    failed: Option<i32>,
}

impl WriteBehind {
    pub(crate) fn new() -> Self {
        Self::with_window(WINDOW)
    }

    fn with_window(window: u64) -> Self {
        WriteBehind { window, state: Mutex::default() }
    }

    /// Writes all of `buf` at `offset` through the page cache, starts its
    /// writeback, and retires the oldest ranges once the window is full.
    pub(crate) fn write_all_at(&self, file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
        file.write_all_at(buf, offset)?;
        let len = buf.len() as u64;
        if len == 0 {
            return Ok(());
        }
        // Only a head start: if the kernel refuses, the retiring wait below
        // (or the final flush) still writes the range.
        let _ = sync_file_range(file, offset, len, libc::SYNC_FILE_RANGE_WRITE);
        for (offset, len) in self.start(offset, len) {
            self.retire(file, offset, len)?;
        }
        Ok(())
    }

    /// The writeback error a wait consumed, if any. A wait advances the
    /// descriptor's error cursor, so `fsync` would no longer report it; and
    /// the pages that failed are left clean, their data lost to the cache,
    /// so no later flush can make the device whole: every flush after it
    /// fails.
    pub(crate) fn check(&self) -> io::Result<()> {
        match self.lock().failed {
            Some(code) => Err(io::Error::from_raw_os_error(code)),
            None => Ok(()),
        }
    }

    /// Records a started range; returns the oldest ranges, coalesced, that
    /// now fall outside the window and must be retired by the caller.
    fn start(&self, offset: u64, len: u64) -> Vec<(u64, u64)> {
        let mut state = self.lock();
        match state.started.back_mut() {
            Some((o, l)) if *o + *l == offset => *l += len,
            _ => state.started.push_back((offset, len)),
        }
        state.bytes += len;
        let mut due = Vec::new();
        while state.bytes > self.window {
            let Some(range) = state.started.pop_front() else { break };
            state.bytes -= range.1;
            due.push(range);
        }
        drop(state);
        coalesce(due)
    }

    /// Waits until `offset..offset+len` is on disk and drops it from the cache.
    fn retire(&self, file: &File, offset: u64, len: u64) -> io::Result<()> {
        let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
            | libc::SYNC_FILE_RANGE_WRITE
            | libc::SYNC_FILE_RANGE_WAIT_AFTER;
        match sync_file_range(file, offset, len, flags) {
            Ok(()) => {}
            // No waiting here: the final flush writes it all.
            Err(e)
                if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ESPIPE | libc::ENOSYS)) =>
            {
                return Ok(());
            }
            Err(e) => {
                self.lock().failed.get_or_insert(e.raw_os_error().unwrap_or(libc::EIO));
                return Err(e);
            }
        }
        // A hint: failing to drop clean pages costs memory, not data.
        // SAFETY: plain syscall on an fd the caller owns.
        let _ = unsafe {
            libc::posix_fadvise(
                file.as_raw_fd(),
                offset as libc::off_t,
                len as libc::off_t,
                libc::POSIX_FADV_DONTNEED,
            )
        };
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked: every update
        // is a few plain assignments.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Sorts ranges and merges the adjacent ones, so concurrent writers' ranges
/// that finished out of order are retired with one wait each run.
fn coalesce(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (offset, len) in ranges {
        match merged.last_mut() {
            Some((o, l)) if *o + *l == offset => *l += len,
            _ => merged.push((offset, len)),
        }
    }
    merged
}

fn sync_file_range(file: &File, offset: u64, len: u64, flags: libc::c_uint) -> io::Result<()> {
    // SAFETY: plain syscall on an fd the caller owns.
    let r = unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            flags,
        )
    };
    if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use livemirror_testkit::pattern;

    fn file_of(len: u64) -> (tempfile::NamedTempFile, File) {
        let f = tempfile::NamedTempFile::new().unwrap();
        f.as_file().set_len(len).unwrap();
        let file = std::fs::OpenOptions::new().read(true).write(true).open(f.path()).unwrap();
        (f, file)
    }

    #[test]
    fn the_window_bounds_what_is_started_and_retires_oldest_first() {
        let (_f, file) = file_of(1 << 20);
        let wb = WriteBehind::with_window(64 << 10);
        for i in 0..10u64 {
            // Every other 16 KiB block: nothing merges on the way in.
            wb.write_all_at(&file, &pattern(16 << 10, i), i * (32 << 10)).unwrap();
            let state = wb.lock();
            assert!(state.bytes <= 64 << 10, "{} bytes started", state.bytes);
            assert_eq!(state.bytes, state.started.iter().map(|r| r.1).sum::<u64>());
            let first = state.started.front().unwrap().0;
            assert_eq!(first, i.saturating_sub(3) * (32 << 10), "oldest kept after write {i}");
        }
        let mut back = vec![0; 16 << 10];
        for i in 0..10u64 {
            file.read_exact_at(&mut back, i * (32 << 10)).unwrap();
            assert_eq!(back, pattern(16 << 10, i), "block {i}");
        }
    }

    #[test]
    fn contiguous_writes_make_one_range() {
        let (_f, file) = file_of(1 << 20);
        let wb = WriteBehind::with_window(1 << 20);
        for i in 0..8u64 {
            wb.write_all_at(&file, &[i as u8; 4096], i * 4096).unwrap();
        }
        assert_eq!(wb.lock().started, [(0, 8 * 4096)]);
    }

    #[test]
    fn coalescing_sorts_and_merges_adjacent_ranges() {
        let ranges = vec![(30, 10), (0, 10), (10, 5), (50, 1), (40, 2)];
        assert_eq!(coalesce(ranges), [(0, 15), (30, 12), (50, 1)]);
    }

    /// The `(offset, len)` pieces writer `t` of 16 writes into its slice of
    /// `len` bytes: sizes from 1000 bytes to about 70 KiB, none aligned.
    fn pieces(t: u64, len: u64) -> Vec<(u64, u64)> {
        let slice = len / 16;
        let (mut pos, end) = (t * slice, (t + 1) * slice);
        let mut out = Vec::new();
        while pos < end {
            let n = (1000 + (out.len() as u64 * 7919 + t * 104_729) % 70_000).min(end - pos);
            out.push((pos, n));
            pos += n;
        }
        out
    }

    /// Sixteen writers at odd offsets and sizes, a window far smaller than
    /// what they write: every byte lands, nothing is dropped that was dirty.
    #[test]
    fn concurrent_writers_at_odd_sizes_all_land() {
        const LEN: u64 = 8 << 20;
        let (_f, file) = file_of(LEN);
        let wb = WriteBehind::with_window(256 << 10);
        std::thread::scope(|s| {
            for t in 0..16u64 {
                let (wb, file) = (&wb, &file);
                s.spawn(move || {
                    for (pos, len) in pieces(t, LEN) {
                        wb.write_all_at(file, &pattern(len as usize, pos), pos).unwrap();
                    }
                });
            }
        });
        wb.check().unwrap();
        assert!(wb.lock().bytes <= 256 << 10);
        for t in 0..16u64 {
            for (pos, len) in pieces(t, LEN) {
                let mut back = vec![0; len as usize];
                file.read_exact_at(&mut back, pos).unwrap();
                assert!(back == pattern(len as usize, pos), "writer {t} piece at {pos}");
            }
        }
    }

    #[test]
    fn a_consumed_writeback_error_fails_every_later_check() {
        let wb = WriteBehind::new();
        wb.check().unwrap();
        wb.lock().failed = Some(libc::EIO);
        for _ in 0..2 {
            assert_eq!(wb.check().unwrap_err().raw_os_error(), Some(libc::EIO));
        }
    }
}
