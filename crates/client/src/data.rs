//! Records in and out: Produce (one call, or a pipelining [`Producer`]), Fetch with the records
//! decoded, and ListOffsets (earliest, latest, by timestamp).

use std::collections::VecDeque;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{BrokerId, FetchRequest, ListOffsetsRequest, ProduceRequest};
use runnel_records::{Batches, Record, RecordIter};

use crate::connection::{Connection, Pending};
use crate::error::{Error, KafkaError, check};
use crate::{Client, name};

/// How long the broker may wait for acks=all before answering a Produce.
pub const PRODUCE_TIMEOUT_MS: i32 = 30_000;
/// Produce requests a [`Producer`] may have awaiting their answer.
pub const PRODUCE_IN_FLIGHT_MAX: usize = 5;
/// Bound on a batch's decompressed records when decoding fetched batches.
pub const DECOMPRESSED_BATCH_BYTES_MAX: usize = 64 << 20;
/// Bytes a Fetch may return per partition, and in all.
pub const FETCH_PARTITION_BYTES_MAX: i32 = 4 << 20;
pub const FETCH_BYTES_MAX: i32 = 64 << 20;

/// Where ListOffsets should look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The log end offset (high watermark).
    Latest,
    /// The first offset whose timestamp is at or after this (ms since the Unix epoch).
    Timestamp(i64),
}

impl OffsetSpec {
    fn wire(self) -> i64 {
        match self {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::Timestamp(ms) => ms,
        }
    }
}

/// One partition's answer to ListOffsets: `offset` is `None` when no record has a timestamp
/// at or after the one asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedOffset {
    pub partition: i32,
    pub offset: Option<i64>,
    pub timestamp: i64,
}

/// One partition's acknowledged batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceAck {
    pub partition: i32,
    pub base_offset: i64,
}

/// One partition's answer to Fetch, records decoded.
#[derive(Debug, Clone)]
pub struct FetchedPartition {
    pub partition: i32,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    /// Records at or after the fetch offset, in offset order (control records left out).
    pub records: Vec<Record>,
    /// Where the next fetch of this partition should start.
    pub next_offset: i64,
}

/// A Produce request awaiting its answer.
#[derive(Debug, Clone)]
struct InFlight {
    pending: Pending,
    topic: String,
}

/// A producer on its own connection that keeps up to [`PRODUCE_IN_FLIGHT_MAX`] Produce
/// requests in flight: the broker answers a connection's requests in order, so answers are
/// matched oldest first.
#[derive(Debug)]
pub struct Producer {
    connection: Connection,
    version: i16,
    acks: i16,
    in_flight: VecDeque<InFlight>,
}

impl Producer {
    /// Sends one Produce request with a batch per partition. When the pipeline is full it first
    /// waits for the oldest answer, whose acknowledgements are returned (acks=0: none ever).
    pub async fn send(&mut self, topic: &str, batches: Vec<(i32, Bytes)>) -> Result<Vec<ProduceAck>, Error> {
        let mut acks = Vec::new();
        while self.in_flight.len() >= PRODUCE_IN_FLIGHT_MAX {
            acks.extend(self.receive_oldest().await?);
        }
        let request = produce_request(topic, self.acks, batches);
        let pending = self.connection.send(self.version, &request).await?;
        if self.acks != 0 {
            self.in_flight.push_back(InFlight { pending, topic: topic.to_string() });
        }
        Ok(acks)
    }

    /// Waits for every answer outstanding.
    pub async fn flush(&mut self) -> Result<Vec<ProduceAck>, Error> {
        let mut acks = Vec::new();
        while !self.in_flight.is_empty() {
            acks.extend(self.receive_oldest().await?);
        }
        Ok(acks)
    }

    async fn receive_oldest(&mut self) -> Result<Vec<ProduceAck>, Error> {
        let Some(oldest) = self.in_flight.pop_front() else { return Ok(Vec::new()) };
        let response = self.connection.receive::<ProduceRequest>(oldest.pending).await?;
        produce_acks(&oldest.topic, response)
    }
}

fn produce_request(topic: &str, acks: i16, batches: Vec<(i32, Bytes)>) -> ProduceRequest {
    ProduceRequest::default().with_acks(acks).with_timeout_ms(PRODUCE_TIMEOUT_MS).with_topic_data(vec![
        TopicProduceData::default().with_name(name(topic)).with_partition_data(
            batches
                .into_iter()
                .map(|(partition, records)| {
                    PartitionProduceData::default().with_index(partition).with_records(Some(records))
                })
                .collect(),
        ),
    ])
}

