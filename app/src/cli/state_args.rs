//! Whether a job keeps its state on disk and goes on from an unfinished
//! one: `--restart`, `--no-state` (shared by `clone` and `serve`).

use clap::Args;

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
