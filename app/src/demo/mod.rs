//! `livemirror demo`: the whole flow on a generated source image with a
//! synthetic write load, so a first-time user sees it work in seconds.
//!
//! [`scenario`] builds the images and the writer; the window (`gui`) shows
//! it by default, [`terminal`] as text when there is no display.

mod cleanup;
mod scenario;
mod terminal;

use std::process::ExitCode;

use clap::Args;
use livemirror_core::job::parse_size;

pub use scenario::Scenario;

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Size of the generated source image.
    #[arg(long, default_value = "512M", value_parser = parse_size)]
    pub size: u64,
    /// Copy speed limit, so there is time to watch (0 = unlimited).
    #[arg(long, default_value = "96M", value_parser = parse_size)]
    pub speed: u64,
    /// Seconds to stay in sync after Ready before completing (terminal demo).
    #[arg(long, default_value_t = 2)]
    pub linger: u64,
    /// Give the target a bad sector that fails once, to see the error
    /// prompt (Retry then succeeds). Window only.
    #[arg(long)]
    pub bad_sector: bool,
}

impl Default for DemoArgs {
    fn default() -> Self {
        DemoArgs { size: 512 << 20, speed: 96 << 20, linger: 2, bad_sector: false }
    }
}

/// The demo in the window; without a display (or when the window cannot
/// open) it says so and runs in the terminal instead.
pub fn run(args: DemoArgs) -> ExitCode {
    let why = if crate::gui::display_available() {
        match crate::gui::run(crate::gui::Launch::Demo(args.clone())) {
            Ok(()) => return ExitCode::SUCCESS,
            Err(e) => format!("the window could not open ({})", crate::text::window_error(&e)),
        }
    } else {
        "no display (DISPLAY and WAYLAND_DISPLAY are unset)".to_string()
    };
    eprintln!("livemirror demo: {why}: running the demo in the terminal instead");
    if args.bad_sector {
        eprintln!("livemirror demo: --bad-sector only applies to the window; ignored");
    }
    match livemirror_core::runtime::build("livemirror-demo", None) {
        Ok(rt) => rt.block_on(terminal::run(args)),
        Err(e) => crate::cli::fail(&format!("cannot start the async runtime: {e}")),
    }
}
