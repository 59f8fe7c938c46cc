//! Partition tables: what lets a disk be cloned onto a disk of another size.
//!
//! * [`fit`]: whether a target of another size can take the source (a
//!   larger one always can; a smaller one when every partition and every
//!   byte in use ends before its usable end), and how many bytes the job
//!   mirrors.
//! * [`fix_up`]: after the copy, the target's table made right for its own
//!   size (GPT: backup header and entries moved to its end, CRCs redone),
//!   and optionally its last partition grown to the end.
//! * [`compare`]: what "identical" means once the table was rewritten: the
//!   partitions and the bytes around them, and the table's meaning, not the
//!   header sectors that must differ.
//!
//! Tables are parsed with `gptman` and `mbrman`; `gpt.rs` and `mbr.rs` hold
//! what is specific to each scheme.

mod compare;
mod fit;
mod gpt;
mod io;
mod mbr;

use crate::device::BlockDevice;
use crate::error::{IoFailure, IoOperation, Side};
use crate::units::human;

pub use compare::{Comparison, compare};
pub use fit::{Fit, Relation, decide, decide_by_table};

/// One partition, in bytes of its device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// Its number, as `sgdisk`/`sfdisk` show it (1-based; MBR logical
    /// partitions from 5).
    pub number: u32,
    pub start: u64,
    /// The first byte past it.
    pub end: u64,
}

/// The partitioning scheme of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// GPT: a header and entry array after LBA 0 and again at the end.
    Gpt { sector_size: u64, array_sectors: u64 },
    /// MBR (DOS): the table lives in the first sector (and in EBRs inside
    /// the extended partition), nothing at the end.
    Mbr,
}

/// A device's partition table, as far as sizes go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub scheme: Scheme,
    pub partitions: Vec<Partition>,
}

impl Table {
    /// The first byte partitions may not use on a device of `len` bytes
    /// (GPT: where its backup entry array starts).
    pub fn usable_end(&self, len: u64) -> u64 {
        match self.scheme {
            Scheme::Gpt { sector_size, array_sectors } => {
                (len / sector_size).saturating_sub(1 + array_sectors) * sector_size
            }
            Scheme::Mbr => len / 512 * 512,
        }
    }

    /// The partition that ends last.
    pub fn last(&self) -> Option<&Partition> {
        self.partitions.iter().max_by_key(|p| p.end)
    }

    /// Where the last partition ends (0 without partitions).
    pub fn end(&self) -> u64 {
        self.last().map_or(0, |p| p.end)
    }

    pub fn scheme_name(&self) -> &'static str {
        match self.scheme {
            Scheme::Gpt { .. } => "GPT",
            Scheme::Mbr => "MBR",
        }
    }
}

/// What went wrong reading or rewriting a partition table.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error("{0}")]
    Io(IoFailure),
    #[error("the {side}'s partition table is damaged: {reason}")]
    Damaged { side: Side, reason: String },
    #[error("cannot grow partition {number}: {reason}")]
    CannotGrow { number: u32, reason: String },
    #[error("cannot grow the last partition: the target has no partition table")]
    NoTable,
}

impl PartitionError {
    fn io(side: Side, operation: IoOperation, e: &std::io::Error) -> Self {
        PartitionError::Io(IoFailure::new(side, operation, 0, 0, e))
    }
}

/// Reads the device's table: GPT if it has one, else MBR, else `None`.
pub fn read(dev: &dyn BlockDevice, side: Side) -> Result<Option<Table>, PartitionError> {
    if let Some(t) = gpt::read(dev, side)? {
        return Ok(Some(t));
    }
    mbr::read(dev, side)
}

/// A filesystem livemirror knows how to grow (with the system's tools).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filesystem {
    /// ext2, ext3 or ext4: `resize2fs` grows it.
    Ext,
}

/// The last partition, grown to the end of the target's usable area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grown {
    pub partition: Partition,
    /// Where it ended before.
    pub old_end: u64,
    /// What it holds, when that is a filesystem livemirror can grow.
    pub filesystem: Option<Filesystem>,
}

/// What [`fix_up`] changed on the target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FixUp {
    /// The scheme found on the target (`None`: no table).
    pub scheme: Option<&'static str>,
    /// GPT headers rewritten for the target's size.
    pub relocated: bool,
    pub grown: Option<Grown>,
}

impl std::fmt::Display for FixUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut said = Vec::new();
        if self.relocated {
            said.push(
                "GPT rewritten for the target's size (backup header and entries moved to its last sectors)"
                    .to_string(),
            );
        }
        if let Some(g) = &self.grown {
            said.push(format!(
                "partition {} grown from {} to end at {}",
                g.partition.number,
                human(g.old_end),
                human(g.partition.end)
            ));
        }
        if said.is_empty() {
            match self.scheme {
                Some(s) => said.push(format!("{s} table left as copied (nothing to fix)")),
                None => said.push("no partition table (nothing to fix)".into()),
            }
        }
        f.write_str(&said.join("; "))
    }
}

/// Makes the target's table (copied from a source of `source_len` bytes)
/// right for the target's own size, and with `grow` moves the last
/// partition's end to the end of the usable area. Only the target is
/// written; call it once the job has completed (or was cancelled
/// consistently), with nothing else writing the target.
pub fn fix_up(
    target: &dyn BlockDevice,
    source_len: u64,
    grow: bool,
) -> Result<FixUp, PartitionError> {
    let Some(table) = read(target, Side::Target)? else {
        return if grow { Err(PartitionError::NoTable) } else { Ok(FixUp::default()) };
    };
    let mut done = FixUp { scheme: Some(table.scheme_name()), ..FixUp::default() };
    match table.scheme {
        Scheme::Gpt { sector_size, .. } => {
            if target.len() != source_len || grow {
                done.grown = gpt::rewrite(target, sector_size, source_len, grow)?;
                done.relocated = target.len() != source_len;
            }
        }
        Scheme::Mbr if grow => done.grown = Some(mbr::grow_last(target, &table)?),
        Scheme::Mbr => {}
    }
    if let Some(g) = &mut done.grown {
        g.filesystem = filesystem_at(target, g.partition.start)?;
    }
    target.flush().map_err(|e| PartitionError::io(Side::Target, IoOperation::Flush, &e))?;
    Ok(done)
}

/// The last LBA a grown partition may end on: the end of the usable area
/// (`last`), rounded down to a MiB as partition tools align (gdisk warns
/// about an end off that boundary), unless that would not grow it at all.
fn aligned_end(current: u64, last: u64, sector_size: u64) -> u64 {
    let per_mib = (1 << 20) / sector_size.min(1 << 20);
    let aligned = (last + 1) / per_mib * per_mib;
    if aligned > current + 1 { aligned - 1 } else { last }
}

/// ext2/3/4: the superblock 1 KiB into the partition, magic 0xEF53 at 56.
fn filesystem_at(dev: &dyn BlockDevice, start: u64) -> Result<Option<Filesystem>, PartitionError> {
    let mut magic = [0u8; 2];
    if start + 1024 + 58 > dev.len() {
        return Ok(None);
    }
    dev.read_at(&mut magic, start + 1024 + 56)
        .map_err(|e| PartitionError::io(Side::Target, IoOperation::Read, &e))?;
    Ok((u16::from_le_bytes(magic) == 0xEF53).then_some(Filesystem::Ext))
}

#[cfg(test)]
pub(crate) mod tests;
