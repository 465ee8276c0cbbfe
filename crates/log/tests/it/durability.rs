//! Durability under injected faults on `SimStorage`: unsynced writes lost at a crash, torn
//! writes, EIO on write and on fsync, a full disk, and corruption below the recovery point.

use std::sync::Arc;

use runnel_log::{AppendError, Log, LogConfig, Partition, ReadError, SimStorage, Storage, TopicConfig};
use runnel_records::Record;

use crate::common::*;

/// A record as (offset, key, value, timestamp), for byte-exact comparison.
type Fingerprint = (i64, Option<Vec<u8>>, Option<Vec<u8>>, i64);

fn fingerprint(records: &[Record]) -> Vec<Fingerprint> {
    records
        .iter()
        .map(|r| (r.offset, r.key.as_ref().map(|k| k.to_vec()), r.value.as_ref().map(|v| v.to_vec()), r.timestamp))
        .collect()
}

/// Drops the store (its partition handle included), crashes the disk without tearing writes,
/// and reopens it: the store and partition 0 of topic "t".
fn crash_and_reopen(storage: &SimStorage, store: (Arc<Partition>, Arc<Log>)) -> (Arc<Log>, Arc<Partition>) {
    drop(store);
    storage.crash(None);
    let log = open_sim(storage);
    let p = log.partition("t", 0).expect("topic t survives");
    (log, p)
}

fn small_segments() -> TopicConfig {
    TopicConfig { segment_bytes: 600, index_interval_bytes: 128, ..TopicConfig::default() }
}

fn file_len(storage: &SimStorage, path: &std::path::Path) -> u64 {
    storage.open(path, false).unwrap().len().unwrap()
}

#[test]
fn unsynced_writes_are_lost_at_a_crash_and_synced_ones_kept() {
    let storage = SimStorage::new();
    let log = open_sim(&storage);
    let p = topic(&log, "t", small_segments());
    for i in 0..10 {
        p.append(&batch(&numbered(3, i * 10)), 0).unwrap();
    }
    p.sync_to(30).unwrap();
    let synced = fingerprint(&read_everything(&p));
    for i in 0..5 {
        p.append(&batch(&numbered(3, 1000 + i)), 0).unwrap();
    }
    assert_eq!(p.high_watermark(), 45);
    drop((p, log));
    storage.crash(None);
    let log = open_sim(&storage);
    assert!(!log.recovered_cleanly());
    let p = log.partition("t", 0).unwrap();
    assert_eq!(p.high_watermark(), 30);
    assert_eq!(fingerprint(&read_everything(&p)), synced);
    assert_eq!(p.append(&batch(&numbered(1, 0)), 0).unwrap().base_offset, 30);
}

#[test]
fn torn_tails_are_truncated_and_acknowledged_data_survives() {
    for seed in 0..40u64 {
        let storage = SimStorage::new();
        let log = open_sim(&storage);
        let p = topic(&log, "t", small_segments());
        let mut appended = Vec::new();
        for i in 0..6 {
            p.append(&batch(&numbered(1 + i % 3, i as i64)), 0).unwrap();
        }
        let synced = p.high_watermark();
        p.sync_to(synced).unwrap();
        if seed % 2 == 0 {
            log.run_maintenance(0); // checkpoints the recovery point
        }
        for i in 0..6 {
            p.append(&batch(&numbered(2 + i % 4, 100 + i as i64)), 0).unwrap();
        }
        appended.extend(fingerprint(&read_everything(&p)));
        drop((p, log));
        let mut rng = fastrand::Rng::with_seed(seed);
        storage.crash(Some(&mut rng));
        let log = open_sim(&storage);
        let p = log.partition("t", 0).unwrap();
        assert_eq!(p.offline_reason(), None, "tearing seed {seed}");
        let after = fingerprint(&read_everything(&p));
        let hw = p.high_watermark();
        assert!(hw >= synced, "tearing seed {seed}: high watermark {hw} below the synced {synced}");
        // Every synced record is there; anything else there was appended, at its offset.
        assert_eq!(after[..synced as usize], appended[..synced as usize], "tearing seed {seed}");
        for r in &after {
            assert_eq!(Some(r), appended.get(r.0 as usize), "tearing seed {seed}: never appended");
        }
        // The partition keeps working, and what it holds now survives another crash.
        let a = p.append(&batch(&numbered(2, 7)), 0).unwrap();
        assert_eq!(a.base_offset, hw, "tearing seed {seed}");
        p.sync_to(a.last_offset + 1).unwrap();
        let expected = fingerprint(&read_everything(&p));
        drop((p, log));
        storage.crash(Some(&mut rng));
        let log = open_sim(&storage);
        let p = log.partition("t", 0).unwrap();
        assert_eq!(fingerprint(&read_everything(&p)), expected, "tearing seed {seed}");
    }
}

