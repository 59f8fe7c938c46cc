//! The application: which screen is showing, the job session, the engine,
//! and the remembered settings. Screens draw and push [`Action`]s; the app
//! applies them after the frame, so no widget code touches the job or the
//! disk directly.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use eframe::egui;
use livemirror_core::device::{BlockDevice, OpenOptions};
use livemirror_core::job::{Command, Outcome};

use crate::gui::action::{Action, Role};
use crate::gui::engine::{Engine, Opener, Pending};
use crate::gui::flash::Flashing;
use crate::gui::frame_stats::FrameStats;
use crate::gui::job::{self, Session, StartError, StartRequest};
use crate::gui::screens::done::{DoneScreen, Fix, Verify};
use crate::gui::screens::flashing;
use crate::gui::screens::running::BUTTON;
use crate::gui::screens::running::RunningScreen;
use crate::gui::screens::setup::SetupScreen;
use crate::gui::screens::verify_only::VerifyOnlyScreen;
use crate::gui::settings::{Saver, Settings};
use crate::gui::share_option::ShareSettings;
use crate::gui::widgets::browse::{Browser, Picked};
use crate::gui::widgets::verify::{self, Found, VerifyMap};
use crate::gui::widgets::{log, unfinished};
use crate::gui::{Launch, paths};
use crate::platform::disks::Disk;
use crate::session::resume::{self, Unfinished};
use crate::session::share::Share;
use crate::session::sizes::{self, Fixed};
use crate::text;

/// A share that outlived its session ("Start another" kept it serving).
struct Kept {
    share: Share,
    /// What it serves, in words.
    serves: String,
}

/// What closing the window waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    /// Not closing.
    No,
    /// Asked to close: the question is showing.
    Asking,
    /// The job was cancelled; close once it has ended.
    AfterCancel,
    /// Closing for real: let the next close request through.
    Now,
}

/// A source and a target, open.
type Pair = [Arc<dyn BlockDevice>; 2];

/// What a system file dialog gave.
enum Dialog {
    Picked(PathBuf),
    /// Cancelled, or the dialog could not be shown (rfd cannot tell which).
    Nothing,
    /// The desktop has no dialog to show: the window browses itself.
    Missing,
}

/// What the app is given from outside: how to open devices, how to list
/// disks, and where settings live (`None`: not remembered, as in tests).
pub struct Env {
    pub opener: Arc<dyn Opener>,
    pub list_disks: fn() -> Vec<Disk>,
    pub settings_path: Option<PathBuf>,
    /// Whether the desktop has a file dialog to show ([`browse::system_dialog`]).
    pub system_dialog: fn() -> bool,
    /// Where jobs keep their state ([`crate::session::resume`]); none: they keep none.
    pub state_dir: Option<PathBuf>,
}

enum Screen {
    Setup(Box<SetupScreen>),
    /// Waiting for the demo's images to be generated.
    Preparing,
    Running(RunningScreen),
    Done(DoneScreen),
    VerifyOnly(VerifyOnlyScreen),
    /// A compressed image being written, or its outcome.
    Flashing(Flashing),
}

pub struct LiveMirrorApp {
    env: Env,
    engine: Engine,
    settings: Settings,
    /// Writes `settings` on the engine, newest last.
    saver: Arc<Saver>,
    /// The disk list for Setup: `None` while the engine reads it.
    disks: Option<Arc<Vec<Disk>>>,
    listing: Option<Pending<Vec<Disk>>>,
    /// Jobs that stopped before the end, listed on the Setup screen, and
    /// their listing being read on the engine.
    unfinished: Vec<Unfinished>,
    listing_unfinished: Option<Pending<Vec<Unfinished>>>,
    /// "Verify only" opening its pair on the engine (for a repair or not).
    opening_pair: Option<(bool, Pending<Result<Pair, StartError>>)>,
    screen: Screen,
    session: Option<Session>,
    starting: Option<Pending<Result<Session, StartError>>>,
    /// The last session's share closing: the next Start waits for it, so
    /// it can bind the same endpoint.
    unsharing: Option<Pending<()>>,
    /// A system file dialog open: for which side, and whether for a new file.
    picking: Option<(Role, bool, Pending<Dialog>)>,
    /// The window's own file browser, when it is open.
    browser: Option<Browser>,
    verifying: Option<Pending<Verify>>,
    fixing: Option<Pending<Fix>>,
    /// Shares kept serving after their session ended, until stopped.
    kept: Vec<Kept>,
    /// A kept share whose stop waits for a confirmation (it has clients).
    confirm_stop_kept: Option<usize>,
    /// "Start another" waits for an answer: the share has clients.
    confirm_start_another: bool,
    closing: Closing,
    stats: Option<FrameStats>,
}

