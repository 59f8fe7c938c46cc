//! The Done screen: how the job ended and what that means for the target,
//! the numbers (bytes, duration, average speed, errors), an optional
//! byte-for-byte verification, where the source is still shared (if it is),
//! and "Start another".

use std::time::Duration;

use eframe::egui::{self, Color32, RichText};
use livemirror_core::job::Outcome;
use livemirror_core::partition::{Comparison, Fit, Relation};

use super::app::Action;
use super::session::Session;
use super::share;
use crate::sizes::Fixed;
use crate::units::{duration, human};

/// Where a verification stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verify {
    NotDone,
    Running,
    Identical,
    DiffersAt(u64),
    /// A target of another size: what was compared, and the difference.
    Compared(Comparison),
    Error(String),
}

/// Where the partition-table fix-up for a target of another size stands.
#[derive(Debug, Clone, Default)]
pub enum Fix {
    #[default]
    NotNeeded,
    Running,
    Done(Fixed),
    Skipped(String),
    Failed(String),
}

pub struct DoneScreen {
    pub verify: Verify,
    pub fix: Fix,
}

/// The headline for an outcome, and whether it is good news: the shared
/// wording as a sentence. `fit` says which bytes were mirrored (all,
/// unless the sizes differ).
pub fn headline(outcome: &Outcome, fit: &Fit) -> (String, bool) {
    let (line, good) = crate::text::outcome(outcome);
    let scope = match outcome {
        Outcome::Completed { .. } if fit.relation() != Relation::Same => {
            format!(" — in the target's first {}", human(fit.copy_len))
        }
        _ => String::new(),
    };
    (format!("{}{scope}.", crate::text::sentence(&line)), good)
}

impl DoneScreen {
    pub fn ui(&mut self, ui: &mut egui::Ui, session: &Session, actions: &mut Vec<Action>) {
        let status = session.job.status();
        let Some(outcome) = &status.outcome else {
            return;
        };
        let (text, good) = headline(outcome, session.job.fit());
        let color = if good {
            Color32::from_rgb(0x2f, 0xa8, 0x62)
        } else {
            Color32::from_rgb(0xe5, 0x48, 0x4d)
        };
        ui.heading("Done");
        ui.label(RichText::new(text).size(17.0).strong().color(color));
        if let Some(share) = &session.share {
            share::status_ui(ui, share, &status);
        }
        ui.add_space(8.0);
        let took = session.duration();
        let copied = status.data_bytes + status.zero_bytes + status.skipped_bytes;
        egui::Grid::new("summary").num_columns(2).spacing([16.0, 6.0]).show(ui, |ui| {
            let mut row = |k: &str, v: String| {
                ui.label(k);
                ui.strong(v);
                ui.end_row();
            };
            row("Source", session.source_name.clone());
            row("Target", session.target_name.clone());
            row(
                "Bytes copied",
                format!(
                    "{} ({} data, {} zeroed, {} already zero)",
                    human(copied),
                    human(status.data_bytes),
                    human(status.zero_bytes),
                    human(status.skipped_bytes)
                ),
            );
            row("Duration", duration(took));
            row("Average speed", format!("{}/s", human(average(copied, took))));
            row("Errors retried or ignored", status.errors.to_string());
            if let Some(ms) = status.held_ms {
                row("Writers held", crate::text::held(ms));
            }
            match &self.fix {
                Fix::NotNeeded => {}
                Fix::Running => row("Partition table", "rewriting for the target's size…".into()),
                Fix::Done(f) => row("Partition table", f.lines.join("\n")),
                Fix::Skipped(why) => row("Partition table", why.clone()),
                Fix::Failed(e) => row("Partition table", format!("FAILED: {e}")),
            }
            row(
                "Verification",
                match &self.verify {
                    Verify::NotDone => "not done".into(),
                    Verify::Running => "reading both sides…".into(),
                    Verify::Identical => "identical, byte for byte".into(),
                    Verify::DiffersAt(at) => format!("DIFFERENT from byte {at}"),
                    Verify::Compared(c) => match &c.difference {
                        None => format!("identical — compared {}", c.compared),
                        Some(d) => format!("DIFFERENT ({d}) — compared {}", c.compared),
                    },
                    Verify::Error(e) => format!("could not verify: {e}"),
                },
            );
        });
        ui.add_space(10.0);
        ui.horizontal(|ui| {
            if good
                && matches!(self.verify, Verify::NotDone | Verify::Error(_))
                && !matches!(self.fix, Fix::Running)
                && ui.button("Verify (reads both sides)").clicked()
            {
                actions.push(Action::Verify);
            }
            if ui.button("Start another").clicked() {
                actions.push(Action::StartAnother);
            }
        });
    }
}

fn average(bytes: u64, took: Duration) -> u64 {
    (bytes as f64 / took.as_secs_f64().max(1e-3)) as u64
}
