//! Basic behaviour of a partition and of topic administration: offsets, reads and their byte
//! budgets, timestamps, DeleteRecords, truncation, topics persisting across restarts, the
//! idempotent producer, LogAppendTime, max.message.bytes and group commit.

use std::sync::Arc;

use runnel_log::{AppendError, Log, LogConfig, LogError, ReadError, SimStorage, TimestampType, TopicConfig};
use runnel_records::{BatchHeader, Compression, Record};

use crate::common::*;

#[test]
fn offsets_are_assigned_from_zero_and_reads_return_whole_batches() {
    let storage = SimStorage::new();
    let log = open_sim(&storage);
    let p = topic(&log, "t", TopicConfig::default());
    assert_eq!(p.high_watermark(), 0);
    let a = p.append(&batch(&numbered(3, 1000)), 5000).unwrap();
    assert_eq!((a.base_offset, a.last_offset, a.duplicate, a.log_append_time), (0, 2, false, -1));
    let b = p.append(&batch(&numbered(4, 2000)), 5000).unwrap();
    assert_eq!((b.base_offset, b.last_offset), (3, 6));
    assert_eq!(p.high_watermark(), 7);

    // A read from the middle of the second batch returns that whole batch.
    let r = p.read(5, 1 << 20).unwrap();
    let batches = decode(&r.records);
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].0.base_offset, 3);
    let offsets: Vec<i64> = batches[0].1.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![3, 4, 5, 6]);
    assert_eq!(batches[0].1[2].value.as_deref(), Some(&b"v2"[..]));
    assert_eq!(batches[0].1[2].timestamp, 2002);
    assert_eq!(r.high_watermark, 7);
    assert_eq!(r.log_start_offset, 0);

    // From offset 1: both batches, in order.
    let r = p.read(1, 1 << 20).unwrap();
    let bases: Vec<i64> = decode(&r.records).iter().map(|(h, _)| h.base_offset).collect();
    assert_eq!(bases, vec![0, 3]);

    // At the high watermark: empty.
    assert!(p.read(7, 1 << 20).unwrap().records.is_empty());
}

#[test]
fn read_respects_the_byte_budget_but_returns_at_least_one_batch() {
    let storage = SimStorage::new();
    let log = open_sim(&storage);
    let p = topic(&log, "t", TopicConfig::default());
    let mut sizes = Vec::new();
    for i in 0..10 {
        let b = batch(&numbered(1 + i % 3, 100 * i as i64));
        sizes.push(b.len());
        p.append(&b, 0).unwrap();
    }
    // A budget of one byte still yields the whole first batch.
    let r = p.read(0, 1).unwrap();
    assert_eq!(r.records.len(), sizes[0]);
    assert_eq!(decode(&r.records).len(), 1);
    // A budget of exactly two batches yields two; one byte less yields one.
    let two = sizes[0] + sizes[1];
    assert_eq!(decode(&p.read(0, two).unwrap().records).len(), 2);
    assert_eq!(decode(&p.read(0, two - 1).unwrap().records).len(), 1);
    // Every budget is respected.
    for budget in [0, 10, 100, 200, 500, 1000, 5000] {
        let r = p.read(2, budget).unwrap();
        assert!(!r.records.is_empty());
        let n = decode(&r.records).len();
        assert!(r.records.len() <= budget || n == 1, "budget {budget}: {} bytes in {n} batches", r.records.len());
    }
}

#[test]
fn read_bytes_max_caps_every_read() {
    let storage = SimStorage::new();
    let mut config = sim_config();
    config.read_bytes_max = 300;
    let log = open_sim_with(&storage, config);
    let p = topic(&log, "t", TopicConfig::default());
    let big = batch(&[Record::new(Some(&b"k"[..]), Some(vec![1u8; 500])).at(0)]);
    p.append(&big, 0).unwrap();
    for _ in 0..10 {
        p.append(&batch(&numbered(2, 0)), 0).unwrap();
    }
    // One batch larger than the cap still comes whole; otherwise the cap wins over the request.
    assert_eq!(p.read(0, usize::MAX).unwrap().records.len(), big.len());
    let r = p.read(1, usize::MAX).unwrap();
    assert!(r.records.len() <= 300 && decode(&r.records).len() > 1, "{} bytes", r.records.len());
}

