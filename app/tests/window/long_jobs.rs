//! The window's long-job features driven by their labels: a job started
//! from the window keeps its state, Setup lists it when it stopped before
//! the end ("Resume", "Discard"), "update an earlier copy" copies only
//! what differs, and Verify on Done offers Repair when it finds a
//! difference. At the two window sizes the window is checked at.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use livemirror_core::job::Command;

use livemirror::gui::Launch;
use livemirror::gui::app::{Env, LiveMirrorApp};

use super::{
    TestOpener, complete_and_wait, ended, image, log_panel_installed, no_disks, ready,
    replace_text, same_bytes, status, type_into, wait_for,
};

const MIB: u64 = 1 << 20;
const LARGE: [f32; 2] = [1280.0, 800.0];
const SMALL: [f32; 2] = [800.0, 600.0];

/// With a verification just asked for: it reports the 4 KiB block holding
/// byte `at` as the first difference, and Repair (inside a window of
/// `size`) copies it again.
fn finds_and_repairs(h: &mut Harness<'static, LiveMirrorApp>, at: u64, size: [f32; 2]) {
    h.run_steps(2);
    wait_for(h, "the verification", |app| !app.verifying());
    let from = format!("DIFFERENT from byte {}", at / 4096 * 4096);
    assert!(h.query_by_label(&from).is_some(), "{from}");
    let repair = h.get_by_label("Repair");
    assert!(repair.rect().max.y <= size[1] && repair.rect().max.x <= size[0]);
    repair.click();
    h.run_steps(2);
    wait_for(h, "the repair", |app| !app.verifying());
}

/// The window at `size`, its jobs keeping their state in `state_dir`.
fn app_in(state_dir: &Path, size: [f32; 2]) -> Harness<'static, LiveMirrorApp> {
    // The resume test reads the log panel (alone, no other test installs it).
    log_panel_installed();
    let state_dir = state_dir.to_path_buf();
    Harness::builder().with_size(size).build_eframe(move |cc| {
        let env = Env {
            opener: Arc::new(TestOpener { faulty: None }),
            list_disks: no_disks,
            settings_path: None,
            system_dialog: || false,
            state_dir: Some(state_dir),
        };
        let launch = Launch::Setup { source: None, target: None };
        LiveMirrorApp::new(&cc.egui_ctx, env, launch).expect("engine starts")
    })
}

fn state_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

/// A 16 MiB copy at 4 MiB/s, cancelled once 4 MiB are copied; then
/// "Start another". Returns the pair.
fn cancelled_job(h: &mut Harness<'_, LiveMirrorApp>, dir: &Path) -> (PathBuf, PathBuf) {
    let src = image(dir, "src.img", 16 * MIB, 5);
    let dst = image(dir, "dst.img", 16 * MIB, 0);
    type_into(h, "Source path", &src.display().to_string());
    type_into(h, "Target path", &dst.display().to_string());
    replace_text(h, "Speed limit", "4");
    h.get_by_label("Start").click();
    wait_for(h, "4 MiB copied", |app| status(app).is_some_and(|s| s.progress.copied >= 4 * MIB));
    let session = h.state().session().unwrap();
    session.job.post(Command::Cancel { force: false });
    wait_for(h, "the job to end", ended);
    h.get_by_label("Start another").click();
    h.step();
    wait_for(h, "the unfinished jobs read", |app| !app.listing_unfinished());
    (src, dst)
}

#[test]
fn a_stopped_window_job_is_listed_in_setup_and_resume_finishes_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut h = app_in(&state, LARGE);
    assert!(h.query_by_label("Unfinished jobs").is_none(), "none yet");
    let (src, dst) = cancelled_job(&mut h, dir.path());
    assert_eq!(state_files(&state), 1, "the window's job saved its state");
    // Listed with what is left, as a new window would list it too.
    assert!(h.query_by_label("Unfinished jobs").is_some());
    let pair = format!("{} to {}", src.display(), dst.display());
    assert!(h.query_by_label(&pair).is_some(), "{pair}");
    assert!(h.query_by_label_contains("of 16.0 MiB left").is_some());
    h.get_by_label("Resume").click();
    wait_for(&mut h, "Ready", ready);
    assert!(h.query_by_label_contains("resuming: ").is_some(), "the log says it resumed");
    let copied = status(h.state()).unwrap().progress.copied;
    assert!(copied < 16 * MIB, "copied only what was left (and what it compared): {copied}");
    complete_and_wait(&mut h);
    assert!(same_bytes(&src, &dst));
    assert_eq!(state_files(&state), 0, "completed: nothing left to resume");
    h.get_by_label("Start another").click();
    h.step();
    wait_for(&mut h, "the list read again", |app| !app.listing_unfinished());
    assert!(h.query_by_label("Unfinished jobs").is_none());
}

