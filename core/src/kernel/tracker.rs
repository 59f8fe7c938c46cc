//! [`KernelTracker`]: every completed write, discard and write-zeroes to a
//! disk (or a partition of it), as dirty chunks, seen by the kernel itself.
//!
//! The BPF program (track.bpf.c) runs on `block:block_rq_complete`. That
//! tracepoint, rather than `block_bio_complete` or `block_rq_issue`, because:
//! * it fires for every request of every request-based (blk-mq) disk:
//!   NVMe, SCSI/SATA/USB, virtio, loop, MMC; `block_bio_complete` fires only
//!   for bios some driver asked to trace (device-mapper's remaps);
//! * it fires at *completion*, in `blk_update_request()`, before the
//!   request's bios are ended, so by the time a writer (or a filesystem's
//!   `fsync`, or FIFREEZE) learns its write is done, the bit is set; an
//!   issue-time hook would mark a write before the data is on the disk, and
//!   a copy that ran in between would miss the data without re-dirtying;
//! * a partial completion is reported with its own sector and length;
//! * a partition's requests arrive remapped: the disk's `dev_t` and
//!   whole-disk sectors, so one filter (disk + sector range) serves both.
//!
//! Bio-based stacks (device-mapper, md RAID, zram, brd) never make requests
//! on their own device, so [`attach`](KernelTracker::attach) refuses them
//! ([`TrackError::NotRequestBased`]); their writes reach the disks below,
//! at other sectors. Zoned disks are refused too ([`TrackError::Zoned`]):
//! a zone append's sector is known only from its bio's completion. The job
//! then uses compare passes.
//!
//! The bitmap is a `BPF_F_MMAPABLE` array map of u64 words; the program
//! sets bits with atomic OR, and [`drain`](KernelTracker::drain) takes them
//! with atomic swaps (a word read and zeroed in one step), so a bit set
//! concurrently lands either in this drain or in the next one, never
//! nowhere. No event stream, so nothing can overflow. Two things can still
//! leave a written chunk unmarked, and each is detected and reported as
//! [`Drained::All`] with its [`Unseen`] reason, so the job compares the
//! whole disk once instead of trusting the map:
//! * a completion whose range the record does not give (a passthrough
//!   command that moved data) or that spans more words than the program
//!   sets in one go;
//! * a completion the kernel did not run the program for: a tracepoint's
//!   BPF program does not nest on one CPU (`trace_call_bpf` skips it while
//!   any tracing program runs there, e.g. this one, interrupted by an IPI
//!   that completes another request), and counts each skip in the
//!   program's `recursion_misses`, which every drain reads.

use std::fs::File;
use std::io::{self, ErrorKind};
use std::ops::Range;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering, fence};
use std::time::Duration;

use aya::maps::Map;
use aya::programs::TracePoint;
use aya::{Ebpf, EbpfLoader};

use super::tracepoint::{self, Layout};
use super::{FreezeError, TrackError};
use crate::buffer::AlignedBuf;
use crate::device::DeviceId;

/// The compiled BPF program, built by core/build.rs.
#[cfg(not(livemirror_no_bpf))]
static OBJECT: Option<&[u8]> =
    Some(aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/track.bpf.o")));
/// Built where clang was missing (see build.rs).
#[cfg(livemirror_no_bpf)]
static OBJECT: Option<&[u8]> = None;

/// Longest completion, in bitmap words, the program marks word by word
/// (`bpf_loop` allows 2^23 iterations); a longer one marks everything.
/// 2^20 words are 2^26 chunks: 32 GiB at 512-byte granularity.
pub const MAX_SPAN_WORDS: u64 = 1 << 20;

// Indexes into the STATS map (enum in track.bpf.c).
/// The tracker's program in the object (`track.bpf.c`).
const PROGRAM: &str = "on_rq_complete";
const STAT_MARKER: usize = 0;
const STAT_OVERFLOW: usize = 1;
const STAT_LEN: usize = 2;

/// `struct config` in track.bpf.c, field for field.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct Config {
    dev: u32,
    gran_shift: u32,
    start: u64,
    sectors: u64,
    max_words: u64,
    off_dev: u32,
    off_sector: u32,
    off_nr_sector: u32,
    off_rwbs: u32,
}

