//! Unfinished jobs: where their state files live, and whether a new job of
//! the same pair goes on from one — for `clone` and `serve --mirror-to`.
//!
//! A state file is used only when everything still matches: the same
//! source and target (path, size, storage), the chunk size, the bytes the
//! job mirrors; otherwise it is discarded with the reason and the job
//! starts over, which is always safe. A source that may have been written
//! while no livemirror tracked it (a disk, an NBD export, a file modified
//! since or just before the last save) gets the chunks the map calls clean
//! compared first (see [`livemirror_core::persist`]); only a source known
//! untouched has its map trusted as is, after the target's fingerprint
//! still matches.

use std::path::{Path, PathBuf};

use livemirror_core::device::BlockDevice;
use livemirror_core::job::{self, MirrorOptions, Persist, Resume};
use livemirror_core::live::WriteLog;
use livemirror_core::persist::{self, Identity, SavedJob, Side, SinceComplete};

use crate::platform::privileged;
use crate::text::human;

/// Overrides where state files live (tests, or a disk with room).
pub const STATE_DIR_ENV: &str = "LIVEMIRROR_STATE_DIR";

/// The directory of state files: `$LIVEMIRROR_STATE_DIR`, else the XDG
/// state directory (`~/.local/state/livemirror/jobs`; the local data
/// directory where the platform has no state directory).
pub fn state_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(STATE_DIR_ENV).filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    let dirs = directories::ProjectDirs::from("", "", "livemirror")?;
    let base = dirs.state_dir().unwrap_or(dirs.data_local_dir());
    Some(base.join("jobs"))
}

/// The pair a job is about to copy.
pub struct Pair<'a> {
    pub source_path: &'a Path,
    pub source: &'a dyn BlockDevice,
    pub target_path: &'a Path,
    pub target: &'a dyn BlockDevice,
}

/// What was decided.
#[derive(Default)]
pub struct Plan {
    /// Where the job keeps its state, and the saved map it starts from.
    pub persist: Option<Persist>,
    /// What to tell the user, a line each.
    pub lines: Vec<String>,
    /// Set when the job goes on from a saved map.
    pub resumed: Option<Resumed>,
}

/// A resumed job's starting point.
#[derive(Debug, Clone, Copy)]
pub struct Resumed {
    /// Bytes the saved map says are left, of the `total` the job mirrors.
    pub remaining: u64,
    pub total: u64,
    /// The chunks called copied are compared before they are trusted.
    pub comparing: bool,
}

impl Resumed {
    /// `resuming: 1.2 GiB of 4.0 GiB left`.
    pub fn line(&self) -> String {
        format!("resuming: {} of {} left", human(self.remaining), human(self.total))
    }
}

/// How a job treats the pair's saved state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use<'a> {
    /// Go on from an unfinished job.
    Resume,
    /// `--resync`: copy what a completed job's served target took since
    /// (see [`livemirror_core::persist::SinceComplete`]), else compare.
    Resync,
    /// Not used, for the reason given (`--restart`, a target just created).
    StartOver(&'a str),
}

/// Finds the pair's saved job and decides whether this job goes on from it.
/// May set `options.granularity` to the saved job's.
pub fn plan(pair: &Pair, options: &mut MirrorOptions, how: Use) -> Plan {
    plan_in(state_dir().as_deref(), pair, options, how)
}

/// [`plan`] with the state files in `dir` (the window's tests keep theirs
/// apart).
pub fn plan_in(dir: Option<&Path>, pair: &Pair, options: &mut MirrorOptions, how: Use) -> Plan {
    let mut plan = Plan::default();
    let Some(dir) = dir else {
        plan.lines.push("no state directory here: this job could not be resumed".into());
        return plan;
    };
    let identity = identify(pair);
    let path = dir.join(persist::file_name(&identity.source.path, &identity.target.path));
    let found = path.exists();
    let resume = match (found, how) {
        (false, _) => None,
        (true, Use::StartOver(why)) => {
            discard(&path, &format!("not used ({why})"), &mut plan.lines);
            None
        }
        (true, Use::Resync) => match persist::load(&path) {
            Err(e) => {
                discard(&path, &e.to_string(), &mut plan.lines);
                None
            }
            Ok(saved) => match written_since(&saved, &identity, pair, options) {
                Err(why) => {
                    discard(&path, &format!("{why}; --resync compares"), &mut plan.lines);
                    None
                }
                Ok(()) => {
                    options.granularity = Some(saved.header.granularity);
                    plan.lines.push(format!(
                        "re-sync: {} written to the pair since the mirror completed (from its state file)",
                        human(saved.remaining())
                    ));
                    Some(Resume { dirty: saved.dirty, compare_clean: false })
                }
            },
        },
        (true, Use::Resume) => match persist::load(&path) {
            Err(e) => {
                discard(&path, &e.to_string(), &mut plan.lines);
                None
            }
            Ok(saved) if saved.header.since_complete.is_some() => {
                let why = "that job completed (--resync copies what was written since)";
                discard(&path, why, &mut plan.lines);
                None
            }
            Ok(saved) => match fits(&saved, &identity, pair, options) {
                Err(why) => {
                    discard(&path, &why.to_string(), &mut plan.lines);
                    None
                }
                Ok(compare_clean) => {
                    options.granularity = Some(saved.header.granularity);
                    let resumed = Resumed {
                        remaining: saved.remaining(),
                        total: saved.header.copy_len,
                        comparing: compare_clean,
                    };
                    plan.lines.push(resumed.line());
                    if compare_clean {
                        plan.lines.push(format!(
                            "the source may have been written while livemirror was not \
                             tracking it: comparing the {} already copied before going on",
                            human(resumed.total - resumed.remaining)
                        ));
                    }
                    plan.resumed = Some(resumed);
                    Some(Resume { dirty: saved.dirty, compare_clean })
                }
            },
        },
    };
    plan.persist = Some(Persist { path, identity, resume, write_log: None });
    plan
}

