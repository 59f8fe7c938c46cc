//! The job's loop: issue copies, collect results, obey commands, and walk
//! the lifecycle running → ready → completing → completed (or cancelled,
//! failed), as QEMU's mirror job does.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior, interval, sleep_until};

use super::copy::{CopyContext, CopyStats};
use super::events::{
    Decision, ErrorAction, IoStatus, JobEvent, JobState, JobStatus, Outcome, Progress,
};
use super::handle::{Command, Request};
use super::options::{CopyMode, ErrorPolicy, MAX_IN_FLIGHT, MirrorOptions, Resolved, SyncMode};
use super::rescan::Rescan;
use super::tracker::{Pick, Tracker};
use crate::buffer::BufferPool;
use crate::device::BlockDevice;
use crate::error::{Error, IoFailure, IoOperation, Side};
use crate::live::LiveSource;
use crate::ratelimit::RateLimiter;

/// How often progress is published and write heat decays.
const TICK: Duration = Duration::from_millis(250);
/// Back-off after an ignored error, doubling up to the maximum, so a
/// persistent fault does not spin the loop.
const MIN_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Everything [`Runner::new`] needs, in one place.
pub(super) struct Setup {
    pub live: Arc<LiveSource>,
    pub source: Arc<dyn BlockDevice>,
    pub target: Arc<dyn BlockDevice>,
    pub tracker: Arc<Tracker>,
    pub opts: MirrorOptions,
    pub resolved: Resolved,
    pub events: broadcast::Sender<JobEvent>,
    pub status: watch::Sender<JobStatus>,
    pub commands: mpsc::UnboundedReceiver<Request>,
}

pub(super) fn initial_status(opts: &MirrorOptions) -> JobStatus {
    JobStatus {
        state: JobState::Created,
        progress: Progress::default(),
        speed: opts.speed,
        copy_mode: opts.copy_mode,
        io_status: IoStatus::Ok,
        ready: false,
        pending_error: None,
        errors: 0,
        data_bytes: 0,
        zero_bytes: 0,
        skipped_bytes: 0,
        outcome: None,
    }
}

/// How the job is ending, once it is.
enum Ending {
    /// Complete: drain with writes held, flush, serve the target.
    Pivot,
    /// Cancel after ready: drain with writes held, flush, keep the source.
    Consistent,
    /// Stop as soon as in-flight copies are done.
    Abort(Outcome),
}

struct OpDone {
    bytes: u64,
    result: Result<CopyStats, IoFailure>,
    /// How many error decisions had been made when the copy was issued.
    decisions: u64,
}

pub(super) struct Runner {
    live: Arc<LiveSource>,
    tracker: Arc<Tracker>,
    ctx: Arc<CopyContext>,
    opts: MirrorOptions,
    resolved: Resolved,
    events: broadcast::Sender<JobEvent>,
    status: watch::Sender<JobStatus>,
    commands: Option<mpsc::UnboundedReceiver<Request>>,
    ops: JoinSet<OpDone>,
    in_flight_bytes: u64,
    /// Where the next search for dirty chunks starts.
    cursor: u64,
    limiter: RateLimiter,
    state: JobState,
    /// The state to go back to after a pause or an error decision.
    resume_to: JobState,
    pause_requested: bool,
    pause_waiters: Vec<oneshot::Sender<Result<(), Error>>>,
    pending: Option<IoFailure>,
    io_status: IoStatus,
    ending: Option<Ending>,
    gate_closed: bool,
    ready: bool,
    hold_until: Option<Instant>,
    backoff: Duration,
    /// Retry/Ignore decisions so far. A copy issued before the latest one
    /// may still fail after it (it was in flight, or its range went dirty
    /// again and was picked up before the first failure was handled); that
    /// failure is part of what was decided, not a new question.
    decisions: u64,
    copied: u64,
    totals: CopyStats,
    errors: u64,
    last_tick: (Instant, u64),
    bytes_per_sec: u64,
    /// Compare passes, when writers bypass the live source.
    rescan: Option<Rescan>,
}

