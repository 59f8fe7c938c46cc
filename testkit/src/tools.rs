//! Running the external tools the tests judge by.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A file `.ci/run` builds before the tests (a package, the Windows .exe),
/// named by the environment variable `var`. Building one takes minutes, so
/// tests never do it themselves: the tests that need one are `#[ignore]`d,
/// and `scripts/test.sh` runs them (`--ignored`) when `.ci/run` has set the
/// variables. Run by hand without it, such a test fails and says how to
/// build what it needs — it never passes without having looked.
pub fn built_artifact(var: &str, how: &str) -> PathBuf {
    let path =
        std::env::var_os(var).unwrap_or_else(|| panic!("{var} is not set: build it first ({how})"));
    std::fs::canonicalize(&path)
        .unwrap_or_else(|e| panic!("{var}={}: {e}", Path::new(&path).display()))
}

/// Fails with the package to install unless `tool` is on PATH.
pub fn require(tool: &str) {
    let package = match tool {
        "nbdinfo" | "nbdcopy" | "nbdsh" => "libnbd-bin",
        "nbdkit" => "nbdkit",
        "sgdisk" => "gdisk",
        "sfdisk" => "fdisk",
        "losetup" | "blkdiscard" | "fallocate" | "addpart" => "util-linux",
        "mount" | "umount" => "mount",
        "mkfs.ext4" | "fsck.ext4" | "debugfs" | "dumpe2fs" | "resize2fs" | "filefrag" => {
            "e2fsprogs"
        }
        "mkfs.xfs" => "xfsprogs",
        "mkfs.btrfs" => "btrfs-progs",
        "cmp" => "diffutils",
        "dd" => "coreutils",
        "zstd" => "zstd",
        _ => "qemu-utils",
    };
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()));
    assert!(found, "{tool} is not installed; this test needs it (apt-get install {package})");
}

/// Runs `program args…`, fails the test unless it succeeds, returns stdout.
pub fn run(program: &str, args: &[&str]) -> String {
    require(program);
    let out = output(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs under coreutils' `timeout`, so a client stuck on a broken server
/// fails the test (exit 124) instead of hanging the whole run.
fn output(program: &str, args: &[&str]) -> Output {
    Command::new("timeout")
        .args(["300", program])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// `qemu-io -f raw URI -c CMD…`; fails on any failed command (qemu-io
/// exits 0 even then, so its output is checked too).
pub fn qemu_io(uri: &str, commands: &[&str]) -> String {
    let mut args = vec!["-f", "raw", uri];
    for c in commands {
        args.extend(["-c", c]);
    }
    let out = run("qemu-io", &args);
    assert!(
        !out.contains("failed") && !out.contains("Pattern verification"),
        "qemu-io {commands:?}:\n{out}"
    );
    out
}

/// Asserts `qemu-img compare` finds two raw images identical.
pub fn assert_identical(a: &Path, b: &Path) {
    require("qemu-img");
    assert!(crate::image::qemu_img_identical(a, b), "{} and {} differ", a.display(), b.display());
}

/// Asserts `qemu-img compare` finds the images different.
pub fn assert_different(a: &Path, b: &Path) {
    require("qemu-img");
    assert!(
        !crate::image::qemu_img_identical(a, b),
        "{} and {} are identical",
        a.display(),
        b.display()
    );
}
