//! `livemirror verify SRC DST [--repair] [--json]`: where does a copy
//! differ from its source? Exits like `cmp`: 0 identical, 1 different,
//! 2 trouble (a device that cannot be opened or read).
//!
//! The comparison is [`livemirror_core::verify`]; this file opens the
//! devices (for direct I/O, unless `--cached`), words the ranges (a line per range as it is found, then a
//! summary map) or prints them as JSON events, and for `--repair` copies the
//! differing ranges and verifies them again.

use std::io::Write;
use std::ops::Range;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use livemirror_core::IoFailure;
use livemirror_core::device::{BlockDevice, OpenOptions};
use livemirror_core::verify::{self, Difference, Reading, Summary, VerifyError};
use serde_json::json;

use crate::platform::privileged;
use crate::text::human;
use crate::text::json::named_line;

/// Exit codes, as `cmp` has them.
const EXIT_DIFFERENT: u8 = 1;
const EXIT_TROUBLE: u8 = 2;
/// Ranges the summary line names before "…".
const SUMMARY_RANGES: usize = 8;

#[derive(Args, Debug)]
#[command(after_help = "\
Exit status: 0 identical, 1 different, 2 trouble (as cmp).

What is read: by default both sides as their media hold them (direct I/O,
past the page cache; where a device cannot do direct I/O, each range is
dropped from the cache before it is read), so a copy just written is checked
on the disk and not in the memory its writes went through. --cached reads
through the page cache instead: as fast as memory when both sides are
cached, but it proves only what the cache holds.

Examples:
  livemirror verify disk.img copy.img
  livemirror verify /dev/sdb /dev/sdc --repair
  livemirror verify disk.img copy.img --json")]
pub struct VerifyArgs {
    /// The original (only read).
    pub source: PathBuf,
    /// The copy; a larger one is compared over the source's length.
    pub target: PathBuf,
    /// Copy the differing ranges from SRC onto DST, flush, and verify them
    /// again (exit 0 when they now match).
    #[arg(long)]
    pub repair: bool,
    /// Read both sides through the page cache rather than from the media
    /// (fast when they are cached; a cached page proves nothing about the
    /// disk under it).
    #[arg(long)]
    pub cached: bool,
    /// Print one JSON event per line on stdout: MISMATCH per range, VERIFIED
    /// at the end of each pass, REPAIRED after a repair.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: VerifyArgs) -> ExitCode {
    match verify_and_repair(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(EXIT_DIFFERENT),
        Err(message) => {
            eprintln!("livemirror: error: {message}");
            ExitCode::from(EXIT_TROUBLE)
        }
    }
}

/// True when the target ends up identical.
fn verify_and_repair(args: &VerifyArgs) -> Result<bool, Trouble> {
    let reading = if args.cached { Reading::Cached } else { Reading::Medium };
    let opts = OpenOptions::new().direct(reading == Reading::Medium);
    let source = privileged::open(&args.source, opts).map_err(Trouble::Source)?;
    let target =
        privileged::open(&args.target, opts.write(args.repair)).map_err(Trouble::Target)?;
    let out = Output { json: args.json, reading };
    let whole = 0..source.len();
    let (summary, diffs) = pass(&*source, &*target, std::slice::from_ref(&whole), &out)?;
    if summary.identical() || !args.repair {
        return Ok(summary.identical());
    }
    let copied = verify::repair(&*source, &*target, &diffs).map_err(Trouble::Repair)?;
    out.repaired(copied, diffs.len());
    let ranges: Vec<Range<u64>> = diffs.iter().map(|d| d.offset..d.end()).collect();
    let (again, _) = pass(&*source, &*target, &ranges, &out)?;
    Ok(again.identical())
}

/// One verify pass over `ranges`, reported as it goes.
fn pass(
    source: &dyn BlockDevice,
    target: &dyn BlockDevice,
    ranges: &[Range<u64>],
    out: &Output,
) -> Result<(Summary, Vec<Difference>), Trouble> {
    let mut diffs = Vec::new();
    let summary = verify::verify(source, target, ranges, out.reading, |d| {
        out.mismatch(&d);
        diffs.push(d);
    })
    .map_err(|e| match e {
        VerifyError::Io(f) => Trouble::Read(f),
        e => Trouble::Pair(e),
    })?;
    out.verified(&summary, &diffs, source.len(), target.len());
    Ok((summary, diffs))
}

