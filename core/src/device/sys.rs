//! What a device *is* on the host: identity (to refuse mirroring a device
//! into itself, or into a partition of itself) and whether it is in use.
//!
//! Linux answers from `fstat`, `/sys/dev/block` and `/proc/self/mountinfo`.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// The identity of a device's storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceId {
    /// A regular file, by filesystem device and inode.
    File { dev: u64, ino: u64 },
    /// A block device or partition: the whole disk it lives on
    /// (major:minor as `dev_t`), its byte range within that disk, and for a
    /// loop device the file behind it (`dev`, `ino`).
    Block { disk: u64, start: u64, len: u64, backing: Option<(u64, u64)> },
    /// An in-memory device, by a process-unique number.
    Memory(u64),
}

impl DeviceId {
    /// True when writing one could change what the other reads: the same
    /// file, the same memory device, or overlapping ranges of one disk.
    pub fn overlaps(&self, other: &DeviceId) -> bool {
        use DeviceId::{Block, File};
        match (self, other) {
            (
                Block { disk: a, start: sa, len: la, backing: ba },
                Block { disk: b, start: sb, len: lb, backing: bb },
            ) => (a == b && sa < &(sb + lb) && sb < &(sa + la)) || (ba.is_some() && ba == bb),
            (Block { backing: Some(f), .. }, File { dev, ino })
            | (File { dev, ino }, Block { backing: Some(f), .. }) => *f == (*dev, *ino),
            _ => self == other,
        }
    }
}

/// The identity of an open file or block device.
pub fn identify(file: &File) -> io::Result<DeviceId> {
    let meta = file.metadata()?;
    if !meta.file_type().is_block_device() {
        return Ok(DeviceId::File { dev: meta.dev(), ino: meta.ino() });
    }
    id_of_dev(meta.rdev())
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
            found.push(mountpoint.to_string());
        }
    }
    found
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
    fn partitions_of_one_disk_overlap_only_when_ranges_do() {
        let block = |disk, start, len| DeviceId::Block { disk, start, len, backing: None };
        let disk = block(8, 0, 1000);
        let p1 = block(8, 0, 500);
        let p2 = block(8, 500, 500);
        let other = block(16, 0, 500);
        assert!(disk.overlaps(&p1) && p1.overlaps(&disk));
        assert!(disk.overlaps(&p2));
        assert!(!p1.overlaps(&p2));
        assert!(!p1.overlaps(&other));
        let f = DeviceId::File { dev: 1, ino: 2 };
        assert!(f.overlaps(&f));
        assert!(!f.overlaps(&DeviceId::File { dev: 1, ino: 3 }));
        let looped = DeviceId::Block { disk: 7, start: 0, len: 10, backing: Some((1, 2)) };
        assert!(looped.overlaps(&f) && f.overlaps(&looped));
        let again = DeviceId::Block { disk: 9, start: 0, len: 10, backing: Some((1, 2)) };
        assert!(looped.overlaps(&again), "two loop devices of one file");
    }

    #[test]
    fn same_file_through_two_handles_is_one_device() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let a = identify(f.as_file()).unwrap();
        let b = identify(&File::open(f.path()).unwrap()).unwrap();
        assert_eq!(a, b);
    }
}
