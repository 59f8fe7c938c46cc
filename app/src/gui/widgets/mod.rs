//! The parts the screens are made of, each drawing one thing from the state
//! it is given: the chunk [`heatmap`], the error [`prompt`], the job's
//! [`log`], the NBD [`share`] panel, the [`speed`] control, [`progress`] and
//! its ETA, the in-window file [`browse`]r, the [`verify`] map, and the
//! "Network disk (NBD)…" dialog ([`nbd_entry`]), and the [`unfinished`]
//! jobs list.

pub mod browse;
pub mod heatmap;
pub mod log;
pub mod nbd_entry;
pub mod progress;
pub mod prompt;
pub mod share;
pub mod speed;
pub mod unfinished;
pub mod verify;
