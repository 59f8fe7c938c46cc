//! The engine's modules form one-way stairs: each names only modules on
//! lower floors (see the floors in `src/lib.rs`), so none can be changed
//! without knowing what stands below it, and nothing forms a cycle, at any
//! depth (a failing run prints the cycle, step by step).

use std::path::Path;

/// Module → floor. A module names only modules on lower floors.
const FLOORS: &[(&str, u32)] = &[
    ("bitmap", 0),
    ("buffer", 0),
    ("nbd_proto", 0),
    ("ratelimit", 0),
    ("runtime", 0),
    ("state", 0),
    ("units", 0),
    ("chunkmap", 0),
    ("error", 1),
    ("device", 2),
    ("flash", 3),
    ("kernel", 3),
    ("nbd", 3),
    ("options", 3),
    ("partition", 3),
    ("verify", 3),
    ("live", 4),
    ("persist", 4),
    ("job", 5),
];

#[test]
fn core_modules_only_name_lower_floors_and_form_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    livemirror_testkit::layering::assert_layered(&src, FLOORS);
}
