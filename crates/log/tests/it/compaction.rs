//! Compaction of `cleanup.policy=compact` topics: the latest record of every key is kept,
//! tombstones go after `delete.retention.ms`, offsets are preserved, readers keep working, and
//! compaction never costs acknowledged data, offsets or producer state across restarts.

use std::collections::BTreeMap;

use runnel_log::{CleanupPolicy, SimStorage, TopicConfig};
use runnel_records::{Compression, Record};

use crate::common::*;

fn compacted() -> TopicConfig {
    TopicConfig { cleanup_policy: CleanupPolicy::Compact, delete_retention_ms: 1_000, ..TopicConfig::default() }
}

fn tombstone(key: &str, ts: i64) -> Record {
    Record::new(Some(key.as_bytes().to_vec()), None::<Vec<u8>>).at(ts)
}

/// (offset, key, value) of every record.
fn contents(p: &runnel_log::Partition) -> Vec<(i64, Option<String>, Option<String>)> {
    let text = |b: Option<bytes::Bytes>| b.map(|b| String::from_utf8(b.to_vec()).unwrap());
    read_everything(p).into_iter().map(|r| (r.offset, text(r.key), text(r.value))).collect()
}

#[test]
fn keeps_the_latest_record_of_each_key_with_its_offset() {
    let storage = SimStorage::new();
    let log = open_sim(&storage);
    let p = topic(&log, "t", compacted());
    let codecs = [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];
    let mut latest: BTreeMap<String, (i64, String)> = BTreeMap::new();
    let mut keyless = Vec::new();
    let mut offset = 0;
    for round in 0..5 {
        let mut records = Vec::new();
        for i in 0..6 {
            let key = format!("k{}", (round * 7 + i * 3) % 5);
            let value = format!("r{round}i{i}");
            latest.insert(key.clone(), (offset, value.clone()));
            records.push(rec(&key, &value, 100 + offset));
            offset += 1;
        }
        records.push(Record::new(None::<Vec<u8>>, Some(format!("nokey{round}").into_bytes())).at(100 + offset));
        keyless.push(offset);
        offset += 1;
        p.append(&batch_with(&records, codecs[round as usize], None), 0).unwrap();
        p.roll_now().unwrap();
    }
    let hw = p.high_watermark();
    let before = p.read(0, 1 << 20).unwrap();
    log.run_maintenance(10_000);
    let after = contents(&p);
    let mut expected: Vec<(i64, Option<String>, Option<String>)> =
        latest.iter().map(|(k, (o, v))| (*o, Some(k.clone()), Some(v.clone()))).collect();
    for (round, o) in keyless.iter().enumerate() {
        expected.push((*o, None, Some(format!("nokey{round}"))));
    }
    expected.sort();
    assert_eq!(after, expected);
    assert_eq!(p.high_watermark(), hw);
    // Bytes read before compaction stay valid; reads from removed offsets land on the next record.
    assert_eq!(decode(&before.records).len(), 1);
    for o in 0..hw {
        let r = p.read(o, 1).unwrap();
        let first = decode(&r.records).into_iter().flat_map(|(_, rs)| rs).find(|r| r.offset >= o).unwrap();
        let want = expected.iter().find(|e| e.0 >= o).unwrap();
        assert_eq!(first.offset, want.0, "read from {o}");
    }
    assert_eq!(p.offset_for_timestamp(0).unwrap().map(|x| x.0), Some(expected[0].0));
    // The compacted log is what a restart sees, too.
    drop((p, log));
    storage.crash(None);
    let log = open_sim(&storage);
    let p = log.partition("t", 0).unwrap();
    assert_eq!(contents(&p), expected);
    assert_eq!(p.append(&batch(&numbered(1, 0)), 0).unwrap().base_offset, hw);
}

