//! Shared helpers for livemirror's end-to-end tests: real files, real
//! clients (qemu-io, qemu-img, nbdinfo) and real judges (`qemu-img compare`).
//!
//! * [`tools`]: run the external tools; a missing tool fails the test with
//!   the package to install, never skips it.
//! * [`image`]: raw image files with known patterns.
//! * [`mirror`]: a mirror job over image files, driven synchronously.
//! * [`server`]: an NBD export on a unix socket, served from a runtime.
//! * [`raw`]: a minimal NBD client for what the tools cannot do (malformed
//!   traffic, one connection kept open across a pivot).

pub mod image;
pub mod mirror;
pub mod raw;
pub mod server;
pub mod tools;
