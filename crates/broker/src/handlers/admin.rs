//! Topic administration: CreateTopics, DeleteTopics, CreatePartitions, DeleteRecords, and
//! DescribeCluster (this one broker).

use std::collections::HashMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse, DeleteRecordsRequest,
    DeleteRecordsResponse, DeleteTopicsRequest, DeleteTopicsResponse, DescribeClusterRequest, DescribeClusterResponse,
};
use runnel_log::{Log, LogError, PARTITIONS_MAX, TopicConfig};

use super::configs::{SOURCE_DEFAULT, SOURCE_TOPIC};
use super::produce::append_error_code;
use super::{Context, Internal, blocking, code, str_bytes, topic_name, topics_by_id, uuid};

/// First CreateTopics version whose answer carries partitions, replication and configs.
const CREATE_TOPICS_DETAILS_SINCE: i16 = 5;
/// First DeleteTopics version naming topics by id (or name) in `topics`.
const DELETE_TOPICS_STATES_SINCE: i16 = 6;
/// DeleteRecords offset meaning "up to the high watermark".
const HIGH_WATERMARK: i64 = -1;
/// DescribeCluster endpoint type of brokers (the other, 2, is controllers).
const ENDPOINT_BROKERS: i8 = 1;

pub(crate) fn log_error_code(e: &LogError) -> ResponseError {
    match e {
        LogError::TopicExists(_) => ResponseError::TopicAlreadyExists,
        LogError::UnknownTopic(_) => ResponseError::UnknownTopicOrPartition,
        LogError::InvalidTopicName { .. } => ResponseError::InvalidTopicException,
        LogError::InvalidPartitions(_) | LogError::PartitionsCannotShrink { .. } => ResponseError::InvalidPartitions,
        LogError::Config(_) => ResponseError::InvalidConfig,
        _ => ResponseError::KafkaStorageError,
    }
}

type Failure = (ResponseError, String);

fn fail<T>(e: ResponseError, message: impl Into<String>) -> Result<T, Failure> {
    Err((e, message.into()))
}

pub(super) async fn create_topics(
    cx: &Context,
    request: CreateTopicsRequest,
    version: i16,
) -> Result<CreateTopicsResponse, Internal> {
    let log = cx.log.clone();
    let node = cx.config.node_id;
    let default_partitions = cx.config.default_partitions;
    let validate_only = request.validate_only;
    let topics = blocking(move || {
        let mut seen: HashMap<String, usize> = HashMap::new();
        for t in &request.topics {
            *seen.entry(t.name.0.to_string()).or_default() += 1;
        }
        request
            .topics
            .iter()
            .map(|topic| {
                let name = topic.name.0.as_str();
                let outcome = if seen.get(name).copied().unwrap_or(0) > 1 {
                    fail(ResponseError::InvalidRequest, "the topic is named more than once in the request")
                } else {
                    create_one(&log, topic, node, default_partitions, validate_only)
                };
                let result = CreatableTopicResult::default().with_name(topic.name.clone());
                match outcome {
                    Ok((partitions, config, id)) => {
                        if validate_only {
                            tracing::info!(topic = name, partitions, "validated topic creation");
                        } else {
                            tracing::info!(topic = name, partitions, "created topic");
                        }
                        if version < CREATE_TOPICS_DETAILS_SINCE {
                            return result;
                        }
                        let defaults = &log.config().topic_defaults;
                        let configs = config
                            .entries(defaults)
                            .into_iter()
                            .map(|(key, value, is_default)| {
                                CreatableTopicConfigs::default()
                                    .with_name(str_bytes(key))
                                    .with_value(Some(str_bytes(value)))
                                    .with_config_source(if is_default { SOURCE_DEFAULT } else { SOURCE_TOPIC })
                            })
                            .collect();
                        result
                            .with_topic_id(uuid(id))
                            .with_num_partitions(partitions as i32)
                            .with_replication_factor(1)
                            .with_configs(Some(configs))
                    }
                    Err((e, message)) => result.with_error_code(code(e)).with_error_message(Some(str_bytes(message))),
                }
            })
            .collect()
    })
    .await?;
    Ok(CreateTopicsResponse::default().with_topics(topics))
}

