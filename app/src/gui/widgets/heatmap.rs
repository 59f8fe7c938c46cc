//! The chunk-map heatmap: the disk as a grid of cells, each coloured by what
//! is happening to its part of the disk (copied, waiting, written again,
//! being copied, failed), with a pink glow where writes land that fades as
//! the engine's write-heat decays. Hovering a cell tells its byte range,
//! chunk counts and recent writes.
//!
//! The grid adapts to the space it gets: as many cells as fit at about
//! [`CELL`] points each, never more than the map has. Each drawn cell folds
//! a run of the [`ChunkMap`]'s cells (`ChunkMap::summary`).

use std::ops::Range;

use eframe::egui::{self, Color32, Mesh, Rect, Sense, Vec2, vec2};
use livemirror_core::chunkmap::{CellCounts, CellState, ChunkMap};

use crate::gui::theme;
use crate::text::human;

/// Target size of one drawn cell, in points.
const CELL: f32 = 9.0;
/// Gap between cells.
const GAP: f32 = 1.0;
/// Heat at which the write glow is strongest. Heat decays by a quarter
/// every 250 ms, so a cell written once glows for about half a second.
const FULL_HEAT: f32 = 4.0;

pub const STATES: [CellState; 5] = [
    CellState::Synced,
    CellState::Pending,
    CellState::Dirty,
    CellState::Copying,
    CellState::Failed,
];

/// The colour of a state.
pub fn state_color(state: CellState) -> Color32 {
    match state {
        CellState::Synced => theme::GOOD,
        CellState::Pending => theme::IDLE,
        CellState::Dirty => theme::WARN,
        CellState::Copying => theme::BUSY,
        CellState::Failed => theme::BAD,
    }
}

/// What the legend calls a state.
pub fn state_name(state: CellState) -> &'static str {
    match state {
        CellState::Synced => "in sync",
        CellState::Pending => "not copied yet",
        CellState::Dirty => "written since copied",
        CellState::Copying => "copying",
        CellState::Failed => "failed",
    }
}

/// A drawn cell's colour: its state's, glowing toward [`theme::HEAT`] with
/// recent writes.
pub fn cell_color(c: &CellCounts) -> Color32 {
    let base = state_color(c.state());
    if c.heat == 0 {
        return base;
    }
    // Even one write must show: start at a clear tint, saturate at FULL_HEAT.
    let t = 0.4 + 0.5 * (c.heat as f32 / FULL_HEAT).min(1.0);
    base.lerp_to_gamma(theme::HEAT, t)
}

/// Columns and rows for a `size` area and at most `max_cells` cells.
pub fn grid(size: Vec2, max_cells: usize) -> (usize, usize) {
    let cols = ((size.x + GAP) / (CELL + GAP)).floor().max(1.0) as usize;
    let rows = ((size.y + GAP) / (CELL + GAP)).floor().max(1.0) as usize;
    if cols * rows <= max_cells {
        return (cols, rows);
    }
    // Fewer map cells than places: fill whole rows, as many as needed.
    let cols = cols.min(max_cells.max(1));
    (cols, max_cells.div_ceil(cols))
}

/// The map cells folded into drawn cell `b` of `buckets` (the same folding
/// as `ChunkMap::summary`: cell `i` goes to bucket `i * buckets / n`).
pub fn bucket_cells(b: usize, buckets: usize, n: usize) -> Range<usize> {
    let first = |b: usize| (b * n).div_ceil(buckets);
    first(b)..first(b + 1).min(n)
}

/// The bytes drawn cell `b` stands for.
pub fn bucket_bytes(map: &ChunkMap, b: usize, buckets: usize, device_len: u64) -> Range<u64> {
    let cells = bucket_cells(b, buckets, map.len());
    if cells.is_empty() {
        return 0..0;
    }
    map.cell_bytes(cells.start, device_len).start..map.cell_bytes(cells.end - 1, device_len).end
}

/// The widget.
pub struct Heatmap<'a> {
    pub map: &'a ChunkMap,
    pub device_len: u64,
}

