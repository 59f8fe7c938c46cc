//! The application: which screen is showing, the job session, the engine,
//! and the remembered settings. Screens draw and push [`Action`]s; the app
//! applies them after the frame, so no widget code touches the job or the
//! disk directly.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use eframe::egui;
use livemirror_core::job::{Command, Outcome};

use super::disks::Disk;
use super::done::{DoneScreen, Fix, Verify};
use super::engine::{Engine, Opener, Pending};
use super::frame_stats::FrameStats;
use super::running::RunningScreen;
use super::session::{self, Session, StartRequest};
use super::settings::Settings;
use super::setup::SetupScreen;
use super::{Launch, log};
use crate::demo::first_difference;
use crate::sizes::{self, Fixed};

/// Which side of the mirror a picker fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Source,
    Target,
}

/// What a screen asks for; applied after the frame.
pub enum Action {
    Choose(Role, PathBuf),
    PickFile {
        role: Role,
        new_file: bool,
    },
    Start(StartRequest),
    Job(Command),
    /// Complete (the demo stops its writer first, so the result can be compared).
    Complete,
    Verify,
    StartAnother,
}

/// What the app is given from outside: how to open devices, how to list
/// disks, and where settings live (`None`: not remembered, as in tests).
pub struct Env {
    pub opener: Arc<dyn Opener>,
    pub list_disks: fn() -> Vec<Disk>,
    pub settings_path: Option<PathBuf>,
}

enum Screen {
    Setup(Box<SetupScreen>),
    /// Waiting for the demo's images to be generated.
    Preparing,
    Running(RunningScreen),
    Done(DoneScreen),
}

pub struct LiveMirrorApp {
    env: Env,
    engine: Engine,
    settings: Settings,
    disks: Vec<Disk>,
    screen: Screen,
    session: Option<Session>,
    starting: Option<Pending<Result<Session, String>>>,
    /// The last session's share closing: the next Start waits for it, so
    /// it can bind the same endpoint.
    unsharing: Option<Pending<()>>,
    picking: Option<(Role, Pending<Option<PathBuf>>)>,
    verifying: Option<Pending<Verify>>,
    fixing: Option<Pending<Fix>>,
    stats: Option<FrameStats>,
}

/// Repaint rate while a job runs: the heat fades and progress comes at 4 Hz.
const RUNNING_REPAINT: Duration = Duration::from_millis(100);

impl LiveMirrorApp {
    pub fn new(ctx: &egui::Context, env: Env, launch: Launch) -> std::io::Result<Self> {
        let settings = env.settings_path.as_deref().map(Settings::load).unwrap_or_default();
        let engine = Engine::new()?;
        let disks = (env.list_disks)();
        let (screen, starting) = match launch {
            Launch::Setup { source, target } => {
                (Screen::Setup(Box::new(SetupScreen::new(&settings, source, target))), None)
            }
            Launch::Demo(args) => {
                let c = ctx.clone();
                (
                    Screen::Preparing,
                    Some(engine.blocking(ctx, move || session::start_demo(&args, c))),
                )
            }
        };
        Ok(LiveMirrorApp {
            env,
            engine,
            settings,
            disks,
            screen,
            session: None,
            starting,
            unsharing: None,
            picking: None,
            verifying: None,
            fixing: None,
            stats: FrameStats::from_env(),
        })
    }

    /// The window size to open with, from the settings.
    pub fn initial_size(settings_path: Option<&Path>) -> [f32; 2] {
        settings_path.map(Settings::load).unwrap_or_default().window_size
    }

    /// The job's session, for tests.
    #[cfg(test)]
    pub fn session(&self) -> Option<&Session> {
        self.session.as_ref()
    }

    /// Whether a Start is under way, for tests.
    #[cfg(test)]
    pub fn starting(&self) -> bool {
        self.starting.is_some()
    }

    /// The Setup screen's typed paths, for tests.
    #[cfg(test)]
    pub fn setup_paths(&self) -> Option<(String, String)> {
        match &self.screen {
            Screen::Setup(s) => Some((s.source.clone(), s.target.clone())),
            _ => None,
        }
    }

