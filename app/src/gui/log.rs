//! The log panel: the job's events (not its progress ticks), newest at the
//! bottom, errors in red.

use eframe::egui::{self, Color32, RichText};

use super::session::LogLine;

pub fn ui(ui: &mut egui::Ui, log: &[LogLine]) {
    egui::CollapsingHeader::new(format!("Log ({} events)", log.len())).default_open(true).show(
        ui,
        |ui| {
            egui::ScrollArea::vertical()
                .max_height(110.0)
                .stick_to_bottom(true)
                .auto_shrink([false, true])
                .show(ui, |ui| {
                    for l in log {
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
