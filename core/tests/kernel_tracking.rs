//! The kernel write tracker on real loop devices (Linux, as root: CI runs
//! as root, and a kernel without BPF fails these tests rather than skipping
//! them): exactly the chunks written, discarded or zeroed are drained;
//! a partition sees only its own writes, relative to its start; a busy ext4
//! filesystem loses no write, with and without a freeze.
#![cfg(target_os = "linux")]

use std::collections::BTreeSet;
use std::ops::Range;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use livemirror_core::buffer::AlignedBuf;
use livemirror_core::kernel::{
    DEFAULT_FREEZE_LIMIT, Drained, KernelTracker, TrackError, Unseen, freeze_all,
};
use livemirror_testkit::system::{Loop, Mount, Partition, device_id};
use livemirror_testkit::tools::run;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

fn attach(dev: &std::path::Path, granularity: u64) -> KernelTracker {
    KernelTracker::attach(&device_id(dev), granularity)
        .unwrap_or_else(|e| panic!("kernel tracking must work on this machine: {e}"))
}

/// Every range one drain yields.
fn drain_ranges(t: &KernelTracker) -> Vec<Range<u64>> {
    let mut ranges = Vec::new();
    assert_eq!(t.drain(&mut |r| ranges.push(r)), Drained::Exact);
    ranges
}

/// Drains into `set`; false when the tracker said it could not name every
/// chunk written (the kernel skipped it), which its contract allows: the
/// job then compares everything.
fn drain_into(t: &KernelTracker, set: &mut BTreeSet<u64>) -> bool {
    match t.drain(&mut |r| set.extend(r)) {
        Drained::Exact => true,
        Drained::All(why) => {
            eprintln!("the tracker said it saw not every write: {why}");
            false
        }
    }
}

fn write_direct(file: &std::fs::File, offset: u64, len: u64, seed: u64) {
    let data = AlignedBuf::copy_of(&livemirror_testkit::pattern(len as usize, seed));
    file.write_all_at(&data, offset).expect("O_DIRECT write");
}

#[test]
fn direct_writes_are_drained_exactly() {
    let disk = Loop::new(64 * MIB);
    let t = attach(&disk.dev, 64 * KIB);
    assert_eq!(t.chunks(), 1024);
    assert_eq!(drain_ranges(&t), vec![], "nothing wrote yet");

    // dd: 4 KiB at 100 KiB, inside chunk 1.
    let of = format!("of={}", disk.path());
    let dd =
        ["if=/dev/urandom", &of, "bs=4096", "count=1", "seek=25", "oflag=direct", "status=none"];
    run("dd", &dd);
    let f = disk.open_direct();
    write_direct(&f, 10 * 64 * KIB - 4 * KIB, 8 * KIB, 1); // straddles chunks 9 and 10
    write_direct(&f, 32 * MIB, MIB, 2); // chunks 512..528
    write_direct(&f, 64 * MIB - 4 * KIB, 4 * KIB, 3); // the last chunk
    t.barrier().expect("barrier");
    assert_eq!(drain_ranges(&t), vec![1..2, 9..11, 512..528, 1023..1024]);
    assert_eq!(drain_ranges(&t), vec![], "a drain takes what it reports");

    // Reads are not writes.
    let mut buf = AlignedBuf::new(MIB as usize);
    f.read_exact_at(&mut buf, 0).expect("read");
    t.barrier().expect("barrier");
    assert_eq!(drain_ranges(&t), vec![]);
}

#[test]
fn discards_and_write_zeroes_are_seen() {
    let disk = Loop::new(64 * MIB);
    let t = attach(&disk.dev, 64 * KIB);
    let f = disk.open_direct();
    write_direct(&f, 0, 16 * MIB, 4); // data to discard and zero
    t.barrier().expect("barrier");
    assert_eq!(drain_ranges(&t), vec![0..256]);

    run("blkdiscard", &["-o", "1M", "-l", "1M", disk.path()]);
    run("blkdiscard", &["-z", "-o", "4M", "-l", "128K", disk.path()]);
    run("fallocate", &["-z", "-o", "8M", "-l", "64K", disk.path()]);
    t.barrier().expect("barrier");
    assert_eq!(drain_ranges(&t), vec![16..32, 64..66, 128..129]);
}

