//! A read lease on an image file (Linux `F_SETLEASE`): proof that no other
//! program writes the source while a clone copies it, without reading it
//! twice.
//!
//! The kernel grants a read lease only while nobody has the file open for
//! writing (a writable `mmap` counts, as does a loop device over it), and
//! breaks it when someone opens it for writing or truncates it: that open
//! waits until the holder lets go (or `/proc/sys/fs/lease-break-time`
//! passes). So while the lease holds, nothing but the job can have written
//! the file. The job polls [`ReadLease::broken`] every tick and lets go at
//! once when it is, which lets the opener through a moment later.

use std::fs::File;
use std::io;

/// A read lease, held until dropped (closing its descriptor releases it).
#[derive(Debug)]
pub struct ReadLease {
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    file: File,
}

/// `fcntl`'s F_SETSIG (`<asm-generic/fcntl.h>`; the libc crate lacks it).
#[cfg(target_os = "linux")]
const F_SETSIG: libc::c_int = 10;

#[cfg(target_os = "linux")]
impl ReadLease {
    /// Takes a read lease on the file behind `file`, through a new read-only
    /// open of it (a lease belongs to one open file, and must be read-only).
    /// Fails with `EAGAIN` while the file is open for writing anywhere,
    /// `EACCES` when this user does not own it, `EINVAL` where the
    /// filesystem has no leases (network and FUSE filesystems).
    pub fn take(file: &File) -> io::Result<ReadLease> {
        use std::os::fd::AsRawFd;
        let own = File::open(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
        let fd = own.as_raw_fd();
        // The break is announced by a signal, SIGIO unless set: its default
        // ends the process. SIGURG's default is to ignore it; the job polls.
        // SAFETY: fcntl on a descriptor we own, with integer arguments.
        if unsafe { libc::fcntl(fd, F_SETSIG, libc::SIGURG) } == -1 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above.
        if unsafe { libc::fcntl(fd, libc::F_SETLEASE, libc::F_RDLCK) } == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(ReadLease { file: own })
    }

    /// True once someone has opened the file for writing (or truncated it):
    /// while that break is pending the kernel reports the lease as gone.
    pub fn broken(&self) -> bool {
        use std::os::fd::AsRawFd;
        // SAFETY: fcntl on a descriptor we own.
        let held = unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_GETLEASE) };
        held != libc::F_RDLCK
    }
}

#[cfg(not(target_os = "linux"))]
impl ReadLease {
    /// Leases are a Linux feature.
    pub fn take(_file: &File) -> io::Result<ReadLease> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "file leases are a Linux feature"))
    }

    /// Never taken here, so never broken.
    pub fn broken(&self) -> bool {
        false
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_refused_while_the_file_is_open_for_writing() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let reader = File::open(f.path()).unwrap();
        let e = ReadLease::take(&reader).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EAGAIN), "{e}");
    }

    #[test]
    fn an_open_for_writing_breaks_the_lease_and_waits_for_its_release() {
        let path = tempfile::NamedTempFile::new().unwrap().into_temp_path();
        let lease = ReadLease::take(&File::open(&path).unwrap()).unwrap();
        assert!(!lease.broken());
        // Readers do not break it.
        drop(File::open(&path).unwrap());
        assert!(!lease.broken());
        let writer = {
            let path = path.to_path_buf();
            std::thread::spawn(move || std::fs::OpenOptions::new().write(true).open(path))
        };
        // Polled, as the job does, until the opener's break shows.
        while !lease.broken() {
            std::thread::yield_now();
        }
        assert!(!writer.is_finished(), "the opener waits while the lease is held");
        drop(lease);
        writer.join().unwrap().expect("the opener goes on once the lease is let go");
    }
}
