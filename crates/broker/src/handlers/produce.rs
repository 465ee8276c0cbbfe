//! Produce: each partition's record batches go to `Partition::append` exactly as received;
//! acks=all additionally waits for `sync_to` (fsync, shared with concurrent producers by
//! group commit) before answering; acks=0 answers nothing. A duplicate idempotent batch is
//! answered with the offsets it was first given.
//!
//! The append and the wait are two steps: [`handle`] appends and hands back the wait as a
//! [`Produced::AfterSync`] future, so that the connection can append the client's next
//! pipelined produce while this one's fsync runs (one fsync then covers both). Every batch is
//! still answered only once an fsync covers it.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use runnel_log::{AppendError, AppendInfo, Partition};
use runnel_records::{BatchError, Batches, RecordIter};

use super::{Context, Internal, ProduceWait, blocking, code, str_bytes, topic_name, topics_by_id};
use crate::limits::DECOMPRESSION_MEMORY_BYTES_MAX;

/// The budget of [`DECOMPRESSION_MEMORY_BYTES_MAX`], in KiB permits (a semaphore counts in u32).
static DECOMPRESSION_BUDGET: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(DECOMPRESSION_MEMORY_BYTES_MAX / 1024);

const ACKS_NONE: i16 = 0;
const ACKS_LEADER: i16 = 1;
const ACKS_ALL: i16 = -1;
/// First version naming topics by id instead of by name.
const TOPIC_IDS_SINCE: i16 = 13;

/// One partition's part of the request, resolved.
struct Item {
    topic: usize,
    index: i32,
    partition: Result<Arc<Partition>, ResponseError>,
    /// The topic keeps the latest record per key (`cleanup.policy` includes compact), so every
    /// record must have a key: the records are decoded (bounded) and checked before appending.
    compacted: bool,
    records: Option<Bytes>,
    outcome: Result<AppendInfo, (ResponseError, String)>,
}

pub(crate) fn append_error_code(e: &AppendError) -> ResponseError {
    match e {
        AppendError::InvalidBatch(BatchError::UnsupportedMagic { .. }) => ResponseError::UnsupportedForMessageFormat,
        AppendError::InvalidBatch(BatchError::Inconsistent(_)) => ResponseError::InvalidRecord,
        AppendError::InvalidBatch(_) => ResponseError::CorruptMessage,
        AppendError::MessageTooLarge { .. } => ResponseError::MessageTooLarge,
        AppendError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        AppendError::ProducerFenced { .. } => ResponseError::InvalidProducerEpoch,
        _ => ResponseError::KafkaStorageError,
    }
}

/// What a produce request gets back once its batches are appended.
pub(crate) enum Produced {
    /// acks=0: the client expects nothing.
    Nothing,
    /// The answer (acks=1, or nothing was appended).
    Now(ProduceResponse),
    /// acks=all: the answer once every appended batch is on disk.
    AfterSync(ProduceWait),
}

