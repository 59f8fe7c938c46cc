//! How a device is opened: through the page cache, around it (`O_DIRECT`),
//! or through it with write-behind, like `qemu-img convert -T`/`-t`; and
//! which of them a target gets when none is asked for. The command line
//! names these values (`--target-cache`), the window picks them itself.

use clap::ValueEnum;
use livemirror_core::device::OpenOptions;
use livemirror_core::job::CopyMode;

/// Page-cache use for one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Cache {
    /// Bypass the page cache for aligned I/O (`O_DIRECT`); buffered where the
    /// device refuses it.
    Direct,
    /// Go through the page cache.
    Writeback,
    /// Go through the page cache, but write back and drop each write from
    /// the cache right behind the writer (a bounded window): large merged
    /// disk writes without filling memory (Linux; plain writeback elsewhere).
    #[value(name = "writebehind", alias = "write-behind")]
    WriteBehind,
}

impl Cache {
    /// The target's cache when none is asked for, from what
    /// `benches/compare.sh` and `benches/live.sh` measured (README,
    /// Performance). With nobody else writing (a clone) write-behind is the
    /// fastest on every image, in fresh and recycled memory alike. While a
    /// served source has clients, their writes come first: in background
    /// mode they never touch the target, and a direct copy leaves them the
    /// page cache and the CPU (they kept ~100% of their IOPS, about 60% with
    /// write-behind); in write-blocking mode each of them also writes the
    /// target, behind the copies queued on the same file, and only plain
    /// page-cache writes are quick enough to keep about half (direct or
    /// write-behind: 7–16%). A served job switched from background to
    /// write-blocking mode while it runs has its target's writes buffered
    /// from then on (`MirrorOptions::buffer_target_when_write_blocking`).
    pub fn default_target(served: bool, copy_mode: CopyMode) -> Cache {
        match (served, copy_mode) {
            (false, _) => Cache::WriteBehind,
            (true, CopyMode::Background) => Cache::Direct,
            (true, CopyMode::WriteBlocking) => Cache::Writeback,
        }
    }

    /// Read-only options with this cache mode.
    pub fn options(self) -> OpenOptions {
        OpenOptions::new().direct(self == Cache::Direct).write_behind(self == Cache::WriteBehind)
    }
}
