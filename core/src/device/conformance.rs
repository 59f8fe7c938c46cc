//! The contract of [`BlockDevice`], checked the same way for every backend.

use std::sync::Arc;

use super::{BlockDevice, FaultyDevice, FileDevice, MemoryDevice, OpenOptions};

const LEN: u64 = 1 << 20;

/// Runs every contract check on a fresh, zero-filled device of `LEN` bytes.
fn conforms(dev: &dyn BlockDevice) {
    assert_eq!(dev.len(), LEN);

    // Round trip at odd offsets and sizes.
    let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + 3) as u8).collect();
    dev.write_at(&data, 12_345).unwrap();
    let mut back = vec![0; data.len()];
    dev.read_at(&mut back, 12_345).unwrap();
    assert_eq!(back, data);

    // Past the end: an error, nothing written.
    let err = dev.write_at(&[1; 10], LEN - 5).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(dev.read_at(&mut [0; 1], LEN).is_err());
    let mut tail = [9u8; 5];
    dev.read_at(&mut tail, LEN - 5).unwrap();
    assert_eq!(tail, [0; 5]);

    // Zeroing, with and without unmapping, reads back as zeroes.
    for may_unmap in [false, true] {
        dev.write_at(&[0xAB; 3 * 65536], 65536).unwrap();
        dev.write_zeroes(65536 + 100, 2 * 65536, may_unmap).unwrap();
        let mut buf = vec![1; 3 * 65536];
        dev.read_at(&mut buf, 65536).unwrap();
        assert!(buf[..100].iter().all(|b| *b == 0xAB));
        assert!(buf[100..100 + 2 * 65536].iter().all(|b| *b == 0));
        assert!(buf[100 + 2 * 65536..].iter().all(|b| *b == 0xAB));
    }

    // Block status: runs are non-empty, bounded, and cover the device;
    // anything reported as reading zero does read zero.
    let mut pos = 0;
    while pos < LEN {
        let (alloc, run) = dev.block_status(pos, LEN - pos).unwrap();
        assert!(run >= 1 && pos + run <= LEN, "run {run} at {pos}");
        if alloc.reads_zero() {
            let mut buf = vec![1; run as usize];
            dev.read_at(&mut buf, pos).unwrap();
            assert!(buf.iter().all(|b| *b == 0), "{alloc:?} run at {pos} is not zero");
        }
        pos += run;
    }
    let (_, capped) = dev.block_status(0, 10).unwrap();
    assert!(capped <= 10);

    dev.discard(0, 4096).unwrap();
    dev.flush().unwrap();
}

#[test]
fn memory_device_conforms() {
    conforms(&MemoryDevice::new(LEN));
}

#[test]
fn faulty_device_without_faults_conforms() {
    conforms(&FaultyDevice::new(Arc::new(MemoryDevice::new(LEN))));
}

#[test]
fn prefix_of_a_larger_device_conforms() {
    let inner: Arc<dyn BlockDevice> = Arc::new(MemoryDevice::new(LEN + 8192));
    let view = super::Prefix::new(inner.clone(), LEN);
    conforms(&view);
    // Nothing past the view is reachable through it.
    assert!(view.write_at(&[1], LEN).is_err());
    assert!(view.block_status(LEN, 1).is_err());
    let mut tail = vec![1u8; 8192];
    inner.read_at(&mut tail, LEN).unwrap();
    assert!(tail.iter().all(|b| *b == 0), "the bytes past the view were written");
}

#[test]
fn file_device_conforms() {
    let f = tempfile::NamedTempFile::new().unwrap();
    f.as_file().set_len(LEN).unwrap();
    let dev = OpenOptions::new().write(true).open(f.path()).unwrap();
    conforms(&dev);
}

/// A descriptor opened elsewhere (as udisks2 hands one over) behaves exactly
/// like a device opened by path: same contract, same identity, named by the
/// path it was given.
#[test]
fn file_device_from_an_open_file_conforms() {
    let f = tempfile::NamedTempFile::new().unwrap();
    f.as_file().set_len(LEN).unwrap();
    let file = std::fs::OpenOptions::new().read(true).write(true).open(f.path()).unwrap();
    let dev = FileDevice::from_file(file, "/dev/handed-over").unwrap();
    assert_eq!(dev.describe(), "/dev/handed-over");
    assert!(!dev.is_block_device());
    assert_eq!(dev.id(), OpenOptions::new().open(f.path()).unwrap().id());
    conforms(&dev);
}

