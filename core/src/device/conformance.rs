//! The contract of [`BlockDevice`], checked the same way for every backend.

use std::sync::Arc;

use super::{BlockDevice, FaultyDevice, FileDevice, MemoryDevice, OpenOptions};

/// The length of the devices the contract is checked on.
pub(crate) const LEN: u64 = 1 << 20;

/// Runs every contract check on a fresh, zero-filled device of `LEN` bytes.
pub(crate) fn conforms(dev: &dyn BlockDevice) {
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

/// What the page cache holds of a file: all of it once read, none once
/// written back and dropped (`cachestat`, Linux 6.5+); a device in memory
/// cannot tell.
#[cfg(target_os = "linux")]
#[test]
fn a_file_device_says_what_the_page_cache_holds() {
    use std::os::fd::AsRawFd;
    const MIB: u64 = 1 << 20;
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), vec![7u8; MIB as usize]).unwrap();
    let dev = OpenOptions::new().open(f.path()).unwrap();
    let mut buf = vec![0; MIB as usize];
    dev.read_at(&mut buf, 0).unwrap();
    assert_eq!(dev.cached_bytes(0, MIB), Some(MIB));
    f.as_file().sync_all().unwrap();
    // SAFETY: a plain syscall on an open descriptor.
    let r =
        unsafe { libc::posix_fadvise(f.as_file().as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(r, 0);
    assert_eq!(dev.cached_bytes(0, MIB), Some(0));
    assert_eq!(MemoryDevice::new(MIB).cached_bytes(0, MIB), None);
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

/// A device handed over as descriptors (udisks2's), the buffered one and
/// an `O_DIRECT` one: the direct one is used, and the contract holds.
#[cfg(target_os = "linux")]
#[test]
fn a_file_device_from_handed_over_descriptors_goes_direct_and_conforms() {
    use std::os::unix::fs::OpenOptionsExt;
    let f = tempfile::NamedTempFile::new().unwrap();
    f.as_file().set_len(LEN).unwrap();
    let open = |flags| {
        std::fs::OpenOptions::new().read(true).write(true).custom_flags(flags).open(f.path())
    };
    let direct = open(libc::O_DIRECT).expect("the temp directory's filesystem takes O_DIRECT");
    let dev = FileDevice::from_file(open(0).unwrap(), f.path()).unwrap().with_direct_handle(direct);
    assert!(dev.is_direct());
    conforms(&dev);
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

/// Whether the page at `offset` of `path` is in the page cache: a read
/// that may not wait for the disk (`RWF_NOWAIT`) succeeds only then.
#[cfg(target_os = "linux")]
fn page_cached(path: &std::path::Path, offset: u64) -> bool {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path).unwrap();
    let mut page = [0u8; 4096];
    let iov = libc::iovec { iov_base: page.as_mut_ptr().cast(), iov_len: page.len() };
    // SAFETY: one iovec over a live, writable buffer of its stated length.
    let n = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, offset as i64, libc::RWF_NOWAIT) };
    match n {
        4096 => true,
        -1 if std::io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN) => false,
        _ => panic!("preadv2: {n}, {}", std::io::Error::last_os_error()),
    }
}

/// `buffer_writes` switches a direct device's writes to the page cache (a
/// job switched to write-blocking mode asks it of its target); reads and
/// the data written either way stay as they were.
#[cfg(target_os = "linux")]
#[test]
fn buffer_writes_sends_a_direct_device_s_writes_through_the_page_cache() {
    use crate::buffer::AlignedBuf;
    let f = tempfile::NamedTempFile::new().unwrap();
    f.as_file().set_len(LEN).unwrap();
    let dev = OpenOptions::new().write(true).direct(true).open(f.path()).unwrap();
    assert!(dev.is_direct(), "the temp directory's filesystem takes O_DIRECT");
    let mut data = AlignedBuf::new(4096);
    data.fill(5);
    dev.write_at(&data, 0).unwrap();
    assert!(!page_cached(f.path(), 0), "a direct write goes around the page cache");
    dev.buffer_writes();
    // Far from the first page: the check's readahead may cache around it.
    let far = LEN - 4096;
    data.fill(6);
    dev.write_at(&data, far).unwrap();
    assert!(page_cached(f.path(), far), "a buffered write stays in the page cache");
    let mut back = AlignedBuf::new(4096);
    dev.read_at(&mut back, 0).unwrap();
    assert!(back.iter().all(|b| *b == 5));
    dev.read_at(&mut back, far).unwrap();
    assert!(back.iter().all(|b| *b == 6));
    dev.flush().unwrap();
}

