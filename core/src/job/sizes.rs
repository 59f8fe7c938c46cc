//! The job over devices of different sizes: it mirrors `[0, copy_len)`
//! with its usual semantics, and fails on a live write past that.

use std::sync::Arc;

use crate::device::{BlockDevice, MemoryDevice};
use crate::error::Error;
use crate::job::{self, Command, JobEvent, MirrorOptions, Outcome};
use crate::live::LiveSource;
use crate::partition::Relation;
use crate::partition::tests::gpt_disk;

const MIB: u64 = 1 << 20;

async fn completed(live: &Arc<LiveSource>, target: Arc<dyn BlockDevice>) -> job::JobHandle {
    let (job, mut rx) = job::start(live.clone(), target, MirrorOptions::default()).unwrap();
    while !matches!(rx.recv().await, Ok(JobEvent::Ready)) {}
    job.send(Command::Complete).await.unwrap();
    assert_eq!(job.wait().await, Outcome::Completed { proof: crate::job::Proof::Tracked });
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_larger_target_gets_the_source_on_its_first_bytes_and_the_rest_stays() {
    let source =
        Arc::new(MemoryDevice::from_bytes((0..3 * MIB).map(|i| (i % 251) as u8).collect()));
    let target = Arc::new(MemoryDevice::from_bytes(vec![0x5A; 5 * MIB as usize]));
    let live = LiveSource::new(source.clone());
    let job = completed(&live, target.clone()).await;
    assert_eq!(job.fit().relation(), Relation::Larger);
    let t = target.contents();
    assert!(t[..3 * MIB as usize] == source.contents()[..], "the copy differs");
    assert!(t[3 * MIB as usize..].iter().all(|b| *b == 0x5A), "the extra space was touched");
    // The pivot serves the target with the size clients negotiated.
    assert_eq!(live.len(), 3 * MIB);
    live.write_at(&[1; 512], 0).unwrap();
    assert_eq!(target.contents()[..512], [1; 512]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_smaller_target_takes_what_fits_and_a_write_past_it_fails_the_job() {
    let source = Arc::new(gpt_disk(16 * MIB, &[(2048, 4095), (4096, 12287)]));
    let live = LiveSource::new(source.clone());
    let target = Arc::new(MemoryDevice::new(8 * MIB));
    let job = completed(&live, target.clone()).await;
    let copy_len = job.fit().copy_len as usize;
    assert!(target.contents()[..copy_len] == source.contents()[..copy_len]);
    assert!(target.contents()[copy_len..].iter().all(|b| *b == 0));

    // Again, with a write past what the target takes during the mirror.
    let live = LiveSource::new(source.clone());
    let target = Arc::new(MemoryDevice::new(8 * MIB));
    let opts = MirrorOptions { speed: MIB, ..Default::default() };
    let (job, _rx) = job::start(live.clone(), target, opts).unwrap();
    live.write_at(&[9; 4096], 12 * MIB).unwrap();
    let Outcome::Failed { error } = job.wait().await else { panic!("the job did not fail") };
    assert_eq!(
        error,
        crate::error::JobFailure::WrittenPastTarget { offset: 12 * MIB, copy_len: copy_len as u64 }
    );
    assert!(error.to_string().contains("past the"), "{error}");
    let mut back = [0u8; 4096];
    source.read_at(&mut back, 12 * MIB).unwrap();
    assert_eq!(back, [9; 4096], "the source keeps its users' write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_target_is_not_written() {
    let source = Arc::new(gpt_disk(16 * MIB, &[(2048, 30000)]));
    let target = Arc::new(MemoryDevice::from_bytes(vec![3; 8 * MIB as usize]));
    let live = LiveSource::new(source);
    let e = job::start(live, target.clone(), MirrorOptions::default()).err().unwrap();
    assert!(matches!(e, Error::DoesNotFit { .. }), "{e}");
    assert!(target.contents().iter().all(|b| *b == 3));
}
