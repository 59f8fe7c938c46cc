//! A `livemirror --control` client for end-to-end tests: JSON lines in the
//! QMP shape, replies told apart from pushed events.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use serde_json::Value;

use crate::listening;

/// The longest a test waits for the next line from a control socket.
pub const GUARD: std::time::Duration = std::time::Duration::from_secs(120);

pub struct Control {
    out: UnixStream,
    lines: std::io::Lines<BufReader<UnixStream>>,
}

impl Control {
    /// Connects to the control socket at `path`. A read waits at most
    /// [`GUARD`] for a line: an event that never comes fails the test
    /// instead of hanging it.
    pub fn connect(path: &Path) -> Control {
        let out = UnixStream::connect(path).unwrap();
        out.set_read_timeout(Some(GUARD)).unwrap();
        let lines = BufReader::new(out.try_clone().unwrap()).lines();
        Control { out, lines }
    }

    /// Sends a request and returns its reply, passing over pushed events.
    pub fn ask(&mut self, req: Value) -> Value {
        writeln!(self.out, "{req}").unwrap();
        self.until(|v| v.get("return").is_some() || v.get("error").is_some())
    }

    pub fn until(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        for line in self.lines.by_ref() {
            let line = line.unwrap_or_else(|e| panic!("no line from the control socket: {e}"));
            let v: Value = serde_json::from_str(&line).unwrap();
            if pred(&v) {
                return v;
            }
        }
        panic!("control socket closed");
    }

    pub fn event(&mut self, name: &str) -> Value {
        self.until(|v| v["event"] == name)
    }
}

/// `bin ARGS… --control=unix:DIR/ctl.sock` (stdout discarded, stderr
/// piped), returned once the control socket accepts, with it connected.
pub fn with_control(bin: &str, dir: &Path, args: &[&str]) -> (std::process::Child, Control) {
    let mut cmd = std::process::Command::new(bin);
    cmd.args(args);
    command_with_control(cmd, dir)
}

/// [`with_control`] for a command already made (its environment set).
pub fn command_with_control(
    mut cmd: std::process::Command,
    dir: &Path,
) -> (std::process::Child, Control) {
    let ctl = dir.join("ctl.sock");
    let child = cmd
        .arg(format!("--control=unix:{}", ctl.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run livemirror");
    listening::unix_socket(&ctl);
    (child, Control::connect(&ctl))
}

/// `livemirror serve SRC --mirror-to DST` (the binary at `bin`) on unix
/// sockets in `dir`, at `--speed 1M` so it is certainly still copying when
/// the test writes, with the control socket connected.
pub struct Served {
    pub child: std::process::Child,
    pub nbd: std::path::PathBuf,
    pub ctl: std::path::PathBuf,
    pub control: Control,
}

pub fn serve_mirror(bin: &str, dir: &Path, src: &str, dst: &str) -> Served {
    let nbd = dir.join("nbd.sock");
    let nbd_arg = format!("--nbd=unix:{}", nbd.display());
    let args = ["serve", src, "--mirror-to", dst, &nbd_arg, "--speed", "1M"];
    let (child, control) = with_control(bin, dir, &args);
    listening::unix_socket(&nbd);
    Served { child, nbd, ctl: dir.join("ctl.sock"), control }
}
