//! `livemirror verify` as a user runs it: real image files, differences
//! injected with qemu-io, exit codes as `cmp` has them, and `qemu-img
//! compare` as the judge of what verify and `--repair` claim.

use std::path::Path;
use std::process::{Command, Output};

use livemirror_testkit::image;
use livemirror_testkit::tools::{assert_different, assert_identical, qemu_io};
use livemirror_testkit::{image::sparse_image, pattern};
use serde_json::Value;

fn livemirror(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_livemirror")).args(args).output().expect("run livemirror")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The JSON events of a run, as (name, data).
fn events(out: &Output) -> Vec<(String, Value)> {
    stdout(out)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("each line is JSON");
            (v["event"].as_str().unwrap().to_owned(), v["data"].clone())
        })
        .collect()
}

/// An odd-sized pair of identical random images.
fn random_pair(dir: &Path, len: usize) -> (std::path::PathBuf, std::path::PathBuf) {
    let (src, dst) = (dir.join("src.img"), dir.join("dst.img"));
    let data = pattern(len, 11);
    std::fs::write(&src, &data).unwrap();
    std::fs::write(&dst, &data).unwrap();
    (src, dst)
}

#[test]
fn a_flipped_byte_is_found_in_its_range_and_repair_fixes_it() {
    let dir = tempfile::tempdir().unwrap();
    let len = (37 << 20) + 1536;
    let (src, dst) = random_pair(dir.path(), len);
    let identical = livemirror(&["verify", s(&src), s(&dst)]);
    assert_eq!(identical.status.code(), Some(0), "{}", stdout(&identical));
    assert!(
        stdout(&identical).starts_with("identical: compared 37.0 MiB"),
        "{}",
        stdout(&identical)
    );

    // A pseudo-random offset (fixed seed, so a failure reproduces), flipped
    // with qemu-io as any other writer would.
    let at = u64::from_le_bytes(pattern(8, 99).try_into().unwrap()) % len as u64;
    let old = image::read(&src, at, 1)[0];
    qemu_io(s(&dst), &[&format!("write -P {} {at} 1", !old)]);
    assert_different(&src, &dst);

    let out = livemirror(&["verify", s(&src), s(&dst), "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let ev = events(&out);
    let mismatches: Vec<(u64, u64)> = ev
        .iter()
        .filter(|(n, _)| n == "MISMATCH")
        .map(|(_, d)| (d["offset"].as_u64().unwrap(), d["len"].as_u64().unwrap()))
        .collect();
    assert_eq!(mismatches.len(), 1, "{ev:?}");
    let (offset, range_len) = mismatches[0];
    assert!(offset <= at && at < offset + range_len, "{at} not in {offset}+{range_len}");
    assert!(range_len <= 4096, "{range_len}");
    let (name, summary) = ev.last().unwrap();
    assert_eq!(name, "VERIFIED");
    assert_eq!(summary["identical"], false);
    assert_eq!(summary["differing"].as_u64(), Some(range_len));

    let text = livemirror(&["verify", s(&src), s(&dst)]);
    assert_eq!(text.status.code(), Some(1));
    assert!(stdout(&text).contains(&format!("differs: bytes {offset}–{}", offset + range_len)));
    assert!(stdout(&text).contains("differs: 1 range, "), "{}", stdout(&text));

    let repaired = livemirror(&["verify", s(&src), s(&dst), "--repair", "--json"]);
    assert_eq!(repaired.status.code(), Some(0), "{}", stdout(&repaired));
    let ev = events(&repaired);
    let repair = ev.iter().find(|(n, _)| n == "REPAIRED").expect("a REPAIRED event");
    assert_eq!(repair.1["copied"].as_u64(), Some(range_len), "only the range is copied");
    assert_eq!(ev.last().unwrap().1["identical"], true);
    assert_identical(&src, &dst);
    assert_eq!(livemirror(&["verify", s(&src), s(&dst)]).status.code(), Some(0));
}

#[test]
fn sparse_images_skip_shared_holes_and_see_data_written_into_a_hole() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src.img"), dir.path().join("dst.img"));
    let size = 256 << 20;
    let extents = [(1 << 20, 3 << 20), (100 << 20, 64 << 10), ((255 << 20) + 4096, 8192)];
    sparse_image(&src, size, &extents);
    sparse_image(&dst, size, &extents);
    let out = livemirror(&["verify", s(&src), s(&dst), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let (_, summary) = events(&out).pop().unwrap();
    assert_eq!(summary["compared"].as_u64(), Some(size));
    assert!(summary["skipped"].as_u64().unwrap() >= size - (8 << 20), "{summary}");

    // Data in a hole of the target, and a hole punched into source data.
    qemu_io(s(&dst), &["write -P 0x33 200M 64K"]);
    qemu_io(s(&src), &["discard 1M 64K"]);
    assert_different(&src, &dst);
    let out = livemirror(&["verify", s(&src), s(&dst), "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let ranges: Vec<(u64, u64)> = events(&out)
        .iter()
        .filter(|(n, _)| n == "MISMATCH")
        .map(|(_, d)| (d["offset"].as_u64().unwrap(), d["len"].as_u64().unwrap()))
        .collect();
    assert_eq!(ranges, [(1 << 20, 64 << 10), (200 << 20, 64 << 10)]);

    let out = livemirror(&["verify", s(&src), s(&dst), "--repair"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("repaired: copied 128.0 KiB in 2 ranges"), "{}", stdout(&out));
    assert_identical(&src, &dst);
}

#[test]
fn trouble_exits_2_with_one_line_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = random_pair(dir.path(), 1 << 20);
    let missing = dir.path().join("missing.img");
    for (a, b) in [(&src, &missing), (&missing, &dst)] {
        let out = livemirror(&["verify", s(a), s(b), "--repair"]);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("livemirror: error: ") && err.contains("missing.img"), "{err}");
    }
    assert!(!missing.exists());

    // A target too small to be a copy is trouble, not a difference.
    let small = dir.path().join("small.img");
    std::fs::write(&small, pattern(4096, 11)).unwrap();
    let out = livemirror(&["verify", s(&src), s(&small), "--repair"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("smaller than the source"));
    assert_eq!(std::fs::read(&small).unwrap(), pattern(4096, 11));

    // An unreadable side (a read error past its start): a directory.
    let out = livemirror(&["verify", s(&src), s(dir.path())]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `--cached` (through the page cache) finds what the default (the media)
/// finds, in the odd-sized tail too, and says the same.
#[test]
fn cached_reading_finds_the_same_differences() {
    let dir = tempfile::tempdir().unwrap();
    let len = (9 << 20) + 1536;
    let (src, dst) = random_pair(dir.path(), len);
    for at in [4096 * 3 + 17, (5 << 20) - 1, len as u64 - 2] {
        let old = image::read(&src, at, 1)[0];
        qemu_io(s(&dst), &[&format!("write -P {} {at} 1", !old)]);
    }
    let media = livemirror(&["verify", s(&src), s(&dst)]);
    let cached = livemirror(&["verify", "--cached", s(&src), s(&dst)]);
    assert_eq!(media.status.code(), Some(1), "{}", stdout(&media));
    assert_eq!(cached.status.code(), Some(1), "{}", stdout(&cached));
    assert_eq!(stdout(&media), stdout(&cached));
    assert_eq!(stdout(&media).matches("differs: bytes").count(), 3, "{}", stdout(&media));
}
