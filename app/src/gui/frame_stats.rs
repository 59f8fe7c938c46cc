//! Frame-time measurement, on when the [`FRAMES`] target is logged at
//! debug (`RUST_LOG=livemirror::frames=debug`): every five seconds, one
//! event with the mean and worst time spent in the app's `ui()` and
//! eframe's whole-frame CPU time, over frames drawn while a job runs. How
//! the README's frame-time figure is made.

use std::time::{Duration, Instant};

use crate::logs::FRAMES;

pub struct FrameStats {
    since: Instant,
    frames: u32,
    ui_total: Duration,
    ui_worst: Duration,
    cpu_total: f32,
}

const EVERY: Duration = Duration::from_secs(5);

impl FrameStats {
    /// A measurement, if anyone reads what it logs.
    pub fn if_logged() -> Option<Self> {
        tracing::enabled!(target: FRAMES, tracing::Level::DEBUG).then(FrameStats::new)
    }

    fn new() -> Self {
        FrameStats {
            since: Instant::now(),
            frames: 0,
            ui_total: Duration::ZERO,
            ui_worst: Duration::ZERO,
            cpu_total: 0.0,
        }
    }

    /// Counts one frame (only while a job runs); logs and restarts every
    /// five seconds.
    pub fn record(&mut self, ui: Duration, cpu: Option<f32>, running: bool) {
        if running {
            self.frames += 1;
            self.ui_total += ui;
            self.ui_worst = self.ui_worst.max(ui);
            self.cpu_total += cpu.unwrap_or(0.0);
        }
        if self.since.elapsed() < EVERY {
            return;
        }
        if self.frames > 0 {
            let n = self.frames as f64;
            tracing::debug!(
                target: FRAMES,
                "{} frames while running: ui() mean {:.2} ms, worst {:.2} ms; whole frame (eframe cpu_usage) mean {:.2} ms",
                self.frames,
                self.ui_total.as_secs_f64() * 1e3 / n,
                self.ui_worst.as_secs_f64() * 1e3,
                f64::from(self.cpu_total) * 1e3 / n,
            );
        }
        *self = FrameStats::new();
    }
}
