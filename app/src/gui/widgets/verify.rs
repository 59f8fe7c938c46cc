//! Verifying a finished copy from the Done screen: both sides read as their
//! media hold them (`livemirror_core::verify::compare`), one step at a time,
//! into a fixed-size map of what has been compared and where the sides
//! differ, drawn like the heatmap while it runs. "Skip" stops it between
//! steps. [`repair`] copies what differs, step by step, onto the target.
//!
//! The map has [`CELLS`] cells whatever the disk's size: memory stays
//! bounded, and a cell turns red when any byte it covers differs.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering::Relaxed};

use eframe::egui::{self, Color32, Mesh, Rect, Sense, Vec2, vec2};
use livemirror_core::chunkmap::CellState;
use livemirror_core::device::BlockDevice;
use livemirror_core::verify::{self, Reading};

use crate::gui::widgets::heatmap::{grid, state_color};

/// Cells in the map.
pub const CELLS: usize = 1024;
/// Bytes compared between two looks at the stop flag and the map.
const STEP: u64 = 8 * verify::STEP;

const NOT_YET: u8 = 0;
const SAME: u8 = 1;
const DIFFERENT: u8 = 2;

/// What a verification found (or why it has no answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Identical,
    /// Where the first differing [`verify::CHUNK`] starts (differences are
    /// located to a page, what a filesystem writes).
    DiffersAt(u64),
    /// Stopped by the user before the end.
    Skipped,
    Error(String),
}

/// A verification's progress: shared by the engine thread that compares
/// and the frame that draws it.
pub struct VerifyMap {
    len: u64,
    compared: AtomicU64,
    cells: Box<[AtomicU8]>,
    stop: AtomicBool,
}

impl VerifyMap {
    pub fn new(len: u64) -> Arc<Self> {
        Arc::new(VerifyMap {
            len,
            compared: AtomicU64::new(0),
            cells: (0..CELLS).map(|_| AtomicU8::new(NOT_YET)).collect(),
            stop: AtomicBool::new(false),
        })
    }

    /// Asks the comparison to stop after its current step.
    pub fn stop(&self) {
        self.stop.store(true, Relaxed);
    }

    /// Bytes compared so far, and of how many.
    pub fn progress(&self) -> (u64, u64) {
        (self.compared.load(Relaxed), self.len)
    }

    /// The cells that `bytes` touch.
    fn cells_of(&self, bytes: &Range<u64>) -> Range<usize> {
        if self.len == 0 || bytes.is_empty() {
            return 0..0;
        }
        let cell = |b: u64| ((u128::from(b) * CELLS as u128) / u128::from(self.len)) as usize;
        cell(bytes.start)..(cell(bytes.end - 1) + 1).min(CELLS)
    }

    fn mark(&self, bytes: &Range<u64>, state: u8) {
        for c in self.cells_of(bytes) {
            // A cell that differs anywhere stays red.
            let _ = self.cells[c].fetch_max(state, Relaxed);
        }
    }

    fn state(&self, cell: usize) -> u8 {
        self.cells[cell].load(Relaxed)
    }
}

/// Compares `source` and `target` over the source's length, step by step,
/// filling `map`. Blocking: run it on the engine.
pub fn run(source: &dyn BlockDevice, target: &dyn BlockDevice, map: &VerifyMap) -> Found {
    walk(source, target, map, |step| Ok(differences(source, target, step)?))
}

/// Repairs the target where it differs from the source, step by step:
/// each step is compared, its differing ranges copied from the source and
/// flushed ([`verify::repair`]), and compared again, filling `map` (a cell
/// stays red only if it still differs). Blocking: run it on the engine.
pub fn repair(source: &dyn BlockDevice, target: &dyn BlockDevice, map: &VerifyMap) -> Found {
    walk(source, target, map, |step| {
        let diffs = differences(source, target, step)?;
        if diffs.is_empty() {
            return Ok(diffs);
        }
        verify::repair(source, target, &diffs).map_err(StepError::Repair)?;
        Ok(differences(source, target, step)?)
    })
}

/// Why a step of a pass failed.
#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error(transparent)]
    Compare(#[from] verify::VerifyError),
    #[error("repair: {}", crate::text::failure::io(.0))]
    Repair(livemirror_core::IoFailure),
}

