//! Compressed images as `clone` sources (flashing): every format, detected
//! by content, written identical to the decompressed image (judged by
//! comparing bytes); corrupt and truncated archives and too-small targets
//! fail with a clear error, exit 1, and nothing called identical.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use livemirror_testkit::pattern;

const SIZE: usize = 8 << 20;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Pattern data with zero runs (holes to keep, zeroes to write).
fn image(dir: &Path) -> PathBuf {
    let mut data = pattern(SIZE, 5);
    data[1 << 20..3 << 20].fill(0);
    data[SIZE - (1 << 20)..].fill(0);
    let path = dir.join("disk.img");
    std::fs::write(&path, data).unwrap();
    path
}

/// Compresses `image` with the CLI tool for `format` into `out`.
fn compress(format: &str, image: &Path, out: &Path) {
    let sh = match format {
        // Several blocks, so liblzma's decoder runs them on several threads.
        "xz" => format!("xz -T2 --block-size=1MiB -c '{}' > '{}'", s(image), s(out)),
        "zstd" => format!("zstd -q -T2 -c '{}' > '{}'", s(image), s(out)),
        "gzip" => format!("gzip -c '{}' > '{}'", s(image), s(out)),
        "bzip2" => format!("bzip2 -c '{}' > '{}'", s(image), s(out)),
        "zip" => format!("cd '{}' && zip -q '{}' disk.img", s(image.parent().unwrap()), s(out)),
        _ => unreachable!(),
    };
    let st = Command::new("sh").args(["-c", &sh]).status().unwrap();
    assert!(st.success(), "{sh}: is {format} installed? (scripts/test.sh installs it)");
}

const FORMATS: [(&str, &str); 5] = [
    ("xz", "img.xz"),
    ("zstd", "img.zst"),
    ("gzip", "img.gz"),
    ("bzip2", "img.bz2"),
    ("zip", "zip"),
];

fn clone(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_livemirror")).arg("clone").args(args).output().unwrap()
}

#[test]
fn every_format_onto_a_new_file_and_onto_old_data_is_identical() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path());
    let raw = std::fs::read(&img).unwrap();
    for (format, ext) in FORMATS {
        let packed = dir.path().join(format!("packed.{ext}"));
        compress(format, &img, &packed);

        let new = dir.path().join(format!("new-{format}.img"));
        let out = clone(&[s(&packed), s(&new)]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{format}: {err}");
        assert!(err.contains(&format!("a {format}-compressed image")), "{err}");
        assert!(err.contains("the target is identical to the decompressed image"), "{err}");
        assert!(std::fs::read(&new).unwrap() == raw, "{format}: new file differs");
        let on_disk = livemirror_testkit::image::data_bytes(&new);
        assert!(on_disk <= (SIZE - (3 << 20)) as u64, "{format}: zero runs written: {on_disk}");

        // Larger, full of old bytes: the image's part identical (zero runs
        // zeroed), the rest untouched.
        let old = dir.path().join("old.img");
        let old_bytes = pattern(SIZE + (1 << 20), 99);
        std::fs::write(&old, &old_bytes).unwrap();
        let out = clone(&[s(&packed), s(&old)]);
        assert!(out.status.success(), "{format}: {}", String::from_utf8_lossy(&out.stderr));
        let got = std::fs::read(&old).unwrap();
        assert!(got[..SIZE] == raw[..], "{format}: image part differs");
        assert!(got[SIZE..] == old_bytes[SIZE..], "{format}: past the image was written");
    }
}

/// A gzip named `.img`: the content decides, not the name. With `--json`
/// the end is a FLASH_COMPLETED event that says identical.
#[test]
fn a_misnamed_archive_is_found_by_content_and_json_reports_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path());
    let packed = dir.path().join("looks-raw.img");
    compress("gzip", &img, &packed);
    let new = dir.path().join("new.img");
    let out = clone(&["--json", s(&packed), s(&new)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "FLASH_COMPLETED", "{stdout}");
    assert_eq!(last["data"]["identical"], true);
    assert_eq!(last["data"]["len"], SIZE as u64);
    assert_eq!(std::fs::read(&new).unwrap(), std::fs::read(&img).unwrap());
}

/// A byte flipped in the middle, or the second half cut off: every format
/// fails with "corrupt or truncated" (zip: its CRC or its directory), exit
/// 1, never "identical", and the new target file is gone.
#[test]
fn corrupt_and_truncated_archives_fail_clearly_and_claim_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path());
    for (format, ext) in FORMATS {
        let packed = dir.path().join(format!("packed.{ext}"));
        compress(format, &img, &packed);
        let good = std::fs::read(&packed).unwrap();
        let mut flipped = good.clone();
        let mid = good.len() / 2;
        flipped[mid] ^= 0x55;
        let cut = good[..mid].to_vec();
        for (damage, bytes) in [("flipped", flipped), ("truncated", cut)] {
            let bad = dir.path().join(format!("{damage}.{ext}"));
            std::fs::write(&bad, bytes).unwrap();
            let new = dir.path().join("new.img");
            let out = clone(&[s(&bad), s(&new)]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{format} {damage}: {err}");
            assert!(!err.contains("identical"), "{format} {damage}: {err}");
            let said = err.contains("corrupt or truncated") || err.contains("zip archive:");
            assert!(said, "{format} {damage}: {err}");
            assert!(!new.exists(), "{format} {damage}: the partial new image was left");
        }
    }
}