// SAFETY: plain integers, no padding (4 + 4 + 8 + 8 + 8 + 4 * 4 bytes).
unsafe impl aya::Pod for Config {}

/// What a [`drain`](KernelTracker::drain) reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Drained {
    /// The chunks that were written, exactly.
    Exact,
    /// The chunks given may not be all: since the last drain a write
    /// completed that the program could not mark. Any chunk may have been
    /// written; only a comparison of the whole range can say which.
    All(Unseen),
}

/// Why a drain could not name every written chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unseen {
    /// The disk completed a request whose range the kernel did not give (a
    /// passthrough command such as SG_IO or NVMe passthrough that moved
    /// data, a zone reset) or that was too long to mark chunk by chunk.
    Unmarkable,
    /// The kernel skipped the program for this many completions (BPF
    /// programs on tracepoints do not nest on one CPU).
    Skipped(u64),
    /// The kernel could not say how often it skipped the program.
    Untold,
    /// The tracker is gone (the helper process holding it ended): nothing
    /// written since is known.
    Gone,
}

impl std::fmt::Display for Unseen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unseen::Unmarkable => f.write_str(
                "the disk completed a request whose range the kernel did not say or too long to mark",
            ),
            Unseen::Skipped(1) => f.write_str("the kernel skipped the tracker for one completion"),
            Unseen::Skipped(n) => write!(f, "the kernel skipped the tracker for {n} completions"),
            Unseen::Untold => f.write_str("the kernel could not say whether it skipped the tracker"),
            Unseen::Gone => f.write_str("the kernel write tracker stopped"),
        }
    }
}

/// A running BPF write tracker on one disk range. Dropping it detaches the
/// program.
pub struct KernelTracker {
    /// The tracked device, whose filesystems a freeze holds.
    id: DeviceId,
    dirty: Mapped,
    stats: Mapped,
    chunks: u64,
    granularity: u64,
    marker: Marker,
    /// The program's `recursion_misses` as of the last drain.
    misses: AtomicU64,
    /// Owns the program, its link to the tracepoint and the maps.
    ebpf: Ebpf,
}

impl KernelTracker {
    /// Starts tracking writes to the block device `id` (a whole disk, or a
    /// partition: its writes only, in chunks counted from its start), one
    /// bit per `granularity` bytes.
    ///
    /// Needs root. Checks that the device is request-based and that the
    /// program sees the device's requests (a [`barrier`](Self::barrier))
    /// before returning.
    pub fn attach(id: &DeviceId, granularity: u64) -> Result<Self, TrackError> {
        Self::attach_with_span_limit(id, granularity, MAX_SPAN_WORDS)
    }

    /// [`attach`](Self::attach) with a smaller [`MAX_SPAN_WORDS`], so tests
    /// can make the program give up on a long request.
    #[doc(hidden)]
    pub fn attach_with_span_limit(
        id: &DeviceId,
        granularity: u64,
        max_words: u64,
    ) -> Result<Self, TrackError> {
        let object = OBJECT.ok_or(TrackError::NotBuilt)?;
        let &DeviceId::Block { disk, start, len, .. } = id else {
            return Err(TrackError::NotABlockDevice);
        };
        if !granularity.is_power_of_two() || granularity < 512 {
            return Err(TrackError::BadGranularity(granularity));
        }
        let sys = Path::new("/sys/dev/block").join(format!(
            "{}:{}",
            libc::major(disk),
            libc::minor(disk)
        ));
        let node = device_node(&sys)?;
        // blk-mq disks have an `mq` directory; bio-based ones do not.
        if !sys.join("mq").is_dir() {
            return Err(TrackError::NotRequestBased {
                device: node.display().to_string(),
                reason: "it has no blk-mq queue".into(),
            });
        }
        let zoned = std::fs::read_to_string(sys.join("queue/zoned")).unwrap_or_default();
        if !matches!(zoned.trim(), "" | "none") {
            return Err(TrackError::Zoned { device: node.display().to_string() });
        }
        let layout = tracepoint::block_rq_complete(&tracepoint::tracefs()?)?;

        let chunks = len.div_ceil(granularity);
        let words = u32::try_from(chunks.div_ceil(64).max(1)).map_err(|_| {
            TrackError::BadGranularity(granularity) // 2^38 chunks: no disk is that large
        })?;
        let config = config(disk, start, len, granularity, max_words, layout);
        let mut ebpf = EbpfLoader::new()
            // The program reads no kernel structure, so needs no BTF of the
            // kernel (no CO-RE relocations).
            .btf(None)
            .override_global("CONFIG", &config, true)
            .map_max_entries("DIRTY", words)
            .load(object)
            .map_err(|e| classify("load", e))?;
        let program: &mut TracePoint = ebpf
            .program_mut(PROGRAM)
            .ok_or(TrackError::Object { what: "program", name: PROGRAM })?
            .try_into()
            .map_err(|e| classify("program", e))?;
        program.load().map_err(|e| classify("verify", e))?;
        program.attach("block", "block_rq_complete").map_err(|e| classify("attach", e))?;

        let dirty = Mapped::of(&ebpf, "DIRTY", words as usize)?;
        let stats = Mapped::of(&ebpf, "STATS", STAT_LEN)?;
        let marker = Marker::open(node, &sys, start)?;
        let misses = AtomicU64::new(recursion_misses(program_fd(&ebpf)?)?);
        let tracker =
            KernelTracker { id: *id, dirty, stats, chunks, granularity, marker, misses, ebpf };
        tracker.barrier()?;
        Ok(tracker)
    }

