//! A device wrapper whose writes can be held in place, like a breakpoint in
//! QEMU's blkdebug (`break write_aio A` … `resume A`): a test arms a hold on
//! a byte range, waits until a write is caught in it, does what it needs
//! while that write is provably under way (stuck target I/O, a copy in
//! flight, a client write queued behind another), then releases it.
//!
//! Holding is done with a condition variable, never by sleeping, and the
//! test observes catches through a watch channel, so nothing depends on
//! timing. [`Stall::release_at_end`] returns a guard that releases every hold
//! when the test ends, passed or failed, so no worker thread stays stuck
//! (tokio waits for its blocking threads when a runtime shuts down).

use std::io;
use std::ops::Range;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use livemirror_core::device::{Allocation, BlockDevice};
use tokio::sync::watch;

/// Which hold, as returned by [`Stall::hold`].
#[derive(Debug, Clone, Copy)]
pub struct HoldId(usize);

/// Which writes a hold catches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Catch {
    /// Only the next write overlapping the range (a breakpoint).
    Next,
    /// Every write overlapping the range (a device that stopped answering).
    Every,
}

struct Hold {
    range: Range<u64>,
    catch: Catch,
    active: bool,
    caught: usize,
}

/// Wraps a device; writes (data, zeroes, discards) overlapping an active
/// hold wait until it is released. Reads and flushes are never held.
pub struct Stall {
    inner: Arc<dyn BlockDevice>,
    holds: Mutex<Vec<Hold>>,
    released: Condvar,
    /// Writes caught so far, per hold.
    caught: watch::Sender<Vec<usize>>,
}

impl Stall {
    pub fn new(inner: Arc<dyn BlockDevice>) -> Arc<Self> {
        Arc::new(Stall {
            inner,
            holds: Mutex::new(Vec::new()),
            released: Condvar::new(),
            caught: watch::Sender::new(Vec::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Hold>> {
        self.holds.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Arms a hold; it applies to writes that start after this call.
    pub fn hold(&self, range: Range<u64>, catch: Catch) -> HoldId {
        let mut holds = self.lock();
        holds.push(Hold { range, catch, active: true, caught: 0 });
        self.caught.send_replace(holds.iter().map(|h| h.caught).collect());
        HoldId(holds.len() - 1)
    }

    /// Lets the writes caught by `id` go on, and stops catching new ones.
    pub fn release(&self, id: HoldId) {
        self.lock()[id.0].active = false;
        self.released.notify_all();
    }

    /// A guard that releases every hold when dropped.
    pub fn release_at_end(self: &Arc<Self>) -> ReleaseAtEnd {
        ReleaseAtEnd(self.clone())
    }

    /// Waits until `id` has caught `n` writes (which are then waiting),
    /// failing the test after a guard time.
    pub async fn caught(&self, id: HoldId, n: usize) {
        let mut rx = self.caught.subscribe();
        let wait = rx.wait_for(|c| c.get(id.0).is_some_and(|k| *k >= n));
        tokio::time::timeout(Duration::from_secs(120), wait)
            .await
            .expect("no write was caught by the hold")
            .expect("the stall is alive while borrowed");
    }

    /// Called at the start of every write: waits while a hold catches it.
    fn pass(&self, offset: u64, len: u64) {
        let end = offset + len.max(1);
        let mut holds = self.lock();
        let Some(i) = holds.iter().position(|h| {
            h.active
                && h.range.start < end
                && offset < h.range.end
                && (h.catch == Catch::Every || h.caught == 0)
        }) else {
            return;
        };
        holds[i].caught += 1;
        self.caught.send_replace(holds.iter().map(|h| h.caught).collect());
        while holds[i].active {
            holds = self.released.wait(holds).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Releases every hold of a [`Stall`] on drop.
pub struct ReleaseAtEnd(Arc<Stall>);

impl Drop for ReleaseAtEnd {
    fn drop(&mut self) {
        self.0.lock().iter_mut().for_each(|h| h.active = false);
        self.0.released.notify_all();
    }
}

impl BlockDevice for Stall {
    fn len(&self) -> u64 {
        self.inner.len()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.pass(offset, buf.len() as u64);
        self.inner.write_at(buf, offset)
    }

    fn flush(&self) -> io::Result<()> {
        self.inner.flush()
    }

    fn write_zeroes(&self, offset: u64, len: u64, may_unmap: bool) -> io::Result<()> {
        self.pass(offset, len);
        self.inner.write_zeroes(offset, len, may_unmap)
    }

    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        self.pass(offset, len);
        self.inner.discard(offset, len)
    }

    fn block_status(&self, offset: u64, max_len: u64) -> io::Result<(Allocation, u64)> {
        self.inner.block_status(offset, max_len)
    }

    livemirror_core::forward_geometry!(inner);

    fn describe(&self) -> String {
        format!("{} (with held writes)", self.inner.describe())
    }
}
