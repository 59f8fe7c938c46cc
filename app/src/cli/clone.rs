//! `livemirror clone SRC DST`: mirror, complete as soon as in sync, exit 0
//! when the target is identical.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use livemirror_core::device::{BlockDevice, FileDevice};
use livemirror_core::job::{self, Command, Decision, ErrorAction, JobEvent, JobHandle, Outcome};
use livemirror_core::live::LiveSource;

use super::progress::Reporter;
use super::{CacheArgs, EXIT_CANCELLED, MirrorArgs, fail};

#[derive(Args, Debug)]
pub struct CloneArgs {
    /// The disk or image to copy (opened read-only).
    pub source: PathBuf,
    /// The disk or image to write; a path that does not exist becomes a new
    /// sparse image of the source's size.
    pub target: PathBuf,
    #[command(flatten)]
    pub mirror: MirrorArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
    /// Print one JSON event per line on stdout.
    #[arg(long)]
    pub json: bool,
    /// Stay in sync after ready until Ctrl-C (cancel after ready: the target
    /// stays a consistent copy).
    #[arg(long)]
    pub no_complete: bool,
}

pub async fn run(args: CloneArgs) -> ExitCode {
    let source = match args.cache.source().open(&args.source) {
        Ok(s) => s,
        Err(e) => return fail(&format!("source: {e}")),
    };
    let (target, created) = match open_or_create_target(&args.target, source.len(), &args.cache) {
        Ok(t) => t,
        Err(e) => return fail(&format!("target: {e}")),
    };
    let live = LiveSource::new(Arc::new(source));
    let (job, events) = match job::start(live, Arc::new(target), args.mirror.options()) {
        Ok(started) => started,
        Err(e) => {
            if created {
                // We made it a moment ago; refusing the job must leave nothing behind.
                let _ = std::fs::remove_file(&args.target);
            }
            return fail(&e.to_string());
        }
    };
    let reporter = Reporter::new(args.json);
    let outcome = drive(&job, events, &reporter, !args.no_complete).await;
    reporter.finish(&job.status(), &outcome);
    match outcome {
        Outcome::Completed => ExitCode::SUCCESS,
        Outcome::Cancelled { .. } => ExitCode::from(EXIT_CANCELLED),
        Outcome::Failed { .. } => ExitCode::from(super::EXIT_FAILED),
    }
}

fn open_or_create_target(
    path: &Path,
    len: u64,
    cache: &CacheArgs,
) -> Result<(FileDevice, bool), livemirror_core::Error> {
    if path.exists() {
        Ok((cache.target().open(path)?, false))
    } else {
        Ok((cache.target().create(path, len)?, true))
    }
}

/// Follows the job to its end: reports events, completes when ready (if
/// asked), cancels on Ctrl-C, and asks what to do about errors under the
/// stop policy.
async fn drive(
    job: &JobHandle,
    mut events: tokio::sync::broadcast::Receiver<JobEvent>,
    reporter: &Reporter,
    complete_when_ready: bool,
) -> Outcome {
    let mut redraw = tokio::time::interval(Duration::from_millis(200));
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(ev) => {
                    reporter.event(&ev);
                    match ev {
                        JobEvent::Ready if complete_when_ready => job.post(Command::Complete),
                        JobEvent::Error { action: ErrorAction::Stop, failure } => {
                            let decision = ask(&failure.to_string()).await;
                            job.post(Command::Decide(decision));
                        }
                        JobEvent::Completed | JobEvent::Cancelled { .. } | JobEvent::Failed { .. } => break,
                        _ => {}
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
            _ = &mut ctrl_c => {
                eprintln!("\ninterrupted: cancelling");
                job.post(Command::Cancel { force: false });
                ctrl_c.set(tokio::signal::ctrl_c());
            }
            _ = redraw.tick() => reporter.progress(&job.status()),
        }
    }
    job.wait().await
}

/// Asks on the terminal; without one nobody can answer, so the job stops.
async fn ask(what: &str) -> Decision {
    if !std::io::stdin().is_terminal() {
        eprintln!("no terminal to ask on: stopping");
        return Decision::Stop;
    }
    eprintln!("{what}\n[r]etry, [i]gnore (retry later), [s]top? ");
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await;
    match answer.ok().and_then(Result::ok).as_deref().map(str::trim) {
        Some("r" | "retry") => Decision::Retry,
        Some("i" | "ignore") => Decision::Ignore,
        _ => Decision::Stop,
    }
}
