//! The way back: a disk or image written out as a new zstd stream
//! (`DST.img.zst`), multithreaded, and verified by decompressing what was
//! written and comparing its hash with the hash of what was read.
//!
//! The source is read once, front to back, with no write tracking: an
//! image of a disk that is written meanwhile is as inconsistent as `dd`'s.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use xxhash_rust::xxh3::Xxh3Default;

use super::decode::{self, BUF};
use super::{Compression, FlashError, Flashed, Progress};
use crate::device::{BlockDevice, extents};

/// zstd's default level: about as fast as a disk reads, a third of the size.
const LEVEL: i32 = 3;

/// Writes `source` into a new zstd file at `out` (refusing one that
/// exists), then decompresses it to check. A failed or cancelled run
/// removes the file it made.
pub fn pack_zstd(
    source: &dyn BlockDevice,
    out: &Path,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Flashed, FlashError> {
    let len = source.len();
    new_image(
        len,
        out,
        |file, progress| pack(source, file, cancel, progress),
        |progress| Ok((len, unpacked_hash(out, len, cancel, progress)?)),
        progress,
    )
}

/// Makes a new image at `out` (refusing one that exists) of a source of
/// `len` bytes: `write` fills the file and returns the hash of what it
/// read, `read_back` reads the image as a reader of its format would and
/// returns its length and hash; both must agree. A failed or cancelled run
/// removes the file it made.
pub(super) fn new_image(
    len: u64,
    out: &Path,
    write: impl FnOnce(File, &mut dyn FnMut(&Progress)) -> Result<u128, FlashError>,
    read_back: impl FnOnce(&mut dyn FnMut(&Progress)) -> Result<(u64, u128), FlashError>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Flashed, FlashError> {
    let file = std::fs::OpenOptions::new().write(true).create_new(true).open(out).map_err(|e| {
        FlashError::TargetOpen(crate::Error::Open { path: out.to_owned(), source: e })
    })?;
    let packed = write(file, progress).and_then(|hash| {
        let compressed_len = std::fs::metadata(out)
            .map_err(|source| FlashError::Open { path: out.to_owned(), source })?
            .len();
        if read_back(progress)? != (len, hash) {
            return Err(FlashError::Mismatch { len });
        }
        Ok(Flashed { len, compressed_len, hash })
    });
    if packed.is_err()
        && let Err(e) = std::fs::remove_file(out)
    {
        // The packing's error is the one to report; a leftover is logged.
        tracing::warn!(path = %out.display(), error = %e, "cannot remove a failed image");
    }
    packed
}

/// Compresses the source into `file`; returns the hash of what was read.
fn pack(
    source: &dyn BlockDevice,
    file: File,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(&Progress),
) -> Result<u128, FlashError> {
    let len = source.len();
    let fail = |operation, offset, source| FlashError::Target { operation, offset, source };
    let mut encoder =
        zstd::stream::write::Encoder::new(BufWriter::with_capacity(1 << 20, file), LEVEL)
            .map_err(|e| fail("compress", 0, e))?;
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    let setup = (|| {
        encoder.multithread(workers)?;
        encoder.include_checksum(true)?;
        // The frame header then says the size: flashing it back knows it.
        encoder.include_contentsize(true)?;
        encoder.set_pledged_src_size(Some(len))
    })();
    setup.map_err(|e| fail("compress", 0, e))?;
    let mut hasher = Xxh3Default::new();
    let mut buf = crate::buffer::AlignedBuf::new(BUF);
    let mut state = Progress { declared_len: Some(len), ..Progress::default() };
    let mut pos = 0;
    while pos < len {
        if cancel.load(Ordering::Relaxed) {
            return Err(FlashError::Cancelled { written: pos });
        }
        let n = (len - pos).min(BUF as u64) as usize;
        let piece = &mut buf[..n];
        read_source(source, piece, pos)?;
        hasher.update(piece);
        encoder.write_all(piece).map_err(|e| fail("write", pos, e))?;
        pos += n as u64;
        state.written = pos;
        progress(&state);
    }
    let mut file = encoder.finish().map_err(|e| fail("compress", len, e))?;
    file.flush().map_err(|e| fail("write", len, e))?;
    let file = file.into_inner().map_err(|e| fail("write", len, e.into_error()))?;
    file.sync_all().map_err(|e| fail("flush", len, e))?;
    Ok(hasher.digest128())
}

/// Fills `buf` from the source at `at`; ranges the source reports as
/// reading zero are not read.
pub(super) fn read_source(
    source: &dyn BlockDevice,
    buf: &mut [u8],
    at: u64,
) -> Result<(), FlashError> {
    let read_err = |e: io::Error| FlashError::Open {
        path: source.describe().into(),
        source: io::Error::new(e.kind(), format!("reading at byte {at}: {e}")),
    };
    for run in extents(source, at..at + buf.len() as u64) {
        let run = run.map_err(|e| read_err(e.error))?;
        let piece = &mut buf[(run.offset - at) as usize..(run.end() - at) as usize];
        if run.status.reads_zero() {
            piece.fill(0);
        } else {
            source.read_at(piece, run.offset).map_err(read_err)?;
        }
    }
    Ok(())
}

/// The hash of `out` decompressed, which must be `len` bytes long.
fn unpacked_hash(
    out: &Path,
    len: u64,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(&Progress),
) -> Result<u128, FlashError> {
    let mut hasher = Xxh3Default::new();
    let mut state = Progress { declared_len: Some(len), written: len, ..Progress::default() };
    let mut cancelled = false;
    decode::decode(out, Compression::Zstd, Arc::new(AtomicU64::new(0)), &mut |buf| {
        hasher.update(&buf);
        state.verified += buf.len() as u64;
        progress(&state);
        cancelled = cancel.load(Ordering::Relaxed);
        (!cancelled).then_some(buf)
    })?;
    if cancelled {
        return Err(FlashError::Cancelled { written: len });
    }
    if state.verified != len {
        return Err(FlashError::Mismatch { len });
    }
    Ok(hasher.digest128())
}