/// Repaint rate while a job runs: the heat fades and progress comes at 4 Hz.
const RUNNING_REPAINT: Duration = Duration::from_millis(100);

impl LiveMirrorApp {
    pub fn new(ctx: &egui::Context, env: Env, launch: Launch) -> std::io::Result<Self> {
        let settings = env.settings_path.as_deref().map(Settings::load).unwrap_or_default();
        let engine = Engine::new()?;
        let listing = Some(engine.blocking(ctx, env.list_disks));
        let state_dir = env.state_dir.clone();
        let listing_unfinished = Some(engine.blocking(ctx, move || unfinished_in(state_dir)));
        let (screen, starting) = match launch {
            Launch::Setup { source, target } => {
                (Screen::Setup(Box::new(SetupScreen::new(&settings, source, target))), None)
            }
            Launch::Demo(args) => {
                let c = ctx.clone();
                (Screen::Preparing, Some(engine.blocking(ctx, move || job::start_demo(&args, c))))
            }
        };
        Ok(LiveMirrorApp {
            env,
            engine,
            settings,
            saver: Arc::default(),
            disks: None,
            listing,
            unfinished: Vec::new(),
            listing_unfinished,
            opening_pair: None,
            screen,
            session: None,
            starting,
            unsharing: None,
            picking: None,
            browser: None,
            verifying: None,
            fixing: None,
            kept: Vec::new(),
            confirm_stop_kept: None,
            confirm_start_another: false,
            closing: Closing::No,
            stats: FrameStats::if_logged(),
        })
    }

    /// The window size to open with, from the settings.
    pub fn initial_size(settings_path: Option<&Path>) -> [f32; 2] {
        settings_path.map(Settings::load).unwrap_or_default().window_size
    }

    /// The job the window shows, once started.
    pub fn session(&self) -> Option<&Session> {
        self.session.as_ref()
    }

    /// The compressed image being written (or written), while its screen shows.
    pub fn flashing(&self) -> Option<&Flashing> {
        match &self.screen {
            Screen::Flashing(f) => Some(f),
            _ => None,
        }
    }

    /// Whether a Start is under way.
    pub fn starting(&self) -> bool {
        self.starting.is_some()
    }

    /// Whether a verification is under way.
    pub fn verifying(&self) -> bool {
        self.verifying.is_some() || self.opening_pair.is_some()
    }

    /// Whether Setup waits for the engine: for the disk list, or for the
    /// check of the pair as typed.
    pub fn checking(&self) -> bool {
        match &self.screen {
            Screen::Setup(s) => self.disks.is_none() || s.checking(),
            _ => false,
        }
    }

    /// Whether the unfinished jobs are being read again (at the start, after
    /// a Discard, on a new Setup): the list shown is the last one read.
    pub fn listing_unfinished(&self) -> bool {
        self.listing_unfinished.is_some()
    }

    /// The Setup screen's typed paths, while it is shown.
    pub fn setup_paths(&self) -> Option<(String, String)> {
        match &self.screen {
            Screen::Setup(s) => Some((s.source.clone(), s.target.clone())),
            _ => None,
        }
    }