impl Runner {
    pub(super) fn new(s: Setup) -> Self {
        let geometry = s.tracker.geometry;
        Runner {
            ctx: Arc::new(CopyContext {
                source: s.source,
                target: s.target,
                geometry,
                // At most MAX_IN_FLIGHT operations of at most max_op bytes
                // hold a buffer at once: the pool never grows past that.
                buffers: BufferPool::new(s.resolved.max_op as usize),
            }),
            live: s.live,
            tracker: s.tracker,
            limiter: RateLimiter::new(s.opts.speed),
            rescan: s.opts.rescan.then(Rescan::default),
            opts: s.opts,
            resolved: s.resolved,
            events: s.events,
            status: s.status,
            commands: Some(s.commands),
            ops: JoinSet::new(),
            in_flight_bytes: 0,
            cursor: 0,
            state: JobState::Created,
            resume_to: JobState::Running,
            pause_requested: false,
            pause_waiters: Vec::new(),
            pending: None,
            io_status: IoStatus::Ok,
            ending: None,
            gate_closed: false,
            ready: false,
            hold_until: None,
            backoff: MIN_BACKOFF,
            decisions: 0,
            copied: 0,
            totals: CopyStats::default(),
            errors: 0,
            last_tick: (Instant::now(), 0),
            bytes_per_sec: 0,
        }
    }

