//! One mirror job as the window sees it: the job handle, the devices, the
//! event log, the throughput history, the NBD share of the source if asked
//! for, and (for the demo) the scenario whose writer must stop before
//! Complete.
//!
//! A session is started on the engine (opening devices, creating a new
//! image and binding the share are I/O); its events are forwarded by a
//! small task into a channel the UI drains each frame, waking the UI as
//! they arrive. The same task logs each event (but progress ticks) with
//! `tracing` in the session's span, and the log panel shows what is
//! logged in that span (see [`crate::logs::panel`]): the panel and the log
//! file say the same. The share lives as long as the session: through Done (it
//! then serves the copy) until "Start another" or the window closes.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use eframe::egui;
use livemirror_core::device::{BlockDevice, Fault, FaultyDevice, Op, OpenOptions};
use livemirror_core::job::{
    self, Decision, ErrorAction, ErrorPolicy, JobEvent, JobHandle, MirrorOptions, SyncMode,
    Tracking,
};
use livemirror_core::live::LiveSource;
use tokio::sync::broadcast::error::RecvError;

use crate::gui::engine::Opener;
use crate::gui::share_option::{EndpointError, ShareSettings};
use crate::logs::{self, panel::Panel};
use crate::platform::privileged::OpenError;
use crate::session::Cache;
use crate::session::demo::{DemoArgs, Scenario};
use crate::session::resume::{self, Pair, Use};
use crate::session::share::Share;
use crate::session::target::{self, Created};
use crate::session::tracking;
use crate::text;

/// What Start asks for.
#[derive(Debug, Clone)]
pub struct StartRequest {
    pub source: PathBuf,
    /// A path that does not exist yet becomes a new image of the source's size.
    pub target: PathBuf,
    pub options: MirrorOptions,
    /// Whether and where to serve the source over NBD.
    pub share: ShareSettings,
    /// Grow the target's last partition after the copy.
    pub grow_last_partition: bool,
}

/// One line of the job's log.
#[derive(Debug, Clone)]
pub struct LogLine {
    /// Seconds since the job started.
    pub at: f64,
    pub text: String,
    /// Logged as a warning or an error.
    pub problem: bool,
}

/// Throughput samples kept for the graph: an hour at the job's 4 Hz.
const MAX_SAMPLES: usize = 4 * 3600;

/// The span the shown data rate is measured over. The limit paces when
/// copies start; they are counted when they end, and those under way (at
/// most the job's buffer, 16 MiB by default) may end together: over 3 s
/// such a burst moves the rate little.
const RATE_WINDOW: f64 = 3.0;

/// A job's I/O errors by what became of them: the job's policy decided
/// (report: it failed; ignore: copied again later), or the user did when
/// asked (stop policy).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorTally {
    /// Ended the job (report policy).
    pub failed_job: u64,
    /// Left to be copied again later (ignore policy).
    pub retried_later: u64,
    /// Asked about (stop policy): answered below, or never.
    pub asked: u64,
    pub retried: u64,
    pub ignored: u64,
    pub stopped: u64,
}

impl ErrorTally {
    /// An answer to the error prompt.
    pub fn decided(&mut self, d: Decision) {
        match d {
            Decision::Retry => self.retried += 1,
            Decision::Ignore => self.ignored += 1,
            Decision::Stop => self.stopped += 1,
        }
    }

    /// In words: "none", or each fate with its count.
    pub fn words(&self) -> String {
        let unanswered = self.asked.saturating_sub(self.retried + self.ignored + self.stopped);
        let parts: Vec<String> = [
            (self.failed_job, "ended the job (policy report)"),
            (self.retried_later, "copied again later (policy ignore)"),
            (self.retried, "retried as you chose"),
            (self.ignored, "left to be copied again later, as you chose"),
            (self.stopped, "stopped the job, as you chose"),
            (unanswered, "unanswered when the job ended"),
        ]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        if parts.is_empty() { "none".into() } else { parts.join("; ") }
    }
}

