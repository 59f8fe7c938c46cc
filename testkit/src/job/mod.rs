//! A mirror job over memory devices, awaited event by event: the engine's
//! integration tests' helpers.

mod stall;

use std::sync::Arc;
use std::time::Duration;

use livemirror_core::device::{BlockDevice, MemoryDevice};
use livemirror_core::job::{self, JobEvent, JobHandle, JobStatus, MirrorOptions};
use livemirror_core::live::LiveSource;
use tokio::sync::{broadcast, oneshot};

use crate::pattern;

pub use stall::{Catch, HoldId, ReleaseAtEnd, Stall};

/// How long a test waits for something that must happen before calling it
/// a hang.
pub const GUARD: Duration = Duration::from_secs(120);

pub struct Pair {
    pub source: Arc<MemoryDevice>,
    pub target: Arc<MemoryDevice>,
    pub live: Arc<LiveSource>,
}

/// A source of `len` pattern bytes and an empty target.
pub fn pair(len: usize) -> Pair {
    pair_of(MemoryDevice::from_bytes(pattern(len, 1)), MemoryDevice::new(len as u64))
}

/// The given source (behind a live source) and target.
pub fn pair_of(source: MemoryDevice, target: MemoryDevice) -> Pair {
    let source = Arc::new(source);
    let live = LiveSource::new(source.clone());
    Pair { source, target: Arc::new(target), live }
}

pub fn start(
    p: &Pair,
    target: Arc<dyn BlockDevice>,
    opts: MirrorOptions,
) -> (JobHandle, broadcast::Receiver<JobEvent>) {
    job::start(p.live.clone(), target, opts).expect("job starts")
}

/// Waits for the first event matching `pred`, failing the test after a
/// generous guard time (a hang is a bug, not slowness).
pub async fn until(
    rx: &mut broadcast::Receiver<JobEvent>,
    mut pred: impl FnMut(&JobEvent) -> bool,
) -> JobEvent {
    let wait = async {
        loop {
            match rx.recv().await {
                Ok(ev) if pred(&ev) => return ev,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("event stream closed"),
            }
        }
    };
    tokio::time::timeout(GUARD, wait).await.expect("event did not arrive")
}

/// Waits until the job's status satisfies `pred` and returns that status,
/// failing the test after the guard time.
pub async fn status_until(job: &JobHandle, pred: impl FnMut(&JobStatus) -> bool) -> JobStatus {
    let mut rx = job.watch();
    let wait = async { rx.wait_for(pred).await.expect("the job's status is kept").clone() };
    tokio::time::timeout(GUARD, wait).await.expect("the status did not come")
}

/// A write running on its own thread (not tokio's blocking pool, which a
/// runtime waits for when it shuts down: a write stuck by a bug must fail
/// the test, not hang it).
pub struct Write(oneshot::Receiver<std::io::Result<()>>);

/// Starts writing `data` at `offset` through `dev` on a new thread.
pub fn spawn_write(dev: Arc<dyn BlockDevice>, data: Vec<u8>, offset: u64) -> Write {
    let (tx, rx) = oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(dev.write_at(&data, offset));
    });
    Write(rx)
}

impl Write {
    /// Waits for the write to return and asserts it succeeded; `what` says
    /// which write in the failure message.
    pub async fn returns(self, what: &str) {
        match tokio::time::timeout(GUARD, self.0).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => panic!("{what} failed: {e}"),
            Ok(Err(_)) => panic!("{what}: the writing thread died"),
            Err(_) => panic!("{what} did not return"),
        }
    }
}

/// Collects every event until the job's final one.
pub async fn rest(rx: &mut broadcast::Receiver<JobEvent>) -> Vec<JobEvent> {
    let mut seen = Vec::new();
    until(rx, |ev| {
        seen.push(ev.clone());
        ev.is_final()
    })
    .await;
    seen
}

pub fn is_ready(ev: &JobEvent) -> bool {
    matches!(ev, JobEvent::Ready)
}

/// Asserts two byte slices are equal, naming the first difference instead of
/// printing megabytes.
pub fn assert_same(a: &[u8], b: &[u8]) {
    assert_eq!(a.len(), b.len(), "lengths differ");
    if let Some(i) = a.iter().zip(b).position(|(x, y)| x != y) {
        panic!("first difference at byte {i}: {} vs {}", a[i], b[i]);
    }
}