#[test]
fn a_partition_sees_only_its_own_writes_relative_to_its_start() {
    let disk = Loop::new(64 * MIB);
    // 16 MiB from 8 MiB on.
    let part = Partition::new(&disk, 1, 8 * MIB / 512, 16 * MIB / 512);
    let t = attach(&part.dev, 4 * KIB);
    assert_eq!(t.chunks(), 4096);
    assert_eq!(drain_ranges(&t), vec![]);

    let whole = disk.open_direct();
    write_direct(&whole, 4 * MIB, 64 * KIB, 5); // before the partition
    write_direct(&whole, 30 * MIB, 64 * KIB, 6); // after it
    write_direct(&whole, 8 * MIB - 4 * KIB, 8 * KIB, 7); // across its start: chunk 0
    write_direct(&whole, 24 * MIB - 4 * KIB, 8 * KIB, 8); // across its end: chunk 4095
    let inside = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(&part.dev)
        .expect("open the partition");
    write_direct(&inside, MIB, 4 * KIB, 9); // chunk 256 of the partition
    t.barrier().expect("barrier");
    assert_eq!(drain_ranges(&t), vec![0..1, 256..257, 4095..4096]);
}

#[test]
fn a_request_too_long_to_mark_is_reported_unmarkable() {
    let disk = Loop::new(16 * MIB);
    // One word per request at most: 64 chunks of 4 KiB.
    let t =
        KernelTracker::attach_with_span_limit(&device_id(&disk.dev), 4 * KIB, 1).expect("attach");
    let f = disk.open_direct();
    write_direct(&f, 0, 64 * KIB, 10); // within one word
    t.barrier().expect("barrier");
    assert_eq!(drain_ranges(&t), vec![0..16]);
    write_direct(&f, MIB, MIB, 11); // 4 words
    t.barrier().expect("barrier");
    let mut ranges = Vec::new();
    assert_eq!(t.drain(&mut |r| ranges.push(r)), Drained::All(Unseen::Unmarkable));
    // The block layer may split the write; pieces within one word are
    // marked, and nothing outside the write is.
    assert!(ranges.iter().all(|r| r.start >= 256 && r.end <= 512), "{ranges:?}");
    assert_eq!(drain_ranges(&t), vec![], "the overflow was taken too");
}

#[test]
fn files_and_bad_granularities_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("image");
    std::fs::File::create(&file).unwrap().set_len(MIB).unwrap();
    assert!(matches!(
        KernelTracker::attach(&device_id(&file), 64 * KIB),
        Err(TrackError::NotABlockDevice)
    ));
    let disk = Loop::new(MIB);
    for g in [0, 256, 3 * 4096] {
        assert!(matches!(
            KernelTracker::attach(&device_id(&disk.dev), g),
            Err(TrackError::BadGranularity(_))
        ));
    }
}

#[test]
fn a_bio_based_device_is_refused() {
    // zram, like device-mapper and md, takes bios and makes no requests:
    // the tracepoint never sees its writes.
    let sys = std::path::Path::new("/sys/block/zram0/dev");
    let majmin = std::fs::read_to_string(sys)
        .unwrap_or_else(|e| panic!("this machine's kernel has zram0 ({}: {e})", sys.display()));
    let (major, minor) = majmin.trim().split_once(':').expect("major:minor");
    let disk = libc::makedev(major.parse().unwrap(), minor.parse().unwrap());
    let id = livemirror_core::device::DeviceId::Block { disk, start: 0, len: MIB, backing: None };
    match KernelTracker::attach(&id, 64 * KIB) {
        Err(e @ TrackError::NotRequestBased { .. }) => {
            assert!(e.to_string().contains("device-mapper"), "{e}")
        }
        other => panic!("zram0 must be refused as bio-based, got {:?}", other.err()),
    }
}

