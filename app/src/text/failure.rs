//! How a failed I/O and a failed job are worded for people: what it means
//! for them first ("the target is full", "the source went away"), then
//! where it happened and the OS's own words, so that a report still has
//! them. Told apart by the typed error (its `io::ErrorKind`, or an errno
//! by name), never by its text; a failure with no words of its own here
//! is said as the engine's error says it. The window's error prompt is
//! worded here too.

use std::io::{self, ErrorKind};

use livemirror_core::error::JobFailure;
use livemirror_core::job::Decision;
use livemirror_core::{IoFailure, IoOperation};

use super::{human, os_error, sentence};

/// What an I/O failure means for the user, where the error says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Meaning {
    /// The connection to an NBD server broke (or its socket is gone).
    ConnectionLost,
    /// A local device is no longer there (unplugged, removed).
    Gone,
    /// No space left (`ENOSPC`).
    Full,
    /// A read-only filesystem or device (`EROFS`).
    ReadOnly,
    /// The OS refused the access (`EACCES`, `EPERM`).
    Denied,
    /// An I/O error (`EIO`) that did not take the device away: a bad
    /// sector, a failing disk, a server's error.
    IoError,
}

fn meaning(f: &IoFailure) -> Option<Meaning> {
    if f.errno == 0 {
        return None;
    }
    if f.lost {
        return Some(if f.connection_lost() { Meaning::ConnectionLost } else { Meaning::Gone });
    }
    match io::Error::from_raw_os_error(f.errno).kind() {
        ErrorKind::StorageFull => Some(Meaning::Full),
        ErrorKind::ReadOnlyFilesystem => Some(Meaning::ReadOnly),
        ErrorKind::PermissionDenied => Some(Meaning::Denied),
        // A failing medium has no kind of its own. Windows' error numbers
        // are not errnos (its 5 is "access denied"): each system's own.
        _ if medium_error(f.errno) => Some(Meaning::IoError),
        _ => None,
    }
}

/// Whether `code` is the OS's word for a medium that failed a request:
/// `EIO` on Unix.
#[cfg(unix)]
fn medium_error(code: i32) -> bool {
    code == libc::EIO
}

/// Whether `code` is the OS's word for a medium that failed a request: on
/// Windows a CRC error, a sector not found, or a device I/O error.
#[cfg(windows)]
fn medium_error(code: i32) -> bool {
    use windows::Win32::Foundation::{ERROR_CRC, ERROR_IO_DEVICE, ERROR_SECTOR_NOT_FOUND};
    [ERROR_CRC, ERROR_IO_DEVICE, ERROR_SECTOR_NOT_FOUND].iter().any(|e| e.0 as i32 == code)
}

/// What the failed operation did to its side, as a past participle.
fn verb(f: &IoFailure) -> &'static str {
    match f.operation {
        IoOperation::Read | IoOperation::BlockStatus => "read",
        IoOperation::Write | IoOperation::WriteZeroes => "written",
        IoOperation::Flush => "flushed",
    }
}

/// The meaning of `f` as the start of a sentence, lower case.
fn headline(m: Meaning, f: &IoFailure) -> String {
    let side = f.side;
    match m {
        Meaning::ConnectionLost => format!("{side} connection lost"),
        Meaning::Gone => format!("the {side} went away (unplugged or removed)"),
        Meaning::Full => format!("the {side} is full"),
        Meaning::ReadOnly => format!("the {side} is read-only"),
        Meaning::Denied => format!("the {side} may not be {} (permission denied)", verb(f)),
        Meaning::IoError => format!("an I/O error on the {side}, such as a bad sector"),
    }
}

/// Where `f` happened: "write of 64.0 KiB at byte 3145728" ("flush" alone:
/// a flush has no range).
fn place(f: &IoFailure) -> String {
    match f.operation {
        IoOperation::Flush => f.operation.to_string(),
        op => format!("{op} of {} at byte {}", human(f.len), f.offset),
    }
}

/// An I/O failure in words: "the target is full — write of 64.0 KiB at
/// byte 3145728: No space left on device (errno 28)".
pub fn io(f: &IoFailure) -> String {
    match meaning(f) {
        Some(m) => format!("{} — {}: {}", headline(m, f), place(f), os_error(&f.message, f.errno)),
        None => f.to_string(),
    }
}

/// Why a job failed, in words (its I/O failure as [`io`] says it).
pub fn job(e: &JobFailure) -> String {
    match e {
        JobFailure::Io(f) => io(f),
        JobFailure::Stopped(f) => format!("stopped after an error: {}", io(f)),
        other => other.to_string(),
    }
}

/// What the terminal says when only the control socket can answer: a lost
/// device by what was lost ("target connection lost", "the target went
/// away …"), with the decisions it can take.
pub fn waiting_on_control(f: &IoFailure) -> String {
    match meaning(f) {
        Some(m @ (Meaning::ConnectionLost | Meaning::Gone)) => format!(
            "{}: waiting for a decision on the control socket (decide retry|stop)",
            headline(m, f)
        ),
        _ => "waiting for a decision on the control socket (decide retry|ignore|stop)".into(),
    }
}

/// The error prompt's heading: what happened, when the error says it
/// plainly ("The target is full"), else which side could not be what.
pub fn prompt_heading(f: &IoFailure) -> String {
    match meaning(f) {
        Some(Meaning::IoError) | None => format!("The {} could not be {}", f.side, verb(f)),
        Some(m) => sentence(&headline(m, f)),
    }
}

