//! Compare passes and the final comparison: writes that bypass the live
//! source are found and copied, and the job claims only what they prove.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use livemirror_core::device::{Allocation, BlockDevice, DeviceId, MemoryDevice};
use livemirror_core::error::JobFailure;
use livemirror_core::job::{Command, JobEvent, MirrorOptions, Outcome, Proof, Tracking};
use livemirror_testkit::job::*;
use livemirror_testkit::pattern;

const LEN: usize = 8 << 20;

fn compare() -> MirrorOptions {
    MirrorOptions { tracking: Tracking::Compare, granularity: Some(4096), ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_around_the_live_source_are_found_once_the_writer_stops() {
    let p = pair(LEN);
    let (job, mut rx) = start(&p, p.target.clone(), compare());
    // An "OS" writing the source directly, never through livemirror, while
    // the bulk copy and the first passes run.
    let dev = p.source.clone();
    let writer = std::thread::spawn(move || {
        for i in 0..2000u64 {
            let off = (i * 7919 * 512) % (LEN as u64 - 4096);
            dev.write_at(&pattern(4096, i), off).unwrap();
        }
    });
    writer.join().unwrap();
    // Ready may have come from a pass the writer outran: nothing is
    // asserted there. Complete runs a fresh pass, all of it after the
    // writer stopped, and that one is what the claim rests on.
    until(&mut rx, is_ready).await;
    job.send(Command::Complete).await.unwrap();
    let events = rest(&mut rx).await;
    assert_eq!(job.wait().await, Outcome::Completed { proof: Proof::LastPass });
    assert!(
        matches!(events.last(), Some(JobEvent::Completed { identical: false, .. })),
        "compare passes never claim identical: {:?}",
        events.last()
    );
    assert_same(&p.target.contents(), &p.source.contents());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untracked_write_after_ready_is_found_by_the_final_comparison() {
    let p = pair(LEN);
    let opts = MirrorOptions { tracking: Tracking::None, ..Default::default() };
    let (job, mut rx) = start(&p, p.target.clone(), opts);
    until(&mut rx, is_ready).await;
    // Another program writes the image itself, as `qemu-io -f raw SRC` does.
    p.source.write_at(&[0x77; 1 << 20], 3 << 20).unwrap();
    job.send(Command::Complete).await.unwrap();
    assert_eq!(job.wait().await, Outcome::Completed { proof: Proof::Verified });
    assert_same(&p.target.contents(), &p.source.contents());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_verification_an_untracked_job_does_not_claim_identical() {
    let p = pair(1 << 20);
    let opts =
        MirrorOptions { tracking: Tracking::None, verify: Some(false), ..Default::default() };
    let (job, mut rx) = start(&p, p.target.clone(), opts);
    until(&mut rx, is_ready).await;
    job.send(Command::Complete).await.unwrap();
    let events = rest(&mut rx).await;
    assert!(matches!(
        events.last(),
        Some(JobEvent::Completed { proof: Proof::Unverified, identical: false, .. })
    ));
}

/// A source some other program rewrites all the time: every read of its
/// first block sees new bytes.
struct Rewritten {
    inner: MemoryDevice,
    writes: AtomicU64,
}

impl BlockDevice for Rewritten {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_at(buf, offset)
    }
    fn read_uncached(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let n = self.writes.fetch_add(1, Ordering::Relaxed);
        self.inner.write_at(&pattern(512, n + 100), 0)?;
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.inner.write_at(buf, offset)
    }
    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
    fn block_status(&self, offset: u64, max_len: u64) -> io::Result<(Allocation, u64)> {
        self.inner.block_status(offset, max_len)
    }
    fn id(&self) -> DeviceId {
        self.inner.id()
    }
    fn describe(&self) -> String {
        "rewritten".into()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_written_all_the_time_ends_not_identical() {
    let source =
        Rewritten { inner: MemoryDevice::from_bytes(pattern(1 << 20, 3)), writes: 0.into() };
    let live = livemirror_core::live::LiveSource::new(Arc::new(source));
    let target = Arc::new(MemoryDevice::new(1 << 20));
    let opts = MirrorOptions { tracking: Tracking::None, ..Default::default() };
    let (job, mut rx) = livemirror_core::job::start(live, target, opts).unwrap();
    until(&mut rx, is_ready).await;
    job.send(Command::Complete).await.unwrap();
    match job.wait().await {
        Outcome::Failed { error: JobFailure::NotIdentical { passes: 3, offset: 0 } } => {}
        other => panic!("want not identical, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_is_answered_during_a_pass() {
    let p = pair(64 << 20);
    let (job, mut rx) = start(&p, p.target.clone(), compare());
    job.send(Command::Cancel { force: false }).await.unwrap();
    let events = rest(&mut rx).await;
    assert!(matches!(events.last(), Some(JobEvent::Cancelled { .. })));
}
