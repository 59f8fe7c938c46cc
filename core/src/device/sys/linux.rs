//! The Linux host: `pread`/`pwrite`; `fallocate` on files and
//! `BLKZEROOUT`/`BLKDISCARD` on block devices; allocation from
//! `SEEK_DATA`/`SEEK_HOLE`; `O_DIRECT` alignment from `statx`; identity from
//! `fstat` and `/sys/dev/block`; mounts from `/proc/self/mountinfo`.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use super::{DeviceId, Probe};
use crate::device::Allocation;

// ioctl numbers from <linux/fs.h>.
const BLKSSZGET: libc::c_ulong = 0x1268;
const BLKDISCARD: libc::c_ulong = 0x1277;
const BLKZEROOUT: libc::c_ulong = 0x127f;
const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;

/// Size, I/O unit and identity of a regular file or block device;
/// anything else (a directory, a socket, a character device) is refused.
/// `fstat` tells which it is, so the path is not needed.
pub fn probe(file: &File, _path: &Path) -> io::Result<Probe> {
    let meta = file.metadata()?;
    if meta.is_file() {
        let id = DeviceId::File { dev: meta.dev(), ino: meta.ino() };
        return Ok(Probe { is_block: false, len: meta.len(), logical_block_size: 512, id });
    }
    if !meta.file_type().is_block_device() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file or block device",
        ));
    }
    let mut len: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer.
    ioctl_result(unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64, &mut len) })?;
    let mut lbs: libc::c_int = 512;
    // SAFETY: BLKSSZGET writes one int through the pointer.
    if let Err(e) = ioctl_result(unsafe { libc::ioctl(file.as_raw_fd(), BLKSSZGET, &mut lbs) }) {
        // 512 bytes is every disk's smallest unit: a safe guess.
        tracing::debug!(error = %e, "BLKSSZGET failed; assuming 512-byte sectors");
    }
    let id = id_of_dev(meta.rdev())?;
    Ok(Probe { is_block: true, len, logical_block_size: lbs.max(512) as u32, id })
}

pub fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    file.read_exact_at(buf, offset)
}

/// Drops the clean cached pages of a range, so the next read comes from the
/// medium: a mounted filesystem writes a disk without updating the block
/// device's own cache. Dirty pages are written back first by the kernel.
pub fn drop_cached(file: &File, offset: u64, len: u64) -> io::Result<()> {
    // SAFETY: plain syscall on an open descriptor; no pointers.
    let r = unsafe {
        libc::posix_fadvise(
            file.as_raw_fd(),
            offset as libc::off_t,
            len as libc::off_t,
            libc::POSIX_FADV_DONTNEED,
        )
    };
    if r == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(r)) }
}

/// `cachestat(2)` (Linux 6.5+), the same number on every architecture's
/// table; the libc crate does not name it for x86_64 yet.
const SYS_CACHESTAT: libc::c_long = 451;

/// Bytes of `offset..offset + len` held in the page cache (`cachestat`;
/// `ENOSYS` before Linux 6.5).
pub fn cached_bytes(file: &File, offset: u64, len: u64) -> io::Result<u64> {
    #[repr(C)]
    struct Range {
        off: u64,
        len: u64,
    }
    #[repr(C)]
    #[derive(Default)]
    struct Stat {
        nr_cache: u64,
        nr_dirty: u64,
        nr_writeback: u64,
        nr_evicted: u64,
        nr_recently_evicted: u64,
    }
    let range = Range { off: offset, len };
    let mut stat = Stat::default();
    // SAFETY: the kernel reads `range` and writes `stat`, both live across
    // the call and laid out as its `struct cachestat_range` / `cachestat`.
    let r = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            file.as_raw_fd(),
            &raw const range,
            &raw mut stat,
            0 as libc::c_uint,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    Ok(stat.nr_cache * page)
}

pub fn write_all_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    file.write_all_at(buf, offset)
}

