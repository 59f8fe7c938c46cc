//! The point of the server: clients write to a source while it is being
//! mirrored, and stay connected across the switch to the target.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use livemirror_core::job::{Command, CopyMode, MirrorOptions};
use livemirror_testkit::mirror::{self, live_file};
use livemirror_testkit::raw::RawClient;
use livemirror_testkit::server::{Served, runtime};
use livemirror_testkit::{image, tools};

const SIZE: u64 = 32 << 20;

/// A source image served over NBD through a live source, and an empty
/// sparse target beside it. Bind `_dir` when destructuring: it keeps the
/// images alive.
struct Rig {
    _dir: tempfile::TempDir,
    src: std::path::PathBuf,
    dst: std::path::PathBuf,
    rt: tokio::runtime::Runtime,
    live: Arc<livemirror_core::live::LiveSource>,
    served: Served,
}

fn rig(make_source: fn(&std::path::Path, &str, u64) -> std::path::PathBuf) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let src = make_source(dir.path(), "src.img", SIZE);
    let dst = image::sparse(dir.path(), "dst.img", SIZE);
    let rt = runtime();
    let live = live_file(&src);
    let served = Served::device(&rt, live.clone());
    Rig { _dir: dir, src, dst, rt, live, served }
}

#[test]
fn qemu_io_writes_before_and_after_ready_all_reach_the_target() {
    let Rig { _dir, src, dst, rt, live, served } = rig(image::full);
    let uri = served.uri();
    // 1 MiB/s over 32 MiB of data: the job cannot be ready for half a
    // minute, so these writes happen mid-copy; then it may run free.
    let job =
        mirror::start(&rt, live, &dst, MirrorOptions { speed: 1 << 20, ..Default::default() });
    tools::qemu_io(&uri, &["write -P 0xab 0 64k", "write -P 0xac 20M 1M", "write -z 5M 64k"]);
    assert!(!job.status().ready, "writes were meant to land before Ready");
    mirror::send(&rt, &job, Command::SetSpeed(0));
    mirror::wait_ready(&rt, &job);
    tools::qemu_io(&uri, &["write -P 0xcd 4M 128k", "write -f -P 0xce 31M 64k"]);
    mirror::complete(&rt, &job);
    tools::assert_identical(&src, &dst);
    // Every pattern reads back through the export, which now serves dst.
    tools::qemu_io(
        &uri,
        &[
            "read -P 0xab 0 64k",
            "read -P 0xac 20M 1M",
            "read -P 0 5M 64k",
            "read -P 0xcd 4M 128k",
            "read -P 0xce 31M 64k",
        ],
    );
}

#[test]
fn a_connected_client_writes_to_the_target_after_the_pivot() {
    let Rig { _dir, src, dst, rt, live, served } = rig(image::patterned);
    // One connection for the whole test, opened before the mirror starts.
    let (mut client, _) = RawClient::go(&served.socket, false).unwrap();
    let job = mirror::start(&rt, live, &dst, MirrorOptions::default());
    assert_eq!(client.write(1 << 20, &[0x5a; 65536]).unwrap(), 0);
    mirror::wait_ready(&rt, &job);
    mirror::complete(&rt, &job);
    tools::assert_identical(&src, &dst);

    let at = 3 << 20;
    let before = image::read(&src, at, 65536);
    assert_ne!(before, vec![0x77; 65536]);
    assert_eq!(client.write(at, &[0x77; 65536]).unwrap(), 0);
    assert_eq!(image::read(&dst, at, 65536), vec![0x77; 65536]);
    assert_eq!(image::read(&src, at, 65536), before, "source untouched");
    assert_eq!(client.read(at, 65536).unwrap(), vec![0x77; 65536]);
    tools::assert_different(&src, &dst);
    client.disconnect().unwrap();
}

#[test]
fn write_blocking_converges_under_continuous_writes_and_acks_mean_on_target() {
    let Rig { _dir, src, dst, rt, live, served } = rig(image::full);
    let stop = Arc::new(AtomicBool::new(false));
    // Random 64 KiB writes into the first half, as fast as they go.
    let writer = {
        let (socket, stop) = (served.socket.clone(), stop.clone());
        std::thread::spawn(move || {
            let (mut c, _) = RawClient::go(&socket, false).unwrap();
            let (mut x, mut writes) = (1u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let block = (x >> 33) % (SIZE / 2 / 65536);
                assert_eq!(c.write(block * 65536, &[(x >> 56) as u8; 65536]).unwrap(), 0);
                writes += 1;
            }
            c.disconnect().unwrap();
            writes
        })
    };
    let job = mirror::start(
        &rt,
        live,
        &dst,
        MirrorOptions { copy_mode: CopyMode::WriteBlocking, ..Default::default() },
    );
    mirror::wait_ready(&rt, &job);
    // Ready while the writer is still going; now each acknowledged write
    // must already be on the target file.
    let (mut probe, _) = RawClient::go(&served.socket, false).unwrap();
    for (i, at) in [(1u8, SIZE / 2), (2, SIZE - 65536), (3, SIZE * 3 / 4)] {
        assert_eq!(probe.write(at, &[0xe0 + i; 65536]).unwrap(), 0);
        assert_eq!(image::read(&dst, at, 65536), vec![0xe0 + i; 65536]);
    }
    stop.store(true, Ordering::Relaxed);
    let writes = writer.join().expect("writer");
    assert!(writes > 0);
    mirror::complete(&rt, &job);
    tools::assert_identical(&src, &dst);
    probe.disconnect().unwrap();
}

#[test]
fn cancel_after_ready_keeps_serving_the_source() {
    let Rig { _dir, src, dst, rt, live, served } = rig(image::patterned);
    let (mut client, _) = RawClient::go(&served.socket, false).unwrap();
    let job = mirror::start(&rt, live, &dst, MirrorOptions::default());
    mirror::wait_ready(&rt, &job);
    mirror::send(&rt, &job, Command::Cancel { force: false });
    let outcome = rt.block_on(job.wait());
    assert_eq!(outcome, livemirror_core::job::Outcome::Cancelled { consistent: true });
    tools::assert_identical(&src, &dst);
    assert_eq!(client.write(0, &[0x99; 4096]).unwrap(), 0);
    assert_eq!(image::read(&src, 0, 4096), vec![0x99; 4096]);
    assert_eq!(image::read(&dst, 0, 4096), vec![0; 4096], "target untouched");
    client.disconnect().unwrap();
}
