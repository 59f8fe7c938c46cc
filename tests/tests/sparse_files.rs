//! Sparse images on a real filesystem: a 1 GiB source with 10% data is
//! cloned without allocating more than the source does, and judged by
//! `qemu-img compare` and `stat`.

use std::sync::Arc;

use livemirror_core::device::{OpenOptions, create_image};
use livemirror_core::job::{self, Command, MirrorOptions, Outcome, Proof, SyncMode};
use livemirror_core::live::LiveSource;
use livemirror_testkit::{
    image::allocated_bytes, image::data_bytes, image::qemu_img_identical, image::sparse_image,
};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// 103 extents of 1 MiB scattered over 1 GiB: about 10% data.
fn extents() -> Vec<(u64, u64)> {
    (0..103).map(|i| ((i * 9973 % 1024) * MIB, MIB)).collect()
}

async fn clone(src: &std::path::Path, dst: &std::path::Path, sync: SyncMode) {
    let source = OpenOptions::new().open(src).unwrap();
    let target = create_image(dst, GIB).unwrap();
    let live = LiveSource::new(Arc::new(source));
    let (job, _rx) =
        job::start(live, Arc::new(target), MirrorOptions { sync, ..Default::default() }).unwrap();
    let mut watch = job.watch();
    watch.wait_for(|s| s.ready).await.unwrap();
    job.send(Command::Complete).await.unwrap();
    assert_eq!(job.wait().await, Outcome::Completed { proof: Proof::Tracked });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_top_and_full_keep_a_sparse_image_sparse() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("source.img");
    sparse_image(&src, GIB, &extents());
    let source_blocks = allocated_bytes(&src);
    assert!(source_blocks <= 110 * MIB, "the source itself is sparse: {source_blocks}");
    for sync in [SyncMode::Top, SyncMode::Full] {
        let dst = dir.path().join(format!("target-{sync}.img"));
        clone(&src, &dst, sync).await;
        assert!(qemu_img_identical(&src, &dst), "{sync}: target differs");
        // Data extents match exactly; the blocks `stat` counts also hold the
        // filesystem's extent tree, whose size depends on how ext4 laid the
        // file out, so allow two 4 KiB tree blocks on top.
        assert_eq!(data_bytes(&dst), data_bytes(&src), "{sync}: data extents differ");
        let target_blocks = allocated_bytes(&dst);
        assert!(
            target_blocks <= source_blocks + 2 * 4096,
            "{sync}: target allocates {target_blocks} bytes, source {source_blocks}"
        );
    }
}