    /// Number of chunks tracked (the range's length over the granularity,
    /// rounded up).
    pub fn chunks(&self) -> u64 {
        self.chunks
    }

    pub fn granularity(&self) -> u64 {
        self.granularity
    }

    /// Takes every chunk marked since the last drain, in ascending runs of
    /// chunk indexes, clearing them; a chunk written while this runs is in
    /// this drain or the next. [`Drained::All`] says that some written chunk
    /// may be missing from what was given.
    pub fn drain(&self, f: &mut dyn FnMut(Range<u64>)) -> Drained {
        // Both counters first: a write the program missed or could not mark
        // was completed before it was counted, so a barrier before this
        // drain shows it here.
        let unmarkable = self.stats.words()[STAT_OVERFLOW].swap(0, Ordering::AcqRel) != 0;
        let skipped = self.take_misses();
        let mut run: Option<Range<u64>> = None;
        for (i, word) in self.dirty.words().iter().enumerate() {
            // A plain load first: most words are zero, and a swap would
            // take each cache line exclusive.
            if word.load(Ordering::Relaxed) == 0 {
                continue;
            }
            let mut bits = word.swap(0, Ordering::AcqRel);
            while bits != 0 {
                let low = u64::from(bits.trailing_zeros());
                let len = u64::from((bits >> low).trailing_ones());
                let chunk = i as u64 * 64 + low;
                bits &= !(mask(len) << low);
                match &mut run {
                    Some(r) if r.end == chunk => r.end = chunk + len,
                    _ => {
                        if let Some(done) = run.replace(chunk..chunk + len) {
                            f(done);
                        }
                    }
                }
            }
        }
        if let Some(done) = run {
            f(done);
        }
        match (unmarkable, skipped) {
            (true, _) => Drained::All(Unseen::Unmarkable),
            (false, Some(0)) => Drained::Exact,
            (false, Some(n)) => Drained::All(Unseen::Skipped(n)),
            (false, None) => Drained::All(Unseen::Untold),
        }
    }

    /// Completions the kernel skipped the program for since the last call,
    /// or none when it cannot say (the program is gone: nothing after that
    /// is seen either).
    fn take_misses(&self) -> Option<u64> {
        let now = program_fd(&self.ebpf).and_then(recursion_misses).ok()?;
        Some(now.saturating_sub(self.misses.swap(now, Ordering::AcqRel)))
    }

    /// Proves that every write completed before this call is in the next
    /// [`drain`](Self::drain), and that the program still sees this device.
    ///
    /// Why that holds: the program runs in `blk_update_request()`, in the
    /// completion path itself, before the request's bios are ended; only
    /// then is the submitter woken (the filesystem's `fsync` or FIFREEZE,
    /// a writer's `pwrite`). So a write that anyone knows to be complete
    /// has its bit set already, by a fully ordered atomic OR, and the
    /// wake-up that told them carries that ordering on. There is nothing to
    /// wait for, but something to check: the barrier reads the tracked
    /// range's first block with `O_DIRECT` (a request of its own on the
    /// disk, through the same path) and demands that the program counted
    /// it by the time the read returned. If it did not, the program is not
    /// seeing this device and the tracking must not be trusted. (Another
    /// process's read of that block counts too, which proves the same: the
    /// program sees this disk's completions.)
    pub fn barrier(&self) -> Result<(), TrackError> {
        let markers = &self.stats.words()[STAT_MARKER];
        let before = markers.load(Ordering::Acquire);
        self.marker.read()?;
        fence(Ordering::SeqCst);
        if markers.load(Ordering::Acquire) == before {
            return Err(TrackError::NotRequestBased {
                device: self.marker.path.display().to_string(),
                reason: "the tracker did not see its own marker read complete".into(),
            });
        }
        Ok(())
    }
}

