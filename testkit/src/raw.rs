//! A minimal, blocking NBD client that says exactly what a test tells it
//! to: well-formed traffic through [`RawClient::go`] and the typed helpers,
//! anything else through [`RawClient::send`].

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use livemirror_core::nbd_proto::*;

use crate::nbd_options::{go_data, meta_query};

/// One option reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionReply {
    pub option: u32,
    pub kind: u32,
    pub data: Vec<u8>,
}

/// One structured reply chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub flags: u16,
    pub kind: u16,
    pub handle: u64,
    pub payload: Vec<u8>,
}

/// What the server said about the export when the handshake ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportInfo {
    pub size: u64,
    pub flags: u16,
}

pub struct RawClient {
    s: UnixStream,
}

impl RawClient {
    /// Connects; reads time out after 30 s so a hung server fails the test
    /// instead of hanging it.
    pub fn connect(path: &Path) -> io::Result<RawClient> {
        let s = UnixStream::connect(path)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(RawClient { s })
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.s.write_all(bytes)
    }

    pub fn recv(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0; n];
        self.s.read_exact(&mut buf)?;
        Ok(buf)
    }

    /// Reads the server greeting and checks its magics; returns its flags.
    pub fn greeting(&mut self) -> io::Result<u16> {
        let g = self.recv(18)?;
        assert_eq!(&g[0..8], &INIT_MAGIC.to_be_bytes(), "NBDMAGIC");
        assert_eq!(&g[8..16], &OPTS_MAGIC.to_be_bytes(), "IHAVEOPT");
        Ok(u16::from_be_bytes([g[16], g[17]]))
    }

    /// Greeting plus client flags (fixed newstyle, no zeroes).
    pub fn start(path: &Path) -> io::Result<RawClient> {
        let mut c = Self::connect(path)?;
        c.greeting()?;
        c.send(&(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES).to_be_bytes())?;
        Ok(c)
    }

    pub fn send_option(&mut self, code: u32, data: &[u8]) -> io::Result<()> {
        let mut b = OPTS_MAGIC.to_be_bytes().to_vec();
        b.extend_from_slice(&code.to_be_bytes());
        b.extend_from_slice(&(data.len() as u32).to_be_bytes());
        b.extend_from_slice(data);
        self.send(&b)
    }

    pub fn option_reply(&mut self) -> io::Result<OptionReply> {
        let h = self.recv(20)?;
        assert_eq!(&h[0..8], &REP_MAGIC.to_be_bytes(), "option reply magic");
        let be32 = |i: usize| u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let (option, kind, len) = (be32(8), be32(12), be32(16));
        Ok(OptionReply { option, kind, data: self.recv(len as usize)? })
    }

    /// Option replies up to and including the final one (ACK or error).
    pub fn option_replies(&mut self) -> io::Result<Vec<OptionReply>> {
        let mut all = Vec::new();
        loop {
            let r = self.option_reply()?;
            let last = r.kind == REP_ACK || r.kind & (1 << 31) != 0;
            all.push(r);
            if last {
                return Ok(all);
            }
        }
    }

    /// A full handshake ending in `NBD_OPT_GO` for the default export,
    /// optionally with structured replies and `base:allocation`.
    pub fn go(path: &Path, structured: bool) -> io::Result<(RawClient, ExportInfo)> {
        let mut c = Self::start(path)?;
        if structured {
            c.send_option(OPT_STRUCTURED_REPLY, &[])?;
            assert_eq!(c.option_reply()?.kind, REP_ACK);
            c.send_option(OPT_SET_META_CONTEXT, &meta_query("", &[BASE_ALLOCATION]))?;
            let replies = c.option_replies()?;
            assert_eq!(replies.last().map(|r| r.kind), Some(REP_ACK));
        }
        c.send_option(OPT_GO, &go_data("", &[]))?;
        let mut info = None;
        for r in c.option_replies()? {
            assert_ne!(r.kind & (1 << 31), 1 << 31, "GO refused: {r:?}");
            if r.kind == REP_INFO && r.data[0..2] == INFO_EXPORT.to_be_bytes() {
                let size = u64::from_be_bytes(r.data[2..10].try_into().expect("8 bytes"));
                let flags = u16::from_be_bytes([r.data[10], r.data[11]]);
                info = Some(ExportInfo { size, flags });
            }
        }
        let info = info.expect("GO answered without NBD_INFO_EXPORT");
        Ok((c, info))
    }

    pub fn send_request(
        &mut self,
        flags: u16,
        kind: u16,
        handle: u64,
        offset: u64,
        length: u32,
        payload: &[u8],
    ) -> io::Result<()> {
        let mut b = REQUEST_MAGIC.to_be_bytes().to_vec();
        b.extend_from_slice(&flags.to_be_bytes());
        b.extend_from_slice(&kind.to_be_bytes());
        b.extend_from_slice(&handle.to_be_bytes());
        b.extend_from_slice(&offset.to_be_bytes());
        b.extend_from_slice(&length.to_be_bytes());
        b.extend_from_slice(payload);
        self.send(&b)
    }

    /// A simple reply: (error, handle); reads `data_len` more bytes of data
    /// when the error is 0.
    pub fn simple_reply(&mut self, data_len: usize) -> io::Result<(u32, u64, Vec<u8>)> {
        let h = self.recv(16)?;
        assert_eq!(&h[0..4], &SIMPLE_REPLY_MAGIC.to_be_bytes(), "simple reply magic");
        let error = u32::from_be_bytes(h[4..8].try_into().expect("4 bytes"));
        let handle = u64::from_be_bytes(h[8..16].try_into().expect("8 bytes"));
        let data = if error == 0 { self.recv(data_len)? } else { Vec::new() };
        Ok((error, handle, data))
    }

    pub fn chunk(&mut self) -> io::Result<Chunk> {
        let h = self.recv(20)?;
        assert_eq!(&h[0..4], &STRUCTURED_REPLY_MAGIC.to_be_bytes(), "chunk magic");
        let len = u32::from_be_bytes(h[16..20].try_into().expect("4 bytes"));
        Ok(Chunk {
            flags: u16::from_be_bytes([h[4], h[5]]),
            kind: u16::from_be_bytes([h[6], h[7]]),
            handle: u64::from_be_bytes(h[8..16].try_into().expect("8 bytes")),
            payload: self.recv(len as usize)?,
        })
    }

    /// WRITE with simple replies; returns the reply's error (0 = done).
    pub fn write(&mut self, offset: u64, data: &[u8]) -> io::Result<u32> {
        self.send_request(0, CMD_WRITE, 1, offset, data.len() as u32, data)?;
        Ok(self.simple_reply(0)?.0)
    }

    /// READ with simple replies; fails unless the server says 0.
    pub fn read(&mut self, offset: u64, len: u32) -> io::Result<Vec<u8>> {
        self.send_request(0, CMD_READ, 2, offset, len, &[])?;
        let (error, _, data) = self.simple_reply(len as usize)?;
        assert_eq!(error, 0, "read at {offset} failed");
        Ok(data)
    }

    /// Soft disconnect.
    pub fn disconnect(mut self) -> io::Result<()> {
        self.send_request(0, CMD_DISC, 0, 0, 0, &[])?;
        self.expect_closed()
    }

    /// Stops sending (the server sees end of stream).
    pub fn half_close(&mut self) -> io::Result<()> {
        self.s.shutdown(Shutdown::Write)
    }

    /// Succeeds once the server has closed the connection (end of stream
    /// or reset); fails if it sends anything more.
    pub fn expect_closed(&mut self) -> io::Result<()> {
        let mut b = [0u8; 1];
        match self.s.read(&mut b) {
            Ok(0) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(()),
            Ok(_) => Err(io::Error::other("server sent more data instead of closing")),
            Err(e) => Err(e),
        }
    }
}
