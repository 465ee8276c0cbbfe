//! `/v1/groups`: consumer groups, listed and described with their members and their lag (the
//! records between each committed offset and the partition's high watermark).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::error::ApiError;
use crate::{Api, Shared};

pub(crate) fn routes() -> Router<Arc<Api>> {
    Router::new().route("/v1/groups", get(list)).route("/v1/groups/{group}", get(describe))
}

#[derive(Serialize)]
struct GroupSummary {
    group_id: String,
    state: &'static str,
    protocol_type: String,
    members: usize,
}

#[derive(Serialize)]
struct GroupList {
    groups: Vec<GroupSummary>,
}

#[derive(Serialize)]
struct Member {
    member_id: String,
    group_instance_id: Option<String>,
    client_id: String,
    client_host: String,
}

#[derive(Serialize)]
struct PartitionLag {
    topic: String,
    partition: i32,
    committed_offset: i64,
    /// Null when the topic or partition no longer exists.
    high_watermark: Option<i64>,
    lag: Option<i64>,
    metadata: String,
}

#[derive(Serialize)]
struct GroupDescription {
    group_id: String,
    state: &'static str,
    protocol_type: String,
    protocol: String,
    generation: i32,
    leader: Option<String>,
    members: Vec<Member>,
    offsets: Vec<PartitionLag>,
    /// The sum of the known lags.
    lag: i64,
}

async fn list(State(api): Shared) -> Json<GroupList> {
    let groups = api
        .groups
        .list_groups_summary()
        .into_iter()
        .map(|g| GroupSummary {
            group_id: g.group_id,
            state: g.state.as_str(),
            protocol_type: g.protocol_type,
            members: g.members,
        })
        .collect();
    Json(GroupList { groups })
}

async fn describe(State(api): Shared, Path(group): Path<String>) -> Result<Json<GroupDescription>, ApiError> {
    let d = api.groups.describe(&group).ok_or_else(|| ApiError::UnknownGroup(group.clone()))?;
    let offsets: Vec<PartitionLag> = api
        .groups
        .committed_offsets(&group)
        .into_iter()
        .map(|c| {
            let high_watermark = u32::try_from(c.partition)
                .ok()
                .and_then(|p| api.log.partition(&c.topic, p))
                .map(|p| p.high_watermark());
            PartitionLag {
                lag: high_watermark.map(|h| (h - c.offset).max(0)),
                topic: c.topic,
                partition: c.partition,
                committed_offset: c.offset,
                high_watermark,
                metadata: c.metadata,
            }
        })
        .collect();
    Ok(Json(GroupDescription {
        group_id: d.group_id,
        state: d.state.as_str(),
        protocol_type: d.protocol_type,
        protocol: d.protocol_name,
        generation: d.generation,
        leader: d.leader,
        members: d
            .members
            .into_iter()
            .map(|m| Member {
                member_id: m.member_id,
                group_instance_id: m.group_instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
            })
            .collect(),
        lag: offsets.iter().filter_map(|o| o.lag).sum(),
        offsets,
    }))
}
