//! Committed offsets in the internal compacted topic `__consumer_offsets`.
//!
//! Record format (the layout of Kafka's own offset commit key v1 and value v3, so that the
//! topic reads the same with Kafka tooling), all integers big-endian, strings as an i16
//! length followed by UTF-8 bytes:
//!
//! | part  | fields |
//! |-------|--------|
//! | key   | `i16 key_version = 1`, `string group`, `string topic`, `i32 partition` |
//! | value | `i16 value_version = 3`, `i64 offset`, `i32 leader_epoch` (-1: none), `string metadata`, `i64 commit_timestamp_ms` |
//!
//! One record per committed partition; the key is unique per (group, topic, partition), so
//! compaction keeps the latest commit. Deleting an offset (DeleteGroups, OffsetDelete) writes
//! a tombstone: the same key with a null value. Records are written uncompressed, in v2
//! batches without producer id, to partition 0 and fsynced before the commit is answered.
//! At open, every partition is replayed in offset order; records with other key versions
//! (e.g. Kafka's group metadata, key version 2) are skipped, and so are malformed ones.

use std::collections::HashMap;

use bytes::Bytes;
use runnel_log::{Log, LogError, ReadError, TopicConfig};
use runnel_records::{BatchBuilder, Batches, Compression, Record, decode_records};
use tokio::time::Instant;

use super::OFFSETS_TOPIC;
use super::state::{Groups, OffsetEntry};

/// Key version of an offset commit record.
const OFFSET_KEY_VERSION: i16 = 1;
/// Value version of an offset commit record.
const OFFSET_VALUE_VERSION: i16 = 3;
/// Bytes of records put in one batch when writing commits (well under max.message.bytes).
const WRITE_BATCH_BYTES_MAX: usize = 256 * 1024;
/// Bytes read from the log per read call when replaying.
const REPLAY_READ_BYTES: usize = 4 << 20;
/// Largest decompressed batch accepted when replaying.
const REPLAY_DECOMPRESSED_BYTES_MAX: usize = 16 << 20;
/// Segment size of `__consumer_offsets` (Kafka's `offsets.topic.segment.bytes`).
const OFFSETS_SEGMENT_BYTES: u64 = 100 << 20;
/// Partitions of `__consumer_offsets` when runnel creates it.
pub(crate) const OFFSETS_TOPIC_PARTITIONS: u32 = 1;

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Callers bound every string well below i16::MAX bytes.
    let len = i16::try_from(s.len()).unwrap_or(i16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..len as usize]);
}

pub(crate) fn offset_key(group: &str, topic: &str, partition: i32) -> Vec<u8> {
    let mut out = Vec::with_capacity(10 + group.len() + topic.len());
    out.extend_from_slice(&OFFSET_KEY_VERSION.to_be_bytes());
    put_str(&mut out, group);
    put_str(&mut out, topic);
    out.extend_from_slice(&partition.to_be_bytes());
    out
}

pub(crate) fn offset_value(entry: &OffsetEntry) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + entry.metadata.len());
    out.extend_from_slice(&OFFSET_VALUE_VERSION.to_be_bytes());
    out.extend_from_slice(&entry.offset.to_be_bytes());
    out.extend_from_slice(&entry.leader_epoch.to_be_bytes());
    put_str(&mut out, &entry.metadata);
    out.extend_from_slice(&entry.commit_timestamp.to_be_bytes());
    out
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn string(&mut self) -> Option<String> {
        let len = usize::try_from(self.i16()?).ok()?;
        Some(std::str::from_utf8(self.take(len)?).ok()?.to_string())
    }
}

/// A decoded record of `__consumer_offsets`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StoredRecord {
    /// A commit (`Some`) or a tombstone (`None`).
    Offset { group: String, topic: String, partition: i32, entry: Option<OffsetEntry> },
    /// Another kind of record (not written by runnel): skipped.
    Other,
}

pub(crate) fn parse_record(key: &[u8], value: Option<&[u8]>) -> Option<StoredRecord> {
    let mut k = Reader { buf: key, pos: 0 };
    let version = k.i16()?;
    if !(0..=OFFSET_KEY_VERSION).contains(&version) {
        return Some(StoredRecord::Other);
    }
    let group = k.string()?;
    let topic = k.string()?;
    let partition = k.i32()?;
    let entry = match value {
        None => None,
        Some(value) => {
            let mut v = Reader { buf: value, pos: 0 };
            if v.i16()? != OFFSET_VALUE_VERSION {
                return Some(StoredRecord::Other);
            }
            Some(OffsetEntry {
                offset: v.i64()?,
                leader_epoch: v.i32()?,
                metadata: v.string()?,
                commit_timestamp: v.i64()?,
            })
        }
    };
    Some(StoredRecord::Offset { group, topic, partition, entry })
}

