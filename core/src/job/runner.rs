//! The job's loop: issue copies, collect results, obey commands, and walk
//! the lifecycle running → ready → completing → completed (or cancelled,
//! failed), as QEMU's mirror job does.
//!
//! What state the job is in lives in one [`Machine`]; this file does the
//! I/O the machine's answers ask for and feeds it what the I/O found.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior, interval, sleep_until};

use super::copy::{CopyContext, CopyStats};
use super::events::{
    Decision, ErrorAction, IoStatus, JobEvent, JobStatus, Outcome, Progress, Proof,
};
use super::handle::{Command, Request};
use super::kernel_feed::{self, Held, KernelFeed};
use super::machine::{Effect, Ending, Hold, InSync, Machine, Phase};
use super::persist::{Persist, Resume, Saver};
use super::rescan::{PassEnd, Rescan};
use crate::buffer::BufferPool;
use crate::device::{BlockDevice, top_extents};
use crate::error::{Error, IoFailure, IoOperation, JobFailure, Side, TrackingLoss};
use crate::live::{LiveSource, ReadLease, WriteLog};
use crate::live::{Pick, Tracker};
use crate::options::{
    CopyMode, ErrorPolicy, MAX_IN_FLIGHT, MirrorOptions, Resolved, SyncMode, Tracking,
};
use crate::ratelimit::RateLimiter;
use crate::state::JobState;

/// How often progress is published and write heat decays.
const TICK: Duration = Duration::from_millis(250);
/// The longest copy once reflinks work: a reflink moves no data and holds
/// no buffer, but each is a system call that locks both files, so fewer,
/// longer ones share a file sooner (2 GiB on XFS: 2048 clones of 1 MiB took
/// 57 ms, `cp --reflink` 6.5 ms).
const REFLINK_OP: u64 = 64 << 20;
/// Back-off after an ignored error, doubling up to the maximum, so a
/// persistent fault does not spin the loop.
const MIN_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// A final comparison that still finds differences this many passes in a
/// row means someone keeps writing the source around livemirror.
pub const MAX_VERIFY_PASSES: u32 = 3;

type Reply = oneshot::Sender<Result<(), Error>>;

/// Answers a command. The asker may have stopped waiting (dropped its
/// receiver, as `JobHandle::post` does at once): then there is no one to tell.
fn answer(reply: Reply, result: Result<(), Error>) {
    let _ = reply.send(result);
}

/// Everything [`Runner::new`] needs, in one place.
pub(super) struct Setup {
    pub live: Arc<LiveSource>,
    pub source: Arc<dyn BlockDevice>,
    pub target: Arc<dyn BlockDevice>,
    pub tracker: Arc<Tracker>,
    /// With `Tracking::Kernel`: the source's writes as the kernel saw them.
    pub kernel: Option<Arc<KernelFeed>>,
    /// With `Tracking::Lease`: the source's read lease.
    pub lease: Option<ReadLease>,
    pub opts: MirrorOptions,
    pub resolved: Resolved,
    pub events: broadcast::Sender<JobEvent>,
    pub status: watch::Sender<JobStatus>,
    pub commands: mpsc::UnboundedReceiver<Request>,
    /// Keep the job's state on disk (and start from a saved map).
    pub persist: Option<Persist>,
}

