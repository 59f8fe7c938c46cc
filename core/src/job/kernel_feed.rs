//! Kernel write tracking for the job (`Tracking::Kernel`): owns the
//! [`KernelTracker`] on the source's disk and the freeze of its
//! filesystems, and moves what the kernel saw written into the job's dirty
//! map. The runner calls four things and nothing else: [`drain`] on a short
//! timer, [`sync`] before it decides "nothing dirty", [`freeze`] when the
//! last drain of a Complete starts and [`thaw`] when it ends.
//!
//! [`drain`]: KernelFeed::drain
//! [`sync`]: KernelFeed::sync
//! [`freeze`]: KernelFeed::freeze
//! [`thaw`]: KernelFeed::thaw

use std::time::Duration;

pub(super) use imp::{Attach, KernelFeed};

/// Why kernel tracking could not start, or failed under way: the tracker's
/// own error (attach, barrier) or the freeze's.
#[derive(Debug, thiserror::Error)]
pub(super) enum FeedError {
    #[cfg(target_os = "linux")]
    #[error(transparent)]
    Track(#[from] crate::kernel::TrackError),
    #[cfg(target_os = "linux")]
    #[error(transparent)]
    Freeze(#[from] crate::kernel::FreezeError),
    #[cfg(not(target_os = "linux"))]
    #[error("kernel write tracking exists on Linux only")]
    NotLinux,
}

/// How often the kernel's bitmap is drained while the job runs. Only how
/// soon a write starts being recopied depends on it, never correctness:
/// every decision that nothing is dirty drains after a barrier first
/// ([`KernelFeed::sync`]). 50 ms keeps a busy disk's rewrites flowing while
/// a drain (one pass over the bitmap, 2 MiB for 1 TiB at 64 KiB chunks)
/// costs nothing noticeable.
pub(super) const POLL: Duration = Duration::from_millis(50);

/// What the final step of a Complete held, once it is over. Only Linux
/// tracks and freezes; elsewhere no feed exists and nothing is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(super) enum Held {
    /// No filesystem is mounted from the source: nothing could be frozen.
    Nothing,
    /// Every filesystem mounted from the source was frozen this long.
    Frozen(Duration),
}

#[cfg(target_os = "linux")]
mod imp {
    use std::ops::Range;
    use std::sync::{Mutex, MutexGuard};
    use std::time::{Duration, Instant};

    use super::{FeedError, Held};
    use crate::device::DeviceId;
    use crate::kernel::{AttachKernel, Drained, Frozen, InProcess, KernelWrites, MAX_SPAN_WORDS};
    use crate::live::Tracker;

    /// How the job starts its tracker: [`InProcess`] unless told.
    pub(in crate::job) type Attach = dyn AttachKernel;

    /// The kernel tracker on one source and its freeze, if one is under way.
    pub(in crate::job) struct KernelFeed {
        writes: Box<dyn KernelWrites>,
        hold: Mutex<Option<Box<dyn Frozen>>>,
        limit: Duration,
    }

    impl KernelFeed {
        /// Starts tracking writes to `id` in chunks of `granularity` bytes
        /// (the job's own, so the kernel's chunk numbers are the job's),
        /// through `how` (in this process when none). Fails with the
        /// reason kernel tracking cannot be used here. A freeze lasts at
        /// most `limit`: then it is thawed by force.
        /// `span_limit`: a test's smaller limit of what the program marks.
        pub(in crate::job) fn attach(
            id: &DeviceId,
            granularity: u64,
            limit: Duration,
            span_limit: Option<u64>,
            how: Option<&Attach>,
        ) -> Result<Self, FeedError> {
            let span_limit = span_limit.unwrap_or(MAX_SPAN_WORDS);
            let writes = how.unwrap_or(&InProcess).attach(id, granularity, span_limit)?;
            Ok(KernelFeed { writes, hold: Mutex::new(None), limit })
        }

        /// Moves every chunk written since the last drain into `tracker`.
        /// Some(why) when the kernel could not say every chunk written:
        /// the whole range must then be compared once.
        pub(in crate::job) fn drain(&self, tracker: &Tracker) -> Option<String> {
            let chunks = tracker.geometry.chunks();
            let mut mark = |r: Range<u64>| {
                // Past a smaller target's range: the target is no longer
                // a copy, as for a live write there.
                if r.end > chunks {
                    let g = tracker.geometry.granularity;
                    tracker.note_written_past_end(r.start.max(chunks) * g);
                }
                if r.start < chunks {
                    tracker.mark_dirty(r.start..r.end.min(chunks));
                }
            };
            match self.writes.drain(&mut mark) {
                Drained::Exact => None,
                Drained::All(why) => Some(why.to_string()),
            }
        }

        /// [`drain`](Self::drain) after a barrier: every write completed
        /// before this call is in `tracker` when it returns, or said to be
        /// unknown. Blocks on one small read.
        pub(in crate::job) fn sync(&self, tracker: &Tracker) -> Result<Option<String>, FeedError> {
            self.writes.barrier()?;
            Ok(self.drain(tracker))
        }

        /// Freezes every filesystem mounted from the source (each writes
        /// out what it holds dirty first). False when none is mounted.
        pub(in crate::job) fn freeze(&self) -> Result<bool, FeedError> {
            let hold = self.writes.freeze(self.limit)?;
            let frozen = hold.filesystems() > 0;
            *self.lock() = frozen.then_some(hold);
            Ok(frozen)
        }

        /// True while frozen past the limit: the filesystems are thawed by
        /// force then, so the final copy can no longer be consistent.
        pub(in crate::job) fn over_limit(&self) -> bool {
            self.lock().as_ref().is_some_and(|h| Instant::now() >= h.deadline())
        }

        /// Ends the freeze, if any. Fails when the filesystems did not stay
        /// frozen until now (the limit passed) or could not be thawed.
        pub(in crate::job) fn thaw(&self) -> Result<Held, FeedError> {
            match self.lock().take() {
                None => Ok(Held::Nothing),
                Some(h) => Ok(Held::Frozen(h.thaw()?)),
            }
        }

        fn lock(&self) -> MutexGuard<'_, Option<Box<dyn Frozen>>> {
            // A panic while holding it cannot leave the Option half-written.
            self.hold.lock().unwrap_or_else(|e| e.into_inner())
        }
    }
}

/// Elsewhere there is no kernel tracker: [`KernelFeed::attach`] says so and
/// no feed ever exists.
#[cfg(not(target_os = "linux"))]
mod imp {
    use std::time::Duration;

    use super::{FeedError, Held};
    use crate::device::DeviceId;
    use crate::live::Tracker;

    pub(in crate::job) enum KernelFeed {}

    /// No way to attach exists either.
    pub(in crate::job) enum Attach {}

    impl KernelFeed {
        pub(in crate::job) fn attach(
            _: &DeviceId,
            _: u64,
            _: Duration,
            _: Option<u64>,
            _: Option<&Attach>,
        ) -> Result<Self, FeedError> {
            Err(FeedError::NotLinux)
        }
        pub(in crate::job) fn drain(&self, _: &Tracker) -> Option<String> {
            match *self {}
        }
        pub(in crate::job) fn sync(&self, _: &Tracker) -> Result<Option<String>, FeedError> {
            match *self {}
        }
        pub(in crate::job) fn freeze(&self) -> Result<bool, FeedError> {
            match *self {}
        }
        pub(in crate::job) fn over_limit(&self) -> bool {
            match *self {}
        }
        pub(in crate::job) fn thaw(&self) -> Result<Held, FeedError> {
            match *self {}
        }
    }
}
