//! The Done screen: how the job ended and what that means for the target,
//! the numbers (bytes, duration, average speed, errors), a byte-for-byte
//! verification that starts on its own (as flashing tools do; "Skip" turns
//! that off, remembered) with its map, where the share still serves (and
//! "Stop sharing"), and "Start another". The headline says what is known:
//! a verification's finding when there is one, else what the job proved.

use std::sync::Arc;

use eframe::egui::{self, RichText};
use livemirror_core::job::Outcome;
use livemirror_core::partition::{Comparison, Fit, Relation};

use crate::gui::action::Action;
use crate::gui::job::Session;
use crate::gui::screens::running::BUTTON;
use crate::gui::theme;
use crate::gui::widgets::share;
use crate::gui::widgets::verify::{Found, VerifyMap, map_ui};
use crate::session::sizes::Fixed;
use crate::text;
use crate::text::{duration, human};

/// Where a verification stands.
#[derive(Clone)]
pub enum Verify {
    /// Not started: the target is incomplete, a share serves (and its
    /// clients may write) one side, or automatic verification is off.
    NotDone,
    /// Comparing; the map when the sides are the same size.
    Running(Option<Arc<VerifyMap>>),
    /// What a byte-for-byte comparison found, with its map.
    Found(Found, Option<Arc<VerifyMap>>),
    /// A target of another size: what was compared, and the difference.
    Compared(Comparison),
}

impl Verify {
    fn map(&self) -> Option<&VerifyMap> {
        match self {
            Verify::Running(m) | Verify::Found(_, m) => m.as_deref(),
            _ => None,
        }
    }

    /// Whether a verification proved the sides identical (`Some(true)`) or
    /// found them different (`Some(false)`).
    fn proved(&self) -> Option<bool> {
        match self {
            Verify::Found(Found::Identical, _) => Some(true),
            Verify::Found(Found::DiffersAt(_), _) => Some(false),
            Verify::Compared(c) => Some(c.difference.is_none()),
            _ => None,
        }
    }
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
    /// Start the verification once the fix-up is done.
    pub verify_after_fix: bool,
    /// Ask before stopping a share that has clients.
    confirm_unshare: bool,
}

/// The headline for an outcome, and whether it is good news: what the
/// verification found when there is one (it has the last word), else the
/// outcome's own wording. `fit` says which bytes were mirrored (all,
/// unless the sizes differ).
pub fn headline(outcome: &Outcome, fit: &Fit, verify: &Verify) -> (String, bool) {
    let (line, good) = match verify.proved() {
        Some(true) => (text::verified_identical(outcome), true),
        Some(false) => (text::verified_different(outcome, first_difference(verify)), false),
        None => text::outcome(outcome),
    };
    let scope = match outcome {
        Outcome::Completed { .. } if fit.relation() != Relation::Same => {
            format!(" — in the target's first {}", human(fit.copy_len))
        }
        _ => String::new(),
    };
    (format!("{}{scope}.", text::sentence(&line)), good)
}

/// Where a verification found the first difference, in words.
fn first_difference(verify: &Verify) -> Option<String> {
    match verify {
        Verify::Found(Found::DiffersAt(at), _) => Some(format!("from byte {at}")),
        Verify::Compared(c) => c.difference.clone(),
        _ => None,
    }
}

impl DoneScreen {
    pub fn new(fix: Fix) -> Self {
        DoneScreen { verify: Verify::NotDone, fix, verify_after_fix: false, confirm_unshare: false }
    }

    /// The screen above the action bar; `auto_verify` is the remembered
    /// "verify when a job ends", shown as a checkbox.
    pub fn ui(&mut self, ui: &mut egui::Ui, session: &Session, auto_verify: &mut bool) {
        let status = session.job.status();
        let Some(outcome) = &status.outcome else {
            return;
        };
        let (text, good) = headline(outcome, session.job.fit(), &self.verify);
        let color = if good { theme::GOOD } else { theme::BAD };
        ui.heading("Done");
        ui.label(RichText::new(text).size(17.0).strong().color(color));
        if let Some(share) = &session.share {
            share::status_ui(ui, share, &status);
        }
        ui.add_space(8.0);
        let took = session.duration();
        let copied =
            status.data_bytes + status.zero_bytes + status.skipped_bytes + status.cloned_bytes;
        egui::Grid::new("summary").num_columns(2).spacing([16.0, 6.0]).show(ui, |ui| {
            let mut row = |k: &str, v: String| {
                ui.label(k);
                ui.strong(v);
                ui.end_row();
            };
            row("Source", session.source_name.clone());
            row("Target", session.target_name.clone());
            row("Bytes copied", format!("{} ({})", human(copied), text::written(&status)));
            row("Duration", duration(took));
            row(
                "Average speed",
                format!(
                    "{} over the {} spent copying",
                    text::average_rate(copied, session.copying),
                    duration(session.copying)
                ),
            );
            row("Errors", session.errors.words());
            if let Some(ms) = status.held_ms {
                row("Writers held", text::held(ms));
            }
            match &self.fix {
                Fix::NotNeeded => {}
                Fix::Running => row("Partition table", "rewriting for the target's size…".into()),
                Fix::Done(f) => row("Partition table", f.lines.join("\n")),
                Fix::Skipped(why) => row("Partition table", why.clone()),
                Fix::Failed(e) => row("Partition table", format!("FAILED: {e}")),
            }
            row("Verification", self.verification(session));
        });
        if let Some(map) = self.verify.map() {
            ui.add_space(6.0);
            map_ui(ui, map, 90.0);
        }
        ui.add_space(6.0);
        ui.checkbox(auto_verify, "Verify automatically when a job ends (reads both sides)");
    }