#[test]
fn eio_on_write_fails_the_append_and_later_appends_work() {
    let storage = SimStorage::new();
    let log = open_sim(&storage);
    let p = topic(&log, "t", small_segments());
    p.append(&batch(&numbered(2, 0)), 0).unwrap();
    storage.fail_writes(1);
    let err = p.append(&batch(&[rec("bad", "never", 5)]), 0).unwrap_err();
    assert!(matches!(err, AppendError::Io { .. }), "{err}");
    assert_eq!(p.high_watermark(), 2);
    for i in 0..8 {
        let a = p.append(&batch(&[rec("good", &i.to_string(), 6)]), 0).unwrap();
        assert_eq!(a.base_offset, 2 + i);
    }
    let vals = values(&p);
    assert_eq!(vals.len(), 10);
    assert!(vals.iter().all(|(_, v)| v != "never"));
    p.sync_to(10).unwrap();
    let (_log, p) = crash_and_reopen(&storage, (p, log));
    assert_eq!(values(&p), vals);
}

#[test]
fn eio_on_fsync_takes_the_partition_offline_until_reopen() {
    let storage = SimStorage::new();
    let log = open_sim(&storage);
    let p = topic(&log, "t", small_segments());
    let other = topic(&log, "other", TopicConfig::default());
    p.append(&batch(&numbered(4, 0)), 0).unwrap();
    p.sync_to(4).unwrap();
    let synced = fingerprint(&read_everything(&p));
    p.append(&batch(&numbered(4, 10)), 0).unwrap();
    storage.fail_syncs(1);
    assert!(p.sync_to(8).is_err());
    assert!(matches!(p.append(&batch(&numbered(1, 0)), 0), Err(AppendError::Offline(_))));
    assert!(matches!(p.sync_to(8), Err(AppendError::Offline(_))));
    assert!(matches!(p.read(0, 100), Err(ReadError::Offline(_))));
    assert!(p.offline_reason().is_some());
    // Other partitions are unaffected.
    other.append(&batch(&numbered(1, 0)), 0).unwrap();
    other.sync_to(1).unwrap();
    drop((p, other, log));
    storage.crash(None);
    let log = open_sim(&storage);
    let p = log.partition("t", 0).unwrap();
    assert_eq!(p.offline_reason(), None);
    assert_eq!(fingerprint(&read_everything(&p)), synced);
    assert_eq!(p.append(&batch(&numbered(1, 0)), 0).unwrap().base_offset, 4);
    p.sync_to(5).unwrap();
}

#[test]
fn a_full_disk_fails_appends_clearly_and_loses_nothing() {
    let storage = SimStorage::new();
    let log = open_sim(&storage);
    let p = topic(&log, "t", small_segments());
    for i in 0..5 {
        p.append(&batch(&numbered(2, i)), 0).unwrap();
    }
    let before = fingerprint(&read_everything(&p));
    // No room for a single byte more.
    storage.set_capacity(Some(0));
    for _ in 0..3 {
        let err = p.append(&batch(&numbered(2, 0)), 0).unwrap_err();
        assert!(matches!(err, AppendError::StorageFull { .. }), "{err}");
        assert!(err.to_string().contains("no space left"), "{err}");
    }
    assert_eq!(p.high_watermark(), 10);
    assert_eq!(fingerprint(&read_everything(&p)), before);
    assert!(p.sync_to(10).is_ok(), "fsync needs no space");
    storage.set_capacity(None);
    let a = p.append(&batch(&numbered(2, 0)), 0).unwrap();
    assert_eq!(a.base_offset, 10);
    p.sync_to(12).unwrap();
    let (_log, p) = crash_and_reopen(&storage, (p, log));
    assert_eq!(fingerprint(&read_everything(&p))[..10], before[..]);
    assert_eq!(p.high_watermark(), 12);
}

