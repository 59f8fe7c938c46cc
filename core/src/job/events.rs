//! What a job tells the world (events, status) and what it can be told
//! (decisions). The shapes serialise to the control socket's JSON.

use serde::Serialize;

use crate::error::{IoFailure, JobFailure};
use crate::options::{CopyMode, Tracking};
use crate::state::JobState;

/// The state of the job's I/O, as QEMU's `io-status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IoStatus {
    #[default]
    Ok,
    Failed,
    Nospace,
}

/// What the job did about an I/O error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorAction {
    /// The job fails.
    Report,
    /// The range stays dirty and is retried later.
    Ignore,
    /// The job paused and waits for a [`Decision`].
    Stop,
}

impl ErrorAction {
    pub fn name(self) -> &'static str {
        match self {
            ErrorAction::Report => "report",
            ErrorAction::Ignore => "ignore",
            ErrorAction::Stop => "stop",
        }
    }
}

/// The answer to an error under the `stop` policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    /// Try the failed range again now.
    Retry,
    /// Go on with the rest; the failed range stays dirty and is retried in a
    /// later pass (the target is not in sync until it succeeds).
    Ignore,
    /// End the job; the target is left incomplete.
    Stop,
}

/// Byte counts of the job's progress, as QEMU's job offset and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Progress {
    /// Bytes copied (including zeroed and skipped) since the start.
    pub copied: u64,
    /// `copied` plus what is still dirty or in flight: grows with writes.
    pub total: u64,
    /// Bytes dirty now.
    pub dirty: u64,
    /// Bytes being copied now.
    pub in_flight: u64,
    /// Average over the last progress interval.
    pub bytes_per_sec: u64,
    /// Bytes left to copy by the last completed save of the job's state
    /// (see [`crate::persist`]): what a run resumed after a crash now would
    /// copy. None while nothing is saved (or the job keeps no state).
    pub saved: Option<u64>,
}

/// Everything the job reports, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", content = "data", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobEvent {
    StateChanged {
        state: JobState,
    },
    Progress(Progress),
    Ready,
    Error {
        #[serde(flatten)]
        failure: IoFailure,
        action: ErrorAction,
    },
    /// The pivot is done. `identical` is true only when `proof` proves it.
    /// `held_ms`: how long the source's filesystems were frozen for the
    /// last drain (kernel tracking of a mounted source), else none.
    /// `copied`, `zeroed`, `skipped`: bytes written to the target as
    /// data, as zeroes, and left alone because it already read as zero, by
    /// this run (a resumed job counts only what it did); `duration_s` from
    /// the job's start.
    Completed {
        tracking: Tracking,
        proof: Proof,
        identical: bool,
        held_ms: Option<u64>,
        copied: u64,
        zeroed: u64,
        skipped: u64,
        #[serde(rename = "duration_s", serialize_with = "seconds")]
        duration_ms: u64,
    },
    /// The job's state could not be saved (see [`crate::persist`]): a crash
    /// now would resume from an older save, or start over. Said once until
    /// a save succeeds again.
    NotSaved {
        reason: String,
    },
    /// Kernel tracking could not name every chunk written since its last
    /// drain (`reason` says why): the job compares the whole source with
    /// the target once, and recopies what differs, before it is in sync.
    Rescanning {
        reason: String,
    },
    /// The source's tracking fell back to `tracking` (a program opened a
    /// leased source for writing: `reason`); from now on the job tracks,
    /// verifies and claims as that tracking does.
    TrackingChanged {
        tracking: Tracking,
        reason: String,
    },
    /// A Complete (or a Cancel after ready) could not hold the source's
    /// writers for its last drain — the freeze failed or ran over its limit
    /// and was thawed — so the job is ready again and may be asked again.
    CompleteFailed {
        reason: String,
    },
    Cancelled {
        consistent: bool,
    },
    Failed {
        error: JobFailure,
    },
}

/// Milliseconds as seconds, for `duration_s`.
fn seconds<S: serde::Serializer>(ms: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(*ms as f64 / 1000.0)
}

impl JobEvent {
    /// True for the job's last event.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            JobEvent::Completed { .. } | JobEvent::Cancelled { .. } | JobEvent::Failed { .. }
        )
    }
}

/// What backs a completed job's claim that the target equals the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Proof {
    /// Every write to the source went through a tracker that saw it (the
    /// live source's NBD export, kernel tracking with the source's
    /// filesystems frozen for the last drain): identical.
    Tracked,
    /// Kernel tracking of a source nothing was mounted from, so nothing
    /// could be frozen: every write completed before the last drain is in
    /// the target, which is consistent only if the source's writers had
    /// stopped. Not proven identical.
    TrackedUnheld,
    /// Not tracked, but a final comparison after the last copy, with
    /// livemirror's own writers held, found no difference: identical as
    /// compared.
    Verified,
    /// Compare passes: in sync as of the last pass; writes made around
    /// livemirror during it may be missing.
    LastPass,
    /// Not tracked and not verified: in sync as far as livemirror saw;
    /// writes by other programs are not seen.
    Unverified,
}

impl Proof {
    /// True when the target is proven identical.
    pub fn identical(self) -> bool {
        matches!(self, Proof::Tracked | Proof::Verified)
    }
}

/// A snapshot of the job, kept current for queries and the GUI. The
/// default is a job just created, with nothing done.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct JobStatus {
    pub state: JobState,
    pub progress: Progress,
    pub speed: u64,
    pub copy_mode: CopyMode,
    /// How writes to the source are seen.
    pub tracking: Tracking,
    /// The job compares source and target once more before it ends.
    pub verify: bool,
    pub io_status: IoStatus,
    /// True once `Ready` has been emitted.
    pub ready: bool,
    /// How long the last drain froze the source's filesystems, once done.
    pub held_ms: Option<u64>,
    /// The error waiting for a [`Decision`], if any.
    pub pending_error: Option<IoFailure>,
    /// Copies that failed and were retried (ignore policy or decisions).
    pub errors: u64,
    /// Bytes written as data / as zeroes / skipped because the target
    /// already read as zero.
    pub data_bytes: u64,
    pub zero_bytes: u64,
    pub skipped_bytes: u64,
    /// Bytes shared with the source by reflink (two files of one
    /// filesystem that shares extents) instead of written.
    pub cloned_bytes: u64,
    /// How the job ended, once it has.
    pub outcome: Option<Outcome>,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The target was in sync and the source now serves it; `proof` says
    /// what backs "in sync".
    Completed {
        proof: Proof,
    },
    /// Cancelled; `consistent` says whether the target is a full copy.
    Cancelled {
        consistent: bool,
    },
    Failed {
        error: JobFailure,
    },
}

impl Outcome {
    /// True when the target holds a whole copy (up to what the job's proof
    /// says): the job completed, or was cancelled once in sync.
    pub fn target_consistent(&self) -> bool {
        matches!(self, Outcome::Completed { .. } | Outcome::Cancelled { consistent: true })
    }
}
