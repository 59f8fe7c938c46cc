//! The Running screen (and its Ready state): the heatmap, progress with
//! throughput and ETA, the throughput graph, the speed limit, Pause/Resume,
//! Cancel with a confirmation that says what becomes of the target, where
//! the source is shared (if it is), and — once in sync — the Complete
//! button. The error prompt opens on top when the job waits for a decision.

use eframe::egui::{self, Color32, RichText};
use egui_plot::{Line, Plot};
use livemirror_core::job::{Command, JobState, JobStatus, Tracking};

use super::app::Action;
use super::heatmap::Heatmap;
use super::prompt::Prompt;
use super::session::Session;
use super::share;
use crate::text;
use crate::units::{duration, human};

const GREEN: Color32 = Color32::from_rgb(0x2f, 0xa8, 0x62);
const PLOT_HEIGHT: f32 = 120.0;

pub struct RunningScreen {
    /// The speed slider's value, MiB/s; 0 = unlimited.
    speed_mib: f64,
    confirm_cancel: bool,
}

impl RunningScreen {
    pub fn new(status: &JobStatus) -> Self {
        RunningScreen { speed_mib: status.speed as f64 / f64::from(1 << 20), confirm_cancel: false }
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, session: &Session, actions: &mut Vec<Action>) {
        let status = session.job.status();
        let p = status.progress;
        ui.horizontal(|ui| {
            ui.heading("Cloning");
            ui.label(
                RichText::new(format!("{}  to  {}", session.source_name, session.target_name))
                    .weak(),
            );
        });
        ui.label(RichText::new(text::sentence(text::tracking(status.tracking))).weak());
        ui.add_space(4.0);
        state_banner(ui, &status, actions);
        if let Some(share) = &session.share {
            share::status_ui(ui, share, &status);
        }
        ui.add_space(4.0);

        let frac = if p.total == 0 { 1.0 } else { p.copied as f64 / p.total as f64 };
        let eta = match p.bytes_per_sec {
            0 => "—".to_string(),
            r => duration(std::time::Duration::from_secs((p.total - p.copied.min(p.total)) / r)),
        };
        ui.add(egui::ProgressBar::new(frac as f32).text(format!(
            "{} of {} ({:.1} %) · {}/s · ETA {} · {} dirty",
            human(p.copied),
            human(p.total),
            frac * 100.0,
            human(p.bytes_per_sec),
            eta,
            human(p.dirty),
        )));
        ui.add_space(4.0);
        self.controls_ui(ui, &status, actions);
        ui.add_space(6.0);

        let heat_height = ui.available_height() - PLOT_HEIGHT - 40.0;
        ui.allocate_ui(egui::vec2(ui.available_width(), heat_height.max(120.0)), |ui| {
            Heatmap { map: session.job.chunk_map(), device_len: session.source.len() }.ui(ui, 80.0);
        });
        ui.add_space(4.0);
        throughput_ui(ui, &session.throughput);

        if let Some(failure) = &status.pending_error
            && let Some(d) = (Prompt { failure }).ui(ui.ctx())
        {
            actions.push(Action::Job(Command::Decide(d)));
        }
        if self.confirm_cancel {
            self.cancel_modal(ui.ctx(), &status, actions);
        }
    }

    fn controls_ui(&mut self, ui: &mut egui::Ui, status: &JobStatus, actions: &mut Vec<Action>) {
        ui.horizontal(|ui| {
            let label = ui.label("Speed limit");
            let r = ui
                .add(
                    egui::Slider::new(&mut self.speed_mib, 0.0..=2048.0)
                        .logarithmic(true)
                        .custom_formatter(|v, _| {
                            if v < 0.5 { "unlimited".into() } else { format!("{v:.0} MiB/s") }
                        })
                        .custom_parser(|s| {
                            let s = s.trim().trim_end_matches("MiB/s").trim();
                            if s == "unlimited" { Some(0.0) } else { s.parse().ok() }
                        }),
                )
                .labelled_by(label.id);
            if r.changed() {
                let speed = if self.speed_mib < 0.5 {
                    0
                } else {
                    (self.speed_mib * f64::from(1 << 20)) as u64
                };
                actions.push(Action::Job(Command::SetSpeed(speed)));
            }
            ui.separator();
            let ending = status.state.is_terminal() || status.state == JobState::Completing;
            match status.state {
                JobState::Paused | JobState::Standby if status.pending_error.is_none() => {
                    if ui.button("Resume").clicked() {
                        actions.push(Action::Job(Command::Resume));
                    }
                }
                _ => {
                    if ui
                        .add_enabled(
                            !ending && status.pending_error.is_none(),
                            egui::Button::new("Pause"),
                        )
                        .clicked()
                    {
                        actions.push(Action::Job(Command::Pause));
                    }
                }
            }
            if ui.add_enabled(!ending, egui::Button::new("Cancel…")).clicked() {
                self.confirm_cancel = true;
            }
        });
    }

