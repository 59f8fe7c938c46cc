//! livemirror's application: the command line, the window, and what both
//! share. One-way stairs, each room using only the rooms below it:
//!
//! * [`cli`] and [`gui`]: the two faces (`main.rs` picks one);
//! * [`logs`]: where `tracing` events go (stderr, the window's log file in
//!   the state directory [`session::resume`] keeps, the log panel [`gui`]
//!   shows), installed by `main.rs`;
//! * [`session`]: what a job needs beyond the engine, the same for both
//!   faces: opening or creating targets, the cache policy, the NBD share,
//!   kernel tracking, resume state, size fix-ups, the demo's world;
//! * [`platform`]: the operating system: privileged opening, the disk list,
//!   the display;
//! * [`text`]: every wording of events, outcomes, sizes and rates, for
//!   people and (in [`text::json`]) for programs;
//! * `livemirror_core`: the engine, devices, NBD.
//!
//! `tests/layering.rs` checks the stairs.

pub mod cli;
pub mod gui;
pub mod logs;
pub mod platform;
pub mod session;
pub mod text;
