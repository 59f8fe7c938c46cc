//! Write-blocking (active) mode: the job converges under a continuous write
//! load, and after Ready every acknowledged write is already on the target.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use livemirror_core::device::{BlockDevice, DeviceId, MemoryDevice};
use livemirror_core::job::{
    Command, CopyMode, MAX_IN_FLIGHT, MirrorOptions, Outcome, Proof, write_blocking_in_flight,
};
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
    // Mid-copy: a quarter copied (at 32 MiB/s, with the writers going).
    let st = status_until(&job, |s| s.progress.copied >= LEN as u64 / 4).await;
    assert!(st.progress.copied < LEN as u64, "switched mid-copy: {:?}", st.progress);
    job.send(Command::SetCopyMode(CopyMode::WriteBlocking)).await.unwrap();
    job.send(Command::SetSpeed(0)).await.unwrap();
    until(&mut rx, is_ready).await;
    job.send(Command::Complete).await.unwrap();
    assert_eq!(job.wait().await, Outcome::Completed { proof: Proof::Tracked });
    check_writers(&stop, writers, &p.target);
}

/// The bytes in flight once a job whose every target write is held has
/// issued all it may (the runner issues up to its limit at once, before it
/// publishes a status).
async fn in_flight_when_stuck(mode: CopyMode, remote: bool) -> u64 {
    let p = pair(32 << 20);
    let target: Arc<dyn BlockDevice> =
        if remote { Arc::new(Remote(p.target.clone())) } else { p.target.clone() };
    let stall = Stall::new(target);
    let hold = stall.hold(0..u64::MAX, Catch::Every);
    let _release = stall.release_at_end();
    let opts = MirrorOptions { copy_mode: mode, ..Default::default() };
    let (job, _rx) = start(&p, stall.clone(), opts);
    stall.caught(hold, 1).await;
    let st = status_until(&job, |s| s.progress.in_flight > 0).await;
    job.send(Command::Cancel { force: true }).await.unwrap();
    st.progress.in_flight
}

/// A memory device that says it is remote, as an NBD export does.
struct Remote(Arc<MemoryDevice>);

impl BlockDevice for Remote {
    fn len(&self) -> u64 {
        self.0.len()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.0.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        self.0.write_at(buf, offset)
    }
    fn flush(&self) -> std::io::Result<()> {
        self.0.flush()
    }
    fn remote(&self) -> bool {
        true
    }
    fn id(&self) -> DeviceId {
        self.0.id()
    }
    fn describe(&self) -> String {
        "remote".into()
    }
}

/// Write-blocking mode leaves a CPU to the writers, who now wait for the
/// target too: fewer copies at once than in background mode (1 MiB each
/// with the default buffer) — except onto a remote target, whose copies
/// wait on the network, not on the CPUs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_blocking_mode_runs_fewer_copies_at_once_onto_a_local_target() {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let limit = write_blocking_in_flight(cpus) as u64;
    let all = (MAX_IN_FLIGHT as u64) << 20;
    assert_eq!(in_flight_when_stuck(CopyMode::Background, false).await, all);
    assert_eq!(in_flight_when_stuck(CopyMode::WriteBlocking, false).await, limit << 20);
    assert_eq!(in_flight_when_stuck(CopyMode::WriteBlocking, true).await, all);
}

/// A memory target that records being asked to buffer its writes.
struct CacheProbe {
    inner: MemoryDevice,
    buffered: AtomicBool,
}

impl BlockDevice for CacheProbe {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        self.inner.write_at(buf, offset)
    }
    fn flush(&self) -> std::io::Result<()> {
        self.inner.flush()
    }
    fn buffer_writes(&self) {
        self.buffered.store(true, Ordering::Relaxed);
    }
    fn id(&self) -> DeviceId {
        self.inner.id()
    }
    fn describe(&self) -> String {
        "cache probe".into()
    }
}

/// Switched to write-blocking mode, a job buffers its target's writes when
/// its options say the cache was picked for background copies, and leaves
/// a cache the user chose alone; either way the copy ends identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_switch_to_write_blocking_buffers_a_target_cache_picked_for_background() {
    for follow in [true, false] {
        let p = pair(LEN);
        let target =
            Arc::new(CacheProbe { inner: MemoryDevice::new(LEN as u64), buffered: false.into() });
        let opts =
            MirrorOptions { buffer_target_when_write_blocking: follow, ..Default::default() };
        let (job, mut rx) = start(&p, target.clone(), opts);
        assert!(!target.buffered.load(Ordering::Relaxed), "background copies keep the cache");
        job.send(Command::SetCopyMode(CopyMode::WriteBlocking)).await.unwrap();
        assert_eq!(target.buffered.load(Ordering::Relaxed), follow, "follow = {follow}");
        until(&mut rx, is_ready).await;
        job.send(Command::Complete).await.unwrap();
        assert_eq!(job.wait().await, Outcome::Completed { proof: Proof::Tracked });
        assert_same(&target.inner.contents(), &p.source.contents());
    }
}
