//! Where the app's `tracing` events go: stderr for both faces (`RUST_LOG`
//! honoured, warnings and errors by default); for the window also a log
//! file (see [`file`]) and the log panel of the job on screen (see
//! [`panel`]), both fed from the same events, so what the panel says is
//! in the file too.
//!
//! Targets the app logs to, beside its module paths:
//! * [`JOB`]: one line per job event, the lines of the window's log panel;
//! * [`FRAMES`]: the window's frame times (`RUST_LOG=livemirror::frames=debug`).

pub mod file;
pub mod panel;

use std::io::IsTerminal;

use tracing_subscriber::filter::{EnvFilter, FilterExt, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

/// The job's events, as the window's log panel shows them.
pub const JOB: &str = "livemirror::job";
/// Frame times of the window, at debug, every five seconds while a job runs.
pub const FRAMES: &str = "livemirror::frames";

/// Which face of the app is logging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Face {
    /// A command: stderr only.
    Cli,
    /// The window: stderr, the log file and the log panel.
    Window,
}

/// Keeps the log file written until dropped (at the end of `main`): the
/// file is written on a thread of its own, never by the UI thread, and
/// dropping this flushes what is still queued.
#[must_use = "the log file stops being written when this is dropped"]
pub struct Installed {
    _file: Option<tracing_appender::non_blocking::WorkerGuard>,
}

/// What `RUST_LOG` asks for; warnings and errors when it is not set.
fn from_env() -> EnvFilter {
    EnvFilter::builder().with_default_directive(LevelFilter::WARN.into()).from_env_lossy()
}

/// What the log file keeps whatever `RUST_LOG` says: the app's and the
/// engine's events from info up (all the panel shows, and what happened
/// around it), warnings and errors from everything else.
fn file_default() -> Targets {
    Targets::new().with_target("livemirror", LevelFilter::INFO).with_default(LevelFilter::WARN)
}

/// Installs the process's subscriber. Called once, by `main`.
pub fn install(face: Face) -> Installed {
    let stderr = fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_filter(from_env());
    let (file, guard, trouble) = match face {
        Face::Cli => (None, None, None),
        Face::Window => match file::open() {
            Ok((writer, guard)) => {
                let layer = fmt::layer()
                    .with_ansi(false)
                    .with_writer(writer)
                    .with_filter(file_default().or(from_env()));
                (Some(layer), Some(guard), None)
            }
            Err(e) => (None, None, Some(e)),
        },
    };
    let panel = (face == Face::Window).then(panel::layer);
    let installed = tracing_subscriber::registry().with(stderr).with(file).with(panel).try_init();
    if let Err(e) = installed {
        // Only `main` installs one; a second would be a bug, not worth failing for.
        eprintln!("livemirror: logging is not set up: {e}");
    }
    if let Some(e) = trouble {
        tracing::warn!("no log file: {e}");
    }
    Installed { _file: guard }
}
