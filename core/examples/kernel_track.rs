//! Holds a [`KernelTracker`] on a block device for benches/kernel_tracking.sh:
//! attaches, prints `attached`, drains every 10 ms (as a job would) until
//! stdin closes, then prints how many chunks it drained. Linux, as root.
//!
//! `cargo run --release -p livemirror-core --example kernel_track -- /dev/loop0 [GRANULARITY]`

#[cfg(target_os = "linux")]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    use std::io::Read;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use livemirror_core::device::{BlockDevice, OpenOptions};
    use livemirror_core::kernel::KernelTracker;

    let mut args = std::env::args().skip(1);
    let dev = args.next().ok_or("usage: kernel_track DEVICE [GRANULARITY]")?;
    let granularity = args.next().map(|g| g.parse()).transpose()?.unwrap_or(65536);
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
    while !stop.load(Ordering::Relaxed) {
        tracker.drain(&mut |r| drained += r.end - r.start);
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    tracker.barrier()?;
    tracker.drain(&mut |r| drained += r.end - r.start);
    println!("drained {drained} chunks");
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("kernel write tracking exists on Linux only");
    std::process::exit(1);
}
