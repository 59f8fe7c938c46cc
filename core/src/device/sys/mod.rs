//! What a device *is* on the host, and the host calls behind
//! [`FileDevice`](super::FileDevice): identity (to refuse mirroring a device
//! into itself, or into a partition of itself), whether it is in use, its
//! size, positional I/O, native zeroing and allocation queries.
//!
//! One module per host implements the same set of functions: [`linux`] with
//! `fstat`, `ioctl`, `fallocate`, `SEEK_DATA` and `/proc/self/mountinfo`;
//! [`win32`] with `DeviceIoControl` and the volume manager. Everything above
//! this module is host-independent.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as host;

#[cfg(windows)]
mod win32;
#[cfg(windows)]
use win32 as host;

#[cfg(windows)]
pub use host::ioctl;
/// Also how the flasher writes a new image file where there is no
/// write-behind.
pub(crate) use host::write_all_at;
pub(super) use host::{
    allocation, cached_bytes, discard_range, drop_cached, make_sparse, open_direct, probe,
    read_exact_at, zero_range,
};
#[cfg(target_os = "linux")]
pub(super) use host::{clone_range, direct_alignment};
pub use host::{disk_serial, mounts_on};

/// What an open file turned out to be.
pub(super) struct Probe {
    /// A whole disk, partition or volume rather than a regular file.
    pub is_block: bool,
    pub len: u64,
    pub logical_block_size: u32,
    pub id: DeviceId,
}

/// The identity of a device's storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceId {
    /// A regular file, by filesystem (device number, or volume serial on
    /// Windows) and inode (file index on Windows).
    File { dev: u64, ino: u64 },
    /// A block device or partition: the whole disk it lives on
    /// (major:minor as `dev_t`, or the Windows disk number), its byte range
    /// within that disk, and for a loop device the file behind it (`dev`, `ino`).
    Block { disk: u64, start: u64, len: u64, backing: Option<(u64, u64)> },
    /// An in-memory device, by a process-unique number.
    Memory(u64),
    /// An NBD export, by a hash of its address and export name: two
    /// connections to the same export are the same device.
    Network(u64),
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
        let a = probe(f.as_file(), f.path()).unwrap().id;
        let b = probe(&std::fs::File::open(f.path()).unwrap(), f.path()).unwrap().id;
        assert_eq!(a, b);
        let other = tempfile::NamedTempFile::new().unwrap();
        assert_ne!(a, probe(other.as_file(), other.path()).unwrap().id);
    }
}