fn produce_acks(topic: &str, response: kafka_protocol::messages::ProduceResponse) -> Result<Vec<ProduceAck>, Error> {
    let mut acks = Vec::new();
    for t in &response.responses {
        for p in &t.partition_responses {
            check(p.error_code, p.error_message.as_deref(), || {
                format!("cannot produce to partition {} of topic {topic:?}", p.index)
            })?;
            acks.push(ProduceAck { partition: p.index, base_offset: p.base_offset });
        }
    }
    Ok(acks)
}

/// Appends the records of `bytes` (whole v2 batches, possibly ending with a partial one) at or
/// after `*next_offset` to `out`, advancing `*next_offset` past every whole batch.
pub fn decode_fetched(bytes: &[u8], next_offset: &mut i64, out: &mut Vec<Record>) -> Result<(), String> {
    let mut batches = Batches::new(bytes);
    loop {
        let at = batches.position();
        let Some(batch) = batches.next() else { break };
        let (header, batch) = match batch {
            Ok(batch) => batch,
            Err(e) => {
                // A response may end with a partial batch: stop there, the next fetch gets it
                // whole. A complete batch that does not check out is an error, not a retry.
                let rest = &bytes[at..];
                let declared = rest.get(8..12).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                let complete = declared.and_then(|l| usize::try_from(l).ok()).is_some_and(|l| l + 12 <= rest.len());
                if complete {
                    return Err(format!("invalid record batch after offset {}: {e}", *next_offset));
                }
                break;
            }
        };
        if header.last_offset() < *next_offset {
            continue;
        }
        if !header.is_control() {
            let records = RecordIter::new(batch, DECOMPRESSED_BATCH_BYTES_MAX)
                .map_err(|e| format!("batch at offset {}: {e}", header.base_offset))?;
            for record in records {
                let record = record.map_err(|e| format!("batch at offset {}: {e}", header.base_offset))?;
                if record.offset >= *next_offset {
                    out.push(record);
                }
            }
        }
        *next_offset = header.next_offset();
    }
    Ok(())
}

impl Client {
    /// A producer with its own connection to the leader of `topic`'s partition 0 (runnel is a
    /// single node: it leads every partition).
    pub async fn producer(&mut self, topic: &str, acks: i16) -> Result<Producer, Error> {
        let metadata = self.topic(topic).await?;
        let leader = metadata.partitions.first().map_or(-1, |p| p.leader);
        let connection = self.new_connection_to(leader).await?;
        let version = connection.version::<ProduceRequest>()?;
        Ok(Producer { connection, version, acks, in_flight: VecDeque::new() })
    }

    /// Produces batches (one per partition) in one request and waits for the answer.
    pub async fn produce(
        &mut self,
        topic: &str,
        acks: i16,
        batches: Vec<(i32, Bytes)>,
    ) -> Result<Vec<ProduceAck>, Error> {
        let leader = self.leader_of(topic).await?;
        let connection = self.connection_to(leader).await?;
        let version = connection.version::<ProduceRequest>()?;
        let request = produce_request(topic, acks, batches);
        if acks == 0 {
            connection.send(version, &request).await?;
            return Ok(Vec::new());
        }
        let response = connection.call_at(version, &request).await?;
        produce_acks(topic, response)
    }

    async fn leader_of(&mut self, topic: &str) -> Result<i32, Error> {
        let metadata = self.topic(topic).await?;
        Ok(metadata.partitions.first().map_or(-1, |p| p.leader))
    }

