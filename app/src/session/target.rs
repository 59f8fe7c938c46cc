//! The job's target: whether it is already there, and a new image file
//! made for a job that must not outlive the job's refusal.
//!
//! Every face (clone, serve, the window) creates a missing target file
//! before it asks the engine to start; when the engine (or anything before
//! it) refuses the pair, the file made a moment ago is removed again, so a
//! refused job leaves nothing behind. [`Created`] is that promise, kept on
//! every early return by `Drop`.

use std::path::{Path, PathBuf};

use crate::platform::privileged;

/// True when `path` names something to open rather than a file to create:
/// an NBD URI, or a path that exists.
pub fn exists(path: &Path) -> bool {
    privileged::nbd_uri(path).is_some() || path.exists()
}

/// A target file this run created, removed again on drop unless the job
/// that needs it started ([`Created::keep`]). Holds nothing for a target
/// that existed before.
#[derive(Debug, Default)]
#[must_use = "dropping it removes the file just created"]
pub struct Created(Option<PathBuf>);

impl Created {
    /// `path` was just created for this job.
    pub fn new(path: &Path) -> Created {
        Created(Some(path.to_owned()))
    }

    /// The target existed: nothing to remove.
    pub fn existing() -> Created {
        Created(None)
    }

    /// Whether this run made the target.
    pub fn is_new(&self) -> bool {
        self.0.is_some()
    }

    /// The job started: the file stays whatever happens next.
    pub fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "removed the target made for a refused job")
                }
                Err(e) => tracing::warn!(
                    path = %path.display(),
                    "the target made for a refused job could not be removed: {e}"
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_target_goes_unless_kept_and_an_existing_one_is_never_touched() {
        let dir = tempfile::tempdir().unwrap();
        let refused = dir.path().join("refused.img");
        std::fs::write(&refused, b"x").unwrap();
        drop(Created::new(&refused));
        assert!(!refused.exists(), "a refused job's new target is removed");

        let started = dir.path().join("started.img");
        std::fs::write(&started, b"x").unwrap();
        let created = Created::new(&started);
        assert!(created.is_new());
        created.keep();
        assert!(started.exists(), "a started job's target stays");

        let before = dir.path().join("before.img");
        std::fs::write(&before, b"x").unwrap();
        let existing = Created::existing();
        assert!(!existing.is_new());
        drop(existing);
        assert!(before.exists(), "a target that existed is never removed");
        assert!(exists(&before) && !exists(&refused));
    }
}
