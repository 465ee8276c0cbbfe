//! The event log as the SQL engine sees it: topics of partitions to append records to and read
//! records from, with offsets by time. [`InProcessLog`] serves it from the embedded
//! `runnel-log` (no network hop); a Kafka-cluster implementation can attach the engine to any
//! Kafka-compatible cluster.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use runnel_log::{Log, LogError, ReadError};
use runnel_records::{BatchWriter, Batches, Compression, RecordHeader, RecordIter};

/// Most bytes of decompressed records one batch may inflate to when the engine reads it.
pub const READ_DECOMPRESSED_BYTES_MAX: usize = 64 << 20;
/// Most records appended in one batch.
pub const APPEND_BATCH_RECORDS_MAX: usize = 10_000;
/// Bytes of keys, values and headers appended in one batch at most (half of Kafka's default
/// `max.message.bytes`, so batches of records of any size fit); a single larger record is
/// appended alone, and refused by the log if it exceeds the topic's limit.
pub const APPEND_BATCH_BYTES_MAX: usize = 512 * 1024;

/// Why the event log could not do what was asked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct LogFailure(pub String);

/// A record read from a topic.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    pub partition: u32,
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<RecordHeader>,
}

/// A record to append.
#[derive(Debug, Clone, PartialEq)]
pub struct OutRecord {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<RecordHeader>,
    pub timestamp: i64,
}

/// Records read from one partition, and where to read next.
#[derive(Debug, Clone, Default)]
pub struct ReadBatch {
    pub records: Vec<LogRecord>,
    pub next_offset: i64,
    pub end_offset: i64,
}

pub trait EventLog: Send + Sync {
    /// Partitions of a topic, or `None` when it does not exist.
    fn partitions(&self, topic: &str) -> Option<u32>;
    /// Every topic with its partition count (internal ones included).
    fn topics(&self) -> Vec<(String, u32)>;
    /// Creates a topic; an existing topic is fine when it has `partitions`.
    fn create_topic(&self, topic: &str, partitions: u32, compacted: bool) -> Result<(), LogFailure>;
    fn delete_topic(&self, topic: &str) -> Result<(), LogFailure>;
    /// Creates an internal topic whose batches may reach `max_message_bytes` (state changelogs).
    /// The default ignores the limit.
    fn create_internal_topic(
        &self,
        topic: &str,
        partitions: u32,
        compacted: bool,
        max_message_bytes: u32,
    ) -> Result<(), LogFailure> {
        let _ = max_message_bytes;
        self.create_topic(topic, partitions, compacted)
    }
    /// Appends records to a partition and returns the first offset; with `durable` it returns
    /// once they are fsynced.
    fn append(&self, topic: &str, partition: u32, records: &[OutRecord], durable: bool) -> Result<i64, LogFailure>;
    /// Appends records as one batch, so that after a crash either all of them are in the
    /// log or none is, and returns once they are fsynced.
    fn append_atomic(&self, topic: &str, partition: u32, records: &[OutRecord]) -> Result<i64, LogFailure>;
    /// Reads records from `offset` (whole batches, at most about `max_bytes`).
    fn read(&self, topic: &str, partition: u32, offset: i64, max_bytes: usize) -> Result<ReadBatch, LogFailure>;
    /// (log start offset, end offset) of a partition.
    fn offsets(&self, topic: &str, partition: u32) -> Result<(i64, i64), LogFailure>;
    /// The first offset with a timestamp at or after `timestamp` (the end offset if none).
    fn offset_for_time(&self, topic: &str, partition: u32, timestamp: i64) -> Result<i64, LogFailure>;
    /// Blocks until the partition's end offset passes `offset`, or `timeout` passes; returns
    /// whether there is data.
    fn wait_for(&self, topic: &str, partition: u32, offset: i64, timeout: Duration) -> bool;

    /// Blocks until any of the partitions' end offsets passes its position, or `timeout`
    /// passes. The default waits on each in turn for a slice of the timeout.
    fn wait_any(&self, topic: &str, positions: &[(u32, i64)], timeout: Duration) -> bool {
        if positions.is_empty() {
            std::thread::sleep(timeout);
            return false;
        }
        let slice = (timeout / positions.len() as u32).max(Duration::from_millis(1));
        positions.iter().any(|(p, offset)| self.wait_for(topic, *p, *offset, slice))
    }
}

/// Splits records into runs that fit [`APPEND_BATCH_RECORDS_MAX`] and [`APPEND_BATCH_BYTES_MAX`].
fn batches_of(records: &[OutRecord]) -> impl Iterator<Item = &[OutRecord]> {
    let mut rest = records;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0;
        let mut n = 0;
        while n < rest.len() && n < APPEND_BATCH_RECORDS_MAX {
            let r = &rest[n];
            let size = r.key.as_ref().map_or(0, |k| k.len())
                + r.value.as_ref().map_or(0, |v| v.len())
                + r.headers.iter().map(|h| h.key.len() + h.value.as_ref().map_or(0, |v| v.len())).sum::<usize>()
                + 32;
            if n > 0 && bytes + size > APPEND_BATCH_BYTES_MAX {
                break;
            }
            bytes += size;
            n += 1;
        }
        let (run, tail) = rest.split_at(n);
        rest = tail;
        Some(run)
    })
}