#[test]
fn out_of_range_offsets_are_rejected() {
    let storage = SimStorage::new();
    let log = open_sim(&storage);
    let p = topic(&log, "t", TopicConfig::default());
    p.append(&batch(&numbered(5, 0)), 0).unwrap();
    assert!(matches!(
        p.read(6, 100),
        Err(ReadError::OffsetOutOfRange { offset: 6, log_start_offset: 0, high_watermark: 5 })
    ));
    assert!(matches!(p.read(-1, 100), Err(ReadError::OffsetOutOfRange { .. })));
    p.roll_now().unwrap();
    p.append(&batch(&numbered(5, 0)), 0).unwrap();
    assert_eq!(p.delete_records_before(7).unwrap(), 7);
    assert!(matches!(
        p.read(6, 100),
        Err(ReadError::OffsetOutOfRange { offset: 6, log_start_offset: 7, high_watermark: 10 })
    ));
    let r = p.read(7, 1 << 20).unwrap();
    assert_eq!(r.log_start_offset, 7);
    assert_eq!(decode(&r.records)[0].0.base_offset, 5);
}

#[test]
fn offset_for_timestamp_finds_the_first_record_at_or_after_it() {
    let storage = SimStorage::new();
    let log = open_sim(&storage);
    let p = topic(&log, "t", TopicConfig::default());
    assert_eq!(p.offset_for_timestamp(0).unwrap(), None);
    assert_eq!(p.max_timestamp(), None);
    // Segment 1: offsets 0..3 (ts 100, 110, 120), 3..5 (ts 300, 200)
    p.append(&batch(&[rec("a", "0", 100), rec("a", "1", 110), rec("a", "2", 120)]), 0).unwrap();
    p.append(&batch(&[rec("a", "3", 300), rec("a", "4", 200)]), 0).unwrap();
    p.roll_now().unwrap();
    // Segment 2: offsets 5..8 (ts 400, 500, 500)
    p.append(&batch(&[rec("a", "5", 400), rec("a", "6", 500), rec("a", "7", 500)]), 0).unwrap();
    assert_eq!(p.offset_for_timestamp(0).unwrap(), Some((0, 100)));
    assert_eq!(p.offset_for_timestamp(100).unwrap(), Some((0, 100)));
    assert_eq!(p.offset_for_timestamp(105).unwrap(), Some((1, 110)), "inside a batch");
    assert_eq!(p.offset_for_timestamp(121).unwrap(), Some((3, 300)));
    assert_eq!(p.offset_for_timestamp(250).unwrap(), Some((3, 300)));
    assert_eq!(p.offset_for_timestamp(301).unwrap(), Some((5, 400)), "across segments");
    assert_eq!(p.offset_for_timestamp(450).unwrap(), Some((6, 500)));
    assert_eq!(p.offset_for_timestamp(501).unwrap(), None);
    assert_eq!(p.max_timestamp(), Some((6, 500)));
}

#[test]
fn offset_for_timestamp_skips_records_below_the_log_start() {
    let storage = SimStorage::new();
    let log = open_sim(&storage);
    let p = topic(&log, "t", TopicConfig::default());
    // One segment whose only late record is below the log start; the answer is in the next.
    p.append(&batch(&[rec("a", "0", 900), rec("a", "1", 10), rec("a", "2", 20)]), 0).unwrap();
    p.roll_now().unwrap();
    p.append(&batch(&[rec("a", "3", 30), rec("a", "4", 800)]), 0).unwrap();
    p.delete_records_before(1).unwrap();
    assert_eq!(p.offset_for_timestamp(500).unwrap(), Some((4, 800)));
    assert_eq!(p.offset_for_timestamp(15).unwrap(), Some((2, 20)));
}

#[test]
fn delete_records_before_moves_the_log_start_and_survives_reopen() {
    let storage = SimStorage::new();
    let log = open_sim(&storage);
    let p = topic(&log, "t", TopicConfig::default());
    for _ in 0..3 {
        p.append(&batch(&numbered(4, 0)), 0).unwrap();
        p.roll_now().unwrap();
    }
    p.append(&batch(&numbered(4, 0)), 0).unwrap();
    let segments = p.segment_count();
    assert_eq!(p.delete_records_before(2).unwrap(), 2);
    assert_eq!(p.segment_count(), segments, "the first segment still holds offsets 2 and 3");
    assert_eq!(p.delete_records_before(1).unwrap(), 2, "the log start never moves back");
    assert_eq!(p.delete_records_before(9).unwrap(), 9);
    assert_eq!(p.segment_count(), segments - 2);
    assert!(p.delete_records_before(17).is_err(), "beyond the high watermark");
    assert_eq!(values(&p).first().map(|v| v.0), Some(9));
    log.shutdown().unwrap();
    drop((p, log));
    let log = open_sim(&storage);
    let p = log.partition("t", 0).unwrap();
    assert_eq!(p.log_start_offset(), 9);
    assert_eq!(p.high_watermark(), 16);
    assert!(matches!(p.read(8, 100), Err(ReadError::OffsetOutOfRange { .. })));
    assert_eq!(values(&p).iter().map(|v| v.0).collect::<Vec<_>>(), (9..16).collect::<Vec<_>>());
}

