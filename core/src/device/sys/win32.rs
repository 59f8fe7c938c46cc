//! The Windows host: positional `ReadFile`/`WriteFile`; disks, partitions
//! and volumes (`\\.\PhysicalDrive1`, `\\.\E:`) measured and identified with
//! `IOCTL_DISK_*`/`IOCTL_STORAGE_*`; zeroing with `FSCTL_SET_ZERO_DATA` and
//! allocation from `FSCTL_QUERY_ALLOCATED_RANGES` on files; mounts from the
//! volume manager (each volume's disk extents and mount paths);
//! `FILE_FLAG_NO_BUFFERING` for direct I/O.
//!
//! Compiled and linked for `x86_64-pc-windows-gnu` on every CI run, and run
//! there under Wine for files; disks and volumes have only been type-checked
//! (see the README's "What is tested where").

use std::ffi::c_void;
use std::fs::File;
use std::io;
use std::mem::size_of;
use std::os::windows::fs::{FileExt, OpenOptionsExt};
use std::os::windows::io::AsRawHandle;
use std::path::Path;

use windows::Win32::Foundation::{
    ERROR_INVALID_FUNCTION, ERROR_INVALID_PARAMETER, ERROR_MORE_DATA, ERROR_NOT_SUPPORTED, HANDLE,
};
use windows::Win32::Storage::FileSystem::{
    BY_HANDLE_FILE_INFORMATION, FILE_FLAG_NO_BUFFERING, FILE_SHARE_READ, FILE_SHARE_WRITE,
    FindFirstVolumeW, FindNextVolumeW, FindVolumeClose, GetFileInformationByHandle,
    GetVolumePathNamesForVolumeNameW, IOCTL_VOLUME_GET_VOLUME_DISK_EXTENTS,
};
use windows::Win32::System::IO::DeviceIoControl;
use windows::Win32::System::Ioctl::{
    DISK_EXTENT, DISK_GEOMETRY, FILE_ALLOCATED_RANGE_BUFFER, FILE_ZERO_DATA_INFORMATION,
    FSCTL_QUERY_ALLOCATED_RANGES, FSCTL_SET_SPARSE, FSCTL_SET_ZERO_DATA, GET_LENGTH_INFORMATION,
    IOCTL_DISK_GET_DRIVE_GEOMETRY, IOCTL_DISK_GET_LENGTH_INFO, IOCTL_DISK_GET_PARTITION_INFO_EX,
    IOCTL_STORAGE_GET_DEVICE_NUMBER, IOCTL_STORAGE_QUERY_PROPERTY, PARTITION_INFORMATION_EX,
    PropertyStandardQuery, STORAGE_DEVICE_DESCRIPTOR, STORAGE_DEVICE_NUMBER,
    STORAGE_PROPERTY_QUERY, StorageDeviceProperty, VOLUME_DISK_EXTENTS,
};
use windows::core::PCWSTR;

use super::{DeviceId, Probe};
use crate::device::Allocation;

/// Size, I/O unit and identity of a disk, partition, volume or regular
/// file. Which of these it is comes from the path: filesystems pass disk
/// ioctls on a file's handle down to the volume beneath it, so asking the
/// handle would make every file look like the disk it lives on.
pub fn probe(file: &File, path: &Path) -> io::Result<Probe> {
    if !is_device_path(path) {
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file, disk, partition or volume",
            ));
        }
        let mut info = BY_HANDLE_FILE_INFORMATION::default();
        // SAFETY: a handle we own and a struct the call fills.
        unsafe { GetFileInformationByHandle(handle(file), &mut info) }.map_err(os_error)?;
        let id = DeviceId::File {
            dev: u64::from(info.dwVolumeSerialNumber),
            ino: u64::from(info.nFileIndexHigh) << 32 | u64::from(info.nFileIndexLow),
        };
        return Ok(Probe { is_block: false, len: meta.len(), logical_block_size: 512, id });
    }
    let mut length = GET_LENGTH_INFORMATION::default();
    ioctl(file, IOCTL_DISK_GET_LENGTH_INFO, &(), &mut length)?;
    let len = length.Length as u64;
    let mut geometry = DISK_GEOMETRY::default();
    let sector = match ioctl(file, IOCTL_DISK_GET_DRIVE_GEOMETRY, &(), &mut geometry) {
        Ok(_) => geometry.BytesPerSector.max(512),
        Err(_) => 512,
    };
    let id = disk_range(file, len)?;
    Ok(Probe { is_block: true, len, logical_block_size: sector, id })
}

