//! A compressed image written onto a target from the window: no mirror
//! job (a stream cannot be read at random), but [`flash::flash`] on one of
//! the engine's blocking threads, with its progress published to the UI
//! through a mutex and a cancel flag the Cancel button sets. The target is
//! opened as the window opens a mirror job's ([`Opener::open_for_job`]),
//! or made by the flash when it does not exist, and removed again if the
//! flash fails.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use eframe::egui;
use livemirror_core::device::ImageFormat;
use livemirror_core::flash::{self, Compression, FlashError, Flashed, Progress, Target};
use livemirror_core::job::CopyMode;

use crate::gui::engine::{Engine, Opener, Pending};
use crate::logs;
use crate::session::Cache;
use crate::session::flash::{self as session_flash, FlashTargetError};
use crate::text::flash::Left;

/// What Start asks for when the source is a compressed image.
#[derive(Debug, Clone)]
pub struct FlashRequest {
    pub source: PathBuf,
    /// A path that does not exist yet becomes a new raw image.
    pub target: PathBuf,
    pub format: Compression,
}

/// A finished flash: verified, and what was fixed in its partition table.
pub struct Verified {
    pub flashed: Flashed,
    pub table: Option<String>,
}

/// Why a flash did not write a verified image, and what it left.
#[derive(Debug, thiserror::Error)]
pub enum FlashFailed {
    #[error("target: {0}")]
    Target(#[from] FlashTargetError),
    #[error(transparent)]
    Flash(#[from] FlashError),
}

impl FlashFailed {
    pub fn cancelled(&self) -> bool {
        matches!(self, FlashFailed::Flash(FlashError::Cancelled { .. }))
    }
}

/// One flash as the window follows it.
pub struct Flashing {
    pub request: FlashRequest,
    progress: Arc<Mutex<Progress>>,
    cancel: Arc<AtomicBool>,
    result: Pending<Result<Verified, (FlashFailed, Left)>>,
    /// The result, once it has come.
    pub ended: Option<Result<Verified, (FlashFailed, Left)>>,
}

impl Flashing {
    /// Starts the flash on the engine; the UI is woken as it progresses.
    pub fn start(
        engine: &Engine,
        ctx: &egui::Context,
        opener: Arc<dyn Opener>,
        request: FlashRequest,
    ) -> Flashing {
        let progress = Arc::new(Mutex::new(Progress::default()));
        let cancel = Arc::new(AtomicBool::new(false));
        let result = {
            let (req, progress, cancel) = (request.clone(), progress.clone(), cancel.clone());
            let repaint = ctx.clone();
            engine.blocking(ctx, move || {
                let span = tracing::info_span!(
                    target: logs::JOB,
                    "flash",
                    source = %req.source.display(),
                    target = %req.target.display()
                );
                span.in_scope(|| {
                    run(&*opener, &req, &cancel, &mut |p| {
                        *progress.lock().unwrap_or_else(PoisonError::into_inner) = *p;
                        repaint.request_repaint();
                    })
                })
            })
        };
        Flashing { request, progress, cancel, result, ended: None }
    }

    /// Takes in the result, if it came since the last frame.
    pub fn poll(&mut self) {
        if self.ended.is_none() {
            self.ended = self.result.poll();
        }
    }

    pub fn running(&self) -> bool {
        self.ended.is_none()
    }

    /// The flash stops between buffers; its result then says so.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    pub fn progress(&self) -> Progress {
        *self.progress.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Writes and verifies the image; a failure removes a partial image it
/// made. Blocking.
fn run(
    opener: &dyn Opener,
    req: &FlashRequest,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Verified, (FlashFailed, Left)> {
    tracing::info!(target: logs::JOB, "writing a {}-compressed image", req.format);
    let mut created = false;
    match write(opener, req, cancel, progress, &mut created) {
        Ok(v) => {
            tracing::info!(target: logs::JOB, "written and verified: {} bytes", v.flashed.len);
            Ok(v)
        }
        Err(e) => {
            tracing::warn!(target: logs::JOB, "the flash failed: {e}");
            Err((e, session_flash::clean_up(&req.target, created)))
        }
    }
}

/// Opens the target (`created` says whether the flash makes it), writes
/// and verifies the image, then fixes a larger disk's partition table.
fn write(
    opener: &dyn Opener,
    req: &FlashRequest,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(&Progress),
    created: &mut bool,
) -> Result<Verified, FlashFailed> {
    // Never shared: written behind, as a mirror job's unshared target is.
    let opts = Cache::default_target(false, CopyMode::Background).options().write(true);
    let qcow2 = ImageFormat::of_new_name(&req.target) == ImageFormat::Qcow2;
    let open = || opener.open_for_job(&req.target, opts);
    let (target, made) =
        session_flash::open_target(&req.source, &req.target, req.format, qcow2, open)?;
    *created = made;
    let device = match &target {
        Target::Device(dev) => Some(dev.clone()),
        Target::NewFile(_) => None,
    };
    let flashed = flash::flash(&req.source, req.format, target, cancel, progress)?;
    let table = match device {
        Some(dev) => session_flash::fix_table(&*dev, flashed.len)?,
        None => None,
    };
    Ok(Verified { flashed, table })
}