fn create_one(
    log: &Log,
    topic: &CreatableTopic,
    node: i32,
    default_partitions: u32,
    validate_only: bool,
) -> Result<(u32, TopicConfig, [u8; 16]), Failure> {
    let name = topic.name.0.as_str();
    runnel_log::validate_topic_name(name).map_err(|e| (ResponseError::InvalidTopicException, e.to_string()))?;
    let partitions = if topic.assignments.is_empty() {
        if !matches!(topic.replication_factor, -1 | 1) {
            return fail(
                ResponseError::InvalidReplicationFactor,
                format!("replication factor {} is larger than the 1 available broker", topic.replication_factor),
            );
        }
        match topic.num_partitions {
            -1 => default_partitions,
            n if n >= 1 && n as u32 <= PARTITIONS_MAX => n as u32,
            n => {
                return fail(
                    ResponseError::InvalidPartitions,
                    format!("{n} partitions: it must be 1 to {PARTITIONS_MAX}"),
                );
            }
        }
    } else {
        if topic.num_partitions != -1 || topic.replication_factor != -1 {
            return fail(
                ResponseError::InvalidRequest,
                "num_partitions and replication_factor must be -1 when replica assignments are given",
            );
        }
        let mut indexes: Vec<i32> = topic.assignments.iter().map(|a| a.partition_index).collect();
        indexes.sort_unstable();
        let contiguous = indexes.iter().enumerate().all(|(i, p)| *p == i as i32);
        let on_this_broker = topic.assignments.iter().all(|a| a.broker_ids.len() == 1 && a.broker_ids[0].0 == node);
        if !contiguous || !on_this_broker || indexes.len() > PARTITIONS_MAX as usize {
            return fail(
                ResponseError::InvalidReplicaAssignment,
                format!("partitions must be numbered from 0 and each placed on broker {node} alone"),
            );
        }
        indexes.len() as u32
    };
    let mut config = log.config().topic_defaults.clone();
    for c in &topic.configs {
        let Some(value) = &c.value else {
            return fail(ResponseError::InvalidConfig, format!("config {} has a null value", c.name.as_str()));
        };
        config.set(c.name.as_str(), value.as_str()).map_err(|e| (ResponseError::InvalidConfig, e.to_string()))?;
    }
    if let Some(existing) = log.topic(name) {
        return fail(ResponseError::TopicAlreadyExists, format!("topic {:?} already exists", existing.name));
    }
    if validate_only {
        return Ok((partitions, config, [0; 16]));
    }
    let info = log.create_topic(name, partitions, config).map_err(|e| (log_error_code(&e), e.to_string()))?;
    Ok((info.partitions, info.config, info.id))
}

pub(super) async fn delete_topics(
    cx: &Context,
    request: DeleteTopicsRequest,
    version: i16,
) -> Result<DeleteTopicsResponse, Internal> {
    let log = cx.log.clone();
    let responses = blocking(move || {
        // (name, id as named in the request)
        let wanted: Vec<(Option<String>, uuid::Uuid)> = if version >= DELETE_TOPICS_STATES_SINCE {
            request.topics.iter().map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id)).collect()
        } else {
            request.topic_names.iter().map(|n| (Some(n.0.to_string()), uuid::Uuid::nil())).collect()
        };
        let by_id = topics_by_id(&log);
        wanted
            .into_iter()
            .map(|(name, id)| {
                let resolved = match &name {
                    Some(n) => log.topic(n).map(|t| (t.name, t.id, t.internal)),
                    None => by_id.get(id.as_bytes()).map(|t| (t.name.clone(), t.id, t.internal)),
                };
                let result =
                    DeletableTopicResult::default().with_name(name.as_deref().map(topic_name)).with_topic_id(id);
                let outcome = match resolved {
                    None if name.is_none() => fail(ResponseError::UnknownTopicId, "unknown topic id"),
                    None => fail(ResponseError::UnknownTopicOrPartition, "unknown topic"),
                    Some((_, _, true)) => fail(ResponseError::InvalidRequest, "internal topics cannot be deleted"),
                    Some((n, topic_id, false)) => match log.delete_topic(&n) {
                        Ok(()) => {
                            tracing::info!(topic = n, "deleted topic");
                            Ok((n, topic_id))
                        }
                        Err(e) => Err((log_error_code(&e), e.to_string())),
                    },
                };
                match outcome {
                    Ok((n, topic_id)) => result.with_name(Some(topic_name(&n))).with_topic_id(uuid(topic_id)),
                    Err((e, message)) => result.with_error_code(code(e)).with_error_message(Some(str_bytes(message))),
                }
            })
            .collect()
    })
    .await?;
    Ok(DeleteTopicsResponse::default().with_responses(responses))
}

