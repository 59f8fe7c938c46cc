//! Write-blocking (active) mirroring, ported from QEMU's iotest 151:
//! intersecting writes queued behind each other, a 1-byte unaligned write
//! into a dirty area of a throttled job, and background copies that still
//! progress while client writes saturate the source.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use livemirror_core::device::{BlockDevice, Fault, FaultyDevice, MemoryDevice, Op};
use livemirror_core::job::{
    Command, CopyMode, ErrorAction, ErrorPolicy, JobEvent, JobHandle, JobState, MirrorOptions,
    Outcome, Proof,
};
use livemirror_core::live::LiveSource;
use livemirror_core::{IoOperation, Side};
use livemirror_testkit::job::*;
use livemirror_testkit::pattern;
use tokio::sync::{broadcast, watch};

const MIB: u64 = 1 << 20;

fn write_blocking(speed: u64) -> MirrorOptions {
    MirrorOptions { copy_mode: CopyMode::WriteBlocking, speed, ..Default::default() }
}

/// Lifts the speed limit, waits for Ready, completes, and checks the target.
async fn finish_identical(
    p: &Pair,
    job: &JobHandle,
    rx: &mut broadcast::Receiver<livemirror_core::job::JobEvent>,
) {
    job.send(Command::SetSpeed(0)).await.unwrap();
    until(rx, is_ready).await;
    job.send(Command::Complete).await.unwrap();
    assert_eq!(job.wait().await, Outcome::Completed { proof: Proof::Tracked });
    assert_same(&p.target.contents(), &p.source.contents());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intersecting_write_blocking_writes_queue_behind_each_other_and_all_land() {
    let source = Arc::new(MemoryDevice::from_bytes(pattern(4 * MIB as usize, 1)));
    // Writes to the source can be held like blkdebug breakpoints.
    let stall = Stall::new(source.clone());
    let _release = stall.release_at_end();
    let p = Pair {
        source,
        target: Arc::new(MemoryDevice::new(4 * MIB)),
        live: LiveSource::new(stall.clone()),
    };
    // At 1 byte/s the bulk copy does not get past its first operation.
    let (job, mut rx) = start(&p, p.target.clone(), write_blocking(1));
    let live = || p.live.clone() as Arc<dyn BlockDevice>;
    let data: Vec<Vec<u8>> = (2..6).map(|seed| pattern(2 * MIB as usize, seed)).collect();

    // 1 stops inside its source write, owning 0..1M.
    let a = stall.hold(0..MIB, Catch::Next);
    let w1 = spawn_write(live(), data[0][..MIB as usize].to_vec(), 0);
    stall.caught(a, 1).await;
    // 2 and 3 overlap 1 and each other: they wait.
    let w2 = spawn_write(live(), data[1].clone(), 0);
    let w3 = spawn_write(live(), data[2].clone(), 0);
    // 4 overlaps 2 and 3 but not 1: it goes ahead and stops inside too.
    let b = stall.hold(MIB..3 * MIB, Catch::Next);
    let w4 = spawn_write(live(), data[3].clone(), MIB);
    stall.caught(b, 1).await;
    // Releasing 1 lets 2 and 3 try again: they now wait for 4 (not for each
    // other, which deadlocked QEMU once).
    stall.release(a);
    w1.returns("write 1").await;
    stall.release(b);
    for (w, name) in [(w4, "write 4"), (w2, "write 2"), (w3, "write 3")] {
        w.returns(name).await;
    }
    // 2 and 3 each landed whole, after 4.
    let s = p.source.contents();
    let last = if s[..2 * MIB as usize] == data[1][..] { 1 } else { 2 };
    assert_same(&s[..2 * MIB as usize], &data[last]);
    assert_same(&s[2 * MIB as usize..3 * MIB as usize], &data[3][MIB as usize..]);
    // Acknowledged in write-blocking mode: already on the target.
    assert_same(&p.target.contents()[..3 * MIB as usize], &s[..3 * MIB as usize]);
    finish_identical(&p, &job, &mut rx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unaligned_one_byte_write_into_a_dirty_area_of_a_throttled_job_returns() {
    let p = pair(2 * MIB as usize);
    let opts = MirrorOptions { buf_size: MIB / 4, ..write_blocking(1) };
    let (job, mut rx) = start(&p, p.target.clone(), opts);
    // Once the job has marked everything dirty, 1M + 42 stays dirty: at
    // 1 byte/s the bulk copy does not get past its first 256 KiB. The write
    // must not wait for it to get there.
    status_until(&job, |s| s.state == JobState::Running && s.progress.dirty > 0).await;
    spawn_write(p.live.clone(), vec![2], MIB + 42).returns("the 1-byte write").await;
    assert_eq!(p.source.contents()[(MIB + 42) as usize], 2);
    assert_eq!(p.target.contents()[(MIB + 42) as usize], 2, "acknowledged, so on the target");
    finish_identical(&p, &job, &mut rx).await;
}

/// Waits until the writer has made `n` writes.
async fn writes_reach(count: &mut watch::Receiver<u64>, n: u64) {
    let wait = count.wait_for(|k| *k >= n);
    tokio::time::timeout(GUARD, wait).await.expect("the writer stalled").expect("writer alive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_copy_progresses_while_write_blocking_writes_saturate_the_source() {
    const LEN: u64 = 8 * MIB;
    const HALF: u64 = LEN / 2;
    // Data in the first half, for the bulk copy; the writer works the
    // second half, so its writes never count as the job's progress.
    let source = MemoryDevice::new(LEN);
    source.write_at(&pattern(HALF as usize, 1), 0).unwrap();
    let p = pair_of(source, MemoryDevice::new(LEN));
    let opts = MirrorOptions { buf_size: 64 << 10, ..write_blocking(0) };

    let stop = Arc::new(AtomicBool::new(false));
    let (count_tx, mut count) = watch::channel(0u64);
    let writer = {
        let (live, stop) = (p.live.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let off = HALF + (n * 4096) % HALF;
                live.write_at(&pattern(4096, n), off).expect("client write");
                n += 1;
                count_tx.send_replace(n);
            }
        })
    };
    writes_reach(&mut count, 100).await;
    let (job, mut rx) = start(&p, p.target.clone(), opts);
    until(&mut rx, is_ready).await;
    let st = job.status();
    assert!(st.progress.copied >= HALF, "the first half was copied: {:?}", st.progress);
    // The writer was never stopped: it is still going now.
    let so_far = *count.borrow();
    writes_reach(&mut count, so_far + 100).await;
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    job.send(Command::Complete).await.unwrap();
    assert_eq!(job.wait().await, Outcome::Completed { proof: Proof::Tracked });
    assert_same(&p.target.contents(), &p.source.contents());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_switching_to_write_blocking_while_ready_a_write_is_on_the_target_when_it_returns() {
    // mirror-change-copy-mode: background mode, Ready, writes pending, then
    // the switch; from then on an acknowledged write is on the target.
    const LEN: u64 = MIB;
    const G: u64 = 64 << 10;
    let p = pair_of(
        MemoryDevice::from_bytes(pattern(LEN as usize, 1)),
        MemoryDevice::from_bytes(pattern(LEN as usize, 2)),
    );
    let opts = MirrorOptions { granularity: Some(G), ..Default::default() };
    let (job, mut rx) = start(&p, p.target.clone(), opts);
    until(&mut rx, is_ready).await;
    // At 1 byte/s the writes to the first half stay pending.
    job.send(Command::SetSpeed(1)).await.unwrap();
    for i in 0..8 {
        p.live.write_at(&pattern(G as usize, 10 + i), i * G).unwrap();
    }
    let on_target =
        |at: u64, data: &[u8]| p.target.contents()[at as usize..][..data.len()] == *data;
    let before = pattern(4096, 20);
    p.live.write_at(&before, 3 * LEN / 4).unwrap();
    assert!(!on_target(3 * LEN / 4, &before), "background mode: not copied yet at 1 byte/s");
    job.send(Command::SetCopyMode(CopyMode::WriteBlocking)).await.unwrap();
    let after = pattern(4096, 21);
    p.live.write_at(&after, 3 * LEN / 4 + 8192).unwrap();
    assert!(on_target(3 * LEN / 4 + 8192, &after), "write-blocking: on the target on return");
    job.send(Command::SetSpeed(0)).await.unwrap();
    job.send(Command::Cancel { force: false }).await.unwrap();
    assert_eq!(job.wait().await, Outcome::Cancelled { consistent: true });
    assert_same(&p.target.contents(), &p.source.contents());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_through_is_reported_under_the_target_error_policy() {
    // QEMU applies on-target-error to the active write's target half; the
    // client's write itself succeeds (it reached the source).
    const G: u64 = 64 << 10;
    let p = pair(MIB as usize);
    let target = Arc::new(FaultyDevice::new(p.target.clone()));
    let opts = MirrorOptions {
        on_target_error: ErrorPolicy::Ignore,
        granularity: Some(G),
        ..write_blocking(0)
    };
    let (job, mut rx) = start(&p, target.clone(), opts);
    until(&mut rx, is_ready).await;
    // Fails once: the write-through takes it, the job's later copy of the
    // range succeeds, so only the write-through can report it.
    target.inject(Fault::times(Op::Write, 2 * G..2 * G + 1, libc::EIO, 1));
    p.live.write_at(&pattern(4096, 8), 2 * G).unwrap();
    assert_eq!(target.fired(), 1, "the write-through met the fault");
    let ev = until(&mut rx, |ev| matches!(ev, JobEvent::Error { .. })).await;
    let JobEvent::Error { failure, action } = ev else { unreachable!() };
    assert_eq!(
        (failure.side, failure.operation, action),
        (Side::Target, IoOperation::Write, ErrorAction::Ignore)
    );
    assert!(failure.offset <= 2 * G && 2 * G < failure.offset + failure.len, "{failure}");
    job.send(Command::Complete).await.unwrap();
    assert_eq!(job.wait().await, Outcome::Completed { proof: Proof::Tracked });
    assert_same(&p.target.contents(), &p.source.contents());
}
