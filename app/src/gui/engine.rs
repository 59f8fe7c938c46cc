//! Where the window's I/O happens: a tokio runtime on background threads
//! that runs the mirror job, opens devices, shows file dialogs and verifies
//! results, so a frame never waits for a disk. Results come back over
//! channels the UI polls each frame, with a `request_repaint` to wake it.
//!
//! Devices are opened through an [`Opener`], so tests can hand the app a
//! fault-injecting target without touching the UI code. [`Newest`] asks
//! the engine a question that keeps changing (the Setup screen's check of
//! the pair as it is typed) and keeps only the answer to the newest.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use eframe::egui;
use livemirror_core::Error;
use livemirror_core::device::{BlockDevice, ImageFormat, OpenOptions, Qcow2Device};

use crate::platform::privileged::OpenError;

/// Opens the devices a job reads and writes.
pub trait Opener: Send + Sync {
    /// Opens `path`, read-only unless `write`, as the user is allowed to:
    /// quick, never prompts (the Setup screen's inline check).
    fn open(&self, path: &Path, write: bool) -> Result<Arc<dyn BlockDevice>, Error>;
    /// Whether `path` exists (Setup's check, on the engine): a stat, which
    /// can hang as an open can, on a dead network mount.
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    /// Opens `path` for the job with `opts` (the target's cache mode among
    /// them), on the engine thread: where the user may not open a disk, this
    /// may ask for authorization and wait for it.
    fn open_for_job(
        &self,
        path: &Path,
        opts: OpenOptions,
    ) -> Result<Arc<dyn BlockDevice>, OpenError> {
        self.open(path, opts.writes()).map_err(OpenError::Direct)
    }
    /// Creates a new sparse image of `len` bytes at `path`, open for writing
    /// with `opts`: qcow2 when the name ends `.qcow2`, as `clone` does.
    fn create(
        &self,
        path: &Path,
        len: u64,
        opts: OpenOptions,
    ) -> Result<Arc<dyn BlockDevice>, Error> {
        Ok(match ImageFormat::of_new_name(path) {
            ImageFormat::Qcow2 => Arc::new(Qcow2Device::create(path, len, None)?),
            ImageFormat::Raw => Arc::new(opts.create(path, len)?),
        })
    }
}

/// Files and disks, as they are.
pub struct FileOpener;

impl Opener for FileOpener {
    fn open(&self, path: &Path, write: bool) -> Result<Arc<dyn BlockDevice>, Error> {
        // A qcow2 image is checked at its disk's size, not its file's.
        if ImageFormat::of_file(path) == ImageFormat::Qcow2 {
            return Ok(Arc::new(Qcow2Device::open(path, write)?));
        }
        Ok(Arc::new(OpenOptions::new().write(write).open(path)?))
    }

    fn open_for_job(
        &self,
        path: &Path,
        opts: OpenOptions,
    ) -> Result<Arc<dyn BlockDevice>, OpenError> {
        crate::platform::privileged::open(path, opts)
    }
}

/// The background runtime.
pub struct Engine {
    /// Always there; taken only when the engine is dropped.
    runtime: Option<tokio::runtime::Runtime>,
}

/// How long closing the window waits for blocking work still under way
/// (a device that hangs in `open`, a verification reading on) before it
/// leaves it behind: the process is ending, and a hung device must not
/// keep the window from closing.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(3);

/// A result still being worked out on the engine.
pub struct Pending<T>(mpsc::Receiver<T>);

impl<T> Pending<T> {
    /// The result, once it is there (never blocks).
    pub fn poll(&self) -> Option<T> {
        self.0.try_recv().ok()
    }

    /// Waits for the result: only on the engine, never on the UI thread.
    /// `None` if the work was abandoned.
    pub fn wait(self) -> Option<T> {
        self.0.recv().ok()
    }
}

impl Engine {
    pub fn new() -> std::io::Result<Self> {
        let runtime = livemirror_core::runtime::build("livemirror-engine", Some(2))?;
        Ok(Engine { runtime: Some(runtime) })
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("the runtime is only taken on drop")
    }

    /// Runs blocking work (device I/O) off the UI thread; the UI is woken
    /// when the result is ready.
    pub fn blocking<T: Send + 'static>(
        &self,
        ctx: &egui::Context,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Pending<T> {
        let (tx, rx) = mpsc::channel();
        let ctx = ctx.clone();
        self.runtime().spawn_blocking(move || {
            // Fails only when the asker stopped waiting (a stale question,
            // a closed screen): the result is not wanted.
            let _ = tx.send(work());
            ctx.request_repaint();
        });
        Pending(rx)
    }

    /// Runs a future (a file dialog, a command) on the engine.
    pub fn spawn<T: Send + 'static>(
        &self,
        ctx: &egui::Context,
        work: impl Future<Output = T> + Send + 'static,
    ) -> Pending<T> {
        let (tx, rx) = mpsc::channel();
        let ctx = ctx.clone();
        self.runtime().spawn(async move {
            // As in `blocking`: nobody waits for the result any more.
            let _ = tx.send(work.await);
            ctx.request_repaint();
        });
        Pending(rx)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(SHUTDOWN_WAIT);
        }
    }
}

/// The engine's answer to the newest of a run of questions. A question is
/// sent once it has stood unchanged for the `settle` time (typing a path
/// does not start one check per keystroke); when a newer question is
/// asked, the answer to the one before is no longer waited for, and is
/// dropped when it comes (its work ends on its own, even if it hangs).
pub struct Newest<Q, A> {
    settle: Duration,
    /// The current question, and since when it stands.
    asked: Option<(Q, Instant)>,
    /// The current question, being answered on the engine.
    running: Option<Pending<A>>,
    /// The last answer, and the question it answers.
    answered: Option<(Q, A)>,
}

