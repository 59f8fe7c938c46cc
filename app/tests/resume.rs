//! Long jobs survive: `clone` and `serve --mirror-to` killed with SIGKILL
//! at deterministic points (once a number of bytes is copied, as the job's
//! own PROGRESS events say), then run again: they resume, copy only what
//! the last save left, and end identical (qemu-img compare). And state files
//! that must not be trusted are not.
//!
//! `LIVEMIRROR_KILL_POINTS=N` runs N kill points instead of 10
//! (`benches/resume_kill.sh` runs 100).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use livemirror_testkit::control::Control;
use livemirror_testkit::listening;
use livemirror_testkit::pattern;
use livemirror_testkit::tools::{assert_identical, qemu_io};
use serde_json::{Value, json};

const MIB: u64 = 1 << 20;
/// The copy's speed while it is killed, and what it keeps in flight.
const SPEED: u64 = 8 * MIB;
const BUF: u64 = MIB;
/// The job saves every 2 s (and at state changes); progress comes every
/// 250 ms, so the save can be up to 2.25 s older than the last PROGRESS
/// seen, and the kill lands up to 250 ms after it.
const UNSAVED_SECONDS: f64 = 2.5;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_livemirror"))
}

fn kill_points() -> u64 {
    std::env::var("LIVEMIRROR_KILL_POINTS").ok().and_then(|n| n.parse().ok()).unwrap_or(10)
}

/// Reads JSON events from a child's stdout.
struct Events(std::io::Lines<BufReader<std::process::ChildStdout>>);

impl Events {
    fn of(child: &mut Child) -> Events {
        Events(BufReader::new(child.stdout.take().unwrap()).lines())
    }

    fn next(&mut self) -> Option<Value> {
        let line = self.0.next()?.unwrap();
        Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}")))
    }

    /// The first event named `name` for which `pred` holds.
    fn until(&mut self, name: &str, pred: impl Fn(&Value) -> bool) -> Value {
        while let Some(v) = self.next() {
            if v["event"] == name && pred(&v["data"]) {
                return v["data"].clone();
            }
        }
        panic!("no {name} event came");
    }
}

fn sigkill(child: &mut Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

fn stderr_of(child: &mut Child) -> String {
    let mut s = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut s).unwrap();
    s
}

/// A clone's bytes as its COMPLETED event reports them.
fn done_bytes(completed: &Value) -> u64 {
    ["copied", "zeroed", "skipped"].iter().map(|k| completed[k].as_u64().unwrap()).sum()
}

/// `clone SRC DST --json ARGS` with its state in `state`; returns its
/// events, stderr and exit code once it ends.
fn clone(src: &Path, dst: &Path, state: &Path, args: &[&str]) -> (Vec<Value>, String, i32) {
    let out = bin()
        .args(["clone", src.to_str().unwrap(), dst.to_str().unwrap(), "--json"])
        .args(args)
        .env("LIVEMIRROR_STATE_DIR", state)
        .output()
        .unwrap();
    let events = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (events, String::from_utf8(out.stderr).unwrap(), out.status.code().unwrap_or(-1))
}

fn event<'a>(events: &'a [Value], name: &str) -> &'a Value {
    &events.iter().find(|e| e["event"] == name).unwrap_or_else(|| panic!("no {name}: {events:?}"))["data"]
}

/// What the last PROGRESS before a kill said: bytes copied, and the bytes
/// the last completed save says are left (none before the first save).
#[derive(Debug, Clone, Copy)]
struct AtKill {
    copied: u64,
    saved_left: Option<u64>,
}

impl AtKill {
    fn of(progress: &Value) -> AtKill {
        AtKill {
            copied: progress["copied"].as_u64().unwrap(),
            saved_left: progress["saved"].as_u64(),
        }
    }

    /// Copied but not yet flushed and saved: what a resume must copy again.
    fn unflushed(&self, total: u64) -> u64 {
        self.copied.saturating_sub(total - self.saved_left.unwrap_or(total))
    }
}

