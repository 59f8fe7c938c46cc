//! `livemirror demo`'s world: a generated source image (data extents
//! between holes), a fresh sparse target, and a writer that keeps hitting a
//! few hot regions through the live source, as a busy VM would. The window
//! shows it by default, the terminal (`cli::demo`) when there is no display.
//! [`cleanup`] removes its folder when the process is stopped by a signal.

pub mod cleanup;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use clap::Args;
use livemirror_core::device::{BlockDevice, FileDevice, OpenOptions, create_image};
use livemirror_core::job::parse_size;
use livemirror_core::live::LiveSource;

/// What the demo is asked to show (`livemirror demo --size …`).
#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Size of the generated source image.
    #[arg(long, default_value = "512M", value_parser = parse_size)]
    pub size: u64,
    /// Copy speed limit, so there is time to watch (0 = unlimited).
    #[arg(long, default_value = "96M", value_parser = parse_size)]
    pub speed: u64,
    /// Seconds to stay in sync after Ready before completing (terminal demo).
    #[arg(long, default_value_t = 2)]
    pub linger: u64,
    /// Give the target a bad sector that fails once, to see the error
    /// prompt (Retry then succeeds). Window only.
    #[arg(long)]
    pub bad_sector: bool,
}

impl Default for DemoArgs {
    fn default() -> Self {
        DemoArgs { size: 512 << 20, speed: 96 << 20, linger: 2, bad_sector: false }
    }
}

/// Extent size of the generated image's data and holes.
const EXTENT: u64 = 1 << 20;

pub struct Scenario {
    /// Holds the images; removed on drop.
    dir: tempfile::TempDir,
    pub source_path: PathBuf,
    pub target_path: PathBuf,
    pub live: Arc<LiveSource>,
    pub target: Arc<FileDevice>,
    stop: Arc<AtomicBool>,
    writes: Arc<AtomicU64>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

/// A small, fast pseudo-random generator: demo data, not cryptography.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for c in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
}

impl Scenario {
    /// Makes a `size`-byte source where about half the 1 MiB extents hold
    /// data and the rest are holes, and an empty sparse target.
    pub fn create(size: u64) -> io::Result<Self> {
        let dir = tempfile::Builder::new().prefix("livemirror-demo").tempdir()?;
        cleanup::on_signal(dir.path());
        let source_path = dir.path().join("source.img");
        let target_path = dir.path().join("target.img");
        let source = create_image(&source_path, size).map_err(io::Error::other)?;
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut buf = vec![0u8; EXTENT as usize];
        let mut pos = 0;
        while pos < size {
            let n = EXTENT.min(size - pos);
            if rng.next().is_multiple_of(2) {
                rng.fill(&mut buf[..n as usize]);
                source.write_at(&buf[..n as usize], pos)?;
            }
            pos += n;
        }
        drop(source);
        let source = OpenOptions::new().write(true).open(&source_path).map_err(io::Error::other)?;
        let target = create_image(&target_path, size).map_err(io::Error::other)?;
        Ok(Scenario {
            dir,
            source_path,
            target_path,
            live: LiveSource::new(Arc::new(source)),
            target: Arc::new(target),
            stop: Arc::new(AtomicBool::new(false)),
            writes: Arc::new(AtomicU64::new(0)),
            writer: Mutex::new(None),
        })
    }

    /// Starts writing 64 KiB blocks into three hot regions through the live
    /// source, about `per_sec` writes a second.
    pub fn start_writer(&self, per_sec: u32) {
        let (live, stop, writes) = (self.live.clone(), self.stop.clone(), self.writes.clone());
        let len = live.len();
        let writer = std::thread::spawn(move || {
            let mut rng = XorShift(42);
            let mut block = vec![0u8; 64 << 10];
            let hot = [len / 10, len / 2, len * 4 / 5];
            let span = (len / 40).max(block.len() as u64);
            let pause = Duration::from_secs(1) / per_sec.max(1);
            while !stop.load(Ordering::Relaxed) {
                let base = hot[(rng.next() % hot.len() as u64) as usize];
                let off = (base + rng.next() % span).min(len.saturating_sub(block.len() as u64));
                let off = off / 4096 * 4096;
                rng.fill(&mut block);
                if live.write_at(&block, off).is_err() {
                    break;
                }
                writes.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(pause);
            }
        });
        *self.writer_slot() = Some(writer);
    }

    fn writer_slot(&self) -> std::sync::MutexGuard<'_, Option<JoinHandle<()>>> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops the writer and waits for its last write to finish.
    pub fn stop_writer(&self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(w) = self.writer_slot().take() {
            let _ = w.join();
        }
    }

    /// Writes done by the writer so far.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// Compares the source and target files byte for byte.
    pub fn images_identical(&self) -> io::Result<bool> {
        let a = OpenOptions::new().open(&self.source_path).map_err(io::Error::other)?;
        let b = OpenOptions::new().open(&self.target_path).map_err(io::Error::other)?;
        Ok(first_difference(&a, &b)?.is_none())
    }

    /// The start of the first data extent at or after `from`, for placing
    /// the demo's bad sector where the copy really writes.
    pub fn data_at_or_after(&self, from: u64) -> io::Result<Option<u64>> {
        let dev = self.live.device();
        let mut pos = from;
        while pos < dev.len() {
            let (alloc, run) = dev.block_status(pos, dev.len() - pos)?;
            if alloc == livemirror_core::device::Allocation::Data {
                return Ok(Some(pos));
            }
            pos += run;
        }
        Ok(None)
    }
}

/// The offset of the first 1 MiB block where `a` and `b` differ (`Some(len)`
/// of the shorter one when their sizes differ), or `None` when identical.
fn first_difference(a: &dyn BlockDevice, b: &dyn BlockDevice) -> io::Result<Option<u64>> {
    if a.len() != b.len() {
        return Ok(Some(a.len().min(b.len())));
    }
    let (mut x, mut y) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut pos = 0;
    while pos < a.len() {
        let n = ((a.len() - pos) as usize).min(x.len());
        a.read_at(&mut x[..n], pos)?;
        b.read_at(&mut y[..n], pos)?;
        if x[..n] != y[..n] {
            return Ok(Some(pos));
        }
        pos += n as u64;
    }
    Ok(None)
}

impl Drop for Scenario {
    fn drop(&mut self) {
        self.stop_writer();
        // The folder goes with `dir`, right after this.
        cleanup::forget(self.dir.path());
    }
}
