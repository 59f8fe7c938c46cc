//! A fingerprint of the target: a CRC-32 of the first bytes of a few chunks
//! the saved map calls clean, spread over the device. A target rewritten
//! by someone else since the save (same file, other contents) fails it;
//! reading eight small pieces costs nothing next to a copy.

use std::io;

use serde::{Deserialize, Serialize};

use crate::bitmap::DirtyBitmap;
use crate::buffer::AlignedBuf;
use crate::device::BlockDevice;

/// How many chunks are sampled, and how much of each.
const SAMPLES: u64 = 8;
const SAMPLE_BYTES: u64 = 64 << 10;

/// One sampled chunk of the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    pub chunk: u64,
    pub crc: u32,
}

/// Samples the target at chunks clean in `dirty` (chunks of `granularity`
/// bytes over the target's first `copy_len`). Call it after the flush that
/// makes those chunks durable.
pub fn take_samples(
    target: &dyn BlockDevice,
    granularity: u64,
    copy_len: u64,
    dirty: &DirtyBitmap,
) -> io::Result<Vec<Sample>> {
    let chunks = dirty.len();
    let mut samples = Vec::new();
    for i in 0..SAMPLES.min(chunks) {
        let chunk = i * chunks / SAMPLES.min(chunks);
        if dirty.is_dirty(chunk) {
            continue;
        }
        let crc = crc_of(target, chunk, granularity, copy_len)?;
        samples.push(Sample { chunk, crc });
    }
    Ok(samples)
}

/// True when every sample still reads the same on `target`.
pub fn samples_match(
    target: &dyn BlockDevice,
    granularity: u64,
    copy_len: u64,
    samples: &[Sample],
) -> io::Result<bool> {
    for s in samples {
        if s.chunk.saturating_mul(granularity) >= copy_len
            || crc_of(target, s.chunk, granularity, copy_len)? != s.crc
        {
            return Ok(false);
        }
    }
    Ok(true)
}

fn crc_of(
    target: &dyn BlockDevice,
    chunk: u64,
    granularity: u64,
    copy_len: u64,
) -> io::Result<u32> {
    let at = chunk * granularity;
    let len = SAMPLE_BYTES.min(granularity).min(copy_len - at);
    // Aligned, so a target opened for direct I/O only can read it too.
    let mut buf = AlignedBuf::new(len as usize);
    target.read_at(&mut buf[..], at)?;
    Ok(crc32fast::hash(&buf[..]))
}
