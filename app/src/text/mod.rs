//! How livemirror words what a job knows: its tracking, Ready, and how it
//! ended. One place, so the terminal, the JSON consumers' humans and the
//! window never drift apart, and "identical" is said only where a
//! [`Proof`] backs it. Numbers as people read them are in [`units`]
//! (re-exported here); failed I/O and failed jobs in [`failure`]; events
//! as JSON lines for programs in [`json`].

use livemirror_core::job::{JobEvent, JobState, Outcome, Proof, Tracking};

pub mod failure;
pub mod flash;
pub mod json;
mod units;

pub use units::{Eta, average_rate, duration, eta, human, rate, speed_limit, took};

/// How the source's writes are seen, in words.
pub fn tracking(t: Tracking) -> &'static str {
    match t {
        Tracking::Nbd => "every write goes through livemirror's share",
        Tracking::Kernel => {
            "kernel tracking: every write is seen; Complete freezes its filesystems for a moment"
        }
        Tracking::Compare => {
            "compare passes: writes by other programs are found only by re-reading"
        }
        Tracking::Lease => {
            "read lease: no other program has the image open for writing, and one that opens it is noticed (the copy is then verified)"
        }
        Tracking::None => {
            "not tracked: writes made to the source by other programs are not seen — stop them, or share the source"
        }
    }
}

/// What Setup says of a disk chosen as the source (not shared): the kernel
/// will see its writes, if it may and can.
pub fn kernel_choice(mounted: bool) -> &'static str {
    if mounted {
        "Kernel tracking: every write is seen; Complete freezes its filesystems for a moment. \
         If tracking is not authorized or this disk cannot be tracked, compare passes look \
         for its writes instead, and say that they cannot prove the copy."
    } else {
        "Kernel tracking: every write is seen. Nothing is mounted from this disk, so nothing \
         can be frozen at Complete: stop its writers first for a consistent copy."
    }
}

/// What Setup says of an image file chosen as the source (not shared).
pub fn lease_choice() -> &'static str {
    "Read lease: while no other program has this image open for writing, one that opens it \
     is noticed, and the copy is then verified at the end. If one has it open already, its \
     writes are not seen, and the end compares the copy."
}

/// How long Complete is expected to hold a kernel-tracked source's
/// writers: its filesystems stay frozen while what is dirty then is
/// copied, `dirty` bytes now at `rate` bytes per second.
pub fn expected_hold(dirty: u64, rate: u64) -> String {
    const FREEZE: &str = "plus what its filesystems write out when frozen";
    match (dirty, rate) {
        (0, _) => format!(
            "Complete freezes its filesystems only for the last copy: nothing is dirty now, so a moment, {FREEZE}"
        ),
        (d, 0) => format!(
            "Complete freezes its filesystems while it copies what is dirty then: {} now, {FREEZE}",
            human(d)
        ),
        (d, r) => {
            let ms = d.saturating_mul(1000) / r;
            format!(
                "Complete freezes its filesystems while it copies what is dirty then: {} now, about {ms} ms at {}, {FREEZE}",
                human(d),
                units::rate(r)
            )
        }
    }
}

/// How long Complete held the source's writers, as the clause that ends a
/// line saying how the job ended (", writers held 12 ms"); nothing when
/// it held none.
pub fn writers_held(held_ms: Option<u64>) -> String {
    held_ms.map(|ms| format!(", writers held {ms} ms")).unwrap_or_default()
}

