//! The engine's one error type: a kind the GUI and CLI can match on, and the
//! context a person needs (path, side, operation, offset, OS error).

use std::fmt;
use std::io;
use std::path::PathBuf;

use serde::Serialize;

use crate::state::JobState;
use crate::units::human;

/// Which device an I/O error happened on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Side {
    Source,
    Target,
}

/// The operation that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IoOperation {
    Read,
    Write,
    WriteZeroes,
    Flush,
    BlockStatus,
}

/// A failed I/O, with everything needed to report or retry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IoFailure {
    pub side: Side,
    pub operation: IoOperation,
    pub offset: u64,
    pub len: u64,
    /// The OS error number (on Linux EIO = 5, ENOSPC = 28, …); 0 if there
    /// was none.
    pub errno: i32,
    /// The OS's text for the error.
    pub message: String,
    /// The device is gone, not just this request: the connection to an NBD
    /// server was lost (reset, refused, timed out), or a local disk was
    /// unplugged (`ENODEV`, `ENXIO`, or `EIO` that a probe of its first
    /// block gets too). Every request fails until it is back, so the job
    /// asks "Retry / Stop" rather than failing on what may be a blip.
    pub lost: bool,
}

impl IoFailure {
    pub fn new(side: Side, operation: IoOperation, offset: u64, len: u64, e: &io::Error) -> Self {
        let errno = errno_in(e);
        IoFailure { side, operation, offset, len, errno, message: e.to_string(), lost: gone(errno) }
    }

    /// True when the device was lost because its connection to a server
    /// broke; a lost device that is not this is a local disk that went away.
    pub fn connection_lost(&self) -> bool {
        self.lost && broken_connection(self.errno)
    }

    /// True for "no space left on device" (`ENOSPC`, or Windows'
    /// `ERROR_DISK_FULL`), which the `enospc` policy stops on.
    pub fn is_nospace(&self) -> bool {
        io::Error::from_raw_os_error(self.errno).kind() == io::ErrorKind::StorageFull
    }
}

/// True for the errors of a device that is no longer there (see
/// [`IoFailure::lost`]).
fn gone(errno: i32) -> bool {
    if errno == 0 {
        return false;
    }
    #[cfg(unix)]
    if [libc::ENODEV, libc::ENXIO, libc::ESHUTDOWN].contains(&errno) {
        return true;
    }
    broken_connection(errno)
}

/// True for the errors of a connection to a server that broke (the other
/// way a device is lost: see [`IoFailure::connection_lost`]).
fn broken_connection(errno: i32) -> bool {
    use io::ErrorKind::*;
    errno != 0
        && matches!(
            io::Error::from_raw_os_error(errno).kind(),
            ConnectionReset
            | ConnectionAborted
            | ConnectionRefused
            | BrokenPipe
            | NotConnected
            | TimedOut
            // The server's unix socket is gone (a reconnect found no socket).
            | NotFound
        )
}

/// The first OS error number in `e`'s chain of causes, also when an
/// `io::Error` wraps one under a message of its own (the NBD client's
/// "connection lost: …" over ECONNRESET); 0 if there is none.
fn errno_in(e: &(dyn std::error::Error + 'static)) -> i32 {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<io::Error>() {
            if let Some(n) = io.raw_os_error() {
                return n;
            }
            if let Some(inner) = io.get_ref() {
                cause = Some(inner);
                continue;
            }
        }
        cause = c.source();
    }
    0
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Source => "source",
            Side::Target => "target",
        })
    }
}

impl fmt::Display for IoOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IoOperation::Read => "read",
            IoOperation::Write => "write",
            IoOperation::WriteZeroes => "zero-write",
            IoOperation::Flush => "flush",
            IoOperation::BlockStatus => "block-status",
        })
    }
}

impl fmt::Display for IoFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} failed at offset {} (+{} bytes): {}",
            self.side, self.operation, self.offset, self.len, self.message
        )
    }
}

/// Why a job failed: kept typed so a front end can tell "target full" from
/// "bad sector" from "someone writes the source around us".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobFailure {
    /// An I/O error under the `report` policy.
    #[error("{0}")]
    Io(IoFailure),
    /// Someone chose Stop on a stop-policy error.
    #[error("stopped after an error: {0}")]
    Stopped(IoFailure),
    /// The final comparison kept finding differences.
    #[error(
        "not identical: the source is being written by another program ({passes} comparisons in a row found differences, the first at byte {offset})"
    )]
    NotIdentical { passes: u32, offset: u64 },
    /// A live write landed past the range a smaller target takes.
    #[error(
        "the source was written at byte {offset}, past the {} the smaller target takes: the target is no longer a copy",
        human(*copy_len)
    )]
    WrittenPastTarget { offset: u64, copy_len: u64 },
    /// The kernel write tracker stopped proving that it sees the source's
    /// writes: nothing it reported can be trusted any more.
    #[error("kernel write tracking failed: {0}")]
    TrackingLost(TrackingLoss),
    /// The job's task ended without an outcome: a bug.
    #[error("the job stopped unexpectedly")]
    Vanished,
}

