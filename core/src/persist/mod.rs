//! A job's state on disk, so that a long job survives a crash, a kill or a
//! lost cable: the dirty map, the options, and who the source and target
//! are. `livemirror clone SRC DST` run again finds it and copies only what
//! is left.
//!
//! **The crash rule** (dm-clone's: commit metadata on flush). A chunk is
//! clean in a saved map only once its copy is flushed on the target. A save
//! takes a snapshot of dirty ∪ in-flight chunks *first*, then flushes the
//! target, then writes the file: every copy that finished before the
//! snapshot is on the medium before the file says so, and every copy still
//! running is saved as dirty. A crash at any moment leaves a file that
//! calls clean only what is on the target (or the previous such file).
//!
//! **Crash-safe writing.** The file is written whole to `NAME.tmp`, synced,
//! renamed over `NAME`, and the directory synced: a reader sees the old
//! file or the new one, never half of one.
//!
//! **Format** (version [`VERSION`], little-endian): see [`format`]. A file
//! that is truncated, damaged (its CRC-32 does not match), of another
//! version or not a state file at all is refused with the reason, never
//! trusted.
//!
//! What the file cannot know is a write made to the source after its last
//! save (livemirror killed mid-write, or another program writing the source
//! while livemirror was not running): whoever resumes decides, from
//! [`Header::source_mtime_ns`] and the kind of source, whether the chunks
//! the map calls clean must be compared before they are trusted (see
//! [`Header::source_unchanged_since`]).

mod fingerprint;
pub mod format;

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use fingerprint::{Sample, samples_match, take_samples};
pub use format::{LoadError, VERSION};

use crate::bitmap::DirtyBitmap;
use crate::device::DeviceId;
use crate::options::MirrorOptions;
use crate::state::JobState;

/// One side of the job, as it was when the job started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Side {
    /// The path (canonical when it is one) or URI it was opened by.
    pub path: String,
    /// Its size in bytes.
    pub len: u64,
    /// Its storage, from [`storage_key`]: a file's device and inode, a
    /// disk's number and range, an NBD export's address.
    pub key: String,
}

/// Who the job copies from and onto.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub source: Side,
    pub target: Side,
}

/// Everything in a state file but the map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub identity: Identity,
    pub options: MirrorOptions,
    /// The job's chunk size and the bytes it mirrors (its map's geometry).
    pub granularity: u64,
    pub copy_len: u64,
    /// The job's state when this was saved.
    pub state: JobState,
    /// When this was saved, in milliseconds since the Unix epoch.
    pub saved_at_ms: u64,
    /// The source file's modification time, read before the map's snapshot
    /// (nanoseconds since the epoch); none for a disk or an NBD export.
    pub source_mtime_ns: Option<u64>,
    /// A fingerprint of the target: a few chunks the map calls clean.
    pub samples: Vec<Sample>,
    /// Set when the job completed and its target went on being served
    /// (`serve --mirror-to`): the map is then what was written to the
    /// target since, what a re-sync of the pair must copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_complete: Option<SinceComplete>,
}

/// What a completed, still-served job's file knows of the writes since.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinceComplete {
    /// Still serving when saved (or killed while it was): writes may be
    /// missing from the map, which must then not be trusted.
    pub serving: bool,
    /// The target's modification time when serving stopped (a file).
    pub target_mtime_ns: Option<u64>,
}

/// How long before a save the source must have last been modified for the
/// save to prove that no write is missing from its map: a write lands on
/// the source a moment before the live source marks it dirty, and the file
/// system's clock for modification times is coarse (a jiffy).
pub const QUIET_BEFORE_SAVE: Duration = Duration::from_secs(2);

impl Header {
    /// True when the source at `path` is a regular file not modified since
    /// this was saved, and was not modified in the moments before the save
    /// either: then no write to it can be missing from the saved map, and
    /// the chunks it calls clean need no comparison.
    pub fn source_unchanged_since(&self, path: &Path) -> bool {
        self.unchanged_since(self.source_mtime_ns, path)
    }

