//! Cancelling, ported from QEMU's iotests: `mirror-ready-cancel-error`
//! (a plain cancel after Ready while a stop-policy error waits for a
//! decision) and 041's forced cancel while target I/O is stuck.

use std::sync::Arc;

use livemirror_core::Side;
use livemirror_core::device::{BlockDevice, Fault, FaultyDevice, Op};
use livemirror_core::job::{
    Command, CopyMode, ErrorAction, ErrorPolicy, JobEvent, JobHandle, JobState, MirrorOptions,
    Outcome,
};
use livemirror_testkit::job::*;
use livemirror_testkit::pattern;
use tokio::sync::broadcast;

const LEN: usize = 1 << 20;
const G: u64 = 64 << 10;

/// Waits for the job's outcome, failing the test after the guard time.
async fn outcome(job: &JobHandle) -> Outcome {
    tokio::time::timeout(GUARD, job.wait()).await.expect("the job did not end")
}

async fn stop_error(rx: &mut broadcast::Receiver<JobEvent>) {
    let ev = until(rx, |ev| matches!(ev, JobEvent::Error { .. })).await;
    let JobEvent::Error { failure, action } = ev else { unreachable!() };
    assert_eq!((failure.side, action), (Side::Target, ErrorAction::Stop), "{failure}");
}

/// Waits until the job is paused on an error, asking for a decision
/// (paused while ready may be called standby, as QEMU does).
async fn asking(job: &JobHandle) {
    let st = status_until(job, |s| matches!(s.state, JobState::Paused | JobState::Standby)).await;
    assert!(st.pending_error.is_some() && st.outcome.is_none(), "{st:?}");
}

/// A ready mirror (on-target-error stop) whose target then fails writes to
/// the first chunk with `fault`, and a write to that chunk: the job is paused
/// on the error, asking.
async fn paused_on_a_target_error_after_ready(
    fault: Fault,
) -> (Pair, Arc<FaultyDevice>, JobHandle, broadcast::Receiver<JobEvent>) {
    let p = pair(LEN);
    let target = Arc::new(FaultyDevice::new(p.target.clone()));
    let opts = MirrorOptions {
        on_target_error: ErrorPolicy::Stop,
        granularity: Some(G),
        ..Default::default()
    };
    let (job, mut rx) = start(&p, target.clone(), opts);
    until(&mut rx, is_ready).await;
    target.inject(fault);
    p.live.write_at(&pattern(G as usize, 9), 0).unwrap();
    stop_error(&mut rx).await;
    asking(&job).await;
    (p, target, job, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_after_ready_with_a_transient_stop_error_pending_finishes_consistently() {
    let (p, target, job, _rx) =
        paused_on_a_target_error_after_ready(Fault::times(Op::Write, 0..G, libc::EIO, 1)).await;
    job.send(Command::Cancel { force: false }).await.unwrap();
    // The cancel resumes the job; the retry succeeds and the drain ends it.
    assert_eq!(outcome(&job).await, Outcome::Cancelled { consistent: true });
    assert_eq!(target.fired(), 1);
    assert_same(&p.target.contents(), &p.source.contents());
    // No pivot: the live source still serves the source.
    p.live.write_at(&[7; 512], 0).unwrap();
    assert_eq!(&p.source.contents()[..512], &[7; 512][..]);
    assert_ne!(&p.target.contents()[..512], &[7; 512][..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_after_ready_with_a_persistent_stop_error_asks_again_and_force_ends_it() {
    let (p, target, job, mut rx) =
        paused_on_a_target_error_after_ready(Fault::persistent(Op::Write, 0..G, libc::EIO)).await;
    let fired = target.fired();
    job.send(Command::Cancel { force: false }).await.unwrap();
    // Resumed by the cancel, the retry fails again: the job stops and asks.
    stop_error(&mut rx).await;
    asking(&job).await;
    assert!(target.fired() > fired, "the range was tried again");
    // Nobody's writes wait while it asks (the cancel's drain must not have
    // closed the gate for good).
    spawn_write(p.live.clone(), vec![3; 512], 4 * G).returns("a write while asking").await;
    // Nothing more will help: a forced cancel ends it at once.
    job.send(Command::Cancel { force: true }).await.unwrap();
    assert_eq!(outcome(&job).await, Outcome::Cancelled { consistent: false });
    assert_ne!(&p.target.contents()[..G as usize], &p.source.contents()[..G as usize]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_cancel_ends_the_job_while_a_target_write_is_stuck() {
    let p = pair(4 * LEN);
    // Writes to chunk 3 never return until the test ends (a hung NBD
    // server, a dead disk).
    let stall = Stall::new(p.target.clone());
    let hold = stall.hold(3 * G..3 * G + 1, Catch::Every);
    let _release = stall.release_at_end();
    let opts = MirrorOptions {
        granularity: Some(G),
        copy_mode: CopyMode::WriteBlocking,
        ..Default::default()
    };
    let (job, _rx) = start(&p, stall.clone(), opts);
    stall.caught(hold, 1).await;
    job.send(Command::Cancel { force: true }).await.unwrap();
    // The stuck write is still stuck (released only when the test ends):
    // the job must not wait for it.
    assert_eq!(outcome(&job).await, Outcome::Cancelled { consistent: false });
    assert_eq!(job.status().state, JobState::Cancelled);
    // The source is no longer mirrored: a write next to the stuck one, which
    // write-blocking mode would queue behind it and send to the target too,
    // goes to the source alone.
    spawn_write(p.live.clone(), vec![7; 512], 8 * G).returns("a write after the cancel").await;
    assert_eq!(&p.source.contents()[8 * G as usize..][..512], &[7; 512][..]);
    assert_eq!(&p.target.contents()[8 * G as usize..][..512], &[0; 512][..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_cancel_ends_a_consistent_cancel_stuck_on_target_io() {
    let p = pair(LEN);
    let stall = Stall::new(p.target.clone());
    let _release = stall.release_at_end();
    let opts = MirrorOptions { granularity: Some(G), ..Default::default() };
    let (job, mut rx) = start(&p, stall.clone(), opts);
    until(&mut rx, is_ready).await;
    // After Ready, a new write's copy gets stuck for good.
    let hold = stall.hold(0..1, Catch::Every);
    p.live.write_at(&pattern(4096, 5), 0).unwrap();
    stall.caught(hold, 1).await;
    // A plain cancel waits for that copy to make the target consistent...
    job.send(Command::Cancel { force: false }).await.unwrap();
    assert!(job.status().outcome.is_none());
    // ...and a forced one gives up on it.
    job.send(Command::Cancel { force: true }).await.unwrap();
    assert_eq!(outcome(&job).await, Outcome::Cancelled { consistent: false });
}