impl super::KernelWrites for KernelTracker {
    fn drain(&self, mark: &mut dyn FnMut(Range<u64>)) -> Drained {
        KernelTracker::drain(self, mark)
    }
    fn barrier(&self) -> Result<(), TrackError> {
        KernelTracker::barrier(self)
    }
    fn freeze(&self, limit: Duration) -> Result<Box<dyn super::Frozen>, FreezeError> {
        Ok(Box::new(super::freeze_all(&self.id, limit)?))
    }
}

fn program_fd(ebpf: &Ebpf) -> Result<BorrowedFd<'_>, TrackError> {
    let program =
        ebpf.program(PROGRAM).ok_or(TrackError::Object { what: "program", name: PROGRAM })?;
    let fd = program.fd().map_err(|e| classify("fd", e))?;
    Ok(fd.as_fd())
}

/// The program's `recursion_misses` (Linux 5.12+): how many times the
/// kernel did not run it because a tracing program was already running on
/// that CPU. aya's `ProgramInfo` does not expose it, so this asks the
/// kernel directly (`BPF_OBJ_GET_INFO_BY_FD`).
fn recursion_misses(prog: BorrowedFd<'_>) -> Result<u64, TrackError> {
    use aya_obj::generated::{bpf_cmd, bpf_prog_info};
    /// The `info` member of `union bpf_attr`.
    #[repr(C)]
    struct InfoAttr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    // SAFETY: bpf_prog_info is plain integers; all zero is its empty value.
    let mut info: bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut attr = InfoAttr {
        bpf_fd: prog.as_raw_fd() as u32,
        info_len: std::mem::size_of::<bpf_prog_info>() as u32,
        info: &raw mut info as u64,
    };
    // SAFETY: the kernel writes at most info_len bytes to `info`, which
    // outlives the call, and reads `attr`'s size of bytes.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            bpf_cmd::BPF_OBJ_GET_INFO_BY_FD as libc::c_long,
            &raw mut attr,
            std::mem::size_of::<InfoAttr>(),
        )
    };
    if r != 0 {
        let e = io::Error::last_os_error();
        return Err(TrackError::Load { step: "BPF_OBJ_GET_INFO_BY_FD", source: Box::new(e) });
    }
    Ok(info.recursion_misses)
}

fn mask(len: u64) -> u64 {
    if len >= 64 { u64::MAX } else { (1 << len) - 1 }
}

fn config(
    disk: u64,
    start: u64,
    len: u64,
    granularity: u64,
    max_words: u64,
    layout: Layout,
) -> Config {
    // The kernel's internal dev_t (what the tracepoint records) is
    // major << 20 | minor, unlike the userspace encoding.
    let dev = (libc::major(disk) << 20) | libc::minor(disk);
    Config {
        dev,
        gran_shift: (granularity / 512).trailing_zeros(),
        start: start / 512,
        sectors: len.div_ceil(512),
        max_words,
        off_dev: layout.dev,
        off_sector: layout.sector,
        off_nr_sector: layout.nr_sector,
        off_rwbs: layout.rwbs,
    }
}

/// Sorts a loader error at `step` into the reasons the job shows: no
/// privileges, no BPF, or the kernel refusing the program (the loader's
/// error, with the verifier's words, kept as the cause).
fn classify(step: &'static str, e: impl std::error::Error + Send + Sync + 'static) -> TrackError {
    let mut errno = None;
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(c) = cause {
        errno = errno.or(c.downcast_ref::<io::Error>().and_then(io::Error::raw_os_error));
        cause = c.source();
    }
    // For the first two, the loader's error under the OS error's kind, so
    // both are kept.
    match errno {
        // Unprivileged bpf() fails with EPERM; EACCES is the verifier's no.
        Some(libc::EPERM) => {
            TrackError::NotPrivileged(io::Error::new(ErrorKind::PermissionDenied, e))
        }
        Some(libc::ENOSYS) => TrackError::NoBpf(io::Error::new(ErrorKind::Unsupported, e)),
        _ => TrackError::Load { step, source: Box::new(e) },
    }
}

