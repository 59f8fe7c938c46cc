//! An NBD client as a [`BlockDevice`]: any NBD server (qemu-nbd, nbdkit,
//! rbd-nbd, QEMU's own, livemirror's) as a source or a target.
//!
//! Written from the protocol document (NetworkBlockDevice/nbd,
//! `doc/proto.md`), with the numbers shared with our server
//! ([`crate::nbd_proto`]). `uri` parses the addresses, `handshake`
//! negotiates (fixed newstyle, structured replies, `base:allocation`, GO
//! with block sizes), `transport` runs one request on one connection; this
//! file turns the trait's calls into requests.
//!
//! **Threading.** The trait is synchronous and called from many threads at
//! once. Each connection sits in its own mutex and carries one request at a
//! time; a caller takes the first free connection (round-robin start), or
//! waits for one. When the server advertises `CAN_MULTI_CONN` we open
//! [`CONNECTIONS`] of them, so that many requests are in flight at once;
//! otherwise one (the protocol says not to spread I/O over connections
//! then, because a flush on one need not cover writes made on another).
//!
//! **Lost connections.** An I/O error, a timeout or a broken reply drops the
//! connection, and the request fails with "NBD connection lost" (errno
//! `ECONNRESET` unless the OS gave a better one). The request is *not*
//! retried here: the job decides (its error policy, or the user's Retry).
//! The loss also retires every other connection of that generation, since a
//! server that dropped one has usually dropped all. The next request
//! reconnects, once: the first attempt after a loss is immediate, later ones
//! wait a back-off (50 ms doubling to 5 s) after the last failed attempt,
//! so a target that stays away costs a bounded wait per request, never a
//! hang. A reconnected export must match the first handshake (size, flags,
//! block sizes), or the request fails saying what changed.
//!
//! **Block sizes.** Requests honour the server's minimum (unaligned reads
//! read the covering blocks; unaligned writes read-modify-write them under
//! one lock), are split at the maximum, and big transfers are cut at
//! multiples of the preferred size.
//!
//! **TLS.** `nbds://` connects in TLS (`NBD_OPT_STARTTLS`, then rustls;
//! see `tls` for the certificates), every connection and reconnection alike.
//!
//! **FUA.** A FUA write (`write_at_fua`: a client's FUA write through a
//! write-blocking mirror) carries `NBD_CMD_FLAG_FUA` where the server
//! offers it, and is a write and a flush where it does not.
//!
//! **Not done:** extended headers, oldstyle servers, TLS with pre-shared
//! keys (`tls-psk-file`).

mod handshake;
mod tls;
mod transport;
pub mod uri;

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

pub use handshake::BlockSizes;
use handshake::{Negotiated, Refusal};
pub use tls::TlsError;
use tls::TlsSetup;
use transport::{Conn, Failure, Stream, Want};
pub use uri::{Address, NbdUri, TlsParams};

use super::{Allocation, BlockDevice, DeviceId, check_range, write_zeroes_by_writing};
use crate::nbd_proto::*;

/// Connections opened to a server that advertises `CAN_MULTI_CONN`
/// (nbdcopy's default too).
pub const CONNECTIONS: usize = 4;
/// How long a TCP connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long any one socket read or write may wait (handshake included):
/// past it the server is taken for gone.
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// Reconnect back-off after a failed attempt: first and longest wait.
const BACKOFF_FIRST: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Largest block-status request: the reply's size grows with it.
const MAX_STATUS_REQUEST: u64 = 1 << 30;

/// Why an NBD export could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum NbdError {
    #[error("{uri} is not a valid NBD URI: {why}")]
    Uri { uri: String, why: String },
    /// Boxed: rustls's errors are large, and an open's result is passed
    /// around by value.
    #[error("{uri}: TLS: {source}")]
    Tls { uri: String, source: Box<TlsError> },
    #[error("cannot connect to {uri}: {source}")]
    Connect { uri: String, source: io::Error },
    #[error("{uri}: {why}")]
    Protocol { uri: String, why: String },
    #[error("{uri}: the server refused the export: {why}")]
    Refused { uri: String, why: String },
    #[error("{uri} is a read-only export: it cannot be a target")]
    ReadOnly { uri: String },
    #[error("{uri} changed while we were away: {why}")]
    Changed { uri: String, why: String },
}

impl NbdError {
    fn from_refusal(uri: &NbdUri, r: Refusal) -> NbdError {
        let uri = uri.to_string();
        match r {
            Refusal::Io(source) => NbdError::Connect { uri, source },
            Refusal::Broken(why) => NbdError::Protocol { uri, why },
            Refusal::Refused(why) => NbdError::Refused { uri, why },
            Refusal::Tls(e) => NbdError::Tls { uri, source: Box::new(TlsError::Handshake(e)) },
        }
    }
}

