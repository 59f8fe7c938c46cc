//! `livemirror clone SRC DST`: mirror, complete as soon as in sync, exit 0
//! when the target is identical.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use livemirror_core::device::{BlockDevice, OpenOptions};
use livemirror_core::job::{self, Outcome};
use livemirror_core::live::LiveSource;

use super::follow::{Follow, follow};
use super::progress::Reporter;
use super::{CacheArgs, EXIT_CANCELLED, MirrorArgs, fail};
use crate::privileged::{self, OpenError};

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  livemirror clone disk.img copy.img
  livemirror clone --sync top --speed 100M sparse.img copy.img --json
  livemirror clone /dev/sdb /dev/sdc
  livemirror clone disk.img nbd://backup-host/disk
  livemirror clone disk.img 'nbd+unix:///?socket=/run/qemu-nbd.sock'

Disks without root: a block device you may not open is opened through udisks2
(polkit decides, and may ask for a password). Without udisks2, run as
administrator: pkexec livemirror clone SRC DST")]
pub struct CloneArgs {
    /// The disk, image or NBD URI to copy (opened read-only).
    pub source: PathBuf,
    /// The disk, image or NBD URI (nbd://HOST[:PORT]/EXPORT,
    /// nbd+unix:///EXPORT?socket=PATH) to write; a path that does not exist
    /// becomes a new sparse image of the source's size.
    pub target: PathBuf,
    #[command(flatten)]
    pub mirror: MirrorArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
    /// Print one JSON event per line on stdout.
    #[arg(long)]
    pub json: bool,
    /// Also take commands (pause, set-speed, complete, …) and push events on
    /// a JSON-lines control socket, `unix:PATH` (`pipe:NAME` on Windows).
    #[arg(long, value_parser = crate::control::parse_addr)]
    pub control: Option<PathBuf>,
    /// Stay in sync after ready until Ctrl-C (cancel after ready: the target
    /// stays a consistent copy).
    #[arg(long)]
    pub no_complete: bool,
}

pub async fn run(args: CloneArgs) -> ExitCode {
    let source = match privileged::open(&args.source, args.cache.source()) {
        Ok(s) => s,
        Err(e) => return fail(&format!("source: {e}")),
    };
    // Bound before the target is touched, so a bad socket path changes nothing.
    let control = match args.control.as_deref().map(crate::control::bind).transpose() {
        Ok(c) => c,
        Err(e) => return fail(&format!("control socket: {e}")),
    };
    let target_opts = args.cache.target(false, args.mirror.copy_mode);
    let (target, created) = match open_or_create_target(&args.target, source.len(), target_opts) {
        Ok(t) => t,
        Err(e) => return fail(&format!("target: {e}")),
    };
    let mut options = args.mirror.options();
    let mounts = livemirror_core::device::mounts_on(&source.id());
    if !mounts.is_empty() && !options.rescan {
        eprintln!(
            "source is mounted at {}: its writes bypass livemirror, so compare passes will prove the copy (--rescan)",
            mounts.join(", ")
        );
        options.rescan = true;
    }
    let live = LiveSource::new(source);
    let (job, events) = match job::start(live, target, options) {
        Ok(started) => started,
        Err(e) => {
            if created {
                // We made it a moment ago; refusing the job must leave nothing behind.
                let _ = std::fs::remove_file(&args.target);
            }
            return fail(&e.to_string());
        }
    };
    let (stop_control, stopped) = tokio::sync::watch::channel(false);
    if let Some(listener) = control {
        tokio::spawn(crate::control::serve(listener, job.clone(), stopped));
    }
    let reporter = Reporter::new(args.json);
    let how = Follow {
        complete_when_ready: !args.no_complete,
        cancel_on_ctrl_c: true,
        controlled: args.control.is_some(),
    };
    let outcome = follow(&job, events, &reporter, how).await;
    let _ = stop_control.send(true);
    if let Some(path) = &args.control {
        let _ = std::fs::remove_file(path);
    }
    reporter.finish(&job.status(), &outcome);
    match outcome {
        Outcome::Completed => ExitCode::SUCCESS,
        Outcome::Cancelled { .. } => ExitCode::from(EXIT_CANCELLED),
        Outcome::Failed { .. } => ExitCode::from(super::EXIT_FAILED),
    }
}

pub(super) fn open_or_create_target(
    path: &Path,
    len: u64,
    opts: OpenOptions,
) -> Result<(Arc<dyn BlockDevice>, bool), OpenError> {
    if privileged::nbd_uri(path).is_some() || path.exists() {
        Ok((privileged::open(path, opts)?, false))
    } else {
        Ok((Arc::new(opts.create(path, len).map_err(OpenError::Direct)?), true))
    }
}
