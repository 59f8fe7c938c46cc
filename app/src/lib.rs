//! livemirror's application: the command line, the window, and what both
//! share. One-way stairs, each room using only the rooms below it:
//!
//! * [`cli`] and [`gui`]: the two faces (`main.rs` picks one);
//! * [`session`]: what a job needs beyond the engine, the same for both
//!   faces: opening or creating targets, the cache policy, the NBD share,
//!   kernel tracking, resume state, size fix-ups, the demo's world;
//! * [`text`]: every wording of events, outcomes, sizes and rates, for
//!   people and (in [`text::json`]) for programs;
//! * [`platform`]: the operating system: privileged opening, the disk list,
//!   the display;
//! * `livemirror_core`: the engine, devices, NBD.
//!
//! `tests/tests/layering.rs` checks the stairs.

pub mod cli;
pub mod gui;
pub mod platform;
pub mod session;
pub mod text;
