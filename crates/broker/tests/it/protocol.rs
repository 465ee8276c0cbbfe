//! ApiVersions (and its fallback for newer clients), Metadata with auto-creation, unknown
//! APIs, and a response at every advertised version of every API served here.

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::common::{TestBroker, name};

const UNSUPPORTED_VERSION: i16 = 35;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const INVALID_TOPIC_EXCEPTION: i16 = 17;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_versions_lists_the_served_apis_at_every_version() {
    let mut broker = TestBroker::start().await;
    let mut client = broker.client().await;
    for version in 0..=4 {
        let response = client.call(version, &ApiVersionsRequest::default()).await;
        assert_eq!(response.error_code, 0);
        let range = |key: ApiKey| {
            response.api_keys.iter().find(|k| k.api_key == key as i16).map(|k| (k.min_version, k.max_version))
        };
        assert_eq!(range(ApiKey::Produce), Some((3, 13)), "v{version}");
        assert_eq!(range(ApiKey::Fetch), Some((4, 17)));
        assert_eq!(range(ApiKey::ApiVersions), Some((0, 4)));
        assert_eq!(range(ApiKey::EndTxn), None, "transactions are not advertised");
    }
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_versions_of_an_unknown_version_falls_back_to_v0_with_the_ranges() {
    let mut broker = TestBroker::start().await;
    let mut client = broker.client().await;
    // An ApiVersions v99 request as a future client would send it (flexible header v2).
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::ApiVersions as i16)
        .with_request_api_version(99)
        .with_correlation_id(42);
    let mut body = BytesMut::new();
    header.encode(&mut body, 2).unwrap();
    body.put_u8(0); // empty tagged fields of a body we cannot know
    client.send_frame(&body).await;
    let mut frame = client.read_frame().await.expect("an answer");
    let header = ResponseHeader::decode(&mut frame, 0).unwrap();
    assert_eq!(header.correlation_id, 42);
    let response = ApiVersionsResponse::decode(&mut frame, 0).unwrap();
    assert_eq!(response.error_code, UNSUPPORTED_VERSION);
    assert!(response.api_keys.iter().any(|k| k.api_key == ApiKey::ApiVersions as i16 && k.max_version == 4));
    // The client then retries with a version both know, on the same connection.
    assert_eq!(client.call(3, &ApiVersionsRequest::default()).await.error_code, 0);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_unserved_apis_are_answered_with_unsupported_version() {
    let mut broker = TestBroker::start().await;
    let mut client = broker.client().await;
    client.call(0, &ApiVersionsRequest::default()).await;
    for (api_key, version, correlation_id) in
        [(9_999i16, 0i16, 7i32), (ApiKey::EndTxn as i16, 1, 8), (ApiKey::Produce as i16, 2, 9)]
    {
        let mut body = BytesMut::new();
        body.put_i16(api_key);
        body.put_i16(version);
        body.put_i32(correlation_id);
        body.put_i16(-1); // null client id
        client.send_frame(&body).await;
        let mut frame = client.read_frame().await.expect("an answer, not a closed connection");
        assert_eq!(frame.get_i32(), correlation_id);
        assert_eq!(frame.get_i16(), UNSUPPORTED_VERSION, "api {api_key} v{version}");
    }
    assert_eq!(client.call(0, &ApiVersionsRequest::default()).await.error_code, 0, "the connection still works");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_auto_creates_topics_unless_asked_not_to() {
    let mut broker = TestBroker::start_with(|c| c.default_partitions = 3).await;
    let mut client = broker.client().await;
    let ask = |topic: &str, create: bool| {
        MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(name(topic)))]))
            .with_allow_auto_topic_creation(create)
    };
    let response = client.call(12, &ask("created", true)).await;
    assert_eq!(response.brokers.len(), 1);
    assert_eq!(response.brokers[0].port, broker.addr.port() as i32);
    assert_eq!(response.controller_id.0, 0);
    let topic = &response.topics[0];
    assert_eq!(topic.error_code, 0);
    assert_eq!(topic.partitions.len(), 3);
    assert!(!topic.topic_id.is_nil());
    assert!(topic.partitions.iter().all(|p| p.leader_id.0 == 0 && p.isr_nodes.len() == 1));
    assert_eq!(broker.log.topic("created").unwrap().id, *topic.topic_id.as_bytes());

    let response = client.call(12, &ask("not-created", false)).await;
    assert_eq!(response.topics[0].error_code, UNKNOWN_TOPIC_OR_PARTITION);
    assert!(broker.log.topic("not-created").is_none());
    let response = client.call(12, &ask("bad/name", true)).await;
    assert_eq!(response.topics[0].error_code, INVALID_TOPIC_EXCEPTION);

    // By id (v10+), and every topic (null list; an empty list in v0).
    let by_id = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_topic_id(topic.topic_id)]));
    let response = client.call(12, &by_id).await;
    assert_eq!(response.topics[0].name.as_ref().map(|n| n.0.to_string()), Some("created".to_string()));
    // (Internal topics such as __consumer_offsets are listed too.)
    let names = |topics: &[metadata_response::MetadataResponseTopic]| {
        let mut names: Vec<String> = topics.iter().filter_map(|t| t.name.as_ref()).map(|n| n.0.to_string()).collect();
        names.retain(|n| !n.starts_with("__"));
        names
    };
    let all = client.call(1, &MetadataRequest::default().with_topics(None)).await;
    assert_eq!(names(&all.topics), ["created"]);
    assert!(all.topics.iter().all(|t| t.is_internal == t.name.as_ref().unwrap().0.starts_with("__")));
    let all_v0 = client.call(0, &MetadataRequest::default().with_topics(Some(vec![]))).await;
    assert_eq!(names(&all_v0.topics), ["created"]);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_creation_can_be_switched_off() {
    let mut broker = TestBroker::start_with(|c| c.auto_create_topics = false).await;
    let mut client = broker.client().await;
    let request =
        MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(name("t")))]));
    let response = client.call(9, &request.with_allow_auto_topic_creation(true)).await;
    assert_eq!(response.topics[0].error_code, UNKNOWN_TOPIC_OR_PARTITION);
    assert!(broker.log.topic("t").is_none());
    broker.stop().await;
}

