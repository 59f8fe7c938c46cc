//! What a mirror job can be asked to do, and the checks that refuse nonsense
//! before anything is written.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::device::BlockDevice;
use crate::error::{BadOption, Error};

/// Smallest and largest granularity, as in QEMU.
pub const MIN_GRANULARITY: u64 = 512;
pub const MAX_GRANULARITY: u64 = 64 << 20;
/// Default data in flight.
pub const DEFAULT_BUF_SIZE: u64 = 16 << 20;
/// At most this many copy operations run at once.
pub const MAX_IN_FLIGHT: usize = 16;

/// At most this many copy operations run at once in write-blocking mode, on
/// a machine with `cpus` CPUs: one fewer than the CPUs (at least one), so a
/// writer, who now waits for the target too, always finds a CPU and few
/// copies queued before it on the target file. Each copy is CPU work (page
/// cache to page cache) that more copies in flight do not speed up: on 2
/// CPUs, a 1000 × 64 KiB/s writer kept 43–48% of its IOPS beside 16 copies,
/// 83–88% beside one, and the bulk copy reached Ready as fast
/// (`benches/live.sh`, README Performance).
pub fn write_blocking_in_flight(cpus: usize) -> usize {
    cpus.saturating_sub(1).clamp(1, MAX_IN_FLIGHT)
}

/// Which parts of the source get copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SyncMode {
    /// Everything.
    #[default]
    Full,
    /// Only what the source has allocated (data extents of a sparse image).
    Top,
    /// Only what is written after the job starts.
    None,
    /// Only what differs: one compare pass marks the differing chunks (an
    /// earlier copy brought up to date, `clone --resync`).
    Differing,
}

/// What happens to writes while the job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CopyMode {
    /// Writes mark chunks dirty; the job copies them later.
    #[default]
    Background,
    /// Writes also reach the target before they are acknowledged, so the
    /// job converges whatever the write load.
    WriteBlocking,
}

/// How the job sees writes to its source. It decides what the job may
/// claim at the end (see [`Proof`](super::Proof)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tracking {
    /// Every write goes through livemirror's live source (its NBD export,
    /// or in-process writers such as the demo's): all are seen.
    #[default]
    Nbd,
    /// The kernel reports every completed write to the source disk.
    Kernel,
    /// Others write the source around livemirror (a mounted disk): compare
    /// passes find their writes by re-reading, which cannot prove a copy
    /// while they write.
    Compare,
    /// An image file nobody else has open for writing, under a read lease
    /// (Linux): a program that opens it for writing breaks the lease, and
    /// the job then goes on as `None` and says so. While it holds, no
    /// write but the job's own can have happened: nothing to compare.
    Lease,
    /// An image or disk livemirror opened that other programs may write:
    /// their writes are not seen.
    None,
}

/// What to do when an I/O on one side fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorPolicy {
    /// The job fails with the error.
    #[default]
    Report,
    /// The chunk stays dirty and is retried later; the job goes on.
    Ignore,
    /// The job pauses and asks: Retry, Ignore or Stop.
    Stop,
    /// Stop on "no space left on device", report anything else.
    Enospc,
}

/// How long kernel tracking may freeze the source's filesystems by default.
pub const DEFAULT_FREEZE_LIMIT_MS: u64 = 10_000;

/// All the knobs of a mirror job. `Default` gives QEMU's defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct MirrorOptions {
    pub sync: SyncMode,
    /// Chunk size in bytes; `None` picks one from the target (see [`resolve`]).
    pub granularity: Option<u64>,
    /// Bytes of data in flight.
    pub buf_size: u64,
    /// Bytes per second; 0 is unlimited.
    pub speed: u64,
    pub on_source_error: ErrorPolicy,
    pub on_target_error: ErrorPolicy,
    pub copy_mode: CopyMode,
    /// How writes to the source are seen.
    pub tracking: Tracking,
    /// Compare source and target once more during the last drain; `None`
    /// does so exactly when tracking cannot prove the copy (`none`,
    /// `compare`).
    pub verify: Option<bool>,
    /// With kernel tracking: the longest the source's filesystems stay
    /// frozen for the last drain of a Complete, in milliseconds; past it
    /// they are thawed and the Complete fails, the job still ready.
    pub freeze_limit_ms: u64,
    /// Tests only: with kernel tracking, the longest request (in bitmap
    /// words) the kernel program marks; a longer one goes unmarked and the
    /// job must find it by comparing. `None`: the tracker's own limit.
    #[doc(hidden)]
    #[serde(skip)]
    pub kernel_span_limit: Option<u64>,
    /// The target's cache was picked for background copies (not by the
    /// user): a switch to write-blocking mode makes its writes buffered
    /// ([`BlockDevice::buffer_writes`]), the cache write-blocking jobs
    /// start with.
    pub buffer_target_when_write_blocking: bool,
}

