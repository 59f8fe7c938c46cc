//! The window driven as a person would, with no display: egui_kittest finds
//! widgets by their labels, clicks and types; the engine runs real jobs on
//! real image files (with a fault-injecting target where the test needs it),
//! and qemu-io writes through the NBD share as a VM would.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eframe::egui::accesskit::Role;
use eframe::egui::{Key, Modifiers, OutputCommand};
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use livemirror_core::Error;
use livemirror_core::device::{BlockDevice, Fault, FaultyDevice, Op, OpenOptions};

use livemirror::gui::Launch;
use livemirror::gui::app::{Env, LiveMirrorApp};
use livemirror::gui::engine::{FileOpener, Opener};
use livemirror::platform::disks::Disk;
use livemirror::platform::privileged::OpenError;
use livemirror::text::failure::byte_range;
use livemirror_core::Side;

// Resume, Discard, "update an earlier copy", Verify only and Repair.
#[path = "window/long_jobs.rs"]
mod long_jobs;

// Compressed images written from the window.
#[path = "window/flash.rs"]
mod flash;

const EIO: i32 = libc::EIO;
const MIB: u64 = 1 << 20;

/// Files as they are, except one path, which opens as the given faulty device.
struct TestOpener {
    faulty: Option<(PathBuf, Arc<FaultyDevice>)>,
}

impl Opener for TestOpener {
    fn open(&self, path: &Path, write: bool) -> Result<Arc<dyn BlockDevice>, Error> {
        match &self.faulty {
            Some((p, dev)) if p == path => Ok(dev.clone()),
            _ => FileOpener.open(path, write),
        }
    }

    fn open_for_job(
        &self,
        path: &Path,
        opts: OpenOptions,
    ) -> Result<Arc<dyn BlockDevice>, OpenError> {
        match &self.faulty {
            Some((p, dev)) if p == path => Ok(dev.clone()),
            _ => FileOpener.open_for_job(path, opts),
        }
    }
}

fn app(opener: TestOpener, list_disks: fn() -> Vec<Disk>) -> Harness<'static, LiveMirrorApp> {
    app_with(opener, list_disks, [1100.0, 800.0], None)
}

/// The log panel is fed through `tracing`: the app's panel layer, as
/// `main` installs it, once for this test process.
fn log_panel_installed() {
    use tracing_subscriber::layer::SubscriberExt;
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let subscriber = tracing_subscriber::registry().with(livemirror::logs::panel::layer());
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    });
}

/// The app at a window `size`, remembering its settings in `settings_path`.
fn app_with(
    opener: impl Opener + 'static,
    list_disks: fn() -> Vec<Disk>,
    size: [f32; 2],
    settings_path: Option<PathBuf>,
) -> Harness<'static, LiveMirrorApp> {
    log_panel_installed();
    let mut h = Harness::builder().with_size(size).build_eframe(move |cc| {
        // No desktop here: the window's own file browser.
        let env = Env {
            opener: Arc::new(opener),
            list_disks,
            settings_path,
            system_dialog: || false,
            state_dir: None,
        };
        let launch = Launch::Setup { source: None, target: None };
        LiveMirrorApp::new(&cc.egui_ctx, env, launch).expect("engine starts")
    });
    wait_for(&mut h, "the disk list", |app| !app.checking());
    h
}

fn no_disks() -> Vec<Disk> {
    Vec::new()
}

/// An image of `len` bytes: random data when `seed` is not 0, else a hole.
fn image(dir: &Path, name: &str, len: u64, seed: u64) -> PathBuf {
    let path = dir.join(name);
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(len).unwrap();
    if seed != 0 {
        let data = livemirror_testkit::pattern(len as usize, seed).into_iter().map(|b| b | 1);
        std::fs::write(&path, data.collect::<Vec<u8>>()).unwrap();
    }
    path
}

/// Types into a field, then waits for Setup's check of what was typed.
fn type_into(h: &mut Harness<'_, LiveMirrorApp>, label: &str, text: &str) {
    h.get_by_role_and_label(Role::TextInput, label).click();
    h.run();
    h.get_by_role_and_label(Role::TextInput, label).type_text(text);
    h.run();
    wait_for(h, "the pair's check", |app| !app.checking());
}

fn start_disabled(h: &Harness<'_, LiveMirrorApp>) -> bool {
    h.get_by_role_and_label(Role::Button, "Start").accesskit_node().is_disabled()
}

/// Steps the UI until `done` holds; a generous deadline only turns a hang
/// into a failure message.
fn wait_for(h: &mut Harness<'_, LiveMirrorApp>, what: &str, done: impl Fn(&LiveMirrorApp) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done(h.state()) {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        h.step();
        std::thread::sleep(Duration::from_millis(10));
    }
    h.step();
    h.step();
}

fn status(app: &LiveMirrorApp) -> Option<livemirror_core::job::JobStatus> {
    app.session().map(|s| s.job.status())
}

fn ready(app: &LiveMirrorApp) -> bool {
    status(app).is_some_and(|s| s.state.is_ready())
}

fn ended(app: &LiveMirrorApp) -> bool {
    app.session().is_some_and(|s| s.ended.is_some())
}

fn asking(app: &LiveMirrorApp) -> bool {
    status(app).is_some_and(|s| s.pending_error.is_some())
}

fn same_bytes(a: &Path, b: &Path) -> bool {
    std::fs::read(a).unwrap() == std::fs::read(b).unwrap()
}

/// Types both paths, picks "stop (ask)" for target errors, presses Start.
fn set_up(
    h: &mut Harness<'_, LiveMirrorApp>,
    source: &Path,
    target: &Path,
    ask_on_target_error: bool,
) {
    type_into(h, "Source path", &source.display().to_string());
    type_into(h, "Target path", &target.display().to_string());
    if ask_on_target_error {
        h.get_by_role_and_label(Role::ComboBox, "On a target error").click();
        h.run();
        h.get_by_label("stop (ask)").click();
        h.run();
    }
    assert!(!start_disabled(h), "Start should be enabled for a valid pair");
    h.get_by_label("Start").click();
    h.run_steps(2);
}

fn complete_and_wait(h: &mut Harness<'_, LiveMirrorApp>) {
    h.get_by_label("Complete").click();
    wait_for(h, "the job to complete", ended);
}

#[test]
fn clone_two_images_from_setup_to_done() {
    let dir = tempfile::tempdir().unwrap();
    let src = image(dir.path(), "src.img", 6 * MIB, 7);
    let dst = image(dir.path(), "dst.img", 6 * MIB, 0);
    let mut h = app(TestOpener { faulty: None }, no_disks);
    set_up(&mut h, &src, &dst, false);
    wait_for(&mut h, "Ready", ready);
    // Nobody shares the source: a read lease shows nobody else opened it
    // for writing, and the banner says that, not "still mirroring".
    assert!(
        h.query_by_label_contains("In sync and flushed — no other program has opened the source")
            .is_some()
    );
    assert!(h.query_by_label_contains("still mirroring").is_none());
    complete_and_wait(&mut h);
    assert!(h.query_by_label("Done").is_some());
    assert!(h.query_by_label_contains("Completed: the target is identical").is_some());
    assert!(h.query_by_label("Start another").is_some());
    assert!(same_bytes(&src, &dst), "target differs from source");
}

#[test]
fn a_new_image_target_is_created_at_start_with_the_source_size() {
    let dir = tempfile::tempdir().unwrap();
    let src = image(dir.path(), "src.img", 3 * MIB, 11);
    let dst = dir.path().join("new.img");
    let mut h = app(TestOpener { faulty: None }, no_disks);
    type_into(&mut h, "Source path", &src.display().to_string());
    type_into(&mut h, "Target path", &dst.display().to_string());
    assert!(h.query_by_label_contains("A new image file will be created").is_some());
    assert!(!dst.exists(), "created before Start");
    h.get_by_label("Start").click();
    wait_for(&mut h, "Ready", ready);
    complete_and_wait(&mut h);
    assert!(same_bytes(&src, &dst));
}

