//! What a screen or widget asks the app for: an [`Action`], pushed while
//! drawing and applied by the app after the frame. Below the app and its
//! screens, so screens name it without naming the app that composes them.

use std::path::PathBuf;

use livemirror_core::job::Command;

use crate::gui::flash::FlashRequest;
use crate::gui::job::StartRequest;

/// Which side of the mirror a picker fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Source,
    Target,
}

/// What a screen asks for; applied after the frame.
pub enum Action {
    Choose(Role, PathBuf),
    /// "Image file…" / "New image file…": the system's dialog where there
    /// is one, else the window's own browser.
    PickFile {
        role: Role,
        new_file: bool,
    },
    /// The window's own browser, asked for after a system dialog gave nothing.
    Browse {
        role: Role,
        new_file: bool,
    },
    Start(StartRequest),
    /// Start with a compressed source: the image written, not mirrored.
    Flash(FlashRequest),
    /// Cancel the flash under way.
    CancelFlash,
    Job(Command),
    /// Complete (the demo stops its writer first, so the result can be compared).
    Complete,
    Verify,
    /// Copy what the verification found different, and compare it again.
    Repair,
    /// "Verify only": compare a pair without copying (Setup, or again).
    VerifyOnly {
        source: PathBuf,
        target: PathBuf,
    },
    /// "Skip verification": remembered, so it is not started next time.
    SkipVerify,
    /// Stop the session's share (after a confirmation if it has clients).
    StopSharing,
    /// Stop a share kept from an earlier session (by its place in the list).
    StopKept(usize),
    /// "Start another": asks first when the share has clients.
    StartAnother,
    /// A fresh Setup screen; a share still serving is kept serving.
    NewSetup,
    /// "Reset to defaults": the remembered settings forgotten (not the window size).
    ResetSettings,
    /// An unfinished job (by its place in the list) started again.
    ResumeUnfinished(usize),
    /// An unfinished job's state forgotten.
    DiscardUnfinished(usize),
}
