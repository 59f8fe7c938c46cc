//! A mirror job with kernel tracking (Linux, as root) of a mounted ext4
//! source that another program writes: Complete freezes the filesystem for
//! the last drain, so the target is that filesystem as of one moment
//! (`fsck.ext4 -n` clean, every file fsynced before Complete there with its
//! bytes); with the writer stopped and the filesystem unmounted the target
//! equals the source (`qemu-img compare`), on a whole disk and on a
//! partition; a freeze over its limit is thawed and the job is ready again.
#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use livemirror_core::device::{BlockDevice, OpenOptions};
use livemirror_core::job::{
    self, Command, JobEvent, JobHandle, JobState, MirrorOptions, Outcome, Proof, Tracking,
};
use livemirror_core::live::LiveSource;
use livemirror_testkit::system::{Loop, Mount, Partition, Writer, assert_durable_files};
use livemirror_testkit::tools::run;

const MIB: u64 = 1024 * 1024;

/// A kernel-tracked job from `dev` onto a new image in `dir`, ready.
async fn ready_job(
    dev: &Path,
    dir: &Path,
    opts: MirrorOptions,
) -> (JobHandle, tokio::sync::broadcast::Receiver<JobEvent>, PathBuf) {
    // O_DIRECT: ext4 writes file data around the device's page cache.
    let source = OpenOptions::new().direct(true).open(dev).expect("open the source");
    let image = dir.join("target.img");
    let target = OpenOptions::new().write(true).create(&image, source.len()).expect("target");
    let live = LiveSource::new(Arc::new(source));
    let opts = MirrorOptions { tracking: Tracking::Kernel, ..opts };
    let (job, mut events) = job::start(live, Arc::new(target), opts).expect("kernel tracking");
    livemirror_testkit::job::until(&mut events, |e| *e == JobEvent::Ready).await;
    (job, events, image)
}

/// Completes and checks the proof and the hold the end reports.
async fn completed(
    job: &JobHandle,
    events: &mut tokio::sync::broadcast::Receiver<JobEvent>,
    frozen: bool,
) {
    job.send(Command::Complete).await.expect("complete accepted");
    let ev = livemirror_testkit::job::until(events, JobEvent::is_final).await;
    let JobEvent::Completed { proof, held_ms, .. } = ev else { panic!("not completed: {ev:?}") };
    let want = if frozen { Proof::Tracked } else { Proof::TrackedUnheld };
    assert_eq!(proof, want, "frozen: {frozen}");
    assert_eq!(held_ms.is_some(), frozen, "a hold is reported when there was one");
    assert_eq!(job.wait().await, Outcome::Completed { proof: want });
}

#[tokio::test(flavor = "multi_thread")]
async fn complete_with_a_writer_running_gives_a_clean_filesystem_with_every_fsynced_file() {
    let disk = Loop::new(64 * MIB);
    let fs = Mount::ext4(disk.path());
    let dir = tempfile::tempdir().expect("temp dir");
    let writer = Writer::start(fs.path());
    let mut durable = writer.durable(5);
    let (job, mut events, image) = ready_job(&disk.dev, dir.path(), Default::default()).await;
    // Files made while the job mirrors, then Complete with the writer on.
    durable.extend(writer.durable(20));
    completed(&job, &mut events, true).await;
    writer.stop();
    run("fsck.ext4", &["-n", "-f", image.to_str().expect("utf-8")]);
    assert_durable_files(&image, &durable);
}

/// A source read through the page cache: a block the bulk copy cached
/// and ext4 then rewrote on the disk around that cache could be copied
/// stale, so kernel tracking refuses it, saying why.
#[tokio::test(flavor = "multi_thread")]
async fn a_source_read_through_the_page_cache_is_refused_with_the_reason() {
    let disk = Loop::new(16 * MIB);
    let dir = tempfile::tempdir().expect("temp dir");
    let source = OpenOptions::new().open(&disk.dev).expect("open the source");
    let image = dir.path().join("target.img");
    let target = OpenOptions::new().write(true).create(&image, source.len()).expect("target");
    let opts = MirrorOptions { tracking: Tracking::Kernel, ..Default::default() };
    let refused = job::start(LiveSource::new(Arc::new(source)), Arc::new(target), opts);
    let Err(livemirror_core::Error::TrackingUnavailable(why)) = refused else {
        panic!("a cached source was tracked");
    };
    assert!(matches!(why, livemirror_core::Untrackable::ThroughPageCache), "{why}");
}

