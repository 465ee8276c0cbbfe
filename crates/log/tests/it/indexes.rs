//! Persisted segment indexes: the offset index, time index and producer summary files written
//! beside a rolled segment once it is durable, loaded at open instead of reading the segment,
//! rebuilt when missing, stale or corrupt, kept in step with retention, truncation and
//! compaction, and safe against a crash at any step of their writing.

use std::path::{Path, PathBuf};

use runnel_log::{AppendError, CleanupPolicy, Log, Partition, SimStorage, Storage, TopicConfig};
use runnel_records::Compression;

use crate::common::*;

const SUFFIXES: [&str; 3] = ["index", "timeindex", "producers"];

fn small_segments() -> TopicConfig {
    TopicConfig { segment_bytes: 900, index_interval_bytes: 150, ..TopicConfig::default() }
}

fn index_file(base: i64, suffix: &str) -> PathBuf {
    segment_path("t", 0, base).with_extension(suffix)
}

fn has_index_files(storage: &SimStorage, base: i64) -> bool {
    SUFFIXES.iter().all(|s| storage.exists(&index_file(base, s)))
}

fn has_any_index_file(storage: &SimStorage, base: i64) -> bool {
    SUFFIXES.iter().any(|s| storage.exists(&index_file(base, s)))
}

fn bases(storage: &SimStorage) -> Vec<i64> {
    let dir = segment_path("t", 0, 0).parent().unwrap().to_path_buf();
    let mut b: Vec<i64> = storage
        .list(&dir)
        .unwrap()
        .iter()
        .filter_map(|n| n.strip_suffix(".log").and_then(|b| b.parse().ok()))
        .collect();
    b.sort_unstable();
    b
}

fn read_bytes(storage: &SimStorage, path: &Path) -> Vec<u8> {
    let f = storage.open(path, false).unwrap();
    let mut buf = vec![0; f.len().unwrap() as usize];
    f.read_at(&mut buf, 0).unwrap();
    buf
}

fn write_bytes(storage: &SimStorage, path: &Path, bytes: &[u8]) {
    let f = storage.open(path, true).unwrap();
    f.truncate(0).unwrap();
    f.write_at(bytes, 0).unwrap();
    f.sync().unwrap();
}

/// A partition of several segments with timestamps that go back and forth, synced, shut down
/// cleanly; returns the storage.
fn store_with_segments(storage: &SimStorage) -> usize {
    let log = open_sim(storage);
    let p = topic(&log, "t", small_segments());
    for i in 0..40i64 {
        // Timestamps jump around so the time index is not trivially the offset order.
        let ts = 1_000 + (i * 37) % 23 * 10;
        let n = 1 + (i % 4) as usize;
        let records: Vec<_> = (0..n).map(|j| rec(&format!("k{j}"), &format!("v{i}-{j}"), ts + j as i64)).collect();
        p.append(&batch(&records), 0).unwrap();
    }
    let segments = p.segment_count();
    assert!(segments >= 4, "{segments} segments");
    log.shutdown().unwrap();
    segments
}

/// Every lookup whose answer depends on the indexes: the first batch returned by a read at
/// every offset, and offset_for_timestamp for every timestamp around those used.
/// (base offset of the first batch a read at each offset returns, offset_for_timestamp of each
/// timestamp, max_timestamp).
type Lookups = (Vec<Option<i64>>, Vec<Option<(i64, i64)>>, Option<(i64, i64)>);

fn lookups(p: &Partition) -> Lookups {
    let reads = (p.log_start_offset()..p.high_watermark())
        .map(|o| decode(&p.read(o, 1).unwrap().records).first().map(|(h, _)| h.base_offset))
        .collect();
    let times = (900..1_300).map(|ts| p.offset_for_timestamp(ts).unwrap()).collect();
    (reads, times, p.max_timestamp())
}

