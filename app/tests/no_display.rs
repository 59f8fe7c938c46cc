//! Without a display the binary says so instead of failing with a windowing
//! error: `livemirror` alone exits non-zero with a hint, `livemirror demo`
//! runs the terminal demo to the end.

use std::process::Command;

fn livemirror() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_livemirror"));
    c.env_remove("DISPLAY").env_remove("WAYLAND_DISPLAY");
    c
}

#[test]
fn no_arguments_without_display_explains_and_fails() {
    let out = livemirror().output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no display"), "{err}");
    assert!(err.contains("livemirror clone"), "{err}");
}

#[test]
fn demo_without_display_runs_in_the_terminal() {
    let out = livemirror()
        .args(["demo", "--size", "16M", "--speed", "0", "--linger", "0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("no display"), "{err}");
    assert!(err.contains("running the demo in the terminal"), "{err}");
    assert!(err.contains("COMPLETED"), "{err}");
}

#[test]
fn disks_lists_or_says_none() {
    let out = livemirror().arg("disks").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("DEVICE") || text.starts_with("no disks found"), "{text}");
}