    pub(super) async fn run(mut self) {
        self.set_state(JobState::Running);
        if let Err(f) = self.populate().await {
            self.emit(JobEvent::Error { failure: f.clone(), action: ErrorAction::Report });
            return self.finish(Outcome::Failed { error: f.to_string() }).await;
        }
        let mut tick = interval(TICK);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            self.issue();
            if let Some(outcome) = self.settle().await {
                return self.finish(outcome).await;
            }
            let idle = self.ops.is_empty();
            let wait_until = self.issue_blocked_until();
            let scanning = self.scanning();
            tokio::select! {
                biased;
                req = recv(&mut self.commands) => match req {
                    Some((cmd, reply)) => self.command(cmd, reply).await,
                    None => {
                        // Every handle is gone: nobody can complete this job.
                        self.commands = None;
                        self.abort(Outcome::Cancelled { consistent: false });
                    }
                },
                Some(done) = self.ops.join_next(), if !idle => match done {
                    Ok(done) => self.op_done(done),
                    Err(e) => self.abort(Outcome::Failed { error: format!("copy task failed: {e}") }),
                },
                _ = self.tracker.wake.notified(), if idle => {}
                _ = sleep_until(wait_until.unwrap_or_else(Instant::now)), if wait_until.is_some() => {}
                _ = tick.tick() => self.tick(),
                _ = std::future::ready(()), if scanning => {}
            }
        }
    }

    /// Marks what the sync mode says to copy. Writes are already tracked.
    async fn populate(&mut self) -> Result<(), IoFailure> {
        let chunks = self.tracker.geometry.chunks();
        match self.opts.sync {
            SyncMode::Full => self.tracker.mark_dirty(0..chunks),
            SyncMode::None => {}
            SyncMode::Top => {
                let (source, tracker) = (self.ctx.source.clone(), self.tracker.clone());
                blocking(move || mark_allocated(&*source, &tracker)).await?;
            }
        }
        self.publish();
        Ok(())
    }

    fn aborting(&self) -> bool {
        matches!(self.ending, Some(Ending::Abort(_)))
    }

    fn may_issue(&self) -> bool {
        !self.pause_requested && self.pending.is_none() && !self.aborting()
    }

    /// When issuing is held back only by time (speed limit, error back-off),
    /// the instant it may go on.
    fn issue_blocked_until(&self) -> Option<Instant> {
        if !self.may_issue() || self.ops.len() >= MAX_IN_FLIGHT {
            return None;
        }
        let now = Instant::now();
        let at = self.limiter.ready_at(now).max(self.hold_until.unwrap_or(now));
        (at > now && self.tracker.dirty_chunks() > 0).then_some(at)
    }

    /// Starts as many copies as the limits allow.
    fn issue(&mut self) {
        let g = self.tracker.geometry.granularity;
        let total_chunks = self.tracker.geometry.chunks();
        while self.may_issue() && self.ops.len() < MAX_IN_FLIGHT {
            let now = Instant::now();
            if self.limiter.ready_at(now) > now || self.hold_until.is_some_and(|t| t > now) {
                return;
            }
            let free = self.resolved.buf_size.saturating_sub(self.in_flight_bytes);
            if free < g && !self.ops.is_empty() {
                return;
            }
            let max_bytes = self.resolved.max_op.min(free.max(g));
            let pick = Pick { from: self.cursor, max_chunks: max_bytes / g };
            let Some(chunks) = self.tracker.begin_copy(pick) else {
                return;
            };
            self.cursor = if chunks.end >= total_chunks { 0 } else { chunks.end };
            let (_, bytes) = self.tracker.geometry.bytes(&chunks);
            self.limiter.reserve(now, bytes);
            self.in_flight_bytes += bytes;
            let (ctx, tracker, decisions) =
                (self.ctx.clone(), self.tracker.clone(), self.decisions);
            self.ops.spawn_blocking(move || {
                let result = ctx.copy(&chunks);
                tracker.end_copy(chunks.clone(), result.is_ok());
                OpDone { bytes, result, decisions }
            });
        }
    }

    fn op_done(&mut self, done: OpDone) {
        self.in_flight_bytes -= done.bytes;
        match done.result {
            Ok(stats) => {
                self.copied += done.bytes;
                self.totals.data += stats.data;
                self.totals.zeroed += stats.zeroed;
                self.totals.skipped += stats.skipped;
                // Zeroes cost almost nothing: only data counts against the speed.
                self.limiter.refund(Instant::now(), stats.zeroed + stats.skipped);
                self.backoff = MIN_BACKOFF;
            }
            // The worker has already left the range dirty, so the copy
            // is tried again either way.
            Err(_) if done.decisions != self.decisions => {}
            Err(failure) => self.on_error(failure),
        }
    }

    /// Applies the side's error policy to a failure.
    fn on_error(&mut self, failure: IoFailure) {
        self.errors += 1;
        let policy = match failure.side {
            Side::Source => self.opts.on_source_error,
            Side::Target => self.opts.on_target_error,
        };
        let action = match policy {
            ErrorPolicy::Report => ErrorAction::Report,
            ErrorPolicy::Ignore => ErrorAction::Ignore,
            ErrorPolicy::Stop => ErrorAction::Stop,
            ErrorPolicy::Enospc if failure.is_nospace() => ErrorAction::Stop,
            ErrorPolicy::Enospc => ErrorAction::Report,
        };
        if self.aborting() || (action == ErrorAction::Stop && self.pending.is_some()) {
            // Already ending, or already asking about an earlier error: the
            // range stays dirty and nothing more needs saying.
            return;
        }
        self.emit(JobEvent::Error { failure: failure.clone(), action });
        match action {
            ErrorAction::Report => self.abort(Outcome::Failed { error: failure.to_string() }),
            ErrorAction::Ignore => {
                self.hold_until = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            }
            ErrorAction::Stop => {
                self.io_status =
                    if failure.is_nospace() { IoStatus::Nospace } else { IoStatus::Failed };
                self.pending = Some(failure);
                // Nobody's writes wait while a person decides; the drain
                // closes the gate again after the decision.
                self.open_gate();
                if !matches!(self.state, JobState::Paused | JobState::Standby) {
                    self.resume_to = self.state;
                }
                self.set_state(JobState::Paused);
            }
        }
    }

    /// With nothing in flight: reach paused, ready, or the end.
    async fn settle(&mut self) -> Option<Outcome> {
        if !self.ops.is_empty() {
            return None;
        }
        if let Some(offset) = self.tracker.written_past_end() {
            let copy_len = self.tracker.geometry.len;
            self.abort(Outcome::Failed {
                error: Error::WrittenPastTarget { offset, copy_len }.to_string(),
            });
        }
        if let Some(Ending::Abort(o)) = &self.ending {
            return Some(o.clone());
        }
        if self.pause_requested {
            if !matches!(self.state, JobState::Paused | JobState::Standby) {
                self.resume_to = self.state;
                let paused = if self.ready { JobState::Standby } else { JobState::Paused };
                self.set_state(paused);
            }
            for w in self.pause_waiters.drain(..) {
                let _ = w.send(Ok(()));
            }
            return None;
        }
        if self.pending.is_some() || self.tracker.dirty_chunks() > 0 {
            return None;
        }
        if self.ready && self.ending.is_none() {
            return None;
        }
        if self.scanning() {
            self.scan_step().await;
            return None;
        }
        // In sync: make it durable before saying so.
        let target = self.ctx.target.clone();
        let len = self.tracker.geometry.len;
        let flushed = blocking(move || {
            target.flush().map_err(|e| IoFailure::new(Side::Target, IoOperation::Flush, 0, len, &e))
        })
        .await;
        if let Err(f) = flushed {
            self.on_error(f);
            return None;
        }
        if !self.ready {
            self.ready = true;
            self.set_state(JobState::Ready);
            self.emit(JobEvent::Ready);
        }
        match self.ending {
            Some(Ending::Pivot) => {
                self.live.pivot(self.ctx.target.clone());
                Some(Outcome::Completed)
            }
            Some(Ending::Consistent) => Some(Outcome::Cancelled { consistent: true }),
            _ => None,
        }
    }

    async fn command(&mut self, cmd: Command, reply: oneshot::Sender<Result<(), Error>>) {
        let wrong = |state| Err(Error::WrongState { verb: cmd.verb(), state });
        let result = match cmd {
            _ if self.aborting() && !matches!(cmd, Command::Cancel { .. }) => wrong(self.state),
            Command::SetSpeed(speed) => {
                self.limiter.set_speed(speed);
                Ok(())
            }
            Command::Pause if self.ending.is_some() => wrong(self.state),
            Command::Pause => {
                self.pause_requested = true;
                // Answered once in-flight copies are done (see `settle`).
                self.pause_waiters.push(reply);
                self.publish();
                return;
            }
            Command::Resume if self.pending.is_some() => self.decide(Decision::Retry),
            Command::Resume if !self.pause_requested => wrong(self.state),
            Command::Resume => {
                self.pause_requested = false;
                self.set_state(self.resume_to);
                Ok(())
            }
            Command::Complete if !self.state.is_ready() || self.ending.is_some() => {
                wrong(self.state)
            }
            Command::Complete => {
                self.pause_requested = false;
                self.set_state(JobState::Completing);
                self.ending = Some(Ending::Pivot);
                self.close_gate().await;
                Ok(())
            }
            Command::Cancel { force } => {
                if self.ready && !force && !self.aborting() {
                    self.pause_requested = false;
                    self.ending = Some(Ending::Consistent);
                    self.close_gate().await;
                } else {
                    self.pending = None;
                    self.abort(Outcome::Cancelled { consistent: false });
                }
                Ok(())
            }
            Command::SetCopyMode(mode) if mode == self.tracker.copy_mode() => Ok(()),
            Command::SetCopyMode(CopyMode::Background) => Err(Error::InvalidOption(
                "a job in write-blocking mode cannot go back to background mode".into(),
            )),
            Command::SetCopyMode(mode) => {
                // No write may be half-way through under the old mode.
                self.close_gate().await;
                self.tracker.set_copy_mode(mode);
                if self.ending.is_none() {
                    self.open_gate();
                }
                self.publish();
                Ok(())
            }
            Command::Decide(_) if self.pending.is_none() => wrong(self.state),
            Command::Decide(d) => self.decide(d),
        };
        if matches!(self.ending, Some(Ending::Pivot | Ending::Consistent)) {
            self.close_gate().await;
        }
        let _ = reply.send(result);
    }

    fn decide(&mut self, decision: Decision) -> Result<(), Error> {
        let Some(failure) = self.pending.take() else {
            return Err(Error::WrongState { verb: "decide", state: self.state });
        };
        self.io_status = IoStatus::Ok;
        self.decisions += 1;
        let g = self.tracker.geometry;
        match decision {
            Decision::Retry => self.cursor = g.covering(failure.offset, 1).start,
            Decision::Ignore => {
                self.cursor = g.covering(failure.offset, failure.len.max(1)).end % g.chunks().max(1)
            }
            Decision::Stop => {
                self.abort(Outcome::Failed { error: format!("stopped after an error: {failure}") });
                return Ok(());
            }
        }
        self.set_state(self.resume_to);
        Ok(())
    }

    /// True when a compare pass must run before the job may call itself in
    /// sync (and nothing else is going on).
    fn scanning(&self) -> bool {
        self.rescan.as_ref().is_some_and(Rescan::due)
            && self.ops.is_empty()
            && self.may_issue()
            && self.tracker.dirty_chunks() == 0
            && !(self.ready && self.ending.is_none())
    }

    async fn scan_step(&mut self) {
        let Some(mut scan) = self.rescan.take() else { return };
        let (ctx, tracker, step) = (self.ctx.clone(), self.tracker.clone(), self.resolved.max_op);
        let (scan, result) = blocking(move || {
            let r = scan.step(&ctx, &tracker, step);
            (scan, r)
        })
        .await;
        self.rescan = Some(scan);
        if let Err(f) = result {
            self.on_error(f);
        }
    }

    fn abort(&mut self, outcome: Outcome) {
        if !self.aborting() {
            self.ending = Some(Ending::Abort(outcome));
        }
    }

    async fn close_gate(&mut self) {
        if let Some(scan) = &mut self.rescan {
            // Writes the live source saw are held now; others are not, so
            // prove the copy again.
            scan.reset();
        }
        if !self.gate_closed {
            let live = self.live.clone();
            // Waits for writes under way; they never wait on this loop.
            let _ = tokio::task::spawn_blocking(move || live.close_gate()).await;
            self.gate_closed = true;
        }
    }

    fn open_gate(&mut self) {
        if self.gate_closed {
            self.live.open_gate();
            self.gate_closed = false;
        }
    }

    async fn finish(mut self, outcome: Outcome) {
        while self.ops.join_next().await.is_some() {}
        self.live.detach();
        self.open_gate();
        self.tick();
        let (state, event) = match &outcome {
            Outcome::Completed => (JobState::Completed, JobEvent::Completed),
            Outcome::Cancelled { consistent } => {
                (JobState::Cancelled, JobEvent::Cancelled { consistent: *consistent })
            }
            Outcome::Failed { error } => {
                (JobState::Failed, JobEvent::Failed { error: error.clone() })
            }
        };
        for w in self.pause_waiters.drain(..) {
            let _ = w.send(Err(Error::JobEnded));
        }
        self.set_state(state);
        self.emit(event);
        self.status.send_modify(|s| s.outcome = Some(outcome));
    }

    fn tick(&mut self) {
        let now = Instant::now();
        let (then, copied_then) = self.last_tick;
        let secs = now.duration_since(then).as_secs_f64();
        if secs > 0.0 {
            self.bytes_per_sec = ((self.copied - copied_then) as f64 / secs) as u64;
        }
        self.last_tick = (now, self.copied);
        self.tracker.map.decay_heat();
        let before = self.status.borrow().progress;
        self.publish();
        let progress = self.progress();
        if progress != before {
            self.emit(JobEvent::Progress(progress));
        }
    }

    fn progress(&self) -> Progress {
        let g = self.tracker.geometry;
        let dirty = (self.tracker.dirty_chunks() * g.granularity).min(g.len);
        Progress {
            copied: self.copied,
            total: self.copied + dirty + self.in_flight_bytes,
            dirty,
            in_flight: self.in_flight_bytes,
            bytes_per_sec: self.bytes_per_sec,
        }
    }

    /// Publishes the status before announcing the change, so whoever reacts
    /// to the event already sees the new status (a pending error, say).
    fn set_state(&mut self, state: JobState) {
        let changed = self.state != state;
        self.state = state;
        self.publish();
        if changed {
            self.emit(JobEvent::StateChanged { state });
        }
    }

    fn publish(&self) {
        let progress = self.progress();
        self.status.send_modify(|s| {
            s.state = self.state;
            s.progress = progress;
            s.speed = self.limiter.speed();
            s.copy_mode = self.tracker.copy_mode();
            s.io_status = self.io_status;
            s.ready = self.ready;
            s.pending_error = self.pending.clone();
            s.errors = self.errors;
            s.data_bytes = self.totals.data;
            s.zero_bytes = self.totals.zeroed;
            s.skipped_bytes = self.totals.skipped;
        });
    }

    fn emit(&self, event: JobEvent) {
        // No subscribers is fine: status still tells the story.
        let _ = self.events.send(event);
    }
}

async fn recv(rx: &mut Option<mpsc::UnboundedReceiver<Request>>) -> Option<Request> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Runs blocking I/O off the async threads. A panic there is a bug; it is
/// passed on rather than dressed up as an I/O error.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// Sync mode `top`: dirty every chunk that holds allocated data.
fn mark_allocated(source: &dyn BlockDevice, tracker: &Tracker) -> Result<(), IoFailure> {
    let len = source.len();
    let mut pos = 0;
    while pos < len {
        let (alloc, run) = source.block_status(pos, len - pos).map_err(|e| {
            IoFailure::new(Side::Source, IoOperation::BlockStatus, pos, len - pos, &e)
        })?;
        if alloc != crate::device::Allocation::Hole {
            tracker.mark_dirty(tracker.geometry.covering(pos, run));
        }
        pos += run;
    }
    Ok(())
}
