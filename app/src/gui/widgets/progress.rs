//! The Running screen's numbers, in the source's size: how much of it has
//! been copied at least once (never more than the disk, never going back),
//! what was copied again because it was written after its copy, what waits
//! to be copied again, and an ETA that is "—" while the job does not catch
//! up with the writes.
//!
//! The job's own [`Progress`] counts every copy, re-copies included, so its
//! totals grow past the disk's size as the source is written; the chunk
//! map knows which parts were never copied, which splits the two.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use livemirror_core::chunkmap::ChunkMap;
use livemirror_core::job::Progress;

use crate::text::Eta;

/// How far back the ETA looks to see whether the work left shrinks.
const TREND: Duration = Duration::from_secs(5);
/// The shortest look back that says anything.
const MIN_TREND: Duration = Duration::from_secs(2);

/// The numbers as shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shown {
    /// Bytes of the source copied at least once.
    pub done: u64,
    /// The source's size (what the job mirrors).
    pub len: u64,
    /// Bytes copied again after the source was written there.
    pub recopied: u64,
    /// Bytes copied before and written since: waiting to be copied again.
    pub again: u64,
}

impl Shown {
    pub fn fraction(&self) -> f64 {
        if self.len == 0 { 1.0 } else { self.done as f64 / self.len as f64 }
    }
}

/// Follows one job's progress between frames.
#[derive(Default)]
pub struct Tracker {
    /// The most `done` has been: the bar never goes back.
    high_water: u64,
    /// `(when, bytes left to copy)`, the last [`TREND`] of them.
    left: VecDeque<(Instant, u64)>,
}

impl Tracker {
    /// The numbers for progress `p` of a `len`-byte mirror tracked by `map`.
    pub fn shown(&mut self, p: &Progress, map: &ChunkMap, len: u64) -> Shown {
        self.with_never_copied(p, never_copied(map, len), len)
    }

    /// The numbers when `never` bytes were never copied.
    fn with_never_copied(&mut self, p: &Progress, never: u64, len: u64) -> Shown {
        self.high_water = self.high_water.max(len - never.min(len));
        Shown {
            done: self.high_water,
            len,
            recopied: p.copied.saturating_sub(self.high_water),
            again: (p.dirty + p.in_flight).saturating_sub(never),
        }
    }

    /// Notes the bytes left to copy at `now`, and says when they will be.
    pub fn eta(&mut self, now: Instant, left: u64) -> Eta {
        while self.left.front().is_some_and(|(t, _)| now.duration_since(*t) > TREND) {
            self.left.pop_front();
        }
        self.left.push_back((now, left));
        estimate(&self.left, left)
    }
}

/// Bytes of the map no copy has completed in yet (by cell: the map's
/// resolution; the copy goes through a cell in one sweep, so at most the
/// cell it is in is counted a little late).
fn never_copied(map: &ChunkMap, len: u64) -> u64 {
    (0..map.len())
        .map(|i| map.counts(i))
        .filter(|c| c.copies == 0)
        .map(|c| c.dirty + c.in_flight)
        .sum::<u64>()
        .saturating_mul(map.granularity())
        .min(len)
}

/// The ETA from `(when, bytes left)` samples, oldest first, ending with now.
fn estimate(samples: &VecDeque<(Instant, u64)>, left: u64) -> Eta {
    let (Some(&(t0, l0)), Some(&(t1, _))) = (samples.front(), samples.back()) else {
        return Eta::Unknown;
    };
    if left == 0 {
        return Eta::In(Duration::ZERO);
    }
    let span = t1.duration_since(t0);
    if span < MIN_TREND {
        return Eta::Unknown;
    }
    if l0 <= left {
        return Eta::NotConverging;
    }
    let rate = (l0 - left) as f64 / span.as_secs_f64();
    Eta::In(Duration::from_secs_f64(left as f64 / rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(points: &[(u64, u64)]) -> (VecDeque<(Instant, u64)>, u64) {
        let t0 = Instant::now();
        let s: VecDeque<_> =
            points.iter().map(|&(ms, left)| (t0 + Duration::from_millis(ms), left)).collect();
        let left = s.back().unwrap().1;
        (s, left)
    }

    #[test]
    fn the_eta_is_a_dash_while_the_work_left_does_not_shrink() {
        let (s, left) = samples(&[(0, 100), (1000, 90)]);
        assert_eq!(estimate(&s, left), Eta::Unknown, "one second says nothing yet");
        let (s, left) = samples(&[(0, 100), (2000, 60), (4000, 20)]);
        assert_eq!(estimate(&s, left), Eta::In(Duration::from_secs(1)));
        let (s, left) = samples(&[(0, 100), (2000, 40), (4000, 100)]);
        assert_eq!(estimate(&s, left), Eta::NotConverging, "written as fast as copied");
        let (s, left) = samples(&[(0, 100), (4000, 130)]);
        assert_eq!(estimate(&s, left), Eta::NotConverging, "written faster than copied");
        let (s, left) = samples(&[(0, 100), (4000, 0)]);
        assert_eq!(estimate(&s, left), Eta::In(Duration::ZERO));
    }

    #[test]
    fn shown_progress_stays_within_the_disk_and_never_goes_back() {
        let len = 4096;
        let mut t = Tracker::default();
        let p =
            |copied, dirty| Progress { copied, total: copied + dirty, dirty, ..Default::default() };
        assert_eq!(t.with_never_copied(&p(0, len), len, len).done, 0);
        // Half copied; then a quarter written again, then copied again.
        let s = t.with_never_copied(&p(2048, 2048), 2048, len);
        assert_eq!((s.done, s.recopied, s.again), (2048, 0, 0));
        let s = t.with_never_copied(&p(2048, 3072), 2048, len);
        assert_eq!((s.done, s.recopied, s.again), (2048, 0, 1024));
        let s = t.with_never_copied(&p(3072, 2048), 2048, len);
        assert_eq!((s.done, s.recopied, s.again), (2048, 1024, 0));
        // New writes to never-copied parts (new-writes-only mode) do not
        // take the bar back, and nothing is past the disk's size.
        let s = t.with_never_copied(&p(3072, 3072), 3072, len);
        assert_eq!(s.done, 2048);
        let s = t.with_never_copied(&p(9000, 0), 0, len);
        assert_eq!((s.done, s.len, s.recopied), (len, len, 9000 - len));
        assert_eq!(s.fraction(), 1.0);
    }
}