/// `/dev/NAME` of the device whose sysfs directory is `sys`.
fn device_node(sys: &Path) -> Result<PathBuf, TrackError> {
    let uevent = sys.join("uevent");
    let text = std::fs::read_to_string(&uevent)
        .map_err(|source| TrackError::Marker { path: uevent.clone(), source })?;
    let name = text.lines().find_map(|l| l.strip_prefix("DEVNAME=")).ok_or_else(|| {
        TrackError::Marker { path: uevent.clone(), source: io::Error::other("no DEVNAME") }
    })?;
    Ok(Path::new("/dev").join(name))
}

/// The barrier's own request: an `O_DIRECT` read of the tracked range's
/// first logical block on the whole disk.
struct Marker {
    file: File,
    path: PathBuf,
    offset: u64,
    block: usize,
}

impl Marker {
    fn open(path: PathBuf, sys: &Path, offset: u64) -> Result<Self, TrackError> {
        let err = |source| TrackError::Marker { path: path.clone(), source };
        let block = std::fs::read_to_string(sys.join("queue/logical_block_size"))
            .map_err(err)?
            .trim()
            .parse::<usize>()
            .map_err(|e| err(io::Error::new(io::ErrorKind::InvalidData, e)))?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT | libc::O_CLOEXEC)
            .open(&path)
            .map_err(err)?;
        Ok(Marker { file, path, offset, block })
    }

    fn read(&self) -> Result<(), TrackError> {
        let mut buf = AlignedBuf::new(self.block);
        self.file
            .read_exact_at(&mut buf, self.offset)
            .map_err(|source| TrackError::Marker { path: self.path.clone(), source })
    }
}

/// A shared, writable mapping of a `BPF_F_MMAPABLE` array map of u64s.
struct Mapped {
    ptr: NonNull<AtomicU64>,
    words: usize,
    bytes: usize,
}

// SAFETY: the mapping is only accessed through atomics.
unsafe impl Send for Mapped {}
// SAFETY: as above.
unsafe impl Sync for Mapped {}

impl Mapped {
    fn of(ebpf: &Ebpf, name: &'static str, words: usize) -> Result<Self, TrackError> {
        let Some(Map::Array(data)) = ebpf.map(name) else {
            return Err(TrackError::Object { what: "array map", name });
        };
        Self::map(data.fd().as_fd(), words)
            .map_err(|e| TrackError::Load { step: "mmap of a map", source: Box::new(e) })
    }

    fn map(fd: BorrowedFd<'_>, words: usize) -> io::Result<Self> {
        // SAFETY: sysconf has no memory-safety preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        let bytes = (words * 8).div_ceil(page) * page;
        // SAFETY: a fresh shared mapping of the map's value area, which the
        // kernel sizes to max_entries * 8 rounded up to pages.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(Mapped { ptr, words, bytes })
    }

    fn words(&self) -> &[AtomicU64] {
        // SAFETY: the mapping holds `words` page-aligned u64s for as long as
        // self lives; AtomicU64 has u64's layout.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.words) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `map` mapped.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.bytes) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_matches_the_c_struct() {
        // struct config in track.bpf.c: 48 bytes, as the loader checks
        // against the object's .rodata.
        assert_eq!(std::mem::size_of::<Config>(), 48);
        let layout = Layout { dev: 8, sector: 16, nr_sector: 24, rwbs: 34 };
        let c = config(libc::makedev(259, 3), 1 << 20, 10 << 20, 65536, 7, layout);
        assert_eq!(c.dev, (259 << 20) | 3);
        assert_eq!((c.start, c.sectors, c.gran_shift), (2048, 20480, 7));
    }

    #[test]
    fn masks() {
        assert_eq!(mask(1), 1);
        assert_eq!(mask(63), u64::MAX >> 1);
        assert_eq!(mask(64), u64::MAX);
    }
}
