//! The demo's images are removed however the demo ends: on drop when it
//! ends normally, and here when the process is told to stop (SIGTERM,
//! SIGINT: a closed terminal, Ctrl-C, a session logging out), where no
//! destructor runs. The demo writes half a gigabyte to the temp directory
//! by default; a stopped demo must not leave it there.
//!
//! Once a signal is handled by tokio it stays handled for the life of the
//! process, so the watcher is started once and always ends the process as
//! the signal would have (exit status 128 + signal number).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// The demo folders to remove, while their demos run.
fn folders() -> MutexGuard<'static, Vec<PathBuf>> {
    static FOLDERS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    FOLDERS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Removes `dir` if the process is stopped before [`forget`] is called.
/// Needs a tokio runtime (both demos run on one); without one, nothing is
/// watched.
pub fn on_signal(dir: &Path) {
    static WATCHING: OnceLock<()> = OnceLock::new();
    let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
    folders().push(dir.to_path_buf());
    WATCHING.get_or_init(|| {
        // Listening starts here, before the demo goes on, not when the
        // task first runs: a signal in between would kill it as it is.
        let stopped = stopped();
        rt.spawn(async {
            let code = stopped.await;
            for dir in folders().drain(..) {
                let _ = std::fs::remove_dir_all(dir);
            }
            std::process::exit(code);
        });
    });
}

/// `dir` is gone (its demo removed it).
pub fn forget(dir: &Path) {
    folders().retain(|d| d != dir);
}

/// Starts listening for the stop signals; the future ends with the exit
/// status the first one calls for. Called in a runtime.
#[cfg(unix)]
fn stopped() -> impl Future<Output = i32> {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        let (Ok(mut term), Ok(mut int)) = (term, int) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => 128 + 15,
            _ = int.recv() => 128 + 2,
        }
    }
}

#[cfg(not(unix))]
async fn stopped() -> i32 {
    match tokio::signal::ctrl_c().await {
        Ok(()) => 130,
        Err(_) => std::future::pending().await,
    }
}
