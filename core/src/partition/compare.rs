//! "Identical" for a copy whose partition table was rewritten for another
//! size: every byte the job mirrored, except the sectors the fix-up had to
//! change (GPT headers, the source's stale backup, the protective MBR's
//! size, and a grown partition's entry), which are compared by meaning
//! instead. A grown partition's filesystem was resized, so its bytes cannot
//! match and are not compared; the result says so.

use std::ops::Range;

use super::{Partition, PartitionError, Scheme, gpt};
use crate::device::BlockDevice;
use crate::error::{IoFailure, IoOperation, Side};
use crate::units::human;

/// What was compared and how it came out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// In words: which bytes, which partitions, what was left out.
    pub compared: String,
    /// The first differing byte, or what differs in the tables.
    pub difference: Option<String>,
}

impl Comparison {
    pub fn identical(&self) -> bool {
        self.difference.is_none()
    }
}

/// Compares `target` with the `copy_len` bytes of `source` it was mirrored
/// from and then fixed up; `grown` is the partition that was grown, if any.
pub fn compare(
    source: &dyn BlockDevice,
    target: &dyn BlockDevice,
    copy_len: u64,
    grown: Option<Partition>,
) -> Result<Comparison, PartitionError> {
    let table = super::read(source, Side::Source)?;
    let Some(table) = table.filter(|_| source.len() != target.len() || grown.is_some()) else {
        let whole = 0..copy_len;
        let difference = first_difference(source, target, std::slice::from_ref(&whole))?
            .map(|at| format!("differs from byte {at}"));
        return Ok(Comparison {
            compared: format!("bytes 0–{} byte for byte", human(copy_len)),
            difference,
        });
    };
    let mut skip: Vec<Range<u64>> = Vec::new();
    let mut left_out: Vec<String> = Vec::new();
    let mut difference = None;
    match table.scheme {
        Scheme::Gpt { sector_size, array_sectors } => {
            // The protective MBR's entries carry the disk's size; LBA 1 is
            // the primary header; the entry array differs only when an entry
            // grew. All of them are compared by meaning below.
            skip.push(446..510);
            skip.push(sector_size..2 * sector_size);
            if grown.is_some() {
                skip.push(2 * sector_size..(2 + array_sectors) * sector_size);
            }
            skip.push(table.usable_end(source.len())..source.len());
            difference =
                gpt::meaning_differs(source, target, sector_size, grown.map(|g| g.number))?;
            left_out.push(
                "the GPT headers (rewritten for the target's size; compared by meaning)".into(),
            );
        }
        Scheme::Mbr if grown.is_some() => {
            skip.push(446..510);
            left_out.push("the MBR's entries (one grew; compared by meaning)".into());
            difference = mbr_meaning_differs(target, &table.partitions, grown)?;
        }
        Scheme::Mbr => {}
    }
    if let Some(g) = grown {
        skip.push(g.start..g.end);
        left_out.push(format!(
            "partition {} (grown, so not compared byte for byte: check its filesystem with fsck)",
            g.number
        ));
    }
    let ranges = complement(0..copy_len, &mut skip);
    if difference.is_none() {
        difference =
            first_difference(source, target, &ranges)?.map(|at| format!("differs from byte {at}"));
    }
    let numbers: Vec<String> = table
        .partitions
        .iter()
        .filter(|p| grown.is_none_or(|g| g.number != p.number))
        .map(|p| p.number.to_string())
        .collect();
    let mut compared = format!(
        "{} table by meaning, {} and the bytes around them (0–{}) byte for byte",
        table.scheme_name(),
        match numbers.len() {
            0 => "no partition".to_string(),
            1 => format!("partition {}", numbers[0]),
            _ => format!("partitions {}", numbers.join(", ")),
        },
        human(copy_len)
    );
    if !left_out.is_empty() {
        compared.push_str(", except ");
        compared.push_str(&left_out.join(" and "));
    }
    Ok(Comparison { compared, difference })
}

/// The target's MBR entries must say what the source's did, but the grown
/// partition's end.
fn mbr_meaning_differs(
    target: &dyn BlockDevice,
    source_parts: &[Partition],
    grown: Option<Partition>,
) -> Result<Option<String>, PartitionError> {
    let Some(t) = super::read(target, Side::Target)? else {
        return Ok(Some("the target has no MBR".into()));
    };
    let expect: Vec<Partition> = source_parts
        .iter()
        .map(|p| match grown {
            Some(g) if g.number == p.number => Partition { end: g.end, ..*p },
            _ => *p,
        })
        .collect();
    Ok((t.partitions != expect).then(|| "the MBR's partitions differ".into()))
}

/// `whole` minus the `skip` ranges, in order.
fn complement(whole: Range<u64>, skip: &mut [Range<u64>]) -> Vec<Range<u64>> {
    skip.sort_by_key(|r| r.start);
    let mut out = Vec::new();
    let mut pos = whole.start;
    for r in skip.iter() {
        let (s, e) = (r.start.max(pos), r.end.min(whole.end));
        if s > pos {
            out.push(pos..s.min(whole.end));
        }
        pos = pos.max(e);
    }
    if pos < whole.end {
        out.push(pos..whole.end);
    }
    out.retain(|r| r.start < r.end);
    out
}

/// The first byte in `ranges` where the two devices differ.
fn first_difference(
    a: &dyn BlockDevice,
    b: &dyn BlockDevice,
    ranges: &[Range<u64>],
) -> Result<Option<u64>, PartitionError> {
    const STEP: u64 = 1 << 20;
    let (mut x, mut y) = (vec![0u8; STEP as usize], vec![0u8; STEP as usize]);
    for r in ranges {
        let mut pos = r.start;
        while pos < r.end {
            let n = (r.end - pos).min(STEP);
            let (x, y) = (&mut x[..n as usize], &mut y[..n as usize]);
            a.read_at(x, pos).map_err(|e| read_failed(Side::Source, pos, n, &e))?;
            b.read_at(y, pos).map_err(|e| read_failed(Side::Target, pos, n, &e))?;
            if let Some(i) = x.iter().zip(y.iter()).position(|(p, q)| p != q) {
                return Ok(Some(pos + i as u64));
            }
            pos += n;
        }
    }
    Ok(None)
}

fn read_failed(side: Side, offset: u64, len: u64, e: &std::io::Error) -> PartitionError {
    PartitionError::Io(IoFailure::new(side, IoOperation::Read, offset, len, e))
}

#[cfg(test)]
mod tests {
    use super::complement;

    #[test]
    fn complement_leaves_out_overlapping_and_outside_ranges() {
        let mut skip = vec![10..20, 0..2, 15..25, 90..200];
        assert_eq!(complement(0..100, &mut skip), vec![2..10, 25..90]);
        assert_eq!(complement(0..100, &mut []), vec![0..100]);
    }
}
