//! Transmission requests: decoding and checking, as pure functions.
//!
//! Nothing here touches a socket or a device, so the whole decision "is this
//! request valid for this session, and if not, what happens to the bytes
//! that follow it" can be unit-tested and fuzzed on its own. The connection
//! only reads the header, asks [`check`], and does what the answer says.

use super::errno::Errno;
use crate::nbd_proto::*;

/// Bytes in a request header.
pub const HEADER_LEN: usize = 28;

/// A request header as it came off the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub flags: u16,
    pub kind: u16,
    pub handle: u64,
    pub offset: u64,
    pub length: u32,
}

/// Decodes a header. `None` means the magic is wrong: the stream has lost
/// its framing and the only safe answer is to close the connection.
pub fn parse_header(buf: &[u8; HEADER_LEN]) -> Option<Header> {
    let be16 = |i: usize| u16::from_be_bytes([buf[i], buf[i + 1]]);
    let be32 = |i: usize| u32::from_be_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
    let be64 = |i: usize| (u64::from(be32(i)) << 32) | u64::from(be32(i + 4));
    (be32(0) == REQUEST_MAGIC).then(|| Header {
        flags: be16(4),
        kind: be16(6),
        handle: be64(8),
        offset: be64(16),
        length: be32(24),
    })
}

/// What the handshake settled that decides whether a request is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    /// Export size in bytes.
    pub size: u64,
    pub read_only: bool,
    /// Structured replies were negotiated.
    pub structured: bool,
    /// `base:allocation` was selected, so BLOCK_STATUS may be used.
    pub block_status: bool,
}

/// A request that passed every check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub handle: u64,
    pub command: Command,
    pub offset: u64,
    pub length: u32,
    /// Persist before replying (`NBD_CMD_FLAG_FUA`).
    pub fua: bool,
}

/// The operation a valid request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Read,
    /// `length` bytes of payload follow the header.
    Write,
    /// Soft disconnect: finish what is in flight, then close. No reply.
    Disconnect,
    Flush,
    Trim,
    /// `may_unmap` is false when the client sent `NBD_CMD_FLAG_NO_HOLE`.
    WriteZeroes {
        may_unmap: bool,
    },
    /// `req_one`: answer with a single extent.
    BlockStatus {
        req_one: bool,
    },
}

impl Command {
    fn mutates(self) -> bool {
        matches!(self, Command::Write | Command::Trim | Command::WriteZeroes { .. })
    }
}

/// A request refused with an error reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    pub handle: u64,
    pub errno: Errno,
    /// For a human, in structured error replies.
    pub reason: &'static str,
    pub then: Then,
}

/// What the connection does after sending a rejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Read the next request.
    Continue,
    /// Read and drop this many payload bytes first (a refused WRITE).
    Discard(u32),
    /// Close the connection: the payload is too big to be worth reading.
    Close,
}

