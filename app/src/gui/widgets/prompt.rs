//! The error prompt of the `stop` policy: a modal that names the side,
//! the operation, the byte range and the OS's error text, and asks Retry,
//! Ignore or Stop. The job is paused until one is pressed. A device that is
//! gone (a lost NBD connection, an unplugged disk) is said so, and asks
//! only Retry (reconnect) or Stop: ignoring would only fail again. Its
//! words are [`crate::text::failure`]'s.

use eframe::egui::{self, RichText};
use livemirror_core::IoFailure;
use livemirror_core::job::Decision;

use crate::gui::theme;
use crate::text::failure;

pub struct Prompt<'a> {
    pub failure: &'a IoFailure,
}

impl Prompt<'_> {
    /// Shows the modal; returns the decision once a button is pressed.
    pub fn ui(self, ctx: &egui::Context) -> Option<Decision> {
        let f = self.failure;
        let mut decision = None;
        egui::Modal::new(egui::Id::unique("error-prompt")).show(ctx, |ui| {
            ui.set_max_width(480.0);
            ui.heading(RichText::new(failure::prompt_heading(f)).color(theme::BAD));
            ui.add_space(6.0);
            egui::Grid::new("prompt-facts").num_columns(2).show(ui, |ui| {
                for (label, value) in failure::prompt_facts(f) {
                    ui.label(label);
                    ui.strong(value);
                    ui.end_row();
                }
            });
            ui.add_space(6.0);
            ui.label(failure::PROMPT_PAUSED);
            ui.add_space(6.0);
            ui.horizontal(|ui| {
                // Ignore would only fail again on a device that is gone.
                let offered: &[Decision] = if f.lost {
                    &[Decision::Retry, Decision::Stop]
                } else {
                    &[Decision::Retry, Decision::Ignore, Decision::Stop]
                };
                for &d in offered {
                    let (label, hint) = failure::decision(d, f.lost);
                    if ui.button(label).on_hover_text(hint).clicked() {
                        decision = Some(d);
                    }
                }
            });
        });
        decision
    }
}
