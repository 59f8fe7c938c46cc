//! The whole disks a person can pick as source or target, with what they
//! need to know before overwriting one: model, size, bus, removable, which
//! partitions are mounted where, and whether it holds the running system.
//!
//! Linux reads `/sys/block` and `/proc/self/mountinfo` (the `blockdev`
//! crate); Windows asks each `\\.\PhysicalDriveN` with `IOCTL_DISK_*` and
//! `IOCTL_STORAGE_QUERY_PROPERTY`, and the volume manager for mounts. Used by the Setup screen
//! and by `livemirror disks`.

use std::path::PathBuf;

use crate::text::human;

/// One whole disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// What to open: `/dev/sda`, `\\.\C:`.
    pub path: PathBuf,
    /// The kernel's name: `sda`, `nvme0n1`. What a person types to confirm.
    pub name: String,
    /// Vendor model string; empty when the disk does not say.
    pub model: String,
    pub size: u64,
    /// `USB`, `NVMe`, `SATA`, `virtio`, … or empty when unknown.
    pub bus: String,
    pub removable: bool,
    pub read_only: bool,
    /// Mount points of the disk and of its partitions.
    pub mounts: Vec<String>,
    /// Holds `/`, `/boot` or `/usr`: overwriting it breaks this computer.
    pub system: bool,
}

impl Disk {
    /// One line for lists: `sda  Samsung SSD 870  465.8 GiB  SATA`.
    pub fn summary(&self) -> String {
        let mut parts = vec![self.name.clone()];
        if !self.model.is_empty() {
            parts.push(self.model.clone());
        }
        parts.push(human(self.size));
        if !self.bus.is_empty() {
            parts.push(self.bus.clone());
        }
        parts.join("  ")
    }

    /// The warnings worth showing next to the disk.
    pub fn flags(&self) -> Vec<String> {
        let mut f = Vec::new();
        if self.system {
            f.push("system disk".to_string());
        }
        if self.removable {
            f.push("removable".to_string());
        }
        if self.read_only {
            f.push("read-only".to_string());
        }
        if !self.mounts.is_empty() {
            f.push(format!("mounted at {}", self.mounts.join(", ")));
        }
        f
    }
}

/// The whole disks of this machine, largest-risk first is not implied: in
/// the kernel's order. Empty when they cannot be listed (no /sys).
pub fn list() -> Vec<Disk> {
    sys::list()
}

#[cfg(target_os = "linux")]
mod sys {
    use std::path::{Path, PathBuf};

    use super::Disk;

    /// Mount points that make a disk the system disk.
    const SYSTEM_MOUNTS: [&str; 4] = ["/", "/boot", "/boot/efi", "/usr"];

    pub fn list() -> Vec<Disk> {
        let Ok(devices) = blockdev::get_devices() else {
            return Vec::new();
        };
        devices
            .iter()
            .filter(|d| d.is_disk() && d.size > 0 && !d.name.starts_with("zram"))
            .map(|d| {
                let mut mounts: Vec<String> = std::iter::once(d)
                    .chain(d.descendants())
                    .flat_map(|p| p.mountpoints.iter().cloned())
                    .collect();
                mounts.sort();
                mounts.dedup();
                let system = mounts.iter().any(|m| SYSTEM_MOUNTS.contains(&m.as_str()));
                Disk {
                    path: PathBuf::from("/dev").join(&d.name),
                    name: d.name.clone(),
                    model: d.model.clone().unwrap_or_default().trim().to_string(),
                    size: d.size,
                    bus: bus(&d.name),
                    removable: d.rm,
                    read_only: d.ro,
                    mounts,
                    system,
                }
            })
            .collect()
    }

    /// The bus, from where the disk sits in the sysfs device tree.
    fn bus(name: &str) -> String {
        let Ok(real) = std::fs::canonicalize(Path::new("/sys/block").join(name)) else {
            return String::new();
        };
        bus_from_sysfs_path(&real.to_string_lossy()).to_string()
    }

    pub(super) fn bus_from_sysfs_path(p: &str) -> &'static str {
        const BUSES: [(&str, &str); 7] = [
            ("/usb", "USB"),
            ("/nvme", "NVMe"),
            ("/mmc", "SD/MMC"),
            ("/virtio", "virtio"),
            ("/ata", "SATA"),
            ("/virtual/", "virtual"),
            ("/host", "SCSI"),
        ];
        BUSES.iter().find(|(needle, _)| p.contains(needle)).map_or("", |(_, bus)| bus)
    }
}

#[cfg(windows)]
mod sys {
    use std::fs::File;
    use std::mem::size_of;
    use std::os::windows::fs::OpenOptionsExt;

    use livemirror_core::device::{DeviceId, ioctl, mounts_on};
    use windows::Win32::Foundation::ERROR_WRITE_PROTECT;
    use windows::Win32::Storage::FileSystem::{
        FILE_SHARE_READ, FILE_SHARE_WRITE, STORAGE_BUS_TYPE,
    };
    use windows::Win32::System::Ioctl::{
        DISK_GEOMETRY_EX, IOCTL_DISK_GET_DRIVE_GEOMETRY_EX, IOCTL_DISK_IS_WRITABLE,
        IOCTL_STORAGE_QUERY_PROPERTY, PropertyStandardQuery, STORAGE_DEVICE_DESCRIPTOR,
        STORAGE_PROPERTY_QUERY, StorageDeviceProperty,
    };

