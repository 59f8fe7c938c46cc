//! A disk or image out as a new qcow2 file of compressed clusters
//! (`clone SRC DST.qcow2 --compress`), what `qemu-img convert -c -O qcow2`
//! makes.
//!
//! imago, which livemirror reads and writes qcow2 with, cannot write
//! compressed clusters (its own tests say so), so this writes the file
//! itself, in one pass, following the qcow2 specification (QEMU's
//! `docs/interop/qcow2.txt`): version 3, 64 KiB clusters, 16-bit
//! refcounts, no backing file. Each 64 KiB of the source is deflated (raw
//! deflate with a 4 KiB window, which is what QEMU inflates with) and the
//! results are packed byte after byte; a cluster that does not shrink is
//! stored as a plain cluster, and one that reads as zero is left
//! unallocated. Metadata is written as it completes — each L2 table after
//! its 512 MiB of guest data, each refcount block after its 2 GiB of file —
//! so memory stays one L2 table, one refcount block and a batch of
//! clusters, plus the L1 and refcount tables (8 bytes per 512 MiB of disk,
//! and per 2 GiB of file). The header goes last, into the cluster kept for
//! it. The result is then opened with imago and read back against the hash
//! of what was read from the source.
//!
//! Like [`super::pack_zstd`], the source is read once with no write
//! tracking.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use flate2::{Compress, Compression as Level, FlushCompress, Status};
use xxhash_rust::xxh3::Xxh3Default;

use super::{FlashError, Flashed, Progress, pack::read_source};
use crate::buffer::is_zero;
use crate::device::{BlockDevice, Qcow2Device};

const CLUSTER_BITS: u32 = 16;
const CLUSTER: u64 = 1 << CLUSTER_BITS;
/// L2 entries per table: one table maps 512 MiB of guest data.
const L2_ENTRIES: u64 = CLUSTER / 8;
/// 16-bit refcounts: one block counts 32768 host clusters (2 GiB of file).
const REFCOUNT_ORDER: u32 = 4;
const REFS_PER_BLOCK: u64 = CLUSTER * 8 / (1 << REFCOUNT_ORDER);
/// A plain (not compressed) cluster whose refcount is 1: may be written in
/// place (`QCOW_OFLAG_COPIED`).
const COPIED: u64 = 1 << 63;
const COMPRESSED: u64 = 1 << 62;
/// Bits of a compressed descriptor that hold the host offset.
const OFFSET_BITS: u32 = 62 - (CLUSTER_BITS - 8);
/// Clusters read and compressed at once, spread over the worker threads.
const BATCH: usize = 64;
/// QEMU's deflate window (its `qcow2_compress` uses -12; its inflate
/// accepts nothing larger).
const WINDOW_BITS: u8 = 12;

