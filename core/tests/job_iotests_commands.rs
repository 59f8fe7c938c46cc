//! Commands at awkward moments: while a stop-policy error is pending during
//! Completing, and a resume that arrives before the pause took effect.

use std::sync::Arc;

use livemirror_core::Side;
use livemirror_core::device::{BlockDevice, Fault, FaultyDevice, MemoryDevice, Op};
use livemirror_core::job::{
    Command, Decision, ErrorAction, ErrorPolicy, JobEvent, JobHandle, JobState, MirrorOptions,
    Outcome, Proof,
};
use livemirror_testkit::job::*;
use livemirror_testkit::pattern;

const LEN: usize = 4 << 20;
const G: u64 = 64 << 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_while_an_error_is_pending_during_completing_do_not_hold_writers() {
    let p = pair(LEN);
    let target = Arc::new(FaultyDevice::new(p.target.clone()));
    let opts = MirrorOptions { on_target_error: ErrorPolicy::Stop, ..Default::default() };
    let (job, mut rx) = start(&p, target.clone(), opts);
    until(&mut rx, is_ready).await;
    // Ready flushes only when the job ends, so the flush fault strikes
    // during Complete's drain.
    target.inject(Fault::persistent(Op::Flush, 0..0, libc::EIO));
    p.live.write_at(&[9; 4096], 1 << 20).unwrap();
    job.send(Command::Complete).await.unwrap();
    let ev = until(&mut rx, |ev| matches!(ev, JobEvent::Error { .. })).await;
    assert!(
        matches!(&ev, JobEvent::Error { failure, action: ErrorAction::Stop }
            if failure.side == Side::Target),
        "{ev:?}"
    );
    status_until(&job, |s| s.pending_error.is_some()).await;
    // What a GUI sends meanwhile: a speed change from its slider, a pause
    // (accepted or refused, either way answered: the set-speed after it is
    // answered only once the pause was handled).
    job.send(Command::SetSpeed(8 << 20)).await.unwrap();
    job.post(Command::Pause);
    job.send(Command::SetSpeed(0)).await.unwrap();
    // Nobody's writes wait while the question is open.
    spawn_write(p.live.clone(), vec![8; 4096], 0).returns("a write while asking").await;
    assert!(job.status().pending_error.is_some(), "still asking");
    target.clear();
    job.send(Command::Decide(Decision::Retry)).await.unwrap();
    if job.status().state == JobState::Paused {
        // The pause was accepted: the user takes it back.
        job.send(Command::Resume).await.unwrap();
    }
    assert_eq!(job.wait().await, Outcome::Completed { proof: Proof::Tracked });
    let mut copy = vec![0; LEN];
    target.read_at(&mut copy, 0).unwrap();
    assert_same(&copy, &p.source.contents());
    assert_eq!(&copy[..4096], &[8; 4096][..]);
}

/// A job with one copy held in flight on the target: ready (a new write's
/// copy) or not yet (a bulk copy).
struct HeldCopy {
    p: Pair,
    stall: Arc<Stall>,
    hold: HoldId,
    job: JobHandle,
    _release: ReleaseAtEnd,
}

async fn held_copy(wait_ready: bool) -> HeldCopy {
    let p = pair_of(MemoryDevice::from_bytes(pattern(LEN, 1)), MemoryDevice::new(LEN as u64));
    let stall = Stall::new(p.target.clone());
    let _release = stall.release_at_end();
    let opts = MirrorOptions { granularity: Some(G), ..Default::default() };
    let (job, hold) = if wait_ready {
        let (job, mut rx) = start(&p, stall.clone(), opts);
        until(&mut rx, is_ready).await;
        let hold = stall.hold(5 * G..5 * G + 1, Catch::Next);
        p.live.write_at(&pattern(4096, 3), 5 * G).unwrap();
        (job, hold)
    } else {
        let hold = stall.hold(5 * G..5 * G + 1, Catch::Next);
        (start(&p, stall.clone(), opts).0, hold)
    };
    stall.caught(hold, 1).await;
    let state = job.status().state;
    assert_eq!(state, if wait_ready { JobState::Ready } else { JobState::Running });
    HeldCopy { p, stall, hold, job, _release }
}

impl HeldCopy {
    /// Lets the copy finish, completes, and checks the target.
    async fn complete_identical(self) {
        self.stall.release(self.hold);
        status_until(&self.job, |s| s.ready).await;
        self.job.send(Command::Complete).await.unwrap();
        assert_eq!(self.job.wait().await, Outcome::Completed { proof: Proof::Tracked });
        assert_same(&self.p.target.contents(), &self.p.source.contents());
    }
}

/// Pause, then resume while the pause cannot take effect yet (a copy is in
/// flight): the job is back where it was.
async fn pause_then_resume_before_it_took_effect(wait_ready: bool) {
    let h = held_copy(wait_ready).await;
    let before = h.job.status().state;
    h.job.post(Command::Pause);
    h.job.send(Command::Resume).await.unwrap();
    assert_eq!(h.job.status().state, before, "resume restores the state from before the pause");
    h.complete_identical().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_then_resume_before_the_pause_took_effect_keeps_a_ready_job_ready() {
    pause_then_resume_before_it_took_effect(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_then_resume_before_the_pause_took_effect_keeps_a_running_job_running() {
    pause_then_resume_before_it_took_effect(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_overtaken_by_a_resume_is_answered_while_the_job_goes_on() {
    let h = held_copy(false).await;
    let mut pause = Box::pin(h.job.send(Command::Pause));
    // Poll it once, which sends it, so it is queued before the resume.
    tokio::select! {
        biased;
        r = &mut pause => panic!("pause answered with a copy in flight: {r:?}"),
        _ = std::future::ready(()) => {}
    }
    h.job.send(Command::Resume).await.unwrap();
    h.stall.release(h.hold);
    // Whatever the answer, a caller blocked on `pause` hears it now, not
    // when the job ends.
    let answer = tokio::time::timeout(GUARD, pause).await.expect("the pause was never answered");
    assert!(h.job.status().outcome.is_none(), "answered only at the end: {answer:?}");
    h.complete_identical().await;
}