/// Writes files and raw overwrites inside a big one, stops writing and
/// unmounts (the thaw of a freeze would write the superblock after the
/// last drain; unmounted, nothing writes), completes: the target is the
/// source byte for byte, so no write made while it was mounted was lost.
async fn identical_after_writes_stop(dev: &Path) {
    let fs = Mount::ext4(dev.to_str().expect("utf-8"));
    let dir = tempfile::tempdir().expect("temp dir");
    let (job, mut events, image) = ready_job(dev, dir.path(), Default::default()).await;
    let writer = Writer::start(fs.path());
    writer.durable(20);
    writer.stop();
    let big = fs.path().join("big");
    std::fs::write(&big, livemirror_testkit::pattern(4 * MIB as usize, 3)).expect("big file");
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&big).expect("open big");
        for i in 0..32u64 {
            let at = (i * 7919 * 4096) % (4 * MIB - 4096);
            f.write_all_at(&livemirror_testkit::pattern(4096, i + 1000), at).expect("overwrite");
        }
        f.sync_all().expect("fsync big");
    }
    drop(fs);
    completed(&job, &mut events, false).await;
    run(
        "qemu-img",
        &[
            "compare",
            "-f",
            "raw",
            "-F",
            "raw",
            dev.to_str().expect("utf-8"),
            image.to_str().expect("utf-8"),
        ],
    );
    run("fsck.ext4", &["-n", "-f", image.to_str().expect("utf-8")]);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_writer_stopped_the_target_equals_the_disk() {
    let disk = Loop::new(64 * MIB);
    identical_after_writes_stop(&disk.dev).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partition_as_the_source_equals_the_partition() {
    let disk = Loop::new(96 * MIB);
    let part = Partition::new(&disk, 1, 16 * MIB / 512, 64 * MIB / 512);
    identical_after_writes_stop(&part.dev).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_freeze_over_its_limit_is_thawed_and_the_job_stays_ready() {
    let disk = Loop::new(64 * MIB);
    let fs = Mount::ext4(disk.path());
    let dir = tempfile::tempdir().expect("temp dir");
    let opts = MirrorOptions { freeze_limit_ms: 0, ..Default::default() };
    let (job, mut events, _image) = ready_job(&disk.dev, dir.path(), opts).await;
    job.send(Command::Complete).await.expect("complete accepted");
    let ev = livemirror_testkit::job::until(&mut events, |e| {
        matches!(e, JobEvent::CompleteFailed { .. }) || e.is_final()
    })
    .await;
    assert!(matches!(ev, JobEvent::CompleteFailed { .. }), "{ev:?}");
    livemirror_testkit::job::status_until(&job, |s| s.state == JobState::Ready).await;
    // Thawed: a write and its fsync go through.
    std::fs::write(fs.path().join("after"), b"thawed").expect("write after the thaw");
    std::fs::File::open(fs.path().join("after")).and_then(|f| f.sync_all()).expect("fsync");
    job.send(Command::Cancel { force: true }).await.expect("cancel");
    assert!(matches!(job.wait().await, Outcome::Cancelled { .. }));
}

/// A write the kernel program cannot mark (forced: it marks at most one
/// bitmap word per request here, and the write spans 64) never reaches
/// the dirty map; the job says why and compares the whole disk, which finds
/// and copies it: the target equals the source.
#[tokio::test(flavor = "multi_thread")]
async fn a_write_the_kernel_could_not_mark_is_found_by_a_compare_pass_that_says_why() {
    use std::os::unix::fs::FileExt;
    let disk = Loop::new(64 * MIB);
    let dir = tempfile::tempdir().expect("temp dir");
    let opts =
        MirrorOptions { granularity: Some(4096), kernel_span_limit: Some(1), ..Default::default() };
    let (job, mut events, image) = ready_job(&disk.dev, dir.path(), opts).await;
    let data = livemirror_core::buffer::AlignedBuf::copy_of(&livemirror_testkit::pattern(
        16 * MIB as usize,
        5,
    ));
    disk.open_direct().write_all_at(&data, 8 * MIB).expect("O_DIRECT write");
    // Whoever drains next (the poll, or Complete's barrier) learns of it.
    job.send(Command::Complete).await.expect("complete accepted");
    let ev = livemirror_testkit::job::until(&mut events, |e| {
        matches!(e, JobEvent::Rescanning { .. }) || e.is_final()
    })
    .await;
    let JobEvent::Rescanning { reason } = ev else { panic!("no compare pass: {ev:?}") };
    assert!(reason.contains("too long to mark"), "{reason}");
    let ev = livemirror_testkit::job::until(&mut events, JobEvent::is_final).await;
    assert!(matches!(ev, JobEvent::Completed { proof: Proof::TrackedUnheld, .. }), "{ev:?}");
    run(
        "qemu-img",
        &[
            "compare",
            "-f",
            "raw",
            "-F",
            "raw",
            disk.dev.to_str().expect("utf-8"),
            image.to_str().expect("utf-8"),
        ],
    );
}
