//! Kernel write tracking for a process that is not root — the window, or
//! `clone` run by a user: `livemirror kernel-helper`, a mode of this same
//! binary started as root through pkexec (polkit asks the user, with the
//! action in packaging/deb/org.livemirror.pkexec.policy), holds the
//! tracker and the freeze and answers over its stdin and stdout, one JSON
//! line per request and per reply.
//!
//! Why a helper process rather than handing over the BPF map: the freeze
//! needs CAP_SYS_ADMIN at FIFREEZE and FITHAW time, and the barrier's
//! marker read needs the disk opened `O_DIRECT`; a process that holds both
//! is simplest to reason about, and a drain every 50 ms is one short line
//! each way.
//!
//! The helper only reads and freezes: it loads the tracker on the one
//! device it is named, reads that device's first block as the barrier's
//! marker, and freezes and thaws the filesystems mounted from it. It ends
//! when its stdin closes — the requester let go or died, even by SIGKILL —
//! and what it holds is dropped then, which thaws every filesystem it froze
//! at once; if the helper itself dies, its freeze's watchdog thaws.

use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use livemirror_core::device::{BlockDevice, DeviceId, OpenOptions};
use livemirror_core::kernel::{
    AttachKernel, Drained, FreezeError, Frozen, KernelTracker, KernelWrites, TrackError, Unseen,
};
use serde::{Deserialize, Serialize};

/// The command that runs the helper as root, instead of `pkexec`: e.g.
/// `sudo -n` on a machine without polkit, or empty for a process that is
/// root already (the tests, which take the helper's path that way).
pub const HELPER_ENV: &str = "LIVEMIRROR_KERNEL_HELPER";

