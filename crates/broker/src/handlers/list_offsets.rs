//! ListOffsets: the earliest (-2, and -4 "earliest local"), latest (-1) and max-timestamp (-3)
//! offsets, and the first offset at or after a timestamp.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::{Context, Internal, blocking, code};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const EARLIEST_PENDING_UPLOAD: i64 = -5;
const UNKNOWN: i64 = -1;

pub(super) async fn handle(
    cx: &Context,
    request: ListOffsetsRequest,
    _version: i16,
) -> Result<ListOffsetsResponse, Internal> {
    let log = cx.log.clone();
    let topics = blocking(move || {
        request
            .topics
            .into_iter()
            .map(|topic| {
                let partitions = topic
                    .partitions
                    .iter()
                    .map(|p| {
                        let response = ListOffsetsPartitionResponse::default()
                            .with_partition_index(p.partition_index)
                            .with_leader_epoch(-1);
                        let partition = u32::try_from(p.partition_index).ok().and_then(|i| log.partition(&topic.name.0, i));
                        let Some(partition) = partition else {
                            return response
                                .with_error_code(code(ResponseError::UnknownTopicOrPartition))
                                .with_offset(UNKNOWN)
                                .with_timestamp(UNKNOWN);
                        };
                        let found = match p.timestamp {
                            LATEST => Ok(Some((partition.high_watermark(), UNKNOWN))),
                            EARLIEST | EARLIEST_LOCAL => Ok(Some((partition.log_start_offset(), UNKNOWN))),
                            MAX_TIMESTAMP => Ok(partition.max_timestamp()),
                            EARLIEST_PENDING_UPLOAD => Ok(None),
                            ts if ts < 0 => Err(ResponseError::InvalidRequest),
                            ts => partition.offset_for_timestamp(ts).map_err(|e| {
                                tracing::error!(topic = partition.topic(), partition = partition.index(), error = %e, "offset lookup failed");
                                ResponseError::KafkaStorageError
                            }),
                        };
                        match found {
                            Ok(Some((offset, timestamp))) => response.with_offset(offset).with_timestamp(timestamp),
                            Ok(None) => response.with_offset(UNKNOWN).with_timestamp(UNKNOWN),
                            Err(e) => response.with_error_code(code(e)).with_offset(UNKNOWN).with_timestamp(UNKNOWN),
                        }
                    })
                    .collect();
                ListOffsetsTopicResponse::default().with_name(topic.name).with_partitions(partitions)
            })
            .collect()
    })
    .await?;
    Ok(ListOffsetsResponse::default().with_topics(topics))
}