#[test]
fn tombstones_are_dropped_after_delete_retention_ms() {
    let storage = SimStorage::new();
    let log = open_sim(&storage);
    let p = topic(&log, "t", compacted());
    p.append(&batch(&[rec("a", "1", 100), rec("b", "1", 100)]), 0).unwrap();
    p.append(&batch(&[tombstone("a", 200)]), 0).unwrap();
    p.roll_now().unwrap();
    p.append(&batch(&[rec("c", "1", 300)]), 0).unwrap();
    log.run_maintenance(1_000);
    assert_eq!(
        contents(&p),
        vec![
            (1, Some("b".into()), Some("1".into())),
            (2, Some("a".into()), None),
            (3, Some("c".into()), Some("1".into()))
        ],
        "a young tombstone stays"
    );
    // Compaction runs again only when another segment closes.
    p.roll_now().unwrap();
    p.append(&batch(&[rec("d", "1", 5_000)]), 0).unwrap();
    log.run_maintenance(1_201);
    assert_eq!(
        contents(&p),
        vec![
            (1, Some("b".into()), Some("1".into())),
            (3, Some("c".into()), Some("1".into())),
            (4, Some("d".into()), Some("1".into()))
        ],
    );
}

#[test]
fn min_compaction_lag_protects_young_segments() {
    let storage = SimStorage::new();
    let log = open_sim(&storage);
    let mut tc = compacted();
    tc.min_compaction_lag_ms = 500;
    let p = topic(&log, "t", tc);
    p.append(&batch(&[rec("a", "1", 1_000), rec("a", "2", 1_000)]), 0).unwrap();
    p.roll_now().unwrap();
    p.append(&batch(&[rec("b", "1", 2_000)]), 0).unwrap();
    log.run_maintenance(1_499);
    assert_eq!(contents(&p).len(), 3);
    p.roll_now().unwrap();
    p.append(&batch(&[rec("c", "1", 3_000)]), 0).unwrap();
    log.run_maintenance(1_500);
    assert_eq!(contents(&p).iter().map(|c| c.0).collect::<Vec<_>>(), vec![1, 2, 3]);
}

#[test]
fn dropping_trailing_tombstones_never_moves_the_end_of_the_log_back() {
    for crash in [false, true] {
        let storage = SimStorage::new();
        let log = open_sim(&storage);
        let p = topic(&log, "t", compacted());
        p.append(&batch(&[rec("a", "1", 0), rec("b", "1", 0)]), 0).unwrap();
        p.roll_now().unwrap();
        p.append(&batch(&[tombstone("a", 0), tombstone("b", 0)]), 0).unwrap();
        p.roll_now().unwrap();
        p.sync_to(4).unwrap();
        log.run_maintenance(100_000);
        assert_eq!(contents(&p), vec![], "everything was deleted");
        assert_eq!(p.high_watermark(), 4);
        if crash {
            drop((p, log));
            storage.crash(None);
        } else {
            log.shutdown().unwrap();
            drop((p, log));
        }
        let log = open_sim(&storage);
        let p = log.partition("t", 0).unwrap();
        assert_eq!(p.high_watermark(), 4, "offsets 0..4 were acknowledged; crash: {crash}");
        assert_eq!(p.append(&batch(&numbered(1, 0)), 0).unwrap().base_offset, 4, "crash: {crash}");
    }
}

#[test]
fn unsynced_records_never_cause_synced_ones_to_be_compacted_away() {
    for seed in 0..10u64 {
        let storage = SimStorage::new();
        let log = open_sim(&storage);
        let p = topic(&log, "t", compacted());
        p.append(&batch(&[rec("k", "old", 0), rec("j", "old", 0)]), 0).unwrap();
        p.roll_now().unwrap();
        p.sync_to(2).unwrap();
        p.append(&batch(&[rec("k", "new", 0)]), 0).unwrap();
        p.roll_now().unwrap();
        p.append(&batch(&[rec("j", "new", 0)]), 0).unwrap();
        // Compaction may only rely on the newer values once they are durable.
        log.run_maintenance(100_000);
        drop((p, log));
        let mut rng = fastrand::Rng::with_seed(seed);
        storage.crash(Some(&mut rng));
        let log = open_sim(&storage);
        let p = log.partition("t", 0).unwrap();
        let keys: Vec<Option<String>> = contents(&p).into_iter().map(|c| c.1).collect();
        assert!(keys.contains(&Some("k".into())), "tearing seed {seed}: key k lost: {:?}", contents(&p));
        assert!(keys.contains(&Some("j".into())), "tearing seed {seed}: key j lost: {:?}", contents(&p));
    }
}

