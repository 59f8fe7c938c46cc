//! NBD servers nobody here wrote (nbdkit, qemu-nbd) run as child processes
//! on a unix socket in a temporary directory: started, waited for until
//! they listen, killed and restarted on the same socket (a target that
//! vanishes), and killed when dropped.

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{listening, tools};

/// A running server process.
pub struct Daemon {
    program: String,
    args: Vec<String>,
    child: Option<Child>,
    pub socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Runs `program args…`, where `{sock}` in an argument stands for the
    /// socket path, and returns once it listens.
    pub fn spawn(program: &str, args: &[&str]) -> Daemon {
        tools::require(program);
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("nbd.sock");
        let sock = socket.to_str().expect("utf-8 temp path");
        let args = args.iter().map(|a| a.replace("{sock}", sock)).collect();
        let mut d = Daemon { program: program.into(), args, child: None, socket, _dir: dir };
        d.start();
        d
    }

    /// `nbdkit PLUGIN ARGS…` in the foreground, dying with the test.
    pub fn nbdkit(plugin_args: &[&str]) -> Daemon {
        let mut args = vec!["-f", "--exit-with-parent", "-U", "{sock}"];
        args.extend(plugin_args);
        Daemon::spawn("nbdkit", &args)
    }

    /// `qemu-nbd` exporting a raw image, up to 4 clients at once.
    pub fn qemu_nbd(image: &std::path::Path) -> Daemon {
        let image = image.to_str().expect("utf-8 image path");
        Daemon::spawn("qemu-nbd", &["-f", "raw", "-k", "{sock}", "-e", "4", image])
    }

    /// The URI qemu, libnbd and livemirror take.
    pub fn uri(&self) -> String {
        format!("nbd+unix:///?socket={}", self.socket.display())
    }

    /// Kills the server (SIGKILL: no goodbye to its clients).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // A killed server leaves its socket file; a new one must bind anew.
        let _ = std::fs::remove_file(&self.socket);
    }

    /// Starts the same server again on the same socket.
    pub fn start(&mut self) {
        self.kill();
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.program));
        self.child = Some(child);
        let (socket, child) = (&self.socket, &mut self.child);
        listening::wait(
            &self.program,
            Duration::from_secs(60),
            || UnixStream::connect(socket).is_ok(),
            || child.as_mut().and_then(|c| c.try_wait().ok().flatten()).map(|s| s.to_string()),
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}
