//! Decompressing an image file into a stream of buffers, on its own thread,
//! counting the compressed bytes read on the way.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Compression, FlashError};

/// Bytes per buffer handed to the writer: large, so the target gets large
/// writes, and a multiple of every block size.
pub const BUF: usize = 4 << 20;

/// A reader that counts what passes through it.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

/// The zip reader seeks to the central directory and back.
impl<R: Seek> Seek for Counting<R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.inner.seek(pos)
    }
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// The uncompressed size the file declares, where its format has one: a
/// zip entry's size, or a zstd frame's content size (the first frame's: a
/// file of several frames, as `pzstd` writes, declares only part).
pub fn declared_len(path: &Path, format: Compression) -> Result<Option<u64>, FlashError> {
    let open = || File::open(path).map_err(|source| FlashError::Open { path: path.into(), source });
    match format {
        Compression::Zip => {
            let mut archive = zip::ZipArchive::new(open()?)?;
            let index = the_image(&mut archive)?;
            Ok(Some(archive.by_index(index)?.size()))
        }
        Compression::Zstd => {
            let mut head = [0u8; 18]; // the longest frame header
            let n = open()?
                .read(&mut head)
                .map_err(|source| FlashError::Open { path: path.into(), source })?;
            Ok(zstd::zstd_safe::get_frame_content_size(&head[..n]).ok().flatten())
        }
        Compression::Xz | Compression::Gzip | Compression::Bzip2 => Ok(None),
    }
}

/// The index of the one file in the archive (directories aside): an
/// archive of several is refused, naming them, rather than guessed at.
fn the_image<R: Read + Seek>(archive: &mut zip::ZipArchive<R>) -> Result<usize, FlashError> {
    let mut files = Vec::new();
    for i in 0..archive.len() {
        let entry = archive.by_index_raw(i)?;
        if entry.is_file() {
            files.push((i, entry.name().map(|n| n.into_owned()).unwrap_or_default()));
        }
    }
    match files.as_slice() {
        [(index, _)] => Ok(*index),
        [] => Err(FlashError::EmptyArchive),
        many => Err(FlashError::SeveralFiles {
            count: many.len(),
            names: many.iter().take(5).map(|(_, n)| n.clone()).collect(),
        }),
    }
}

/// Decompresses `path` and calls `out` with each full buffer (the last may
/// be shorter) until the stream ends, `out` returns no buffer to fill next
/// (the writer gave up), or the data is found corrupt. Buffers come back
/// through `out` to be filled again, so none is allocated (and
/// page-faulted) per piece. `read` counts the compressed bytes.
pub fn decode(
    path: &Path,
    format: Compression,
    read: Arc<AtomicU64>,
    out: &mut dyn FnMut(Vec<u8>) -> Option<Vec<u8>>,
) -> Result<(), FlashError> {
    let file = File::open(path).map_err(|source| FlashError::Open { path: path.into(), source })?;
    let counted = Counting { inner: file, count: read };
    let corrupt = |source| FlashError::Corrupt { format, source };
    match format {
        Compression::Xz => {
            let mut input = BufReader::with_capacity(1 << 20, counted);
            let mut decoder = liblzma::bufread::XzDecoder::new_parallel(&mut input);
            pump(&mut decoder, out).map_err(corrupt)?;
            drop(decoder);
            // The multithreaded decoder reads one stream: anything after it
            // but stream padding (zero bytes) would be silently dropped.
            only_padding_left(&mut input).map_err(corrupt)
        }
        Compression::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::new(counted).map_err(corrupt)?;
            pump(&mut decoder, out).map_err(corrupt)
        }
        Compression::Gzip => {
            pump(&mut flate2::read::MultiGzDecoder::new(counted), out).map_err(corrupt)
        }
        Compression::Bzip2 => {
            pump(&mut bzip2::read::MultiBzDecoder::new(counted), out).map_err(corrupt)
        }
        Compression::Zip => {
            let mut archive = zip::ZipArchive::new(counted)?;
            let index = the_image(&mut archive)?;
            let mut entry = archive.by_index(index)?;
            pump(&mut entry, out).map_err(corrupt)
        }
    }
}

/// Reads `r` into full buffers for `out`.
fn pump(r: &mut dyn Read, out: &mut dyn FnMut(Vec<u8>) -> Option<Vec<u8>>) -> io::Result<()> {
    let mut buf = vec![0u8; BUF];
    loop {
        let mut n = 0;
        while n < BUF {
            match r.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if n == 0 {
            return Ok(());
        }
        buf.truncate(n);
        let last = n < BUF;
        if last {
            out(buf);
            return Ok(());
        }
        match out(buf) {
            Some(next) => {
                // Full length again (a new one comes empty); old bytes are
                // overwritten before they are handed on.
                buf = next;
                buf.resize(BUF, 0);
            }
            None => return Ok(()),
        }
    }
}

fn only_padding_left(input: &mut impl BufRead) -> io::Result<()> {
    loop {
        let rest = input.fill_buf()?;
        if rest.is_empty() {
            return Ok(());
        }
        if rest.iter().any(|b| *b != 0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "data after the end of the xz stream (a second stream, or garbage)",
            ));
        }
        let n = rest.len();
        input.consume(n);
    }
}