pub(super) async fn create_partitions(
    cx: &Context,
    request: CreatePartitionsRequest,
) -> Result<CreatePartitionsResponse, Internal> {
    let log = cx.log.clone();
    let node = cx.config.node_id;
    let results = blocking(move || {
        request
            .topics
            .iter()
            .map(|topic| {
                let name = topic.name.0.as_str();
                let outcome = (|| {
                    let Some(info) = log.topic(name) else {
                        return fail(ResponseError::UnknownTopicOrPartition, "unknown topic");
                    };
                    let count = u32::try_from(topic.count).unwrap_or(0);
                    if count <= info.partitions || count > PARTITIONS_MAX {
                        return fail(
                            ResponseError::InvalidPartitions,
                            format!(
                                "topic has {} partitions; the new count {} must be larger and at most {PARTITIONS_MAX}",
                                info.partitions, topic.count
                            ),
                        );
                    }
                    if let Some(assignments) = topic.assignments.as_ref().filter(|a| !a.is_empty()) {
                        let ok = assignments.len() as u32 == count - info.partitions
                            && assignments.iter().all(|a| a.broker_ids.len() == 1 && a.broker_ids[0].0 == node);
                        if !ok {
                            return fail(
                                ResponseError::InvalidReplicaAssignment,
                                format!("each new partition must be placed on broker {node} alone"),
                            );
                        }
                    }
                    if request.validate_only {
                        return Ok(());
                    }
                    log.create_partitions(name, count).map_err(|e| (log_error_code(&e), e.to_string()))?;
                    tracing::info!(topic = name, partitions = count, "added partitions");
                    Ok(())
                })();
                let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
                match outcome {
                    Ok(()) => result,
                    Err((e, message)) => result.with_error_code(code(e)).with_error_message(Some(str_bytes(message))),
                }
            })
            .collect()
    })
    .await?;
    Ok(CreatePartitionsResponse::default().with_results(results))
}

pub(super) async fn delete_records(
    cx: &Context,
    request: DeleteRecordsRequest,
) -> Result<DeleteRecordsResponse, Internal> {
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
                        let result = DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index);
                        let partition = u32::try_from(p.partition_index).ok().and_then(|i| log.partition(&topic.name.0, i));
                        let Some(partition) = partition else {
                            return result.with_error_code(code(ResponseError::UnknownTopicOrPartition)).with_low_watermark(-1);
                        };
                        let high_watermark = partition.high_watermark();
                        let offset = if p.offset == HIGH_WATERMARK { high_watermark } else { p.offset };
                        if offset < 0 || offset > high_watermark {
                            return result.with_error_code(code(ResponseError::OffsetOutOfRange)).with_low_watermark(-1);
                        }
                        match partition.delete_records_before(offset) {
                            Ok(low_watermark) => result.with_low_watermark(low_watermark),
                            Err(e) => {
                                tracing::error!(topic = partition.topic(), partition = partition.index(), error = %e, "delete records failed");
                                result.with_error_code(code(append_error_code(&e))).with_low_watermark(-1)
                            }
                        }
                    })
                    .collect();
                DeleteRecordsTopicResult::default().with_name(topic.name).with_partitions(partitions)
            })
            .collect()
    })
    .await?;
    Ok(DeleteRecordsResponse::default().with_topics(topics))
}

pub(super) fn describe_cluster(cx: &Context, request: DescribeClusterRequest) -> DescribeClusterResponse {
    let response = DescribeClusterResponse::default()
        .with_endpoint_type(request.endpoint_type)
        .with_cluster_id(str_bytes(cx.cluster_id.clone()))
        .with_controller_id(cx.config.node_id.into());
    if request.endpoint_type != ENDPOINT_BROKERS {
        return response
            .with_error_code(code(ResponseError::UnsupportedEndpointType))
            .with_error_message(Some(str_bytes("runnel has no separate controllers; ask for brokers")));
    }
    let broker = DescribeClusterBroker::default()
        .with_broker_id(cx.config.node_id.into())
        .with_host(str_bytes(cx.advertised_host.clone()))
        .with_port(cx.advertised_port);
    response.with_brokers(vec![broker])
}