    /// Takes in what the engine finished since the last frame.
    fn poll(&mut self, ctx: &egui::Context) {
        if let Some(result) = self.starting.as_ref().and_then(Pending::poll) {
            self.starting = None;
            match result {
                Ok(s) => {
                    self.screen = Screen::Running(RunningScreen::new(&s.job.status()));
                    self.session = Some(s);
                }
                Err(e) => {
                    // Back to Setup as it was (the demo has none: a fresh one).
                    let mut setup = match std::mem::replace(&mut self.screen, Screen::Preparing) {
                        Screen::Setup(old) => old,
                        _ => Box::new(SetupScreen::new(&self.settings, None, None)),
                    };
                    setup.start_error = Some(e);
                    self.screen = Screen::Setup(setup);
                }
            }
        }
        if let Some((role, pending)) = &self.picking
            && let Some(picked) = pending.poll()
        {
            if let (Some(path), Screen::Setup(s)) = (picked, &mut self.screen) {
                s.set(*role, &path);
            }
            self.picking = None;
        }
        if let Some(v) = self.verifying.as_ref().and_then(Pending::poll) {
            self.verifying = None;
            if let Screen::Done(d) = &mut self.screen {
                d.verify = v;
            }
        }
        if let Some(f) = self.fixing.as_ref().and_then(Pending::poll) {
            self.fixing = None;
            if let Screen::Done(d) = &mut self.screen {
                d.fix = f;
            }
        }
        let Some(session) = &mut self.session else {
            return;
        };
        session.poll();
        let outcome = session.job.status().outcome;
        let demo = session.demo.is_some();
        if let (Screen::Running(_), Some(outcome)) = (&self.screen, outcome) {
            let fix = self.fix_up(&outcome, ctx);
            self.screen = Screen::Done(DoneScreen { verify: Verify::NotDone, fix });
            if demo && matches!(outcome, Outcome::Completed { .. }) {
                // The demo's writer stopped before Complete: show the proof.
                self.apply(Action::Verify, ctx);
            }
        }
    }

    /// Starts the partition-table fix-up a consistent copy onto a target of
    /// another size needs (or the asked-for grow), on the engine.
    fn fix_up(&mut self, outcome: &Outcome, ctx: &egui::Context) -> Fix {
        let Some(s) = &self.session else { return Fix::NotNeeded };
        let consistent =
            matches!(outcome, Outcome::Completed { .. } | Outcome::Cancelled { consistent: true });
        let fit = s.job.fit().clone();
        let grow = s.grow_last_partition;
        if !consistent || !sizes::needed(&fit, grow) {
            return Fix::NotNeeded;
        }
        if s.share.is_some() {
            // Its clients see the source's size: a table for the target's
            // size would look broken to them.
            return Fix::Skipped(
                "left as copied, since the share still serves the copy at the source's size; \
                 run `sgdisk -e` on the target once it is no longer shared"
                    .into(),
            );
        }
        let Some(path) = s.target_path.clone() else { return Fix::NotNeeded };
        let target = s.target.clone();
        self.fixing = Some(self.engine.blocking(ctx, move || {
            match sizes::fix_up(&*target, &path, &fit, grow) {
                Ok(f) => Fix::Done(f),
                Err(e) => Fix::Failed(e),
            }
        }));
        Fix::Running
    }

