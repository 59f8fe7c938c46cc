//! What the engine logs, read through a `tracing` subscriber like the
//! app's: a job's events in its span (id, source, target), a failed I/O at
//! WARN and the failure at ERROR; an NBD connection's span with its start,
//! its end and a failed request. Unix only: the server listens on a unix
//! socket.
#![cfg(unix)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use livemirror_core::device::{BlockDevice, Fault, FaultyDevice, MemoryDevice, NbdDevice, Op};
use livemirror_core::job::{self, JobEvent, MirrorOptions, Outcome};
use livemirror_core::live::LiveSource;
use livemirror_core::nbd::{self, Endpoint, Export, Listener};
use livemirror_testkit::job::until;
use livemirror_testkit::pattern;

/// Everything logged so far.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// The lines that contain every one of `words`.
    fn lines_with(&self, words: &[&str]) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| words.iter().all(|w| l.contains(w)))
            .map(String::from)
            .collect()
    }
}

/// One test per process (the subscriber is global: the job logs from
/// tokio's worker and blocking threads).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_and_nbd_connections_log_in_their_spans() {
    let log = Log::default();
    let writer = log.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish(),
    )
    .unwrap();

    // A job whose source fails a read: the error at WARN, the failure at
    // ERROR, both in the job's span.
    const LEN: usize = 1 << 20;
    let source = Arc::new(FaultyDevice::new(Arc::new(MemoryDevice::from_bytes(pattern(LEN, 1)))));
    source.inject(Fault::persistent(Op::Read, 4096..4097, libc::EIO));
    let live = LiveSource::new(source.clone());
    let target = Arc::new(MemoryDevice::new(LEN as u64));
    let (job, mut rx) = job::start(live, target, MirrorOptions::default()).unwrap();
    until(&mut rx, JobEvent::is_final).await;
    assert!(matches!(job.wait().await, Outcome::Failed { .. }));
    let failed = log.lines_with(&["ERROR", "job{id=", "with injected faults", "failed"]);
    assert_eq!(failed.len(), 1, "{}", log.text());
    assert_eq!(log.lines_with(&["WARN", "job{", "I/O error", "source read failed"]).len(), 1);

    // An NBD client reads through a server whose device fails there: the
    // server logs the failed request and the connection's end in the
    // connection's span.
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("nbd.sock");
    let listener = Listener::bind(&Endpoint::Unix(socket.clone()), false).await.unwrap();
    let export = Export::new(source.clone());
    let server = tokio::spawn(nbd::serve(listener, export, 4, std::future::pending()));
    let uri = format!("nbd+unix:///?socket={}", socket.display());
    let read = tokio::task::spawn_blocking(move || {
        let dev = NbdDevice::open_uri(&uri, false).unwrap();
        let failed = dev.read_at(&mut [0; 512], 4096).is_err();
        drop(dev);
        failed
    });
    assert!(read.await.unwrap(), "the read of the bad sector failed");
    let request = log.lines_with(&["WARN", "nbd_connection{id=", "peer=unix", "request failed"]);
    assert_eq!(request.len(), 1, "{}", log.text());
    // The client said goodbye on drop; every connection's end is logged.
    let waited = tokio::time::timeout(livemirror_testkit::job::GUARD, async {
        // Polls the log (the state under test), not a guessed delay.
        while log.lines_with(&["nbd_connection{", "client disconnected"]).is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    });
    waited.await.expect("the server logs the client's goodbye");
    assert!(!log.lines_with(&["nbd_connection{", "client connected"]).is_empty());
    server.abort();
}
