//! Holds a [`KernelTracker`] on a block device for benches/kernel_tracking.sh:
//! attaches, prints `attached`, drains every 10 ms (as a job would) until
//! stdin closes, then prints how many chunks it drained. Linux, as root.
//!
//! With `--freeze-every MS` it also, every MS milliseconds, does what a
//! Complete does around its final copy — freezes the device's filesystems,
//! barrier, drain, thaw — and at the end prints the median and worst time
//! the filesystems were held.
//!
//! `cargo run --release -p livemirror-core --example kernel_track -- /dev/loop0 [--granularity N] [--freeze-every MS]`

#[cfg(target_os = "linux")]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    use std::io::Read;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use std::time::{Duration, Instant};

    use livemirror_core::device::{BlockDevice, OpenOptions};
    use livemirror_core::kernel::{DEFAULT_FREEZE_LIMIT, KernelTracker, freeze_all};

    let usage = "usage: kernel_track DEVICE [--granularity N] [--freeze-every MS]";
    let mut args = std::env::args().skip(1);
    let dev = args.next().ok_or(usage)?;
    let (mut granularity, mut freeze_every) = (65536, None);
    while let Some(flag) = args.next() {
        let value: u64 = args.next().ok_or(usage)?.parse()?;
        match flag.as_str() {
            "--granularity" => granularity = value,
            "--freeze-every" => freeze_every = Some(Duration::from_millis(value)),
            _ => return Err(usage.into()),
        }
    }
    let id = OpenOptions::new().open(&dev)?.id();
    let tracker = KernelTracker::attach(&id, granularity)?;
    println!("attached");
    let stop = Arc::new(AtomicBool::new(false));
    let stopper = stop.clone();
    // stdin closing (the bench script ending us) stops the drain loop.
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        stopper.store(true, Ordering::Relaxed);
    });
    let mut drained = 0u64;
    let mut held = Vec::new();
    let mut next_freeze = freeze_every.map(|every| Instant::now() + every);
    while !stop.load(Ordering::Relaxed) {
        tracker.drain(&mut |r| drained += r.end - r.start);
        if let (Some(at), Some(every)) = (next_freeze, freeze_every)
            && Instant::now() >= at
        {
            let hold = freeze_all(&id, DEFAULT_FREEZE_LIMIT)?;
            tracker.barrier()?;
            tracker.drain(&mut |r| drained += r.end - r.start);
            held.push(hold.thaw()?);
            next_freeze = Some(Instant::now() + every);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    tracker.barrier()?;
    tracker.drain(&mut |r| drained += r.end - r.start);
    held.sort();
    match (held.get(held.len() / 2), held.last()) {
        (Some(p50), Some(max)) => println!(
            "drained {drained} chunks; {} freezes held {:.1} ms median, {:.1} ms worst",
            held.len(),
            p50.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3
        ),
        _ => println!("drained {drained} chunks"),
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("kernel write tracking exists on Linux only");
    std::process::exit(1);
}
