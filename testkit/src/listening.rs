//! Waiting until a server listens. By connecting: a unix socket's file
//! appears at bind(), a moment before listen(), so its existence alone
//! races with a connect that is then refused.

use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// Polls `connects` until it succeeds; fails the test when `exited` says
/// the server died first, or after `limit` (a server that never listens is
/// a bug, not slowness).
pub fn wait(
    what: &str,
    limit: Duration,
    mut connects: impl FnMut() -> bool,
    mut exited: impl FnMut() -> Option<String>,
) {
    let deadline = Instant::now() + limit;
    while !connects() {
        if let Some(how) = exited() {
            panic!("{what} exited before listening: {how}");
        }
        assert!(Instant::now() < deadline, "{what} never listened");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until the unix socket at `path` accepts connections.
pub fn unix_socket(path: &Path) {
    let what = path.display().to_string();
    wait(&what, Duration::from_secs(60), || UnixStream::connect(path).is_ok(), || None);
}

/// Waits until `addr` (`host:port`) accepts TCP connections, for up to
/// `limit`.
pub fn tcp(addr: &str, limit: Duration) {
    wait(addr, limit, || TcpStream::connect(addr).is_ok(), || None);
}
