//! `livemirror clone` across image formats, judged by QEMU: raw ↔ qcow2
//! both ways (`qemu-img compare` identical, `qemu-img check` clean,
//! holes kept), an existing qcow2 target written as qcow2, and sync `top`
//! from an overlay onto a new overlay over the same base, which must hold
//! exactly the source's top layer; images out as `.img.zst` and as a
//! qcow2 of compressed clusters (`--compress`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use livemirror_testkit::{pattern, tools};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn run(program: &str, args: &[&str]) -> String {
    tools::require(program);
    let out = Command::new(program).args(args).output().unwrap();
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn clone(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_livemirror")).arg("clone").args(args).output().unwrap()
}

fn clone_ok(args: &[&str]) -> String {
    clone_ok_as(args, "the target is identical")
}

/// `qemu-img compare` (formats probed by `-f`/`-F`) says identical.
fn assert_same(a: &Path, fa: &str, b: &Path, fb: &str) {
    let text = run("qemu-img", &["compare", "-f", fa, "-F", fb, s(a), s(b)]);
    assert!(text.contains("Images are identical"), "{text}");
}

fn assert_check_clean(image: &Path) {
    let text = run("qemu-img", &["check", "-f", "qcow2", s(image)]);
    assert!(text.contains("No errors were found"), "{text}");
    assert!(!text.contains("leaked"), "{text}");
}

fn qemu_io(image: &Path, format: &str, commands: &[&str]) {
    let mut args = vec!["-f", format];
    for c in commands {
        args.extend(["-c", c]);
    }
    args.push(s(image));
    run("qemu-io", &args);
}

/// `qemu-img map` of the image's own layer (depth 0), as (start, length,
/// zero, data) runs: what this file holds, not what it reads through.
fn top_map(image: &Path) -> Vec<(u64, u64, bool, bool)> {
    let json: serde_json::Value =
        serde_json::from_str(&run("qemu-img", &["map", "--output=json", s(image)])).unwrap();
    json.as_array()
        .unwrap()
        .iter()
        .filter(|e| e["depth"] == 0 && e["present"] == true)
        .map(|e| {
            let n = |k: &str| e[k].as_u64().unwrap();
            (n("start"), n("length"), e["zero"] == true, e["data"] == true)
        })
        .collect()
}

/// Bytes of image file `path` occupies on disk.
fn disk_usage(path: &Path) -> u64 {
    livemirror_testkit::image::allocated_bytes(path)
}

const SIZE: u64 = 64 << 20;

/// A raw image with data in three places and holes elsewhere.
fn sparse_raw(dir: &Path) -> PathBuf {
    let src = dir.join("src.raw");
    livemirror_testkit::image::sparse_image(
        &src,
        SIZE,
        &[(0, 1 << 20), (10 << 20, 3 << 20), (SIZE - 4096, 4096)],
    );
    src
}

#[test]
fn raw_to_a_new_qcow2_and_back_is_identical_sparse_and_clean() {
    let dir = tempfile::tempdir().unwrap();
    let src = sparse_raw(dir.path());
    let qcow2 = dir.path().join("copy.qcow2");
    clone_ok(&[s(&src), s(&qcow2)]);
    assert!(run("qemu-img", &["info", s(&qcow2)]).contains("file format: qcow2"));
    assert_check_clean(&qcow2);
    assert_same(&src, "raw", &qcow2, "qcow2");
    assert!(disk_usage(&qcow2) < 8 << 20, "holes were written: {}", disk_usage(&qcow2));

    let back = dir.path().join("back.img");
    clone_ok(&[s(&qcow2), s(&back)]);
    assert_same(&src, "raw", &back, "raw");
    assert!(disk_usage(&back) < 8 << 20, "holes were written: {}", disk_usage(&back));
}

/// An image QEMU wrote (data, an explicit zero cluster, compressed data
/// from `qemu-img convert -c`), onto raw: identical; onto a disk full of
/// old bytes, the zero and unallocated ranges are zeroed, not skipped.
#[test]
fn a_qcow2_qemu_wrote_onto_raw_is_identical_even_over_old_data() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.qcow2");
    run("qemu-img", &["create", "-q", "-f", "qcow2", s(&plain), "64M"]);
    qemu_io(&plain, "qcow2", &["write -P 0x5a 64k 2M", "write -z 4M 1M", "write -P 0x17 60M 100k"]);
    let compressed = dir.path().join("compressed.qcow2");
    run("qemu-img", &["convert", "-c", "-O", "qcow2", s(&plain), s(&compressed)]);
    for src in [&plain, &compressed] {
        let old = dir.path().join("old.img");
        std::fs::write(&old, pattern(SIZE as usize, 3)).unwrap();
        clone_ok(&[s(src), s(&old)]);
        assert_same(src, "qcow2", &old, "raw");
    }
}

