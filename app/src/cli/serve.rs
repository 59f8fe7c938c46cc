//! `livemirror serve SRC --nbd ADDR [--mirror-to DST] [--control unix:PATH]`:
//! export the source over NBD so every write goes through livemirror, and
//! optionally mirror it; after `complete` (control socket) the export serves
//! the target with clients still connected. Runs until Ctrl-C.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use livemirror_core::job::{self, Command, JobEvent, JobHandle, Outcome};
use livemirror_core::live::LiveSource;
use livemirror_core::nbd::Endpoint;
use tokio::sync::broadcast;

use super::clone::open_or_create_target;
use super::follow::{Follow, follow};
use super::progress::Reporter;
use super::{CacheArgs, MirrorArgs, fail};
use crate::share::Share;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The disk or image to serve (opened read-write: clients write to it).
    pub source: PathBuf,
    /// Mirror the source onto this disk or image (a missing path becomes a
    /// new sparse image of the source's size).
    #[arg(long)]
    pub mirror_to: Option<PathBuf>,
    /// Where to serve NBD: unix:PATH, or HOST:PORT on a loopback address.
    #[arg(long, value_parser = str::parse::<Endpoint>)]
    pub nbd: Endpoint,
    /// Allow a non-loopback HOST:PORT. NBD has no authentication: anyone who
    /// can reach the port can read and write the disk.
    #[arg(long)]
    pub allow_remote: bool,
    /// JSON-lines control socket for the mirror job, unix:PATH (pipe:NAME on Windows).
    #[arg(long, value_parser = crate::control::parse_addr, requires = "mirror_to")]
    pub control: Option<PathBuf>,
    #[command(flatten)]
    pub mirror: MirrorArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
    /// Print the job's events as JSON lines on stdout.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: ServeArgs) -> ExitCode {
    let source = match crate::privileged::open(&args.source, args.cache.source().write(true)) {
        Ok(s) => s,
        Err(e) => return fail(&format!("source: {e}")),
    };
    let len = source.len();
    let live = LiveSource::new(source);
    // Both sockets are bound before the target is touched or anything is
    // announced: once the message is out, clients can connect.
    let control = match args.control.as_deref().map(crate::control::bind).transpose() {
        Ok(c) => c,
        Err(e) => return fail(&format!("control socket: {e}")),
    };
    let bound = match Share::bind(&args.nbd, args.allow_remote).await {
        Ok(b) => b,
        Err(e) => return fail(&format!("NBD socket {}: {e}", args.nbd)),
    };
    if let Some(w) = bound.warning() {
        eprintln!("{w}");
    }
    let job = match &args.mirror_to {
        None => None,
        Some(dst) => match start_job(&live, dst, len, &args) {
            Ok(started) => Some(started),
            Err(e) => return fail(&e),
        },
    };
    let (stop_control, stopped) = tokio::sync::watch::channel(false);
    if let (Some(listener), Some((job, _))) = (control, &job) {
        tokio::spawn(crate::control::serve(listener, job.clone(), stopped));
    }
    let share = bound.serve(&live);
    eprintln!(
        "serving {} over NBD at {} ({})",
        args.source.display(),
        args.nbd,
        share.endpoint().uri()
    );
    let follower = job.map(|(job, events)| {
        let how = Follow {
            complete_when_ready: false,
            cancel_on_ctrl_c: false,
            controlled: args.control.is_some(),
        };
        let reporter = Reporter::new(args.json);
        let handle = job.clone();
        let task = tokio::spawn(async move {
            let outcome = follow(&handle, events, &reporter, how).await;
            reporter.finish(&handle.status(), &outcome);
            outcome
        });
        (job, task)
    });

    stop_signal().await;
    eprintln!("\ninterrupted: stopping");
    let mut code = ExitCode::SUCCESS;
    if let Some((job, task)) = follower {
        // Cancel is consistent after ready; refused once the job has ended.
        let _ = job.send(Command::Cancel { force: false }).await;
        if let Ok(Outcome::Failed { .. }) = task.await {
            code = ExitCode::from(super::EXIT_FAILED);
        }
    }
    let _ = stop_control.send(true);
    share.stop().await;
    if let Some(path) = &args.control {
        let _ = std::fs::remove_file(path);
    }
    code
}

/// Ctrl-C, or SIGTERM from a service manager: both stop serving cleanly
/// (cancel the job, close the connections, remove the sockets).
#[cfg(unix)]
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Ctrl-C or Ctrl-Break in the console, or the console window closing.
#[cfg(windows)]
async fn stop_signal() {
    use tokio::signal::windows::{ctrl_break, ctrl_close};
    match (ctrl_break(), ctrl_close()) {
        (Ok(mut brk), Ok(mut close)) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = brk.recv() => {}
                _ = close.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn start_job(
    live: &Arc<LiveSource>,
    dst: &std::path::Path,
    len: u64,
    args: &ServeArgs,
) -> Result<(JobHandle, broadcast::Receiver<JobEvent>), String> {
    let opts = args.cache.target(true, args.mirror.copy_mode);
    let (target, created) =
        open_or_create_target(dst, len, opts).map_err(|e| format!("target: {e}"))?;
    job::start(live.clone(), target, args.mirror.options()).map_err(|e| {
        if created {
            let _ = std::fs::remove_file(dst);
        }
        e.to_string()
    })
}
