//! NBD exports as targets of `livemirror clone` and `serve --mirror-to`,
//! served by qemu-nbd and nbdkit in other processes, and a target server
//! that is killed mid-job: the job pauses asking "target connection lost:
//! Retry / Stop" (under the default policy), the server comes back,
//! `decide retry` reconnects and finishes the copy, identical.

use std::path::Path;
use std::process::Command;

use livemirror_testkit::control::{Control, serve_mirror, with_control};
use livemirror_testkit::daemon::Daemon;
use livemirror_testkit::{image::qemu_img_identical, pattern, tools};
use serde_json::json;

const SIZE: usize = 32 << 20;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A source of pattern bytes and a zero-filled target image of its size.
fn images(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (src, dst) = (dir.join("src.img"), dir.join("dst.img"));
    std::fs::write(&src, pattern(SIZE, 7)).unwrap();
    std::fs::File::create(&dst).unwrap().set_len(SIZE as u64).unwrap();
    (src, dst)
}

/// Completes a served mirror, stops `serve` (Ctrl-C) and then its target's
/// server, and judges the copy with `qemu-img compare`.
fn complete_stop_and_compare(
    mut c: Control,
    mut serve: std::process::Child,
    target: Daemon,
    src: &Path,
    dst: &Path,
) {
    assert_eq!(c.ask(json!({"execute": "complete"}))["return"], json!({}));
    c.event("COMPLETED");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(serve.id() as i32, libc::SIGINT) };
    assert!(serve.wait().unwrap().success());
    drop(target);
    assert!(qemu_img_identical(src, dst));
}

#[test]
fn clone_onto_a_qemu_nbd_export_is_identical() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = images(dir.path());
    let server = Daemon::qemu_nbd(&dst);
    let out = Command::new(env!("CARGO_BIN_EXE_livemirror"))
        .args(["clone", s(&src), &server.uri()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("identical"), "{err}");
    drop(server);
    assert!(qemu_img_identical(&src, &dst));
}

/// `verify` with an NBD export on one side (nbdkit serving the copy):
/// identical exits 0; a byte flipped through the export (qemu-io) is found
/// in its range, exit 1; `--repair` writes it back through the export, and
/// `qemu-img compare` agrees.
#[test]
fn verify_and_repair_a_copy_behind_an_nbd_export() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = images(dir.path());
    std::fs::copy(&src, &dst).unwrap();
    let server = Daemon::nbdkit(&["file", s(&dst)]);
    let verify = |extra: &[&str]| {
        let mut args = vec!["verify", "--json", s(&src)];
        let uri = server.uri();
        args.push(&uri);
        args.extend(extra);
        let out = Command::new(env!("CARGO_BIN_EXE_livemirror")).args(&args).output().unwrap();
        let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect();
        (out.status.code(), events, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, _, err) = verify(&[]);
    assert_eq!(code, Some(0), "{err}");
    let at = 21 * 1024 * 1024 + 12345;
    tools::qemu_io(&server.uri(), &[&format!("write -P 0x5a {at} 1")]);
    let (code, events, err) = verify(&[]);
    assert_eq!(code, Some(1), "{err}");
    let mismatch = events.iter().find(|e| e["event"] == "MISMATCH").expect("a MISMATCH event");
    let (offset, len) =
        (mismatch["data"]["offset"].as_u64().unwrap(), mismatch["data"]["len"].as_u64().unwrap());
    assert!(offset <= at && at < offset + len && len <= 4096, "{mismatch}");
    let (code, _, err) = verify(&["--repair"]);
    assert_eq!(code, Some(0), "{err}");
    drop(server);
    assert!(qemu_img_identical(&src, &dst));
}

#[test]
fn a_too_small_or_a_read_only_export_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (src, _) = images(dir.path());
    for (args, message) in [
        (vec!["memory", "1M"], "is smaller than the source (32.0 MiB) and cannot take it"),
        (vec!["-r", "memory", "32M"], "read-only export"),
    ] {
        let server = Daemon::nbdkit(&args);
        let out = Command::new(env!("CARGO_BIN_EXE_livemirror"))
            .args(["clone", s(&src), &server.uri()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(message), "{args:?}: {err}");
    }
}

