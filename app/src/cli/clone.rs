//! `livemirror clone SRC DST`: mirror, complete as soon as in sync, exit 0
//! when the target is identical.

use std::process::ExitCode;

use livemirror_core::job::{self, MirrorOptions, Outcome, Tracking};
use livemirror_core::live::LiveSource;

use super::follow::{Follow, follow};
use super::progress::Reporter;
use super::{CloneArgs, EXIT_CANCELLED, fail, state_args};
use crate::session::resume::Pair;
use crate::session::sizes;
use crate::session::tracking;
use crate::text;

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
            eprintln!("verified: {}", text::compared(&c));
            code
        }
        Ok(c) => fail(&format!("verified: {}", text::compared(&c))),
        Err(e) => fail(&e.to_string()),
    }
}
