//! The state file's bytes. Version 1, every integer little-endian:
//!
//! | bytes | what |
//! |---|---|
//! | 8 | magic `LMSTATE\n` |
//! | 4 | format version (u32) |
//! | 4 | header length H (u32) |
//! | H | the [`Header`] as JSON (identity, options, geometry, state, times, samples) |
//! | 1 | map encoding: 0 = bitmap words, 1 = dirty runs |
//! | 8 | chunks in the map (u64) |
//! | 8 | body length B (u64) |
//! | B | words: ⌈chunks/64⌉ u64s, chunk *i* in bit *i* mod 64 of word *i*/64; runs: (start, length) u64 pairs |
//! | 4 | CRC-32 (IEEE) of every byte before it |
//!
//! Whichever encoding is smaller is written: runs for the usual few long
//! dirty ranges, words for a scattered map (at most one bit per chunk).

use thiserror::Error;

use super::{Header, SavedJob};
use crate::bitmap::DirtyBitmap;

pub const MAGIC: &[u8; 8] = b"LMSTATE\n";
/// The format this build writes and reads.
pub const VERSION: u32 = 1;

const WORDS: u8 = 0;
const RUNS: u8 = 1;

/// Why a state file was not used.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("cannot read it: {0}")]
    Io(#[source] std::io::Error),
    #[error("it is not a livemirror state file")]
    NotStateFile,
    #[error(
        "it was written by another version of livemirror (format {0}; this one reads {VERSION})"
    )]
    OtherVersion(u32),
    #[error("it is truncated")]
    Truncated,
    #[error("it is damaged (its checksum does not match)")]
    Checksum,
    #[error("it is damaged ({0})")]
    Invalid(String),
}

/// The file's bytes for `job`.
pub fn encode(job: &SavedJob) -> Vec<u8> {
    let header = serde_json::to_vec(&job.header).expect("a header always serialises");
    let runs: Vec<_> = job.dirty.runs().collect();
    let words = job.dirty.words();
    let (encoding, body_len) = if runs.len() * 2 <= words.len() {
        (RUNS, runs.len() * 16)
    } else {
        (WORDS, words.len() * 8)
    };
    let mut out = Vec::with_capacity(8 + 4 + 4 + header.len() + 1 + 8 + 8 + body_len + 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&header);
    out.push(encoding);
    out.extend_from_slice(&job.dirty.len().to_le_bytes());
    out.extend_from_slice(&(body_len as u64).to_le_bytes());
    if encoding == RUNS {
        for r in runs {
            out.extend_from_slice(&r.start.to_le_bytes());
            out.extend_from_slice(&(r.end - r.start).to_le_bytes());
        }
    } else {
        for w in words {
            out.extend_from_slice(&w.to_le_bytes());
        }
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Reads a whole file's bytes back, checking everything.
pub fn decode(bytes: &[u8]) -> Result<SavedJob, LoadError> {
    let mut r = Reader { bytes, pos: 0 };
    let magic = r.take(MAGIC.len()).map_err(|_| {
        if MAGIC.starts_with(bytes) { LoadError::Truncated } else { LoadError::NotStateFile }
    })?;
    if magic != MAGIC {
        return Err(LoadError::NotStateFile);
    }
    let version = r.u32()?;
    if version != VERSION {
        return Err(LoadError::OtherVersion(version));
    }
    let header_len = r.u32()? as usize;
    let header = r.take(header_len)?;
    let encoding = r.take(1)?[0];
    let chunks = r.u64()?;
    let body_len = usize::try_from(r.u64()?).map_err(|_| LoadError::Truncated)?;
    let body = r.take(body_len)?;
    let end = r.pos;
    let crc = r.u32()?;
    if r.pos != bytes.len() {
        return Err(LoadError::Invalid("bytes after its end".into()));
    }
    if crc32fast::hash(&bytes[..end]) != crc {
        return Err(LoadError::Checksum);
    }
    let header: Header = serde_json::from_slice(header)
        .map_err(|e| LoadError::Invalid(format!("its header: {e}")))?;
    let expected = header.copy_len.div_ceil(header.granularity.max(1));
    if header.granularity == 0 || chunks != expected {
        return Err(LoadError::Invalid(format!(
            "a map of {chunks} chunks for {} bytes in chunks of {}",
            header.copy_len, header.granularity
        )));
    }
    let dirty = match encoding {
        WORDS => {
            let words = body.chunks_exact(8).map(le_u64).collect();
            DirtyBitmap::from_words(chunks, words)
                .filter(|_| body.len() % 8 == 0)
                .ok_or_else(|| LoadError::Invalid("its map has the wrong length".into()))?
        }
        RUNS if body.len() % 16 == 0 => {
            let mut map = DirtyBitmap::new(chunks);
            for pair in body.chunks_exact(16) {
                let (start, len) = (le_u64(&pair[..8]), le_u64(&pair[8..]));
                match start.checked_add(len) {
                    Some(end) if end <= chunks && len > 0 => map.set(start..end),
                    _ => return Err(LoadError::Invalid("a dirty run past the map's end".into())),
                };
            }
            map
        }
        _ => return Err(LoadError::Invalid(format!("unknown map encoding {encoding}"))),
    };
    Ok(SavedJob { header, dirty })
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], LoadError> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.bytes.len());
        let end = end.ok_or(LoadError::Truncated)?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32, LoadError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn u64(&mut self) -> Result<u64, LoadError> {
        Ok(le_u64(self.take(8)?))
    }
}

fn le_u64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b.try_into().expect("8 bytes"))
}
