//! A live source served over NBD while it is mirrored: what `livemirror
//! serve` and the window's "Share the source over NBD" have in common.
//!
//! Clients write through the [`LiveSource`], so every write is tracked by
//! the mirror, and after Complete they reach the target. The listener is
//! bound by the caller beforehand (binding is where the user's mistakes
//! show up, and callers want that before they touch the target); serving
//! starts here, once the job tracks writes.

use std::io;
use std::sync::Arc;

use livemirror_core::live::LiveSource;
use livemirror_core::nbd::{self, Endpoint, Export, Listener};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// An NBD server running on the current tokio runtime. Dropping it stops
/// it too (in the background); [`Share::stop`] also waits.
pub struct Share {
    endpoint: Endpoint,
    stop: oneshot::Sender<()>,
    server: JoinHandle<()>,
}

impl Share {
    /// Serves `live` on `listener`, writable, to up to
    /// [`nbd::DEFAULT_MAX_CONNECTIONS`] clients at once.
    pub fn start(listener: Listener, live: &Arc<LiveSource>) -> io::Result<Share> {
        let endpoint = listener.endpoint()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let export = Export::new(live.clone());
        let server =
            tokio::spawn(nbd::serve(listener, export, nbd::DEFAULT_MAX_CONNECTIONS, async {
                // A dropped sender stops the server as well.
                let _ = stopped.await;
            }));
        Ok(Share { endpoint, stop, server })
    }

    /// Where clients connect (the real port if port 0 was asked).
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Stops accepting, lets every client finish the requests it started,
    /// and returns once all connections are closed and a unix socket file
    /// is gone, so the same endpoint can be bound again.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.server.await;
    }
}