/// Starts a speed-limited clone and kills it with SIGKILL once it has
/// copied `at` bytes; returns what its last PROGRESS said.
fn clone_killed_at(src: &Path, dst: &Path, state: &Path, at: u64) -> AtKill {
    clone_killed_when(src, dst, state, |p| p["copied"].as_u64().unwrap() >= at)
}

/// [`clone_killed_at`], killed at the first PROGRESS `when` accepts.
fn clone_killed_when(
    src: &Path,
    dst: &Path,
    state: &Path,
    when: impl Fn(&Value) -> bool,
) -> AtKill {
    let mut child = bin()
        .args(["clone", src.to_str().unwrap(), dst.to_str().unwrap(), "--json"])
        .args(["--speed", &SPEED.to_string(), "--buf-size", &BUF.to_string()])
        .env("LIVEMIRROR_STATE_DIR", state)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut events = Events::of(&mut child);
    let seen = events.until("PROGRESS", when);
    sigkill(&mut child);
    AtKill::of(&seen)
}

/// Whether the killed job had saved its state: a kill in the first moments
/// of a job can come before its first save is on disk.
fn saved_before_the_kill(state: &Path) -> bool {
    std::fs::read_dir(state).is_ok_and(|d| d.count() > 0)
}

/// What the rerun says is left: RESUMED first, when a save was there;
/// otherwise no RESUMED and everything left.
fn resumed_remaining(events: &[Value], err: &str, saved: bool, total: u64, k: u64) -> u64 {
    if !saved {
        assert!(events.iter().all(|e| e["event"] != "RESUMED"), "point {k}: {events:?}");
        return total;
    }
    assert_eq!(events[0]["event"], "RESUMED", "point {k}: RESUMED comes first: {events:?}");
    assert_eq!(events[0]["data"]["total"], total);
    assert!(err.contains("resuming: "), "{err}");
    events[0]["data"]["remaining"].as_u64().unwrap()
}

/// What a kill may leave unsaved: a save period at the speed limit, and
/// what was in flight.
fn unsaved_bound() -> u64 {
    (SPEED as f64 * UNSAVED_SECONDS) as u64 + BUF
}

#[test]
fn a_killed_clone_resumes_and_copies_only_what_was_left() {
    let dir = tempfile::tempdir().unwrap();
    let total = 32 * MIB;
    let src = dir.path().join("src.img");
    std::fs::write(&src, pattern(total as usize, 7)).unwrap();
    let points = kill_points();
    let (mut again_max, mut unflushed_max) = (0, 0);
    for k in 1..=points {
        let (dst, state) = (dir.path().join("dst.img"), dir.path().join(format!("state{k}")));
        let _ = std::fs::remove_file(&dst);
        let at = total * k / (points + 1);
        let kill = clone_killed_at(&src, &dst, &state, at);
        let seen = kill.copied;
        let saved = saved_before_the_kill(&state);
        let (events, err, code) = clone(&src, &dst, &state, &[]);
        assert_eq!(code, 0, "point {k}: {err}");
        let remaining = resumed_remaining(&events, &err, saved, total, k);
        let completed = event(&events, "COMPLETED");
        assert_eq!(completed["identical"], true);
        assert_eq!(done_bytes(completed), remaining, "point {k}: copies exactly what was left");
        assert_identical(&src, &dst);
        // Copied twice: what the killed run copied after its last save —
        // at most what was unflushed at the kill and one buffer (the
        // crash rule), and never more than a save period's worth.
        let again = remaining.saturating_sub(total - seen);
        let unflushed = kill.unflushed(total);
        assert!(
            again <= unflushed + BUF && again <= unsaved_bound(),
            "point {k}: {again} bytes copied again, {unflushed} unflushed at the kill \
             ({kill:?}, {remaining} left)"
        );
        again_max = again_max.max(again);
        unflushed_max = unflushed_max.max(unflushed);
        assert_eq!(std::fs::read_dir(&state).unwrap().count(), 0, "completed: no state left");
    }
    eprintln!(
        "{points} kill points: at most {again_max} bytes copied again, at most {unflushed_max} \
         unflushed at a kill (bound: unflushed + {BUF}, and {})",
        unsaved_bound()
    );
}

