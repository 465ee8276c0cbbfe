//! Fetch: whole record batches exactly as stored, within the request's `max_bytes` and each
//! partition's `partition_max_bytes` (at least one batch so a large batch is never stuck),
//! long-polling on the partitions' high-watermark watch channels until `min_bytes` are
//! available or `max_wait_ms` passes. No fetch sessions: the answer's session id is 0, so
//! clients keep sending full fetch requests. No transactions: read_committed reads the same
//! records as read_uncommitted and the last stable offset is the high watermark.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use runnel_log::{Partition, ReadError};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{Context, Internal, blocking, code, topics_by_id};
use crate::limits::{FETCH_MAX_WAIT_MS_MAX, FETCH_RESPONSE_BYTES_MAX};

/// First version naming topics by id instead of by name.
const TOPIC_IDS_SINCE: i16 = 13;
const READ_COMMITTED: i8 = 1;
/// Bytes before a batch's `batchLength` payload (base offset and the length itself).
const BATCH_LOG_OVERHEAD_BYTES: usize = 12;

/// A pending wait for one partition's high watermark to move.
type WatchChange<'a> = Pin<Box<dyn Future<Output = Result<(), watch::error::RecvError>> + Send + 'a>>;

#[derive(Clone)]
struct Want {
    topic: usize,
    index: i32,
    partition: Result<Arc<Partition>, ResponseError>,
    offset: i64,
    max_bytes: usize,
}

struct Got {
    error: Option<ResponseError>,
    records: Bytes,
    high_watermark: i64,
    log_start_offset: i64,
}

