//! An NBD export on a unix socket in a temporary directory, served from a
//! tokio runtime the test owns (the test body itself stays synchronous and
//! drives real clients).

use std::path::PathBuf;
use std::sync::Arc;

use livemirror_core::device::BlockDevice;
use livemirror_core::nbd::{self, Endpoint, Export, Listener};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

/// A multi-threaded runtime for the server and any mirror job.
pub fn runtime() -> Runtime {
    livemirror_core::runtime::build("livemirror-test", Some(2)).expect("tokio runtime")
}

/// A running server; stopped (without waiting) on drop.
pub struct Served {
    pub socket: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Served {
    /// Serves `device` read-write under the default export name.
    pub fn device(rt: &Runtime, device: Arc<dyn BlockDevice>) -> Served {
        Self::export(rt, Export::new(device))
    }

    pub fn export(rt: &Runtime, export: Export) -> Served {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("nbd.sock");
        let endpoint = Endpoint::Unix(socket.clone());
        let listener = rt.block_on(Listener::bind(&endpoint, false)).expect("bind unix socket");
        let (stop, stopped) = oneshot::channel::<()>();
        let task =
            rt.spawn(nbd::serve(listener, export, nbd::DEFAULT_MAX_CONNECTIONS, async move {
                let _ = stopped.await;
            }));
        Served { socket, stop: Some(stop), task: Some(task), _dir: dir }
    }

    /// The URI qemu and libnbd tools take.
    pub fn uri(&self) -> String {
        format!("nbd+unix:///?socket={}", self.socket.display())
    }

    /// Stops accepting and waits until every connection has finished.
    pub fn shutdown(mut self, rt: &Runtime) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            rt.block_on(task).expect("server task");
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
