//! The property that matters: whatever the size, options and write load,
//! after Complete the target holds exactly what the source would.
//!
//! A writer thread issues random writes, zero-writes and discards through
//! the live source before the job starts, while it copies, and after Ready,
//! and keeps going through Complete. The same operations applied in the
//! same order to a model device give the expected bytes: writes acknowledged
//! before the pivot must have been mirrored, later ones land on the target.
//!
//! Cases: 40 by default; set `LIVEMIRROR_PROPTEST_CASES` for more.

use std::sync::Arc;
use std::sync::mpsc;

use livemirror_core::device::{BlockDevice, MemoryDevice};
use livemirror_core::job::{self, Command, CopyMode, MirrorOptions, Outcome, Proof, SyncMode};
use livemirror_core::live::LiveSource;
use livemirror_testkit::job::*;
use livemirror_testkit::pattern;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Write {
    Data { offset: u64, len: u64, seed: u64 },
    Zeroes { offset: u64, len: u64, may_unmap: bool },
    Discard { offset: u64, len: u64 },
}

impl Write {
    fn apply(&self, dev: &dyn BlockDevice) {
        let r = match *self {
            Write::Data { offset, len, seed } => dev.write_at(&pattern(len as usize, seed), offset),
            Write::Zeroes { offset, len, may_unmap } => dev.write_zeroes(offset, len, may_unmap),
            Write::Discard { offset, len } => dev.discard(offset, len),
        };
        r.expect("in-range write");
    }
}

#[derive(Debug, Clone)]
struct Case {
    size: u64,
    granularity: u64,
    buf_size: u64,
    sync: SyncMode,
    copy_mode: CopyMode,
    /// Writes before the start, while copying, and after Ready.
    phases: [Vec<Write>; 3],
    /// Leave these chunks-worth of extents as holes in the source.
    holes: Vec<(u64, u64)>,
}

fn write_in(size: u64) -> BoxedStrategy<Write> {
    if size == 0 {
        return Just(Write::Discard { offset: 0, len: 0 }).boxed();
    }
    (0..size, 1..=200_000u64, any::<u64>(), 0..10u8)
        .prop_map(move |(offset, len, seed, kind)| {
            let len = len.min(size - offset);
            match kind {
                0 => Write::Zeroes { offset, len, may_unmap: seed % 2 == 0 },
                1 => Write::Discard { offset, len },
                _ => Write::Data { offset, len, seed },
            }
        })
        .boxed()
}

fn case() -> impl Strategy<Value = Case> {
    let granularity = (9u32..=18).prop_map(|s| 1u64 << s);
    (granularity, prop_oneof![Just(0u64), Just(1), Just(2), Just(3), Just(4)], 1u64..(3 << 20))
        .prop_flat_map(|(g, shape, random)| {
            let size = match shape {
                0 => 0,
                1 => g - 1,
                2 => 1025 << 10,
                3 => 3 * g + 1,
                _ => random,
            };
            let writes = || prop::collection::vec(write_in(size), 0..12);
            (
                Just(size),
                Just(g),
                (4096u64..(4 << 20)),
                prop_oneof![
                    Just(SyncMode::Full),
                    Just(SyncMode::Top),
                    Just(SyncMode::None),
                    Just(SyncMode::Differing)
                ],
                prop_oneof![Just(CopyMode::Background), Just(CopyMode::WriteBlocking)],
                [writes(), writes(), writes()],
                prop::collection::vec((0..size.max(1), 1u64..300_000), 0..4),
            )
        })
        .prop_map(|(size, granularity, buf_size, sync, copy_mode, phases, holes)| Case {
            size,
            granularity,
            buf_size,
            sync,
            copy_mode,
            phases,
            holes,
        })
}

/// Source and target before the job: the source has data with holes; the
/// target starts as whatever `sync` assumes it holds: for `none`, the
/// source's bytes; for `full` and `top`, old data (a source without a
/// backing layer is all "top layer": its holes must become zeroes).
fn devices(c: &Case) -> (MemoryDevice, MemoryDevice, MemoryDevice) {
    let n = c.size as usize;
    let make = || {
        let d = MemoryDevice::from_bytes(pattern(n, 5));
        for &(off, len) in &c.holes {
            d.discard(off.min(c.size), len.min(c.size - off.min(c.size))).unwrap();
        }
        d
    };
    let source = make();
    let target = match c.sync {
        // The target must already match what is not copied.
        SyncMode::None => make(),
        SyncMode::Top | SyncMode::Full | SyncMode::Differing => {
            MemoryDevice::from_bytes(pattern(n, 77))
        }
    };
    (source, target, make())
}

fn run_case(c: Case) {
    let (source, target, model) = devices(&c);
    let source = Arc::new(source);
    let target = Arc::new(target);
    let live = LiveSource::new(source.clone());
    for w in &c.phases[0] {
        w.apply(&*live);
        w.apply(&model);
    }
    // For sync none, writes before the start are the "old" content the
    // target is assumed to hold already.
    if c.sync == SyncMode::None {
        for w in &c.phases[0] {
            w.apply(&*target);
        }
    }
    let rt = livemirror_core::runtime::build("job-props", Some(2)).unwrap();
    let opts = MirrorOptions {
        sync: c.sync,
        granularity: Some(c.granularity),
        buf_size: c.buf_size,
        copy_mode: c.copy_mode,
        ..Default::default()
    };
    rt.block_on(async {
        let (job, mut rx) = job::start(live.clone(), target.clone(), opts).unwrap();
        let (ready_tx, ready_rx) = mpsc::channel::<()>();
        let (during, after) = (c.phases[1].clone(), c.phases[2].clone());
        let writer_live = live.clone();
        let writer = std::thread::spawn(move || {
            for w in &during {
                w.apply(&*writer_live);
                std::thread::yield_now();
            }
            ready_rx.recv().unwrap();
            for w in &after {
                w.apply(&*writer_live);
            }
            (during, after)
        });
        until(&mut rx, is_ready).await;
        ready_tx.send(()).unwrap();
        job.send(Command::Complete).await.unwrap();
        assert_eq!(job.wait().await, Outcome::Completed { proof: Proof::Tracked });
        let (during, after) = writer.join().unwrap();
        for w in during.iter().chain(&after) {
            w.apply(&model);
        }
    });
    assert_same(&target.contents(), &model.contents());
}

fn cases() -> u32 {
    std::env::var("LIVEMIRROR_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(40)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn target_equals_source_after_complete(c in case()) {
        run_case(c);
    }
}
