//! The dirty bitmap: one bit per granularity-sized chunk.
//!
//! Two levels, like QEMU's HBitmap: a summary bit per 64-bit word says whether
//! that word has any bit set, so finding the next dirty chunk skips 4096
//! clean chunks per summary word. The count of dirty chunks is kept exact so
//! progress and readiness never need a scan. Not synchronised: the tracker
//! that owns it holds it under a lock.

use std::ops::Range;

/// A set of chunk indexes `0..len`.
#[derive(Debug, Clone)]
pub struct DirtyBitmap {
    len: u64,
    words: Vec<u64>,
    summary: Vec<u64>,
    count: u64,
}

impl DirtyBitmap {
    /// An all-clean bitmap of `len` chunks.
    pub fn new(len: u64) -> Self {
        let words = len.div_ceil(64) as usize;
        DirtyBitmap { len, words: vec![0; words], summary: vec![0; words.div_ceil(64)], count: 0 }
    }

    /// Number of chunks covered.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for a bitmap of zero chunks.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of dirty chunks.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Bytes of memory held: the bitmap is the one structure allowed to grow
    /// with the disk, at about one bit per chunk.
    pub fn memory_bytes(&self) -> usize {
        (self.words.len() + self.summary.len()) * 8
    }

    pub fn is_dirty(&self, chunk: u64) -> bool {
        chunk < self.len && self.words[(chunk / 64) as usize] & (1 << (chunk % 64)) != 0
    }

    /// Marks `range` dirty; returns how many chunks were clean before.
    pub fn set(&mut self, range: Range<u64>) -> u64 {
        self.update(range, true)
    }

    /// Marks `range` clean; returns how many chunks were dirty before.
    pub fn clear(&mut self, range: Range<u64>) -> u64 {
        self.update(range, false)
    }

    fn update(&mut self, range: Range<u64>, dirty: bool) -> u64 {
        let end = range.end.min(self.len);
        let mut pos = range.start;
        let mut changed = 0;
        while pos < end {
            let w = (pos / 64) as usize;
            let bit = pos % 64;
            let n = (end - pos).min(64 - bit);
            let mask = if n == 64 { !0 } else { ((1u64 << n) - 1) << bit };
            let old = self.words[w];
            let new = if dirty { old | mask } else { old & !mask };
            changed += (old ^ new).count_ones() as u64;
            self.words[w] = new;
            let sbit = 1u64 << (w % 64);
            if new != 0 {
                self.summary[w / 64] |= sbit;
            } else {
                self.summary[w / 64] &= !sbit;
            }
            pos += n;
        }
        if dirty {
            self.count += changed;
        } else {
            self.count -= changed;
        }
        changed
    }

    /// The first dirty chunk at or after `from`.
    pub fn next_dirty(&self, from: u64) -> Option<u64> {
        if from >= self.len {
            return None;
        }
        let w = (from / 64) as usize;
        let bits = self.words[w] & (!0u64 << (from % 64));
        if bits != 0 {
            return Some(w as u64 * 64 + bits.trailing_zeros() as u64);
        }
        // Search the summary for the next non-empty word after `w`.
        let next = w + 1;
        let mut s = next / 64;
        let mut sbits = self.summary.get(s)? & (!0u64 << (next % 64));
        loop {
            if sbits != 0 {
                let word = s * 64 + sbits.trailing_zeros() as usize;
                let bit = self.words[word].trailing_zeros() as u64;
                return Some(word as u64 * 64 + bit);
            }
            s += 1;
            sbits = *self.summary.get(s)?;
        }
    }

    /// The end of the dirty run that starts at `from`, looking no further
    /// than `limit`: the first clean chunk in `from..limit`, or `limit`.
    pub fn dirty_run_end(&self, from: u64, limit: u64) -> u64 {
        let limit = limit.min(self.len);
        let mut pos = from;
        while pos < limit {
            let w = (pos / 64) as usize;
            let clean = !self.words[w] & (!0u64 << (pos % 64));
            if clean != 0 {
                return (w as u64 * 64 + clean.trailing_zeros() as u64).min(limit);
            }
            pos = (w as u64 + 1) * 64;
        }
        limit
    }

