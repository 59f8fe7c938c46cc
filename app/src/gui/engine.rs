//! Where the window's I/O happens: a tokio runtime on background threads
//! that runs the mirror job, opens devices, shows file dialogs and verifies
//! results, so a frame never waits for a disk. Results come back over
//! channels the UI polls each frame, with a `request_repaint` to wake it.
//!
//! Devices are opened through an [`Opener`], so tests can hand the app a
//! fault-injecting target without touching the UI code.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;

use eframe::egui;
use livemirror_core::Error;
use livemirror_core::device::{BlockDevice, OpenOptions};

/// Opens the devices a job reads and writes.
pub trait Opener: Send + Sync {
    /// Opens `path`, read-only unless `write`, as the user is allowed to:
    /// quick, never prompts (the Setup screen's inline check).
    fn open(&self, path: &Path, write: bool) -> Result<Arc<dyn BlockDevice>, Error>;
    /// Opens `path` for the job with `opts` (the target's cache mode among
    /// them), on the engine thread: where the user may not open a disk, this
    /// may ask for authorization and wait for it.
    fn open_for_job(&self, path: &Path, opts: OpenOptions) -> Result<Arc<dyn BlockDevice>, String> {
        self.open(path, opts.writes()).map_err(|e| e.to_string())
    }
    /// Creates a new sparse image of `len` bytes at `path`, open for writing
    /// with `opts`.
    fn create(
        &self,
        path: &Path,
        len: u64,
        opts: OpenOptions,
    ) -> Result<Arc<dyn BlockDevice>, Error> {
        Ok(Arc::new(opts.create(path, len)?))
    }
}

/// Files and disks, as they are.
pub struct FileOpener;

impl Opener for FileOpener {
    fn open(&self, path: &Path, write: bool) -> Result<Arc<dyn BlockDevice>, Error> {
        Ok(Arc::new(OpenOptions::new().write(write).open(path)?))
    }

    fn open_for_job(&self, path: &Path, opts: OpenOptions) -> Result<Arc<dyn BlockDevice>, String> {
        crate::platform::privileged::open(path, opts).map_err(|e| e.to_string())
    }
}

/// The background runtime.
pub struct Engine {
    runtime: tokio::runtime::Runtime,
}

/// A result still being worked out on the engine.
pub struct Pending<T>(mpsc::Receiver<T>);

impl<T> Pending<T> {
    /// The result, once it is there (never blocks).
    pub fn poll(&self) -> Option<T> {
        self.0.try_recv().ok()
    }

    /// Waits for the result: only on the engine, never on the UI thread.
    /// `None` if the work was abandoned.
    pub fn wait(self) -> Option<T> {
        self.0.recv().ok()
    }
}

impl Engine {
    pub fn new() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("livemirror-engine")
            .enable_all()
            .build()?;
        Ok(Engine { runtime })
    }

    /// Runs blocking work (device I/O) off the UI thread; the UI is woken
    /// when the result is ready.
    pub fn blocking<T: Send + 'static>(
        &self,
        ctx: &egui::Context,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Pending<T> {
        let (tx, rx) = mpsc::channel();
        let ctx = ctx.clone();
        self.runtime.spawn_blocking(move || {
            let _ = tx.send(work());
            ctx.request_repaint();
        });
        Pending(rx)
    }

    /// Runs a future (a file dialog, a command) on the engine.
    pub fn spawn<T: Send + 'static>(
        &self,
        ctx: &egui::Context,
        work: impl Future<Output = T> + Send + 'static,
    ) -> Pending<T> {
        let (tx, rx) = mpsc::channel();
        let ctx = ctx.clone();
        self.runtime.spawn(async move {
            let _ = tx.send(work.await);
            ctx.request_repaint();
        });
        Pending(rx)
    }
}
