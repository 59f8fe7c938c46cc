//! Compare passes: writes that bypass the live source are found and copied.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use livemirror_core::device::BlockDevice;
use livemirror_core::job::{Command, MirrorOptions, Outcome};

const LEN: usize = 8 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_around_the_live_source_are_found_by_compare_passes() {
    let p = pair(LEN);
    let opts = MirrorOptions { rescan: true, granularity: Some(4096), ..Default::default() };
    let (job, mut rx) = start(&p, p.target.clone(), opts);
    // An "OS" writing the source directly, never through livemirror.
    let stop = Arc::new(AtomicBool::new(false));
    let (dev, flag) = (p.source.clone(), stop.clone());
    let writer = std::thread::spawn(move || {
        let mut i = 0u64;
        while !flag.load(Ordering::Relaxed) {
            let off = (i * 7919 * 512) % (LEN as u64 - 4096);
            dev.write_at(&pattern(4096, i), off).unwrap();
            i += 1;
        }
        i
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    stop.store(true, Ordering::Relaxed);
    assert!(writer.join().unwrap() > 0);
    until(&mut rx, is_ready).await;
    // Ready means a whole pass found no difference.
    assert_same(&p.target.contents(), &p.source.contents());
    // One more write around the live source after Ready: Complete proves
    // the copy again before it ends.
    p.source.write_at(&[0xEE; 4096], 4096 * 100).unwrap();
    job.send(Command::Complete).await.unwrap();
    assert_eq!(job.wait().await, Outcome::Completed);
    assert_same(&p.target.contents(), &p.source.contents());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_is_answered_during_a_pass() {
    let p = pair(64 << 20);
    let opts = MirrorOptions { rescan: true, ..Default::default() };
    let (job, mut rx) = start(&p, p.target.clone(), opts);
    job.send(Command::Cancel { force: false }).await.unwrap();
    let events = rest(&mut rx).await;
    assert!(matches!(events.last(), Some(livemirror_core::job::JobEvent::Cancelled { .. })));
}
