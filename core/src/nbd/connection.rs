//! One client connection: handshake, then the transmission phase.
//!
//! The reader (this task) decodes requests one after another and hands each
//! valid one to its own task, which runs the I/O on a blocking thread; so a
//! read is not stuck behind a write that the mirror is holding. Every reply
//! goes through a channel to a single writer task, which puts each reply on
//! the wire whole. A WRITE reaches the device only once its whole payload
//! has arrived: a client that vanishes mid-request changes nothing.
//!
//! The connection ends on `NBD_CMD_DISC`, end of stream, a framing error or
//! server shutdown; in every case requests already started finish and their
//! replies are sent (if the client is still there) before it closes.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use super::Export;
use super::errno::Errno;
use super::execute::execute;
use super::handshake;
use super::reply::Reply;
use super::request::{self, Command, HEADER_LEN, Request, Session, Then};
use super::shutdown::Shutdown;

/// A client that has not finished the handshake by then is dropped, so an
/// idle socket cannot hold a connection slot forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests of one connection executing at once (qemu keeps up to 16 in
/// flight); bounds the payload memory a client can pin.
const MAX_IN_FLIGHT: usize = 16;
const IO_BUFFER: usize = 256 << 10;

/// Serves one client until it leaves or the server stops. An `Err` is a
/// client that broke the protocol; the connection is closed either way.
pub(super) async fn serve<S>(
    stream: S,
    export: Arc<Export>,
    mut shutdown: Shutdown,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, wr) = tokio::io::split(stream);
    let mut rd = BufReader::with_capacity(IO_BUFFER, rd);
    let mut wr = BufWriter::with_capacity(IO_BUFFER, wr);
    let negotiated = tokio::select! {
        _ = shutdown.recv() => return Ok(()),
        r = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake::negotiate(&mut rd, &mut wr, &export)) => r,
    };
    let session = match negotiated {
        Ok(Ok(Some(session))) => session,
        Ok(Ok(None)) => return Ok(()),
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "handshake timed out"));
        }
    };
    wr.flush().await?;
    transmission(rd, wr, session, export, shutdown).await
}

/// What reading the next request produced.
enum Next {
    /// The client closed the stream between requests.
    Closed,
    Run(Request, Vec<u8>),
    /// A refused request: send the error, then go on or close.
    Refused(Reply, Then),
}

async fn transmission<R, W>(
    mut rd: R,
    wr: W,
    session: Session,
    export: Arc<Export>,
    mut shutdown: Shutdown,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::channel(2 * MAX_IN_FLIGHT);
    let writer = tokio::spawn(write_replies(wr, rx));
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut running = JoinSet::new();
    let result = loop {
        while running.try_join_next().is_some() {}
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break Ok(());
        };
        let next = tokio::select! {
            _ = shutdown.recv() => break Ok(()),
            next = read_request(&mut rd, &session) => next,
        };
        match next {
            Err(e) => break Err(e),
            Ok(Next::Closed) => break Ok(()),
            Ok(Next::Refused(reply, then)) => {
                if tx.send(reply).await.is_err() || then == Then::Close {
                    break Ok(());
                }
            }
            Ok(Next::Run(req, _)) if req.command == Command::Disconnect => break Ok(()),
            Ok(Next::Run(req, payload)) => {
                let (tx, dev) = (tx.clone(), export.device.clone());
                let structured = session.structured;
                let span = tracing::Span::current();
                running.spawn(async move {
                    let handle = req.handle;
                    let reply = tokio::task::spawn_blocking(move || {
                        span.in_scope(|| execute(&*dev, &req, payload, structured))
                    })
                    .await
                    .unwrap_or_else(|e| {
                        tracing::error!(error = %e, "a request's I/O panicked");
                        Reply::error(handle, structured, Errno::EIO, "internal error")
                    });
                    // Fails only when the writer is gone, and the client
                    // with it: nobody is left to answer.
                    let _ = tx.send(reply).await;
                    drop(slot);
                });
            }
        }
    };
    // Let what was started finish and be answered, then close.
    while running.join_next().await.is_some() {}
    drop(tx);
    let written = writer.await.unwrap_or_else(|e| Err(io::Error::other(e)));
    result.and(written)
}

async fn read_request<R: AsyncRead + Unpin>(rd: &mut R, session: &Session) -> io::Result<Next> {
    let mut buf = [0u8; HEADER_LEN];
    if !read_exact_or_eof(rd, &mut buf).await? {
        return Ok(Next::Closed);
    }
    let header = request::parse_header(&buf)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad request magic"))?;
    match request::check(&header, session) {
        Ok(req) if req.command == Command::Write => {
            let mut payload = vec![0; req.length as usize];
            rd.read_exact(&mut payload).await?;
            Ok(Next::Run(req, payload))
        }
        Ok(req) => Ok(Next::Run(req, Vec::new())),
        Err(rej) => {
            if let Then::Discard(n) = rej.then {
                let skipped =
                    tokio::io::copy(&mut rd.take(u64::from(n)), &mut tokio::io::sink()).await?;
                if skipped != u64::from(n) {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            }
            let reply = Reply::error(rej.handle, session.structured, rej.errno, rej.reason);
            Ok(Next::Refused(reply, rej.then))
        }
    }
}

/// Fills `buf`; false if the stream ended before its first byte (a clean
/// close), an error if it ended part-way.
async fn read_exact_or_eof<R: AsyncRead + Unpin>(rd: &mut R, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match rd.read(&mut buf[filled..]).await? {
            0 if filled == 0 => return Ok(false),
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => filled += n,
        }
    }
    Ok(true)
}

/// The connection's only writer: replies go out whole, in the order they
/// are finished, flushed whenever no other reply is waiting.
async fn write_replies<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: mpsc::Receiver<Reply>,
) -> io::Result<()> {
    while let Some(reply) = rx.recv().await {
        reply.write_to(&mut wr).await?;
        if rx.is_empty() {
            wr.flush().await?;
        }
    }
    wr.flush().await?;
    wr.shutdown().await
}
