//! The fit decision, the fix-up and the comparison on tables made with the
//! same crates, in memory. (tests/tests/partitions.rs does it end to end
//! with sgdisk/sfdisk-made images and their verifiers as judges.)

use gptman::{GPT, GPTHeader, GPTPartitionEntry};
use mbrman::{CHS, MBR, MBRPartitionEntry};

use super::io::DeviceIo;
use super::*;
use crate::device::MemoryDevice;
use crate::error::{Error, NoFit};

const MIB: u64 = 1 << 20;
const LINUX: [u8; 16] = [
    0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84, 0x72, 0x47, 0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47, 0x7d, 0xe4,
];

/// A GPT disk of `len` bytes with partitions over the given LBA ranges
/// (inclusive), each filled with its number.
pub(crate) fn gpt_disk(len: u64, parts: &[(u64, u64)]) -> MemoryDevice {
    let dev = MemoryDevice::new(len);
    let mut io = DeviceIo::new(&dev);
    let mut gpt = GPT::new_from(&mut io, 512, [7; 16]).unwrap();
    for (i, (start, end)) in parts.iter().enumerate() {
        gpt[i as u32 + 1] = GPTPartitionEntry {
            partition_type_guid: LINUX,
            unique_partition_guid: [i as u8 + 1; 16],
            starting_lba: *start,
            ending_lba: *end,
            attribute_bits: 0,
            partition_name: "part".into(),
        };
        dev.write_at(&vec![i as u8 + 1; ((end - start + 1) * 512) as usize], start * 512).unwrap();
    }
    gpt.write_into(&mut io).unwrap();
    GPT::write_protective_mbr_into(&mut io, 512).unwrap();
    dev
}

/// An MBR disk with primary partitions over the given LBA ranges
/// (start, sectors), each filled with its number.
fn mbr_disk(len: u64, parts: &[(u32, u32)]) -> MemoryDevice {
    let dev = MemoryDevice::new(len);
    let mut io = DeviceIo::new(&dev);
    let mut mbr = MBR::new_from(&mut io, 512, [1, 2, 3, 4]).unwrap();
    for (i, (start, sectors)) in parts.iter().enumerate() {
        mbr[i + 1] = MBRPartitionEntry {
            boot: 0,
            first_chs: CHS::empty(),
            sys: 0x83,
            last_chs: CHS::empty(),
            starting_lba: *start,
            sectors: *sectors,
        };
        let bytes = vec![i as u8 + 1; (*sectors as u64 * 512) as usize];
        dev.write_at(&bytes, *start as u64 * 512).unwrap();
    }
    mbr.write_into(&mut io).unwrap();
    dev
}

/// What the job does: the first `len` bytes of `src` onto `dst`.
fn copy(src: &dyn BlockDevice, dst: &dyn BlockDevice, len: u64) {
    let mut buf = vec![0u8; len as usize];
    src.read_at(&mut buf, 0).unwrap();
    dst.write_at(&buf, 0).unwrap();
}

fn backup_header(dev: &dyn BlockDevice) -> GPTHeader {
    let mut io = DeviceIo::new(dev);
    std::io::Seek::seek(&mut io, std::io::SeekFrom::Start(dev.len() - 512)).unwrap();
    GPTHeader::read_from(&mut io).unwrap()
}

#[test]
fn a_larger_target_takes_the_source_and_gets_a_gpt_of_its_own_size() {
    let source = gpt_disk(8 * MIB, &[(2048, 4095), (4096, 16383 - 34)]);
    let target = MemoryDevice::new(16 * MIB);
    let fit = decide(&source, &target).unwrap();
    assert_eq!((fit.relation(), fit.copy_len), (Relation::Larger, 8 * MIB));
    assert_eq!(
        fit.to_string(),
        "larger by 8.0 MiB: the copy uses the first 8.0 MiB (the rest is left as it is)"
    );
    copy(&source, &target, fit.copy_len);

    let done = fix_up(&target, source.len(), false).unwrap();
    assert!(done.relocated && done.grown.is_none());
    let gpt = GPT::read_from(&mut DeviceIo::new(&target), 512).unwrap();
    let last_lba = 16 * MIB / 512 - 1;
    assert_eq!((gpt.header.backup_lba, gpt.header.last_usable_lba), (last_lba, last_lba - 33));
    let backup = backup_header(&target);
    assert_eq!((backup.primary_lba, backup.partition_entry_lba), (last_lba, last_lba - 32));
    assert_eq!(backup.crc32_checksum, backup.generate_crc32_checksum());
    // The source's backup (its last 33 sectors) is gone from the target.
    let mut old = vec![1u8; 33 * 512];
    target.read_at(&mut old, 8 * MIB - 33 * 512).unwrap();
    assert!(old.iter().all(|b| *b == 0));
    // The protective MBR covers the whole target.
    let mut size = [0u8; 4];
    target.read_at(&mut size, 446 + 12).unwrap();
    assert_eq!(u32::from_le_bytes(size) as u64, last_lba);

    let c = compare(&source, &target, fit.copy_len, None).unwrap();
    assert!(c.identical(), "{c:?}");
    assert!(c.compared.contains("partitions 1, 2"), "{}", c.compared);
    // A changed byte inside a partition is found.
    target.write_at(&[0xff], 5000 * 512).unwrap();
    let c = compare(&source, &target, fit.copy_len, None).unwrap();
    assert_eq!(c.difference.as_deref(), Some(format!("differs from byte {}", 5000 * 512).as_str()));
}

