//! Produce: each partition's record batches go to `Partition::append` exactly as received;
//! acks=all additionally waits for `sync_to` (fsync, shared with concurrent producers by
//! group commit) before answering; acks=0 answers nothing. A duplicate idempotent batch is
//! answered with the offsets it was first given.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use runnel_log::{AppendError, AppendInfo, Partition};
use runnel_records::BatchError;

use super::{Context, Internal, blocking, code, str_bytes, topics_by_id};

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

pub(super) async fn handle(
    cx: &Context,
    request: ProduceRequest,
    version: i16,
) -> Result<Option<ProduceResponse>, Internal> {
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
        for p in data.partition_data {
            let partition = match (&name, u32::try_from(p.index)) {
                (Some(name), Ok(index)) => cx.log.partition(name, index).ok_or(missing),
                _ => Err(missing),
            };
            let outcome = match (&refused, &partition) {
                (Some(err), _) => Err(err.clone()),
                (None, Err(e)) => Err((*e, String::new())),
                (None, Ok(_)) => Err((ResponseError::UnknownServerError, "not appended".to_string())),
            };
            items.push(Item { topic: t, index: p.index, partition, records: p.records, outcome });
        }
        topics.push(TopicProduceResponse::default().with_name(data.name).with_topic_id(data.topic_id));
    }
    if refused.is_none() {
        items = blocking(move || append_all(items, acks)).await?;
    }
    if acks == ACKS_NONE {
        return Ok(None);
    }
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
    Ok(Some(ProduceResponse::default().with_responses(topics)))
}

/// Appends every partition's batches, then (acks=all) waits until each is fsynced.
fn append_all(mut items: Vec<Item>, acks: i16) -> Vec<Item> {
    let now = runnel_log::now_ms();
    for item in items.iter_mut() {
        let Ok(partition) = &item.partition else { continue };
        item.outcome = match item.records.as_deref() {
            None | Some([]) => {
                Err((ResponseError::CorruptMessage, "the produce request carries no record batch".to_string()))
            }
            Some(records) => partition.append(records, now).map_err(|e| (append_error_code(&e), e.to_string())),
        };
    }
    if acks == ACKS_ALL {
        for item in items.iter_mut() {
            if let (Ok(partition), Ok(info)) = (&item.partition, &item.outcome)
                && let Err(e) = partition.sync_to(info.last_offset + 1)
            {
                tracing::error!(topic = partition.topic(), partition = partition.index(), error = %e, "fsync failed; produce not acknowledged");
                item.outcome = Err((append_error_code(&e), e.to_string()));
            }
        }
    }
    items
}
