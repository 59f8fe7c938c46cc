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
        let errno = errno_of(e);
        IoFailure { side, operation, offset, len, errno, message: e.to_string(), lost: gone(errno) }
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
    use io::ErrorKind::*;
    if errno == 0 {
        return false;
    }
    #[cfg(unix)]
    if [libc::ENODEV, libc::ENXIO, libc::ESHUTDOWN].contains(&errno) {
        return true;
    }
    matches!(
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

/// The OS error number of `e`, also when it wraps one under a message of
/// its own (the NBD client's "connection lost: …" over ECONNRESET); 0 if
/// there is none.
fn errno_of(e: &io::Error) -> i32 {
    if let Some(n) = e.raw_os_error() {
        return n;
    }
    let mut cause = e.get_ref().and_then(|inner| inner.source());
    while let Some(c) = cause {
        if let Some(n) = c.downcast_ref::<io::Error>().and_then(io::Error::raw_os_error) {
            return n;
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
    TrackingLost(String),
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
    /// The source's table cannot be read.
    Damaged(String),
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
            NoFit::Damaged(why) => f.write_str(why),
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
    InvalidOption(String),

    /// `Tracking::Kernel` was asked for and cannot be had here.
    #[error("kernel write tracking cannot be used: {0}")]
    TrackingUnavailable(String),

    #[error("cannot {verb} while the job is {state}")]
    WrongState { verb: &'static str, state: JobState },

    #[error("{0}")]
    Io(IoFailure),

    #[error("the source already has a mirror job attached")]
    AlreadyMirrored,

    #[error("the job has ended")]
    JobEnded,
}