/// Three segments, synced and checkpointed, then an unclean stop.
fn checkpointed_store() -> (SimStorage, Vec<i64>) {
    let storage = SimStorage::new();
    let log = open_sim(&storage);
    let p = topic(&log, "t", TopicConfig::default());
    let mut bases = Vec::new();
    for i in 0..3 {
        bases.push(p.high_watermark());
        p.append(&batch(&numbered(3, i)), 0).unwrap();
        p.append(&batch(&numbered(3, i)), 0).unwrap();
        p.roll_now().unwrap();
    }
    p.append(&batch(&numbered(3, 9)), 0).unwrap();
    p.sync_to(p.high_watermark()).unwrap();
    log.run_maintenance(0);
    drop((p, log));
    storage.crash(None);
    (storage, bases)
}

#[test]
fn corruption_below_the_recovery_point_takes_the_partition_offline_without_truncating() {
    // Every segment holds two batches of this size; byte 30 of a batch is in its header
    // (covered by the CRC), byte size-1 is its last.
    //
    // A segment below the recovery point whose index files check out is not read at open (as in
    // Kafka); its data is checked when the index files are missing, stale or corrupt and it is
    // scanned to rebuild them. So they are removed here.
    let size = batch(&numbered(3, 0)).len() as u64;
    for (segment, byte) in [(0usize, 30u64), (1, 30), (1, size + 18), (2, size + 30), (2, 2 * size - 1)] {
        let (storage, bases) = checkpointed_store();
        let path = segment_path("t", 0, bases[segment]);
        let len = file_len(&storage, &path);
        for suffix in ["index", "timeindex", "producers"] {
            storage.remove_file(&path.with_extension(suffix)).unwrap();
        }
        storage.corrupt(&path, byte);
        let log = open_sim(&storage);
        let p = log.partition("t", 0).unwrap();
        let reason = p.offline_reason().unwrap_or_else(|| panic!("segment {segment} byte {byte}: still online"));
        assert!(reason.contains(&path.display().to_string()), "{reason}");
        let batch_start = if byte < size { 0 } else { size };
        assert!(reason.contains(&format!("byte {batch_start}")), "{reason}");
        match p.read(0, 100) {
            Err(ReadError::Offline(r)) => assert_eq!(r, reason),
            other => panic!("read of an offline partition: {other:?}"),
        }
        assert!(matches!(p.append(&batch(&numbered(1, 0)), 0), Err(AppendError::Offline(_))));
        // Nothing was truncated or removed.
        for base in &bases {
            let path = segment_path("t", 0, *base);
            assert!(storage.exists(&path), "{} was removed", path.display());
        }
        assert_eq!(file_len(&storage, &path), len);
        drop((p, log));
        // Still offline on the next attempt: the corruption is not silently forgotten.
        let log = open_sim(&storage);
        assert!(log.partition("t", 0).unwrap().offline_reason().is_some());
    }
}

#[test]
fn truncation_lowers_the_recovery_point() {
    // After truncate_to, new unsynced data at the truncated offsets may be torn by a crash;
    // recovery must then truncate it, not take the partition offline as if it were corrupt
    // data below the recovery point.
    for seed in 0..20u64 {
        let storage = SimStorage::new();
        let log = open_sim(&storage);
        let p = topic(&log, "t", TopicConfig::default());
        for i in 0..4 {
            p.append(&batch(&numbered(3, i)), 0).unwrap();
        }
        p.sync_to(12).unwrap();
        log.run_maintenance(0);
        p.truncate_to(3).unwrap();
        for i in 0..4 {
            p.append(&batch(&numbered(5, 100 + i)), 0).unwrap();
        }
        drop((p, log));
        let mut rng = fastrand::Rng::with_seed(seed);
        storage.crash(Some(&mut rng));
        let log = open_sim(&storage);
        let p = log.partition("t", 0).unwrap();
        assert_eq!(p.offline_reason(), None, "tearing seed {seed}");
        assert!(p.high_watermark() >= 3, "tearing seed {seed}");
        assert_eq!(read_everything(&p).len() as i64, p.high_watermark(), "tearing seed {seed}");
    }
}