/// Set in the unprivileged child the test below starts: the device id
/// (dev_t:start:len) to attach to.
const UNPRIVILEGED_ENV: &str = "LIVEMIRROR_TEST_ATTACH_AS_NOBODY";

#[test]
fn an_unprivileged_attach_says_it_needs_root() {
    if let Ok(spec) = std::env::var(UNPRIVILEGED_ENV) {
        let n: Vec<u64> = spec.split(':').map(|v| v.parse().unwrap()).collect();
        let id = livemirror_core::device::DeviceId::Block {
            disk: n[0],
            start: n[1],
            len: n[2],
            backing: None,
        };
        match KernelTracker::attach(&id, 64 * KIB) {
            Err(e @ TrackError::NotPrivileged(_)) => println!("refused: {e}"),
            other => println!("unexpected: {:?}", other.err()),
        }
        return;
    }
    let disk = Loop::new(MIB);
    let livemirror_core::device::DeviceId::Block { disk: dev, start, len, .. } =
        device_id(&disk.dev)
    else {
        panic!("a loop device is a block device")
    };
    // A copy of this test binary that nobody may run, wherever the
    // checkout lives (root's home is closed to nobody).
    let dir = tempfile::tempdir().expect("temp dir");
    let exe = dir.path().join("kernel_tracking");
    std::fs::copy(std::env::current_exe().expect("test binary"), &exe).expect("copy");
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"])
        .arg(&exe)
        .args(["--exact", "an_unprivileged_attach_says_it_needs_root", "--nocapture"])
        .env(UNPRIVILEGED_ENV, format!("{dev}:{start}:{len}"))
        .output()
        .expect("setpriv (util-linux) must be installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let said = stdout.lines().find(|l| l.starts_with("refused: ") || l.starts_with("unexpected: "));
    let said = said.unwrap_or_else(|| {
        panic!("the child said nothing: {stdout} {}", String::from_utf8_lossy(&out.stderr))
    });
    assert!(said.starts_with("refused: ") && said.contains("needs root"), "{said}");
}

/// Reads the whole device with `O_DIRECT`: what is on the disk, not what a
/// page cache holds.
fn read_device(disk: &Loop, len: u64) -> AlignedBuf {
    let f = disk.open_direct();
    let mut buf = AlignedBuf::new(len as usize);
    f.read_exact_at(&mut buf, 0).expect("read the device");
    buf
}

/// Chunks whose bytes differ between two images.
fn differing(a: &[u8], b: &[u8], granularity: u64) -> BTreeSet<u64> {
    let g = granularity as usize;
    a.chunks(g)
        .zip(b.chunks(g))
        .enumerate()
        .filter(|(_, (x, y))| x != y)
        .map(|(i, _)| i as u64)
        .collect()
}

/// A writer on a mounted filesystem: creates, fsyncs, overwrites in place
/// and deletes files until `stop`, reporting each round on `progress`.
fn writer(
    dir: std::path::PathBuf,
    stop: Arc<AtomicBool>,
    rounds: Option<u64>,
    progress: std::sync::mpsc::Sender<u64>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let big = dir.join("big");
        let bigf = std::fs::File::create(&big).expect("big file");
        bigf.write_all_at(&livemirror_testkit::pattern(4 * MIB as usize, 99), 0).expect("fill big");
        bigf.sync_all().expect("fsync big");
        let mut round = 0u64;
        while !stop.load(Ordering::Relaxed) && rounds.is_none_or(|n| round < n) {
            let name = dir.join(format!("f{}", round % 40));
            let len = 4 * KIB as usize * (1 + (round as usize * 7) % 48);
            std::fs::write(&name, livemirror_testkit::pattern(len, round)).expect("write file");
            std::fs::File::open(&name).and_then(|f| f.sync_all()).expect("fsync file");
            let at = (round * 37 % 1000) * 4 * KIB;
            bigf.write_all_at(&livemirror_testkit::pattern(8 * KIB as usize, round + 1000), at)
                .expect("overwrite big");
            bigf.sync_data().expect("fdatasync big");
            if round % 5 == 4 {
                let _ = std::fs::remove_file(dir.join(format!("f{}", (round + 20) % 40)));
            }
            round += 1;
            if progress.send(round).is_err() {
                break;
            }
        }
    })
}

