//! The job's state machine, as QEMU's job has it: one **phase** (copying,
//! ready, completing, aborting) and one **hold** (none, pausing, paused,
//! asking about an error).
//!
//! Every command's effect in every state is decided here, by pure functions
//! with no I/O, so the whole command × state table is tested in one place
//! (see the tests below). The runner does the I/O the answer asks for; what
//! the public [`JobState`] is, whether new copies may start and whether
//! writers must be held are all *derived* from the machine, never kept in
//! booleans of their own that could drift apart.

use super::events::{Decision, Outcome};
use super::handle::Command;
use crate::error::{BadOption, Error, IoFailure};
use crate::options::CopyMode;
use crate::state::JobState;

/// How a job that is completing ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Complete: the live source serves the target afterwards.
    Pivot,
    /// Cancel after ready: the target is left a consistent copy, no pivot.
    Consistent,
}

/// Where the job is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// The bulk copy: not yet in sync.
    Copying,
    /// In sync and flushed once; new writes are still mirrored.
    Ready,
    /// Ending after ready. Until nothing is dirty, writers flow
    /// (`draining == false`); then they are held for the last drain.
    Completing { ending: Ending, draining: bool },
    /// Ending without a consistent target. With `abandon` (a forced
    /// cancel) the job does not wait for copies still in flight.
    Aborting { outcome: Outcome, abandon: bool, shown: JobState },
}

/// What keeps the job from making progress, if anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    None,
    /// Pause asked; in-flight copies are finishing.
    Pausing,
    Paused,
    /// A stop-policy error waits for a [`Decision`].
    Asking(IoFailure),
}

/// What the runner must do once a command has been accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Nothing beyond what the new state implies.
    Done,
    SetSpeed(u64),
    /// Answer the command once in-flight copies are done (pause).
    AnswerWhenPaused,
    /// Answer pause commands still waiting: a resume came first.
    AnswerPauseWaiters,
    /// Switch writers to the new mode with no write half-way through.
    SwitchCopyMode(CopyMode),
    /// The decision on `failure`; the runner moves its cursor.
    Decided {
        decision: Decision,
        failure: IoFailure,
    },
}

/// The phase and the hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    pub phase: Phase,
    pub hold: Hold,
}

impl Default for Machine {
    fn default() -> Self {
        Machine { phase: Phase::Copying, hold: Hold::None }
    }
}

impl Machine {
    /// The state the world sees.
    pub fn state(&self) -> JobState {
        let stopped = matches!(self.hold, Hold::Paused | Hold::Asking(_));
        match &self.phase {
            Phase::Aborting { shown, .. } => *shown,
            Phase::Copying if stopped => JobState::Paused,
            Phase::Copying => JobState::Running,
            Phase::Ready if stopped => JobState::Standby,
            Phase::Ready => JobState::Ready,
            Phase::Completing { .. } if stopped => JobState::Paused,
            Phase::Completing { .. } => JobState::Completing,
        }
    }

    pub fn aborting(&self) -> bool {
        matches!(self.phase, Phase::Aborting { .. })
    }

    /// True once the target has been in sync (Ready was emitted).
    pub fn was_ready(&self) -> bool {
        matches!(self.phase, Phase::Ready | Phase::Completing { .. })
    }

    /// New copies may start.
    pub fn may_issue(&self) -> bool {
        self.hold == Hold::None && !self.aborting()
    }

    /// Writers through the live source must wait: only for the last drain
    /// of a Complete or consistent Cancel, never while someone decides.
    pub fn holds_writers(&self) -> bool {
        matches!(self.phase, Phase::Completing { draining: true, .. }) && self.hold == Hold::None
    }

    /// The copy is in sync and nothing holds the job: what comes next.
    pub fn in_sync(&mut self) -> InSync {
        match self.phase {
            Phase::Copying => {
                self.phase = Phase::Ready;
                InSync::BecameReady
            }
            Phase::Ready => InSync::StayReady,
            Phase::Completing { ending, draining: false } => {
                self.phase = Phase::Completing { ending, draining: true };
                InSync::HoldWriters
            }
            Phase::Completing { ending, draining: true } => InSync::End(ending),
            Phase::Aborting { .. } => InSync::StayReady,
        }
    }

    /// The last drain could not hold the source's writers (kernel tracking:
    /// a freeze that failed or ran over its limit): the Complete or Cancel
    /// fails and the job is ready again, writers flowing, to be asked anew.
    pub fn hold_failed(&mut self) {
        if let Phase::Completing { .. } = self.phase {
            self.phase = Phase::Ready;
        }
    }