/// A job's event as one line of the terminal and of the window's log, and
/// whether it is a problem (logged as a warning); `None` for a progress
/// tick, which a bar or a graph shows instead. `tracking`: the source's,
/// which says what Ready means.
pub fn event(ev: &JobEvent, tracking: Tracking) -> Option<(String, bool)> {
    Some(match ev {
        JobEvent::Progress(_) => return None,
        JobEvent::StateChanged { state: s } => (format!("state: {}", state(*s)), false),
        JobEvent::Ready => (format!("ready: {}", ready(tracking)), false),
        JobEvent::Error { failure: f, action } => {
            (format!("error: {} (action: {})", failure::io(f), action.name()), true)
        }
        JobEvent::CompleteFailed { reason } => (complete_failed(reason), true),
        JobEvent::Rescanning { reason } => (rescanning(reason), false),
        JobEvent::TrackingChanged { tracking, reason } => {
            (tracking_changed(*tracking, reason), false)
        }
        JobEvent::NotSaved { reason } => (not_saved(reason), true),
        JobEvent::Completed { proof, held_ms, .. } => {
            let (line, good) = outcome(&Outcome::Completed { proof: *proof });
            (format!("{line}{}", writers_held(*held_ms)), !good)
        }
        JobEvent::Cancelled { consistent } => {
            let (line, good) = outcome(&Outcome::Cancelled { consistent: *consistent });
            (line, !good)
        }
        JobEvent::Failed { error } => (outcome(&Outcome::Failed { error: error.clone() }).0, true),
    })
}

/// The hold a Complete reported, for the Done screen's "Writers held".
pub fn held(ms: u64) -> String {
    format!("{ms} ms — the source's filesystems were frozen for the last copy")
}

/// What the copy wrote, by kind: "X data, Y zeroed, Z already zero", and
/// what a reflink shared with the source instead, when it did.
pub fn written(status: &livemirror_core::job::JobStatus) -> String {
    let mut words = format!(
        "{} data, {} zeroed, {} already zero",
        human(status.data_bytes),
        human(status.zero_bytes),
        human(status.skipped_bytes)
    );
    if status.cloned_bytes > 0 {
        words += &format!(", {} shared with the source (reflink)", human(status.cloned_bytes));
    }
    words
}

/// A job state in plain words (the CLI's JSON keeps QEMU's names).
pub fn state(s: JobState) -> &'static str {
    match s {
        JobState::Created => "starting",
        JobState::Running => "copying",
        JobState::Paused => "paused",
        JobState::Ready => "in sync",
        JobState::Standby => "paused while in sync",
        JobState::Completing => "completing: copying the last writes",
        JobState::Completed => "completed",
        JobState::Cancelled => "cancelled",
        JobState::Failed => "failed",
    }
}

/// What Ready means under this tracking.
pub fn ready(t: Tracking) -> &'static str {
    match t {
        Tracking::Nbd | Tracking::Kernel => "in sync and flushed — still mirroring new writes",
        Tracking::Compare => {
            "in sync as of the last pass; writes made around livemirror during it may be missing"
        }
        Tracking::Lease => {
            "in sync and flushed — no other program has opened the source for writing"
        }
        Tracking::None => "in sync as far as livemirror saw; writes by other programs are not seen",
    }
}

/// A wording as a sentence: capital first letter, no full stop (a label).
pub fn sentence(words: &str) -> String {
    let mut chars = words.chars();
    let first = chars.next().map(|c| c.to_uppercase().collect::<String>()).unwrap_or_default();
    format!("{first}{}", chars.as_str())
}

/// A Complete that could not hold the source's writers for its last drain.
pub fn complete_failed(reason: &str) -> String {
    format!("complete failed, still ready and mirroring: {reason}")
}

/// Kernel tracking lost sight of some writes; the job compares once.
pub fn rescanning(reason: &str) -> String {
    format!("comparing the whole disk once, some writes may be unseen: {reason}")
}

/// The source's tracking fell back while the job ran.
pub fn tracking_changed(now: Tracking, reason: &str) -> String {
    format!("{reason}: tracking is now {now} — {}", tracking(now))
}

/// A save of the job's state failed (see `livemirror_core::persist`).
pub fn not_saved(reason: &str) -> String {
    format!(
        "warning: the job's state could not be saved ({reason}): a crash now would resume from an older save"
    )
}