/// The pass over the source's length in [`STEP`]s, until Skip: `step`
/// gives the differences left in each, which turn their cells red.
fn walk(
    source: &dyn BlockDevice,
    target: &dyn BlockDevice,
    map: &VerifyMap,
    mut step: impl FnMut(&Range<u64>) -> Result<Vec<verify::Difference>, StepError>,
) -> Found {
    if target.len() < source.len() {
        return Found::DiffersAt(target.len());
    }
    let mut first = None;
    let mut at = 0;
    while at < map.len {
        if map.stop.load(Relaxed) {
            return Found::Skipped;
        }
        let range = at..(at + STEP).min(map.len);
        let diffs = match step(&range) {
            Ok(diffs) => diffs,
            Err(e) => return Found::Error(e.to_string()),
        };
        for d in &diffs {
            first.get_or_insert(d.offset);
            map.mark(&(d.offset..d.end()), DIFFERENT);
        }
        map.mark(&range, SAME);
        map.compared.store(range.end, Relaxed);
        at = range.end;
    }
    first.map_or(Found::Identical, Found::DiffersAt)
}

/// Where `source` and `target` differ within `range`, read as the media
/// hold them.
fn differences(
    source: &dyn BlockDevice,
    target: &dyn BlockDevice,
    range: &Range<u64>,
) -> Result<Vec<verify::Difference>, verify::VerifyError> {
    let mut diffs = Vec::new();
    let ranges = Some(range.clone()).into_iter();
    verify::compare(source, target, ranges, Reading::Medium, |d| diffs.push(d))?;
    Ok(diffs)
}

/// Draws the map in the width given, `height` points tall, with a legend.
pub fn map_ui(ui: &mut egui::Ui, map: &VerifyMap, height: f32) {
    let size = vec2(ui.available_width(), height);
    let (rect, _) = ui.allocate_exact_size(size, Sense::hover());
    let (cols, rows) = grid(size, CELLS);
    let shown = (cols * rows).min(CELLS);
    let step = vec2(size.x / cols as f32, size.y / rows as f32);
    let mut mesh = Mesh::default();
    for b in 0..shown {
        // Each drawn cell shows the worst of the map cells it folds.
        let cells = (b * CELLS / shown)..((b + 1) * CELLS / shown).max(b * CELLS / shown + 1);
        let state = cells.map(|c| map.state(c)).max().unwrap_or(NOT_YET);
        let min = rect.min + vec2((b % cols) as f32 * step.x, (b / cols) as f32 * step.y);
        mesh.add_colored_rect(Rect::from_min_size(min, step - Vec2::splat(1.0)), color(state));
    }
    ui.painter().add(egui::Shape::mesh(mesh));
    ui.horizontal_wrapped(|ui| {
        for (state, name) in
            [(NOT_YET, "not compared yet"), (SAME, "identical"), (DIFFERENT, "different")]
        {
            let (r, _) = ui.allocate_exact_size(Vec2::splat(12.0), Sense::hover());
            ui.painter().rect_filled(r, 2.0, color(state));
            ui.label(name);
            ui.add_space(8.0);
        }
    });
}

fn color(state: u8) -> Color32 {
    state_color(match state {
        SAME => CellState::Synced,
        DIFFERENT => CellState::Failed,
        _ => CellState::Pending,
    })
}

#[cfg(test)]
mod tests {
    use livemirror_core::device::MemoryDevice;

    use super::*;

    #[test]
    fn a_difference_is_found_at_its_first_byte_and_marks_its_cell_only() {
        let len = 64 << 20;
        let source = MemoryDevice::from_bytes(vec![7; len]);
        let mut other = vec![7u8; len];
        let at = 40 << 20;
        other[at + 5] = 8;
        let target = MemoryDevice::from_bytes(other);
        let map = VerifyMap::new(len as u64);
        assert_eq!(run(&source, &target, &map), Found::DiffersAt(at as u64));
        assert_eq!(map.progress(), (len as u64, len as u64));
        let red: Vec<usize> = (0..CELLS).filter(|&c| map.state(c) == DIFFERENT).collect();
        assert_eq!(red, vec![at * CELLS / len]);
        assert!((0..CELLS).all(|c| map.state(c) != NOT_YET));

        let same = VerifyMap::new(len as u64);
        assert_eq!(run(&source, &source, &same), Found::Identical);
    }

    #[test]
    fn repair_copies_what_differs_and_leaves_no_cell_red() {
        let len = 80 << 20;
        let source = MemoryDevice::from_bytes(vec![7; len]);
        let mut other = vec![7u8; len];
        other[(3 << 20) + 1] = 0;
        other[(70 << 20)..(70 << 20) + 10_000].fill(9);
        let target = MemoryDevice::from_bytes(other);
        let map = VerifyMap::new(len as u64);
        assert_eq!(repair(&source, &target, &map), Found::Identical);
        assert!((0..CELLS).all(|c| map.state(c) == SAME));
        assert!(target.contents() == source.contents());
    }

    #[test]
    fn a_stopped_verification_says_skipped_and_compares_nothing_more() {
        let source = MemoryDevice::from_bytes(vec![1; 1 << 20]);
        let map = VerifyMap::new(1 << 20);
        map.stop();
        assert_eq!(run(&source, &source, &map), Found::Skipped);
        assert_eq!(map.progress().0, 0);
    }
}
