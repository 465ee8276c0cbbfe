//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs: topic configs with their real
//! values and sources (DEFAULT_CONFIG or TOPIC_CONFIG), and this broker's static settings
//! (read-only: they come from flags, environment or the config file).

use std::collections::HashSet;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult};
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, alter_configs_response,
    incremental_alter_configs_response,
};
use kafka_protocol::protocol::StrBytes;
use runnel_log::TopicConfig;

use super::admin::log_error_code;
use super::{Context, Internal, blocking, code, str_bytes};
use crate::limits::{CONNECTION_IDLE_TIMEOUT, MESSAGE_BYTES_MAX_DEFAULT, REQUEST_BYTES_MAX};

/// Config resource types (Kafka's `ConfigResource.Type`).
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// Config sources (Kafka's `DescribeConfigsResponse.ConfigSource`).
pub(super) const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
pub(super) const SOURCE_DEFAULT: i8 = 5;
/// Config types (Kafka's `ConfigDef.Type` ids in DescribeConfigs v3+).
const TYPE_BOOLEAN: i8 = 1;
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
const TYPE_LIST: i8 = 7;
/// First DescribeConfigs version with config types.
const CONFIG_TYPES_SINCE: i16 = 3;
/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

pub(super) fn config_type(name: &str) -> i8 {
    match name {
        "cleanup.policy" => TYPE_LIST,
        "compression.type" | "message.timestamp.type" => TYPE_STRING,
        "index.interval.bytes" | "max.message.bytes" | "segment.bytes" => TYPE_INT,
        _ => TYPE_LONG,
    }
}

type Failure = (ResponseError, String);

fn entry(
    name: &str,
    value: String,
    source: i8,
    read_only: bool,
    type_: i8,
    version: i16,
) -> DescribeConfigsResourceResult {
    let result = DescribeConfigsResourceResult::default()
        .with_name(str_bytes(name))
        .with_value(Some(str_bytes(value)))
        .with_read_only(read_only)
        .with_config_source(source);
    if version >= CONFIG_TYPES_SINCE { result.with_config_type(type_) } else { result }
}

/// This broker's settings as Kafka names them; all static.
fn broker_configs(cx: &Context) -> Vec<(&'static str, String, i8)> {
    let d = &cx.log.config().topic_defaults;
    let get = |n: &str| d.get(n).unwrap_or_default();
    vec![
        ("node.id", cx.config.node_id.to_string(), TYPE_INT),
        ("broker.id", cx.config.node_id.to_string(), TYPE_INT),
        ("listeners", format!("PLAINTEXT://{}", cx.config.listener), TYPE_STRING),
        ("advertised.listeners", format!("PLAINTEXT://{}:{}", cx.advertised_host, cx.advertised_port), TYPE_STRING),
        ("log.dirs", cx.log.config().data_dir.display().to_string(), TYPE_STRING),
        ("auto.create.topics.enable", cx.config.auto_create_topics.to_string(), TYPE_BOOLEAN),
        ("num.partitions", cx.config.default_partitions.to_string(), TYPE_INT),
        ("default.replication.factor", "1".to_string(), TYPE_INT),
        ("offsets.topic.replication.factor", "1".to_string(), TYPE_INT),
        ("message.max.bytes", MESSAGE_BYTES_MAX_DEFAULT.to_string(), TYPE_INT),
        ("socket.request.max.bytes", REQUEST_BYTES_MAX.to_string(), TYPE_INT),
        ("connections.max.idle.ms", CONNECTION_IDLE_TIMEOUT.as_millis().to_string(), TYPE_LONG),
        ("log.cleanup.policy", get("cleanup.policy"), TYPE_LIST),
        ("log.retention.ms", get("retention.ms"), TYPE_LONG),
        ("log.retention.bytes", get("retention.bytes"), TYPE_LONG),
        ("log.segment.bytes", get("segment.bytes"), TYPE_INT),
        ("log.roll.ms", get("segment.ms"), TYPE_LONG),
        ("log.index.interval.bytes", get("index.interval.bytes"), TYPE_INT),
        ("log.flush.interval.messages", get("flush.messages"), TYPE_LONG),
        ("log.flush.interval.ms", get("flush.ms"), TYPE_LONG),
        ("log.message.timestamp.type", get("message.timestamp.type"), TYPE_STRING),
        ("log.cleaner.delete.retention.ms", get("delete.retention.ms"), TYPE_LONG),
        ("log.cleaner.min.compaction.lag.ms", get("min.compaction.lag.ms"), TYPE_LONG),
        ("compression.type", get("compression.type"), TYPE_STRING),
    ]
}

