use super::*;
use crate::device::{BlockDevice, MemoryDevice};
use crate::options::{MirrorOptions, Tracking};

fn side(path: &str, len: u64) -> Side {
    Side { path: path.into(), len, key: format!("file:1:{}", path.len()) }
}

/// A job of `chunks` chunks, dirty over the `(start, end)` runs.
fn job(chunks: u64, dirty: &[(u64, u64)]) -> SavedJob {
    let mut map = DirtyBitmap::new(chunks);
    for (start, end) in dirty {
        map.set(*start..*end);
    }
    SavedJob {
        header: Header {
            identity: Identity {
                source: side("/a.img", chunks * 4096),
                target: side("/b.img", chunks * 4096),
            },
            options: MirrorOptions {
                speed: 1 << 20,
                tracking: Tracking::None,
                ..Default::default()
            },
            granularity: 4096,
            copy_len: chunks * 4096 - 100,
            state: JobState::Running,
            saved_at_ms: 1_700_000_000_000,
            source_mtime_ns: Some(1_699_999_990_000_000_000),
            samples: vec![Sample { chunk: 3, crc: 0xdead_beef }],
            since_complete: None,
        },
        dirty: map,
    }
}

fn same(a: &SavedJob, b: &SavedJob) {
    assert_eq!(a.header, b.header);
    assert_eq!(a.dirty.runs().collect::<Vec<_>>(), b.dirty.runs().collect::<Vec<_>>());
    assert_eq!(a.dirty.len(), b.dirty.len());
}

#[test]
fn a_saved_job_reads_back_in_either_encoding() {
    // A few long runs (runs encoding) and a scattered map (words encoding).
    let runs = job(1000, &[(0, 10), (500, 999)]);
    let scattered_ranges: Vec<_> = (0..1000).step_by(3).map(|c| (c, c + 1)).collect();
    let scattered = job(1000, &scattered_ranges);
    for j in [&runs, &scattered, &job(1000, &[]), &job(1, &[(0, 1)])] {
        let bytes = format::encode(j);
        same(j, &format::decode(&bytes).unwrap());
    }
    let (r, w) = (format::encode(&runs), format::encode(&scattered));
    let header = 16 + serde_json::to_vec(&runs.header).unwrap().len();
    assert_eq!(r[header], 1, "runs for a map of two runs");
    assert_eq!(w[header], 0, "words for a scattered map");
    assert!(w.len() < header + 17 + 1000 / 8 + 16, "about one bit per chunk");
}

#[test]
fn a_truncated_file_is_refused_at_every_length() {
    let bytes = format::encode(&job(300, &[(7, 90)]));
    for n in 0..bytes.len() {
        let e = format::decode(&bytes[..n]).unwrap_err();
        assert!(matches!(e, LoadError::Truncated | LoadError::Checksum), "{n}: {e}");
    }
}

#[test]
fn any_flipped_byte_is_refused() {
    let bytes = format::encode(&job(300, &[(7, 90), (100, 101)]));
    for at in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[at] ^= 0x10;
        let e = format::decode(&bad).expect_err("a flipped byte is never trusted");
        assert!(!e.to_string().is_empty());
    }
}

#[test]
fn other_files_and_versions_say_what_they_are() {
    let e = format::decode(b"{\"speed\": 12}").unwrap_err();
    assert!(matches!(e, LoadError::NotStateFile), "{e}");
    let mut bytes = format::encode(&job(10, &[(1, 2)]));
    bytes[8..12].copy_from_slice(&7u32.to_le_bytes());
    let e = format::decode(&bytes).unwrap_err();
    assert!(e.to_string().contains("another version"), "{e}");
    let mut long = format::encode(&job(10, &[(1, 2)]));
    long.push(0);
    assert!(format::decode(&long).is_err());
}

#[test]
fn a_map_that_does_not_fit_its_geometry_is_refused() {
    let mut j = job(10, &[(1, 2)]);
    j.header.copy_len = 100 * 4096;
    let bytes = format::encode(&j);
    let e = format::decode(&bytes).unwrap_err();
    assert!(e.to_string().contains("chunks"), "{e}");
}

