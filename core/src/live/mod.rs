//! The live source: the only path by which anything writes the source while
//! a job mirrors it.
//!
//! It is itself a [`BlockDevice`], so the NBD export, the demo workload and
//! tests write through it like through any device. With a job attached every
//! write is tracked (see [`tracker`] for the ordering rules); after
//! Complete it routes everything to the target — the pivot — without its
//! users noticing.

mod lease;
mod tracker;

use std::io;
use std::sync::{Arc, Condvar, Mutex, RwLock};

use crate::bitmap::DirtyBitmap;
use crate::device::{Allocation, BlockDevice, DeviceId};
use crate::error::{Error, IoFailure, IoOperation, Side};
use crate::options::CopyMode;

pub use lease::ReadLease;
pub(crate) use tracker::Pick;
pub use tracker::{Geometry, Tracker};

/// A source device with write tracking and a switchable route.
pub struct LiveSource {
    route: RwLock<Route>,
    gate: Gate,
}

#[derive(Clone)]
struct Route {
    device: Arc<dyn BlockDevice>,
    tracker: Option<Arc<Tracker>>,
    /// After a pivot: where the writes the target takes since are noted.
    log: Option<Arc<WriteLog>>,
}

/// The chunks written through the live source since its job completed: a
/// `serve --mirror-to` keeps serving the target, and what its clients
/// write is what a later re-sync of the pair must copy. Each write is
/// noted *before* it is applied, so a write on the medium is always in the
/// log (one that then fails is noted anyway: copying it again is safe).
#[derive(Debug, Default)]
pub struct WriteLog {
    /// The job's chunk geometry and the map, from the pivot on.
    map: Mutex<Option<(Geometry, DirtyBitmap)>>,
}

impl WriteLog {
    /// A log that notes nothing until its job completes.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Starts noting, in the chunks of `geometry`.
    pub(crate) fn begin(&self, geometry: Geometry) {
        *self.lock() = Some((geometry, DirtyBitmap::new(geometry.chunks())));
    }

    fn note(&self, offset: u64, len: u64) {
        if let Some((g, map)) = self.lock().as_mut() {
            let inside = g.len.saturating_sub(offset).min(len);
            map.set(g.covering(offset, inside));
        }
    }

    /// The chunks written so far; `None` before the job completed.
    pub fn snapshot(&self) -> Option<DirtyBitmap> {
        self.lock().as_ref().map(|(_, map)| map.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Geometry, DirtyBitmap)>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A change to the device's data.
enum Mutation<'a> {
    /// Data, and whether it must be durable before the write returns (FUA).
    Write(&'a [u8], bool),
    Zeroes {
        may_unmap: bool,
    },
    Discard,
}

impl Mutation<'_> {
    fn operation(&self) -> IoOperation {
        match self {
            Mutation::Write(..) => IoOperation::Write,
            Mutation::Zeroes { .. } | Mutation::Discard => IoOperation::WriteZeroes,
        }
    }

    fn apply(&self, dev: &dyn BlockDevice, offset: u64, len: u64) -> io::Result<()> {
        match self {
            Mutation::Write(buf, false) => dev.write_at(buf, offset),
            Mutation::Write(buf, true) => dev.write_at_fua(buf, offset),
            Mutation::Zeroes { may_unmap } => dev.write_zeroes(offset, len, *may_unmap),
            Mutation::Discard => dev.discard(offset, len),
        }
    }
}

impl LiveSource {
    pub fn new(source: Arc<dyn BlockDevice>) -> Arc<Self> {
        Arc::new(LiveSource {
            route: RwLock::new(Route { device: source, tracker: None, log: None }),
            gate: Gate::default(),
        })
    }

    /// The device reads and writes go to now: the source, or the target
    /// after a pivot.
    pub fn device(&self) -> Arc<dyn BlockDevice> {
        self.route().device
    }