    fn apply(&mut self, action: Action, ctx: &egui::Context) {
        match action {
            Action::Choose(role, path) => {
                if let Screen::Setup(s) = &mut self.screen {
                    s.set(role, &path);
                }
            }
            Action::PickFile { role, new_file } => {
                let dialog = rfd::AsyncFileDialog::new().set_title(match (role, new_file) {
                    (Role::Source, _) => "Source image",
                    (Role::Target, false) => "Target image (will be overwritten)",
                    (Role::Target, true) => "New target image",
                });
                let pending = self.engine.spawn(ctx, async move {
                    let file = if new_file {
                        dialog.set_file_name("copy.img").save_file().await
                    } else {
                        dialog.pick_file().await
                    };
                    file.map(|f| f.path().to_path_buf())
                });
                self.picking = Some((role, pending));
            }
            Action::Start(req) => {
                self.settings.options = req.options.clone();
                self.settings.share = req.share.clone();
                self.save_settings();
                let (opener, c) = (self.env.opener.clone(), ctx.clone());
                let unsharing = self.unsharing.take();
                self.starting = Some(self.engine.blocking(ctx, move || {
                    if let Some(closing) = unsharing {
                        closing.wait();
                    }
                    session::start(&*opener, req, c)
                }));
            }
            Action::Job(cmd) => {
                if let Some(s) = &self.session {
                    s.job.post(cmd);
                }
            }
            Action::Complete => {
                let Some(s) = &self.session else { return };
                let (job, demo) = (s.job.clone(), s.demo.clone());
                // Stopping the writer joins a thread: do it on the engine.
                let _ = self.engine.blocking(ctx, move || {
                    if let Some(d) = demo {
                        d.stop_writer();
                    }
                    job.post(Command::Complete);
                });
            }
            Action::Verify => {
                let Some(s) = &self.session else { return };
                let (a, b) = (s.source.clone(), s.target.clone());
                let fit = s.job.fit().clone();
                let sized = sizes::needed(&fit, s.grow_last_partition);
                let mut fixed = Fixed::default();
                if let Screen::Done(d) = &mut self.screen {
                    d.verify = Verify::Running;
                    if let Fix::Done(f) = &d.fix {
                        fixed = f.clone();
                    }
                }
                self.verifying = Some(self.engine.blocking(ctx, move || {
                    if sized {
                        return match sizes::verify(&*a, &*b, &fit, &fixed) {
                            Ok(c) => Verify::Compared(c),
                            Err(e) => Verify::Error(e),
                        };
                    }
                    match first_difference(&*a, &*b) {
                        Ok(None) => Verify::Identical,
                        Ok(Some(at)) => Verify::DiffersAt(at),
                        Err(e) => Verify::Error(e.to_string()),
                    }
                }));
            }
            Action::StartAnother => {
                if let Some(share) = self.session.take().and_then(|mut s| s.share.take()) {
                    self.unsharing = Some(self.engine.spawn(ctx, share.stop()));
                }
                self.verifying = None;
                self.fixing = None;
                self.disks = (self.env.list_disks)();
                self.screen = Screen::Setup(Box::new(SetupScreen::new(&self.settings, None, None)));
            }
        }
    }

    fn save_settings(&self) {
        if let Some(p) = &self.env.settings_path
            && let Err(e) = self.settings.save(p)
        {
            eprintln!("livemirror: cannot save settings to {}: {e}", p.display());
        }
    }

    fn draw(&mut self, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
        egui::Panel::top("title").show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.label(egui::RichText::new("livemirror").strong().size(18.0));
                ui.label(
                    egui::RichText::new("clone a disk while it is in use, switch over on Complete")
                        .weak(),
                );
            });
        });
        if let Some(s) = &self.session {
            egui::Panel::bottom("log").resizable(false).show(ui, |ui| log::ui(ui, &s.log));
        }
        egui::CentralPanel::default().show(ui, |ui| match (&mut self.screen, &self.session) {
            (Screen::Setup(s), _) => {
                s.ui(ui, &*self.env.opener, &self.disks, self.starting.is_some(), actions)
            }
            (Screen::Preparing, _) => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("Generating the demo's source image…");
                });
            }
            (Screen::Running(r), Some(s)) => r.ui(ui, s, actions),
            (Screen::Done(d), Some(s)) => d.ui(ui, s, actions),
            (Screen::Running(_) | Screen::Done(_), None) => {}
        });
    }
}

impl eframe::App for LiveMirrorApp {
    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        let began = std::time::Instant::now();
        let ctx = ui.ctx().clone();
        self.poll(&ctx);
        let mut actions = Vec::new();
        self.draw(ui, &mut actions);
        for a in actions {
            self.apply(a, &ctx);
        }
        if let Some(r) = ctx.input(|i| i.viewport().inner_rect) {
            self.settings.window_size = [r.width(), r.height()];
        }
        let running = self.session.as_ref().is_some_and(|s| s.ended.is_none());
        if running || self.starting.is_some() || self.verifying.is_some() {
            ctx.request_repaint_after(RUNNING_REPAINT);
        }
        if let Some(stats) = &mut self.stats {
            stats.record(began.elapsed(), frame.info().cpu_usage, running);
        }
    }

    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        self.save_settings();
    }
}
