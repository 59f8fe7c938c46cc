//! `livemirror clone` onto a larger or a smaller disk image, as a user runs
//! it, judged by the tools that own the formats: `sgdisk -v`,
//! `sfdisk --verify`, `fsck.ext4 -n` on each target partition (through a
//! loop device over its byte range), the files' bytes (`debugfs`), and
//! `cmp` of every partition.

use std::path::Path;
use std::process::{Command, Output};

use livemirror_testkit::disk::*;

/// Two ext4 partitions of 8 and 40 MiB on a 64 MiB image, with files.
struct Source {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    parts: Vec<Part>,
    files: Vec<Files>,
}

fn source(gpt: bool, mib: &[u64]) -> Source {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("src.img");
    let parts = if gpt { gpt_image(&path, 64 * MIB, mib) } else { mbr_image(&path, 64 * MIB, mib) };
    let files = parts.iter().map(|p| ext4_with_files(&path, *p, 3, 700_000)).collect();
    Source { _dir: dir, path, parts, files }
}

fn clone(src: &Path, dst: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_livemirror"))
        .arg("clone")
        .args(extra)
        .arg(src)
        .arg(dst)
        .output()
        .unwrap()
}

/// Clones and returns the last line, which must say what was compared.
fn clone_ok(src: &Path, dst: &Path, extra: &[&str]) -> String {
    let out = clone(src, dst, extra);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    err.trim().lines().last().unwrap_or_default().to_string()
}

fn target(src: &Source, name: &str, size: u64) -> std::path::PathBuf {
    let p = src.path.with_file_name(name);
    std::fs::File::create(&p).unwrap().set_len(size).unwrap();
    p
}

/// Every partition of the source is on the target: same place, same bytes,
/// a clean filesystem holding the same files.
fn assert_partitions_copied(src: &Source, dst: &Path) {
    assert_eq!(partitions(dst), src.parts);
    for (p, files) in src.parts.iter().zip(&src.files) {
        assert_same_bytes(&src.path, dst, *p);
        assert_fsck_clean(dst, *p);
        assert_files(dst, *p, files);
    }
}

#[test]
fn gpt_onto_a_larger_image_gets_a_valid_table_for_its_size() {
    let src = source(true, &[8, 40]);
    let before = std::fs::read(&src.path).unwrap();
    let dst = target(&src, "dst.img", 128 * MIB);
    let last = clone_ok(&src.path, &dst, &[]);
    assert_eq!(
        last,
        "verified: identical — compared GPT table by meaning, partitions 1, 2 and the bytes around them (0–64.0 MiB) byte for byte, except the GPT headers (rewritten for the target's size; compared by meaning)"
    );
    assert_sgdisk_valid(&dst);
    assert_sfdisk_valid(&dst);
    let out = livemirror_testkit::tools::run("sgdisk", &["-p", dst.to_str().unwrap()]);
    assert!(out.contains(": 262144 sectors, 128.0 MiB"), "{out}");
    assert!(out.contains("last usable sector is 262110"), "{out}");
    assert_partitions_copied(&src, &dst);
    assert!(std::fs::read(&src.path).unwrap() == before, "the source changed");
}

#[test]
fn gpt_onto_a_larger_image_with_grow_gets_the_space_in_its_last_filesystem() {
    let src = source(true, &[8, 40]);
    let dst = target(&src, "dst.img", 128 * MIB);
    let last = clone_ok(&src.path, &dst, &["--grow-last-partition"]);
    assert!(
        last.starts_with("verified: identical — compared GPT table by meaning, partition 1 "),
        "{last}"
    );
    assert!(last.contains("partition 2 (grown, so not compared byte for byte"), "{last}");
    assert_sgdisk_valid(&dst);
    let parts = partitions(&dst);
    assert_eq!(parts[0], src.parts[0]);
    // The usable area ends 33 sectors before 128 MiB; the end is MiB-aligned.
    let grown = parts[1];
    assert_eq!((grown.start, grown.end()), (src.parts[1].start, 127 * MIB));
    assert_same_bytes(&src.path, &dst, parts[0]);
    for (p, files) in parts.iter().zip(&src.files) {
        assert_fsck_clean(&dst, *p);
        assert_files(&dst, *p, files);
    }
    assert_eq!(ext_size(&dst, grown), grown.len, "resize2fs grew the filesystem to the partition");
}