fn syncfs(path: &std::path::Path) {
    let dir = std::fs::File::open(path).expect("open mount point");
    // SAFETY: syncfs on an fd we own.
    assert_eq!(unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&dir)) }, 0, "syncfs");
}

#[test]
fn a_busy_ext4_loses_no_write() {
    const LEN: u64 = 128 * MIB;
    const G: u64 = 64 * KIB;
    let disk = Loop::new(LEN);
    let fs = Mount::ext4(disk.path());
    let t = attach(&disk.dev, G);
    t.drain(&mut |_| {});
    // Writes from here on are drained; the snapshot may already hold some
    // of them, which only makes the drained set larger than needed.
    let before = read_device(&disk, LEN);
    let mut drained = BTreeSet::new();
    let mut exact = true;

    let (tx, rx) = std::sync::mpsc::channel();
    let w = writer(fs.path().to_path_buf(), Arc::new(AtomicBool::new(false)), Some(150), tx);
    // Drain while it writes: after each of its rounds.
    for _round in rx {
        exact &= drain_into(&t, &mut drained);
    }
    w.join().expect("writer");
    syncfs(fs.path());
    t.barrier().expect("barrier");
    exact &= drain_into(&t, &mut drained);

    let after = read_device(&disk, LEN);
    // Anything still landing during that read is drained after it.
    syncfs(fs.path());
    t.barrier().expect("barrier");
    exact &= drain_into(&t, &mut drained);
    let changed = differing(&before, &after, G);
    assert!(changed.len() > 20, "the writer changed only {} chunks", changed.len());
    let lost: Vec<_> = changed.difference(&drained).collect();
    // A drain that said "not every write" is answered by a compare pass
    // (the job tests force one); otherwise the map must hold every change.
    assert!(!exact || lost.is_empty(), "changed but never drained (lost writes): {lost:?}");
}

#[test]
fn a_frozen_ext4_with_its_writer_running_is_consistent_and_fully_drained() {
    const LEN: u64 = 128 * MIB;
    const G: u64 = 64 * KIB;
    let disk = Loop::new(LEN);
    let fs = Mount::ext4(disk.path());
    let id = device_id(&disk.dev);
    let t = attach(&disk.dev, G);
    t.drain(&mut |_| {});
    let before = read_device(&disk, LEN);
    let mut drained = BTreeSet::new();
    let mut exact = true;

    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    let w = writer(fs.path().to_path_buf(), stop.clone(), None, tx);
    for round in rx.iter() {
        exact &= drain_into(&t, &mut drained);
        if round == 60 {
            break;
        }
    }
    // The lead's Complete: freeze with the writer still running, barrier,
    // drain; the device then holds the filesystem of one moment.
    let hold = freeze_all(&id, DEFAULT_FREEZE_LIMIT).expect("freeze");
    assert_eq!(hold.mountpoints(), [fs.path()]);
    t.barrier().expect("barrier");
    exact &= drain_into(&t, &mut drained);
    let frozen = read_device(&disk, LEN);
    let held = hold.thaw().expect("thaw");
    stop.store(true, Ordering::Relaxed);
    drop(rx); // the writer stops at its next round
    w.join().expect("writer");

    let changed = differing(&before, &frozen, G);
    assert!(changed.len() > 20, "the writer changed only {} chunks", changed.len());
    let lost: Vec<_> = changed.difference(&drained).collect();
    assert!(!exact || lost.is_empty(), "changed but never drained (lost writes): {lost:?}");
    // The frozen image is a clean filesystem.
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("frozen.img");
    std::fs::write(&image, &*frozen).unwrap();
    run("fsck.ext4", &["-fn", image.to_str().unwrap()]);
    eprintln!("held {held:?}, {} chunks changed, {} drained", changed.len(), drained.len());
}
