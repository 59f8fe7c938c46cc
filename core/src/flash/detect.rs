//! Which compressed format a file is in, by its first bytes: a name can
//! lie (an `.img` that is really `.img.xz`), magic bytes do not.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// A compressed disk image format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Xz,
    Zstd,
    Gzip,
    Bzip2,
    /// A zip archive holding one image file.
    Zip,
}

impl Compression {
    /// The format the file at `path` starts like, if any. Only a readable
    /// regular file can be compressed: a disk is read as it is.
    pub fn of_file(path: &Path) -> Option<Compression> {
        if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
            return None;
        }
        let mut head = [0u8; 6];
        let n = read_up_to(File::open(path).ok()?, &mut head).ok()?;
        Compression::of_magic(&head[..n])
    }

    /// The format whose magic `head` (a file's first bytes) starts with.
    pub fn of_magic(head: &[u8]) -> Option<Compression> {
        let formats: [(&[u8], Compression); 5] = [
            (b"\xFD7zXZ\x00", Compression::Xz),
            (b"\x28\xB5\x2F\xFD", Compression::Zstd),
            (b"\x1F\x8B", Compression::Gzip),
            (b"PK\x03\x04", Compression::Zip),
            (b"BZh", Compression::Bzip2),
        ];
        let (_, format) = formats.into_iter().find(|(magic, _)| head.starts_with(magic))?;
        // "BZh" is followed by the block size digit; without it, it is text.
        if format == Compression::Bzip2 && !head.get(3).is_some_and(|d| (b'1'..=b'9').contains(d)) {
            return None;
        }
        Some(format)
    }

    /// True when the decoder uses more than one thread (xz's blocks).
    pub fn multithreaded(self) -> bool {
        self == Compression::Xz
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
            Compression::Gzip => "gzip",
            Compression::Bzip2 => "bzip2",
            Compression::Zip => "zip",
        })
    }
}

/// Reads until `buf` is full or the file ends; returns how much was read.
fn read_up_to(mut file: File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes_decide_and_near_misses_do_not() {
        assert_eq!(Compression::of_magic(b"\xFD7zXZ\x00\x00"), Some(Compression::Xz));
        assert_eq!(Compression::of_magic(b"\x28\xB5\x2F\xFD\x24"), Some(Compression::Zstd));
        assert_eq!(Compression::of_magic(b"\x1F\x8B\x08"), Some(Compression::Gzip));
        assert_eq!(Compression::of_magic(b"BZh9"), Some(Compression::Bzip2));
        assert_eq!(Compression::of_magic(b"PK\x03\x04"), Some(Compression::Zip));
        assert_eq!(Compression::of_magic(b"BZhello"), None);
        assert_eq!(Compression::of_magic(b"PK\x05\x06"), None, "an empty zip holds no image");
        assert_eq!(Compression::of_magic(b"\xFD7zXZ"), None);
        assert_eq!(Compression::of_magic(b"QFI\xfb"), None);
        assert_eq!(Compression::of_magic(&[0; 6]), None);
    }

    #[test]
    fn only_regular_files_are_looked_into() {
        let dir = tempfile::tempdir().unwrap();
        let named_wrong = dir.path().join("disk.img");
        std::fs::write(&named_wrong, b"\x1F\x8B\x08\x00").unwrap();
        assert_eq!(Compression::of_file(&named_wrong), Some(Compression::Gzip));
        let short = dir.path().join("short.xz");
        std::fs::write(&short, b"\xFD").unwrap();
        assert_eq!(Compression::of_file(&short), None);
        assert_eq!(Compression::of_file(dir.path()), None);
        assert_eq!(Compression::of_file(&dir.path().join("missing")), None);
    }
}
