//! livemirror's engine: clone a block device onto another while the source
//! is being written, with the semantics of QEMU's block mirror job.
//!
//! The modules stand on floors; each names only modules below it (checked
//! by `tests/layering.rs`):
//!
//! 5. [`job`]: the mirror job, its events and handle.
//! 4. [`live`]: [`LiveSource`](live::LiveSource), the tracked write path to
//!    the source that pivots to the target on Complete, and the
//!    [`Tracker`](live::Tracker) it shares with the job; [`persist`]: a
//!    job's state on disk, so a rerun resumes it.
//! 3. [`options`]: what a job is asked to do; [`partition`]: partition
//!    tables (GPT, MBR), whether a target of another size can take the
//!    source, and the table fix-up afterwards; [`verify`]: compare a copy
//!    with its source, range by range, and repair what differs; [`nbd`]:
//!    the NBD server that exports a device (in practice a live source) to
//!    clients; [`flash`]: writing a compressed image (xz, zstd, gzip,
//!    bzip2, zip) onto a target as a stream, verified by a read-back hash;
//!    `kernel` (Linux): the BPF write tracker and filesystem freezing for
//!    sources livemirror does not front.
//! 2. [`device`]: the [`BlockDevice`](device::BlockDevice) trait and its
//!    backends (files and disks, qcow2, memory, fault injection, the NBD
//!    client).
//! 1. [`error`]: the engine's error types.
//! 0. [`state`]: the job's lifecycle; [`nbd_proto`]: the NBD protocol's
//!    numbers (server and client); [`runtime`]: the one tokio runtime
//!    builder; [`bitmap`], [`chunkmap`], [`buffer`], [`ratelimit`],
//!    [`units`]: building blocks.

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
pub mod nbd_proto;
pub mod options;
pub mod partition;
pub mod persist;
pub mod ratelimit;
pub mod runtime;
pub mod state;
pub mod units;
pub mod verify;

pub use error::{BadOption, Error, IoFailure, IoOperation, Side, TrackingLoss, Untrackable};
