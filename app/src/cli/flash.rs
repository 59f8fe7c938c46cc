//! `livemirror clone IMAGE.xz DST`: a compressed image source, written once
//! front to back and verified by reading the target back (see
//! [`livemirror_core::flash`]). No mirror job: nothing writes such a
//! source, and it cannot be read at random.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use livemirror_core::device::{BlockDevice, ImageFormat};
use livemirror_core::flash::{self, Compression, FlashError, Flashed, Progress, Target};
use serde_json::json;

use super::progress::terminal_bar;
use super::{CloneArgs, EXIT_CANCELLED, EXIT_FAILED, fail};
use crate::platform::privileged;
use crate::session::flash::{self as session_flash, FlashTargetError};
use crate::session::target;
use crate::text::json::named_line;
use crate::text::{self, human};

pub async fn run(args: CloneArgs, format: Compression) -> ExitCode {
    if let Some(flag) = live_only_flag(&args) {
        return fail(&format!(
            "{flag} needs a disk or image to mirror; a {format}-compressed image is a stream, \
             written once and verified"
        ));
    }
    let (target, created) = match open_target(&args, format) {
        Ok(t) => t,
        Err(e) => return fail(&format!("target: {e}")),
    };
    let threads = if format.multithreaded() { "multithreaded" } else { "one thread" };
    eprintln!(
        "source: a {format}-compressed image: decompressed as a stream ({threads}) and written \
         once, front to back: no live mirroring, no random access; then the target is read \
         back and checked against the decompressed stream's hash"
    );
    let device = match &target {
        Target::Device(dev) => Some(dev.clone()),
        Target::NewFile(_) => None,
    };
    let source = args.source.clone();
    let (mut result, took) = run_blocking(
        move |cancel, progress| flash::flash(&source, format, target, cancel, progress),
        args.json,
    )
    .await;
    let mut table = None;
    if let (Ok(flashed), Some(dev)) = (&result, device) {
        match session_flash::fix_table(&*dev, flashed.len) {
            Ok(said) => table = said,
            Err(e) => result = Err(e),
        }
    }
    finish(&args, created, (result, took), |f, took| {
        text::flash::completed(f, format, Some(took), table.as_deref())
    })
}

/// What an image out is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packer {
    /// A new `DST.img.zst`: a zstd stream.
    Zstd,
    /// `--compress` onto a new `DST.qcow2`: compressed clusters.
    Qcow2,
}

/// The image out `clone` makes of its target, if it makes one: a new
/// `….zst`, or a new qcow2 with `--compress`. `--compress` with any other
/// target is refused before anything is touched.
pub fn packer(args: &CloneArgs) -> Result<Option<Packer>, TargetError> {
    if is_new_zst(&args.target) {
        return Ok(Some(Packer::Zstd));
    }
    if !args.compress {
        return Ok(None);
    }
    let path = &args.target;
    let qcow2 = match args.formats.target_format() {
        Some(format) => format == ImageFormat::Qcow2,
        None => ImageFormat::of_new_name(path) == ImageFormat::Qcow2,
    };
    if target::exists(path) || !qcow2 {
        return Err(TargetError::CompressNotNewQcow2 { path: path.clone() });
    }
    if args.formats.target_backing.is_some() {
        return Err(TargetError::CompressWithBacking);
    }
    Ok(Some(Packer::Qcow2))
}

/// `clone SRC DST.img.zst`, `clone --compress SRC DST.qcow2`: the source
/// read once, front to back, into a new compressed image, which is then
/// read back to check it.
pub async fn pack(args: CloneArgs, source: Arc<dyn BlockDevice>, packer: Packer) -> ExitCode {
    let what = match packer {
        Packer::Zstd => "zstd",
        Packer::Qcow2 => "qcow2",
    };
    if let Some(flag) = live_only_flag(&args) {
        return fail(&format!(
            "{flag} needs a target to mirror onto; a compressed {what} image is written once"
        ));
    }
    let check = match packer {
        Packer::Zstd => "decompressed",
        Packer::Qcow2 => "read back through a qcow2 reader (imago)",
    };
    eprintln!(
        "target: a new {what} image of compressed data: the source is read once, front to back, \
         with no write tracking (writes to it meanwhile make an inconsistent image); then the \
         image is {check} and checked against the hash of what was read"
    );
    let target = args.target.clone();
    let result = run_blocking(
        move |cancel, progress| match packer {
            Packer::Zstd => flash::pack_zstd(&*source, &target, cancel, progress),
            Packer::Qcow2 => flash::pack_qcow2(&*source, &target, cancel, progress),
        },
        args.json,
    )
    .await;
    finish(&args, false, result, |f, took| text::flash::packed(f, &args.target, what, check, took))
}

