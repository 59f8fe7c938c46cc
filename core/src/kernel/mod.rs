//! Tracking the writes of a disk that livemirror does not front (Linux): a
//! mounted disk written by its own OS.
//!
//! * [`tracker`]: [`KernelTracker`], a BPF program on the block layer's
//!   `block:block_rq_complete` tracepoint that sets a bit per written chunk
//!   in an in-kernel bitmap, drained by userspace with atomic swaps; its
//!   [`barrier`](KernelTracker::barrier) proves that every write completed
//!   before it is in the next drain.
//! * [`freeze`]: [`freeze_all`], FIFREEZE on every filesystem mounted from
//!   the source for the final drain, with a watchdog process that thaws them
//!   if livemirror dies and after a time limit.
//! * [`tracepoint`]: where the tracepoint's record keeps its fields.
//!
//! The job uses all of this through [`KernelWrites`], so the tracker and
//! the freeze may live in this process (root: [`InProcess`]) or in a
//! privileged helper process that holds them for an unprivileged one (the
//! window, which asks polkit for it).
//!
//! Every reason the kernel cannot track a device is a [`TrackError`] the job
//! can show when it falls back to compare passes.

pub mod freeze;
pub mod tracepoint;
pub mod tracker;

use std::io;
use std::ops::Range;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use freeze::{DEFAULT_FREEZE_LIMIT, FreezeError, FreezeHold, freeze_all};
pub use tracker::{Drained, KernelTracker, MAX_SPAN_WORDS, Unseen};

use crate::device::DeviceId;

/// The kernel side of tracking one source's writes, wherever it runs.
pub trait KernelWrites: Send + Sync {
    /// Every chunk written since the last drain, in ascending runs of chunk
    /// indexes ([`KernelTracker::drain`]).
    fn drain(&self, mark: &mut dyn FnMut(Range<u64>)) -> Drained;
    /// Proves that every write completed before this call is in the next
    /// drain ([`KernelTracker::barrier`]).
    fn barrier(&self) -> Result<(), TrackError>;
    /// Freezes every filesystem mounted from the tracked device for at
    /// most `limit` ([`freeze_all`]).
    fn freeze(&self, limit: Duration) -> Result<Box<dyn Frozen>, FreezeError>;
}

/// Filesystems frozen by [`KernelWrites::freeze`]; thawed on drop too.
pub trait Frozen: Send {
    /// How many filesystems are frozen: none when nothing was mounted from
    /// the device, so nothing is held.
    fn filesystems(&self) -> usize;
    /// When the filesystems are thawed by force if still held.
    fn deadline(&self) -> Instant;
    /// Thaws them and says how long writers were held; fails when they
    /// did not stay frozen until now ([`FreezeError::TimeLimit`]).
    fn thaw(self: Box<Self>) -> Result<Duration, FreezeError>;
}

/// Starts kernel tracking of the block device `id` in chunks of
/// `granularity` bytes, marking a completion word by word up to
/// `span_words` bitmap words ([`MAX_SPAN_WORDS`] but in tests).
pub trait AttachKernel: Send + Sync {
    fn attach(
        &self,
        id: &DeviceId,
        granularity: u64,
        span_words: u64,
    ) -> Result<Box<dyn KernelWrites>, TrackError>;
}

/// Tracking and freezing in this process: it needs root.
pub struct InProcess;

impl AttachKernel for InProcess {
    fn attach(
        &self,
        id: &DeviceId,
        granularity: u64,
        span_words: u64,
    ) -> Result<Box<dyn KernelWrites>, TrackError> {
        Ok(Box::new(KernelTracker::attach_with_span_limit(id, granularity, span_words)?))
    }
}

/// Why kernel write tracking cannot be used (the job then falls back to
/// compare passes and says this).
#[derive(Debug, thiserror::Error)]
pub enum TrackError {
    #[error(
        "this livemirror was built without its kernel write tracker (clang was missing at build time)"
    )]
    NotBuilt,
    #[error("kernel write tracking needs a block device; this source is a file or in memory")]
    NotABlockDevice,
    #[error("granularity {0} is not a power of two of at least 512 bytes")]
    BadGranularity(u64),
    #[error(
        "loading the kernel write tracker needs root (CAP_BPF and CAP_PERFMON): {0}; \
         run livemirror as root"
    )]
    NotPrivileged(io::Error),
    #[error("this kernel has no BPF support (the bpf() system call failed: {0})")]
    NoBpf(io::Error),
    #[error(
        "tracefs is not mounted at /sys/kernel/tracing and could not be mounted ({0}); \
         mount it with `mount -t tracefs nodev /sys/kernel/tracing`"
    )]
    NoTracefs(io::Error),
    #[error("this kernel has no tracepoint block:block_rq_complete ({path}: {source})")]
    TracepointMissing { path: PathBuf, source: io::Error },
    #[error("the tracepoint block:block_rq_complete has a layout this tracker cannot read: {0}")]
    TracepointLayout(String),
    #[error(
        "{device} is not a request-based block device ({reason}): its writes (device-mapper, \
         md RAID, zram and other bio-based stacks) never pass the tracepoint the tracker uses"
    )]
    NotRequestBased { device: String, reason: String },
    #[error(
        "{device} is a zoned disk: its zone appends land where only their completion says, \
         which the tracepoint does not record"
    )]
    Zoned { device: String },
    /// Loading, attaching or reading the tracker's program failed (the
    /// loader's error, with the verifier's words, is the source).
    #[error("the kernel refused the write tracker's BPF program ({step}): {source}")]
    Load { step: &'static str, source: Box<dyn std::error::Error + Send + Sync> },
    /// The built object lacks what the tracker needs (a build fault).
    #[error("the write tracker's BPF object has no {what} {name}")]
    Object { what: &'static str, name: &'static str },
    #[error("the marker read of {path} failed: {source}")]
    Marker { path: PathBuf, source: io::Error },
    /// The privileged helper that holds the tracker for this process
    /// could not be started, refused, or went away.
    #[error("the privileged helper: {0}")]
    Helper(#[source] Box<dyn std::error::Error + Send + Sync>),
}