/// An NBD export, open for reading (and writing if asked).
pub struct NbdDevice {
    uri: NbdUri,
    /// For an `nbds` URI: what every connection is made with.
    tls: Option<TlsSetup>,
    write: bool,
    /// What the first connection negotiated; reconnections must agree.
    info: Negotiated,
    slots: Vec<Mutex<Option<Conn>>>,
    next_slot: AtomicUsize,
    /// The current connection generation: a connection from an older one is
    /// presumed dead (a sibling was lost) and replaced before use.
    epoch: AtomicU64,
    backoff: Mutex<Backoff>,
    /// Held across every read-modify-write, so two unaligned writes sharing
    /// a block cannot undo each other.
    rmw: Mutex<()>,
    /// The export's span: losses and reconnections are logged in it.
    span: tracing::Span,
}

#[derive(Default)]
struct Backoff {
    failures: u32,
    last_failure: Option<Instant>,
}

impl Backoff {
    /// How long to wait before the next attempt.
    fn wait(&self) -> Duration {
        let Some(last) = self.last_failure else { return Duration::ZERO };
        let delay = BACKOFF_FIRST
            .saturating_mul(1 << self.failures.saturating_sub(1).min(16))
            .min(BACKOFF_MAX);
        delay.saturating_sub(last.elapsed())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere left the data as consistent as a lost connection
    // would: keep going.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Connects and negotiates `uri` once.
fn dial(uri: &NbdUri, tls: Option<&TlsSetup>, epoch: u64) -> Result<(Conn, Negotiated), NbdError> {
    let stream = Stream::connect(&uri.address, CONNECT_TIMEOUT)
        .and_then(|s| s.set_timeout(IO_TIMEOUT).map(|()| s))
        .map_err(|source| NbdError::Connect { uri: uri.to_string(), source })?;
    let (stream, info) = handshake::negotiate(stream, &uri.export, tls)
        .map_err(|r| NbdError::from_refusal(uri, r))?;
    Ok((Conn::new(stream, info.structured, info.meta_id, epoch), info))
}

impl NbdDevice {
    /// Connects to `uri`; `write` asks for a writable export (a read-only
    /// one is refused). With `CAN_MULTI_CONN`, opens up to [`CONNECTIONS`]
    /// connections (fewer if the server takes fewer).
    pub fn open(uri: &NbdUri, write: bool) -> Result<NbdDevice, NbdError> {
        let span = tracing::info_span!("nbd_client", %uri);
        let _in = span.enter();
        let tls = uri.tls.is_some().then(|| tls::setup(uri)).transpose()?;
        let (first, info) = dial(uri, tls.as_ref(), 0)?;
        if write && info.flags & FLAG_READ_ONLY != 0 {
            return Err(NbdError::ReadOnly { uri: uri.to_string() });
        }
        let mut slots = vec![Mutex::new(Some(first))];
        if info.flags & FLAG_CAN_MULTI_CONN != 0 {
            while slots.len() < CONNECTIONS {
                match dial(uri, tls.as_ref(), 0) {
                    Ok((conn, again)) if same_export(&info, &again) => {
                        slots.push(Mutex::new(Some(conn)))
                    }
                    // A server that takes fewer connections gets fewer.
                    Ok(_) => break,
                    Err(e) => {
                        tracing::debug!(error = %e, opened = slots.len(), "no more connections");
                        break;
                    }
                }
            }
        }
        Ok(NbdDevice {
            uri: uri.clone(),
            tls,
            write,
            info,
            slots,
            next_slot: AtomicUsize::new(0),
            epoch: AtomicU64::new(0),
            backoff: Mutex::new(Backoff::default()),
            rmw: Mutex::new(()),
            span: span.clone(),
        })
    }

    /// Parses `uri` and opens it.
    pub fn open_uri(uri: &str, write: bool) -> Result<NbdDevice, NbdError> {
        NbdDevice::open(&NbdUri::parse(uri)?, write)
    }

    /// The server's block size constraints.
    pub fn block_sizes(&self) -> BlockSizes {
        self.info.block
    }

    /// How many connections requests are spread over.
    pub fn connections(&self) -> usize {
        self.slots.len()
    }

    /// Runs one request on a free connection, reconnecting first if the
    /// connection was lost.
    fn run(&self, op: impl FnOnce(&mut Conn) -> Result<(), Failure>) -> io::Result<()> {
        let mut slot = self.free_slot();
        let epoch = self.epoch.load(Ordering::Acquire);
        let conn = match slot.take() {
            Some(c) if c.epoch >= epoch => c,
            // Gone, or of a generation a sibling's loss retired.
            _ => self.reconnect(epoch)?,
        };
        let conn = slot.insert(conn);
        match op(conn) {
            Ok(()) => Ok(()),
            Err(Failure::Server { errno, message }) => Err(self.server_error(errno, &message)),
            Err(Failure::Lost(e)) => {
                // Dropping it closes the socket; its siblings go on next use.
                let lost = conn.epoch;
                tracing::warn!(parent: &self.span, epoch = lost, error = %e, "connection lost");
                *slot = None;
                self.epoch.fetch_max(lost + 1, Ordering::AcqRel);
                Err(self.lost(&e))
            }
        }
    }

    fn free_slot(&self) -> MutexGuard<'_, Option<Conn>> {
        let n = self.slots.len();
        let start = self.next_slot.fetch_add(1, Ordering::Relaxed) % n;
        for i in 0..n {
            if let Ok(guard) = self.slots[(start + i) % n].try_lock() {
                return guard;
            }
        }
        lock(&self.slots[start])
    }

    /// One reconnection attempt, after the back-off.
    fn reconnect(&self, epoch: u64) -> io::Result<Conn> {
        std::thread::sleep(lock(&self.backoff).wait());
        let attempt = dial(&self.uri, self.tls.as_ref(), epoch).and_then(|(conn, info)| {
            let why = if info.size != self.info.size {
                format!("its size is now {} bytes, it was {}", info.size, self.info.size)
            } else if !same_export(&self.info, &info) {
                "the server now offers different features or block sizes".to_owned()
            } else {
                return Ok(conn);
            };
            Err(NbdError::Changed { uri: self.uri.to_string(), why })
        });
        let mut backoff = lock(&self.backoff);
        match attempt {
            Ok(conn) => {
                *backoff = Backoff::default();
                tracing::info!(parent: &self.span, epoch, "reconnected");
                Ok(conn)
            }
            Err(e) => {
                tracing::warn!(parent: &self.span, epoch, error = %e, "reconnecting failed");
                backoff.failures += 1;
                backoff.last_failure = Some(Instant::now());
                let errno = match &e {
                    NbdError::Connect { source, .. } => source.raw_os_error(),
                    _ => None,
                };
                Err(coded(format!("NBD connection lost, reconnecting failed: {e}"), errno))
            }
        }
    }

    fn lost(&self, e: &io::Error) -> io::Error {
        #[cfg(unix)]
        let errno = match e.kind() {
            // A socket timeout reads as EAGAIN, which would say "try again
            // now"; the server did not answer in time.
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Some(libc::ETIMEDOUT),
            _ => e.raw_os_error(),
        };
        #[cfg(not(unix))]
        let errno = e.raw_os_error();
        coded(format!("NBD connection lost ({}): {e}", self.uri), errno)
    }

    fn server_error(&self, errno: u32, message: &str) -> io::Error {
        let os = nbd_errno(errno);
        let text = if message.is_empty() { os.to_string() } else { format!("{message} ({os})") };
        io::Error::new(os.kind(), Coded { message: format!("{}: {text}", self.uri), errno: os })
    }

    fn check_write(&self) -> io::Result<()> {
        if self.write {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{} is open read-only", self.uri),
            ))
        }
    }

    fn min(&self) -> u64 {
        u64::from(self.info.block.minimum)
    }

    /// Largest data request, aligned to the preferred size where it fits.
    fn piece(&self) -> u64 {
        let b = self.info.block;
        let (max, unit) = (u64::from(b.maximum), u64::from(b.preferred));
        if unit <= max { max / unit * unit } else { max / self.min() * self.min() }
    }

    /// Calls `f(offset, len)` for consecutive pieces of `offset..offset+len`
    /// cut at multiples of `piece`.
    fn split(
        offset: u64,
        len: u64,
        piece: u64,
        mut f: impl FnMut(u64, u32) -> io::Result<()>,
    ) -> io::Result<()> {
        let end = offset + len;
        let mut pos = offset;
        while pos < end {
            let n = ((pos / piece + 1) * piece).min(end) - pos;
            f(pos, n as u32)?;
            pos += n;
        }
        Ok(())
    }

    /// `[align_down(offset), align_up(end))`, kept within the export.
    fn widen(&self, offset: u64, len: u64) -> (u64, u64) {
        let m = self.min();
        let start = offset / m * m;
        let end = (offset + len).div_ceil(m).saturating_mul(m).min(self.info.size);
        (start, end)
    }

    fn aligned(&self, offset: u64, len: u64) -> bool {
        offset.is_multiple_of(self.min())
            && (len.is_multiple_of(self.min()) || offset + len == self.info.size)
    }

    fn read_aligned(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let piece = self.piece();
        let mut rest = &mut buf[..];
        Self::split(offset, rest.len() as u64, piece, |pos, n| {
            let (head, tail) = std::mem::take(&mut rest).split_at_mut(n as usize);
            rest = tail;
            self.run(|c| c.request(CMD_READ, 0, pos, n, &[], Want::Data(head)))
        })
    }

    /// Writes `buf` (aligned) in pieces the server accepts, each with
    /// `flags` (`NBD_CMD_FLAG_FUA` or none).
    fn write_aligned(&self, buf: &[u8], offset: u64, flags: u16) -> io::Result<()> {
        let piece = self.piece();
        Self::split(offset, buf.len() as u64, piece, |pos, n| {
            let at = (pos - offset) as usize;
            let data = &buf[at..at + n as usize];
            self.run(|c| c.request(CMD_WRITE, flags, pos, n, data, Want::Nothing))
        })
    }

    /// A write of any alignment with `flags`: an unaligned one reads the
    /// blocks around it and writes them whole (serialised with other such
    /// writes, which may share a block).
    fn write_flagged(&self, buf: &[u8], offset: u64, flags: u16) -> io::Result<()> {
        self.check_write()?;
        check_range(self.len(), offset, buf.len() as u64)?;
        if self.aligned(offset, buf.len() as u64) {
            return self.write_aligned(buf, offset, flags);
        }
        let _rmw = lock(&self.rmw);
        let (start, end) = self.widen(offset, buf.len() as u64);
        let mut wide = vec![0; (end - start) as usize];
        self.read_aligned(&mut wide, start)?;
        let at = (offset - start) as usize;
        wide[at..at + buf.len()].copy_from_slice(buf);
        self.write_aligned(&wide, start, flags)
    }

    /// Sends a payload-free command over `offset..offset+len` (already
    /// aligned), in pieces the server accepts.
    fn command(&self, command: u16, flags: u16, offset: u64, len: u64) -> io::Result<()> {
        let piece = u64::from(self.info.block.maximum) / self.min() * self.min();
        Self::split(offset, len, piece, |pos, n| {
            self.run(|c| c.request(command, flags, pos, n, &[], Want::Nothing))
        })
    }
}