impl MirrorOptions {
    /// True when the job runs a final comparison before it ends.
    pub fn verifies(&self) -> bool {
        self.verify.unwrap_or(matches!(self.tracking, Tracking::None | Tracking::Compare))
    }
}

impl Default for MirrorOptions {
    fn default() -> Self {
        MirrorOptions {
            sync: SyncMode::Full,
            granularity: None,
            buf_size: DEFAULT_BUF_SIZE,
            speed: 0,
            on_source_error: ErrorPolicy::Report,
            on_target_error: ErrorPolicy::Report,
            copy_mode: CopyMode::Background,
            tracking: Tracking::Nbd,
            verify: None,
            freeze_limit_ms: DEFAULT_FREEZE_LIMIT_MS,
            kernel_span_limit: None,
            buffer_target_when_write_blocking: false,
        }
    }
}

/// Options with every default filled in and every value checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    pub granularity: u64,
    pub buf_size: u64,
    /// Largest single copy operation, in bytes.
    pub max_op: u64,
    /// Copy operations at once in write-blocking mode
    /// ([`write_blocking_in_flight`] of this machine's CPUs).
    pub write_blocking_in_flight: usize,
}

/// The granularity QEMU would pick: the target's cluster size clamped to
/// 4 KiB … 64 KiB, else 64 KiB.
pub fn default_granularity(target: &dyn BlockDevice) -> u64 {
    target.cluster_size().map(|c| c.clamp(4096, 64 << 10)).unwrap_or(64 << 10)
}

/// Checks `opts` against the target and fills in defaults.
pub fn resolve(opts: &MirrorOptions, target: &dyn BlockDevice) -> Result<Resolved, Error> {
    let granularity = opts.granularity.unwrap_or_else(|| default_granularity(target));
    if !granularity.is_power_of_two() || !(MIN_GRANULARITY..=MAX_GRANULARITY).contains(&granularity)
    {
        return Err(Error::InvalidOption(BadOption::Granularity(granularity)));
    }
    if opts.buf_size == 0 {
        return Err(Error::InvalidOption(BadOption::ZeroBuffer));
    }
    let buf_size = opts.buf_size.div_ceil(granularity) * granularity;
    let max_op = (buf_size / MAX_IN_FLIGHT as u64).max(1 << 20).max(granularity);
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    Ok(Resolved {
        granularity,
        buf_size,
        max_op: max_op.min(buf_size),
        write_blocking_in_flight: write_blocking_in_flight(cpus),
    })
}

macro_rules! names {
    ($ty:ty { $($variant:ident = $name:literal),* $(,)? }) => {
        impl $ty {
            /// The names accepted on the command line and the control socket.
            pub const NAMES: &'static [&'static str] = &[$($name),*];

            pub fn name(self) -> &'static str {
                match self { $(Self::$variant => $name),* }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
        impl FromStr for $ty {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, ParseError> {
                match s {
                    $($name => Ok(Self::$variant),)*
                    _ => Err(ParseError::NotOneOf { given: s.into(), names: Self::NAMES }),
                }
            }
        }
    };
}

names!(SyncMode { Full = "full", Top = "top", None = "none", Differing = "differing" });
names!(CopyMode { Background = "background", WriteBlocking = "write-blocking" });
names!(Tracking {
    Nbd = "nbd",
    Kernel = "kernel",
    Compare = "compare",
    Lease = "lease",
    None = "none",
});
names!(ErrorPolicy { Report = "report", Ignore = "ignore", Stop = "stop", Enospc = "enospc" });