/// Whether a completed job's file says exactly what was written to the pair
/// since: its served target stopped cleanly, and neither file has been
/// modified since (both modification times as recorded then, and already
/// [`persist::QUIET_BEFORE_SAVE`] old: a later write changes them).
fn written_since(
    saved: &SavedJob,
    now: &Identity,
    pair: &Pair,
    options: &MirrorOptions,
) -> Result<(), Mismatch> {
    let h = &saved.header;
    let Some(since) = h.since_complete else {
        return Err(Mismatch::NotCompleted);
    };
    if since.serving {
        return Err(Mismatch::StillServed);
    }
    same_pair(saved, now, pair, options)?;
    if !h.source_unchanged_since(pair.source_path) {
        return Err(Mismatch::WrittenSince("source"));
    }
    if !h.unchanged_since(since.target_mtime_ns, pair.target_path) {
        return Err(Mismatch::WrittenSince("target"));
    }
    Ok(())
}

/// Records in a completed job's file what its served target took since
/// (`write_log`), once serving has stopped: the target is flushed first,
/// and the file is written when both sides' modification times are
/// [`persist::QUIET_BEFORE_SAVE`] old (waiting for that if need be), so a
/// later `clone SRC DST --resync` copies only those chunks. Returns the
/// line to print. Blocking.
pub fn finish_serving(
    path: &Path,
    log: &WriteLog,
    target: &dyn BlockDevice,
    source_path: &Path,
    target_path: &Path,
) -> Result<String, NotRecorded> {
    let mut saved = persist::load(path)?;
    let Some(written) = log.snapshot() else {
        return Err(NotRecorded::NotCompleted);
    };
    let source_mtime = persist::file_mtime_ns(source_path);
    if source_mtime.is_none() || source_mtime != saved.header.source_mtime_ns {
        if let Err(e) = persist::remove(path) {
            tracing::warn!("cannot remove {}: {e}", path.display());
        }
        return Err(NotRecorded::SourceWritten);
    }
    target.flush().map_err(NotRecorded::Flush)?;
    let target_mtime = persist::file_mtime_ns(target_path);
    let newest = source_mtime.max(target_mtime).unwrap_or(0);
    let quiet = persist::QUIET_BEFORE_SAVE.as_nanos() as u64;
    let wait_ms = (newest + quiet).div_ceil(1_000_000).saturating_sub(persist::now_ms());
    std::thread::sleep(std::time::Duration::from_millis(wait_ms));
    let h = &mut saved.header;
    h.since_complete = Some(SinceComplete { serving: false, target_mtime_ns: target_mtime });
    h.saved_at_ms = persist::now_ms();
    h.samples = Vec::new();
    saved.dirty = written;
    persist::save(path, &saved).map_err(NotRecorded::Save)?;
    Ok(format!(
        "{} written to the target since the mirror completed, recorded: \
         `livemirror clone {} {} --resync` copies only that",
        human(saved.remaining()),
        source_path.display(),
        target_path.display()
    ))
}

/// An unfinished job's state file, as the window lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Unfinished {
    pub file: PathBuf,
    pub source: PathBuf,
    pub target: PathBuf,
    pub options: MirrorOptions,
    /// Bytes the map says are left, of `total`.
    pub remaining: u64,
    pub total: u64,
}

/// The unfinished jobs in `dir`, oldest first: files that read whole and
/// belong to a job that did not complete (a file that cannot be read is
/// left for the job of its pair to discard, saying why).
pub fn unfinished(dir: &Path) -> Vec<Unfinished> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut jobs: Vec<(u64, Unfinished)> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "state"))
        .filter_map(|file| {
            let saved = persist::load(&file).ok().filter(|s| s.header.since_complete.is_none())?;
            let h = &saved.header;
            let job = Unfinished {
                source: PathBuf::from(&h.identity.source.path),
                target: PathBuf::from(&h.identity.target.path),
                options: h.options.clone(),
                remaining: saved.remaining(),
                total: h.copy_len,
                file,
            };
            Some((h.saved_at_ms, job))
        })
        .collect();
    jobs.sort_by_key(|(at, _)| *at);
    jobs.into_iter().map(|(_, j)| j).collect()
}