#[test]
fn grow_moves_the_last_partition_to_the_last_mib_boundary_of_the_usable_area() {
    let source = gpt_disk(8 * MIB, &[(2048, 4095), (4096, 8191)]);
    let target = MemoryDevice::new(12 * MIB);
    let fit = decide(&source, &target).unwrap();
    copy(&source, &target, fit.copy_len);
    let done = fix_up(&target, source.len(), true).unwrap();
    let g = done.grown.unwrap();
    // The usable area ends 33 sectors before 12 MiB: the partition ends at
    // the MiB boundary below, as gdisk aligns.
    assert_eq!((g.partition.number, g.old_end, g.partition.end), (2, 4 * MIB, 11 * MIB));
    let gpt = GPT::read_from(&mut DeviceIo::new(&target), 512).unwrap();
    assert_eq!(gpt[2].ending_lba, 11 * MIB / 512 - 1);
    assert_eq!(gpt[1].ending_lba, 4095);
    let c = compare(&source, &target, fit.copy_len, Some(g.partition)).unwrap();
    assert!(c.identical(), "{c:?}");
    assert!(c.compared.contains("partition 2 (grown"), "{}", c.compared);
}

#[test]
fn a_smaller_target_takes_a_source_whose_partitions_end_in_time() {
    let source = gpt_disk(16 * MIB, &[(2048, 4095), (4096, 12287)]);
    let target = MemoryDevice::new(8 * MIB);
    let fit = decide(&source, &target).unwrap();
    assert_eq!((fit.relation(), fit.copy_len), (Relation::Smaller, 8 * MIB - 33 * 512));
    assert_eq!(fit.to_string(), "smaller: fits — partitions end at 6.0 MiB");
    copy(&source, &target, fit.copy_len);
    let done = fix_up(&target, source.len(), false).unwrap();
    assert!(done.relocated);
    let gpt = GPT::read_from(&mut DeviceIo::new(&target), 512).unwrap();
    assert_eq!(gpt.header.backup_lba, 8 * MIB / 512 - 1);
    assert_eq!(
        backup_header(&target).crc32_checksum,
        backup_header(&target).generate_crc32_checksum()
    );
    assert!(compare(&source, &target, fit.copy_len, None).unwrap().identical());
}

#[test]
fn a_smaller_target_is_refused_naming_the_partition_or_the_data_in_the_way() {
    let target = MemoryDevice::new(8 * MIB);
    let long = gpt_disk(16 * MIB, &[(2048, 4095), (4096, 20479)]);
    let e = decide(&long, &target).unwrap_err();
    assert!(matches!(
        e,
        Error::DoesNotFit { reason: NoFit::PartitionPastEnd { number: 2, .. }, .. }
    ));
    assert_eq!(
        e.to_string(),
        "the target (8.0 MiB) is smaller than the source (16.0 MiB) and cannot take it: \
         partition 2 ends at 10.0 MiB; the target has 8.0 MiB"
    );
    let stray = gpt_disk(16 * MIB, &[(2048, 4095)]);
    stray.write_at(&[0, 0, 9], 10 * MIB).unwrap();
    let e = decide(&stray, &target).unwrap_err();
    assert!(
        matches!(e, Error::DoesNotFit { reason: NoFit::DataPastEnd { at }, .. } if at == 10 * MIB + 2)
    );
    assert!(e.to_string().ends_with("data at 10.0 MiB past the last partition"), "{e}");
    // The quick answer for a screen reads no data: the job's start does.
    assert_eq!(decide_by_table(&stray, &target).unwrap().relation(), Relation::Smaller);
    let raw = MemoryDevice::new(16 * MIB);
    assert!(matches!(decide(&raw, &target), Err(Error::DoesNotFit { reason: NoFit::NoTable, .. })));
}

#[test]
fn mbr_needs_no_fix_up_and_grows_its_last_primary_partition() {
    let source = mbr_disk(8 * MIB, &[(2048, 2048), (4096, 8192)]);
    let larger = MemoryDevice::new(16 * MIB);
    let fit = decide(&source, &larger).unwrap();
    assert_eq!(fit.table.as_ref().map(|t| t.scheme), Some(Scheme::Mbr));
    copy(&source, &larger, fit.copy_len);
    let done = fix_up(&larger, source.len(), false).unwrap();
    assert_eq!(done, FixUp { scheme: Some("MBR"), relocated: false, grown: None });
    assert!(compare(&source, &larger, fit.copy_len, None).unwrap().identical());

    let done = fix_up(&larger, source.len(), true).unwrap();
    let g = done.grown.unwrap();
    assert_eq!((g.partition.number, g.partition.end), (2, 16 * MIB));
    assert_eq!(super::read(&larger, Side::Target).unwrap().unwrap().end(), 16 * MIB);
    assert!(compare(&source, &larger, fit.copy_len, Some(g.partition)).unwrap().identical());

    // Smaller: everything up to the target's end is copied.
    let smaller = MemoryDevice::new(7 * MIB);
    assert_eq!(decide(&source, &smaller).unwrap().copy_len, 7 * MIB);
}
