//! The command line: `livemirror clone`, `livemirror demo`, …
//!
//! Each subcommand lives in its own file; this one only parses and
//! dispatches, and turns errors into one line on stderr and an exit code.

mod cache_args;
mod clone;
mod json;
mod mirror_args;
mod progress;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use cache_args::CacheArgs;
pub use mirror_args::MirrorArgs;

/// Exit codes: 0 success (for `clone`: the target is identical), 1 the job
/// failed or the request was refused, 2 bad usage (from clap), 3 cancelled.
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_CANCELLED: u8 = 3;

#[derive(Parser)]
#[command(
    name = "livemirror",
    version,
    about = "Clone a disk or disk image while it is in use, keep the copy in sync, switch over on Complete",
    after_help = "Examples:\n  livemirror demo\n  livemirror clone disk.img copy.img\n  livemirror clone --sync top --speed 100M sparse.img copy.img --json"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Mirror SRC onto DST and complete as soon as they are in sync.
    Clone(clone::CloneArgs),
    /// Show the whole flow on a generated image with a synthetic write load.
    Demo(crate::demo::DemoArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    match cli.command {
        Some(Cmd::Clone(args)) => runtime.block_on(clone::run(args)),
        Some(Cmd::Demo(args)) => runtime.block_on(crate::demo::run(args)),
        None => runtime.block_on(crate::demo::run(Default::default())),
    }
}

/// Prints `livemirror: error: MESSAGE` and returns the failure exit code.
pub fn fail(message: &str) -> ExitCode {
    eprintln!("livemirror: error: {message}");
    ExitCode::from(EXIT_FAILED)
}
