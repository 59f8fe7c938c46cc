//! What a running job looks like on a terminal: a one-line progress bar on
//! stderr when it is a terminal, JSON lines on stdout with `--json`, and the
//! state changes and errors as plain lines otherwise.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use livemirror_core::job::{JobEvent, JobStatus, Outcome, Tracking};
use livemirror_core::partition::{Fit, Relation};

use crate::text;
use crate::text::human;
use crate::text::json::event_line;

pub struct Reporter {
    json: bool,
    /// Words Ready by what the job can know.
    tracking: Tracking,
    bar: bool,
    started: Instant,
}

impl Reporter {
    /// With `json`, the stream opens with how the source is tracked (the
    /// COMPLETED event says it again): `{"event": "TRACKING", "data":
    /// {"tracking": "kernel", "meaning": …}}` — after a resumed job's
    /// RESUMED (see [`super::state_args::announce`]), which comes first.
    pub fn new(json: bool, tracking: Tracking) -> Self {
        let bar = !json && std::io::stderr().is_terminal();
        if json {
            let data =
                serde_json::json!({ "tracking": tracking, "meaning": text::tracking(tracking) });
            let _ = writeln!(
                std::io::stdout().lock(),
                "{}",
                crate::text::json::named_line("TRACKING", data)
            );
        }
        Reporter { json, tracking, bar, started: Instant::now() }
    }

    pub fn event(&self, event: &JobEvent) {
        if self.json {
            // A closed pipe (`| head`) is the reader's choice, not our error.
            let _ = writeln!(std::io::stdout().lock(), "{}", event_line(event));
            return;
        }
        let line = match event {
            JobEvent::StateChanged { state } => format!("state: {}", text::state(*state)),
            JobEvent::Ready => format!("ready: {}", text::ready(self.tracking)),
            JobEvent::CompleteFailed { reason } => text::complete_failed(reason),
            JobEvent::Rescanning { reason } => text::rescanning(reason),
            JobEvent::NotSaved { reason } => text::not_saved(reason),
            JobEvent::Error { failure, action } => {
                format!("error: {failure} (action: {})", action.name())
            }
            JobEvent::Progress(_)
            | JobEvent::Completed { .. }
            | JobEvent::Cancelled { .. }
            | JobEvent::Failed { .. } => {
                return;
            }
        };
        self.clear_bar();
        eprintln!("{line}");
    }

    /// Redraws the progress bar from a status snapshot.
    pub fn progress(&self, status: &JobStatus) {
        if !self.bar {
            return;
        }
        let p = status.progress;
        let frac = if p.total == 0 { 1.0 } else { p.copied as f64 / p.total as f64 };
        let width = 30;
        let filled = (frac * width as f64).round() as usize;
        let eta = match (p.bytes_per_sec, p.total - p.copied) {
            (0, _) => "-".to_string(),
            (rate, left) => format!("{}s", left / rate),
        };
        eprint!(
            "\r[{}{}] {:5.1}% {} / {} {}/s ETA {} dirty {}   ",
            "#".repeat(filled),
            ".".repeat(width - filled),
            frac * 100.0,
            human(p.copied),
            human(p.total),
            human(p.bytes_per_sec),
            eta,
            human(p.dirty),
        );
        let _ = std::io::stderr().flush();
    }

    fn clear_bar(&self) {
        if self.bar {
            eprint!("\r{:100}\r", "");
        }
    }

    /// The last word: how it ended and what was done.
    /// `fit` says which bytes the job mirrored (all of them, unless the
    /// sizes differ).
    pub fn finish(&self, status: &JobStatus, outcome: &Outcome, fit: &Fit) {
        self.clear_bar();
        if self.json {
            return;
        }
        let secs = self.started.elapsed().as_secs_f64();
        let written =
            status.data_bytes + status.zero_bytes + status.skipped_bytes + status.cloned_bytes;
        let (line, _) = text::outcome(outcome);
        // Onto a target of another size, the copy is its first part.
        let scope = match fit.relation() {
            Relation::Same => String::new(),
            _ => format!(" — in the target's first {}", human(fit.copy_len)),
        };
        // How long the source's filesystems were frozen (kernel tracking).
        let held = status.held_ms.map(|ms| format!(", writers held {ms} ms")).unwrap_or_default();
        match outcome {
            Outcome::Completed { .. } => eprintln!(
                "{line}{scope} ({}) in {:.1}s, {}/s{held}",
                text::written(status),
                secs,
                human((written as f64 / secs.max(1e-9)) as u64),
            ),
            Outcome::Failed { .. } => eprintln!("livemirror: error: {line}"),
            Outcome::Cancelled { .. } => eprintln!("{line}"),
        }
    }
}
