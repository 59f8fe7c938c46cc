//! One connection's transmission phase: send a request, read its reply.
//!
//! A connection carries one request at a time (the device's pool gives each
//! caller a whole connection), so a reply must carry the handle just sent;
//! anything else is a protocol error. Errors come in two kinds, because
//! they need different handling: [`Failure::Server`] is an error the server
//! reported for this request (the connection is fine), [`Failure::Lost`]
//! means the connection can no longer be trusted (I/O error, timeout,
//! broken framing) and must be dropped.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
#[cfg(unix)]
use std::os::unix::net::UnixStream;
use std::time::Duration;

use rustls::{ClientConnection, StreamOwned};

use super::tls::TlsSetup;
use super::uri::Address;
use crate::device::Allocation;
use crate::nbd_proto::*;

/// A socket to a server, TCP or unix, plain or (after STARTTLS) in TLS.
pub(super) enum Stream {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(UnixStream),
    Tls(Box<StreamOwned<ClientConnection, Stream>>),
}

impl Stream {
    /// Connects, giving up after `timeout` (TCP; a unix connect does not wait).
    pub fn connect(address: &Address, timeout: Duration) -> io::Result<Stream> {
        match address {
            Address::Tcp { host, port } => {
                let mut last = None;
                for addr in (host.as_str(), *port).to_socket_addrs()? {
                    match TcpStream::connect_timeout(&addr, timeout) {
                        Ok(s) => {
                            // Requests are small and answered one by one:
                            // Nagle would only add latency.
                            s.set_nodelay(true)?;
                            return Ok(Stream::Tcp(s));
                        }
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"))
                }))
            }
            #[cfg(unix)]
            Address::Unix(path) => Ok(Stream::Unix(UnixStream::connect(path)?)),
            #[cfg(not(unix))]
            Address::Unix(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "nbd+unix:// needs unix sockets, which this system does not have",
            )),
        }
    }

    /// Wraps this plain stream in TLS and completes the TLS handshake (the
    /// server's certificate is checked here).
    pub fn start_tls(self, tls: &TlsSetup) -> io::Result<Stream> {
        let conn = ClientConnection::new(tls.config.clone(), tls.server_name.clone())
            .map_err(io::Error::other)?;
        let mut s = StreamOwned::new(conn, self);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock)?;
        }
        Ok(Stream::Tls(Box::new(s)))
    }

    /// Every read and write fails after `timeout` instead of waiting forever.
    pub fn set_timeout(&self, timeout: Duration) -> io::Result<()> {
        match self {
            Stream::Tls(s) => s.sock.set_timeout(timeout),
            Stream::Tcp(s) => {
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))
            }
            #[cfg(unix)]
            Stream::Unix(s) => {
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))
            }
        }
    }

    fn shutdown(&mut self) {
        // Already closed by the peer is fine: we are leaving anyway.
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
            #[cfg(unix)]
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
            Stream::Tls(s) => {
                s.conn.send_close_notify();
                let _ = s.conn.complete_io(&mut s.sock);
                s.sock.shutdown();
                Ok(())
            }
        };
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            #[cfg(unix)]
            Stream::Unix(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            #[cfg(unix)]
            Stream::Unix(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            #[cfg(unix)]
            Stream::Unix(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// Why a request did not succeed.
#[derive(Debug)]
pub(super) enum Failure {
    /// The server answered with an error; the connection stays usable.
    Server { errno: u32, message: String },
    /// The connection broke or cannot be trusted any more.
    Lost(io::Error),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure::Lost(e)
    }
}

fn broken(why: impl Into<String>) -> Failure {
    Failure::Lost(io::Error::new(io::ErrorKind::InvalidData, why.into()))
}

/// What the caller wants from a request's reply.
pub(super) enum Want<'a> {
    /// No data (write, flush, trim, zeroes).
    Nothing,
    /// A read's data, exactly filling the buffer.
    Data(&'a mut [u8]),
    /// The first `base:allocation` run of a block-status reply, with
    /// following extents of the same kind merged into it.
    Status(&'a mut Option<(Allocation, u64)>),
}

/// A connection in transmission phase.
pub(super) struct Conn {
    stream: Stream,
    /// Structured replies were negotiated.
    structured: bool,
    /// The id the server gave `base:allocation`, if negotiated.
    pub meta_id: Option<u32>,
    next_handle: u64,
    /// Which generation of connections this one belongs to (see the pool).
    pub epoch: u64,
}

/// Block-status payloads we are willing to read (an honest one for a
/// request of at most 4 GiB from a sane server is far smaller).
const MAX_STATUS_PAYLOAD: u32 = 1 << 20;

impl Conn {
    pub fn new(stream: Stream, structured: bool, meta_id: Option<u32>, epoch: u64) -> Conn {
        Conn { stream, structured, meta_id, next_handle: 1, epoch }
    }

    /// Sends one request (with `payload` for a write) and reads its reply.
    pub fn request(
        &mut self,
        command: u16,
        flags: u16,
        offset: u64,
        len: u32,
        payload: &[u8],
        want: Want<'_>,
    ) -> Result<(), Failure> {
        let handle = self.next_handle;
        self.next_handle += 1;
        self.stream.write_all(&request_header(flags, command, handle, offset, len))?;
        self.stream.write_all(payload)?;
        self.reply(handle, offset, want)
    }

    fn reply(&mut self, handle: u64, offset: u64, mut want: Want<'_>) -> Result<(), Failure> {
        let magic = self.u32()?;
        if magic == SIMPLE_REPLY_MAGIC {
            let errno = self.u32()?;
            self.expect_handle(handle)?;
            if errno != 0 {
                return Err(Failure::Server { errno, message: String::new() });
            }
            return match want {
                Want::Nothing => Ok(()),
                Want::Data(buf) => Ok(self.stream.read_exact(buf)?),
                Want::Status(_) => Err(broken("block status answered with a simple reply")),
            };
        }
        if magic != STRUCTURED_REPLY_MAGIC || !self.structured {
            return Err(broken(format!("bad reply magic {magic:#x}")));
        }
        // Chunks until DONE; an error chunk is remembered and reported
        // once the reply is complete, so the stream stays in step.
        let mut error = None;
        let mut covered = 0u64;
        let mut first = true;
        loop {
            // Every chunk has its own magic; the first one's was read above.
            if !std::mem::take(&mut first) && self.u32()? != STRUCTURED_REPLY_MAGIC {
                return Err(broken("bad structured reply chunk magic"));
            }
            let flags = self.u16()?;
            let kind = self.u16()?;
            self.expect_handle(handle)?;
            let len = self.u32()?;
            match kind {
                REPLY_TYPE_NONE if len == 0 => {}
                REPLY_TYPE_OFFSET_DATA | REPLY_TYPE_OFFSET_HOLE => {
                    let Want::Data(buf) = &mut want else {
                        return Err(broken("read data in the reply to another command"));
                    };
                    // Chunks may not overlap (the protocol forbids it), so
                    // covering the whole buffer means the sizes add up.
                    covered += self.data_chunk(kind, len, offset, buf)?;
                }
                REPLY_TYPE_BLOCK_STATUS => {
                    let Want::Status(out) = &mut want else {
                        return Err(broken("block status in the reply to another command"));
                    };
                    self.status_chunk(len, out)?;
                }
                k if k & (1 << 15) != 0 => error = Some(self.error_chunk(kind, len)?),
                _ => {
                    // Unknown informational chunk: skip it, as the
                    // protocol allows.
                    io::copy(&mut (&mut self.stream).take(u64::from(len)), &mut io::sink())?;
                }
            }
            if flags & REPLY_FLAG_DONE != 0 {
                break;
            }
        }
        if let Some(e) = error {
            return Err(e);
        }
        match want {
            Want::Data(buf) if covered != buf.len() as u64 => {
                Err(broken(format!("read reply covered {covered} of {} bytes", buf.len())))
            }
            Want::Status(out) if out.is_none() => Err(broken("block status reply without extents")),
            _ => Ok(()),
        }
    }

    /// Reads an OFFSET_DATA or OFFSET_HOLE chunk into `buf` (which starts at
    /// `base`); returns how many bytes it covered.
    fn data_chunk(
        &mut self,
        kind: u16,
        len: u32,
        base: u64,
        buf: &mut [u8],
    ) -> Result<u64, Failure> {
        let head = if kind == REPLY_TYPE_OFFSET_DATA { 8 } else { 12 };
        if len < head || (kind == REPLY_TYPE_OFFSET_HOLE && len != head) {
            return Err(broken("malformed read chunk"));
        }
        let at = self.u64()?.checked_sub(base).ok_or_else(|| broken("chunk before request"))?;
        let n = if kind == REPLY_TYPE_OFFSET_DATA {
            u64::from(len - 8)
        } else {
            u64::from(self.u32()?)
        };
        let end = at.checked_add(n).filter(|e| *e <= buf.len() as u64);
        let Some(end) = end else { return Err(broken("read chunk outside the request")) };
        let dst = &mut buf[at as usize..end as usize];
        if kind == REPLY_TYPE_OFFSET_DATA {
            self.stream.read_exact(dst)?;
        } else {
            dst.fill(0);
        }
        Ok(n)
    }

    fn status_chunk(
        &mut self,
        len: u32,
        out: &mut Option<(Allocation, u64)>,
    ) -> Result<(), Failure> {
        if len < 12 || len % 8 != 4 || len > MAX_STATUS_PAYLOAD {
            return Err(broken("malformed block status chunk"));
        }
        let mut payload = vec![0; len as usize];
        self.stream.read_exact(&mut payload)?;
        let id = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
        if Some(id) != self.meta_id {
            // A context we did not ask for: not ours to interpret.
            return Ok(());
        }
        for extent in payload[4..].chunks_exact(8) {
            let run = u64::from(u32::from_be_bytes([extent[0], extent[1], extent[2], extent[3]]));
            let flags = u32::from_be_bytes([extent[4], extent[5], extent[6], extent[7]]);
            // A hole that does not read as zero (say, over a backing file)
            // must still be read: for us that is data.
            let alloc = match (flags & STATE_HOLE != 0, flags & STATE_ZERO != 0) {
                (true, true) => Allocation::Hole,
                (false, true) => Allocation::Zero,
                _ => Allocation::Data,
            };
            match out {
                _ if run == 0 => return Err(broken("empty block status extent")),
                None => *out = Some((alloc, run)),
                Some((a, total)) if *a == alloc => *total += run,
                Some(_) => break,
            }
        }
        Ok(())
    }

    fn error_chunk(&mut self, kind: u16, len: u32) -> Result<Failure, Failure> {
        if !(6..=6 + MAX_STRING as u32 + 8).contains(&len) {
            return Err(broken("malformed error chunk"));
        }
        let mut payload = vec![0; len as usize];
        self.stream.read_exact(&mut payload)?;
        let errno = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
        let n = usize::from(u16::from_be_bytes([payload[4], payload[5]]));
        // ERROR_OFFSET adds the offset after the message; error types we do
        // not know may add more, so only the message must fit.
        let exact = match kind {
            REPLY_TYPE_ERROR => Some(6 + n),
            REPLY_TYPE_ERROR_OFFSET => Some(6 + n + 8),
            _ => None,
        };
        if 6 + n > payload.len() || exact.is_some_and(|e| e != payload.len()) {
            return Err(broken("error chunk's message length disagrees with the chunk"));
        }
        let message = String::from_utf8_lossy(&payload[6..6 + n]).into_owned();
        // An errno of 0 in an error chunk is a broken server; still an error.
        Ok(Failure::Server { errno: if errno == 0 { NBD_EIO } else { errno }, message })
    }

    fn expect_handle(&mut self, handle: u64) -> Result<(), Failure> {
        match self.u64()? {
            h if h == handle => Ok(()),
            h => Err(broken(format!("reply for handle {h}, expected {handle}"))),
        }
    }

    fn u16(&mut self) -> io::Result<u16> {
        let mut b = [0; 2];
        self.stream.read_exact(&mut b)?;
        Ok(u16::from_be_bytes(b))
    }

    fn u32(&mut self) -> io::Result<u32> {
        let mut b = [0; 4];
        self.stream.read_exact(&mut b)?;
        Ok(u32::from_be_bytes(b))
    }

    fn u64(&mut self) -> io::Result<u64> {
        let mut b = [0; 8];
        self.stream.read_exact(&mut b)?;
        Ok(u64::from_be_bytes(b))
    }

    /// Says goodbye politely (NBD_CMD_DISC has no reply) and closes.
    pub fn disconnect(mut self) {
        // A server already gone cannot be told; closing is what matters.
        let _ = self.stream.write_all(&request_header(0, CMD_DISC, 0, 0, 0));
        self.stream.shutdown();
    }
}

/// A transmission request's 28-byte header.
fn request_header(flags: u16, command: u16, handle: u64, offset: u64, len: u32) -> [u8; 28] {
    let mut head = [0u8; 28];
    head[0..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
    head[4..6].copy_from_slice(&flags.to_be_bytes());
    head[6..8].copy_from_slice(&command.to_be_bytes());
    head[8..16].copy_from_slice(&handle.to_be_bytes());
    head[16..24].copy_from_slice(&offset.to_be_bytes());
    head[24..28].copy_from_slice(&len.to_be_bytes());
    head
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    /// One chunk of a structured reply to handle 1.
    fn chunk(flags: u16, kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut c = STRUCTURED_REPLY_MAGIC.to_be_bytes().to_vec();
        c.extend_from_slice(&flags.to_be_bytes());
        c.extend_from_slice(&kind.to_be_bytes());
        c.extend_from_slice(&1u64.to_be_bytes());
        c.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        c.extend_from_slice(payload);
        c
    }

    /// Sends one request to a fake server that answers with `reply`.
    fn exchange(command: u16, len: u32, reply: Vec<u8>, want: Want<'_>) -> Result<(), Failure> {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let server = std::thread::spawn(move || {
            let mut head = [0; 28];
            theirs.read_exact(&mut head).unwrap();
            theirs.write_all(&reply).unwrap();
            theirs
        });
        let mut conn = Conn::new(Stream::Unix(ours), true, Some(1), 0);
        let result = conn.request(command, 0, 0, len, &[], want);
        drop(server.join().unwrap());
        result
    }

    #[test]
    fn a_read_may_come_as_holes_and_data_in_any_order() {
        let mut reply =
            chunk(0, REPLY_TYPE_OFFSET_DATA, &[&4u64.to_be_bytes()[..], &[1, 2, 3, 4]].concat());
        let hole = [&0u64.to_be_bytes()[..], &4u32.to_be_bytes()].concat();
        reply.extend(chunk(REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_HOLE, &hole));
        let mut buf = [9; 8];
        exchange(CMD_READ, 8, reply, Want::Data(&mut buf)).unwrap();
        assert_eq!(buf, [0, 0, 0, 0, 1, 2, 3, 4]);
    }

    #[test]
    fn a_read_not_fully_covered_or_outside_the_request_breaks_the_connection() {
        let short = chunk(
            REPLY_FLAG_DONE,
            REPLY_TYPE_OFFSET_DATA,
            &[&0u64.to_be_bytes()[..], &[1; 4]].concat(),
        );
        let outside = chunk(
            REPLY_FLAG_DONE,
            REPLY_TYPE_OFFSET_DATA,
            &[&6u64.to_be_bytes()[..], &[1; 4]].concat(),
        );
        for reply in [short, outside] {
            let r = exchange(CMD_READ, 8, reply, Want::Data(&mut [0; 8]));
            assert!(matches!(r, Err(Failure::Lost(_))), "{r:?}");
        }
    }

    #[test]
    fn an_error_chunk_is_the_servers_error_and_keeps_the_connection() {
        let payload = [&NBD_ENOSPC.to_be_bytes()[..], &4u16.to_be_bytes(), b"full"].concat();
        let r = exchange(
            CMD_WRITE,
            0,
            chunk(REPLY_FLAG_DONE, REPLY_TYPE_ERROR, &payload),
            Want::Nothing,
        );
        match r {
            Err(Failure::Server { errno: NBD_ENOSPC, message }) => assert_eq!(message, "full"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_reply_for_another_handle_breaks_the_connection() {
        let mut reply = SIMPLE_REPLY_MAGIC.to_be_bytes().to_vec();
        reply.extend_from_slice(&0u32.to_be_bytes());
        reply.extend_from_slice(&7u64.to_be_bytes());
        let r = exchange(CMD_FLUSH, 0, reply, Want::Nothing);
        assert!(matches!(r, Err(Failure::Lost(_))), "{r:?}");
    }

    #[test]
    fn block_status_merges_extents_of_one_kind_and_maps_flags() {
        let extents = |list: &[(u32, u32)]| {
            let mut p = 1u32.to_be_bytes().to_vec();
            for (len, flags) in list {
                p.extend_from_slice(&len.to_be_bytes());
                p.extend_from_slice(&flags.to_be_bytes());
            }
            chunk(REPLY_FLAG_DONE, REPLY_TYPE_BLOCK_STATUS, &p)
        };
        let hole = STATE_HOLE | STATE_ZERO;
        for (list, want) in [
            (vec![(4096, hole), (4096, hole), (4096, 0)], (Allocation::Hole, 8192)),
            (vec![(512, STATE_ZERO), (512, hole)], (Allocation::Zero, 512)),
            // A hole that does not read as zero must be read: data.
            (vec![(1024, STATE_HOLE)], (Allocation::Data, 1024)),
        ] {
            let mut status = None;
            exchange(CMD_BLOCK_STATUS, 1 << 20, extents(&list), Want::Status(&mut status)).unwrap();
            assert_eq!(status, Some(want), "{list:?}");
        }
    }
}