/// Checks a header against the session. Never panics, whatever the input.
pub fn check(h: &Header, s: &Session) -> Result<Request, Rejection> {
    let refuse = |errno, reason, then| Err(Rejection { handle: h.handle, errno, reason, then });
    let (command, allowed_flags) = match h.kind {
        CMD_READ => (Command::Read, 0),
        CMD_WRITE => (Command::Write, 0),
        CMD_DISC => (Command::Disconnect, u16::MAX),
        CMD_FLUSH => (Command::Flush, 0),
        CMD_TRIM => (Command::Trim, 0),
        CMD_WRITE_ZEROES => {
            (Command::WriteZeroes { may_unmap: h.flags & CMD_FLAG_NO_HOLE == 0 }, CMD_FLAG_NO_HOLE)
        }
        CMD_BLOCK_STATUS => {
            (Command::BlockStatus { req_one: h.flags & CMD_FLAG_REQ_ONE != 0 }, CMD_FLAG_REQ_ONE)
        }
        _ => return refuse(Errno::EINVAL, "unknown command", Then::Continue),
    };
    // A refused WRITE still has its payload on the wire.
    let payload = if command == Command::Write {
        if h.length > MAX_PAYLOAD {
            return refuse(
                Errno::EINVAL,
                "write larger than the 32 MiB maximum block size",
                Then::Close,
            );
        }
        Then::Discard(h.length)
    } else {
        Then::Continue
    };
    // FUA is advertised, so it is accepted (and harmless) on every command.
    if h.flags & !(allowed_flags | CMD_FLAG_FUA) != 0 {
        return refuse(Errno::EINVAL, "command flag not valid here", payload);
    }
    if s.read_only && command.mutates() {
        return refuse(Errno::EPERM, "the export is read-only", payload);
    }
    let end = h.offset.checked_add(u64::from(h.length));
    match command {
        Command::Disconnect | Command::Flush => {}
        Command::BlockStatus { .. } if !s.block_status => {
            return refuse(Errno::EINVAL, "no metadata context was negotiated", Then::Continue);
        }
        Command::Read | Command::WriteZeroes { .. } if h.length > MAX_PAYLOAD => {
            return refuse(
                Errno::EINVAL,
                "request larger than the 32 MiB maximum block size",
                Then::Continue,
            );
        }
        // The protocol asks for ENOSPC on writes past the end, EINVAL else.
        Command::Write | Command::WriteZeroes { .. } if end.is_none_or(|e| e > s.size) => {
            return refuse(Errno::ENOSPC, "write past the end of the export", payload);
        }
        _ if end.is_none_or(|e| e > s.size) => {
            return refuse(Errno::EINVAL, "request past the end of the export", Then::Continue);
        }
        Command::BlockStatus { .. } if h.length == 0 => {
            return refuse(Errno::EINVAL, "empty block status request", Then::Continue);
        }
        _ => {}
    }
    Ok(Request {
        handle: h.handle,
        command,
        offset: h.offset,
        length: h.length,
        fua: h.flags & CMD_FLAG_FUA != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(flags: u16, kind: u16, handle: u64, offset: u64, length: u32) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
        b[4..6].copy_from_slice(&flags.to_be_bytes());
        b[6..8].copy_from_slice(&kind.to_be_bytes());
        b[8..16].copy_from_slice(&handle.to_be_bytes());
        b[16..24].copy_from_slice(&offset.to_be_bytes());
        b[24..28].copy_from_slice(&length.to_be_bytes());
        b
    }

    const RW: Session =
        Session { size: 1 << 20, read_only: false, structured: true, block_status: true };

    fn header(flags: u16, kind: u16, offset: u64, length: u32) -> Header {
        Header { flags, kind, handle: 7, offset, length }
    }

    fn rejected(h: Header, s: &Session) -> (Errno, Then) {
        let r = check(&h, s).expect_err("should be refused");
        assert_eq!(r.handle, 7);
        (r.errno, r.then)
    }

    #[test]
    fn header_decodes_big_endian() {
        let h = parse_header(&encode(1, CMD_WRITE, 0x0102_0304_0506_0708, 1 << 40, 512))
            .expect("valid magic");
        assert_eq!(
            h,
            Header {
                flags: 1,
                kind: CMD_WRITE,
                handle: 0x0102_0304_0506_0708,
                offset: 1 << 40,
                length: 512
            }
        );
    }

    #[test]
    fn bad_magic_is_not_a_request() {
        let mut b = encode(0, CMD_READ, 1, 0, 512);
        b[3] ^= 1;
        assert_eq!(parse_header(&b), None);
    }

    #[test]
    fn valid_requests_carry_their_flags() {
        let r = check(&header(CMD_FLAG_FUA, CMD_WRITE, 4096, 512), &RW).unwrap();
        assert_eq!((r.command, r.fua), (Command::Write, true));
        let r = check(&header(CMD_FLAG_NO_HOLE, CMD_WRITE_ZEROES, 0, 4096), &RW).unwrap();
        assert_eq!(r.command, Command::WriteZeroes { may_unmap: false });
        let r = check(&header(0, CMD_WRITE_ZEROES, 0, 4096), &RW).unwrap();
        assert_eq!(r.command, Command::WriteZeroes { may_unmap: true });
        let r = check(&header(CMD_FLAG_REQ_ONE, CMD_BLOCK_STATUS, 0, 4096), &RW).unwrap();
        assert_eq!(r.command, Command::BlockStatus { req_one: true });
        // A request ending exactly at the end is fine.
        assert!(check(&header(0, CMD_READ, (1 << 20) - 512, 512), &RW).is_ok());
    }

    #[test]
    fn unknown_commands_and_flags_are_einval() {
        assert_eq!(rejected(header(0, 5, 0, 512), &RW), (Errno::EINVAL, Then::Continue));
        assert_eq!(rejected(header(0, 99, 0, 512), &RW), (Errno::EINVAL, Then::Continue));
        // NO_HOLE belongs to WRITE_ZEROES only; its refused WRITE payload
        // must still be skipped.
        assert_eq!(
            rejected(header(CMD_FLAG_NO_HOLE, CMD_WRITE, 0, 512), &RW),
            (Errno::EINVAL, Then::Discard(512))
        );
        assert_eq!(
            rejected(header(1 << 4, CMD_WRITE_ZEROES, 0, 512), &RW),
            (Errno::EINVAL, Then::Continue)
        );
    }

    #[test]
    fn past_the_end_is_enospc_for_writes_and_einval_otherwise() {
        let end = 1 << 20;
        assert_eq!(
            rejected(header(0, CMD_WRITE, end - 511, 512), &RW),
            (Errno::ENOSPC, Then::Discard(512))
        );
        assert_eq!(rejected(header(0, CMD_WRITE_ZEROES, end, 1), &RW).0, Errno::ENOSPC);
        for kind in [CMD_READ, CMD_TRIM, CMD_BLOCK_STATUS] {
            assert_eq!(rejected(header(0, kind, end, 512), &RW), (Errno::EINVAL, Then::Continue));
        }
        // Offsets that overflow are past the end, not a panic.
        assert_eq!(rejected(header(0, CMD_READ, u64::MAX, 2), &RW).0, Errno::EINVAL);
    }

    #[test]
    fn oversized_requests_are_refused_and_big_writes_close() {
        let big = MAX_PAYLOAD + 1;
        assert_eq!(rejected(header(0, CMD_WRITE, 0, big), &RW), (Errno::EINVAL, Then::Close));
        assert_eq!(rejected(header(0, CMD_READ, 0, big), &RW), (Errno::EINVAL, Then::Continue));
        // TRIM has no payload and no size limit beyond the export.
        let huge = Session { size: 1 << 40, ..RW };
        assert!(check(&header(0, CMD_TRIM, 0, u32::MAX), &huge).is_ok());
        assert!(check(&header(0, CMD_WRITE, 0, MAX_PAYLOAD), &huge).is_ok());
    }

    #[test]
    fn read_only_exports_refuse_changes_with_eperm() {
        let ro = Session { read_only: true, ..RW };
        assert_eq!(rejected(header(0, CMD_WRITE, 0, 512), &ro), (Errno::EPERM, Then::Discard(512)));
        assert_eq!(rejected(header(0, CMD_TRIM, 0, 512), &ro).0, Errno::EPERM);
        assert!(check(&header(0, CMD_READ, 0, 512), &ro).is_ok());
        assert!(check(&header(0, CMD_FLUSH, 0, 0), &ro).is_ok());
    }

    #[test]
    fn block_status_needs_a_context_and_a_length() {
        let none = Session { block_status: false, ..RW };
        assert_eq!(rejected(header(0, CMD_BLOCK_STATUS, 0, 512), &none).0, Errno::EINVAL);
        assert_eq!(rejected(header(0, CMD_BLOCK_STATUS, 0, 0), &RW).0, Errno::EINVAL);
    }

    #[test]
    fn disconnect_needs_nothing_else() {
        let r = check(&header(0xffff, CMD_DISC, 5, 5), &RW).unwrap();
        assert_eq!(r.command, Command::Disconnect);
    }
}