/// pkexec's exit codes when it ran nothing: 126, the user dismissed the
/// prompt or was not authorized; 127, not authorized or it failed.
const PKEXEC_REFUSED: [i32; 2] = [126, 127];

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
enum Request {
    Attach { device: PathBuf, granularity: u64, span_words: u64 },
    Drain,
    Barrier,
    Freeze { limit_ms: u64 },
    Thaw,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Reply {
    /// Tracking: the device as the helper opened it.
    Attached {
        disk: u64,
        start: u64,
        len: u64,
    },
    /// Runs of chunk indexes `[start, end)`; `unseen` when not all.
    Drained {
        runs: Vec<[u64; 2]>,
        unseen: Option<Unseen>,
    },
    Done,
    Frozen {
        filesystems: usize,
    },
    Thawed {
        held_us: u64,
    },
    /// The request failed; `time_limit` when a freeze outlived its limit.
    Failed {
        error: String,
        time_limit: bool,
    },
}

impl Reply {
    fn failed(e: impl ToString) -> Reply {
        Reply::Failed { error: e.to_string(), time_limit: false }
    }
}

/// `livemirror kernel-helper`: answers requests on stdin until it closes.
pub fn run() -> io::Result<()> {
    serve(io::stdin().lock(), io::stdout().lock())
}

/// What the helper holds: the tracker once attached, a freeze while one
/// is under way. Dropped (thawing) when the requester goes.
#[derive(Default)]
struct Holding {
    tracker: Option<KernelTracker>,
    freeze: Option<Box<dyn Frozen>>,
}

fn serve(input: impl BufRead, mut output: impl Write) -> io::Result<()> {
    let mut held = Holding::default();
    for line in input.lines() {
        let reply = match serde_json::from_str::<Request>(&line?) {
            Ok(request) => answer(request, &mut held),
            Err(e) => Reply::failed(format!("not a request: {e}")),
        };
        serde_json::to_writer(&mut output, &reply)?;
        output.write_all(b"\n")?;
        output.flush()?;
    }
    Ok(())
}

fn answer(request: Request, held: &mut Holding) -> Reply {
    match (request, &held.tracker) {
        (Request::Attach { .. }, Some(_)) => Reply::failed("already tracking a device"),
        (Request::Attach { device, granularity, span_words }, None) => {
            match attach(&device, granularity, span_words) {
                Ok((tracker, id)) => {
                    let DeviceId::Block { disk, start, len, .. } = id else {
                        return Reply::failed(TrackError::NotABlockDevice);
                    };
                    held.tracker = Some(tracker);
                    Reply::Attached { disk, start, len }
                }
                Err(e) => Reply::failed(e),
            }
        }
        (_, None) => Reply::failed("no device is tracked yet"),
        (Request::Drain, Some(t)) => {
            let mut runs = Vec::new();
            let unseen = match t.drain(&mut |r: Range<u64>| runs.push([r.start, r.end])) {
                Drained::Exact => None,
                Drained::All(why) => Some(why),
            };
            Reply::Drained { runs, unseen }
        }
        (Request::Barrier, Some(t)) => match t.barrier() {
            Ok(()) => Reply::Done,
            Err(e) => Reply::failed(e),
        },
        (Request::Freeze { .. }, Some(_)) if held.freeze.is_some() => {
            Reply::failed("already frozen")
        }
        (Request::Freeze { limit_ms }, Some(t)) => {
            match KernelWrites::freeze(t, Duration::from_millis(limit_ms)) {
                Ok(hold) => {
                    let filesystems = hold.filesystems();
                    held.freeze = Some(hold);
                    Reply::Frozen { filesystems }
                }
                Err(e) => Reply::failed(e),
            }
        }
        (Request::Thaw, Some(_)) => match held.freeze.take().map(|h| h.thaw()) {
            None => Reply::Thawed { held_us: 0 },
            Some(Ok(d)) => {
                Reply::Thawed { held_us: u64::try_from(d.as_micros()).unwrap_or(u64::MAX) }
            }
            Some(Err(e @ FreezeError::TimeLimit { .. })) => {
                Reply::Failed { error: e.to_string(), time_limit: true }
            }
            Some(Err(e)) => Reply::failed(e),
        },
    }
}

fn attach(
    device: &Path,
    granularity: u64,
    span_words: u64,
) -> Result<(KernelTracker, DeviceId), TrackError> {
    let dev = OpenOptions::new().open(device).map_err(HelperError::Open)?;
    let id = dev.id();
    Ok((KernelTracker::attach_with_span_limit(&id, granularity, span_words)?, id))
}

/// Kernel tracking of the block device at `device` through a helper
/// started by `launcher` (e.g. `pkexec`): what [`job::start_tracked_by`]
/// needs.
///
/// [`job::start_tracked_by`]: livemirror_core::job::start_tracked_by
pub struct Helper {
    launcher: Vec<OsString>,
    device: PathBuf,
}

impl Helper {
    pub fn new(launcher: Vec<OsString>, device: &Path) -> Helper {
        Helper { launcher, device: device.to_owned() }
    }