/// Runs `work` on a blocking thread with a cancel flag Ctrl-C sets (it
/// stops between buffers) and the progress display.
async fn run_blocking(
    work: impl FnOnce(&AtomicBool, &mut dyn FnMut(&Progress)) -> Result<Flashed, FlashError>
    + Send
    + 'static,
    json: bool,
) -> (Result<Flashed, FlashError>, Duration) {
    let started = Instant::now();
    let cancel = Arc::new(AtomicBool::new(false));
    let mut task = {
        let cancel = cancel.clone();
        tokio::task::spawn_blocking(move || {
            let mut shown = Shown::new(json);
            work(&cancel, &mut |p| shown.progress(p))
        })
    };
    let result = tokio::select! {
        r = &mut task => r,
        _ = tokio::signal::ctrl_c() => {
            cancel.store(true, Ordering::Relaxed);
            task.await
        }
    };
    (result.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())), started.elapsed())
}

/// True for a target that does not exist yet and is named `….zst`: an
/// image out as a zstd stream.
pub fn is_new_zst(target: &Path) -> bool {
    let zst = target.extension().is_some_and(|e| e.eq_ignore_ascii_case("zst"));
    zst && !target::exists(target)
}

/// The first option given that only a mirror job can honour.
fn live_only_flag(args: &CloneArgs) -> Option<&'static str> {
    [
        (args.resync, "--resync"),
        (args.no_complete, "--no-complete"),
        (args.control.is_some(), "--control"),
        (args.grow_last_partition, "--grow-last-partition"),
        (args.formats.target_backing.is_some(), "--target-backing"),
    ]
    .into_iter()
    .find_map(|(given, flag)| given.then_some(flag))
}

/// The target as [`session_flash::open_target`] takes it: an existing one
/// opened with the cache and format asked for. True when made here.
fn open_target(args: &CloneArgs, format: Compression) -> Result<(Target, bool), TargetError> {
    let path = &args.target;
    let qcow2 = args.formats.target_format() == Some(ImageFormat::Qcow2)
        || (args.formats.target_format().is_none()
            && ImageFormat::of_new_name(path) == ImageFormat::Qcow2);
    let open = || {
        let opts = args.cache.target(false, args.mirror.copy_mode);
        privileged::open_as(path, opts, args.formats.target_format())
    };
    Ok(session_flash::open_target(&args.source, path, format, qcow2, open)?)
}

/// Why an image out or a flash cannot write its target.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(
        "--compress makes a new qcow2 image (a target that does not exist, named .qcow2 or \
         with --target-format qcow2); {} is not one (a new .img.zst is compressed anyway)",
        path.display()
    )]
    CompressNotNewQcow2 { path: PathBuf },
    #[error("--compress makes a standalone image: it takes no --target-backing")]
    CompressWithBacking,
    #[error(transparent)]
    Flash(#[from] FlashTargetError),
}

/// The last word: `said` words a success (from the result and seconds
/// taken); a failure says what the target holds now. Exit 0 only when
/// verified.
fn finish(
    args: &CloneArgs,
    created: bool,
    (result, took): (Result<Flashed, FlashError>, Duration),
    said: impl FnOnce(&Flashed, Duration) -> String,
) -> ExitCode {
    let flashed = match result {
        Ok(f) => f,
        Err(e) => {
            let left = text::flash::left(session_flash::clean_up(&args.target, created));
            if args.json {
                let data = json!({ "error": e.to_string(), "identical": false });
                println!("{}", named_line("FLASH_FAILED", data));
            }
            let code = if matches!(e, FlashError::Cancelled { .. }) {
                EXIT_CANCELLED
            } else {
                EXIT_FAILED
            };
            eprintln!("livemirror: error: {e}; {left}");
            return ExitCode::from(code);
        }
    };
    if args.json {
        let data = json!({
            "len": flashed.len,
            "compressed_len": flashed.compressed_len,
            "identical": true,
            "hash": format!("xxh3-128:{:032x}", flashed.hash),
        });
        println!("{}", named_line("FLASH_COMPLETED", data));
    }
    eprintln!("{}", said(&flashed, took));
    ExitCode::SUCCESS
}

/// Progress on the terminal (indicatif's bar over the compressed bytes
/// read, see [`super::progress::terminal_bar`]) or as FLASH_PROGRESS JSON
/// events (at most once a second).
struct Shown {
    json: bool,
    bar: ProgressBar,
    last: Option<Instant>,
}

impl Shown {
    fn new(json: bool) -> Self {
        Shown { json, bar: terminal_bar(json), last: None }
    }

    fn progress(&mut self, p: &Progress) {
        if !self.json {
            let of = p.declared_len.map(|d| format!(" of {}", human(d))).unwrap_or_default();
            self.bar.set_length(p.compressed_len);
            self.bar.set_position(p.compressed_read);
            self.bar.set_message(if p.verified > 0 {
                format!("verifying: {} of {} read back", human(p.verified), human(p.written))
            } else {
                format!("written {}{of}", human(p.written))
            });
            return;
        }
        if self.last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return;
        }
        self.last = Some(Instant::now());
        let data = json!({
            "compressed_read": p.compressed_read,
            "compressed_len": p.compressed_len,
            "written": p.written,
            "declared_len": p.declared_len,
            "verified": p.verified,
        });
        // A closed pipe (`| head`) is the reader's choice, not our error.
        let _ = writeln!(std::io::stdout().lock(), "{}", named_line("FLASH_PROGRESS", data));
    }
}

impl Drop for Shown {
    /// The bar goes before the last lines are written.
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}
