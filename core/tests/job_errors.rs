//! Every error policy on every side, with injected faults: the events, the
//! final state, and the target's bytes.

use std::sync::Arc;

use livemirror_core::Side;
use livemirror_core::device::{Fault, FaultyDevice, MemoryDevice, Op};
use livemirror_core::error::JobFailure;
use livemirror_core::job::{
    self, Command, Decision, ErrorAction, ErrorPolicy, IoStatus, JobEvent, JobHandle, JobState,
    MirrorOptions, Outcome, Proof,
};
use livemirror_core::live::LiveSource;
use livemirror_testkit::job::*;
use livemirror_testkit::pattern;
use tokio::sync::broadcast;

const LEN: usize = 4 << 20;
const BAD: std::ops::Range<u64> = 1_000_000..1_000_001;

struct Rig {
    source: Arc<MemoryDevice>,
    target: Arc<MemoryDevice>,
    faulty: Arc<FaultyDevice>,
    job: JobHandle,
    rx: broadcast::Receiver<JobEvent>,
}

/// A mirror whose `side` fails with `fault` (injected before the start).
fn rig(side: Side, policy: ErrorPolicy, fault: Fault) -> Rig {
    rig_with(side, policy, vec![fault])
}

/// A mirror whose `side` fails with every fault of `faults`.
fn rig_with(side: Side, policy: ErrorPolicy, faults: Vec<Fault>) -> Rig {
    let source = Arc::new(MemoryDevice::from_bytes(pattern(LEN, 3)));
    let target = Arc::new(MemoryDevice::new(LEN as u64));
    let wrapped = match side {
        Side::Source => source.clone() as Arc<dyn livemirror_core::device::BlockDevice>,
        Side::Target => target.clone(),
    };
    let faulty = Arc::new(FaultyDevice::new(wrapped));
    for fault in faults {
        faulty.inject(fault);
    }
    let (live, dst): (_, Arc<dyn livemirror_core::device::BlockDevice>) = match side {
        Side::Source => (LiveSource::new(faulty.clone()), target.clone()),
        Side::Target => (LiveSource::new(source.clone()), faulty.clone()),
    };
    let opts = MirrorOptions {
        on_source_error: policy,
        on_target_error: policy,
        granularity: Some(65536),
        ..Default::default()
    };
    let (job, rx) = job::start(live, dst, opts).unwrap();
    Rig { source, target, faulty, job, rx }
}

fn op_for(side: Side) -> Op {
    match side {
        Side::Source => Op::Read,
        Side::Target => Op::Write,
    }
}

fn persistent(side: Side, errno: i32) -> Fault {
    Fault::persistent(op_for(side), BAD, errno)
}

async fn error_event(
    rx: &mut broadcast::Receiver<JobEvent>,
) -> (livemirror_core::IoFailure, ErrorAction) {
    match until(rx, |ev| matches!(ev, JobEvent::Error { .. })).await {
        JobEvent::Error { failure, action } => (failure, action),
        _ => unreachable!(),
    }
}

async fn complete_identical(mut r: Rig) {
    until(&mut r.rx, is_ready).await;
    r.job.send(Command::Complete).await.unwrap();
    assert_eq!(r.job.wait().await, Outcome::Completed { proof: Proof::Tracked });
    assert_same(&r.target.contents(), &r.source.contents());
}