    /// In-flight copies are done: a pause takes effect.
    pub fn settled(&mut self) -> bool {
        if self.hold == Hold::Pausing {
            self.hold = Hold::Paused;
            return true;
        }
        false
    }

    /// A stop-policy error: ask, and let writers flow while a person
    /// decides (the drain starts over after the decision).
    pub fn ask(&mut self, failure: IoFailure) {
        if self.aborting() {
            return;
        }
        if let Phase::Completing { ending, .. } = self.phase {
            self.phase = Phase::Completing { ending, draining: false };
        }
        self.hold = Hold::Asking(failure);
    }

    pub fn asking(&self) -> Option<&IoFailure> {
        match &self.hold {
            Hold::Asking(f) => Some(f),
            _ => None,
        }
    }

    /// Ends the job without a consistent target (the first reason wins,
    /// but a forced cancel always stops waiting for copies).
    pub fn abort(&mut self, outcome: Outcome, abandon: bool) {
        match &mut self.phase {
            Phase::Aborting { abandon: a, .. } => *a |= abandon,
            _ => {
                let shown = self.state();
                self.phase = Phase::Aborting { outcome, abandon, shown };
            }
        }
        self.hold = Hold::None;
    }

    /// Applies a command: the transition table.
    pub fn command(&mut self, cmd: Command, mode: CopyMode) -> Result<Effect, Error> {
        let state = self.state();
        let wrong = || Err(Error::WrongState { verb: cmd.verb(), state });
        if self.aborting() {
            return match cmd {
                Command::Cancel { force } => {
                    self.abort(Outcome::Cancelled { consistent: false }, force);
                    Ok(Effect::Done)
                }
                _ => wrong(),
            };
        }
        match cmd {
            Command::SetSpeed(speed) => Ok(Effect::SetSpeed(speed)),
            Command::Pause => match (&self.phase, &self.hold) {
                (Phase::Copying | Phase::Ready, Hold::None | Hold::Pausing) => {
                    self.hold = Hold::Pausing;
                    Ok(Effect::AnswerWhenPaused)
                }
                _ => wrong(),
            },
            Command::Resume => match &self.hold {
                Hold::Pausing => {
                    self.hold = Hold::None;
                    Ok(Effect::AnswerPauseWaiters)
                }
                Hold::Paused => {
                    self.hold = Hold::None;
                    Ok(Effect::Done)
                }
                // As QEMU: resuming a job stopped on an error retries.
                Hold::Asking(_) => self.decide(Decision::Retry),
                Hold::None => wrong(),
            },
            Command::Complete => match (&self.phase, &self.hold) {
                (Phase::Ready, hold) => {
                    let answer_pause = *hold == Hold::Pausing;
                    if !matches!(hold, Hold::Asking(_)) {
                        self.hold = Hold::None;
                    }
                    self.phase = Phase::Completing { ending: Ending::Pivot, draining: false };
                    Ok(if answer_pause { Effect::AnswerPauseWaiters } else { Effect::Done })
                }
                _ => wrong(),
            },
            Command::Cancel { force: true } => {
                self.abort(Outcome::Cancelled { consistent: false }, true);
                Ok(Effect::Done)
            }
            Command::Cancel { force: false } => match &self.phase {
                Phase::Copying => {
                    self.abort(Outcome::Cancelled { consistent: false }, false);
                    Ok(Effect::Done)
                }
                // After ready: finish the outstanding copies, no pivot. A
                // pending error is retried, as QEMU resumes a job paused on
                // an error when it is cancelled: the cancel then finishes,
                // or the job stops on the error again (and a forced cancel
                // ends it).
                // The retry is a decision like Resume's: a copy issued before
                // it that fails now is not a new error, only retried.
                Phase::Ready | Phase::Completing { .. } => {
                    let held = std::mem::replace(&mut self.hold, Hold::None);
                    self.phase = Phase::Completing { ending: Ending::Consistent, draining: false };
                    Ok(match held {
                        Hold::Pausing => Effect::AnswerPauseWaiters,
                        Hold::Asking(failure) => {
                            Effect::Decided { decision: Decision::Retry, failure }
                        }
                        Hold::None | Hold::Paused => Effect::Done,
                    })
                }
                Phase::Aborting { .. } => unreachable!("handled above"),
            },
            Command::SetCopyMode(m) if m == mode => Ok(Effect::Done),
            Command::SetCopyMode(CopyMode::Background) => {
                Err(Error::InvalidOption(BadOption::NoWayBack))
            }
            Command::SetCopyMode(m) => Ok(Effect::SwitchCopyMode(m)),
            Command::Decide(d) => match self.hold {
                Hold::Asking(_) => self.decide(d),
                _ => wrong(),
            },
        }
    }

