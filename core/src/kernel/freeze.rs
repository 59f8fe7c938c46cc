//! Freezing every filesystem mounted from the source (FIFREEZE) for the
//! final drain of a Complete, so the copy is the filesystem as of one
//! moment, and thawing them (FITHAW) whatever happens to livemirror.
//!
//! A frozen filesystem blocks every writer, so it must never stay frozen by
//! accident. [`freeze_all`] therefore forks a watchdog process before it
//! freezes anything. The watchdog holds the filesystems' directory handles
//! and the read end of a pipe whose only write end is in the
//! [`FreezeHold`]; it thaws them all when that end closes — on
//! [`FreezeHold::thaw`], on drop, or when the kernel closes it because
//! livemirror died, even by SIGKILL — or when the time limit passes. It
//! leaves the terminal's process group and ignores the signals a terminal
//! or a session sends, so a Ctrl-C that kills livemirror does not kill it.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::device::{DeviceId, mounts_on};

/// How long a filesystem may stay frozen before the watchdog thaws it.
pub const DEFAULT_FREEZE_LIMIT: Duration = Duration::from_secs(10);

// ioctl numbers from <linux/fs.h>: _IOWR('X', 119, int), _IOWR('X', 120, int).
const FIFREEZE: libc::c_ulong = 0xc004_5877;
const FITHAW: libc::c_ulong = 0xc004_5878;

// The watchdog's exit codes.
const THAWED_ON_RELEASE: i32 = 0;
const THAW_FAILED: i32 = 1;
const THAWED_AT_LIMIT: i32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum FreezeError {
    #[error("cannot open the mount point {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot freeze {path}: {source}")]
    Freeze { path: PathBuf, source: io::Error },
    #[error("cannot start the thaw watchdog: {0}")]
    Watchdog(io::Error),
    #[error(
        "the filesystems stayed frozen longer than the limit of {limit:?} and were thawed: \
         writers were let go before the final copy finished"
    )]
    TimeLimit { limit: Duration },
    #[error("thawing {} failed: {source}", path.display())]
    Thaw { path: PathBuf, source: io::Error },
    #[error("thawing {paths:?} failed: the watchdog's FITHAW failed")]
    WatchdogThaw { paths: Vec<PathBuf> },
    /// The privileged helper holding the freeze failed or went away (it
    /// thaws when it goes).
    #[error("the privileged helper: {0}")]
    Helper(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Filesystems frozen by [`freeze_all`]; thawed by [`thaw`](Self::thaw) or
/// on drop. Empty when nothing was mounted from the device.
#[derive(Debug)]
pub struct FreezeHold {
    mounts: Vec<PathBuf>,
    watchdog: Option<Watchdog>,
    since: Instant,
    limit: Duration,
}

#[derive(Debug)]
struct Watchdog {
    pid: libc::pid_t,
    /// The pipe's write end: closing it tells the watchdog to thaw.
    release: Option<OwnedFd>,
    /// The directories, kept so this process can thaw if the watchdog died.
    dirs: Vec<File>,
}

/// Freezes every filesystem mounted from `id` (a disk or partition, and
/// partitions overlapping it), each once however often it is mounted. The
/// watchdog thaws them after `limit` if the hold has not been released.
pub fn freeze_all(id: &DeviceId, limit: Duration) -> Result<FreezeHold, FreezeError> {
    let since = Instant::now();
    let mut mounts = Vec::new();
    let mut dirs: Vec<File> = Vec::new();
    let mut seen = Vec::new();
    for mount in mounts_on(id) {
        let path = PathBuf::from(mount);
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|source| FreezeError::Open { path: path.clone(), source })?;
        let dev = dir
            .metadata()
            .map_err(|source| FreezeError::Open { path: path.clone(), source })?
            .dev();
        // A bind mount or a second mount of one filesystem: freezing it
        // again would fail with EBUSY.
        if !seen.contains(&dev) {
            seen.push(dev);
            mounts.push(path);
            dirs.push(dir);
        }
    }
    if dirs.is_empty() {
        return Ok(FreezeHold { mounts, watchdog: None, since, limit });
    }
    let raw: Vec<RawFd> = dirs.iter().map(|d| d.as_raw_fd()).collect();
    let watchdog = Watchdog::start(dirs, limit).map_err(FreezeError::Watchdog)?;
    let mut hold = FreezeHold { mounts, watchdog: Some(watchdog), since, limit };
    for (i, &fd) in raw.iter().enumerate() {
        if let Err(source) = ioctl(fd, FIFREEZE) {
            let path = hold.mounts[i].clone();
            // Releasing thaws what was frozen so far; the freeze's error is
            // the one to report, a failed thaw is logged.
            if let Err(e) = hold.release() {
                tracing::error!(error = %e, "thawing after a failed freeze");
            }
            return Err(FreezeError::Freeze { path, source });
        }
    }
    Ok(hold)
}

