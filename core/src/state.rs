//! The job's lifecycle states. Below the errors (an error names the state
//! a command was refused in) and the saved job state (which records it);
//! the job moves through them.

use std::fmt;

use serde::Serialize;

/// The job's lifecycle, as in QEMU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobState {
    #[default]
    Created,
    Running,
    Paused,
    Ready,
    /// Paused while ready.
    Standby,
    /// Draining the last writes before the pivot (or a consistent cancel).
    Completing,
    Completed,
    Cancelled,
    Failed,
}

impl JobState {
    pub fn is_terminal(self) -> bool {
        matches!(self, JobState::Completed | JobState::Cancelled | JobState::Failed)
    }

    /// True once the target has been in sync: Complete is accepted.
    pub fn is_ready(self) -> bool {
        matches!(self, JobState::Ready | JobState::Standby)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JobState::Created => "created",
            JobState::Running => "running",
            JobState::Paused => "paused",
            JobState::Ready => "ready",
            JobState::Standby => "standby",
            JobState::Completing => "completing",
            JobState::Completed => "completed",
            JobState::Cancelled => "cancelled",
            JobState::Failed => "failed",
        })
    }
}