    /// [`source_unchanged_since`](Self::source_unchanged_since) for a file
    /// whose modification time `saved` was read for this save.
    pub fn unchanged_since(&self, saved: Option<u64>, path: &Path) -> bool {
        let (Some(saved), Some(now)) = (saved, file_mtime_ns(path)) else {
            return false;
        };
        let quiet = QUIET_BEFORE_SAVE.as_nanos() as u64;
        saved == now && saved.saturating_add(quiet) <= self.saved_at_ms.saturating_mul(1_000_000)
    }
}

/// A saved job: its header and its dirty map (dirty ∪ in flight when saved).
#[derive(Debug, Clone)]
pub struct SavedJob {
    pub header: Header,
    pub dirty: DirtyBitmap,
}

impl SavedJob {
    /// Bytes still to copy, by the map.
    pub fn remaining(&self) -> u64 {
        let (g, len, chunks) = (self.header.granularity, self.header.copy_len, self.dirty.len());
        // The last chunk is short when the length is not a multiple.
        let short =
            if chunks > 0 && self.dirty.is_dirty(chunks - 1) { chunks * g - len } else { 0 };
        self.dirty.count() * g - short
    }
}

/// Writes `job` to `path` crash-safely (new file, sync, rename, sync the
/// directory).
pub fn save(path: &Path, job: &SavedJob) -> io::Result<()> {
    write_atomically(path, &format::encode(job))
}

/// Reads the state file at `path`, refusing anything not whole and valid.
pub fn load(path: &Path) -> Result<SavedJob, LoadError> {
    format::decode(&fs::read(path).map_err(LoadError::Io)?)
}

/// Removes the state file at `path`; one that is already gone is fine.
pub fn remove(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    // The rename itself must survive a crash too (POSIX: sync the directory).
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// The state file's name for a pair: one file per source and target, so
/// running the same command again finds it. Two CRC-32s of the paths (in
/// both orders): a name, not a proof; the identity inside is checked.
pub fn file_name(source: &str, target: &str) -> String {
    let a = crc32fast::hash(format!("{source}\0{target}").as_bytes());
    let b = crc32fast::hash(format!("{target}\0{source}").as_bytes());
    format!("{a:08x}{b:08x}.state")
}

/// A device's storage as a stable string, for [`Side::key`]: a file's
/// filesystem and inode; a disk's serial number where it reports one (else
/// its device number) and the byte range on it; a loop device's backing
/// file; an NBD export's address (its URI is the side's path). A qcow2
/// image is its file, its virtual size the side's length.
pub fn storage_key(id: &DeviceId) -> String {
    key_with_serial(id, crate::device::disk_serial(id).as_deref())
}

fn key_with_serial(id: &DeviceId, serial: Option<&str>) -> String {
    match (id, serial) {
        (DeviceId::File { dev, ino }, _) => format!("file:{dev}:{ino}"),
        (DeviceId::Block { start, len, backing: Some((dev, ino)), .. }, _) => {
            format!("loop of file:{dev}:{ino}:{start}+{len}")
        }
        (DeviceId::Block { start, len, .. }, Some(serial)) => {
            format!("disk serial {serial}:{start}+{len}")
        }
        (DeviceId::Block { disk, start, len, .. }, None) => format!("disk:{disk}:{start}+{len}"),
        (DeviceId::Memory(n), _) => format!("memory:{n}"),
        (DeviceId::Network(h), _) => format!("nbd:{h:016x}"),
    }
}

/// A regular file's modification time in nanoseconds since the epoch;
/// none for anything else (a disk has no useful one).
pub fn file_mtime_ns(path: &Path) -> Option<u64> {
    let meta = fs::metadata(path).ok().filter(|m| m.is_file())?;
    let since = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
    u64::try_from(since.as_nanos()).ok()
}

/// Now, in milliseconds since the epoch.
pub fn now_ms() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
