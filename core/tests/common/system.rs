//! Real block devices for the kernel tests (Linux, root): loop devices over
//! sparse files, partitions made with `addpart`, mounted ext4. Each is a
//! guard that undoes itself on drop, so a failing test leaves nothing behind.
//! A missing tool fails the test, naming its package.

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use livemirror_core::device::{BlockDevice, DeviceId, OpenOptions};

/// Runs a tool and returns its stdout; panics with its stderr on failure.
pub fn run(tool: &str, args: &[&str], package: &str) -> String {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool} ({package}) must be installed: {e}"));
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The identity livemirror gives a device path.
pub fn device_id(path: &Path) -> DeviceId {
    OpenOptions::new().open(path).expect("open the device").id()
}

/// A loop device over a sparse file of `len` bytes in its own temp dir.
pub struct Loop {
    pub dev: PathBuf,
    pub backing: PathBuf,
    _dir: tempfile::TempDir,
}

impl Loop {
    pub fn new(len: u64) -> Loop {
        let dir = tempfile::tempdir().expect("temp dir");
        let backing = dir.path().join("disk.img");
        File::create(&backing).and_then(|f| f.set_len(len)).expect("backing file");
        let out = run(
            "losetup",
            &["--find", "--show", backing.to_str().expect("utf-8 path")],
            "util-linux",
        );
        Loop { dev: PathBuf::from(out.trim()), backing, _dir: dir }
    }

    pub fn path(&self) -> &str {
        self.dev.to_str().expect("utf-8 path")
    }

    /// Opens the device for `O_DIRECT` writes.
    pub fn open_direct(&self) -> File {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(&self.dev)
            .expect("open the loop device O_DIRECT")
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

/// Partition `number` of a loop device, made with `addpart` (this kernel
/// parses no partition tables), removed with `delpart`.
pub struct Partition {
    pub dev: PathBuf,
    disk: String,
    number: String,
}

impl Partition {
    pub fn new(disk: &Loop, number: u32, start_sector: u64, sectors: u64) -> Partition {
        let (n, start, len) = (number.to_string(), start_sector.to_string(), sectors.to_string());
        run("addpart", &[disk.path(), &n, &start, &len], "util-linux");
        let dev = PathBuf::from(format!("{}p{number}", disk.path()));
        // addpart returns once the kernel has the partition; the node is
        // made by devtmpfs at the same time.
        assert!(dev.exists(), "{} was not created", dev.display());
        Partition { dev, disk: disk.path().to_string(), number: n }
    }

    pub fn path(&self) -> &str {
        self.dev.to_str().expect("utf-8 path")
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        let _ = Command::new("delpart").args([&self.disk, &self.number]).status();
    }
}

/// An ext4 filesystem made on `dev` and mounted on a fresh directory.
pub struct Mount {
    pub dir: tempfile::TempDir,
}

impl Mount {
    pub fn ext4(dev: &str) -> Mount {
        // No lazy initialisation: no background writes after the mount.
        run(
            "mkfs.ext4",
            &["-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", dev],
            "e2fsprogs",
        );
        let dir = tempfile::tempdir().expect("mount point");
        run("mount", &["-o", "noatime", dev, dir.path().to_str().expect("utf-8")], "mount");
        Mount { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}
