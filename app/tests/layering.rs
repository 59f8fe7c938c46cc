//! The app's rooms form one-way stairs (see `src/lib.rs`): the two faces,
//! `cli` and `gui`, stand on `logs` (where tracing events go) and
//! `session`, which stands on `platform`, which stands on `text`; nothing names a room on its own floor or above, so
//! the window cannot reach into the command line (or back), and changing
//! a lower room never needs a look upstairs. Inside the rooms, no modules
//! need each other either, at any depth: the window's screens and widgets
//! do not name the app that composes them (they push an `Action`), and a
//! failing run prints the cycle, step by step.

use std::path::Path;

/// Room → floor. A room names only rooms on lower floors.
const FLOORS: &[(&str, u32)] =
    &[("text", 0), ("platform", 1), ("session", 2), ("logs", 3), ("cli", 4), ("gui", 4)];

#[test]
fn app_rooms_only_name_lower_floors_and_no_modules_form_a_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    livemirror_testkit::layering::assert_layered(&src, FLOORS);
}