/// A target whose writes fail at 3 MiB, with "stop (ask)" for target errors.
fn faulty_setup(
    fault: Fault,
) -> (tempfile::TempDir, PathBuf, PathBuf, Arc<FaultyDevice>, Harness<'static, LiveMirrorApp>) {
    let dir = tempfile::tempdir().unwrap();
    let src = image(dir.path(), "src.img", 8 * MIB, 3);
    let dst = image(dir.path(), "dst.img", 8 * MIB, 0);
    let file = OpenOptions::new().write(true).open(&dst).unwrap();
    let faulty = Arc::new(FaultyDevice::new(Arc::new(file)));
    faulty.inject(fault);
    let opener = TestOpener { faulty: Some((dst.clone(), faulty.clone())) };
    let mut h = app(opener, no_disks);
    set_up(&mut h, &src, &dst, true);
    wait_for(&mut h, "the error prompt", asking);
    (dir, src, dst, faulty, h)
}

const BAD: std::ops::Range<u64> = 3 * MIB..3 * MIB + 4096;

/// The prompt names the target, the write and the failing range.
fn assert_prompt(h: &Harness<'_, LiveMirrorApp>) {
    let f = status(h.state()).and_then(|s| s.pending_error).unwrap();
    assert_eq!(f.side, Side::Target);
    assert!(f.offset <= BAD.start && BAD.start < f.offset + f.len, "{f:?}");
    assert!(h.query_by_label("The target could not be written").is_some());
    assert!(h.query_by_label(&byte_range(&f)).is_some(), "range {}", byte_range(&f));
    // Its OS error, as the prompt's own line (the log says it too).
    assert!(h.query_by_label("Input/output error (errno 5)").is_some());
}

#[test]
fn error_prompt_retry_after_the_fault_clears_ends_identical() {
    let (_dir, src, dst, faulty, mut h) = faulty_setup(Fault::persistent(Op::Write, BAD, EIO));
    assert_prompt(&h);
    faulty.clear();
    h.get_by_label("Retry").click();
    wait_for(&mut h, "Ready", ready);
    complete_and_wait(&mut h);
    assert!(h.query_by_label_contains("Completed").is_some());
    assert!(same_bytes(&src, &dst));
}

#[test]
fn error_prompt_ignore_goes_on() {
    let (_dir, src, dst, _faulty, mut h) = faulty_setup(Fault::times(Op::Write, BAD, EIO, 1));
    assert_prompt(&h);
    h.get_by_label("Ignore").click();
    // The fault fired once: the job must go on to Ready without asking again.
    wait_for(&mut h, "Ready", ready);
    assert!(!asking(h.state()), "still asking after Ignore");
    assert!(status(h.state()).unwrap().errors >= 1);
    complete_and_wait(&mut h);
    assert!(h.query_by_label("1 left to be copied again later, as you chose").is_some());
    assert!(same_bytes(&src, &dst));
}

#[test]
fn error_prompt_stop_ends_the_job_with_an_incomplete_target() {
    let (_dir, _src, _dst, _faulty, mut h) = faulty_setup(Fault::persistent(Op::Write, BAD, EIO));
    h.get_by_label("Stop").click();
    wait_for(&mut h, "the job to end", ended);
    assert!(h.query_by_label("Done").is_some());
    assert!(h.query_by_label_contains("Failed: stopped after an error").is_some());
    assert!(h.query_by_label_contains("the target is incomplete — do not use it.").is_some());
    assert!(h.query_by_label("Complete").is_none());
    // Counted by what became of it: stopped, not "retried or ignored".
    assert!(h.query_by_label("1 stopped the job, as you chose").is_some());
}

#[test]
fn start_is_disabled_for_the_same_file_twice() {
    let dir = tempfile::tempdir().unwrap();
    let src = image(dir.path(), "src.img", MIB, 5);
    let mut h = app(TestOpener { faulty: None }, no_disks);
    type_into(&mut h, "Source path", &src.display().to_string());
    type_into(&mut h, "Target path", &src.display().to_string());
    assert!(start_disabled(&h));
    assert!(h.query_by_label_contains("cannot be mirrored into itself").is_some());
}

#[test]
fn start_is_disabled_when_a_smaller_target_cannot_take_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let src = image(dir.path(), "src.img", 2 * MIB, 5);
    let dst = image(dir.path(), "dst.img", MIB, 0);
    let mut h = app(TestOpener { faulty: None }, no_disks);
    type_into(&mut h, "Source path", &src.display().to_string());
    type_into(&mut h, "Target path", &dst.display().to_string());
    assert!(start_disabled(&h));
    assert!(
        h.query_by_label_contains("The target (1.0 MiB) is smaller than the source (2.0 MiB) and cannot take it: the source has no partition table")
            .is_some()
    );
}

fn two_disks() -> Vec<Disk> {
    let disk = |name: &str| Disk {
        path: PathBuf::from("/dev").join(name),
        name: name.into(),
        model: "Test Disk".into(),
        size: 8 << 30,
        bus: "USB".into(),
        removable: true,
        read_only: false,
        mounts: vec![],
        system: false,
    };
    vec![disk("sdx"), disk("sdy")]
}

#[test]
fn no_target_is_ever_preselected() {
    let mut h = app(TestOpener { faulty: None }, two_disks);
    h.run();
    assert!(start_disabled(&h));
    let target = h.get_by_role_and_label(Role::TextInput, "Target path");
    assert_eq!(target.value().unwrap_or_default(), "");
    // Choosing a source (from the disk list) still leaves the target empty.
    h.get_all_by_label("sdx  Test Disk  8.0 GiB  USB").next().unwrap().click();
    h.run();
    assert_eq!(h.state().setup_paths(), Some(("/dev/sdx".into(), String::new())));
    assert!(h.query_by_label("Choose a target: nothing is selected for you.").is_some());
    assert!(start_disabled(&h));
}

/// Replaces a text field's contents, as select-all and typing would,
/// then waits for Setup's check of what was typed.
fn replace_text(h: &mut Harness<'_, LiveMirrorApp>, label: &str, text: &str) {
    replace_text_now(h, label, text);
    wait_for(h, "the pair's check", |app| !app.checking());
}

/// Replaces a text field's contents, without waiting for anything.
fn replace_text_now(h: &mut Harness<'_, LiveMirrorApp>, label: &str, text: &str) {
    h.get_by_role_and_label(Role::TextInput, label).click();
    h.run();
    h.key_press_modifiers(Modifiers::COMMAND, Key::A);
    h.run();
    h.get_by_role_and_label(Role::TextInput, label).type_text(text);
    h.run();
}

/// Ticks "Share the source over NBD" and sets its endpoint.
fn share_at(h: &mut Harness<'_, LiveMirrorApp>, endpoint: &str) {
    h.get_by_role_and_label(Role::CheckBox, "Share the source over NBD while mirroring").click();
    h.run();
    replace_text(h, "NBD endpoint", endpoint);
}

#[test]
fn a_shared_source_takes_nbd_writes_that_reach_the_copy() {
    let dir = tempfile::tempdir().unwrap();
    let src = image(dir.path(), "src.img", 6 * MIB, 13);
    let dst = image(dir.path(), "dst.img", 6 * MIB, 0);
    let socket = dir.path().join("share.sock");
    let mut h = app(TestOpener { faulty: None }, no_disks);
    type_into(&mut h, "Source path", &src.display().to_string());
    type_into(&mut h, "Target path", &dst.display().to_string());
    share_at(&mut h, &format!("unix:{}", socket.display()));
    h.get_by_label("Start").click();
    wait_for(&mut h, "Ready", ready);

    let uri = format!("nbd+unix:///?socket={}", socket.display());
    assert!(h.query_by_label(&format!("Source shared at {uri}")).is_some());
    h.get_by_label("Copy").click();
    h.step();
    assert!(h.output().platform_output.commands.contains(&OutputCommand::CopyText(uri.clone())));
    // A VM's write while the job mirrors: it lands on the source and is mirrored.
    livemirror_testkit::tools::qemu_io(&uri, &["write -P 0xab 0 64k"]);
    complete_and_wait(&mut h);
    assert!(h.query_by_label_contains("Completed: the target is identical").is_some());
    assert!(h.query_by_label("— the share now serves the copy").is_some());
    let copy = std::fs::read(&dst).unwrap();
    assert!(copy[..64 << 10].iter().all(|&b| b == 0xab), "the NBD write is not in the copy");
    assert!(same_bytes(&src, &dst), "target differs from source");
}

