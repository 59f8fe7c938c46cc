//! The speed limit control, the same on Setup and while a job runs: a
//! slider whose every position is one of the preset steps it shows (so a
//! position never means a value the screen does not say), and a field to
//! type any value. No limit is said "unlimited" everywhere, never "0 MiB/s".

use eframe::egui::{self, RichText};

use crate::text::speed_limit;

const MIB: u64 = 1 << 20;

/// The slider's steps, MiB/s, slowest first; the last step is no limit.
const STEPS: [u64; 12] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 0];

/// A typed limit: "unlimited" or "0" for none, else MiB/s (a trailing
/// "MiB/s" is allowed). `None` when it is not a number (nor empty: a field
/// cleared to type anew does not lift the limit).
pub fn parse(typed: &str) -> Option<u64> {
    let t = typed.trim();
    let t = t.strip_suffix("MiB/s").unwrap_or(t).trim();
    if t.eq_ignore_ascii_case("unlimited") {
        return Some(0);
    }
    let mib: f64 = t.parse().ok()?;
    (mib.is_finite() && mib >= 0.0).then_some((mib * MIB as f64) as u64)
}

/// The step a speed sits at: the fastest step not above it (no limit: the last).
fn step_of(speed: u64) -> usize {
    if speed == 0 {
        return STEPS.len() - 1;
    }
    STEPS[..STEPS.len() - 1].iter().rposition(|s| s * MIB <= speed).unwrap_or(0)
}

/// The control's typed text between frames.
pub struct SpeedControl {
    text: String,
    editing: bool,
}

impl SpeedControl {
    pub fn new(speed: u64) -> Self {
        SpeedControl { text: speed_limit(speed), editing: false }
    }

    /// Draws the slider and the field, labelled by `label` (the caller's
    /// "Speed limit"), and `hint`; true when the user changed `speed` (a
    /// slider step, or a value as it is typed: a Start pressed while the
    /// field still has the focus gets it too).
    pub fn ui(&mut self, ui: &mut egui::Ui, label: egui::Id, speed: &mut u64, hint: &str) -> bool {
        let mut changed = false;
        if !self.editing {
            self.text = speed_limit(*speed);
        }
        let mut step = step_of(*speed);
        let slider = egui::Slider::new(&mut step, 0..=STEPS.len() - 1).show_value(false);
        let r = ui.add(slider).labelled_by(label).on_hover_text(speed_limit(STEPS[step] * MIB));
        if r.changed() {
            *speed = STEPS[step] * MIB;
            self.text = speed_limit(*speed);
            changed = true;
        }
        let field = ui
            .add(egui::TextEdit::singleline(&mut self.text).desired_width(100.0))
            .labelled_by(label);
        self.editing = field.has_focus();
        if field.changed()
            && let Some(s) = parse(&self.text)
            && s != *speed
        {
            *speed = s;
            changed = true;
        }
        if field.lost_focus() {
            // The value in its words; text that is no speed gives way to it.
            self.text = speed_limit(*speed);
        }
        if !hint.is_empty() {
            ui.label(RichText::new(hint).weak());
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_is_the_value_it_shows_and_parses_back() {
        for (i, s) in STEPS.iter().enumerate() {
            assert_eq!(step_of(s * MIB), i);
            assert_eq!(parse(&speed_limit(s * MIB)), Some(s * MIB));
        }
        assert_eq!(step_of(37 * MIB), step_of(20 * MIB));
        assert_eq!(step_of(1), 0);
        assert_eq!(parse("37"), Some(37 * MIB));
        assert_eq!(parse(" 1.5 MiB/s "), Some(3 * MIB / 2));
        assert_eq!(parse("0"), Some(0));
        assert_eq!(parse("Unlimited"), Some(0));
        assert_eq!(parse("fast"), None);
        assert_eq!(parse(""), None);
        assert_eq!(parse("-3"), None);
    }
}
