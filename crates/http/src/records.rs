//! `/v1/topics/{topic}/records`: produce JSON records and consume them as JSON or as
//! newline-delimited JSON.
//!
//! Keys, values and header values are JSON strings: UTF-8 text by default, or base64 (standard
//! alphabet, padded) with `"encoding": "base64"` in a produce body or `encoding=base64` on a
//! consume, for binary data. A consume with the default encoding answers 422 at the first record
//! that is not UTF-8. Produce builds one v2 batch per partition, appends it and answers once it
//! is fsynced (Kafka's acks=all). Records with an explicit partition go there; keyed records go
//! where Kafka's default partitioner puts them (murmur2 of the key), so HTTP and Kafka producers
//! agree; unkeyed records of one request go together to the next partition in turn.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use runnel_log::Partition;
use runnel_records::{BatchBuilder, Batches, Compression, Record, RecordIter, partition_for_key};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::limits::{
    CONSUME_LIMIT_DEFAULT, CONSUME_LIMIT_MAX, CONSUME_READ_BYTES_MAX, CONSUME_READ_CHUNK_BYTES,
    DECOMPRESSED_BATCH_BYTES_MAX, NDJSON_BUFFER_LINES, PRODUCE_RECORDS_MAX, RECORD_HEADERS_MAX,
};
use crate::{Api, Shared, blocking, json_body, json_line, ndjson_response};

pub(crate) fn routes() -> Router<Arc<Api>> {
    Router::new().route("/v1/topics/{topic}/records", get(consume).post(produce))
}

/// How keys, values and header values are written in JSON strings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Encoding {
    /// UTF-8 text.
    #[default]
    String,
    /// Base64, standard alphabet with padding.
    Base64,
}

impl Encoding {
    fn decode(self, what: &str, s: &str) -> Result<Bytes, ApiError> {
        match self {
            Encoding::String => Ok(Bytes::copy_from_slice(s.as_bytes())),
            Encoding::Base64 => BASE64
                .decode(s)
                .map(Bytes::from)
                .map_err(|e| ApiError::Invalid(format!("{what} is not valid base64: {e}"))),
        }
    }