    use super::Disk;

    /// Physical drive numbers tried; Windows numbers disks from 0 and
    /// leaves gaps when one is removed.
    const MAX_DRIVES: u32 = 64;

    /// `\\.\PhysicalDriveN`, asked with no access rights (what the ioctls
    /// below need), so listing works without administrator rights.
    pub fn list() -> Vec<Disk> {
        let system = std::env::var("SystemDrive").unwrap_or_else(|_| "C:".into());
        (0..MAX_DRIVES).filter_map(|n| disk(n, &system)).collect()
    }

    fn disk(n: u32, system_drive: &str) -> Option<Disk> {
        let path = format!(r"\\.\PhysicalDrive{n}");
        let file = std::fs::OpenOptions::new()
            .access_mode(0)
            .share_mode(FILE_SHARE_READ.0 | FILE_SHARE_WRITE.0)
            .open(&path)
            .ok()?;
        let mut geometry = DISK_GEOMETRY_EX::default();
        ioctl(&file, IOCTL_DISK_GET_DRIVE_GEOMETRY_EX, &(), &mut geometry).ok()?;
        let size = u64::try_from(geometry.DiskSize).ok().filter(|s| *s > 0)?;
        let (model, bus, removable) = describe(&file).unwrap_or_default();
        let read_only = ioctl(&file, IOCTL_DISK_IS_WRITABLE, &(), &mut ())
            .is_err_and(|e| e.raw_os_error() == Some(ERROR_WRITE_PROTECT.0 as i32));
        let mut mounts =
            mounts_on(&DeviceId::Block { disk: n.into(), start: 0, len: size, backing: None });
        mounts.sort();
        let system = mounts.iter().any(|m| {
            m.trim_end_matches('\\').eq_ignore_ascii_case(system_drive.trim_end_matches('\\'))
        });
        Some(Disk {
            path: path.into(),
            name: format!("PhysicalDrive{n}"),
            model,
            size,
            bus: bus_name(bus).to_string(),
            removable,
            read_only,
            mounts,
            system,
        })
    }

    /// Vendor and product, bus type and removable flag from the storage
    /// device descriptor (strings live at offsets inside the buffer).
    fn describe(file: &File) -> Option<(String, STORAGE_BUS_TYPE, bool)> {
        #[repr(C, align(8))]
        struct Buf([u8; 1024]);
        let query = STORAGE_PROPERTY_QUERY {
            PropertyId: StorageDeviceProperty,
            QueryType: PropertyStandardQuery,
            ..Default::default()
        };
        let mut buf = Buf([0; 1024]);
        let n = ioctl(file, IOCTL_STORAGE_QUERY_PROPERTY, &query, &mut buf).ok()? as usize;
        if n < size_of::<STORAGE_DEVICE_DESCRIPTOR>() {
            return None;
        }
        // SAFETY: the buffer is 8-aligned and holds at least a descriptor.
        let desc = unsafe { &*(buf.0.as_ptr() as *const STORAGE_DEVICE_DESCRIPTOR) };
        let text = |offset: u32| {
            let bytes = buf.0[..n].get(offset as usize..).filter(|_| offset != 0)?;
            let end = bytes.iter().position(|b| *b == 0)?;
            Some(String::from_utf8_lossy(&bytes[..end]).trim().to_string())
        };
        let model = [text(desc.VendorIdOffset), text(desc.ProductIdOffset)]
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        Some((model, desc.BusType, desc.RemovableMedia))
    }

    fn bus_name(bus: STORAGE_BUS_TYPE) -> &'static str {
        match bus.0 {
            1 => "SCSI",
            3 => "ATA",
            7 => "USB",
            10 => "SAS",
            11 => "SATA",
            12 => "SD",
            13 => "MMC",
            14 | 15 => "virtual",
            17 => "NVMe",
            _ => "",
        }
    }
}

#[cfg(not(any(target_os = "linux", windows)))]
mod sys {
    pub fn list() -> Vec<super::Disk> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk() -> Disk {
        Disk {
            path: "/dev/sdb".into(),
            name: "sdb".into(),
            model: "Flash Drive".into(),
            size: 16 << 30,
            bus: "USB".into(),
            removable: true,
            read_only: false,
            mounts: vec!["/media/stick".into()],
            system: false,
        }
    }

    #[test]
    fn summary_and_flags_say_what_matters() {
        let d = disk();
        assert_eq!(d.summary(), "sdb  Flash Drive  16.0 GiB  USB");
        assert_eq!(d.flags(), vec!["removable", "mounted at /media/stick"]);
        let sys =
            Disk { system: true, removable: false, mounts: vec![], model: String::new(), ..disk() };
        assert_eq!(sys.flags(), vec!["system disk"]);
        assert_eq!(sys.summary(), "sdb  16.0 GiB  USB");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn bus_comes_from_the_sysfs_path() {
        use super::sys::bus_from_sysfs_path as bus;
        assert_eq!(bus("/sys/devices/pci0000:00/0000:00:02.0/virtio1/block/vda"), "virtio");
        assert_eq!(
            bus(
                "/sys/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0/block/sdb"
            ),
            "USB"
        );
        assert_eq!(
            bus("/sys/devices/pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1"),
            "NVMe"
        );
        assert_eq!(bus("/sys/devices/virtual/block/loop0"), "virtual");
        assert_eq!(bus("/somewhere/else"), "");
    }
}
