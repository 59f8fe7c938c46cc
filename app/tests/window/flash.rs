//! A compressed image written from the window: Setup says what will happen
//! and enables Start; Start writes the image and reads the target back;
//! Done says identical only when the read-back hash matched, and names
//! the error of a corrupt archive.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use livemirror_core::device::{BlockDevice, DeviceId, FaultyDevice, OpenOptions};

use livemirror::gui::app::LiveMirrorApp;

use super::{TestOpener, app, image, no_disks, same_bytes, start_disabled, type_into, wait_for};

const MIB: u64 = 1 << 20;

/// A pattern image of `len` bytes and its zstd stream beside it.
fn zst_image(dir: &Path, len: u64) -> (PathBuf, PathBuf) {
    let img = image(dir, "os.img", len, 11);
    let zst = dir.join("os.img.zst");
    let st = std::process::Command::new("zstd")
        .args(["-q", "-f", "-o"])
        .arg(&zst)
        .arg(&img)
        .status()
        .expect("zstd is installed by scripts/test.sh");
    assert!(st.success());
    (img, zst)
}

fn flash_ended(app: &LiveMirrorApp) -> bool {
    app.flashing().is_some_and(|f| !f.running())
}

/// Types the pair, presses Start and waits for the flash's end.
fn flash_from_setup(h: &mut Harness<'_, LiveMirrorApp>, source: &Path, target: &Path) {
    type_into(h, "Source path", &source.display().to_string());
    type_into(h, "Target path", &target.display().to_string());
    assert!(!start_disabled(h), "Start is enabled for a compressed source");
    h.get_by_label("Start").click();
    h.run_steps(2);
    wait_for(h, "the flash to end", flash_ended);
}

#[test]
fn a_compressed_source_is_explained_and_start_is_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let (_, zst) = zst_image(dir.path(), 2 * MIB);
    let mut h = app(TestOpener { faulty: None }, no_disks);
    type_into(&mut h, "Source path", &zst.display().to_string());
    type_into(&mut h, "Target path", &dir.path().join("out.img").display().to_string());
    assert!(
        h.query_by_label_contains("A zstd-compressed image: it is decompressed as a stream")
            .is_some()
    );
    assert!(h.query_by_label_contains("A new raw image file will be created").is_some());
    assert!(h.query_by_label_contains("does not write compressed images").is_none());
    assert!(!start_disabled(&h));
}

#[test]
fn a_zst_image_onto_a_new_file_is_written_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let (img, zst) = zst_image(dir.path(), 6 * MIB);
    let out = dir.path().join("out.img");
    let mut h = app(TestOpener { faulty: None }, no_disks);
    flash_from_setup(&mut h, &zst, &out);
    assert!(h.query_by_label("Done").is_some());
    assert!(
        h.query_by_label_contains("Completed: the target is identical to the decompressed image")
            .is_some()
    );
    assert!(h.query_by_label_contains("verified: its read-back hash matches").is_some());
    assert!(h.query_by_label_contains("(6.0 MiB from ").is_some());
    assert!(h.query_by_label("Start another").is_some());
    assert!(same_bytes(&img, &out), "the target differs from the image");
    h.get_by_label("Start another").click();
    wait_for(&mut h, "Setup", |app| app.setup_paths().is_some());
}

#[test]
fn a_truncated_zst_image_fails_naming_the_error_and_is_not_called_identical() {
    let dir = tempfile::tempdir().unwrap();
    let (_, zst) = zst_image(dir.path(), 6 * MIB);
    let len = std::fs::metadata(&zst).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&zst).unwrap().set_len(len / 2).unwrap();
    let out = dir.path().join("out.img");
    let mut h = app(TestOpener { faulty: None }, no_disks);
    flash_from_setup(&mut h, &zst, &out);
    assert!(h.query_by_label("Done").is_some());
    assert!(h.query_by_label_contains("The zstd image is corrupt or truncated").is_some());
    assert!(h.query_by_label_contains("the partial new image was removed").is_some());
    assert!(h.query_by_label_contains("identical").is_none());
    assert!(h.query_by_label_contains("Completed").is_none());
    assert!(!out.exists(), "the partial image is removed");
    assert!(h.query_by_label("Start another").is_some());
}

/// A target whose writes from `from` on wait until [`Gate::open`]: the
/// flash is held mid-image, so the test sees it running and cancels it.
struct Gate {
    inner: Arc<dyn BlockDevice>,
    from: u64,
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

impl BlockDevice for Gate {
    fn len(&self) -> u64 {
        self.inner.len()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.inner.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        if offset >= self.from {
            let open = self.open.lock().unwrap();
            drop(self.opened.wait_while(open, |open| !*open).unwrap());
        }
        self.inner.write_at(buf, offset)
    }

    fn flush(&self) -> std::io::Result<()> {
        self.inner.flush()
    }

    fn id(&self) -> DeviceId {
        self.inner.id()
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[test]
fn a_flash_shows_its_progress_and_cancel_leaves_no_copy() {
    let dir = tempfile::tempdir().unwrap();
    let (_, zst) = zst_image(dir.path(), 16 * MIB);
    let disk = image(dir.path(), "disk.img", 16 * MIB, 0);
    let inner = Arc::new(OpenOptions::new().write(true).open(&disk).unwrap());
    let gate =
        Arc::new(Gate { inner, from: 4 * MIB, open: Mutex::new(false), opened: Condvar::new() });
    let faulty = Arc::new(FaultyDevice::new(gate.clone()));
    let mut h = app(TestOpener { faulty: Some((disk.clone(), faulty)) }, no_disks);
    type_into(&mut h, "Source path", &zst.display().to_string());
    type_into(&mut h, "Target path", &disk.display().to_string());
    h.get_by_label("Start").click();
    h.run_steps(2);
    // The first buffer is written; the next waits at the gate.
    wait_for(&mut h, "the first buffer", |app| {
        app.flashing().is_some_and(|f| f.progress().written >= 4 * MIB)
    });
    assert!(h.query_by_label("Writing").is_some());
    assert!(h.query_by_label_contains("compressed read, 4.0 MiB written").is_some());
    assert!(h.query_by_label("Complete").is_none() && h.query_by_label("Pause").is_none());
    h.get_by_label("Cancel").click();
    h.run();
    gate.open();
    wait_for(&mut h, "the flash to end", flash_ended);
    assert!(h.query_by_label_contains("Cancelled after").is_some());
    assert!(h.query_by_label_contains("what the target holds now is not a copy").is_some());
    assert!(h.query_by_label_contains("identical").is_none());
    assert!(disk.exists(), "an existing target is never removed");
}
