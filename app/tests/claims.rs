//! "Identical" only when proven: the scenarios where livemirror used to say
//! it falsely, run as a user runs them, judged by `qemu-img compare` with
//! `qemu-io` as the other program that writes the source.

use std::path::Path;
use std::process::Command;

use livemirror_testkit::control::with_control;
use livemirror_testkit::tools::{assert_different, assert_identical, qemu_io};
use livemirror_testkit::{image::sparse_image, pattern};
use serde_json::json;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn sync_top_of_a_sparse_image_onto_old_data_is_identical() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src.img"), dir.path().join("dst.img"));
    // Data at 1 MiB and 5 MiB, holes elsewhere (offset 0 among them).
    sparse_image(&src, 8 << 20, &[(1 << 20, 256 << 10), (5 << 20, 64 << 10)]);
    std::fs::write(&dst, pattern(8 << 20, 9)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_livemirror"))
        .args(["clone", "--sync", "top", s(&src), s(&dst)])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_identical(&src, &dst);
}

/// `clone SRC DST --no-complete --control`, ready, `qemu-io` writes SRC
/// directly, then `complete` on the control socket.
fn write_around_then_complete(extra: &[&str]) -> (tempfile::TempDir, std::process::Output) {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src.img"), dir.path().join("dst.img"));
    std::fs::write(&src, pattern(48 << 20, 1)).unwrap();
    let mut args = vec!["clone", s(&src), s(&dst), "--no-complete"];
    args.extend(extra);
    let (child, mut c) = with_control(env!("CARGO_BIN_EXE_livemirror"), dir.path(), &args);
    let q = c.ask(json!({"execute": "query"}));
    assert_eq!(q["return"]["tracking"], "lease", "{q}");
    if !q["return"]["ready"].as_bool().unwrap() {
        c.event("READY");
    }
    // qemu-io's open for writing breaks the lease (and waits for the job to
    // let it go): the job says so before the write can happen.
    qemu_io(s(&src), &["write -P 0x77 30M 1M"]);
    let changed = c.event("TRACKING_CHANGED");
    assert_eq!(changed["data"]["tracking"], "none", "{changed}");
    assert_eq!(c.ask(json!({"execute": "complete"}))["return"], json!({}));
    let done = c.event("COMPLETED");
    assert_eq!(done["data"]["tracking"], "none", "{done}");
    let out = child.wait_with_output().unwrap();
    (dir, out)
}

#[test]
fn a_direct_write_after_ready_is_found_by_the_final_comparison() {
    let (dir, out) = write_around_then_complete(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("tracking: lease — read lease"), "{err}");
    assert!(
        err.contains("a program opened the source for writing: tracking is now none — not tracked"),
        "{err}"
    );
    assert!(err.contains("identical to the source (verified"), "{err}");
    assert_identical(&dir.path().join("src.img"), &dir.path().join("dst.img"));
}

#[test]
fn without_verification_a_direct_write_is_not_called_identical() {
    let (dir, out) = write_around_then_complete(&["--no-verify"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "completed but unproven: {err}");
    assert!(!err.contains("identical"), "{err}");
    assert!(err.contains("not verified"), "{err}");
    // Nothing saw qemu-io's write, and the job did not say otherwise.
    assert_different(&dir.path().join("src.img"), &dir.path().join("dst.img"));
}
