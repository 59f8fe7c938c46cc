//! `livemirror disks`: the whole disks the window would offer, as a table.

use std::process::ExitCode;

use crate::platform::disks;
use crate::text::human;

pub fn run() -> ExitCode {
    let list = disks::list();
    if list.is_empty() {
        println!("no disks found");
        return ExitCode::SUCCESS;
    }
    println!("{:<12} {:>10}  {:<8} {:<24} NOTES", "DEVICE", "SIZE", "BUS", "MODEL");
    for d in &list {
        println!(
            "{:<12} {:>10}  {:<8} {:<24} {}",
            d.path.display(),
            human(d.size),
            d.bus,
            d.model,
            d.flags().join("; ")
        );
    }
    ExitCode::SUCCESS
}