#[test]
fn start_is_disabled_for_an_unusable_share_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let src = image(dir.path(), "src.img", MIB, 5);
    let dst = image(dir.path(), "dst.img", MIB, 0);
    let mut h = app(TestOpener { faulty: None }, no_disks);
    type_into(&mut h, "Source path", &src.display().to_string());
    type_into(&mut h, "Target path", &dst.display().to_string());
    assert!(!start_disabled(&h));
    share_at(&mut h, "nonsense");
    assert!(start_disabled(&h));
    assert!(
        h.query_by_label_contains("NBD endpoint: \"nonsense\" is not unix:PATH or HOST:PORT")
            .is_some()
    );
    replace_text(&mut h, "NBD endpoint", "0.0.0.0:10809");
    assert!(start_disabled(&h));
    assert!(h.query_by_label_contains("0.0.0.0 is not this computer").is_some());
    replace_text(&mut h, "NBD endpoint", "127.0.0.1:10809");
    assert!(!start_disabled(&h));
    assert!(h.query_by_label("Clients will connect to nbd://127.0.0.1:10809").is_some());
}

#[test]
fn a_share_that_cannot_bind_is_a_start_error_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let src = image(dir.path(), "src.img", MIB, 5);
    let dst = dir.path().join("new.img");
    let taken = dir.path().join("taken");
    std::fs::write(&taken, b"not a socket").unwrap();
    let mut h = app(TestOpener { faulty: None }, no_disks);
    type_into(&mut h, "Source path", &src.display().to_string());
    type_into(&mut h, "Target path", &dst.display().to_string());
    share_at(&mut h, &format!("unix:{}", taken.display()));
    h.get_by_label("Start").click();
    h.step();
    wait_for(&mut h, "the start to fail", |app| app.setup_paths().is_some() && !app.starting());
    assert!(
        h.query_by_label_contains("Could not start: cannot share the source at unix:").is_some()
    );
    assert!(h.query_by_label_contains("already exists").is_some());
    assert!(!dst.exists(), "the target was created although the share could not bind");
    assert_eq!(std::fs::read(&taken).unwrap(), b"not a socket");
}

/// Steps the UI until a label containing `text` shows.
fn wait_for_label(h: &mut Harness<'_, LiveMirrorApp>, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while h.query_by_label_contains(text).is_none() {
        assert!(Instant::now() < deadline, "gave up waiting for {text:?}");
        h.step();
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_larger_target_says_how_it_compares_and_can_grow_the_last_partition() {
    use livemirror_testkit::disk::{assert_sgdisk_valid, gpt_image, partitions};
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.img");
    let parts = gpt_image(&src, 16 * MIB, &[4, 6]);
    let dst = image(dir.path(), "dst.img", 32 * MIB, 0);
    let mut h = app(TestOpener { faulty: None }, no_disks);
    type_into(&mut h, "Source path", &src.display().to_string());
    type_into(&mut h, "Target path", &dst.display().to_string());
    assert!(
        h.query_by_label(
            "The target is larger by 16.0 MiB: the copy uses the first 16.0 MiB (the rest is left as it is)."
        )
        .is_some()
    );
    h.get_by_label("Grow the last partition to the end of the target").click();
    h.run();
    assert!(!start_disabled(&h));
    h.get_by_label("Start").click();
    h.run_steps(2);
    wait_for(&mut h, "Ready", ready);
    complete_and_wait(&mut h);
    assert!(
        h.query_by_label_contains(
            "Completed: the target is identical to the source (every write was tracked) — in the target's first 16.0 MiB."
        )
        .is_some()
    );
    wait_for_label(&mut h, "GPT rewritten for the target's size");
    // Verified once the table is rewritten, without being asked.
    wait_for_label(&mut h, "identical — compared GPT table by meaning, partition 1 ");
    assert_sgdisk_valid(&dst);
    let grown = partitions(&dst);
    assert_eq!((grown[0], grown[1].start, grown[1].end()), (parts[0], parts[1].start, 31 * MIB));
}

#[test]
fn a_smaller_target_that_fits_is_accepted_and_one_that_does_not_is_explained() {
    use livemirror_testkit::disk::gpt_image;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.img");
    gpt_image(&src, 32 * MIB, &[4, 6]);
    let fits = image(dir.path(), "fits.img", 16 * MIB, 0);
    let short = image(dir.path(), "short.img", 8 * MIB, 0);
    let mut h = app(TestOpener { faulty: None }, no_disks);
    type_into(&mut h, "Source path", &src.display().to_string());
    type_into(&mut h, "Target path", &fits.display().to_string());
    assert!(
        h.query_by_label("The target is smaller: fits — partitions end at 11.0 MiB.").is_some()
    );
    assert!(!start_disabled(&h));
    replace_text(&mut h, "Target path", &short.display().to_string());
    assert!(start_disabled(&h));
    assert!(
        h.query_by_label_contains(
            "The target (8.0 MiB) is smaller than the source (32.0 MiB) and cannot take it: partition 2 ends at 11.0 MiB; the target has 8.0 MiB"
        )
        .is_some()
    );
}

/// A mounted disk as the source, as the window run as root has it (one
/// that is not root asks its helper through pkexec: the same job, tested
/// through `clone` in tests/kernel_clone.rs): Setup says kernel tracking
/// and the freeze, Running names the tracking, Ready the expected hold,
/// Done how long writers were held; the copy, made with a writer running
/// until Complete, is a clean filesystem holding every fsynced file.
#[cfg(target_os = "linux")]
#[test]
fn a_mounted_disk_as_source_is_kernel_tracked_and_done_says_how_long_writers_were_held() {
    use livemirror_testkit::system::{Loop, Mount, Writer, assert_durable_files};
    use livemirror_testkit::tools::run;
    let disk = Loop::new(64 * MIB);
    let fs = Mount::ext4(disk.path());
    let writer = Writer::start(fs.path());
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("copy.img");
    let mut h = app(TestOpener { faulty: None }, no_disks);
    type_into(&mut h, "Source path", disk.path());
    type_into(&mut h, "Target path", &target.display().to_string());
    let said =
        "Kernel tracking: every write is seen; Complete freezes its filesystems for a moment";
    assert!(h.query_by_label_contains(said).is_some(), "Setup names the tracking");
    h.get_by_label("Start").click();
    h.run_steps(2);
    wait_for(&mut h, "Ready", ready);
    assert_eq!(status(h.state()).unwrap().tracking, livemirror_core::job::Tracking::Kernel);
    assert!(h.query_by_label_contains(said).is_some(), "Running names the tracking");
    assert!(h.query_by_label_contains("In sync and flushed — still mirroring").is_some());
    assert!(h.query_by_label_contains("plus what its filesystems write out when frozen").is_some());
    let durable = writer.durable(10);
    complete_and_wait(&mut h);
    writer.stop();
    assert!(h.query_by_label_contains("Completed: the target is identical").is_some());
    let held = status(h.state()).unwrap().held_ms.expect("a hold was reported");
    assert!(h.query_by_label("Writers held").is_some());
    assert!(h.query_by_label_contains(&format!("{held} ms — the source's filesystems")).is_some());
    drop(h);
    run("fsck.ext4", &["-n", "-f", target.to_str().unwrap()]);
    assert_durable_files(&target, &durable);
}

/// An unmounted disk as the source: the kernel sees its writes, but there
/// is nothing to freeze, and Setup says to stop its writers.
#[cfg(target_os = "linux")]
#[test]
fn an_unmounted_disk_as_source_says_nothing_can_be_frozen() {
    let disk = livemirror_testkit::system::Loop::new(16 * MIB);
    let dir = tempfile::tempdir().unwrap();
    let mut h = app(TestOpener { faulty: None }, no_disks);
    type_into(&mut h, "Source path", disk.path());
    type_into(&mut h, "Target path", &dir.path().join("copy.img").display().to_string());
    assert!(h.query_by_label_contains("Nothing is mounted from this disk").is_some());
    assert!(h.query_by_label_contains("Complete freezes").is_none());
}

/// Settings remembered in a file: the given mirror options, defaults else.
fn settings_file(dir: &Path, options: livemirror_core::job::MirrorOptions) -> PathBuf {
    let path = dir.join("settings.json");
    let settings = livemirror::gui::settings::Settings { options, ..Default::default() };
    settings.save(&path).unwrap();
    path
}

/// The first false claim: a file cloned without the share, written
/// directly (qemu-io, as any other program would) once Ready. With the
/// job's final comparison, that write is found and copied, and only then
/// is the target called identical; without it, the Done screen's own
/// verification finds the difference and the headline says so.
#[test]
fn a_direct_write_to_an_untracked_source_is_not_called_identical() {
    use livemirror_core::job::MirrorOptions;
    use livemirror_testkit::tools::qemu_io;
    for final_comparison in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let src = image(dir.path(), "src.img", 8 * MIB, 21);
        let dst = image(dir.path(), "dst.img", 8 * MIB, 0);
        let options = MirrorOptions { verify: Some(final_comparison), ..Default::default() };
        let settings = settings_file(dir.path(), options);
        let mut h =
            app_with(TestOpener { faulty: None }, no_disks, [1100.0, 800.0], Some(settings));
        set_up(&mut h, &src, &dst, false);
        wait_for(&mut h, "Ready", ready);
        assert!(h.query_by_label_contains("Read lease: no other program has the image").is_some());
        // qemu-io's open breaks the lease (waiting for the job to let go):
        // the window then says the source is not tracked.
        qemu_io(src.to_str().unwrap(), &["write -P 0x77 4M 64k"]);
        wait_for_label(&mut h, "Not tracked: writes made to the source");
        complete_and_wait(&mut h);
        wait_for(&mut h, "the verification", |app| !app.verifying());
        let identical = same_bytes(&src, &dst);
        assert_eq!(identical, final_comparison, "the final comparison copies the write");
        let said = h.query_all_by_label_contains("identical to the source").count() > 0;
        assert_eq!(said, identical, "called identical: {said}, bytes identical: {identical}");
        if !identical {
            assert!(
                h.query_by_label_contains(
                    "Completed, but the target DIFFERS from the source from byte 4194304 (verified)"
                )
                .is_some()
            );
            assert!(h.query_by_label("DIFFERENT from byte 4194304").is_some());
        } else {
            assert!(
                h.query_by_label_contains("(verified: compared byte for byte after the job ended)")
                    .is_some()
            );
        }
    }
}