    fn decide(&mut self, decision: Decision) -> Result<Effect, Error> {
        let Hold::Asking(failure) = std::mem::replace(&mut self.hold, Hold::None) else {
            unreachable!("only called while asking");
        };
        if decision == Decision::Stop {
            let error = crate::error::JobFailure::Stopped(failure.clone());
            self.abort(Outcome::Failed { error }, false);
        }
        Ok(Effect::Decided { decision, failure })
    }
}

/// What [`Machine::in_sync`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InSync {
    /// First time in sync: emit Ready.
    BecameReady,
    StayReady,
    /// Nothing dirty during Complete: hold writers for the last drain.
    HoldWriters,
    /// The last drain is done: end the job this way.
    End(Ending),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{IoOperation, JobFailure, Side};

    fn failure() -> IoFailure {
        IoFailure {
            side: Side::Target,
            operation: IoOperation::Write,
            offset: 4096,
            len: 512,
            errno: 0,
            message: "injected".into(),
            lost: false,
        }
    }

    /// Every phase the table distinguishes.
    fn phases() -> Vec<Phase> {
        let mut v = vec![Phase::Copying, Phase::Ready];
        for ending in [Ending::Pivot, Ending::Consistent] {
            for draining in [false, true] {
                v.push(Phase::Completing { ending, draining });
            }
        }
        v.push(Phase::Aborting {
            outcome: Outcome::Cancelled { consistent: false },
            abandon: false,
            shown: JobState::Running,
        });
        v
    }

    fn holds() -> Vec<Hold> {
        vec![Hold::None, Hold::Pausing, Hold::Paused, Hold::Asking(failure())]
    }

    fn commands() -> Vec<Command> {
        vec![
            Command::SetSpeed(1),
            Command::Pause,
            Command::Resume,
            Command::Complete,
            Command::Cancel { force: false },
            Command::Cancel { force: true },
            Command::SetCopyMode(CopyMode::Background),
            Command::SetCopyMode(CopyMode::WriteBlocking),
            Command::Decide(Decision::Retry),
            Command::Decide(Decision::Ignore),
            Command::Decide(Decision::Stop),
        ]
    }

    /// The expected result of every command in every state, written out
    /// independently of `Machine::command`: the phase and hold afterwards,
    /// or the refusal.
    fn expected(m: &Machine, cmd: Command) -> Result<(Phase, Hold), ()> {
        let (phase, hold) = (m.phase.clone(), m.hold.clone());
        let asking = matches!(hold, Hold::Asking(_));
        let aborted = |force: bool, p: &Phase| match p {
            Phase::Aborting { outcome, abandon, shown } => Phase::Aborting {
                outcome: outcome.clone(),
                abandon: *abandon || force,
                shown: *shown,
            },
            _ => Phase::Aborting {
                outcome: Outcome::Cancelled { consistent: false },
                abandon: force,
                shown: m.state(),
            },
        };
        if let Phase::Aborting { .. } = phase {
            return match cmd {
                Command::Cancel { force } => Ok((aborted(force, &phase), Hold::None)),
                _ => Err(()),
            };
        }
        let completing_consistent =
            Phase::Completing { ending: Ending::Consistent, draining: false };
        match cmd {
            Command::SetSpeed(_) => Ok((phase, hold)),
            Command::Pause => match (&phase, &hold) {
                (Phase::Copying | Phase::Ready, Hold::None | Hold::Pausing) => {
                    Ok((phase, Hold::Pausing))
                }
                _ => Err(()),
            },
            Command::Resume => match hold {
                Hold::None => Err(()),
                _ => Ok((phase, Hold::None)),
            },
            Command::Complete => match phase {
                Phase::Ready => Ok((
                    Phase::Completing { ending: Ending::Pivot, draining: false },
                    if asking { hold } else { Hold::None },
                )),
                _ => Err(()),
            },
            Command::Cancel { force: true } => Ok((aborted(true, &phase), Hold::None)),
            Command::Cancel { force: false } => match phase {
                Phase::Copying => Ok((aborted(false, &phase), Hold::None)),
                _ => Ok((completing_consistent, Hold::None)),
            },
            Command::SetCopyMode(_) => Ok((phase, hold)),
            Command::Decide(d) if asking => match d {
                Decision::Stop => Ok((
                    Phase::Aborting {
                        outcome: Outcome::Failed { error: JobFailure::Stopped(failure()) },
                        abandon: false,
                        // Ending: no longer shown as paused on the error.
                        shown: Machine { phase: phase.clone(), hold: Hold::None }.state(),
                    },
                    Hold::None,
                )),
                _ => Ok((phase, Hold::None)),
            },
            Command::Decide(_) => Err(()),
        }
    }

    #[test]
    fn every_command_in_every_state_does_what_the_table_says() {
        let mut cases = 0;
        for phase in phases() {
            for hold in holds() {
                for cmd in commands() {
                    let mut m = Machine { phase: phase.clone(), hold: hold.clone() };
                    let before = m.clone();
                    let want = expected(&before, cmd);
                    let got = m.command(cmd, CopyMode::WriteBlocking);
                    match (&want, &got) {
                        (Ok((p, h)), Ok(_)) => {
                            assert_eq!((&m.phase, &m.hold), (p, h), "{before:?} {cmd:?}")
                        }
                        (Err(()), Err(_)) => assert_eq!(m, before, "a refusal changes nothing"),
                        // Going back to background mode is refused in any
                        // live state: a writer may be mid-way through.
                        (Ok(_), Err(Error::InvalidOption(_)))
                            if cmd == Command::SetCopyMode(CopyMode::Background) => {}
                        _ => panic!("{before:?} {cmd:?}: want {want:?}, got {got:?}"),
                    }
                    cases += 1;
                }
            }
        }
        assert_eq!(cases, 7 * 4 * 11);
    }

    #[test]
    fn refusals_name_the_verb_and_the_state() {
        let mut m = Machine::default();
        let e = m.command(Command::Complete, CopyMode::Background).unwrap_err();
        assert_eq!(e.to_string(), "cannot complete while the job is running");
    }

    #[test]
    fn writers_are_held_only_for_the_last_drain_and_never_while_asking() {
        let mut m = Machine { phase: Phase::Ready, hold: Hold::None };
        m.command(Command::Complete, CopyMode::Background).unwrap();
        assert!(!m.holds_writers(), "complete keeps writers flowing until nothing is dirty");
        assert_eq!(m.in_sync(), InSync::HoldWriters);
        assert!(m.holds_writers());
        m.ask(failure());
        assert!(!m.holds_writers(), "nobody's writes wait while a person decides");
        // Commands while asking never hold writers again.
        m.command(Command::SetSpeed(5), CopyMode::Background).unwrap();
        assert!(m.command(Command::Pause, CopyMode::Background).is_err());
        assert!(!m.holds_writers());
        m.command(Command::Decide(Decision::Retry), CopyMode::Background).unwrap();
        assert!(!m.holds_writers(), "after a decision the drain starts over");
        assert_eq!(m.in_sync(), InSync::HoldWriters);
        assert_eq!(m.in_sync(), InSync::End(Ending::Pivot));
    }

    #[test]
    fn resume_before_the_pause_took_effect_keeps_ready() {
        let mut m = Machine { phase: Phase::Ready, hold: Hold::None };
        m.command(Command::Pause, CopyMode::Background).unwrap();
        m.command(Command::Resume, CopyMode::Background).unwrap();
        assert!(!m.settled(), "nothing to take effect");
        assert_eq!(m.state(), JobState::Ready);
        assert!(m.command(Command::Complete, CopyMode::Background).is_ok());
    }

    #[test]
    fn cancel_after_ready_retries_a_pending_error() {
        let mut m = Machine { phase: Phase::Ready, hold: Hold::None };
        m.ask(failure());
        assert_eq!(m.state(), JobState::Standby);
        let effect = m.command(Command::Cancel { force: false }, CopyMode::Background).unwrap();
        assert!(
            matches!(effect, Effect::Decided { decision: Decision::Retry, .. }),
            "the cancel decides the pending error as a retry: {effect:?}"
        );
        assert_eq!(m.state(), JobState::Completing);
        assert!(m.may_issue());
        m.ask(failure());
        assert_eq!(m.state(), JobState::Paused, "a persistent error asks again");
        m.command(Command::Cancel { force: true }, CopyMode::Background).unwrap();
        assert!(matches!(m.phase, Phase::Aborting { abandon: true, .. }));
    }

    #[test]
    fn a_failed_hold_leaves_the_job_ready_to_be_asked_again() {
        let mut m = Machine { phase: Phase::Ready, hold: Hold::None };
        m.command(Command::Complete, CopyMode::Background).unwrap();
        assert_eq!(m.in_sync(), InSync::HoldWriters);
        m.hold_failed();
        assert_eq!(m.state(), JobState::Ready);
        assert!(!m.holds_writers(), "writers flow again");
        assert!(m.command(Command::Complete, CopyMode::Background).is_ok());
        // Never out of a phase other than completing.
        let mut aborting = Machine::default();
        aborting.abort(Outcome::Cancelled { consistent: false }, false);
        aborting.hold_failed();
        assert!(aborting.aborting());
    }
}
