//! How a compressed image written onto a target (a flash) is worded, in
//! the window and on the terminal: what will happen, how far it is, and
//! what the target is afterwards. "Identical" only after the read-back's
//! hash matched.

use std::path::Path;

use livemirror_core::flash::{Compression, Flashed, Progress};

use super::human;

/// What a failed flash left at the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Left {
    /// No target file exists (the flash failed before making one).
    NoFile,
    /// The partial new image made by the flash was removed.
    Removed,
    /// The target holds part of the image, or what it held.
    NotACopy,
}

/// What a failure left, in words.
pub fn left(left: Left) -> &'static str {
    match left {
        Left::NoFile => "no target file was left",
        Left::Removed => "the partial new image was removed",
        Left::NotACopy => "what the target holds now is not a copy",
    }
}

/// What Setup says of a compressed source: why there is no mirror job.
pub fn note(format: Compression) -> String {
    format!(
        "A {format}-compressed image: it is decompressed as a stream onto the target (no live \
         mirroring: it cannot be read at random), then the target is read back and checked \
         against the image. The copy options below are not used."
    )
}

/// What Setup says of a new file as a compressed image's target.
pub fn new_file(target: &Path) -> String {
    format!(
        "A new raw image file will be created at {}, as large as the decompressed image.",
        target.display()
    )
}

/// Why a compressed source cannot be shared: nothing writes a stream.
pub fn not_shared(format: Compression) -> String {
    format!(
        "Sharing needs a disk or image to mirror; a {format}-compressed image is a stream, \
         written once and verified: turn sharing off."
    )
}

/// The phase a flash is in.
pub fn phase(p: &Progress) -> &'static str {
    if p.verified > 0 { "Checking the target" } else { "Writing" }
}

/// How far a flash is: compressed bytes read and uncompressed written (or
/// read back, once checking).
pub fn amounts(p: &Progress) -> String {
    let of = p.declared_len.map(|d| format!(" of {}", human(d))).unwrap_or_default();
    let read =
        format!("{} of {} compressed read", human(p.compressed_read), human(p.compressed_len));
    if p.verified > 0 {
        format!("{read}, {} of {} read back", human(p.verified), human(p.written))
    } else {
        format!("{read}, {} written{of}", human(p.written))
    }
}

/// A verified flash; `table` says what was fixed in its partition table.
pub fn completed(f: &Flashed, format: Compression, table: Option<&str>) -> String {
    let fixed = table.map(|t| format!("; then {t}")).unwrap_or_default();
    format!(
        "Completed: the target reads back as exactly the {} in the image (verified: read back, \
         hash matches) ({} of {format}){fixed}",
        human(f.len),
        human(f.compressed_len),
    )
}

/// A failed or cancelled flash: its error, and what the target is now.
pub fn failed(error: &dyn std::fmt::Display, what_left: Left) -> String {
    super::sentence(&format!("{error}; {}", left(what_left)))
}
