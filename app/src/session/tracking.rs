//! Which tracking a job gets, and starting it with that — for `clone` and
//! the window alike, so both pick the same way and say the same thing.
//!
//! In order: kernel tracking for a block device (in this process as root,
//! else through the privileged helper that pkexec starts), then compare
//! passes for a mounted source, then none. (NBD tracking is chosen by
//! serving the source, which `serve` and the window's share do.)

use std::path::Path;
use std::sync::Arc;

use livemirror_core::device::BlockDevice;
use livemirror_core::error::Error;
use livemirror_core::job::{self, JobEvent, JobHandle, MirrorOptions, Persist, Tracking};
use livemirror_core::live::LiveSource;
use tokio::sync::broadcast::Receiver;

/// A started job, and what was said while picking its tracking (a
/// fallback and its reason), for the terminal or the window's log.
pub struct Started {
    pub job: JobHandle,
    pub events: Receiver<JobEvent>,
    pub notes: Vec<String>,
}

/// Starts the job with `options.tracking`; `Tracking::Kernel` through
/// [`start_kernel`]. Refused with the reason when that tracking is
/// impossible here. `persist`: where the job keeps its state (see
/// [`crate::session::resume`]).
pub fn start_as_asked(
    live: Arc<LiveSource>,
    target: Arc<dyn BlockDevice>,
    options: MirrorOptions,
    source: &Path,
    persist: Option<Persist>,
) -> Result<Started, Error> {
    let (job, events) = match options.tracking {
        Tracking::Kernel => start_kernel(live, target, options, source, persist)?,
        _ => job::start_persisted(live, target, options, persist)?,
    };
    Ok(Started { job, events, notes: vec![] })
}

/// Starts the job with the best tracking this source allows: kernel
/// tracking when `kernel_wanted` (a block device), compare passes for a
/// source mounted at `mounts`, a read lease on an image file nobody has
/// open for writing, none otherwise; and says why it fell back.
pub fn start_picking(
    live: Arc<LiveSource>,
    target: Arc<dyn BlockDevice>,
    options: MirrorOptions,
    source: &Path,
    kernel_wanted: bool,
    mounts: &[String],
    persist: Option<Persist>,
) -> Result<Started, Error> {
    let mut notes = vec![];
    if kernel_wanted {
        let mut kernel = MirrorOptions { tracking: Tracking::Kernel, ..options.clone() };
        if mounts.is_empty() {
            // Nothing to freeze: only a final comparison can prove the copy
            // (see `Proof::TrackedUnheld`).
            kernel.verify.get_or_insert(true);
        }
        match start_kernel(live.clone(), target.clone(), kernel, source, persist.clone()) {
            Err(Error::TrackingUnavailable(reason)) => {
                notes.push(format!("kernel tracking unavailable: {reason}"));
            }
            started => {
                let (job, events) = started?;
                return Ok(Started { job, events, notes });
            }
        }
    }
    // An image file: a read lease proves nobody else writes it, if nobody
    // has it open for writing now (leases are Linux's).
    if lease_possible() && mounts.is_empty() && live.device().regular_file().is_some() {
        let leased = MirrorOptions { tracking: Tracking::Lease, ..options.clone() };
        match job::start_persisted(live.clone(), target.clone(), leased, persist.clone()) {
            Err(Error::TrackingUnavailable(reason)) => {
                notes.push(format!("no read lease ({reason}): the end compares the copy"))
            }
            started => {
                let (job, events) = started?;
                return Ok(Started { job, events, notes });
            }
        }
    }
    let tracking = if mounts.is_empty() {
        Tracking::None
    } else {
        notes.push(format!(
            "source is mounted at {}: its writes bypass livemirror, so compare passes look for them",
            mounts.join(", ")
        ));
        Tracking::Compare
    };
    let options = MirrorOptions { tracking, ..options };
    let (job, events) = job::start_persisted(live, target, options, persist)?;
    Ok(Started { job, events, notes })
}

/// Kernel tracking of the block device at `source`: in this process when
/// it is root, else through the privileged helper.
fn start_kernel(
    live: Arc<LiveSource>,
    target: Arc<dyn BlockDevice>,
    options: MirrorOptions,
    source: &Path,
    persist: Option<Persist>,
) -> Result<(JobHandle, Receiver<JobEvent>), Error> {
    #[cfg(target_os = "linux")]
    {
        use crate::platform::privileged::kernel_helper::{Access, Helper, access};
        match access() {
            Access::InProcess => job::start_persisted(live, target, options, persist),
            Access::Helper(launcher) => {
                let helper = Helper::new(launcher, source);
                job::start_tracked_by(live, target, options, &helper, persist)
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = source;
        job::start_persisted(live, target, options, persist)
    }
}

/// Read leases on image files exist on Linux only.
pub fn lease_possible() -> bool {
    cfg!(target_os = "linux")
}

/// Kernel tracking exists for Linux block devices only.
pub fn is_block_device(path: &Path) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::FileTypeExt;
        std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = path;
        false
    }
}