/// A new qcow2 image (imago creates it), and one over a zero-filled raw
/// backing file: partial-cluster writes there fill from the backing.
#[test]
fn qcow2_device_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let dev = super::Qcow2Device::create(dir.path().join("new.qcow2"), LEN, None).unwrap();
    assert!(!dev.has_backing());
    conforms(&dev);

    let base = dir.path().join("base.raw");
    std::fs::File::create(&base).unwrap().set_len(LEN).unwrap();
    let overlay =
        super::Qcow2Device::create(dir.path().join("overlay.qcow2"), LEN, Some(&base)).unwrap();
    assert!(overlay.has_backing() && overlay.partial_cluster_write_fills_from_backing());
    conforms(&overlay);
}

/// NBD client tests: the contract over servers nobody here wrote
/// (qemu-nbd, qemu-storage-daemon, nbdkit), each serving `LEN` zero bytes
/// on a unix socket (livemirror's own server: `crate::nbd`'s tests). Unix
/// only: the servers are Linux programs.
#[cfg(unix)]
mod nbd {
    use livemirror_testkit::daemon::Daemon;

    use super::{LEN, conforms};
    use crate::device::{BlockDevice, NbdDevice};

    /// A zero-filled raw image of `LEN` bytes in `dir`, by its path.
    fn image(dir: &tempfile::TempDir) -> String {
        let image = dir.path().join("disk.img");
        std::fs::File::create(&image).unwrap().set_len(LEN).unwrap();
        image.to_str().unwrap().to_owned()
    }

    #[test]
    fn nbd_client_on_qemu_nbd_conforms() {
        let dir = tempfile::tempdir().unwrap();
        let server = Daemon::qemu_nbd(image(&dir).as_ref());
        conforms(&NbdDevice::open_uri(&server.uri(), true).unwrap());
    }

    /// QEMU's own NBD server, as a VM host exports a disk.
    #[test]
    fn nbd_client_on_qemu_storage_daemon_conforms() {
        let dir = tempfile::tempdir().unwrap();
        let blockdev = format!("driver=file,filename={},node-name=disk", image(&dir));
        let server = Daemon::spawn(
            "qemu-storage-daemon",
            &[
                "--blockdev",
                &blockdev,
                "--nbd-server",
                "addr.type=unix,addr.path={sock}",
                "--export",
                "type=nbd,id=export,node-name=disk,name=disk,writable=on",
            ],
        );
        let uri = format!("nbd+unix:///disk?socket={}", server.socket.display());
        conforms(&NbdDevice::open_uri(&uri, true).unwrap());
    }

    #[test]
    fn nbd_client_on_nbdkit_memory_conforms() {
        let server = Daemon::nbdkit(&["memory", &LEN.to_string()]);
        let dev = NbdDevice::open_uri(&server.uri(), true).unwrap();
        assert!(dev.remote(), "an export's requests travel over a socket");
        conforms(&dev);
    }

    /// A server that fails every request breaking its block size rules:
    /// the contract still holds at odd offsets, because the client aligns.
    #[test]
    fn nbd_client_honours_block_size_constraints() {
        let server = Daemon::nbdkit(&[
            "--filter=blocksize-policy",
            "memory",
            &LEN.to_string(),
            "blocksize-minimum=4096",
            "blocksize-preferred=16384",
            "blocksize-maximum=65536",
            "blocksize-error-policy=error",
        ]);
        let dev = NbdDevice::open_uri(&server.uri(), true).unwrap();
        let sizes = dev.block_sizes();
        assert_eq!((sizes.minimum, sizes.preferred, sizes.maximum), (4096, 16384, 65536));
        assert_eq!(dev.logical_block_size(), 4096);
        conforms(&dev);
        // A transfer larger than the maximum is split, not refused.
        let big = vec![0x5a; 300_000];
        dev.write_at(&big, 4096).unwrap();
        let mut back = vec![0; big.len()];
        dev.read_at(&mut back, 4096).unwrap();
        assert_eq!(back, big);
    }

    /// What nbdkit's log filter (next to the client) saw of the writes and
    /// flushes, as "Write offset=… count=… fua=…" and "Flush" (without the
    /// request ids, which every request takes).
    fn writes_seen(log: &std::path::Path) -> Vec<String> {
        let log = std::fs::read_to_string(log).unwrap();
        let mut seen = Vec::new();
        for line in log.lines() {
            for verb in ["Write", "Flush"] {
                if let Some((_, rest)) = line.split_once(&format!(" {verb} id=")) {
                    let (_, args) = rest.split_once(' ').unwrap_or((rest, ""));
                    let args = args.trim_end_matches("...").trim();
                    seen.push(format!("{verb} {args}").trim_end().to_owned());
                }
            }
        }
        seen
    }

