//! How a compressed image written onto a target (a flash) is worded, in
//! the window and on the terminal: what will happen, how far it is, and
//! what the target is afterwards. "Identical" only after the read-back's
//! hash matched.

use std::path::Path;
use std::time::Duration;

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

/// A verified flash: the target holds the decompressed image, as the hash
/// of its read-back proves. `took`: how long it took, for a last line
/// that says it (the window shows no timing); `table`: what was fixed in
/// the target's partition table.
pub fn completed(
    f: &Flashed,
    format: Compression,
    took: Option<Duration>,
    table: Option<&str>,
) -> String {
    let took = took.map(|t| format!(" {}", super::took(f.len, t))).unwrap_or_default();
    let fixed = table.map(|t| format!("; then {t}")).unwrap_or_default();
    format!(
        "completed: the target is identical to the decompressed image (verified: its read-back \
         hash matches the stream's) ({} from {} of {format}){took}{fixed}",
        human(f.len),
        human(f.compressed_len),
    )
}

/// A verified image out (`clone SRC DST.img.zst`, `--compress`): `target`
/// reads back, through `check`, as what was read from the source.
pub fn packed(f: &Flashed, target: &Path, format: &str, check: &str, took: Duration) -> String {
    format!(
        "completed: {} reads back as exactly the {} read from the source (verified: {check}, \
         its hash matches) ({} of {format}) {}",
        target.display(),
        human(f.len),
        human(f.compressed_len),
        super::took(f.len, took),
    )
}

/// A failed or cancelled flash: its error, and what the target is now.
pub fn failed(error: &dyn std::fmt::Display, what_left: Left) -> String {
    super::sentence(&format!("{error}; {}", left(what_left)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn a_completed_flash_is_one_sentence_for_the_terminal_and_the_window() {
        let f = Flashed { len: 64 * MIB, compressed_len: MIB, hash: 0 };
        let window = completed(&f, Compression::Zstd, None, Some("the table was fixed"));
        assert_eq!(
            window,
            "completed: the target is identical to the decompressed image (verified: its \
             read-back hash matches the stream's) (64.0 MiB from 1.0 MiB of zstd); then the \
             table was fixed"
        );
        let terminal = completed(&f, Compression::Zstd, Some(Duration::from_secs(2)), None);
        assert!(terminal.ends_with("of zstd) in 2.0s, 32.0 MiB/s"), "{terminal}");
        let packed =
            packed(&f, Path::new("out.zst"), "zstd", "decompressed", Duration::from_secs(2));
        assert!(packed.starts_with("completed: out.zst reads back as exactly the 64.0 MiB"));
        assert!(packed.ends_with("(1.0 MiB of zstd) in 2.0s, 32.0 MiB/s"), "{packed}");
    }
}
