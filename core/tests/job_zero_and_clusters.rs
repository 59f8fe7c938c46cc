//! Zero and sparse handling, and whole-cluster copies for targets whose
//! partial cluster writes would be filled from a backing image.

use livemirror_core::device::{BlockDevice, MemoryDevice};
use livemirror_core::job::{Command, MirrorOptions, Outcome, Proof, SyncMode};
use livemirror_testkit::job::*;
use livemirror_testkit::pattern;

async fn mirror(p: &Pair, opts: MirrorOptions) {
    let (job, mut rx) = start(p, p.target.clone(), opts);
    until(&mut rx, is_ready).await;
    job.send(Command::Complete).await.unwrap();
    assert_eq!(job.wait().await, Outcome::Completed { proof: Proof::Tracked });
}

/// A 8 MiB source: data in every fourth 256 KiB extent, an allocated run of
/// written zeroes, holes elsewhere.
fn sparse_source() -> MemoryDevice {
    let dev = MemoryDevice::new(8 << 20);
    for i in (0..32u64).step_by(4) {
        dev.write_at(&pattern(256 << 10, i), i * (256 << 10)).unwrap();
    }
    dev.write_at(&vec![0; 512 << 10], 21 * (256 << 10)).unwrap();
    dev
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sparse_source_gives_an_equally_sparse_target() {
    for sync in [SyncMode::Full, SyncMode::Top] {
        let p = pair_of(sparse_source(), MemoryDevice::new(8 << 20));
        mirror(&p, MirrorOptions { sync, ..Default::default() }).await;
        assert_same(&p.target.contents(), &p.source.contents());
        // Written zeroes are not data: the target allocates only real data.
        assert_eq!(p.target.allocated_bytes(), 8 * (256 << 10), "{sync:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_target_data_under_source_holes_is_zeroed_and_freed() {
    let p = pair_of(sparse_source(), MemoryDevice::from_bytes(pattern(8 << 20, 123)));
    let (job, mut rx) = start(&p, p.target.clone(), MirrorOptions::default());
    until(&mut rx, is_ready).await;
    let st = job.status();
    assert_eq!(st.data_bytes, 8 * (256 << 10));
    assert_eq!(st.zero_bytes, (8 << 20) - 8 * (256 << 10));
    job.send(Command::Complete).await.unwrap();
    job.wait().await;
    assert_same(&p.target.contents(), &p.source.contents());
    assert_eq!(p.target.allocated_bytes(), 8 * (256 << 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_copy_into_a_backed_cluster_copies_the_whole_cluster() {
    const LEN: usize = 1 << 20;
    const CLUSTER: u64 = 64 << 10;
    // The target's backing image is stale: it differs from the source.
    // With sync=none only the written 4 KiB chunk is dirty; copying just
    // that chunk would leave the rest of its cluster filled from the stale
    // backing.
    let source = MemoryDevice::from_bytes(pattern(LEN, 1));
    let target = MemoryDevice::with_backing(pattern(LEN, 2), CLUSTER);
    let p = pair_of(source, target);
    let opts =
        MirrorOptions { sync: SyncMode::None, granularity: Some(4096), ..Default::default() };
    let (job, mut rx) = start(&p, p.target.clone(), opts);
    until(&mut rx, is_ready).await;
    p.live.write_at(&[0x5A; 4096], 3 * CLUSTER + 8192).unwrap();
    job.send(Command::Complete).await.unwrap();
    assert_eq!(job.wait().await, Outcome::Completed { proof: Proof::Tracked });
    let (s, t) = (p.source.contents(), p.target.contents());
    let cluster = 3 * CLUSTER as usize..4 * CLUSTER as usize;
    assert_same(&t[cluster.clone()], &s[cluster]);
    // Only that cluster was copied: its neighbours still read the backing.
    assert_same(&t[..3 * CLUSTER as usize], &pattern(LEN, 2)[..3 * CLUSTER as usize]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_sizes_copy_the_short_last_chunk() {
    for len in [1usize, 511, 65535, 65537, (1 << 20) + 4097] {
        let p = pair(len);
        mirror(&p, MirrorOptions { granularity: Some(65536), ..Default::default() }).await;
        assert_same(&p.target.contents(), &p.source.contents());
    }
    let p = pair(0);
    mirror(&p, MirrorOptions::default()).await;
}
