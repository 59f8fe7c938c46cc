//! Sync modes onto targets that already hold data, as QEMU treats them:
//! `top` on a source without a backing layer is `full` (041's unbacked
//! source), and `none` copies only what is written after the start.

use livemirror_core::device::{BlockDevice, MemoryDevice};
use livemirror_core::job::{Command, MirrorOptions, Outcome, Proof, SyncMode};
use livemirror_testkit::job::*;
use livemirror_testkit::pattern;

const LEN: u64 = 4 << 20;
const G: u64 = 64 << 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_top_from_a_source_without_backing_overwrites_old_target_data() {
    // A sparse source: data in a few extents, holes (reading zero) elsewhere.
    let source = MemoryDevice::new(LEN);
    for (i, at) in [0, 5 * G + 512, LEN / 2, LEN - G].into_iter().enumerate() {
        source.write_at(&pattern(20_000, i as u64), at.min(LEN - 20_000)).unwrap();
    }
    // The target still holds an older disk's data everywhere.
    let p = pair_of(source, MemoryDevice::from_bytes(pattern(LEN as usize, 77)));
    let opts = MirrorOptions { sync: SyncMode::Top, granularity: Some(G), ..Default::default() };
    let (job, mut rx) = start(&p, p.target.clone(), opts);
    until(&mut rx, is_ready).await;
    job.send(Command::Complete).await.unwrap();
    assert_eq!(job.wait().await, Outcome::Completed { proof: Proof::Tracked });
    assert_same(&p.target.contents(), &p.source.contents());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_none_onto_a_target_holding_the_source_copies_only_new_writes() {
    let data = pattern(LEN as usize, 3);
    let p = pair_of(MemoryDevice::from_bytes(data.clone()), MemoryDevice::from_bytes(data));
    let opts = MirrorOptions { sync: SyncMode::None, granularity: Some(G), ..Default::default() };
    let (job, mut rx) = start(&p, p.target.clone(), opts);
    until(&mut rx, is_ready).await;
    assert_eq!(job.status().progress.copied, 0, "nothing was written yet");
    // Three writes, each exactly one chunk, in chunks far apart.
    for (i, chunk) in [1u64, 17, 60].into_iter().enumerate() {
        p.live.write_at(&pattern(G as usize, 10 + i as u64), chunk * G).unwrap();
    }
    job.send(Command::Complete).await.unwrap();
    assert_eq!(job.wait().await, Outcome::Completed { proof: Proof::Tracked });
    assert_same(&p.target.contents(), &p.source.contents());
    let st = job.status();
    assert_eq!(st.progress.copied, 3 * G, "only the written chunks were copied");
    assert_eq!(st.data_bytes, 3 * G);
}
