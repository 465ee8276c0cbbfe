//! CreateTopics, DeleteTopics, CreatePartitions, DeleteRecords, DescribeCluster and the
//! config APIs.

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::*;
use runnel_log::TopicConfig;
use runnel_records::{BatchBuilder, Compression, Record};

use crate::common::{Client, TestBroker, name, str_bytes};

const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const TOPIC_ALREADY_EXISTS: i16 = 36;
const INVALID_PARTITIONS: i16 = 37;
const INVALID_REPLICATION_FACTOR: i16 = 38;
const INVALID_CONFIG: i16 = 40;
const INVALID_REQUEST: i16 = 42;
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

fn creatable(topic: &str, partitions: i32, configs: &[(&str, &str)]) -> CreatableTopic {
    CreatableTopic::default()
        .with_name(name(topic))
        .with_num_partitions(partitions)
        .with_replication_factor(-1)
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| CreatableTopicConfig::default().with_name(str_bytes(k)).with_value(Some(str_bytes(v))))
                .collect(),
        )
}

async fn describe_topic(client: &mut Client, topic: &str) -> Vec<(String, String, i8)> {
    let request = DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default().with_resource_type(RESOURCE_TOPIC).with_resource_name(str_bytes(topic)),
    ]);
    let response = client.call(4, &request).await;
    let result = &response.results[0];
    assert_eq!(result.error_code, 0, "{:?}", result.error_message);
    result
        .configs
        .iter()
        .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string()).unwrap_or_default(), c.config_source))
        .collect()
}

