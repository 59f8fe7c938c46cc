//! qcow2 images, through imago: as a source with its backing chain, and as
//! a target (existing, or created here, optionally over a backing file).
//!
//! imago is built in its `sync` mode: every call is plain blocking I/O on
//! the calling thread, its locks are real locks, so the image can be shared
//! by the job's worker threads exactly like a raw file, with no runtime to
//! bridge to.
//!
//! What the format adds over a raw file, and how the engine uses it:
//! * [`block_status`](BlockDevice::block_status) comes from the cluster
//!   mapping resolved down the backing chain, so unallocated and zero
//!   clusters are never read and never written.
//! * [`top_allocation`](BlockDevice::top_allocation) is this layer's own
//!   mapping, so sync `top` copies only what the top image holds.
//! * A target over a backing file fills the rest of a cluster from the
//!   backing on a partial write, so the job copies whole clusters the first
//!   time ([`partial_cluster_write_fills_from_backing`]).
//!
//! [`partial_cluster_write_fills_from_backing`]: BlockDevice::partial_cluster_write_fills_from_backing

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use imago::file::File as ImagoFile;
use imago::qcow2::Qcow2;
use imago::{
    FormatAccess, FormatCreateBuilder, FormatDriverBuilder, Mapping, PermissiveImplicitOpenGate,
    ShallowMapping, Storage, StorageCreateOptions,
};

use super::{Allocation, BlockDevice, DeviceId, check_range, sys};
use crate::error::Error;

/// The first four bytes of every qcow2 image.
const QCOW2_MAGIC: [u8; 4] = *b"QFI\xfb";

/// The header fields livemirror needs before imago opens the image.
struct Header {
    has_backing: bool,
    cluster_size: u64,
}

impl Header {
    /// Reads the fixed start of the header (magic, version, backing file
    /// offset, its length, cluster bits): imago does not expose the
    /// cluster size or whether the header names a backing file.
    fn read(path: &Path) -> io::Result<Header> {
        let mut head = [0u8; 24];
        File::open(path)?.read_exact(&mut head)?;
        if head[..4] != QCOW2_MAGIC {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "not a qcow2 image"));
        }
        let be64 = |at: usize| u64::from_be_bytes(head[at..at + 8].try_into().unwrap());
        let cluster_bits = u32::from_be_bytes(head[20..24].try_into().unwrap());
        if !(9..=21).contains(&cluster_bits) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("qcow2 cluster bits {cluster_bits} out of range"),
            ));
        }
        Ok(Header { has_backing: be64(8) != 0, cluster_size: 1 << cluster_bits })
    }
}

/// A qcow2 image file, with the backing chain its header names.
pub struct Qcow2Device {
    image: FormatAccess<ImagoFile>,
    path: PathBuf,
    len: u64,
    cluster_size: u64,
    has_backing: bool,
    writable: bool,
    id: DeviceId,
}

impl Qcow2Device {
    /// Opens the qcow2 image at `path`, and its backing chain as its header
    /// names it (read-only, as QEMU does).
    pub fn open(path: impl AsRef<Path>, write: bool) -> Result<Self, Error> {
        let path = path.as_ref();
        let ctx = |source: io::Error| Error::Open { path: path.to_owned(), source };
        let header = Header::read(path).map_err(ctx)?;
        let id = sys::probe(&File::open(path).map_err(ctx)?, path).map_err(ctx)?.id;
        let qcow2 = Qcow2::<ImagoFile>::builder_path(path)
            .write(write)
            .open(PermissiveImplicitOpenGate::default())
            .map_err(ctx)?;
        let image = FormatAccess::new(qcow2);
        Ok(Qcow2Device {
            len: image.size(),
            image,
            path: path.to_owned(),
            cluster_size: header.cluster_size,
            has_backing: header.has_backing,
            writable: write,
            id,
        })
    }

    /// Creates a new qcow2 image of `len` bytes at `path` (64 KiB clusters,
    /// QEMU's default) and opens it for writing. With `backing`, the new
    /// image is an overlay over that file (see [`backing_reference`]).
    /// Refuses to touch a file that already exists.
    pub fn create(path: impl AsRef<Path>, len: u64, backing: Option<&Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let ctx = |source: io::Error| Error::Open { path: path.to_owned(), source };
        // The backing is checked before anything is created.
        let backing = backing.map(backing_reference).transpose()?;
        let file =
            ImagoFile::create_open(StorageCreateOptions::new().filename(path)).map_err(ctx)?;
        let mut builder = Qcow2::<ImagoFile>::create_builder(file).size(len);
        if let Some((name, format)) = backing {
            builder = builder.backing(name, format.to_owned());
        }
        if let Err(e) = builder.create() {
            // Ours since a moment ago, and not an image: leave nothing behind.
            if let Err(e) = std::fs::remove_file(path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove a failed image");
            }
            return Err(ctx(e));
        }
        Self::open(path, true)
    }

