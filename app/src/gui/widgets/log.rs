//! The log panel: the job's events (not its progress ticks), newest at the
//! bottom, errors in red.

use eframe::egui::{self, Color32, RichText};

use crate::gui::job::LogLine;

/// Lines shown at once; the panel is exactly that many lines tall, so no
/// line is ever cut in half at its top.
const ROWS: usize = 6;

pub fn ui(ui: &mut egui::Ui, log: &[LogLine]) {
    egui::CollapsingHeader::new(format!("Log ({} events)", log.len())).default_open(true).show(
        ui,
        |ui| {
            let row = ui.text_style_height(&egui::TextStyle::Monospace);
            let height = ROWS as f32 * (row + ui.spacing().item_spacing.y);
            // Always that tall, from the first event on: the panel takes
            // its height from what it held, so a log that grew in it would
            // be cut to the height it had when it was short.
            egui::ScrollArea::vertical()
                .min_scrolled_height(height)
                .max_height(height)
                .stick_to_bottom(true)
                .auto_shrink([false, false])
                .show_rows(ui, row, log.len(), |ui, rows| {
                    for l in &log[rows] {
                        let text = RichText::new(format!("{:8.2}s  {}", l.at, l.text)).monospace();
                        ui.label(if l.problem {
                            text.color(Color32::from_rgb(0xe5, 0x48, 0x4d))
                        } else {
                            text
                        });
                    }
                });
        },
    );
}
