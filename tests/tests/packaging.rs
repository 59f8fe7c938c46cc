//! The installers as a user gets them. The .deb that `.ci/run` builds with
//! `scripts/package-deb.sh` is listed, linted, installed with dpkg, run from
//! /usr/bin (a clone judged by `qemu-img compare`) and removed; the .msi that
//! `scripts/package-msi.sh` compiled from the WiX definition is inspected
//! with msiinfo and unpacked with msiextract.
//!
//! A release build costs minutes, so these tests never build a package: they
//! check the files named by `LIVEMIRROR_DEB` and `LIVEMIRROR_MSI`. They are
//! `#[ignore]`d in a plain `cargo test`; `scripts/test.sh` runs them with
//! `--ignored` when `.ci/run` has built the packages. Installing needs root,
//! dpkg and lintian (as on CI).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use livemirror_testkit::tools::built_artifact;
use livemirror_testkit::{image::qemu_img_identical, pattern};

fn deb() -> PathBuf {
    built_artifact("LIVEMIRROR_DEB", "LIVEMIRROR_DEB=$(scripts/package-deb.sh)")
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run(cmd).stdout).into_owned()
}

#[test]
#[ignore = "needs the .deb that .ci/run builds (LIVEMIRROR_DEB)"]
fn deb_holds_the_binary_menu_entry_icons_man_page_and_declares_its_libraries() {
    let deb = deb();
    let listing = stdout(Command::new("dpkg-deb").arg("-c").arg(&deb));
    let mut expected = vec![
        "./usr/bin/livemirror".to_string(),
        "./usr/share/applications/livemirror.desktop".into(),
        "./usr/share/icons/hicolor/scalable/apps/livemirror.svg".into(),
        "./usr/share/man/man1/livemirror.1.gz".into(),
        "./usr/share/polkit-1/actions/org.livemirror.pkexec.policy".into(),
        "./usr/share/doc/livemirror/copyright".into(),
        "./usr/share/doc/livemirror/changelog.Debian.gz".into(),
    ];
    for size in [16, 24, 32, 48, 64, 128, 256] {
        expected.push(format!("./usr/share/icons/hicolor/{size}x{size}/apps/livemirror.png"));
    }
    let missing: Vec<_> = expected.iter().filter(|f| !listing.contains(f.as_str())).collect();
    assert!(missing.is_empty(), "missing {missing:?} in:\n{listing}");
    assert!(
        listing.lines().any(|l| l.starts_with("-rwxr-xr-x") && l.ends_with("./usr/bin/livemirror")),
        "the binary must be executable:\n{listing}"
    );

    let field = |name: &str| stdout(Command::new("dpkg-deb").arg("-f").arg(&deb).arg(name));
    let depends = field("Depends");
    // dlopen'ed at run time, so only a hand-written Depends can name them.
    for lib in ["libc6", "libxkbcommon-x11-0", "libegl1", "libfontconfig1", "libwayland-client0"] {
        assert!(depends.contains(lib), "Depends lacks {lib}: {depends}");
    }
    assert!(depends.contains("libdbus-1-3 | zenity"), "{depends}");
    assert_eq!(field("Recommends").trim(), "udisks2");
    assert_eq!(field("Version").trim(), format!("{}-1", env!("CARGO_PKG_VERSION")));
}

#[test]
#[ignore = "needs the .deb that .ci/run builds (LIVEMIRROR_DEB)"]
fn lintian_finds_no_errors_in_the_deb() {
    let deb = deb();
    let out = Command::new("lintian")
        .args(["--fail-on", "error", "--no-tag-display-limit"])
        .arg(&deb)
        .output()
        .expect("lintian must be installed (.ci/run installs it)");
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!("lintian:\n{report}{}", String::from_utf8_lossy(&out.stderr));
    let errors: Vec<_> = report.lines().filter(|l| l.starts_with("E: ")).collect();
    assert!(errors.is_empty() && out.status.success(), "lintian errors: {errors:#?}");
}

/// Removes the package again however the test ends.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["-r", "livemirror"]).status();
    }
}