/// Appends the request's batches; with acks=all, the answer is a future that waits for their
/// fsync (see the module header).
pub(super) async fn handle(cx: &Context, request: ProduceRequest, version: i16) -> Result<Produced, Internal> {
    let acks = request.acks;
    let refused = if !matches!(acks, ACKS_NONE | ACKS_LEADER | ACKS_ALL) {
        Some((ResponseError::InvalidRequiredAcks, format!("acks must be -1, 0 or 1, not {acks}")))
    } else if request.transactional_id.is_some() {
        Some((ResponseError::InvalidRequest, "runnel does not support transactions".to_string()))
    } else {
        None
    };
    let by_id = (version >= TOPIC_IDS_SINCE).then(|| topics_by_id(&cx.log));
    let mut topics = Vec::with_capacity(request.topic_data.len());
    let mut items = Vec::new();
    for (t, data) in request.topic_data.into_iter().enumerate() {
        let name = match &by_id {
            Some(map) => map.get(data.topic_id.as_bytes()).map(|i| i.name.clone()),
            None => Some(data.name.0.to_string()),
        };
        let missing =
            if by_id.is_some() { ResponseError::UnknownTopicId } else { ResponseError::UnknownTopicOrPartition };
        let info = name.as_deref().and_then(|n| cx.log.topic(n));
        let compacted = info.as_ref().is_some_and(|i| i.config.cleanup_policy.compacts());
        // Internal topics (`__consumer_offsets`) are written by runnel only, as in Kafka.
        let internal = info
            .as_ref()
            .filter(|i| i.internal)
            .map(|i| (ResponseError::InvalidTopicException, format!("cannot produce to internal topic {}", i.name)));
        for p in data.partition_data {
            let partition = match (&name, u32::try_from(p.index)) {
                (Some(name), Ok(index)) => cx.log.partition(name, index).ok_or(missing),
                _ => Err(missing),
            };
            let outcome = match (refused.as_ref().or(internal.as_ref()), &partition) {
                (Some(err), _) => Err(err.clone()),
                (None, Err(e)) => Err((*e, String::new())),
                (None, Ok(_)) => Err((ResponseError::UnknownServerError, "not appended".to_string())),
            };
            items.push(Item { topic: t, index: p.index, partition, compacted, records: p.records, outcome });
        }
        topics.push(TopicProduceResponse::default().with_name(data.name).with_topic_id(data.topic_id));
    }
    if refused.is_none() {
        let decompressed_bytes_max = cx.log.config().decompressed_bytes_max;
        // Reserve the most the records of one batch may inflate to before decoding any.
        let _budget = if items.iter().any(|i| i.compacted && i.partition.is_ok()) {
            let kib = (decompressed_bytes_max.min(DECOMPRESSION_MEMORY_BYTES_MAX) / 1024).max(1) as u32;
            Some(
                DECOMPRESSION_BUDGET
                    .acquire_many(kib)
                    .await
                    .map_err(|_| Internal("decompression budget closed".to_string()))?,
            )
        } else {
            None
        };
        // acks=all batches are acknowledged only once synced: the sync writes them, with the
        // other producers' batches buffered since the last one, in one write.
        let buffered = acks == ACKS_ALL;
        // Small buffered appends are only a copy: done here when the partition is free, which
        // saves a round trip through the blocking pool; the rest (and anything touching the
        // disk) go there.
        if buffered && !items.iter().any(|i| i.compacted) {
            append_inline(&mut items);
        }
        if items.iter().any(awaits_append) {
            items = blocking(move || append_all(items, decompressed_bytes_max, buffered)).await?;
        }
    }
    for item in &items {
        if let (Ok(partition), Ok(info)) = (&item.partition, &item.outcome)
            && !info.duplicate
        {
            let bytes = item.records.as_ref().map_or(0, |r| r.len() as u64);
            let records = u64::try_from(info.last_offset - info.base_offset + 1).unwrap_or(0);
            cx.metrics.record_produced(partition.topic(), records, bytes);
        }
    }
    if acks == ACKS_NONE {
        return Ok(Produced::Nothing);
    }
    let appended = |i: &Item| i.partition.is_ok() && i.outcome.is_ok();
    if acks == ACKS_ALL && items.iter().any(appended) {
        // Nothing may keep the request frame alive while the fsync is awaited (its memory is
        // released to other requests now): the records go, and topic names, decoded as
        // slices of the frame, become copies.
        for item in items.iter_mut() {
            item.records = None;
        }
        for topic in topics.iter_mut() {
            topic.name = topic_name(topic.name.as_str());
        }
        return Ok(Produced::AfterSync(Box::pin(async move {
            let items = blocking(move || sync_all(items)).await?;
            Ok(response(topics, items))
        })));
    }
    Ok(Produced::Now(response(topics, items)))
}

/// The answer to a produce request: each partition's outcome under its topic.
fn response(mut topics: Vec<TopicProduceResponse>, items: Vec<Item>) -> ProduceResponse {
    for item in items {
        let response = PartitionProduceResponse::default().with_index(item.index);
        let response = match item.outcome {
            Ok(info) => response
                .with_base_offset(info.base_offset)
                .with_log_append_time_ms(info.log_append_time)
                .with_log_start_offset(info.log_start_offset),
            Err((e, message)) => response
                .with_error_code(code(e))
                .with_base_offset(-1)
                .with_error_message((!message.is_empty()).then(|| str_bytes(message))),
        };
        topics[item.topic].partition_responses.push(response);
    }
    ProduceResponse::default().with_responses(topics)
}

