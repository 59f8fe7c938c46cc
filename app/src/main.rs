//! livemirror: clone a disk or image while it is in use, keep the copy in
//! sync, and switch over to it on Complete.
//!
//! This file parses the command line and picks the room: the window (no
//! subcommand, and `demo` when there is a display) or a command-line
//! subcommand. See the README's "Layout" for the rooms below.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use livemirror::cli::{self, Cli, Cmd, fail};
use livemirror::gui::{self, Launch};
use livemirror::platform::display;
use livemirror::session::demo::DemoArgs;
use livemirror::text;

fn main() -> ExitCode {
    let args = Cli::parse();
    match args.command {
        None => window(args.source, args.target),
        Some(Cmd::Demo(demo_args)) => demo(demo_args),
        Some(command) => cli::run(command),
    }
}

/// `livemirror` alone: the window. Without a display there is nothing
/// sensible to fall back to (a clone needs a source and a target), so it
/// says what to run instead and fails.
fn window(source: Option<PathBuf>, target: Option<PathBuf>) -> ExitCode {
    if !display::available() {
        return fail(
            "no display (DISPLAY and WAYLAND_DISPLAY are unset), so the window cannot open; \
             use `livemirror clone SRC DST` on a terminal, or `livemirror demo` for the terminal demo",
        );
    }
    display::release_console();
    match gui::run(Launch::Setup { source, target }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&format!(
            "the window could not open: {}; `livemirror clone SRC DST` works without one",
            text::window_error(&e)
        )),
    }
}

/// The demo in the window; without a display (or when the window cannot
/// open) it says so and runs in the terminal instead.
fn demo(args: DemoArgs) -> ExitCode {
    let why = if display::available() {
        match gui::run(Launch::Demo(args.clone())) {
            Ok(()) => return ExitCode::SUCCESS,
            Err(e) => format!("the window could not open ({})", text::window_error(&e)),
        }
    } else {
        "no display (DISPLAY and WAYLAND_DISPLAY are unset)".to_string()
    };
    eprintln!("livemirror demo: {why}: running the demo in the terminal instead");
    if args.bad_sector {
        eprintln!("livemirror demo: --bad-sector only applies to the window; ignored");
    }
    cli::run(Cmd::Demo(args))
}