/// True when two handshakes agree on everything requests are built from
/// (context ids may differ: each connection has its own).
fn same_export(a: &Negotiated, b: &Negotiated) -> bool {
    a.size == b.size
        && a.flags == b.flags
        && a.structured == b.structured
        && a.meta_id.is_some() == b.meta_id.is_some()
        && a.block == b.block
}

impl Drop for NbdDevice {
    fn drop(&mut self) {
        for slot in &self.slots {
            if let Some(conn) = lock(slot).take() {
                conn.disconnect();
            }
        }
    }
}

impl BlockDevice for NbdDevice {
    fn len(&self) -> u64 {
        self.info.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        check_range(self.len(), offset, buf.len() as u64)?;
        if self.aligned(offset, buf.len() as u64) {
            return self.read_aligned(buf, offset);
        }
        let (start, end) = self.widen(offset, buf.len() as u64);
        let mut wide = vec![0; (end - start) as usize];
        self.read_aligned(&mut wide, start)?;
        let at = (offset - start) as usize;
        buf.copy_from_slice(&wide[at..at + buf.len()]);
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.write_flagged(buf, offset, 0)
    }

    /// With `NBD_CMD_FLAG_FUA` where the server offers it (each piece is
    /// then durable when answered); else a write and a flush.
    fn write_at_fua(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if self.info.flags & FLAG_SEND_FUA == 0 {
            self.write_at(buf, offset)?;
            return self.flush();
        }
        self.write_flagged(buf, offset, CMD_FLAG_FUA)
    }