fn value_of(configs: &[(String, String, i8)], key: &str) -> (String, i8) {
    let (_, v, s) = configs.iter().find(|(k, _, _)| k == key).expect("config listed");
    (v.clone(), *s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_topics_with_configs_validate_only_and_errors() {
    let mut broker = TestBroker::start_with(|c| c.default_partitions = 2).await;
    let mut client = broker.client().await;
    let request = CreateTopicsRequest::default().with_timeout_ms(30_000).with_topics(vec![
        creatable("orders", 4, &[("cleanup.policy", "compact"), ("retention.ms", "1000")]),
        creatable("defaulted", -1, &[]),
        creatable("dup", 1, &[]),
        creatable("dup", 1, &[]),
        creatable("bad-config", 1, &[("retention.ms", "soon")]),
        creatable("three-replicas", 1, &[]).with_replication_factor(3),
        creatable("zero", 0, &[]),
    ]);
    let response = client.call(7, &request).await;
    let code = |topic: &str| response.topics.iter().find(|t| t.name.0.as_str() == topic).unwrap().error_code;
    assert_eq!(code("orders"), 0);
    assert_eq!(code("defaulted"), 0);
    assert_eq!(code("dup"), INVALID_REQUEST);
    assert_eq!(code("bad-config"), INVALID_CONFIG);
    assert_eq!(code("three-replicas"), INVALID_REPLICATION_FACTOR);
    assert_eq!(code("zero"), INVALID_PARTITIONS);
    let orders = &response.topics[0];
    assert_eq!(orders.num_partitions, 4);
    assert_eq!(*orders.topic_id.as_bytes(), broker.log.topic("orders").unwrap().id);
    assert_eq!(broker.log.topic("defaulted").unwrap().partitions, 2);
    assert!(broker.log.topic("dup").is_none());
    let config = broker.log.topic("orders").unwrap().config;
    assert_eq!(config.retention_ms, 1000);
    assert!(config.cleanup_policy.compacts());

    let again = client.call(5, &CreateTopicsRequest::default().with_topics(vec![creatable("orders", 1, &[])])).await;
    assert_eq!(again.topics[0].error_code, TOPIC_ALREADY_EXISTS);
    let dry = CreateTopicsRequest::default().with_validate_only(true).with_topics(vec![creatable("dry", 3, &[])]);
    assert_eq!(client.call(7, &dry).await.topics[0].error_code, 0);
    assert!(broker.log.topic("dry").is_none(), "validate_only creates nothing");

    // Configs as described: set ones come from the topic, the rest are defaults.
    let configs = describe_topic(&mut client, "orders").await;
    assert_eq!(value_of(&configs, "retention.ms"), ("1000".to_string(), SOURCE_TOPIC));
    assert_eq!(value_of(&configs, "cleanup.policy"), ("compact".to_string(), SOURCE_TOPIC));
    assert_eq!(value_of(&configs, "segment.bytes"), ((1u64 << 30).to_string(), SOURCE_DEFAULT));
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alter_configs_full_and_incremental() {
    let mut broker = TestBroker::start().await;
    broker.log.create_topic("cfg", 1, TopicConfig::default()).unwrap();
    let mut client = broker.client().await;
    use incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
    let incremental = |ops: &[(&str, i8, Option<&str>)], validate_only: bool| {
        IncrementalAlterConfigsRequest::default().with_validate_only(validate_only).with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(RESOURCE_TOPIC)
                .with_resource_name(str_bytes("cfg"))
                .with_configs(
                    ops.iter()
                        .map(|(k, op, v)| {
                            AlterableConfig::default()
                                .with_name(str_bytes(k))
                                .with_config_operation(*op)
                                .with_value(v.map(str_bytes))
                        })
                        .collect(),
                ),
        ])
    };
    let r = client
        .call(1, &incremental(&[("retention.ms", 0, Some("5000")), ("cleanup.policy", 2, Some("compact"))], false))
        .await;
    assert_eq!(r.responses[0].error_code, 0, "{:?}", r.responses[0].error_message);
    let configs = describe_topic(&mut client, "cfg").await;
    assert_eq!(value_of(&configs, "retention.ms"), ("5000".to_string(), SOURCE_TOPIC));
    assert_eq!(value_of(&configs, "cleanup.policy").0, "compact,delete");

    let r =
        client.call(1, &incremental(&[("cleanup.policy", 3, Some("compact")), ("retention.ms", 1, None)], false)).await;
    assert_eq!(r.responses[0].error_code, 0);
    let configs = describe_topic(&mut client, "cfg").await;
    assert_eq!(value_of(&configs, "cleanup.policy"), ("delete".to_string(), SOURCE_DEFAULT));
    assert_eq!(value_of(&configs, "retention.ms").1, SOURCE_DEFAULT);

    let r = client.call(1, &incremental(&[("segment.ms", 0, Some("60000"))], true)).await;
    assert_eq!(r.responses[0].error_code, 0);
    assert_eq!(broker.log.topic("cfg").unwrap().config, TopicConfig::default(), "validate_only changes nothing");
    let r = client.call(1, &incremental(&[("no.such.config", 0, Some("1"))], false)).await;
    assert_eq!(r.responses[0].error_code, INVALID_CONFIG);
    let r = client.call(1, &incremental(&[("retention.ms", 2, Some("1"))], false)).await;
    assert_eq!(r.responses[0].error_code, INVALID_CONFIG, "APPEND applies to lists only");

    // AlterConfigs replaces the whole config.
    use alter_configs_request::{AlterConfigsResource as Full, AlterableConfig as FullConfig};
    let full = AlterConfigsRequest::default().with_resources(vec![
        Full::default().with_resource_type(RESOURCE_TOPIC).with_resource_name(str_bytes("cfg")).with_configs(vec![
            FullConfig::default().with_name(str_bytes("max.message.bytes")).with_value(Some(str_bytes("2000"))),
        ]),
    ]);
    client.call(1, &incremental(&[("retention.ms", 0, Some("7"))], false)).await;
    let r = client.call(2, &full).await;
    assert_eq!(r.responses[0].error_code, 0);
    let config = broker.log.topic("cfg").unwrap().config;
    assert_eq!((config.max_message_bytes, config.retention_ms), (2000, TopicConfig::default().retention_ms));
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_configs_and_cluster_description() {
    let mut broker = TestBroker::start().await;
    let mut client = broker.client().await;
    let request = DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(RESOURCE_BROKER)
            .with_resource_name(str_bytes("0"))
            .with_configuration_keys(Some(vec![
                str_bytes("message.max.bytes"),
                str_bytes("auto.create.topics.enable"),
            ])),
        DescribeConfigsResource::default().with_resource_type(RESOURCE_TOPIC).with_resource_name(str_bytes("missing")),
    ]);
    let response = client.call(4, &request).await;
    let configs = &response.results[0].configs;
    assert_eq!(configs.len(), 2);
    let mmb = configs.iter().find(|c| c.name.as_str() == "message.max.bytes").unwrap();
    assert_eq!(mmb.value.as_ref().unwrap().as_str(), "1048588");
    assert_eq!(mmb.config_source, SOURCE_STATIC_BROKER);
    assert_eq!(response.results[1].error_code, UNKNOWN_TOPIC_OR_PARTITION);

    let cluster = client.call(1, &DescribeClusterRequest::default()).await;
    assert_eq!(cluster.error_code, 0);
    assert_eq!(cluster.brokers.len(), 1);
    assert_eq!(cluster.brokers[0].port, broker.addr.port() as i32);
    assert!(!cluster.cluster_id.is_empty());
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_records_and_topics_can_be_added_trimmed_and_deleted() {
    let mut broker = TestBroker::start().await;
    broker.log.create_topic("grow", 1, TopicConfig::default()).unwrap();
    let partition = broker.log.partition("grow", 0).unwrap();
    for i in 0..3 {
        let mut b = BatchBuilder::new();
        b.push(Record::new(None::<Vec<u8>>, Some(vec![i as u8])));
        partition.append(&b.build(Compression::None).unwrap(), 0).unwrap();
    }
    let mut client = broker.client().await;
    let grow = |count: i32, validate_only: bool| {
        CreatePartitionsRequest::default()
            .with_validate_only(validate_only)
            .with_topics(vec![CreatePartitionsTopic::default().with_name(name("grow")).with_count(count)])
    };
    assert_eq!(client.call(3, &grow(3, true)).await.results[0].error_code, 0);
    assert_eq!(broker.log.topic("grow").unwrap().partitions, 1);
    assert_eq!(client.call(3, &grow(3, false)).await.results[0].error_code, 0);
    assert_eq!(broker.log.topic("grow").unwrap().partitions, 3);
    assert_eq!(client.call(3, &grow(2, false)).await.results[0].error_code, INVALID_PARTITIONS);

    let trim = |offset: i64| {
        DeleteRecordsRequest::default().with_topics(vec![
            DeleteRecordsTopic::default()
                .with_name(name("grow"))
                .with_partitions(vec![DeleteRecordsPartition::default().with_partition_index(0).with_offset(offset)]),
        ])
    };
    let r = client.call(2, &trim(2)).await;
    let p = &r.topics[0].partitions[0];
    assert_eq!((p.error_code, p.low_watermark), (0, 2));
    assert_eq!(partition.log_start_offset(), 2);
    let r = client.call(2, &trim(99)).await;
    assert_ne!(r.topics[0].partitions[0].error_code, 0);

    let r = client
        .call(
            6,
            &DeleteTopicsRequest::default().with_topics(vec![
                DeleteTopicState::default().with_name(Some(name("grow"))),
                DeleteTopicState::default().with_name(Some(name("never"))),
            ]),
        )
        .await;
    assert_eq!(r.responses[0].error_code, 0);
    assert_eq!(r.responses[1].error_code, UNKNOWN_TOPIC_OR_PARTITION);
    assert!(broker.log.topic("grow").is_none());
    broker.log.create_topic("old-style", 1, TopicConfig::default()).unwrap();
    let r = client.call(3, &DeleteTopicsRequest::default().with_topic_names(vec![name("old-style")])).await;
    assert_eq!(r.responses[0].error_code, 0);
    assert!(broker.log.topic("old-style").is_none());
    broker.stop().await;
}