    /// The Verification row.
    fn verification(&self, session: &Session) -> String {
        match &self.verify {
            Verify::NotDone => {
                let tracking = session.job.status().tracking;
                text::no_auto_verify(session.share.is_some(), tracking).unwrap_or("not done").into()
            }
            Verify::Running(Some(map)) => {
                let (done, of) = map.progress();
                text::comparing(done, of)
            }
            Verify::Running(None) => "comparing both sides…".into(),
            Verify::Found(Found::Identical, _) => text::IDENTICAL.into(),
            Verify::Found(Found::DiffersAt(at), _) => text::differs_from(*at),
            Verify::Found(Found::Skipped, _) => "skipped".into(),
            Verify::Found(Found::Error(e), _) => text::could_not_verify(e),
            Verify::Compared(c) => text::compared(c),
        }
    }

    /// The action bar's buttons for this screen: Verify (or Skip while it
    /// runs) where Start and Complete were, Stop sharing, and Start
    /// another at the far end.
    pub fn actions_ui(&mut self, ui: &mut egui::Ui, session: &Session, actions: &mut Vec<Action>) {
        let status = session.job.status();
        let consistent = status.outcome.as_ref().is_some_and(Outcome::target_consistent);
        match &self.verify {
            Verify::Running(Some(map)) => {
                if ui.add(egui::Button::new("Skip verification").min_size(BUTTON)).clicked() {
                    map.stop();
                    actions.push(Action::SkipVerify);
                }
            }
            Verify::Running(None) => {
                ui.add_enabled(false, egui::Button::new("Verifying…").min_size(BUTTON));
            }
            done => {
                let again = matches!(done, Verify::Found(..) | Verify::Compared(_));
                let fixing = matches!(self.fix, Fix::Running);
                let button = egui::Button::new(if again { "Verify again" } else { "Verify" })
                    .min_size(BUTTON);
                if ui
                    .add_enabled(consistent && !fixing, button)
                    .on_hover_text("Reads both sides and compares them byte for byte")
                    .clicked()
                {
                    actions.push(Action::Verify);
                }
                // Different: offer to copy what differs (not while a share
                // serves the target, whose clients may be writing it).
                let different = matches!(done, Verify::Found(Found::DiffersAt(_), Some(_)));
                if different
                    && session.share.is_none()
                    && ui
                        .add_enabled(consistent, egui::Button::new("Repair").min_size(BUTTON))
                        .on_hover_text(
                            "Copies the differing ranges from the source onto the target, \
                             then compares them again",
                        )
                        .clicked()
                {
                    actions.push(Action::Repair);
                }
            }
        }
        if let Some(share) = &session.share {
            if ui.add(egui::Button::new("Stop sharing").min_size(BUTTON)).clicked() {
                if share.clients() == 0 {
                    actions.push(Action::StopSharing);
                } else {
                    self.confirm_unshare = true;
                }
            }
            if self.confirm_unshare {
                self.unshare_modal(ui.ctx(), share.clients(), actions);
            }
        }
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            if ui.add(egui::Button::new("Start another").min_size(BUTTON)).clicked() {
                actions.push(Action::StartAnother);
            }
        });
    }

    fn unshare_modal(&mut self, ctx: &egui::Context, clients: usize, actions: &mut Vec<Action>) {
        egui::Modal::new(egui::Id::unique("confirm-unshare")).show(ctx, |ui| {
            ui.set_max_width(440.0);
            ui.heading("Stop sharing?");
            ui.label(text::share_clients_lose_disk(clients));
            ui.horizontal(|ui| {
                if ui.button("Stop sharing").clicked() {
                    actions.push(Action::StopSharing);
                    self.confirm_unshare = false;
                }
                if ui.button("Keep sharing").clicked() {
                    self.confirm_unshare = false;
                }
            });
        });
    }
}
