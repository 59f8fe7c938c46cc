//! `livemirror clone` of a mounted disk with kernel write tracking (Linux,
//! as root), run as a user runs it: `clone /dev/loopN DST --no-complete
//! --control …` while a program writes the filesystem, then `complete` on
//! the control socket with the writer still running. Judged by `fsck.ext4
//! -n`, the files the writer had fsynced (read back with debugfs), and
//! `qemu-img compare` once the writes stopped.
//!
//! Each runs twice: tracking in the clone's own process (root), and through
//! the privileged helper (`livemirror kernel-helper`) that a clone or the
//! window not run as root starts with pkexec — here started as is, the
//! test being root already (`LIVEMIRROR_KERNEL_HELPER=`). The helper's own
//! promise is checked at its pipe: when the process it serves goes, its
//! freeze goes at once.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use livemirror_testkit::control::{Control, command_with_control};
use livemirror_testkit::system::{
    BlockedWriter, Loop, Mount, Writer, assert_durable_files, device_id,
};
use livemirror_testkit::tools::{assert_identical, run};
use serde_json::{Value, json};

const MIB: u64 = 1024 * 1024;
const BIN: &str = env!("CARGO_BIN_EXE_livemirror");

#[derive(Clone, Copy, Debug)]
enum Via {
    /// The clone is root and tracks in its own process.
    InProcess,
    /// The clone asks its helper, as one not run as root does.
    Helper,
}

/// `clone DEV DIR/target.img --no-complete` with the control
/// socket connected, once it is ready with kernel tracking.
fn ready_clone(dev: &Path, dir: &Path, via: Via) -> (Child, Control) {
    let target = dir.join("target.img");
    let mut cmd = Command::new(BIN);
    cmd.arg("clone").arg(dev).arg(&target).arg("--no-complete");
    match via {
        Via::InProcess => cmd.env_remove("LIVEMIRROR_KERNEL_HELPER"),
        Via::Helper => cmd.env("LIVEMIRROR_KERNEL_HELPER", ""),
    };
    let (mut child, mut c) = command_with_control(cmd, dir);
    let q = c.ask(json!({"execute": "query"}));
    if q["return"]["tracking"] != "kernel" {
        // Why it fell back is on the clone's stderr.
        let _ = child.kill();
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        panic!("{via:?}: not kernel-tracked: {q}\n{err}");
    }
    if !q["return"]["ready"].as_bool().expect("ready is a bool") {
        c.event("READY");
    }
    assert_eq!(helpers_of(child.id()), matches!(via, Via::Helper) as usize, "{via:?}");
    (child, c)
}

/// How many `livemirror kernel-helper` processes `pid` has started.
fn helpers_of(pid: u32) -> usize {
    let children = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the clone runs")
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| c.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .collect::<Vec<_>>();
    children
        .iter()
        .filter(|child| {
            let cmdline = std::fs::read(format!("/proc/{child}/cmdline")).unwrap_or_default();
            cmdline.split(|&b| b == 0).any(|arg| arg == b"kernel-helper")
        })
        .count()
}

/// Sends `complete` and returns the COMPLETED event and the exit output.
fn complete(child: Child, c: &mut Control) -> (Value, std::process::Output) {
    assert_eq!(c.ask(json!({"execute": "complete"}))["return"], json!({}));
    let done = c.event("COMPLETED");
    (done, child.wait_with_output().expect("the clone ends"))
}

fn complete_with_the_writer_running(via: Via) {
    let disk = Loop::new(64 * MIB);
    let fs = Mount::ext4(disk.path());
    let dir = tempfile::tempdir().expect("temp dir");
    let writer = Writer::start(fs.path());
    let mut durable = writer.durable(5);
    let (child, mut c) = ready_clone(&disk.dev, dir.path(), via);
    // Files made while the job mirrors; then Complete with the writer on.
    durable.extend(writer.durable(20));
    let (done, out) = complete(child, &mut c);
    writer.stop();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(done["data"]["proof"], "tracked", "{done}");
    assert_eq!(done["data"]["identical"], true, "{done}");
    assert!(done["data"]["held_ms"].as_u64().is_some(), "the hold is reported: {done}");
    assert!(err.contains("writers held"), "{err}");
    let image = dir.path().join("target.img");
    run("fsck.ext4", &["-n", "-f", image.to_str().expect("utf-8")]);
    assert_durable_files(&image, &durable);
}

#[test]
fn complete_with_a_writer_running_gives_a_clean_filesystem_with_every_fsynced_file() {
    complete_with_the_writer_running(Via::InProcess);
}

