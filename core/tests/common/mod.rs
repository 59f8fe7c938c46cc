//! Helpers shared by the engine's integration tests.
#![allow(dead_code)] // each test file uses its own subset

#[cfg(target_os = "linux")]
pub mod system;

use std::sync::Arc;
use std::time::Duration;

use livemirror_core::device::{BlockDevice, MemoryDevice};
use livemirror_core::job::{self, JobEvent, JobHandle, MirrorOptions};
use livemirror_core::live::LiveSource;
use tokio::sync::broadcast;

/// Deterministic, non-repeating bytes: a lost or misplaced block shows.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

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
    tokio::time::timeout(Duration::from_secs(120), wait).await.expect("event did not arrive")
}

/// Collects every event until the job's final one.
pub async fn rest(rx: &mut broadcast::Receiver<JobEvent>) -> Vec<JobEvent> {
    let mut seen = Vec::new();
    until(rx, |ev| {
        seen.push(ev.clone());
        matches!(ev, JobEvent::Completed | JobEvent::Cancelled { .. } | JobEvent::Failed { .. })
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
