//! The window's colours, in one place: what each means is the same on every
//! screen (green: in sync or identical; amber: waiting or a warning; red: a
//! failure or a difference; blue: under way), and the heatmap's legend
//! uses the very same values.

use eframe::egui::Color32;

/// In sync, copied, identical.
pub const GOOD: Color32 = Color32::from_rgb(0x2f, 0xa8, 0x62);
/// Written since its copy, or something to look at before going on.
pub const WARN: Color32 = Color32::from_rgb(0xe0, 0xa4, 0x2e);
/// Failed, different, refused.
pub const BAD: Color32 = Color32::from_rgb(0xe5, 0x48, 0x4d);
/// Being copied now; the throughput line.
pub const BUSY: Color32 = Color32::from_rgb(0x3d, 0x8b, 0xff);
/// Not copied yet.
pub const IDLE: Color32 = Color32::from_rgb(0x3b, 0x41, 0x4d);
/// How often a region is written (the heatmap's heat overlay).
pub const HEAT: Color32 = Color32::from_rgb(0xff, 0x5c, 0xd6);
/// Words on a GOOD-tinted banner (in sync): they stand out from the green.
pub const ON_GOOD: Color32 = Color32::WHITE;
/// The outline of the heatmap cell under the pointer: above every cell colour.
pub const POINTED: Color32 = Color32::WHITE;
