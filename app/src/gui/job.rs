//! One mirror job as the window sees it: the job handle, the devices, the
//! event log, the throughput history, the NBD share of the source if asked
//! for, and (for the demo) the scenario whose writer must stop before
//! Complete.
//!
//! A session is started on the engine (opening devices, creating a new
//! image and binding the share are I/O); its events are forwarded by a
//! small task into a channel the UI drains each frame, waking the UI as
//! they arrive. The share lives as long as the session: through Done (it
//! then serves the copy) until "Start another" or the window closes.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use eframe::egui;
use livemirror_core::device::{BlockDevice, Fault, FaultyDevice, Op, OpenOptions};
use livemirror_core::job::{
    self, Decision, ErrorAction, ErrorPolicy, JobEvent, JobHandle, MirrorOptions, Outcome,
    SyncMode, Tracking,
};
use livemirror_core::live::LiveSource;
use tokio::sync::broadcast::error::RecvError;

use crate::gui::engine::Opener;
use crate::gui::widgets::share::ShareSettings;
use crate::session::Cache;
use crate::session::demo::{DemoArgs, Scenario};
use crate::session::resume::{self, Pair, Use};
use crate::session::share::Share;
use crate::session::tracking;
use crate::text;
use crate::text::human;

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

/// Opens (or creates) the devices, binds the share, and starts the job
/// (then the share serves). Blocking: run it on the engine's blocking
/// threads.
pub fn start(
    opener: &dyn Opener,
    req: StartRequest,
    state_dir: Option<&Path>,
    ctx: egui::Context,
) -> Result<Session, String> {
    let endpoint = req.share.endpoint().map_err(|e| format!("NBD endpoint: {e}"))?;
    // Shared, the source is written by the share's clients.
    let shared = endpoint.is_some();
    // Not shared, a disk's writers are seen by kernel tracking, which reads
    // the source around the page cache as the filesystems write it.
    let kernel_wanted = !shared && tracking::is_block_device(&req.source);
    let source = opener
        .open_for_job(&req.source, OpenOptions::new().write(shared).direct(kernel_wanted))
        .map_err(|e| format!("source: {e}"))?;
    // Bound before the target is touched: a taken socket changes nothing.
    let bound = endpoint
        .map(|ep| {
            tokio::runtime::Handle::current()
                .block_on(Share::bind(&ep, false))
                .map_err(|e| format!("cannot share the source at {ep}: {e}"))
        })
        .transpose()?;
    let target_opts = Cache::default_target(shared, req.options.copy_mode).options().write(true);
    let created =
        crate::platform::privileged::nbd_uri(&req.target).is_none() && !req.target.exists();
    let target = if created {
        opener.create(&req.target, source.len(), target_opts).map_err(|e| e.to_string())
    } else {
        opener.open_for_job(&req.target, target_opts)
    }
    .map_err(|e| format!("target: {e}"))?;
    // The job keeps its state, and goes on from an unfinished one of the
    // pair ("Update an earlier copy": from what a served copy recorded).
    let mut options = req.options.clone();
    let pair = Pair {
        source_path: &req.source,
        source: &*source,
        target_path: &req.target,
        target: &*target,
    };
    let how = if created {
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
    // can, or the job says what it cannot see (and verifies).
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
    })
    .map_err(|e| e.to_string());
    let mut session = started.map(|s| Session::new(s, source, target, ctx)).inspect_err(|_| {
        if created {
            // Made a moment ago for this job; a refused job leaves nothing behind.
            let _ = std::fs::remove_file(&req.target);
        }
    })?;
    session.share = bound.map(|b| b.serve(&live));
    session.target_path = Some(req.target.clone());
    session.grow_last_partition = req.grow_last_partition;
    Ok(session)
}

/// Builds the demo's images, starts its writer and the job. Blocking.
pub fn start_demo(args: &DemoArgs, ctx: egui::Context) -> Result<Session, String> {
    let scenario =
        Scenario::create(args.size).map_err(|e| format!("cannot create the demo images: {e}"))?;
    let mut options = MirrorOptions { speed: args.speed, ..Default::default() };
    let target: Arc<dyn BlockDevice> = if args.bad_sector {
        let at = scenario
            .data_at_or_after(args.size * 3 / 10)
            .map_err(|e| format!("cannot read the demo image: {e}"))?
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
    let (job, events) =
        job::start(scenario.live.clone(), target.clone(), options).map_err(|e| e.to_string())?;
    let started = tracking::Started { job, events, notes: vec![] };
    let mut session = Session::new(started, source, target, ctx);
    session.source_name = format!("{} (demo, written to live)", scenario.source_path.display());
    session.target_name = format!("{} (demo)", scenario.target_path.display());
    session.demo = Some(Arc::new(scenario));
    Ok(session)
}

impl Session {
    /// Follows a started job: its events are forwarded to the UI, and what
    /// was said while picking its tracking opens the log.
    fn new(
        started: tracking::Started,
        source: Arc<dyn BlockDevice>,
        target: Arc<dyn BlockDevice>,
        ctx: egui::Context,
    ) -> Session {
        let tracking::Started { job, mut events, notes } = started;
        let (tx, rx) = mpsc::channel();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(ev) => {
                        let last = ev.is_final();
                        if tx.send(ev).is_err() || last {
                            ctx.request_repaint();
                            break;
                        }
                        ctx.request_repaint();
                    }
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => break,
                }
            }
        });
        let log = notes.into_iter().map(|text| LogLine { at: 0.0, text, problem: false }).collect();
        Session {
            job,
            events: rx,
            source_name: source.describe(),
            target_name: target.describe(),
            source,
            target,
            started: Instant::now(),
            ended: None,
            log,
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
            let (text, problem) = describe(&ev, self.job.status().tracking);
            self.log.push(LogLine { at, text, problem });
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

/// An event as one log line; `true` for errors and failures.
fn describe(ev: &JobEvent, tracking: Tracking) -> (String, bool) {
    match ev {
        JobEvent::StateChanged { state } => (format!("state: {}", text::state(*state)), false),
        JobEvent::Progress(p) => (format!("progress: {} copied", human(p.copied)), false),
        JobEvent::Ready => (format!("ready: {}", text::ready(tracking)), false),
        JobEvent::Error { failure, action } => {
            (format!("error: {failure} (action: {})", action.name()), true)
        }
        JobEvent::CompleteFailed { reason } => (text::complete_failed(reason), true),
        JobEvent::Rescanning { reason } => (text::rescanning(reason), false),
        JobEvent::NotSaved { reason } => (text::not_saved(reason), true),
        JobEvent::Completed { proof, held_ms, .. } => {
            let (line, good) = text::outcome(&Outcome::Completed { proof: *proof });
            let held = held_ms.map(|ms| format!(", writers held {ms} ms")).unwrap_or_default();
            (format!("{line}{held}"), !good)
        }
        JobEvent::Cancelled { consistent } => {
            let (line, good) = text::outcome(&Outcome::Cancelled { consistent: *consistent });
            (line, !good)
        }
        JobEvent::Failed { error } => {
            (text::outcome(&Outcome::Failed { error: error.clone() }).0, true)
        }
    }
}