fn discard(path: &Path, why: &str, lines: &mut Vec<String>) {
    let gone = match persist::remove(path) {
        Ok(()) => "discarded",
        Err(_) => "ignored (it could not be removed)",
    };
    lines.push(format!("unfinished job's state {}: {why}; {gone}, starting over", path.display()));
}

/// Whether the saved job is this one, and (if so) whether the chunks its
/// map calls clean must be compared first.
fn fits(
    saved: &SavedJob,
    now: &Identity,
    pair: &Pair,
    options: &MirrorOptions,
) -> Result<bool, Mismatch> {
    same_pair(saved, now, pair, options)?;
    let h = &saved.header;
    let compare_clean = !h.source_unchanged_since(pair.source_path);
    // A source known untouched: the map is trusted as is, so the target
    // must still hold what the map calls copied.
    if !compare_clean {
        match persist::samples_match(pair.target, h.granularity, h.copy_len, &h.samples) {
            Ok(true) => {}
            Ok(false) => return Err(Mismatch::TargetChanged),
            Err(e) => return Err(Mismatch::TargetUnreadable(e)),
        }
    }
    Ok(compare_clean)
}

/// Whether the saved job is of this pair: the same paths, sizes and
/// storage (inode, disk serial, export), chunk size and mirrored length.
fn same_pair(
    saved: &SavedJob,
    now: &Identity,
    pair: &Pair,
    options: &MirrorOptions,
) -> Result<(), Mismatch> {
    let h = &saved.header;
    let was = &h.identity;
    if was.source.path != now.source.path || was.target.path != now.target.path {
        let (from, to) = (was.source.path.clone(), was.target.path.clone());
        return Err(Mismatch::OtherPair { from, to });
    }
    for (side, then, now) in
        [("source", &was.source, &now.source), ("target", &was.target, &now.target)]
    {
        if then.len != now.len {
            return Err(Mismatch::Resized { side, then: then.len, now: now.len });
        }
        if then.key != now.key {
            return Err(Mismatch::OtherStorage {
                side,
                then: then.key.clone(),
                now: now.key.clone(),
            });
        }
    }
    if let Some(asked) = options.granularity.filter(|g| *g != h.granularity) {
        return Err(Mismatch::Granularity { saved: h.granularity, asked });
    }
    if let Ok(fit) = job::check_pair(pair.source, pair.target)
        && fit.copy_len != h.copy_len
    {
        return Err(Mismatch::CopyLen { then: h.copy_len, now: fit.copy_len });
    }
    Ok(())
}

/// Why a saved state is not this job's to go on from (said, and the file
/// discarded).
#[derive(Debug, thiserror::Error)]
enum Mismatch {
    #[error("it is an unfinished job's, not a completed one's")]
    NotCompleted,
    #[error(
        "its target was still being served when it was saved (or the server was killed): \
         writes may be missing from it"
    )]
    StillServed,
    #[error(
        "the {0} may have been written since (it is not a file, or its modification time changed)"
    )]
    WrittenSince(&'static str),
    #[error("the target was written since the job stopped")]
    TargetChanged,
    #[error("the target could not be read to check it: {0}")]
    TargetUnreadable(std::io::Error),
    #[error("it belongs to another pair ({from} → {to})")]
    OtherPair { from: String, to: String },
    #[error("the {side} was resized ({} then, {} now)", human(*then), human(*now))]
    Resized { side: &'static str, then: u64, now: u64 },
    #[error("the {side} is another file or disk than the job's ({then} then, {now} now)")]
    OtherStorage { side: &'static str, then: String, now: String },
    #[error("it copies in chunks of {} (--granularity {} was asked)", human(*saved), human(*asked))]
    Granularity { saved: u64, asked: u64 },
    #[error("it mirrored {} of the source, this job would mirror {}", human(*then), human(*now))]
    CopyLen { then: u64, now: u64 },
}

/// Why what a served target took after Complete was not recorded (a later
/// `--resync` then compares).
#[derive(Debug, thiserror::Error)]
pub enum NotRecorded {
    #[error("its state file: {0}")]
    Load(#[from] persist::LoadError),
    #[error("the mirror did not complete")]
    NotCompleted,
    #[error(
        "the source is not a file, or was written around livemirror while the target was \
         served: a later --resync compares"
    )]
    SourceWritten,
    #[error("flushing the target: {0}")]
    Flush(std::io::Error),
    #[error("saving its state file: {0}")]
    Save(std::io::Error),
}

fn identify(pair: &Pair) -> Identity {
    let side = |path: &Path, dev: &dyn BlockDevice| Side {
        path: canonical(path),
        len: dev.len(),
        key: persist::storage_key(&dev.id()),
    };
    Identity {
        source: side(pair.source_path, pair.source),
        target: side(pair.target_path, pair.target),
    }
}

/// The path a pair is known by: canonical for a file or disk (so
/// `./a.img` and `/home/me/a.img` are one job), an NBD URI as given.
fn canonical(path: &Path) -> String {
    if privileged::nbd_uri(path).is_some() {
        return path.display().to_string();
    }
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()).display().to_string()
}
