//! The speed limit, on tokio's paused clock: virtual seconds, no waiting.

use std::time::Duration;

use livemirror_core::device::MemoryDevice;
use livemirror_core::job::{Command, MirrorOptions};
use livemirror_testkit::job::*;
use tokio::time::Instant;

const MIB: u64 = 1 << 20;

fn limited(speed: u64) -> MirrorOptions {
    MirrorOptions { speed, granularity: Some(65536), ..Default::default() }
}

#[tokio::test(start_paused = true)]
async fn copying_n_mib_at_s_takes_about_n_over_s_seconds() {
    let p = pair(8 * MIB as usize);
    let t0 = Instant::now();
    let (_job, mut rx) = start(&p, p.target.clone(), limited(MIB));
    until(&mut rx, is_ready).await;
    let took = t0.elapsed();
    // 8 MiB at 1 MiB/s in 1 MiB operations: the last one starts at 7 s.
    assert!(took >= Duration::from_secs(7) && took <= Duration::from_millis(8100), "{took:?}");
    assert_same(&p.target.contents(), &p.source.contents());
}

#[tokio::test(start_paused = true)]
async fn set_speed_takes_effect_while_running() {
    let p = pair(8 * MIB as usize);
    let t0 = Instant::now();
    let (job, mut rx) = start(&p, p.target.clone(), limited(MIB));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let copied = job.status().progress.copied;
    assert!((2 * MIB..=4 * MIB).contains(&copied), "{copied} after 2.5 s at 1 MiB/s");
    job.send(Command::SetSpeed(4 * MIB)).await.unwrap();
    until(&mut rx, is_ready).await;
    let took = t0.elapsed();
    // About 3 MiB in 3 s, then 5 MiB at 4 MiB/s.
    assert!(took >= Duration::from_secs(3) && took <= Duration::from_millis(4200), "{took:?}");
    assert_eq!(job.status().speed, 4 * MIB);
}

#[tokio::test(start_paused = true)]
async fn zeroes_do_not_count_against_the_speed() {
    // A source that is all zeroes: nothing to move, so no waiting.
    let p = pair_of(MemoryDevice::new(64 * MIB), MemoryDevice::new(64 * MIB));
    let t0 = Instant::now();
    let (_job, mut rx) = start(&p, p.target.clone(), limited(MIB));
    until(&mut rx, is_ready).await;
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
}