/// The byte range an error covers, as the prompt shows it.
pub fn byte_range(f: &IoFailure) -> String {
    format!("bytes {} – {} ({})", f.offset, f.offset + f.len, human(f.len))
}

/// The prompt's facts, as label and value: side, operation, range, the
/// OS's words.
pub fn prompt_facts(f: &IoFailure) -> [(&'static str, String); 4] {
    [
        ("Side", f.side.to_string()),
        ("Operation", f.operation.to_string()),
        ("Where", byte_range(f)),
        ("Error", os_error(&f.message, f.errno)),
    ]
}

/// Said under the prompt's facts.
pub const PROMPT_PAUSED: &str = "The job is paused until you decide.";

/// A decision's button and what it does, for the prompt; `lost`: the
/// device is gone, so Retry reconnects first.
pub fn decision(d: Decision, lost: bool) -> (&'static str, &'static str) {
    match d {
        Decision::Retry if lost => ("Retry", "Reconnect and try this range again"),
        Decision::Retry => ("Retry", "Try this range again now"),
        Decision::Ignore => {
            ("Ignore", "Go on with the rest; this range stays dirty and is retried later")
        }
        Decision::Stop => ("Stop", "End the job; the target is left incomplete"),
    }
}

#[cfg(test)]
mod tests {
    use livemirror_core::Side;

    use super::*;

    fn failure(side: Side, operation: IoOperation, e: io::Error) -> IoFailure {
        IoFailure::new(side, operation, 3 << 20, 64 << 10, &e)
    }

    fn os(errno: i32) -> io::Error {
        io::Error::from_raw_os_error(errno)
    }

    #[test]
    fn a_full_target_is_said_full_with_where_and_the_os_words() {
        let f = failure(Side::Target, IoOperation::Write, os(libc::ENOSPC));
        assert_eq!(
            io(&f),
            "the target is full — write of 64.0 KiB at byte 3145728: No space left on device (errno 28)"
        );
        assert_eq!(prompt_heading(&f), "The target is full");
    }

    #[test]
    fn each_kind_has_its_words() {
        let said = |side, op, errno| io(&failure(side, op, os(errno)));
        let rofs = said(Side::Target, IoOperation::WriteZeroes, libc::EROFS);
        assert!(rofs.starts_with("the target is read-only — zero-write of 64.0 KiB"), "{rofs}");
        let denied = said(Side::Source, IoOperation::Read, libc::EACCES);
        assert!(denied.starts_with("the source may not be read (permission denied)"), "{denied}");
        let eio = said(Side::Source, IoOperation::Read, libc::EIO);
        assert_eq!(
            eio,
            "an I/O error on the source, such as a bad sector — read of 64.0 KiB at byte 3145728: Input/output error (errno 5)"
        );
        let gone = said(Side::Target, IoOperation::Write, libc::ENODEV);
        assert!(gone.starts_with("the target went away (unplugged or removed) — "), "{gone}");
        let reset = said(Side::Target, IoOperation::Flush, libc::ECONNRESET);
        assert!(reset.starts_with("target connection lost — flush: "), "{reset}");
        let lost = failure(Side::Target, IoOperation::Write, os(libc::ECONNRESET));
        assert_eq!(prompt_heading(&lost), "Target connection lost");
    }

    /// Only the control socket can answer: a lost connection and an
    /// unplugged disk are told apart, and neither is offered Ignore.
    #[test]
    fn waiting_on_the_control_socket_says_what_was_lost() {
        let waiting =
            |errno| waiting_on_control(&failure(Side::Target, IoOperation::Write, os(errno)));
        assert_eq!(
            waiting(libc::ECONNRESET),
            "target connection lost: waiting for a decision on the control socket (decide retry|stop)"
        );
        assert_eq!(
            waiting(libc::ENODEV),
            "the target went away (unplugged or removed): waiting for a decision on the control socket (decide retry|stop)"
        );
        assert_eq!(
            waiting(libc::EIO),
            "waiting for a decision on the control socket (decide retry|ignore|stop)"
        );
    }

    #[test]
    fn an_eio_is_a_device_gone_only_where_the_error_says_so() {
        let mut f = failure(Side::Target, IoOperation::Write, os(libc::EIO));
        assert!(io(&f).starts_with("an I/O error on the target"));
        assert_eq!(prompt_heading(&f), "The target could not be written");
        // Core marks an EIO lost when a probe of the device fails too.
        f.lost = true;
        assert!(io(&f).starts_with("the target went away"), "{}", io(&f));
        assert_eq!(prompt_heading(&f), "The target went away (unplugged or removed)");
    }

    #[test]
    fn the_rest_is_said_as_the_engine_says_it() {
        let f = failure(Side::Source, IoOperation::Read, os(libc::EINVAL));
        assert_eq!(io(&f), f.to_string());
        let short = failure(Side::Source, IoOperation::Read, io::ErrorKind::UnexpectedEof.into());
        assert_eq!(io(&short), short.to_string());
        let differs = JobFailure::NotIdentical { passes: 3, offset: 4096 };
        assert_eq!(job(&differs), differs.to_string());
    }

    #[test]
    fn a_stopped_job_says_so_and_why() {
        let f = failure(Side::Target, IoOperation::Write, os(libc::ENOSPC));
        assert_eq!(
            job(&JobFailure::Stopped(f.clone())),
            format!("stopped after an error: {}", io(&f))
        );
        assert_eq!(job(&JobFailure::Io(f.clone())), io(&f));
    }
}