#[test]
fn many_topics_crash_together() {
    // Several partitions with interleaved appends and syncs; each keeps exactly its synced
    // prefix when nothing tears.
    let storage = SimStorage::new();
    let log = open_sim(&storage);
    log.create_topic("a", 3, small_segments()).unwrap();
    let parts: Vec<_> = (0..3).map(|i| log.partition("a", i).unwrap()).collect();
    let mut synced = vec![Vec::new(); 3];
    for round in 0..6 {
        for (i, p) in parts.iter().enumerate() {
            p.append(&batch(&numbered(1 + i, round)), 0).unwrap();
            if (round + i as i64) % 2 == 0 {
                p.sync_to(p.high_watermark()).unwrap();
                synced[i] = fingerprint(&read_everything(p));
            }
        }
    }
    drop((parts, log));
    storage.crash(None);
    let log = open_sim(&storage);
    for (i, expected) in synced.iter().enumerate() {
        let p = log.partition("a", i as u32).unwrap();
        assert_eq!(&fingerprint(&read_everything(&p)), expected, "partition {i}");
    }
}

#[test]
fn topic_changes_are_durable_when_they_return() {
    let storage = SimStorage::new();
    let log = open_sim(&storage);
    log.create_topic("kept", 2, TopicConfig::default()).unwrap();
    log.create_topic("dropped", 1, TopicConfig::default()).unwrap();
    log.create_partitions("kept", 3).unwrap();
    let tc = TopicConfig { retention_ms: 42, ..TopicConfig::default() };
    log.alter_topic_config("kept", tc.clone()).unwrap();
    log.delete_topic("dropped").unwrap();
    drop(log);
    storage.crash(None);
    let log = open_sim(&storage);
    let kept = log.topic("kept").unwrap();
    assert_eq!((kept.partitions, kept.config.retention_ms), (3, 42));
    assert!(log.topic("dropped").is_none());
    for i in 0..3 {
        let p = log.partition("kept", i).unwrap();
        assert_eq!(p.append(&batch(&numbered(1, 0)), 0).unwrap().base_offset, 0);
    }
}

