//! Real block devices, as loop devices over temporary files: size from
//! BLKGETSIZE64, zeroing with BLKZEROOUT, cloning onto a disk, and the
//! refusals that protect disks (itself through a loop device, mounted).
//!
//! Needs root and loop devices (as on CI); fails loudly without them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use livemirror_core::Error;
use livemirror_core::device::{BlockDevice, OpenOptions};
use livemirror_core::job::{
    self, Command as JobCommand, MirrorOptions, Outcome, Proof, check_pair,
};
use livemirror_core::live::LiveSource;
use livemirror_testkit::{image::qemu_img_identical, pattern};

const LEN: u64 = 32 << 20;

/// A loop device over `file`; detached on drop.
struct Loop(PathBuf);

impl Loop {
    fn new(file: &Path) -> Self {
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(file)
            .output()
            .expect("losetup (util-linux) must be installed");
        assert!(
            out.status.success(),
            "cannot attach a loop device (needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Loop(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

fn image(dir: &Path, name: &str, seed: u64) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, pattern(LEN as usize, seed)).unwrap();
    p
}

#[test]
fn a_loop_device_is_a_block_device_with_its_size_and_zeroing() {
    let dir = tempfile::tempdir().unwrap();
    let file = image(dir.path(), "disk.img", 1);
    let lo = Loop::new(&file);
    let dev = OpenOptions::new().write(true).open(&lo.0).unwrap();
    assert!(dev.is_block_device());
    assert_eq!(dev.len(), LEN);
    dev.write_zeroes(1 << 20, 3 << 20, true).unwrap();
    let mut buf = vec![1u8; 3 << 20];
    dev.read_at(&mut buf, 1 << 20).unwrap();
    assert!(buf.iter().all(|b| *b == 0));
    let mut edge = [0u8; 512];
    dev.read_at(&mut edge, (1 << 20) - 512).unwrap();
    assert_eq!(&edge[..], &pattern(LEN as usize, 1)[(1 << 20) - 512..1 << 20]);
    assert!(dev.write_at(&[0; 512], LEN).is_err(), "past the end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clone_onto_a_disk_is_identical() {
    let dir = tempfile::tempdir().unwrap();
    let src = image(dir.path(), "src.img", 2);
    let disk = image(dir.path(), "disk.img", 3);
    let lo = Loop::new(&disk);
    let source = OpenOptions::new().open(&src).unwrap();
    let target = OpenOptions::new().write(true).open(&lo.0).unwrap();
    let (job, _rx) =
        job::start(LiveSource::new(Arc::new(source)), Arc::new(target), MirrorOptions::default())
            .unwrap();
    job.watch().wait_for(|s| s.ready).await.unwrap();
    job.send(JobCommand::Complete).await.unwrap();
    assert_eq!(job.wait().await, Outcome::Completed { proof: Proof::Tracked });
    assert!(qemu_img_identical(&src, &lo.0));
}

#[test]
fn a_file_and_a_loop_device_of_it_are_the_same_device() {
    let dir = tempfile::tempdir().unwrap();
    let file = image(dir.path(), "disk.img", 4);
    let (a, b) = (Loop::new(&file), Loop::new(&file));
    let via_file = OpenOptions::new().open(&file).unwrap();
    let via_a = OpenOptions::new().write(true).open(&a.0).unwrap();
    let via_b = OpenOptions::new().write(true).open(&b.0).unwrap();
    assert!(matches!(check_pair(&via_file, &via_a), Err(Error::SameDevice { .. })));
    assert!(matches!(check_pair(&via_a, &via_file), Err(Error::SameDevice { .. })));
    assert!(matches!(check_pair(&via_a, &via_b), Err(Error::SameDevice { .. })));
    assert!(matches!(check_pair(&via_a, &via_a), Err(Error::SameDevice { .. })));
}

#[test]
fn a_mounted_disk_is_refused_as_a_target() {
    let dir = tempfile::tempdir().unwrap();
    let src = image(dir.path(), "src.img", 5);
    let disk = dir.path().join("fs.img");
    std::fs::File::create(&disk).unwrap().set_len(LEN).unwrap();
    let mkfs = Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&disk).status();
    assert!(mkfs.is_ok_and(|s| s.success()), "mkfs.ext4 (e2fsprogs) must work");
    let lo = Loop::new(&disk);
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount").arg(&lo.0).arg(&mnt).status();
    assert!(mounted.is_ok_and(|s| s.success()), "mount needs root");
    let source = OpenOptions::new().open(&src).unwrap();
    let target = OpenOptions::new().write(true).open(&lo.0).unwrap();
    let err = check_pair(&source, &target);
    let _ = Command::new("umount").arg(&mnt).status();
    match err {
        Err(e @ Error::TargetMounted { .. }) => {
            assert!(e.to_string().contains(mnt.to_str().unwrap()), "{e}")
        }
        other => panic!("expected TargetMounted, got {other:?}"),
    }
}