/// What a completed job can say about its target.
pub fn completed(proof: Proof) -> &'static str {
    match proof {
        Proof::Tracked => "the target is identical to the source (every write was tracked)",
        Proof::TrackedUnheld => {
            "every write completed before Complete is in the target (kernel tracking); nothing was mounted from the source to freeze, so the copy is consistent only if its writers had stopped — not proven identical"
        }
        Proof::Verified => {
            "the target is identical to the source (verified: a final comparison found no difference)"
        }
        Proof::LastPass => {
            "in sync as of the last compare pass; writes made around livemirror during it may be missing — not proven identical"
        }
        Proof::Unverified => {
            "in sync as far as livemirror saw — not verified; writes by other programs are not seen"
        }
    }
}

/// The last word on a job, and whether it is good news for the target.
pub fn outcome(outcome: &Outcome) -> (String, bool) {
    match outcome {
        Outcome::Completed { proof } => (format!("completed: {}", completed(*proof)), proof.identical()),
        Outcome::Cancelled { consistent: true } => (
            "cancelled after it was in sync: the target is a consistent copy (the source was not switched over)".into(),
            true,
        ),
        Outcome::Cancelled { consistent: false } => {
            ("cancelled before it was in sync: the target is incomplete — do not use it".into(), false)
        }
        Outcome::Failed { error } => (
            format!("failed: {}; the target is incomplete — do not use it", failure::job(error)),
            false,
        ),
    }
}

/// A consistent outcome that a verification after the job proved.
pub fn verified_identical(outcome: &Outcome) -> String {
    let how = match outcome {
        Outcome::Cancelled { .. } => "cancelled after it was in sync: ",
        _ => "completed: ",
    };
    format!(
        "{how}the target is identical to the source (verified: compared byte for byte after the job ended)"
    )
}

/// A verification after the job found the sides different; `at` says where.
pub fn verified_different(outcome: &Outcome, at: Option<String>) -> String {
    let how = match outcome {
        Outcome::Completed { .. } => "completed, but ",
        _ => "",
    };
    let from = at.map(|at| format!(" {at}")).unwrap_or_default();
    format!(
        "{how}the target DIFFERS from the source{from} (verified): the source was written after the copy was made, or where livemirror could not see it"
    )
}

/// A verification under way: how far it got.
pub fn comparing(done: u64, of: u64) -> String {
    format!("comparing both sides… {} of {}", human(done), human(of))
}

/// A verification that found both sides equal.
pub const IDENTICAL: &str = "identical, byte for byte";

/// A verification that found the first difference at `at`.
pub fn differs_from(at: u64) -> String {
    format!("DIFFERENT from byte {at}")
}

/// A verification that could not give an answer.
pub fn could_not_verify(why: &dyn std::fmt::Display) -> String {
    format!("could not verify: {why}")
}

/// A comparison of a target of another size with its source (the
/// partitions and the bytes around them).
pub fn compared(c: &livemirror_core::partition::Comparison) -> String {
    match &c.difference {
        None => format!("identical — compared {}", c.compared),
        Some(d) => format!("DIFFERENT ({d}) — compared {}", c.compared),
    }
}

/// Why the Done screen does not verify on its own, if it does not: a
/// share's clients or the source's own users may be writing while it
/// would read, and their new writes would look like faults.
pub fn no_auto_verify(shared: bool, tracking: Tracking) -> Option<&'static str> {
    if shared {
        return Some("not done: the share's clients may be writing while it would read");
    }
    match tracking {
        Tracking::Kernel | Tracking::Compare => {
            Some("not done: the source stays in use, so a comparison now would find its new writes")
        }
        Tracking::Nbd | Tracking::Lease | Tracking::None => None,
    }
}

/// How many clients a share has, in words.
pub fn clients(n: usize) -> String {
    match n {
        0 => "no clients connected".into(),
        1 => "1 client connected".into(),
        n => format!("{n} clients connected"),
    }
}

/// What quitting leaves of the target, while the job runs; `ready`: it
/// has been in sync.
pub fn quitting_leaves(ready: bool) -> &'static str {
    if ready {
        "The target is in sync now. \"Cancel the job and quit\" finishes the copies under way first, so the target is a consistent copy of the source as of now (the source is not switched over). \"Quit now\" leaves those copies unfinished: the target is then NOT a consistent copy."
    } else {
        "The target is not in sync yet: whether you cancel or quit now, it is left INCOMPLETE and is not a usable copy."
    }
}