#[test]
fn serve_mirrors_qemu_io_writes_onto_a_qemu_nbd_target() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = images(dir.path());
    let target = Daemon::qemu_nbd(&dst);
    let served = serve_mirror(env!("CARGO_BIN_EXE_livemirror"), dir.path(), s(&src), &target.uri());
    let (serve, nbd, mut c) = (served.child, served.nbd, served.control);
    let source_uri = format!("nbd+unix:///?socket={}", nbd.display());
    tools::qemu_io(&source_uri, &["write -P 0xab 1M 64k", "write -P 0xcd 30M 128k"]);
    c.ask(json!({"execute": "set-speed", "arguments": {"speed": 0}}));
    c.event("READY");
    tools::qemu_io(&source_uri, &["write -P 0xef 20M 4k"]);
    complete_stop_and_compare(c, serve, target, &src, &dst);
}

/// A client's FUA write to a mirror switched to write-blocking mode goes
/// through to an NBD target as a FUA write (nbdkit's log filter, next to
/// livemirror's client, shows the flag), and the copy ends identical.
#[test]
fn a_fua_write_reaches_an_nbd_target_as_fua_in_write_blocking_mode() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = images(dir.path());
    let log = dir.path().join("nbdkit.log");
    let logfile = format!("logfile={}", log.display());
    let target = Daemon::nbdkit(&["--filter=log", "file", s(&dst), &logfile]);
    let served = serve_mirror(env!("CARGO_BIN_EXE_livemirror"), dir.path(), s(&src), &target.uri());
    let (serve, nbd, mut c) = (served.child, served.nbd, served.control);
    c.ask(json!({"execute": "set-speed", "arguments": {"speed": 0}}));
    c.event("READY");
    let blocking =
        json!({"execute": "set-copy-mode", "arguments": {"copy-mode": "write-blocking"}});
    assert_eq!(c.ask(blocking)["return"], json!({}));
    let source_uri = format!("nbd+unix:///?socket={}", nbd.display());
    tools::qemu_io(&source_uri, &["write -f -P 0x5a 20M 64k"]);
    let sent = std::fs::read_to_string(&log).unwrap();
    assert!(
        sent.lines()
            .any(|l| l.contains(" Write ")
                && l.ends_with("offset=0x1400000 count=0x10000 fua=1 ...")),
        "{sent}"
    );
    complete_stop_and_compare(c, serve, target, &src, &dst);
}

#[test]
fn a_killed_target_server_pauses_the_job_and_retry_completes_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = images(dir.path());
    // The file plugin keeps what was written across the restart.
    let mut target = Daemon::nbdkit(&["file", s(&dst)]);
    let uri = target.uri();
    // The default policy (report): a lost target asks all the same.
    let args = ["clone", s(&src), &uri, "--speed", "2M"];
    let (mut clone, mut c) = with_control(env!("CARGO_BIN_EXE_livemirror"), dir.path(), &args);
    // 32 MiB at 2 MiB/s: copying has begun and is far from done.
    c.until(|v| v["event"] == "PROGRESS" && v["data"]["copied"].as_u64() > Some(0));
    target.kill();
    let error = c.event("ERROR");
    assert_eq!(error["data"]["side"], "target", "{error}");
    assert_eq!(error["data"]["action"], "stop", "{error}");
    assert!(error["data"]["message"].as_str().unwrap().contains("connection lost"), "{error}");
    assert_eq!(error["data"]["lost"], true, "{error}");
    assert_ne!(error["data"]["errno"], 0, "{error}");
    let q = c.ask(json!({"execute": "query"}));
    assert_eq!(q["return"]["io-status"], "failed", "{q}");

    target.start();
    c.ask(json!({"execute": "set-speed", "arguments": {"speed": 0}}));
    assert_eq!(
        c.ask(json!({"execute": "decide", "arguments": {"action": "retry"}}))["return"],
        json!({})
    );
    // `clone` exits 0 only with a completed, identical target. (Its last
    // events may not reach the control socket: clone exits at once.)
    let status = clone.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut clone.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success() && err.contains("identical"), "{err}");
    assert!(err.contains("target connection lost: waiting for a decision"), "{err}");
    drop(target);
    assert!(qemu_img_identical(&src, &dst));
}