    fn cancel_modal(&mut self, ctx: &egui::Context, status: &JobStatus, actions: &mut Vec<Action>) {
        egui::Modal::new(egui::Id::unique("confirm-cancel")).show(ctx, |ui| {
            ui.set_max_width(440.0);
            ui.heading("Cancel the job?");
            ui.label(if status.ready {
                "The copies under way are finished first, so the target is a consistent copy of the source as of now. The source is not switched over to it."
            } else {
                "The target is not in sync yet: it will be left INCOMPLETE and is not a usable copy."
            });
            ui.horizontal(|ui| {
                if ui.button("Cancel the job").clicked() {
                    actions.push(Action::Job(Command::Cancel { force: false }));
                    self.confirm_cancel = false;
                }
                if ui.button("Keep going").clicked() {
                    self.confirm_cancel = false;
                }
            });
        });
    }
}

fn state_banner(ui: &mut egui::Ui, status: &JobStatus, actions: &mut Vec<Action>) {
    if status.state.is_ready() || (status.ready && status.state == JobState::Completing) {
        egui::Frame::new()
            .fill(GREEN.gamma_multiply(0.25))
            .stroke((1.0, GREEN))
            .corner_radius(4.0)
            .inner_margin(8.0)
            .show(ui, |ui| {
                ui.set_min_width(ui.available_width());
                // Words above, the button on its own row: long wording
                // wraps instead of pushing Complete out of a narrow window.
                ui.label(RichText::new(text::sentence(text::ready(status.tracking))).strong().size(16.0).color(Color32::WHITE));
                if status.tracking == Tracking::Kernel {
                    let p = &status.progress;
                    ui.label(text::expected_hold(p.dirty + p.in_flight, p.bytes_per_sec));
                }
                ui.label(if status.verify {
                    "Press Complete to finish: the last writes are copied, the target is flushed, and source and target are compared once more before the job says they are identical."
                } else {
                    "Press Complete to finish: the last writes are copied, the target is flushed, and the job ends with an identical copy."
                });
                ui.horizontal(|ui| {
                    let completing = status.state == JobState::Completing;
                    if ui
                        .add_enabled(!completing, egui::Button::new(RichText::new("Complete").strong()).fill(GREEN))
                        .clicked()
                    {
                        actions.push(Action::Complete);
                    }
                    if completing {
                        ui.spinner();
                    }
                });
            });
        return;
    }
    let text = match status.state {
        JobState::Created | JobState::Running => {
            "Copying — the target is not usable yet".to_string()
        }
        JobState::Paused if status.pending_error.is_some() => {
            "Paused by an error: waiting for your decision".to_string()
        }
        JobState::Paused => "Paused".to_string(),
        other => format!("{other}"),
    };
    ui.label(RichText::new(text).strong().size(16.0));
}

fn throughput_ui(ui: &mut egui::Ui, samples: &[[f64; 2]]) {
    Plot::new("throughput")
        .height(PLOT_HEIGHT)
        .allow_zoom(false)
        .allow_drag(false)
        .allow_scroll(false)
        .include_y(0.0)
        .y_axis_label("MiB/s")
        .x_axis_label("seconds")
        .show(ui, |plot| {
            plot.line(
                Line::new("throughput", samples.to_vec())
                    .color(Color32::from_rgb(0x3d, 0x8b, 0xff))
                    .fill(0.0)
                    .fill_alpha(0.25),
            );
        });
}
