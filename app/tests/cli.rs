//! `livemirror clone` as a user runs it: real files, real exit codes, real
//! messages, and `qemu-img compare` as the judge.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use livemirror_testkit::{image::qemu_img_identical, pattern};

fn livemirror(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_livemirror")).args(args).output().expect("run livemirror")
}

fn random_image(path: &Path, len: usize, seed: u64) {
    std::fs::write(path, pattern(len, seed)).unwrap();
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

struct Images {
    _dir: tempfile::TempDir,
    src: PathBuf,
    dst: PathBuf,
}

fn images(len: usize) -> Images {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src.img"), dir.path().join("dst.img"));
    random_image(&src, len, 1);
    Images { _dir: dir, src, dst }
}

#[test]
fn clone_of_a_64_mib_random_image_is_identical() {
    let im = images(64 << 20);
    random_image(&im.dst, 64 << 20, 2);
    let out = livemirror(&["clone", s(&im.src), s(&im.dst)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("completed"));
    // stderr is a pipe here: plain lines, no bar and no terminal codes.
    assert!(!err.contains(['\r', '\x1b']) && !err.contains("ETA"), "{err:?}");
    assert!(qemu_img_identical(&im.src, &im.dst));
}

/// What a terminal shows, without its control sequences (`ESC [ … letter`).
fn visible(raw: &str) -> String {
    let mut out = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// On a terminal 50 columns wide (util-linux `script` gives the clone a
/// pseudo-terminal), the bar is drawn within the width and the last line
/// stays after it.
#[test]
fn on_a_narrow_terminal_the_progress_bar_fits_and_the_last_line_stays() {
    let im = images(32 << 20);
    let run = format!(
        "stty cols 50 rows 20; exec {} clone --speed 16M {} {}",
        env!("CARGO_BIN_EXE_livemirror"),
        s(&im.src),
        s(&im.dst)
    );
    let out = Command::new("script")
        .args(["-qefc", &run, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script");
    let shown = visible(&String::from_utf8_lossy(&out.stdout));
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains("ETA"), "the bar was drawn: {shown:?}");
    for line in shown.split(['\r', '\n']) {
        assert!(line.trim_end().chars().count() <= 50 || !line.contains("ETA"), "{line:?}");
    }
    let last = shown.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
    assert!(visible(last).contains("completed"), "{shown:?}");
    assert!(qemu_img_identical(&im.src, &im.dst));
}

#[test]
fn clone_creates_a_missing_target_and_prints_json_events() {
    let im = images(3 << 20);
    let out = livemirror(&["clone", s(&im.src), s(&im.dst), "--json", "--granularity", "4K"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let events: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("each line is JSON");
            assert!(v["timestamp"]["seconds"].is_u64());
            v["event"].as_str().unwrap().to_owned()
        })
        .collect();
    let order: Vec<&str> =
        events.iter().map(String::as_str).filter(|e| *e == "READY" || *e == "COMPLETED").collect();
    assert_eq!(order, ["READY", "COMPLETED"]);
    // The stream says first how the source's writes are seen.
    assert_eq!(events[0], "TRACKING");
    let first: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    // An image file nobody else writes: leased, so no final comparison.
    assert_eq!(first["data"]["tracking"], "lease", "{first}");
    assert!(qemu_img_identical(&im.src, &im.dst));
}

/// Every target cache mode (and the default) makes an identical copy,
/// including the odd-sized tail that cannot go O_DIRECT.
#[test]
fn clone_is_identical_with_every_target_cache() {
    let len = (5 << 20) + 1536;
    for cache in [None, Some("direct"), Some("writeback"), Some("writebehind")] {
        let im = images(len);
        random_image(&im.dst, len, 2);
        let mut args = vec!["clone", s(&im.src), s(&im.dst), "--granularity", "4K"];
        args.extend(cache.iter().flat_map(|c| ["--target-cache", c]));
        let out = livemirror(&args);
        assert!(out.status.success(), "{cache:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(qemu_img_identical(&im.src, &im.dst), "{cache:?}");
    }
}

/// Runs a clone that must be refused: exit 1, one line naming the problem,
/// and the target exactly as it was (or still absent).
fn refused(args: &[&str], target: &Path, message: &str) {
    let before = std::fs::read(target).ok();
    let out = livemirror(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    assert!(err.contains(message), "{args:?}: expected {message:?} in {err:?}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert_eq!(std::fs::read(target).ok(), before, "{args:?} changed the target");
}

#[test]
fn bad_input_is_refused_with_one_line_and_changes_nothing() {
    let im = images(1 << 20);
    // Smaller, and the source has no partition table to say what is unused.
    random_image(&im.dst, (1 << 20) - 512, 3);
    let (src, dst) = (s(&im.src), s(&im.dst));
    refused(&["clone", src, dst], &im.dst, "the source has no partition table");
    refused(&["clone", src, src], &im.src, "same device");
    let link = im.src.with_extension("link");
    std::os::unix::fs::symlink(&im.src, &link).unwrap();
    refused(&["clone", src, s(&link)], &im.src, "same device");
    let missing = im.src.with_extension("missing");
    refused(&["clone", s(&missing), dst], &im.dst, "cannot open");
    assert!(!missing.exists());

    // Option errors, before anything is opened or created.
    let fresh = im.src.with_extension("fresh");
    refused(&["clone", src, s(&fresh), "--granularity", "3000"], &fresh, "power of two");
    refused(&["clone", src, s(&fresh), "--granularity", "128M"], &fresh, "power of two");
    assert!(!fresh.exists(), "a refused clone leaves no new target behind");
}

#[test]
fn usage_errors_name_the_option() {
    let im = images(4096);
    for (args, message) in [
        (vec!["--speed", "-5M"], "must not be negative"),
        (vec!["--sync", "most"], "is not one of: full, top, none"),
        (vec!["--on-target-error", "panic"], "report, ignore, stop, enospc"),
    ] {
        let mut all = vec!["clone", s(&im.src), s(&im.dst)];
        all.extend(args);
        let out = livemirror(&all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(message), "{err}");
    }
    assert!(!im.dst.exists());
}

/// Makes a file that even root cannot open for writing: mode 0444 plus the
/// immutable attribute (root ignores the mode). Undone on drop.
struct ReadOnly(PathBuf);

impl ReadOnly {
    fn new(path: &Path) -> Self {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444)).unwrap();
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            let ok = Command::new("chattr").arg("+i").arg(path).status().is_ok_and(|s| s.success());
            assert!(ok, "chattr +i failed: running as root needs it to make a read-only file");
        }
        ReadOnly(path.to_owned())
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

#[test]
fn a_read_only_target_is_refused() {
    let im = images(1 << 20);
    random_image(&im.dst, 1 << 20, 4);
    let _ro = ReadOnly::new(&im.dst);
    refused(&["clone", s(&im.src), s(&im.dst)], &im.dst, "cannot open");
}

#[test]
fn no_complete_stays_in_sync_until_ctrl_c_then_leaves_a_consistent_copy() {
    use std::io::BufRead;
    let im = images(2 << 20);
    let mut child = Command::new(env!("CARGO_BIN_EXE_livemirror"))
        .args(["clone", s(&im.src), s(&im.dst), "--json", "--no-complete"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    let ready = lines.by_ref().map_while(Result::ok).any(|l| l.contains("\"READY\""));
    assert!(ready, "READY before the stream ended");
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(rest.iter().any(|l| l.contains("\"CANCELLED\"") && l.contains("\"consistent\":true")));
    assert!(!rest.iter().any(|l| l.contains("\"COMPLETED\"")));
    assert!(qemu_img_identical(&im.src, &im.dst));
}

#[test]
fn kernel_tracking_of_an_image_file_is_refused_with_the_reason() {
    let im = images(1 << 20);
    refused(
        &["clone", s(&im.src), s(&im.dst), "--tracking", "kernel"],
        &im.dst,
        "kernel write tracking cannot be used: kernel write tracking needs a block device",
    );
}