/// One uncompressed batch of `records` (at least one), encoded from their bytes in place.
fn encode_batch(records: &[OutRecord]) -> Result<bytes::Bytes, LogFailure> {
    if records.is_empty() {
        return Err(LogFailure("a record batch needs at least one record".into()));
    }
    let bytes: usize = records
        .iter()
        .map(|r| 24 + r.key.as_ref().map_or(0, |k| k.len()) + r.value.as_ref().map_or(0, |v| v.len()))
        .sum();
    let mut writer = BatchWriter::with_capacity(bytes);
    for r in records {
        writer.push(r.timestamp, r.key.as_deref(), r.value.as_deref(), &r.headers);
    }
    writer.finish(Compression::None).map_err(|e| LogFailure(e.to_string()))
}

/// [`EventLog`] over the embedded log.
pub struct InProcessLog {
    log: Arc<Log>,
}

impl InProcessLog {
    pub fn new(log: Arc<Log>) -> InProcessLog {
        InProcessLog { log }
    }

    fn partition(&self, topic: &str, partition: u32) -> Result<Arc<runnel_log::Partition>, LogFailure> {
        self.log
            .partition(topic, partition)
            .ok_or_else(|| LogFailure(format!("topic {topic} has no partition {partition}")))
    }
}

fn log_failure(e: LogError) -> LogFailure {
    LogFailure(e.to_string())
}

fn read_failure(e: ReadError) -> LogFailure {
    LogFailure(e.to_string())
}

impl EventLog for InProcessLog {
    fn partitions(&self, topic: &str) -> Option<u32> {
        self.log.topic(topic).map(|t| t.partitions)
    }

    fn topics(&self) -> Vec<(String, u32)> {
        self.log.topics().into_iter().map(|t| (t.name, t.partitions)).collect()
    }

    fn create_topic(&self, topic: &str, partitions: u32, compacted: bool) -> Result<(), LogFailure> {
        if let Some(existing) = self.log.topic(topic) {
            if existing.partitions != partitions {
                return Err(LogFailure(format!(
                    "topic {topic} exists with {} partitions, not {partitions}",
                    existing.partitions
                )));
            }
            return Ok(());
        }
        let mut config = self.log.config().topic_defaults.clone();
        if compacted {
            config.set("cleanup.policy", "compact").map_err(|e| LogFailure(e.to_string()))?;
        }
        match self.log.create_topic(topic, partitions, config) {
            Ok(_) => Ok(()),
            // Created concurrently by someone else: fine if it matches.
            Err(_) if self.log.topic(topic).is_some_and(|t| t.partitions == partitions) => Ok(()),
            Err(e) => Err(log_failure(e)),
        }
    }

    fn delete_topic(&self, topic: &str) -> Result<(), LogFailure> {
        self.log.delete_topic(topic).map_err(log_failure)
    }

    fn create_internal_topic(
        &self,
        topic: &str,
        partitions: u32,
        compacted: bool,
        max_message_bytes: u32,
    ) -> Result<(), LogFailure> {
        if self.log.topic(topic).is_some() {
            return self.create_topic(topic, partitions, compacted);
        }
        let mut config = self.log.config().topic_defaults.clone();
        let set = |config: &mut runnel_log::TopicConfig, k: &str, v: &str| {
            config.set(k, v).map_err(|e| LogFailure(e.to_string()))
        };
        if compacted {
            set(&mut config, "cleanup.policy", "compact")?;
        }
        set(&mut config, "max.message.bytes", &max_message_bytes.to_string())?;
        match self.log.create_topic(topic, partitions, config) {
            Ok(_) => Ok(()),
            Err(_) if self.log.topic(topic).is_some_and(|t| t.partitions == partitions) => Ok(()),
            Err(e) => Err(log_failure(e)),
        }
    }

    fn append_atomic(&self, topic: &str, partition: u32, records: &[OutRecord]) -> Result<i64, LogFailure> {
        let p = self.partition(topic, partition)?;
        let batch = encode_batch(records)?;
        let info = p.append(&batch, runnel_log::now_ms()).map_err(|e| LogFailure(e.to_string()))?;
        p.sync_to(info.last_offset + 1).map_err(|e| LogFailure(e.to_string()))?;
        Ok(info.base_offset)
    }

    fn append(&self, topic: &str, partition: u32, records: &[OutRecord], durable: bool) -> Result<i64, LogFailure> {
        let p = self.partition(topic, partition)?;
        let mut first = None;
        let mut end = None;
        for chunk in batches_of(records) {
            let batch = encode_batch(chunk)?;
            let now = runnel_log::now_ms();
            let info = if durable { p.append_buffered(&batch, now) } else { p.append(&batch, now) }
                .map_err(|e| LogFailure(e.to_string()))?;
            first.get_or_insert(info.base_offset);
            end = Some(info.last_offset + 1);
        }
        // One fsync covers every batch appended before it, so the batches are synced together
        // once the last is appended (the call still returns only when all of them are durable),
        // and written together: buffered until the sync writes them in one write.
        if durable && let Some(end) = end {
            p.sync_to(end).map_err(|e| LogFailure(e.to_string()))?;
        }
        Ok(first.unwrap_or_else(|| p.high_watermark()))
    }

