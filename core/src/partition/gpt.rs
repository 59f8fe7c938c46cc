//! GPT: reading the layout with `gptman`, and rewriting the headers for a
//! device of another size (what `sgdisk -e` does, plus growing the last
//! partition).

use gptman::GPT;

use super::io::DeviceIo;
use super::{Grown, Partition, PartitionError, Scheme, Table};
use crate::device::BlockDevice;
use crate::error::{IoOperation, Side};

/// The GPT's layout, or `None` when the device has no GPT signature.
pub(super) fn read(dev: &dyn BlockDevice, side: Side) -> Result<Option<Table>, PartitionError> {
    let gpt = match GPT::find_from(&mut DeviceIo::new(dev)) {
        Ok(g) => g,
        Err(gptman::Error::InvalidSignature) => return Ok(None),
        Err(gptman::Error::Io(e)) => {
            return Err(PartitionError::io(side, IoOperation::Read, &e));
        }
        Err(e) => return Err(PartitionError::Damaged { side, reason: e.to_string() }),
    };
    if !gpt.header.is_primary() {
        // gptman fell back to the backup: the copy would carry a broken
        // primary, which the fix-up reads. Repairing tables is gdisk's job.
        return Err(PartitionError::Damaged {
            side,
            reason: "the primary GPT header is unreadable (repair it with gdisk first)".into(),
        });
    }
    let ss = gpt.sector_size;
    let h = &gpt.header;
    let array_bytes =
        u64::from(h.number_of_partition_entries) * u64::from(h.size_of_partition_entry);
    let partitions = gpt
        .iter()
        .filter(|(_, p)| p.is_used())
        .map(|(n, p)| Partition {
            number: n,
            start: p.starting_lba * ss,
            end: (p.ending_lba + 1) * ss,
        })
        .collect();
    Ok(Some(Table {
        scheme: Scheme::Gpt { sector_size: ss, array_sectors: array_bytes.div_ceil(ss) },
        partitions,
    }))
}

/// Rewrites the target's GPT (copied from a source of `source_len` bytes)
/// for the target's size: primary header's alternate and last usable LBA,
/// backup header and entries at the target's last LBAs, both CRCs; the
/// source's backup location zeroed where it now lies inside the usable
/// area; the protective MBR's size. With `grow`, the last partition ends at
/// the last usable LBA.
pub(super) fn rewrite(
    target: &dyn BlockDevice,
    sector_size: u64,
    source_len: u64,
    grow: bool,
) -> Result<Option<Grown>, PartitionError> {
    let io_err = |op, e: &std::io::Error| PartitionError::io(Side::Target, op, e);
    let damaged = |e: gptman::Error| match e {
        gptman::Error::Io(e) => io_err(IoOperation::Write, &e),
        e => PartitionError::Damaged { side: Side::Target, reason: e.to_string() },
    };
    let mut io = DeviceIo::new(target);
    let mut gpt = GPT::read_from(&mut io, sector_size).map_err(damaged)?;
    let array_sectors = (u64::from(gpt.header.number_of_partition_entries)
        * u64::from(gpt.header.size_of_partition_entry))
    .div_ceil(sector_size);
    // Where the source kept its backup (array, then header).
    let old_backup = (source_len / sector_size - 1 - array_sectors) * sector_size..source_len;
    gpt.header.update_from(&mut io, sector_size).map_err(damaged)?;
    let usable_end = (gpt.header.last_usable_lba + 1) * sector_size;

    let mut grown = None;
    if grow {
        let last_usable = gpt.header.last_usable_lba;
        let last = gpt.iter_mut().filter(|(_, p)| p.is_used()).max_by_key(|(_, p)| p.ending_lba);
        if let Some((number, p)) = last {
            let old_end = (p.ending_lba + 1) * sector_size;
            p.ending_lba = super::aligned_end(p.ending_lba, last_usable, sector_size);
            grown = Some(Grown {
                partition: Partition {
                    number,
                    start: p.starting_lba * sector_size,
                    end: (p.ending_lba + 1) * sector_size,
                },
                old_end,
                filesystem: None,
            });
        }
    }

    // The source's backup is stale data now; where it lies inside the new
    // usable area a later partition tool would take it for ours.
    let first_usable = gpt.header.first_usable_lba * sector_size;
    let stale = old_backup.start.max(first_usable)..old_backup.end.min(usable_end);
    if stale.start < stale.end {
        target
            .write_zeroes(stale.start, stale.end - stale.start, false)
            .map_err(|e| io_err(IoOperation::WriteZeroes, &e))?;
    }
    gpt.write_into(&mut io).map_err(damaged)?;
    if is_protective_mbr(target)? {
        GPT::write_protective_mbr_into(&mut io, sector_size).map_err(damaged)?;
    }
    Ok(grown)
}

/// True when LBA 0 holds a plain protective MBR (one 0xEE entry), whose
/// size must follow the disk's. A hybrid MBR is left as it is.
fn is_protective_mbr(dev: &dyn BlockDevice) -> Result<bool, PartitionError> {
    let mut entries = [0u8; 66];
    dev.read_at(&mut entries, 446)
        .map_err(|e| PartitionError::io(Side::Target, IoOperation::Read, &e))?;
    let others_empty = entries[16..64].iter().all(|b| *b == 0);
    Ok(entries[4] == 0xEE && others_empty && entries[64..66] == [0x55, 0xAA])
}

/// Compares what two GPTs say (disk GUID, entry array geometry, every
/// entry), not where their headers sit. The entry `grown` may end later on
/// `b`. Returns what differs, in words.
pub(super) fn meaning_differs(
    a: &dyn BlockDevice,
    b: &dyn BlockDevice,
    sector_size: u64,
    grown: Option<u32>,
) -> Result<Option<String>, PartitionError> {
    let load = |dev, side| {
        GPT::read_from(&mut DeviceIo::new(dev), sector_size).map_err(|e| match e {
            gptman::Error::Io(e) => PartitionError::io(side, IoOperation::Read, &e),
            e => PartitionError::Damaged { side, reason: e.to_string() },
        })
    };
    let (a, mut b) = (load(a, Side::Source)?, load(b, Side::Target)?);
    if a.header.disk_guid != b.header.disk_guid {
        return Ok(Some("the disk GUIDs differ".into()));
    }
    if (a.header.number_of_partition_entries, a.header.size_of_partition_entry)
        != (b.header.number_of_partition_entries, b.header.size_of_partition_entry)
    {
        return Ok(Some("the entry arrays differ in shape".into()));
    }
    if let Some(n) = grown {
        let end = a.iter().find(|(i, _)| *i == n).map(|(_, p)| p.ending_lba);
        if let (Some(end), Some((_, p))) = (end, b.iter_mut().find(|(i, _)| *i == n)) {
            p.ending_lba = end;
        }
    }
    Ok(a.iter()
        .zip(b.iter())
        .find(|((_, x), (_, y))| x != y)
        .map(|((n, _), _)| format!("entry {n} differs")))
}
