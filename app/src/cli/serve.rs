//! `livemirror serve SRC --nbd ADDR [--mirror-to DST] [--control unix:PATH]`:
//! export the source over NBD so every write goes through livemirror, and
//! optionally mirror it; after `complete` (control socket) the export serves
//! the target with clients still connected. Runs until Ctrl-C.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use livemirror_core::device::BlockDevice;
use livemirror_core::job::{self, JobEvent, JobHandle, Outcome, Tracking};
use livemirror_core::live::{LiveSource, WriteLog};
use livemirror_core::nbd::Endpoint;
use tokio::sync::broadcast;

use super::follow::{Follow, follow, interrupted};
use super::format_args::FormatError;
use super::progress::Reporter;
use super::{CacheArgs, FormatArgs, MirrorArgs, StateArgs, fail, state_args};
use crate::session::resume::{self, Pair};
use crate::session::share::Share;
use crate::session::sizes;
use crate::text::human;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The disk or image to serve (opened read-write: clients write to it).
    pub source: PathBuf,
    /// Mirror the source onto this disk or image (a missing path becomes a
    /// new sparse image of the source's size). A larger one is fine (the
    /// export keeps the source's size; its GPT is rewritten for the target's
    /// size once serving stops); a smaller one is refused.
    #[arg(long)]
    pub mirror_to: Option<PathBuf>,
    /// Once serving stops after a completed mirror, move the last
    /// partition's end to the end of the target (and grow its ext2/3/4
    /// filesystem with resize2fs if installed).
    #[arg(long, requires = "mirror_to")]
    pub grow_last_partition: bool,
    /// Where to serve NBD: unix:PATH, or HOST:PORT on a loopback address.
    #[arg(long, value_parser = str::parse::<Endpoint>)]
    pub nbd: Endpoint,
    /// Allow a non-loopback HOST:PORT. NBD has no authentication: anyone who
    /// can reach the port can read and write the disk.
    #[arg(long)]
    pub allow_remote: bool,
    /// JSON-lines control socket for the mirror job, unix:PATH (pipe:NAME on Windows).
    #[arg(long, value_parser = crate::cli::control::parse_addr, requires = "mirror_to")]
    pub control: Option<PathBuf>,
    #[command(flatten)]
    pub mirror: MirrorArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub formats: FormatArgs,
    /// Print the job's events as JSON lines on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub state: StateArgs,
}

pub async fn run(args: ServeArgs) -> ExitCode {
    let source = match args.formats.open_source(&args.source, args.cache.source().write(true)) {
        Ok(s) => s,
        Err(e) => return fail(&format!("source: {e}")),
    };
    let len = source.len();
    let live = LiveSource::new(source);
    // Both sockets are bound before the target is touched or anything is
    // announced: once the message is out, clients can connect.
    let control = match args.control.as_deref().map(crate::cli::control::bind).transpose() {
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
            Err(e) => return fail(&e.to_string()),
        },
    };
    let (stop_control, stopped) = tokio::sync::watch::channel(false);
    let control_task = match (control, &job) {
        (Some(listener), Some((job, _, _, _))) => {
            Some(tokio::spawn(crate::cli::control::serve(listener, job.clone(), stopped)))
        }
        _ => None,
    };
    let share = bound.serve(&live);
    eprintln!(
        "serving {} over NBD at {} ({})",
        args.source.display(),
        args.nbd,
        share.endpoint().uri()
    );
    let follower = job.map(|(job, events, target, record)| {
        let how = Follow {
            complete_when_ready: false,
            cancel_on_ctrl_c: false,
            controlled: args.control.is_some(),
        };
        let reporter = Reporter::new(args.json, job.status().tracking);
        let handle = job.clone();
        let task = tokio::spawn(async move {
            let outcome = follow(&handle, events, &reporter, how).await;
            reporter.finish(&handle.status(), &outcome, handle.fit());
            outcome
        });
        (job, task, target, record)
    });

    stop_signal().await;
    let mut code = ExitCode::SUCCESS;
    let mut consistent = None;
    let mut completed = None;
    match follower {
        None => eprintln!("\ninterrupted: stopping"),
        Some((job, mut task, target, record)) => {
            // Cancel is consistent after ready; a second signal forces it.
            // A job that already ended has nothing to cancel.
            if job.status().outcome.is_some() {
                eprintln!("\ninterrupted: stopping");
            } else {
                interrupted(&job, 1);
            }
            let outcome = tokio::select! {
                outcome = &mut task => outcome,
                _ = stop_signal() => {
                    interrupted(&job, 2);
                    task.await
                }
            };
            match outcome {
                Ok(Outcome::Failed { .. }) => code = ExitCode::from(super::EXIT_FAILED),
                Ok(Outcome::Completed { .. }) => {
                    completed = record.map(|r| (r, target.clone()));
                    consistent = Some((job, target))
                }
                Ok(o) if o.target_consistent() => consistent = Some((job, target)),
                _ => {}
            }
        }
    }
    crate::cli::control::finish(stop_control, control_task, None).await;
    share.stop().await;
    if let Some(path) = &args.control {
        crate::cli::control::remove_socket(path);
    }
    // No client writes any more: what the target took since Complete is
    // all in the log.
    if let (Some((record, target)), Some(dst)) = (completed, args.mirror_to.clone()) {
        let src = args.source.clone();
        let recorded = tokio::task::spawn_blocking(move || {
            resume::finish_serving(&record.path, &record.log, &*target, &src, &dst)
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        match recorded {
            Ok(line) => eprintln!("{line}"),
            Err(why) => eprintln!("writes since Complete not recorded: {why}"),
        }
    }
    // Only now that no client is served: while the export kept the source's
    // size, a table for the target's size would have looked broken to them.
    if let (Some((job, target)), Some(dst)) = (consistent, &args.mirror_to)
        && sizes::needed(job.fit(), args.grow_last_partition)
    {
        match sizes::fix_up(&*target, dst, job.fit(), args.grow_last_partition) {
            Ok(fixed) => fixed.lines.iter().for_each(|l| eprintln!("{l}")),
            Err(e) => return fail(&e.to_string()),
        }
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
                () = ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!("cannot listen for SIGTERM ({e}): only Ctrl-C stops serving");
            ctrl_c().await;
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
                () = ctrl_c() => {}
                _ = brk.recv() => {}
                _ = close.recv() => {}
            }
        }
        _ => {
            tracing::warn!(
                "cannot listen for Ctrl-Break or the console closing: only Ctrl-C stops serving"
            );
            ctrl_c().await;
        }
    }
}