/// At 800×600 the Ready banner wraps and Complete stays in the action bar,
/// visible and clickable.
#[test]
fn complete_is_clickable_at_800x600() {
    let dir = tempfile::tempdir().unwrap();
    let src = image(dir.path(), "src.img", 6 * MIB, 9);
    let dst = image(dir.path(), "dst.img", 6 * MIB, 0);
    let mut h = app_with(TestOpener { faulty: None }, no_disks, [800.0, 600.0], None);
    type_into(&mut h, "Source path", &src.display().to_string());
    type_into(&mut h, "Target path", &dst.display().to_string());
    let screen = eframe::egui::Rect::from_min_size(
        eframe::egui::Pos2::ZERO,
        eframe::egui::vec2(800.0, 600.0),
    );
    let start = h.get_by_label("Start").rect();
    assert!(screen.contains_rect(start), "Start at {start:?} is off the 800×600 window");
    h.get_by_label("Start").click();
    h.run_steps(2);
    wait_for(&mut h, "Ready", ready);
    let complete = h.get_by_label("Complete").rect();
    assert!(screen.contains_rect(complete), "Complete at {complete:?} is off the window");
    assert!(!h.get_by_label("Complete").accesskit_node().is_disabled());
    h.get_by_label("Complete").click();
    wait_for(&mut h, "the job to complete", ended);
    assert!(matches!(
        status(h.state()).unwrap().outcome,
        Some(livemirror_core::job::Outcome::Completed { .. })
    ));
    assert!(same_bytes(&src, &dst));
}

/// Steps the UI until `path` no longer exists.
fn wait_gone(h: &mut Harness<'_, LiveMirrorApp>, path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while path.exists() {
        assert!(Instant::now() < deadline, "{} is still there", path.display());
        h.step();
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// After Complete the share serves the copy; Start another keeps it
/// serving (asking first while a client is connected), and it stops only
/// when the user says so — with a warning while clients are connected.
#[test]
fn the_share_keeps_serving_after_start_another_until_stopped() {
    use livemirror_testkit::raw::RawClient;
    use livemirror_testkit::tools::qemu_io;
    let dir = tempfile::tempdir().unwrap();
    let src = image(dir.path(), "src.img", 6 * MIB, 17);
    let dst = image(dir.path(), "dst.img", 6 * MIB, 0);
    let socket = dir.path().join("share.sock");
    let uri = format!("nbd+unix:///?socket={}", socket.display());
    let mut h = app(TestOpener { faulty: None }, no_disks);
    type_into(&mut h, "Source path", &src.display().to_string());
    type_into(&mut h, "Target path", &dst.display().to_string());
    share_at(&mut h, &format!("unix:{}", socket.display()));
    h.get_by_label("Start").click();
    wait_for(&mut h, "Ready", ready);
    complete_and_wait(&mut h);
    assert!(h.query_by_label_contains("Completed: the target is identical").is_some());

    // A connected client (a VM using the copy): Start another asks.
    let (client, _) = RawClient::go(&socket, false).unwrap();
    wait_for(&mut h, "the client to be counted", |app| app.share_clients() == 1);
    h.get_by_label("Start another").click();
    h.run();
    assert!(h.query_by_label_contains("1 client is connected to the share").is_some());
    h.get_by_label("Keep sharing and start another").click();
    h.run();
    assert!(h.state().setup_paths().is_some(), "back on Setup");
    let still = format!("Still sharing the copy {} at {uri} — 1 client connected", dst.display());
    assert!(h.query_by_label_contains(&still).is_some(), "Setup says the share still serves");

    // It still serves the copy: a write through it lands in the target only.
    qemu_io(&uri, &["write -P 0xcd 1M 64k"]);
    assert!(std::fs::read(&dst).unwrap()[MIB as usize..][..64 << 10].iter().all(|&b| b == 0xcd));
    assert!(!std::fs::read(&src).unwrap()[MIB as usize..][..64 << 10].iter().all(|&b| b == 0xcd));

    // Stopping it warns while the client is connected; "Keep sharing" keeps it.
    h.get_by_label("Stop sharing").click();
    h.run();
    assert!(h.query_by_label_contains("1 client is connected to the share").is_some());
    h.get_by_label("Keep sharing").click();
    h.run();
    assert!(socket.exists());
    drop(client);
    wait_for(&mut h, "the client to leave", |app| app.share_clients() == 0);
    h.get_by_label("Stop sharing").click();
    h.run();
    wait_gone(&mut h, &socket);
    assert!(h.query_by_label_contains("Still sharing").is_none());
}

/// Closing the window while a copy runs is held for a question that says
/// what the target will be; "Keep running" goes on, "Cancel the job and
/// quit" cancels, then closes.
#[test]
fn closing_during_a_copy_asks() {
    use eframe::egui::{ViewportCommand, ViewportEvent, ViewportId};
    use livemirror_core::job::{MirrorOptions, Outcome};
    let dir = tempfile::tempdir().unwrap();
    let src = image(dir.path(), "src.img", 64 * MIB, 5);
    let dst = image(dir.path(), "dst.img", 64 * MIB, 0);
    // 1 MiB/s: the copy is still running when the window is closed.
    let settings = settings_file(dir.path(), MirrorOptions { speed: MIB, ..Default::default() });
    let mut h = app_with(TestOpener { faulty: None }, no_disks, [1100.0, 800.0], Some(settings));
    set_up(&mut h, &src, &dst, false);
    wait_for(&mut h, "the copy to start", |app| status(app).is_some());
    let close = |h: &mut Harness<'_, LiveMirrorApp>| {
        h.input_mut()
            .viewports
            .entry(ViewportId::ROOT)
            .or_default()
            .events
            .push(ViewportEvent::Close);
        h.step();
    };
    let commands = |h: &Harness<'_, LiveMirrorApp>| {
        h.output()
            .viewport_output
            .get(&ViewportId::ROOT)
            .map(|v| v.commands.clone())
            .unwrap_or_default()
    };
    close(&mut h);
    assert!(commands(&h).contains(&ViewportCommand::CancelClose), "the close went through");
    h.step();
    assert!(h.query_by_label("Quit while the job runs?").is_some());
    assert!(h.query_by_label_contains("it is left INCOMPLETE and is not a usable copy").is_some());
    h.get_by_label("Keep running").click();
    h.run_steps(2);
    assert!(h.query_by_label("Quit while the job runs?").is_none());
    assert!(!ended(h.state()), "Keep running keeps it running");

    close(&mut h);
    h.step();
    h.get_by_label("Cancel the job and quit").click();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !commands(&h).contains(&ViewportCommand::Close) {
        assert!(Instant::now() < deadline, "the window never closed after the cancel");
        h.step();
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(status(h.state()).unwrap().outcome, Some(Outcome::Cancelled { consistent: false }));
}

