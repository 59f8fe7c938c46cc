//! The window's log file: `livemirror.YYYY-MM-DD.log` in the XDG state
//! directory (`~/.local/state/livemirror/logs`; the local data directory
//! where the platform has none, `%LOCALAPPDATA%` on Windows), or in
//! `$LIVEMIRROR_STATE_DIR/logs` when that is set. A new file each day;
//! only the last [`MAX_FILES`] are kept, older ones are removed when the
//! window opens and at each new day. Written on a thread of its own.

use std::path::{Path, PathBuf};

use tracing_appender::non_blocking::{NonBlocking, WorkerGuard};
use tracing_appender::rolling::{RollingFileAppender, Rotation};

use crate::session::resume::STATE_DIR_ENV;

/// Days of logs kept: a week.
pub const MAX_FILES: usize = 7;
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
    Ok(tracing_appender::non_blocking(file))
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