#[test]
fn mbr_onto_a_larger_image_needs_no_fix_up_and_can_grow() {
    let src = source(false, &[8, 20]);
    let plain = target(&src, "plain.img", 96 * MIB);
    let last = clone_ok(&src.path, &plain, &[]);
    assert_eq!(
        last,
        "verified: identical — compared MBR table by meaning, partitions 1, 2 and the bytes around them (0–64.0 MiB) byte for byte"
    );
    assert_sfdisk_valid(&plain);
    assert_partitions_copied(&src, &plain);

    let grown = target(&src, "grown.img", 96 * MIB);
    clone_ok(&src.path, &grown, &["--grow-last-partition"]);
    assert_sfdisk_valid(&grown);
    let parts = partitions(&grown);
    assert_eq!((parts[1].start, parts[1].end()), (src.parts[1].start, 96 * MIB));
    for (p, files) in parts.iter().zip(&src.files) {
        assert_fsck_clean(&grown, *p);
        assert_files(&grown, *p, files);
    }
    assert_eq!(ext_size(&grown, parts[1]), parts[1].len);
}

#[test]
fn gpt_onto_a_smaller_image_that_fits_with_and_without_grow() {
    // Partitions end at 25 MiB of 64: a 40 MiB target takes them.
    let src = source(true, &[8, 16]);
    let dst = target(&src, "dst.img", 40 * MIB);
    let last = clone_ok(&src.path, &dst, &[]);
    assert!(last.starts_with("verified: identical — compared GPT table by meaning, partitions 1, 2 and the bytes around them (0–40.0 MiB)"), "{last}");
    assert_sgdisk_valid(&dst);
    assert_partitions_copied(&src, &dst);

    let grown = target(&src, "grown.img", 40 * MIB);
    clone_ok(&src.path, &grown, &["--grow-last-partition"]);
    assert_sgdisk_valid(&grown);
    let parts = partitions(&grown);
    assert_eq!((parts[1].start, parts[1].end()), (src.parts[1].start, 39 * MIB));
    assert_fsck_clean(&grown, parts[1]);
    assert_files(&grown, parts[1], &src.files[1]);
    assert_eq!(ext_size(&grown, parts[1]), parts[1].len);
}

/// Refused with one line naming the need; the target is unchanged.
fn refused(src: &Path, dst: &Path, message: &str) {
    let before = std::fs::read(dst).unwrap();
    let out = clone(src, dst, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim(), format!("livemirror: error: {message}"));
    assert!(std::fs::read(dst).unwrap() == before, "a refused target was written");
}

#[test]
fn a_smaller_image_that_cannot_take_the_source_is_refused_untouched() {
    let src = source(true, &[8, 40]);
    let dst = src.path.with_file_name("small.img");
    std::fs::write(&dst, livemirror_testkit::pattern(40 * MIB as usize, 9)).unwrap();
    refused(
        &src.path,
        &dst,
        "the target (40.0 MiB) is smaller than the source (64.0 MiB) and cannot take it: partition 2 ends at 49.0 MiB; the target has 40.0 MiB",
    );

    // Partitions that fit, but data past them that would be lost.
    let short = source(true, &[8]);
    livemirror_testkit::image::fill(&short.path, 50 * MIB, 4096, 0x5a);
    refused(
        &short.path,
        &dst,
        "the target (40.0 MiB) is smaller than the source (64.0 MiB) and cannot take it: data at 50.0 MiB past the last partition",
    );
}

#[test]
fn mbr_with_logical_partitions_fits_a_smaller_image_but_its_extended_one_is_not_grown() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.img");
    let parts =
        mbr_image_with(&src, 64 * MIB, &["size=8M", "size=20M, type=5", "start=20480, size=10M"]);
    assert_eq!(parts.iter().map(|p| p.number).collect::<Vec<_>>(), [1, 2, 5]);
    let logical = parts[2];
    let files = ext4_with_files(&src, logical, 2, 300_000);

    // Everything ends at 29 MiB: a 40 MiB image takes it.
    let small = dir.path().join("small.img");
    std::fs::File::create(&small).unwrap().set_len(40 * MIB).unwrap();
    let last = clone_ok(&src, &small, &[]);
    assert!(
        last.starts_with("verified: identical — compared MBR table by meaning, partitions 1, 2, 5"),
        "{last}"
    );
    assert_sfdisk_valid(&small);
    assert_eq!(partitions(&small), parts);
    assert_same_bytes(&src, &small, logical);
    assert_fsck_clean(&small, logical);
    assert_files(&small, logical, &files);

    // The copy completes, but growing a logical partition needs its
    // extended partition and EBR chain rewritten: refused, table untouched.
    let big = dir.path().join("big.img");
    std::fs::File::create(&big).unwrap().set_len(96 * MIB).unwrap();
    let out = clone(&src, &big, &["--grow-last-partition"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.trim().ends_with("livemirror: error: the copy is complete, but its partition table could not be fixed up: cannot grow partition 2: it is an extended partition (growing it and the logical partitions in it needs a partition tool)"),
        "{err}"
    );
    assert_sfdisk_valid(&big);
    assert_eq!(partitions(&big), parts);
    assert_files(&big, logical, &files);
}