/// Encodes records (key, value or tombstone) as one or more v2 batches, back to back.
pub(crate) fn build_batches(records: Vec<(Vec<u8>, Option<Vec<u8>>)>, timestamp: i64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut builder = BatchBuilder::new();
    let mut bytes = 0usize;
    let flush = |builder: &mut BatchBuilder, out: &mut Vec<u8>| {
        if !builder.is_empty() {
            // Uncompressed encoding cannot fail.
            if let Ok(batch) = builder.build(Compression::None) {
                out.extend_from_slice(&batch);
            }
            *builder = BatchBuilder::new();
        }
    };
    for (key, value) in records {
        let size = key.len() + value.as_ref().map_or(0, Vec::len) + 32;
        if bytes + size > WRITE_BATCH_BYTES_MAX {
            flush(&mut builder, &mut out);
            bytes = 0;
        }
        bytes += size;
        builder.push(Record::new(Some(Bytes::from(key)), value.map(Bytes::from)).at(timestamp));
    }
    flush(&mut builder, &mut out);
    out
}

/// Creates `__consumer_offsets` if missing: compacted, internal.
pub(crate) fn ensure_topic(log: &Log) -> Result<(), LogError> {
    if log.topic(OFFSETS_TOPIC).is_some() {
        return Ok(());
    }
    let mut config: TopicConfig = log.config().topic_defaults.clone();
    config.cleanup_policy = runnel_log::CleanupPolicy::Compact;
    config.segment_bytes = OFFSETS_SEGMENT_BYTES;
    match log.create_topic(OFFSETS_TOPIC, OFFSETS_TOPIC_PARTITIONS, config) {
        Ok(_) | Err(LogError::TopicExists(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

fn read_error(log: &Log, partition: u32, e: ReadError) -> LogError {
    let path = log.config().data_dir.join("topics").join(OFFSETS_TOPIC).join(partition.to_string());
    match e {
        ReadError::Corrupt { path, position, detail } => LogError::Corrupt { path, position, detail },
        ReadError::Io { path, source } => LogError::Io { path, source },
        other => LogError::Corrupt { path, position: 0, detail: other.to_string() },
    }
}

/// What replay found.
#[derive(Debug, Default)]
pub(crate) struct ReplayStats {
    pub records: u64,
    pub skipped: u64,
}

/// Rebuilds committed offsets from `__consumer_offsets`.
pub(crate) fn replay(
    log: &Log,
    groups: &mut Groups,
    groups_max: usize,
    offsets_max: usize,
    offsets_per_group_max: usize,
) -> Result<ReplayStats, LogError> {
    let mut stats = ReplayStats::default();
    let Some(topic) = log.topic(OFFSETS_TOPIC) else { return Ok(stats) };
    let now = Instant::now();
    // Latest value per key, in log order; applied at the end so that limits see final state.
    let mut latest: HashMap<(String, String, i32), Option<OffsetEntry>> = HashMap::new();
    for index in 0..topic.partitions {
        let Some(partition) = log.partition(OFFSETS_TOPIC, index) else { continue };
        let mut offset = partition.log_start_offset();
        let end = partition.high_watermark();
        while offset < end {
            let read = partition.read(offset, REPLAY_READ_BYTES).map_err(|e| read_error(log, index, e))?;
            if read.records.is_empty() {
                break;
            }
            let mut next = offset;
            for batch in Batches::new(&read.records) {
                let (header, bytes) = match batch {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(partition = index, offset = next, error = %e, "__consumer_offsets: invalid batch skipped");
                        stats.skipped += 1;
                        break;
                    }
                };
                next = next.max(header.next_offset());
                if header.is_control() {
                    continue;
                }
                let records = match decode_records(bytes, REPLAY_DECOMPRESSED_BYTES_MAX) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(partition = index, offset = header.base_offset, error = %e, "__consumer_offsets: undecodable batch skipped");
                        stats.skipped += 1;
                        continue;
                    }
                };
                for record in records {
                    if record.offset < offset {
                        continue;
                    }
                    stats.records += 1;
                    let Some(key) = record.key.as_deref() else {
                        stats.skipped += 1;
                        continue;
                    };
                    match parse_record(key, record.value.as_deref()) {
                        Some(StoredRecord::Offset { group, topic, partition, entry }) => {
                            if latest.len() >= offsets_max.saturating_mul(2)
                                && !latest.contains_key(&(group.clone(), topic.clone(), partition))
                            {
                                stats.skipped += 1;
                                continue;
                            }
                            latest.insert((group, topic, partition), entry);
                        }
                        Some(StoredRecord::Other) => stats.skipped += 1,
                        None => {
                            tracing::warn!(
                                partition = index,
                                offset = record.offset,
                                "__consumer_offsets: malformed record skipped"
                            );
                            stats.skipped += 1;
                        }
                    }
                }
            }
            if next <= offset {
                break;
            }
            offset = next;
        }
    }
    let mut entries: Vec<((String, String, i32), OffsetEntry)> =
        latest.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut dropped = 0u64;
    for ((group, topic, partition), entry) in entries {
        let known = groups.map.get(&group);
        let group_len = known.map_or(0, |g| g.offsets.len());
        if groups.offsets_total >= offsets_max
            || group_len >= offsets_per_group_max
            || (known.is_none() && groups.map.len() >= groups_max)
        {
            dropped += 1;
            continue;
        }
        groups.apply_offsets(&group, [((topic, partition), Some(entry))], now);
    }
    if dropped > 0 {
        tracing::warn!(dropped, "__consumer_offsets: committed offsets beyond the limits were not loaded");
        stats.skipped += dropped;
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_are_kafkas_layout() {
        let entry =
            OffsetEntry { offset: 42, leader_epoch: 3, metadata: "m".into(), commit_timestamp: 1_700_000_000_000 };
        let key = offset_key("g", "t", 5);
        assert_eq!(key, [&[0, 1, 0, 1, b'g', 0, 1, b't'][..], &5i32.to_be_bytes()].concat());
        let value = offset_value(&entry);
        assert_eq!(&value[..2], &3i16.to_be_bytes());
        let parsed = parse_record(&key, Some(&value)).unwrap();
        assert_eq!(
            parsed,
            StoredRecord::Offset { group: "g".into(), topic: "t".into(), partition: 5, entry: Some(entry) }
        );
        let tombstone = parse_record(&key, None).unwrap();
        assert_eq!(tombstone, StoredRecord::Offset { group: "g".into(), topic: "t".into(), partition: 5, entry: None });
        // Kafka's group metadata records (key version 2) are skipped.
        assert_eq!(parse_record(&[0, 2, 0, 1, b'g'], Some(b"x")), Some(StoredRecord::Other));
    }

    #[test]
    fn malformed_records_are_rejected_without_panicking() {
        let key = offset_key("group", "topic", 1);
        let value =
            offset_value(&OffsetEntry { offset: 1, leader_epoch: -1, metadata: "meta".into(), commit_timestamp: 0 });
        for n in 0..key.len() {
            assert_eq!(parse_record(&key[..n], None), None, "key cut at {n}");
        }
        for n in 0..value.len() {
            assert_eq!(parse_record(&key, Some(&value[..n])), None, "value cut at {n}");
        }
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..10_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 40) as usize;
            let bytes: Vec<u8> = (0..len).map(|i| (seed >> (i % 8 * 8)) as u8).collect();
            let _ = parse_record(&bytes, Some(&bytes));
        }
    }

    #[test]
    fn batches_are_split_and_decodable() {
        let records: Vec<(Vec<u8>, Option<Vec<u8>>)> =
            (0..2000).map(|i| (offset_key("g", "t", i), if i % 2 == 0 { Some(vec![0; 200]) } else { None })).collect();
        let out = build_batches(records, 7);
        let mut count = 0;
        let mut batches = 0;
        for b in Batches::new(&out) {
            let (header, bytes) = b.unwrap();
            assert!(header.size <= WRITE_BATCH_BYTES_MAX + 1024);
            batches += 1;
            count += decode_records(bytes, 1 << 20).unwrap().len();
        }
        assert_eq!(count, 2000);
        assert!(batches > 1);
    }
}
