//! The operating system, below everything else in the app: opening a
//! device (asking udisks2 or the kernel helper when this user may not),
//! the list of whole disks, and whether there is a display.

pub mod disks;
pub mod display;
pub mod privileged;