    /// Takes in what the engine finished since the last frame.
    fn poll(&mut self, ctx: &egui::Context) {
        if let Some(disks) = self.listing.as_ref().and_then(Pending::poll) {
            self.listing = None;
            self.disks = Some(Arc::new(disks));
        }
        if let Some(jobs) = self.listing_unfinished.as_ref().and_then(Pending::poll) {
            self.listing_unfinished = None;
            self.unfinished = jobs;
        }
        if let Some((repair, opening)) = &self.opening_pair
            && let Some(opened) = opening.poll()
        {
            let repair = *repair;
            self.opening_pair = None;
            if let Screen::VerifyOnly(o) = &mut self.screen {
                match opened {
                    Err(e) => o.found = Some(Found::Error(e.to_string())),
                    Ok([a, b]) => {
                        let map = VerifyMap::new(a.len());
                        (o.map, o.found) = (map.clone(), None);
                        self.verifying = Some(self.engine.blocking(ctx, move || {
                            let found = if repair {
                                verify::repair(&*a, &*b, &map)
                            } else {
                                verify::run(&*a, &*b, &map)
                            };
                            Verify::Found(found, None)
                        }));
                    }
                }
            }
        }
        if let Some(result) = self.starting.as_ref().and_then(Pending::poll) {
            self.starting = None;
            match result {
                Ok(s) => {
                    self.screen = Screen::Running(RunningScreen::new(&s.job.status()));
                    self.session = Some(s);
                }
                Err(e) => {
                    tracing::warn!("could not start: {e}");
                    // Back to Setup as it was (the demo has none: a fresh one).
                    let mut setup = match std::mem::replace(&mut self.screen, Screen::Preparing) {
                        Screen::Setup(old) => old,
                        _ => Box::new(SetupScreen::new(&self.settings, None, None)),
                    };
                    setup.start_error = Some(e.to_string());
                    self.screen = Screen::Setup(setup);
                }
            }
        }
        if let Some((role, new_file, pending)) = &self.picking
            && let Some(picked) = pending.poll()
        {
            let (role, new_file) = (*role, *new_file);
            self.picking = None;
            match picked {
                Dialog::Picked(path) => {
                    if let Screen::Setup(s) = &mut self.screen {
                        s.set(role, &path);
                    }
                }
                // Cancelled, or no dialog could be shown: rfd cannot tell
                // which, so Setup offers the window's browser.
                Dialog::Nothing => {
                    if let Screen::Setup(s) = &mut self.screen {
                        s.nothing_picked = Some((role, new_file));
                    }
                }
                Dialog::Missing => self.apply(Action::Browse { role, new_file }, ctx),
            }
        }
        if let Some(v) = self.verifying.as_ref().and_then(Pending::poll) {
            self.verifying = None;
            match (&mut self.screen, v) {
                (Screen::Done(d), v) => d.verify = v,
                (Screen::VerifyOnly(o), Verify::Found(found, _)) => o.found = Some(found),
                _ => {}
            }
        }
        if let Some(f) = self.fixing.as_ref().and_then(Pending::poll) {
            self.fixing = None;
            if let Screen::Done(d) = &mut self.screen {
                d.fix = f;
                if std::mem::take(&mut d.verify_after_fix) {
                    self.apply(Action::Verify, ctx);
                }
            }
        }
        if let Screen::Flashing(f) = &mut self.screen {
            f.poll();
            if self.closing == Closing::AfterCancel && !f.running() {
                self.close_now(ctx);
            }
        }
        let Some(session) = &mut self.session else {
            return;
        };
        session.poll();
        if let Screen::Running(r) = &mut self.screen
            && let Some(speed) = r.take_speed()
        {
            session.job.post(speed);
        }
        let outcome = session.job.status().outcome;
        // The demo's writer stopped before Complete: it always shows the proof.
        let auto = self.settings.verify_when_done || session.demo.is_some();
        let verifiable =
            text::no_auto_verify(session.share.is_some(), session.job.status().tracking).is_none();
        if self.closing == Closing::AfterCancel && outcome.is_some() {
            self.close_now(ctx);
        }
        if let (Screen::Running(_), Some(outcome)) = (&self.screen, outcome) {
            let fix = self.fix_up(&outcome, ctx);
            let fixing = matches!(fix, Fix::Running);
            let mut done = DoneScreen::new(fix);
            let consistent = outcome.target_consistent();
            let verify = auto && verifiable && consistent;
            done.verify_after_fix = verify && fixing;
            self.screen = Screen::Done(done);
            if verify && !fixing {
                self.apply(Action::Verify, ctx);
            }
        }
    }

    /// Closes the window for real (the close request is let through).
    fn close_now(&mut self, ctx: &egui::Context) {
        self.closing = Closing::Now;
        ctx.send_viewport_cmd(egui::ViewportCommand::Close);
    }

    /// Clients connected to any share this window serves.
    pub fn share_clients(&self) -> usize {
        let session =
            self.session.as_ref().and_then(|s| s.share.as_ref()).map_or(0, Share::clients);
        session + self.kept.iter().map(|k| k.share.clients()).sum::<usize>()
    }

    /// A mirror job or a flash under way.
    fn job_running(&self) -> bool {
        self.session.as_ref().is_some_and(|s| s.ended.is_none())
            || self.flashing().is_some_and(Flashing::running)
    }

