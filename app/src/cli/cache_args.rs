//! `--source-cache` and `--target-cache`: how the source and target are
//! opened (see [`Cache`]).

use clap::Args;
use livemirror_core::device::OpenOptions;
use livemirror_core::job::CopyMode;

pub use crate::session::Cache;

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

    /// True when the target's cache is the default, which changes with the
    /// copy mode: a served job switched to write-blocking mode then
    /// buffers its target's writes ([`Cache::default_target`]).
    pub fn target_follows_copy_mode(&self) -> bool {
        self.target_cache.is_none()
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