    fn read(&self, topic: &str, partition: u32, offset: i64, max_bytes: usize) -> Result<ReadBatch, LogFailure> {
        let p = self.partition(topic, partition)?;
        let start = p.log_start_offset();
        // Records deleted by retention are skipped, as a consumer with auto.offset.reset does.
        let offset = offset.max(start);
        let read = p.read(offset, max_bytes).map_err(read_failure)?;
        let mut out = ReadBatch { records: Vec::new(), next_offset: offset, end_offset: read.high_watermark };
        for batch in Batches::new(&read.records) {
            let (header, bytes) = batch.map_err(|e| LogFailure(format!("{topic}/{partition}: {e}")))?;
            out.next_offset = out.next_offset.max(header.last_offset() + 1);
            if header.is_control() {
                continue;
            }
            // Keys and values are slices of the bytes read, not copies.
            let batch = read.records.slice_ref(bytes);
            for record in
                RecordIter::from_bytes(&batch, READ_DECOMPRESSED_BYTES_MAX).map_err(|e| LogFailure(e.to_string()))?
            {
                let r = record.map_err(|e| LogFailure(e.to_string()))?;
                if r.offset < offset {
                    continue;
                }
                out.records.push(LogRecord {
                    partition,
                    offset: r.offset,
                    timestamp: r.timestamp,
                    key: r.key,
                    value: r.value,
                    headers: r.headers,
                });
            }
        }
        Ok(out)
    }

    fn offsets(&self, topic: &str, partition: u32) -> Result<(i64, i64), LogFailure> {
        let p = self.partition(topic, partition)?;
        Ok((p.log_start_offset(), p.high_watermark()))
    }

    fn offset_for_time(&self, topic: &str, partition: u32, timestamp: i64) -> Result<i64, LogFailure> {
        let p = self.partition(topic, partition)?;
        Ok(match p.offset_for_timestamp(timestamp).map_err(read_failure)? {
            Some((offset, _)) => offset,
            None => p.high_watermark(),
        })
    }

    fn wait_any(&self, topic: &str, positions: &[(u32, i64)], timeout: Duration) -> bool {
        self.wait_many(topic, positions, timeout)
    }

    fn wait_for(&self, topic: &str, partition: u32, offset: i64, timeout: Duration) -> bool {
        let Ok(p) = self.partition(topic, partition) else { return false };
        let mut rx = p.subscribe();
        let deadline = std::time::Instant::now() + timeout;
        while p.high_watermark() <= offset {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() || !matches!(block_on_timeout(rx.changed(), left), Some(Ok(()))) {
                return p.high_watermark() > offset;
            }
        }
        true
    }
}

impl InProcessLog {
    /// Waits on every partition's append notification at once.
    fn wait_many(&self, topic: &str, positions: &[(u32, i64)], timeout: Duration) -> bool {
        let partitions: Vec<_> =
            positions.iter().filter_map(|(p, o)| Some((self.log.partition(topic, *p)?, *o))).collect();
        let ready = || partitions.iter().any(|(p, o)| p.high_watermark() > *o);
        let mut receivers: Vec<_> = partitions.iter().map(|(p, _)| p.subscribe()).collect();
        let deadline = std::time::Instant::now() + timeout;
        while !ready() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            // Resolves when any receiver sees a change (or all senders are gone). The futures
            // live across polls, so their wakers stay registered.
            type Change<'a> = std::pin::Pin<Box<dyn Future<Output = bool> + 'a>>;
            let mut changes: Vec<Option<Change<'_>>> = receivers
                .iter_mut()
                .map(|rx| Some(Box::pin(async move { rx.changed().await.is_ok() }) as Change<'_>))
                .collect();
            let any_changed = std::future::poll_fn(|cx| {
                for slot in changes.iter_mut() {
                    let Some(change) = slot else { continue };
                    match change.as_mut().poll(cx) {
                        std::task::Poll::Ready(true) => return std::task::Poll::Ready(true),
                        // That partition's sender is gone: never poll the finished future again.
                        std::task::Poll::Ready(false) => *slot = None,
                        std::task::Poll::Pending => {}
                    }
                }
                if changes.iter().all(Option::is_none) {
                    std::task::Poll::Ready(false)
                } else {
                    std::task::Poll::Pending
                }
            });
            if block_on_timeout(any_changed, left) != Some(true) {
                return ready();
            }
        }
        true
    }
}

/// Wakes the thread blocked in [`block_on_timeout`].
struct ThreadWaker(std::thread::Thread);

impl std::task::Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs a future on the calling thread until it completes or `timeout` passes (tokio's sync
/// primitives need no runtime), so blocking query threads can wait for appends without polling.
pub(crate) fn block_on_timeout<F: std::future::Future>(fut: F, timeout: Duration) -> Option<F::Output> {
    let waker = std::task::Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let std::task::Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return Some(v);
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return None;
        }
        std::thread::park_timeout(left);
    }
}