/// An existing qcow2 target is written as qcow2 (not over its header), and
/// `--target-format qcow2` makes a qcow2 of a name that does not say so.
#[test]
fn an_existing_qcow2_target_and_an_asked_format_are_written_as_qcow2() {
    let dir = tempfile::tempdir().unwrap();
    let src = sparse_raw(dir.path());
    let existing = dir.path().join("existing.img");
    run("qemu-img", &["create", "-q", "-f", "qcow2", s(&existing), "64M"]);
    qemu_io(&existing, "qcow2", &["write -P 0x99 20M 1M"]); // old data to be zeroed
    clone_ok(&[s(&src), s(&existing)]);
    assert_check_clean(&existing);
    assert_same(&src, "raw", &existing, "qcow2");

    let asked = dir.path().join("asked.img");
    clone_ok(&["--target-format", "qcow2", s(&src), s(&asked)]);
    assert_check_clean(&asked);
    assert_same(&src, "raw", &asked, "qcow2");
}

/// `--source-format raw` reads a qcow2 file's bytes as they are.
#[test]
fn source_format_raw_copies_a_qcow2_file_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("vm.qcow2");
    run("qemu-img", &["create", "-q", "-f", "qcow2", s(&image), "64M"]);
    qemu_io(&image, "qcow2", &["write -P 0x5a 0 1M"]);
    let copy = dir.path().join("bytes.img");
    clone_ok(&["--source-format", "raw", s(&image), s(&copy)]);
    assert_eq!(std::fs::read(&copy).unwrap(), std::fs::read(&image).unwrap());
}

/// QEMU's `sync=top` case: an overlay over a base, cloned onto a new
/// overlay over the same base. The copy holds exactly the source's top
/// layer (data and explicit zeroes, nothing of the base), reads the same,
/// and is clean. With 4K chunks under 64K clusters, the 4K write in the
/// source is copied as its whole cluster: 1 MiB + 64 KiB of data, not
/// 1 MiB + 4 KiB.
#[test]
fn sync_top_onto_an_overlay_of_the_same_base_copies_only_the_top_layer() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.raw");
    std::fs::write(&base, pattern(SIZE as usize, 9)).unwrap();
    let top = dir.path().join("top.qcow2");
    run("qemu-img", &["create", "-q", "-f", "qcow2", "-b", s(&base), "-F", "raw", s(&top)]);
    qemu_io(&top, "qcow2", &["write -P 0x44 1M 4k", "write -z 5M 64k", "write -P 0x55 9M 1M"]);

    let copy = dir.path().join("copy.qcow2");
    let err = clone_ok(&[
        "--sync",
        "top",
        "--granularity",
        "4K",
        "--target-backing",
        s(&base),
        s(&top),
        s(&copy),
    ]);
    assert!(err.contains("(1.1 MiB data, 64.0 KiB zeroed"), "{err}");
    assert_check_clean(&copy);
    assert_same(&top, "qcow2", &copy, "qcow2");
    let copied = top_map(&copy);
    assert_eq!(copied, top_map(&top), "{err}");
    assert_eq!(copied.len(), 3, "{copied:?}");
    let info = run("qemu-img", &["info", "--output=json", s(&copy)]);
    assert!(
        info.contains(&format!("\"backing-filename\": \"{}\"", s(&base.canonicalize().unwrap()))),
        "{info}"
    );
}

/// Bad asks change nothing: a backing for a target that exists, a raw
/// target with a backing, a backing that does not exist.
#[test]
fn target_backing_refusals_touch_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let src = sparse_raw(dir.path());
    let existing = dir.path().join("existing.img");
    std::fs::write(&existing, b"keep").unwrap();
    let new = dir.path().join("new.qcow2");
    let missing = dir.path().join("missing.raw");
    for (args, message) in [
        (vec!["--target-backing", s(&src), s(&src), s(&existing)], "makes a new image only"),
        (
            vec!["--target-format", "raw", "--target-backing", s(&src), s(&src), s(&new)],
            "not a raw image",
        ),
        (vec!["--target-backing", s(&missing), s(&src), s(&new)], "missing.raw"),
    ] {
        let out = clone(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(message), "{args:?}: {err}");
        assert_eq!(std::fs::read(&existing).unwrap(), b"keep");
        assert!(!new.exists(), "{args:?} left {new:?}");
    }
}

