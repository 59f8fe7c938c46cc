//! The Running screen (and its Ready state): what the job is doing (or that
//! it is paused), how the source is tracked, the heatmap, progress with
//! throughput and ETA, the throughput graph, the speed limit, where the
//! source is shared (if it is). Its buttons live in the window's action
//! bar, in fixed places: Complete (usable once in sync), Pause/Resume, and
//! Cancel with a confirmation that says what becomes of the target. The
//! error prompt opens on top when the job waits for a decision.

use eframe::egui::{self, Color32, RichText};
use egui_plot::{Line, Plot};
use livemirror_core::job::{Command, JobState, JobStatus, Tracking};

use crate::gui::action::Action;
use crate::gui::job::Session;
use crate::gui::theme;
use crate::gui::widgets::heatmap::Heatmap;
use crate::gui::widgets::progress;
use crate::gui::widgets::prompt::Prompt;
use crate::gui::widgets::share;
use crate::gui::widgets::speed::SpeedControl;
use crate::text;
use crate::text::human;

const PLOT_HEIGHT: f32 = 120.0;

pub struct RunningScreen {
    /// The speed limit as set here (bytes/s; 0 = unlimited).
    speed: u64,
    speed_control: SpeedControl,
    speed_changed: bool,
    confirm_cancel: bool,
    progress: progress::Tracker,
}

/// The action bar's buttons: one size, so they keep their places.
pub const BUTTON: egui::Vec2 = egui::vec2(120.0, 30.0);

impl RunningScreen {
    pub fn new(status: &JobStatus) -> Self {
        RunningScreen {
            speed: status.speed,
            speed_control: SpeedControl::new(status.speed),
            speed_changed: false,
            confirm_cancel: false,
            progress: progress::Tracker::default(),
        }
    }

    /// The screen above the action bar; `view_height` is the height the
    /// window gives it (the heatmap takes what the rest leaves).
    pub fn ui(&mut self, ui: &mut egui::Ui, session: &Session, view_height: f32) {
        let status = session.job.status();
        let p = status.progress;
        ui.horizontal_wrapped(|ui| {
            ui.heading("Cloning");
            ui.label(
                RichText::new(format!("{}  to  {}", session.source_name, session.target_name))
                    .weak(),
            );
        });
        ui.label(RichText::new(text::sentence(text::tracking(status.tracking))).weak());
        ui.add_space(4.0);
        state_banner(ui, &status);
        if let Some(share) = &session.share {
            share::status_ui(ui, share, &status);
        }
        ui.add_space(4.0);

        let shown = self.progress.shown(&p, session.job.chunk_map(), session.job.fit().copy_len);
        ui.add(egui::ProgressBar::new(shown.fraction() as f32).text(format!(
            "{} of {} copied ({:.1} %)",
            human(shown.done),
            human(shown.len),
            shown.fraction() * 100.0,
        )));
        let eta = self.progress.eta(std::time::Instant::now(), p.dirty + p.in_flight);
        ui.horizontal_wrapped(|ui| {
            ui.label(format!(
                "{} of data · {}",
                text::rate(session.data_rate()),
                text::eta(eta, &status)
            ));
            let mut after = Vec::new();
            if shown.recopied > 0 {
                after.push(format!("{} copied again", human(shown.recopied)));
            }
            if shown.again > 0 {
                after.push(format!("{} waiting to be copied again", human(shown.again)));
            }
            if !after.is_empty() {
                let words = format!("· written after its copy: {}", after.join(", "));
                ui.label(RichText::new(words).weak());
            }
        });
        ui.add_space(4.0);
        self.speed_ui(ui);
        ui.add_space(6.0);

        let used = ui.min_rect().height();
        let heat_height = view_height - used - PLOT_HEIGHT - 40.0;
        ui.allocate_ui(egui::vec2(ui.available_width(), heat_height.max(120.0)), |ui| {
            Heatmap { map: session.job.chunk_map(), device_len: session.source.len() }.ui(ui, 80.0);
        });
        ui.add_space(4.0);
        throughput_ui(ui, &session.throughput);
    }

