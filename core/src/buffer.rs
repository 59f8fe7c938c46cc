//! Page-aligned I/O buffers and the pool the mirror job copies through,
//! and [`is_zero`], the scan every copier runs over them.
//!
//! `O_DIRECT` needs buffers aligned to the device's DMA alignment (4 KiB
//! covers every disk and filesystem we meet). Copies reuse a small pool of
//! such buffers instead of allocating per operation: a fresh allocation of
//! a megabyte is an `mmap` plus a page fault per 4 KiB (and, on VMs whose
//! host reclaims freed memory, a host fault too), which cost more than the
//! copy itself. The pool never holds more buffers than were in use at once,
//! so its memory is bounded by the job's in-flight limit.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};

/// Alignment of every buffer: a page, enough for any `O_DIRECT` device.
pub const ALIGN: usize = 4096;

/// A zero-initialised byte buffer whose start is [`ALIGN`]-aligned.
///
/// Safe code only: a `Vec` over-allocated by one alignment unit, used from
/// its first aligned byte.
pub struct AlignedBuf {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    /// A buffer of `len` zero bytes.
    pub fn new(len: usize) -> Self {
        let storage = vec![0u8; len + ALIGN];
        let start = storage.as_ptr().align_offset(ALIGN);
        AlignedBuf { storage, start, len }
    }

    /// A buffer holding a copy of `data`.
    pub fn copy_of(data: &[u8]) -> Self {
        let mut b = AlignedBuf::new(data.len());
        b.copy_from_slice(data);
        b
    }
}

impl Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }
}

impl DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }
}

/// Reusable [`AlignedBuf`]s of one size.
pub struct BufferPool {
    size: usize,
    free: Mutex<Vec<AlignedBuf>>,
}

impl BufferPool {
    /// A pool of `size`-byte buffers; none is allocated until first used.
    pub fn new(size: usize) -> Arc<Self> {
        Arc::new(BufferPool { size, free: Mutex::new(Vec::new()) })
    }

    /// The size of every buffer.
    pub fn buffer_size(&self) -> usize {
        self.size
    }

    /// A buffer of [`buffer_size`](Self::buffer_size) bytes (old contents,
    /// not zeroes); it goes back to the pool when dropped.
    pub fn take(self: &Arc<Self>) -> PooledBuf {
        let reused = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        PooledBuf {
            buf: Some(reused.unwrap_or_else(|| AlignedBuf::new(self.size))),
            pool: self.clone(),
        }
    }

    /// Buffers waiting for reuse (for tests and memory accounting).
    pub fn idle(&self) -> usize {
        self.free.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// A buffer on loan from a [`BufferPool`].
pub struct PooledBuf {
    buf: Option<AlignedBuf>,
    pool: Arc<BufferPool>,
}

impl Deref for PooledBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.buf.as_deref().unwrap_or_default()
    }
}

impl DerefMut for PooledBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.buf.as_deref_mut().unwrap_or_default()
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            self.pool.free.lock().unwrap_or_else(|e| e.into_inner()).push(buf);
        }
    }
}

/// True if every byte is zero.
///
/// Data that is not zero almost always shows it in its first bytes, so the
/// check stops at the first non-zero 256-byte block; inside a block the
/// words are OR-ed without branches, which the compiler turns into vector
/// instructions, so an all-zero buffer is scanned at memory speed.
pub fn is_zero(buf: &[u8]) -> bool {
    // SAFETY: u128 has no invalid bit patterns; align_to only reinterprets
    // the aligned middle of the slice.
    let (head, body, tail) = unsafe { buf.align_to::<u128>() };
    head.iter().all(|b| *b == 0)
        && tail.iter().all(|b| *b == 0)
        && body.chunks(16).all(|block| block.iter().fold(0, |acc, w| acc | w) == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_and_sized() {
        for len in [0, 1, 4095, 4096, 1 << 20] {
            let b = AlignedBuf::new(len);
            assert_eq!(b.len(), len);
            assert_eq!(b.as_ptr() as usize % ALIGN, 0);
        }
        assert_eq!(&*AlignedBuf::copy_of(b"abc"), b"abc");
    }

    #[test]
    fn the_pool_reuses_buffers_and_keeps_only_what_was_used_at_once() {
        let pool = BufferPool::new(8192);
        let (a, b) = (pool.take(), pool.take());
        let a_ptr = a.as_ptr();
        assert_eq!((a.len(), pool.idle()), (8192, 0));
        drop(a);
        drop(b);
        assert_eq!(pool.idle(), 2);
        let c = pool.take();
        assert!(c.as_ptr() == a_ptr || pool.idle() == 1, "reused, not allocated");
        assert_eq!(pool.idle(), 1);
    }

    #[test]
    fn is_zero_checks_every_byte() {
        let mut b = vec![0u8; 1000];
        assert!(is_zero(&b[3..]));
        b[999] = 1;
        assert!(!is_zero(&b[3..]));
        assert!(is_zero(&[]));
        let mut big = vec![0u8; 100_000];
        for at in [0, 4095, 50_000, 99_999] {
            big[at] = 1;
            assert!(!is_zero(&big), "non-zero byte at {at}");
            big[at] = 0;
        }
        assert!(is_zero(&big));
    }
}