    /// Fetches from each `(partition, offset)` of `topic`, waiting up to `max_wait_ms` for
    /// data. A partition error (OFFSET_OUT_OF_RANGE...) fails the call.
    pub async fn fetch(
        &mut self,
        topic: &str,
        partitions: &[(i32, i64)],
        max_wait_ms: i32,
    ) -> Result<Vec<FetchedPartition>, Error> {
        let leader = self.leader_of_cached(topic).await?;
        let connection = self.connection_to(leader).await?;
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(FETCH_BYTES_MAX)
            .with_isolation_level(0)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(vec![
                FetchTopic::default().with_topic(name(topic)).with_partitions(
                    partitions
                        .iter()
                        .map(|&(p, offset)| {
                            FetchPartition::default()
                                .with_partition(p)
                                .with_current_leader_epoch(-1)
                                .with_fetch_offset(offset)
                                .with_last_fetched_epoch(-1)
                                .with_log_start_offset(-1)
                                .with_partition_max_bytes(FETCH_PARTITION_BYTES_MAX)
                        })
                        .collect(),
                ),
            ]);
        let response = connection.call(&request).await?;
        check(response.error_code, None, || format!("cannot fetch from topic {topic:?}"))?;
        let mut fetched = Vec::new();
        for t in response.responses {
            for p in t.partitions {
                check(p.error_code, None, || {
                    format!("cannot fetch from partition {} of topic {topic:?}", p.partition_index)
                })?;
                let mut next_offset =
                    partitions.iter().find(|(id, _)| *id == p.partition_index).map_or(0, |(_, offset)| *offset);
                let mut records = Vec::new();
                if let Some(bytes) = &p.records {
                    decode_fetched(bytes, &mut next_offset, &mut records).map_err(|detail| Error::Protocol {
                        addr: self.bootstrap.clone(),
                        api: "Fetch".to_string(),
                        detail,
                    })?;
                }
                fetched.push(FetchedPartition {
                    partition: p.partition_index,
                    high_watermark: p.high_watermark,
                    log_start_offset: p.log_start_offset,
                    records,
                    next_offset,
                });
            }
        }
        Ok(fetched)
    }

    async fn leader_of_cached(&mut self, topic: &str) -> Result<i32, Error> {
        if self.brokers.len() <= 1 && !self.brokers.is_empty() {
            return Ok(*self.brokers.keys().next().expect("one broker"));
        }
        self.leader_of(topic).await
    }

    /// Offsets of `partitions` of `topic` by `spec`.
    pub async fn list_offsets(
        &mut self,
        topic: &str,
        partitions: &[i32],
        spec: OffsetSpec,
    ) -> Result<Vec<ListedOffset>, Error> {
        let leader = self.leader_of_cached(topic).await?;
        let connection = self.connection_to(leader).await?;
        let request = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![
            ListOffsetsTopic::default().with_name(name(topic)).with_partitions(
                partitions
                    .iter()
                    .map(|&p| {
                        ListOffsetsPartition::default()
                            .with_partition_index(p)
                            .with_current_leader_epoch(-1)
                            .with_timestamp(spec.wire())
                    })
                    .collect(),
            ),
        ]);
        let response = connection.call(&request).await?;
        let mut listed = Vec::new();
        for t in &response.topics {
            for p in &t.partitions {
                if let Some(error) = KafkaError::from_code(p.error_code, None) {
                    let what = format!("cannot list the offsets of partition {} of topic {topic:?}", p.partition_index);
                    return Err(Error::Kafka { what, error });
                }
                listed.push(ListedOffset {
                    partition: p.partition_index,
                    offset: (p.offset >= 0).then_some(p.offset),
                    timestamp: p.timestamp,
                });
            }
        }
        listed.sort_by_key(|l| l.partition);
        Ok(listed)
    }
}

#[cfg(test)]
mod tests {
    use runnel_records::{BatchBuilder, Compression};

    use super::*;

    fn batch(base: i64, values: &[&str]) -> Vec<u8> {
        let mut b = BatchBuilder::new();
        for v in values {
            b.push(Record::new(None::<Bytes>, Some(Bytes::from(v.to_string()))).at(1));
        }
        let mut bytes = b.build(Compression::None).unwrap().to_vec();
        bytes[..8].copy_from_slice(&base.to_be_bytes());
        bytes
    }

    #[test]
    fn fetched_batches_are_decoded_from_the_fetch_offset_up_to_a_partial_tail() {
        let mut bytes = batch(0, &["a", "b", "c"]);
        bytes.extend(batch(3, &["d"]));
        let whole = bytes.len();
        bytes.extend(&batch(4, &["e"])[..20]);
        let (mut next, mut out) = (1, Vec::new());
        decode_fetched(&bytes, &mut next, &mut out).unwrap();
        let values: Vec<&[u8]> = out.iter().map(|r| r.value.as_deref().unwrap()).collect();
        assert_eq!(values, vec![b"b" as &[u8], b"c", b"d"]);
        assert_eq!(next, 4, "the partial batch is fetched again");

        let mut corrupt = bytes[..whole].to_vec();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 1;
        let (mut next, mut out) = (0, Vec::new());
        assert!(decode_fetched(&corrupt, &mut next, &mut out).is_err(), "a complete bad batch is an error");
    }
}