/// Sends a default request at every version the broker advertises for it and checks that
/// an answer of that version comes back: no response fails to encode at any version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_advertised_version_is_answered() {
    let mut broker = TestBroker::start().await;
    let mut client = broker.client().await;
    let advertised = client.call(3, &ApiVersionsRequest::default()).await.api_keys;
    let versions = |key: ApiKey| {
        let k = advertised.iter().find(|k| k.api_key == key as i16).expect("advertised");
        k.min_version..=k.max_version
    };
    let mut answered = 0;
    macro_rules! each_version {
        ($key:expr, $request:expr) => {
            for v in versions($key) {
                client.call(v, &$request).await;
                answered += 1;
            }
        };
    }
    each_version!(ApiKey::ApiVersions, ApiVersionsRequest::default());
    each_version!(ApiKey::Metadata, MetadataRequest::default());
    each_version!(ApiKey::Produce, ProduceRequest::default().with_acks(-1));
    each_version!(ApiKey::Fetch, FetchRequest::default().with_max_wait_ms(0));
    each_version!(ApiKey::ListOffsets, ListOffsetsRequest::default());
    each_version!(ApiKey::CreateTopics, CreateTopicsRequest::default());
    each_version!(ApiKey::DeleteTopics, DeleteTopicsRequest::default());
    each_version!(ApiKey::DeleteRecords, DeleteRecordsRequest::default());
    each_version!(ApiKey::InitProducerId, InitProducerIdRequest::default());
    each_version!(ApiKey::DescribeConfigs, DescribeConfigsRequest::default());
    each_version!(ApiKey::AlterConfigs, AlterConfigsRequest::default());
    each_version!(ApiKey::CreatePartitions, CreatePartitionsRequest::default());
    each_version!(ApiKey::IncrementalAlterConfigs, IncrementalAlterConfigsRequest::default());
    each_version!(ApiKey::DescribeCluster, DescribeClusterRequest::default());
    assert!(answered > 60);
    broker.stop().await;
}
