//! Handshake options: decoding their payloads, as pure functions.
//!
//! Like [`request`](super::request), this is separate from the socket code
//! so it can be unit-tested and fuzzed: [`parse`] takes an option code and
//! its data and says what the client asked for, or why the data is invalid
//! (which the handshake answers with `NBD_REP_ERR_INVALID`).

use crate::nbd_proto::*;

/// Option data we are willing to read; anything longer is refused by
/// closing the connection (no option we know needs more than a few KiB).
pub const MAX_OPTION_DATA: u32 = 64 << 10;

/// A client option, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOption {
    /// Old-style "pick this export and start"; errors cannot be reported.
    ExportName(String),
    Abort,
    List,
    Info(InfoRequest),
    Go(InfoRequest),
    StructuredReply,
    ListMetaContext(MetaRequest),
    SetMetaContext(MetaRequest),
    /// Anything else, answered with `NBD_REP_ERR_UNSUP`.
    Unsupported(u32),
}

/// The data of `NBD_OPT_INFO` and `NBD_OPT_GO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfoRequest {
    pub export: String,
    /// Information types the client asked for (unknown ones included).
    pub requests: Vec<u16>,
}

/// The data of `NBD_OPT_LIST_META_CONTEXT` and `NBD_OPT_SET_META_CONTEXT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaRequest {
    pub export: String,
    pub queries: Vec<String>,
}

/// Why option data was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub &'static str);

/// Decodes option `code` with payload `data`.
pub fn parse(code: u32, data: &[u8]) -> Result<ClientOption, Invalid> {
    let mut r = Reader(data);
    let option = match code {
        OPT_EXPORT_NAME => ClientOption::ExportName(r.string(data.len())?),
        // The protocol says to ignore any data sent with ABORT.
        OPT_ABORT => return Ok(ClientOption::Abort),
        OPT_LIST => ClientOption::List,
        OPT_STRUCTURED_REPLY => ClientOption::StructuredReply,
        OPT_INFO | OPT_GO => {
            let len = r.u32()? as usize;
            let export = r.string(len)?;
            let n = r.u16()?;
            let requests = (0..n).map(|_| r.u16()).collect::<Result<_, _>>()?;
            let req = InfoRequest { export, requests };
            if code == OPT_GO { ClientOption::Go(req) } else { ClientOption::Info(req) }
        }
        OPT_LIST_META_CONTEXT | OPT_SET_META_CONTEXT => {
            let len = r.u32()? as usize;
            let export = r.string(len)?;
            let n = r.u32()?;
            // Each query takes at least its 4-byte length: refuse counts
            // the data cannot hold before allocating for them.
            if u64::from(n) * 4 > r.0.len() as u64 {
                return Err(Invalid("more queries than the option data holds"));
            }
            let queries = (0..n)
                .map(|_| {
                    let len = r.u32()? as usize;
                    r.string(len)
                })
                .collect::<Result<_, _>>()?;
            let req = MetaRequest { export, queries };
            if code == OPT_SET_META_CONTEXT {
                ClientOption::SetMetaContext(req)
            } else {
                ClientOption::ListMetaContext(req)
            }
        }
        other => return Ok(ClientOption::Unsupported(other)),
    };
    if !r.0.is_empty() {
        return Err(Invalid("unexpected data after the option"));
    }
    Ok(option)
}

/// A cursor over option data that never reads past the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Invalid> {
        if n > self.0.len() {
            return Err(Invalid("option data is shorter than its fields say"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u16(&mut self) -> Result<u16, Invalid> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, Invalid> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A protocol string: UTF-8, no NUL, at most 4096 bytes.
    fn string(&mut self, len: usize) -> Result<String, Invalid> {
        if len > MAX_STRING {
            return Err(Invalid("string longer than 4096 bytes"));
        }
        let s = std::str::from_utf8(self.take(len)?).map_err(|_| Invalid("string is not UTF-8"))?;
        if s.contains('\0') {
            return Err(Invalid("string contains NUL"));
        }
        Ok(s.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use livemirror_testkit::nbd_options::{go_data, meta_query};

    use super::*;

    #[test]
    fn go_and_info_decode_name_and_requests() {
        let d = go_data("disk", &[INFO_BLOCK_SIZE, 77]);
        let want = InfoRequest { export: "disk".into(), requests: vec![INFO_BLOCK_SIZE, 77] };
        assert_eq!(parse(OPT_GO, &d), Ok(ClientOption::Go(want.clone())));
        assert_eq!(parse(OPT_INFO, &d), Ok(ClientOption::Info(want)));
    }

    #[test]
    fn meta_context_queries_decode() {
        let d = meta_query("", &["base:allocation", "qemu:dirty-bitmap:x"]);
        assert_eq!(
            parse(OPT_SET_META_CONTEXT, &d),
            Ok(ClientOption::SetMetaContext(MetaRequest {
                export: String::new(),
                queries: vec!["base:allocation".into(), "qemu:dirty-bitmap:x".into()],
            }))
        );
    }

    #[test]
    fn truncated_or_padded_data_is_invalid() {
        let d = go_data("disk", &[1, 2]);
        for cut in 0..d.len() {
            assert!(parse(OPT_GO, &d[..cut]).is_err(), "cut at {cut}");
        }
        let mut padded = d.clone();
        padded.push(0);
        assert!(parse(OPT_GO, &padded).is_err());
        assert!(parse(OPT_LIST, &[0]).is_err());
        assert!(parse(OPT_STRUCTURED_REPLY, &[1, 2]).is_err());
    }

    #[test]
    fn absurd_counts_and_lengths_are_invalid_not_huge_allocations() {
        let mut d = 0u32.to_be_bytes().to_vec();
        d.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(parse(OPT_SET_META_CONTEXT, &d).is_err());
        let mut d = u32::MAX.to_be_bytes().to_vec();
        d.extend_from_slice(&[0; 8]);
        assert!(parse(OPT_GO, &d).is_err());
    }

    #[test]
    fn bad_strings_are_invalid() {
        assert!(parse(OPT_EXPORT_NAME, &[0xff, 0xfe]).is_err());
        assert!(parse(OPT_EXPORT_NAME, b"a\0b").is_err());
        assert!(parse(OPT_EXPORT_NAME, &vec![b'a'; MAX_STRING + 1]).is_err());
        assert_eq!(parse(OPT_EXPORT_NAME, b"disk"), Ok(ClientOption::ExportName("disk".into())));
    }

    #[test]
    fn unknown_options_and_abort_ignore_their_data() {
        assert_eq!(parse(5, &[1, 2, 3]), Ok(ClientOption::Unsupported(5)));
        assert_eq!(parse(OPT_ABORT, &[9]), Ok(ClientOption::Abort));
    }
}
