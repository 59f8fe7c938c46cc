//! An NBD server: how VMs, the kernel's NBD client and qemu/libnbd tools
//! write to a source while livemirror mirrors it (DESIGN §4).
//!
//! Written from the protocol document (NetworkBlockDevice/nbd,
//! `doc/proto.md`): fixed newstyle handshake with `EXPORT_NAME`, `GO`,
//! `INFO`, `LIST`, `ABORT`, `STRUCTURED_REPLY` and the `base:allocation`
//! metadata context; commands READ, WRITE (+FUA), FLUSH, TRIM, WRITE_ZEROES
//! (+NO_HOLE), DISC and BLOCK_STATUS. No TLS: unix sockets or loopback TCP
//! by default (see [`Listener`]).
//!
//! All I/O goes through the [`Export`]'s device — in practice a
//! [`LiveSource`](crate::live::LiveSource), which tracks every write for the
//! mirror and switches to the target on Complete while clients stay
//! connected. Its calls may block for as long as the mirror needs, so they
//! run on blocking threads, never on the runtime's workers.
//!
//! Layout, like mini-redis: this file accepts connections (bounded by a
//! semaphore) and shuts down gracefully; `connection` runs one client,
//! `handshake` negotiates, `option` and `request` decode (pure functions,
//! fuzzed), `execute` does the I/O, `reply` encodes, `errno` maps errors.

mod connection;
mod errno;
mod execute;
mod handshake;
mod listen;
pub mod option;
mod reply;
pub mod request;
mod shutdown;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, watch};
use tracing::Instrument;

pub use crate::nbd_proto::MAX_PAYLOAD;
pub use errno::Errno;
pub use listen::{Endpoint, EndpointError, Listener};

use crate::nbd_proto::*;
use shutdown::Shutdown;

/// Clients served at once unless told otherwise; more wait to be accepted.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16;

/// Numbers the connections of every server in the process, for the logs.
static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// What the server exports: one device under one name.
pub struct Export {
    /// The export's name; clients may also use the empty default name.
    pub name: String,
    /// Shown to clients that ask (`nbdinfo`, `NBD_OPT_LIST`).
    pub description: String,
    pub device: Arc<dyn crate::device::BlockDevice>,
    /// Refuse every change with `EPERM` and say so in the flags.
    pub read_only: bool,
    /// Clients connected now, counted by [`serve`]: whoever stops a share
    /// can warn that its clients would lose their disk.
    pub connected: Arc<AtomicUsize>,
}

impl Export {
    /// A writable export of `device` under the default (empty) name.
    pub fn new(device: Arc<dyn crate::device::BlockDevice>) -> Export {
        Export {
            name: String::new(),
            description: device.describe(),
            device,
            read_only: false,
            connected: Arc::default(),
        }
    }

    fn answers_to(&self, name: &str) -> bool {
        name.is_empty() || name == self.name
    }

    /// The transmission flags, advertised only for what we really do.
    /// `CAN_MULTI_CONN` holds because there is no cache in the server: all
    /// connections share one device, and a flush flushes that device.
    fn transmission_flags(&self) -> u16 {
        let base = FLAG_HAS_FLAGS | FLAG_SEND_FLUSH | FLAG_SEND_FUA | FLAG_CAN_MULTI_CONN;
        if self.read_only {
            base | FLAG_READ_ONLY
        } else {
            base | FLAG_SEND_TRIM | FLAG_SEND_WRITE_ZEROES
        }
    }
}

/// Serves `export` on `listener` until `shutdown` resolves, then stops
/// accepting, lets every connection finish the requests it has started,
/// and returns once all connections are closed.
pub async fn serve(
    listener: Listener,
    export: Export,
    max_connections: usize,
    shutdown: impl Future<Output = ()>,
) {
    let (stop, _) = watch::channel(false);
    // Each connection holds a sender; when all are dropped, all are done.
    let (done, mut all_done) = mpsc::channel::<()>(1);
    tokio::select! {
        () = accept_loop(&listener, Arc::new(export), max_connections, &stop, &done) => {}
        () = shutdown => {}
    }
    stop.send_replace(true);
    drop(done);
    // Never receives: returns once every connection dropped its sender.
    all_done.recv().await;
}

async fn accept_loop(
    listener: &Listener,
    export: Arc<Export>,
    max_connections: usize,
    stop: &watch::Sender<bool>,
    done: &mpsc::Sender<()>,
) {
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
    let mut backoff = Duration::from_millis(10);
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: wait, try again.
                tracing::warn!(error = %e, retry_in = ?backoff, "accepting an NBD client failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        backoff = Duration::from_millis(10);
        let (export, shutdown, done) =
            (export.clone(), Shutdown::new(stop.subscribe()), done.clone());
        export.connected.fetch_add(1, Ordering::Relaxed);
        let id = NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!("nbd_connection", id, %peer, export = %export.name);
        let served = async move {
            tracing::debug!("client connected");
            let connected = export.connected.clone();
            match connection::serve(stream, export, shutdown).await {
                Ok(()) => tracing::debug!("client disconnected"),
                // A client that broke the protocol or vanished: closing the
                // connection is the whole answer; the log says why.
                Err(e) => tracing::info!(error = %e, "connection closed on an error"),
            }
            connected.fetch_sub(1, Ordering::Relaxed);
            drop(slot);
            drop(done);
        };
        tokio::spawn(served.instrument(span));
    }
}

/// Unix only, like the client's other servers (`device::conformance`).
#[cfg(all(test, unix))]
mod tests {
    use std::sync::Arc;

    use super::{Endpoint, Export, Listener, serve};
    use crate::device::conformance::{LEN, conforms};
    use crate::device::{MemoryDevice, NbdDevice, nbd_client};

    /// The device contract through livemirror's own client and server.
    #[test]
    fn nbd_client_on_livemirrors_server_conforms() {
        let rt = crate::runtime::build("nbd-test", Some(2)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("nbd.sock");
        let listener = rt.block_on(Listener::bind(&Endpoint::Unix(socket.clone()), false)).unwrap();
        let export = Export::new(Arc::new(MemoryDevice::new(LEN)));
        rt.spawn(serve(listener, export, 16, std::future::pending()));
        let uri = format!("nbd+unix:///?socket={}", socket.display());
        let dev = NbdDevice::open_uri(&uri, true).unwrap();
        // We advertise CAN_MULTI_CONN, so the client spreads over several.
        assert_eq!(dev.connections(), nbd_client::CONNECTIONS);
        conforms(&dev);
    }
}
