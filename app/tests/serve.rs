//! `livemirror serve` as a user runs it: qemu-io writes through the NBD
//! export while the mirror runs, the control socket completes the job, and
//! a client that stays connected writes to the target after the pivot.

use std::path::Path;
use std::process::Command;

use livemirror_testkit::control::serve_mirror;
use livemirror_testkit::{image::qemu_img_identical, pattern};
use serde_json::json;

fn qemu_io(socket: &Path, cmd: &str) {
    livemirror_testkit::tools::qemu_io(
        &format!("nbd+unix:///?socket={}", socket.display()),
        &[cmd],
    );
}

#[test]
fn serve_mirrors_nbd_writes_completes_and_pivots() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src.img"), dir.path().join("dst.img"));
    std::fs::write(&src, pattern(32 << 20, 1)).unwrap();
    let served = serve_mirror(
        env!("CARGO_BIN_EXE_livemirror"),
        dir.path(),
        src.to_str().unwrap(),
        dst.to_str().unwrap(),
    );
    let (mut serve, nbd, ctl, mut c) = (served.child, served.nbd, served.ctl, served.control);
    // 32 MiB at 1 MiB/s: certainly still copying while we write.
    // (The job may not have taken its first step yet: "created".)
    let q = c.ask(json!({"execute": "query"}));
    let state = q["return"]["state"].as_str().unwrap_or_default();
    assert!(matches!(state, "created" | "running"), "{q}");
    qemu_io(&nbd, "write -P 0xab 1M 64k");
    let e = c.ask(json!({"execute": "complete"}));
    assert_eq!(e["error"]["class"], "WrongState");
    c.ask(json!({"execute": "set-speed", "arguments": {"speed": 0}}));
    c.event("READY");
    qemu_io(&nbd, "write -P 0xcd 20M 128k");
    assert_eq!(c.ask(json!({"execute": "complete"}))["return"], json!({}));
    c.event("COMPLETED");
    assert!(qemu_img_identical(&src, &dst));
    // After the pivot the export serves the target: the source stays as it was.
    let before = std::fs::read(&src).unwrap();
    qemu_io(&nbd, "write -P 0xef 0 4k");
    assert_eq!(std::fs::read(&src).unwrap(), before);
    assert_eq!(&std::fs::read(&dst).unwrap()[..4096], &[0xef; 4096][..]);
    qemu_io(&nbd, "read -P 0xcd 20M 128k");

    // SAFETY: signalling our own child.
    unsafe { libc::kill(serve.id() as i32, libc::SIGINT) };
    let status = serve.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut serve.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{err}");
    assert!(err.contains("completed"), "{err}");
    assert!(!ctl.exists() && !nbd.exists(), "sockets removed on exit");
}

#[test]
fn serve_refuses_bad_input_before_listening() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.img");
    std::fs::write(&src, pattern(1 << 20, 2)).unwrap();
    let small = dir.path().join("small.img");
    std::fs::write(&small, pattern(4096, 3)).unwrap();
    let nbd = dir.path().join("nbd.sock");
    for (extra, message) in [
        (vec!["--mirror-to", small.to_str().unwrap()], "cannot take over the NBD export"),
        (vec!["--mirror-to", src.to_str().unwrap()], "same device"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_livemirror"))
            .args(["serve", src.to_str().unwrap()])
            .arg(format!("--nbd=unix:{}", nbd.display()))
            .args(&extra)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(message), "{err}");
        assert!(!nbd.exists(), "no socket left behind");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_livemirror"))
        .args(["serve", src.to_str().unwrap(), "--nbd", "10.1.2.3:10809"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
}

#[test]
fn serve_mirrors_onto_a_larger_image_and_gives_it_a_gpt_of_its_size_on_exit() {
    use livemirror_testkit::disk::*;
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src.img"), dir.path().join("dst.img"));
    let parts = gpt_image(&src, 64 * MIB, &[8, 40]);
    let files: Vec<Files> = parts.iter().map(|p| ext4_with_files(&src, *p, 2, 500_000)).collect();
    std::fs::File::create(&dst).unwrap().set_len(128 * MIB).unwrap();
    let served = serve_mirror(
        env!("CARGO_BIN_EXE_livemirror"),
        dir.path(),
        src.to_str().unwrap(),
        dst.to_str().unwrap(),
    );
    let (mut serve, nbd, mut c) = (served.child, served.nbd, served.control);
    assert_eq!(c.ask(json!({"execute": "query"}))["return"]["state"], "running");
    // Writes into the free space after the partitions, during the copy and
    // once in sync; the export has the source's size.
    qemu_io(&nbd, "write -P 0xab 55M 64k");
    c.ask(json!({"execute": "set-speed", "arguments": {"speed": 0}}));
    c.event("READY");
    qemu_io(&nbd, "write -P 0xcd 60M 128k");
    assert_eq!(c.ask(json!({"execute": "complete"}))["return"], json!({}));
    c.event("COMPLETED");
    let info = livemirror_testkit::tools::run(
        "nbdinfo",
        &["--size", &format!("nbd+unix:///?socket={}", nbd.display())],
    );
    assert_eq!(info.trim(), (64 * MIB).to_string(), "the export keeps the source's size");
    qemu_io(&nbd, "read -P 0xcd 60M 128k");

    // SAFETY: signalling our own child.
    unsafe { libc::kill(serve.id() as i32, libc::SIGINT) };
    let status = serve.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut serve.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{err}");
    assert!(err.contains("partition table: GPT rewritten for the target's size"), "{err}");
    assert_sgdisk_valid(&dst);
    assert_eq!(partitions(&dst), parts);
    for (p, files) in parts.iter().zip(&files) {
        assert_same_bytes(&src, &dst, *p);
        assert_fsck_clean(&dst, *p);
        assert_files(&dst, *p, files);
    }
    let written = livemirror_testkit::image::read(&dst, 55 * MIB, 64 << 10);
    assert!(written.iter().all(|b| *b == 0xab), "a live write is missing");
    let written = livemirror_testkit::image::read(&dst, 60 * MIB, 128 << 10);
    assert!(written.iter().all(|b| *b == 0xcd), "a live write is missing");
}
