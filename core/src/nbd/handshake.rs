//! The fixed newstyle handshake: greeting, then option haggling until the
//! client picks the export (`NBD_OPT_GO` or `NBD_OPT_EXPORT_NAME`) or leaves.
//!
//! We serve one export. It answers to its own name and to the empty
//! "default export" name that qemu and libnbd send when given no name.
//! Options we do not implement get `NBD_REP_ERR_UNSUP`, so clients fall
//! back (no TLS, no extended headers). Anything that breaks the framing —
//! bad magic, unknown client flags, an option too long to be honest, a bad
//! `NBD_OPT_EXPORT_NAME` (which cannot be answered with an error) — ends the
//! connection: `Err` here means "close it".

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::Export;
use super::option::{self, ClientOption, InfoRequest, MAX_OPTION_DATA, MetaRequest};
use super::request::Session;
use crate::nbd_proto::*;

/// Runs the handshake. `Ok(Some)` enters transmission with the negotiated
/// session; `Ok(None)` is a client that aborted politely.
pub(super) async fn negotiate<R, W>(
    rd: &mut R,
    wr: &mut W,
    export: &Export,
) -> io::Result<Option<Session>>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    wr.write_u64(INIT_MAGIC).await?;
    wr.write_u64(OPTS_MAGIC).await?;
    wr.write_u16(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).await?;
    wr.flush().await?;
    let client_flags = rd.read_u32().await?;
    if client_flags & !(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES) != 0 {
        return Err(broken("unknown client flags"));
    }
    let mut h = Haggle {
        wr,
        export,
        no_zeroes: client_flags & FLAG_C_NO_ZEROES != 0,
        structured: false,
        base_allocation: false,
    };
    loop {
        if rd.read_u64().await? != OPTS_MAGIC {
            return Err(broken("bad option magic"));
        }
        let code = rd.read_u32().await?;
        let len = rd.read_u32().await?;
        if len > MAX_OPTION_DATA {
            return Err(broken("option data too long"));
        }
        let mut data = vec![0; len as usize];
        rd.read_exact(&mut data).await?;
        let step = match option::parse(code, &data) {
            Ok(opt) => h.option(code, opt).await?,
            Err(_) if code == OPT_EXPORT_NAME => return Err(broken("bad export name")),
            Err(option::Invalid(why)) => {
                if code == OPT_SET_META_CONTEXT {
                    // A failed SET still replaces the selection.
                    h.base_allocation = false;
                }
                h.reply(code, REP_ERR_INVALID, why.as_bytes()).await?;
                Step::Continue
            }
        };
        h.wr.flush().await?;
        match step {
            Step::Continue => {}
            Step::Abort => return Ok(None),
            Step::Transmit => return Ok(Some(h.session())),
        }
    }
}

enum Step {
    Continue,
    Abort,
    Transmit,
}

/// The state option haggling builds up.
struct Haggle<'a, W> {
    wr: &'a mut W,
    export: &'a Export,
    no_zeroes: bool,
    structured: bool,
    base_allocation: bool,
}