#[test]
fn index_files_are_written_once_a_rolled_segment_is_durable() {
    let storage = SimStorage::new();
    let log = open_sim(&storage);
    let p = topic(&log, "t", small_segments());
    p.append(&batch(&numbered(3, 0)), 0).unwrap();
    p.roll_now().unwrap();
    p.append(&batch(&numbered(3, 10)), 0).unwrap();
    // Rolled, but its data is not durable yet: index files would describe data a crash may lose.
    assert!(!has_any_index_file(&storage, 0));
    p.sync_to(p.high_watermark()).unwrap();
    assert!(has_index_files(&storage, 0), "the sync that made segment 0 durable writes its index files");
    // Never for the active segment, nor left-over temporary files.
    assert!(!has_any_index_file(&storage, 3));
    let dir = segment_path("t", 0, 0).parent().unwrap().to_path_buf();
    assert!(storage.list(&dir).unwrap().iter().all(|n| !n.ends_with(".tmp")));
    // They survive a crash (written with fsyncs, their directory fsynced).
    drop((p, log));
    storage.crash(None);
    assert!(has_index_files(&storage, 0));
}

#[test]
fn reopening_loads_index_files_and_reads_no_old_segment() {
    for clean in [true, false] {
        let storage = SimStorage::new();
        let segments = store_with_segments(&storage);
        let before = {
            let log = open_sim(&storage);
            let before = lookups(&log.partition("t", 0).unwrap());
            log.shutdown().unwrap();
            before
        };
        if !clean {
            // An unclean stop: the recovery point (checkpointed at shutdown) still covers every
            // closed segment, so they are trusted as they were.
            drop(open_sim(&storage));
            storage.crash(None);
        }
        let bases = bases(&storage);
        let reads_before: Vec<u64> = bases.iter().map(|b| storage.reads_of(&segment_path("t", 0, *b))).collect();
        let log = open_sim(&storage);
        assert_eq!(log.recovered_cleanly(), clean);
        let p = log.partition("t", 0).unwrap();
        let stats = p.open_stats();
        assert_eq!(stats.segments_loaded, segments - 1, "clean {clean}: {stats:?}");
        assert_eq!(stats.segments_scanned, 1, "only the active segment is scanned: {stats:?}");
        assert_eq!(stats.indexes_written, 0, "{stats:?}");
        for (i, base) in bases.iter().enumerate().take(bases.len() - 1) {
            let reads = storage.reads_of(&segment_path("t", 0, *base)) - reads_before[i];
            assert_eq!(reads, 0, "clean {clean}: segment {base} was read at open");
        }
        let active = *bases.last().unwrap();
        assert!(storage.reads_of(&segment_path("t", 0, active)) > reads_before[bases.len() - 1]);
        assert_eq!(lookups(&p), before, "clean {clean}");
    }
}

#[test]
fn lookups_are_the_same_with_loaded_and_rebuilt_indexes() {
    let storage = SimStorage::new();
    store_with_segments(&storage);
    // No index files at all: every segment is scanned and its index files rebuilt.
    let all = bases(&storage);
    for base in &all {
        for s in SUFFIXES {
            if storage.exists(&index_file(*base, s)) {
                storage.remove_file(&index_file(*base, s)).unwrap();
            }
        }
    }
    let log = open_sim(&storage);
    let p = log.partition("t", 0).unwrap();
    assert_eq!(p.open_stats().segments_loaded, 0);
    assert_eq!(p.open_stats().indexes_written, all.len() - 1);
    let rebuilt = lookups(&p);
    log.shutdown().unwrap();
    drop((p, log));
    let log = open_sim(&storage);
    let p = log.partition("t", 0).unwrap();
    assert_eq!(p.open_stats().segments_loaded, all.len() - 1);
    assert_eq!(lookups(&p), rebuilt);
    // With a different index interval the loaded (old) indexes still answer the same.
    let mut config = log.topic("t").unwrap().config;
    config.index_interval_bytes = 0;
    log.alter_topic_config("t", config).unwrap();
    log.shutdown().unwrap();
    drop((p, log));
    let log = open_sim(&storage);
    let p = log.partition("t", 0).unwrap();
    assert_eq!(lookups(&p), rebuilt);
}