    /// The path this image was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// How a new overlay names its backing file: the absolute path (so the
/// image works from any directory) and its format, read from its content.
fn backing_reference(backing: &Path) -> Result<(String, &'static str), Error> {
    let ctx = |source: io::Error| Error::Open { path: backing.to_owned(), source };
    let absolute = backing.canonicalize().map_err(ctx)?;
    let format = if is_qcow2(&absolute).map_err(ctx)? { "qcow2" } else { "raw" };
    let name = absolute.into_os_string().into_string().map_err(|_| {
        ctx(io::Error::new(io::ErrorKind::InvalidInput, "backing path is not UTF-8"))
    })?;
    Ok((name, format))
}

/// True when the file at `path` starts with the qcow2 magic. A file shorter
/// than the magic is not qcow2.
pub fn is_qcow2(path: &Path) -> io::Result<bool> {
    let mut magic = [0u8; 4];
    match File::open(path)?.read_exact(&mut magic) {
        Ok(()) => Ok(magic == QCOW2_MAGIC),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// What imago says past the virtual end: only reached on a bug of ours,
/// since every range is checked first.
fn past_end(offset: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("qcow2 mapping at {offset} is past the end"),
    )
}

impl BlockDevice for Qcow2Device {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        check_range(self.len, offset, buf.len() as u64)?;
        self.image.read(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        check_range(self.len, offset, buf.len() as u64)?;
        if !self.writable {
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, "image opened read-only"));
        }
        self.image.write(buf, offset)
    }

    fn flush(&self) -> io::Result<()> {
        // imago's flush writes its cached metadata; sync makes it durable.
        self.image.flush()?;
        self.image.sync()
    }