#[test]
#[ignore = "needs the .deb that .ci/run builds (LIVEMIRROR_DEB)"]
fn deb_installs_runs_a_clone_from_usr_bin_and_removes_cleanly() {
    let deb = deb();
    let bin = Path::new("/usr/bin/livemirror");
    let dpkg_i = Command::new("dpkg").arg("-i").arg(&deb).output().expect("dpkg");
    let installed = Installed;
    assert!(
        dpkg_i.status.success(),
        "dpkg -i failed (are the Depends installable? run as root):\n{}",
        String::from_utf8_lossy(&dpkg_i.stderr)
    );

    let version = stdout(Command::new(bin).arg("--version"));
    assert_eq!(version.trim(), format!("livemirror {}", env!("CARGO_PKG_VERSION")));
    let help = stdout(Command::new(bin).arg("--help"));
    assert!(help.contains("Examples:") && help.contains("livemirror clone"), "{help}");
    run(Command::new("desktop-file-validate").arg("/usr/share/applications/livemirror.desktop"));

    let dir = tempfile::tempdir().expect("tempdir");
    let (src, dst) = (dir.path().join("src.img"), dir.path().join("dst.img"));
    std::fs::write(&src, pattern(8 << 20, 6)).expect("write source image");
    std::fs::write(&dst, vec![0u8; 8 << 20]).expect("write target image");
    run(Command::new(bin).arg("clone").arg(&src).arg(&dst));
    assert!(qemu_img_identical(&src, &dst), "installed livemirror made a different copy");

    drop(installed);
    assert!(!bin.exists(), "dpkg -r left {} behind", bin.display());
    // Gone from dpkg's database (no conffiles, so nothing is left behind).
    let query = Command::new("dpkg-query").args(["-W", "livemirror"]).output().expect("dpkg-query");
    let err = String::from_utf8_lossy(&query.stderr);
    assert!(!query.status.success() && err.contains("no packages found"), "still known: {err}");
}

/// The WiX definition compiled by wixl: per-machine, Start-menu shortcut with
/// the icon, MajorUpgrade, license files, and as payload the very .exe that
/// scripts/build-windows.sh cross-built (extracted again with msiextract and
/// compared byte for byte; tests/tests/windows.rs runs that .exe under Wine).
#[test]
#[ignore = "needs the .msi and .exe that .ci/run builds (LIVEMIRROR_MSI, LIVEMIRROR_WINDOWS_EXE)"]
fn msi_definition_has_shortcut_icon_upgrade_and_licenses() {
    let msi = built_artifact("LIVEMIRROR_MSI", "LIVEMIRROR_MSI=$(scripts/package-msi.sh)");
    // Exporting a table with binary columns (Icon) writes their streams to
    // files in the working directory: keep those out of the source tree.
    let scratch = tempfile::tempdir().expect("tempdir");
    let table = |name: &str| {
        stdout(
            Command::new("msiinfo").current_dir(scratch.path()).arg("export").arg(&msi).arg(name),
        )
    };
    let shortcut = table("Shortcut");
    assert!(shortcut.contains("ProgramMenuFolder"), "{shortcut}");
    assert!(shortcut.contains("[INSTALLDIR]livemirror.exe"), "{shortcut}");
    assert!(shortcut.contains("livemirror.ico"), "{shortcut}");
    assert!(table("Icon").contains("livemirror.ico"));
    let property = table("Property");
    assert!(property.lines().any(|l| l == "ALLUSERS\t1"), "not per-machine:\n{property}");
    assert!(property.contains("ARPPRODUCTICON\tlivemirror.ico"), "{property}");
    let upgrade = table("Upgrade");
    assert!(upgrade.contains("WIX_UPGRADE_DETECTED"), "no MajorUpgrade:\n{upgrade}");
    let files = table("File");
    for f in ["livemirror.exe", "LICENSE-MIT.txt", "LICENSE-APACHE.txt"] {
        assert!(files.contains(f), "{f} not installed:\n{files}");
    }
    let dirs = table("Directory");
    assert!(dirs.contains("ProgramFiles64Folder"), "{dirs}");

    let exe = built_artifact("LIVEMIRROR_WINDOWS_EXE", "scripts/build-windows.sh");
    run(Command::new("msiextract").arg("-C").arg(scratch.path()).arg(&msi));
    let installed = scratch.path().join("livemirror/livemirror.exe");
    let packed = std::fs::read(&installed).unwrap_or_else(|e| panic!("{installed:?}: {e}"));
    assert!(packed == std::fs::read(&exe).unwrap(), "the .msi holds another livemirror.exe");
}