/// `serve SRC --mirror-to DST` on sockets in `dir`, its events on stdout,
/// control socket connected.
fn serve(
    dir: &Path,
    src: &Path,
    dst: &Path,
    state: &Path,
    args: &[&str],
) -> (Child, Events, Control) {
    let (nbd, ctl) = (dir.join("nbd.sock"), dir.join("ctl.sock"));
    let mut child = bin()
        .args(["serve", src.to_str().unwrap(), "--mirror-to", dst.to_str().unwrap(), "--json"])
        .arg(format!("--nbd=unix:{}", nbd.display()))
        .arg(format!("--control=unix:{}", ctl.display()))
        .args(args)
        .env("LIVEMIRROR_STATE_DIR", state)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    listening::unix_socket(&ctl);
    listening::unix_socket(&nbd);
    let events = Events::of(&mut child);
    (child, events, Control::connect(&ctl))
}

fn write_through(dir: &Path, at: u64, byte: u8) {
    let uri = format!("nbd+unix:///?socket={}", dir.join("nbd.sock").display());
    qemu_io(&uri, &[&format!("write -P {byte} {at} 64k")]);
}

#[test]
fn a_killed_served_mirror_resumes_under_writes_and_ends_identical() {
    let dir = tempfile::tempdir().unwrap();
    let total = 32 * MIB;
    let src = dir.path().join("src.img");
    std::fs::write(&src, pattern(total as usize, 9)).unwrap();
    let points = kill_points();
    let mut again_max = 0;
    for k in 1..=points {
        let (dst, state) = (dir.path().join("dst.img"), dir.path().join(format!("state{k}")));
        let _ = std::fs::remove_file(&dst);
        let at = total * k / (points + 1);
        let limit = ["--speed", &SPEED.to_string(), "--buf-size", &BUF.to_string()];
        let (mut child, mut events, _c) = serve(dir.path(), &src, &dst, &state, &limit);
        // Writes behind and ahead of the copy, then the kill.
        let mut written = 0;
        let ahead = (at + 4 * MIB).min(total - 64 * 1024);
        for (i, off) in [at / 2, ahead, total - 64 * 1024].iter().enumerate() {
            let off = off / (64 * 1024) * 64 * 1024;
            write_through(dir.path(), off, (k * 3 + i as u64) as u8);
            written += 64 * 1024;
        }
        let kill = AtKill::of(&events.until("PROGRESS", |d| d["copied"].as_u64().unwrap() >= at));
        let seen = kill.copied;
        // A write in the moment before the kill, after the last save.
        write_through(dir.path(), (at / 3) / (64 * 1024) * 64 * 1024, 0xee);
        written += 64 * 1024;
        sigkill(&mut child);
        let saved = saved_before_the_kill(&state);

        let (mut child, mut events, mut c) = serve(dir.path(), &src, &dst, &state, &[]);
        let remaining = if saved {
            let first = events.next().expect("an event");
            assert_eq!(first["event"], "RESUMED", "point {k}: RESUMED comes first: {first}");
            assert_eq!(first["data"]["comparing"], true, "written just before the kill: compared");
            first["data"]["remaining"].as_u64().unwrap()
        } else {
            total
        };
        // The saved map is never behind the last save the job reported.
        assert!(remaining <= kill.saved_left.unwrap_or(total) + BUF, "point {k}: {kill:?}");
        write_through(dir.path(), MIB, 0x77);
        written += 64 * 1024;
        c.event("READY");
        assert_eq!(c.ask(json!({"execute": "complete"}))["return"], json!({}));
        let completed = events.until("COMPLETED", |_| true);
        assert_eq!(completed["identical"], true);
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = child.wait().unwrap();
        let err = stderr_of(&mut child);
        assert!(status.success(), "point {k}: {err}");
        assert_eq!(err.contains("resuming: "), saved, "{err}");
        assert_identical(&src, &dst);
        // Copied again at most: the unsaved part of the copy, and every
        // chunk written through the export (each may be found by the
        // comparison, or dirty anyway).
        let copied = done_bytes(&completed);
        let bound = (total - seen) + unsaved_bound() + written;
        assert!(
            copied <= bound,
            "point {k}: {copied} bytes copied after the resume, bound {bound}"
        );
        assert!(remaining <= total);
        again_max = again_max.max(copied as i64 - (total - seen) as i64 - written as i64);
    }
    eprintln!(
        "{points} kill points: at most {again_max} bytes copied again beyond what was left \
         and what was written (bound {})",
        unsaved_bound()
    );
}

