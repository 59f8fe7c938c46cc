//! Write-blocking (active) mode: the job converges under a continuous write
//! load, and after Ready every acknowledged write is already on the target.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use livemirror_core::device::{BlockDevice, MemoryDevice};
use livemirror_core::job::{Command, CopyMode, MirrorOptions, Outcome, Proof};
use livemirror_core::live::LiveSource;
use livemirror_testkit::job::*;
use livemirror_testkit::pattern;

const LEN: usize = 16 << 20;

/// Writes random blocks into quarter `q` of the device until stopped, and
/// returns what that quarter must hold afterwards (its own model of it).
fn busy_writer(
    live: Arc<LiveSource>,
    stop: Arc<AtomicBool>,
    q: usize,
) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let base = q * LEN / 4;
        let mut model = vec![0; LEN / 4];
        live.read_at(&mut model, base as u64).unwrap();
        let mut x = q as u64 + 7;
        while !stop.load(Ordering::Relaxed) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let len = 512 * (1 + (x >> 40) % 128) as usize;
            let off = (x >> 8) as usize % (LEN / 4 - len);
            let data = pattern(len, x);
            live.write_at(&data, (base + off) as u64).expect("write through the live source");
            model[off..off + len].copy_from_slice(&data);
        }
        model
    })
}

/// Stops the writers, then checks their quarters of the target.
fn check_writers(
    stop: &AtomicBool,
    writers: Vec<std::thread::JoinHandle<Vec<u8>>>,
    target: &MemoryDevice,
) {
    stop.store(true, Ordering::Relaxed);
    let models: Vec<Vec<u8>> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    let target = target.contents();
    for (q, model) in models.iter().enumerate() {
        assert_same(&target[q * LEN / 4..(q + 1) * LEN / 4], model);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converges_under_load_and_writes_reach_the_target_before_they_return() {
    let p = pair(LEN);
    let opts = MirrorOptions {
        copy_mode: CopyMode::WriteBlocking,
        granularity: Some(65536),
        ..Default::default()
    };
    let (job, mut rx) = start(&p, p.target.clone(), opts);
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2).map(|q| busy_writer(p.live.clone(), stop.clone(), q)).collect();
    until(&mut rx, is_ready).await;
    let map = job.chunk_map().clone();
    for i in 0..300u64 {
        let (live, target) = (p.live.clone(), p.target.clone());
        let data = pattern(4096 + (i as usize % 7) * 1000, i);
        let off = LEN as u64 / 2 + (i * 104_729) % (LEN as u64 / 2 - data.len() as u64);
        let on_target = tokio::task::spawn_blocking(move || {
            live.write_at(&data, off).unwrap();
            let mut back = vec![0; data.len()];
            target.read_at(&mut back, off).unwrap();
            back == data
        })
        .await
        .unwrap();
        assert!(on_target, "write {i} at {off} not on the target when it returned");
        let dirty: u64 = map.summary(1).iter().map(|c| c.dirty).sum();
        assert_eq!(dirty, 0, "dirty chunks after ready in write-blocking mode");
    }
    // Complete while the writers are still going: the drain holds them,
    // and what they write after the pivot lands on the target alone.
    job.send(Command::Complete).await.unwrap();
    assert_eq!(job.wait().await, Outcome::Completed { proof: Proof::Tracked });
    check_writers(&stop, writers, &p.target);
    assert_same(&p.target.contents()[LEN / 2..], &p.source.contents()[LEN / 2..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_to_write_blocking_mid_copy_loses_nothing() {
    let p = pair(LEN);
    let opts = MirrorOptions { speed: 32 << 20, granularity: Some(4096), ..Default::default() };
    let (job, mut rx) = start(&p, p.target.clone(), opts);
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4).map(|q| busy_writer(p.live.clone(), stop.clone(), q)).collect();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    job.send(Command::SetCopyMode(CopyMode::WriteBlocking)).await.unwrap();
    job.send(Command::SetSpeed(0)).await.unwrap();
    until(&mut rx, is_ready).await;
    job.send(Command::Complete).await.unwrap();
    assert_eq!(job.wait().await, Outcome::Completed { proof: Proof::Tracked });
    check_writers(&stop, writers, &p.target);
}