pub struct Session {
    pub job: JobHandle,
    events: mpsc::Receiver<JobEvent>,
    pub source_name: String,
    pub target_name: String,
    /// The devices as opened (the source stays the source after a pivot),
    /// for verifying the result.
    pub source: Arc<dyn BlockDevice>,
    pub target: Arc<dyn BlockDevice>,
    pub started: Instant,
    pub ended: Option<Instant>,
    pub log: Vec<LogLine>,
    /// What is logged in the session's span, for [`Session::log`].
    panel: Panel,
    /// `[seconds since start, MiB/s of data]`: what the speed limit counts.
    pub throughput: Vec<[f64; 2]>,
    /// `(seconds since start, data bytes copied)` over the last
    /// [`RATE_WINDOW`]: the rate shown.
    data: VecDeque<(f64, u64)>,
    /// Time spent copying: the progress intervals in which bytes were
    /// copied (not the time in sync, waiting for Complete).
    pub copying: Duration,
    /// `(seconds since start, bytes copied)` at the last progress event.
    last_progress: (f64, u64),
    /// The job's errors, by what became of them.
    pub errors: ErrorTally,
    pub demo: Option<Arc<Scenario>>,
    /// The source served over NBD; `take` it to stop it.
    pub share: Option<Share>,
    /// The target's path, for the partition-table fix-up's tools (`None`
    /// for the demo, whose images are the same size).
    pub target_path: Option<PathBuf>,
    pub grow_last_partition: bool,
}

/// The span a session's lines are logged in, and the panel that shows
/// them; what the engine logs while starting the job falls in it too.
fn panel(source: &std::path::Path, target: &std::path::Path) -> Panel {
    Panel::new(tracing::info_span!(
        target: logs::JOB,
        "job",
        source = %source.display(),
        target = %target.display()
    ))
}

/// Opens (or creates) the devices, binds the share, and starts the job
/// (then the share serves). Blocking: run it on the engine's blocking
/// threads.
pub fn start(
    opener: &dyn Opener,
    req: StartRequest,
    state_dir: Option<&Path>,
    ctx: egui::Context,
) -> Result<Session, StartError> {
    let panel = panel(&req.source, &req.target);
    let span = panel.span().clone();
    span.in_scope(|| start_in(opener, req, state_dir, ctx, panel))
}

fn start_in(
    opener: &dyn Opener,
    req: StartRequest,
    state_dir: Option<&Path>,
    ctx: egui::Context,
    panel: Panel,
) -> Result<Session, StartError> {
    let endpoint = req.share.endpoint()?;
    // Shared, the source is written by the share's clients.
    let shared = endpoint.is_some();
    // Not shared, a disk's writers are seen by kernel tracking, which reads
    // the source around the page cache as the filesystems write it.
    let kernel_wanted = !shared && tracking::is_block_device(&req.source);
    let source = opener
        .open_for_job(&req.source, OpenOptions::new().write(shared).direct(kernel_wanted))
        .map_err(StartError::Source)?;
    // Bound before the target is touched: a taken socket changes nothing.
    let bound = endpoint
        .map(|ep| {
            tokio::runtime::Handle::current()
                .block_on(Share::bind(&ep, false))
                .map_err(|source| StartError::Share { endpoint: ep.to_string(), source })
        })
        .transpose()?;
    let target_opts = Cache::default_target(shared, req.options.copy_mode).options().write(true);
    let (target, created) = if target::exists(&req.target) {
        let target = opener.open_for_job(&req.target, target_opts).map_err(StartError::Target)?;
        (target, Created::existing())
    } else {
        let target = opener
            .create(&req.target, source.len(), target_opts)
            .map_err(|e| StartError::Target(OpenError::Direct(e)))?;
        (target, Created::new(&req.target))
    };
    // The job keeps its state, and goes on from an unfinished one of the
    // pair ("Update an earlier copy": from what a served copy recorded).
    let mut options = req.options.clone();
    // The window always picks the target's cache itself.
    options.buffer_target_when_write_blocking = shared;
    let pair = Pair {
        source_path: &req.source,
        source: &*source,
        target_path: &req.target,
        target: &*target,
    };
    let how = if created.is_new() {
        Use::StartOver("the target did not exist")
    } else if options.sync == SyncMode::Differing {
        Use::Resync
    } else {
        Use::Resume
    };
    let plan = state_dir.map(|dir| resume::plan_in(Some(dir), &pair, &mut options, how));
    let (persist, planned) = plan.map(|p| (p.persist, p.lines)).unwrap_or_default();
    let live = LiveSource::new(source.clone());
    let mounts = livemirror_core::device::mounts_on(&source.id());
    // Shared, writes come through the share (a mounted source is written
    // around it: compare passes); otherwise the kernel sees them if it
    // can, or the job says what it cannot see (and verifies). A refused
    // job drops `created`, which removes a target made for it.
    let started = if shared {
        let tracking = if mounts.is_empty() { Tracking::Nbd } else { Tracking::Compare };
        let options = MirrorOptions { tracking, ..options };
        tracking::start_as_asked(live.clone(), target.clone(), options, &req.source, persist)
    } else {
        let (live, target) = (live.clone(), target.clone());
        tracking::start_picking(live, target, options, &req.source, kernel_wanted, &mounts, persist)
    }
    .map(|mut s| {
        s.notes.splice(0..0, planned);
        s
    })?;
    created.keep();
    let mut session = Session::new(started, source, target, ctx, panel);
    session.share = bound.map(|b| b.serve(&live));
    session.target_path = Some(req.target.clone());
    session.grow_last_partition = req.grow_last_partition;
    Ok(session)
}

