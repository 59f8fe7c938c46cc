//! The window's log file: `livemirror.YYYY-MM-DD.log` in the XDG state
//! directory (`~/.local/state/livemirror/logs`; the local data directory
//! where the platform has none, `%LOCALAPPDATA%` on Windows), or in
//! `$LIVEMIRROR_STATE_DIR/logs` when that is set. A new file each day;
//! only the last [`MAX_FILES`] are kept, older ones are removed when the
//! window opens and at each new day. A day's file stops growing at
//! [`MAX_DAY_BYTES`] (a `RUST_LOG=trace` left on cannot fill the disk), so
//! the folder holds at most `MAX_FILES × MAX_DAY_BYTES`. Written on a
//! thread of its own.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing_appender::non_blocking::{NonBlocking, WorkerGuard};
use tracing_appender::rolling::{RollingFileAppender, Rotation};

use crate::session::resume::STATE_DIR_ENV;

/// Days of logs kept: a week.
pub const MAX_FILES: usize = 7;
/// Bytes one day's file may reach; what comes after is dropped, said once.
pub const MAX_DAY_BYTES: u64 = 32 << 20;
const PREFIX: &str = "livemirror";
const SUFFIX: &str = "log";

/// Where the log files go, if there is a home to put them in.
pub fn dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(STATE_DIR_ENV).filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("logs"));
    }
    let dirs = directories::ProjectDirs::from("", "", "livemirror")?;
    Some(dirs.state_dir().unwrap_or(dirs.data_local_dir()).join("logs"))
}

/// The rotating file in `dir` (created if missing): daily, the last
/// [`MAX_FILES`] kept (pruned now, and at each rotation).
pub fn appender(dir: &Path) -> std::io::Result<RollingFileAppender> {
    // Before the builder, which looks for old files to prune first.
    std::fs::create_dir_all(dir)?;
    RollingFileAppender::builder()
        .rotation(Rotation::DAILY)
        .filename_prefix(PREFIX)
        .filename_suffix(SUFFIX)
        .max_log_files(MAX_FILES)
        .build(dir)
        .map_err(std::io::Error::other)
}

/// The log file, written on a thread of its own (so that no frame waits
/// for a disk); the guard flushes it when dropped.
pub fn open() -> std::io::Result<(NonBlocking, WorkerGuard)> {
    let dir = dir().ok_or_else(|| std::io::Error::other("no home directory"))?;
    let file =
        appender(&dir).map_err(|e| std::io::Error::other(format!("{}: {e}", dir.display())))?;
    Ok(tracing_appender::non_blocking(Capped::new(file, &dir, MAX_DAY_BYTES)))
}

/// A day's log file that stops growing at a limit. The rolling appender
/// starts a file per UTC day; this counts what the day's file holds (what
/// earlier runs wrote that day too) and drops writes past `limit`, with
/// one line saying so.
struct Capped<W> {
    inner: W,
    dir: PathBuf,
    limit: u64,
    /// The UTC day counted, and the bytes its file holds.
    day: u64,
    held: u64,
}

impl<W: Write> Capped<W> {
    fn new(inner: W, dir: &Path, limit: u64) -> Self {
        Capped { inner, dir: dir.to_owned(), limit, day: u64::MAX, held: 0 }
    }

    /// Days since 1970-01-01 (UTC), when the appender starts a file.
    fn today() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() / 86_400)
    }

    /// At a new day: what that day's file already holds.
    fn count_from(&mut self, day: u64) {
        let name = format!("{PREFIX}.{}.{SUFFIX}", civil_date(day));
        self.held = std::fs::metadata(self.dir.join(name)).map_or(0, |m| m.len());
        self.day = day;
    }
}

impl<W: Write> Write for Capped<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let day = Self::today();
        if day != self.day {
            self.count_from(day);
        }
        let len = buf.len() as u64;
        if self.held + len <= self.limit {
            self.held += len;
            return self.inner.write_all(buf).map(|()| buf.len());
        }
        if self.held < self.limit {
            // Said once: every later write of the day is past the limit.
            self.held = self.limit;
            let note = format!("(log capped at {} MiB for today)\n", self.limit >> 20);
            self.inner.write_all(note.as_bytes())?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// `YYYY-MM-DD` of a day counted from 1970-01-01, as the appender names
/// its files (the proleptic Gregorian calendar, by Howard Hinnant's
/// days-to-civil algorithm).
fn civil_date(days: u64) -> String {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    fn logs(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn days_are_named_as_the_appender_names_its_files() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(11_016), "2000-02-29");
        assert_eq!(civil_date(20_794), "2026-12-07");
        assert_eq!(civil_date(20_819), "2027-01-01");
    }

    /// A day's file stops at the limit, counting what an earlier run wrote
    /// that day, and says so once.
    #[test]
    fn a_days_file_stops_growing_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let today = Capped::<Vec<u8>>::today();
        let name = format!("{PREFIX}.{}.{SUFFIX}", civil_date(today));
        std::fs::write(dir.path().join(name), [b'x'; 900]).unwrap();
        let mut capped = Capped::new(Vec::new(), dir.path(), 1000);
        capped.write_all(&[b'a'; 60]).unwrap();
        capped.write_all(&[b'b'; 60]).unwrap();
        capped.write_all(&[b'c'; 10]).unwrap();
        let out = String::from_utf8(capped.inner).unwrap();
        assert_eq!(out, format!("{}(log capped at 0 MiB for today)\n", "a".repeat(60)));
    }

    /// The folder is made when it is missing (the first run).
    #[test]
    fn a_missing_folder_is_made() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("state/logs");
        appender(&dir).unwrap();
        let names = logs(&dir);
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(names[0].starts_with("livemirror.") && names[0].ends_with(".log"), "{names:?}");
    }

    /// Today's file is created and written; of the older days' files
    /// [`MAX_FILES`] are kept in all with today's; other files in the
    /// folder are left alone.
    #[test]
    fn the_log_file_is_created_and_old_ones_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        // Ten older days.
        let old: Vec<String> = (1..=10).map(|d| format!("livemirror.2020-01-{d:02}.log")).collect();
        for name in &old {
            std::fs::write(dir.path().join(name), b"old\n").unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), b"mine").unwrap();
        let file = appender(dir.path()).unwrap();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::fmt::layer().with_ansi(false).with_writer(file));
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(target: "livemirror::job", "written to the file");
        });
        let names = logs(dir.path());
        let today: Vec<&String> =
            names.iter().filter(|n| n.starts_with("livemirror.") && !old.contains(n)).collect();
        assert_eq!(today.len(), 1, "{names:?}");
        let text = std::fs::read_to_string(dir.path().join(today[0])).unwrap();
        assert!(text.contains("WARN livemirror::job: written to the file"), "{text}");
        // Which old ones go is by creation time, which the file system
        // keeps too coarsely to tell these apart: only the count is known.
        let kept = names.iter().filter(|n| old.contains(n)).count();
        assert_eq!(kept, MAX_FILES - 1, "{names:?}");
        assert!(names.contains(&"notes.txt".to_string()));
    }
}
