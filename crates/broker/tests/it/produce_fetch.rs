//! Produce (acks 0, 1, all; idempotent duplicates and sequence gaps), Fetch (verbatim bytes,
//! long poll, limits, out-of-range) and ListOffsets.

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use runnel_broker::limits::PRODUCES_AWAITING_FSYNC_PER_CONNECTION_MAX;
use runnel_log::{SimStorage, TopicConfig};
use runnel_records::{BatchBuilder, Compression, Record};

use crate::common::{Client, TestBroker, name};

const OFFSET_OUT_OF_RANGE: i16 = 1;
const CORRUPT_MESSAGE: i16 = 2;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const INVALID_REQUIRED_ACKS: i16 = 21;
const INVALID_TOPIC_EXCEPTION: i16 = 17;
const INVALID_RECORD: i16 = 87;
const KAFKA_STORAGE_ERROR: i16 = 56;

fn batch(values: &[&str], first_timestamp: i64) -> Bytes {
    let mut b = BatchBuilder::new();
    for (i, v) in values.iter().enumerate() {
        b.push(Record::new(Some(format!("k{i}")), Some(v.to_string())).at(first_timestamp + i as i64));
    }
    b.build(Compression::None).unwrap()
}

fn idempotent_batch(producer_id: i64, sequence: i32, value: &str) -> Bytes {
    let mut b = BatchBuilder::new().producer(producer_id, 0, sequence);
    b.push(Record::new(None::<Bytes>, Some(value.to_string())).at(1_000));
    b.build(Compression::None).unwrap()
}

fn produce(topic: &str, partition: i32, records: Bytes, acks: i16) -> ProduceRequest {
    ProduceRequest::default().with_acks(acks).with_timeout_ms(30_000).with_topic_data(vec![
        TopicProduceData::default().with_name(name(topic)).with_partition_data(vec![
            PartitionProduceData::default().with_index(partition).with_records(Some(records)),
        ]),
    ])
}

fn fetch(topic: &str, partitions: &[(i32, i64)], max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(50 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![
            FetchTopic::default().with_topic(name(topic)).with_partitions(
                partitions
                    .iter()
                    .map(|&(p, offset)| {
                        FetchPartition::default()
                            .with_partition(p)
                            .with_fetch_offset(offset)
                            .with_partition_max_bytes(1 << 20)
                    })
                    .collect(),
            ),
        ])
}

