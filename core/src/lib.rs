//! livemirror's engine: clone a block device onto another while the source
//! is being written, with the semantics of QEMU's block mirror job.
//!
//! * [`device`]: the [`BlockDevice`](device::BlockDevice) trait and its
//!   backends (files and disks, memory, fault injection).
//! * [`live`]: [`LiveSource`](live::LiveSource), the tracked write path to
//!   the source that pivots to the target on Complete.
//! * [`job`]: the mirror job, its options, events and handle.
//! * [`nbd`]: the NBD server that exports a live source to clients.
//! * `kernel` (Linux): the BPF write tracker and filesystem freezing for
//!   sources livemirror does not front.
//! * [`flash`]: writing a compressed image (xz, zstd, gzip, bzip2, zip)
//!   onto a target as a stream, verified by a read-back hash.
//! * [`partition`]: partition tables (GPT, MBR): whether a target of
//!   another size can take the source, and the table fix-up afterwards.
//! * [`persist`]: a job's state on disk, so a rerun resumes it.
//! * [`verify`]: compare a copy with its source, range by range, and
//!   repair what differs.
//! * [`bitmap`], [`chunkmap`], [`ratelimit`], [`buffer`]: the job's building
//!   blocks.

pub mod bitmap;
pub mod buffer;
pub mod chunkmap;
pub mod device;
pub mod error;
pub mod flash;
pub mod job;
#[cfg(target_os = "linux")]
pub mod kernel;
pub mod live;
pub mod nbd;
pub mod partition;
pub mod persist;
pub mod ratelimit;
#[cfg(test)]
mod testing;
pub mod units;
pub mod verify;

pub use error::{Error, IoFailure, IoOperation, Side};