#[test]
fn idempotent_producers_continue_after_compaction_and_restart() {
    let storage = SimStorage::new();
    let log = open_sim(&storage);
    let p = topic(&log, "t", compacted());
    // Producer 5: batch seq 0..=2 (keys a b c), then seq 3..=5 (keys a x y), whose first
    // record is superseded below, and producer 6's only batch, wholly superseded.
    p.append(
        &batch_with(&[rec("a", "1", 0), rec("b", "1", 0), rec("c", "1", 0)], Compression::None, Some((5, 0, 0))),
        0,
    )
    .unwrap();
    let last = batch_with(&[rec("a", "2", 0), rec("x", "1", 0), rec("y", "1", 0)], Compression::None, Some((5, 0, 3)));
    p.append(&last, 0).unwrap();
    p.append(&batch_with(&[rec("z", "1", 0)], Compression::Gzip, Some((6, 0, 0))), 0).unwrap();
    p.roll_now().unwrap();
    p.append(&batch(&[rec("a", "3", 0), rec("x", "2", 0), rec("y", "2", 0), rec("z", "2", 0)]), 0).unwrap();
    p.roll_now().unwrap();
    log.run_maintenance(100_000);
    let keys: Vec<_> = contents(&p).into_iter().filter(|c| c.0 >= 7).collect();
    assert_eq!(keys.len(), 4, "the newest values are all there");
    assert!(contents(&p).iter().all(|c| c.1.as_deref() != Some("b") || c.0 == 1));
    log.shutdown().unwrap();
    drop((p, log));
    let log = open_sim(&storage);
    let p = log.partition("t", 0).unwrap();
    // The retried last batch is still recognised, and the next sequences follow on.
    let dup = p.append(&last, 0).unwrap();
    assert!(dup.duplicate);
    assert_eq!((dup.base_offset, dup.last_offset), (3, 5));
    let next = batch_with(&[rec("q", "1", 0)], Compression::None, Some((5, 0, 6)));
    assert_eq!(p.append(&next, 0).unwrap().base_offset, 11);
    let next = batch_with(&[rec("q", "1", 0)], Compression::None, Some((6, 0, 1)));
    assert_eq!(p.append(&next, 0).unwrap().base_offset, 12);
}

#[test]
fn readers_keep_working_while_segments_are_compacted() {
    // One writer appends single-record batches whose value is their offset, rolls and compacts;
    // readers read concurrently. Every read must succeed and hold only true records.
    const ROUNDS: i64 = 150;
    let storage = SimStorage::new();
    let log = open_sim(&storage);
    let p = topic(&log, "t", compacted());
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|r| {
            let (p, done) = (p.clone(), done.clone());
            std::thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(r);
                let mut reads = 0u64;
                while !done.load(std::sync::atomic::Ordering::Relaxed) || reads < 100 {
                    let hw = p.high_watermark();
                    let offset = rng.i64(0..=hw);
                    let read = p.read(offset, rng.usize(1..400)).unwrap_or_else(|e| panic!("read at {offset}: {e}"));
                    for (_, records) in decode(&read.records) {
                        for r in records {
                            assert_eq!(
                                r.value.as_deref(),
                                Some(r.offset.to_string().as_bytes()),
                                "record {}",
                                r.offset
                            );
                        }
                    }
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for i in 0..ROUNDS {
        let key = format!("k{}", i % 7);
        p.append(&batch(&[rec(&key, &i.to_string(), i)]), 0).unwrap();
        if i % 5 == 4 {
            p.roll_now().unwrap();
            log.run_maintenance(1_000_000);
        }
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() >= 100);
    }
    // Compaction did run: only the latest value of each of the 7 keys is left in closed segments.
    assert!(read_everything(&p).len() < 20);
}
