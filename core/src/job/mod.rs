//! The mirror job: QEMU's block mirror semantics over [`BlockDevice`]s.
//!
//! [`start`] checks the request, attaches a [`Tracker`] to the live source
//! and spawns the job's loop on the current tokio runtime. The returned
//! [`JobHandle`] sends commands; [`JobStatus`] snapshots and [`JobEvent`]s
//! come back over watch and broadcast channels.

mod copy;
mod events;
mod handle;
mod kernel_feed;
mod machine;
mod persist;
mod rescan;
mod runner;
#[cfg(test)]
mod sizes;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{broadcast, mpsc, watch};
use tracing::Instrument;

pub use crate::options::{
    CopyMode, DEFAULT_BUF_SIZE, DEFAULT_FREEZE_LIMIT_MS, ErrorPolicy, MAX_GRANULARITY,
    MAX_IN_FLIGHT, MIN_GRANULARITY, MirrorOptions, ParseError, Resolved, SyncMode, Tracking,
    default_granularity, parse_size, resolve, write_blocking_in_flight,
};
pub use crate::state::JobState;
pub use events::{Decision, ErrorAction, IoStatus, JobEvent, JobStatus, Outcome, Progress, Proof};
pub use handle::{Command, JobHandle};
pub use persist::{Persist, Resume, SAVE_EVERY};

use crate::chunkmap::ChunkMap;
use crate::device::{BlockDevice, DeviceId, Prefix};
use crate::error::{BadOption, Error, Untrackable};
use crate::live::{Geometry, LiveSource, ReadLease, Tracker};
use crate::partition::{self, Fit};

/// Events are buffered this deep per subscriber; progress comes at 4 Hz, so
/// a subscriber has minutes before it lags.
const EVENT_BUFFER: usize = 4096;

/// Numbers the jobs of the process, for the logs.
static NEXT_JOB: AtomicU64 = AtomicU64::new(1);

/// Refuses pairs that must not be mirrored (the same storage twice: same
/// file, same disk, overlapping partitions; a mounted target; a smaller
/// target that cannot take what the source uses) and decides how the sizes
/// fit (see [`partition::decide`]). Only reads.
pub fn check_pair(source: &dyn BlockDevice, target: &dyn BlockDevice) -> Result<Fit, Error> {
    refuse_same_or_mounted(source, target)?;
    partition::decide(source, target)
}

/// [`check_pair`] without reading the source past a smaller target's end
/// for data (see [`partition::decide_by_table`]): for a screen that checks
/// as the user types. [`start`] checks in full.
pub fn preview_pair(source: &dyn BlockDevice, target: &dyn BlockDevice) -> Result<Fit, Error> {
    refuse_same_or_mounted(source, target)?;
    partition::decide_by_table(source, target)
}

/// Refuses a target that is the source (or overlaps it), or a disk with a
/// mounted filesystem. Also what a flash (a compressed source) checks.
pub fn refuse_same_or_mounted(
    source: &dyn BlockDevice,
    target: &dyn BlockDevice,
) -> Result<(), Error> {
    if source.id().overlaps(&target.id()) {
        return Err(Error::SameDevice { target: target.describe() });
    }
    if let DeviceId::Block { .. } = target.id() {
        let mounts = crate::device::mounts_on(&target.id());
        if !mounts.is_empty() {
            return Err(Error::TargetMounted { target: target.describe(), mounts });
        }
    }
    Ok(())
}

/// Starts mirroring `live`'s device onto `target`. Returns once the job is
/// running, with a handle and the first subscription to its events (so no
/// event is missed).
///
/// Devices of different sizes are mirrored over `[0, fit.copy_len)` only:
/// the job sees both through a [`Prefix`] of that length, so nothing of its
/// semantics changes, and a pivot onto a larger target keeps serving the
/// source's size. A live write past a smaller target's range fails the job.
pub fn start(
    live: Arc<LiveSource>,
    target: Arc<dyn BlockDevice>,
    opts: MirrorOptions,
) -> Result<(JobHandle, broadcast::Receiver<JobEvent>), Error> {
    launch(live, target, opts, None, None)
}

/// [`start`], keeping the job's state in `persist.path` as it runs (and
/// resuming from `persist.resume`): see [`crate::persist`].
pub fn start_persisted(
    live: Arc<LiveSource>,
    target: Arc<dyn BlockDevice>,
    opts: MirrorOptions,
    persist: Option<Persist>,
) -> Result<(JobHandle, broadcast::Receiver<JobEvent>), Error> {
    launch(live, target, opts, None, persist)
}

