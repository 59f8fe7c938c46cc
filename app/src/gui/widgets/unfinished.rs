//! Unfinished jobs on the Setup screen: each job whose state file says it
//! stopped before the end (a crash, a kill, a cancel), with "Resume" (start
//! it again: it copies only what is left, see [`crate::session::resume`]) and
//! "Discard" (forget it: a later job of the pair copies everything).

use eframe::egui::{self, RichText};

use crate::gui::action::Action;
use crate::session::resume::Unfinished;
use crate::text::human;

/// The list, above the Setup screen's pickers; nothing when it is empty.
pub fn ui(ui: &mut egui::Ui, jobs: &[Unfinished], actions: &mut Vec<Action>) {
    if jobs.is_empty() {
        return;
    }
    ui.heading("Unfinished jobs");
    egui::Grid::new("unfinished").num_columns(3).spacing([12.0, 6.0]).show(ui, |ui| {
        for (i, job) in jobs.iter().enumerate() {
            ui.label(format!("{} to {}", job.source.display(), job.target.display()));
            ui.label(
                RichText::new(format!("{} of {} left", human(job.remaining), human(job.total)))
                    .weak(),
            );
            ui.horizontal(|ui| {
                if ui.button("Resume").clicked() {
                    actions.push(Action::ResumeUnfinished(i));
                }
                if ui.button("Discard").clicked() {
                    actions.push(Action::DiscardUnfinished(i));
                }
            });
            ui.end_row();
        }
    });
    ui.separator();
}