/// Ways an index file can be damaged.
#[derive(Debug, Clone, Copy)]
enum Damage {
    /// One byte flipped at this position (modulo the length).
    Flip(u64),
    /// Cut to this many bytes (modulo the length).
    Truncate(u64),
    Remove,
    /// Replaced by the same file of another segment.
    Swap,
}

#[test]
fn damaged_index_files_are_detected_and_rebuilt_never_trusted() {
    let reference = {
        let storage = SimStorage::new();
        store_with_segments(&storage);
        lookups(&open_sim(&storage).partition("t", 0).unwrap())
    };
    let damages = [
        Damage::Flip(0),
        Damage::Flip(9),
        Damage::Flip(20),
        Damage::Flip(61),
        Damage::Flip(70),
        Damage::Flip(u64::MAX),
    ]
    .into_iter()
    .chain([Damage::Truncate(0), Damage::Truncate(63), Damage::Truncate(u64::MAX)])
    .chain([Damage::Remove, Damage::Swap]);
    for damage in damages {
        for (which, suffix) in SUFFIXES.iter().enumerate() {
            let storage = SimStorage::new();
            let segments = store_with_segments(&storage);
            let all = bases(&storage);
            let victim = all[1];
            let path = index_file(victim, suffix);
            let bytes = read_bytes(&storage, &path);
            match damage {
                Damage::Flip(at) => storage.corrupt(&path, at % bytes.len() as u64),
                Damage::Truncate(len) => {
                    let len = (len % bytes.len() as u64) as usize;
                    write_bytes(&storage, &path, &bytes[..len]);
                }
                Damage::Remove => storage.remove_file(&path).unwrap(),
                Damage::Swap => write_bytes(&storage, &path, &read_bytes(&storage, &index_file(all[0], suffix))),
            }
            let reads_before = storage.reads_of(&segment_path("t", 0, victim));
            let log = open_sim(&storage);
            let p = log.partition("t", 0).unwrap();
            let what = format!("{damage:?} of the {suffix} file (#{which}) of segment {victim}");
            assert_eq!(p.offline_reason(), None, "{what}");
            let stats = p.open_stats();
            assert_eq!(stats.segments_loaded, segments - 2, "{what}: {stats:?}");
            assert_eq!(stats.indexes_written, 1, "{what}: {stats:?}");
            assert!(storage.reads_of(&segment_path("t", 0, victim)) > reads_before, "{what}: not rebuilt");
            assert_eq!(lookups(&p), reference, "{what}");
            drop((p, log));
            // Rewritten: the next open loads every closed segment.
            let log = open_sim(&storage);
            let p = log.partition("t", 0).unwrap();
            assert_eq!(p.open_stats().segments_loaded, segments - 1, "{what}");
            assert_eq!(lookups(&p), reference, "{what}");
        }
    }
}

#[test]
fn stale_index_files_of_a_compacted_segment_are_not_trusted() {
    let storage = SimStorage::new();
    let log = open_sim(&storage);
    let config = TopicConfig { cleanup_policy: CleanupPolicy::Compact, min_compaction_lag_ms: 0, ..small_segments() };
    let p = topic(&log, "t", config);
    for i in 0..30i64 {
        p.append(&batch(&[rec(&format!("k{}", i % 3), &format!("v{i}"), 1_000 + i)]), 0).unwrap();
    }
    p.sync_to(p.high_watermark()).unwrap();
    let first = bases(&storage)[0];
    assert!(has_index_files(&storage, first));
    let old: Vec<Vec<u8>> = SUFFIXES.iter().map(|s| read_bytes(&storage, &index_file(first, s))).collect();
    log.run_maintenance(2_000);
    // Compaction rewrote the segment, and its index files with it.
    assert!(has_index_files(&storage, first));
    let new: Vec<Vec<u8>> = SUFFIXES.iter().map(|s| read_bytes(&storage, &index_file(first, s))).collect();
    assert_ne!(old, new, "compaction rewrote segment {first}'s index files");
    let expected = values(&p);
    let reference = lookups(&p);
    log.shutdown().unwrap();
    drop((p, log));
    // Put back the files of the segment before compaction: they cover another length.
    for (s, bytes) in SUFFIXES.iter().zip(&old) {
        write_bytes(&storage, &index_file(first, s), bytes);
    }
    let log = open_sim(&storage);
    let p = log.partition("t", 0).unwrap();
    assert_eq!(p.open_stats().indexes_written, 1, "{:?}", p.open_stats());
    assert_eq!(values(&p), expected);
    assert_eq!(lookups(&p), reference);
}