/// Why the mirror job of `serve --mirror-to` did not start.
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("target: {0}")]
    Target(FormatError),
    #[error(
        "the target ({}) is smaller than the source ({}): it cannot take over the NBD export, \
         whose clients see the source's size (clone onto it with `livemirror clone` instead)",
        human(*target),
        human(*len)
    )]
    Smaller { target: u64, len: u64 },
    #[error(transparent)]
    Refused(#[from] livemirror_core::Error),
}

/// Ctrl-C. Where it cannot be listened for, this says so and returns at
/// once: serving stops cleanly now rather than never.
async fn ctrl_c() {
    if let Err(e) = tokio::signal::ctrl_c().await {
        tracing::warn!("cannot listen for Ctrl-C: {e}");
    }
}

/// A started job, its first event subscription, its target, and where it
/// records what the target takes after Complete.
type Started = (JobHandle, broadcast::Receiver<JobEvent>, Arc<dyn BlockDevice>, Option<Record>);

/// A served mirror's state file and the log of writes after Complete.
struct Record {
    path: PathBuf,
    log: Arc<WriteLog>,
}

fn start_job(
    live: &Arc<LiveSource>,
    dst: &std::path::Path,
    len: u64,
    args: &ServeArgs,
) -> Result<Started, StartError> {
    let opts = args.cache.target(true, args.mirror.copy_mode);
    let (target, created) =
        args.formats.open_or_create_target(dst, len, opts).map_err(StartError::Target)?;
    if target.len() < len {
        return Err(StartError::Smaller { target: target.len(), len });
    }
    let mut options = args.mirror.options();
    options.buffer_target_when_write_blocking = args.cache.target_follows_copy_mode();
    // Served, every write goes through the export, unless the source is
    // also mounted here and its OS writes it around livemirror.
    let mounted = !livemirror_core::device::mounts_on(&live.device().id()).is_empty();
    options.tracking =
        args.mirror.tracking.unwrap_or(if mounted { Tracking::Compare } else { Tracking::Nbd });
    let source = live.device();
    let pair =
        Pair { source_path: &args.source, source: &*source, target_path: dst, target: &*target };
    let plan = state_args::plan_for(&pair, &mut options, args.state, created.is_new(), false);
    state_args::announce(&plan, args.json);
    // After Complete the export serves the target: what its clients write
    // is noted, for a later `clone SRC DST --resync`.
    let mut persist = plan.persist;
    let record = persist.as_mut().map(|p| {
        let log = WriteLog::new();
        p.write_log = Some(log.clone());
        Record { path: p.path.clone(), log }
    });
    // A refused job drops `created`, which removes a target made for it.
    let (job, events) = job::start_persisted(live.clone(), target.clone(), options, persist)?;
    created.keep();
    Ok((job, events, target, record))
}