pub(super) fn initial_status(opts: &MirrorOptions) -> JobStatus {
    JobStatus {
        speed: opts.speed,
        copy_mode: opts.copy_mode,
        tracking: opts.tracking,
        verify: opts.verifies(),
        ..JobStatus::default()
    }
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
    machine: Machine,
    /// The state last announced.
    shown: JobState,
    pause_waiters: Vec<Reply>,
    /// A switch to write-blocking mode waiting for writers under way.
    mode_switch: Option<(CopyMode, Vec<Reply>)>,
    io_status: IoStatus,
    /// Writers through the live source are held (the gate is closed).
    gate_closed: bool,
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
    /// Compare passes: before Ready with `compare` tracking, and the final
    /// comparison of the last drain when the job verifies.
    rescan: Rescan,
    kernel: Option<Arc<KernelFeed>>,
    /// Held while `opts.tracking` is `Lease`; once it breaks the job goes
    /// on with `Tracking::None` (in `opts`, which then says how the job
    /// tracks, verifies and what it may claim).
    lease: Option<ReadLease>,
    /// A reflink has worked: copies may be [`REFLINK_OP`] long.
    reflinking: bool,
    /// What the last drain of a Complete held, once it thawed.
    held: Option<Held>,
    /// Saves the job's state as it runs, when asked to.
    saver: Option<Saver>,
    /// The saved map this job starts from, until `populate` takes it.
    resume: Option<Resume>,
    /// Notes the writes the target takes after the pivot, when asked.
    write_log: Option<Arc<WriteLog>>,
    /// A save failed and was reported; reset by the next that succeeds.
    save_failed: bool,
    /// What the last completed save says is left.
    saved_remaining: Option<u64>,
    started: Instant,
}