impl<W: AsyncWrite + Unpin> Haggle<'_, W> {
    async fn option(&mut self, code: u32, opt: ClientOption) -> io::Result<Step> {
        match opt {
            ClientOption::ExportName(name) => {
                if !self.export.answers_to(&name) {
                    // The protocol leaves no way to say no but hanging up.
                    return Err(broken("unknown export"));
                }
                self.wr.write_u64(self.export.device.len()).await?;
                self.wr.write_u16(self.export.transmission_flags()).await?;
                if !self.no_zeroes {
                    self.wr.write_all(&[0; 124]).await?;
                }
                return Ok(Step::Transmit);
            }
            ClientOption::Abort => {
                // The client may already be gone; that is fine.
                let _ = self.reply(code, REP_ACK, &[]).await;
                return Ok(Step::Abort);
            }
            ClientOption::List => {
                let mut data = (self.export.name.len() as u32).to_be_bytes().to_vec();
                data.extend_from_slice(self.export.name.as_bytes());
                data.extend_from_slice(self.export.description.as_bytes());
                self.reply(code, REP_SERVER, &data).await?;
                self.reply(code, REP_ACK, &[]).await?;
            }
            ClientOption::Info(req) => {
                self.info(code, &req).await?;
            }
            ClientOption::Go(req) => {
                if self.info(code, &req).await? {
                    return Ok(Step::Transmit);
                }
            }
            ClientOption::StructuredReply => {
                self.structured = true;
                self.reply(code, REP_ACK, &[]).await?;
            }
            ClientOption::ListMetaContext(req) => self.meta_context(code, &req, false).await?,
            ClientOption::SetMetaContext(req) => self.meta_context(code, &req, true).await?,
            ClientOption::Unsupported(_) => {
                self.reply(code, REP_ERR_UNSUP, b"option not supported").await?;
            }
        }
        Ok(Step::Continue)
    }

    /// Answers INFO or GO; true when the export was accepted.
    async fn info(&mut self, code: u32, req: &InfoRequest) -> io::Result<bool> {
        if !self.export.answers_to(&req.export) {
            self.reply(code, REP_ERR_UNKNOWN, b"no such export").await?;
            return Ok(false);
        }
        let mut export = INFO_EXPORT.to_be_bytes().to_vec();
        export.extend_from_slice(&self.export.device.len().to_be_bytes());
        export.extend_from_slice(&self.export.transmission_flags().to_be_bytes());
        self.reply(code, REP_INFO, &export).await?;
        // Sent even unasked: it tells clients our 32 MiB request limit.
        let mut sizes = INFO_BLOCK_SIZE.to_be_bytes().to_vec();
        for v in [1, PREFERRED_BLOCK, MAX_PAYLOAD] {
            sizes.extend_from_slice(&v.to_be_bytes());
        }
        self.reply(code, REP_INFO, &sizes).await?;
        for (kind, text) in
            [(INFO_NAME, &self.export.name), (INFO_DESCRIPTION, &self.export.description)]
        {
            if req.requests.contains(&kind) {
                let mut data = kind.to_be_bytes().to_vec();
                data.extend_from_slice(text.as_bytes());
                self.reply(code, REP_INFO, &data).await?;
            }
        }
        self.reply(code, REP_ACK, &[]).await?;
        Ok(true)
    }

    /// LIST or SET of metadata contexts; we know only `base:allocation`.
    async fn meta_context(&mut self, code: u32, req: &MetaRequest, set: bool) -> io::Result<()> {
        if set {
            self.base_allocation = false;
        }
        if !self.structured {
            let msg = b"negotiate structured replies first";
            return self.reply(code, REP_ERR_INVALID, msg).await;
        }
        if !self.export.answers_to(&req.export) {
            return self.reply(code, REP_ERR_UNKNOWN, b"no such export").await;
        }
        let wanted = if set {
            req.queries.iter().any(|q| q == BASE_ALLOCATION)
        } else {
            // Listing: no query means everything; "base:" is a wildcard.
            req.queries.is_empty()
                || req.queries.iter().any(|q| q == "base:" || q == BASE_ALLOCATION)
        };
        if wanted {
            // Listed contexts carry id 0, as the protocol asks.
            let id = if set { BASE_ALLOCATION_ID } else { 0 };
            let mut data = id.to_be_bytes().to_vec();
            data.extend_from_slice(BASE_ALLOCATION.as_bytes());
            self.reply(code, REP_META_CONTEXT, &data).await?;
            self.base_allocation = set;
        }
        self.reply(code, REP_ACK, &[]).await
    }

    async fn reply(&mut self, option: u32, kind: u32, data: &[u8]) -> io::Result<()> {
        self.wr.write_u64(REP_MAGIC).await?;
        self.wr.write_u32(option).await?;
        self.wr.write_u32(kind).await?;
        self.wr.write_u32(data.len() as u32).await?;
        self.wr.write_all(data).await
    }

    fn session(&self) -> Session {
        Session {
            size: self.export.device.len(),
            read_only: self.export.read_only,
            structured: self.structured,
            block_status: self.base_allocation,
        }
    }
}

fn broken(why: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}
