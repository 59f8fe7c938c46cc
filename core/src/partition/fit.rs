//! Whether a target of another size can take the source, and what the job
//! then mirrors.
//!
//! * Larger target: always. The job mirrors the source onto the target's
//!   first `len(source)` bytes; the rest of the target is left as it is.
//! * Smaller target: when the source has a partition table, every partition
//!   ends before the target's usable end (GPT: before its backup area), and
//!   nothing past that point holds data (allocated and non-zero, up to the
//!   source's own backup GPT). The job then mirrors `[0, usable end)`.
//!
//! Everything here only reads, so a refusal leaves both sides untouched.

use std::fmt;

use super::{PartitionError, Table};
use crate::buffer::is_zero;
use crate::device::{BlockDevice, extents};
use crate::error::{Error, IoFailure, IoOperation, NoFit, Side};
use crate::units::human;

/// How the target's size compares with the source's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    Same,
    Larger,
    Smaller,
}

/// The decision for a pair that may be mirrored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fit {
    pub source_len: u64,
    pub target_len: u64,
    /// The job mirrors bytes `[0, copy_len)`.
    pub copy_len: u64,
    /// The source's table, when the sizes differ and it has one.
    pub table: Option<Table>,
}

impl Fit {
    /// The same size: nothing is read to decide it.
    pub fn same(len: u64) -> Fit {
        Fit { source_len: len, target_len: len, copy_len: len, table: None }
    }

    pub fn relation(&self) -> Relation {
        match self.target_len.cmp(&self.source_len) {
            std::cmp::Ordering::Equal => Relation::Same,
            std::cmp::Ordering::Greater => Relation::Larger,
            std::cmp::Ordering::Less => Relation::Smaller,
        }
    }
}

/// "larger by 256.0 GiB: the copy uses the first 256.0 GiB", "smaller:
/// fits — partitions end at 200.0 GiB".
impl fmt::Display for Fit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.relation() {
            Relation::Same => f.write_str("the same size"),
            Relation::Larger => write!(
                f,
                "larger by {}: the copy uses the first {} (the rest is left as it is)",
                human(self.target_len - self.source_len),
                human(self.source_len)
            ),
            Relation::Smaller => write!(
                f,
                "smaller: fits — partitions end at {}",
                human(self.table.as_ref().map_or(0, Table::end))
            ),
        }
    }
}

/// Decides whether `target` can take `source`. Refusals of a smaller
/// target come back as [`Error::DoesNotFit`]; nothing is written.
pub fn decide(source: &dyn BlockDevice, target: &dyn BlockDevice) -> Result<Fit, Error> {
    decide_with(source, target, true)
}

/// [`decide`] from the tables alone, without reading the source past the
/// target's end for data (gigabytes, on a disk): a quick answer for a
/// screen. The job decides in full when it starts.
pub fn decide_by_table(source: &dyn BlockDevice, target: &dyn BlockDevice) -> Result<Fit, Error> {
    decide_with(source, target, false)
}

fn decide_with(
    source: &dyn BlockDevice,
    target: &dyn BlockDevice,
    scan: bool,
) -> Result<Fit, Error> {
    let (source_len, target_len) = (source.len(), target.len());
    if source_len == target_len {
        return Ok(Fit::same(source_len));
    }
    let refuse = |reason| Error::DoesNotFit { source_len, target_len, reason };
    let table = match super::read(source, Side::Source) {
        Ok(t) => t,
        Err(PartitionError::Io(f)) => return Err(Error::Io(f)),
        // A larger target takes a damaged table as it is, like `dd` would;
        // the fix-up finds the same table on the target and says so.
        Err(_) if target_len > source_len => None,
        Err(PartitionError::Damaged { reason, .. }) => {
            return Err(refuse(NoFit::Damaged { reason }));
        }
        Err(e @ (PartitionError::CannotGrow { .. } | PartitionError::NoTable)) => {
            unreachable!("reading a table grows none: {e}")
        }
    };
    if target_len > source_len {
        return Ok(Fit { source_len, target_len, copy_len: source_len, table });
    }
    let Some(table) = table else { return Err(refuse(NoFit::NoTable)) };
    let room = table.usable_end(target_len);
    if let Some(p) = table.partitions.iter().filter(|p| p.end > room).max_by_key(|p| p.end) {
        return Err(refuse(NoFit::PartitionPastEnd { number: p.number, end: p.end, room }));
    }
    // The source's own backup GPT is no data of the disk's.
    let scan_end = match table.scheme {
        super::Scheme::Gpt { .. } => table.usable_end(source_len),
        super::Scheme::Mbr => source_len,
    };
    if scan && let Some(at) = first_data(source, room, scan_end).map_err(Error::Io)? {
        return Err(refuse(NoFit::DataPastEnd { at }));
    }
    Ok(Fit { source_len, target_len, copy_len: room, table: Some(table) })
}

/// The first non-zero byte in `[from, to)`, reading only what block status
/// reports as data.
fn first_data(dev: &dyn BlockDevice, from: u64, to: u64) -> Result<Option<u64>, IoFailure> {
    const STEP: u64 = 1 << 20;
    let mut buf = vec![0u8; STEP as usize];
    for run in extents(dev, from..to) {
        let run = run.map_err(|e| e.failure(Side::Source))?;
        if run.status.reads_zero() {
            continue;
        }
        let (mut pos, run_end) = (run.offset, run.end());
        while pos < run_end {
            let n = (run_end - pos).min(STEP);
            let piece = &mut buf[..n as usize];
            dev.read_at(piece, pos)
                .map_err(|e| IoFailure::new(Side::Source, IoOperation::Read, pos, n, &e))?;
            if !is_zero(piece) {
                let i = piece.iter().position(|b| *b != 0).unwrap_or(0);
                return Ok(Some(pos + i as u64));
            }
            pos += n;
        }
    }
    Ok(None)
}
