//! The screen of a compressed image written onto a target (see
//! [`crate::gui::flash`]): while it runs, a progress bar by uncompressed
//! bytes, what was read and written, the phase, and Cancel; once it has
//! ended, whether the target reads back as the image. No heatmap,
//! Complete or Pause: a stream is written once, front to back.

use eframe::egui::{self, RichText};
use livemirror_core::flash::Progress;

use crate::gui::action::Action;
use crate::gui::flash::Flashing;
use crate::gui::screens::running::BUTTON;
use crate::gui::theme;
use crate::text;

/// The screen above the action bar.
pub fn ui(ui: &mut egui::Ui, f: &Flashing) {
    let req = &f.request;
    let Some(ended) = &f.ended else {
        let p = f.progress();
        ui.horizontal_wrapped(|ui| {
            ui.heading(text::flash::phase(&p));
            let pair = format!("{}  to  {}", req.source.display(), req.target.display());
            ui.label(RichText::new(pair).weak());
        });
        ui.add_space(4.0);
        let done = fraction(&p);
        ui.add(egui::ProgressBar::new(done as f32).text(format!("{:.1} %", done * 100.0)));
        ui.label(text::flash::amounts(&p));
        return;
    };
    ui.heading("Done");
    let (line, good) = match ended {
        Ok(v) => {
            let words = text::flash::completed(&v.flashed, req.format, None, v.table.as_deref());
            (text::sentence(&words), true)
        }
        Err((e, left)) => (text::flash::failed(e, *left), false),
    };
    let color = if good { theme::GOOD } else { theme::BAD };
    ui.label(RichText::new(line).size(17.0).strong().color(color));
}

/// How far, by uncompressed bytes: written of the declared size (where the
/// format does not declare it, the compressed bytes read stand in), then
/// read back of written.
fn fraction(p: &Progress) -> f64 {
    let (done, of) = match p.declared_len {
        _ if p.verified > 0 => (p.verified, p.written),
        Some(len) => (p.written, len),
        None => (p.compressed_read, p.compressed_len),
    };
    if of == 0 { 0.0 } else { (done as f64 / of as f64).min(1.0) }
}

/// The action bar: Cancel while it runs, then "Start another".
pub fn actions_ui(ui: &mut egui::Ui, f: &Flashing, actions: &mut Vec<Action>) {
    if f.running() {
        if ui.add(egui::Button::new("Cancel").min_size(BUTTON)).clicked() {
            actions.push(Action::CancelFlash);
        }
        return;
    }
    ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
        if ui.add(egui::Button::new("Start another").min_size(BUTTON)).clicked() {
            actions.push(Action::StartAnother);
        }
    });
}
