//! The desktop application (eframe/egui): Setup → Running → Ready → Done.
//!
//! * [`app`]: state, screen switching, applying actions;
//! * [`screens`]: one file per screen (Setup, Running, Done);
//! * [`widgets`]: the parts screens are made of (heatmap, error prompt,
//!   log, share panel, speed control, progress, file browser, verify map);
//! * [`action`]: what screens and widgets ask the app for;
//! * [`engine`]: the tokio runtime the job and all device I/O run on;
//!   [`job`]: one job as the window sees it; [`flash`]: a compressed image
//!   written instead of a job;
//! * [`settings`] remembered between runs (with [`share_option`], the NBD
//!   share as typed), [`paths`] as typed.

pub mod action;
pub mod app;
pub mod engine;
pub mod flash;
mod frame_stats;
pub mod job;
mod paths;
pub mod screens;
pub mod settings;
pub mod share_option;
pub mod theme;
pub mod widgets;

use std::path::PathBuf;
use std::sync::Arc;

use eframe::egui;

use crate::platform::disks;
use crate::session::demo::DemoArgs;
use app::{Env, LiveMirrorApp};
use engine::FileOpener;
use settings::Settings;

/// What the window opens on.
pub enum Launch {
    /// The Setup screen, optionally with paths typed in from the command
    /// line (nothing starts until Start is pressed).
    Setup { source: Option<PathBuf>, target: Option<PathBuf> },
    /// The demo: generated images, a synthetic writer, the job started.
    Demo(DemoArgs),
}

/// Opens the window and runs until it is closed.
pub fn run(launch: Launch) -> Result<(), eframe::Error> {
    let settings_path = Settings::default_path();
    let size = LiveMirrorApp::initial_size(settings_path.as_deref());
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("livemirror")
            .with_app_id("livemirror")
            .with_inner_size(size)
            .with_min_inner_size([720.0, 520.0]),
        ..Default::default()
    };
    eframe::run_native(
        "livemirror",
        options,
        Box::new(move |cc| {
            let env = Env {
                opener: Arc::new(FileOpener),
                list_disks: disks::list,
                settings_path,
                system_dialog: widgets::browse::system_dialog,
                state_dir: crate::session::resume::state_dir(),
            };
            Ok(Box::new(LiveMirrorApp::new(&cc.egui_ctx, env, launch)?))
        }),
    )
}
