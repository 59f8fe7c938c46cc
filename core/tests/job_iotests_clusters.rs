//! Buffers and clusters, ported from QEMU's iotest 041: a buffer smaller
//! than the target's cluster, and `sync=top` with whole-cluster copies into
//! a backed target while a source read fails once under `ignore`.

use std::sync::Arc;

use livemirror_core::device::{BlockDevice, Fault, FaultyDevice, MemoryDevice, Op};
use livemirror_core::job::{
    self, Command, ErrorAction, ErrorPolicy, JobEvent, JobState, MirrorOptions, Outcome, Proof,
    SyncMode,
};
use livemirror_core::live::LiveSource;
use livemirror_core::{IoOperation, Side};
use livemirror_testkit::job::*;
use livemirror_testkit::pattern;

const MIB: u64 = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_buffer_onto_a_target_cluster_larger_than_the_buffer_completes_identical() {
    // 041 test_small_buffer2 / test_large_cluster: the target's cluster is
    // the whole 1 MiB image. With a backing image behind the target, the
    // first copy into the cluster must take all of it, sixteen times the
    // 64 KiB buffer.
    let targets = [
        ("1 MiB clusters, 64 KiB buffer", MemoryDevice::with_clusters(MIB, MIB), 64 << 10),
        ("1 MiB backed cluster, 64 KiB buffer", backed(MIB), 64 << 10),
        ("1 MiB backed cluster, default buffer", backed(MIB), job::DEFAULT_BUF_SIZE),
    ];
    for (what, target, buf_size) in targets {
        let p = pair_of(MemoryDevice::from_bytes(pattern(MIB as usize, 1)), target);
        let (job, mut rx) =
            start(&p, p.target.clone(), MirrorOptions { buf_size, ..Default::default() });
        until(&mut rx, is_ready).await;
        // A write after Ready lands inside the copied cluster.
        p.live.write_at(&pattern(3000, 7), 300_000).unwrap();
        job.send(Command::Complete).await.unwrap();
        assert_eq!(job.wait().await, Outcome::Completed { proof: Proof::Tracked }, "{what}");
        assert_same(&p.target.contents(), &p.source.contents());
    }
}

/// A target of `len` bytes over a stale backing image, one cluster of `len`.
fn backed(len: u64) -> MemoryDevice {
    MemoryDevice::with_backing(pattern(len as usize, 99), len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_top_whole_cluster_copy_survives_an_ignored_read_error() {
    // 041 TestReadErrors.test_large_cluster: source and target share a
    // backing image; the source's top layer holds 512 bytes at 1M + 64K;
    // the target's clusters are 128 KiB, twice the granularity, so copying
    // them takes the whole cluster from 1M, whose first read fails once.
    const LEN: u64 = 2 * MIB;
    let base = pattern(LEN as usize, 5);
    let source = Arc::new(MemoryDevice::with_backing(base.clone(), 64 << 10));
    source.write_at(&[0x5A; 512], MIB + (64 << 10)).unwrap();
    let faulty = Arc::new(FaultyDevice::new(source.clone()));
    faulty.inject(Fault::times(Op::Read, MIB..MIB + 1, libc::EIO, 1));
    let target = Arc::new(MemoryDevice::with_backing(base, 128 << 10));
    let opts = MirrorOptions {
        sync: SyncMode::Top,
        on_source_error: ErrorPolicy::Ignore,
        ..Default::default()
    };
    let (job, mut rx) = job::start(LiveSource::new(faulty.clone()), target.clone(), opts).unwrap();
    let ev = until(&mut rx, |ev| matches!(ev, JobEvent::Error { .. })).await;
    let JobEvent::Error { failure, action } = ev else { unreachable!() };
    assert_eq!(
        (failure.side, failure.operation, action),
        (Side::Source, IoOperation::Read, ErrorAction::Ignore)
    );
    assert!(failure.offset <= MIB && MIB < failure.offset + failure.len, "{failure}");
    assert_ne!(job.status().state, JobState::Paused, "ignore does not pause");
    until(&mut rx, is_ready).await;
    assert_eq!(faulty.fired(), 1);
    job.send(Command::Complete).await.unwrap();
    assert_eq!(job.wait().await, Outcome::Completed { proof: Proof::Tracked });
    assert_same(&target.contents(), &source.contents());
}
