//! The desktop application (eframe/egui): Setup → Running → Ready → Done.
//!
//! * [`app`]: state, screen switching, actions, remembered settings;
//! * one file per screen ([`setup`], [`running`], [`done`]) and widget
//!   ([`heatmap`], [`prompt`], [`log`], [`share`]);
//! * [`engine`]: the tokio runtime the job and all device I/O run on;
//!   [`session`]: one job as the window sees it;
//! * [`disks`]: the whole-disk list (also `livemirror disks`).

mod app;
mod browse;
pub mod disks;
mod done;
mod engine;
mod frame_stats;
mod heatmap;
mod log;
mod paths;
mod progress;
mod prompt;
mod running;
mod session;
mod settings;
mod setup;
mod share;
mod speed;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_resume;
mod unfinished;
mod verify;
mod verify_only;

use std::path::PathBuf;
use std::sync::Arc;

use eframe::egui;

use crate::demo::DemoArgs;
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

/// True when a window can be shown: an X11 or Wayland display is set (on
/// Windows and macOS there always is one).
pub fn display_available() -> bool {
    if cfg!(any(windows, target_os = "macos")) {
        return true;
    }
    ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
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
                system_dialog: browse::system_dialog,
                state_dir: crate::resume::state_dir(),
            };
            Ok(Box::new(LiveMirrorApp::new(&cc.egui_ctx, env, launch)?))
        }),
    )
}
