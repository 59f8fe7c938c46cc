//! What a running job looks like on a terminal: a one-line progress bar on
//! stderr when it is a terminal, JSON lines on stdout with `--json`, and the
//! state changes and errors as plain lines otherwise.
//!
//! The bar is indicatif's: it fits the terminal's width (and redraws when it
//! changes), estimates the ETA from a smoothed rate, limits its redraws, and
//! draws nothing at all when stderr is not a terminal, so a log or a pipe
//! gets only the plain lines.

use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use livemirror_core::job::{JobEvent, JobStatus, Outcome, Tracking};
use livemirror_core::partition::{Fit, Relation};

use crate::text;
use crate::text::human;
use crate::text::json::event_line;

pub struct Reporter {
    json: bool,
    /// Words Ready by what the job can know (it may change as it runs).
    tracking: Mutex<Tracking>,
    bar: ProgressBar,
    started: Instant,
}

/// A bar on stderr, hidden when stderr is not a terminal or `json` is on;
/// `{msg}` carries the numbers in livemirror's own units.
pub fn terminal_bar(json: bool) -> ProgressBar {
    if json {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template("[{bar:30}] {percent:>3}% {wide_msg} ETA {eta}")
        .expect("a valid template")
        .progress_chars("#>.");
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
    bar.set_style(style);
    bar
}

impl Reporter {
    /// With `json`, the stream opens with how the source is tracked (the
    /// COMPLETED event says it again): `{"event": "TRACKING", "data":
    /// {"tracking": "kernel", "meaning": …}}` — after a resumed job's
    /// RESUMED (see [`super::state_args::announce`]), which comes first.
    pub fn new(json: bool, tracking: Tracking) -> Self {
        let bar = terminal_bar(json);
        if json {
            let data =
                serde_json::json!({ "tracking": tracking, "meaning": text::tracking(tracking) });
            // A closed pipe (`| head`) is the reader's choice, not our error.
            let _ = writeln!(
                std::io::stdout().lock(),
                "{}",
                crate::text::json::named_line("TRACKING", data)
            );
        }
        Reporter { json, tracking: Mutex::new(tracking), bar, started: Instant::now() }
    }

    pub fn event(&self, event: &JobEvent) {
        if self.json {
            // A closed pipe (`| head`) is the reader's choice, not our error.
            let _ = writeln!(std::io::stdout().lock(), "{}", event_line(event));
            return;
        }
        if event.is_final() {
            // [`Reporter::finish`] says how it ended, with what was done.
            return;
        }
        let mut tracking = self.tracking.lock().unwrap_or_else(|e| e.into_inner());
        if let JobEvent::TrackingChanged { tracking: now, .. } = event {
            *tracking = *now;
        }
        let Some((line, _)) = text::event(event, *tracking) else { return };
        self.bar.suspend(|| eprintln!("{line}"));
    }

    /// Moves the progress bar to a status snapshot.
    pub fn progress(&self, status: &JobStatus) {
        let p = status.progress;
        self.bar.set_length(p.total);
        self.bar.set_position(p.copied.min(p.total));
        self.bar.set_message(format!(
            "{} / {} {} dirty {}",
            human(p.copied),
            human(p.total),
            text::rate(p.bytes_per_sec),
            human(p.dirty),
        ));
    }

    /// The last word: how it ended and what was done.
    /// `fit` says which bytes the job mirrored (all of them, unless the
    /// sizes differ).
    pub fn finish(&self, status: &JobStatus, outcome: &Outcome, fit: &Fit) {
        self.bar.finish_and_clear();
        if self.json {
            return;
        }
        let written =
            status.data_bytes + status.zero_bytes + status.skipped_bytes + status.cloned_bytes;
        let (line, _) = text::outcome(outcome);
        // Onto a target of another size, the copy is its first part.
        let scope = match fit.relation() {
            Relation::Same => String::new(),
            _ => format!(" — in the target's first {}", human(fit.copy_len)),
        };
        // How long the source's filesystems were frozen (kernel tracking).
        let held = text::writers_held(status.held_ms);
        match outcome {
            Outcome::Completed { .. } => eprintln!(
                "{line}{scope} ({}) {}{held}",
                text::written(status),
                text::took(written, self.started.elapsed()),
            ),
            Outcome::Failed { .. } => eprintln!("livemirror: error: {line}"),
            Outcome::Cancelled { .. } => eprintln!("{line}"),
        }
    }
}
