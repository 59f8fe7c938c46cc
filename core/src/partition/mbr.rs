//! MBR (DOS) tables with `mbrman`: the layout, and growing the last
//! partition. Nothing of an MBR lives at the end of the disk, so a copy onto
//! a disk of another size needs no fix-up.

use mbrman::{MBR, MBRPartitionEntry};

use super::io::DeviceIo;
use super::{Grown, Partition, PartitionError, Scheme, Table};
use crate::device::BlockDevice;
use crate::error::{IoOperation, Side};

const SECTOR: u64 = 512;
/// The type of a GPT's protective MBR entry.
const PROTECTIVE: u8 = 0xEE;

/// The MBR's layout, or `None` when the first sector is no MBR.
pub(super) fn read(dev: &dyn BlockDevice, side: Side) -> Result<Option<Table>, PartitionError> {
    let mbr = match MBR::read_from(&mut DeviceIo::new(dev), SECTOR as u32) {
        Ok(m) => m,
        // No boot signature, or entries that are not a table (a
        // filesystem's boot sector, zeroes): no MBR.
        Err(mbrman::Error::Io(e)) => return Err(PartitionError::io(side, IoOperation::Read, &e)),
        Err(mbrman::Error::InvalidSignature | mbrman::Error::Deserialize(_)) => return Ok(None),
        Err(e) => return Err(PartitionError::Damaged { side, reason: e.to_string() }),
    };
    if mbr.iter().any(|(_, p)| p.sys == PROTECTIVE) {
        return Err(PartitionError::Damaged {
            side,
            reason: "a protective MBR, but no readable GPT behind it".into(),
        });
    }
    let partitions: Vec<Partition> =
        mbr.iter().filter(|(_, p)| p.is_used()).map(|(n, p)| partition(n, p)).collect();
    if partitions.is_empty() {
        // A boot signature over an empty table says nothing about the disk.
        return Ok(None);
    }
    Ok(Some(Table { scheme: Scheme::Mbr, partitions }))
}

fn partition(number: usize, p: &MBRPartitionEntry) -> Partition {
    let start = u64::from(p.starting_lba) * SECTOR;
    Partition { number: number as u32, start, end: start + u64::from(p.sectors) * SECTOR }
}

/// Moves the end of the last partition to the end of the target (or of what
/// 32-bit sector counts reach). Only a primary partition can grow this way:
/// a logical one would need its extended partition and EBR chain changed.
pub(super) fn grow_last(target: &dyn BlockDevice, table: &Table) -> Result<Grown, PartitionError> {
    let last = *table.last().ok_or(PartitionError::NoTable)?;
    let cannot =
        |reason: &str| PartitionError::CannotGrow { number: last.number, reason: reason.into() };
    if last.number > 4 {
        return Err(cannot(
            "it is a logical partition (grow it and its extended partition with a partition tool)",
        ));
    }
    let mut io = DeviceIo::new(target);
    let mut mbr = MBR::read_from(&mut io, SECTOR as u32)
        .map_err(|e| PartitionError::Damaged { side: Side::Target, reason: e.to_string() })?;
    let disk_sectors = (target.len() / SECTOR).min(u64::from(u32::MAX));
    let entry = mbr.get_mut(last.number as usize).ok_or_else(|| cannot("no such entry"))?;
    if entry.is_extended() {
        return Err(cannot(
            "it is an extended partition (growing it and the logical partitions in it needs a partition tool)",
        ));
    }
    let end = super::aligned_end(last.end / SECTOR - 1, disk_sectors - 1, SECTOR);
    let sectors = end + 1 - u64::from(entry.starting_lba);
    // Within u32: disk_sectors is capped at u32::MAX above.
    entry.sectors = sectors as u32;
    let grown = partition(last.number as usize, entry);
    mbr.header.write_into(&mut io).map_err(|e| match e {
        mbrman::Error::Io(e) => PartitionError::io(Side::Target, IoOperation::Write, &e),
        e => PartitionError::Damaged { side: Side::Target, reason: e.to_string() },
    })?;
    Ok(Grown { partition: grown, old_end: last.end, filesystem: None })
}