    fn remote(&self) -> bool {
        true
    }

    fn flush(&self) -> io::Result<()> {
        if self.info.flags & FLAG_SEND_FLUSH == 0 {
            // The server has no cache to flush (it says so by not offering).
            return Ok(());
        }
        // One connection is enough: writes we made have all been answered,
        // and with several connections the server promised (multi-conn)
        // that a flush covers them all.
        self.run(|c| c.request(CMD_FLUSH, 0, 0, 0, &[], Want::Nothing))
    }

    fn write_zeroes(&self, offset: u64, len: u64, may_unmap: bool) -> io::Result<()> {
        self.check_write()?;
        check_range(self.len(), offset, len)?;
        if self.info.flags & FLAG_SEND_WRITE_ZEROES == 0 {
            return write_zeroes_by_writing(self, offset, len);
        }
        let m = self.min();
        let end = offset + len;
        let (inner_start, inner_end) = (offset.div_ceil(m) * m, end / m * m);
        if inner_start >= inner_end {
            return write_zeroes_by_writing(self, offset, len);
        }
        // Partial blocks at either end are written (read-modify-write).
        write_zeroes_by_writing(self, offset, inner_start - offset)?;
        write_zeroes_by_writing(self, inner_end, end - inner_end)?;
        let flags = if may_unmap { 0 } else { CMD_FLAG_NO_HOLE };
        self.command(CMD_WRITE_ZEROES, flags, inner_start, inner_end - inner_start)
    }

    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        self.check_write()?;
        check_range(self.len(), offset, len)?;
        let m = self.min();
        let (start, end) = (offset.div_ceil(m) * m, (offset + len) / m * m);
        if self.info.flags & FLAG_SEND_TRIM == 0 || start >= end {
            // A hint: nothing to trim, or no way to.
            return Ok(());
        }
        self.command(CMD_TRIM, 0, start, end - start)
    }

    fn block_status(&self, offset: u64, max_len: u64) -> io::Result<(Allocation, u64)> {
        check_range(self.len(), offset, max_len.max(1))?;
        let end = (offset + max_len).min(self.len());
        if self.info.meta_id.is_none() {
            return Ok((Allocation::Data, end - offset));
        }
        let (start, wide_end) = self.widen(offset, (end - offset).min(MAX_STATUS_REQUEST));
        let mut status = None;
        let len = (wide_end - start) as u32;
        self.run(|c| c.request(CMD_BLOCK_STATUS, 0, start, len, &[], Want::Status(&mut status)))?;
        Ok(match status {
            Some((alloc, run)) if start + run > offset => (alloc, (start + run).min(end) - offset),
            // An extent that stops short of `offset` (a server ignoring our
            // alignment): say "data" for what we asked about.
            _ => (Allocation::Data, end - offset),
        })
    }

    fn logical_block_size(&self) -> u32 {
        self.info.block.minimum.max(512)
    }

    fn id(&self) -> DeviceId {
        let mut h = DefaultHasher::new();
        self.uri.hash(&mut h);
        DeviceId::Network(h.finish())
    }

    fn describe(&self) -> String {
        self.uri.to_string()
    }
}