async fn report_fails_the_job(side: Side) {
    let mut r = rig(side, ErrorPolicy::Report, persistent(side, libc::EIO));
    let (failure, action) = error_event(&mut r.rx).await;
    assert_eq!((failure.side, failure.errno, action), (side, libc::EIO, ErrorAction::Report));
    assert!(failure.offset <= BAD.start && BAD.start < failure.offset + failure.len);
    let events = rest(&mut r.rx).await;
    match events.last() {
        Some(JobEvent::Failed { error: JobFailure::Io(f) }) => {
            assert_eq!((f.side, f.errno), (side, libc::EIO), "the failure is kept typed");
            let text = f.to_string();
            assert!(
                text.contains(&side.to_string()) && text.contains("Input/output error"),
                "{text}"
            )
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    assert!(!events.contains(&JobEvent::Ready));
    assert_eq!(r.job.status().state, JobState::Failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_on_source_fails_the_job_with_the_errno() {
    report_fails_the_job(Side::Source).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_on_target_fails_the_job_with_the_errno() {
    report_fails_the_job(Side::Target).await;
}

async fn ignore_retries_until_the_fault_clears(side: Side) {
    let mut r = rig(side, ErrorPolicy::Ignore, persistent(side, libc::EIO));
    for _ in 0..3 {
        let (failure, action) = error_event(&mut r.rx).await;
        assert_eq!((failure.side, action), (side, ErrorAction::Ignore));
    }
    assert!(!r.job.status().ready, "a failing range keeps the job from ready");
    assert!(r.job.status().state == JobState::Running);
    r.faulty.clear();
    complete_identical(r).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignore_on_source_finishes_identical_once_the_fault_clears() {
    ignore_retries_until_the_fault_clears(Side::Source).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignore_on_target_finishes_identical_once_the_fault_clears() {
    ignore_retries_until_the_fault_clears(Side::Target).await;
}

/// Stop policy: the job pauses with the error pending, io-status failed.
async fn stopped(side: Side, errno: i32) -> (Rig, livemirror_core::IoFailure) {
    let mut r = rig(side, ErrorPolicy::Stop, persistent(side, errno));
    let (failure, action) = error_event(&mut r.rx).await;
    assert_eq!((failure.side, action), (side, ErrorAction::Stop));
    until(&mut r.rx, |ev| *ev == JobEvent::StateChanged { state: JobState::Paused }).await;
    let st = r.job.status();
    assert_eq!(st.pending_error.as_ref(), Some(&failure));
    assert_eq!(st.io_status, IoStatus::Failed);
    (r, failure)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_then_retry_after_the_fault_clears_finishes_identical() {
    for side in [Side::Source, Side::Target] {
        let (r, _) = stopped(side, libc::EIO).await;
        r.faulty.clear();
        r.job.send(Command::Decide(Decision::Retry)).await.unwrap();
        assert_eq!(r.job.status().io_status, IoStatus::Ok);
        complete_identical(r).await;
    }
}

/// A target that is gone — every request fails (an unplugged disk:
/// ENODEV, ENXIO, or EIO that reads get too; a lost NBD connection:
/// ECONNRESET) — pauses the job and asks even under `report`, and Retry
/// once it is back finishes identical: the failed ranges stayed dirty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_target_pauses_and_asks_and_retry_after_its_return_finishes_identical() {
    for errno in [libc::ENODEV, libc::ENXIO, libc::EIO, libc::ECONNRESET] {
        let all = 0..LEN as u64;
        let faults = vec![
            Fault::persistent(Op::Write, all.clone(), errno),
            Fault::persistent(Op::Read, all, errno),
        ];
        let mut r = rig_with(Side::Target, ErrorPolicy::Report, faults);
        let (failure, action) = error_event(&mut r.rx).await;
        assert!(failure.lost, "errno {errno}: {failure}");
        assert_eq!((failure.side, failure.errno, action), (Side::Target, errno, ErrorAction::Stop));
        until(&mut r.rx, |ev| *ev == JobEvent::StateChanged { state: JobState::Paused }).await;
        assert_eq!(r.job.status().pending_error.as_ref(), Some(&failure));
        r.faulty.clear();
        r.job.send(Command::Decide(Decision::Retry)).await.unwrap();
        complete_identical(r).await;
    }
}

/// One bad sector (EIO on writes there, the rest of the disk reads) is no
/// vanished disk: `report` still fails the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eio_on_a_disk_that_still_reads_is_not_a_lost_one() {
    let mut r = rig(Side::Target, ErrorPolicy::Report, persistent(Side::Target, libc::EIO));
    let (failure, action) = error_event(&mut r.rx).await;
    assert!(!failure.lost, "{failure}");
    assert_eq!(action, ErrorAction::Report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_then_ignore_goes_on_and_asks_again_while_the_fault_stays() {
    for side in [Side::Source, Side::Target] {
        let (mut r, first) = stopped(side, libc::EIO).await;
        r.job.send(Command::Decide(Decision::Ignore)).await.unwrap();
        // The job resumes; with nothing else left to copy it may meet the
        // bad range again at once, so look at the event, not a snapshot.
        until(&mut r.rx, |ev| *ev == JobEvent::StateChanged { state: JobState::Running }).await;
        // The rest is copied; the bad range comes round again and asks again.
        let (again, action) = error_event(&mut r.rx).await;
        assert_eq!((again.offset, action), (first.offset, ErrorAction::Stop));
        let dirty = r.job.status().progress.dirty;
        assert!(dirty <= first.len, "only the failed range is left: {dirty} bytes dirty");
        r.faulty.clear();
        r.job.send(Command::Decide(Decision::Retry)).await.unwrap();
        complete_identical(r).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_then_stop_ends_the_job_with_an_incomplete_target() {
    for side in [Side::Source, Side::Target] {
        let (mut r, _) = stopped(side, libc::EIO).await;
        r.job.send(Command::Decide(Decision::Stop)).await.unwrap();
        let events = rest(&mut r.rx).await;
        assert!(
            matches!(events.last(), Some(JobEvent::Failed { error: JobFailure::Stopped(f) }) if f.side == side)
        );
        assert_eq!(r.job.status().state, JobState::Failed);
        assert_ne!(r.target.contents(), r.source.contents());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enospc_stops_on_no_space_and_reports_anything_else() {
    let mut r = rig(Side::Target, ErrorPolicy::Enospc, persistent(Side::Target, libc::ENOSPC));
    let (failure, action) = error_event(&mut r.rx).await;
    assert_eq!((failure.errno, action), (libc::ENOSPC, ErrorAction::Stop));
    until(&mut r.rx, |ev| *ev == JobEvent::StateChanged { state: JobState::Paused }).await;
    assert_eq!(r.job.status().io_status, IoStatus::Nospace);
    r.faulty.clear();
    r.job.send(Command::Decide(Decision::Retry)).await.unwrap();
    complete_identical(r).await;

    let mut r = rig(Side::Target, ErrorPolicy::Enospc, persistent(Side::Target, libc::EIO));
    let (failure, action) = error_event(&mut r.rx).await;
    assert_eq!((failure.errno, action), (libc::EIO, ErrorAction::Report));
    assert!(matches!(rest(&mut r.rx).await.last(), Some(JobEvent::Failed { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_fault_under_ignore_costs_one_retry() {
    let mut r = rig(Side::Target, ErrorPolicy::Ignore, Fault::times(Op::Write, BAD, libc::EIO, 1));
    let (_, action) = error_event(&mut r.rx).await;
    assert_eq!(action, ErrorAction::Ignore);
    assert_eq!(r.faulty.fired(), 1);
    complete_identical(r).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_flush_keeps_the_job_from_ready() {
    let mut r = rig(Side::Target, ErrorPolicy::Stop, Fault::persistent(Op::Flush, 0..0, libc::EIO));
    let (failure, _) = error_event(&mut r.rx).await;
    assert_eq!(failure.operation, livemirror_core::IoOperation::Flush);
    assert!(!r.job.status().ready);
    r.faulty.clear();
    r.job.send(Command::Decide(Decision::Retry)).await.unwrap();
    complete_identical(r).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_while_completing_asks_without_holding_writers() {
    let source = Arc::new(MemoryDevice::from_bytes(pattern(LEN, 3)));
    let target = Arc::new(FaultyDevice::new(Arc::new(MemoryDevice::new(LEN as u64))));
    let live = LiveSource::new(source.clone());
    let opts = MirrorOptions { on_target_error: ErrorPolicy::Stop, ..Default::default() };
    let (job, mut rx) = job::start(live.clone(), target.clone(), opts).unwrap();
    until(&mut rx, is_ready).await;
    // A ready job flushes the target only when completing, so a failing
    // flush is sure to strike during Complete's drain (a failing write
    // could strike the background copy before Complete arrives).
    target.inject(Fault::persistent(Op::Flush, 0..0, libc::EIO));
    use livemirror_core::device::BlockDevice;
    live.write_at(&[9; 4096], BAD.start).unwrap();
    job.send(Command::Complete).await.unwrap();
    let (failure, action) = error_event(&mut rx).await;
    assert_eq!((failure.side, action), (Side::Target, ErrorAction::Stop));
    assert_eq!(failure.operation, livemirror_core::IoOperation::Flush);
    // The drain is on hold: a write goes through (and is tracked) meanwhile.
    let writer = live.clone();
    let write = tokio::task::spawn_blocking(move || writer.write_at(&[8; 4096], 0).unwrap());
    tokio::time::timeout(std::time::Duration::from_secs(60), write)
        .await
        .expect("a write waited on the held drain")
        .unwrap();
    target.clear();
    job.send(Command::Decide(Decision::Retry)).await.unwrap();
    assert_eq!(job.wait().await, Outcome::Completed { proof: Proof::Tracked });
    let mut copy = vec![0; LEN];
    target.read_at(&mut copy, 0).unwrap();
    assert_same(&copy, &source.contents());
    assert_eq!(&copy[..4096], &[8; 4096][..]);
}

/// A target whose writes to `slow` fail like the device below them, but
/// only report it once the test lets them: a copy that failed before a
/// decision, answering after it.
struct LateFailures {
    inner: Arc<FaultyDevice>,
    slow: std::ops::Range<u64>,
    /// Set once a write to `slow` has failed (and is waiting).
    failed: std::sync::atomic::AtomicBool,
    release: tokio::sync::watch::Receiver<bool>,
}

impl livemirror_core::device::BlockDevice for LateFailures {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        let result = self.inner.write_at(buf, offset);
        if result.is_err() && offset < self.slow.end && self.slow.start < offset + buf.len() as u64
        {
            self.failed.store(true, std::sync::atomic::Ordering::SeqCst);
            wait_for(|| *self.release.borrow());
        }
        result
    }
    fn flush(&self) -> std::io::Result<()> {
        self.inner.flush()
    }
    fn id(&self) -> livemirror_core::device::DeviceId {
        self.inner.id()
    }
    fn describe(&self) -> String {
        "late failures".into()
    }
}

/// Polls `cond` on this (blocking-pool or test) thread until it holds.
fn wait_for(cond: impl Fn() -> bool) {
    while !cond() {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_from_before_the_decision_does_not_ask_again() {
    const LATE: std::ops::Range<u64> = 3_000_000..3_000_001;
    let source = Arc::new(MemoryDevice::from_bytes(pattern(LEN, 3)));
    let memory = Arc::new(MemoryDevice::new(LEN as u64));
    let faulty = Arc::new(FaultyDevice::new(memory.clone()));
    faulty.inject(Fault::persistent(Op::Write, BAD, libc::EIO));
    faulty.inject(Fault::persistent(Op::Write, LATE, libc::EIO));
    let (release_tx, release) = tokio::sync::watch::channel(false);
    let target =
        Arc::new(LateFailures { inner: faulty.clone(), slow: LATE, failed: false.into(), release });
    let opts = MirrorOptions {
        on_target_error: ErrorPolicy::Stop,
        granularity: Some(65536),
        ..Default::default()
    };
    let (job, mut rx) = job::start(LiveSource::new(source.clone()), target.clone(), opts).unwrap();
    // BAD's copy fails at once and asks; LATE's has failed too but waits.
    let (first, _) = error_event(&mut rx).await;
    assert!(first.offset <= BAD.start && BAD.start < first.offset + first.len);
    until(&mut rx, |ev| *ev == JobEvent::StateChanged { state: JobState::Paused }).await;
    let late = target.clone();
    tokio::task::spawn_blocking(move || {
        wait_for(|| late.failed.load(std::sync::atomic::Ordering::SeqCst))
    })
    .await
    .unwrap();
    faulty.clear();
    job.send(Command::Decide(Decision::Retry)).await.unwrap();
    release_tx.send(true).unwrap();
    // LATE's failure is covered by the decision: no second question, and
    // its range is copied again.
    let events = {
        let mut seen = Vec::new();
        until(&mut rx, |ev| {
            seen.push(ev.clone());
            *ev == JobEvent::Ready
        })
        .await;
        seen
    };
    assert!(!events.iter().any(|e| matches!(e, JobEvent::Error { .. })), "{events:?}");
    job.send(Command::Complete).await.unwrap();
    assert_eq!(job.wait().await, Outcome::Completed { proof: Proof::Tracked });
    assert_same(&memory.contents(), &source.contents());
}
