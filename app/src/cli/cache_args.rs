//! How the source and target are opened: through the page cache, around it
//! (`O_DIRECT`), or through it with write-behind, like `qemu-img convert
//! -T`/`-t`; and which of them a target gets when none is asked for.

use clap::{Args, ValueEnum};
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
    /// write-behind: 7–16%).
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

#[derive(Args, Debug, Clone)]
pub struct CacheArgs {
    /// Source I/O: writeback reads hit data the host already caches (and
    /// scan zeroes at memory speed); direct leaves the cache alone.
    #[arg(long, value_enum, default_value = "writeback")]
    pub source_cache: Cache,
    /// Target I/O. Default: writebehind for clone; for serve, direct in
    /// background mode and writeback in write-blocking mode, so the export's
    /// clients are slowed least.
    #[arg(long, value_enum)]
    pub target_cache: Option<Cache>,
}

impl CacheArgs {
    pub fn source(&self) -> OpenOptions {
        self.source_cache.options()
    }

    /// The target's options: as asked, else [`Cache::default_target`].
    pub fn target(&self, served: bool, copy_mode: CopyMode) -> OpenOptions {
        let cache = self.target_cache.unwrap_or(Cache::default_target(served, copy_mode));
        cache.options().write(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        cache: CacheArgs,
    }

    fn target_cache(args: &[&str]) -> Option<Cache> {
        Cli::try_parse_from(std::iter::once("livemirror").chain(args.iter().copied()))
            .unwrap()
            .cache
            .target_cache
    }

    #[test]
    fn target_cache_names_parse_and_default_to_none() {
        assert_eq!(target_cache(&[]), None);
        assert_eq!(target_cache(&["--target-cache", "direct"]), Some(Cache::Direct));
        assert_eq!(target_cache(&["--target-cache", "writeback"]), Some(Cache::Writeback));
        assert_eq!(target_cache(&["--target-cache", "writebehind"]), Some(Cache::WriteBehind));
        assert_eq!(target_cache(&["--target-cache", "write-behind"]), Some(Cache::WriteBehind));
    }

    #[test]
    fn the_default_target_cache_follows_use_and_copy_mode() {
        use CopyMode::{Background, WriteBlocking};
        assert_eq!(Cache::default_target(false, Background), Cache::WriteBehind);
        assert_eq!(Cache::default_target(false, WriteBlocking), Cache::WriteBehind);
        assert_eq!(Cache::default_target(true, Background), Cache::Direct);
        assert_eq!(Cache::default_target(true, WriteBlocking), Cache::Writeback);
    }
}
