//! The error prompt of the `stop` policy: a modal that names the side,
//! the operation, the byte range and the OS's error text, and asks Retry,
//! Ignore or Stop. The job is paused until one is pressed. A device that is
//! gone (a lost NBD connection, an unplugged disk) is said so, and asks
//! only Retry (reconnect) or Stop: ignoring would only fail again.

use eframe::egui::{self, RichText};
use livemirror_core::IoFailure;
use livemirror_core::job::Decision;

use crate::gui::theme;
use crate::text::human;

pub struct Prompt<'a> {
    pub failure: &'a IoFailure,
}

/// The byte range an error covers, as the prompt shows it.
pub fn byte_range(f: &IoFailure) -> String {
    format!("bytes {} – {} ({})", f.offset, f.offset + f.len, human(f.len))
}

impl Prompt<'_> {
    /// Shows the modal; returns the decision once a button is pressed.
    pub fn ui(self, ctx: &egui::Context) -> Option<Decision> {
        let f = self.failure;
        let mut decision = None;
        egui::Modal::new(egui::Id::unique("error-prompt")).show(ctx, |ui| {
            ui.set_max_width(480.0);
            let heading = if f.lost {
                format!("{} connection lost", capitalized(&f.side.to_string()))
            } else {
                format!("The {} could not be {}", f.side, verb(f))
            };
            ui.heading(RichText::new(heading).color(theme::BAD));
            ui.add_space(6.0);
            egui::Grid::new("prompt-facts").num_columns(2).show(ui, |ui| {
                ui.label("Side");
                ui.strong(f.side.to_string());
                ui.end_row();
                ui.label("Operation");
                ui.strong(f.operation.to_string());
                ui.end_row();
                ui.label("Where");
                ui.strong(byte_range(f));
                ui.end_row();
                ui.label("Error");
                ui.strong(crate::text::os_error(&f.message, f.errno));
                ui.end_row();
            });
            ui.add_space(6.0);
            ui.label("The job is paused until you decide.");
            ui.add_space(6.0);
            ui.horizontal(|ui| {
                let retry = if f.lost {
                    "Reconnect and try this range again"
                } else {
                    "Try this range again now"
                };
                if ui.button("Retry").on_hover_text(retry).clicked() {
                    decision = Some(Decision::Retry);
                }
                if !f.lost
                    && ui
                        .button("Ignore")
                        .on_hover_text(
                            "Go on with the rest; this range stays dirty and is retried later",
                        )
                        .clicked()
                {
                    decision = Some(Decision::Ignore);
                }
                if ui
                    .button("Stop")
                    .on_hover_text("End the job; the target is left incomplete")
                    .clicked()
                {
                    decision = Some(Decision::Stop);
                }
            });
        });
        decision
    }
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

fn verb(f: &IoFailure) -> &'static str {
    use livemirror_core::IoOperation::*;
    match f.operation {
        Read | BlockStatus => "read",
        Write | WriteZeroes => "written",
        Flush => "flushed",
    }
}