#[test]
fn truncate_to_removes_the_tail_and_offsets_are_reused() {
    let storage = SimStorage::new();
    let log = open_sim(&storage);
    let p = topic(&log, "t", TopicConfig::default());
    for i in 0..3 {
        p.append(&batch(&numbered(3, 100 * i)), 0).unwrap();
        p.roll_now().unwrap();
    }
    p.append(&batch(&numbered(3, 900)), 0).unwrap();
    p.sync_to(p.high_watermark()).unwrap();
    p.truncate_to(4).unwrap();
    assert_eq!(p.high_watermark(), 3, "truncation keeps whole batches only");
    assert_eq!(values(&p).len(), 3);
    assert_eq!(p.max_timestamp(), Some((2, 2)));
    let a = p.append(&batch(&[rec("x", "new", 7)]), 0).unwrap();
    assert_eq!(a.base_offset, 3);
    assert_eq!(values(&p).last().unwrap(), &(3, "new".to_string()));
    p.truncate_to(100).unwrap();
    assert_eq!(p.high_watermark(), 4, "truncating beyond the end changes nothing");
    log.shutdown().unwrap();
    drop((p, log));
    let log = open_sim(&storage);
    let p = log.partition("t", 0).unwrap();
    assert_eq!(values(&p).last().unwrap(), &(3, "new".to_string()));
    assert_eq!(p.high_watermark(), 4);
}

#[test]
fn topics_are_created_altered_grown_and_deleted_and_persist_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig::new(dir.path());
    let log = Log::open(config.clone()).unwrap();
    let mut tc = TopicConfig::default();
    tc.set("retention.ms", "1234").unwrap();
    let info = log.create_topic("orders", 2, tc.clone()).unwrap();
    assert_eq!(info.partitions, 2);
    assert!(!info.internal);
    assert_eq!(info.id[6] >> 4, 4, "a v4 UUID");
    assert!(log.create_topic("__consumer_offsets", 3, TopicConfig::default()).unwrap().internal);
    assert!(matches!(log.create_topic("orders", 1, TopicConfig::default()), Err(LogError::TopicExists(_))));
    assert!(matches!(log.create_topic("bad/name", 1, TopicConfig::default()), Err(LogError::InvalidTopicName { .. })));
    assert!(matches!(log.create_topic("zero", 0, TopicConfig::default()), Err(LogError::InvalidPartitions(0))));
    log.create_topic("gone", 1, TopicConfig::default()).unwrap();
    log.partition("gone", 0).unwrap().append(&batch(&numbered(2, 0)), 0).unwrap();
    log.delete_topic("gone").unwrap();
    assert!(matches!(log.delete_topic("gone"), Err(LogError::UnknownTopic(_))));
    log.create_partitions("orders", 4).unwrap();
    assert!(matches!(log.create_partitions("orders", 3), Err(LogError::PartitionsCannotShrink { .. })));
    tc.set("cleanup.policy", "compact").unwrap();
    log.alter_topic_config("orders", tc.clone()).unwrap();
    log.partition("orders", 3).unwrap().append(&batch(&numbered(2, 0)), 0).unwrap();
    let names: Vec<String> = log.topics().into_iter().map(|t| t.name).collect();
    assert_eq!(names, vec!["__consumer_offsets", "orders"]);
    log.shutdown().unwrap();
    drop(log);

    let log = Log::open(config.clone()).unwrap();
    assert!(log.recovered_cleanly());
    let orders = log.topic("orders").unwrap();
    assert_eq!(orders.id, info.id);
    assert_eq!(orders.partitions, 4);
    assert_eq!(orders.config, tc);
    assert!(log.topic("gone").is_none());
    assert!(log.partition("orders", 4).is_none());
    let p3 = log.partition("orders", 3).unwrap();
    assert_eq!(values(&p3), vec![(0, "v0".to_string()), (1, "v1".to_string())]);
    // A deleted name can be reused and starts empty.
    log.create_topic("gone", 1, TopicConfig::default()).unwrap();
    assert_eq!(log.partition("gone", 0).unwrap().high_watermark(), 0);
    drop(log);
    let log = Log::open(config).unwrap();
    assert!(!log.recovered_cleanly(), "no shutdown this time");
    assert_eq!(log.topics().len(), 3);
}