/// An error with a message of its own over the OS error it stands for, so
/// the job's report has both the words and the errno.
#[derive(Debug)]
struct Coded {
    message: String,
    errno: io::Error,
}

impl std::fmt::Display for Coded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Coded {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.errno)
    }
}

/// A lost-connection error: the OS errno if there was one, else ECONNRESET.
fn coded(message: String, errno: Option<i32>) -> io::Error {
    #[cfg(unix)]
    let os = io::Error::from_raw_os_error(errno.unwrap_or(libc::ECONNRESET));
    #[cfg(not(unix))]
    let os =
        errno.map_or_else(|| io::ErrorKind::ConnectionReset.into(), io::Error::from_raw_os_error);
    io::Error::new(os.kind(), Coded { message, errno: os })
}

/// The OS error for an NBD error number (the protocol uses Linux's values,
/// which other systems number differently).
fn nbd_errno(errno: u32) -> io::Error {
    #[cfg(unix)]
    {
        io::Error::from_raw_os_error(match errno {
            NBD_EPERM => libc::EPERM,
            NBD_ENOMEM => libc::ENOMEM,
            NBD_EINVAL => libc::EINVAL,
            NBD_ENOSPC => libc::ENOSPC,
            NBD_EOVERFLOW => libc::EOVERFLOW,
            NBD_ENOTSUP => libc::EOPNOTSUPP,
            NBD_ESHUTDOWN => libc::ESHUTDOWN,
            _ => libc::EIO,
        })
    }
    #[cfg(not(unix))]
    {
        io::Error::from(match errno {
            NBD_EPERM => io::ErrorKind::PermissionDenied,
            NBD_ENOMEM => io::ErrorKind::OutOfMemory,
            NBD_EINVAL => io::ErrorKind::InvalidInput,
            NBD_ENOSPC => io::ErrorKind::StorageFull,
            NBD_ENOTSUP => io::ErrorKind::Unsupported,
            _ => io::ErrorKind::Other,
        })
    }
}
