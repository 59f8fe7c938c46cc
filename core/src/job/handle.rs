//! The handle a GUI, CLI or control socket holds to drive a running job.

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::events::{Decision, JobEvent, JobStatus, Outcome};
use crate::chunkmap::ChunkMap;
use crate::error::{Error, JobFailure};
use crate::live::Geometry;
use crate::options::CopyMode;
use crate::partition::Fit;

/// What the job can be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    SetSpeed(u64),
    Pause,
    Resume,
    /// Only when ready: drain, flush, pivot to the target.
    Complete,
    /// Before ready (or with `force`): stop now, target incomplete. After
    /// ready: finish outstanding copies, target consistent, no pivot.
    Cancel {
        force: bool,
    },
    SetCopyMode(CopyMode),
    Decide(Decision),
}

impl Command {
    /// The verb, as on the control socket, for error messages.
    pub fn verb(&self) -> &'static str {
        match self {
            Command::SetSpeed(_) => "set-speed",
            Command::Pause => "pause",
            Command::Resume => "resume",
            Command::Complete => "complete",
            Command::Cancel { .. } => "cancel",
            Command::SetCopyMode(_) => "set-copy-mode",
            Command::Decide(_) => "decide",
        }
    }
}

pub(super) type Request = (Command, oneshot::Sender<Result<(), Error>>);

/// A cloneable handle to one job.
#[derive(Clone)]
pub struct JobHandle {
    commands: mpsc::UnboundedSender<Request>,
    status: watch::Receiver<JobStatus>,
    events: broadcast::Sender<JobEvent>,
    map: Arc<ChunkMap>,
    geometry: Geometry,
    fit: Arc<Fit>,
}

impl JobHandle {
    pub(super) fn new(
        commands: mpsc::UnboundedSender<Request>,
        status: watch::Receiver<JobStatus>,
        events: broadcast::Sender<JobEvent>,
        map: Arc<ChunkMap>,
        geometry: Geometry,
        fit: Fit,
    ) -> Self {
        JobHandle { commands, status, events, map, geometry, fit: Arc::new(fit) }
    }

    /// Sends a command and waits for the job to accept or refuse it. Refusals
    /// name the verb and the state (`cannot complete while the job is
    /// running`).
    pub async fn send(&self, cmd: Command) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.commands.send((cmd, tx)).map_err(|_| Error::JobEnded)?;
        rx.await.map_err(|_| Error::JobEnded)?
    }

    /// Sends a command without waiting for the answer (for UIs that must not
    /// block; the outcome shows up in status and events).
    pub fn post(&self, cmd: Command) {
        let (tx, _rx) = oneshot::channel();
        // Fails only once the job has ended, which status already says.
        let _ = self.commands.send((cmd, tx));
    }

    /// The latest status.
    pub fn status(&self) -> JobStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change.
    pub fn watch(&self) -> watch::Receiver<JobStatus> {
        self.status.clone()
    }

    /// A new subscription to the job's events, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.events.subscribe()
    }

    /// The heatmap summary, updated live.
    pub fn chunk_map(&self) -> &Arc<ChunkMap> {
        &self.map
    }

    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// How the target's size compares with the source's, and what the job
    /// mirrors (`[0, fit.copy_len)`): what the table fix-up needs afterwards.
    pub fn fit(&self) -> &Fit {
        &self.fit
    }

    /// Waits until the job ends and says how.
    pub async fn wait(&self) -> Outcome {
        let mut rx = self.status.clone();
        loop {
            if let Some(o) = rx.borrow_and_update().outcome.clone() {
                return o;
            }
            if rx.changed().await.is_err() {
                // The job task is gone without an outcome: only a panic does that.
                return Outcome::Failed { error: JobFailure::Vanished };
            }
        }
    }
}
