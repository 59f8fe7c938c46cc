//! How the source and target are opened: through the page cache or around it
//! (`O_DIRECT`), like `qemu-img convert -T`/`-t`.

use clap::{Args, ValueEnum};
use livemirror_core::device::OpenOptions;

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

#[derive(Args, Debug, Clone)]
pub struct CacheArgs {
    /// Source I/O: writeback reads hit data the host already caches (and
    /// scan zeroes at memory speed); direct leaves the cache alone.
    #[arg(long, value_enum, default_value = "writeback")]
    pub source_cache: Cache,
    /// Target I/O: direct writes neither fill memory with a copy nobody reads
    /// back nor leave gigabytes to flush at the end.
    #[arg(long, value_enum, default_value = "direct")]
    pub target_cache: Cache,
}

impl CacheArgs {
    pub fn source(&self) -> OpenOptions {
        OpenOptions::new().direct(self.source_cache == Cache::Direct)
    }

    pub fn target(&self) -> OpenOptions {
        OpenOptions::new()
            .write(true)
            .direct(self.target_cache == Cache::Direct)
            .write_behind(self.target_cache == Cache::WriteBehind)
    }
}