    fn spawn(&self) -> Result<Pipe, TrackError> {
        let exe = std::env::current_exe().map_err(HelperError::NoProgram)?;
        let mut words = self.launcher.iter();
        let mut cmd = match words.next() {
            Some(program) => {
                let mut c = Command::new(program);
                c.args(words).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        cmd.arg("kernel-helper").stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut child = cmd.spawn().map_err(|source| {
            let what = self.launcher.first().map_or(exe.as_os_str(), |p| p.as_os_str());
            HelperError::Run { program: what.into(), source }
        })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            unreachable!("both were asked to be piped");
        };
        let io = Io { stdin, stdout: BufReader::new(stdout) };
        Ok(Pipe { io: Mutex::new(Some(io)), child: Mutex::new(child) })
    }
}

impl AttachKernel for Helper {
    fn attach(
        &self,
        id: &DeviceId,
        granularity: u64,
        span_words: u64,
    ) -> Result<Box<dyn KernelWrites>, TrackError> {
        let &DeviceId::Block { disk, start, len, .. } = id else {
            return Err(TrackError::NotABlockDevice);
        };
        let pipe = Arc::new(self.spawn()?);
        let request = Request::Attach { device: self.device.clone(), granularity, span_words };
        match pipe.call(&request)? {
            // The path could name another device by now (a replugged USB
            // stick): the helper must track the very one this job reads.
            Reply::Attached { disk: d, start: s, len: l } if (d, s, l) == (disk, start, len) => {
                Ok(Box::new(Remote { pipe }))
            }
            Reply::Attached { .. } => {
                Err(HelperError::Replugged { device: self.device.clone() }.into())
            }
            other => Err(unexpected(other).into()),
        }
    }
}

/// The requester's end of a running helper.
struct Pipe {
    /// Taken (closed) on drop, which ends the helper.
    io: Mutex<Option<Io>>,
    child: Mutex<Child>,
}

struct Io {
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Pipe {
    /// One request, one reply. A helper that is gone is said so, with what
    /// pkexec's exit status tells.
    fn call(&self, request: &Request) -> Result<Reply, TrackError> {
        let mut guard = lock(&self.io);
        let io = guard.as_mut().ok_or(HelperError::LetGo)?;
        let mut line = serde_json::to_string(request).expect("requests serialize");
        line.push('\n');
        let sent = io.stdin.write_all(line.as_bytes()).and_then(|()| io.stdin.flush());
        line.clear();
        let read = sent.and_then(|()| io.stdout.read_line(&mut line));
        match read {
            Ok(n) if n > 0 => serde_json::from_str(&line)
                .map_err(|source| HelperError::Unreadable { line, source }.into()),
            Ok(_) | Err(_) => {
                *guard = None;
                Err(self.ended().into())
            }
        }
    }

    /// Why the helper stopped answering.
    fn ended(&self) -> HelperError {
        let status = lock(&self.child).wait();
        match status.map(|s| s.code()) {
            Ok(Some(code)) if PKEXEC_REFUSED.contains(&code) => HelperError::NotAuthorized(code),
            Ok(Some(code)) => HelperError::Exited(code),
            Ok(None) => HelperError::Killed,
            Err(e) => HelperError::Silent(e),
        }
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        // Closing its stdin ends the helper, which thaws whatever it froze.
        drop(lock(&self.io).take());
        if let Err(e) = lock(&self.child).wait() {
            tracing::warn!("the kernel tracking helper could not be waited for: {e}");
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every holder leaves the value whole; a panic elsewhere does not matter.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn unexpected(reply: Reply) -> HelperError {
    match reply {
        Reply::Failed { error, .. } => HelperError::Said(error),
        other => HelperError::Unexpected(format!("{other:?}")),
    }
}

/// What went wrong with the privileged helper itself (what it reports of
/// the tracker or the freeze comes back as [`HelperError::Said`]).
#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    #[error("{0}")]
    Open(#[source] livemirror_core::Error),
    #[error("cannot find this program: {0}")]
    NoProgram(#[source] io::Error),
    #[error("cannot run {}: {source}", program.display())]
    Run { program: PathBuf, source: io::Error },
    /// The path now names another device than the one the job reads.
    #[error("{} is no longer the device this job reads", device.display())]
    Replugged { device: PathBuf },
    #[error("it was let go")]
    LetGo,
    #[error("unreadable reply {line:?}: {source}")]
    Unreadable { line: String, source: serde_json::Error },
    /// pkexec's "not authorized" and "dialog dismissed" statuses.
    #[error("not authorized: the password prompt was dismissed or refused (exit status {0})")]
    NotAuthorized(i32),
    #[error("it exited with status {0}")]
    Exited(i32),
    #[error("it was killed")]
    Killed,
    #[error("it stopped answering: {0}")]
    Silent(#[source] io::Error),
    /// The helper's own words for what failed on its side.
    #[error("{0}")]
    Said(String),
    #[error("unexpected reply {0}")]
    Unexpected(String),
}

impl From<HelperError> for TrackError {
    fn from(e: HelperError) -> Self {
        TrackError::Helper(Box::new(e))
    }
}

impl From<HelperError> for FreezeError {
    fn from(e: HelperError) -> Self {
        FreezeError::Helper(Box::new(e))
    }
}

/// A tracker held by a helper.
struct Remote {
    pipe: Arc<Pipe>,
}

impl KernelWrites for Remote {
    fn drain(&self, mark: &mut dyn FnMut(Range<u64>)) -> Drained {
        match self.pipe.call(&Request::Drain) {
            Ok(Reply::Drained { runs, unseen }) => {
                for [start, end] in runs {
                    mark(start..end);
                }
                unseen.map_or(Drained::Exact, Drained::All)
            }
            // Nothing is tracked any more; the next barrier fails the job.
            _ => Drained::All(Unseen::Gone),
        }
    }

    fn barrier(&self) -> Result<(), TrackError> {
        match self.pipe.call(&Request::Barrier)? {
            Reply::Done => Ok(()),
            other => Err(unexpected(other).into()),
        }
    }

    fn freeze(&self, limit: Duration) -> Result<Box<dyn Frozen>, FreezeError> {
        // Counted from before the request: the helper's own limit ends a
        // little later, so this side never believes in a freeze that the
        // helper's watchdog has already let go.
        let deadline = Instant::now() + limit;
        let limit_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
        match self.pipe.call(&Request::Freeze { limit_ms }) {
            Ok(Reply::Frozen { filesystems }) => Ok(Box::new(RemoteHold {
                pipe: Some(self.pipe.clone()),
                filesystems,
                deadline,
                limit,
            })),
            Ok(other) => Err(unexpected(other).into()),
            Err(e) => Err(FreezeError::Helper(Box::new(e))),
        }
    }
}

/// A freeze held by the helper; thawed on drop too.
struct RemoteHold {
    /// Taken by the thaw.
    pipe: Option<Arc<Pipe>>,
    filesystems: usize,
    deadline: Instant,
    limit: Duration,
}

impl Frozen for RemoteHold {
    fn filesystems(&self) -> usize {
        self.filesystems
    }

    fn deadline(&self) -> Instant {
        self.deadline
    }

    fn thaw(mut self: Box<Self>) -> Result<Duration, FreezeError> {
        let pipe = self.pipe.take().expect("thawed once");
        match pipe.call(&Request::Thaw) {
            Ok(Reply::Thawed { held_us }) => Ok(Duration::from_micros(held_us)),
            Ok(Reply::Failed { time_limit: true, .. }) => {
                Err(FreezeError::TimeLimit { limit: self.limit })
            }
            Ok(other) => Err(unexpected(other).into()),
            Err(e) => Err(FreezeError::Helper(Box::new(e))),
        }
    }
}

impl Drop for RemoteHold {
    fn drop(&mut self) {
        if let Some(pipe) = self.pipe.take() {
            // Let go without a thaw: ask for one; the helper thaws anyway
            // when it ends.
            if let Err(e) = pipe.call(&Request::Thaw) {
                tracing::debug!("the helper did not answer the thaw ({e}); it thaws as it ends");
            }
        }
    }
}

/// How this process gets kernel tracking, from [`HELPER_ENV`] and who it
/// runs as: in itself when root, else through the helper started by
/// pkexec (or the command the variable names).
pub fn access() -> Access {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    access_from(std::env::var_os(HELPER_ENV), root, on_path("pkexec"))
}

fn access_from(launcher: Option<OsString>, root: bool, pkexec: bool) -> Access {
    if let Some(launcher) = launcher {
        let words = launcher.to_string_lossy().split_whitespace().map(OsString::from).collect();
        return Access::Helper(words);
    }
    if root || !pkexec {
        // Root tracks itself; without pkexec there is no one to ask, and
        // tracking in this process says it needs root.
        return Access::InProcess;
    }
    Access::Helper(vec!["pkexec".into()])
}

/// See [`access`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    InProcess,
    /// The helper, started by this command (empty: as is).
    Helper(Vec<OsString>),
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(lines: &[&str]) -> Vec<serde_json::Value> {
        let input = lines.join("\n");
        let mut out = Vec::new();
        serve(input.as_bytes(), &mut out).expect("serve");
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON reply"))
            .collect()
    }

    #[test]
    fn malformed_and_out_of_order_requests_get_errors_and_the_helper_goes_on() {
        let replies = exchange(&[
            "not json",
            r#"{"op":"launch-missiles"}"#,
            r#"{"op":"drain"}"#,
            r#"{"op":"freeze","limit_ms":10}"#,
            r#"{"op":"attach","device":"/nonexistent/disk","granularity":65536,"span_words":1}"#,
        ]);
        assert_eq!(replies.len(), 5, "{replies:?}");
        let errors: Vec<&str> =
            replies.iter().map(|r| r["failed"]["error"].as_str().expect("failed")).collect();
        assert!(errors[0].starts_with("not a request"), "{errors:?}");
        assert!(errors[1].contains("launch-missiles"), "{errors:?}");
        assert_eq!(errors[2], "no device is tracked yet");
        assert_eq!(errors[3], "no device is tracked yet");
        assert!(errors[4].contains("/nonexistent/disk"), "{errors:?}");
    }

    #[test]
    fn an_image_file_is_refused_as_not_a_block_device() {
        let image = tempfile::NamedTempFile::new().unwrap();
        image.as_file().set_len(1 << 20).unwrap();
        let request = serde_json::json!({
            "op": "attach", "device": image.path(), "granularity": 65536, "span_words": 1
        });
        let replies = exchange(&[&request.to_string()]);
        let error = replies[0]["failed"]["error"].as_str().expect("failed");
        assert!(error.contains("needs a block device"), "{error}");
    }

    #[test]
    fn root_tracks_itself_a_user_asks_pkexec_and_the_variable_overrides_both() {
        let sudo = Some(OsString::from("sudo  -n"));
        assert_eq!(access_from(sudo, true, true), Access::Helper(vec!["sudo".into(), "-n".into()]));
        assert_eq!(access_from(Some("".into()), false, false), Access::Helper(vec![]));
        assert_eq!(access_from(None, true, true), Access::InProcess);
        assert_eq!(access_from(None, false, true), Access::Helper(vec!["pkexec".into()]));
        // Nobody to ask: in-process tracking then says it needs root.
        assert_eq!(access_from(None, false, false), Access::InProcess);
    }

    #[test]
    fn a_helper_that_cannot_start_says_what_was_run() {
        let helper = Helper::new(vec!["/nonexistent/pkexec".into()], Path::new("/dev/null"));
        let id = DeviceId::Block { disk: 1, start: 0, len: 1 << 20, backing: None };
        let Err(e) = helper.attach(&id, 65536, 1) else { panic!("attached") };
        assert!(e.to_string().contains("cannot run /nonexistent/pkexec"), "{e}");
    }

    #[test]
    fn a_refused_prompt_is_told_as_not_authorized() {
        // A stand-in for a pkexec whose prompt was dismissed: it runs
        // nothing and exits with 126, as pkexec does then.
        let helper = Helper::new(
            vec!["sh".into(), "-c".into(), "exit 126".into(), "pkexec".into()],
            Path::new("/dev/null"),
        );
        let id = DeviceId::Block { disk: 1, start: 0, len: 1 << 20, backing: None };
        let Err(e) = helper.attach(&id, 65536, 1) else { panic!("attached") };
        assert!(e.to_string().contains("not authorized"), "{e}");
    }
}
