//! Freezing the filesystems of a source (Linux, as root): a write blocks
//! while frozen and goes on at thaw; the watchdog thaws when the holder is
//! SIGKILLed and when the time limit passes; each filesystem is frozen once
//! however often it is mounted; a device with nothing mounted gives an
//! empty hold.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use livemirror_core::kernel::{DEFAULT_FREEZE_LIMIT, FreezeError, freeze_all};
use livemirror_testkit::system::{BlockedWriter, Loop, Mount, device_id};
use livemirror_testkit::tools::run;

const MIB: u64 = 1024 * 1024;

/// Guard against a hang: a state that never comes is a failure, not a wait.
const GUARD: Duration = Duration::from_secs(60);

fn mounted_loop() -> (Loop, Mount) {
    let disk = Loop::new(64 * MIB);
    let fs = Mount::ext4(disk.path());
    (disk, fs)
}

#[test]
fn a_write_blocks_while_frozen_and_goes_on_at_thaw() {
    let (disk, fs) = mounted_loop();
    let hold = freeze_all(&device_id(&disk.dev), DEFAULT_FREEZE_LIMIT).expect("freeze");
    assert_eq!(hold.mountpoints(), [fs.path()]);
    let w = BlockedWriter::start(fs.path(), "during-freeze");
    w.wait_blocked();
    assert!(!w.is_done(), "the write finished while frozen");
    let held = hold.thaw().expect("thaw");
    w.wait_done();
    assert!(held > Duration::ZERO);
}

#[test]
fn the_watchdog_thaws_at_the_time_limit() {
    let (disk, fs) = mounted_loop();
    let hold = freeze_all(&device_id(&disk.dev), Duration::from_millis(300)).expect("freeze");
    let w = BlockedWriter::start(fs.path(), "after-limit");
    w.wait_blocked();
    // Nobody thaws: the watchdog does, at the limit.
    w.wait_done();
    assert!(matches!(hold.thaw(), Err(FreezeError::TimeLimit { .. })));
}

#[test]
fn a_filesystem_mounted_twice_is_frozen_once() {
    let (disk, fs) = mounted_loop();
    let bind = tempfile::tempdir().unwrap();
    let bind_path = bind.path().to_str().unwrap();
    run("mount", &["--bind", fs.path().to_str().unwrap(), bind_path]);
    let result = freeze_all(&device_id(&disk.dev), DEFAULT_FREEZE_LIMIT).map(|h| {
        let frozen = h.mountpoints().len();
        h.thaw().map(|_| frozen)
    });
    let _ = Command::new("umount").arg(bind.path()).status();
    assert_eq!(result.expect("freeze").expect("thaw"), 1);
}

#[test]
fn the_watchdog_keeps_none_of_the_callers_other_files() {
    let (disk, _fs) = mounted_loop();
    let (mut r, w) = std::io::pipe().expect("pipe");
    let hold = freeze_all(&device_id(&disk.dev), GUARD).expect("freeze");
    drop(w);
    // EOF comes once every copy of the write end is closed: at once if the
    // watchdog closed the one it inherited, only at its time limit if not.
    std::io::Read::read_to_end(&mut r, &mut Vec::new()).expect("read to EOF");
    hold.thaw().expect("thawed on release, not at the limit");
}

#[test]
fn nothing_mounted_gives_an_empty_hold() {
    let disk = Loop::new(16 * MIB);
    let hold = freeze_all(&device_id(&disk.dev), DEFAULT_FREEZE_LIMIT).expect("freeze");
    assert!(hold.mountpoints().is_empty());
    hold.thaw().expect("thaw");
}

/// Set in the child this test starts: the device whose filesystems it
/// freezes before it waits to be killed.
const HOLDER_ENV: &str = "LIVEMIRROR_TEST_FREEZE_HOLDER";

#[test]
fn the_filesystem_is_writable_within_2s_after_its_holder_is_sigkilled() {
    if let Ok(dev) = std::env::var(HOLDER_ENV) {
        let hold = freeze_all(&device_id(Path::new(&dev)), DEFAULT_FREEZE_LIMIT);
        println!("{}", if hold.is_ok() { "frozen" } else { "failed" });
        loop {
            std::thread::park(); // until SIGKILL
        }
    }
    let (disk, fs) = mounted_loop();
    let mut holder = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "the_filesystem_is_writable_within_2s_after_its_holder_is_sigkilled",
            "--nocapture",
        ])
        .env(HOLDER_ENV, &disk.dev)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the holder");
    let stdout = holder.stdout.take().expect("holder stdout");
    let said = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find(|l| l == "frozen" || l == "failed");
    if said.as_deref() != Some("frozen") {
        let _ = holder.kill();
        panic!("the holder could not freeze: {said:?}");
    }
    let w = BlockedWriter::start(fs.path(), "after-sigkill");
    w.wait_blocked();
    holder.kill().expect("SIGKILL the holder");
    holder.wait().expect("reap the holder");
    let killed = Instant::now();
    w.wait_done();
    let took = killed.elapsed();
    // The promise: writable again within 2 s of the holder's death.
    assert!(took < Duration::from_secs(2), "thawed only after {took:?}");
    eprintln!("writable {took:?} after SIGKILL");
}