    fn route(&self) -> Route {
        self.route.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_route(&self, f: impl FnOnce(&mut Route)) {
        f(&mut self.route.write().unwrap_or_else(|e| e.into_inner()))
    }

    pub(crate) fn attach(&self, tracker: Arc<Tracker>) -> Result<(), Error> {
        let mut route = self.route.write().unwrap_or_else(|e| e.into_inner());
        if route.tracker.is_some() {
            return Err(Error::AlreadyMirrored);
        }
        route.tracker = Some(tracker);
        Ok(())
    }

    /// Stops tracking; writes go straight to the device again.
    pub(crate) fn detach(&self) {
        self.set_route(|r| r.tracker = None);
    }

    /// Serves `target` from now on, noting what is written to it in `log`
    /// if given. Only called with the gate closed and the target in sync.
    pub(crate) fn pivot(&self, target: Arc<dyn BlockDevice>, log: Option<Arc<WriteLog>>) {
        self.set_route(|r| *r = Route { device: target, tracker: None, log });
    }

    /// Holds new writes from now on. Returns at once: writes already under
    /// way finish on their own ([`gate_idle`](Self::gate_idle) says when).
    pub(crate) fn close_gate(&self) {
        self.gate.close()
    }

    pub(crate) fn open_gate(&self) {
        self.gate.open()
    }

    /// True when no write is under way.
    pub(crate) fn gate_idle(&self) -> bool {
        self.gate.lock().writers == 0
    }

    /// Completes after the last write under way has left (at once if one
    /// left since the last wait: the notification is kept).
    pub(crate) async fn gate_idle_notified(&self) {
        self.gate.idle.notified().await
    }

    fn mutate(&self, m: Mutation<'_>, offset: u64, len: u64) -> io::Result<()> {
        let _pass = self.gate.enter();
        let route = self.route();
        let dev = &*route.device;
        let Some(t) = route.tracker else {
            if let Some(log) = &route.log {
                log.note(offset, len);
            }
            return m.apply(dev, offset, len);
        };
        crate::device::check_range(dev.len(), offset, len)?;
        if offset + len > t.geometry.len {
            // Past what a smaller target takes: the source takes the write
            // (it is the disk its users write), the job fails.
            let r = m.apply(dev, offset, len);
            let inside = t.geometry.len.saturating_sub(offset).min(len);
            t.mark_dirty(t.geometry.covering(offset, inside));
            t.note_written_past_end(offset.max(t.geometry.len));
            return r;
        }
        let chunks = t.geometry.covering(offset, len);
        let write_through = t.copy_mode() == CopyMode::WriteBlocking
            && !matches!(m, Mutation::Discard)
            && t.may_write_through(&chunks);
        if t.copy_mode() == CopyMode::Background {
            // Mark after the write lands, so a copy racing with it either
            // sees the new data or is redone.
            let r = m.apply(dev, offset, len);
            t.mark_dirty(chunks.clone());
            t.map.heat(chunks);
            return r;
        }
        let claim = t.claim(chunks.clone());
        let r = m.apply(dev, offset, len);
        let through = match (&r, write_through) {
            (Ok(()), true) => m.apply(&*t.target, offset, len).map_err(|e| {
                t.report_failure(IoFailure::new(Side::Target, m.operation(), offset, len, &e))
            }),
            _ => Err(()),
        };
        if through.is_ok() {
            claim.written_through(t.geometry.fully_covered(offset, len));
        } else {
            // The target could not take it (or must not, yet): the job
            // copies these chunks like any other dirty ones, under its
            // error policy.
            t.mark_dirty(chunks.clone());
        }
        drop(claim);
        t.map.heat(chunks);
        r
    }
}

impl BlockDevice for LiveSource {
    fn len(&self) -> u64 {
        self.device().len()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.device().read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.mutate(Mutation::Write(buf, false), offset, buf.len() as u64)
    }

    /// FUA on the source, and on the target when written through.
    fn write_at_fua(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.mutate(Mutation::Write(buf, true), offset, buf.len() as u64)
    }

    fn write_zeroes(&self, offset: u64, len: u64, may_unmap: bool) -> io::Result<()> {
        self.mutate(Mutation::Zeroes { may_unmap }, offset, len)
    }

    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        self.mutate(Mutation::Discard, offset, len)
    }

    fn flush(&self) -> io::Result<()> {
        let _pass = self.gate.enter();
        let route = self.route();
        route.device.flush()?;
        match route.tracker {
            // Writes already acknowledged went to the target too.
            Some(t) if t.copy_mode() == CopyMode::WriteBlocking => t.target.flush(),
            _ => Ok(()),
        }
    }

    fn block_status(&self, offset: u64, max_len: u64) -> io::Result<(Allocation, u64)> {
        self.device().block_status(offset, max_len)
    }

    fn read_uncached(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.device().read_uncached(buf, offset)
    }

    fn reads_direct(&self) -> bool {
        self.device().reads_direct()
    }

    fn has_backing(&self) -> bool {
        self.device().has_backing()
    }

    fn top_allocation(&self, offset: u64, max_len: u64) -> io::Result<(bool, u64)> {
        self.device().top_allocation(offset, max_len)
    }

    fn cluster_size(&self) -> Option<u64> {
        self.device().cluster_size()
    }

    fn logical_block_size(&self) -> u32 {
        self.device().logical_block_size()
    }

    fn id(&self) -> DeviceId {
        self.device().id()
    }

