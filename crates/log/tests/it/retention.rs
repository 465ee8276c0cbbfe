//! Retention by time and by size (whole closed segments only, never the active one), and the
//! other time-driven maintenance: `segment.ms` rolls, `flush.ms` and `flush.messages`.

use runnel_log::{CleanupPolicy, SimStorage, TopicConfig};

use crate::common::*;

/// Three closed segments with max timestamps 1_000, 2_000, 3_000 and an active one at 4_000.
fn four_segments(
    tc: TopicConfig,
) -> (SimStorage, std::sync::Arc<runnel_log::Log>, std::sync::Arc<runnel_log::Partition>) {
    let storage = SimStorage::new();
    let log = open_sim(&storage);
    let p = topic(&log, "t", tc);
    for s in 1..=4 {
        p.append(&batch(&numbered(3, s * 1_000 - 2)), 0).unwrap();
        p.append(&batch(&numbered(2, s * 1_000 - 500)), 0).unwrap();
        if s < 4 {
            p.roll_now().unwrap();
        }
    }
    assert_eq!(p.segment_count(), 4);
    (storage, log, p)
}

fn retention_ms(ms: i64) -> TopicConfig {
    TopicConfig { retention_ms: ms, ..TopicConfig::default() }
}

#[test]
fn time_retention_deletes_old_closed_segments_only() {
    let (storage, log, p) = four_segments(retention_ms(10_000));
    log.run_maintenance(10_999);
    assert_eq!((p.segment_count(), p.log_start_offset()), (4, 0), "nothing older than 10 s yet");
    log.run_maintenance(11_000);
    assert_eq!((p.segment_count(), p.log_start_offset()), (4, 0), "max timestamp 1_000 is exactly 10 s old");
    log.run_maintenance(11_001);
    assert_eq!((p.segment_count(), p.log_start_offset()), (3, 5));
    log.run_maintenance(12_500);
    assert_eq!((p.segment_count(), p.log_start_offset()), (2, 10));
    // Far in the future: every closed segment goes, the active one stays.
    log.run_maintenance(1_000_000);
    assert_eq!((p.segment_count(), p.log_start_offset()), (1, 15));
    assert_eq!(values(&p).iter().map(|v| v.0).collect::<Vec<_>>(), (15..20).collect::<Vec<_>>());
    assert_eq!(p.high_watermark(), 20);
    p.sync_to(20).unwrap();
    drop((p, log));
    storage.crash(None);
    let log = open_sim(&storage);
    let p = log.partition("t", 0).unwrap();
    assert_eq!(p.log_start_offset(), 15);
    assert_eq!(p.append(&batch(&numbered(1, 0)), 0).unwrap().base_offset, 20);
}

#[test]
fn retention_ms_minus_one_keeps_everything() {
    let (_storage, log, p) = four_segments(retention_ms(-1));
    log.run_maintenance(1_000_000);
    assert_eq!((p.segment_count(), p.log_start_offset()), (4, 0));
}

#[test]
fn size_retention_deletes_oldest_segments_while_over_the_limit() {
    let mut tc = TopicConfig { retention_ms: -1, ..TopicConfig::default() };
    let (_storage, log, p) = four_segments(tc.clone());
    let total = p.size_bytes();
    let segment = total / 4; // all four segments hold the same bytes
    assert_eq!(segment * 4, total);
    tc.retention_bytes = (total - segment) as i64;
    log.alter_topic_config("t", tc.clone()).unwrap();
    log.run_maintenance(0);
    assert_eq!((p.segment_count(), p.size_bytes()), (3, total - segment));
    tc.retention_bytes = (2 * segment - 1) as i64;
    log.alter_topic_config("t", tc.clone()).unwrap();
    log.run_maintenance(0);
    assert_eq!((p.segment_count(), p.size_bytes(), p.log_start_offset()), (2, total - 2 * segment, 10));
    tc.retention_bytes = 0;
    log.alter_topic_config("t", tc).unwrap();
    log.run_maintenance(0);
    assert_eq!((p.segment_count(), p.size_bytes()), (1, segment), "the active segment is never deleted");
    assert_eq!(read_everything(&p).len(), 5);
}

#[test]
fn compact_only_topics_are_not_deleted_by_time() {
    let mut tc = retention_ms(1);
    tc.cleanup_policy = CleanupPolicy::Compact;
    let (_storage, log, p) = four_segments(tc);
    log.run_maintenance(1_000_000);
    assert_eq!(p.log_start_offset(), 0);
    let all = read_everything(&p);
    assert_eq!(all.last().map(|r| r.offset), Some(19), "the latest records are kept");
}

#[test]
fn segment_ms_rolls_the_active_segment() {
    let storage = SimStorage::new();
    let log = open_sim(&storage);
    let tc = TopicConfig { segment_ms: 1_000, ..TopicConfig::default() };
    let p = topic(&log, "t", tc);
    log.run_maintenance(50_000);
    assert_eq!(p.segment_count(), 1, "an empty segment is not rolled");
    p.append(&batch(&numbered(1, 0)), 10_000).unwrap();
    log.run_maintenance(10_999);
    assert_eq!(p.segment_count(), 1);
    log.run_maintenance(11_000);
    assert_eq!(p.segment_count(), 2);
    // An append arriving late rolls by itself too.
    p.append(&batch(&numbered(1, 0)), 20_000).unwrap();
    p.append(&batch(&numbered(1, 0)), 21_000).unwrap();
    assert_eq!(p.segment_count(), 3);
    assert_eq!(read_everything(&p).len(), 3);
}

#[test]
fn flush_ms_and_flush_messages_sync_without_being_asked() {
    let storage = SimStorage::new();
    let log = open_sim(&storage);
    let tc = TopicConfig { flush_ms: 100, ..TopicConfig::default() };
    let p = topic(&log, "t", tc);
    p.append(&batch(&numbered(2, 0)), 1_000).unwrap();
    log.run_maintenance(1_099);
    assert_eq!(p.durable_offset(), 0);
    log.run_maintenance(1_100);
    assert_eq!(p.durable_offset(), 2);

    let tc = TopicConfig { flush_messages: 5, ..TopicConfig::default() };
    log.create_topic("m", 1, tc).unwrap();
    let m = log.partition("m", 0).unwrap();
    m.append(&batch(&numbered(4, 0)), 0).unwrap();
    assert_eq!(m.durable_offset(), 0);
    m.append(&batch(&numbered(1, 0)), 0).unwrap();
    assert_eq!(m.durable_offset(), 5);
    drop((p, m, log));
    storage.crash(None);
    let log = open_sim(&storage);
    assert_eq!(log.partition("t", 0).unwrap().high_watermark(), 2);
    assert_eq!(log.partition("m", 0).unwrap().high_watermark(), 5);
}