/// Pausing a job that is in sync says "Paused", not "in sync": new writes
/// wait until Resume.
#[test]
fn a_paused_job_says_paused_not_in_sync() {
    let dir = tempfile::tempdir().unwrap();
    let src = image(dir.path(), "src.img", 4 * MIB, 3);
    let dst = image(dir.path(), "dst.img", 4 * MIB, 0);
    let mut h = app(TestOpener { faulty: None }, no_disks);
    set_up(&mut h, &src, &dst, false);
    wait_for(&mut h, "Ready", ready);
    let pause = h.get_by_label("Pause").rect();
    h.get_by_label("Pause").click();
    wait_for(&mut h, "standby", |app| {
        status(app).is_some_and(|s| s.state == livemirror_core::job::JobState::Standby)
    });
    assert!(
        h.query_by_label_contains("Paused: in sync when paused, but new writes are not copied")
            .is_some()
    );
    assert!(h.query_by_label_contains("In sync as far as livemirror saw").is_none());
    assert_eq!(h.get_by_label("Resume").rect(), pause, "Resume takes Pause's place");
    h.get_by_label("Resume").click();
    wait_for(&mut h, "Ready again", ready);
    complete_and_wait(&mut h);
    assert!(same_bytes(&src, &dst));
}

/// The second false claim: "allocated data only" onto a target
/// holding old data. Whatever the headline says about "identical", the
/// bytes agree with it, and the verification has the last word.
#[test]
fn allocated_data_only_onto_old_data_is_called_identical_only_when_it_is() {
    use livemirror_testkit::tools::qemu_io;
    let dir = tempfile::tempdir().unwrap();
    let src = image(dir.path(), "src.img", 8 * MIB, 0);
    qemu_io(src.to_str().unwrap(), &["write -P 0x5a 1M 256k", "write -P 0x33 6M 64k"]);
    let dst = image(dir.path(), "dst.img", 8 * MIB, 29);
    let mut h = app(TestOpener { faulty: None }, no_disks);
    type_into(&mut h, "Source path", &src.display().to_string());
    type_into(&mut h, "Target path", &dst.display().to_string());
    h.get_by_role_and_label(Role::ComboBox, "Copy").click();
    h.run();
    h.get_by_label("allocated data only").click();
    h.run();
    h.get_by_label("Start").click();
    wait_for(&mut h, "Ready", ready);
    complete_and_wait(&mut h);
    wait_for(&mut h, "the verification", |app| !app.verifying());
    let identical = same_bytes(&src, &dst);
    let said = h.query_all_by_label_contains("identical to the source").count() > 0;
    assert_eq!(said, identical, "called identical: {said}, bytes identical: {identical}");
    assert!(h.query_by_label_contains("Verification").is_some());
    let verified = h.query_by_label("identical, byte for byte").is_some();
    assert_eq!(verified, identical, "the verification row agrees with the bytes");
}

/// An image file as the source, not shared: Setup says before Start how
/// other programs' writes to it are seen (a read lease); shared, it does not.
#[test]
fn an_image_source_says_how_it_is_tracked_before_start() {
    let dir = tempfile::tempdir().unwrap();
    let src = image(dir.path(), "src.img", MIB, 5);
    let mut h = app(TestOpener { faulty: None }, no_disks);
    type_into(&mut h, "Source path", &src.display().to_string());
    type_into(&mut h, "Target path", &dir.path().join("new.img").display().to_string());
    let said = "Read lease: while no other program has this image open for writing";
    assert!(h.query_by_label_contains(said).is_some());
    share_at(&mut h, &format!("unix:{}", dir.path().join("s.sock").display()));
    assert!(h.query_by_label_contains(said).is_none());
}

/// Opens files as they are, except `denied`, which this user may not open
/// (as a disk without udisks2's help).
struct DeniedOpener {
    denied: PathBuf,
}

impl Opener for DeniedOpener {
    fn open(&self, path: &Path, write: bool) -> Result<Arc<dyn BlockDevice>, Error> {
        if path == self.denied {
            let source = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
            return Err(Error::Open { path: path.to_owned(), source });
        }
        FileOpener.open(path, write)
    }
}

/// The disk list [`listed`] gives: set by the one test that uses it.
static LISTED: std::sync::Mutex<Vec<Disk>> = std::sync::Mutex::new(Vec::new());

fn listed() -> Vec<Disk> {
    LISTED.lock().unwrap().clone()
}

/// The eighth item: a disk this user may not open, as target. What
/// the disk list knows of it (mounted at /, the system disk, too small) is
/// said before its name is asked for, and Start stays disabled; a disk
/// that passes those checks asks for its name.
#[cfg(target_os = "linux")]
#[test]
fn an_unopenable_target_disk_is_checked_from_the_disk_list_before_its_name_is_asked() {
    let disk = livemirror_testkit::system::Loop::new(16 * MIB);
    let dir = tempfile::tempdir().unwrap();
    let src = image(dir.path(), "src.img", 16 * MIB, 3);
    let listed_as = |size, mounts: &[&str]| Disk {
        path: PathBuf::from(disk.path()),
        name: "vdz".into(),
        model: "Test Disk".into(),
        size,
        bus: "virtio".into(),
        removable: false,
        read_only: false,
        mounts: mounts.iter().map(|m| m.to_string()).collect(),
        system: mounts.contains(&"/"),
    };
    let check = |facts: Disk| {
        *LISTED.lock().unwrap() = vec![facts];
        let opener = DeniedOpener { denied: PathBuf::from(disk.path()) };
        let mut h = Harness::builder().with_size([1100.0, 800.0]).build_eframe(move |cc| {
            let env = Env {
                opener: Arc::new(opener),
                list_disks: listed,
                settings_path: None,
                system_dialog: || false,
                state_dir: None,
            };
            let launch = Launch::Setup { source: None, target: None };
            LiveMirrorApp::new(&cc.egui_ctx, env, launch).expect("engine starts")
        });
        type_into(&mut h, "Source path", &src.display().to_string());
        type_into(&mut h, "Target path", disk.path());
        assert!(h.query_by_label_contains("You will be asked to authorize access").is_some());
        h
    };

    let h = check(listed_as(16 * MIB, &["/", "/boot"]));
    assert!(
        h.query_by_label_contains(&format!(
            "vdz is the SYSTEM DISK of this computer. The target {} is mounted at /, /boot: unmount it first",
            disk.path()
        ))
        .is_some()
    );
    assert!(h.query_by_label("Type vdz to confirm").is_none(), "asked for the name first");
    assert!(start_disabled(&h));

    let h = check(listed_as(8 * MIB, &[]));
    assert!(
        h.query_by_label_contains(
            "The target (8.0 MiB) is smaller than the source (16.0 MiB) and cannot take it"
        )
        .is_some()
    );
    assert!(h.query_by_label("Type vdz to confirm").is_none(), "asked for the name first");
    assert!(start_disabled(&h));

    let mut h = check(listed_as(16 * MIB, &[]));
    assert!(h.query_by_label("Everything on vdz will be overwritten.").is_some());
    assert!(start_disabled(&h));
    type_into(&mut h, "Type vdz to confirm", "vdz");
    assert!(!start_disabled(&h), "the name typed, Start is enabled");
}

