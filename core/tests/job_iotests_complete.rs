//! Complete, as QEMU's mirror does it: writers keep flowing until nothing is
//! dirty, and a range that keeps failing under `ignore` keeps the job from
//! calling itself completed.

use std::sync::Arc;

use livemirror_core::device::{BlockDevice, Fault, FaultyDevice, Op};
use livemirror_core::job::{
    Command, ErrorAction, ErrorPolicy, JobEvent, JobHandle, JobState, MirrorOptions, Outcome, Proof,
};
use livemirror_testkit::job::*;
use livemirror_testkit::pattern;
use tokio::sync::broadcast;

const LEN: usize = 8 << 20;
const G: u64 = 64 << 10;
const BAD: u64 = 3 * G;

/// A ready mirror (on-target-error ignore) whose target then fails every
/// write to chunk 3, and a write to it: the copy fails again and again.
async fn failing_after_ready() -> (Pair, Arc<FaultyDevice>, JobHandle) {
    let p = pair(LEN);
    let target = Arc::new(FaultyDevice::new(p.target.clone()));
    let opts = MirrorOptions {
        on_target_error: ErrorPolicy::Ignore,
        granularity: Some(G),
        ..Default::default()
    };
    let (job, mut rx) = start(&p, target.clone(), opts);
    until(&mut rx, is_ready).await;
    target.inject(Fault::persistent(Op::Write, BAD..BAD + 1, libc::EIO));
    p.live.write_at(&pattern(4096, 4), BAD).unwrap();
    ignored_errors(&mut rx, 1).await;
    (p, target, job)
}

/// Waits for `n` more ignored errors.
async fn ignored_errors(rx: &mut broadcast::Receiver<JobEvent>, n: usize) {
    for _ in 0..n {
        let ev = until(rx, |ev| matches!(ev, JobEvent::Error { .. })).await;
        assert!(matches!(ev, JobEvent::Error { action: ErrorAction::Ignore, .. }), "{ev:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_with_a_persistent_ignored_error_waits_until_the_range_is_copied() {
    let (p, target, job) = failing_after_ready().await;
    job.send(Command::Complete).await.unwrap();
    // Retries after Complete fail too: the job must not call itself done.
    let mut rx = job.subscribe();
    ignored_errors(&mut rx, 2).await;
    let st = job.status();
    assert_eq!((st.state, &st.outcome), (JobState::Completing, &None), "{st:?}");
    assert!(st.progress.dirty + st.progress.in_flight > 0, "{:?}", st.progress);
    // The fault clears: the range is copied and the job completes.
    target.clear();
    assert_eq!(job.wait().await, Outcome::Completed { proof: Proof::Tracked });
    assert_same(&p.target.contents(), &p.source.contents());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_cancel_ends_a_complete_held_up_by_a_persistent_ignored_error() {
    let (_p, _target, job) = failing_after_ready().await;
    job.send(Command::Complete).await.unwrap();
    ignored_errors(&mut job.subscribe(), 1).await;
    job.send(Command::Cancel { force: true }).await.unwrap();
    assert_eq!(job.wait().await, Outcome::Cancelled { consistent: false });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_cancel_forces_a_consistent_cancel_held_up_by_a_persistent_ignored_error() {
    // Ctrl-C twice: a consistent cancel cannot finish while the range fails,
    // the second, forced one ends the job.
    let (_p, _target, job) = failing_after_ready().await;
    job.send(Command::Cancel { force: false }).await.unwrap();
    let mut rx = job.subscribe();
    ignored_errors(&mut rx, 2).await;
    assert_eq!(job.status().outcome, None);
    job.send(Command::Cancel { force: true }).await.unwrap();
    assert_eq!(job.wait().await, Outcome::Cancelled { consistent: false });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_keeps_writers_flowing_while_much_is_dirty() {
    let p = pair(LEN);
    let opts = MirrorOptions { granularity: Some(G), ..Default::default() };
    let (job, mut rx) = start(&p, p.target.clone(), opts);
    until(&mut rx, is_ready).await;
    // At 1 byte/s nothing more is copied after the operation under way.
    job.send(Command::SetSpeed(1)).await.unwrap();
    for i in 0..64u64 {
        p.live.write_at(&pattern(G as usize, 100 + i), i * G).unwrap();
    }
    job.send(Command::Complete).await.unwrap();
    let late = pattern(4096, 7);
    spawn_write(p.live.clone(), late.clone(), (LEN as u64) - 3 * G)
        .returns("a write during Complete")
        .await;
    let st = job.status();
    assert_eq!(st.state, JobState::Completing, "{st:?}");
    assert!(st.progress.dirty > 0, "returned while much is still dirty: {:?}", st.progress);
    job.send(Command::SetSpeed(0)).await.unwrap();
    assert_eq!(job.wait().await, Outcome::Completed { proof: Proof::Tracked });
    assert_same(&p.target.contents(), &p.source.contents());
    assert_eq!(&p.target.contents()[LEN - 3 * G as usize..][..4096], &late[..]);
}
