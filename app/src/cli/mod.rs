//! The command line: `livemirror clone`, `livemirror verify`, …
//!
//! Each subcommand lives in its own file; this one declares the arguments
//! (`main.rs` parses them and opens the window when no subcommand is
//! given), runs a subcommand, and turns errors into one line on stderr and
//! an exit code. [`control`] is the control socket of `clone` and `serve`.

mod cache_args;
mod clone;
mod clone_args;
pub mod control;
pub mod demo;
mod disks;
mod flash;
mod follow;
mod format_args;
mod mirror_args;
mod progress;
mod serve;
pub mod state_args;
mod verify;

#[cfg(test)]
mod man_page;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use cache_args::{Cache, CacheArgs};
pub use clone_args::CloneArgs;
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
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Cmd>,
    /// Window only: type this path into Setup's source field.
    #[arg(long)]
    pub source: Option<PathBuf>,
    /// Window only: type this path into Setup's target field (nothing starts
    /// until you press Start).
    #[arg(long)]
    pub target: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Mirror SRC onto DST and complete as soon as they are in sync.
    Clone(CloneArgs),
    /// Export SRC over NBD (every write tracked), optionally mirroring it;
    /// `complete` on the control socket switches the export to the copy.
    Serve(serve::ServeArgs),
    /// Show the whole flow on a generated image with a synthetic write load
    /// (in the window; in the terminal when there is no display).
    Demo(crate::session::demo::DemoArgs),
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

/// Runs a subcommand. (`demo` and the window are `main.rs`'s: they open a
/// window when there is a display.)
pub fn run(command: Cmd) -> ExitCode {
    match command {
        Cmd::Clone(args) => with_runtime(clone::run(args)),
        Cmd::Serve(args) => with_runtime(serve::run(args)),
        Cmd::Demo(args) => with_runtime(demo::run(args)),
        Cmd::Verify(args) => verify::run(args),
        Cmd::Disks => disks::run(),
        #[cfg(target_os = "linux")]
        Cmd::KernelHelper => match crate::platform::privileged::kernel_helper::run() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&format!("kernel helper: {e}")),
        },
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

/// Prints `livemirror: error: MESSAGE` and returns the failure exit code.
pub fn fail(message: &str) -> ExitCode {
    eprintln!("livemirror: error: {message}");
    ExitCode::from(EXIT_FAILED)
}