impl JobFailure {
    /// The I/O error behind the failure, if there was one.
    pub fn io(&self) -> Option<&IoFailure> {
        match self {
            JobFailure::Io(f) | JobFailure::Stopped(f) => Some(f),
            _ => None,
        }
    }
}

/// Why write tracking stopped mid-job: the OS error under it (as
/// [`IoFailure`] keeps one) and the tracker's own words for it. Kept as
/// values, not the error itself, so a [`JobFailure`] stays cloneable for
/// every subscriber of the outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrackingLoss {
    /// The OS error number found under the tracker's error; 0 if none.
    pub errno: i32,
    pub message: String,
}

impl TrackingLoss {
    pub fn new(e: &(dyn std::error::Error + 'static)) -> Self {
        TrackingLoss { errno: errno_in(e), message: e.to_string() }
    }
}

impl fmt::Display for TrackingLoss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// On the control socket and in `--json`, a failure is its sentence.
impl Serialize for JobFailure {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Why a smaller target cannot take the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoFit {
    /// A partition reaches past the target's usable end (`room`).
    PartitionPastEnd { number: u32, end: u64, room: u64 },
    /// Data past the target's usable end, outside every partition.
    DataPastEnd { at: u64 },
    /// Without a partition table nothing says which bytes are unused.
    NoTable,
    /// The source's table is not one a disk could hold.
    Damaged { reason: String },
}

impl fmt::Display for NoFit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoFit::PartitionPastEnd { number, end, room } => write!(
                f,
                "partition {number} ends at {}; the target has {}",
                human(*end),
                human(*room)
            ),
            NoFit::DataPastEnd { at } => {
                write!(f, "data at {} past the last partition", human(*at))
            }
            NoFit::NoTable => f.write_str(
                "the source has no partition table, so nothing tells which of its bytes are unused",
            ),
            NoFit::Damaged { reason } => {
                write!(f, "the source's partition table is damaged: {reason}")
            }
        }
    }
}

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open {}: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },

    #[error(
        "the target ({}) is smaller than the source ({}) and cannot take it: {reason}",
        human(*target_len), human(*source_len)
    )]
    DoesNotFit { source_len: u64, target_len: u64, reason: NoFit },

    #[error(
        "source and target are the same device ({target}): refusing to mirror a device into itself"
    )]
    SameDevice { target: String },

    #[error("target {target} is in use: mounted at {}", mounts.join(", "))]
    TargetMounted { target: String, mounts: Vec<String> },

    #[error("{0}")]
    InvalidOption(BadOption),

    /// The tracking asked for cannot be had here.
    #[error("{what} cannot be used: {0}", what = .0.tracking())]
    TrackingUnavailable(Untrackable),

    #[error("cannot {verb} while the job is {state}")]
    WrongState { verb: &'static str, state: JobState },

    #[error("{0}")]
    Io(IoFailure),

    #[error("the source already has a mirror job attached")]
    AlreadyMirrored,

    #[error("the job has ended")]
    JobEnded,
}

/// An option, or a combination, the engine cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadOption {
    #[error("granularity {0} must be a power of two from 512 bytes to 64 MiB")]
    Granularity(u64),
    #[error("buffer size must be positive")]
    ZeroBuffer,
    /// A resumed job's saved dirty map does not fit this job's geometry.
    #[error("the saved map has {saved} chunks; this job has {job}")]
    SavedMap { saved: u64, job: u64 },
    #[error("a job in write-blocking mode cannot go back to background mode")]
    NoWayBack,
}

/// Why the write tracking asked for cannot be had: the reason alone (the
/// [`Error`] names the tracking).
#[derive(Debug, thiserror::Error)]
pub enum Untrackable {
    #[error(
        "the source is read through the page cache, which a mounted filesystem's writes go \
         around: kernel tracking needs it opened with O_DIRECT"
    )]
    ThroughPageCache,
    /// The kernel tracker could not be attached (its error says why).
    #[error("{0}")]
    Kernel(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the source is not an image file")]
    NotAnImage,
    #[error("another program has the source open for writing")]
    OpenForWriting,
    #[error("the source belongs to another user")]
    OtherOwner,
    #[error("no read lease on the source: {0}")]
    NoLease(#[source] io::Error),
}

impl Untrackable {
    /// The tracking that cannot be had.
    pub fn tracking(&self) -> &'static str {
        match self {
            Untrackable::ThroughPageCache | Untrackable::Kernel(_) => "kernel write tracking",
            _ => "a read lease",
        }
    }
}
