//! The job's lifecycle: Ready, Complete (and its pivot), Cancel before and
//! after Ready, Pause/Resume, and commands refused in the wrong state.

use std::sync::Arc;

use livemirror_core::Error;
use livemirror_core::device::BlockDevice;
use livemirror_core::job::{
    Command, CopyMode, Decision, JobEvent, JobState, MirrorOptions, Outcome, Proof, SyncMode,
};
use livemirror_testkit::job::*;
use livemirror_testkit::pattern;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_after_ready_pivots_to_an_identical_target() {
    let p = pair(3 << 20);
    let (job, mut rx) = start(&p, p.target.clone(), MirrorOptions::default());
    until(&mut rx, is_ready).await;
    assert!(job.status().ready);
    job.send(Command::Complete).await.unwrap();
    let events = rest(&mut rx).await;
    assert!(matches!(events.last(), Some(JobEvent::Completed { identical: true, .. })));
    assert_eq!(job.wait().await, Outcome::Completed { proof: Proof::Tracked });
    assert_same(&p.target.contents(), &p.source.contents());
    // The pivot: the live source now writes the target, not the source.
    let before = p.source.contents();
    p.live.write_at(&[0xAA; 4096], 8192).unwrap();
    assert_eq!(p.source.contents(), before);
    assert_eq!(&p.target.contents()[8192..8192 + 4096], &[0xAA; 4096][..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn states_follow_the_lifecycle_in_order() {
    let p = pair(1 << 20);
    let (job, mut rx) = start(&p, p.target.clone(), MirrorOptions::default());
    let mut states = Vec::new();
    until(&mut rx, |ev| {
        if let JobEvent::StateChanged { state } = ev {
            states.push(*state);
            if *state == JobState::Ready {
                job.post(Command::Complete);
            }
        }
        matches!(ev, JobEvent::Completed { .. })
    })
    .await;
    assert_eq!(
        states,
        [JobState::Running, JobState::Ready, JobState::Completing, JobState::Completed]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_and_decide_are_refused_in_the_wrong_state() {
    let p = pair(4 << 20);
    // Slow enough that the job is certainly still running when asked.
    let opts = MirrorOptions { speed: 1 << 20, ..Default::default() };
    let (job, _rx) = start(&p, p.target.clone(), opts);
    let err = job.send(Command::Complete).await.unwrap_err();
    assert!(matches!(err, Error::WrongState { verb: "complete", state: JobState::Running }));
    assert_eq!(err.to_string(), "cannot complete while the job is running");
    let err = job.send(Command::Decide(Decision::Retry)).await.unwrap_err();
    assert!(matches!(err, Error::WrongState { verb: "decide", .. }));
    let err = job.send(Command::Resume).await.unwrap_err();
    assert!(matches!(err, Error::WrongState { verb: "resume", .. }));
    job.send(Command::Cancel { force: false }).await.unwrap();
    assert_eq!(job.wait().await, Outcome::Cancelled { consistent: false });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_before_ready_says_the_target_is_incomplete() {
    let p = pair(8 << 20);
    let opts = MirrorOptions { speed: 1 << 20, ..Default::default() };
    let (job, mut rx) = start(&p, p.target.clone(), opts);
    job.send(Command::Cancel { force: false }).await.unwrap();
    let events = rest(&mut rx).await;
    assert_eq!(events.last(), Some(&JobEvent::Cancelled { consistent: false }));
    assert!(!events.contains(&JobEvent::Ready));
    assert_ne!(p.target.contents(), p.source.contents(), "the copy was cut short");
    // Writes after the job are no longer tracked and go to the source.
    p.live.write_at(&[1; 512], 0).unwrap();
    assert_eq!(&p.source.contents()[..512], &[1; 512][..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_after_ready_leaves_a_consistent_copy_and_no_pivot() {
    let p = pair(2 << 20);
    let (job, mut rx) = start(&p, p.target.clone(), MirrorOptions::default());
    until(&mut rx, is_ready).await;
    // Written after ready: must be on the target when the cancel is done.
    p.live.write_at(&pattern(70_000, 9), 100_000).unwrap();
    job.send(Command::Cancel { force: false }).await.unwrap();
    assert_eq!(job.wait().await, Outcome::Cancelled { consistent: true });
    assert_same(&p.target.contents(), &p.source.contents());
    p.live.write_at(&[7; 512], 0).unwrap();
    assert_eq!(&p.source.contents()[..512], &[7; 512][..], "still serving the source");
    assert_ne!(&p.target.contents()[..512], &[7; 512][..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_the_offset_until_resume() {
    let p = pair(16 << 20);
    let opts = MirrorOptions { speed: 4 << 20, ..Default::default() };
    let (job, mut rx) = start(&p, p.target.clone(), opts);
    job.send(Command::Pause).await.unwrap();
    // Pause answers once in-flight copies are done: from here nothing moves.
    let held = job.status();
    assert_eq!(held.state, JobState::Paused);
    assert_eq!(held.progress.in_flight, 0);
    let mut watch = job.watch();
    for _ in 0..3 {
        // Let a few progress ticks pass.
        tokio::time::timeout(std::time::Duration::from_millis(300), watch.changed()).await.ok();
        assert_eq!(job.status().progress.copied, held.progress.copied);
    }
    job.send(Command::SetSpeed(0)).await.unwrap();
    job.send(Command::Resume).await.unwrap();
    until(&mut rx, is_ready).await;
    assert!(job.status().progress.copied > held.progress.copied);
    job.send(Command::Complete).await.unwrap();
    assert_eq!(job.wait().await, Outcome::Completed { proof: Proof::Tracked });
    assert_same(&p.target.contents(), &p.source.contents());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_while_ready_is_standby() {
    let p = pair(1 << 20);
    let (job, mut rx) = start(&p, p.target.clone(), MirrorOptions::default());
    until(&mut rx, is_ready).await;
    job.send(Command::Pause).await.unwrap();
    assert_eq!(job.status().state, JobState::Standby);
    job.send(Command::Complete).await.unwrap();
    assert_eq!(job.wait().await, Outcome::Completed { proof: Proof::Tracked });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_mode_switches_only_towards_write_blocking() {
    let p = pair(1 << 20);
    let (job, mut rx) = start(&p, p.target.clone(), MirrorOptions::default());
    job.send(Command::SetCopyMode(CopyMode::WriteBlocking)).await.unwrap();
    assert_eq!(job.status().copy_mode, CopyMode::WriteBlocking);
    let err = job.send(Command::SetCopyMode(CopyMode::Background)).await.unwrap_err();
    assert!(err.to_string().contains("cannot go back"), "{err}");
    until(&mut rx, is_ready).await;
    job.send(Command::Complete).await.unwrap();
    assert_eq!(job.wait().await, Outcome::Completed { proof: Proof::Tracked });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_none_copies_only_new_writes() {
    let p = pair(1 << 20);
    let opts = MirrorOptions { sync: SyncMode::None, ..Default::default() };
    let (job, mut rx) = start(&p, p.target.clone(), opts);
    until(&mut rx, is_ready).await;
    p.live.write_at(&[5; 10_000], 300_000).unwrap();
    job.send(Command::Complete).await.unwrap();
    assert_eq!(job.wait().await, Outcome::Completed { proof: Proof::Tracked });
    let t = p.target.contents();
    assert_eq!(&t[300_000..310_000], &[5; 10_000][..]);
    assert!(t[..262_144].iter().all(|b| *b == 0), "old data is not copied");
}

#[test]
fn bad_pairs_are_refused_before_anything_is_written() {
    let rt = livemirror_core::runtime::build("job-lifecycle", None).unwrap();
    let _guard = rt.enter();
    let p = pair(1 << 20);
    let small = Arc::new(livemirror_core::device::MemoryDevice::new(1000));
    let err = livemirror_core::job::start(p.live.clone(), small.clone(), MirrorOptions::default())
        .err()
        .unwrap();
    // Smaller, and without a partition table nothing says what is unused.
    assert!(
        matches!(err, Error::DoesNotFit { reason: livemirror_core::error::NoFit::NoTable, .. }),
        "{err}"
    );
    assert!(small.contents().iter().all(|b| *b == 0), "a refused target was written");
    let err =
        livemirror_core::job::start(p.live.clone(), p.source.clone(), MirrorOptions::default())
            .err()
            .unwrap();
    assert!(matches!(err, Error::SameDevice { .. }), "{err}");
    let opts = MirrorOptions { granularity: Some(1000), ..Default::default() };
    let err = livemirror_core::job::start(p.live.clone(), p.target.clone(), opts).err().unwrap();
    assert!(err.to_string().contains("power of two"), "{err}");
    assert!(p.target.contents().iter().all(|b| *b == 0));
    // Refused starts leave the source free for a job; one job at a time.
    let (_job, _) =
        livemirror_core::job::start(p.live.clone(), p.target.clone(), MirrorOptions::default())
            .unwrap();
    let other = Arc::new(livemirror_core::device::MemoryDevice::new(1 << 20));
    let err = livemirror_core::job::start(p.live.clone(), other, MirrorOptions::default());
    assert!(matches!(err.err().unwrap(), Error::AlreadyMirrored));
}