/// `\\.\PhysicalDrive1`, `\\.\E:`, `\\?\Volume{…}`: a device namespace
/// prefix and a single name after it (`\\?\C:\images\a.img` is a file).
fn is_device_path(path: &Path) -> bool {
    let p = path.as_os_str().to_string_lossy();
    [r"\\.\", r"\\?\"].iter().any(|prefix| {
        p.strip_prefix(prefix).is_some_and(|rest| !rest.is_empty() && !rest.contains('\\'))
    })
}

/// Which disk a disk, partition or volume handle is on, and where: the
/// storage device number for disks and partitions, the volume's first disk
/// extent for volumes the storage stack does not number (dynamic disks).
fn disk_range(file: &File, len: u64) -> io::Result<DeviceId> {
    let mut number = STORAGE_DEVICE_NUMBER::default();
    if ioctl(file, IOCTL_STORAGE_GET_DEVICE_NUMBER, &(), &mut number).is_ok() {
        let mut part = PARTITION_INFORMATION_EX::default();
        let start = if number.PartitionNumber != 0
            && ioctl(file, IOCTL_DISK_GET_PARTITION_INFO_EX, &(), &mut part).is_ok()
        {
            part.StartingOffset as u64
        } else {
            0
        };
        return Ok(DeviceId::Block { disk: number.DeviceNumber.into(), start, len, backing: None });
    }
    let extent = extents(file)?
        .into_iter()
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::Unsupported, "the volume lies on no disk"))?;
    Ok(DeviceId::Block {
        disk: extent.DiskNumber.into(),
        start: extent.StartingOffset as u64,
        len: extent.ExtentLength as u64,
        backing: None,
    })
}

/// The serial number of the disk a [`DeviceId::Block`] lives on (the
/// storage device descriptor's, from `IOCTL_STORAGE_QUERY_PROPERTY`), so a
/// state file can tell one disk from another that took its number. `None`
/// for a file, or a disk that reports none.
pub fn disk_serial(id: &DeviceId) -> Option<String> {
    let DeviceId::Block { disk, .. } = *id else {
        return None;
    };
    // Access 0: metadata and ioctls only, no rights to the data needed.
    let drive = std::fs::OpenOptions::new()
        .access_mode(0)
        .share_mode(FILE_SHARE_READ.0 | FILE_SHARE_WRITE.0)
        .open(format!(r"\\.\PhysicalDrive{disk}"))
        .ok()?;
    let query = STORAGE_PROPERTY_QUERY {
        PropertyId: StorageDeviceProperty,
        QueryType: PropertyStandardQuery,
        ..Default::default()
    };
    /// The descriptor and the strings the offsets in it point into.
    #[repr(C)]
    struct Descriptor {
        head: STORAGE_DEVICE_DESCRIPTOR,
        strings: [u8; 1024],
    }
    let mut out = Descriptor { head: STORAGE_DEVICE_DESCRIPTOR::default(), strings: [0; 1024] };
    let written = ioctl(&drive, IOCTL_STORAGE_QUERY_PROPERTY, &query, &mut out).ok()? as usize;
    // SAFETY: `out` is initialised plain data of `size_of::<Descriptor>()`
    // bytes; the view covers no more than that.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            (&raw const out).cast::<u8>(),
            written.min(size_of::<Descriptor>()),
        )
    };
    nul_terminated_at(bytes, out.head.SerialNumberOffset as usize)
}

