//! Metadata: the one broker, and topics with their partitions (led by this broker), creating
//! unknown topics on request when `auto.create.topics.enable` is on.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{MetadataRequest, MetadataResponse};
use runnel_log::{LogError, TopicInfo};

use super::{Context, Internal, blocking, code, str_bytes, topic_name, topics_by_id, uuid};

pub(super) async fn handle(cx: &Context, request: MetadataRequest, version: i16) -> Result<MetadataResponse, Internal> {
    let all = match &request.topics {
        None => true,
        Some(t) => version == 0 && t.is_empty(),
    };
    let auto_create = cx.config.auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
    let mut topics = Vec::new();
    if all {
        topics.extend(cx.log.topics().iter().map(|t| describe(cx, t)));
    } else {
        let mut by_id = None;
        for requested in request.topics.unwrap_or_default() {
            // From v10 a topic may be named by id, its name then null (or empty).
            let name = requested.name.filter(|n| !n.0.is_empty() || requested.topic_id.is_nil());
            let topic = match name {
                Some(name) => by_name(cx, name.0.as_str(), auto_create).await?,
                None => {
                    let by_id = by_id.get_or_insert_with(|| topics_by_id(&cx.log));
                    match by_id.get(requested.topic_id.as_bytes()) {
                        Some(info) => describe(cx, info),
                        None => MetadataResponseTopic::default()
                            .with_topic_id(requested.topic_id)
                            .with_error_code(code(ResponseError::UnknownTopicId)),
                    }
                }
            };
            topics.push(topic);
        }
    }
    let broker = MetadataResponseBroker::default()
        .with_node_id(cx.config.node_id.into())
        .with_host(str_bytes(cx.advertised_host.clone()))
        .with_port(cx.advertised_port);
    Ok(MetadataResponse::default()
        .with_brokers(vec![broker])
        .with_cluster_id(Some(str_bytes(cx.cluster_id.clone())))
        .with_controller_id(cx.config.node_id.into())
        .with_topics(topics))
}

async fn by_name(cx: &Context, name: &str, auto_create: bool) -> Result<MetadataResponseTopic, Internal> {
    if let Some(info) = cx.log.topic(name) {
        return Ok(describe(cx, &info));
    }
    let failed =
        |e: ResponseError| MetadataResponseTopic::default().with_name(Some(topic_name(name))).with_error_code(code(e));
    if runnel_log::validate_topic_name(name).is_err() {
        return Ok(failed(ResponseError::InvalidTopicException));
    }
    if !auto_create || name.starts_with("__") {
        return Ok(failed(ResponseError::UnknownTopicOrPartition));
    }
    let log = cx.log.clone();
    let owned = name.to_string();
    let partitions = cx.config.default_partitions;
    let created = blocking(move || {
        let defaults = log.config().topic_defaults.clone();
        match log.create_topic(&owned, partitions, defaults) {
            Err(LogError::TopicExists(_)) => log.topic(&owned).ok_or(LogError::UnknownTopic(owned)),
            other => other,
        }
    })
    .await?;
    Ok(match created {
        Ok(info) => {
            tracing::info!(topic = name, partitions, "auto-created topic");
            describe(cx, &info)
        }
        Err(e) => {
            tracing::warn!(topic = name, error = %e, "could not auto-create topic");
            failed(ResponseError::UnknownTopicOrPartition)
        }
    })
}

fn describe(cx: &Context, info: &TopicInfo) -> MetadataResponseTopic {
    let node = cx.config.node_id;
    let partitions = (0..info.partitions)
        .map(|i| {
            MetadataResponsePartition::default()
                .with_partition_index(i as i32)
                .with_leader_id(node.into())
                .with_leader_epoch(-1)
                .with_replica_nodes(vec![node.into()])
                .with_isr_nodes(vec![node.into()])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(&info.name)))
        .with_topic_id(uuid(info.id))
        .with_is_internal(info.internal)
        .with_partitions(partitions)
}
