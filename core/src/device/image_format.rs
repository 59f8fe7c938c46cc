//! Which format an image file holds its disk in, from its content or, for
//! a file about to be made, its name.

use std::path::Path;

use super::qcow2::is_qcow2;

/// How a file or disk stores the disk it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// Byte for byte: a disk, a partition, a `.img`.
    Raw,
    /// QEMU's copy-on-write format, possibly over a backing file.
    Qcow2,
}

impl ImageFormat {
    /// The format of the existing file at `path`, by its magic. Only a
    /// readable regular file can be anything but raw: a disk is read as
    /// it is, and a file that cannot be read here is left for the raw
    /// opener to report (or to ask udisks2 for).
    pub fn of_file(path: &Path) -> ImageFormat {
        let regular = std::fs::metadata(path).is_ok_and(|m| m.is_file());
        if regular && is_qcow2(path).unwrap_or(false) {
            ImageFormat::Qcow2
        } else {
            ImageFormat::Raw
        }
    }

    /// The format a new file named `path` is made in: qcow2 when the name
    /// ends `.qcow2`, else raw.
    pub fn of_new_name(path: &Path) -> ImageFormat {
        let qcow2 = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("qcow2"));
        if qcow2 { ImageFormat::Qcow2 } else { ImageFormat::Raw }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_decides_for_files_and_the_name_for_new_ones() {
        let dir = tempfile::tempdir().unwrap();
        let named_qcow2_but_raw = dir.path().join("raw.qcow2");
        std::fs::write(&named_qcow2_but_raw, [0u8; 512]).unwrap();
        assert_eq!(ImageFormat::of_file(&named_qcow2_but_raw), ImageFormat::Raw);
        let qcow2 = dir.path().join("disk.img");
        crate::device::Qcow2Device::create(&qcow2, 1 << 20, None).unwrap();
        assert_eq!(ImageFormat::of_file(&qcow2), ImageFormat::Qcow2);
        assert_eq!(ImageFormat::of_file(&dir.path().join("missing")), ImageFormat::Raw);
        assert_eq!(ImageFormat::of_file(dir.path()), ImageFormat::Raw);

        assert_eq!(ImageFormat::of_new_name(Path::new("a/new.QCOW2")), ImageFormat::Qcow2);
        assert_eq!(ImageFormat::of_new_name(Path::new("new.img")), ImageFormat::Raw);
        assert_eq!(ImageFormat::of_new_name(Path::new("qcow2")), ImageFormat::Raw);
    }
}