/// Leaves a state file behind: a clone onto a new target killed once a
/// save says half is copied. Returns the pair's state file (the newest).
fn half_done(src: &Path, dst: &Path, state: &Path) -> PathBuf {
    let _ = std::fs::remove_file(dst);
    clone_killed_when(src, dst, state, |p| p["saved"].as_u64().is_some_and(|s| s <= 16 * MIB));
    let newest = std::fs::read_dir(state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap());
    newest.expect("a state file")
}

/// Runs the clone again and asserts it started over, saying why, and
/// copied the source's `len` bytes whole.
fn starts_over(src: &Path, dst: &Path, state: &Path, why: &str, len: u64) {
    let (events, err, code) = clone(src, dst, state, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(why) && err.contains("starting over"), "wanted {why:?}: {err}");
    assert!(events.iter().all(|e| e["event"] != "RESUMED"), "{events:?}");
    assert_eq!(done_bytes(event(&events, "COMPLETED")), len, "copied whole");
    assert_identical(src, dst);
}

#[test]
fn state_files_that_cannot_be_trusted_are_discarded_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst, state) =
        (dir.path().join("src.img"), dir.path().join("dst.img"), dir.path().join("state"));
    std::fs::write(&src, pattern(32 << 20, 3)).unwrap();

    let file = half_done(&src, &dst, &state);
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    starts_over(&src, &dst, &state, "it is truncated", 32 * MIB);

    let file = half_done(&src, &dst, &state);
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 9;
    bytes[last] ^= 0x40;
    std::fs::write(&file, &bytes).unwrap();
    starts_over(&src, &dst, &state, "checksum does not match", 32 * MIB);

    let file = half_done(&src, &dst, &state);
    std::fs::write(&file, b"{\"not\": \"a state file\"}").unwrap();
    starts_over(&src, &dst, &state, "not a livemirror state file", 32 * MIB);

    // Another pair's file under this pair's name.
    let other = dir.path().join("other.img");
    std::fs::write(&other, pattern(32 << 20, 4)).unwrap();
    let theirs = half_done(&other, &dst, &state);
    let file = half_done(&src, &dst, &state);
    std::fs::rename(&theirs, &file).unwrap();
    starts_over(&src, &dst, &state, "belongs to another pair", 32 * MIB);

    // The target replaced by a copy of itself: another file.
    let file = half_done(&src, &dst, &state);
    let moved = dir.path().join("moved.img");
    std::fs::copy(&dst, &moved).unwrap();
    std::fs::rename(&moved, &dst).unwrap();
    assert!(file.exists());
    starts_over(&src, &dst, &state, "the target is another file or disk", 32 * MIB);

    // The source replaced by a copy of itself: same path, another inode.
    let file = half_done(&src, &dst, &state);
    let moved = dir.path().join("moved.img");
    std::fs::copy(&src, &moved).unwrap();
    std::fs::rename(&moved, &src).unwrap();
    assert!(file.exists());
    starts_over(&src, &dst, &state, "the source is another file or disk", 32 * MIB);

    // The target resized (grown: a clone onto it is still fine).
    half_done(&src, &dst, &state);
    std::fs::File::options().write(true).open(&dst).unwrap().set_len(33 * MIB).unwrap();
    starts_over(&src, &dst, &state, "the target was resized", 32 * MIB);
    let _ = std::fs::remove_file(&dst);

    // The source resized (shrunk: the target is now larger, which is fine).
    half_done(&src, &dst, &state);
    let mut shrunk = pattern(32 << 20, 3);
    shrunk.truncate(31 << 20);
    std::fs::write(&src, &shrunk).unwrap();
    starts_over(&src, &dst, &state, "the source was resized", 31 * MIB);
    std::fs::write(&src, pattern(32 << 20, 3)).unwrap();
    let _ = std::fs::remove_file(&dst);

    // --restart: on purpose.
    half_done(&src, &dst, &state);
    let (events, err, code) = clone(&src, &dst, &state, &["--restart"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("not used (--restart)"), "{err}");
    assert!(events.iter().all(|e| e["event"] != "RESUMED"));
    assert_eq!(done_bytes(event(&events, "COMPLETED")), 32 * MIB);
    assert_eq!(std::fs::read_dir(&state).unwrap().count(), 0, "completed: no state left");
}