async fn produced(client: &mut Client, request: &ProduceRequest) -> produce_response::PartitionProduceResponse {
    let response = client.call(9, request).await;
    response.responses[0].partition_responses[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_acks_all_then_fetch_returns_the_same_bytes() {
    let mut broker = TestBroker::start().await;
    broker.log.create_topic("payments", 1, TopicConfig::default()).unwrap();
    let mut client = broker.client().await;
    let first = batch(&["a", "b", "c"], 1_000);
    let second = batch(&["d"], 2_000);
    let p = produced(&mut client, &produce("payments", 0, first.clone(), -1)).await;
    assert_eq!((p.error_code, p.base_offset), (0, 0));
    let p = produced(&mut client, &produce("payments", 0, second.clone(), 1)).await;
    assert_eq!((p.error_code, p.base_offset), (0, 3));

    let partition = broker.log.partition("payments", 0).unwrap();
    assert_eq!(partition.high_watermark(), 4);
    for version in [4, 12] {
        let response = client.call(version, &fetch("payments", &[(0, 0)], 0)).await;
        let data = &response.responses[0].partitions[0];
        assert_eq!(data.error_code, 0);
        assert_eq!(data.high_watermark, 4);
        assert_eq!(data.last_stable_offset, 4);
        let records = data.records.clone().unwrap();
        // Verbatim: the first batch is byte-identical; the second differs only in its base
        // offset (bytes 0..8, outside the CRC), which the broker assigns.
        assert_eq!(&records[..first.len()], &first[..]);
        assert_eq!(&records[first.len() + 8..], &second[8..]);
        assert_eq!(i64::from_be_bytes(records[first.len()..first.len() + 8].try_into().unwrap()), 3);
    }
    // Fetch by topic id (v13+).
    let id = uuid_of(&broker, "payments");
    let mut by_id = fetch("", &[(0, 3)], 0);
    by_id.topics[0].topic_id = id;
    let response = client.call(17, &by_id).await;
    assert_eq!(response.responses[0].topic_id, id);
    assert_eq!(&response.responses[0].partitions[0].records.as_ref().unwrap()[8..], &second[8..]);
    broker.stop().await;
}

fn uuid_of(broker: &TestBroker, topic: &str) -> uuid::Uuid {
    uuid::Uuid::from_bytes(broker.log.topic(topic).unwrap().id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_by_topic_id_and_errors_per_partition() {
    let mut broker = TestBroker::start().await;
    broker.log.create_topic("t", 2, TopicConfig::default()).unwrap();
    let mut client = broker.client().await;
    let mut request = produce("", 1, batch(&["x"], 1), -1);
    request.topic_data[0].topic_id = uuid_of(&broker, "t");
    let response = client.call(13, &request).await;
    assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
    assert_eq!(broker.log.partition("t", 1).unwrap().high_watermark(), 1);

    let p = produced(&mut client, &produce("t", 7, batch(&["x"], 1), -1)).await;
    assert_eq!(p.error_code, UNKNOWN_TOPIC_OR_PARTITION);
    let p = produced(&mut client, &produce("missing", 0, batch(&["x"], 1), -1)).await;
    assert_eq!(p.error_code, UNKNOWN_TOPIC_OR_PARTITION);
    let mut corrupt = batch(&["x"], 1).to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    let p = produced(&mut client, &produce("t", 0, Bytes::from(corrupt), -1)).await;
    assert_eq!(p.error_code, CORRUPT_MESSAGE);
    let p = produced(&mut client, &produce("t", 0, batch(&["x"], 1), 2)).await;
    assert_eq!(p.error_code, INVALID_REQUIRED_ACKS);
    assert_eq!(broker.log.partition("t", 0).unwrap().high_watermark(), 0, "nothing bad was appended");
    broker.stop().await;
}

/// A zstd batch of one keyed record whose value is `value_bytes` zeros: a few KiB on the wire
/// that inflate to `value_bytes`.
fn compression_bomb(value_bytes: usize) -> Bytes {
    let mut b = BatchBuilder::new();
    b.push(Record::new(Some("k"), Some(vec![0u8; value_bytes])).at(1_000));
    b.build(Compression::Zstd).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_topics_refuse_produce_and_compacted_topics_refuse_keyless_records_and_bombs() {
    let mut broker = TestBroker::start().await;
    let mut client = broker.client().await;
    broker.log.create_topic("__consumer_offsets", 1, TopicConfig::default()).ok();
    let p = produced(&mut client, &produce("__consumer_offsets", 0, batch(&["x"], 1), -1)).await;
    assert_eq!(p.error_code, INVALID_TOPIC_EXCEPTION);

    let mut compact = TopicConfig::default();
    compact.set("cleanup.policy", "compact").unwrap();
    broker.log.create_topic("latest", 1, compact).unwrap();
    let p = produced(&mut client, &produce("latest", 0, batch(&["keyed"], 1), -1)).await;
    assert_eq!((p.error_code, p.base_offset), (0, 0));
    let p = produced(&mut client, &produce("latest", 0, idempotent_batch(-1, -1, "keyless"), -1)).await;
    assert_eq!(p.error_code, INVALID_RECORD);
    assert!(p.error_message.unwrap().contains("without a key"));

    // A bomb: 64 MiB + 1 once inflated, more than the decompression limit. The broker refuses it
    // without inflating past the limit; a topic that is not compacted stores it verbatim (the
    // broker never decompresses on that path).
    let bomb = compression_bomb((64 << 20) + 1);
    assert!(bomb.len() < 64 << 10, "the bomb is small on the wire: {} bytes", bomb.len());
    let p = produced(&mut client, &produce("latest", 0, bomb.clone(), -1)).await;
    assert_eq!(p.error_code, INVALID_RECORD);
    assert!(p.error_message.unwrap().contains("exceed"), "names the limit");
    assert_eq!(broker.log.partition("latest", 0).unwrap().high_watermark(), 1, "nothing refused was appended");
    broker.log.create_topic("plain", 1, TopicConfig::default()).unwrap();
    let p = produced(&mut client, &produce("plain", 0, bomb.clone(), 1)).await;
    assert_eq!((p.error_code, p.base_offset), (0, 0));
    let response = client.call(12, &fetch("plain", &[(0, 0)], 0)).await;
    assert_eq!(response.responses[0].partitions[0].records.as_deref(), Some(&bomb[..]), "served verbatim");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_zero_gets_no_response_and_later_answers_stay_in_order() {
    let mut broker = TestBroker::start().await;
    broker.log.create_topic("fire", 1, TopicConfig::default()).unwrap();
    let mut client = broker.client().await;
    client.send(9, &produce("fire", 0, batch(&["a"], 1), 0)).await;
    // Pipelined: two requests sent before reading; answers come in order.
    let first = client.send(9, &produce("fire", 0, batch(&["b"], 2), 1)).await;
    let second = client.send(3, &ApiVersionsRequest::default()).await;
    let p = client.recv::<ProduceRequest>(9, first).await;
    assert_eq!(p.responses[0].partition_responses[0].base_offset, 1, "the acks=0 batch was appended first");
    client.recv::<ApiVersionsRequest>(3, second).await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_acks_all_produces_are_answered_in_order_once_durable() {
    let mut broker = TestBroker::start().await;
    broker.log.create_topic("piped", 1, TopicConfig::default()).unwrap();
    let mut client = broker.client().await;
    // More produces than may wait for their fsync at once, sent before reading any answer,
    // with other requests and acks among them: the answers come back in request order.
    let produces = 3 * PRODUCES_AWAITING_FSYNC_PER_CONNECTION_MAX;
    let (api_versions_at, acks_one_at, acks_zero_at) = (produces / 3, produces / 2, produces / 2 + 1);
    let mut sent = Vec::new();
    for i in 0..produces {
        if i == api_versions_at {
            sent.push((client.send(3, &ApiVersionsRequest::default()).await, None));
            continue;
        }
        let acks = match i {
            _ if i == acks_one_at => 1,
            _ if i == acks_zero_at => 0,
            _ => -1,
        };
        let id = client.send(9, &produce("piped", 0, batch(&[&format!("v{i}")], i as i64), acks)).await;
        if acks != 0 {
            sent.push((id, Some(i)));
        }
    }
    for (id, produce_index) in sent {
        let Some(i) = produce_index else {
            client.recv::<ApiVersionsRequest>(3, id).await;
            continue;
        };
        let p = client.recv::<ProduceRequest>(9, id).await.responses[0].partition_responses[0].clone();
        assert_eq!(p.error_code, 0, "produce {i}");
        // One record each, in request order; the api-versions slot took no offset.
        let expected = i as i64 - i64::from(i > api_versions_at);
        assert_eq!(p.base_offset, expected, "produce {i} appended in request order");
    }
    let partition = broker.log.partition("piped", 0).unwrap();
    let hw = partition.high_watermark();
    assert_eq!(hw, (produces - 1) as i64, "every produce but the api-versions slot appended");
    assert!(partition.durable_offset() >= hw, "the last acks=all answer came after an fsync covering all");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_acknowledges_none_of_the_pipelined_produces() {
    let storage = SimStorage::new();
    let mut broker = TestBroker::start_simulated(&storage).await;
    broker.log.create_topic("doomed", 1, TopicConfig::default()).unwrap();
    let mut client = broker.client().await;
    storage.fail_syncs(1);
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(client.send(9, &produce("doomed", 0, batch(&[&format!("v{i}")], i), -1)).await);
    }
    for (i, id) in ids.into_iter().enumerate() {
        let p = client.recv::<ProduceRequest>(9, id).await.responses[0].partition_responses[0].clone();
        assert_eq!(p.error_code, KAFKA_STORAGE_ERROR, "produce {i}: appended or not, never acknowledged");
    }
    assert!(broker.log.partition("doomed", 0).unwrap().offline_reason().is_some(), "the partition went offline");
    let response = client.call(9, &produce("doomed", 0, batch(&["after"], 9), 1)).await;
    assert_eq!(response.responses[0].partition_responses[0].error_code, KAFKA_STORAGE_ERROR, "until a restart");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_duplicates_get_their_original_offset_and_gaps_are_refused() {
    let mut broker = TestBroker::start().await;
    broker.log.create_topic("idem", 1, TopicConfig::default()).unwrap();
    let mut client = broker.client().await;
    let init = client
        .call(4, &InitProducerIdRequest::default().with_transactional_id(None).with_transaction_timeout_ms(60_000))
        .await;
    assert_eq!(init.error_code, 0);
    let pid = init.producer_id.0;
    assert!(pid >= 0);
    assert_eq!(init.producer_epoch, 0);
    let other = client.call(4, &InitProducerIdRequest::default().with_transactional_id(None)).await;
    assert_ne!(other.producer_id.0, pid, "producer ids are unique");

    let p = produced(&mut client, &produce("idem", 0, batch(&["pre"], 1), -1)).await;
    assert_eq!(p.base_offset, 0);
    let first = idempotent_batch(pid, 0, "one");
    let p = produced(&mut client, &produce("idem", 0, first.clone(), -1)).await;
    assert_eq!((p.error_code, p.base_offset), (0, 1));
    let p = produced(&mut client, &produce("idem", 0, first, -1)).await;
    assert_eq!((p.error_code, p.base_offset), (0, 1), "a retried batch is answered with its original offset");
    assert_eq!(broker.log.partition("idem", 0).unwrap().high_watermark(), 2, "and not appended twice");
    let p = produced(&mut client, &produce("idem", 0, idempotent_batch(pid, 5, "gap"), -1)).await;
    assert_eq!(p.error_code, OUT_OF_ORDER_SEQUENCE_NUMBER);
    let p = produced(&mut client, &produce("idem", 0, idempotent_batch(pid, 1, "two"), -1)).await;
    assert_eq!((p.error_code, p.base_offset), (0, 2));

    // Re-initialising with the current id and epoch bumps the epoch (KIP-360).
    let bumped = client
        .call(
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_producer_id(pid.into())
                .with_producer_epoch(0),
        )
        .await;
    assert_eq!((bumped.producer_id.0, bumped.producer_epoch), (pid, 1));
    // Transactions are refused clearly.
    let txn = client
        .call(
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(Some(TransactionalId(crate::common::str_bytes("txn"))))
                .with_transaction_timeout_ms(60_000),
        )
        .await;
    assert_ne!(txn.error_code, 0);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_fetch_wakes_when_records_are_appended() {
    let mut broker = TestBroker::start().await;
    broker.log.create_topic("wake", 1, TopicConfig::default()).unwrap();
    let mut consumer = broker.client().await;
    let mut producer = broker.client().await;
    // The longest wait the broker allows: the answer comes from the append, not the timer.
    let waiting = consumer.send(12, &fetch("wake", &[(0, 0)], i32::MAX)).await;
    let p = produced(&mut producer, &produce("wake", 0, batch(&["hello"], 5), 1)).await;
    assert_eq!(p.error_code, 0);
    let response = consumer.recv::<FetchRequest>(12, waiting).await;
    let data = &response.responses[0].partitions[0];
    assert_eq!(data.high_watermark, 1);
    assert!(!data.records.as_ref().unwrap().is_empty());
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_limits_and_offset_out_of_range() {
    let mut broker = TestBroker::start().await;
    broker.log.create_topic("big", 2, TopicConfig::default()).unwrap();
    let mut client = broker.client().await;
    let value = "v".repeat(10_000);
    for p in 0..2 {
        for _ in 0..3 {
            produced(&mut client, &produce("big", p, batch(&[&value], 1), 1)).await;
        }
    }
    // max_bytes smaller than one batch: the first batch still comes (so nothing is stuck),
    // and the other partition gets nothing.
    let mut request = fetch("big", &[(0, 0), (1, 0)], 0);
    request.max_bytes = 100;
    let response = client.call(11, &request).await;
    let parts = &response.responses[0].partitions;
    let first = parts[0].records.as_ref().unwrap();
    assert!(first.len() > 100 && first.len() < 20_000, "exactly one whole batch, got {} bytes", first.len());
    assert!(parts[1].records.as_ref().unwrap().is_empty());
    assert_eq!(parts[1].high_watermark, 3);
    // partition_max_bytes limits each partition.
    let mut request = fetch("big", &[(0, 0), (1, 0)], 0);
    request.topics[0].partitions.iter_mut().for_each(|p| p.partition_max_bytes = 15_000);
    let response = client.call(11, &request).await;
    for part in &response.responses[0].partitions {
        let n = part.records.as_ref().unwrap().len();
        assert!(n > 10_000 && n < 15_000, "one batch per partition, got {n}");
    }
    // Past the end, or below the start after DeleteRecords.
    let response = client.call(11, &fetch("big", &[(0, 99)], 0)).await;
    let data = &response.responses[0].partitions[0];
    assert_eq!(data.error_code, OFFSET_OUT_OF_RANGE);
    assert_eq!((data.high_watermark, data.log_start_offset), (3, 0));
    // At the high watermark: nothing yet, no error.
    let response = client.call(11, &fetch("big", &[(0, 3)], 0)).await;
    assert_eq!(response.responses[0].partitions[0].error_code, 0);
    assert!(response.responses[0].partitions[0].records.as_ref().unwrap().is_empty());
    let response = client.call(11, &fetch("nope", &[(0, 0)], 0)).await;
    assert_eq!(response.responses[0].partitions[0].error_code, UNKNOWN_TOPIC_OR_PARTITION);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets_earliest_latest_by_timestamp_and_max_timestamp() {
    let mut broker = TestBroker::start().await;
    broker.log.create_topic("times", 1, TopicConfig::default()).unwrap();
    let mut client = broker.client().await;
    produced(&mut client, &produce("times", 0, batch(&["a", "b"], 1_000), -1)).await;
    produced(&mut client, &produce("times", 0, batch(&["c"], 5_000), -1)).await;
    produced(&mut client, &produce("times", 0, batch(&["d"], 3_000), -1)).await;
    let ask = |ts: i64| {
        ListOffsetsRequest::default().with_replica_id((-1).into()).with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(name("times"))
                .with_partitions(vec![ListOffsetsPartition::default().with_partition_index(0).with_timestamp(ts)]),
        ])
    };
    let mut offset = async |ts: i64, version: i16| {
        let r = client.call(version, &ask(ts)).await;
        let p = &r.topics[0].partitions[0];
        assert_eq!(p.error_code, 0);
        (p.offset, p.timestamp)
    };
    assert_eq!(offset(-2, 1).await.0, 0);
    assert_eq!(offset(-1, 5).await.0, 4);
    assert_eq!(offset(-3, 7).await, (2, 5_000));
    assert_eq!(offset(1_001, 8).await, (1, 1_001), "the first record with a timestamp >= 1001");
    assert_eq!(offset(4_000, 8).await.0, 2);
    assert_eq!(offset(9_000, 8).await.0, -1, "no record that late");
    broker.stop().await;
}
