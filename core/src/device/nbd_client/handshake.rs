//! The client side of the fixed newstyle handshake.
//!
//! In order: greeting, client flags, `NBD_OPT_STARTTLS` for an `nbds` URI
//! (the rest then runs inside TLS), `NBD_OPT_STRUCTURED_REPLY` (a server
//! without it is fine: simple replies then), `NBD_OPT_SET_META_CONTEXT`
//! for `base:allocation` (only with structured replies; without it every
//! range is reported as data), and `NBD_OPT_GO` asking for
//! `NBD_INFO_BLOCK_SIZE`, whose answer we then must honour. A server that
//! only knows oldstyle or non-fixed newstyle negotiation, or refuses GO, is
//! refused with the reason: every server worth talking to (qemu-nbd,
//! nbdkit, nbd-server, rbd-nbd, livemirror) does GO.

use std::io::{self, Read, Write};

use super::tls::TlsSetup;
use super::transport::Stream;
use crate::nbd_proto::*;

/// The server's block size constraints (`NBD_INFO_BLOCK_SIZE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSizes {
    /// Every request's offset and length must be a multiple of this.
    pub minimum: u32,
    /// Requests at least this large and aligned avoid read-modify-write on
    /// the server.
    pub preferred: u32,
    /// No READ or WRITE payload (and, for safety, no request) is larger.
    pub maximum: u32,
}

impl BlockSizes {
    /// What the protocol lets a client assume when the server says nothing.
    const DEFAULT: BlockSizes = BlockSizes { minimum: 1, preferred: 4096, maximum: MAX_PAYLOAD };

    /// Checks the constraints as the protocol defines them; `None` for
    /// values no honest server sends.
    fn validated(minimum: u32, preferred: u32, maximum: u32) -> Option<BlockSizes> {
        let ok = minimum.is_power_of_two()
            && minimum <= 64 << 10
            && preferred.is_power_of_two()
            && preferred >= minimum
            && maximum >= minimum
            && (maximum == u32::MAX || maximum.is_multiple_of(minimum));
        // We never send more than 32 MiB at once even if allowed more.
        ok.then(|| BlockSizes { minimum, preferred, maximum: maximum.min(MAX_PAYLOAD) })
    }
}

/// What the handshake settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub size: u64,
    pub flags: u16,
    pub structured: bool,
    pub meta_id: Option<u32>,
    pub block: BlockSizes,
}

/// Why a handshake failed.
#[derive(Debug)]
pub(super) enum Refusal {
    Io(io::Error),
    /// The server broke the protocol, or speaks a version we do not.
    Broken(String),
    /// The server said no (unknown export, policy, TLS required, …).
    Refused(String),
    /// The TLS handshake failed (the server's certificate, most often).
    Tls(io::Error),
}

impl From<io::Error> for Refusal {
    fn from(e: io::Error) -> Refusal {
        Refusal::Io(e)
    }
}

/// Option replies longer than this are not honest.
const MAX_REPLY: u32 = 64 << 10;

/// Negotiates `export` on a fresh connection, in TLS when `tls` is given;
/// returns the stream to use from now on (TLS wraps the plain one).
pub(super) fn negotiate(
    mut s: Stream,
    export: &str,
    tls: Option<&TlsSetup>,
) -> Result<(Stream, Negotiated), Refusal> {
    greet(&mut s)?;
    if let Some(tls) = tls {
        s = start_tls(s, tls)?;
    }
    let info = haggle(&mut s, export).map_err(|r| match r {
        // In TLS 1.3 the server judges our certificate after our side of
        // the handshake is done: a refusal shows as the connection ending.
        Refusal::Io(e) if tls.is_some() => Refusal::Tls(io::Error::new(
            e.kind(),
            format!(
                "the server ended the connection after the TLS handshake ({e}): servers do \
                 that to a client without a certificate they accept (client-cert.pem)"
            ),
        )),
        r => r,
    })?;
    Ok((s, info))
}

/// The server's greeting and our flags.
fn greet(s: &mut Stream) -> Result<(), Refusal> {
    if read_u64(s)? != INIT_MAGIC {
        return Err(Refusal::Broken("not an NBD server (bad greeting)".into()));
    }
    if read_u64(s)? != OPTS_MAGIC {
        return Err(Refusal::Broken("the server speaks only oldstyle NBD negotiation".into()));
    }
    let server_flags = read_u16(s)?;
    if server_flags & FLAG_FIXED_NEWSTYLE == 0 {
        return Err(Refusal::Broken("the server does not do fixed newstyle negotiation".into()));
    }
    let no_zeroes = if server_flags & FLAG_NO_ZEROES != 0 { FLAG_C_NO_ZEROES } else { 0 };
    Ok(s.write_all(&(FLAG_C_FIXED_NEWSTYLE | no_zeroes).to_be_bytes())?)
}