/// What stopping a share does to the clients connected to it.
pub fn share_clients_lose_disk(clients: usize) -> String {
    let who = match clients {
        1 => "1 client is".to_string(),
        n => format!("{n} clients are"),
    };
    format!(
        "{who} connected to the share. Stopping it takes their disk away: their next read or write fails (for a VM, its disk vanishes)."
    )
}

/// An OS error's message with its number said once: Rust's io errors end
/// in "(os error N)", which is dropped for the plain "(errno N)".
pub fn os_error(message: &str, errno: i32) -> String {
    if errno == 0 {
        return message.to_string();
    }
    let plain = message.strip_suffix(&format!(" (os error {errno})")).unwrap_or(message);
    format!("{plain} (errno {errno})")
}

/// A window-system error without the source paths winit writes into it
/// ("os error at /home/…/.cargo/registry/…/winit…/x11/mod.rs:123: …"):
/// the user gets the reason, not where in a dependency it was found.
pub fn window_error(e: &dyn std::fmt::Display) -> String {
    const AT: &str = "os error at ";
    let mut s = e.to_string();
    while let Some(i) = s.find(AT) {
        let Some(j) = s[i + AT.len()..].find(": ") else { break };
        s.replace_range(i..i + AT.len() + j + 2, "");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_is_said_only_when_proven() {
        for proof in [Proof::Tracked, Proof::Verified, Proof::LastPass, Proof::Unverified] {
            let (text, good) = outcome(&Outcome::Completed { proof });
            assert_eq!(text.contains("identical to the source"), proof.identical(), "{text}");
            assert_eq!(good, proof.identical());
        }
        assert!(!ready(Tracking::None).contains("still mirroring"));
        assert!(!ready(Tracking::Compare).contains("still mirroring"));
    }

    #[test]
    fn events_are_worded_once_for_the_terminal_and_the_window() {
        use livemirror_core::job::{ErrorAction, Progress};
        use livemirror_core::{IoFailure, IoOperation, Side};

        let ready = JobEvent::StateChanged { state: JobState::Ready };
        assert_eq!(event(&ready, Tracking::Nbd), Some(("state: in sync".into(), false)));
        assert_eq!(event(&JobEvent::Progress(Progress::default()), Tracking::Nbd), None);
        let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
        let f = IoFailure::new(Side::Target, IoOperation::Write, 0, 4096, &full);
        let error = JobEvent::Error { failure: f.clone(), action: ErrorAction::Stop };
        let said = format!("error: {} (action: stop)", failure::io(&f));
        assert_eq!(event(&error, Tracking::Nbd), Some((said, true)));
        let completed = JobEvent::Completed {
            tracking: Tracking::Kernel,
            proof: Proof::Tracked,
            identical: true,
            held_ms: Some(12),
            copied: 0,
            zeroed: 0,
            skipped: 0,
            duration_ms: 0,
        };
        let (line, problem) = event(&completed, Tracking::Kernel).unwrap();
        assert!(line.starts_with("completed: the target is identical"), "{line}");
        assert!(line.ends_with(", writers held 12 ms") && !problem, "{line}");
    }

    #[test]
    fn a_window_error_names_no_build_path() {
        let e = "failed to create window: os error at /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/winit-0.30.12/src/platform_impl/linux/x11/mod.rs:805: XOpenDisplay failed";
        assert_eq!(window_error(&e), "failed to create window: XOpenDisplay failed");
        assert_eq!(window_error(&"no display"), "no display");
    }

    #[test]
    fn an_os_error_says_its_number_once() {
        let io = std::io::Error::from_raw_os_error(libc::EIO).to_string();
        assert_eq!(os_error(&io, libc::EIO), "Input/output error (errno 5)");
        assert_eq!(os_error("short read", 0), "short read");
        assert_eq!(os_error("NBD server said EIO", libc::EIO), "NBD server said EIO (errno 5)");
    }
}
