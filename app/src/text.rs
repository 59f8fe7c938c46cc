//! How livemirror words what a job knows: its tracking, Ready, and how it
//! ended. One place, so the terminal, the JSON consumers' humans and the
//! window never drift apart, and "identical" is said only where a
//! [`Proof`] backs it.

use livemirror_core::job::{Outcome, Proof, Tracking};

use crate::units::human;

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
                "Complete freezes its filesystems while it copies what is dirty then: {} now, about {ms} ms at {}/s, {FREEZE}",
                human(d),
                human(r)
            )
        }
    }
}

/// The hold a Complete reported, for the Done screen's "Writers held".
pub fn held(ms: u64) -> String {
    format!("{ms} ms — the source's filesystems were frozen for the last copy")
}

/// What Ready means under this tracking.
pub fn ready(t: Tracking) -> &'static str {
    match t {
        Tracking::Nbd | Tracking::Kernel => "in sync and flushed — still mirroring new writes",
        Tracking::Compare => {
            "in sync as of the last pass; writes made around livemirror during it may be missing"
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
        Outcome::Failed { error } => {
            (format!("failed: {error}; the target is incomplete — do not use it"), false)
        }
    }
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
}