/// `NBD_OPT_STARTTLS`, then the TLS handshake.
fn start_tls(mut s: Stream, tls: &TlsSetup) -> Result<Stream, Refusal> {
    send_option(&mut s, OPT_STARTTLS, &[])?;
    match read_reply(&mut s, OPT_STARTTLS)? {
        (REP_ACK, _) => s.start_tls(tls).map_err(Refusal::Tls),
        (kind, d) if kind & REP_FLAG_ERROR != 0 => Err(Refusal::Refused(format!(
            "the server does not offer TLS ({})",
            refusal_text(kind, &d)
        ))),
        (kind, _) => Err(Refusal::Broken(format!("unexpected reply {kind:#x} to STARTTLS"))),
    }
}

/// The options: structured replies, block status, GO.
fn haggle(s: &mut Stream, export: &str) -> Result<Negotiated, Refusal> {
    send_option(s, OPT_STRUCTURED_REPLY, &[])?;
    let structured = match read_reply(s, OPT_STRUCTURED_REPLY)? {
        (REP_ACK, _) => true,
        (kind, _) if kind & REP_FLAG_ERROR != 0 => false,
        (kind, _) => return Err(Refusal::Broken(format!("unexpected reply {kind:#x}"))),
    };
    let meta_id = if structured { base_allocation(s, export)? } else { None };
    let (size, flags, block) = go(s, export).inspect_err(|e| {
        if let Refusal::Refused(_) = e {
            // Say goodbye rather than vanish mid-haggle (servers log that
            // as a failure); the reply does not matter any more.
            let _ = send_option(s, OPT_ABORT, &[]);
        }
    })?;
    Ok(Negotiated { size, flags, structured, meta_id, block })
}

/// Selects `base:allocation`; `None` if the server has no such context.
fn base_allocation(s: &mut Stream, export: &str) -> Result<Option<u32>, Refusal> {
    let mut data = string_field(export);
    data.extend_from_slice(&1u32.to_be_bytes());
    data.extend_from_slice(&string_field(BASE_ALLOCATION));
    send_option(s, OPT_SET_META_CONTEXT, &data)?;
    let mut id = None;
    loop {
        match read_reply(s, OPT_SET_META_CONTEXT)? {
            (REP_META_CONTEXT, d) if d.len() >= 4 => {
                if &d[4..] == BASE_ALLOCATION.as_bytes() {
                    id = Some(u32::from_be_bytes([d[0], d[1], d[2], d[3]]));
                }
            }
            (REP_ACK, _) => return Ok(id),
            // Unsupported or refused: we do without block status.
            (kind, _) if kind & REP_FLAG_ERROR != 0 => return Ok(None),
            (kind, _) => return Err(Refusal::Broken(format!("unexpected reply {kind:#x}"))),
        }
    }
}

/// `NBD_OPT_GO` with a block size request: size, transmission flags and
/// the constraints.
fn go(s: &mut Stream, export: &str) -> Result<(u64, u16, BlockSizes), Refusal> {
    let mut data = string_field(export);
    data.extend_from_slice(&1u16.to_be_bytes());
    data.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
    send_option(s, OPT_GO, &data)?;
    let (mut export_info, mut block) = (None, BlockSizes::DEFAULT);
    loop {
        let (kind, d) = read_reply(s, OPT_GO)?;
        match kind {
            REP_INFO if d.len() >= 2 => match (u16::from_be_bytes([d[0], d[1]]), d.len()) {
                (INFO_EXPORT, 12) => {
                    let size = u64::from_be_bytes(d[2..10].try_into().unwrap_or_default());
                    export_info = Some((size, u16::from_be_bytes([d[10], d[11]])));
                }
                (INFO_BLOCK_SIZE, 14) => {
                    let v = |i: usize| u32::from_be_bytes([d[i], d[i + 1], d[i + 2], d[i + 3]]);
                    block = BlockSizes::validated(v(2), v(6), v(10)).ok_or_else(|| {
                        Refusal::Broken(format!("invalid block sizes {}/{}/{}", v(2), v(6), v(10)))
                    })?;
                }
                (INFO_EXPORT | INFO_BLOCK_SIZE, _) => {
                    return Err(Refusal::Broken("malformed NBD_REP_INFO".into()));
                }
                // Name, description and types we do not know: not needed.
                _ => {}
            },
            REP_ACK => {
                let (size, flags) = export_info
                    .ok_or_else(|| Refusal::Broken("GO succeeded without export info".into()))?;
                return Ok((size, flags, block));
            }
            REP_ERR_UNSUP => {
                return Err(Refusal::Broken("the server does not support NBD_OPT_GO".into()));
            }
            k if k & REP_FLAG_ERROR != 0 => return Err(Refusal::Refused(refusal_text(k, &d))),
            k => return Err(Refusal::Broken(format!("unexpected reply {k:#x} to GO"))),
        }
    }
}