/// The NUL-terminated text at `offset` of `bytes`, trimmed; `None` for
/// offset 0 (the descriptor's "none"), past the end, or empty.
fn nul_terminated_at(bytes: &[u8], offset: usize) -> Option<String> {
    let text = bytes.get(offset..).filter(|_| offset > 0)?;
    let end = text.iter().position(|b| *b == 0).unwrap_or(text.len());
    let text = String::from_utf8_lossy(&text[..end]).trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// Windows keeps a volume's cache coherent with its filesystem's writes:
/// nothing to drop.
pub fn drop_cached(_file: &File, _offset: u64, _len: u64) -> io::Result<()> {
    Ok(())
}

/// Windows has no call saying which pages of a file its cache holds.
pub fn cached_bytes(_file: &File, _offset: u64, _len: u64) -> io::Result<u64> {
    Err(io::ErrorKind::Unsupported.into())
}

pub fn read_exact_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match file.seek_read(buf, offset) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

pub fn write_all_at(file: &File, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match file.seek_write(buf, offset) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                buf = &buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Zeroes a range of a file with `FSCTL_SET_ZERO_DATA` (which frees the
/// space in a sparse file and writes zeroes in any other). `Ok(false)` for
/// disks and filesystems without it: the caller writes zeroes.
pub fn zero_range(
    file: &File,
    is_block: bool,
    offset: u64,
    len: u64,
    _may_unmap: bool,
) -> io::Result<bool> {
    if is_block {
        return Ok(false);
    }
    let range = FILE_ZERO_DATA_INFORMATION {
        FileOffset: offset as i64,
        BeyondFinalZero: (offset + len) as i64,
    };
    match ioctl(file, FSCTL_SET_ZERO_DATA, &range, &mut ()) {
        Ok(_) => Ok(true),
        Err(e) if unsupported(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Discard is only a hint, and Windows has no cheap way to give one for a
/// plain file (TRIM reaches disks through the filesystem), so nothing is done.
pub fn discard_range(_file: &File, _is_block: bool, _offset: u64, _len: u64) -> io::Result<()> {
    Ok(())
}

/// Marks a new image file sparse, so that extending it allocates nothing
/// and zeroing a range frees it, as on Linux. Filesystems without sparse
/// files (FAT) keep a plain file.
pub fn make_sparse(file: &File) -> io::Result<()> {
    match ioctl(file, FSCTL_SET_SPARSE, &(), &mut ()) {
        Err(e) if !unsupported(&e) => Err(e),
        _ => Ok(()),
    }
}

/// Allocation of a regular file at `offset` up to `limit`, from the first
/// allocated range NTFS reports in `offset..limit`. Filesystems that cannot
/// tell report everything as data.
pub fn allocation(file: &File, offset: u64, limit: u64) -> io::Result<(Allocation, u64)> {
    let query =
        FILE_ALLOCATED_RANGE_BUFFER { FileOffset: offset as i64, Length: (limit - offset) as i64 };
    let mut first = FILE_ALLOCATED_RANGE_BUFFER::default();
    let returned = match ioctl(file, FSCTL_QUERY_ALLOCATED_RANGES, &query, &mut first) {
        Ok(n) => n as usize,
        // More ranges follow; the first one, all we asked for, is filled in.
        Err(e) if e.raw_os_error() == Some(ERROR_MORE_DATA.0 as i32) => size_of_val(&first),
        Err(e) if unsupported(&e) => return Ok((Allocation::Data, limit - offset)),
        Err(e) => return Err(e),
    };
    if returned < size_of_val(&first) {
        return Ok((Allocation::Hole, limit - offset));
    }
    let (start, end) = (first.FileOffset as u64, (first.FileOffset + first.Length) as u64);
    if start <= offset {
        Ok((Allocation::Data, end.clamp(offset + 1, limit) - offset))
    } else {
        Ok((Allocation::Hole, start.min(limit) - offset))
    }
}

/// Opens `path` with `FILE_FLAG_NO_BUFFERING`. Windows asks for sector
/// alignment of memory, offset and length; a page covers every sector size.
pub fn open_direct(
    path: &Path,
    write: bool,
    logical_block_size: u32,
) -> Option<(File, usize, u64)> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(FILE_FLAG_NO_BUFFERING.0)
        .open(path)
        .ok()?;
    let align = u64::from(logical_block_size).max(crate::buffer::ALIGN as u64);
    Some((file, crate::buffer::ALIGN.max(align as usize), align))
}

/// Mount paths (`C:\`, `D:\Data\`) of volumes with an extent on the disk
/// range `id`. Empty for files and memory devices.
pub fn mounts_on(id: &DeviceId) -> Vec<String> {
    let DeviceId::Block { disk, start, len, .. } = *id else {
        return Vec::new();
    };
    let mut found = Vec::new();
    let mut name = [0u16; 260];
    // SAFETY: `name` is a writable buffer of the length the call is given.
    let Ok(search) = (unsafe { FindFirstVolumeW(&mut name) }) else {
        return found;
    };
    loop {
        let volume = from_wide(&name);
        let on_disk = volume_extents(&volume).iter().any(|e| {
            let (s, l) = (e.StartingOffset as u64, e.ExtentLength as u64);
            u64::from(e.DiskNumber) == disk && s < start + len && start < s + l
        });
        if on_disk {
            found.extend(mount_paths(&name));
        }
        // SAFETY: as above, with the search handle FindFirstVolumeW returned.
        if unsafe { FindNextVolumeW(search, &mut name) }.is_err() {
            break;
        }
    }
    // SAFETY: the search handle is closed once, here.
    if let Err(e) = unsafe { FindVolumeClose(search) } {
        // A leaked search handle costs nothing the list needs.
        tracing::debug!(error = %e, "FindVolumeClose failed");
    }
    found
}

/// The disk extents of a volume (`\\?\Volume{…}\`), or none if it cannot
/// be asked (no media, access denied).
fn volume_extents(volume: &str) -> Vec<DISK_EXTENT> {
    // Opening the volume itself needs the name without its trailing
    // backslash; access 0 asks for nothing but metadata and ioctls.
    std::fs::OpenOptions::new()
        .access_mode(0)
        .share_mode(FILE_SHARE_READ.0 | FILE_SHARE_WRITE.0)
        .open(volume.trim_end_matches('\\'))
        .and_then(|handle| extents(&handle))
        .unwrap_or_default()
}

/// The disk extents of an open volume.
fn extents(volume: &File) -> io::Result<Vec<DISK_EXTENT>> {
    /// Room for volumes spanning several disks.
    #[repr(C)]
    #[derive(Default)]
    struct Extents {
        head: VOLUME_DISK_EXTENTS,
        more: [DISK_EXTENT; 15],
    }
    let mut extents = Extents::default();
    ioctl(volume, IOCTL_VOLUME_GET_VOLUME_DISK_EXTENTS, &(), &mut extents)?;
    let n = (extents.head.NumberOfDiskExtents as usize).min(1 + extents.more.len());
    Ok(std::iter::once(extents.head.Extents[0]).chain(extents.more).take(n).collect())
}

/// Where a volume is mounted: drive letters and folders.
fn mount_paths(volume: &[u16]) -> Vec<String> {
    let mut paths = [0u16; 1024];
    let mut needed = 0u32;
    // SAFETY: `volume` is NUL-terminated (it came from FindFirst/NextVolumeW)
    // and `paths` is a writable buffer of the length the call is given.
    let listed = unsafe {
        GetVolumePathNamesForVolumeNameW(PCWSTR(volume.as_ptr()), Some(&mut paths), &mut needed)
    };
    if listed.is_err() {
        return Vec::new();
    }
    // A list of NUL-terminated strings, ended by an empty one.
    paths.split(|c| *c == 0).take_while(|s| !s.is_empty()).map(String::from_utf16_lossy).collect()
}

/// `DeviceIoControl` with fixed-size input and output (`()` for none);
/// returns the bytes written to `output`. Public for the app's disk list.
pub fn ioctl<I, O>(file: &File, code: u32, input: &I, output: &mut O) -> io::Result<u32> {
    let mut returned = 0u32;
    let (in_len, out_len) = (size_of::<I>() as u32, size_of::<O>() as u32);
    // SAFETY: both buffers live across the call, their lengths are their
    // sizes, and the call is synchronous (no OVERLAPPED).
    unsafe {
        DeviceIoControl(
            handle(file),
            code,
            (in_len > 0).then_some(input as *const I as *const c_void),
            in_len,
            (out_len > 0).then_some(output as *mut O as *mut c_void),
            out_len,
            Some(&mut returned),
            None,
        )
    }
    .map_err(os_error)?;
    Ok(returned)
}

/// The Win32 error inside a `windows` error: its `HRESULT` wraps the code
/// as `0x8007xxxx`, and `io::Error` (its kind, its `raw_os_error`) speaks
/// the bare code.
fn os_error(e: windows::core::Error) -> io::Error {
    let hr = e.code().0 as u32;
    if hr & 0xFFFF_0000 == 0x8007_0000 {
        io::Error::from_raw_os_error((hr & 0xFFFF) as i32)
    } else {
        io::Error::other(e)
    }
}

fn handle(file: &File) -> HANDLE {
    HANDLE(file.as_raw_handle())
}

fn from_wide(s: &[u16]) -> String {
    String::from_utf16_lossy(&s[..s.iter().position(|c| *c == 0).unwrap_or(s.len())])
}

/// Errors that mean "this filesystem or device can't do that".
fn unsupported(e: &io::Error) -> bool {
    let codes = [ERROR_INVALID_FUNCTION, ERROR_NOT_SUPPORTED, ERROR_INVALID_PARAMETER];
    codes.iter().any(|c| e.raw_os_error() == Some(c.0 as i32))
}