#[test]
fn discard_forgets_an_unfinished_job_at_800x600() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut h = app_in(&state, SMALL);
    cancelled_job(&mut h, dir.path());
    assert_eq!(state_files(&state), 1);
    let discard = h.get_by_label("Discard");
    assert!(discard.rect().max.y <= SMALL[1] && discard.rect().max.x <= SMALL[0]);
    discard.click();
    h.step();
    wait_for(&mut h, "the list read again", |app| !app.listing_unfinished());
    assert!(h.query_by_label("Unfinished jobs").is_none());
    assert_eq!(state_files(&state), 0, "its state file is gone");
}

#[test]
fn update_an_earlier_copy_copies_only_what_differs() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let src = image(dir.path(), "src.img", 8 * MIB, 9);
    let dst = dir.path().join("dst.img");
    std::fs::copy(&src, &dst).unwrap();
    // The earlier copy is behind by two 64 KiB chunks.
    let f = std::fs::File::options().write(true).open(&src).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[1; 100], 3 * MIB + 10).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[2; 100], 7 * MIB).unwrap();
    drop(f);
    let mut h = app_in(&state, LARGE);
    type_into(&mut h, "Source path", &src.display().to_string());
    type_into(&mut h, "Target path", &dst.display().to_string());
    h.get_by_role_and_label(eframe::egui::accesskit::Role::ComboBox, "Copy").click();
    h.run();
    h.get_by_label("update an earlier copy").click();
    h.run();
    h.get_by_label("Start").click();
    wait_for(&mut h, "Ready", ready);
    complete_and_wait(&mut h);
    let s = status(h.state()).unwrap();
    assert_eq!(s.data_bytes, 2 * 64 * 1024, "{s:?}");
    assert!(same_bytes(&src, &dst));
}

#[test]
fn verify_on_done_finds_a_changed_byte_and_repair_fixes_it() {
    for size in [LARGE, SMALL] {
        let dir = tempfile::tempdir().unwrap();
        let src = image(dir.path(), "src.img", 8 * MIB, 13);
        let dst = image(dir.path(), "dst.img", 8 * MIB, 0);
        let mut h = app_in(&dir.path().join("state"), size);
        type_into(&mut h, "Source path", &src.display().to_string());
        type_into(&mut h, "Target path", &dst.display().to_string());
        h.get_by_label("Start").click();
        wait_for(&mut h, "Ready", ready);
        complete_and_wait(&mut h);
        wait_for(&mut h, "no verification running", |app| !app.verifying());
        // Someone changes one byte of the copy.
        let at = 5 * MIB + 77;
        let f = std::fs::File::options().write(true).open(&dst).unwrap();
        let old = std::fs::read(&src).unwrap()[at as usize];
        std::os::unix::fs::FileExt::write_all_at(&f, &[!old], at).unwrap();
        drop(f);
        assert!(h.query_by_label("Repair").is_none(), "nothing to repair yet");
        let verify = h
            .query_by_label("Verify again")
            .or_else(|| h.query_by_label("Verify"))
            .expect("a Verify button");
        verify.click();
        finds_and_repairs(&mut h, at, size);
        assert!(h.query_by_label("identical, byte for byte").is_some());
        assert!(h.query_by_label("Repair").is_none());
        assert!(same_bytes(&src, &dst));
    }
}

#[test]
fn verify_only_from_setup_shows_the_difference_and_repairs_it() {
    for size in [LARGE, SMALL] {
        let dir = tempfile::tempdir().unwrap();
        let src = image(dir.path(), "src.img", 8 * MIB, 17);
        let dst = dir.path().join("dst.img");
        std::fs::copy(&src, &dst).unwrap();
        let mut h = app_in(&dir.path().join("state"), size);
        type_into(&mut h, "Source path", &src.display().to_string());
        type_into(&mut h, "Target path", &dst.display().to_string());
        h.get_by_label("Verify only").click();
        h.run_steps(2);
        wait_for(&mut h, "the verification", |app| !app.verifying());
        assert!(h.query_by_label("identical, byte for byte").is_some());
        assert!(h.query_by_label("Repair").is_none());
        let at = 6 * MIB + 5;
        let f = std::fs::File::options().write(true).open(&dst).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, &[0; 3], at).unwrap();
        drop(f);
        h.get_by_label("Verify again").click();
        finds_and_repairs(&mut h, at, size);
        assert!(h.query_by_label("repaired: identical, byte for byte").is_some());
        assert!(same_bytes(&src, &dst));
        h.get_by_label("Back to Setup").click();
        h.run_steps(2);
        assert!(h.query_by_label("Verify only").is_some(), "Setup again");
    }
}
