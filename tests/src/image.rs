//! Raw image files with known content.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Creates a sparse raw image of `size` bytes (all holes).
pub fn sparse(dir: &Path, name: &str, size: u64) -> PathBuf {
    let path = dir.join(name);
    crate::sparse_image(&path, size, &[]);
    path
}

/// Writes `len` bytes of `byte` at `offset`.
pub fn fill(path: &Path, offset: u64, len: usize, byte: u8) {
    let f = OpenOptions::new().write(true).open(path).expect("open image");
    f.write_all_at(&vec![byte; len], offset).expect("write image");
}

/// Reads `len` bytes at `offset`.
pub fn read(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    File::open(path).expect("open image").read_exact_at(&mut buf, offset).expect("read image");
    buf
}

/// A sparse image with 256 KiB of pattern data at three places, holes
/// between.
pub fn patterned(dir: &Path, name: &str, size: u64) -> PathBuf {
    let path = dir.join(name);
    let step = size / 8;
    let extents: Vec<_> = [1, 3, 5].map(|i| (i * step, 256 << 10)).to_vec();
    crate::sparse_image(&path, size, &extents);
    path
}

/// An image with data everywhere (each MiB its own byte), so a mirror has
/// every byte to copy.
pub fn full(dir: &Path, name: &str, size: u64) -> PathBuf {
    let path = sparse(dir, name, size);
    for mib in 0..size.div_ceil(1 << 20) {
        let len = (size - (mib << 20)).min(1 << 20) as usize;
        fill(&path, mib << 20, len, 0x40 + (mib % 64) as u8);
    }
    path
}
