//! Mirroring a served source file onto a target file, driven from a
//! synchronous test body.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use livemirror_core::device::{BlockDevice, OpenOptions};
use livemirror_core::job::{self, Command, JobHandle, MirrorOptions, Outcome, Proof};
use livemirror_core::live::LiveSource;
use tokio::runtime::Runtime;

/// How long a job may take to do what a test waits for before the test
/// fails instead of hanging (a guard, not a measurement).
const GUARD: Duration = Duration::from_secs(300);

/// A live source over the raw image at `path`.
pub fn live_file(path: &Path) -> Arc<LiveSource> {
    let dev = OpenOptions::new().write(true).open(path).expect("open source");
    LiveSource::new(Arc::new(dev))
}

/// Starts mirroring `live` onto the raw image at `target`.
pub fn start(rt: &Runtime, live: Arc<LiveSource>, target: &Path, opts: MirrorOptions) -> JobHandle {
    let dst = OpenOptions::new().write(true).open(target).expect("open target");
    start_on(rt, live, Arc::new(dst), opts)
}

/// Starts mirroring `live` onto any device (an NBD export, say).
pub fn start_on(
    rt: &Runtime,
    live: Arc<LiveSource>,
    target: Arc<dyn BlockDevice>,
    opts: MirrorOptions,
) -> JobHandle {
    let _runtime = rt.enter();
    job::start(live, target, opts).expect("start mirror").0
}

/// Sends a command and fails the test if the job refuses it.
pub fn send(rt: &Runtime, job: &JobHandle, cmd: Command) {
    rt.block_on(job.send(cmd)).unwrap_or_else(|e| panic!("{cmd:?} refused: {e}"));
}

/// Waits until the job is ready; fails if it ends or takes absurdly long.
pub fn wait_ready(rt: &Runtime, job: &JobHandle) {
    let mut status = job.watch();
    let waited = rt.block_on(async {
        tokio::time::timeout(GUARD, status.wait_for(|s| s.ready || s.outcome.is_some())).await
    });
    assert!(waited.is_ok(), "the job did not become ready");
    let now = job.status();
    assert!(now.ready, "the job ended before Ready: {:?}", now.outcome);
}

/// Completes a ready job and waits for the pivot.
pub fn complete(rt: &Runtime, job: &JobHandle) {
    send(rt, job, Command::Complete);
    let outcome = rt.block_on(async { tokio::time::timeout(GUARD, job.wait()).await });
    assert_eq!(outcome, Ok(Outcome::Completed { proof: Proof::Tracked }));
}