/// "Image file…" and "New image file…" with no file dialog service on the
/// desktop: the window's own browser opens, says what to install for the
/// desktop's dialog, lists the folder, and fills the path.
#[test]
fn image_file_without_a_dialog_service_browses_in_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let src = image(dir.path(), "src.img", 2 * MIB, 3);
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let mut h = app(TestOpener { faulty: None }, no_disks);
    h.get_all_by_label("Image file…").next().unwrap().click();
    // Whether the desktop has a dialog is asked on the engine.
    wait_for_label(&mut h, "No file dialog service was found");
    assert!(h.query_by_label_contains("xdg-desktop-portal-gtk, or zenity").is_some());
    replace_text(&mut h, "Folder", &dir.path().display().to_string());
    h.key_press(Key::Enter);
    // The folder is listed on the engine too.
    wait_for_label(&mut h, "sub/");
    assert!(h.query_by_label("sub/").is_some(), "folders are listed");
    assert!(h.get_by_label("Choose").accesskit_node().is_disabled(), "nothing picked yet");
    h.get_by_label("src.img  (2.0 MiB)").click();
    h.run();
    h.get_by_label("Choose").click();
    h.run();
    assert_eq!(h.state().setup_paths(), Some((src.display().to_string(), String::new())));
    assert!(h.query_by_label_contains("No file dialog service").is_none(), "closed");

    // A new file: the browser opens in the source's folder with a name.
    h.get_by_label("New image file…").click();
    wait_for_label(&mut h, "Use this name");
    h.get_by_label("Use this name").click();
    h.run();
    let copy = dir.path().join("copy.img");
    assert_eq!(
        h.state().setup_paths(),
        Some((src.display().to_string(), copy.display().to_string()))
    );
    wait_for(&mut h, "the pair's check", |app| !app.checking());
    assert!(h.query_by_label_contains("A new image file will be created at").is_some());
}

/// The speed limit says "unlimited", never "0 MiB/s"; a typed value is the
/// job's limit (also when Start is pressed while it is being typed), and
/// changing it while the job runs reaches the job.
#[test]
fn the_speed_limit_says_unlimited_and_a_typed_value_reaches_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let src = image(dir.path(), "src.img", 64 * MIB, 3);
    let dst = image(dir.path(), "dst.img", 64 * MIB, 0);
    let mut h = app(TestOpener { faulty: None }, no_disks);
    type_into(&mut h, "Source path", &src.display().to_string());
    type_into(&mut h, "Target path", &dst.display().to_string());
    let field = |h: &Harness<'_, LiveMirrorApp>| {
        h.get_by_role_and_label(Role::TextInput, "Speed limit").value().unwrap_or_default()
    };
    assert_eq!(field(&h), "unlimited");
    assert!(h.query_by_label_contains("0 MiB/s").is_none());
    // Typed, and Start pressed with the field still being edited.
    replace_text(&mut h, "Speed limit", "3");
    h.get_by_label("Start").click();
    wait_for(&mut h, "the job", |app| status(app).is_some());
    assert_eq!(status(h.state()).unwrap().speed, 3 * MIB);
    assert_eq!(field(&h), "3 MiB/s", "Running shows the job's limit");
    // While the job runs the window repaints on its own: steps, not run().
    h.get_by_role_and_label(Role::TextInput, "Speed limit").click();
    h.run_steps(2);
    h.key_press_modifiers(Modifiers::COMMAND, Key::A);
    h.run_steps(2);
    h.get_by_role_and_label(Role::TextInput, "Speed limit").type_text("unlimited");
    h.run_steps(2);
    h.key_press(Key::Enter);
    wait_for(&mut h, "the limit lifted", |app| status(app).is_some_and(|s| s.speed == 0));
    assert_eq!(field(&h), "unlimited");
    wait_for(&mut h, "Ready", ready);
    complete_and_wait(&mut h);
    assert!(same_bytes(&src, &dst));
}

/// The percentage shown from the progress bar's label.
fn shown_percent(h: &Harness<'_, LiveMirrorApp>) -> Option<(f64, String)> {
    let bar = h.query_by_role(Role::ProgressIndicator)?;
    let label = bar.accesskit_node().label()?;
    let pct = label.split('(').nth(1)?.split(' ').next()?.parse().ok()?;
    Some((pct, label))
}

/// The seventh item: progress is in the source's size. Parts
/// written through the share after their copy are copied again and shown
/// apart; the bar never says more than the disk and never goes back.
#[test]
fn progress_stays_within_the_source_size_and_never_goes_back() {
    use livemirror_core::job::MirrorOptions;
    use livemirror_testkit::tools::qemu_io;
    let dir = tempfile::tempdir().unwrap();
    let src = image(dir.path(), "src.img", 8 * MIB, 31);
    let dst = image(dir.path(), "dst.img", 8 * MIB, 0);
    let socket = dir.path().join("share.sock");
    let settings =
        settings_file(dir.path(), MirrorOptions { speed: 4 * MIB, ..Default::default() });
    let mut h = app_with(TestOpener { faulty: None }, no_disks, [1100.0, 800.0], Some(settings));
    type_into(&mut h, "Source path", &src.display().to_string());
    type_into(&mut h, "Target path", &dst.display().to_string());
    share_at(&mut h, &format!("unix:{}", socket.display()));
    h.get_by_label("Start").click();
    wait_for(&mut h, "2 MiB copied", |app| {
        status(app).is_some_and(|s| s.progress.copied >= 2 * MIB)
    });
    // Written again after its copy: the first MiB is copied once more.
    let uri = format!("nbd+unix:///?socket={}", socket.display());
    qemu_io(&uri, &["write -P 0x42 0 1M"]);
    let mut last = 0.0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ready(h.state()) {
        assert!(Instant::now() < deadline, "gave up waiting for Ready");
        if let Some((pct, label)) = shown_percent(&h) {
            assert!(pct >= last, "went back from {last} % to {label}");
            assert!(label.contains(" of 8.0 MiB copied"), "{label}");
            last = pct;
        }
        h.step();
        std::thread::sleep(Duration::from_millis(10));
    }
    h.run_steps(2);
    let (pct, label) = shown_percent(&h).unwrap();
    assert_eq!((pct, label.as_str()), (100.0, "8.0 MiB of 8.0 MiB copied (100.0 %)"));
    assert!(status(h.state()).unwrap().progress.copied >= 9 * MIB, "the written MiB was re-copied");
    assert!(h.query_by_label_contains("written after its copy: 1.0 MiB copied again").is_some());
    complete_and_wait(&mut h);
    assert!(same_bytes(&src, &dst));
}