#[test]
fn through_the_helper_complete_with_a_writer_running_gives_every_fsynced_file() {
    complete_with_the_writer_running(Via::Helper);
}

/// Writes files and raw overwrites inside a big one while mirrored, stops
/// and unmounts (a thaw writes the superblock after the last drain;
/// unmounted, nothing writes), completes: the target equals the disk.
fn identical_once_the_writes_stop(via: Via) {
    let disk = Loop::new(64 * MIB);
    let fs = Mount::ext4(disk.path());
    let dir = tempfile::tempdir().expect("temp dir");
    let (child, mut c) = ready_clone(&disk.dev, dir.path(), via);
    let writer = Writer::start(fs.path());
    writer.durable(20);
    writer.stop();
    let big = fs.path().join("big");
    std::fs::write(&big, livemirror_testkit::pattern(4 << 20, 3)).expect("big file");
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&big).expect("open big");
        for i in 0..32u64 {
            let at = (i * 7919 * 4096) % ((4 << 20) - 4096);
            f.write_all_at(&livemirror_testkit::pattern(4096, i + 1000), at).expect("overwrite");
        }
        f.sync_all().expect("fsync big");
    }
    drop(fs);
    let (done, out) = complete(child, &mut c);
    let err = String::from_utf8_lossy(&out.stderr);
    // Nothing was mounted to freeze at Complete: exact for every write
    // completed before it, which is not called identical.
    assert_eq!(done["data"]["proof"], "tracked-unheld", "{done}");
    assert_eq!(out.status.code(), Some(4), "completed, unproven: {err}");
    assert_identical(&disk.dev, &dir.path().join("target.img"));
}

#[test]
fn with_the_writer_stopped_the_target_equals_the_disk() {
    identical_once_the_writes_stop(Via::InProcess);
}

#[test]
fn through_the_helper_with_the_writer_stopped_the_target_equals_the_disk() {
    identical_once_the_writes_stop(Via::Helper);
}

/// `livemirror kernel-helper`, attached to `dev` and with its filesystems
/// frozen, as a window would have it at Complete.
fn frozen_helper(dev: &Path) -> (Child, std::process::ChildStdin) {
    let mut helper = Command::new(BIN)
        .arg("kernel-helper")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run the helper");
    let mut to = helper.stdin.take().expect("stdin");
    let mut from = BufReader::new(helper.stdout.take().expect("stdout")).lines();
    let mut ask = |req: Value| -> Value {
        writeln!(to, "{req}").expect("send");
        let line = from.next().expect("a reply").expect("read");
        serde_json::from_str(&line).expect("JSON")
    };
    let id = device_id(dev);
    let attached =
        ask(json!({"op": "attach", "device": dev, "granularity": 65536, "span_words": 1 << 20}));
    let livemirror_core::device::DeviceId::Block { disk, len, .. } = id else { panic!("{id:?}") };
    assert_eq!(attached["attached"]["disk"], disk, "{attached}");
    assert_eq!(attached["attached"]["len"], len, "{attached}");
    let frozen = ask(json!({"op": "freeze", "limit_ms": 60_000}));
    assert_eq!(frozen["frozen"]["filesystems"], 1, "{frozen}");
    drop(from);
    (helper, to)
}

#[test]
fn when_the_process_it_serves_goes_the_helper_thaws_within_2s() {
    let disk = Loop::new(64 * MIB);
    let fs = Mount::ext4(disk.path());
    let (mut helper, to) = frozen_helper(&disk.dev);
    let w = BlockedWriter::start(fs.path(), "after-the-window");
    w.wait_blocked();
    // What the kernel does to the pipe when the window dies, by SIGKILL
    // or otherwise: its end closes.
    drop(to);
    let gone = Instant::now();
    w.wait_done();
    let took = gone.elapsed();
    assert!(took < Duration::from_secs(2), "thawed only after {took:?}");
    assert!(helper.wait().expect("the helper ends").success());
}

#[test]
fn a_sigkilled_helper_is_thawed_after_by_its_watchdog_within_2s() {
    let disk = Loop::new(64 * MIB);
    let fs = Mount::ext4(disk.path());
    let (mut helper, _to) = frozen_helper(&disk.dev);
    let w = BlockedWriter::start(fs.path(), "after-the-helper");
    w.wait_blocked();
    helper.kill().expect("SIGKILL the helper");
    helper.wait().expect("reap the helper");
    let killed = Instant::now();
    w.wait_done();
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(2), "thawed only after {took:?}");
}
