//! A stopped demo leaves nothing behind: `livemirror demo` in the terminal,
//! sent SIGTERM or SIGINT while it copies, removes its images and ends as
//! the signal asks (exit status 128 + its number).
#![cfg(unix)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

/// The demo folders in `tmp`.
fn demo_folders(tmp: &Path) -> Vec<String> {
    std::fs::read_dir(tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("livemirror-demo"))
        .collect()
}

fn a_stopped_demo_leaves_no_images(signal: i32) {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_livemirror"))
        // 64 MiB at 1 MiB/s: still copying when the signal comes.
        .args(["demo", "--size", "64M", "--speed", "1M"])
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env("TMPDIR", tmp.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut said = String::new();
    // The demo names its images once they are made.
    while !said.lines().any(|l| l.starts_with("source ")) {
        let n = err.read_line(&mut said).unwrap();
        assert!(n > 0, "the demo ended before making its images: {said}");
    }
    assert_eq!(demo_folders(tmp.path()).len(), 1, "{said}");
    // SAFETY: a signal to the child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
    // Read the rest, so the child never blocks on a full pipe.
    let mut rest = String::new();
    while err.read_line(&mut rest).unwrap() > 0 {}
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + signal), "{said}{rest}");
    assert_eq!(demo_folders(tmp.path()), Vec::<String>::new(), "the demo's images are left");
}

#[test]
fn sigterm_removes_the_demo_images() {
    a_stopped_demo_leaves_no_images(libc::SIGTERM);
}

#[test]
fn sigint_removes_the_demo_images() {
    a_stopped_demo_leaves_no_images(libc::SIGINT);
}