/// Why a verification could not say identical or different (exit 2).
#[derive(Debug, thiserror::Error)]
enum Trouble {
    #[error("source: {0}")]
    Source(privileged::OpenError),
    #[error("target: {0}")]
    Target(privileged::OpenError),
    #[error("could not verify: {}", crate::text::failure::io(.0))]
    Read(IoFailure),
    #[error(transparent)]
    Pair(VerifyError),
    #[error("repair: {}", crate::text::failure::io(.0))]
    Repair(IoFailure),
}

struct Output {
    json: bool,
    reading: Reading,
}

impl Output {
    fn line(&self, text: &str) {
        // A closed pipe (`| head`) is the reader's choice, not our error.
        let _ = writeln!(std::io::stdout().lock(), "{text}");
    }

    fn mismatch(&self, d: &Difference) {
        if self.json {
            self.line(&named_line("MISMATCH", json!({ "offset": d.offset, "len": d.len })));
        } else {
            self.line(&format!(
                "differs: bytes {}–{} ({}, at {})",
                d.offset,
                d.end(),
                human(d.len),
                human(d.offset)
            ));
        }
    }

    fn verified(&self, s: &Summary, diffs: &[Difference], source_len: u64, target_len: u64) {
        if self.json {
            self.line(&named_line(
                "VERIFIED",
                json!({
                    "identical": s.identical(),
                    "differing": s.differing,
                    "ranges": s.ranges,
                    "compared": s.compared,
                    "skipped": s.skipped,
                }),
            ));
            return;
        }
        let mut text = summary_line(s, diffs);
        if target_len > source_len {
            text.push_str(&format!(
                " (the target's last {} are past the source and not compared)",
                human(target_len - source_len)
            ));
        }
        self.line(&text);
    }

    fn repaired(&self, copied: u64, ranges: usize) {
        if self.json {
            self.line(&named_line("REPAIRED", json!({ "copied": copied, "ranges": ranges })));
        } else {
            self.line(&format!(
                "repaired: copied {} in {ranges} ranges, flushed; verifying them again",
                human(copied)
            ));
        }
    }
}

/// `identical: …` or the map: `differs: 3 ranges, 1.2 MiB: 30.0 MiB–31.0 MiB, …`.
fn summary_line(s: &Summary, diffs: &[Difference]) -> String {
    let read = s.compared - s.skipped;
    if s.identical() {
        return format!(
            "identical: compared {} ({} read, {} of holes on both sides skipped)",
            human(s.compared),
            human(read),
            human(s.skipped)
        );
    }
    let mut map: Vec<String> = diffs
        .iter()
        .take(SUMMARY_RANGES)
        .map(|d| {
            let (start, end) = (human(d.offset), human(d.end()));
            // A small range would read "40.0 MiB–40.0 MiB": say its size.
            if start == end {
                format!("{start} ({})", human(d.len))
            } else {
                format!("{start}–{end}")
            }
        })
        .collect();
    if diffs.len() > SUMMARY_RANGES {
        map.push(format!("… {} more", diffs.len() - SUMMARY_RANGES));
    }
    let ranges = if s.ranges == 1 { "1 range".to_string() } else { format!("{} ranges", s.ranges) };
    format!("differs: {ranges}, {}: {}", human(s.differing), map.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_is_a_map_of_ranges() {
        let diffs = [
            Difference { offset: 30 << 20, len: 1 << 20 },
            Difference { offset: 40 << 20, len: 4096 },
        ];
        let s = Summary { compared: 64 << 20, skipped: 0, differing: (1 << 20) + 4096, ranges: 2 };
        assert_eq!(
            summary_line(&s, &diffs),
            "differs: 2 ranges, 1.0 MiB: 30.0 MiB–31.0 MiB, 40.0 MiB (4.0 KiB)"
        );
        let many: Vec<Difference> =
            (0..10).map(|i| Difference { offset: i << 20, len: 4096 }).collect();
        let s = Summary { ranges: 10, differing: 40960, ..s };
        assert!(summary_line(&s, &many).ends_with(", … 2 more"), "{}", summary_line(&s, &many));
        let same = Summary { compared: 8 << 20, skipped: 6 << 20, differing: 0, ranges: 0 };
        assert_eq!(
            summary_line(&same, &[]),
            "identical: compared 8.0 MiB (2.0 MiB read, 6.0 MiB of holes on both sides skipped)"
        );
    }
}