fn idempotent_batch(pid: i64, epoch: i16, seq: i32, n: usize) -> bytes::Bytes {
    batch_with(&numbered(n, 0), Compression::None, Some((pid, epoch, seq)))
}

#[test]
fn idempotent_producer_duplicates_and_gaps_also_after_reopen() {
    let storage = SimStorage::new();
    let log = open_sim(&storage);
    let p = topic(&log, "t", TopicConfig::default());
    p.append(&batch(&numbered(2, 0)), 0).unwrap();
    let first = idempotent_batch(7, 0, 0, 3);
    let a = p.append(&first, 0).unwrap();
    assert_eq!((a.base_offset, a.last_offset, a.duplicate), (2, 4, false));
    let second = idempotent_batch(7, 0, 3, 2);
    assert_eq!(p.append(&second, 0).unwrap().base_offset, 5);
    let dup = p.append(&first, 0).unwrap();
    assert_eq!((dup.base_offset, dup.last_offset, dup.duplicate), (2, 4, true));
    assert_eq!(p.high_watermark(), 7, "a duplicate appends nothing");
    assert!(matches!(
        p.append(&idempotent_batch(7, 0, 9, 1), 0),
        Err(AppendError::OutOfOrderSequence { producer_id: 7, expected: 5, got: 9 })
    ));
    assert_eq!(p.producer_ids_max(), 7);
    p.sync_to(p.high_watermark()).unwrap();
    drop((p, log));
    storage.crash(None);

    let log = open_sim(&storage);
    let p = log.partition("t", 0).unwrap();
    assert_eq!(p.producer_ids_max(), 7);
    let dup = p.append(&second, 0).unwrap();
    assert_eq!((dup.base_offset, dup.last_offset, dup.duplicate), (5, 6, true));
    assert!(matches!(p.append(&idempotent_batch(7, 0, 6, 1), 0), Err(AppendError::OutOfOrderSequence { .. })));
    assert!(matches!(p.append(&idempotent_batch(7, -1, 5, 1), 0), Err(AppendError::ProducerFenced { .. })));
    assert_eq!(p.append(&idempotent_batch(7, 0, 5, 1), 0).unwrap().base_offset, 7);
    assert_eq!(p.high_watermark(), 8);
}

#[test]
fn truncated_idempotent_batches_are_not_duplicates() {
    let storage = SimStorage::new();
    let log = open_sim(&storage);
    let p = topic(&log, "t", TopicConfig::default());
    p.append(&idempotent_batch(3, 0, 0, 2), 0).unwrap();
    let retried = idempotent_batch(3, 0, 2, 2);
    p.append(&retried, 0).unwrap();
    p.truncate_to(2).unwrap();
    // The batch is gone, so a retry must be appended again, not answered with dead offsets.
    let a = p.append(&retried, 0).unwrap();
    assert!(!a.duplicate);
    assert_eq!((a.base_offset, a.last_offset), (2, 3));
    assert_eq!(p.high_watermark(), 4);
}

#[test]
fn log_append_time_topics_rewrite_timestamps() {
    let storage = SimStorage::new();
    let log = open_sim(&storage);
    let tc = TopicConfig { message_timestamp_type: TimestampType::LogAppendTime, ..TopicConfig::default() };
    let p = topic(&log, "t", tc);
    let a = p.append(&batch_with(&numbered(3, 5), Compression::Lz4, None), 777_000).unwrap();
    assert_eq!(a.log_append_time, 777_000);
    let r = p.read(0, 1 << 20).unwrap();
    let (h, records) = decode(&r.records).remove(0);
    assert!(h.is_log_append_time());
    BatchHeader::validate(&r.records).expect("the CRC was recomputed");
    assert!(records.iter().all(|r| r.timestamp == 777_000));
    assert_eq!(p.offset_for_timestamp(777_000).unwrap(), Some((0, 777_000)));
    assert_eq!(p.offset_for_timestamp(10).unwrap(), Some((0, 777_000)));
    assert_eq!(p.max_timestamp().map(|m| m.1), Some(777_000));
}