/// Why the window's job did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("NBD endpoint: {0}")]
    Endpoint(#[from] EndpointError),
    #[error("source: {0}")]
    Source(OpenError),
    #[error("cannot share the source at {endpoint}: {source}")]
    Share { endpoint: String, source: std::io::Error },
    #[error("target: {0}")]
    Target(OpenError),
    #[error(transparent)]
    Refused(#[from] livemirror_core::Error),
    #[error("cannot create the demo images: {0}")]
    Demo(std::io::Error),
    #[error("cannot read the demo image: {0}")]
    DemoRead(std::io::Error),
}

/// Builds the demo's images, starts its writer and the job. Blocking.
pub fn start_demo(args: &DemoArgs, ctx: egui::Context) -> Result<Session, StartError> {
    let span = tracing::info_span!(target: logs::JOB, "demo", size = args.size);
    span.in_scope(|| start_demo_in(args, ctx))
}

fn start_demo_in(args: &DemoArgs, ctx: egui::Context) -> Result<Session, StartError> {
    let scenario = Scenario::create(args.size).map_err(StartError::Demo)?;
    let mut options = MirrorOptions { speed: args.speed, ..Default::default() };
    let target: Arc<dyn BlockDevice> = if args.bad_sector {
        let at = scenario
            .data_at_or_after(args.size * 3 / 10)
            .map_err(StartError::DemoRead)?
            .unwrap_or(0);
        let faulty = FaultyDevice::new(scenario.target.clone());
        faulty.inject(Fault::times(Op::Write, at..at + 4096, libc::EIO, 1));
        options.on_target_error = ErrorPolicy::Stop;
        Arc::new(faulty)
    } else {
        scenario.target.clone()
    };
    scenario.start_writer(200);
    let source = scenario.live.device();
    let (job, events) = job::start(scenario.live.clone(), target.clone(), options)?;
    let started = tracking::Started { job, events, notes: vec![] };
    let panel = panel(&scenario.source_path, &scenario.target_path);
    let mut session = Session::new(started, source, target, ctx, panel);
    session.source_name = format!("{} (demo, written to live)", scenario.source_path.display());
    session.target_name = format!("{} (demo)", scenario.target_path.display());
    session.demo = Some(Arc::new(scenario));
    Ok(session)
}

impl Session {
    /// Follows a started job: its events are logged in the panel's span
    /// and forwarded to the UI, and what was said while picking its
    /// tracking opens the log.
    fn new(
        started: tracking::Started,
        source: Arc<dyn BlockDevice>,
        target: Arc<dyn BlockDevice>,
        ctx: egui::Context,
        panel: Panel,
    ) -> Session {
        let tracking::Started { job, mut events, notes } = started;
        let started = Instant::now();
        let span = panel.span().clone();
        span.in_scope(|| notes.iter().for_each(|note| tracing::info!(target: logs::JOB, "{note}")));
        let (tx, rx) = mpsc::channel();
        let status = job.clone();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(ev) => {
                        if !matches!(ev, JobEvent::Progress(_)) {
                            span.in_scope(|| log_event(&ev, status.status().tracking));
                        }
                        let last = ev.is_final();
                        if tx.send(ev).is_err() || last {
                            ctx.request_repaint();
                            break;
                        }
                        ctx.request_repaint();
                    }
                    Err(RecvError::Lagged(missed)) => {
                        // The log and the error count miss them; the status does not.
                        span.in_scope(|| {
                            tracing::warn!("the window fell behind and missed {missed} job events")
                        });
                    }
                    Err(RecvError::Closed) => break,
                }
            }
        });
        Session {
            job,
            events: rx,
            source_name: source.describe(),
            target_name: target.describe(),
            source,
            target,
            started,
            ended: None,
            log: Vec::new(),
            panel,
            throughput: vec![],
            data: VecDeque::new(),
            copying: Duration::ZERO,
            last_progress: (0.0, 0),
            errors: ErrorTally::default(),
            demo: None,
            share: None,
            target_path: None,
            grow_last_partition: false,
        }
    }

    /// Takes in the events that arrived since the last frame.
    pub fn poll(&mut self) {
        while let Ok(ev) = self.events.try_recv() {
            let at = self.started.elapsed().as_secs_f64();
            if let JobEvent::Progress(p) = ev {
                self.progressed(at, p.copied);
                continue;
            }
            if let JobEvent::Error { action, .. } = &ev {
                match action {
                    ErrorAction::Report => self.errors.failed_job += 1,
                    ErrorAction::Ignore => self.errors.retried_later += 1,
                    ErrorAction::Stop => self.errors.asked += 1,
                }
            }
            if ev.is_final() {
                self.progressed(at, self.job.status().progress.copied);
                self.ended = Some(Instant::now());
            }
        }
        for logged in self.panel.drain() {
            let at = logged.at.saturating_duration_since(self.started).as_secs_f64();
            let problem = logged.problem();
            self.log.push(LogLine { at, text: logged.text, problem });
        }
    }

    /// A progress report at `at` seconds: the copying time, the data rate
    /// and its graph.
    fn progressed(&mut self, at: f64, copied: u64) {
        let (then, copied_then) = std::mem::replace(&mut self.last_progress, (at, copied));
        if copied > copied_then {
            self.copying += Duration::from_secs_f64(at - then);
        }
        let data = self.job.status().data_bytes;
        // Keep the last sample older than the window: the rate's base.
        while self.data.get(1).is_some_and(|(t, _)| at - t >= RATE_WINDOW) {
            self.data.pop_front();
        }
        self.data.push_back((at, data));
        if self.throughput.len() >= MAX_SAMPLES {
            self.throughput.drain(..MAX_SAMPLES / 2);
        }
        self.throughput.push([at, self.data_rate() as f64 / f64::from(1 << 20)]);
    }

    /// Data bytes per second over the last [`RATE_WINDOW`] (or since the
    /// start, when younger): what the speed limit counts, as holes and
    /// zeroes cost nothing. Never above the limit: the limiter lets each
    /// copy start only when the link time of the ones before it has passed,
    /// so on its clock no more than the limit goes through; a measured
    /// excess is copies started in turn that ended together, not a faster
    /// copy.
    pub fn data_rate(&self) -> u64 {
        let rate = self.measured_rate();
        match self.job.status().speed {
            0 => rate,
            limit => rate.min(limit),
        }
    }

    fn measured_rate(&self) -> u64 {
        let now = self.duration().as_secs_f64();
        let since = (now - RATE_WINDOW).max(0.0);
        // From the last sample at or before the window's start, over the
        // time since that sample: dividing by the window alone would count
        // the bytes between that sample and the window's start twice over.
        let (t0, base) =
            self.data.iter().rev().find(|(t, _)| *t <= since).copied().unwrap_or((0.0, 0));
        let data = self.job.status().data_bytes;
        if now <= t0 { 0 } else { (data.saturating_sub(base) as f64 / (now - t0)) as u64 }
    }

    /// How long the job ran (so far).
    pub fn duration(&self) -> Duration {
        self.ended.unwrap_or_else(Instant::now) - self.started
    }
}

/// Logs an event as one line of the job's log (the terminal says it the
/// same way): a warning for errors and failures.
fn log_event(ev: &JobEvent, tracking: Tracking) {
    match text::event(ev, tracking) {
        Some((line, true)) => tracing::warn!(target: logs::JOB, "{line}"),
        Some((line, false)) => tracing::info!(target: logs::JOB, "{line}"),
        None => {}
    }
}
