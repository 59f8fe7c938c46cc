//! What livemirror's tests share, in one crate: the engine's unit and
//! integration tests, the app's and the end-to-end crate's.
//!
//! * this file: the test pattern.
//! * [`layering`]: one-way module dependencies, checked as a test.
//! * [`job`]: a mirror job over memory devices, awaited event by event.
//! * [`control`]: a client for livemirror's control socket.
//! * [`tools`]: run the external tools; a missing tool fails the test with
//!   the package to install, never skips it.
//! * [`disk`]: partitioned images (sgdisk, sfdisk, ext4 with files) and
//!   their judges (sgdisk -v, sfdisk --verify, fsck.ext4 -n, cmp).
//! * [`image`]: raw image files with known content, `qemu-img compare`,
//!   what a file allocates.
//! * [`mirror`]: a mirror job over image files, driven synchronously.
//! * [`server`]: an NBD export on a unix socket, served from a runtime.
//! * [`listening`]: waiting until a server listens (unix socket, TCP).
//! * [`daemon`]: other people's NBD servers (nbdkit, qemu-nbd) as child
//!   processes on a unix socket, to be killed and restarted.
//! * [`system`]: loop devices, partitions, mounted ext4 and a writer of
//!   fsynced files on it, for the kernel tracking tests (Linux, root).
//! * [`nbd_options`]: the data of NBD options, encoded.
//! * [`raw`]: a minimal NBD client for what the tools cannot do (malformed
//!   traffic, one connection kept open across a pivot).
//!
//! The engine's Windows unit tests build this crate too: what needs unix
//! (sockets, image files, the tools) is `cfg(unix)`.

#[cfg(unix)]
pub mod control;
#[cfg(unix)]
pub mod daemon;
#[cfg(unix)]
pub mod disk;
#[cfg(unix)]
pub mod image;
pub mod job;
pub mod layering;
#[cfg(unix)]
pub mod listening;
#[cfg(unix)]
pub mod mirror;
pub mod nbd_options;
#[cfg(unix)]
pub mod raw;
#[cfg(unix)]
pub mod server;
#[cfg(target_os = "linux")]
pub mod system;
#[cfg(unix)]
pub mod tools;

/// Deterministic, non-repeating bytes (xorshift): a lost or misplaced
/// block shows. The one generator of every test.
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