/// The server's message, or what the error code means when it sent none.
fn refusal_text(kind: u32, data: &[u8]) -> String {
    let meaning = match kind {
        REP_ERR_UNKNOWN => "no such export",
        REP_ERR_POLICY => "refused by the server's policy",
        REP_ERR_TLS_REQD => {
            "the server requires TLS: write nbds:// (with ?tls-certificates=DIR) instead of nbd://"
        }
        REP_ERR_PLATFORM => "not supported on the server's platform",
        REP_ERR_SHUTDOWN => "the server is shutting down",
        REP_ERR_BLOCK_SIZE_REQD => "the server requires block size negotiation",
        REP_ERR_TOO_BIG => "request too big",
        REP_ERR_INVALID => "invalid request",
        _ => "refused",
    };
    match std::str::from_utf8(data) {
        Ok(m) if !m.is_empty() => format!("{meaning}: {m}"),
        _ => meaning.to_owned(),
    }
}

fn string_field(s: &str) -> Vec<u8> {
    let mut d = (s.len() as u32).to_be_bytes().to_vec();
    d.extend_from_slice(s.as_bytes());
    d
}

fn send_option(s: &mut Stream, code: u32, data: &[u8]) -> io::Result<()> {
    let mut head = Vec::with_capacity(16 + data.len());
    head.extend_from_slice(&OPTS_MAGIC.to_be_bytes());
    head.extend_from_slice(&code.to_be_bytes());
    head.extend_from_slice(&(data.len() as u32).to_be_bytes());
    head.extend_from_slice(data);
    s.write_all(&head)
}

/// One option reply: its type and data.
fn read_reply(s: &mut Stream, option: u32) -> Result<(u32, Vec<u8>), Refusal> {
    if read_u64(s)? != REP_MAGIC {
        return Err(Refusal::Broken("bad option reply magic".into()));
    }
    if read_u32(s)? != option {
        return Err(Refusal::Broken("reply to an option we did not send".into()));
    }
    let kind = read_u32(s)?;
    let len = read_u32(s)?;
    if len > MAX_REPLY {
        return Err(Refusal::Broken("option reply too long".into()));
    }
    let mut data = vec![0; len as usize];
    s.read_exact(&mut data)?;
    Ok((kind, data))
}

fn read_u16(s: &mut Stream) -> io::Result<u16> {
    let mut b = [0; 2];
    s.read_exact(&mut b)?;
    Ok(u16::from_be_bytes(b))
}

fn read_u32(s: &mut Stream) -> io::Result<u32> {
    let mut b = [0; 4];
    s.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

fn read_u64(s: &mut Stream) -> io::Result<u64> {
    let mut b = [0; 8];
    s.read_exact(&mut b)?;
    Ok(u64::from_be_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_sizes_are_checked_as_the_protocol_defines_them() {
        let ok = BlockSizes::validated(512, 4096, 1 << 20).unwrap();
        assert_eq!((ok.minimum, ok.preferred, ok.maximum), (512, 4096, 1 << 20));
        // More than we ever send is capped at 32 MiB.
        assert_eq!(BlockSizes::validated(1, 4096, u32::MAX).unwrap().maximum, MAX_PAYLOAD);
        for (min, pref, max) in
            [(3, 4096, 4096), (128 << 10, 128 << 10, 1 << 20), (512, 256, 4096), (512, 4096, 1000)]
        {
            assert_eq!(BlockSizes::validated(min, pref, max), None, "{min}/{pref}/{max}");
        }
    }
}
