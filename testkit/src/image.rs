//! Raw image files with known content, and what judges them: `qemu-img
//! compare`, the blocks a file allocates.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::pattern;

/// Creates a sparse raw image of `size` bytes (all holes).
pub fn sparse(dir: &Path, name: &str, size: u64) -> PathBuf {
    let path = dir.join(name);
    sparse_image(&path, size, &[]);
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
    sparse_image(&path, size, &extents);
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

/// Runs `qemu-img compare` on two raw images and returns whether it says
/// they are identical. Panics with its output if it could not run.
pub fn qemu_img_identical(a: &Path, b: &Path) -> bool {
    let out = Command::new("qemu-img")
        .args(["compare", "-f", "raw", "-F", "raw"])
        .arg(a)
        .arg(b)
        .output()
        .expect("qemu-img must be installed (package qemu-utils)");
    let text = String::from_utf8_lossy(&out.stdout);
    match out.status.code() {
        Some(0) => {
            assert!(text.contains("Images are identical"), "{text}");
            true
        }
        Some(1) => false,
        _ => panic!("qemu-img compare failed: {text}{}", String::from_utf8_lossy(&out.stderr)),
    }
}

/// Bytes a file really occupies on disk (`stat` blocks × 512).
pub fn allocated_bytes(path: &Path) -> u64 {
    std::fs::metadata(path).expect("stat").blocks() * 512
}

/// Bytes of a file that hold data, from SEEK_DATA/SEEK_HOLE: what
/// `allocated_bytes` counts minus the filesystem's own metadata.
pub fn data_bytes(path: &Path) -> u64 {
    use livemirror_core::device::{Allocation, BlockDevice, OpenOptions, extents};
    let dev = OpenOptions::new().open(path).expect("open image");
    let runs = extents(&dev, 0..dev.len()).map(|run| run.expect("block status"));
    runs.filter(|run| run.status == Allocation::Data).map(|run| run.len).sum()
}

/// Creates a sparse file of `size` bytes with pattern data written in the
/// given `(offset, len)` extents and holes everywhere else.
pub fn sparse_image(path: &Path, size: u64, extents: &[(u64, u64)]) {
    let f = std::fs::File::create(path).expect("create image");
    f.set_len(size).expect("size image");
    for (i, &(off, len)) in extents.iter().enumerate() {
        f.write_all_at(&pattern(len as usize, i as u64 + 1), off).expect("write extent");
    }
}
