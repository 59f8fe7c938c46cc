//! The Windows build, run under Wine: the `livemirror.exe` that
//! `scripts/build-windows.sh` cross-built (named by `LIVEMIRROR_WINDOWS_EXE`;
//! `.ci/run` builds it). Through Wine the .exe uses the real Windows code
//! paths for files — `ReadFile`/`WriteFile` at offsets, `FSCTL_SET_ZERO_DATA`,
//! identity from `GetFileInformationByHandle` — and Windows' NBD endpoint
//! rules (TCP only), judged by Linux tools. Wine has no physical drives, so
//! disks are not tested here. `#[ignore]`d in a plain `cargo test`;
//! `scripts/test.sh` runs them with `--ignored` once `.ci/run` has built the .exe.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use livemirror_testkit::tools::{built_artifact, qemu_io};
use livemirror_testkit::{listening, pattern};

fn exe() -> PathBuf {
    built_artifact("LIVEMIRROR_WINDOWS_EXE", "LIVEMIRROR_WINDOWS_EXE=$(scripts/build-windows.sh)")
}

/// `livemirror.exe ARGS` under Wine, with the prefix scripts/build-windows.sh
/// prepared (its own `WINEPREFIX`, else the workspace's target/wine). With
/// `deadline`, under coreutils' `timeout` so a hang fails the test; without,
/// for a server the test kills itself (killing `timeout` would leave it).
fn wine(exe: &Path, args: &[&str], deadline: bool) -> Command {
    let prefix = std::env::var_os("WINEPREFIX").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wine"),
        PathBuf::from,
    );
    let wine = ["/usr/bin/wine64", "/usr/lib/wine/wine64"]
        .into_iter()
        .find(|w| Path::new(w).exists())
        .expect("wine64 is not installed (apt-get install wine64)");
    let mut cmd = if deadline {
        let mut timeout = Command::new("timeout");
        timeout.args(["300", wine]);
        timeout
    } else {
        Command::new(wine)
    };
    cmd.arg(exe).args(args).env("WINEPREFIX", prefix).env("WINEDEBUG", "-all");
    cmd
}

fn output(exe: &Path, args: &[&str]) -> Output {
    wine(exe, args, true).output().expect("cannot run wine")
}

/// The Windows spelling of a Linux path: Wine maps `/` to drive Z:.
fn win(path: &Path) -> String {
    format!("Z:{}", path.display()).replace('/', "\\")
}

/// A source of odd size: data, a hole, data, a 4097-byte tail.
fn odd_source(dir: &Path) -> (PathBuf, Vec<u8>) {
    let len = (5 << 20) + 4097;
    let mut bytes = pattern(len, 11);
    bytes[(1 << 20)..(3 << 20)].fill(0);
    let path = dir.join("source.img");
    std::fs::write(&path, &bytes).unwrap();
    (path, bytes)
}

#[test]
#[ignore = "needs the .exe that .ci/run cross-builds (LIVEMIRROR_WINDOWS_EXE)"]
fn windows_exe_reports_its_version_and_help() {
    let exe = exe();
    let out = output(&exe, &["--version"]);
    assert!(out.status.success(), "{out:?}");
    let version = String::from_utf8_lossy(&out.stdout);
    assert_eq!(version.trim(), format!("livemirror {}", env!("CARGO_PKG_VERSION")));
    let help = String::from_utf8_lossy(&output(&exe, &["clone", "--help"]).stdout).into_owned();
    assert!(help.contains("--granularity") && help.contains("pipe:NAME"), "{help}");
}

#[test]
#[ignore = "needs the .exe that .ci/run cross-builds (LIVEMIRROR_WINDOWS_EXE)"]
fn windows_exe_clones_an_odd_sized_image_byte_for_byte() {
    let exe = exe();
    let dir = tempfile::tempdir().unwrap();
    let (source, bytes) = odd_source(dir.path());
    // Into a new image, then over an existing one full of other bytes.
    let new = dir.path().join("new.img");
    let old = dir.path().join("old.img");
    std::fs::write(&old, pattern(bytes.len(), 12)).unwrap();
    for target in [&new, &old] {
        let out = output(&exe, &["clone", &win(&source), &win(target), "--granularity", "64K"]);
        assert!(out.status.success(), "{out:?}");
        assert!(
            std::fs::read(target).unwrap() == bytes,
            "{} differs from the source",
            target.display()
        );
    }
}

#[test]
#[ignore = "needs the .exe that .ci/run cross-builds (LIVEMIRROR_WINDOWS_EXE)"]
fn windows_exe_refuses_the_same_file_and_a_target_too_small_touching_nothing() {
    let exe = exe();
    let dir = tempfile::tempdir().unwrap();
    let (source, bytes) = odd_source(dir.path());
    // The same file under two spellings: identity is the file, not the name.
    let other_spelling = win(&source).replace("source.img", "SOURCE.IMG");
    let out = output(&exe, &["clone", &win(&source), &other_spelling]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("same device"), "{out:?}");
    let small = dir.path().join("small.img");
    std::fs::write(&small, vec![7u8; 4096]).unwrap();
    let out = output(&exe, &["clone", &win(&source), &win(&small)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("cannot take it"), "{out:?}");
    assert_eq!(std::fs::read(&small).unwrap(), vec![7u8; 4096]);
    assert!(std::fs::read(&source).unwrap() == bytes);
}

/// Kills the served process when the test ends, however it ends.
struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "needs the .exe that .ci/run cross-builds (LIVEMIRROR_WINDOWS_EXE)"]
fn windows_exe_serves_nbd_over_loopback_tcp_to_qemu_io() {
    let exe = exe();
    let dir = tempfile::tempdir().unwrap();
    let (source, mut bytes) = odd_source(dir.path());
    let out = output(&exe, &["serve", &win(&source), "--nbd", "unix:/tmp/lm.sock"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("no unix sockets"), "{out:?}");

    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = wine(&exe, &["serve", &win(&source), "--nbd", &addr], false);
    let _served = Served(cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());
    listening::tcp(&addr, Duration::from_secs(120));
    let uri = format!("nbd://{addr}");
    qemu_io(&uri, &["write -P 0xab 1M 64k", "write -z 4M 128k", "flush"]);
    qemu_io(&uri, &["read -P 0xab 1M 64k", "read -P 0 4M 128k"]);
    bytes[(1 << 20)..(1 << 20) + (64 << 10)].fill(0xab);
    bytes[(4 << 20)..(4 << 20) + (128 << 10)].fill(0);
    assert!(std::fs::read(&source).unwrap() == bytes, "the writes did not reach the file as sent");
}
