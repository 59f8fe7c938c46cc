//! `livemirror serve` as a user runs it: qemu-io writes through the NBD
//! export while the mirror runs, the control socket completes the job, and
//! a client that stays connected writes to the target after the pivot.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{Control, appears};
use livemirror_tests::{pattern, qemu_img_identical};
use serde_json::json;

fn qemu_io(socket: &Path, cmd: &str) {
    livemirror_tests::tools::qemu_io(&format!("nbd+unix:///?socket={}", socket.display()), &[cmd]);
}

#[test]
fn serve_mirrors_nbd_writes_completes_and_pivots() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src.img"), dir.path().join("dst.img"));
    std::fs::write(&src, pattern(32 << 20, 1)).unwrap();
    let (nbd, ctl) = (dir.path().join("nbd.sock"), dir.path().join("ctl.sock"));
    let mut serve = Command::new(env!("CARGO_BIN_EXE_livemirror"))
        .args(["serve", src.to_str().unwrap(), "--mirror-to", dst.to_str().unwrap()])
        .arg(format!("--nbd=unix:{}", nbd.display()))
        .arg(format!("--control=unix:{}", ctl.display()))
        .args(["--speed", "1M"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    appears(&ctl);
    appears(&nbd);
    let mut c = Control::connect(&ctl);
    // 32 MiB at 1 MiB/s: certainly still copying while we write.
    let q = c.ask(json!({"execute": "query"}));
    assert_eq!(q["return"]["state"], "running");
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
        (vec!["--mirror-to", small.to_str().unwrap()], "must be the same size"),
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
