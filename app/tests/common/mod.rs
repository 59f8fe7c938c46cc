//! What the app's end-to-end tests share: waiting for a socket to appear
//! and talking to the control socket (requests, replies, pushed events).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Waits for a path to appear: the sockets exist once serve accepts.
pub fn appears(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        assert!(Instant::now() < deadline, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A control-socket client that reads replies and pushed events in order.
pub struct Control {
    out: UnixStream,
    lines: std::io::Lines<BufReader<UnixStream>>,
}

impl Control {
    pub fn connect(path: &Path) -> Control {
        let out = UnixStream::connect(path).unwrap();
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
            let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
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
