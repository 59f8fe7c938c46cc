//! "Verify only" from Setup: compare a chosen source and target without
//! copying anything, on the verification map (red where they differ), then
//! offer Repair (copy what differs onto the target) or Back to Setup.

use std::path::PathBuf;
use std::sync::Arc;

use eframe::egui;

use crate::gui::action::Action;
use crate::gui::screens::running::BUTTON;
use crate::gui::widgets::verify::{Found, VerifyMap, map_ui};
use crate::text::{self, human};

pub struct VerifyOnlyScreen {
    pub source: PathBuf,
    pub target: PathBuf,
    /// The pass under way or last done.
    pub map: Arc<VerifyMap>,
    /// What the last pass found; `None` while one runs.
    pub found: Option<Found>,
    /// The last pass was a repair.
    pub repaired: bool,
}

impl VerifyOnlyScreen {
    pub fn new(source: PathBuf, target: PathBuf, map: Arc<VerifyMap>) -> Self {
        VerifyOnlyScreen { source, target, map, found: None, repaired: false }
    }

    pub fn ui(&self, ui: &mut egui::Ui) {
        ui.heading("Verify only");
        egui::Grid::new("verify-only").num_columns(2).spacing([12.0, 6.0]).show(ui, |ui| {
            ui.label("Source");
            ui.label(self.source.display().to_string());
            ui.end_row();
            ui.label("Target");
            ui.label(self.target.display().to_string());
            ui.end_row();
            ui.label("Verification");
            ui.label(self.verdict());
            ui.end_row();
        });
        ui.add_space(6.0);
        map_ui(ui, &self.map, 90.0);
    }

    fn verdict(&self) -> String {
        let repaired = if self.repaired { "repaired: " } else { "" };
        match &self.found {
            None => {
                let (done, of) = self.map.progress();
                match self.repaired {
                    true => format!("repairing… {} of {}", human(done), human(of)),
                    false => text::comparing(done, of),
                }
            }
            Some(Found::Identical) => format!("{repaired}{}", text::IDENTICAL),
            Some(Found::DiffersAt(at)) => format!("{repaired}{}", text::differs_from(*at)),
            Some(Found::Skipped) => "stopped".into(),
            Some(Found::Error(e)) => text::could_not_verify(e),
        }
    }

    /// Stop while a pass runs; else Verify again, Repair (when different)
    /// and Back.
    pub fn actions_ui(&mut self, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
        match &self.found {
            None => {
                if ui.add(egui::Button::new("Stop").min_size(BUTTON)).clicked() {
                    self.map.stop();
                }
            }
            Some(found) => {
                if ui.add(egui::Button::new("Verify again").min_size(BUTTON)).clicked() {
                    actions.push(Action::VerifyOnly {
                        source: self.source.clone(),
                        target: self.target.clone(),
                    });
                }
                if matches!(found, Found::DiffersAt(_))
                    && ui
                        .add(egui::Button::new("Repair").min_size(BUTTON))
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
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            if ui.add(egui::Button::new("Back to Setup").min_size(BUTTON)).clicked() {
                actions.push(Action::NewSetup);
            }
        });
    }
}
