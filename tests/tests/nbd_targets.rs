//! livemirror's NBD client against servers nobody here wrote: nbdkit
//! (memory, file, error filter) and qemu-nbd as targets and sources,
//! judged by nbdcopy, nbdinfo and qemu-img compare.

use std::sync::Arc;

use livemirror_core::Side;
use livemirror_core::device::{BlockDevice, NbdDevice, extents};
use livemirror_core::job::{MirrorOptions, Outcome};
use livemirror_core::live::LiveSource;
use livemirror_testkit::daemon::Daemon;
use livemirror_testkit::mirror::{self, complete, start_on, wait_ready};
use livemirror_testkit::server::runtime;
use livemirror_testkit::{image, image::data_bytes, image::sparse_image, tools};

const SIZE: u64 = 16 << 20;

fn nbd(uri: &str, write: bool) -> Arc<NbdDevice> {
    Arc::new(NbdDevice::open_uri(uri, write).expect("open NBD export"))
}

/// Mirrors `live` onto `target` until Complete; fails the test otherwise.
fn mirror_to(live: Arc<LiveSource>, target: Arc<dyn BlockDevice>) {
    let rt = runtime();
    let job = start_on(&rt, live, target, MirrorOptions::default());
    wait_ready(&rt, &job);
    complete(&rt, &job);
}

/// `nbdinfo --map` lines that are data, as (offset, length).
fn data_extents(uri: &str) -> Vec<(u64, u64)> {
    tools::run("nbdinfo", &["--map", uri])
        .lines()
        .filter(|l| l.trim_end().ends_with("data"))
        .map(|l| {
            let mut f = l.split_whitespace().map(|n| n.parse::<u64>().expect("nbdinfo number"));
            (f.next().unwrap_or(0), f.next().unwrap_or(0))
        })
        .collect()
}

#[test]
fn raw_to_an_nbdkit_memory_target_and_back_is_identical() {
    let dir = tempfile::tempdir().unwrap();
    let src = image::full(dir.path(), "src.img", SIZE);
    let server = Daemon::nbdkit(&["memory", &SIZE.to_string()]);
    mirror_to(mirror::live_file(&src), nbd(&server.uri(), true));
    // nbdcopy (libnbd) reads the export back: it holds the source's bytes.
    let copied = dir.path().join("copied.img");
    tools::run("nbdcopy", &[&server.uri(), copied.to_str().unwrap()]);
    tools::assert_identical(&src, &copied);
    // And back: the export as a source, onto a fresh image.
    let back = image::sparse(dir.path(), "back.img", SIZE);
    let source = LiveSource::new(nbd(&server.uri(), false));
    let rt = runtime();
    let job = mirror::start(&rt, source, &back, MirrorOptions::default());
    wait_ready(&rt, &job);
    complete(&rt, &job);
    tools::assert_identical(&src, &back);
}

#[test]
fn a_sparse_source_leaves_holes_unwritten_on_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("sparse.img");
    let extents = [(1 << 20, 256 << 10), (9 << 20, 64 << 10)];
    sparse_image(&src, SIZE, &extents);
    let server = Daemon::nbdkit(&["memory", &SIZE.to_string()]);
    mirror_to(mirror::live_file(&src), nbd(&server.uri(), true));
    // base:allocation of the target (nbdinfo asks nbdkit): data exactly
    // where the source had it, the rest never written.
    assert_eq!(data_extents(&server.uri()), extents.to_vec());
    assert_eq!(data_bytes(&src), (256 + 64) << 10);
    let copied = dir.path().join("copied.img");
    tools::run("nbdcopy", &[&server.uri(), copied.to_str().unwrap()]);
    tools::assert_identical(&src, &copied);
}

#[test]
fn a_qemu_nbd_export_source_copies_identically_and_reports_its_holes() {
    let dir = tempfile::tempdir().unwrap();
    let src = image::patterned(dir.path(), "src.img", SIZE);
    let server = Daemon::qemu_nbd(&src);
    let dev = nbd(&server.uri(), false);
    // qemu-nbd reports the image's holes through base:allocation: the
    // data it maps is the data the file holds.
    let runs = extents(&*dev, 0..SIZE).map(Result::unwrap);
    let data: u64 = runs.filter(|run| !run.status.reads_zero()).map(|run| run.len).sum();
    assert_eq!(data, data_bytes(&src));
    let out = image::sparse(dir.path(), "out.img", SIZE);
    let rt = runtime();
    let job = mirror::start(&rt, LiveSource::new(dev), &out, MirrorOptions::default());
    wait_ready(&rt, &job);
    complete(&rt, &job);
    tools::assert_identical(&src, &out);
    assert!(data_bytes(&out) < SIZE, "holes stayed holes");
}

#[test]
fn a_failing_target_fails_the_job_with_the_servers_error() {
    let dir = tempfile::tempdir().unwrap();
    let src = image::full(dir.path(), "src.img", SIZE);
    let server = Daemon::nbdkit(&[
        "--filter=error",
        "memory",
        &SIZE.to_string(),
        "error-pwrite=ENOSPC",
        "error-pwrite-rate=100%",
    ]);
    let rt = runtime();
    let job =
        start_on(&rt, mirror::live_file(&src), nbd(&server.uri(), true), MirrorOptions::default());
    let outcome = rt.block_on(job.wait());
    let Outcome::Failed { error } = outcome else { panic!("the job did not fail: {outcome:?}") };
    let failure = error.io().expect("an I/O failure");
    assert_eq!((failure.side, failure.errno), (Side::Target, libc::ENOSPC), "{error}");
    let text = error.to_string();
    assert!(
        text.contains("target write failed") && text.contains("No space left on device"),
        "{text}"
    );
}