    fn describe(&self) -> String {
        self.device().describe()
    }
}

/// Lets writes through unless closed; closing waits for those under way.
#[derive(Default)]
struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
    /// Told when the last writer leaves a closed gate.
    idle: tokio::sync::Notify,
}

#[derive(Default)]
struct GateState {
    closed: bool,
    writers: usize,
}

/// A writer inside the gate; leaves on drop.
struct Pass<'a>(&'a Gate);

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(
        &self,
        g: std::sync::MutexGuard<'a, GateState>,
    ) -> std::sync::MutexGuard<'a, GateState> {
        self.changed.wait(g).unwrap_or_else(|e| e.into_inner())
    }

    fn enter(&self) -> Pass<'_> {
        let mut g = self.lock();
        while g.closed {
            g = self.wait(g);
        }
        g.writers += 1;
        Pass(self)
    }

    fn close(&self) {
        self.lock().closed = true;
    }

    fn open(&self) {
        self.lock().closed = false;
        self.changed.notify_all();
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        let mut g = self.0.lock();
        g.writers -= 1;
        let idle = g.closed && g.writers == 0;
        drop(g);
        self.0.changed.notify_all();
        if idle {
            self.0.idle.notify_one();
        }
    }
}

/// The device contract (`device::conformance`) on the live source, the
/// device every NBD client and in-process writer goes through: alone, with
/// a job's tracker attached in each copy mode, and after a pivot.
#[cfg(test)]
mod conformance {
    use std::sync::Arc;

    use super::{LiveSource, Tracker};
    use crate::chunkmap::ChunkMap;
    use crate::device::MemoryDevice;
    use crate::device::conformance::{LEN, conforms};
    use crate::live::Geometry;
    use crate::options::CopyMode;

    const GRANULARITY: u64 = 64 << 10;

    struct Tracked {
        live: Arc<LiveSource>,
        tracker: Arc<Tracker>,
        source: Arc<MemoryDevice>,
        target: Arc<MemoryDevice>,
    }

    /// A live source over a zero-filled memory device, tracked onto a
    /// zero-filled target in `mode`.
    fn tracked(mode: CopyMode) -> Tracked {
        let source = Arc::new(MemoryDevice::new(LEN));
        let target = Arc::new(MemoryDevice::new(LEN));
        let live = LiveSource::new(source.clone());
        let geometry = Geometry { len: LEN, granularity: GRANULARITY };
        let map = Arc::new(ChunkMap::new(geometry.chunks(), GRANULARITY));
        let tracker = Arc::new(Tracker::new(geometry, target.clone(), map, mode));
        live.attach(tracker.clone()).unwrap();
        Tracked { live, tracker, source, target }
    }

    #[test]
    fn a_live_source_conforms() {
        conforms(&*LiveSource::new(Arc::new(MemoryDevice::new(LEN))));
    }

    /// Background mode: the contract holds, the target is not written, and
    /// every chunk the contract changed is dirty for the job to copy.
    #[test]
    fn a_tracked_live_source_conforms_and_marks_what_it_changed() {
        let t = tracked(CopyMode::Background);
        conforms(&*t.live);
        assert!(t.target.contents().iter().all(|b| *b == 0), "background mode wrote the target");
        let dirty = t.tracker.snapshot();
        for (chunk, bytes) in t.source.contents().chunks(GRANULARITY as usize).enumerate() {
            if bytes.iter().any(|b| *b != 0) {
                assert!(dirty.is_dirty(chunk as u64), "chunk {chunk} changed but is clean");
            }
        }
    }

    /// Write-blocking mode: the contract holds, and every chunk left clean
    /// was written through: the target holds the same bytes.
    #[test]
    fn a_write_blocking_live_source_conforms_and_writes_through() {
        let t = tracked(CopyMode::WriteBlocking);
        conforms(&*t.live);
        let dirty = t.tracker.snapshot();
        let (source, target) = (t.source.contents(), t.target.contents());
        let g = GRANULARITY as usize;
        for chunk in 0..(LEN as usize).div_ceil(g) {
            if !dirty.is_dirty(chunk as u64) {
                let range = chunk * g..((chunk + 1) * g).min(LEN as usize);
                assert!(source[range.clone()] == target[range], "clean chunk {chunk} differs");
            }
        }
    }

    /// After a pivot the live source is the target, under the same contract.
    #[test]
    fn a_pivoted_live_source_conforms_on_the_target() {
        let t = tracked(CopyMode::Background);
        t.live.pivot(t.target.clone(), None);
        conforms(&*t.live);
        assert!(t.source.contents().iter().all(|b| *b == 0), "a write reached the old source");
    }
}
