//! Real NBD clients against livemirror's server: nbdinfo (libnbd), qemu-io
//! and qemu-img (QEMU's client), judged by qemu-img compare and nbdkit.

use std::sync::Arc;

use livemirror_core::device::{FileDevice, OpenOptions};
use livemirror_core::live::LiveSource;
use livemirror_core::nbd::Export;
use livemirror_testkit::server::{Served, runtime};
use livemirror_testkit::{image, tools};

const SIZE: u64 = 8 << 20;

fn live_file(path: &std::path::Path) -> Arc<LiveSource> {
    let dev = OpenOptions::new().write(true).open(path).expect("open");
    LiveSource::new(Arc::new(dev))
}

/// `key: value` lines of nbdinfo's report.
fn field<'a>(report: &'a str, key: &str) -> &'a str {
    report
        .lines()
        .find_map(|l| l.trim().strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
        .unwrap_or_else(|| panic!("nbdinfo printed no {key}:\n{report}"))
}

#[test]
fn nbdinfo_reports_size_and_the_advertised_flags() {
    let dir = tempfile::tempdir().unwrap();
    let src = image::patterned(dir.path(), "src.img", SIZE);
    let rt = runtime();
    let served = Served::device(&rt, live_file(&src));
    let report = tools::run("nbdinfo", &[&served.uri()]);
    assert!(field(&report, "export-size").starts_with(&SIZE.to_string()));
    for (key, want) in [
        ("is_read_only", "false"),
        ("can_flush", "true"),
        ("can_fua", "true"),
        ("can_trim", "true"),
        ("can_zero", "true"),
        ("can_multi_conn", "true"),
        ("can_df", "false"),
        ("can_fast_zero", "false"),
        ("block_size_maximum", "33554432"),
    ] {
        assert_eq!(field(&report, key), want, "{key}");
    }
    assert!(report.contains("using structured"), "{report}");
}

#[test]
fn read_only_exports_say_so_and_refuse_writes() {
    let dir = tempfile::tempdir().unwrap();
    let src = image::patterned(dir.path(), "src.img", SIZE);
    let before = std::fs::read(&src).unwrap();
    let rt = runtime();
    let dev: Arc<FileDevice> = Arc::new(OpenOptions::new().open(&src).unwrap());
    let served = Served::export(&rt, Export { read_only: true, ..Export::new(dev) });
    let report = tools::run("nbdinfo", &[&served.uri()]);
    assert_eq!(field(&report, "is_read_only"), "true");
    assert_eq!(field(&report, "can_trim"), "false");
    tools::require("qemu-io");
    let out = std::process::Command::new("qemu-io")
        .args(["-f", "raw", &served.uri(), "-c", "write -P 0x55 0 4k"])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() || text.contains("failed"), "{text}");
    assert_eq!(std::fs::read(&src).unwrap(), before);
}

#[test]
fn nbdinfo_map_matches_nbdkit_on_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let src = image::patterned(dir.path(), "src.img", SIZE);
    let rt = runtime();
    let served = Served::device(&rt, live_file(&src));
    let ours = tools::run("nbdinfo", &["--map", &served.uri()]);
    let reference = tools::run(
        "nbdkit",
        &["-U", "-", "file", &src.to_string_lossy(), "--run", "nbdinfo --map \"$uri\""],
    );
    assert_eq!(ours, reference);
    // And the map is not trivially "all data": the image is sparse.
    assert!(ours.contains("hole,zero") && ours.contains("data"), "{ours}");
}

#[test]
fn qemu_img_convert_from_the_export_gives_an_identical_copy() {
    let dir = tempfile::tempdir().unwrap();
    let src = image::patterned(dir.path(), "src.img", SIZE);
    let out = dir.path().join("out.img");
    let rt = runtime();
    let served = Served::device(&rt, live_file(&src));
    tools::run(
        "qemu-img",
        &["convert", "-f", "raw", "-O", "raw", &served.uri(), &out.to_string_lossy()],
    );
    tools::assert_identical(&src, &out);
}

#[test]
fn qemu_io_writes_land_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let src = image::sparse(dir.path(), "src.img", SIZE);
    let rt = runtime();
    let served = Served::device(&rt, live_file(&src));
    let uri = served.uri();
    tools::qemu_io(
        &uri,
        &[
            "write -P 0xab 0 64k",
            "write -f -P 0xcd 1M 128k",
            "write -z -u 3M 64k",
            "write -z 64k 64k",
            "discard 2M 1M",
            "flush",
        ],
    );
    assert_eq!(image::read(&src, 0, 65536), vec![0xab; 65536]);
    assert_eq!(image::read(&src, 1 << 20, 131072), vec![0xcd; 131072]);
    tools::qemu_io(&uri, &["read -P 0xab 0 64k", "read -P 0xcd 1M 128k", "read -P 0 64k 64k"]);
}