#[test]
fn producer_state_survives_a_reopen_through_the_producer_summary() {
    let storage = SimStorage::new();
    let log = open_sim(&storage);
    let p = topic(&log, "t", small_segments());
    let mut seq = 0;
    let mut last = None;
    for i in 0..6 {
        let records = numbered(2, i * 10);
        let bytes = batch_with(&records, Compression::None, Some((7, 0, seq)));
        let info = p.append(&bytes, 0).unwrap();
        last = Some((bytes, info.base_offset, info.last_offset));
        seq += 2;
    }
    p.roll_now().unwrap();
    // The active segment holds only another producer's batch.
    p.append(&batch_with(&numbered(1, 0), Compression::None, Some((3, 0, 0))), 0).unwrap();
    log.shutdown().unwrap();
    drop((p, log));
    let log = open_sim(&storage);
    let p = log.partition("t", 0).unwrap();
    assert_eq!(p.open_stats().segments_scanned, 1, "producer 7's segments were loaded, not read");
    let (bytes, base, last_offset) = last.unwrap();
    let retry = p.append(&bytes, 0).unwrap();
    assert!(retry.duplicate, "a retry after the restart is recognised");
    assert_eq!((retry.base_offset, retry.last_offset), (base, last_offset));
    let gap = p.append(&batch_with(&numbered(1, 0), Compression::None, Some((7, 0, seq + 1))), 0);
    assert!(matches!(gap, Err(AppendError::OutOfOrderSequence { expected, .. }) if expected == seq), "{gap:?}");
    p.append(&batch_with(&numbered(1, 0), Compression::None, Some((7, 0, seq))), 0).unwrap();
    assert_eq!(p.producer_ids_max(), 7);
}

#[test]
fn retention_and_truncation_remove_the_index_files_of_their_segments() {
    let storage = SimStorage::new();
    let log = open_sim(&storage);
    let p = topic(&log, "t", small_segments());
    for i in 0..60 {
        p.append(&batch(&numbered(2, i)), 0).unwrap();
    }
    p.sync_to(p.high_watermark()).unwrap();
    let all = bases(&storage);
    assert!(all.len() >= 5, "{all:?}");
    for b in &all[..all.len() - 1] {
        assert!(has_index_files(&storage, *b), "segment {b}");
    }
    // DeleteRecords past the second segment deletes the first two, index files included.
    p.delete_records_before(all[2]).unwrap();
    for b in &all[..2] {
        assert!(!has_any_index_file(&storage, *b), "deleted segment {b} left index files");
    }
    // Truncating into a rolled segment makes it the active one: its index files go, and the
    // later segments with theirs.
    p.truncate_to(all[3] + 1).unwrap();
    assert_eq!(bases(&storage), all[2..4].to_vec());
    assert!(has_index_files(&storage, all[2]));
    assert!(!has_any_index_file(&storage, all[3]), "the cut segment is active again");
    for b in &all[4..] {
        assert!(!has_any_index_file(&storage, *b), "removed segment {b} left index files");
    }
    let expected = values(&p);
    // Appending to the cut segment and rolling it writes fresh index files once durable.
    p.append(&batch(&numbered(3, 100)), 0).unwrap();
    p.roll_now().unwrap();
    p.append(&batch(&numbered(1, 200)), 0).unwrap();
    p.sync_to(p.high_watermark()).unwrap();
    assert!(has_index_files(&storage, all[3]));
    let expected_after = values(&p);
    assert!(expected_after.starts_with(&expected));
    log.shutdown().unwrap();
    drop((p, log));
    let log = open_sim(&storage);
    let p = log.partition("t", 0).unwrap();
    assert_eq!(p.open_stats().segments_loaded, 2, "{:?}", p.open_stats());
    assert_eq!(values(&p), expected_after);
}