    /// Zero clusters where whole ones are covered, zeroes written around
    /// them (imago's `write_zeroes`). The space is not freed even with
    /// `may_unmap`: imago frees clusters only through a discard that may
    /// not run beside other requests on the image, which the job's
    /// workers are.
    fn write_zeroes(&self, offset: u64, len: u64, _may_unmap: bool) -> io::Result<()> {
        check_range(self.len, offset, len)?;
        if len == 0 {
            return Ok(());
        }
        if !self.writable {
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, "image opened read-only"));
        }
        self.image.write_zeroes(offset, len)
    }

    fn block_status(&self, offset: u64, max_len: u64) -> io::Result<(Allocation, u64)> {
        check_range(self.len, offset, 1)?;
        let max_len = max_len.clamp(1, self.len - offset);
        let (mapping, run) = self.image.get_mapping(offset, max_len)?;
        let alloc = match mapping {
            Mapping::Zero { explicit: true, .. } => Allocation::Zero,
            Mapping::Zero { explicit: false, .. } => Allocation::Hole,
            Mapping::Eof { .. } => return Err(past_end(offset)),
            // Raw and compressed data, and whatever a later imago adds:
            // read it to know.
            _ => Allocation::Data,
        };
        Ok((alloc, run.clamp(1, max_len)))
    }

    fn has_backing(&self) -> bool {
        self.has_backing
    }

    /// This layer's own mapping: data, compressed data and explicit zero
    /// clusters are the top's (an explicit zero hides the backing, so it
    /// must be copied too); what reads through to the backing is not.
    fn top_allocation(&self, offset: u64, max_len: u64) -> io::Result<(bool, u64)> {
        check_range(self.len, offset, 1)?;
        let max_len = max_len.clamp(1, self.len - offset);
        let (mapping, run) = self.image.get_shallow_mapping(offset, max_len)?;
        let top = match mapping {
            ShallowMapping::Indirect { .. } => false,
            // Unallocated with no backing data behind it: this layer's only
            // when there is no backing at all (then the whole device is
            // the top layer, as for a raw file's holes).
            ShallowMapping::Zero { explicit: false, .. } => !self.has_backing,
            ShallowMapping::Eof { .. } => return Err(past_end(offset)),
            // Data, compressed data, explicit zeroes, and whatever a later
            // imago adds: copying too much is safe, too little is not.
            _ => true,
        };
        Ok((top, run.clamp(1, max_len)))
    }

    fn cluster_size(&self) -> Option<u64> {
        Some(self.cluster_size)
    }

    fn partial_cluster_write_fills_from_backing(&self) -> bool {
        self.has_backing
    }

    fn id(&self) -> DeviceId {
        self.id
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// Judged by QEMU: images qemu-img and qemu-io made are read and mapped as
/// QEMU maps them, and images made and written here pass `qemu-img check`.
#[cfg(all(test, unix))]
mod tests {
    use std::process::Command;

    use super::*;

    const LEN: u64 = 4 << 20;
    const CLUSTER: u64 = 64 << 10;

    fn run(program: &str, args: &[&str]) -> String {
        let out = Command::new(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{program} must be installed for this test: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn qemu_io(image: &Path, format: &str, commands: &[&str]) {
        let mut args = vec!["-f", format];
        for c in commands {
            args.extend(["-c", c]);
        }
        args.push(image.to_str().unwrap());
        run("qemu-io", &args);
    }

    /// Every run of the device's block status, coalesced.
    fn map(dev: &dyn BlockDevice) -> Vec<(u64, u64, Allocation)> {
        let mut runs: Vec<(u64, u64, Allocation)> = Vec::new();
        for run in crate::device::extents(dev, 0..dev.len()).map(Result::unwrap) {
            match runs.last_mut() {
                Some((_, len, a)) if *a == run.status => *len += run.len,
                _ => runs.push((run.offset, run.len, run.status)),
            }
        }
        runs
    }

    fn contents(dev: &dyn BlockDevice) -> Vec<u8> {
        let mut buf = vec![0; dev.len() as usize];
        dev.read_at(&mut buf, 0).unwrap();
        buf
    }

    #[test]
    fn reads_and_maps_an_image_qemu_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("q.qcow2");
        let raw = dir.path().join("q.raw");
        run("qemu-img", &["create", "-q", "-f", "qcow2", image.to_str().unwrap(), "4M"]);
        qemu_io(
            &image,
            "qcow2",
            &["write -P 0x5a 64k 128k", "write -z 1M 64k", "write -P 7 3M 1k"],
        );
        run("qemu-img", &["convert", "-O", "raw", image.to_str().unwrap(), raw.to_str().unwrap()]);

        let dev = Qcow2Device::open(&image, false).unwrap();
        assert_eq!((dev.len(), dev.cluster_size(), dev.has_backing()), (LEN, Some(CLUSTER), false));
        assert_eq!(contents(&dev), std::fs::read(&raw).unwrap());
        let m = 1 << 20;
        assert_eq!(
            map(&dev),
            vec![
                (0, CLUSTER, Allocation::Hole),
                (CLUSTER, 2 * CLUSTER, Allocation::Data),
                (3 * CLUSTER, m - 3 * CLUSTER, Allocation::Hole),
                (m, CLUSTER, Allocation::Zero),
                (m + CLUSTER, 2 * m - CLUSTER, Allocation::Hole),
                (3 * m, CLUSTER, Allocation::Data),
                (3 * m + CLUSTER, m - CLUSTER, Allocation::Hole),
            ]
        );
        assert!(dev.write_at(&[1], 0).is_err(), "read-only open wrote");
    }

    /// An overlay qemu-img made over a raw base: reads see both layers, the
    /// top allocation is only what was written to the overlay (explicit
    /// zeroes included), and block status resolves through the base.
    #[test]
    fn an_overlay_reads_through_its_backing_and_knows_its_top_layer() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.raw");
        let top = dir.path().join("top.qcow2");
        std::fs::write(&base, vec![0xEE; LEN as usize]).unwrap();
        let (b, t) = (base.to_str().unwrap(), top.to_str().unwrap());
        run("qemu-img", &["create", "-q", "-f", "qcow2", "-b", b, "-F", "raw", t]);
        qemu_io(&top, "qcow2", &["write -P 1 128k 64k", "write -z 2M 64k"]);

        let dev = Qcow2Device::open(&top, false).unwrap();
        assert!(dev.has_backing() && dev.partial_cluster_write_fills_from_backing());
        let data = contents(&dev);
        assert!(data[..128 << 10].iter().all(|b| *b == 0xEE));
        assert!(data[128 << 10..192 << 10].iter().all(|b| *b == 1));
        assert!(data[2 << 20..(2 << 20) + CLUSTER as usize].iter().all(|b| *b == 0));
        assert!(data[(2 << 20) + CLUSTER as usize..].iter().all(|b| *b == 0xEE));

        let top_runs: Vec<_> = crate::device::top_extents(&dev, 0..LEN)
            .map(Result::unwrap)
            .filter(|run| run.status)
            .map(|run| (run.offset, run.len))
            .collect();
        assert_eq!(top_runs, vec![(128 << 10, CLUSTER), (2 << 20, CLUSTER)]);
        assert_eq!(dev.block_status(0, LEN).unwrap().0, Allocation::Data, "the base is data");
        assert_eq!(dev.block_status(2 << 20, LEN).unwrap(), (Allocation::Zero, CLUSTER));
    }

    /// Written here at odd offsets, zeroed, flushed: `qemu-img check` finds
    /// no error or leak, and `qemu-img compare` finds the raw twin equal.
    #[test]
    fn an_image_written_here_is_clean_and_equal_for_qemu() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("new.qcow2");
        let raw = dir.path().join("twin.raw");
        let dev = Qcow2Device::create(&image, LEN, None).unwrap();
        let twin = crate::device::create_image(&raw, LEN).unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8 + 1).collect();
        for d in [&dev as &dyn BlockDevice, &twin] {
            d.write_at(&data, 12_345).unwrap();
            d.write_at(&data[..777], LEN - 777).unwrap();
            d.write_zeroes(100_000, 150_000, true).unwrap();
            d.flush().unwrap();
        }
        assert_eq!(contents(&dev), contents(&twin));
        drop(dev);
        let (i, r) = (image.to_str().unwrap(), raw.to_str().unwrap());
        run("qemu-img", &["check", "-q", "-f", "qcow2", i]);
        run("qemu-img", &["compare", "-q", "-f", "qcow2", "-F", "raw", i, r]);
    }

    /// The job's workers write at once, often into neighbouring pieces of
    /// one cluster: every write lands, and the metadata stays consistent.
    #[test]
    fn concurrent_writers_from_many_threads_land_and_leave_a_clean_image() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("par.qcow2");
        let dev = Qcow2Device::create(&image, LEN, None).unwrap();
        const PIECE: u64 = 20_000; // not a divisor of the cluster size
        std::thread::scope(|s| {
            for t in 0..8u64 {
                let dev = &dev;
                s.spawn(move || {
                    let mut at = t * PIECE;
                    while at + PIECE <= LEN {
                        dev.write_at(&vec![(at / PIECE % 250) as u8 + 1; PIECE as usize], at)
                            .unwrap();
                        at += 8 * PIECE;
                    }
                });
            }
        });
        dev.flush().unwrap();
        let data = contents(&dev);
        let whole = LEN / PIECE * PIECE;
        for (i, piece) in data[..whole as usize].chunks(PIECE as usize).enumerate() {
            assert!(piece.iter().all(|b| *b == (i % 250) as u8 + 1), "piece {i}");
        }
        drop(dev);
        run("qemu-img", &["check", "-q", "-f", "qcow2", image.to_str().unwrap()]);
    }

    /// A file that exists is never overwritten, and a missing backing
    /// file leaves no image behind.
    #[test]
    fn create_refuses_an_existing_file_and_cleans_up_after_a_bad_backing() {
        let dir = tempfile::tempdir().unwrap();
        let existing = dir.path().join("existing.qcow2");
        std::fs::write(&existing, b"keep me").unwrap();
        assert!(Qcow2Device::create(&existing, LEN, None).is_err());
        assert_eq!(std::fs::read(&existing).unwrap(), b"keep me");

        let new = dir.path().join("new.qcow2");
        let missing = dir.path().join("missing.raw");
        let err = Qcow2Device::create(&new, LEN, Some(&missing)).err().unwrap();
        assert!(err.to_string().contains("missing.raw"), "{err}");
        assert!(!new.exists());
    }

    #[test]
    fn only_the_magic_makes_a_file_qcow2() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short");
        std::fs::write(&short, b"QF").unwrap();
        assert!(!is_qcow2(&short).unwrap());
        let raw = dir.path().join("raw");
        std::fs::write(&raw, vec![0; 4096]).unwrap();
        assert!(!is_qcow2(&raw).unwrap());
        assert!(Qcow2Device::open(&raw, false).err().unwrap().to_string().contains("not a qcow2"));
    }
}