impl Heatmap<'_> {
    /// Draws the grid into the space left (at least `min_height`), then the
    /// legend.
    pub fn ui(self, ui: &mut egui::Ui, min_height: f32) {
        let legend_height = ui.spacing().interact_size.y + 4.0;
        let avail = ui.available_size();
        let size = vec2(avail.x, (avail.y - legend_height).max(min_height));
        let (rect, response) = ui.allocate_exact_size(size, Sense::hover());
        let (cols, rows) = grid(size, self.map.len());
        let buckets = (cols * rows).min(self.map.len());
        let cells = self.map.summary(buckets);
        let step =
            vec2((size.x + GAP) / cols as f32, ((size.y + GAP) / rows as f32).min(CELL * 2.0));
        let cell_rect = |i: usize| {
            let (c, r) = (i % cols, i / cols);
            let min = rect.min + vec2(c as f32 * step.x, r as f32 * step.y);
            Rect::from_min_size(min, step - Vec2::splat(GAP))
        };
        let mut mesh = Mesh::default();
        for (i, c) in cells.iter().enumerate() {
            mesh.add_colored_rect(cell_rect(i), cell_color(c));
        }
        ui.painter().add(egui::Shape::mesh(mesh));

        if let Some(pos) = response.hover_pos() {
            let rel = pos - rect.min;
            let i = (rel.y / step.y) as usize * cols + (rel.x / step.x) as usize;
            if let Some(c) = cells.get(i) {
                ui.painter().rect_stroke(
                    cell_rect(i).expand(1.0),
                    0.0,
                    (1.5, theme::POINTED),
                    egui::StrokeKind::Outside,
                );
                let bytes = bucket_bytes(self.map, i, buckets, self.device_len);
                let granularity = self.map.granularity();
                response.on_hover_ui_at_pointer(|ui| tooltip(ui, c, &bytes, granularity));
            }
        }
        legend(ui);
    }
}

/// A cell's tooltip, in bytes (the job's chunks of `granularity` bytes
/// are its unit, not the user's).
fn tooltip(ui: &mut egui::Ui, c: &CellCounts, bytes: &Range<u64>, granularity: u64) {
    let size = |chunks: u64| human(chunks.saturating_mul(granularity).min(bytes.end - bytes.start));
    ui.strong(state_name(c.state()));
    ui.label(format!("bytes {} – {} ({})", bytes.start, bytes.end, human(bytes.end - bytes.start)));
    ui.label(format!(
        "{} waiting to be copied, {} being copied, {} failed",
        size(c.dirty),
        size(c.in_flight),
        size(c.failed)
    ));
    ui.label(format!("{} copies done here", c.copies));
    ui.label(if c.heat > 0 {
        format!("recent writes: {}", c.heat)
    } else {
        "no recent writes".to_string()
    });
}

