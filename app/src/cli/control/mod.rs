//! The control socket: JSON lines shaped like QMP, so anyone who has
//! scripted QEMU feels at home. One request → one reply; events are pushed
//! to every connected client.
//!
//! `protocol` turns a request into a job command and a reply; this file
//! owns the socket, the connections and shutdown.

mod protocol;
mod socket;

use livemirror_core::job::JobHandle;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{broadcast, mpsc, watch};

pub use socket::{Listener, bind, parse_addr};

use crate::text::json::event_line;

/// At most this many control clients at once; more are turned away.
const MAX_CLIENTS: usize = 16;
/// Longest request line accepted; a longer one closes the connection.
const MAX_LINE: usize = 64 << 10;

/// Serves clients until `shutdown` turns true, then returns once every
/// client has been sent the job's last events (so a process that exits
/// right after does not cut off COMPLETED).
pub async fn serve(mut listener: Listener, job: JobHandle, mut shutdown: watch::Receiver<bool>) {
    let clients = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CLIENTS));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok(stream) = accepted else { continue };
                let Ok(permit) = clients.clone().try_acquire_owned() else {
                    drop(stream); // too many clients
                    continue;
                };
                let (job, shutdown) = (job.clone(), shutdown.clone());
                connections.spawn(async move {
                    connection(stream, job, shutdown).await;
                    drop(permit);
                });
            }
            _ = shutdown.changed() => {
                // A client that stopped reading must not hold the exit up.
                let drained = async { while connections.join_next().await.is_some() {} };
                let _ = tokio::time::timeout(std::time::Duration::from_secs(2), drained).await;
                return;
            }
        }
    }
}

/// One client: replies and events share one writer so lines never mix.
async fn connection(
    stream: impl socket::Stream,
    job: JobHandle,
    mut shutdown: watch::Receiver<bool>,
) {
    let (read, mut write) = tokio::io::split(stream);
    let mut lines = BufReader::new(read).lines();
    let mut events = job.subscribe();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<String>();
    let writer = tokio::spawn(async move {
        while let Some(line) = out_rx.recv().await {
            if write.write_all(format!("{line}\n").as_bytes()).await.is_err() {
                break;
            }
        }
    });
    loop {
        tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(line)) if line.len() <= MAX_LINE => {
                    if line.trim().is_empty() {
                        continue;
                    }
                    let reply = protocol::handle(&line, &job).await;
                    if out_tx.send(reply.to_string()).is_err() {
                        break;
                    }
                }
                _ => break, // closed, unreadable or too long
            },
            ev = events.recv() => match ev {
                Ok(ev) => {
                    if out_tx.send(event_line(&ev)).is_err() {
                        break;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => {}
            },
            _ = shutdown.changed() => {
                // The job has ended: pass on its last events before closing.
                while let Ok(ev) = events.try_recv() {
                    let _ = out_tx.send(event_line(&ev));
                }
                break;
            }
        }
    }
    drop(out_tx);
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use livemirror_core::device::MemoryDevice;
    use livemirror_core::job::{self, MirrorOptions};
    use livemirror_core::live::LiveSource;
    use serde_json::Value;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_gets_replies_and_pushed_events() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let live = LiveSource::new(Arc::new(MemoryDevice::from_bytes(vec![3; 8 << 20])));
        let target = Arc::new(MemoryDevice::new(8 << 20));
        // At one byte a second the job copies its first operation and then
        // waits: READY can only come after the client lifts the limit, which
        // it does once subscribed.
        let opts = MirrorOptions { speed: 1, ..Default::default() };
        let (handle, _rx) = job::start(live, target, opts).unwrap();
        // Until the job has marked what it will copy, `len` is still 0 (as
        // in QEMU): ask once it has.
        let mut status = handle.watch();
        status.wait_for(|s| s.progress.total > 0).await.unwrap();
        let (stop_tx, stop_rx) = watch::channel(false);
        let server = tokio::spawn(serve(bind(&path).unwrap(), handle.clone(), stop_rx));

        let stream = tokio::net::UnixStream::connect(&path).await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        write.write_all(b"{\"execute\": \"query\"}\n").await.unwrap();
        write
            .write_all(b"{\"execute\": \"set-speed\", \"arguments\": {\"speed\": 0}}\n")
            .await
            .unwrap();
        let mut replies = Vec::new();
        let mut ready = false;
        let guard = std::time::Duration::from_secs(60);
        while let Some(line) =
            tokio::time::timeout(guard, lines.next_line()).await.unwrap().unwrap()
        {
            let v: Value = serde_json::from_str(&line).unwrap();
            if v.get("return").is_some() {
                replies.push(v);
            } else if v["event"] == "READY" {
                assert!(v["timestamp"]["microseconds"].is_u64());
                ready = true;
            }
            if ready && replies.len() == 2 {
                break;
            }
        }
        assert_eq!(replies[0]["return"]["len"], 8 << 20);
        assert_eq!(replies[0]["return"]["ready"], false);
        assert_eq!(replies[1]["return"], serde_json::json!({}));
        stop_tx.send(true).unwrap();
        server.await.unwrap();
        // A second bind replaces the stale socket file.
        drop(bind(&path).unwrap());
        std::fs::write(dir.path().join("plain"), b"x").unwrap();
        assert!(bind(&dir.path().join("plain")).is_err(), "never removes a non-socket");
    }
}