#[test]
fn an_untouched_source_resumes_without_comparing_unless_the_target_changed() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst, state) =
        (dir.path().join("src.img"), dir.path().join("dst.img"), dir.path().join("state"));
    std::fs::write(&src, pattern(32 << 20, 5)).unwrap();
    // Last modified an hour ago: saves made now prove nobody wrote it since.
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    let touch = |p: &Path| {
        std::fs::File::options().write(true).open(p).unwrap().set_modified(hour_ago).unwrap()
    };
    touch(&src);
    half_done(&src, &dst, &state);
    let (events, err, code) = clone(&src, &dst, &state, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(events[0]["event"], "RESUMED");
    assert_eq!(events[0]["data"]["comparing"], false, "{err}");
    assert!(!err.contains("comparing the"), "{err}");
    assert_identical(&src, &dst);

    // The same, but the target's first chunk (copied, sampled) overwritten.
    half_done(&src, &dst, &state);
    let f = std::fs::File::options().write(true).open(&dst).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[0xa5; 4096], 0).unwrap();
    drop(f);
    starts_over(&src, &dst, &state, "the target was written since the job stopped", 32 * MIB);

    // The source written while nothing ran: compared, and the change copied.
    half_done(&src, &dst, &state);
    let f = std::fs::File::options().write(true).open(&src).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[0x3c; 4096], 8192).unwrap();
    drop(f);
    let (events, err, code) = clone(&src, &dst, &state, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(events[0]["data"]["comparing"], true, "{err}");
    assert!(err.contains("comparing the"), "{err}");
    let remaining = events[0]["data"]["remaining"].as_u64().unwrap();
    assert_eq!(
        done_bytes(event(&events, "COMPLETED")),
        remaining + 64 * 1024,
        "left + the changed chunk"
    );
    assert_identical(&src, &dst);
}

#[test]
fn completed_reports_what_was_written_and_how_long_it_took() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst, state) =
        (dir.path().join("src.img"), dir.path().join("dst.img"), dir.path().join("state"));
    let mut data = pattern(8 << 20, 6);
    data[(4 << 20)..].fill(0);
    std::fs::write(&src, &data).unwrap();
    let (events, err, code) = clone(&src, &dst, &state, &["--no-state"]);
    assert_eq!(code, 0, "{err}");
    let c = event(&events, "COMPLETED");
    assert_eq!(c["copied"], 4 << 20, "{c}");
    assert_eq!(c["zeroed"].as_u64().unwrap() + c["skipped"].as_u64().unwrap(), 4 << 20, "{c}");
    assert!(c["duration_s"].as_f64().unwrap() > 0.0, "{c}");
    assert!(!state.exists(), "--no-state writes nothing");
}