/// Whether `item` is still to be appended (every outcome starts as "not appended"; anything else
/// is a refusal already made, or the append's outcome).
fn awaits_append(item: &Item) -> bool {
    item.partition.is_ok() && matches!(&item.outcome, Err((ResponseError::UnknownServerError, _)))
}

/// Batches of at most this many bytes may be appended on the async thread (their CRC is
/// checked there).
const INLINE_APPEND_BYTES_MAX: usize = 64 << 10;

/// Appends, with `try_append_buffered`, the batches that can be buffered at once, in request
/// order, until one cannot: that one and those after it are left to [`append_all`].
fn append_inline(items: &mut [Item]) {
    let now = runnel_log::now_ms();
    for item in items.iter_mut().filter(|i| awaits_append(i)) {
        let (Ok(partition), Some(records)) = (&item.partition, item.records.as_deref()) else { return };
        if records.is_empty() || records.len() > INLINE_APPEND_BYTES_MAX {
            return;
        }
        match partition.try_append_buffered(records, now) {
            Ok(Some(info)) => item.outcome = Ok(info),
            Ok(None) => return,
            Err(e) => item.outcome = Err((append_error_code(&e), e.to_string())),
        }
    }
}

/// Appends every partition's batches; `buffered`: with `append_buffered`, for a produce
/// answered only after `sync_all`.
fn append_all(mut items: Vec<Item>, decompressed_bytes_max: usize, buffered: bool) -> Vec<Item> {
    let now = runnel_log::now_ms();
    let append = |partition: &Partition, records: &[u8]| {
        let appended = if buffered { partition.append_buffered(records, now) } else { partition.append(records, now) };
        appended.map_err(|e| (append_error_code(&e), e.to_string()))
    };
    for item in items.iter_mut() {
        let Ok(partition) = &item.partition else { continue };
        if !awaits_append(item) {
            continue;
        }
        item.outcome = match item.records.as_deref() {
            None | Some([]) => {
                Err((ResponseError::CorruptMessage, "the produce request carries no record batch".to_string()))
            }
            Some(records) if item.compacted => {
                check_keyed(records, decompressed_bytes_max).and_then(|()| append(partition, records))
            }
            Some(records) => append(partition, records),
        };
    }
    items
}

/// Waits until every appended batch is fsynced; a failed fsync turns that partition's outcome
/// into an error (the batch is not acknowledged).
fn sync_all(mut items: Vec<Item>) -> Vec<Item> {
    for item in items.iter_mut() {
        if let (Ok(partition), Ok(info)) = (&item.partition, &item.outcome)
            && let Err(e) = partition.sync_to(info.last_offset + 1)
        {
            tracing::error!(topic = partition.topic(), partition = partition.index(), error = %e, "fsync failed; produce not acknowledged");
            item.outcome = Err((append_error_code(&e), e.to_string()));
        }
    }
    items
}

/// Checks that every record of a batch for a compacted topic has a key, decoding one record at a
/// time from a decompressed section of at most `decompressed_bytes_max` bytes (a compression
/// bomb is refused, never inflated beyond that).
fn check_keyed(records: &[u8], decompressed_bytes_max: usize) -> Result<(), (ResponseError, String)> {
    for batch in Batches::new(records) {
        let Ok((_, bytes)) = batch else {
            // Framing and CRC errors are the append's to report, with its error codes.
            return Ok(());
        };
        let invalid = |e: runnel_records::DecodeError| (ResponseError::InvalidRecord, e.to_string());
        for record in RecordIter::new(bytes, decompressed_bytes_max).map_err(invalid)? {
            if record.map_err(invalid)?.key.is_none() {
                return Err((
                    ResponseError::InvalidRecord,
                    "a compacted topic cannot accept a record without a key".to_string(),
                ));
            }
        }
    }
    Ok(())
}