pub(super) async fn handle(cx: &Context, request: FetchRequest, version: i16) -> Result<FetchResponse, Internal> {
    if request.session_id != 0 {
        return Ok(FetchResponse::default().with_error_code(code(ResponseError::FetchSessionIdNotFound)));
    }
    if request.session_epoch > 0 {
        return Ok(FetchResponse::default().with_error_code(code(ResponseError::InvalidFetchSessionEpoch)));
    }
    let by_id = (version >= TOPIC_IDS_SINCE).then(|| topics_by_id(&cx.log));
    let mut topics = Vec::with_capacity(request.topics.len());
    let mut wants = Vec::new();
    for (t, fetch_topic) in request.topics.into_iter().enumerate() {
        let name = match &by_id {
            Some(map) => map.get(fetch_topic.topic_id.as_bytes()).map(|i| i.name.clone()),
            None => Some(fetch_topic.topic.0.to_string()),
        };
        let missing =
            if by_id.is_some() { ResponseError::UnknownTopicId } else { ResponseError::UnknownTopicOrPartition };
        for p in fetch_topic.partitions {
            let partition = match (&name, u32::try_from(p.partition)) {
                (Some(name), Ok(index)) => cx.log.partition(name, index).ok_or(missing),
                _ => Err(missing),
            };
            let max_bytes = usize::try_from(p.partition_max_bytes).unwrap_or(0);
            wants.push(Want { topic: t, index: p.partition, partition, offset: p.fetch_offset, max_bytes });
        }
        topics
            .push(FetchableTopicResponse::default().with_topic(fetch_topic.topic).with_topic_id(fetch_topic.topic_id));
    }
    let max_bytes = usize::try_from(request.max_bytes).unwrap_or(0).min(FETCH_RESPONSE_BYTES_MAX);
    let min_bytes = usize::try_from(request.min_bytes).unwrap_or(0);
    let wait_ms = i64::from(request.max_wait_ms).clamp(0, FETCH_MAX_WAIT_MS_MAX);
    let deadline = Instant::now() + Duration::from_millis(wait_ms as u64);
    let mut shutdown = cx.shutdown.clone();
    // Subscribe before the first read so that no append between read and wait is missed.
    let mut watches: Vec<_> = wants.iter().filter_map(|w| w.partition.as_ref().ok().map(|p| p.subscribe())).collect();
    let mut last_pass = false;
    let got = loop {
        let batch = wants.clone();
        let got = blocking(move || read_all(&batch, max_bytes)).await?;
        let bytes: usize = got.iter().map(|g| g.records.len()).sum();
        let errored = got.iter().any(|g| g.error.is_some());
        if bytes >= min_bytes || errored || last_pass || Instant::now() >= deadline || *shutdown.borrow() {
            break got;
        }
        let mut changes: Vec<WatchChange<'_>> =
            watches.iter_mut().map(|w| Box::pin(w.changed()) as WatchChange<'_>).collect();
        // Ready with `true` when a partition's watch is gone (the partition was deleted).
        let any_change = std::future::poll_fn(|cx| {
            for change in changes.iter_mut() {
                if let Poll::Ready(result) = change.as_mut().poll(cx) {
                    return Poll::Ready(result.is_err());
                }
            }
            Poll::Pending
        });
        tokio::select! {
            gone = any_change => last_pass = gone,
            _ = tokio::time::sleep_until(deadline) => {}
            _ = shutdown.changed() => {}
        }
    };
    let read_committed = request.isolation_level == READ_COMMITTED;
    for (want, got) in wants.iter().zip(got) {
        if let Ok(partition) = &want.partition
            && !got.records.is_empty()
        {
            let records = crate::metrics::records_in_batches(&got.records, want.offset);
            cx.metrics.record_fetched(partition.topic(), records, got.records.len() as u64);
        }
        let data = PartitionData::default()
            .with_partition_index(want.index)
            .with_error_code(got.error.map(code).unwrap_or(0))
            .with_high_watermark(got.high_watermark)
            .with_last_stable_offset(got.high_watermark)
            .with_log_start_offset(got.log_start_offset)
            .with_aborted_transactions(read_committed.then(Vec::new))
            .with_preferred_read_replica((-1).into())
            .with_records(Some(got.records));
        topics[want.topic].partitions.push(data);
    }
    Ok(FetchResponse::default().with_session_id(0).with_responses(topics))
}

/// Reads every wanted partition once, within the response budget `max_bytes`.
fn read_all(wants: &[Want], max_bytes: usize) -> Vec<Got> {
    let mut total = 0usize;
    wants
        .iter()
        .map(|want| {
            let partition = match &want.partition {
                Ok(p) => p,
                Err(e) => {
                    return Got { error: Some(*e), records: Bytes::new(), high_watermark: -1, log_start_offset: -1 };
                }
            };
            let budget = max_bytes.saturating_sub(total);
            let empty = |error| Got {
                error,
                records: Bytes::new(),
                high_watermark: partition.high_watermark(),
                log_start_offset: partition.log_start_offset(),
            };
            if budget == 0 && total > 0 {
                return empty(None);
            }
            match partition.read(want.offset, want.max_bytes.min(budget.max(1))) {
                Ok(read) => {
                    // The first data in the response may exceed the budget (one whole batch, as
                    // in Kafka); after that only whole batches that fit are sent.
                    let records = if total == 0 {
                        read.records
                    } else {
                        let fits = whole_batches_within(&read.records, budget);
                        read.records.slice(..fits)
                    };
                    total += records.len();
                    Got {
                        error: None,
                        records,
                        high_watermark: read.high_watermark,
                        log_start_offset: read.log_start_offset,
                    }
                }
                Err(ReadError::OffsetOutOfRange { high_watermark, log_start_offset, .. }) => Got {
                    error: Some(ResponseError::OffsetOutOfRange),
                    records: Bytes::new(),
                    high_watermark,
                    log_start_offset,
                },
                Err(e) => {
                    tracing::error!(topic = partition.topic(), partition = partition.index(), error = %e, "fetch failed");
                    empty(Some(ResponseError::KafkaStorageError))
                }
            }
        })
        .collect()
}

/// Length of the longest prefix of `records` made of whole batches and at most `limit` bytes.
fn whole_batches_within(records: &[u8], limit: usize) -> usize {
    let mut end = 0usize;
    while let Some(header) = records.get(end..end + BATCH_LOG_OVERHEAD_BYTES) {
        let length = i32::from_be_bytes([header[8], header[9], header[10], header[11]]);
        let Ok(length) = usize::try_from(length) else { break };
        let next = end + BATCH_LOG_OVERHEAD_BYTES + length;
        if next > limit || next > records.len() {
            break;
        }
        end = next;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::whole_batches_within;

    fn batch(payload: usize) -> Vec<u8> {
        let mut b = vec![0u8; 8];
        b.extend_from_slice(&(payload as i32).to_be_bytes());
        b.extend(std::iter::repeat_n(7u8, payload));
        b
    }

    #[test]
    fn cuts_at_whole_batches() {
        let mut records = batch(50);
        records.extend(batch(30));
        assert_eq!(whole_batches_within(&records, 10), 0);
        assert_eq!(whole_batches_within(&records, 62), 62);
        assert_eq!(whole_batches_within(&records, 100), 62);
        assert_eq!(whole_batches_within(&records, 104), 104);
        assert_eq!(whole_batches_within(&records[..70], 1000), 62);
    }
}
