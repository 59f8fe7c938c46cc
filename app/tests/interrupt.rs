//! Ctrl-C on `clone`: the first cancels (consistently once in sync) and says
//! a second one forces; the second ends the process even while the target
//! hangs. The hung target is nbdkit's memory plugin behind its delay filter,
//! which answers no write for 1000 s.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use livemirror_testkit::daemon::Daemon;
use livemirror_testkit::pattern;

fn sigint(pid: u32) {
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
}

#[test]
fn a_second_ctrl_c_forces_the_cancel_past_a_hung_target() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.img");
    std::fs::write(&src, pattern(8 << 20, 4)).unwrap();
    let target = Daemon::nbdkit(&["--filter=delay", "memory", "8M", "wdelay=1000"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_livemirror"))
        .args(["clone", src.to_str().unwrap(), &target.uri(), "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The job runs (its first event is out) and its copies are stuck on the target.
    let mut events = BufReader::new(child.stdout.take().unwrap()).lines();
    // `--json` opens with how the source is tracked, then the job's events.
    let tracking = events.next().expect("an event").unwrap();
    assert!(tracking.contains("TRACKING"), "{tracking}");
    let first = events.next().expect("an event").unwrap();
    assert!(first.contains("STATE_CHANGED"), "{first}");
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    sigint(child.id());
    let said = stderr.by_ref().map_while(Result::ok).find(|l| l.contains("interrupted"));
    let said = said.expect("the first Ctrl-C is answered");
    assert!(said.contains("press Ctrl-C again to force"), "{said}");
    sigint(child.id());
    let rest: Vec<String> = stderr.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(3), "cancelled: {rest:?}");
    assert!(rest.iter().any(|l| l.contains("forcing")), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("the target is incomplete")), "{rest:?}");
    let events: Vec<String> = events.map_while(Result::ok).collect();
    assert!(
        events.iter().any(|l| l.contains("\"CANCELLED\"") && l.contains("\"consistent\":false")),
        "{events:?}"
    );
}
