//! Real block devices for the kernel tests (Linux, root): loop devices over
//! sparse files, partitions made with `addpart`, mounted ext4, and a
//! program's worth of writes to it ([`Writer`]). Each is a guard that undoes
//! itself on drop, so a failing test leaves nothing behind. A missing tool
//! fails the test, naming its package.

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use livemirror_core::device::{BlockDevice, DeviceId, OpenOptions};

use crate::tools::run;

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
        let out = run("losetup", &["--find", "--show", backing.to_str().expect("utf-8 path")]);
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
        run("addpart", &[disk.path(), &n, &start, &len]);
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

/// A filesystem (ext4, XFS or btrfs) made on `dev` and mounted on a fresh
/// directory.
pub struct Mount {
    pub dir: tempfile::TempDir,
}

impl Mount {
    pub fn ext4(dev: &str) -> Mount {
        // No lazy initialisation: no background writes after the mount.
        run("mkfs.ext4", &["-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", dev]);
        Self::at(dev)
    }

    /// XFS with shared extents (reflink), as `mkfs.xfs` makes it today
    /// (said explicitly, for older xfsprogs). Needs 300 MiB at least.
    pub fn xfs(dev: &str) -> Mount {
        run("mkfs.xfs", &["-q", "-f", "-m", "reflink=1", dev]);
        Self::at(dev)
    }

    /// btrfs (it always shares extents).
    pub fn btrfs(dev: &str) -> Mount {
        run("mkfs.btrfs", &["-q", "-f", dev]);
        Self::at(dev)
    }

    fn at(dev: &str) -> Mount {
        let dir = tempfile::tempdir().expect("mount point");
        run("mount", &["-o", "noatime", dev, dir.path().to_str().expect("utf-8")]);
        Mount { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        // A tracker that looks at the source's filesystems opens them for
        // a moment (to freeze one, to learn which are mounted): an unmount
        // that meets such a moment is "busy", and is tried again once it
        // has passed (up to 2 s). Not a panic (it may run while a failed
        // test unwinds), but said: a filesystem left mounted changes what
        // later steps see.
        for _ in 0..100 {
            match Command::new("umount").arg(self.dir.path()).output() {
                Ok(out) if out.status.success() => return,
                Ok(out) if String::from_utf8_lossy(&out.stderr).contains("busy") => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                other => {
                    eprintln!("umount {} failed: {other:?}", self.dir.path().display());
                    return;
                }
            }
        }
        eprintln!("umount {}: still busy after 2 s", self.dir.path().display());
    }
}

/// How long a writer may take before it counts as stuck.
const GUARD: Duration = Duration::from_secs(120);

/// A program writing a mounted filesystem: a thread that creates files of
/// known content one after another and fsyncs each, reporting each name
/// (with the seed of its content, [`Writer::content`]) once it is durable.
/// When the filesystem is full it stops, as such a program would: what it
/// reported stays durable, and how long a job ran no longer matters.
pub struct Writer {
    stop: Arc<AtomicBool>,
    done: mpsc::Receiver<(String, u64)>,
    thread: std::thread::JoinHandle<()>,
}

impl Writer {
    pub fn start(dir: &Path) -> Writer {
        let (stop, dir) = (Arc::new(AtomicBool::new(false)), dir.to_path_buf());
        let (tx, done) = mpsc::channel();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut n = 0u64;
            let full = |e: &std::io::Error| e.raw_os_error() == Some(libc::ENOSPC);
            while !flag.load(Ordering::Relaxed) {
                let name = format!("w{n}");
                let written = std::fs::write(dir.join(&name), Writer::content(n))
                    .and_then(|()| std::fs::File::open(dir.join(&name))?.sync_all());
                match written {
                    Ok(()) => {}
                    Err(e) if full(&e) => return,
                    Err(e) => panic!("write and fsync {name}: {e}"),
                }
                if tx.send((name, n)).is_err() {
                    return;
                }
                n += 1;
            }
        });
        Writer { stop, done, thread }
    }

    /// The bytes of the writer's file number `n`: sizes vary, and the
    /// seeds (from 100) are never the pattern of anything else on the disk.
    pub fn content(n: u64) -> Vec<u8> {
        crate::pattern((n % 7 + 1) as usize * 37_000, n + 100)
    }

    /// Waits until `n` more files are durable; returns them with every
    /// other file reported durable by now.
    pub fn durable(&self, n: usize) -> Vec<(String, u64)> {
        let mut files: Vec<_> = (0..n)
            .map(|_| {
                self.done.recv_timeout(GUARD).expect("the writer goes on (the filesystem is full?)")
            })
            .collect();
        files.extend(self.done.try_iter());
        files
    }

    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        drop(self.done);
        self.thread.join().expect("the writer did not panic");
    }
}

/// The bytes of `name` in the ext4 image `image`, read with debugfs.
pub fn file_in_image(image: &Path, name: &str) -> Vec<u8> {
    let out = Command::new("debugfs")
        .args(["-R", &format!("cat /{name}")])
        .arg(image)
        .output()
        .expect("debugfs (e2fsprogs) must be installed");
    assert!(out.status.success(), "debugfs cat /{name} failed");
    out.stdout
}

/// Every file `durable` names is in the ext4 image with its content.
pub fn assert_durable_files(image: &Path, durable: &[(String, u64)]) {
    for (name, n) in durable {
        assert_eq!(file_in_image(image, name), Writer::content(*n), "{name} on the target");
    }
}

/// A thread that writes and fsyncs `dir/name`; reports its thread id first
/// and then when the write is durable.
pub struct BlockedWriter {
    tid: libc::pid_t,
    done: mpsc::Receiver<()>,
    path: PathBuf,
}

impl BlockedWriter {
    pub fn start(dir: &Path, name: &str) -> BlockedWriter {
        let path = dir.join(name);
        let (tid_tx, tid_rx) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let target = path.clone();
        std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            let _ = tid_tx.send(unsafe { libc::gettid() });
            std::fs::write(&target, crate::pattern(64 * 1024, 7)).expect("write");
            std::fs::File::open(&target).and_then(|f| f.sync_all()).expect("fsync");
            let _ = done_tx.send(());
        });
        let tid = tid_rx.recv_timeout(GUARD).expect("writer started");
        BlockedWriter { tid, done, path }
    }

    /// Waits until the writer sleeps in the freeze's wait: uninterruptibly
    /// (state D) in `percpu_rwsem_wait`, the filesystem's write lock that
    /// FIFREEZE holds.
    pub fn wait_blocked(&self) {
        let task = format!("/proc/self/task/{}", self.tid);
        let deadline = Instant::now() + GUARD;
        loop {
            let stat = std::fs::read_to_string(format!("{task}/stat")).expect("writer alive");
            // pid (comm) STATE ...: the state follows the last ')'.
            let state = stat.rsplit(')').next().and_then(|r| r.split_whitespace().next());
            let wchan = std::fs::read_to_string(format!("{task}/wchan")).unwrap_or_default();
            if state == Some("D") && wchan == "percpu_rwsem_wait" {
                return;
            }
            assert!(self.done.try_recv().is_err(), "the write went through a frozen filesystem");
            assert!(Instant::now() < deadline, "the writer never blocked");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub fn is_done(&self) -> bool {
        self.done.try_recv().is_ok()
    }

    pub fn wait_done(&self) {
        self.done.recv_timeout(GUARD).expect("the write never finished");
        assert_eq!(std::fs::read(&self.path).expect("read back"), crate::pattern(64 * 1024, 7));
    }
}