/// Options remembered from the last job are shown as such, with a reset
/// that brings back the defaults (and forgets them).
#[test]
fn remembered_settings_are_said_and_can_be_reset() {
    use livemirror_core::job::{MirrorOptions, SyncMode};
    let dir = tempfile::tempdir().unwrap();
    let options = MirrorOptions { speed: 2 * MIB, sync: SyncMode::Top, ..Default::default() };
    let path = settings_file(dir.path(), options);
    let mut h =
        app_with(TestOpener { faulty: None }, no_disks, [1100.0, 800.0], Some(path.clone()));
    h.run();
    assert!(
        h.query_by_label(
            "Remembered from last time: copy: allocated data only · speed limit: 2 MiB/s."
        )
        .is_some()
    );
    h.get_by_label("Reset to defaults").click();
    h.run();
    assert!(h.query_by_label_contains("Remembered from last time").is_none());
    assert_eq!(
        h.get_by_role_and_label(Role::TextInput, "Speed limit").value().as_deref(),
        Some("unlimited")
    );
    // Saved on the engine, not by the frame.
    wait_for(&mut h, "the settings to be written", LiveMirrorApp::settings_saved);
    let saved = livemirror::gui::settings::Settings::load(&path);
    assert_eq!(saved.options, MirrorOptions::default(), "the reset is remembered");
}

/// A relative target is shown (and used) as the absolute path it stands
/// for, and a failed Start's error goes once the pair changes.
#[test]
fn a_relative_target_is_shown_absolute_and_a_stale_start_error_goes() {
    let dir = tempfile::tempdir().unwrap();
    let src = image(dir.path(), "src.img", MIB, 5);
    let taken = dir.path().join("taken");
    std::fs::write(&taken, b"not a socket").unwrap();
    let mut h = app(TestOpener { faulty: None }, no_disks);
    type_into(&mut h, "Source path", &src.display().to_string());
    type_into(&mut h, "Target path", "livemirror-relative-test.img");
    let absolute = std::env::current_dir().unwrap().join("livemirror-relative-test.img");
    assert!(
        h.query_by_label_contains(&format!(
            "A new image file will be created at {}",
            absolute.display()
        ))
        .is_some()
    );
    share_at(&mut h, &format!("unix:{}", taken.display()));
    h.get_by_label("Start").click();
    h.step();
    wait_for(&mut h, "the start to fail", |app| app.setup_paths().is_some() && !app.starting());
    assert!(h.query_by_label_contains("Could not start").is_some());
    assert!(!absolute.exists());
    replace_text(&mut h, "Target path", &dir.path().join("other.img").display().to_string());
    assert!(h.query_by_label_contains("Could not start").is_none(), "the stale error stays");
}

/// The seventh item, its ETA: a source written through the share
/// faster than the speed limit lets it be copied says so, with no ETA.
#[test]
fn the_eta_is_a_dash_when_the_source_is_written_faster_than_the_limit() {
    use livemirror_core::job::MirrorOptions;
    use livemirror_testkit::tools::qemu_io;
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let src = image(dir.path(), "src.img", 8 * MIB, 37);
    let dst = image(dir.path(), "dst.img", 8 * MIB, 0);
    let socket = dir.path().join("share.sock");
    let settings = settings_file(dir.path(), MirrorOptions { speed: MIB, ..Default::default() });
    let mut h = app_with(TestOpener { faulty: None }, no_disks, [1100.0, 800.0], Some(settings));
    type_into(&mut h, "Source path", &src.display().to_string());
    type_into(&mut h, "Target path", &dst.display().to_string());
    share_at(&mut h, &format!("unix:{}", socket.display()));
    h.get_by_label("Start").click();
    wait_for(&mut h, "the share", |app| status(app).is_some());
    // A VM rewriting the whole disk, over and over, at far more than 1 MiB/s.
    let uri = format!("nbd+unix:///?socket={}", socket.display());
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                qemu_io(&uri, &["write -P 0x11 0 8M"]);
            }
        })
    };
    wait_for_label(&mut h, "ETA —: the source is written faster than the speed limit (1 MiB/s)");
    assert!(!ready(h.state()));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    h.get_by_label("Cancel…").click();
    h.run_steps(2);
    h.get_by_label("Cancel the job").click();
    wait_for(&mut h, "the job to end", ended);
}

/// A gate a device's `open` waits at, as a hanging disk would, until the
/// test opens it. A generous timeout turns a frame that waits for the
/// device (a hang) into a failure: `timed_out` says it happened.
#[derive(Default)]
struct Gate {
    open: std::sync::Mutex<bool>,
    opened: std::sync::Condvar,
    waiting: std::sync::atomic::AtomicUsize,
    timed_out: std::sync::atomic::AtomicBool,
}

impl Gate {
    fn pass(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        self.waiting.fetch_add(1, SeqCst);
        let open = self.open.lock().unwrap();
        let (_open, wait) =
            self.opened.wait_timeout_while(open, Duration::from_secs(60), |open| !*open).unwrap();
        if wait.timed_out() {
            self.timed_out.store(true, SeqCst);
        }
        self.waiting.fetch_sub(1, SeqCst);
    }

    fn release(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }

    /// Opens waiting at the gate now.
    fn waiting(&self) -> usize {
        self.waiting.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn timed_out(&self) -> bool {
        self.timed_out.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Files as they are, except `hanging`, whose open waits at the gate (or,
/// `in_stat`, the stat that asks whether it exists: a dead network mount
/// hangs in either).
struct HangingOpener {
    hanging: PathBuf,
    gate: Arc<Gate>,
    in_stat: bool,
}

impl Opener for HangingOpener {
    fn open(&self, path: &Path, write: bool) -> Result<Arc<dyn BlockDevice>, Error> {
        if path == self.hanging && !self.in_stat {
            self.gate.pass();
        }
        FileOpener.open(path, write)
    }

    fn exists(&self, path: &Path) -> bool {
        if path == self.hanging && self.in_stat {
            self.gate.pass();
        }
        path.exists()
    }
}

/// The "no disk I/O on the UI thread": a target whose open hangs.
/// Typing goes on (every frame returns while the open still waits, the
/// fields show what was typed), Setup says it is checking and Start stays
/// disabled; once the device answers, the check of the pair as typed last
/// (not the one that hung first) is shown. At 1100×800 and at 800×600,
/// where "checking" is still in view.
#[test]
fn typing_stays_smooth_while_a_device_hangs_in_open() {
    for size in [[1100.0, 800.0], [800.0, 600.0]] {
        let dir = tempfile::tempdir().unwrap();
        let fits = image(dir.path(), "fits.img", MIB, 5);
        let larger = image(dir.path(), "larger.img", 2 * MIB, 5);
        let hanging = image(dir.path(), "hanging.img", MIB, 0);
        let gate = Arc::new(Gate::default());
        let opener = HangingOpener { hanging: hanging.clone(), gate: gate.clone(), in_stat: false };
        let mut h = app_with(opener, no_disks, size, None);
        let text = |h: &Harness<'_, LiveMirrorApp>, label: &str| {
            h.get_by_role_and_label(Role::TextInput, label).value().unwrap_or_default()
        };
        let checking = "Checking the source and the target…";
        type_into(&mut h, "Source path", &fits.display().to_string());
        replace_text_now(&mut h, "Target path", &hanging.display().to_string());
        assert_eq!(text(&h, "Target path"), hanging.display().to_string());
        assert!(h.query_by_label(checking).is_some(), "checking is not said");
        assert!(start_disabled(&h), "Start before the check answered");
        let gate_ = gate.clone();
        wait_for(&mut h, "the target's open to hang", move |_| gate_.waiting() == 1);

        // The open hangs; another source is typed, frame by frame.
        replace_text_now(&mut h, "Source path", &larger.display().to_string());
        assert_eq!(text(&h, "Source path"), larger.display().to_string());
        assert_eq!(
            h.state().setup_paths(),
            Some((larger.display().to_string(), hanging.display().to_string()))
        );
        assert!(h.query_by_label(checking).is_some(), "checking is not said");
        assert!(start_disabled(&h), "Start before the check answered");
        let shown = h.get_by_label(checking).rect();
        let window = eframe::egui::Rect::from_min_size(
            eframe::egui::Pos2::ZERO,
            eframe::egui::vec2(size[0], size[1]),
        );
        assert!(window.contains_rect(shown), "{checking:?} at {shown:?} is off the window");
        assert!(gate.waiting() >= 1 && !gate.timed_out(), "the frames waited for the open");

        gate.release();
        wait_for(&mut h, "the pair's check", |app| !app.checking());
        assert!(!gate.timed_out());
        assert!(h.query_by_label(checking).is_none());
        assert!(
            h.query_by_label_contains(
                "The target (1.0 MiB) is smaller than the source (2.0 MiB) and cannot take it"
            )
            .is_some(),
            "the check of the pair as typed last is not shown"
        );
        assert!(start_disabled(&h));
        // The device answers now: the pair that fits can start.
        replace_text(&mut h, "Source path", &fits.display().to_string());
        assert!(!start_disabled(&h), "the pair that fits");
    }
}

/// Whether the target exists ("Verify only" needs it to) is found by the
/// pair's check on the engine, not by a stat in a frame: while the stat of
/// the target hangs, frames go on, Setup says it is checking, and Start
/// and Verify only wait; once it answers, both are usable.
#[test]
fn a_target_whose_stat_hangs_freezes_no_frame() {
    let dir = tempfile::tempdir().unwrap();
    let src = image(dir.path(), "src.img", MIB, 5);
    let hanging = image(dir.path(), "hanging.img", MIB, 0);
    let gate = Arc::new(Gate::default());
    let opener = HangingOpener { hanging: hanging.clone(), gate: gate.clone(), in_stat: true };
    let mut h = app_with(opener, no_disks, [1100.0, 800.0], None);
    let verify_only_disabled = |h: &Harness<'_, LiveMirrorApp>| {
        h.get_by_role_and_label(Role::Button, "Verify only").accesskit_node().is_disabled()
    };
    type_into(&mut h, "Source path", &src.display().to_string());
    replace_text_now(&mut h, "Target path", &hanging.display().to_string());
    let gate_ = gate.clone();
    wait_for(&mut h, "the target's stat to hang", move |_| gate_.waiting() == 1);
    h.run_steps(10);
    assert!(h.query_by_label("Checking the source and the target…").is_some());
    assert!(start_disabled(&h) && verify_only_disabled(&h), "usable before the check answered");
    assert!(gate.waiting() == 1 && !gate.timed_out(), "the frames waited for the stat");

    gate.release();
    wait_for(&mut h, "the pair's check", |app| !app.checking());
    assert!(!start_disabled(&h) && !verify_only_disabled(&h), "both sides exist");
}

/// The log panel shows the job's events, logged through `tracing` in the
/// job's span: the state changes, Ready, the outcome.
#[test]
fn the_log_panel_shows_the_jobs_events() {
    let dir = tempfile::tempdir().unwrap();
    let src = image(dir.path(), "src.img", 2 * MIB, 19);
    let dst = image(dir.path(), "dst.img", 2 * MIB, 0);
    let mut h = app(TestOpener { faulty: None }, no_disks);
    set_up(&mut h, &src, &dst, false);
    wait_for(&mut h, "Ready", ready);
    wait_for_label(&mut h, "s  ready: ");
    assert!(h.query_all_by_label_contains("s  state: ").count() >= 1, "no state change logged");
    complete_and_wait(&mut h);
    wait_for_label(&mut h, "s  completed: the target is identical");
    let lines = h.state().session().unwrap().log.clone();
    assert!(lines.iter().all(|l| !l.problem), "{lines:?}");
    assert!(lines.windows(2).all(|w| w[0].at <= w[1].at), "out of order: {lines:?}");
}

/// "Network disk (NBD)…", on both sides, at 1280×800 and 800×600: a URI is
/// typed and checked by connecting on a thread of its own (frames go on
/// meanwhile), the server's answer is shown, and Use puts the URI in the
/// side's path; an address nobody serves says why and leaves Use
/// disabled, and Cancel changes nothing.
#[test]
fn a_network_disk_is_checked_off_the_ui_thread_and_used_as_source_or_target() {
    let server = livemirror_testkit::daemon::Daemon::nbdkit(&["memory", "64M"]);
    let uri = server.uri();
    let dir = tempfile::tempdir().unwrap();
    let nobody = format!("nbd+unix:///?socket={}", dir.path().join("none.sock").display());
    for size in [[1280.0, 800.0], [800.0, 600.0]] {
        let mut h = app_with(TestOpener { faulty: None }, no_disks, size, None);
        h.run();
        for (side, button) in [("source", 0), ("target", 1)] {
            h.get_all_by_label("Network disk (NBD)…").nth(button).unwrap().click();
            h.run();
            assert!(h.query_by_label(&format!("Network disk (NBD) as the {side}")).is_some());
            assert!(h.get_by_label("Use").accesskit_node().is_disabled(), "nothing checked yet");

            type_into(&mut h, "NBD URI", &nobody);
            h.get_by_label("Connect").click();
            wait_for_label(&mut h, "cannot connect to");
            // The dialog grew by the answer and is centred again: settle.
            h.run();
            assert!(h.get_by_label("Use").accesskit_node().is_disabled(), "{side}: unusable");

            // Cancel leaves the path as it was; the dialog opens afresh.
            h.get_by_label("Cancel").click();
            h.run();
            assert!(h.query_by_label_contains("Network disk (NBD) as the").is_none());
            h.get_all_by_label("Network disk (NBD)…").nth(button).unwrap().click();
            h.run();
            type_into(&mut h, "NBD URI", &uri);
            h.get_by_label("Connect").click();
            wait_for_label(&mut h, "Connected: 64.0 MiB export");
            h.run();
            let how = if side == "target" { "writable" } else { "readable" };
            assert!(h.query_by_label_contains(how).is_some(), "{side}");
            h.get_by_label("Use").click();
            h.run();
            assert!(h.query_by_label_contains("Network disk (NBD) as the").is_none(), "closed");
        }
        assert_eq!(h.state().setup_paths(), Some((uri.clone(), uri.clone())), "{size:?}");
    }
}

/// A compressed image as the source is written, not mirrored: Setup says
/// so and enables Start; a new `.img.zst` target is refused with the
/// command that makes it; a new `.qcow2` target is made as qcow2 (judged by
/// qemu-img), at both window sizes.
#[test]
fn compressed_sources_and_images_out_are_said_and_a_new_qcow2_is_qcow2() {
    let dir = tempfile::tempdir().unwrap();
    let src = image(dir.path(), "src.img", 2 * MIB, 5);
    let xz = dir.path().join("src.img.xz");
    let st = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("xz -c '{}' > '{}'", src.display(), xz.display()))
        .status()
        .unwrap();
    assert!(st.success(), "xz is installed by scripts/test.sh");
    for size in [[1280.0, 800.0], [800.0, 600.0]] {
        let mut h = app_with(TestOpener { faulty: None }, no_disks, size, None);
        type_into(&mut h, "Source path", &xz.display().to_string());
        type_into(&mut h, "Target path", &dir.path().join("out.img").display().to_string());
        assert!(h.query_by_label_contains("A xz-compressed image: it is decompressed").is_some());
        assert!(!start_disabled(&h));

        replace_text(&mut h, "Source path", &src.display().to_string());
        replace_text(&mut h, "Target path", &dir.path().join("out.img.zst").display().to_string());
        assert!(h.query_by_label_contains("A new .zst image is made by").is_some());
        assert!(start_disabled(&h));
    }
    let qcow2 = dir.path().join("copy.qcow2");
    let mut h = app(TestOpener { faulty: None }, no_disks);
    type_into(&mut h, "Source path", &src.display().to_string());
    type_into(&mut h, "Target path", &qcow2.display().to_string());
    assert!(h.query_by_label_contains("A new qcow2 image will be created").is_some());
    h.get_by_label("Start").click();
    wait_for(&mut h, "ready", ready);
    h.get_by_label("Complete").click();
    wait_for(&mut h, "the end", ended);
    drop(h);
    let info = livemirror_testkit::tools::run("qemu-img", &["info", qcow2.to_str().unwrap()]);
    assert!(info.contains("file format: qcow2"), "{info}");
    let cmp = livemirror_testkit::tools::run(
        "qemu-img",
        &["compare", "-f", "raw", "-F", "qcow2", src.to_str().unwrap(), qcow2.to_str().unwrap()],
    );
    assert!(cmp.contains("Images are identical"), "{cmp}");
}