impl Runner {
    pub(super) fn new(s: Setup) -> Self {
        let geometry = s.tracker.geometry;
        let saver = s
            .persist
            .as_ref()
            .map(|p| Saver::new(p, s.opts.clone(), s.tracker.clone(), s.target.clone()));
        Runner {
            saver,
            write_log: s.persist.as_ref().and_then(|p| p.write_log.clone()),
            resume: s.persist.and_then(|p| p.resume),
            save_failed: false,
            saved_remaining: None,
            started: Instant::now(),
            ctx: Arc::new(CopyContext {
                source: s.source,
                target: s.target,
                geometry,
                // At most MAX_IN_FLIGHT operations of at most max_op bytes
                // hold a buffer at once: the pool never grows past that.
                buffers: BufferPool::new(s.resolved.max_op as usize),
                read_uncached: matches!(s.opts.tracking, Tracking::Kernel | Tracking::Compare),
                reflink: AtomicBool::new(true),
            }),
            live: s.live,
            tracker: s.tracker,
            kernel: s.kernel,
            lease: s.lease,
            reflinking: false,
            held: None,
            limiter: RateLimiter::new(s.opts.speed),
            rescan: Rescan::new(s.opts.tracking == Tracking::Compare),
            opts: s.opts,
            resolved: s.resolved,
            events: s.events,
            status: s.status,
            commands: Some(s.commands),
            ops: JoinSet::new(),
            in_flight_bytes: 0,
            cursor: 0,
            machine: Machine::default(),
            shown: JobState::Created,
            pause_waiters: Vec::new(),
            mode_switch: None,
            io_status: IoStatus::Ok,
            gate_closed: false,
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
        self.show_state();
        if let Err(f) = self.populate().await {
            self.emit(JobEvent::Error { failure: f.clone(), action: ErrorAction::Report });
            return self.finish(Outcome::Failed { error: JobFailure::Io(f) }).await;
        }
        let mut tick = interval(TICK);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut kernel_poll = interval(kernel_feed::POLL);
        kernel_poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Drained by time, not per turn of the loop: a turn per finished
        // copy would drain a whole bitmap (through a pipe, from a helper)
        // thousands of times a second during the bulk copy.
        let mut drained = Instant::now();
        loop {
            if drained.elapsed() >= kernel_feed::POLL {
                drained = Instant::now();
                if let Some(why) = self.kernel.as_ref().and_then(|feed| feed.drain(&self.tracker)) {
                    self.lost_track(why);
                }
            }
            for failure in self.tracker.take_failures() {
                self.on_error(failure);
            }
            self.sync_gate();
            self.issue();
            if let Some(outcome) = self.settle().await {
                return self.finish(outcome).await;
            }
            let idle = self.ops.is_empty();
            let wait_until = self.issue_blocked_until();
            let scanning = self.scanning();
            let writers_inside = self.gate_closed && !self.live.gate_idle();
            tokio::select! {
                biased;
                req = recv(&mut self.commands) => match req {
                    Some((cmd, reply)) => self.command(cmd, reply),
                    None => {
                        // Every handle is gone: nobody can complete this job.
                        self.commands = None;
                        self.abort(Outcome::Cancelled { consistent: false }, false);
                    }
                },
                Some(done) = self.ops.join_next(), if !idle => match done {
                    Ok(done) => self.op_done(done),
                    Err(e) => std::panic::resume_unwind(e.into_panic()),
                },
                _ = self.tracker.wake.notified(), if idle => {}
                _ = self.live.gate_idle_notified(), if writers_inside => {}
                _ = sleep_until(wait_until.unwrap_or_else(Instant::now)), if wait_until.is_some() => {}
                _ = tick.tick() => self.tick(),
                _ = kernel_poll.tick(), if self.kernel.is_some() => {}
                (saved, again) = saver_finished(&mut self.saver), if self.saving() => {
                    self.saved(saved, again)
                }
                _ = std::future::ready(()), if scanning => {}
            }
        }
    }

    /// Marks what the sync mode (or the saved map this job resumes) says
    /// to copy. Writes are already tracked. Saves may begin after this.
    async fn populate(&mut self) -> Result<(), IoFailure> {
        let chunks = self.tracker.geometry.chunks();
        if let Some(resume) = self.resume.take() {
            let (ctx, tracker) = (self.ctx.clone(), self.tracker.clone());
            blocking(move || super::rescan::mark_resumed(&ctx, &tracker, &resume)).await?;
            self.populated();
            return Ok(());
        }
        match self.opts.sync {
            // Without a backing layer "the top layer" is the whole device,
            // so `top` is `full`, as in QEMU: a hole of the source must
            // become zeroes on a target that may hold old data.
            SyncMode::Full => self.tracker.mark_dirty(0..chunks),
            SyncMode::Top if !self.ctx.source.has_backing() => self.tracker.mark_dirty(0..chunks),
            SyncMode::None => {}
            SyncMode::Differing => {
                let (ctx, tracker) = (self.ctx.clone(), self.tracker.clone());
                blocking(move || super::rescan::mark_differing(&ctx, &tracker)).await?;
            }
            SyncMode::Top => {
                let (source, tracker) = (self.ctx.source.clone(), self.tracker.clone());
                blocking(move || mark_top_layer(&*source, &tracker)).await?;
            }
        }
        self.populated();
        Ok(())
    }

    /// The map holds what the job must copy: publish it, and save it.
    fn populated(&mut self) {
        self.publish();
        if let Some(saver) = &mut self.saver {
            saver.arm();
            saver.request(self.shown);
        }
    }

    fn saving(&self) -> bool {
        self.saver.as_ref().is_some_and(Saver::is_running)
    }

    /// A save ended: say so if it failed (once until one succeeds), and
    /// start the one asked for meanwhile.
    fn saved(&mut self, result: std::io::Result<u64>, again: bool) {
        match result {
            Ok(remaining) => {
                self.save_failed = false;
                self.saved_remaining = Some(remaining);
            }
            Err(e) if !self.save_failed => {
                self.save_failed = true;
                self.emit(JobEvent::NotSaved { reason: e.to_string() });
            }
            Err(_) => {}
        }
        if again && let Some(saver) = &mut self.saver {
            saver.request(self.shown);
        }
    }

    /// When issuing is held back only by time (speed limit, error back-off),
    /// the instant it may go on.
    fn issue_blocked_until(&self) -> Option<Instant> {
        if !self.machine.may_issue() || self.ops.len() >= self.in_flight_limit() {
            return None;
        }
        let now = Instant::now();
        let at = self.limiter.ready_at(now).max(self.hold_until.unwrap_or(now));
        let waiting = self.tracker.dirty_chunks() > 0 || self.rescan.due();
        (at > now && waiting).then_some(at)
    }

    fn backing_off(&self) -> bool {
        self.hold_until.is_some_and(|t| t > Instant::now())
    }

    /// How many copies may run at once in the current copy mode: fewer in
    /// write-blocking mode, where writers wait for the target too, unless
    /// the target is remote (its copies wait on the network, not the CPUs).
    fn in_flight_limit(&self) -> usize {
        match self.tracker.copy_mode() {
            CopyMode::WriteBlocking if !self.ctx.target.remote() => {
                self.resolved.write_blocking_in_flight
            }
            CopyMode::WriteBlocking | CopyMode::Background => MAX_IN_FLIGHT,
        }
    }

    /// Starts as many copies as the limits allow.
    fn issue(&mut self) {
        let g = self.tracker.geometry.granularity;
        let total_chunks = self.tracker.geometry.chunks();
        while self.machine.may_issue() && self.ops.len() < self.in_flight_limit() {
            let now = Instant::now();
            if self.limiter.ready_at(now) > now || self.backing_off() {
                return;
            }
            let free = self.resolved.buf_size.saturating_sub(self.in_flight_bytes);
            if free < g && !self.ops.is_empty() {
                return;
            }
            let max_bytes = if self.reflinking && self.ctx.reflink.load(Ordering::Relaxed) {
                REFLINK_OP.max(g)
            } else {
                self.resolved.max_op.min(free.max(g))
            };
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
            let span = tracing::Span::current();
            self.ops.spawn_blocking(move || {
                let _in_job = span.enter();
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
                self.totals.cloned += stats.cloned;
                self.reflinking |= stats.cloned > 0;
                // Zeroes cost almost nothing: they do not count against the
                // speed. Reflinks do, though they cost little too: the limit
                // then says how fast the copy advances, whatever the files.
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
        // A device that is gone fails every request until it is back:
        // failing the job on what may be a server restart or a loose cable
        // loses the work done; ask instead (Retry reconnects).
        let action =
            if failure.lost && action == ErrorAction::Report { ErrorAction::Stop } else { action };
        if self.machine.aborting()
            || (action == ErrorAction::Stop && self.machine.asking().is_some())
        {
            // Already ending, or already asking about an earlier error: the
            // range stays dirty and nothing more needs saying.
            return;
        }
        let event = JobEvent::Error { failure: failure.clone(), action };
        match action {
            ErrorAction::Report => {
                self.emit(event);
                self.abort(Outcome::Failed { error: JobFailure::Io(failure) }, false)
            }
            ErrorAction::Ignore => {
                self.emit(event);
                self.hold_until = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            }
            ErrorAction::Stop => {
                self.io_status =
                    if failure.is_nospace() { IoStatus::Nospace } else { IoStatus::Failed };
                self.machine.ask(failure);
                // The question is published before anyone hears of it, so a
                // query agrees with the events: one that shows no pending
                // error comes before the ERROR event, never after it.
                self.publish();
                self.emit(event);
                self.show_state();
            }
        }
    }

    /// With nothing in flight: reach paused, ready, or the end.
    async fn settle(&mut self) -> Option<Outcome> {
        if let Some(offset) = self.tracker.written_past_end() {
            let copy_len = self.tracker.geometry.len;
            let error = JobFailure::WrittenPastTarget { offset, copy_len };
            self.abort(Outcome::Failed { error }, false);
        }
        if let Phase::Aborting { outcome, abandon, .. } = &self.machine.phase {
            return (self.ops.is_empty() || *abandon).then(|| outcome.clone());
        }
        if self.kernel.as_ref().is_some_and(|k| k.over_limit()) {
            self.hold_failed("the source's filesystems stayed frozen past the limit".into()).await;
        }
        if !self.ops.is_empty() {
            return None;
        }
        if self.machine.settled() {
            // The new state is published before anyone hears "paused".
            self.show_state();
            for w in self.pause_waiters.drain(..) {
                answer(w, Ok(()));
            }
        }
        if self.machine.hold != Hold::None
            || self.tracker.dirty_chunks() > 0
            || self.backing_off()
            || (self.machine.phase == Phase::Ready && !self.rescan.due())
        {
            return None;
        }
        if let (Phase::Completing { draining: false, .. }, false) =
            (&self.machine.phase, self.rescan.due())
        {
            if !self.tracking_synced().await {
                return None;
            }
            // Nothing dirty while writers flow: hold them for the last
            // drain, and (when verifying) compare everything once more.
            self.machine.in_sync();
            if let Some(feed) = self.kernel.clone() {
                // Writers outside livemirror are held by freezing their
                // filesystems (which writes out what they hold first).
                if let Err(e) = blocking(move || feed.freeze()).await {
                    self.hold_failed(e.to_string()).await;
                    return None;
                }
            }
            if self.opts.verifies() {
                self.rescan.demand(MAX_VERIFY_PASSES);
            }
            self.show_state();
            return None;
        }
        if self.gate_closed && !self.live.gate_idle() {
            return None;
        }
        if self.rescan.due() {
            self.scan_step().await;
            return None;
        }
        // The kernel's barrier proves "nothing dirty" only at the moment of
        // deciding it: once per decision, not per compare step.
        if !self.tracking_synced().await {
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
        if let (Phase::Completing { draining: true, .. }, Some(feed)) =
            (&self.machine.phase, self.kernel.clone())
        {
            // The target holds the frozen filesystems: let them go.
            match blocking(move || feed.thaw()).await {
                Ok(held) => self.held = Some(held),
                Err(e) => {
                    self.hold_failed(e.to_string()).await;
                    return None;
                }
            }
        }
        match self.machine.in_sync() {
            InSync::BecameReady => {
                self.show_state();
                self.emit(JobEvent::Ready);
                None
            }
            InSync::StayReady | InSync::HoldWriters => None,
            InSync::End(Ending::Pivot) => {
                let log = self.write_log.clone();
                if let Some(log) = &log {
                    log.begin(self.tracker.geometry);
                }
                self.live.pivot(self.ctx.target.clone(), log);
                Some(Outcome::Completed { proof: self.proof() })
            }
            InSync::End(Ending::Consistent) => Some(Outcome::Cancelled { consistent: true }),
        }
    }

    /// Proves that every write made before now is in the dirty map, so
    /// "nothing dirty" may be decided. Kernel tracking: a barrier, then a
    /// drain. A lease: it still holds (once broken, the job goes on
    /// untracked). False when that found something to copy or compare, or
    /// when the tracker failed (the job then fails: nothing it says can be
    /// trusted).
    async fn tracking_synced(&mut self) -> bool {
        if self.check_lease() {
            return false;
        }
        let Some(feed) = self.kernel.clone() else { return true };
        let tracker = self.tracker.clone();
        match blocking(move || feed.sync(&tracker)).await {
            Ok(None) => self.tracker.dirty_chunks() == 0,
            Ok(Some(why)) => {
                self.lost_track(why);
                false
            }
            Err(e) => {
                let error = JobFailure::TrackingLost(TrackingLoss::new(&e));
                self.abort(Outcome::Failed { error }, false);
                false
            }
        }
    }

    /// A program opened the leased source for writing: let it go at once
    /// (its open waits for that), and go on untracked, saying so. The end
    /// then verifies, as any untracked job does unless told not to.
    /// True when it just broke.
    fn check_lease(&mut self) -> bool {
        if !self.lease.as_ref().is_some_and(ReadLease::broken) {
            return false;
        }
        self.lease = None;
        self.opts.tracking = Tracking::None;
        // Past the point where a Complete demands the final comparison.
        if self.opts.verifies() && matches!(self.machine.phase, Phase::Completing { .. }) {
            self.rescan.demand(MAX_VERIFY_PASSES);
        }
        // The new tracking is published before anyone hears of it.
        self.publish();
        let reason = "a program opened the source for writing".to_owned();
        self.emit(JobEvent::TrackingChanged { tracking: Tracking::None, reason });
        true
    }

    /// Kernel tracking may have missed writes: compare everything once
    /// (ready or not: the pass runs while writers flow), and say why.
    fn lost_track(&mut self, why: String) {
        self.rescan.recover();
        self.emit(JobEvent::Rescanning { reason: why });
    }

    /// The last drain could not hold the source's writers: thaw whatever
    /// is still frozen, and the job is ready again.
    async fn hold_failed(&mut self, reason: String) {
        if let Some(feed) = self.kernel.clone()
            && let Err(e) = blocking(move || feed.thaw()).await
        {
            // Already failing with its own reason: only the log hears this.
            tracing::warn!(error = %e, "thawing after a failed hold");
        }
        self.machine.hold_failed();
        self.show_state();
        self.emit(JobEvent::CompleteFailed { reason });
    }

    /// What the job can say about the target at the end.
    fn proof(&self) -> Proof {
        match self.opts.tracking {
            Tracking::Nbd => Proof::Tracked,
            Tracking::Kernel => match self.held {
                Some(Held::Frozen(_)) => Proof::Tracked,
                _ if self.opts.verifies() => Proof::Verified,
                _ => Proof::TrackedUnheld,
            },
            Tracking::Compare => Proof::LastPass,
            Tracking::Lease => Proof::Tracked,
            Tracking::None if self.opts.verifies() => Proof::Verified,
            Tracking::None => Proof::Unverified,
        }
    }

    fn command(&mut self, cmd: Command, reply: Reply) {
        let effect = match self.machine.command(cmd, self.tracker.copy_mode()) {
            Ok(effect) => effect,
            Err(e) => {
                answer(reply, Err(e));
                return;
            }
        };
        let mut reply = Some(reply);
        match effect {
            Effect::Done => {}
            Effect::SetSpeed(speed) => self.limiter.set_speed(speed),
            // Answered once in-flight copies are done (see `settle`).
            Effect::AnswerWhenPaused => self.pause_waiters.extend(reply.take()),
            Effect::AnswerPauseWaiters => {
                for w in self.pause_waiters.drain(..) {
                    answer(w, Ok(()));
                }
            }
            Effect::SwitchCopyMode(mode) => {
                let (_, waiting) = self.mode_switch.get_or_insert_with(|| (mode, Vec::new()));
                waiting.extend(reply.take());
            }
            Effect::Decided { decision, failure } => {
                self.io_status = IoStatus::Ok;
                self.decisions += 1;
                let g = self.tracker.geometry;
                self.cursor = match decision {
                    Decision::Ignore => {
                        g.covering(failure.offset, failure.len.max(1)).end % g.chunks().max(1)
                    }
                    Decision::Retry | Decision::Stop => g.covering(failure.offset, 1).start,
                };
            }
        }
        if self.machine.aborting() {
            self.stop_tracking();
        }
        // Whoever hears "accepted" already sees the new state.
        self.show_state();
        if let Some(reply) = reply {
            answer(reply, Ok(()));
        }
    }

    /// True when a compare pass may take its next step now.
    fn scanning(&self) -> bool {
        self.rescan.due()
            && self.ops.is_empty()
            && self.machine.may_issue()
            && self.tracker.dirty_chunks() == 0
            && !self.backing_off()
            && (!self.gate_closed || self.live.gate_idle())
    }

    async fn scan_step(&mut self) {
        let scan = std::mem::take(&mut self.rescan);
        let (ctx, tracker, step) = (self.ctx.clone(), self.tracker.clone(), self.resolved.max_op);
        let (scan, result) = blocking(move || {
            let mut scan = scan;
            let r = scan.step(&ctx, &tracker, step);
            (scan, r)
        })
        .await;
        self.rescan = scan;
        match result {
            Ok(Some(PassEnd::GaveUp { first_difference })) => self.abort(
                Outcome::Failed {
                    error: JobFailure::NotIdentical {
                        passes: MAX_VERIFY_PASSES,
                        offset: first_difference,
                    },
                },
                false,
            ),
            Ok(_) => {}
            Err(f) => self.on_error(f),
        }
    }

    fn abort(&mut self, outcome: Outcome, abandon: bool) {
        self.machine.abort(outcome, abandon);
        self.stop_tracking();
    }

    /// An ending job no longer writes anything through to the target, nor
    /// keeps the source's filesystems frozen.
    fn stop_tracking(&self) {
        self.live.detach();
        if let Some(feed) = &self.kernel
            && let Err(e) = feed.thaw()
        {
            // Ending anyway; a thaw that fails has been retried by the
            // watchdog, and only the log is left to tell.
            tracing::warn!(error = %e, "thawing as the job ends");
        }
    }

    /// Holds or lets through writers as the machine says, and switches the
    /// copy mode once no writer is half-way through under the old one.
    fn sync_gate(&mut self) {
        loop {
            let want_closed = self.machine.holds_writers() || self.mode_switch.is_some();
            if want_closed != self.gate_closed {
                if want_closed {
                    self.live.close_gate();
                } else {
                    self.live.open_gate();
                }
                self.gate_closed = want_closed;
            }
            if !(self.gate_closed && self.live.gate_idle()) {
                return;
            }
            let Some((mode, waiting)) = self.mode_switch.take() else { return };
            self.tracker.set_copy_mode(mode);
            if mode == CopyMode::WriteBlocking && self.opts.buffer_target_when_write_blocking {
                self.ctx.target.buffer_writes();
            }
            // Published before anyone hears "switched".
            self.publish();
            for w in waiting {
                answer(w, Ok(()));
            }
        }
    }

    async fn finish(mut self, outcome: Outcome) {
        let abandon = matches!(self.machine.phase, Phase::Aborting { abandon: true, .. });
        if abandon {
            // A forced cancel: copies stuck on a hung device are left to
            // finish on their own; the target is incomplete either way.
            self.ops.detach_all();
        }
        while self.ops.join_next().await.is_some() {}
        self.live.detach();
        self.live.open_gate();
        self.gate_closed = false;
        self.tick();
        let held_ms = match self.held {
            Some(Held::Frozen(d)) => Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            _ => None,
        };
        self.status.send_modify(|s| s.held_ms = held_ms);
        let (state, event) = match &outcome {
            Outcome::Completed { proof } => (
                JobState::Completed,
                JobEvent::Completed {
                    tracking: self.opts.tracking,
                    proof: *proof,
                    identical: proof.identical(),
                    held_ms,
                    copied: self.totals.data,
                    zeroed: self.totals.zeroed,
                    skipped: self.totals.skipped,
                    duration_ms: u64::try_from(self.started.elapsed().as_millis())
                        .unwrap_or(u64::MAX),
                },
            ),
            Outcome::Cancelled { consistent } => {
                (JobState::Cancelled, JobEvent::Cancelled { consistent: *consistent })
            }
            Outcome::Failed { error } => {
                (JobState::Failed, JobEvent::Failed { error: error.clone() })
            }
        };
        // Completed: nothing is left to resume. Otherwise the file says
        // where the job stopped, for a later run to go on from there —
        // except after a forced cancel, which must not wait for a flush of
        // a hung target: the last save that completed stays, true as ever.
        if let Some(saver) = self.saver.take().filter(|_| !abandon) {
            let saved = match &outcome {
                Outcome::Completed { .. } => saver.completed(self.write_log.is_some()).await,
                _ => saver.last_save(state).await,
            };
            if let Err(e) = saved {
                self.emit(JobEvent::NotSaved { reason: e.to_string() });
            }
        }
        for w in self.pause_waiters.drain(..) {
            answer(w, Err(Error::JobEnded));
        }
        for w in self.mode_switch.take().into_iter().flat_map(|(_, w)| w) {
            answer(w, Err(Error::JobEnded));
        }
        self.set_state(state);
        self.emit(event);
        self.status.send_modify(|s| s.outcome = Some(outcome));
    }

    fn tick(&mut self) {
        self.check_lease();
        let now = Instant::now();
        let (then, copied_then) = self.last_tick;
        let secs = now.duration_since(then).as_secs_f64();
        if secs > 0.0 {
            self.bytes_per_sec = ((self.copied - copied_then) as f64 / secs) as u64;
        }
        self.last_tick = (now, self.copied);
        self.tracker.map.decay_heat();
        if let Some(saver) = self.saver.as_mut().filter(|s| s.due()) {
            saver.request(self.shown);
        }
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
            saved: self.saved_remaining,
        }
    }

    fn show_state(&mut self) {
        self.set_state(self.machine.state());
    }

    /// Publishes the status before announcing the change, so whoever reacts
    /// to the event already sees the new status (a pending error, say).
    fn set_state(&mut self, state: JobState) {
        let changed = self.shown != state;
        self.shown = state;
        self.publish();
        if changed {
            if let Some(saver) = self.saver.as_mut().filter(|_| !state.is_terminal()) {
                saver.request(state);
            }
            self.emit(JobEvent::StateChanged { state });
        }
    }

    fn publish(&self) {
        let progress = self.progress();
        self.status.send_modify(|s| {
            s.state = self.shown;
            s.progress = progress;
            s.speed = self.limiter.speed();
            s.copy_mode = self.tracker.copy_mode();
            s.tracking = self.opts.tracking;
            s.verify = self.opts.verifies();
            s.io_status = self.io_status;
            s.ready = self.machine.was_ready() || s.ready;
            s.pending_error = self.machine.asking().cloned();
            s.errors = self.errors;
            s.data_bytes = self.totals.data;
            s.zero_bytes = self.totals.zeroed;
            s.skipped_bytes = self.totals.skipped;
            s.cloned_bytes = self.totals.cloned;
        });
    }

    fn emit(&self, event: JobEvent) {
        log(&event);
        // No subscribers is fine: status still tells the story.
        let _ = self.events.send(event);
    }
}

async fn saver_finished(saver: &mut Option<Saver>) -> (std::io::Result<u64>, bool) {
    match saver {
        Some(saver) => saver.finished().await,
        None => std::future::pending().await,
    }
}

async fn recv(rx: &mut Option<mpsc::UnboundedReceiver<Request>>) -> Option<Request> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Every event, in the log too, at the level it deserves (in the job's
/// span, which names the job, its source and target).
fn log(event: &JobEvent) {
    match event {
        JobEvent::Progress(p) => tracing::trace!(copied = p.copied, dirty = p.dirty, "progress"),
        JobEvent::StateChanged { state } => tracing::debug!(%state, "state"),
        JobEvent::Ready => tracing::info!("ready: the target is in sync"),
        JobEvent::Error { failure, action } => {
            tracing::warn!(%failure, action = action.name(), "I/O error")
        }
        JobEvent::NotSaved { reason } => tracing::warn!(%reason, "the job's state was not saved"),
        JobEvent::Rescanning { reason } => tracing::warn!(%reason, "comparing everything once"),
        JobEvent::TrackingChanged { tracking, reason } => {
            tracing::warn!(%tracking, %reason, "tracking changed")
        }
        JobEvent::CompleteFailed { reason } => tracing::warn!(%reason, "complete failed"),
        JobEvent::Completed { proof, identical, .. } => {
            tracing::info!(?proof, identical, "completed")
        }
        JobEvent::Cancelled { consistent } => tracing::info!(consistent, "cancelled"),
        JobEvent::Failed { error } => tracing::error!(%error, "failed"),
    }
}

/// Runs blocking I/O off the async threads, in the caller's span. A panic
/// there is a bug; it is passed on rather than dressed up as an I/O error.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// Sync mode `top` over a backing layer: dirty every chunk the top layer
/// allocates; the rest reads from the backing, which the target has.
fn mark_top_layer(source: &dyn BlockDevice, tracker: &Tracker) -> Result<(), IoFailure> {
    for run in top_extents(source, 0..source.len()) {
        let run = run.map_err(|e| e.failure(Side::Source))?;
        if run.status {
            tracker.mark_dirty(tracker.geometry.covering(run.offset, run.len));
        }
    }
    Ok(())
}