impl FreezeHold {
    /// The mount points frozen, one per filesystem.
    pub fn mountpoints(&self) -> &[PathBuf] {
        &self.mounts
    }

    /// When the watchdog thaws by itself if the hold is still held: the
    /// limit, counted from just before the first FIFREEZE.
    pub fn deadline(&self) -> Instant {
        self.since + self.limit
    }

    /// Thaws every filesystem and returns how long they were held. Fails
    /// with [`FreezeError::TimeLimit`] when the watchdog had already thawed
    /// them at the limit: writers then ran during the final copy.
    pub fn thaw(mut self) -> Result<Duration, FreezeError> {
        self.release()?;
        Ok(self.since.elapsed())
    }

    fn release(&mut self) -> Result<(), FreezeError> {
        let Some(mut w) = self.watchdog.take() else {
            return Ok(());
        };
        drop(w.release.take());
        let mut status = 0;
        let waited = loop {
            // SAFETY: waiting for our own child.
            let r = unsafe { libc::waitpid(w.pid, &mut status, 0) };
            if r >= 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                break r;
            }
        };
        let exit = (waited == w.pid && libc::WIFEXITED(status)).then(|| libc::WEXITSTATUS(status));
        match exit {
            Some(THAWED_ON_RELEASE) => Ok(()),
            Some(THAWED_AT_LIMIT) => {
                // A limit shorter than the freezing itself passes before
                // the last FIFREEZE, whose filesystem the watchdog then found
                // not yet frozen: thaw from here too (EINVAL when thawed).
                for (dir, path) in w.dirs.iter().zip(&self.mounts) {
                    // EINVAL (already thawed) is the usual answer: nothing
                    // to say about it. Anything else leaves a filesystem
                    // frozen, which the limit's error alone would not tell.
                    match ioctl(dir.as_raw_fd(), FITHAW) {
                        Err(e) if e.raw_os_error() != Some(libc::EINVAL) => {
                            tracing::error!(path = %path.display(), error = %e, "cannot thaw");
                        }
                        _ => {}
                    }
                }
                Err(FreezeError::TimeLimit { limit: self.limit })
            }
            Some(THAW_FAILED) => Err(FreezeError::WatchdogThaw { paths: self.mounts.clone() }),
            // The watchdog was killed or vanished: thaw from here.
            _ => {
                // Every one is tried; the first failure is the error, the
                // others are logged.
                let mut first = None;
                for (dir, path) in w.dirs.iter().zip(&self.mounts) {
                    match ioctl(dir.as_raw_fd(), FITHAW) {
                        Err(e) if e.raw_os_error() != Some(libc::EINVAL) => {
                            tracing::error!(path = %path.display(), error = %e, "cannot thaw");
                            first
                                .get_or_insert(FreezeError::Thaw { path: path.clone(), source: e });
                        }
                        _ => {} // thawed, or EINVAL: not frozen
                    }
                }
                first.map_or(Ok(()), Err)
            }
        }
    }
}