    /// A close request while a job runs or a share has clients is held
    /// for a question.
    fn hold_close(&mut self, ctx: &egui::Context) {
        if !ctx.input(|i| i.viewport().close_requested()) || self.closing == Closing::Now {
            return;
        }
        if self.job_running() || self.share_clients() > 0 {
            ctx.send_viewport_cmd(egui::ViewportCommand::CancelClose);
            if self.closing == Closing::No {
                self.closing = Closing::Asking;
            }
        }
    }

    /// The question a held close asks: what becomes of the target, and of
    /// the share's clients.
    fn closing_modal(&mut self, ctx: &egui::Context) {
        if self.closing != Closing::Asking {
            return;
        }
        let running = self.job_running();
        let ready = self.session.as_ref().is_some_and(|s| s.job.status().ready);
        let clients = self.share_clients();
        egui::Modal::new(egui::Id::unique("confirm-close")).show(ctx, |ui| {
            ui.set_max_width(480.0);
            ui.heading(if running { "Quit while the job runs?" } else { "Quit and stop sharing?" });
            if running {
                ui.label(text::quitting_leaves(ready));
            }
            if clients > 0 {
                ui.label(text::share_clients_lose_disk(clients));
            }
            ui.horizontal(|ui| {
                if running && ui.button("Cancel the job and quit").clicked() {
                    if let Some(s) = &self.session {
                        s.job.post(Command::Cancel { force: false });
                    }
                    if let Some(f) = self.flashing() {
                        f.cancel();
                    }
                    self.closing = Closing::AfterCancel;
                }
                if ui.button("Keep running").clicked() {
                    self.closing = Closing::No;
                }
                if ui.button(if running { "Quit now" } else { "Quit" }).clicked() {
                    self.close_now(ctx);
                }
            });
        });
    }

    /// The question "Start another" asks when the share has clients.
    fn start_another_modal(&mut self, ctx: &egui::Context, actions: &mut Vec<Action>) {
        if !self.confirm_start_another {
            return;
        }
        let clients = self.share_clients();
        egui::Modal::new(egui::Id::unique("confirm-start-another")).show(ctx, |ui| {
            ui.set_max_width(480.0);
            ui.heading("Keep sharing?");
            ui.label(format!(
                "{} The share can keep serving while you set up the next job.",
                text::share_clients_lose_disk(clients)
            ));
            ui.horizontal(|ui| {
                if ui.button("Keep sharing and start another").clicked() {
                    self.confirm_start_another = false;
                    actions.push(Action::NewSetup);
                }
                if ui.button("Stop sharing and start another").clicked() {
                    self.confirm_start_another = false;
                    actions.push(Action::StopSharing);
                    actions.push(Action::NewSetup);
                }
                if ui.button("Stay here").clicked() {
                    self.confirm_start_another = false;
                }
            });
        });
    }

