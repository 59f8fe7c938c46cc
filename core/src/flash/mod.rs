//! Writing a compressed disk image (`.img.xz`, `.zst`, `.gz`, `.bz2`, a
//! `.zip` of one image) onto a target: what OS-image flashers do.
//!
//! Such a source is a stream, not a disk: it cannot be read at random, so
//! there is no mirror job, no live tracking, nothing to re-copy. One thread
//! decompresses (xz with liblzma's multithreaded decoder) into large
//! buffers, a bounded channel hands them to the writer, which hashes them
//! (XXH3-128) on the way and writes data, skipping or zeroing all-zero
//! runs, then hands each buffer back to be filled again. A new image file
//! is written behind (writeback started at once, a bounded window cached). At the end the target is flushed and read back, uncached, and its
//! hash must equal the stream's: only then is it called identical.
//!
//! Every format checks its own data (xz and bzip2 per block or stream,
//! gzip and zip a CRC-32, zstd its content checksum when the file has one),
//! so a corrupt or truncated archive fails the decoder with a clear error
//! and nothing is claimed.
//!
//! [`pack_zstd`] and [`pack_qcow2`] go the other way: a disk into a new
//! `.img.zst`, or a new qcow2 of compressed clusters.

mod decode;
mod detect;
mod pack;
mod qcow2_out;

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;

use xxhash_rust::xxh3::Xxh3Default;

pub use detect::Compression;
pub use pack::pack_zstd;
pub use qcow2_out::pack_qcow2;

use crate::buffer::is_zero;
use crate::device::{BlockDevice, OpenOptions};
use crate::units::human;

/// Why a flash failed. Whatever was written before is not a copy of
/// anything, and is never called one.
#[derive(Debug, thiserror::Error)]
pub enum FlashError {
    #[error("cannot read {}: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("the {format} image is corrupt or truncated: {source}")]
    Corrupt { format: Compression, source: io::Error },
    /// Boxed: the zip crate's error is large, and a flash's result is
    /// passed around by value.
    #[error("zip archive: {0}")]
    Zip(#[source] Box<zip::result::ZipError>),
    #[error("zip archive: the archive holds no file")]
    EmptyArchive,
    /// An archive of several files is refused rather than guessed at.
    #[error(
        "zip archive: the archive holds {count} files ({}); livemirror writes an archive of one image only",
        names.join(", ")
    )]
    SeveralFiles { count: usize, names: Box<[String]> },
    #[error("target: {0}")]
    TargetOpen(#[source] crate::Error),
    #[error("the image declares {} uncompressed, more than the target's {}", human(*declared), human(*target))]
    TooSmall { declared: u64, target: u64 },
    #[error("the image is larger than the target: its {} are full and more data arrived", human(*target))]
    TooLarge { target: u64 },
    #[error("target: {operation} at byte {offset}: {source}")]
    Target { operation: &'static str, offset: u64, source: io::Error },
    #[error(
        "verification failed: the target read back ({}) differs from the decompressed image",
        human(*len)
    )]
    Mismatch { len: u64 },
    #[error("cancelled after {} written: the target holds part of the image", human(*written))]
    Cancelled { written: u64 },
    /// The image is written and verified, but the partition table in it
    /// could not be made right for the larger target.
    #[error(
        "the image is written and verified, but its partition table could not be fixed for the target's size: {0}"
    )]
    Table(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<zip::result::ZipError> for FlashError {
    fn from(e: zip::result::ZipError) -> Self {
        FlashError::Zip(Box::new(e))
    }
}

/// Where the image goes.
pub enum Target {
    /// An existing disk, image file or export, written from its first byte;
    /// what lies past the image is left as it is.
    Device(Arc<dyn BlockDevice>),
    /// A new sparse raw image file, made here and grown as data arrives
    /// (the size of most compressed formats is known only at their end).
    NewFile(PathBuf),
}

/// How far a flash is; reported after every buffer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    /// Compressed bytes read, of `compressed_len`.
    pub compressed_read: u64,
    pub compressed_len: u64,
    /// Uncompressed bytes written to the target.
    pub written: u64,
    /// The uncompressed size, where the format declares it.
    pub declared_len: Option<u64>,
    /// Bytes of the target read back and hashed, once writing is done.
    pub verified: u64,
}

/// A finished flash: the image's size and the hash both the stream and the
/// target read back have.
#[derive(Debug, Clone, Copy)]
pub struct Flashed {
    pub len: u64,
    pub compressed_len: u64,
    pub hash: u128,
}

/// Buffers between the decoder and the writer (queued, being written, or
/// back for the decoder): memory stays at this many and one times
/// [`decode::BUF`], whatever the image's size.
const IN_FLIGHT: usize = 4;

