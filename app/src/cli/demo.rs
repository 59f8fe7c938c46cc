//! The demo as text: progress, a coarse chunk map, Ready, Complete, and the
//! final comparison. Used when there is no display.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use livemirror_core::chunkmap::{CellState, ChunkMap};
use livemirror_core::job::{self, Command, JobEvent, MirrorOptions, Outcome};

use crate::cli::fail;
use crate::session::demo::{DemoArgs, Scenario};

const MAP_COLS: usize = 64;
const MAP_ROWS: usize = 4;

pub async fn run(args: DemoArgs) -> ExitCode {
    eprintln!("livemirror demo: generating a {} MiB source image…", args.size >> 20);
    let scenario = match Scenario::create(args.size) {
        Ok(s) => s,
        Err(e) => return fail(&format!("cannot create the demo images: {e}")),
    };
    eprintln!(
        "source {} (half data, half holes), target {} (new, sparse)",
        scenario.source_path.display(),
        scenario.target_path.display()
    );
    scenario.start_writer(200);
    let opts = MirrorOptions { speed: args.speed, ..Default::default() };
    let (job, mut events) = match job::start(scenario.live.clone(), scenario.target.clone(), opts) {
        Ok(j) => j,
        Err(e) => return fail(&e.to_string()),
    };
    let live_map = std::io::stderr().is_terminal();
    let mut redraw =
        tokio::time::interval(Duration::from_millis(if live_map { 250 } else { 2000 }));
    let mut drawn = false;
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(JobEvent::Ready) => {
                    eprintln!("\nREADY: target in sync, still mirroring new writes; completing in {}s", args.linger);
                    tokio::time::sleep(Duration::from_secs(args.linger)).await;
                    scenario.stop_writer();
                    eprintln!("writer stopped after {} writes; Complete", scenario.writes());
                    if let Err(e) = job.send(Command::Complete).await {
                        return fail(&e.to_string());
                    }
                }
                Ok(ev) if ev.is_final() => break,
                Err(_) => break,
                Ok(_) => {}
            },
            _ = redraw.tick() => {
                draw(job.chunk_map(), &job.status().progress, live_map && drawn);
                drawn = true;
            }
        }
    }
    match job.wait().await {
        Outcome::Completed { .. } => {}
        other => return fail(&format!("demo job ended: {other:?}")),
    }
    match scenario.images_identical() {
        Ok(true) => {
            eprintln!("COMPLETED: source and target images are identical, byte for byte");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            fail("source and target differ after Complete: this is a bug, please report it")
        }
        Err(e) => fail(&format!("cannot compare the images: {e}")),
    }
}

/// Draws the progress line and the chunk map; with `overwrite`, in place of
/// the previous drawing.
fn draw(map: &Arc<ChunkMap>, p: &livemirror_core::job::Progress, overwrite: bool) {
    let mut out = String::new();
    if overwrite {
        out.push_str(&format!("\x1b[{}A", MAP_ROWS + 1));
    }
    let pct = if p.total == 0 { 100.0 } else { p.copied as f64 * 100.0 / p.total as f64 };
    out.push_str(&format!(
        "{:5.1}%  {}  dirty {}      \n",
        pct,
        crate::text::rate(p.bytes_per_sec),
        crate::text::human(p.dirty)
    ));
    let cells = map.summary(MAP_COLS * MAP_ROWS);
    for row in cells.chunks(MAP_COLS) {
        let line: String = row.iter().map(|c| glyph(c.state(), c.heat)).collect();
        out.push_str(&line);
        out.push('\n');
    }
    eprint!("{out}");
    // A closed terminal: nowhere left to say anything.
    let _ = std::io::stderr().flush();
}

/// `#` synced, `.` not copied yet, `d` dirty again, `>` copying, `!` failed;
/// `*` marks a synced region being written right now.
fn glyph(state: CellState, heat: u32) -> char {
    match state {
        CellState::Failed => '!',
        CellState::Copying => '>',
        CellState::Pending => '.',
        CellState::Dirty => 'd',
        CellState::Synced if heat > 0 => '*',
        CellState::Synced => '#',
    }
}