/// A target smaller than the image: refused before writing when the format
/// declares its size (zip), failed when the data overflows it (xz).
#[test]
fn a_too_small_target_is_refused_or_stopped_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path());
    for (format, ext, message) in [
        ("zip", "zip", "more than the target's 2.0 MiB"),
        ("xz", "img.xz", "larger than the target: its 2.0 MiB are full"),
    ] {
        let packed = dir.path().join(format!("packed.{ext}"));
        compress(format, &img, &packed);
        let small = dir.path().join("small.img");
        std::fs::write(&small, vec![7u8; 2 << 20]).unwrap();
        let out = clone(&[s(&packed), s(&small)]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(message), "{format}: {err}");
        assert!(!err.contains("identical"), "{err}");
        if format == "zip" {
            assert_eq!(
                std::fs::read(&small).unwrap(),
                vec![7u8; 2 << 20],
                "written before refusing"
            );
        }
    }
}

/// What a stream cannot do is refused with the reason: an archive of
/// several files, writing onto itself, serving one, a new qcow2 target,
/// mirror-only options.
#[test]
fn what_a_stream_cannot_do_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path());
    let two = dir.path().join("two.zip");
    std::fs::write(dir.path().join("readme.txt"), b"hi").unwrap();
    let sh = format!("cd '{}' && zip -q two.zip disk.img readme.txt", s(dir.path()));
    assert!(Command::new("sh").args(["-c", &sh]).status().unwrap().success());
    let xz = dir.path().join("disk.img.xz");
    compress("xz", &img, &xz);
    let new = dir.path().join("new.img");
    let qcow2 = dir.path().join("new.qcow2");
    for (args, message) in [
        (vec![s(&two), s(&new)], "holds 2 files (disk.img, readme.txt)"),
        (vec![s(&xz), s(&xz)], "same"),
        (vec![s(&xz), s(&qcow2)], "write the image to a raw file"),
        (vec!["--resync", s(&xz), s(&new)], "--resync needs a disk or image to mirror"),
    ] {
        let out = clone(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(message), "{args:?}: {err}");
        assert!(!new.exists() && !qcow2.exists(), "{args:?} left a target");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_livemirror"))
        .args(["serve", s(&xz), "--nbd", &format!("unix:{}", s(&dir.path().join("s.sock")))])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("xz-compressed image: a stream"), "{err}");
}

/// An OS image with a GPT flashed onto a larger disk: the image is written
/// and verified, then the GPT is rewritten for the disk's size (backup
/// header at its end), as the clone path does; `sgdisk -v` finds no
/// problem, and every partition holds the image's bytes.
#[test]
fn a_gpt_image_onto_a_larger_target_gets_a_valid_table_for_its_size() {
    use livemirror_testkit::disk::{
        MIB, assert_same_bytes, assert_sgdisk_valid, gpt_image, partitions,
    };
    use std::io::{Seek, SeekFrom, Write};

    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("os.img");
    let parts = gpt_image(&img, 16 * MIB, &[4, 8]);
    let mut f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    for (i, p) in parts.iter().enumerate() {
        f.seek(SeekFrom::Start(p.start)).unwrap();
        f.write_all(&pattern(p.len as usize, i as u64 + 11)).unwrap();
    }
    drop(f);
    let packed = dir.path().join("os.img.xz");
    compress("xz", &img, &packed);
    let dst = dir.path().join("disk.img");
    std::fs::File::create(&dst).unwrap().set_len(64 * MIB).unwrap();

    let out = clone(&[s(&packed), s(&dst)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("identical to the decompressed image"), "{err}");
    assert!(err.contains("then partition table: GPT rewritten for the target's size"), "{err}");
    assert_sgdisk_valid(&dst);
    let table = livemirror_testkit::tools::run("sgdisk", &["-p", s(&dst)]);
    assert!(table.contains(": 131072 sectors, 64.0 MiB"), "{table}");
    assert_eq!(partitions(&dst), parts);
    for p in parts {
        assert_same_bytes(&img, &dst, p);
    }

    // The same image onto a target of its own size: nothing to fix.
    let same = dir.path().join("same.img");
    std::fs::File::create(&same).unwrap().set_len(16 * MIB).unwrap();
    let out = clone(&[s(&packed), s(&same)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !err.contains("partition table"), "{err}");
    livemirror_testkit::tools::assert_identical(&img, &same);
}