#[test]
fn a_directory_is_refused_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let err = OpenOptions::new().open(dir.path()).err().unwrap();
    assert!(err.to_string().contains(&dir.path().display().to_string()), "{err}");
}

/// A directory handed over as a descriptor (Windows cannot open one as a file).
#[cfg(unix)]
#[test]
fn file_device_from_a_directory_is_refused_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = std::fs::File::open(dir.path()).unwrap();
    let err = FileDevice::from_file(file, "/dev/not-a-disk").err().unwrap();
    let text = err.to_string();
    assert!(text.contains("/dev/not-a-disk") && text.contains("not a regular file"), "{text}");
}

/// Linux only: Windows reports holes through `FSCTL_QUERY_ALLOCATED_RANGES`,
/// which Wine (where CI runs the Windows build) does not implement.
#[cfg(target_os = "linux")]
#[test]
fn file_device_reports_holes_of_a_sparse_file() {
    use super::Allocation;
    let dir = tempfile::tempdir().unwrap();
    let dev = OpenOptions::new().create(dir.path().join("sparse.img"), LEN).unwrap();
    assert_eq!(dev.block_status(0, LEN).unwrap(), (Allocation::Hole, LEN));
    dev.write_at(&[1; 4096], 65536).unwrap();
    assert_eq!(dev.block_status(0, LEN).unwrap(), (Allocation::Hole, 65536));
    assert_eq!(dev.block_status(65536, LEN).unwrap(), (Allocation::Data, 4096));
    dev.write_zeroes(65536, 4096, true).unwrap();
    assert_eq!(dev.block_status(0, LEN).unwrap(), (Allocation::Hole, LEN));
}

#[test]
fn read_only_file_device_refuses_writes() {
    let f = tempfile::NamedTempFile::new().unwrap();
    f.as_file().set_len(LEN).unwrap();
    let dev = OpenOptions::new().open(f.path()).unwrap();
    assert!(dev.write_at(&[1], 0).is_err());
}

/// Runs the contract on a zero-filled image file opened with `opts`.
fn file_conforms(opts: OpenOptions) {
    let f = tempfile::NamedTempFile::new().unwrap();
    f.as_file().set_len(LEN).unwrap();
    conforms(&opts.write(true).open(f.path()).unwrap());
}

#[test]
fn direct_file_device_conforms() {
    file_conforms(OpenOptions::new().direct(true));
}

#[test]
fn write_behind_file_device_conforms() {
    file_conforms(OpenOptions::new().write_behind(true));
}

#[test]
fn direct_and_buffered_io_see_each_other() {
    use crate::buffer::AlignedBuf;
    let f = tempfile::NamedTempFile::new().unwrap();
    f.as_file().set_len(LEN).unwrap();
    let dev = OpenOptions::new().write(true).direct(true).open(f.path()).unwrap();
    // Where the filesystem refuses O_DIRECT this is the buffered path twice.
    let mut aligned = AlignedBuf::new(8192);
    aligned.fill(7);
    dev.write_at(&aligned, 8192).unwrap(); // direct
    dev.write_at(&[9; 100], 8192 + 50).unwrap(); // buffered: unaligned
    let mut back = AlignedBuf::new(8192);
    dev.read_at(&mut back, 8192).unwrap(); // direct again
    assert!(back[..50].iter().all(|b| *b == 7));
    assert!(back[50..150].iter().all(|b| *b == 9));
    assert!(back[150..].iter().all(|b| *b == 7));
    // An aligned range from unaligned memory goes direct through a copy.
    let unaligned = vec![3u8; 4097];
    dev.write_at(&unaligned[1..], 0).unwrap();
    let plain = OpenOptions::new().open(f.path()).unwrap();
    let mut first = vec![0; 4096];
    plain.read_at(&mut first, 0).unwrap();
    assert_eq!(first, vec![3; 4096]);
}