#[test]
fn max_message_bytes_is_enforced() {
    let storage = SimStorage::new();
    let log = open_sim(&storage);
    let tc = TopicConfig { max_message_bytes: 200, ..TopicConfig::default() };
    let p = topic(&log, "t", tc);
    let big = batch(&[Record::new(Some(&b"k"[..]), Some(vec![7u8; 300])).at(0)]);
    assert!(matches!(p.append(&big, 0), Err(AppendError::MessageTooLarge { max: 200, .. })));
    let small = batch(&numbered(1, 0));
    assert!(small.len() <= 200);
    p.append(&small, 0).unwrap();
    assert_eq!(p.high_watermark(), 1);
    // Garbage and an empty request are rejected too, and append nothing.
    assert!(matches!(p.append(&[], 0), Err(AppendError::InvalidBatch(_))));
    let mut bad = small.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(matches!(p.append(&bad, 0), Err(AppendError::InvalidBatch(_))));
    assert_eq!(p.high_watermark(), 1);
}

#[test]
fn group_commit_shares_fsyncs_between_concurrent_appenders() {
    const THREADS: usize = 6;
    const ROUNDS: usize = 25;
    let storage = SimStorage::new();
    let log = open_sim(&storage);
    let p = topic(&log, "t", TopicConfig::default());
    let (_, syncs_before) = storage.counts();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let p = Arc::clone(&p);
            std::thread::spawn(move || {
                for i in 0..ROUNDS {
                    let a = p.append(&batch(&[rec(&format!("t{t}"), &format!("{i}"), 0)]), 0).unwrap();
                    p.sync_to(a.last_offset + 1).unwrap();
                    assert!(p.durable_offset() > a.last_offset);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let (_, syncs_after) = storage.counts();
    let fsyncs = syncs_after - syncs_before;
    assert!(fsyncs >= 1);
    assert!(fsyncs <= (THREADS * ROUNDS) as u64, "{fsyncs} fsyncs for {} sync_to calls", THREADS * ROUNDS);
    assert_eq!(p.high_watermark(), (THREADS * ROUNDS) as i64);
    // Each thread's records are in its own order.
    let all = values(&p);
    for t in 0..THREADS {
        let mine: Vec<String> = read_everything(&p)
            .into_iter()
            .filter(|r| r.key.as_deref() == Some(format!("t{t}").as_bytes()))
            .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
            .collect();
        assert_eq!(mine, (0..ROUNDS).map(|i| i.to_string()).collect::<Vec<_>>());
    }
    assert_eq!(all.len(), THREADS * ROUNDS);
}

#[test]
fn sync_to_beyond_the_end_returns() {
    let storage = SimStorage::new();
    let log = open_sim(&storage);
    let p = topic(&log, "t", TopicConfig::default());
    p.append(&batch(&numbered(2, 0)), 0).unwrap();
    // Asking for more than exists must not spin forever: everything there is gets synced.
    p.sync_to(p.high_watermark() + 10).unwrap();
    assert_eq!(p.durable_offset(), 2);
}

#[test]
fn subscribers_see_the_high_watermark_move() {
    let storage = SimStorage::new();
    let log = open_sim(&storage);
    let p = topic(&log, "t", TopicConfig::default());
    let mut rx = p.subscribe();
    assert_eq!(*rx.borrow_and_update(), 0);
    p.append(&batch(&numbered(3, 0)), 0).unwrap();
    assert!(rx.has_changed().unwrap());
    assert_eq!(*rx.borrow_and_update(), 3);
}

#[test]
fn a_topic_with_the_longest_name_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(LogConfig::new(dir.path())).unwrap();
    let name = "t".repeat(runnel_log::TOPIC_NAME_BYTES_MAX);
    log.create_topic(&name, 1, TopicConfig::default()).unwrap();
    log.delete_topic(&name).unwrap();
    assert!(log.topic(&name).is_none());
    log.shutdown().unwrap();
    let reopened = Log::open(LogConfig::new(dir.path())).unwrap();
    assert!(reopened.topic(&name).is_none(), "the deletion is durable");
}
