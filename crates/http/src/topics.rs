//! `/v1/topics`: list, create, describe (partitions with their offsets, configs), alter
//! configs, delete.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch};
use axum::{Json, Router};
use runnel_log::{Log, PARTITIONS_MAX, TopicConfig, TopicInfo};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::limits::{CONFIG_CHANGES_MAX, TOPIC_NAME_BYTES_MAX};
use crate::{Api, Shared, blocking, json_body};

pub(crate) fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/v1/topics", get(list).post(create))
        .route("/v1/topics/{topic}", get(describe).delete(delete))
        .route("/v1/topics/{topic}/configs", patch(alter_configs))
}

#[derive(Serialize)]
struct TopicSummary {
    name: String,
    partitions: u32,
    internal: bool,
}

#[derive(Serialize)]
struct TopicList {
    topics: Vec<TopicSummary>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTopic {
    name: String,
    partitions: Option<u32>,
    #[serde(default)]
    configs: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct PartitionInfo {
    partition: u32,
    log_start_offset: i64,
    high_watermark: i64,
    size_bytes: u64,
}

#[derive(Serialize)]
pub(crate) struct ConfigEntry {
    name: &'static str,
    value: String,
    is_default: bool,
}

#[derive(Serialize)]
struct TopicDescription {
    name: String,
    id: String,
    internal: bool,
    partitions: Vec<PartitionInfo>,
    configs: Vec<ConfigEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlterConfigs {
    /// Config name to its new value, or null to reset it to the default.
    configs: BTreeMap<String, Option<String>>,
}

#[derive(Serialize)]
struct ConfigList {
    configs: Vec<ConfigEntry>,
}

fn configs(log: &Log, config: &TopicConfig) -> Vec<ConfigEntry> {
    config
        .entries(&log.config().topic_defaults)
        .into_iter()
        .map(|(name, value, is_default)| ConfigEntry { name, value, is_default })
        .collect()
}

fn hex(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

fn description(log: &Log, info: &TopicInfo) -> TopicDescription {
    let partitions = (0..info.partitions)
        .filter_map(|i| log.partition(&info.name, i))
        .map(|p| PartitionInfo {
            partition: p.index(),
            log_start_offset: p.log_start_offset(),
            high_watermark: p.high_watermark(),
            size_bytes: p.size_bytes(),
        })
        .collect();
    TopicDescription {
        name: info.name.clone(),
        id: hex(&info.id),
        internal: info.internal,
        partitions,
        configs: configs(log, &info.config),
    }
}

async fn list(State(api): Shared) -> Json<TopicList> {
    let topics = api
        .log
        .topics()
        .into_iter()
        .map(|t| TopicSummary { name: t.name, partitions: t.partitions, internal: t.internal })
        .collect();
    Json(TopicList { topics })
}

async fn create(State(api): Shared, request: Request) -> Result<Response, ApiError> {
    let body: CreateTopic = json_body(request, &[]).await?;
    let partitions = body.partitions.unwrap_or(1);
    if partitions == 0 || partitions > PARTITIONS_MAX {
        return Err(ApiError::Invalid(format!("{partitions} partitions: a topic has 1 to {PARTITIONS_MAX}")));
    }
    runnel_log::validate_topic_name(&body.name)?;
    if body.name.len() > TOPIC_NAME_BYTES_MAX {
        return Err(ApiError::Invalid(format!(
            "invalid topic name: {} bytes, over the {TOPIC_NAME_BYTES_MAX} bytes the HTTP API creates",
            body.name.len()
        )));
    }
    if body.name.chars().all(|c| c == '.') {
        return Err(ApiError::Invalid(format!(
            "invalid topic name {:?}: a name made only of dots cannot be a URL path segment",
            body.name
        )));
    }
    if body.name.starts_with("__") {
        return Err(ApiError::InternalTopic(format!(
            "topic names starting with \"__\" are reserved for runnel's internal topics: {:?}",
            body.name
        )));
    }
    if body.configs.len() > CONFIG_CHANGES_MAX {
        return Err(ApiError::Invalid(format!("at most {CONFIG_CHANGES_MAX} configs per request")));
    }
    let log = api.log.clone();
    let created = blocking(move || {
        let mut config = log.config().topic_defaults.clone();
        for (name, value) in &body.configs {
            config.set(name, value).map_err(|e| ApiError::Invalid(e.to_string()))?;
        }
        let info = log.create_topic(&body.name, partitions, config)?;
        tracing::info!(topic = info.name, partitions, "created topic (HTTP)");
        Ok(description(&log, &info))
    })
    .await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn describe(State(api): Shared, Path(topic): Path<String>) -> Result<Json<TopicDescription>, ApiError> {
    let info = api.log.topic(&topic).ok_or(ApiError::UnknownTopic(topic))?;
    Ok(Json(description(&api.log, &info)))
}

async fn delete(State(api): Shared, Path(topic): Path<String>) -> Result<StatusCode, ApiError> {
    let info = api.log.topic(&topic).ok_or_else(|| ApiError::UnknownTopic(topic.clone()))?;
    if info.internal {
        return Err(ApiError::InternalTopic(format!("internal topic {topic:?} cannot be deleted")));
    }
    let log = api.log.clone();
    let name = topic.clone();
    blocking(move || Ok(log.delete_topic(&name)?)).await?;
    api.metrics.forget_topic(&topic);
    tracing::info!(topic, "deleted topic (HTTP)");
    Ok(StatusCode::NO_CONTENT)
}

async fn alter_configs(
    State(api): Shared,
    Path(topic): Path<String>,
    request: Request,
) -> Result<Json<ConfigList>, ApiError> {
    let body: AlterConfigs = json_body(request, &[]).await?;
    if body.configs.len() > CONFIG_CHANGES_MAX {
        return Err(ApiError::Invalid(format!("at most {CONFIG_CHANGES_MAX} configs per request")));
    }
    let _guard = api.config_lock.lock().await;
    let log = api.log.clone();
    let configs = blocking(move || {
        let info = log.topic(&topic).ok_or_else(|| ApiError::UnknownTopic(topic.clone()))?;
        if info.internal {
            return Err(ApiError::InternalTopic(format!("the configs of internal topic {topic:?} are fixed")));
        }
        let defaults = &log.config().topic_defaults;
        let mut config = info.config.clone();
        for (name, value) in &body.configs {
            let value = match value {
                Some(v) => v.clone(),
                None => {
                    defaults.get(name).ok_or_else(|| ApiError::Invalid(format!("unknown topic config {name:?}")))?
                }
            };
            config.set(name, &value).map_err(|e| ApiError::Invalid(e.to_string()))?;
        }
        log.alter_topic_config(&topic, config.clone())?;
        tracing::info!(topic, "altered topic config (HTTP)");
        Ok(configs(&log, &config))
    })
    .await?;
    Ok(Json(ConfigList { configs }))
}
