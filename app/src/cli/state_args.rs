//! Whether a job keeps its state on disk and goes on from an unfinished
//! one: `--restart`, `--no-state` (shared by `clone` and `serve`).

use clap::Args;
use livemirror_core::job::MirrorOptions;

use crate::session::resume::{Pair, Plan, Use, plan};
use crate::text::json::named_line;

#[derive(Args, Debug, Clone, Copy)]
pub struct StateArgs {
    /// Start over: discard the unfinished job of this source and target
    /// instead of going on from where it stopped.
    #[arg(long)]
    pub restart: bool,
    /// Keep no state file: a crash or kill means starting over. (The state
    /// lives in $XDG_STATE_HOME/livemirror/jobs, or $LIVEMIRROR_STATE_DIR.)
    #[arg(long, conflicts_with = "restart")]
    pub no_state: bool,
}

/// [`plan`] as the command line asks: none with `--no-state`; a saved
/// state not used with `--restart` or onto a target this run `created`;
/// a completed job's record of what was written since with `--resync`.
pub fn plan_for(
    pair: &Pair,
    options: &mut MirrorOptions,
    args: StateArgs,
    created: bool,
    resync: bool,
) -> Plan {
    if args.no_state {
        return Plan::default();
    }
    let how = if args.restart {
        Use::StartOver("--restart")
    } else if created {
        Use::StartOver("the target did not exist")
    } else if resync {
        Use::Resync
    } else {
        Use::Resume
    };
    plan(pair, options, how)
}

/// Says what was decided: the lines on stderr, and with `json` a
/// `RESUMED {"remaining", "total", "comparing"}` event first on stdout.
pub fn announce(plan: &Plan, json: bool) {
    for line in &plan.lines {
        eprintln!("{line}");
    }
    if let (true, Some(r)) = (json, plan.resumed) {
        let data = serde_json::json!({
            "remaining": r.remaining,
            "total": r.total,
            "comparing": r.comparing,
        });
        println!("{}", named_line("RESUMED", data));
    }
}
