//! The error prompt of the `stop` policy: a modal that names the side,
//! the operation, the byte range and the OS's error text, and asks Retry,
//! Ignore or Stop. The job is paused until one is pressed.

use eframe::egui::{self, Color32, RichText};
use livemirror_core::IoFailure;
use livemirror_core::job::Decision;

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
            ui.heading(
                RichText::new(format!("The {} could not be {}", f.side, verb(f)))
                    .color(Color32::from_rgb(0xe5, 0x48, 0x4d)),
            );
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
                if ui.button("Retry").on_hover_text("Try this range again now").clicked() {
                    decision = Some(Decision::Retry);
                }
                if ui
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

fn verb(f: &IoFailure) -> &'static str {
    use livemirror_core::IoOperation::*;
    match f.operation {
        Read | BlockStatus => "read",
        Write | WriteZeroes => "written",
        Flush => "flushed",
    }
}