#[test]
fn a_crash_at_every_step_of_writing_index_files_leaves_a_usable_log() {
    let mut step = 0u64;
    loop {
        for tear in [false, true] {
            let storage = SimStorage::new();
            let log = open_sim(&storage);
            let p = topic(&log, "t", small_segments());
            for i in 0..12 {
                p.append(&batch(&numbered(3, i)), 0).unwrap();
            }
            p.sync_to(p.high_watermark()).unwrap();
            log.run_maintenance(0);
            let synced = values(&p);
            // Roll, append, then make it all durable (which writes the rolled segments' index
            // files) and checkpoint, with the disk frozen after `step` changes.
            p.roll_now().unwrap();
            p.append(&batch(&numbered(2, 50)), 0).unwrap();
            let appended = values(&p);
            storage.freeze_after(Some(step));
            let acked = p.sync_to(p.high_watermark()).is_ok();
            log.run_maintenance(0);
            let _ = log.shutdown();
            drop((p, log));
            if tear {
                storage.crash(Some(&mut fastrand::Rng::with_seed(step)));
            } else {
                storage.crash(None);
            }
            let log = open_sim(&storage);
            let p = log.partition("t", 0).unwrap();
            let what = format!("crash after {step} changes (torn: {tear})");
            assert_eq!(p.offline_reason(), None, "{what}");
            let after = values(&p);
            assert!(after.starts_with(&synced), "{what}: synced records lost");
            assert!(appended.starts_with(&after), "{what}: records that were never appended");
            if acked {
                assert_eq!(after, appended, "{what}: acknowledged records lost");
            }
            let reference = lookups(&p);
            log.shutdown().unwrap();
            drop((p, log));
            // Whatever the crash left, the next open describes the log the same way.
            let log = open_sim(&storage);
            let p = log.partition("t", 0).unwrap();
            assert_eq!(p.open_stats().segments_scanned, 1, "{what}: {:?}", p.open_stats());
            assert_eq!(values(&p), after, "{what}");
            assert_eq!(lookups(&p), reference, "{what}");
        }
        // Once the whole sequence runs without reaching the freeze, every step was covered.
        step += 1;
        assert!(step <= 200, "the sequence never finished within 200 changes");
        if finished_within(step) {
            break;
        }
    }
    // Data fsyncs, three index files (create, truncate, write, fsync each), three renames, a
    // directory fsync and the checkpoints: every one of them was a crash point above.
    assert!(step >= 16, "only {step} steps");
    eprintln!("crashed at each of {step} steps");
}

/// Whether the sequence of the test above completes within `changes` changes to the disk.
fn finished_within(changes: u64) -> bool {
    let storage = SimStorage::new();
    let log: std::sync::Arc<Log> = open_sim(&storage);
    let p = topic(&log, "t", small_segments());
    for i in 0..12 {
        p.append(&batch(&numbered(3, i)), 0).unwrap();
    }
    p.sync_to(p.high_watermark()).unwrap();
    log.run_maintenance(0);
    p.roll_now().unwrap();
    p.append(&batch(&numbered(2, 50)), 0).unwrap();
    storage.freeze_after(Some(changes));
    let _ = p.sync_to(p.high_watermark());
    log.run_maintenance(0);
    let _ = log.shutdown();
    !storage.frozen()
}