/// Why a word on the command line or the control socket is not an option's
/// value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("{given:?} is not one of: {}", names.join(", "))]
    NotOneOf { given: String, names: &'static [&'static str] },
    #[error("{given:?}: unknown size suffix {suffix:?} (use K, M, G or T)")]
    UnknownSuffix { given: String, suffix: char },
    #[error("{given:?}: must not be negative")]
    Negative { given: String },
    #[error("{given:?} is not a size")]
    NotASize { given: String },
    #[error("{given:?} is not a whole number of bytes")]
    NotWholeBytes { given: String },
}

/// Parses a size with an optional K/M/G/T suffix (powers of 1024, like
/// qemu-img): `512`, `64K`, `16M`, `1.5G`.
pub fn parse_size(s: &str) -> Result<u64, ParseError> {
    let given = || s.to_owned();
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'B' => 0,
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(ParseError::UnknownSuffix { given: given(), suffix: c }),
            };
            (&t[..i], 1u64 << shift)
        }
        _ => (t, 1),
    };
    if num.starts_with('-') {
        return Err(ParseError::Negative { given: given() });
    }
    let value: f64 = num.parse().map_err(|_| ParseError::NotASize { given: given() })?;
    let bytes = value * mult as f64;
    if !bytes.is_finite() || bytes > u64::MAX as f64 || bytes.fract() != 0.0 {
        return Err(ParseError::NotWholeBytes { given: given() });
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::MemoryDevice;

    #[test]
    fn write_blocking_leaves_a_cpu_to_the_writers() {
        let limits: Vec<usize> = [1, 2, 3, 8, 64].map(write_blocking_in_flight).into();
        assert_eq!(limits, [1, 1, 2, 7, MAX_IN_FLIGHT]);
    }

    #[test]
    fn sizes_parse_like_qemu_img() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("16m"), Ok(16 << 20));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        let e = parse_size("-1M").unwrap_err();
        assert_eq!(e, ParseError::Negative { given: "-1M".into() });
        assert!(e.to_string().contains("negative"), "{e}");
        assert_eq!(
            parse_size("12Q"),
            Err(ParseError::UnknownSuffix { given: "12Q".into(), suffix: 'Q' })
        );
        assert_eq!(parse_size("0.3K"), Err(ParseError::NotWholeBytes { given: "0.3K".into() }));
        assert_eq!(parse_size("1.2.3"), Err(ParseError::NotASize { given: "1.2.3".into() }));
        let e = "sometimes".parse::<CopyMode>().unwrap_err();
        assert_eq!(e.to_string(), "\"sometimes\" is not one of: background, write-blocking");
    }

    #[test]
    fn granularity_defaults_from_target_clusters() {
        assert_eq!(default_granularity(&MemoryDevice::new(1 << 20)), 65536);
        assert_eq!(default_granularity(&MemoryDevice::with_clusters(1 << 20, 1 << 21)), 65536);
        assert_eq!(default_granularity(&MemoryDevice::with_clusters(1 << 20, 1024)), 4096);
        assert_eq!(default_granularity(&MemoryDevice::with_clusters(1 << 20, 8192)), 8192);
    }

    #[test]
    fn bad_granularity_and_buffer_are_refused() {
        let t = MemoryDevice::new(1 << 20);
        for g in [0, 256, 3000, 128 << 20] {
            let o = MirrorOptions { granularity: Some(g), ..Default::default() };
            let e = resolve(&o, &t).unwrap_err().to_string();
            assert!(e.contains("granularity"), "{e}");
        }
        let o = MirrorOptions { buf_size: 0, ..Default::default() };
        assert!(resolve(&o, &t).is_err());
    }

    #[test]
    fn buffer_rounds_up_and_ops_merge_up_to_a_sixteenth() {
        let t = MemoryDevice::new(1 << 20);
        let o = MirrorOptions { granularity: Some(65536), buf_size: 100_000, ..Default::default() };
        let r = resolve(&o, &t).unwrap();
        assert_eq!(r.buf_size, 131072);
        assert_eq!(r.max_op, 131072);
        let r = resolve(&MirrorOptions { buf_size: 64 << 20, ..o }, &t).unwrap();
        assert_eq!(r.max_op, 4 << 20);
    }
}
