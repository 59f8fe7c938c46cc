//! The server-wide stop signal, as each connection sees it.
//!
//! One `watch` channel: the server flips it to `true` once; every
//! connection holds a receiver and stops reading new work when it fires
//! (or when the server is gone altogether).

use tokio::sync::watch;

/// A connection's view of the stop signal.
pub(super) struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    pub(super) fn new(rx: watch::Receiver<bool>) -> Self {
        Shutdown(rx)
    }

    /// Resolves once the server is shutting down. Cancel-safe.
    pub(super) async fn recv(&mut self) {
        // An error means the sender is gone: that is a shutdown too.
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}