    /// Starts the partition-table fix-up a consistent copy onto a target of
    /// another size needs (or the asked-for grow), on the engine.
    fn fix_up(&mut self, outcome: &Outcome, ctx: &egui::Context) -> Fix {
        let Some(s) = &self.session else { return Fix::NotNeeded };
        let consistent = outcome.target_consistent();
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
                Err(e) => Fix::Failed(e.to_string()),
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
            Action::Browse { role, new_file } => {
                if let Screen::Setup(s) = &mut self.screen {
                    s.nothing_picked = None;
                    let (mine, other) = match role {
                        Role::Source => (&s.source, &s.target),
                        Role::Target => (&s.target, &s.source),
                    };
                    let near = [paths::resolve(mine), paths::resolve(other)];
                    let near: Vec<&Path> = near.iter().map(PathBuf::as_path).collect();
                    self.browser = Some(Browser::new(role, new_file, &near));
                }
            }
            Action::PickFile { role, new_file } => {
                let dialog = rfd::AsyncFileDialog::new().set_title(match (role, new_file) {
                    (Role::Source, _) => "Source image",
                    (Role::Target, false) => "Target image (will be overwritten)",
                    (Role::Target, true) => "New target image",
                });
                let system_dialog = self.env.system_dialog;
                let pending = self.engine.spawn(ctx, async move {
                    // Asking the session bus is I/O: on the engine too.
                    if !tokio::task::spawn_blocking(system_dialog).await.unwrap_or(false) {
                        return Dialog::Missing;
                    }
                    let file = if new_file {
                        dialog.set_file_name("copy.img").save_file().await
                    } else {
                        dialog.pick_file().await
                    };
                    file.map_or(Dialog::Nothing, |f| Dialog::Picked(f.path().to_path_buf()))
                });
                self.picking = Some((role, new_file, pending));
            }
            Action::Start(req) => {
                self.settings.options = req.options.clone();
                self.settings.share = req.share.clone();
                self.save_settings(ctx);
                let (opener, c) = (self.env.opener.clone(), ctx.clone());
                let unsharing = self.unsharing.take();
                let state_dir = self.env.state_dir.clone();
                self.starting = Some(self.engine.blocking(ctx, move || {
                    if let Some(closing) = unsharing {
                        closing.wait();
                    }
                    job::start(&*opener, req, state_dir.as_deref(), c)
                }));
            }
            Action::Flash(req) => {
                let opener = self.env.opener.clone();
                self.screen = Screen::Flashing(Flashing::start(&self.engine, ctx, opener, req));
            }
            Action::CancelFlash => {
                if let Some(f) = self.flashing() {
                    f.cancel();
                }
            }
            Action::Job(cmd) => {
                if let Some(s) = &mut self.session {
                    if let Command::Decide(d) = &cmd {
                        s.errors.decided(*d);
                    }
                    s.job.post(cmd);
                }
            }
            Action::Complete => {
                let Some(s) = &self.session else { return };
                let (job, demo) = (s.job.clone(), s.demo.clone());
                // Stopping the writer joins a thread: do it on the engine.
                // Nothing to wait for: the job's events say when it completes.
                self.engine.blocking(ctx, move || {
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
                let Screen::Done(d) = &mut self.screen else { return };
                let fixed = match &d.fix {
                    Fix::Done(f) => f.clone(),
                    _ => Fixed::default(),
                };
                if sized {
                    d.verify = Verify::Running(None);
                    self.verifying = Some(self.engine.blocking(ctx, move || {
                        match sizes::verify(&*a, &*b, &fit, &fixed) {
                            Ok(c) => Verify::Compared(c),
                            Err(e) => Verify::Found(Found::Error(e.to_string()), None),
                        }
                    }));
                    return;
                }
                let map = VerifyMap::new(a.len());
                d.verify = Verify::Running(Some(map.clone()));
                self.verifying = Some(self.engine.blocking(ctx, move || {
                    let found = verify::run(&*a, &*b, &map);
                    Verify::Found(found, Some(map))
                }));
            }
            Action::VerifyOnly { source, target } => {
                let map = VerifyMap::new(0);
                let screen = VerifyOnlyScreen::new(source.clone(), target.clone(), map);
                self.screen = Screen::VerifyOnly(screen);
                self.open_pair(ctx, source, target, false);
            }
            Action::Repair if matches!(self.screen, Screen::VerifyOnly(_)) => {
                let Screen::VerifyOnly(o) = &mut self.screen else { return };
                let (source, target) = (o.source.clone(), o.target.clone());
                (o.repaired, o.found) = (true, None);
                self.open_pair(ctx, source, target, true);
            }
            Action::Repair => {
                let Some(s) = &self.session else { return };
                let (a, b) = (s.source.clone(), s.target.clone());
                let Screen::Done(d) = &mut self.screen else { return };
                let map = VerifyMap::new(a.len());
                d.verify = Verify::Running(Some(map.clone()));
                self.verifying = Some(self.engine.blocking(ctx, move || {
                    let found = verify::repair(&*a, &*b, &map);
                    Verify::Found(found, Some(map))
                }));
            }
            Action::SkipVerify => {
                self.settings.verify_when_done = false;
                self.save_settings(ctx);
            }
            Action::StopSharing => {
                if let Some(share) = self.session.as_mut().and_then(|s| s.share.take()) {
                    self.unsharing = Some(self.engine.spawn(ctx, share.stop()));
                }
            }
            Action::StopKept(i) => {
                if i < self.kept.len() {
                    let kept = self.kept.remove(i);
                    self.unsharing = Some(self.engine.spawn(ctx, kept.share.stop()));
                }
                self.confirm_stop_kept = None;
            }
            Action::StartAnother => {
                if self
                    .session
                    .as_ref()
                    .and_then(|s| s.share.as_ref())
                    .is_some_and(|s| s.clients() > 0)
                {
                    self.confirm_start_another = true;
                } else {
                    self.apply(Action::NewSetup, ctx);
                }
            }
            Action::ResetSettings => {
                let window_size = self.settings.window_size;
                self.settings = Settings { window_size, ..Settings::default() };
                self.save_settings(ctx);
                if let Screen::Setup(s) = &mut self.screen {
                    s.reset(&self.settings);
                }
            }
            Action::ResumeUnfinished(i) => {
                let Some(job) = self.unfinished.get(i) else { return };
                let req = StartRequest {
                    source: job.source.clone(),
                    target: job.target.clone(),
                    options: job.options.clone(),
                    share: ShareSettings { enabled: false, ..self.settings.share.clone() },
                    grow_last_partition: false,
                };
                self.unfinished.clear();
                self.apply(Action::Start(req), ctx);
            }
            Action::DiscardUnfinished(i) => {
                let file = self.unfinished.get(i).map(|job| job.file.clone());
                self.refresh_unfinished(ctx, file);
            }
            Action::NewSetup => {
                if let Some(mut s) = self.session.take()
                    && let Some(share) = s.share.take()
                {
                    let serves = match s.job.status().outcome {
                        Some(Outcome::Completed { .. }) => format!("the copy {}", s.target_name),
                        _ => format!("the source {}", s.source_name),
                    };
                    self.kept.push(Kept { share, serves });
                }
                self.verifying = None;
                self.fixing = None;
                self.disks = None;
                self.listing = Some(self.engine.blocking(ctx, self.env.list_disks));
                self.refresh_unfinished(ctx, None);
                self.screen = Screen::Setup(Box::new(SetupScreen::new(&self.settings, None, None)));
            }
        }
    }

    /// Opens the pair for "Verify only" on the engine, as the media hold
    /// them (direct I/O where the device allows), the target writable for
    /// a repair; [`Self::poll`] starts the pass once they are open.
    fn open_pair(&mut self, ctx: &egui::Context, source: PathBuf, target: PathBuf, repair: bool) {
        let opener = self.env.opener.clone();
        let opening = self.engine.blocking(ctx, move || {
            let opts = OpenOptions::new().direct(true);
            let a = opener.open_for_job(&source, opts).map_err(StartError::Source)?;
            let b = opener.open_for_job(&target, opts.write(repair)).map_err(StartError::Target)?;
            Ok([a, b])
        });
        self.opening_pair = Some((repair, opening));
    }

    /// Reads the unfinished jobs again on the engine, after removing the
    /// state file `discard` if given.
    fn refresh_unfinished(&mut self, ctx: &egui::Context, discard: Option<PathBuf>) {
        let state_dir = self.env.state_dir.clone();
        self.listing_unfinished = Some(self.engine.blocking(ctx, move || {
            if let Some(file) = discard
                && let Err(e) = livemirror_core::persist::remove(&file)
            {
                tracing::warn!("cannot remove {}: {e}", file.display());
            }
            unfinished_in(state_dir)
        }));
    }

    /// Saves the settings on the engine (never on the UI thread).
    fn save_settings(&self, ctx: &egui::Context) {
        if let Some(path) = self.env.settings_path.clone() {
            let (saver, settings) = (self.saver.clone(), self.settings.clone());
            let n = saver.ask();
            // Nothing waits for it: `settings_saved` says when it is done.
            drop(self.engine.blocking(ctx, move || saver.write(n, &settings, &path)));
        }
    }

    /// True when every settings save asked for is on disk.
    pub fn settings_saved(&self) -> bool {
        self.saver.idle()
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
        // The action bar at the very bottom, in every state, so its
        // buttons never scroll away nor move when the log appears.
        egui::Panel::bottom("actions").show(ui, |ui| {
            ui.add_space(4.0);
            ui.horizontal(|ui| match (&mut self.screen, &self.session) {
                (Screen::Setup(s), _) => s.actions_ui(ui, self.starting.is_some(), actions),
                (Screen::Running(r), Some(s)) => r.actions_ui(ui, s, actions),
                (Screen::Done(d), Some(s)) => d.actions_ui(ui, s, actions),
                (Screen::VerifyOnly(v), _) => v.actions_ui(ui, actions),
                (Screen::Flashing(f), _) => flashing::actions_ui(ui, f, actions),
                _ => {}
            });
            ui.add_space(4.0);
        });
        if let Some(s) = &self.session {
            egui::Panel::bottom("log").resizable(false).show(ui, |ui| log::ui(ui, &s.log));
        }
        egui::CentralPanel::default().show(ui, |ui| {
            self.kept_ui(ui, actions);
            match (&mut self.screen, &self.session) {
                (Screen::Setup(s), _) => {
                    unfinished::ui(ui, &self.unfinished, actions);
                    s.ui(ui, &self.engine, &self.env.opener, self.disks.as_ref(), actions)
                }
                (Screen::Preparing, _) => {
                    ui.horizontal(|ui| {
                        ui.spinner();
                        ui.label("Generating the demo's source image…");
                    });
                }
                (Screen::Running(r), Some(s)) => {
                    let view = ui.available_height();
                    egui::ScrollArea::vertical().show(ui, |ui| r.ui(ui, s, view));
                }
                (Screen::Done(d), Some(s)) => {
                    let auto = self.settings.verify_when_done;
                    egui::ScrollArea::vertical()
                        .show(ui, |ui| d.ui(ui, s, &mut self.settings.verify_when_done));
                    if auto != self.settings.verify_when_done {
                        self.save_settings(ui.ctx());
                    }
                }
                (Screen::VerifyOnly(v), _) => v.ui(ui),
                (Screen::Flashing(f), _) => flashing::ui(ui, f),
                (Screen::Running(_) | Screen::Done(_), None) => {}
            }
        });
        self.closing_modal(ui.ctx());
        self.start_another_modal(ui.ctx(), actions);
        if let Some(b) = &mut self.browser
            && let Some(picked) = b.ui(ui.ctx(), &self.engine)
        {
            if let Picked::Path(p) = picked {
                actions.push(Action::Choose(b.role, p));
            }
            self.browser = None;
        }
    }

    /// Shares kept from earlier sessions: where, what they serve, how many
    /// clients, and a way to stop each.
    fn kept_ui(&mut self, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
        for (i, k) in self.kept.iter().enumerate() {
            ui.horizontal_wrapped(|ui| {
                ui.label(format!(
                    "Still sharing {} at {} — {}",
                    k.serves,
                    k.share.endpoint().uri(),
                    text::clients(k.share.clients())
                ));
                if ui.add(egui::Button::new("Stop sharing").min_size(BUTTON)).clicked() {
                    if k.share.clients() == 0 {
                        actions.push(Action::StopKept(i));
                    } else {
                        self.confirm_stop_kept = Some(i);
                    }
                }
            });
        }
        let Some(i) = self.confirm_stop_kept else { return };
        let clients = self.kept.get(i).map_or(0, |k| k.share.clients());
        egui::Modal::new(egui::Id::unique("confirm-stop-kept")).show(ui.ctx(), |ui| {
            ui.set_max_width(440.0);
            ui.heading("Stop sharing?");
            ui.label(text::share_clients_lose_disk(clients));
            ui.horizontal(|ui| {
                if ui.button("Stop sharing").clicked() {
                    actions.push(Action::StopKept(i));
                }
                if ui.button("Keep sharing").clicked() {
                    self.confirm_stop_kept = None;
                }
            });
        });
    }
}

impl eframe::App for LiveMirrorApp {
    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        let began = std::time::Instant::now();
        let ctx = ui.ctx().clone();
        self.hold_close(&ctx);
        self.poll(&ctx);
        let mut actions = Vec::new();
        self.draw(ui, &mut actions);
        for a in actions {
            self.apply(a, &ctx);
        }
        if let Some(r) = ctx.input(|i| i.viewport().inner_rect) {
            self.settings.window_size = [r.width(), r.height()];
        }
        let running = self.job_running();
        if running || self.starting.is_some() || self.verifying.is_some() {
            ctx.request_repaint_after(RUNNING_REPAINT);
        } else if !self.kept.is_empty() || self.session.as_ref().is_some_and(|s| s.share.is_some())
        {
            // Client counts change without events.
            ctx.request_repaint_after(Duration::from_secs(1));
        }
        if let Some(stats) = &mut self.stats {
            stats.record(began.elapsed(), frame.info().cpu_usage, running);
        }
    }

    /// The window is gone: the last save is written here, after any still
    /// under way on the engine.
    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        if let Some(path) = &self.env.settings_path {
            self.saver.write(self.saver.ask(), &self.settings, path);
        }
    }
}

/// The unfinished jobs in `state_dir` (none without one). Reads the
/// folder: on the engine.
fn unfinished_in(state_dir: Option<PathBuf>) -> Vec<Unfinished> {
    state_dir.as_deref().map(resume::unfinished).unwrap_or_default()
}
