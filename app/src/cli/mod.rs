//! The command line: `livemirror clone`, `livemirror demo`, …
//!
//! Each subcommand lives in its own file; this one only parses and
//! dispatches, and turns errors into one line on stderr and an exit code.

mod cache_args;
mod clone;
mod disks;
mod flash;
mod follow;
mod format_args;
pub mod json;
mod mirror_args;
mod progress;
mod serve;
mod state_args;
mod verify;

#[cfg(test)]
mod man_page;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use cache_args::{Cache, CacheArgs};
pub use format_args::FormatArgs;
pub use mirror_args::MirrorArgs;
pub use state_args::StateArgs;

/// Exit codes: 0 success (for `clone`: the target is identical), 1 the job
/// failed or the request was refused, 2 bad usage (from clap), 3 cancelled.
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_CANCELLED: u8 = 3;
/// Completed, but nothing proved the target identical (compare passes, or
/// an untracked source without the final comparison).
pub const EXIT_UNPROVEN: u8 = 4;

#[derive(Parser)]
#[command(
    name = "livemirror",
    version,
    about = "Clone a disk or disk image while it is in use, keep the copy in sync, switch over on Complete",
    after_help = "With no subcommand, opens the window (and fails with a message when there is no display).\n\nExamples:\n  livemirror\n  livemirror demo\n  livemirror disks\n  livemirror verify disk.img copy.img\n  livemirror clone disk.img copy.img\n  livemirror clone --sync top --speed 100M sparse.img copy.img --json\n  livemirror serve vm.img --mirror-to new.img --nbd unix:/run/vm.sock --control unix:/run/vm.ctl",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Window only: type this path into Setup's source field.
    #[arg(long)]
    source: Option<PathBuf>,
    /// Window only: type this path into Setup's target field (nothing starts
    /// until you press Start).
    #[arg(long)]
    target: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Mirror SRC onto DST and complete as soon as they are in sync.
    Clone(clone::CloneArgs),
    /// Export SRC over NBD (every write tracked), optionally mirroring it;
    /// `complete` on the control socket switches the export to the copy.
    Serve(serve::ServeArgs),
    /// Show the whole flow on a generated image with a synthetic write load
    /// (in the window; in the terminal when there is no display).
    Demo(crate::demo::DemoArgs),
    /// Compare DST with SRC and print where they differ (exit 0 identical,
    /// 1 different, 2 trouble); `--repair` copies what differs.
    Verify(verify::VerifyArgs),
    /// List the whole disks that could be a source or a target.
    Disks,
    /// Internal: run as root (through pkexec) for a livemirror that is not,
    /// to hold its kernel write tracker and freeze; speaks JSON lines on
    /// stdin and stdout.
    #[cfg(target_os = "linux")]
    #[command(hide = true)]
    KernelHelper,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Cmd::Clone(args)) => with_runtime(clone::run(args)),
        Some(Cmd::Serve(args)) => with_runtime(serve::run(args)),
        Some(Cmd::Demo(args)) => crate::demo::run(args),
        Some(Cmd::Verify(args)) => verify::run(args),
        Some(Cmd::Disks) => disks::run(),
        #[cfg(target_os = "linux")]
        Some(Cmd::KernelHelper) => crate::privileged::kernel_helper::run(),
        None => window(cli.source, cli.target),
    }
}

/// Runs a command-line subcommand on a multi-threaded runtime.
fn with_runtime(task: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match livemirror_core::runtime::build("livemirror", None) {
        Ok(rt) => {
            let code = rt.block_on(task);
            // A forced cancel leaves I/O stuck on a hung device behind; the
            // process must still exit (dropping the runtime would wait).
            rt.shutdown_timeout(std::time::Duration::from_millis(200));
            code
        }
        Err(e) => fail(&format!("cannot start the async runtime: {e}")),
    }
}

/// `livemirror` alone: the window. Without a display there is nothing
/// sensible to fall back to (a clone needs a source and a target), so it
/// says what to run instead and fails.
fn window(source: Option<PathBuf>, target: Option<PathBuf>) -> ExitCode {
    if !crate::gui::display_available() {
        return fail(
            "no display (DISPLAY and WAYLAND_DISPLAY are unset), so the window cannot open; \
             use `livemirror clone SRC DST` on a terminal, or `livemirror demo` for the terminal demo",
        );
    }
    #[cfg(windows)]
    close_own_console();
    match crate::gui::run(crate::gui::Launch::Setup { source, target }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&format!(
            "the window could not open: {}; `livemirror clone SRC DST` works without one",
            crate::text::window_error(&e)
        )),
    }
}

/// Started from Explorer or the Start menu, Windows gives a console
/// program a console window of its own; the window app lets go of it so it
/// closes. Started from a terminal, the console is shared and stays.
#[cfg(windows)]
fn close_own_console() {
    use windows::Win32::System::Console::{FreeConsole, GetConsoleProcessList};
    let mut attached = [0u32; 2];
    // SAFETY: a writable buffer of the length the call is given.
    if unsafe { GetConsoleProcessList(&mut attached) } == 1 {
        // SAFETY: no handle of ours refers to the console afterwards: the
        // window app writes nothing to stdout or stderr.
        let _ = unsafe { FreeConsole() };
    }
}

/// Prints `livemirror: error: MESSAGE` and returns the failure exit code.
pub fn fail(message: &str) -> ExitCode {
    eprintln!("livemirror: error: {message}");
    ExitCode::from(EXIT_FAILED)
}