fn legend(ui: &mut egui::Ui) {
    ui.horizontal_wrapped(|ui| {
        let swatch = |ui: &mut egui::Ui, color: Color32, name: &str| {
            let (r, _) = ui.allocate_exact_size(Vec2::splat(12.0), Sense::hover());
            ui.painter().rect_filled(r, 2.0, color);
            ui.label(name);
            ui.add_space(8.0);
        };
        for s in STATES {
            swatch(ui, state_color(s), state_name(s));
        }
        swatch(ui, theme::HEAT, "being written now");
    });
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use livemirror_core::device::{Fault, FaultyDevice, MemoryDevice, Op};
    use livemirror_core::job::{self, ErrorPolicy, MirrorOptions};
    use livemirror_core::live::LiveSource;

    use super::*;

    fn counts(dirty: u64, in_flight: u64, failed: u64, copies: u32, heat: u32) -> CellCounts {
        CellCounts { total: 4, dirty, in_flight, failed, copies, heat }
    }

    #[test]
    fn colour_follows_state_and_heat_glows_then_fades() {
        assert_eq!(cell_color(&counts(0, 0, 0, 1, 0)), state_color(CellState::Synced));
        assert_eq!(cell_color(&counts(4, 0, 0, 0, 0)), state_color(CellState::Pending));
        assert_eq!(cell_color(&counts(2, 0, 0, 3, 0)), state_color(CellState::Dirty));
        assert_eq!(cell_color(&counts(2, 1, 0, 3, 0)), state_color(CellState::Copying));
        assert_eq!(cell_color(&counts(2, 1, 1, 3, 0)), state_color(CellState::Failed));
        let all: std::collections::HashSet<_> = STATES.iter().map(|s| state_color(*s)).collect();
        assert_eq!(all.len(), STATES.len(), "every state has its own colour");
        // Heat pulls a synced cell toward the write colour, more with more writes.
        let dist = |c: Color32| {
            let h = theme::HEAT;
            (c.r().abs_diff(h.r()) as u32)
                + (c.g().abs_diff(h.g()) as u32)
                + (c.b().abs_diff(h.b()) as u32)
        };
        let (cold, warm, hot) = (
            cell_color(&counts(0, 0, 0, 1, 0)),
            cell_color(&counts(0, 0, 0, 1, 2)),
            cell_color(&counts(0, 0, 0, 1, 100)),
        );
        assert!(dist(hot) < dist(warm) && dist(warm) < dist(cold));
    }

    #[test]
    fn grid_fits_the_space_and_never_exceeds_the_cells() {
        let size = vec2(10.0 * (CELL + GAP) - GAP, 4.0 * (CELL + GAP) - GAP);
        assert_eq!(grid(size, 1000), (10, 4));
        assert_eq!(grid(size, 25), (10, 3));
        assert_eq!(grid(size, 3), (3, 1));
        assert_eq!(grid(vec2(0.0, 0.0), 7), (1, 1));
    }

    #[test]
    fn buckets_partition_the_cells_like_the_summary() {
        let map = ChunkMap::new(1000, 4096);
        for buckets in [1, 7, 10, 333, 1000] {
            let sum = map.summary(buckets);
            let mut next = 0;
            for (b, s) in sum.iter().enumerate() {
                let cells = bucket_cells(b, buckets, map.len());
                assert_eq!(cells.start, next, "buckets are contiguous");
                next = cells.end;
                let total: u64 = cells.map(|i| map.counts(i).total).sum();
                assert_eq!(total, s.total, "bucket {b} of {buckets}");
            }
            assert_eq!(next, map.len());
        }
        let bytes = bucket_bytes(&map, 3, 10, 1000 * 4096 - 100);
        assert_eq!(bytes, 300 * 4096..400 * 4096);
        assert_eq!(bucket_bytes(&map, 9, 10, 1000 * 4096 - 100).end, 1000 * 4096 - 100);
    }

    /// A real job whose target fails at one place under the stop policy:
    /// that place shows failed, the rest in sync.
    #[test]
    fn a_jobs_map_shows_the_failed_region() {
        let rt = livemirror_core::runtime::build("heatmap-test", None).unwrap();
        let _in = rt.enter();
        let len = 4u64 << 20;
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8 | 1).collect();
        let source = Arc::new(MemoryDevice::from_bytes(data));
        let target = Arc::new(FaultyDevice::new(Arc::new(MemoryDevice::new(len))));
        let bad = 3 << 20;
        target.inject(Fault::persistent(Op::Write, bad..bad + 512, 5));
        let opts = MirrorOptions { on_target_error: ErrorPolicy::Stop, ..Default::default() };
        let (job, _events) = job::start(LiveSource::new(source), target, opts).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        // Paused on the error, with nothing else in flight.
        while !(job.status().pending_error.is_some() && job.status().progress.in_flight == 0) {
            assert!(Instant::now() < deadline, "no error prompt");
            std::thread::sleep(Duration::from_millis(5));
        }
        let f = job.status().pending_error.unwrap();
        let map = job.chunk_map();
        let buckets = 16;
        let cells = map.summary(buckets);
        for (b, c) in cells.iter().enumerate() {
            let r = bucket_bytes(map, b, buckets, len);
            let overlaps_failure = r.start < f.offset + f.len && f.offset < r.end;
            if overlaps_failure {
                assert_eq!(c.state(), CellState::Failed, "bucket {b} {r:?}");
                assert_eq!(cell_color(c).r(), cell_color(&counts(0, 0, 1, 0, 0)).r());
            } else if r.end <= f.offset {
                assert_eq!(c.state(), CellState::Synced, "bucket {b} {r:?}");
            }
        }
        assert!(cells.iter().any(|c| c.state() == CellState::Failed));
        job.post(livemirror_core::job::Command::Decide(livemirror_core::job::Decision::Stop));
    }
}
