//! A live source served over NBD while it is mirrored: what `livemirror
//! serve` and the window's "Share the source over NBD" have in common.
//!
//! Clients write through the [`LiveSource`], so every write is tracked by
//! the mirror, and after Complete they reach the target. Binding and
//! serving are two steps: binding is where the user's mistakes show up, and
//! callers want that before they touch the target; serving starts once the
//! job tracks writes, so no write can slip past the mirror.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use livemirror_core::live::LiveSource;
use livemirror_core::nbd::{self, Endpoint, Export, Listener};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A listening socket not serving yet: clients that connect wait.
pub struct Bound {
    listener: Listener,
    endpoint: Endpoint,
}

/// An NBD server running on the current tokio runtime. Dropping it stops
/// it too (in the background); [`Share::stop`] also waits.
pub struct Share {
    endpoint: Endpoint,
    stop: oneshot::Sender<()>,
    server: JoinHandle<()>,
    connected: Arc<AtomicUsize>,
}

impl Share {
    /// Binds `endpoint`; TCP addresses other than loopback are refused
    /// unless `allow_remote`.
    pub async fn bind(endpoint: &Endpoint, allow_remote: bool) -> io::Result<Bound> {
        let listener = Listener::bind(endpoint, allow_remote).await?;
        let endpoint = listener.endpoint()?;
        Ok(Bound { listener, endpoint })
    }

    /// Where clients connect (the real port if port 0 was asked).
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// How many clients are connected now: each would lose its disk if
    /// the share stopped.
    pub fn clients(&self) -> usize {
        self.connected.load(Ordering::Relaxed)
    }

    /// Stops accepting, lets every client finish the requests it started,
    /// and returns once all connections are closed and a unix socket file
    /// is gone, so the same endpoint can be bound again.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.server.await;
    }
}

impl Bound {
    /// What the caller must tell the user about the endpoint, if anything.
    pub fn warning(&self) -> Option<&str> {
        self.listener.warning()
    }

    /// Serves `live`, writable, to up to [`nbd::DEFAULT_MAX_CONNECTIONS`]
    /// clients at once.
    pub fn serve(self, live: &Arc<LiveSource>) -> Share {
        let (stop, stopped) = oneshot::channel::<()>();
        let export = Export::new(live.clone());
        let connected = export.connected.clone();
        let server =
            tokio::spawn(nbd::serve(self.listener, export, nbd::DEFAULT_MAX_CONNECTIONS, async {
                // A dropped sender stops the server as well.
                let _ = stopped.await;
            }));
        Share { endpoint: self.endpoint, stop, server, connected }
    }
}
