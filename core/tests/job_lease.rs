//! Lease tracking (Linux): an image file nobody else has open for writing
//! is copied once and called identical without a comparison; a program
//! that opens it for writing breaks the lease, the job says it is no
//! longer tracked, and the end compares (or, told not to, claims nothing).
#![cfg(target_os = "linux")]

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use livemirror_core::device::{MemoryDevice, OpenOptions};
use livemirror_core::error::{Error, Untrackable};
use livemirror_core::job::{
    self, Command, JobEvent, JobHandle, MirrorOptions, Outcome, Proof, Tracking,
};
use livemirror_core::live::LiveSource;
use livemirror_testkit::job::*;
use livemirror_testkit::pattern;
use tokio::sync::broadcast;

const LEN: usize = 8 << 20;

fn leased(verify: Option<bool>) -> MirrorOptions {
    MirrorOptions { tracking: Tracking::Lease, verify, ..Default::default() }
}

/// An image of pattern bytes and an empty memory target.
fn image(dir: &Path) -> (std::path::PathBuf, Arc<LiveSource>, Arc<MemoryDevice>) {
    let path = dir.join("source.img");
    std::fs::write(&path, pattern(LEN, 3)).unwrap();
    let source = Arc::new(OpenOptions::new().open(&path).unwrap());
    (path, LiveSource::new(source), Arc::new(MemoryDevice::new(LEN as u64)))
}

fn start(
    live: &Arc<LiveSource>,
    target: &Arc<MemoryDevice>,
    opts: MirrorOptions,
) -> (JobHandle, broadcast::Receiver<JobEvent>) {
    job::start(live.clone(), target.clone(), opts).expect("the job starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leased_image_is_called_identical_without_a_comparison() {
    let dir = tempfile::tempdir().unwrap();
    let (path, live, target) = image(dir.path());
    let (job, mut rx) = start(&live, &target, leased(None));
    assert_eq!((job.status().tracking, job.status().verify), (Tracking::Lease, false));
    until(&mut rx, is_ready).await;
    job.send(Command::Complete).await.unwrap();
    assert_eq!(job.wait().await, Outcome::Completed { proof: Proof::Tracked });
    assert_same(&target.contents(), &std::fs::read(path).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_open_for_writing_elsewhere_gets_no_lease() {
    let dir = tempfile::tempdir().unwrap();
    let (path, live, target) = image(dir.path());
    let _writer = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    match job::start(live, target, leased(None)) {
        Err(Error::TrackingUnavailable(why)) => {
            assert!(matches!(why, Untrackable::OpenForWriting), "{why}")
        }
        other => panic!("want TrackingUnavailable, got {:?}", other.map(|_| ())),
    }
}

/// Ready and leased; then another program opens the image for writing
/// (waiting until the job lets the lease go), writes 64 KiB at 1 MiB and
/// closes it. The job says its tracking is now `none` before that write
/// can happen.
async fn written_after_ready(
    verify: Option<bool>,
) -> (tempfile::TempDir, Arc<MemoryDevice>, JobHandle) {
    let dir = tempfile::tempdir().unwrap();
    let (path, live, target) = image(dir.path());
    let (job, mut rx) = start(&live, &target, leased(verify));
    until(&mut rx, is_ready).await;
    let writer = std::thread::spawn(move || {
        let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        f.write_all_at(&pattern(64 << 10, 77), 1 << 20).unwrap();
    });
    let ev = until(&mut rx, |ev| matches!(ev, JobEvent::TrackingChanged { .. })).await;
    let JobEvent::TrackingChanged { tracking, reason } = ev else { unreachable!() };
    assert_eq!(tracking, Tracking::None);
    assert_eq!(reason, "a program opened the source for writing");
    assert_eq!(job.status().tracking, Tracking::None, "published before it is said");
    writer.join().unwrap();
    (dir, target, job)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_for_writing_breaks_the_lease_and_the_end_compares() {
    let (dir, target, job) = written_after_ready(None).await;
    assert!(job.status().verify, "untracked now, so the end verifies");
    job.send(Command::Complete).await.unwrap();
    assert_eq!(job.wait().await, Outcome::Completed { proof: Proof::Verified });
    assert_same(&target.contents(), &std::fs::read(dir.path().join("source.img")).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn told_not_to_verify_a_broken_lease_claims_nothing() {
    let (dir, target, job) = written_after_ready(Some(false)).await;
    job.send(Command::Complete).await.unwrap();
    assert_eq!(job.wait().await, Outcome::Completed { proof: Proof::Unverified });
    // Nothing compared, so the write made after Ready is not in the copy.
    let source = std::fs::read(dir.path().join("source.img")).unwrap();
    assert_ne!(target.contents()[1 << 20..][..64 << 10], source[1 << 20..][..64 << 10]);
}
