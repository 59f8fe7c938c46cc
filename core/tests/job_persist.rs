//! The job's saved state (crate `persist`), on tokio's paused clock: saves
//! every two virtual seconds of a speed-limited copy.
//!
//! The crash rule is checked against a target with a volatile cache: its
//! writes become durable only on flush, and a "crash" freezes what is
//! durable. Whatever the saved map calls copied must then be on the durable
//! medium, and a job resumed from it onto that medium ends identical.

use std::path::Path;
use std::sync::{Arc, Mutex};

use livemirror_core::device::{BlockDevice, DeviceId, MemoryDevice};
use livemirror_core::job::{self, Command, JobEvent, MirrorOptions, Persist, Resume};
use livemirror_core::persist::{self, Identity, Side};
use livemirror_testkit::job::*;
use livemirror_testkit::pattern;

const MIB: u64 = 1 << 20;
const GRAN: u64 = 64 << 10;

/// A disk with a write cache: reads see every write, the medium holds only
/// what was flushed. After [`crash`](Self::crash) nothing more reaches it.
struct Volatile {
    cache: MemoryDevice,
    durable: Mutex<Vec<u8>>,
    crashed: Mutex<bool>,
}

impl Volatile {
    fn new(len: u64) -> Self {
        Volatile {
            cache: MemoryDevice::new(len),
            durable: Mutex::new(vec![0; len as usize]),
            crashed: Mutex::new(false),
        }
    }

    fn crash(&self) {
        *self.crashed.lock().unwrap() = true;
    }

    fn medium(&self) -> Vec<u8> {
        self.durable.lock().unwrap().clone()
    }

    fn alive(&self) -> std::io::Result<()> {
        match *self.crashed.lock().unwrap() {
            true => Err(std::io::Error::from_raw_os_error(libc::EIO)),
            false => Ok(()),
        }
    }
}

impl BlockDevice for Volatile {
    fn len(&self) -> u64 {
        self.cache.len()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.cache.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        self.alive()?;
        self.cache.write_at(buf, offset)
    }
    fn write_zeroes(&self, offset: u64, len: u64, may_unmap: bool) -> std::io::Result<()> {
        self.alive()?;
        self.cache.write_zeroes(offset, len, may_unmap)
    }
    fn flush(&self) -> std::io::Result<()> {
        // Held across the copy, so a crash cannot land half-way through one.
        let crashed = self.crashed.lock().unwrap();
        if *crashed {
            return Err(std::io::Error::from_raw_os_error(libc::EIO));
        }
        *self.durable.lock().unwrap() = self.cache.contents();
        Ok(())
    }
    fn id(&self) -> DeviceId {
        self.cache.id()
    }
    fn describe(&self) -> String {
        "volatile".into()
    }
}

fn identity(len: u64) -> Identity {
    let side = |p: &str| Side { path: p.into(), len, key: "memory".into() };
    Identity { source: side("/src"), target: side("/dst") }
}

fn persist(path: &Path, len: u64, resume: Option<Resume>) -> Option<Persist> {
    Some(Persist { path: path.to_path_buf(), identity: identity(len), resume, write_log: None })
}

fn options(speed: u64) -> MirrorOptions {
    MirrorOptions { speed, granularity: Some(GRAN), buf_size: MIB, ..Default::default() }
}

fn completed_bytes(ev: &JobEvent) -> u64 {
    match ev {
        JobEvent::Completed { copied, zeroed, skipped, .. } => copied + zeroed + skipped,
        other => panic!("not completed: {other:?}"),
    }
}

/// Crashes the target once `crash_at` bytes are copied, checks the crash
/// rule on what the last save says, then resumes onto the durable medium.
async fn crash_and_resume(crash_at: u64) {
    let len = 16 * MIB;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("job.state");
    let p = pair(len as usize);
    let target = Arc::new(Volatile::new(len));
    let speed = 2 * MIB;
    let (job, mut rx) = job::start_persisted(
        p.live.clone(),
        target.clone(),
        options(speed),
        persist(&state, len, None),
    )
    .unwrap();
    // Crash once a save holds at least `crash_at` bytes copied (the copy
    // goes on meanwhile, so chunks copied since are on no medium yet).
    status_until(&job, |s| s.progress.saved.is_some_and(|r| r <= len - crash_at)).await;
    target.crash();
    let medium = target.medium();
    // Copying, the failed writes end the job; ready, the cancel does (its
    // last drain fails on the flush). Either way the last save is tried.
    job.post(Command::Cancel { force: false });
    let end = rest(&mut rx).await;
    assert!(
        end.iter().any(|e| matches!(e, JobEvent::NotSaved { .. })),
        "the save after the crash fails and says so: {end:?}"
    );

    let saved = persist::load(&state).expect("a save from before the crash");
    let source = p.source.contents();
    let clean: Vec<u64> = (0..saved.dirty.len()).filter(|c| !saved.dirty.is_dirty(*c)).collect();
    assert!(saved.remaining() <= len - crash_at, "the save waited for, or a later one");
    for c in &clean {
        let r = (c * GRAN) as usize..((c + 1) * GRAN) as usize;
        assert!(
            medium[r.clone()] == source[r],
            "chunk {c} is called copied but is not on the medium"
        );
    }

    // The machine comes back: the medium is what the disk holds.
    let rebooted = Arc::new(MemoryDevice::from_bytes(medium));
    let resume = Resume { dirty: saved.dirty.clone(), compare_clean: false };
    let (job, mut rx) = job::start_persisted(
        p.live.clone(),
        rebooted.clone(),
        options(0),
        persist(&state, len, Some(resume)),
    )
    .unwrap();
    let done = until(&mut rx, |ev| ev.is_final() || matches!(ev, JobEvent::Ready)).await;
    assert!(matches!(done, JobEvent::Ready), "{done:?}");
    job.post(Command::Complete);
    let done = until(&mut rx, JobEvent::is_final).await;
    assert_eq!(completed_bytes(&done), saved.remaining(), "copies exactly what was left");
    assert_same(&rebooted.contents(), &source);
    assert!(!state.exists(), "a completed job leaves no state behind");
}

