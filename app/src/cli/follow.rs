//! Following a running job on the terminal: report its events, complete it
//! when ready (if asked), and answer stop-policy errors — on the terminal if
//! there is one, else leave them to the control socket, else stop.

use std::io::IsTerminal;
use std::time::Duration;

use livemirror_core::IoFailure;
use livemirror_core::job::{Command, Decision, ErrorAction, JobEvent, JobHandle, Outcome};
use tokio::sync::broadcast;

use super::progress::Reporter;

/// How to follow.
pub struct Follow {
    /// Send Complete as soon as the job is ready (`clone`).
    pub complete_when_ready: bool,
    /// Ctrl-C cancels the job (consistent after ready) and following goes on.
    pub cancel_on_ctrl_c: bool,
    /// A control socket is there to answer error prompts.
    pub controlled: bool,
}

/// Follows the job to its end and says how it ended.
pub async fn follow(
    job: &JobHandle,
    mut events: broadcast::Receiver<JobEvent>,
    reporter: &Reporter,
    how: Follow,
) -> Outcome {
    let mut redraw = tokio::time::interval(Duration::from_millis(200));
    let mut ctrl_c = Interrupts::listen();
    let mut interrupts = 0;
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(ev) => {
                    reporter.event(&ev);
                    match ev {
                        JobEvent::Ready if how.complete_when_ready => job.post(Command::Complete),
                        JobEvent::Error { action: ErrorAction::Stop, failure } => {
                            if let Some(decision) = ask(&failure, how.controlled).await {
                                job.post(Command::Decide(decision));
                            }
                        }
                        ev if ev.is_final() => break,
                        _ => {}
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = ctrl_c.next(), if how.cancel_on_ctrl_c => {
                interrupts += 1;
                interrupted(job, interrupts);
            }
            _ = redraw.tick() => reporter.progress(&job.status()),
        }
    }
    job.wait().await
}

/// Ctrl-C presses, each seen: the listener is registered once, up front,
/// so a second press that comes while the first is being answered is not
/// lost (a fresh `tokio::signal::ctrl_c()` registers only when first
/// polled, and misses a signal that came before).
struct Interrupts {
    #[cfg(unix)]
    signals: Option<tokio::signal::unix::Signal>,
    #[cfg(windows)]
    signals: Option<tokio::signal::windows::CtrlC>,
}

impl Interrupts {
    fn listen() -> Self {
        #[cfg(unix)]
        let signals =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
        #[cfg(windows)]
        let signals = tokio::signal::windows::ctrl_c().ok();
        Interrupts { signals }
    }

    /// The next press; never, when signals cannot be listened to.
    async fn next(&mut self) {
        match &mut self.signals {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    }
}

/// Ctrl-C: the first cancels (consistently once in sync: outstanding copies
/// finish), the second forces (at once, even past a hung target).
pub fn interrupted(job: &JobHandle, count: u32) {
    if count == 1 {
        let how = if job.status().ready {
            "finishing outstanding copies so the target stays a consistent copy"
        } else {
            "the target will be incomplete"
        };
        eprintln!("\ninterrupted: cancelling ({how}); press Ctrl-C again to force");
        job.post(Command::Cancel { force: false });
    } else {
        eprintln!("\ninterrupted again: forcing the cancel; the target is incomplete");
        job.post(Command::Cancel { force: true });
    }
}

/// Asks on the terminal. Without one, a control socket may answer (`None`:
/// leave it to `decide`); with neither, nobody can, so the job stops.
/// A lost device is asked about as such: Retry (reconnect) or Stop.
async fn ask(failure: &IoFailure, controlled: bool) -> Option<Decision> {
    if !std::io::stdin().is_terminal() {
        if controlled {
            eprintln!("{}", crate::text::failure::waiting_on_control(failure));
            return None;
        }
        eprintln!("no terminal or control socket to ask on: stopping");
        return Some(Decision::Stop);
    }
    let said = crate::text::failure::io(failure);
    if failure.lost {
        eprintln!("{said}\n[r]etry (reconnect), [s]top? ");
    } else {
        eprintln!("{said}\n[r]etry, [i]gnore (retry later), [s]top? ");
    }
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await;
    Some(match answer.ok().and_then(Result::ok).as_deref().map(str::trim) {
        Some("r" | "retry") => Decision::Retry,
        Some("i" | "ignore") => Decision::Ignore,
        _ => Decision::Stop,
    })
}