#[test]
fn a_served_target_written_after_complete_is_resynced_from_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let total = 32 * MIB;
    let (src, dst, state) =
        (dir.path().join("src.img"), dir.path().join("dst.img"), dir.path().join("state"));
    std::fs::write(&src, pattern(total as usize, 11)).unwrap();
    // Last modified an hour ago: nothing but livemirror touches it since.
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options().write(true).open(&src).unwrap().set_modified(hour_ago).unwrap();
    let (mut child, mut events, mut c) = serve(dir.path(), &src, &dst, &state, &[]);
    c.event("READY");
    assert_eq!(c.ask(json!({"execute": "complete"}))["return"], json!({}));
    events.until("COMPLETED", |_| true);
    // Served after Complete, the export writes the target: 5 blocks, one
    // across a chunk boundary.
    let block = 64 * 1024;
    let offsets = [0, 3 * MIB, 17 * MIB + 4096, 20 * MIB, total - block];
    for (i, at) in offsets.iter().enumerate() {
        write_through(dir.path(), *at, 0x40 + i as u8);
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    let err = stderr_of(&mut child);
    assert!(err.contains("written to the target since the mirror completed, recorded"), "{err}");
    livemirror_testkit::tools::assert_different(&src, &dst);

    let (events, err, code) = clone(&src, &dst, &state, &["--resync"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("re-sync: ") && err.contains("from its state file"), "{err}");
    let copied = done_bytes(event(&events, "COMPLETED"));
    // Each write rounded out to the 64 KiB chunks it touches.
    let written = offsets.len() as u64 * block;
    assert!(copied >= written && copied <= written + block, "copied {copied}, written {written}");
    assert_identical(&src, &dst);

    // The record is used once; without it, --resync compares (and finds nothing).
    let (events, err, code) = clone(&src, &dst, &state, &["--resync"]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("from its state file"), "{err}");
    assert_eq!(done_bytes(event(&events, "COMPLETED")), 0);
}

#[test]
fn a_record_of_writes_since_complete_is_not_trusted_when_the_target_changed_or_serve_was_killed() {
    let dir = tempfile::tempdir().unwrap();
    let total = 16 * MIB;
    let (src, dst, state) =
        (dir.path().join("src.img"), dir.path().join("dst.img"), dir.path().join("state"));
    std::fs::write(&src, pattern(total as usize, 12)).unwrap();
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options().write(true).open(&src).unwrap().set_modified(hour_ago).unwrap();
    for kill in [false, true] {
        let _ = std::fs::remove_file(&dst);
        let (mut child, mut events, mut c) = serve(dir.path(), &src, &dst, &state, &[]);
        c.event("READY");
        assert_eq!(c.ask(json!({"execute": "complete"}))["return"], json!({}));
        events.until("COMPLETED", |_| true);
        write_through(dir.path(), MIB, 0x21);
        if kill {
            sigkill(&mut child);
        } else {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            assert!(child.wait().unwrap().success());
            // Written around livemirror after serving stopped.
            let f = std::fs::File::options().write(true).open(&dst).unwrap();
            std::os::unix::fs::FileExt::write_all_at(&f, &[0x99; 4096], 5 * MIB).unwrap();
        }
        let (events, err, code) = clone(&src, &dst, &state, &["--resync"]);
        assert_eq!(code, 0, "{err}");
        let why =
            if kill { "still being served" } else { "the target may have been written since" };
        assert!(err.contains(why) && err.contains("--resync compares"), "{err}");
        let copied = done_bytes(event(&events, "COMPLETED"));
        let expect = if kill { 64 * 1024 } else { 2 * 64 * 1024 };
        assert_eq!(copied, expect, "the compare pass finds each changed chunk: {err}");
        assert_identical(&src, &dst);
    }
}
