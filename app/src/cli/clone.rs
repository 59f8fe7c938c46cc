//! `livemirror clone SRC DST`: mirror, complete as soon as in sync, exit 0
//! when the target is identical.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use livemirror_core::job::{self, MirrorOptions, Outcome, Tracking};
use livemirror_core::live::LiveSource;

use super::follow::{Follow, follow};
use super::progress::Reporter;
use super::{CacheArgs, EXIT_CANCELLED, FormatArgs, MirrorArgs, StateArgs, fail, state_args};
use crate::session::resume::Pair;
use crate::session::sizes;
use crate::session::tracking;
use crate::text;

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  livemirror clone disk.img copy.img
  livemirror clone --sync top --speed 100M sparse.img copy.img --json
  livemirror clone /dev/sdb /dev/sdc
  livemirror clone vm.qcow2 disk.img
  livemirror clone /dev/sdb backup.qcow2
  livemirror clone --sync top --target-backing base.img overlay.qcow2 copy.qcow2
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
    /// becomes a new sparse image of the source's size (qcow2 when its name
    /// ends .qcow2). A larger target
    /// takes the source on its first bytes; a smaller one only when the
    /// source's partitions and data end in time. A GPT is rewritten for the
    /// target's size.
    pub target: PathBuf,
    #[command(flatten)]
    pub mirror: MirrorArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub formats: FormatArgs,
    /// Print one JSON event per line on stdout.
    #[arg(long)]
    pub json: bool,
    /// Also take commands (pause, set-speed, complete, …) and push events on
    /// a JSON-lines control socket, `unix:PATH` (`pipe:NAME` on Windows).
    #[arg(long, value_parser = crate::cli::control::parse_addr)]
    pub control: Option<PathBuf>,
    /// Stay in sync after ready until Ctrl-C (cancel after ready: the target
    /// stays a consistent copy) or `complete` on the control socket.
    #[arg(long)]
    pub no_complete: bool,
    /// After the copy, move the last partition's end to the end of the
    /// target (and grow its ext2/3/4 filesystem with resize2fs if installed).
    #[arg(long)]
    pub grow_last_partition: bool,
    /// Bring an earlier copy up to date: copy only the chunks that differ —
    /// those a completed `serve SRC --mirror-to DST` recorded its clients
    /// wrote since, when neither file changed after, else found by a compare
    /// pass (the same as --sync differing).
    #[arg(long)]
    pub resync: bool,
    /// Make the new qcow2 target of compressed clusters (deflate, as
    /// `qemu-img convert -c` does): an image out, the source read once,
    /// front to back, with no write tracking, then read back and checked.
    #[arg(long)]
    pub compress: bool,
    #[command(flatten)]
    pub state: StateArgs,
}

pub async fn run(args: CloneArgs) -> ExitCode {
    if let Some(format) = args.formats.source_compression(&args.source) {
        return super::flash::run(args, format).await;
    }
    // Kernel tracking sees the filesystem's writes on the disk, which go
    // around the device's page cache: the source is then read the same way,
    // or a cached block read earlier would hide a write.
    let kernel_wanted = matches!(args.mirror.tracking, None | Some(Tracking::Kernel))
        && tracking::is_block_device(&args.source);
    let source_opts =
        if kernel_wanted { args.cache.source().direct(true) } else { args.cache.source() };
    let source = match args.formats.open_source(&args.source, source_opts) {
        Ok(s) => s,
        Err(e) => return fail(&format!("source: {e}")),
    };
    match super::flash::packer(&args) {
        Ok(Some(packer)) => return super::flash::pack(args, source, packer).await,
        Ok(None) => {}
        Err(e) => return fail(&format!("target: {e}")),
    }
    // Bound before the target is touched, so a bad socket path changes nothing.
    let control = match args.control.as_deref().map(crate::cli::control::bind).transpose() {
        Ok(c) => c,
        Err(e) => return fail(&format!("control socket: {e}")),
    };
    let target_opts = args.cache.target(false, args.mirror.copy_mode);
    let (target, created) =
        match args.formats.open_or_create_target(&args.target, source.len(), target_opts) {
            Ok(t) => t,
            Err(e) => return fail(&format!("target: {e}")),
        };
    let mut options = args.mirror.options();
    if args.resync {
        options.sync = job::SyncMode::Differing;
    }
    let pair = Pair {
        source_path: &args.source,
        source: &*source,
        target_path: &args.target,
        target: &*target,
    };
    let plan = state_args::plan_for(&pair, &mut options, args.state, created.is_new(), args.resync);
    state_args::announce(&plan, args.json);
    let mounts = livemirror_core::device::mounts_on(&source.id());
    if args.mirror.tracking == Some(Tracking::Nbd) {
        return fail(
            "clone does not serve the source, so its writes cannot go through livemirror: \
             use `livemirror serve SRC --mirror-to DST` for nbd tracking",
        );
    }
    let live = LiveSource::new(source.clone());
    let started = match args.mirror.tracking {
        Some(t) => {
            let options = MirrorOptions { tracking: t, ..options };
            tracking::start_as_asked(live, target.clone(), options, &args.source, plan.persist)
        }
        None => tracking::start_picking(
            live,
            target.clone(),
            options,
            &args.source,
            kernel_wanted,
            &mounts,
            plan.persist,
        ),
    };
    let (job, events) = match started {
        Ok(started) => {
            created.keep();
            for note in &started.notes {
                eprintln!("{note}");
            }
            (started.job, started.events)
        }
        // The target made a moment ago goes with `created`.
        Err(e) => return fail(&e.to_string()),
    };
    let tracking = job.status().tracking;
    eprintln!("tracking: {tracking} — {}", text::tracking(tracking));
    let (stop_control, stopped) = tokio::sync::watch::channel(false);
    let control_task = control
        .map(|listener| tokio::spawn(crate::cli::control::serve(listener, job.clone(), stopped)));
    let reporter = Reporter::new(args.json, job.status().tracking);
    let how = Follow {
        complete_when_ready: !args.no_complete,
        cancel_on_ctrl_c: true,
        controlled: args.control.is_some(),
    };
    let outcome = follow(&job, events, &reporter, how).await;
    crate::cli::control::finish(stop_control, control_task, args.control.as_deref()).await;
    reporter.finish(&job.status(), &outcome, job.fit());
    let code = match outcome {
        Outcome::Completed { proof } if proof.identical() => ExitCode::SUCCESS,
        Outcome::Completed { .. } => ExitCode::from(super::EXIT_UNPROVEN),
        Outcome::Cancelled { consistent: true } => ExitCode::from(EXIT_CANCELLED),
        Outcome::Cancelled { consistent: false } => return ExitCode::from(EXIT_CANCELLED),
        Outcome::Failed { .. } => return ExitCode::from(super::EXIT_FAILED),
    };
    // A consistent copy (completed, or cancelled after ready): make its
    // table right for the target, then say what the comparison covered.
    let (fit, grow) = (job.fit(), args.grow_last_partition);
    if !sizes::needed(fit, grow) {
        return code;
    }
    let fixed = match sizes::fix_up(&*target, &args.target, fit, grow) {
        Ok(f) => f,
        Err(e) => return fail(&e.to_string()),
    };
    for line in &fixed.lines {
        eprintln!("{line}");
    }
    match sizes::verify(&*source, &*target, fit, &fixed) {
        Ok(c) if c.identical() => {
            eprintln!("{}", sizes::verdict(&c));
            code
        }
        Ok(c) => fail(&sizes::verdict(&c)),
        Err(e) => fail(&e.to_string()),
    }
}