    /// A FUA write is sent with `NBD_CMD_FLAG_FUA` where the server offers
    /// it, and as a write and a flush where it does not (nbdkit's fua
    /// filter hides it); a plain write is neither.
    #[test]
    fn fua_writes_are_flagged_or_flushed_as_the_server_offers() {
        for offers in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let log = dir.path().join("log");
            let logfile = format!("logfile={}", log.display());
            let len = LEN.to_string();
            let mut args = vec!["--filter=log"];
            if !offers {
                args.push("--filter=fua"); // fuamode=none: not advertised
            }
            args.extend(["memory", &len, &logfile]);
            let server = Daemon::nbdkit(&args);
            let dev = NbdDevice::open_uri(&server.uri(), true).unwrap();
            dev.write_at(&[1; 4096], 0).unwrap();
            dev.write_at_fua(&[2; 4096], 8192).unwrap();
            let mut back = [0; 4096];
            dev.read_at(&mut back, 8192).unwrap();
            assert_eq!(back, [2; 4096]);
            let seen = writes_seen(&log);
            let plain = "Write offset=0x0 count=0x1000 fua=0";
            let want: Vec<&str> = if offers {
                vec![plain, "Write offset=0x2000 count=0x1000 fua=1"]
            } else {
                vec![plain, "Write offset=0x2000 count=0x1000 fua=0", "Flush"]
            };
            assert_eq!(seen, want, "offers FUA: {offers}");
        }
    }

    #[test]
    fn a_read_only_export_is_refused_as_a_target_and_readable_as_a_source() {
        let server = Daemon::nbdkit(&["-r", "memory", &LEN.to_string()]);
        let err = NbdDevice::open_uri(&server.uri(), true).err().unwrap();
        assert!(err.to_string().contains("read-only export"), "{err}");
        let dev = NbdDevice::open_uri(&server.uri(), false).unwrap();
        let mut buf = [1; 512];
        dev.read_at(&mut buf, 0).unwrap();
        assert_eq!(buf, [0; 512]);
        assert!(dev.write_at(&buf, 0).is_err());
    }

    #[test]
    fn an_unknown_export_is_refused_with_the_servers_reason() {
        let dir = tempfile::tempdir().unwrap();
        let image = image(&dir);
        let server =
            Daemon::spawn("qemu-nbd", &["-f", "raw", "-k", "{sock}", "-x", "disk", &image]);
        let named = |name: &str| format!("nbd+unix:///{name}?socket={}", server.socket.display());
        let err = NbdDevice::open_uri(&named("no-such-export"), false).err().unwrap();
        assert!(err.to_string().contains("refused the export"), "{err}");
        assert_eq!(NbdDevice::open_uri(&named("disk"), false).unwrap().len(), LEN);
    }

    /// The server killed: the request fails with "connection lost" and an
    /// errno; nothing hangs. The server back: the next request reconnects
    /// and sees the data written before the loss.
    #[test]
    fn a_lost_server_fails_requests_and_is_reconnected_when_back() {
        use crate::{IoFailure, IoOperation, Side};
        let dir = tempfile::tempdir().unwrap();
        let file = format!("file={}", image(&dir));
        let mut server = Daemon::nbdkit(&["file", &file]);
        let dev = NbdDevice::open_uri(&server.uri(), true).unwrap();
        dev.write_at(&[7; 4096], 8192).unwrap();
        dev.flush().unwrap();

        server.kill();
        let err = dev.read_at(&mut [0; 4096], 8192).unwrap_err();
        assert!(err.to_string().contains("NBD connection lost"), "{err}");
        let failure = IoFailure::new(Side::Target, IoOperation::Read, 8192, 4096, &err);
        assert_ne!(failure.errno, 0, "{failure}");
        // Still gone: the reconnect attempt fails, with a reason.
        let err = dev.read_at(&mut [0; 4096], 8192).unwrap_err();
        assert!(err.to_string().contains("reconnecting failed"), "{err}");

        server.start();
        let mut back = [0; 4096];
        dev.read_at(&mut back, 8192).unwrap();
        assert_eq!(back, [7; 4096]);
    }
}