/// [`start`], with `Tracking::Kernel` attached through `kernel` rather
/// than in this process (which needs root): the window's privileged helper.
#[cfg(target_os = "linux")]
pub fn start_tracked_by(
    live: Arc<LiveSource>,
    target: Arc<dyn BlockDevice>,
    opts: MirrorOptions,
    kernel: &(dyn crate::kernel::AttachKernel + 'static),
    persist: Option<Persist>,
) -> Result<(JobHandle, broadcast::Receiver<JobEvent>), Error> {
    launch(live, target, opts, Some(kernel), persist)
}

fn launch(
    live: Arc<LiveSource>,
    target: Arc<dyn BlockDevice>,
    opts: MirrorOptions,
    kernel: Option<&kernel_feed::Attach>,
    persist: Option<Persist>,
) -> Result<(JobHandle, broadcast::Receiver<JobEvent>), Error> {
    let source = live.device();
    let names = (source.describe(), target.describe());
    // The whole source's identity: the kernel counts chunks from its start.
    let source_id = source.id();
    let fit = check_pair(&*source, &*target)?;
    let view = |dev: Arc<dyn BlockDevice>| -> Arc<dyn BlockDevice> {
        if dev.len() == fit.copy_len { dev } else { Arc::new(Prefix::new(dev, fit.copy_len)) }
    };
    let (source, target) = (view(source), view(target));
    let resolved = resolve(&opts, &*target)?;
    let geometry = Geometry { len: fit.copy_len, granularity: resolved.granularity };
    if let Some(resume) = persist.as_ref().and_then(|p| p.resume.as_ref())
        && resume.dirty.len() != geometry.chunks()
    {
        return Err(Error::InvalidOption(BadOption::SavedMap {
            saved: resume.dirty.len(),
            job: geometry.chunks(),
        }));
    }
    let kernel = match opts.tracking {
        Tracking::Kernel => {
            // (Not a disk: attaching says so, the better reason.)
            if matches!(source_id, DeviceId::Block { .. }) && !source.reads_direct() {
                return Err(Error::TrackingUnavailable(Untrackable::ThroughPageCache));
            }
            let limit = std::time::Duration::from_millis(opts.freeze_limit_ms);
            let span = opts.kernel_span_limit;
            let granularity = resolved.granularity;
            let feed =
                kernel_feed::KernelFeed::attach(&source_id, granularity, limit, span, kernel)
                    .map_err(|e| Error::TrackingUnavailable(Untrackable::Kernel(Box::new(e))))?;
            Some(Arc::new(feed))
        }
        _ => None,
    };
    // Taken before the first copy: a write before it is in the file by then.
    let lease = match opts.tracking {
        Tracking::Lease => {
            let file = live
                .device()
                .regular_file()
                .map(ReadLease::take)
                .ok_or(Error::TrackingUnavailable(Untrackable::NotAnImage))?;
            let lease = file.map_err(|e| {
                Error::TrackingUnavailable(match e.raw_os_error() {
                    Some(libc::EAGAIN) => Untrackable::OpenForWriting,
                    Some(libc::EACCES) => Untrackable::OtherOwner,
                    _ => Untrackable::NoLease(e),
                })
            })?;
            Some(lease)
        }
        _ => None,
    };
    let map = Arc::new(ChunkMap::new(geometry.chunks(), geometry.granularity));
    let tracker = Arc::new(Tracker::new(geometry, target.clone(), map.clone(), opts.copy_mode));
    live.attach(tracker.clone())?;

    let (events, first) = broadcast::channel(EVENT_BUFFER);
    let (status_tx, status) = watch::channel(runner::initial_status(&opts));
    let (commands, command_rx) = mpsc::unbounded_channel();
    let runner = runner::Runner::new(runner::Setup {
        live,
        source,
        target,
        tracker,
        kernel,
        lease,
        opts,
        resolved,
        events: events.clone(),
        status: status_tx,
        commands: command_rx,
        persist,
    });
    let span = tracing::info_span!(
        "job",
        id = NEXT_JOB.fetch_add(1, Ordering::Relaxed),
        source = %names.0,
        target = %names.1,
    );
    tokio::spawn(runner.run().instrument(span));
    Ok((JobHandle::new(commands, status, events, map, geometry, fit), first))
}