/// Zeroes a range natively: `BLKZEROOUT` on a block device, a punched hole
/// (`may_unmap`) or `FALLOC_FL_ZERO_RANGE` on a file. `Ok(false)` when the
/// kernel or filesystem cannot, and the caller must write zeroes.
pub fn zero_range(
    file: &File,
    is_block: bool,
    offset: u64,
    len: u64,
    may_unmap: bool,
) -> io::Result<bool> {
    let r = if is_block {
        block_range_ioctl(file, BLKZEROOUT, offset, len)
    } else if may_unmap {
        fallocate(file, libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, offset, len)
    } else {
        fallocate(file, libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE, offset, len)
    };
    match r {
        Ok(()) => Ok(true),
        Err(e) if unsupported(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Discards a range (`BLKDISCARD`, or a punched hole in a file); does
/// nothing where that is not supported, since discard is only a hint.
pub fn discard_range(file: &File, is_block: bool, offset: u64, len: u64) -> io::Result<()> {
    let r = if is_block {
        block_range_ioctl(file, BLKDISCARD, offset, len)
    } else {
        fallocate(file, libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, offset, len)
    };
    match r {
        Err(e) if unsupported(&e) => Ok(()),
        other => other,
    }
}

/// Files on Linux are sparse from the start: extending one allocates nothing.
pub fn make_sparse(_file: &File) -> io::Result<()> {
    Ok(())
}

/// Allocation of a regular file at `offset`, and how far (up to `limit`)
/// it stays the same: `SEEK_DATA` finds the next data, `SEEK_HOLE` the end
/// of the data run.
pub fn allocation(file: &File, offset: u64, limit: u64) -> io::Result<(Allocation, u64)> {
    let run = |end: Option<u64>| end.unwrap_or(limit).min(limit).max(offset + 1) - offset;
    match seek(file, offset, libc::SEEK_DATA)? {
        Some(data) if data <= offset => {
            Ok((Allocation::Data, run(seek(file, offset, libc::SEEK_HOLE)?)))
        }
        next_data => Ok((Allocation::Hole, run(next_data))),
    }
}

/// Opens `path` with `O_DIRECT` and returns it with its `(memory, offset)`
/// alignment, or `None` when the device cannot do direct I/O.
pub fn open_direct(
    path: &Path,
    write: bool,
    logical_block_size: u32,
) -> Option<(File, usize, u64)> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .ok()?;
    let (mem, offset) = direct_alignment(&file, logical_block_size)?;
    Some((file, mem, offset))
}

/// The `(memory, offset)` alignment direct I/O on `file` (opened with
/// `O_DIRECT`) needs, or `None` when it cannot do direct I/O.
pub fn direct_alignment(file: &File, logical_block_size: u32) -> Option<(usize, u64)> {
    match dio_align(file) {
        Some((0, _) | (_, 0)) => None, // the kernel says: no direct I/O here
        Some((mem, offset)) => Some((mem as usize, u64::from(offset))),
        // An older kernel: the logical block size, but at least a page,
        // which every filesystem that takes O_DIRECT accepts.
        None => Some((crate::buffer::ALIGN, u64::from(logical_block_size).max(4096))),
    }
}

/// `(memory, offset)` alignment for direct I/O, if the kernel reports it.
fn dio_align(file: &File) -> Option<(u32, u32)> {
    // SAFETY: all-zero is a valid statx; the kernel fills what it knows.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: an fd we own, an empty NUL-terminated path with AT_EMPTY_PATH
    // (meaning "this fd"), and a pointer to a statx we own.
    let r = unsafe {
        libc::statx(
            file.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_DIOALIGN,
            &mut stx,
        )
    };
    (r == 0 && stx.stx_mask & libc::STATX_DIOALIGN != 0)
        .then_some((stx.stx_dio_mem_align, stx.stx_dio_offset_align))
}

/// `FICLONERANGE`: `len` bytes at `offset` of `dst` share `src`'s extents.
pub fn clone_range(src: &File, dst: &File, offset: u64, len: u64) -> io::Result<()> {
    let range = libc::file_clone_range {
        src_fd: src.as_raw_fd() as i64,
        src_offset: offset,
        src_length: len,
        dest_offset: offset,
    };
    // SAFETY: FICLONERANGE reads one file_clone_range through the pointer;
    // both descriptors are open for the call's duration.
    ioctl_result(unsafe { libc::ioctl(dst.as_raw_fd(), libc::FICLONERANGE, &range) })
}

fn fallocate(file: &File, mode: libc::c_int, offset: u64, len: u64) -> io::Result<()> {
    // SAFETY: plain syscall on an fd we own.
    let r = unsafe {
        libc::fallocate(file.as_raw_fd(), mode, offset as libc::off_t, len as libc::off_t)
    };
    if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

fn block_range_ioctl(file: &File, request: libc::c_ulong, offset: u64, len: u64) -> io::Result<()> {
    let range: [u64; 2] = [offset, len];
    // SAFETY: these ioctls read two u64s (start, length) through the pointer.
    ioctl_result(unsafe { libc::ioctl(file.as_raw_fd(), request, &range) })
}

/// `lseek` with `SEEK_DATA`/`SEEK_HOLE`; `None` when there is no such
/// position before the end (`ENXIO`).
fn seek(file: &File, offset: u64, whence: libc::c_int) -> io::Result<Option<u64>> {
    // SAFETY: lseek on an fd we own; we never rely on the file position
    // elsewhere (all I/O is positional), so moving it is harmless.
    let r = unsafe { libc::lseek(file.as_raw_fd(), offset as libc::off_t, whence) };
    if r >= 0 {
        return Ok(Some(r as u64));
    }
    match io::Error::last_os_error() {
        e if e.raw_os_error() == Some(libc::ENXIO) => Ok(None),
        e => Err(e),
    }
}

fn ioctl_result(r: libc::c_int) -> io::Result<()> {
    if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Errors that mean "this kernel or filesystem can't do that", after which a
/// plain write is the right fallback.
fn unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::ENOTTY | libc::EINVAL | libc::ENOSYS))
}

/// Mount points of filesystems on the block device `id` (or on partitions
/// that overlap it). Empty for files and memory devices.
pub fn mounts_on(id: &DeviceId) -> Vec<String> {
    let DeviceId::Block { .. } = id else {
        return Vec::new();
    };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for line in info.lines() {
        // Fields: id parent major:minor root mountpoint ...
        let mut fields = line.split(' ');
        let (Some(_), Some(_), Some(majmin), Some(_), Some(mountpoint)) =
            (fields.next(), fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let Ok(dev) = parse_dev(majmin) else { continue };
        let Ok(mounted) = id_of_dev(dev) else {
            continue;
        };
        if mounted.overlaps(id) {
            found.push(unescape_mountinfo(mountpoint));
        }
    }
    found
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`,
/// `\134`), so the mount point can be opened.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        // Three octal digits, at most \377.
        let octal = bytes.get(i + 1..i + 4).filter(|d| {
            (b'0'..=b'3').contains(&d[0]) && d[1..].iter().all(|b| (b'0'..=b'7').contains(b))
        });
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn id_of_dev(rdev: u64) -> io::Result<DeviceId> {
    let sys = sys_block_dir(rdev);
    if !sys.exists() {
        return Err(io::Error::from(io::ErrorKind::NotFound));
    }
    let len = read_sys_u64(&sys.join("size"))? * 512;
    // A partition has a `partition` file and lives in its disk's directory.
    let (disk_dir, disk, start) = if sys.join("partition").exists() {
        let disk_dir = sys.join("..");
        let disk = parse_dev(&std::fs::read_to_string(disk_dir.join("dev"))?)?;
        (disk_dir, disk, read_sys_u64(&sys.join("start"))? * 512)
    } else {
        (sys, rdev, 0)
    };
    Ok(DeviceId::Block { disk, start, len, backing: loop_backing(&disk_dir) })
}

/// The file behind a loop device, so mirroring a file onto a loop device of
/// itself is caught.
fn loop_backing(disk_dir: &Path) -> Option<(u64, u64)> {
    let path = std::fs::read_to_string(disk_dir.join("loop/backing_file")).ok()?;
    let meta = std::fs::metadata(path.trim_end()).ok()?;
    Some((meta.dev(), meta.ino()))
}

/// The serial number of the disk a [`DeviceId::Block`] lives on, so a state
/// file can tell one disk from another that took its name: what the disk
/// reports in sysfs (SCSI/SATA/USB `device/serial`, NVMe and virtio
/// `serial`, else a `wwid`), or udev's `ID_SERIAL`. `None` for a loop
/// device, a file, or a disk that reports none.
pub fn disk_serial(id: &DeviceId) -> Option<String> {
    let DeviceId::Block { disk, backing: None, .. } = *id else {
        return None;
    };
    serial_in(&sys_block_dir(disk)).or_else(|| {
        let (major, minor) = (libc::major(disk), libc::minor(disk));
        let udev = std::fs::read_to_string(format!("/run/udev/data/b{major}:{minor}")).ok()?;
        udev_serial(&udev)
    })
}

/// The first non-empty serial a disk's sysfs directory holds.
fn serial_in(disk_dir: &Path) -> Option<String> {
    ["device/serial", "serial", "device/wwid", "wwid"].iter().find_map(|name| {
        let text = std::fs::read_to_string(disk_dir.join(name)).ok()?;
        let text = text.trim();
        (!text.is_empty()).then(|| text.to_string())
    })
}

/// `ID_SERIAL` from a udev database entry (`E:ID_SERIAL=…` lines).
fn udev_serial(db: &str) -> Option<String> {
    db.lines()
        .find_map(|l| l.strip_prefix("E:ID_SERIAL="))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn sys_block_dir(rdev: u64) -> std::path::PathBuf {
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    Path::new("/sys/dev/block").join(format!("{major}:{minor}"))
}

fn read_sys_u64(path: &Path) -> io::Result<u64> {
    std::fs::read_to_string(path)?
        .trim()
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display())))
}

fn parse_dev(majmin: &str) -> io::Result<u64> {
    let bad =
        || io::Error::new(io::ErrorKind::InvalidData, format!("bad device number {majmin:?}"));
    let (major, minor) = majmin.trim().split_once(':').ok_or_else(bad)?;
    let major = major.parse().map_err(|_| bad())?;
    let minor = minor.parse().map_err(|_| bad())?;
    Ok(libc::makedev(major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_serial_comes_from_the_disk_first_then_its_wwid() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(serial_in(dir.path()), None);
        std::fs::write(dir.path().join("wwid"), "eui.0025388b91b4e001\n").unwrap();
        assert_eq!(serial_in(dir.path()).as_deref(), Some("eui.0025388b91b4e001"));
        std::fs::write(dir.path().join("serial"), "  \n").unwrap();
        assert_eq!(
            serial_in(dir.path()).as_deref(),
            Some("eui.0025388b91b4e001"),
            "empty: skipped"
        );
        std::fs::write(dir.path().join("serial"), "S4EVNX0N123456 \n").unwrap();
        assert_eq!(serial_in(dir.path()).as_deref(), Some("S4EVNX0N123456"));
        let db = "S:disk/by-id/usb-x\nE:ID_SERIAL_SHORT=123\nE:ID_SERIAL=SanDisk_Ultra_4C53\n";
        assert_eq!(udev_serial(db).as_deref(), Some("SanDisk_Ultra_4C53"));
        assert_eq!(udev_serial("E:ID_SERIAL=\n"), None);
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mountinfo(r"/mnt/my\040disk\134x"), r"/mnt/my disk\x");
        assert_eq!(unescape_mountinfo(r"/plain\09\777"), r"/plain\09\777");
    }
}