#[test]
fn group_commit_acknowledges_only_what_an_fsync_covered() {
    // Writers append and sync concurrently (sharing fsyncs, the leader waiting for appends in
    // progress); a crash right after must keep every record any of them was told is durable.
    let storage = SimStorage::new();
    let log = open_sim(&storage);
    let p = topic(&log, "t", small_segments());
    let acked: Vec<Vec<i64>> = std::thread::scope(|s| {
        let writers: Vec<_> = (0..8)
            .map(|w| {
                let p = p.clone();
                s.spawn(move || {
                    let mut acked = Vec::new();
                    for i in 0..40 {
                        let info = p.append(&batch(&[rec("k", &format!("w{w}-{i}"), i)]), 0).unwrap();
                        p.sync_to(info.last_offset + 1).unwrap();
                        assert!(p.durable_offset() > info.last_offset, "sync_to returned before its fsync");
                        acked.push(info.base_offset);
                    }
                    acked
                })
            })
            .collect();
        writers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let before: std::collections::BTreeMap<i64, String> = values(&p).into_iter().collect();
    let (_log, p) = crash_and_reopen(&storage, (p, log));
    let after: std::collections::BTreeMap<i64, String> = values(&p).into_iter().collect();
    for offset in acked.iter().flatten() {
        assert_eq!(after.get(offset), before.get(offset), "acknowledged offset {offset}");
    }
    assert_eq!(after.len(), 8 * 40);
}

#[test]
fn buffered_appends_share_one_write_and_are_seen_once_synced() {
    let storage = SimStorage::new();
    let log = open_sim(&storage);
    let p = topic(&log, "t", TopicConfig::default());
    p.append(&batch(&numbered(2, 0)), 0).unwrap();
    p.sync_to(2).unwrap();
    let (writes_before, _) = storage.counts();
    for i in 0..10 {
        let info = p.append_buffered(&batch(&numbered(3, i)), 0).unwrap();
        assert_eq!(info.base_offset, 2 + 3 * i);
    }
    // Not written yet: readers see only what was there.
    assert_eq!(storage.counts().0, writes_before);
    assert_eq!(p.high_watermark(), 2);
    assert_eq!(read_everything(&p).len(), 2);
    p.sync_to(32).unwrap();
    assert_eq!(storage.counts().0, writes_before + 1, "ten buffered batches, one write");
    assert_eq!(p.high_watermark(), 32);
    let synced = fingerprint(&read_everything(&p));
    assert_eq!(synced.iter().map(|f| f.0).collect::<Vec<_>>(), (0..32).collect::<Vec<_>>());
    // Buffered and never synced: lost at a crash, and never acknowledged.
    p.append_buffered(&batch(&numbered(1, 0)), 0).unwrap();
    let (_log, p) = crash_and_reopen(&storage, (p, log));
    assert_eq!(fingerprint(&read_everything(&p)), synced);
    // A write-through append writes what was buffered before it, in offset order.
    p.append_buffered(&batch(&numbered(1, 0)), 0).unwrap();
    p.append(&batch(&numbered(1, 0)), 0).unwrap();
    assert_eq!(p.high_watermark(), 34);
    assert_eq!(read_everything(&p).iter().map(|r| r.offset).collect::<Vec<_>>(), (0..34).collect::<Vec<_>>());
}

#[test]
fn buffered_batches_wait_out_a_full_disk_and_are_acknowledged_only_once_written() {
    let storage = SimStorage::new();
    let log = open_sim(&storage);
    let p = topic(&log, "t", TopicConfig::default());
    for i in 0..3 {
        p.append_buffered(&batch(&numbered(2, i)), 0).unwrap();
    }
    storage.set_capacity(Some(0));
    let err = p.sync_to(6).unwrap_err();
    assert!(matches!(err, AppendError::StorageFull { .. }), "{err}");
    assert_eq!(p.offline_reason(), None, "a full disk takes nothing offline");
    assert_eq!(p.durable_offset(), 0);
    assert_eq!(p.high_watermark(), 0);
    // While the buffered batches cannot be written, more are refused rather than buffered.
    let err = p.append_buffered(&batch(&numbered(2, 9)), 0).unwrap_err();
    assert!(matches!(err, AppendError::StorageFull { .. }), "{err}");
    let err = p.append(&batch(&numbered(2, 9)), 0).unwrap_err();
    assert!(matches!(err, AppendError::StorageFull { .. }), "{err}");
    // EIO is retried the same way: the batches stay buffered.
    storage.set_capacity(None);
    storage.fail_writes(1);
    let err = p.sync_to(6).unwrap_err();
    assert!(matches!(err, AppendError::Io { .. }), "{err}");
    assert_eq!(p.offline_reason(), None);
    // Space and health return: the same batches, at the same offsets, become durable.
    p.sync_to(6).unwrap();
    assert_eq!(p.durable_offset(), 6);
    let info = p.append_buffered(&batch(&numbered(2, 0)), 0).unwrap();
    assert_eq!(info.base_offset, 6);
    p.sync_to(8).unwrap();
    let synced = fingerprint(&read_everything(&p));
    assert_eq!(synced.len(), 8);
    let (_log, p) = crash_and_reopen(&storage, (p, log));
    assert_eq!(fingerprint(&read_everything(&p)), synced);
}

#[test]
fn a_failed_fsync_after_a_buffered_write_takes_the_partition_offline() {
    let storage = SimStorage::new();
    let log = open_sim(&storage);
    let p = topic(&log, "t", TopicConfig::default());
    p.append_buffered(&batch(&numbered(2, 0)), 0).unwrap();
    storage.fail_syncs(1);
    assert!(matches!(p.sync_to(2), Err(AppendError::Offline(_))));
    assert!(matches!(p.append_buffered(&batch(&numbered(1, 0)), 0), Err(AppendError::Offline(_))));
    assert!(matches!(p.sync_to(2), Err(AppendError::Offline(_))), "never acknowledged after a failed fsync");
}

#[test]
fn concurrent_buffered_appenders_get_every_batch_durable_in_order() {
    let storage = SimStorage::new();
    let log = open_sim(&storage);
    let p = topic(&log, "t", TopicConfig::default());
    let writers = 8;
    let per_writer = 40;
    std::thread::scope(|s| {
        for w in 0..writers {
            let p = &p;
            s.spawn(move || {
                let mut last = -1;
                for i in 0..per_writer {
                    let recs = vec![rec(&format!("w{w}"), &format!("{i}"), 0)];
                    let info = p.append_buffered(&batch(&recs), 0).unwrap();
                    assert!(info.base_offset > last);
                    last = info.base_offset;
                    if i % 4 == 3 {
                        p.sync_to(last + 1).unwrap();
                        assert!(p.durable_offset() > last);
                    }
                }
            });
        }
    });
    let (writes, syncs) = storage.counts();
    let total = writers * per_writer;
    // One segment: every write is a sync leader's (or an append over the buffer's limit).
    assert_eq!(p.high_watermark(), total as i64);
    let synced = fingerprint(&read_everything(&p));
    assert_eq!(synced.len(), total);
    for w in 0..writers {
        let values: Vec<_> =
            synced.iter().filter(|f| f.1.as_deref() == Some(format!("w{w}").as_bytes())).map(|f| f.2.clone()).collect();
        let wanted: Vec<_> = (0..per_writer).map(|i| Some(format!("{i}").into_bytes())).collect();
        assert_eq!(values, wanted, "writer {w}'s records in its order");
    }
    assert!(writes <= syncs, "{writes} writes for {syncs} fsyncs: at most one write per fsync");
    assert!(writes < total as u64, "{writes} writes for {total} batches");
    let (_log, p) = crash_and_reopen(&storage, (p, log));
    assert_eq!(fingerprint(&read_everything(&p)), synced);
}

#[test]
fn retention_runs_while_buffered_batches_wait_for_space_and_maintenance_writes_them() {
    let storage = SimStorage::new();
    let log = open_sim(&storage);
    let p = topic(&log, "t", TopicConfig { retention_bytes: 0, ..small_segments() });
    for i in 0..12 {
        p.append(&batch(&numbered(2, i)), 0).unwrap();
    }
    p.sync_to(24).unwrap();
    assert!(p.segment_count() >= 2);
    p.append_buffered(&batch(&numbered(2, 0)), 0).unwrap();
    storage.set_capacity(Some(0));
    log.run_maintenance(1);
    assert_eq!(p.segment_count(), 1, "retention deleted the closed segments though the write failed");
    assert_eq!(p.high_watermark(), 24, "the buffered batch is not written yet");
    assert_eq!(p.offline_reason(), None);
    storage.set_capacity(None);
    // Nobody syncs: maintenance writes it.
    log.run_maintenance(1);
    assert_eq!(p.high_watermark(), 26);
    assert_eq!(read_everything(&p).last().map(|r| r.offset), Some(25));
}

#[test]
fn what_is_written_is_synced_though_the_buffered_batches_after_it_cannot_be() {
    let storage = SimStorage::new();
    let log = open_sim(&storage);
    let p = topic(&log, "t", TopicConfig::default());
    p.append(&batch(&numbered(2, 0)), 0).unwrap();
    p.append_buffered(&batch(&numbered(2, 0)), 0).unwrap();
    storage.set_capacity(Some(0));
    p.sync_to(2).unwrap();
    assert_eq!(p.durable_offset(), 2);
    assert!(matches!(p.sync_to(4), Err(AppendError::StorageFull { .. })));
    storage.set_capacity(None);
    p.sync_to(4).unwrap();
    assert_eq!(p.durable_offset(), 4);
}

#[test]
fn a_short_write_on_a_full_disk_leaves_no_partial_batch_in_a_closed_segment() {
    let storage = SimStorage::new();
    let log = open_sim(&storage);
    let p = topic(&log, "t", TopicConfig::default());
    p.append(&batch(&numbered(4, 0)), 0).unwrap();
    p.sync_to(4).unwrap();
    let total = storage.used_bytes();
    let big = batch(&numbered(8, 0));
    // Room for half of the next batch: the write lands part of it, then fails.
    storage.set_capacity(Some(total + big.len() as u64 / 2));
    let err = p.append(&big, 0).unwrap_err();
    assert!(matches!(err, AppendError::StorageFull { .. }), "{err}");
    let len = storage.open(&segment_path("t", 0, 0), false).unwrap().len().unwrap();
    assert_eq!(len, p.size_bytes(), "the partial batch was cut off");
    storage.set_capacity(None);
    p.roll_now().unwrap();
    let info = p.append(&batch(&numbered(1, 0)), 0).unwrap();
    assert_eq!(info.base_offset, 4);
    p.sync_to(5).unwrap();
    // The recovery point passes the closed segment: it is no longer scanned as a tail.
    log.run_maintenance(1);
    let synced = fingerprint(&read_everything(&p));
    let (_log, p) = crash_and_reopen(&storage, (p, log));
    assert_eq!(p.offline_reason(), None);
    assert_eq!(fingerprint(&read_everything(&p)), synced);
}

#[test]
fn buffered_appends_past_the_buffer_limit_are_written_without_a_sync() {
    let storage = SimStorage::new();
    let log = open_sim(&storage);
    let p = topic(&log, "t", TopicConfig { segment_bytes: 64 << 20, ..TopicConfig::default() });
    let records: Vec<Record> = (0..64).map(|i| rec(&format!("k{i}"), &"v".repeat(1000), 0)).collect();
    let one = batch(&records);
    let fit = runnel_log::WRITE_BUFFER_BYTES_MAX / one.len();
    for _ in 0..fit {
        p.append_buffered(&one, 0).unwrap();
    }
    assert_eq!(p.high_watermark(), 0, "{fit} batches fit in the buffer");
    p.append_buffered(&one, 0).unwrap();
    assert_eq!(p.high_watermark(), 64 * (fit as i64 + 1), "the append past the limit wrote them all");
    p.sync_to(p.high_watermark()).unwrap();
    assert_eq!(read_everything(&p).len(), 64 * (fit + 1));
}

#[test]
fn the_store_wide_write_buffer_budget_makes_appends_write_at_once_when_spent() {
    let storage = SimStorage::new();
    let one = batch(&numbered(4, 0));
    let log = open_sim_with(&storage, LogConfig { write_buffers_bytes_max: 2 * one.len(), ..sim_config() });
    log.create_topic("t", 2, TopicConfig::default()).unwrap();
    let (a, b) = (log.partition("t", 0).unwrap(), log.partition("t", 1).unwrap());
    a.append_buffered(&one, 0).unwrap();
    a.append_buffered(&one, 0).unwrap();
    assert_eq!(a.high_watermark(), 0, "two batches fit in the budget");
    b.append_buffered(&one, 0).unwrap();
    assert_eq!(b.high_watermark(), 4, "the budget is spent: written at once");
    a.sync_to(8).unwrap();
    b.append_buffered(&one, 0).unwrap();
    assert_eq!(b.high_watermark(), 4, "the sync gave the budget back");
    // A partition dropped with buffered batches (a crash, a deleted topic) gives it back too.
    drop((a, b));
    log.delete_topic("t").unwrap();
    log.create_topic("u", 1, TopicConfig::default()).unwrap();
    let c = log.partition("u", 0).unwrap();
    c.append_buffered(&one, 0).unwrap();
    c.append_buffered(&one, 0).unwrap();
    assert_eq!(c.high_watermark(), 0);
}

#[test]
fn try_append_buffered_buffers_when_it_can_and_otherwise_leaves_everything_alone() {
    let storage = SimStorage::new();
    let log = open_sim(&storage);
    let p = topic(&log, "t", TopicConfig { segment_bytes: 1_000, ..TopicConfig::default() });
    let one = batch(&numbered(2, 0));
    let info = p.try_append_buffered(&one, 0).unwrap().expect("buffered at once");
    assert_eq!((info.base_offset, p.high_watermark()), (0, 0));
    // A roll would be due: nothing done, for `append_buffered` to do on a blocking thread.
    let big = batch(&[rec("k", &"v".repeat(1_200), 0)]);
    assert!(p.try_append_buffered(&big, 0).unwrap().is_none());
    assert_eq!(p.append_buffered(&big, 0).unwrap().base_offset, 2);
    // A write that failed is retried by `append_buffered`, not here.
    storage.set_capacity(Some(0));
    assert!(p.sync_to(3).is_err());
    storage.set_capacity(None);
    assert!(p.try_append_buffered(&one, 0).unwrap().is_none());
    assert_eq!(p.append_buffered(&one, 0).unwrap().base_offset, 3);
    p.sync_to(5).unwrap();
    assert_eq!(read_everything(&p).iter().map(|r| r.offset).collect::<Vec<_>>(), (0..5).collect::<Vec<_>>());
    // flush.messages due: an fsync would be, so nothing done.
    let q = topic(&log, "f", TopicConfig { flush_messages: 2, ..TopicConfig::default() });
    assert!(q.try_append_buffered(&one, 0).unwrap().is_none());
    assert_eq!(q.high_watermark(), 0);
}
