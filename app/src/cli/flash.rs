//! `livemirror clone IMAGE.xz DST`: a compressed image source, written once
//! front to back and verified by reading the target back (see
//! [`livemirror_core::flash`]). No mirror job: nothing writes such a
//! source, and it cannot be read at random.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use livemirror_core::device::{BlockDevice, ImageFormat, OpenOptions};
use livemirror_core::flash::{self, Compression, FlashError, Flashed, Progress, Target};
use serde_json::json;

use super::clone::CloneArgs;
use super::{EXIT_CANCELLED, EXIT_FAILED, fail};
use crate::platform::privileged;
use crate::text::human;
use crate::text::json::named_line;

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
    let source = args.source.clone();
    let result = run_blocking(
        move |cancel, progress| flash::flash(&source, format, target, cancel, progress),
        args.json,
    )
    .await;
    finish(&args, created, result, |f, secs| {
        format!(
            "completed: the target is identical to the decompressed image (verified: its \
             read-back hash matches the stream's) ({} from {} of {format}) in {secs:.1}s, {}/s",
            human(f.len),
            human(f.compressed_len),
            human((f.len as f64 / secs) as u64),
        )
    })
}

/// `clone SRC DST.img.zst`: the source read once, front to back, into a
/// new zstd file, which is then decompressed to check it.
pub async fn pack(args: CloneArgs, source: Arc<dyn BlockDevice>) -> ExitCode {
    if let Some(flag) = live_only_flag(&args) {
        return fail(&format!("{flag} needs a target to mirror onto; a .zst image is a stream"));
    }
    eprintln!(
        "target: a new zstd-compressed image: the source is read once, front to back, with no \
         write tracking (writes to it meanwhile make an inconsistent image); then the image is \
         decompressed and checked against the hash of what was read"
    );
    let target = args.target.clone();
    let result = run_blocking(
        move |cancel, progress| flash::pack_zstd(&*source, &target, cancel, progress),
        args.json,
    )
    .await;
    finish(&args, false, result, |f, secs| {
        format!(
            "completed: {} decompresses to exactly the {} read from the source (verified: \
             decompressed, its hash matches) ({} of zstd) in {secs:.1}s, {}/s",
            args.target.display(),
            human(f.len),
            human(f.compressed_len),
            human((f.len as f64 / secs) as u64),
        )
    })
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
    zst && privileged::nbd_uri(target).is_none() && !target.exists()
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

/// An existing target (disk, image, export) is written as it is; a new one
/// is a raw image grown as the stream arrives. True when made here.
fn open_target(args: &CloneArgs, format: Compression) -> Result<(Target, bool), String> {
    let path = &args.target;
    if privileged::nbd_uri(path).is_some() || path.exists() {
        let opts = args.cache.target(false, args.mirror.copy_mode);
        let asked = args.formats.target_format();
        let dev = privileged::open_as(path, opts, asked).map_err(|e| e.to_string())?;
        refuse_same_or_mounted(&args.source, &*dev)?;
        return Ok((Target::Device(dev), false));
    }
    let qcow2 = args.formats.target_format() == Some(ImageFormat::Qcow2)
        || (args.formats.target_format().is_none()
            && ImageFormat::of_new_name(path) == ImageFormat::Qcow2);
    if qcow2 {
        return Err(format!(
            "a new qcow2 image needs its size before the first byte, which a {format} stream \
             does not give: write the image to a raw file (or a disk) and clone that to qcow2"
        ));
    }
    Ok((Target::NewFile(path.clone()), true))
}

/// The mirror job's own refusals: the compressed file itself, or a disk
/// with a mounted filesystem.
fn refuse_same_or_mounted(source: &Path, target: &dyn BlockDevice) -> Result<(), String> {
    let source = OpenOptions::new().open(source).map_err(|e| format!("source: {e}"))?;
    livemirror_core::job::refuse_same_or_mounted(&source, target).map_err(|e| e.to_string())
}

/// The last word: `said` words a success (from the result and seconds
/// taken); a failure says what the target holds now. Exit 0 only when
/// verified.
fn finish(
    args: &CloneArgs,
    created: bool,
    (result, took): (Result<Flashed, FlashError>, Duration),
    said: impl FnOnce(&Flashed, f64) -> String,
) -> ExitCode {
    let flashed = match result {
        Ok(f) => f,
        Err(e) => {
            let left = if !args.target.exists() {
                "no target file was left"
            } else if created && std::fs::remove_file(&args.target).is_ok() {
                "the partial new image was removed"
            } else {
                "what the target holds now is not a copy"
            };
            if args.json {
                let data = json!({ "error": e.to_string(), "identical": false });
                println!("{}", named_line("FLASH_FAILED", data));
            }
            let code = if matches!(e, FlashError::Cancelled { .. }) {
                EXIT_CANCELLED
            } else {
                EXIT_FAILED
            };
            eprintln!("\rlivemirror: error: {e}; {left}");
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
    eprintln!("\r{}", said(&flashed, took.as_secs_f64().max(1e-9)));
    ExitCode::SUCCESS
}

/// Progress on the terminal (a line redrawn at most 4× a second) or as
/// FLASH_PROGRESS JSON events (at most once a second).
struct Shown {
    json: bool,
    bar: bool,
    last: Option<Instant>,
}

impl Shown {
    fn new(json: bool) -> Self {
        Shown { json, bar: !json && std::io::stderr().is_terminal(), last: None }
    }

    fn progress(&mut self, p: &Progress) {
        let every = if self.json { Duration::from_secs(1) } else { Duration::from_millis(250) };
        if self.last.is_some_and(|t| t.elapsed() < every) || !(self.json || self.bar) {
            return;
        }
        self.last = Some(Instant::now());
        if self.json {
            let data = json!({
                "compressed_read": p.compressed_read,
                "compressed_len": p.compressed_len,
                "written": p.written,
                "declared_len": p.declared_len,
                "verified": p.verified,
            });
            let _ = writeln!(std::io::stdout().lock(), "{}", named_line("FLASH_PROGRESS", data));
            return;
        }
        let of = p.declared_len.map(|d| format!(" of {}", human(d))).unwrap_or_default();
        let line = if p.verified > 0 {
            format!("verifying: {} of {} read back", human(p.verified), human(p.written))
        } else {
            format!(
                "written {}{of} from {} of {} compressed",
                human(p.written),
                human(p.compressed_read),
                human(p.compressed_len)
            )
        };
        eprint!("\r{line:<72}");
        let _ = std::io::stderr().flush();
    }
}