fn is_this_broker(cx: &Context, name: &str) -> bool {
    name.is_empty() || name == cx.config.node_id.to_string()
}

/// The failure for a broker resource that names another broker.
fn not_this_broker(cx: &Context, name: &str) -> Failure {
    (ResponseError::InvalidRequest, format!("this is broker {}, not {name:?}", cx.config.node_id))
}

/// The failure for a config resource type other than topic and broker.
fn unsupported_resource_type(resource_type: i8) -> Failure {
    (ResponseError::InvalidRequest, format!("config resource type {resource_type} is not supported"))
}

pub(super) fn describe(cx: &Context, request: DescribeConfigsRequest, version: i16) -> DescribeConfigsResponse {
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            // Null or empty: every config.
            let keys: Option<HashSet<String>> = resource
                .configuration_keys
                .as_ref()
                .filter(|k| !k.is_empty())
                .map(|k| k.iter().map(|s| s.to_string()).collect());
            let wanted = |name: &str| keys.as_ref().is_none_or(|k| k.contains(name));
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let name = resource.resource_name.as_str();
            let configs: Result<Vec<_>, Failure> = match resource.resource_type {
                RESOURCE_TOPIC => match cx.log.topic(name) {
                    None => Err((ResponseError::UnknownTopicOrPartition, format!("unknown topic {name:?}"))),
                    Some(info) => Ok(info
                        .config
                        .entries(&cx.log.config().topic_defaults)
                        .into_iter()
                        .filter(|(key, _, _)| wanted(key))
                        .map(|(key, value, is_default)| {
                            let source = if is_default { SOURCE_DEFAULT } else { SOURCE_TOPIC };
                            entry(key, value, source, false, config_type(key), version)
                        })
                        .collect()),
                },
                RESOURCE_BROKER if is_this_broker(cx, name) => Ok(broker_configs(cx)
                    .into_iter()
                    .filter(|(key, _, _)| wanted(key))
                    .map(|(key, value, type_)| entry(key, value, SOURCE_STATIC_BROKER, true, type_, version))
                    .collect()),
                RESOURCE_BROKER => Err(not_this_broker(cx, name)),
                other => Err(unsupported_resource_type(other)),
            };
            match configs {
                Ok(configs) => result.with_configs(configs),
                Err((e, message)) => result.with_error_code(code(e)).with_error_message(Some(str_bytes(message))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// One config change of a topic, in the terms of both alter APIs.
enum Change {
    Set(String, String),
    Delete(String),
    Append(String, String),
    Subtract(String, String),
}

fn apply(config: &mut TopicConfig, defaults: &TopicConfig, change: &Change) -> Result<(), Failure> {
    let invalid = |e: runnel_log::ConfigError| (ResponseError::InvalidConfig, e.to_string());
    let list_only = |name: &str| {
        if config_type(name) == TYPE_LIST && TopicConfig::NAMES.contains(&name) {
            Ok(())
        } else {
            Err((
                ResponseError::InvalidConfig,
                format!("{name} is not a list; APPEND and SUBTRACT apply to lists only"),
            ))
        }
    };
    match change {
        Change::Set(name, value) => config.set(name, value).map_err(invalid),
        Change::Delete(name) => match defaults.get(name) {
            Some(default) => config.set(name, &default).map_err(invalid),
            None => Err((ResponseError::InvalidConfig, format!("unknown topic config {name:?}"))),
        },
        Change::Append(name, value) | Change::Subtract(name, value) => {
            list_only(name)?;
            let mut items: Vec<String> =
                config.get(name).unwrap_or_default().split(',').map(|s| s.trim().to_string()).collect();
            items.retain(|s| !s.is_empty());
            for v in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                if matches!(change, Change::Append(..)) {
                    if !items.iter().any(|i| i == v) {
                        items.push(v.to_string());
                    }
                } else {
                    items.retain(|i| i != v);
                }
            }
            config.set(name, &items.join(",")).map_err(invalid)
        }
    }
}

/// Applies `changes` to a topic (starting from its current config, or from the defaults for
/// AlterConfigs, which replaces the whole config) and stores it unless `validate_only`.
async fn alter_topic(
    cx: &Context,
    name: String,
    changes: Vec<Change>,
    replace: bool,
    validate_only: bool,
) -> Result<Result<(), Failure>, Internal> {
    let _guard = cx.config_lock.lock().await;
    let log = cx.log.clone();
    blocking(move || {
        let Some(info) = log.topic(&name) else {
            return Err((ResponseError::UnknownTopicOrPartition, format!("unknown topic {name:?}")));
        };
        let defaults = &log.config().topic_defaults;
        let mut seen = HashSet::new();
        for change in &changes {
            let (Change::Set(n, _) | Change::Delete(n) | Change::Append(n, _) | Change::Subtract(n, _)) = change;
            if !seen.insert(n.clone()) {
                return Err((ResponseError::InvalidRequest, format!("config {n} is changed more than once")));
            }
        }
        let mut config = if replace { defaults.clone() } else { info.config.clone() };
        for change in &changes {
            apply(&mut config, defaults, change)?;
        }
        if validate_only {
            return Ok(());
        }
        log.alter_topic_config(&name, config).map_err(|e| (log_error_code(&e), e.to_string()))?;
        tracing::info!(topic = name, "altered topic config");
        Ok(())
    })
    .await
}

fn read_only_broker(cx: &Context, name: &str) -> Failure {
    if is_this_broker(cx, name) {
        (
            ResponseError::InvalidRequest,
            "broker configs are static: set them by flag, environment or config file".to_string(),
        )
    } else {
        not_this_broker(cx, name)
    }
}

/// One resource's outcome in AlterConfigs (`replace`: the changes replace the whole config) or
/// IncrementalAlterConfigs (`replace` false): a topic gets `changes`, or the error found reading
/// them from the request; a broker refuses, its configs being static.
async fn alter_resource(
    cx: &Context,
    resource_type: i8,
    name: &str,
    changes: Result<Vec<Change>, Failure>,
    replace: bool,
    validate_only: bool,
) -> Result<Result<(), Failure>, Internal> {
    match resource_type {
        RESOURCE_TOPIC => match changes {
            Ok(changes) => alter_topic(cx, name.to_string(), changes, replace, validate_only).await,
            Err(e) => Ok(Err(e)),
        },
        RESOURCE_BROKER => Ok(Err(read_only_broker(cx, name))),
        other => Ok(Err(unsupported_resource_type(other))),
    }
}

pub(super) async fn alter(cx: &Context, request: AlterConfigsRequest) -> Result<AlterConfigsResponse, Internal> {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let changes = resource
            .configs
            .iter()
            .map(|c| match &c.value {
                Some(v) => Ok(Change::Set(c.name.to_string(), v.to_string())),
                None => Err((ResponseError::InvalidRequest, format!("config {} has a null value", c.name.as_str()))),
            })
            .collect();
        let (resource_type, name) = (resource.resource_type, resource.resource_name);
        let outcome = alter_resource(cx, resource_type, &name, changes, true, request.validate_only).await?;
        let response = alter_configs_response::AlterConfigsResourceResponse::default()
            .with_resource_type(resource_type)
            .with_resource_name(name);
        responses.push(match outcome {
            Ok(()) => response,
            Err((e, message)) => response.with_error_code(code(e)).with_error_message(Some(str_bytes(message))),
        });
    }
    Ok(AlterConfigsResponse::default().with_responses(responses))
}

pub(super) async fn incremental_alter(
    cx: &Context,
    request: IncrementalAlterConfigsRequest,
) -> Result<IncrementalAlterConfigsResponse, Internal> {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let changes = resource
            .configs
            .iter()
            .map(|c| {
                let key = c.name.to_string();
                let value = c.value.as_ref().map(StrBytes::to_string);
                match (c.config_operation, value) {
                    (OP_DELETE, _) => Ok(Change::Delete(key)),
                    (OP_SET, Some(v)) => Ok(Change::Set(key, v)),
                    (OP_APPEND, Some(v)) => Ok(Change::Append(key, v)),
                    (OP_SUBTRACT, Some(v)) => Ok(Change::Subtract(key, v)),
                    (OP_SET | OP_APPEND | OP_SUBTRACT, None) => {
                        Err((ResponseError::InvalidRequest, format!("config {key} has a null value")))
                    }
                    (op, _) => Err((ResponseError::InvalidRequest, format!("unknown config operation {op}"))),
                }
            })
            .collect();
        let (resource_type, name) = (resource.resource_type, resource.resource_name);
        let outcome = alter_resource(cx, resource_type, &name, changes, false, request.validate_only).await?;
        let response = incremental_alter_configs_response::AlterConfigsResourceResponse::default()
            .with_resource_type(resource_type)
            .with_resource_name(name);
        responses.push(match outcome {
            Ok(()) => response,
            Err((e, message)) => response.with_error_code(code(e)).with_error_message(Some(str_bytes(message))),
        });
    }
    Ok(IncrementalAlterConfigsResponse::default().with_responses(responses))
}