#[test]
fn save_replaces_the_file_whole_and_leaves_no_temporary() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs").join(file_name("/a.img", "/b.img"));
    let first = job(64, &[(0, 64)]);
    save(&path, &first).unwrap();
    let second = job(64, &[(60, 64)]);
    save(&path, &second).unwrap();
    same(&second, &load(&path).unwrap());
    assert_eq!(load(&path).unwrap().remaining(), 4 * 4096 - 100);
    let names: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
    assert_eq!(names.len(), 1, "only the state file");
    remove(&path).unwrap();
    remove(&path).unwrap();
    assert!(matches!(load(&path), Err(LoadError::Io(_))));
}

#[test]
fn file_names_differ_by_pair_and_direction() {
    let ab = file_name("/a", "/b");
    assert_eq!(ab, file_name("/a", "/b"));
    assert_ne!(ab, file_name("/b", "/a"));
    assert_ne!(ab, file_name("/a", "/c"));
    assert!(ab.ends_with(".state") && ab.len() == 22, "{ab}");
}

#[test]
fn an_unchanged_source_is_one_not_modified_since_nor_just_before_the_save() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.img");
    std::fs::write(&src, b"data").unwrap();
    let mtime = file_mtime_ns(&src).unwrap();
    let mut h = job(1, &[]).header;
    h.source_mtime_ns = Some(mtime);
    h.saved_at_ms = mtime / 1_000_000 + 3_000;
    assert!(h.source_unchanged_since(&src));
    h.saved_at_ms = mtime / 1_000_000 + 500;
    assert!(!h.source_unchanged_since(&src), "modified just before the save");
    h.saved_at_ms = mtime / 1_000_000 + 3_000;
    h.source_mtime_ns = Some(mtime - 1);
    assert!(!h.source_unchanged_since(&src), "modified since");
    h.source_mtime_ns = None;
    assert!(!h.source_unchanged_since(&src), "a disk: never known");
    assert!(!h.source_unchanged_since(dir.path()), "a directory is no source file");
}

#[test]
fn samples_see_a_rewritten_target_but_only_clean_chunks_are_sampled() {
    let chunks = 64;
    let data: Vec<u8> = (0..chunks * 4096).map(|i| (i / 4096) as u8 ^ (i % 251) as u8).collect();
    let target = MemoryDevice::from_bytes(data);
    let mut dirty = DirtyBitmap::new(chunks);
    dirty.set(0..8);
    let samples = take_samples(&target, 4096, chunks * 4096, &dirty).unwrap();
    assert_eq!(samples.len(), 7, "chunk 0 is dirty: not sampled");
    assert!(samples.iter().all(|s| !dirty.is_dirty(s.chunk)));
    assert!(samples_match(&target, 4096, chunks * 4096, &samples).unwrap());
    target.write_at(&[0xff], samples[3].chunk * 4096 + 17).unwrap();
    assert!(!samples_match(&target, 4096, chunks * 4096, &samples).unwrap());
    let past = [Sample { chunk: chunks, crc: 0 }];
    assert!(!samples_match(&target, 4096, chunks * 4096, &past).unwrap());
}

#[test]
fn a_disk_is_known_by_its_serial_and_range_not_by_the_number_it_got() {
    let disk = |disk, start| DeviceId::Block { disk, start, len: 1 << 30, backing: None };
    let key = key_with_serial;
    assert_eq!(key(&disk(0x800, 0), Some("S4EV1")), key(&disk(0x820, 0), Some("S4EV1")));
    assert_ne!(key(&disk(0x800, 0), Some("S4EV1")), key(&disk(0x800, 0), Some("S4EV2")));
    assert_ne!(key(&disk(0x800, 0), Some("S4EV1")), key(&disk(0x800, 1 << 20), Some("S4EV1")));
    // Without a serial, the device number is all there is.
    assert_ne!(key(&disk(0x800, 0), None), key(&disk(0x820, 0), None));
    assert_ne!(key(&disk(0x800, 0), None), key(&disk(0x800, 0), Some("S4EV1")));
    // A loop device is its backing file, whatever its number.
    let loop_of =
        |disk, ino| DeviceId::Block { disk, start: 0, len: 1 << 30, backing: Some((7, ino)) };
    assert_eq!(key(&loop_of(0x700, 12), None), key(&loop_of(0x701, 12), None));
    assert_ne!(key(&loop_of(0x700, 12), None), key(&loop_of(0x700, 13), None));
    assert_ne!(
        key(&DeviceId::File { dev: 7, ino: 12 }, None),
        key(&DeviceId::File { dev: 7, ino: 13 }, None)
    );
}