/// `qemu-img compare` of an image file with what an NBD export serves.
fn export_identical(file: &Path, uri: &str) -> bool {
    Command::new("qemu-img")
        .args(["compare", "-q", "-f", "raw", "-F", "raw", s(file), uri])
        .status()
        .unwrap()
        .success()
}

/// A sparse source served by nbdkit's sparse-random plugin (random data in
/// scattered runs, holes elsewhere): the copy is identical, as `qemu-img
/// compare` reads the export, and as sparse (holes are never written).
#[test]
fn clone_of_an_nbdkit_sparse_random_export_is_identical_and_sparse() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let server = Daemon::nbdkit(&["sparse-random", "64M", "seed=7", "percent=10"]);
    let dst = dir.path().join("copy.img");
    let out = Command::new(env!("CARGO_BIN_EXE_livemirror"))
        .args(["clone", &server.uri(), s(&dst)])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.contains("identical"), "{err}");
    assert!(export_identical(&dst, &server.uri()));
    let allocated = std::fs::metadata(&dst).unwrap().blocks() * 512;
    assert!(allocated < 64 << 20 >> 2, "{allocated} bytes allocated for about 10% data");
}

/// A slow target server (nbdkit's delay filter: every write waits 10 ms):
/// the clone takes longer and ends identical.
#[test]
fn clone_onto_a_slow_nbd_target_is_identical() {
    let dir = tempfile::tempdir().unwrap();
    let (src, _) = images(dir.path());
    let target = Daemon::nbdkit(&["--filter=delay", "memory", "32M", "wdelay=10ms"]);
    let out = Command::new(env!("CARGO_BIN_EXE_livemirror"))
        .args(["clone", s(&src), &target.uri()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.contains("identical"), "{err}");
    assert!(export_identical(&src, &target.uri()));
}

/// A target whose writes fail with EIO while a trigger file exists
/// (nbdkit's error filter): under `--on-target-error stop` the job asks,
/// the fault is cleared, `decide retry` finishes the copy, identical.
#[test]
fn write_errors_from_an_nbd_target_ask_and_retry_finishes_once_they_stop() {
    let dir = tempfile::tempdir().unwrap();
    let (src, _) = images(dir.path());
    let trigger = dir.path().join("failing");
    std::fs::write(&trigger, b"").unwrap();
    let file = format!("error-pwrite-file={}", trigger.display());
    let target = Daemon::nbdkit(&[
        "--filter=error",
        "memory",
        "32M",
        "error=EIO",
        "error-pwrite-rate=100%",
        &file,
    ]);
    let uri = target.uri();
    let args = ["clone", s(&src), &uri, "--on-target-error", "stop", "--no-complete"];
    let (mut clone, mut c) = with_control(env!("CARGO_BIN_EXE_livemirror"), dir.path(), &args);
    // The first write fails at once, perhaps before this connection heard
    // anything: the job's query says what it is asking about, else the
    // ERROR event does when it comes.
    let q = c.ask(json!({"execute": "query"}));
    let failure = match &q["return"]["pending-error"] {
        serde_json::Value::Null => c.event("ERROR")["data"].clone(),
        pending => pending.clone(),
    };
    assert_eq!(failure["side"], "target", "{failure}");
    assert_eq!(failure["errno"], libc::EIO, "{failure}");
    assert_eq!(failure["lost"], false, "reads still work: {failure}");
    let q = c.ask(json!({"execute": "query"}));
    assert_eq!(q["return"]["io-status"], "failed", "stopped on it and asking: {q}");
    std::fs::remove_file(&trigger).unwrap();
    let retry = json!({"execute": "decide", "arguments": {"action": "retry"}});
    assert_eq!(c.ask(retry)["return"], json!({}));
    c.event("READY");
    assert_eq!(c.ask(json!({"execute": "complete"}))["return"], json!({}));
    let status = clone.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut clone.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success() && err.contains("identical"), "{err}");
    assert!(export_identical(&src, &uri));
}