    /// The dirty runs, in order: what a saved map stores when it has few.
    pub fn runs(&self) -> impl Iterator<Item = Range<u64>> + '_ {
        let mut pos = 0;
        std::iter::from_fn(move || {
            let start = self.next_dirty(pos)?;
            let end = self.dirty_run_end(start, self.len);
            pos = end;
            Some(start..end)
        })
    }

    /// The bits, 64 chunks a word, chunk 0 in bit 0 of word 0.
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// A bitmap of `len` chunks from [`words`](Self::words); `None` when
    /// the number of words is wrong or bits past `len` are set.
    pub fn from_words(len: u64, words: Vec<u64>) -> Option<Self> {
        if words.len() as u64 != len.div_ceil(64) {
            return None;
        }
        let tail = len % 64;
        if tail != 0 && words.last().is_some_and(|w| w >> tail != 0) {
            return None;
        }
        let mut summary = vec![0u64; words.len().div_ceil(64)];
        for (i, w) in words.iter().enumerate() {
            if *w != 0 {
                summary[i / 64] |= 1 << (i % 64);
            }
        }
        let count = words.iter().map(|w| w.count_ones() as u64).sum();
        Some(DirtyBitmap { len, words, summary, count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn set_clear_and_count() {
        let mut b = DirtyBitmap::new(1000);
        assert_eq!(b.set(10..300), 290);
        assert_eq!(b.set(200..400), 100);
        assert_eq!(b.count(), 390);
        assert_eq!(b.clear(0..50), 40);
        assert_eq!(b.count(), 350);
        assert!(!b.is_dirty(49) && b.is_dirty(50) && b.is_dirty(399) && !b.is_dirty(400));
        assert_eq!(b.next_dirty(0), Some(50));
        assert_eq!(b.next_dirty(400), None);
        assert_eq!(b.dirty_run_end(50, 1000), 400);
        assert_eq!(b.dirty_run_end(50, 100), 100);
    }

    #[test]
    fn next_dirty_crosses_summary_words() {
        let mut b = DirtyBitmap::new(64 * 64 * 3 + 5);
        b.set(64 * 64 * 3 + 2..64 * 64 * 3 + 3);
        assert_eq!(b.next_dirty(0), Some(64 * 64 * 3 + 2));
        assert_eq!(b.next_dirty(64 * 64 * 3 + 3), None);
        b.clear(0..u64::MAX);
        assert_eq!(b.count(), 0);
        assert_eq!(b.next_dirty(0), None);
    }

    #[test]
    fn a_16_tib_disk_at_64_kib_costs_one_bit_per_chunk() {
        let chunks = (16u64 << 40) / (64 << 10);
        let b = DirtyBitmap::new(chunks);
        let one_bit_per_chunk = chunks as usize / 8;
        assert!(b.memory_bytes() <= one_bit_per_chunk + one_bit_per_chunk / 32);
    }

    #[test]
    fn runs_and_words_round_trip() {
        let mut b = DirtyBitmap::new(200);
        b.set(3..70);
        b.set(130..131);
        b.set(199..200);
        assert_eq!(b.runs().collect::<Vec<_>>(), vec![3..70, 130..131, 199..200]);
        let back = DirtyBitmap::from_words(200, b.words().to_vec()).unwrap();
        assert_eq!(back.runs().collect::<Vec<_>>(), vec![3..70, 130..131, 199..200]);
        assert_eq!(back.count(), 69);
        assert_eq!(back.next_dirty(71), Some(130));
        assert!(DirtyBitmap::from_words(200, vec![0; 3]).is_none(), "one word short");
        assert!(DirtyBitmap::from_words(130, vec![0, 0, 1 << 2]).is_none(), "bit 130 set");
    }

    proptest! {
        /// The bitmap behaves exactly like a plain set of indexes.
        #[test]
        fn matches_a_model(len in 0u64..5000, ops in prop::collection::vec((any::<bool>(), 0u64..5000, 0u64..600), 0..40), probes in prop::collection::vec(0u64..5100, 0..20)) {
            let mut b = DirtyBitmap::new(len);
            let mut model = vec![false; len as usize];
            for (set, start, n) in ops {
                let r = start..start + n;
                let expect = r.clone().filter(|i| *i < len && model[*i as usize] != set).count() as u64;
                let got = if set { b.set(r.clone()) } else { b.clear(r.clone()) };
                prop_assert_eq!(got, expect);
                for i in r.filter(|i| *i < len) { model[i as usize] = set; }
            }
            prop_assert_eq!(b.count(), model.iter().filter(|d| **d).count() as u64);
            for p in probes {
                let want = (p..len).find(|i| model[*i as usize]);
                prop_assert_eq!(b.next_dirty(p), want);
                if p < len && model[p as usize] {
                    let end = (p..len).find(|i| !model[*i as usize]).unwrap_or(len);
                    prop_assert_eq!(b.dirty_run_end(p, len), end);
                }
            }
        }
    }
}
