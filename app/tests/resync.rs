//! `livemirror clone --resync`: an earlier copy brought up to date copies
//! only what changed. Judged by `qemu-img compare` and by the bytes the job
//! says it copied.

use std::path::Path;
use std::process::Command;

use livemirror_testkit::pattern;
use livemirror_testkit::tools::{assert_different, assert_identical, qemu_io};
use serde_json::Value;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs `livemirror clone --json ARGS…`, which must succeed, and returns
/// the bytes its last PROGRESS event says were copied.
fn clone_copied(args: &[&str]) -> u64 {
    let out = Command::new(env!("CARGO_BIN_EXE_livemirror"))
        .args(["clone", "--json"])
        .args(args)
        .output()
        .expect("run livemirror");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(events.last().unwrap()["event"], "COMPLETED");
    assert_eq!(events.last().unwrap()["data"]["identical"], true);
    let progress =
        events.iter().rev().find(|e| e["event"] == "PROGRESS").expect("a PROGRESS event");
    progress["data"]["copied"].as_u64().unwrap()
}

#[test]
fn resync_after_one_percent_changed_copies_only_that() {
    const SIZE: u64 = 256 << 20;
    const BLOCK: u64 = 64 << 10;
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src.img"), dir.path().join("dst.img"));
    std::fs::write(&src, pattern(SIZE as usize, 3)).unwrap();
    assert_eq!(clone_copied(&[s(&src), s(&dst)]), SIZE);
    assert_identical(&src, &dst);

    // 1% of the source, in 64 KiB blocks at pseudo-random distinct places.
    let blocks = SIZE / BLOCK;
    let changed = blocks / 100;
    let picks = pattern(8 * changed as usize, 9);
    let mut offsets: Vec<u64> = picks
        .chunks(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()) % blocks * BLOCK)
        .collect();
    offsets.sort_unstable();
    offsets.dedup();
    let writes: Vec<String> = offsets
        .iter()
        .enumerate()
        .map(|(i, o)| format!("write -P {} {o} {BLOCK}", i % 250 + 1))
        .collect();
    let writes: Vec<&str> = writes.iter().map(String::as_str).collect();
    qemu_io(s(&src), &writes);
    assert_different(&src, &dst);

    let copied = clone_copied(&["--resync", s(&src), s(&dst)]);
    assert_identical(&src, &dst);
    let changed_bytes = offsets.len() as u64 * BLOCK;
    assert!(copied >= changed_bytes, "copied {copied} of {changed_bytes} changed bytes");
    assert!(copied <= SIZE / 20, "copied {copied} bytes, more than 5% of {SIZE}");
}