    /// The action bar's buttons for this screen, always in the same places:
    /// Complete (usable once in sync), Pause or Resume, Cancel…; and the
    /// error prompt and the Cancel confirmation on top.
    pub fn actions_ui(&mut self, ui: &mut egui::Ui, session: &Session, actions: &mut Vec<Action>) {
        let status = session.job.status();
        let ending = status.state.is_terminal() || status.state == JobState::Completing;
        let can_complete = (status.state.is_ready()) && status.pending_error.is_none();
        let complete = egui::Button::new(RichText::new("Complete").strong())
            .fill(if can_complete { theme::GOOD } else { Color32::TRANSPARENT })
            .min_size(BUTTON);
        if ui.add_enabled(can_complete, complete).clicked() {
            actions.push(Action::Complete);
        }
        let paused = matches!(status.state, JobState::Paused | JobState::Standby)
            && status.pending_error.is_none();
        let (word, command) =
            if paused { ("Resume", Command::Resume) } else { ("Pause", Command::Pause) };
        let usable = !ending && status.pending_error.is_none();
        if ui.add_enabled(usable, egui::Button::new(word).min_size(BUTTON)).clicked() {
            actions.push(Action::Job(command));
        }
        if ui.add_enabled(!ending, egui::Button::new("Cancel…").min_size(BUTTON)).clicked() {
            self.confirm_cancel = true;
        }
        if status.state == JobState::Completing {
            ui.spinner();
            ui.label("Completing…");
        }
        if let Some(failure) = &status.pending_error
            && let Some(d) = (Prompt { failure }).ui(ui.ctx())
        {
            actions.push(Action::Job(Command::Decide(d)));
        }
        if self.confirm_cancel {
            self.cancel_modal(ui.ctx(), &status, actions);
        }
    }

    fn speed_ui(&mut self, ui: &mut egui::Ui) {
        ui.horizontal_wrapped(|ui| {
            let label = ui.label("Speed limit");
            let hint = "counts the data copied (holes and zeroes cost nothing)";
            if self.speed_control.ui(ui, label.id, &mut self.speed, hint) {
                self.speed_changed = true;
            }
        });
    }

    /// A speed the user set since the last call.
    pub fn take_speed(&mut self) -> Option<Command> {
        std::mem::take(&mut self.speed_changed).then_some(Command::SetSpeed(self.speed))
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

/// What the job is doing, in a sentence; once in sync, in a green frame
/// that wraps its words (Complete is in the action bar, never pushed away).
fn state_banner(ui: &mut egui::Ui, status: &JobStatus) {
    let paused = matches!(status.state, JobState::Paused | JobState::Standby);
    if paused && status.pending_error.is_none() {
        let words = if status.ready {
            "Paused: in sync when paused, but new writes are not copied until you resume"
        } else {
            "Paused: nothing is copied until you resume — the target is not usable yet"
        };
        ui.label(RichText::new(words).strong().size(16.0));
        return;
    }
    if status.state.is_ready() || (status.ready && status.state == JobState::Completing) {
        egui::Frame::new()
            .fill(theme::GOOD.gamma_multiply(0.25))
            .stroke((1.0, theme::GOOD))
            .corner_radius(4.0)
            .inner_margin(8.0)
            .show(ui, |ui| {
                ui.set_min_width(ui.available_width());
                ui.label(RichText::new(text::sentence(text::ready(status.tracking))).strong().size(16.0).color(theme::ON_GOOD));
                if status.tracking == Tracking::Kernel {
                    let p = &status.progress;
                    ui.label(text::expected_hold(p.dirty + p.in_flight, p.bytes_per_sec));
                }
                ui.label(if status.verify {
                    "Press Complete to finish: the last writes are copied, the target is flushed, and source and target are compared once more before the job says they are identical."
                } else {
                    "Press Complete to finish: the last writes are copied, the target is flushed, and the job ends with an identical copy."
                });
            });
        return;
    }
    let text = match status.state {
        JobState::Created | JobState::Running => {
            "Copying — the target is not usable yet".to_string()
        }
        JobState::Paused => "Paused by an error: waiting for your decision".to_string(),
        other => text::sentence(text::state(other)),
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
        .y_axis_label("data, MiB/s")
        .x_axis_label("seconds")
        .show(ui, |plot| {
            plot.line(
                Line::new("throughput", samples.to_vec())
                    .color(theme::BUSY)
                    .fill(0.0)
                    .fill_alpha(0.25),
            );
        });
}