/// Images out as a zstd stream: raw and qcow2 sources into a new `.img.zst`
/// that `zstd -d` turns back into the source's exact bytes, and whose frame
/// declares its size (`zstd -l`); flashed back, identical again.
#[test]
fn a_disk_out_to_a_new_img_zst_decompresses_to_its_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let src = sparse_raw(dir.path());
    let qcow2 = dir.path().join("src.qcow2");
    run("qemu-img", &["convert", "-O", "qcow2", s(&src), s(&qcow2)]);
    for (i, source) in [&src, &qcow2].into_iter().enumerate() {
        let zst = dir.path().join(format!("out{i}.img.zst"));
        let err = clone_ok_as(&[s(source), s(&zst)], "reads back as exactly the 64.0 MiB");
        assert!(err.contains("no write tracking"), "{err}");
        let unpacked = dir.path().join(format!("unpacked{i}.raw"));
        run("zstd", &["-q", "-d", s(&zst), "-o", s(&unpacked)]);
        assert_same(&src, "raw", &unpacked, "raw");
        assert!(run("zstd", &["-l", "-v", s(&zst)]).contains("67108864"), "size not declared");

        let back = dir.path().join(format!("back{i}.img"));
        clone_ok_as(&[s(&zst), s(&back)], "identical to the decompressed image");
        assert_same(&src, "raw", &back, "raw");
    }
    // An existing .zst file is never overwritten: it is a target like any
    // other file (here, too small for the source).
    let existing = dir.path().join("existing.img.zst");
    std::fs::write(&existing, b"keep").unwrap();
    assert_eq!(clone(&[s(&src), s(&existing)]).status.code(), Some(1));
    assert_eq!(std::fs::read(&existing).unwrap(), b"keep");
}

fn clone_ok_as(args: &[&str], says: &str) -> String {
    let out = clone(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "clone {args:?}: {err}");
    assert!(err.contains(says), "{err}");
    err
}

/// `--compress`: a new qcow2 of compressed clusters that QEMU reads as the
/// source (`qemu-img compare`), finds clean (`qemu-img check`) and maps as
/// compressed; data that does not shrink is stored plain, holes stay
/// unallocated; flashed back with livemirror, identical again.
#[test]
fn a_disk_out_to_a_compressed_qcow2_is_identical_clean_and_compressed() {
    use std::io::{Seek, SeekFrom, Write};
    let dir = tempfile::tempdir().unwrap();
    let src = sparse_raw(dir.path());
    // Compressible text over the first data run, random bytes elsewhere.
    let mut f = std::fs::OpenOptions::new().write(true).open(&src).unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    let text: Vec<u8> = b"livemirror compresses this line well. ".repeat(1 << 20 >> 5);
    f.write_all(&text[..1 << 20]).unwrap();
    f.seek(SeekFrom::Start(10 << 20)).unwrap();
    f.write_all(&pattern(3 << 20, 4)).unwrap();
    drop(f);

    let out = dir.path().join("packed.qcow2");
    let err = clone_ok_as(&["--compress", s(&src), s(&out)], "reads back as exactly the 64.0 MiB");
    assert!(err.contains("no write tracking"), "{err}");
    assert_check_clean(&out);
    assert_same(&src, "raw", &out, "qcow2");
    let map: serde_json::Value =
        serde_json::from_str(&run("qemu-img", &["map", "--output=json", s(&out)])).unwrap();
    let compressed: u64 = map
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["compressed"] == true)
        .map(|e| e["length"].as_u64().unwrap())
        .sum();
    assert!(compressed >= 1 << 20, "the text was not stored compressed: {map}");
    // 1 MiB of text shrinks to almost nothing; 3 MiB + 4 KiB of random
    // bytes stay about as large; the holes take nothing.
    let len = std::fs::metadata(&out).unwrap().len();
    assert!(len < (3 << 20) + (1 << 20) / 2, "{len} bytes");

    let back = dir.path().join("back.img");
    clone_ok(&[s(&out), s(&back)]);
    assert_same(&src, "raw", &back, "raw");

    // What --compress cannot make is refused, and nothing is made.
    std::fs::write(dir.path().join("exists.qcow2"), b"keep").unwrap();
    for (args, says) in [
        (vec!["--compress", s(&src), "exists.qcow2"], "--compress makes a new qcow2 image"),
        (vec!["--compress", s(&src), "new.img"], "--compress makes a new qcow2 image"),
        (
            vec!["--compress", "--target-backing", s(&src), s(&src), "new.qcow2"],
            "takes no --target-backing",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_livemirror"))
            .current_dir(dir.path())
            .arg("clone")
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert_eq!(std::fs::read(dir.path().join("exists.qcow2")).unwrap(), b"keep");
    assert!(!dir.path().join("new.img").exists() && !dir.path().join("new.qcow2").exists());
}
