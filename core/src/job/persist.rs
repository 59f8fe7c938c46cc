//! Keeping a running job's state on disk (the file and its crash rule are
//! [`crate::persist`]'s): the runner asks for a save every
//! [`SAVE_EVERY`] and at every state change; this takes the snapshot and
//! does the flush and the write on a blocking thread, one save at a time.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::bitmap::DirtyBitmap;
use crate::device::BlockDevice;
use crate::live::{Tracker, WriteLog};
use crate::options::MirrorOptions;
use crate::persist::{self, Header, Identity, SavedJob, SinceComplete};
use crate::state::JobState;

/// How often the state is saved while nothing else asks for a save.
pub const SAVE_EVERY: Duration = Duration::from_secs(2);

/// What a job needs to keep its state on disk, and to resume from it.
#[derive(Debug, Clone)]
pub struct Persist {
    /// The state file.
    pub path: PathBuf,
    pub identity: Identity,
    /// Where an earlier run stopped, if this job resumes one.
    pub resume: Option<Resume>,
    /// Given when the target goes on being served after Complete
    /// (`serve --mirror-to`): the writes it takes since are noted here, and
    /// the file stays, saying so, for the server to finish
    /// ([`persist::SinceComplete`]). Without it a completed job's file is
    /// removed.
    pub write_log: Option<Arc<WriteLog>>,
}

/// A saved map to start from instead of the sync mode's.
#[derive(Debug, Clone)]
pub struct Resume {
    /// Dirty (or in flight) when it was saved.
    pub dirty: DirtyBitmap,
    /// The source may have been written while no livemirror was tracking
    /// it: the chunks the map calls clean are compared first, and those
    /// that differ copied too.
    pub compare_clean: bool,
}

/// What decides whether a save would write anything new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Content {
    map_crc: u32,
    /// Bytes the map says are left.
    remaining: u64,
    dirty: u64,
    state: JobState,
    source_mtime_ns: Option<u64>,
}

/// The runner's saver.
pub(super) struct Saver {
    path: PathBuf,
    identity: Identity,
    options: MirrorOptions,
    tracker: Arc<Tracker>,
    target: Arc<dyn BlockDevice>,
    /// No save until the map holds what the job must copy: an empty map
    /// saved before that would call everything copied.
    armed: bool,
    last: Option<Instant>,
    running: Option<JoinHandle<io::Result<Content>>>,
    /// A save was asked for while one ran.
    again: bool,
    written: Option<Content>,
}

impl Saver {
    pub(super) fn new(
        persist: &Persist,
        options: MirrorOptions,
        tracker: Arc<Tracker>,
        target: Arc<dyn BlockDevice>,
    ) -> Self {
        Saver {
            path: persist.path.clone(),
            identity: persist.identity.clone(),
            options,
            tracker,
            target,
            armed: false,
            last: None,
            running: None,
            again: false,
            written: None,
        }
    }

    /// The map now holds everything the job must copy: saves may begin.
    pub(super) fn arm(&mut self) {
        self.armed = true;
    }

    pub(super) fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// True when the last save is [`SAVE_EVERY`] old.
    pub(super) fn due(&self) -> bool {
        self.last.is_none_or(|t| t.elapsed() >= SAVE_EVERY)
    }

    /// Starts a save, or has one follow the save under way.
    pub(super) fn request(&mut self, state: JobState) {
        if !self.armed {
            return;
        }
        if self.running.is_some() {
            self.again = true;
            return;
        }
        let (job, target, path, written) = self.prepare(state);
        self.last = Some(Instant::now());
        self.running =
            Some(tokio::task::spawn_blocking(move || commit(&*target, &path, job, written)));
    }

    /// Waits for the save under way: the bytes it says are left, and
    /// whether another save must start.
    pub(super) async fn finished(&mut self) -> (io::Result<u64>, bool) {
        let Some(task) = self.running.as_mut() else { return (Ok(0), false) };
        let result = task.await.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        self.running = None;
        let again = std::mem::take(&mut self.again);
        let remaining = result.map(|content| {
            self.written = Some(content);
            content.remaining
        });
        (remaining, again)
    }

    /// The job's last save (it ended without a pivot): written whatever the
    /// last one held, so the file says how it ended.
    pub(super) async fn last_save(mut self, state: JobState) -> io::Result<()> {
        // A save still running is superseded: this one's result is the one
        // that says whether the file is good.
        let _ = self.finished().await;
        if !self.armed {
            return Ok(());
        }
        let (job, target, path, _) = self.prepare(state);
        tokio::task::spawn_blocking(move || commit(&*target, &path, job, None).map(|_| ()))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    /// The job completed: nothing is left to resume. The file is removed,
    /// unless the target goes on being served (`serving`): then it says
    /// so, with an empty map, until the server writes what was written.
    pub(super) async fn completed(mut self, serving: bool) -> io::Result<()> {
        let _ = self.finished().await;
        if !serving {
            return persist::remove(&self.path);
        }
        let (mut job, target, path, _) = self.prepare(JobState::Completed);
        job.header.since_complete = Some(SinceComplete { serving: true, target_mtime_ns: None });
        tokio::task::spawn_blocking(move || commit(&*target, &path, job, None).map(|_| ()))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    /// The snapshot, in the crash rule's order: the source's modification
    /// time first (a write after it changes it), then dirty ∪ in flight.
    #[allow(clippy::type_complexity)]
    fn prepare(
        &self,
        state: JobState,
    ) -> (SavedJob, Arc<dyn BlockDevice>, PathBuf, Option<Content>) {
        let source_mtime_ns = persist::file_mtime_ns(self.identity.source.path.as_ref());
        let dirty = self.tracker.snapshot();
        let g = self.tracker.geometry;
        let header = Header {
            identity: self.identity.clone(),
            options: self.options.clone(),
            granularity: g.granularity,
            copy_len: g.len,
            state,
            saved_at_ms: persist::now_ms(),
            source_mtime_ns,
            samples: Vec::new(),
            since_complete: None,
        };
        (SavedJob { header, dirty }, self.target.clone(), self.path.clone(), self.written)
    }
}

/// Flushes the target, then writes the state (unless it says what the file
/// already does). Runs on a blocking thread.
fn commit(
    target: &dyn BlockDevice,
    path: &std::path::Path,
    mut job: SavedJob,
    written: Option<Content>,
) -> io::Result<Content> {
    let mut crc = crc32fast::Hasher::new();
    for w in job.dirty.words() {
        crc.update(&w.to_le_bytes());
    }
    let content = Content {
        map_crc: crc.finalize(),
        remaining: job.remaining(),
        dirty: job.dirty.count(),
        state: job.header.state,
        source_mtime_ns: job.header.source_mtime_ns,
    };
    if written == Some(content) {
        return Ok(content);
    }
    // Every copy that finished before the snapshot reaches the medium
    // before the file calls its chunks clean.
    target.flush()?;
    let h = &job.header;
    job.header.samples = persist::take_samples(target, h.granularity, h.copy_len, &job.dirty)?;
    persist::save(path, &job)?;
    Ok(content)
}
