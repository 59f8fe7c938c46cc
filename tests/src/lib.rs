//! Helpers for the end-to-end tests: real image files, real clients
//! (qemu-io, qemu-img, nbdinfo) and the real tools that judge them
//! (`qemu-img compare`, `stat`).
//!
//! * this file: patterns, `qemu-img compare`, allocation of image files.
//! * [`control`]: a client for livemirror's control socket.
//! * [`tools`]: run the external tools; a missing tool fails the test with
//!   the package to install, never skips it.
//! * [`disk`]: partitioned images (sgdisk, sfdisk, ext4 with files) and
//!   their judges (sgdisk -v, sfdisk --verify, fsck.ext4 -n, cmp).
//! * [`image`]: raw image files with known content, by name in a directory.
//! * [`mirror`]: a mirror job over image files, driven synchronously.
//! * [`server`]: an NBD export on a unix socket, served from a runtime.
//! * [`daemon`]: other people's NBD servers (nbdkit, qemu-nbd) as child
//!   processes on a unix socket, to be killed and restarted.
//! * [`system`]: loop devices, partitions, mounted ext4 and a writer of
//!   fsynced files on it, for the kernel tracking tests (Linux, root).
//! * [`raw`]: a minimal NBD client for what the tools cannot do (malformed
//!   traffic, one connection kept open across a pivot).

pub mod control;
pub mod daemon;
pub mod disk;
pub mod image;
pub mod mirror;
pub mod raw;
pub mod server;
#[cfg(target_os = "linux")]
pub mod system;
pub mod tools;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

/// Deterministic pseudo-random bytes (xorshift): a misplaced block shows.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes()[..(len - out.len()).min(8)]);
    }
    out
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
    use livemirror_core::device::{Allocation, BlockDevice, OpenOptions};
    let dev = OpenOptions::new().open(path).expect("open image");
    let (mut pos, mut data) = (0, 0);
    while pos < dev.len() {
        let (alloc, run) = dev.block_status(pos, dev.len() - pos).expect("block status");
        if alloc == Allocation::Data {
            data += run;
        }
        pos += run;
    }
    data
}

/// Creates a sparse file of `size` bytes with pattern data written in the
/// given `(offset, len)` extents and holes everywhere else.
pub fn sparse_image(path: &Path, size: u64, extents: &[(u64, u64)]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::create(path).expect("create image");
    f.set_len(size).expect("size image");
    for (i, &(off, len)) in extents.iter().enumerate() {
        f.write_all_at(&pattern(len as usize, i as u64 + 1), off).expect("write extent");
    }
}
