//! The mirror options shared by every subcommand that starts a job.

use clap::Args;
use livemirror_core::job::{
    CopyMode, ErrorPolicy, MirrorOptions, ParseError, SyncMode, Tracking, parse_size,
};

#[derive(Args, Debug, Clone)]
pub struct MirrorArgs {
    /// What to copy: everything, only allocated data, or only new writes.
    #[arg(long, default_value = "full", value_parser = parse_enum::<SyncMode>)]
    pub sync: SyncMode,
    /// Chunk size (power of two, 512 to 64M); default from the target's clusters, else 64K.
    #[arg(long, value_parser = parse_size, allow_hyphen_values = true)]
    pub granularity: Option<u64>,
    /// Data in flight.
    #[arg(long, default_value = "16M", value_parser = parse_size, allow_hyphen_values = true)]
    pub buf_size: u64,
    /// Speed limit in bytes per second (K/M/G suffixes); 0 is unlimited.
    #[arg(long, default_value = "0", value_parser = parse_size, allow_hyphen_values = true)]
    pub speed: u64,
    /// On a source error: report (fail), ignore (retry later), stop (ask), enospc (ask when full).
    #[arg(long, default_value = "report", value_parser = parse_enum::<ErrorPolicy>)]
    pub on_source_error: ErrorPolicy,
    /// On a target error: report (fail), ignore (retry later), stop (ask), enospc (ask when full).
    #[arg(long, default_value = "report", value_parser = parse_enum::<ErrorPolicy>)]
    pub on_target_error: ErrorPolicy,
    /// background, or write-blocking (every write reaches the target before it is acknowledged).
    #[arg(long, default_value = "background", value_parser = parse_enum::<CopyMode>)]
    pub copy_mode: CopyMode,
    /// How the source's writes are seen: kernel (Linux, root, a disk: every
    /// write is seen; Complete freezes its mounted filesystems for a moment),
    /// compare (passes re-read the source: for a source others write, e.g. a
    /// mounted disk) or none; default for `clone`: kernel for a disk when it
    /// can, else compare when the source is mounted, else none (`serve`: nbd).
    #[arg(long, value_parser = parse_enum::<Tracking>)]
    pub tracking: Option<Tracking>,
    /// Compare source and target once more before the job ends (the default
    /// unless every write is tracked).
    #[arg(long, overrides_with = "no_verify")]
    pub verify: bool,
    /// Skip the final comparison: the end says "not verified".
    #[arg(long)]
    pub no_verify: bool,
}

fn parse_enum<T: std::str::FromStr<Err = ParseError>>(s: &str) -> Result<T, ParseError> {
    s.parse()
}

impl MirrorArgs {
    pub fn options(&self) -> MirrorOptions {
        MirrorOptions {
            sync: self.sync,
            granularity: self.granularity,
            buf_size: self.buf_size,
            speed: self.speed,
            on_source_error: self.on_source_error,
            on_target_error: self.on_target_error,
            copy_mode: self.copy_mode,
            tracking: self.tracking.unwrap_or(Tracking::None),
            verify: match (self.verify, self.no_verify) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            },
            ..MirrorOptions::default()
        }
    }
}