#[tokio::test(start_paused = true)]
async fn a_crash_loses_nothing_the_save_called_copied() {
    for mib in [1, 3, 5, 7, 9, 11, 13, 15] {
        crash_and_resume(mib * MIB).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_job_saves_where_it_stopped() {
    let len = 8 * MIB;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("job.state");
    let p = pair(len as usize);
    let (job, mut rx) = job::start_persisted(
        p.live.clone(),
        p.target.clone(),
        options(MIB),
        persist(&state, len, None),
    )
    .unwrap();
    until(&mut rx, |ev| matches!(ev, JobEvent::Progress(pr) if pr.copied >= 3 * MIB)).await;
    job.post(Command::Cancel { force: false });
    until(&mut rx, JobEvent::is_final).await;
    let saved = persist::load(&state).unwrap();
    let copied = job.status().progress.copied;
    assert_eq!(saved.remaining(), len - copied, "the last save is exact");
    assert_eq!(saved.header.state, livemirror_core::job::JobState::Cancelled);
    assert_eq!(saved.header.granularity, GRAN);
    assert_eq!(saved.header.options.speed, MIB);
    assert!(saved.header.samples.len() >= 2, "{:?}", saved.header.samples);
}

#[tokio::test(start_paused = true)]
async fn a_resume_that_compares_finds_what_changed_in_copied_chunks() {
    let len = 4 * MIB;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("job.state");
    let p = pair(len as usize);
    // Half copied earlier; since then the source changed in a copied chunk.
    let target = Arc::new(MemoryDevice::new(len));
    target.write_at(&p.source.contents()[..(2 * MIB) as usize], 0).unwrap();
    p.source.write_at(&[0x5a; 100], 3 * GRAN + 7).unwrap();
    let mut dirty = livemirror_core::bitmap::DirtyBitmap::new(len / GRAN);
    dirty.set(2 * MIB / GRAN..len / GRAN);
    let resume = Resume { dirty, compare_clean: true };
    let (_job, mut rx) = job::start_persisted(
        p.live.clone(),
        target.clone(),
        options(0),
        persist(&state, len, Some(resume)),
    )
    .unwrap();
    until(&mut rx, |ev| matches!(ev, JobEvent::Ready)).await;
    _job.post(Command::Complete);
    let done = until(&mut rx, JobEvent::is_final).await;
    assert_eq!(completed_bytes(&done), 2 * MIB + GRAN, "what was left and the changed chunk");
    assert_same(&target.contents(), &p.source.contents());
}

#[tokio::test(start_paused = true)]
async fn a_saved_map_of_another_geometry_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = pair(MIB as usize);
    let resume =
        Resume { dirty: livemirror_core::bitmap::DirtyBitmap::new(3), compare_clean: false };
    let e = job::start_persisted(
        p.live.clone(),
        p.target.clone(),
        options(0),
        persist(&dir.path().join("s"), MIB, Some(resume)),
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("saved map"), "{e}");
}

#[tokio::test(start_paused = true)]
async fn a_completed_job_that_goes_on_serving_notes_every_write_since() {
    let len = 4 * MIB;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("job.state");
    let p = pair(len as usize);
    let log = livemirror_core::live::WriteLog::new();
    let mut keep = persist(&state, len, None);
    keep.as_mut().unwrap().write_log = Some(log.clone());
    let (job, mut rx) =
        job::start_persisted(p.live.clone(), p.target.clone(), options(0), keep).unwrap();
    until(&mut rx, |ev| matches!(ev, JobEvent::Ready)).await;
    // Before Complete the job copies writes; the log notes nothing yet.
    p.live.write_at(&[1; 10], 5 * GRAN).unwrap();
    assert!(log.snapshot().is_none());
    job.post(Command::Complete);
    until(&mut rx, JobEvent::is_final).await;
    let saved = persist::load(&state).expect("the file stays");
    let since = saved.header.since_complete.expect("and says it is being served");
    assert!(since.serving, "{since:?}");
    assert_eq!(saved.dirty.count(), 0, "nothing written since yet");
    // Served: writes reach the target, and the log has their chunks.
    p.live.write_at(&[2; 10], 2 * GRAN - 5).unwrap();
    p.live.write_zeroes(3 * MIB, GRAN, true).unwrap();
    let written = log.snapshot().unwrap();
    let expect = [1..3, 3 * MIB / GRAN..3 * MIB / GRAN + 1];
    assert_eq!(written.runs().collect::<Vec<_>>(), expect);
    assert_eq!(&p.target.contents()[(2 * GRAN - 5) as usize..][..10], &[2; 10]);
    let at = (2 * GRAN - 5) as usize;
    assert_eq!(
        p.source.contents()[at..at + 10],
        pattern(len as usize, 1)[at..at + 10],
        "untouched"
    );
}