/// The zero-skipping unit: a run of zeroes this long and aligned is a hole
/// (new file) or a zero-write (existing target), not data.
const ZERO_UNIT: usize = 64 << 10;

/// Decompresses `source` (in `format`) onto `target`, then verifies it.
/// `cancel` is checked between buffers.
pub fn flash(
    source: &Path,
    format: Compression,
    target: Target,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Flashed, FlashError> {
    let compressed_len = std::fs::metadata(source)
        .map_err(|source_err| FlashError::Open { path: source.into(), source: source_err })?
        .len();
    let declared_len = decode::declared_len(source, format)?;
    let mut sink = Sink::open(target, declared_len)?;
    let read = Arc::new(AtomicU64::new(0));
    let mut state = Progress { compressed_len, declared_len, ..Progress::default() };
    let mut hasher = Xxh3Default::new();

    let (full_tx, full_rx) = mpsc::sync_channel::<Vec<u8>>(IN_FLIGHT);
    // Buffers written, back for the decoder to fill: the decoder's own and
    // these are all there are, reused, never one allocated per piece.
    let (free_tx, free_rx) = mpsc::sync_channel::<Vec<u8>>(IN_FLIGHT + 1);
    for _ in 0..IN_FLIGHT {
        free_tx.send(Vec::new()).expect("the receiver is here");
    }
    let decoded = std::thread::scope(|s| {
        let decoder = {
            let read = read.clone();
            s.spawn(move || {
                decode::decode(source, format, read, &mut |buf| {
                    full_tx.send(buf).ok()?;
                    free_rx.recv().ok()
                })
            })
        };
        let written = (|| {
            for buf in full_rx.iter() {
                if cancel.load(Ordering::Relaxed) {
                    return Err(FlashError::Cancelled { written: state.written });
                }
                hasher.update(&buf);
                sink.write(&buf, state.written)?;
                state.written += buf.len() as u64;
                state.compressed_read = read.load(Ordering::Relaxed);
                progress(&state);
                // Back for the decoder to fill again; gone only if it ended.
                let _ = free_tx.send(buf);
            }
            Ok(())
        })();
        // The writer gave up: the decoder's next send or wait for a buffer
        // fails and it stops.
        drop((full_rx, free_tx));
        let decoded = decoder.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
        // A decoder error explains a short stream better than what followed.
        decoded.and(written)
    });
    decoded?;
    let len = state.written;
    let device = sink.finish(len)?;
    let hash = hasher.digest128();
    state.compressed_read = read.load(Ordering::Relaxed);
    if read_back_hash(&*device, len, cancel, &mut |n| {
        state.verified = n;
        progress(&state);
    })? != hash
    {
        return Err(FlashError::Mismatch { len });
    }
    Ok(Flashed { len, compressed_len, hash })
}

/// The target while it is written.
enum Sink {
    Device(Arc<dyn BlockDevice>),
    /// On Linux the file is written behind: each write's writeback starts
    /// at once and a bounded window of it stays cached, so the disk works
    /// while the decoder does, the final flush is short, and the read-back
    /// finds nothing of the image left in the cache.
    NewFile {
        file: File,
        path: PathBuf,
        #[cfg(target_os = "linux")]
        behind: crate::device::WriteBehind,
    },
}

impl Sink {
    fn open(target: Target, declared_len: Option<u64>) -> Result<Sink, FlashError> {
        match target {
            Target::Device(dev) => {
                if let Some(declared) = declared_len.filter(|d| *d > dev.len()) {
                    return Err(FlashError::TooSmall { declared, target: dev.len() });
                }
                Ok(Sink::Device(dev))
            }
            Target::NewFile(path) => {
                // A zero-length sparse image, made the way every new image is.
                drop(OpenOptions::new().create(&path, 0).map_err(FlashError::TargetOpen)?);
                let file =
                    std::fs::OpenOptions::new().write(true).open(&path).map_err(|source| {
                        FlashError::TargetOpen(crate::Error::Open { path: path.clone(), source })
                    })?;
                Ok(Sink::NewFile {
                    file,
                    path,
                    #[cfg(target_os = "linux")]
                    behind: crate::device::WriteBehind::new(),
                })
            }
        }
    }

    /// Writes `buf`, the image's bytes at `at`: data as data; an all-zero
    /// unit as a hole in a new file, as a zero-write on an existing target
    /// (which may hold old data).
    fn write(&mut self, buf: &[u8], at: u64) -> Result<(), FlashError> {
        if let Sink::Device(dev) = self
            && at + buf.len() as u64 > dev.len()
        {
            return Err(FlashError::TooLarge { target: dev.len() });
        }
        let mut start = 0;
        while start < buf.len() {
            let zero = is_zero(&buf[start..(start + ZERO_UNIT).min(buf.len())]);
            let mut end = start;
            while end < buf.len() && is_zero(&buf[end..(end + ZERO_UNIT).min(buf.len())]) == zero {
                end = (end + ZERO_UNIT).min(buf.len());
            }
            self.put(&buf[start..end], at + start as u64, zero)?;
            start = end;
        }
        Ok(())
    }

    fn put(&mut self, data: &[u8], at: u64, zero: bool) -> Result<(), FlashError> {
        let len = data.len() as u64;
        let fail = |operation, source| FlashError::Target { operation, offset: at, source };
        match self {
            Sink::Device(dev) if zero => {
                dev.write_zeroes(at, len, true).map_err(|e| fail("write zeroes", e))
            }
            Sink::Device(dev) => dev.write_at(data, at).map_err(|e| fail("write", e)),
            // A hole: nothing to write.
            Sink::NewFile { .. } if zero => Ok(()),
            #[cfg(target_os = "linux")]
            Sink::NewFile { file, behind, .. } => {
                behind.write_all_at(file, data, at).map_err(|e| fail("write", e))
            }
            #[cfg(not(target_os = "linux"))]
            Sink::NewFile { file, .. } => {
                crate::device::write_all_at(file, data, at).map_err(|e| fail("write", e))
            }
        }
    }

    /// Makes the `len` bytes written durable, and returns the target as a
    /// device to read them back from.
    fn finish(self, len: u64) -> Result<Arc<dyn BlockDevice>, FlashError> {
        let fail = |operation, source| FlashError::Target { operation, offset: len, source };
        match self {
            Sink::Device(dev) => {
                dev.flush().map_err(|e| fail("flush", e))?;
                Ok(dev)
            }
            Sink::NewFile {
                file,
                path,
                #[cfg(target_os = "linux")]
                behind,
            } => {
                // A trailing run of zeroes is only a hole until the length says so.
                file.set_len(len).map_err(|e| fail("set length", e))?;
                file.sync_all().map_err(|e| fail("flush", e))?;
                // A writeback error a window's wait took is not fsync's to report.
                #[cfg(target_os = "linux")]
                behind.check().map_err(|e| fail("flush", e))?;
                drop(file);
                Ok(Arc::new(OpenOptions::new().open(&path).map_err(FlashError::TargetOpen)?))
            }
        }
    }
}

/// Pieces read back at once, each on its own thread: one uncached read at a
/// time waits out the device's latency for every 4 MiB (no readahead
/// helps a range just dropped from the cache); several in flight keep it
/// busy. Measured on the 2 GiB benchmark (virtio disk): the read-back took
/// as long as the writing with one, about a third of that with four.
const READ_BACK_DEPTH: usize = 4;

/// The XXH3-128 of the target's first `len` bytes, read past the page
/// cache, so what is hashed is what the medium holds.
fn read_back_hash(
    dev: &dyn BlockDevice,
    len: u64,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(u64),
) -> Result<u128, FlashError> {
    let mut hasher = Xxh3Default::new();
    let mut bufs: Vec<_> =
        (0..READ_BACK_DEPTH).map(|_| crate::buffer::AlignedBuf::new(decode::BUF)).collect();
    let piece = decode::BUF as u64;
    let mut pos = 0;
    while pos < len {
        if cancel.load(Ordering::Relaxed) {
            return Err(FlashError::Cancelled { written: len });
        }
        // The next pieces, read side by side, then hashed in order.
        let reads: Vec<(u64, usize)> = (0..READ_BACK_DEPTH as u64)
            .map(|i| pos + i * piece)
            .filter(|at| *at < len)
            .map(|at| (at, (len - at).min(piece) as usize))
            .collect();
        let results: Vec<io::Result<()>> = std::thread::scope(|s| {
            let handles: Vec<_> = bufs
                .iter_mut()
                .zip(&reads)
                .map(|(buf, &(at, n))| s.spawn(move || dev.read_uncached(&mut buf[..n], at)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        });
        for ((buf, &(at, n)), result) in bufs.iter().zip(&reads).zip(results) {
            result.map_err(|source| FlashError::Target {
                operation: "read back",
                offset: at,
                source,
            })?;
            hasher.update(&buf[..n]);
            pos = at + n as u64;
            progress(pos);
        }
    }
    Ok(hasher.digest128())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::device::MemoryDevice;

    /// 10 MiB of varied bytes with zero runs: several buffers, so the
    /// decoder and the writer overlap.
    fn image() -> Vec<u8> {
        // Compressible, not trivially.
        let mut data: Vec<u8> =
            livemirror_testkit::pattern(10 << 20, 1).into_iter().map(|b| b % 7).collect();
        data[2 << 20..5 << 20].fill(0);
        data
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn run(
        dir: &Path,
        packed: &[u8],
        format: Compression,
        target: Target,
        cancel: &AtomicBool,
    ) -> Result<Flashed, FlashError> {
        let path = dir.join("packed");
        std::fs::write(&path, packed).unwrap();
        flash(&path, format, target, cancel, &mut |_| {})
    }

    #[test]
    fn a_packed_disk_flashes_back_onto_old_data_identical() {
        let dir = tempfile::tempdir().unwrap();
        let data = image();
        let source = MemoryDevice::from_bytes(data.clone());
        let zst = dir.path().join("disk.img.zst");
        let mut last = Progress::default();
        let packed = pack_zstd(&source, &zst, &AtomicBool::new(false), &mut |p| last = *p).unwrap();
        assert_eq!((packed.len, last.verified), (data.len() as u64, data.len() as u64));
        assert_eq!(decode::declared_len(&zst, Compression::Zstd).unwrap(), Some(packed.len));

        let mut old = vec![0xAB; data.len() + 4096];
        let target = Arc::new(MemoryDevice::from_bytes(old.clone()));
        let flashed = flash(
            &zst,
            Compression::Zstd,
            Target::Device(target.clone()),
            &AtomicBool::new(false),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(flashed.hash, packed.hash);
        old[..data.len()].copy_from_slice(&data);
        assert!(target.contents() == old, "image part or what lies past it is wrong");
    }

    #[test]
    fn a_new_file_keeps_zero_runs_as_holes_and_its_length() {
        let dir = tempfile::tempdir().unwrap();
        let mut data = image();
        let end = data.len();
        data[end - 100_000..].fill(0); // a trailing zero run: set_len's job
        let new = dir.path().join("new.img");
        run(
            dir.path(),
            &gzip(&data),
            Compression::Gzip,
            Target::NewFile(new.clone()),
            &AtomicBool::new(false),
        )
        .unwrap();
        assert!(std::fs::read(&new).unwrap() == data);
    }

    /// Larger than the write-behind window, so written ranges are waited
    /// for and dropped from the cache while later ones are written; every
    /// buffer is a reused one many times over.
    #[test]
    fn a_new_file_past_the_write_behind_window_reads_back_identical() {
        let dir = tempfile::tempdir().unwrap();
        let mut data = vec![0u8; 80 << 20];
        data[..8 << 20].copy_from_slice(&livemirror_testkit::pattern(8 << 20, 2));
        data[70 << 20..71 << 20].copy_from_slice(&livemirror_testkit::pattern(1 << 20, 3));
        data[(79 << 20) + 5..(79 << 20) + 9].copy_from_slice(b"tail");
        let packed = zstd::encode_all(&data[..], 1).unwrap();
        let new = dir.path().join("new.img");
        let flashed = run(
            dir.path(),
            &packed,
            Compression::Zstd,
            Target::NewFile(new.clone()),
            &AtomicBool::new(false),
        )
        .unwrap();
        assert_eq!(flashed.len, data.len() as u64);
        assert!(std::fs::read(&new).unwrap() == data);
    }

    #[test]
    fn a_corrupt_stream_fails_as_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let mut packed = gzip(&image());
        let mid = packed.len() / 2;
        packed[mid] ^= 0xFF;
        let target = Arc::new(MemoryDevice::new(16 << 20));
        let err = run(
            dir.path(),
            &packed,
            Compression::Gzip,
            Target::Device(target),
            &AtomicBool::new(false),
        )
        .unwrap_err();
        assert!(matches!(err, FlashError::Corrupt { format: Compression::Gzip, .. }), "{err}");
    }

    /// The writer stops (the target is full, or Ctrl-C) while the decoder
    /// still has data: the decoder stops too, and the error is the writer's.
    #[test]
    fn a_writer_that_stops_stops_the_decoder_without_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let packed = gzip(&image());
        let small = Arc::new(MemoryDevice::new(5 << 20));
        let err = run(
            dir.path(),
            &packed,
            Compression::Gzip,
            Target::Device(small),
            &AtomicBool::new(false),
        )
        .unwrap_err();
        assert!(matches!(err, FlashError::TooLarge { target } if target == 5 << 20), "{err}");
        let target = Arc::new(MemoryDevice::new(16 << 20));
        let err = run(
            dir.path(),
            &packed,
            Compression::Gzip,
            Target::Device(target),
            &AtomicBool::new(true),
        )
        .unwrap_err();
        assert!(matches!(err, FlashError::Cancelled { written: 0 }), "{err}");
    }
}