    fn encode(self, what: &str, offset: i64, b: &[u8]) -> Result<String, ApiError> {
        match self {
            Encoding::String => String::from_utf8(b.to_vec()).map_err(|_| {
                ApiError::Invalid(format!(
                    "the {what} of the record at offset {offset} is not UTF-8 text: ask for encoding=base64"
                ))
            }),
            Encoding::Base64 => Ok(BASE64.encode(b)),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProduceHeader {
    key: String,
    #[serde(default)]
    value: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProduceRecord {
    #[serde(default)]
    partition: Option<u32>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    headers: Vec<ProduceHeader>,
    /// Milliseconds since the Unix epoch; now if absent.
    #[serde(default)]
    timestamp: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProduceRequest {
    #[serde(default)]
    encoding: Encoding,
    records: Vec<ProduceRecord>,
}

#[derive(Serialize, Clone, Copy)]
struct ProducedOffset {
    partition: u32,
    offset: i64,
}

#[derive(Serialize)]
struct ProduceResponse {
    topic: String,
    offsets: Vec<ProducedOffset>,
}

async fn produce(State(api): Shared, Path(topic): Path<String>, request: Request) -> Result<Response, ApiError> {
    let body: ProduceRequest = json_body(request, &["records", "records.headers"]).await?;
    let info = api.log.topic(&topic).ok_or_else(|| ApiError::UnknownTopic(topic.clone()))?;
    if info.internal {
        return Err(ApiError::InternalTopic(format!("cannot produce to internal topic {topic:?}")));
    }
    if body.records.is_empty() || body.records.len() > PRODUCE_RECORDS_MAX {
        return Err(ApiError::Invalid(format!(
            "{} records: a produce request carries 1 to {PRODUCE_RECORDS_MAX}",
            body.records.len()
        )));
    }
    // As Kafka (and the broker's produce): a compacted topic keeps the latest record per key, so
    // every record needs one.
    if info.config.cleanup_policy.compacts()
        && let Some(i) = body.records.iter().position(|r| r.key.is_none())
    {
        return Err(ApiError::Invalid(format!(
            "record {i} has no key: topic {topic:?} is compacted (cleanup.policy={}), so every record needs one",
            info.config.get("cleanup.policy").unwrap_or_default()
        )));
    }
    let partitions = info.partitions;
    let sticky = api.next_partition.fetch_add(1, Ordering::Relaxed) % partitions;
    let now = runnel_log::now_ms();
    // Partition -> (position in the request, record), in request order.
    let mut by_partition: BTreeMap<u32, Vec<(usize, Record)>> = BTreeMap::new();
    for (i, r) in body.records.into_iter().enumerate() {
        if r.headers.len() > RECORD_HEADERS_MAX {
            return Err(ApiError::Invalid(format!("record {i} has more than {RECORD_HEADERS_MAX} headers")));
        }
        let key = r.key.as_deref().map(|k| body.encoding.decode(&format!("the key of record {i}"), k)).transpose()?;
        let value =
            r.value.as_deref().map(|v| body.encoding.decode(&format!("the value of record {i}"), v)).transpose()?;
        let partition = match (r.partition, &key) {
            (Some(p), _) if p >= partitions => {
                return Err(ApiError::UnknownPartition { topic: topic.clone(), partition: i64::from(p) });
            }
            (Some(p), _) => p,
            (None, Some(k)) => partition_for_key(k, partitions),
            (None, None) => sticky,
        };
        let mut record = Record::new(key, value).at(r.timestamp.unwrap_or(now));
        for h in r.headers {
            let value = h
                .value
                .as_deref()
                .map(|v| body.encoding.decode(&format!("header {:?} of record {i}", h.key), v))
                .transpose()?;
            record = record.with_header(h.key, value);
        }
        by_partition.entry(partition).or_default().push((i, record));
    }
    let count: usize = by_partition.values().map(Vec::len).sum();
    let log = api.log.clone();
    let metrics = api.metrics.clone();
    let name = topic.clone();
    let offsets = blocking(move || {
        let mut offsets = vec![ProducedOffset { partition: 0, offset: -1 }; count];
        let mut appended = Vec::new();
        for (index, records) in by_partition {
            let partition = log.partition(&name, index).ok_or_else(|| ApiError::UnknownTopic(name.clone()))?;
            let mut builder = BatchBuilder::new();
            let positions: Vec<usize> = records.iter().map(|(i, _)| *i).collect();
            for (_, record) in records {
                builder.push(record);
            }
            let batch = builder.build(Compression::None).map_err(|e| ApiError::Storage(e.to_string()))?;
            // Answered only once synced: buffered until the sync writes it with the others.
            let appended_info = partition.append_buffered(&batch, now)?;
            metrics.record_produced(&name, positions.len() as u64, batch.len() as u64);
            for (n, position) in positions.into_iter().enumerate() {
                offsets[position] = ProducedOffset { partition: index, offset: appended_info.base_offset + n as i64 };
            }
            appended.push((partition, appended_info.last_offset + 1));
        }
        // acks=all: answer once every appended batch is fsynced (group commit shares the fsyncs).
        for (partition, end) in appended {
            partition.sync_to(end)?;
        }
        Ok(offsets)
    })
    .await?;
    Ok(Json(ProduceResponse { topic, offsets }).into_response())
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Format {
    #[default]
    Json,
    Ndjson,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsumeParams {
    partition: Option<u32>,
    offset: Option<i64>,
    timestamp: Option<i64>,
    limit: Option<u32>,
    format: Option<Format>,
    encoding: Option<Encoding>,
}

#[derive(Serialize)]
struct OutHeader {
    key: String,
    value: Option<String>,
}

#[derive(Serialize)]
struct OutRecord {
    partition: u32,
    offset: i64,
    timestamp: i64,
    key: Option<String>,
    value: Option<String>,
    headers: Vec<OutHeader>,
}

#[derive(Serialize)]
struct ConsumeResponse {
    topic: String,
    partition: u32,
    records: Vec<OutRecord>,
    /// Where the next consume should start.
    next_offset: i64,
    high_watermark: i64,
}

fn out_record(partition: u32, r: Record, encoding: Encoding) -> Result<OutRecord, ApiError> {
    let offset = r.offset;
    let encode = |what: &str, b: Option<Bytes>| b.map(|b| encoding.encode(what, offset, &b)).transpose();
    let headers = r
        .headers
        .into_iter()
        .map(|h| {
            let value = encode(&format!("header {:?}", h.key), h.value)?;
            Ok(OutHeader { key: h.key, value })
        })
        .collect::<Result<_, ApiError>>()?;
    Ok(OutRecord {
        partition,
        offset,
        timestamp: r.timestamp,
        key: encode("key", r.key)?,
        value: encode("value", r.value)?,
        headers,
    })
}

/// Reads up to `limit` records from `start`, giving each to `emit`; returns the offset to
/// continue from. Stops at the high watermark, after [`CONSUME_READ_BYTES_MAX`] bytes of
/// batches, or when `emit` fails.
fn read_records(
    partition: &Partition,
    start: i64,
    limit: u32,
    mut emit: impl FnMut(Record) -> Result<(), ApiError>,
) -> Result<(i64, u64, u64), ApiError> {
    let mut offset = start;
    let mut count = 0u32;
    let mut bytes_read = 0usize;
    'reading: while count < limit && offset < partition.high_watermark() && bytes_read < CONSUME_READ_BYTES_MAX {
        let read = partition.read(offset, CONSUME_READ_CHUNK_BYTES)?;
        if read.records.is_empty() {
            break;
        }
        bytes_read += read.records.len();
        for batch in Batches::new(&read.records) {
            let (header, bytes) = batch.map_err(|e| ApiError::Storage(format!("reading the log: {e}")))?;
            if !header.is_control() {
                let records = RecordIter::new(bytes, DECOMPRESSED_BATCH_BYTES_MAX)
                    .map_err(|e| ApiError::Storage(format!("decoding a batch: {e}")))?;
                for record in records {
                    let record = record.map_err(|e| ApiError::Storage(format!("decoding a record: {e}")))?;
                    if record.offset < offset {
                        continue;
                    }
                    if count == limit {
                        break 'reading;
                    }
                    let next = record.offset + 1;
                    emit(record)?;
                    count += 1;
                    offset = next;
                }
            }
            // Offsets removed by compaction, and control batches, are skipped.
            offset = offset.max(header.next_offset());
        }
    }
    Ok((offset, u64::from(count), bytes_read as u64))
}

async fn consume(
    State(api): Shared,
    Path(topic): Path<String>,
    params: Result<Query<ConsumeParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::InvalidParameter(e.body_text()))?;
    let limit = params.limit.unwrap_or(CONSUME_LIMIT_DEFAULT);
    if limit == 0 || limit > CONSUME_LIMIT_MAX {
        return Err(ApiError::InvalidParameter(format!("limit {limit}: it must be 1 to {CONSUME_LIMIT_MAX}")));
    }
    if params.offset.is_some() && params.timestamp.is_some() {
        return Err(ApiError::InvalidParameter("give an offset or a timestamp, not both".to_string()));
    }
    if let Some(offset) = params.offset.filter(|o| *o < 0) {
        return Err(ApiError::InvalidParameter(format!("offset {offset}: offsets are 0 or more")));
    }
    let index = params.partition.unwrap_or(0);
    let info = api.log.topic(&topic).ok_or_else(|| ApiError::UnknownTopic(topic.clone()))?;
    let partition = api
        .log
        .partition(&topic, index)
        .ok_or_else(|| ApiError::UnknownPartition { topic: info.name.clone(), partition: i64::from(index) })?;
    let encoding = params.encoding.unwrap_or_default();
    let p = partition.clone();
    let timestamp = params.timestamp;
    let start = match params.offset {
        Some(offset) => {
            let log_start = partition.log_start_offset();
            if offset < log_start {
                return Err(ApiError::OffsetOutOfRange(format!(
                    "offset {offset} is below the log start offset {log_start} of {topic}-{index}"
                )));
            }
            offset
        }
        None => match timestamp {
            Some(ts) => {
                blocking(move || Ok(p.offset_for_timestamp(ts)?.map_or_else(|| p.high_watermark(), |(o, _)| o))).await?
            }
            None => partition.log_start_offset(),
        },
    };
    let metrics = api.metrics.clone();
    match params.format.unwrap_or_default() {
        Format::Json => {
            let out = blocking(move || {
                let mut records = Vec::new();
                let (next_offset, count, bytes) = read_records(&partition, start, limit, |r| {
                    records.push(out_record(index, r, encoding)?);
                    Ok(())
                })?;
                metrics.record_fetched(&topic, count, bytes);
                let high_watermark = partition.high_watermark();
                Ok(ConsumeResponse { topic, partition: index, records, next_offset, high_watermark })
            })
            .await?;
            Ok(Json(out).into_response())
        }
        Format::Ndjson => {
            let (lines, rx) = mpsc::channel(NDJSON_BUFFER_LINES);
            tokio::task::spawn_blocking(move || {
                let result = read_records(&partition, start, limit, |r| {
                    let line = json_line(&out_record(index, r, encoding)?);
                    // The client went away: stop reading.
                    lines.blocking_send(line).map_err(|_| ApiError::NotReady("client disconnected".to_string()))
                });
                match result {
                    Ok((_, count, bytes)) => metrics.record_fetched(&topic, count, bytes),
                    // The status line is sent already: the error is the stream's last line.
                    Err(e) => {
                        let _ = lines.blocking_send(json_line(&e.body()));
                    }
                }
            });
            Ok(ndjson_response(rx))
        }
    }
}