impl super::Frozen for FreezeHold {
    fn filesystems(&self) -> usize {
        self.mounts.len()
    }
    fn deadline(&self) -> Instant {
        FreezeHold::deadline(self)
    }
    fn thaw(self: Box<Self>) -> Result<Duration, FreezeError> {
        FreezeHold::thaw(*self)
    }
}

impl Drop for FreezeHold {
    fn drop(&mut self) {
        // A hold dropped without `thaw` (a job that failed mid-Complete):
        // nobody is left to tell but the log.
        if let Err(e) = self.release() {
            tracing::error!(error = %e, "thawing a dropped freeze");
        }
    }
}

impl Watchdog {
    fn start(dirs: Vec<File>, limit: Duration) -> io::Result<Watchdog> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: pipe2 writes two fds into the array.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 just created these fds and nothing else owns them.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let raw: Vec<RawFd> = dirs.iter().map(|d| d.as_raw_fd()).collect();
        // What the child keeps open, sorted, so it can close the rest.
        let mut keep: Vec<RawFd> = raw.iter().copied().chain([read.as_raw_fd()]).collect();
        keep.sort_unstable();
        let limit_ms = limit.as_millis().min(i64::MAX as u128) as i64;
        // SAFETY: the child runs only async-signal-safe calls (see
        // `watch`), since this process may have other threads.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            // SAFETY: in the child, on fds the parent set up.
            unsafe { watch(read.as_raw_fd(), &keep, &raw, limit_ms) }
        }
        drop(read);
        Ok(Watchdog { pid, release: Some(write), dirs })
    }
}

/// The watchdog child: waits until the pipe's write end closes everywhere or
/// `limit_ms` passes, thaws every directory's filesystem and exits. Only
/// async-signal-safe calls, no allocation, no unwinding: the parent may
/// have been multi-threaded when it forked.
///
/// It first closes every inherited fd but stdio and `keep` (sorted): the
/// pipe's write end, and whatever else livemirror had open (sockets, other
/// pipes), which must not outlive livemirror in this process.
unsafe fn watch(read: RawFd, keep: &[RawFd], dirs: &[RawFd], limit_ms: i64) -> ! {
    // SAFETY (whole body): plain syscalls on inherited fds and stack memory.
    unsafe {
        let mut from: libc::c_uint = 3;
        for &fd in keep {
            let fd = fd as libc::c_uint;
            if fd > from {
                libc::syscall(libc::SYS_close_range, from, fd - 1, 0);
            }
            from = fd + 1;
        }
        libc::syscall(libc::SYS_close_range, from, libc::c_uint::MAX, 0);
        libc::setpgid(0, 0);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, libc::SIGPIPE] {
            libc::signal(sig, libc::SIG_IGN);
        }
        let deadline = now_ms() + limit_ms;
        let mut code = THAWED_AT_LIMIT;
        loop {
            let left = deadline - now_ms();
            if left <= 0 {
                break;
            }
            let mut pfd = libc::pollfd { fd: read, events: libc::POLLIN, revents: 0 };
            let r = libc::poll(&mut pfd, 1, left.min(i32::MAX as i64) as libc::c_int);
            if r > 0 {
                // Nobody writes to the pipe: readiness means every write end
                // is closed (POLLHUP, or a read of 0).
                code = THAWED_ON_RELEASE;
                break;
            }
        }
        for &fd in dirs {
            if libc::ioctl(fd, FITHAW, 0) != 0 && *libc::__errno_location() != libc::EINVAL {
                code = THAW_FAILED;
            }
        }
        libc::_exit(code)
    }
}

fn now_ms() -> i64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec * 1000 + ts.tv_nsec / 1_000_000
}

fn ioctl(fd: RawFd, request: libc::c_ulong) -> io::Result<()> {
    // SAFETY: FIFREEZE/FITHAW take no argument memory.
    if unsafe { libc::ioctl(fd, request, 0) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