/// Writes `source` into a new compressed qcow2 file at `out` (refusing one
/// that exists), then reads it back through imago to check it. A failed or
/// cancelled run removes the file it made.
pub fn pack_qcow2(
    source: &dyn BlockDevice,
    out: &Path,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Flashed, FlashError> {
    let len = source.len();
    super::pack::new_image(
        len,
        out,
        |file, progress| write_image(source, file, cancel, progress),
        |progress| {
            let image = Qcow2Device::open(out, false).map_err(FlashError::TargetOpen)?;
            let mut verified =
                Progress { declared_len: Some(len), written: len, ..Progress::default() };
            let hash = super::read_back_hash(&image, len, cancel, &mut |n| {
                verified.verified = n;
                progress(&verified);
            })?;
            Ok((image.len(), hash))
        },
        progress,
    )
}

/// What one guest cluster becomes.
enum Packed {
    /// Reads as zero: left unallocated.
    Zero,
    /// Deflated, shorter than a cluster.
    Deflated(Vec<u8>),
    /// Did not shrink: stored as it is.
    Plain,
}

/// Compresses one cluster (a short last one is padded with zeroes, as the
/// format wants whole clusters).
fn pack_cluster(data: &[u8]) -> Packed {
    if is_zero(data) {
        return Packed::Zero;
    }
    let mut whole;
    let data = if data.len() < CLUSTER as usize {
        whole = vec![0; CLUSTER as usize];
        whole[..data.len()].copy_from_slice(data);
        &whole[..]
    } else {
        data
    };
    let mut z = Compress::new_with_window_bits(Level::default(), false, WINDOW_BITS);
    let mut out = Vec::with_capacity(CLUSTER as usize);
    match z.compress_vec(data, &mut out, FlushCompress::Finish) {
        Ok(Status::StreamEnd) if out.len() < CLUSTER as usize => Packed::Deflated(out),
        // Ran out of room (the data does not shrink) or failed: stored plain.
        _ => Packed::Plain,
    }
}

/// The file being written: where the next byte goes, and the metadata that
/// is not yet on disk.
struct Writer {
    file: File,
    /// Next free byte of the file.
    end: u64,
    /// The L2 table being filled, and which one it is.
    l2: Vec<u64>,
    l2_index: u64,
    l1: Vec<u64>,
    /// Refcounts of host clusters `ref_base..ref_base + REFS_PER_BLOCK`.
    refs: Vec<u16>,
    ref_base: u64,
    reftable: Vec<u64>,
}

impl Writer {
    fn new(file: File, guest_len: u64) -> Writer {
        let l1_len = guest_len.div_ceil(CLUSTER).div_ceil(L2_ENTRIES);
        let mut w = Writer {
            file,
            // Cluster 0 is the header's, written last.
            end: CLUSTER,
            l2: vec![0; L2_ENTRIES as usize],
            l2_index: 0,
            l1: vec![0; l1_len as usize],
            refs: vec![0; REFS_PER_BLOCK as usize],
            ref_base: 0,
            reftable: Vec::new(),
        };
        w.refs[0] = 1;
        w
    }

    fn fail(&self, e: io::Error) -> FlashError {
        FlashError::Target { operation: "write", offset: self.end, source: e }
    }

    fn write_at(&mut self, data: &[u8], at: u64) -> Result<(), FlashError> {
        self.file
            .seek(SeekFrom::Start(at))
            .and_then(|_| self.file.write_all(data))
            .map_err(|e| FlashError::Target { operation: "write", offset: at, source: e })
    }

    /// Counts one more reference to each host cluster of `start..end`,
    /// writing out the refcount block of every range left behind.
    fn reference(&mut self, start: u64, end: u64) -> Result<(), FlashError> {
        for cluster in start / CLUSTER..end.div_ceil(CLUSTER) {
            while cluster >= self.ref_base + REFS_PER_BLOCK {
                self.flush_refcounts()?;
            }
            self.refs[(cluster - self.ref_base) as usize] += 1;
        }
        Ok(())
    }

    /// Writes the current refcount block (in a cluster of its own, counted
    /// in whichever block covers it) and moves on to the next range.
    fn flush_refcounts(&mut self) -> Result<(), FlashError> {
        let block: Vec<u8> = self.refs.iter().flat_map(|r| r.to_be_bytes()).collect();
        self.refs.fill(0);
        self.ref_base += REFS_PER_BLOCK;
        let at = self.allocate_clusters(1)?;
        self.write_at(&block, at)?;
        self.reftable.push(at);
        Ok(())
    }

    /// Takes `n` whole clusters at the next cluster boundary, counted.
    fn allocate_clusters(&mut self, n: u64) -> Result<u64, FlashError> {
        let at = self.end.div_ceil(CLUSTER) * CLUSTER;
        self.end = at + n * CLUSTER;
        self.reference(at, self.end)?;
        Ok(at)
    }

    /// Puts guest cluster `index` into the file.
    fn put(&mut self, index: u64, packed: &Packed, data: &[u8]) -> Result<(), FlashError> {
        let table = index / L2_ENTRIES;
        if table != self.l2_index {
            self.flush_l2()?;
            self.l2_index = table;
        }
        let entry = match packed {
            Packed::Zero => 0,
            Packed::Plain => {
                let at = self.allocate_clusters(1)?;
                let mut whole = data.to_vec();
                whole.resize(CLUSTER as usize, 0);
                self.write_at(&whole, at)?;
                at | COPIED
            }
            Packed::Deflated(bytes) => {
                let at = self.end;
                self.write_at(bytes, at)?;
                self.end += bytes.len() as u64;
                // Readers take whole 512-byte sectors: the counted range is
                // the sectors the data touches, as `qemu-img check` counts.
                let sectors = (at + bytes.len() as u64 - 1) / 512 - at / 512;
                self.reference(at / 512 * 512, at / 512 * 512 + (sectors + 1) * 512)?;
                COMPRESSED | (sectors << OFFSET_BITS) | at
            }
        };
        self.l2[(index % L2_ENTRIES) as usize] = entry;
        Ok(())
    }

    /// Writes the L2 table being filled, unless it maps nothing.
    fn flush_l2(&mut self) -> Result<(), FlashError> {
        if self.l2.iter().all(|e| *e == 0) {
            return Ok(());
        }
        let table: Vec<u8> = self.l2.iter().flat_map(|e| e.to_be_bytes()).collect();
        self.l2.fill(0);
        let at = self.allocate_clusters(1)?;
        self.write_at(&table, at)?;
        self.l1[self.l2_index as usize] = at | COPIED;
        Ok(())
    }

    /// The last L2 table, the L1 table, the refcount structures and the
    /// header; then the file is made durable.
    fn finish(mut self, guest_len: u64) -> Result<(), FlashError> {
        self.flush_l2()?;
        let l1_bytes: Vec<u8> = self.l1.iter().flat_map(|e| e.to_be_bytes()).collect();
        let l1_at = self.allocate_clusters((l1_bytes.len() as u64).div_ceil(CLUSTER).max(1))?;
        self.write_at(&l1_bytes, l1_at)?;
        // The refcount table, sized for every block there will be: those
        // written, the current one, and any the table's own clusters and
        // the current block's cluster may start (one more, with room).
        let reftable_clusters = ((self.reftable.len() as u64 + 3) * 8).div_ceil(CLUSTER);
        let reftable_at = self.allocate_clusters(reftable_clusters)?;
        let last_block_at = self.allocate_clusters(1)?;
        // `allocate_clusters` may have flushed blocks; the current one is
        // the last and counts its own cluster.
        let block: Vec<u8> = self.refs.iter().flat_map(|r| r.to_be_bytes()).collect();
        self.write_at(&block, last_block_at)?;
        self.reftable.push(last_block_at);
        assert!(self.reftable.len() as u64 * 8 <= reftable_clusters * CLUSTER);
        let table: Vec<u8> = self.reftable.iter().flat_map(|e| e.to_be_bytes()).collect();
        self.write_at(&table, reftable_at)?;

        let mut header = vec![0u8; 104];
        let mut put = |at: usize, bytes: &[u8]| header[at..at + bytes.len()].copy_from_slice(bytes);
        put(0, b"QFI\xfb");
        put(4, &3u32.to_be_bytes());
        put(20, &CLUSTER_BITS.to_be_bytes());
        put(24, &guest_len.to_be_bytes());
        put(36, &(self.l1.len() as u32).to_be_bytes());
        put(40, &l1_at.to_be_bytes());
        put(48, &reftable_at.to_be_bytes());
        put(56, &(reftable_clusters as u32).to_be_bytes());
        put(96, &REFCOUNT_ORDER.to_be_bytes());
        put(100, &104u32.to_be_bytes());
        // The header extensions end at once: the zeroes after it say so.
        self.write_at(&header, 0)?;
        self.file.sync_all().map_err(|e| self.fail(e))
    }
}

/// Reads the source front to back into the new image; returns the hash of
/// what was read.
fn write_image(
    source: &dyn BlockDevice,
    file: File,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(&Progress),
) -> Result<u128, FlashError> {
    let len = source.len();
    let mut w = Writer::new(file, len);
    let mut hasher = Xxh3Default::new();
    let mut buf = crate::buffer::AlignedBuf::new(BATCH * CLUSTER as usize);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(BATCH);
    let mut state = Progress { declared_len: Some(len), ..Progress::default() };
    let mut pos = 0;
    while pos < len {
        if cancel.load(Ordering::Relaxed) {
            return Err(FlashError::Cancelled { written: pos });
        }
        let n = (len - pos).min(buf.len() as u64) as usize;
        let batch = &mut buf[..n];
        read_source(source, batch, pos)?;
        hasher.update(batch);
        let clusters: Vec<&[u8]> = batch.chunks(CLUSTER as usize).collect();
        let packed = compress_all(&clusters, workers);
        for (i, (p, data)) in packed.iter().zip(&clusters).enumerate() {
            w.put(pos / CLUSTER + i as u64, p, data)?;
        }
        pos += n as u64;
        state.written = pos;
        progress(&state);
    }
    w.finish(len)?;
    Ok(hasher.digest128())
}

/// Packs every cluster, `workers` threads taking every `workers`-th one.
fn compress_all(clusters: &[&[u8]], workers: usize) -> Vec<Packed> {
    let mut packed: Vec<Option<Packed>> = clusters.iter().map(|_| None).collect();
    std::thread::scope(|s| {
        let mut slots: Vec<Vec<(usize, &mut Option<Packed>)>> =
            (0..workers).map(|_| Vec::new()).collect();
        for (i, slot) in packed.iter_mut().enumerate() {
            slots[i % workers].push((i, slot));
        }
        for mine in slots {
            s.spawn(move || {
                for (i, slot) in mine {
                    *slot = Some(pack_cluster(clusters[i]));
                }
            });
        }
    });
    packed.into_iter().map(|p| p.unwrap_or(Packed::Plain)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::MemoryDevice;

    /// Compressible bytes, random bytes, zeroes and a short tail: every
    /// kind of cluster, over more than one L2 table would be too slow, so
    /// the table and refcount arithmetic is checked on its own below.
    #[test]
    fn a_packed_image_reads_back_through_imago_identical() {
        let dir = tempfile::tempdir().unwrap();
        let mut data = vec![0u8; (3 << 20) + 1536];
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for (i, b) in data.iter_mut().enumerate() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = match (i >> 16) % 3 {
                0 => (x % 5) as u8,
                1 => x as u8,
                _ => 0,
            };
        }
        let source = MemoryDevice::from_bytes(data.clone());
        let out = dir.path().join("out.qcow2");
        let packed = pack_qcow2(&source, &out, &AtomicBool::new(false), &mut |_| {}).unwrap();
        assert_eq!(packed.len, data.len() as u64);
        assert!(packed.compressed_len < data.len() as u64);
        let image = Qcow2Device::open(&out, false).unwrap();
        let mut back = vec![0; data.len()];
        image.read_at(&mut back, 0).unwrap();
        assert!(back == data);
    }

    #[test]
    fn refcount_blocks_are_written_as_their_ranges_fill() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("x")).unwrap();
        let mut w = Writer::new(file, 1 << 30);
        // Past the first block's 32768 clusters: it is written, in the next
        // range, and counted there.
        let at = w.allocate_clusters(REFS_PER_BLOCK).unwrap();
        assert_eq!(at, CLUSTER);
        assert_eq!(w.reftable, vec![(REFS_PER_BLOCK + 1) * CLUSTER]);
        assert_eq!(w.refs[..3], [1, 1, 0]);
    }
}
