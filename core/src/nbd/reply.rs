//! Transmission replies: simple replies and structured reply chunks.
//!
//! A [`Reply`] is built whole before anything is sent, so a reply is never
//! cut by an error half-way (the protocol would then demand a hard
//! disconnect), and the connection's single writer can put it on the wire
//! in one piece between other replies. Which form to use is decided here
//! too: once structured replies are negotiated, reads must use them and
//! errors should (they carry a message).

use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::errno::Errno;
use crate::nbd_proto::*;

/// One complete reply: a header and, for reads, the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    head: Vec<u8>,
    data: Vec<u8>,
}

impl Reply {
    /// Success without data.
    pub fn ok(handle: u64, structured: bool) -> Reply {
        if structured {
            Self::chunk(handle, REPLY_TYPE_NONE, Vec::new(), Vec::new())
        } else {
            Self::simple(handle, 0, Vec::new())
        }
    }

    /// The data of a successful read of `offset..offset + data.len()`.
    pub fn read(handle: u64, structured: bool, offset: u64, data: Vec<u8>) -> Reply {
        if structured && data.is_empty() {
            // A data chunk must hold at least one byte; nothing to send.
            Self::ok(handle, true)
        } else if structured {
            Self::chunk(handle, REPLY_TYPE_OFFSET_DATA, offset.to_be_bytes().to_vec(), data)
        } else {
            Self::simple(handle, 0, data)
        }
    }

    /// A failed request, with a message for a human when the form allows.
    pub fn error(handle: u64, structured: bool, errno: Errno, message: &str) -> Reply {
        if !structured {
            return Self::simple(handle, errno.code(), Vec::new());
        }
        let msg = truncate(message, MAX_STRING);
        let mut payload = errno.code().to_be_bytes().to_vec();
        payload.extend_from_slice(&(msg.len() as u16).to_be_bytes());
        payload.extend_from_slice(msg.as_bytes());
        Self::chunk(handle, REPLY_TYPE_ERROR, payload, Vec::new())
    }

    /// `base:allocation` extents as (length, status flags) pairs.
    pub fn block_status(handle: u64, context: u32, extents: &[(u32, u32)]) -> Reply {
        let mut payload = Vec::with_capacity(4 + 8 * extents.len());
        payload.extend_from_slice(&context.to_be_bytes());
        for (len, flags) in extents {
            payload.extend_from_slice(&len.to_be_bytes());
            payload.extend_from_slice(&flags.to_be_bytes());
        }
        Self::chunk(handle, REPLY_TYPE_BLOCK_STATUS, payload, Vec::new())
    }

    fn simple(handle: u64, error: u32, data: Vec<u8>) -> Reply {
        let mut head = Vec::with_capacity(16);
        head.extend_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
        head.extend_from_slice(&error.to_be_bytes());
        head.extend_from_slice(&handle.to_be_bytes());
        Reply { head, data }
    }

    /// A single, final chunk: every reply we send is complete in one.
    /// `fields` go in the header buffer, `data` is sent after it uncopied.
    fn chunk(handle: u64, kind: u16, fields: Vec<u8>, data: Vec<u8>) -> Reply {
        let len = (fields.len() + data.len()) as u32;
        let mut head = Vec::with_capacity(20 + fields.len());
        head.extend_from_slice(&STRUCTURED_REPLY_MAGIC.to_be_bytes());
        head.extend_from_slice(&REPLY_FLAG_DONE.to_be_bytes());
        head.extend_from_slice(&kind.to_be_bytes());
        head.extend_from_slice(&handle.to_be_bytes());
        head.extend_from_slice(&len.to_be_bytes());
        head.extend_from_slice(&fields);
        Reply { head, data }
    }

    /// Writes the whole reply (without flushing).
    pub async fn write_to<W: AsyncWrite + Unpin>(&self, w: &mut W) -> std::io::Result<()> {
        w.write_all(&self.head).await?;
        w.write_all(&self.data).await
    }

    /// The reply's bytes, for tests.
    #[cfg(test)]
    pub fn to_bytes(&self) -> Vec<u8> {
        [&self.head[..], &self.data[..]].concat()
    }
}

/// At most `max` bytes of `s`, cut on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_replies_are_magic_error_handle_data() {
        let r = Reply::read(9, false, 4096, vec![1, 2, 3]).to_bytes();
        assert_eq!(&r[0..4], &SIMPLE_REPLY_MAGIC.to_be_bytes());
        assert_eq!(&r[4..8], &[0; 4]);
        assert_eq!(&r[8..16], &9u64.to_be_bytes());
        assert_eq!(&r[16..], &[1, 2, 3]);
        let e = Reply::error(9, false, Errno::EINVAL, "ignored").to_bytes();
        assert_eq!(e.len(), 16);
        assert_eq!(&e[4..8], &22u32.to_be_bytes());
    }

    #[test]
    fn structured_read_is_one_final_data_chunk() {
        let r = Reply::read(3, true, 512, vec![7; 5]).to_bytes();
        assert_eq!(&r[0..4], &STRUCTURED_REPLY_MAGIC.to_be_bytes());
        assert_eq!(&r[4..6], &REPLY_FLAG_DONE.to_be_bytes());
        assert_eq!(&r[6..8], &REPLY_TYPE_OFFSET_DATA.to_be_bytes());
        assert_eq!(&r[8..16], &3u64.to_be_bytes());
        assert_eq!(&r[16..20], &13u32.to_be_bytes());
        assert_eq!(&r[20..28], &512u64.to_be_bytes());
        assert_eq!(&r[28..], &[7; 5]);
    }

    #[test]
    fn structured_error_carries_errno_and_message() {
        let r = Reply::error(1, true, Errno::ENOSPC, "full").to_bytes();
        assert_eq!(&r[6..8], &REPLY_TYPE_ERROR.to_be_bytes());
        assert_eq!(&r[16..20], &10u32.to_be_bytes());
        assert_eq!(&r[20..24], &28u32.to_be_bytes());
        assert_eq!(&r[24..26], &4u16.to_be_bytes());
        assert_eq!(&r[26..], b"full");
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        let msg = "é".repeat(MAX_STRING);
        let r = Reply::error(1, true, Errno::EIO, &msg).to_bytes();
        let n = u16::from_be_bytes([r[24], r[25]]) as usize;
        assert!(n <= MAX_STRING);
        assert!(std::str::from_utf8(&r[26..]).is_ok());
    }

    #[test]
    fn block_status_lists_extents_after_the_context() {
        let r = Reply::block_status(2, 1, &[(4096, 0), (8192, 3)]).to_bytes();
        assert_eq!(&r[6..8], &REPLY_TYPE_BLOCK_STATUS.to_be_bytes());
        assert_eq!(&r[16..20], &20u32.to_be_bytes());
        assert_eq!(&r[20..24], &1u32.to_be_bytes());
        assert_eq!(&r[24..32], &[0, 0, 16, 0, 0, 0, 0, 0]);
        assert_eq!(&r[32..40], &[0, 0, 32, 0, 0, 0, 0, 3]);
    }

    #[test]
    fn an_empty_structured_read_is_a_bare_done_chunk() {
        assert_eq!(Reply::read(4, true, 0, Vec::new()), Reply::ok(4, true));
    }

    #[test]
    fn ok_is_none_chunk_or_zero_error() {
        let s = Reply::ok(5, true).to_bytes();
        assert_eq!(s.len(), 20);
        assert_eq!(&s[6..8], &REPLY_TYPE_NONE.to_be_bytes());
        let p = Reply::ok(5, false).to_bytes();
        assert_eq!(p.len(), 16);
    }
}