impl<Q: Clone + PartialEq + Send + 'static, A: Send + 'static> Newest<Q, A> {
    pub fn new(settle: Duration) -> Self {
        Newest { settle, asked: None, running: None, answered: None }
    }

    /// Makes `question` the current one; `true` if it was not already.
    pub fn ask(&mut self, question: &Q) -> bool {
        if self.asked.as_ref().is_some_and(|(q, _)| q == question) {
            return false;
        }
        self.asked = Some((question.clone(), Instant::now()));
        // Any answer on its way is to an older question.
        self.running = None;
        true
    }

    /// Answers the current question at once (one that needs no I/O).
    pub fn answer_now(&mut self, answer: A) {
        if let Some((q, _)) = &self.asked {
            self.answered = Some((q.clone(), answer));
            self.running = None;
        }
    }

    /// Takes in the engine's answer to the current question, or, once the
    /// question has settled, sends it: `work` answers it on the engine's
    /// blocking threads. Call it every frame; the UI is woken when the
    /// question settles and when the answer comes.
    pub fn poll(
        &mut self,
        engine: &Engine,
        ctx: &egui::Context,
        work: impl FnOnce(Q) -> A + Send + 'static,
    ) {
        let Some((question, since)) = &self.asked else { return };
        if self.answer().is_some() {
            return;
        }
        if let Some(pending) = &self.running {
            if let Some(answer) = pending.poll() {
                self.answered = Some((question.clone(), answer));
                self.running = None;
            }
            return;
        }
        let wait = self.settle.saturating_sub(since.elapsed());
        if wait.is_zero() {
            let question = question.clone();
            self.running = Some(engine.blocking(ctx, move || work(question)));
        } else {
            ctx.request_repaint_after(wait);
        }
    }

    /// The answer to the current question, once it is there.
    pub fn answer(&self) -> Option<&A> {
        match (&self.asked, &self.answered) {
            (Some((asked, _)), Some((q, a))) if asked == q => Some(a),
            _ => None,
        }
    }

    /// The last answer, and the question it answers (maybe an older one).
    pub fn last(&self) -> Option<(&Q, &A)> {
        self.answered.as_ref().map(|(q, a)| (q, a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls until the current question is answered.
    fn answered<'a, Q, A>(newest: &'a mut Newest<Q, A>, engine: &Engine, work: fn(Q) -> A) -> &'a A
    where
        Q: Clone + PartialEq + Send + 'static,
        A: Send + 'static,
    {
        let ctx = egui::Context::default();
        let deadline = Instant::now() + Duration::from_secs(60);
        while newest.answer().is_none() {
            assert!(Instant::now() < deadline, "no answer");
            newest.poll(engine, &ctx, work);
            std::thread::yield_now();
        }
        newest.answer().unwrap()
    }

    /// The answer to a question replaced while it was being answered is
    /// dropped, even when it comes before the newer one's.
    #[test]
    fn an_answer_to_a_replaced_question_is_dropped() {
        static GATE: std::sync::Mutex<Option<mpsc::Receiver<()>>> = std::sync::Mutex::new(None);
        static STALE_DONE: std::sync::Mutex<Option<mpsc::Sender<()>>> = std::sync::Mutex::new(None);
        let (open, gate) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        *GATE.lock().unwrap() = Some(gate);
        *STALE_DONE.lock().unwrap() = Some(done_tx);
        // Question 1 waits for the gate; question 2 answers at once.
        fn work(q: u32) -> u32 {
            if q == 1 {
                let gate = GATE.lock().unwrap().take().unwrap();
                gate.recv().unwrap();
                STALE_DONE.lock().unwrap().take().unwrap().send(()).unwrap();
            }
            q * 10
        }
        let engine = Engine::new().unwrap();
        let ctx = egui::Context::default();
        let mut newest = Newest::new(Duration::ZERO);
        assert!(newest.ask(&1));
        assert!(!newest.ask(&1), "the same question twice is one question");
        newest.poll(&engine, &ctx, work);
        assert!(newest.answer().is_none());
        assert!(newest.ask(&2));
        // The stale answer is worked out before the newer question is sent.
        open.send(()).unwrap();
        done.recv().unwrap();
        assert_eq!(*answered(&mut newest, &engine, work), 20);
        assert_eq!(newest.last(), Some((&2, &20)));
    }

    /// A question is not sent before it has stood for the settle time.
    #[test]
    fn a_question_waits_to_settle() {
        let engine = Engine::new().unwrap();
        let ctx = egui::Context::default();
        let mut newest = Newest::new(Duration::from_secs(3600));
        newest.ask(&1);
        newest.poll(&engine, &ctx, |q: u32| q);
        assert!(newest.running.is_none(), "sent before it settled");
        newest.answer_now(7);
        assert_eq!(newest.answer(), Some(&7));
        newest.ask(&2);
        assert_eq!(newest.answer(), None);
        assert_eq!(newest.last(), Some((&1, &7)));
    }

    /// Dropping the engine does not wait for ever for blocking work that
    /// hangs (a device stuck in `open`).
    #[test]
    fn dropping_the_engine_leaves_hung_work_behind() {
        let engine = Engine::new().unwrap();
        let (release, hung) = mpsc::channel::<()>();
        let ctx = egui::Context::default();
        let pending = engine.blocking(&ctx, move || hung.recv().is_ok());
        drop(engine);
        // Reached only if the drop returned; now let the work end.
        drop(release);
        drop(pending);
    }
}
