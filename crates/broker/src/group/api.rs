//! The group APIs on the wire: each request turned into a state machine call, each answer
//! into a response valid for the request's version.

use std::collections::HashMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest,
    OffsetFetchResponse, RequestKind, ResponseKind, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tokio::time::{Duration, Instant};

use super::offsets::{offset_key, offset_value};
use super::state::{GroupState, Groups, JoinParams, JoinResult, NONE, Reply, SyncResult, code};
use super::{GROUP_ID_BYTES_MAX, GroupCoordinator, Host, OFFSET_METADATA_BYTES_MAX, WriteError, lock, offset_entry};

/// (API key, min version, max version): the versions of kafka-protocol 0.18 for each API,
/// all implemented here.
pub(crate) const SUPPORTED_VERSIONS: &[(i16, i16, i16)] = &[
    (ApiKey::OffsetCommit as i16, 2, 9),
    (ApiKey::OffsetFetch as i16, 1, 9),
    (ApiKey::FindCoordinator as i16, 0, 6),
    (ApiKey::JoinGroup as i16, 0, 9),
    (ApiKey::Heartbeat as i16, 0, 4),
    (ApiKey::LeaveGroup as i16, 0, 5),
    (ApiKey::SyncGroup as i16, 0, 5),
    (ApiKey::DescribeGroups as i16, 0, 6),
    (ApiKey::ListGroups as i16, 0, 5),
    (ApiKey::DeleteGroups as i16, 0, 2),
    (ApiKey::OffsetDelete as i16, 0, 0),
];

/// FindCoordinator key types.
const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;
/// DescribeGroups' "authorized operations not requested".
const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;
/// READ (3), DELETE (6) and DESCRIBE (8): what anyone may do to a group without ACLs.
const GROUP_AUTHORIZED_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);
/// The only group type runnel has (ListGroups v5).
const GROUP_TYPE_CLASSIC: &str = "classic";

fn s(value: impl Into<String>) -> StrBytes {
    StrBytes::from_string(value.into())
}

fn err(e: ResponseError) -> i16 {
    code(e)
}

pub(crate) async fn handle(
    c: &GroupCoordinator,
    api_key: i16,
    version: i16,
    request: RequestKind,
    host: &Host,
) -> Option<ResponseKind> {
    let key = |k: ApiKey| k as i16 == api_key;
    Some(match request {
        RequestKind::FindCoordinator(r) if key(ApiKey::FindCoordinator) => {
            ResponseKind::FindCoordinator(find_coordinator(version, r, host))
        }
        RequestKind::JoinGroup(r) if key(ApiKey::JoinGroup) => {
            ResponseKind::JoinGroup(join_group(c, version, r, host).await)
        }
        RequestKind::SyncGroup(r) if key(ApiKey::SyncGroup) => ResponseKind::SyncGroup(sync_group(c, version, r).await),
        RequestKind::Heartbeat(r) if key(ApiKey::Heartbeat) => ResponseKind::Heartbeat(heartbeat(c, r)),
        RequestKind::LeaveGroup(r) if key(ApiKey::LeaveGroup) => ResponseKind::LeaveGroup(leave_group(c, version, r)),
        RequestKind::OffsetCommit(r) if key(ApiKey::OffsetCommit) => {
            ResponseKind::OffsetCommit(offset_commit(c, r).await)
        }
        RequestKind::OffsetFetch(r) if key(ApiKey::OffsetFetch) => {
            ResponseKind::OffsetFetch(offset_fetch(c, version, r))
        }
        RequestKind::ListGroups(r) if key(ApiKey::ListGroups) => ResponseKind::ListGroups(list_groups(c, version, r)),
        RequestKind::DescribeGroups(r) if key(ApiKey::DescribeGroups) => {
            ResponseKind::DescribeGroups(describe_groups(c, version, r))
        }
        RequestKind::DeleteGroups(r) if key(ApiKey::DeleteGroups) => {
            ResponseKind::DeleteGroups(delete_groups(c, r).await)
        }
        RequestKind::OffsetDelete(r) if key(ApiKey::OffsetDelete) => {
            ResponseKind::OffsetDelete(offset_delete(c, r).await)
        }
        _ => return None,
    })
}

fn find_coordinator(version: i16, r: FindCoordinatorRequest, host: &Host) -> FindCoordinatorResponse {
    let mut response = FindCoordinatorResponse::default();
    let supported = r.key_type == KEY_TYPE_GROUP || r.key_type == KEY_TYPE_TRANSACTION;
    if version >= 4 {
        response.coordinators = r
            .coordinator_keys
            .into_iter()
            .map(|key| {
                let mut c = Coordinator::default();
                c.key = key;
                if supported {
                    c.node_id = BrokerId(host.node_id);
                    c.host = s(host.host.clone());
                    c.port = host.port;
                } else {
                    c.node_id = BrokerId(-1);
                    c.port = -1;
                    c.error_code = err(ResponseError::InvalidRequest);
                    c.error_message = Some(s(format!("unsupported coordinator key type {}", r.key_type)));
                }
                c
            })
            .collect();
    } else if supported {
        response.node_id = BrokerId(host.node_id);
        response.host = s(host.host.clone());
        response.port = host.port;
    } else {
        response.error_code = err(ResponseError::InvalidRequest);
        response.node_id = BrokerId(-1);
        response.port = -1;
        if version >= 1 {
            response.error_message = Some(s(format!("unsupported coordinator key type {}", r.key_type)));
        }
    }
    response
}

fn join_response(version: i16, result: JoinResult) -> JoinGroupResponse {
    let mut response = JoinGroupResponse::default();
    response.error_code = result.error;
    response.generation_id = result.generation;
    response.protocol_type = result.protocol_type.map(s);
    // The protocol name is nullable from v7 only.
    response.protocol_name = match result.protocol_name {
        Some(name) => Some(s(name)),
        None if version < 7 => Some(StrBytes::default()),
        None => None,
    };
    response.leader = s(result.leader);
    response.member_id = s(result.member_id);
    response.members = result
        .members
        .into_iter()
        .map(|m| {
            let mut member = JoinGroupResponseMember::default();
            member.member_id = s(m.member_id);
            member.group_instance_id = m.instance_id.map(s);
            member.metadata = m.metadata;
            member
        })
        .collect();
    response
}

async fn join_group(c: &GroupCoordinator, version: i16, r: JoinGroupRequest, host: &Host) -> JoinGroupResponse {
    if c.is_closed() {
        return join_response(version, JoinResult::error(err(ResponseError::NotCoordinator), r.member_id.to_string()));
    }
    let session_ms = u64::try_from(r.session_timeout_ms).unwrap_or(0);
    // v0 has no rebalance timeout: the session timeout is used, as in Kafka.
    let rebalance_ms = if version == 0 { session_ms } else { u64::try_from(r.rebalance_timeout_ms).unwrap_or(0) };
    let params = JoinParams {
        member_id: r.member_id.to_string(),
        instance_id: r.group_instance_id.map(|i| i.to_string()),
        client_id: host.client_id.clone(),
        client_host: host.client_host.clone(),
        session_timeout: Duration::from_millis(session_ms),
        rebalance_timeout: Duration::from_millis(rebalance_ms),
        protocol_type: r.protocol_type.to_string(),
        protocols: r.protocols.into_iter().map(|p| (p.name.to_string(), p.metadata)).collect(),
        require_known_member_id: version >= 4,
    };
    let member_id = params.member_id.clone();
    let reply = lock(&c.state).join(&r.group_id, params, &c.config, Instant::now());
    let result = match reply {
        Reply::Now(result) => result,
        Reply::Wait(rx) => {
            rx.await.unwrap_or_else(|_| JoinResult::error(err(ResponseError::UnknownMemberId), member_id))
        }
    };
    join_response(version, result)
}

async fn sync_group(c: &GroupCoordinator, version: i16, r: SyncGroupRequest) -> SyncGroupResponse {
    let result = if c.is_closed() {
        SyncResult::error(err(ResponseError::NotCoordinator))
    } else {
        let assignments = r.assignments.into_iter().map(|a| (a.member_id.to_string(), a.assignment)).collect();
        let reply = lock(&c.state).sync(
            &r.group_id,
            r.generation_id,
            &r.member_id,
            r.group_instance_id.as_deref(),
            r.protocol_type.as_deref(),
            r.protocol_name.as_deref(),
            assignments,
            Instant::now(),
        );
        match reply {
            Reply::Now(result) => result,
            Reply::Wait(rx) => rx.await.unwrap_or_else(|_| SyncResult::error(err(ResponseError::RebalanceInProgress))),
        }
    };
    let mut response = SyncGroupResponse::default();
    response.error_code = result.error;
    response.assignment = result.assignment;
    if version >= 5 && result.error == NONE {
        response.protocol_type = result.protocol_type.map(s);
        response.protocol_name = result.protocol_name.map(s);
    }
    response
}

fn heartbeat(c: &GroupCoordinator, r: HeartbeatRequest) -> HeartbeatResponse {
    let mut response = HeartbeatResponse::default();
    response.error_code = if c.is_closed() {
        err(ResponseError::NotCoordinator)
    } else {
        lock(&c.state).heartbeat(
            &r.group_id,
            r.generation_id,
            &r.member_id,
            r.group_instance_id.as_deref(),
            Instant::now(),
        )
    };
    response
}

fn leave_group(c: &GroupCoordinator, version: i16, r: LeaveGroupRequest) -> LeaveGroupResponse {
    let leaving: Vec<(String, Option<String>)> = if version >= 3 {
        r.members
            .iter()
            .map(|m| (m.member_id.to_string(), m.group_instance_id.as_ref().map(|i| i.to_string())))
            .collect()
    } else {
        vec![(r.member_id.to_string(), None)]
    };
    let mut response = LeaveGroupResponse::default();
    let result = if c.is_closed() {
        Err(err(ResponseError::NotCoordinator))
    } else {
        lock(&c.state).leave(&r.group_id, &leaving, &c.config, Instant::now())
    };
    match result {
        Err(error) => response.error_code = error,
        Ok(errors) if version >= 3 => {
            response.members = leaving
                .into_iter()
                .zip(errors)
                .map(|((member_id, instance_id), error)| {
                    let mut m = MemberResponse::default();
                    m.member_id = s(member_id);
                    m.group_instance_id = instance_id.map(s);
                    m.error_code = error;
                    m
                })
                .collect();
        }
        Ok(errors) => response.error_code = errors.first().copied().unwrap_or(NONE),
    }
    response
}

/// One partition of an OffsetCommit.
#[derive(Debug, Clone)]
pub(crate) struct CommitEntry {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

/// Partition counts of the topics named, from the log (`None`: no such topic).
fn topic_partitions<'a>(c: &GroupCoordinator, topics: impl Iterator<Item = &'a str>) -> HashMap<String, Option<u32>> {
    let mut known = HashMap::new();
    for topic in topics {
        if !known.contains_key(topic) {
            known.insert(topic.to_string(), c.log.topic(topic).map(|t| t.partitions));
        }
    }
    known
}

fn partition_exists(known: &HashMap<String, Option<u32>>, topic: &str, partition: i32) -> bool {
    let count = known.get(topic).copied().flatten();
    count.is_some_and(|n| u32::try_from(partition).is_ok_and(|p| p < n))
}

/// Commits offsets (OffsetCommit, or [`GroupCoordinator::reset_offsets`] with generation -1):
/// `Err` with a group-level error, or one error code per entry. Answers once durable.
pub(crate) async fn commit(
    c: &GroupCoordinator,
    group_id: &str,
    generation: i32,
    member_id: &str,
    instance_id: Option<&str>,
    entries: &[CommitEntry],
) -> Result<Vec<i16>, i16> {
    if c.is_closed() {
        return Err(err(ResponseError::NotCoordinator));
    }
    if group_id.len() > GROUP_ID_BYTES_MAX {
        return Err(err(ResponseError::InvalidGroupId));
    }
    let known = topic_partitions(c, entries.iter().map(|e| e.topic.as_str()));
    let Some(write) = c.write_lock(group_id).await else {
        return Err(err(ResponseError::CoordinatorNotAvailable));
    };
    let now = Instant::now();
    let mut codes = vec![NONE; entries.len()];
    let mut accepted: Vec<usize> = Vec::new();
    {
        let mut groups = lock(&c.state);
        groups.validate_commit(group_id, generation, member_id, instance_id, &c.config, now)?;
        let total = groups.offsets_total;
        let Some(group) = groups.map.get(group_id) else {
            return Err(err(ResponseError::CoordinatorNotAvailable));
        };
        let mut new_keys = 0usize;
        for (i, e) in entries.iter().enumerate() {
            codes[i] = if !partition_exists(&known, &e.topic, e.partition) {
                err(ResponseError::UnknownTopicOrPartition)
            } else if e.metadata.as_ref().is_some_and(|m| m.len() > OFFSET_METADATA_BYTES_MAX) {
                err(ResponseError::OffsetMetadataTooLarge)
            } else if !group.offsets.contains_key(&(e.topic.clone(), e.partition))
                && (group.offsets.len() + new_keys >= c.config.offsets_per_group_max
                    || total + new_keys >= c.config.offsets_max)
            {
                err(ResponseError::InvalidCommitOffsetSize)
            } else {
                if !group.offsets.contains_key(&(e.topic.clone(), e.partition)) {
                    new_keys += 1;
                }
                accepted.push(i);
                NONE
            };
        }
    }
    if accepted.is_empty() {
        return Ok(codes);
    }
    let stored: Vec<((String, i32), super::OffsetEntry)> = accepted
        .iter()
        .filter_map(|&i| entries.get(i))
        .map(|e| ((e.topic.clone(), e.partition), offset_entry(e.offset, e.leader_epoch, e.metadata.as_deref())))
        .collect();
    let records = stored
        .iter()
        .map(|((topic, partition), entry)| (offset_key(group_id, topic, *partition), Some(offset_value(entry))))
        .collect();
    let group = group_id.to_string();
    let applied = stored.into_iter().map(|(k, v)| (k, Some(v)));
    let finish = move |groups: &mut Groups, result: Result<(), &WriteError>| {
        if result.is_ok() {
            groups.apply_offsets(&group, applied, Instant::now());
        }
    };
    if let Err(e) = c.write(write, records, finish).await {
        let error = e.code();
        for i in accepted {
            if let Some(slot) = codes.get_mut(i) {
                *slot = error;
            }
        }
    }
    Ok(codes)
}

async fn offset_commit(c: &GroupCoordinator, r: OffsetCommitRequest) -> OffsetCommitResponse {
    let entries: Vec<CommitEntry> = r
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| CommitEntry {
                topic: t.name.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: p.committed_leader_epoch,
                metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
            })
        })
        .collect();
    let codes = match commit(
        c,
        &r.group_id,
        r.generation_id_or_member_epoch,
        &r.member_id,
        r.group_instance_id.as_deref(),
        &entries,
    )
    .await
    {
        Ok(codes) => codes,
        Err(error) => vec![error; entries.len()],
    };
    let mut codes = codes.into_iter();
    let mut response = OffsetCommitResponse::default();
    response.topics = r
        .topics
        .into_iter()
        .map(|t| {
            let mut topic = OffsetCommitResponseTopic::default();
            topic.partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let mut partition = OffsetCommitResponsePartition::default();
                    partition.partition_index = p.partition_index;
                    partition.error_code = codes.next().unwrap_or(NONE);
                    partition
                })
                .collect();
            topic.name = t.name;
            topic
        })
        .collect();
    response
}

/// A topic's partitions and their committed offsets (`None`: nothing committed).
type FetchedTopic = (TopicName, Vec<(i32, Option<super::OffsetEntry>)>);

/// One group's committed offsets: for the topics asked (every committed partition when `None`).
fn fetch_group(c: &GroupCoordinator, group_id: &str, topics: Option<Vec<(TopicName, Vec<i32>)>>) -> Vec<FetchedTopic> {
    let groups = lock(&c.state);
    let group = groups.map.get(group_id).filter(|g| g.state != GroupState::Dead);
    match topics {
        Some(topics) => topics
            .into_iter()
            .map(|(topic, partitions)| {
                let found = partitions
                    .into_iter()
                    .map(|p| (p, group.and_then(|g| g.offsets.get(&(topic.to_string(), p))).cloned()))
                    .collect();
                (topic, found)
            })
            .collect(),
        None => {
            let mut by_topic: Vec<FetchedTopic> = Vec::new();
            for ((topic, partition), entry) in group.map(|g| g.offsets.iter()).into_iter().flatten() {
                match by_topic.last_mut() {
                    Some((t, list)) if t.as_str() == topic => list.push((*partition, Some(entry.clone()))),
                    _ => by_topic.push((TopicName(s(topic.clone())), vec![(*partition, Some(entry.clone()))])),
                }
            }
            by_topic
        }
    }
}

/// One group's committed offsets (`fetch_group`'s answer) as OffsetFetch response topics. The
/// response spells a topic and a partition `OffsetFetchResponseTopic`/`Partition` up to v7 and
/// `OffsetFetchResponseTopics`/`Partitions` from v8, with the same fields, hence a macro. A partition
/// with nothing committed gets offset -1, leader epoch -1 and empty metadata.
macro_rules! offset_fetch_topics {
    ($fetched:expr, $topic:ident, $partition:ident) => {
        $fetched
            .into_iter()
            .map(|(name, partitions)| {
                let mut topic = $topic::default();
                topic.name = name;
                topic.partitions = partitions
                    .into_iter()
                    .map(|(index, entry)| {
                        let mut p = $partition::default();
                        p.partition_index = index;
                        p.committed_offset = entry.as_ref().map_or(-1, |e| e.offset);
                        p.committed_leader_epoch = entry.as_ref().map_or(-1, |e| e.leader_epoch);
                        p.metadata = Some(s(entry.map(|e| e.metadata).unwrap_or_default()));
                        p
                    })
                    .collect();
                topic
            })
            .collect()
    };
}

fn offset_fetch(c: &GroupCoordinator, version: i16, r: OffsetFetchRequest) -> OffsetFetchResponse {
    let mut response = OffsetFetchResponse::default();
    if version >= 8 {
        response.groups = r
            .groups
            .into_iter()
            .map(|g| {
                let topics = g.topics.map(|ts| ts.into_iter().map(|t| (t.name, t.partition_indexes)).collect());
                let mut group = OffsetFetchResponseGroup::default();
                if g.group_id.len() > GROUP_ID_BYTES_MAX {
                    group.error_code = err(ResponseError::InvalidGroupId);
                } else {
                    let fetched = fetch_group(c, &g.group_id, topics);
                    group.topics =
                        offset_fetch_topics!(fetched, OffsetFetchResponseTopics, OffsetFetchResponsePartitions);
                }
                group.group_id = g.group_id;
                group
            })
            .collect();
        return response;
    }
    if r.group_id.len() > GROUP_ID_BYTES_MAX {
        response.error_code = err(ResponseError::InvalidGroupId);
        return response;
    }
    let topics = r.topics.map(|ts| ts.into_iter().map(|t| (t.name, t.partition_indexes)).collect());
    let fetched = fetch_group(c, &r.group_id, topics);
    response.topics = offset_fetch_topics!(fetched, OffsetFetchResponseTopic, OffsetFetchResponsePartition);
    response
}

fn list_groups(c: &GroupCoordinator, version: i16, r: ListGroupsRequest) -> ListGroupsResponse {
    let states: Vec<Option<GroupState>> = r.states_filter.iter().map(|name| GroupState::parse(name)).collect();
    let type_ok =
        r.types_filter.is_empty() || r.types_filter.iter().any(|t| t.eq_ignore_ascii_case(GROUP_TYPE_CLASSIC));
    let mut response = ListGroupsResponse::default();
    if !type_ok {
        return response;
    }
    response.groups = c
        .list_groups_summary()
        .into_iter()
        .filter(|g| g.state != GroupState::Dead)
        .filter(|g| states.is_empty() || states.contains(&Some(g.state)))
        .map(|g| {
            let mut listed = ListedGroup::default();
            listed.group_id = GroupId(s(g.group_id));
            listed.protocol_type = s(g.protocol_type);
            if version >= 4 {
                listed.group_state = s(g.state.as_str());
            }
            if version >= 5 {
                listed.group_type = s(GROUP_TYPE_CLASSIC);
            }
            listed
        })
        .collect();
    response
}

fn describe_groups(c: &GroupCoordinator, version: i16, r: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let mut response = DescribeGroupsResponse::default();
    response.groups = r
        .groups
        .into_iter()
        .map(|group_id| {
            let mut described = DescribedGroup::default();
            if version >= 3 && r.include_authorized_operations {
                described.authorized_operations = GROUP_AUTHORIZED_OPERATIONS;
            } else {
                described.authorized_operations = AUTHORIZED_OPERATIONS_OMITTED;
            }
            let found = if group_id.len() > GROUP_ID_BYTES_MAX { None } else { c.describe(&group_id) };
            match found.filter(|g| g.state != GroupState::Dead) {
                Some(g) => {
                    described.group_state = s(g.state.as_str());
                    described.protocol_type = s(g.protocol_type);
                    let stable = g.state == GroupState::Stable;
                    if stable {
                        described.protocol_data = s(g.protocol_name);
                    }
                    described.members = g
                        .members
                        .into_iter()
                        .map(|m| {
                            let mut member = DescribedGroupMember::default();
                            member.member_id = s(m.member_id);
                            member.group_instance_id = m.group_instance_id.map(s);
                            member.client_id = s(m.client_id);
                            member.client_host = s(m.client_host);
                            if stable {
                                member.member_metadata = m.metadata;
                                member.member_assignment = m.assignment;
                            }
                            member
                        })
                        .collect();
                }
                None => {
                    described.group_state = s(GroupState::Dead.as_str());
                    if version >= 6 {
                        described.error_code = err(ResponseError::GroupIdNotFound);
                        described.error_message = Some(s(format!("group {} not found", group_id.as_str())));
                    }
                }
            }
            described.group_id = group_id;
            described
        })
        .collect();
    response
}

/// Tombstones for every committed offset of `keys`.
pub(crate) fn tombstones(group_id: &str, keys: &[(String, i32)]) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    keys.iter().map(|(topic, partition)| (offset_key(group_id, topic, *partition), None)).collect()
}

/// Deletes one empty group and its offsets; the error code.
async fn delete_group(c: &GroupCoordinator, group_id: &str) -> i16 {
    if group_id.len() > GROUP_ID_BYTES_MAX {
        return err(ResponseError::InvalidGroupId);
    }
    let Some(write) = c.write_lock(group_id).await else {
        return err(ResponseError::CoordinatorNotAvailable);
    };
    let keys: Vec<(String, i32)> = {
        let mut groups = lock(&c.state);
        let Some(group) = groups.map.get_mut(group_id) else {
            return err(ResponseError::GroupIdNotFound);
        };
        match group.state {
            GroupState::Dead => return err(ResponseError::GroupIdNotFound),
            GroupState::Empty => {}
            _ => return err(ResponseError::NonEmptyGroup),
        }
        // Dead while the tombstones are written: joins get COORDINATOR_NOT_AVAILABLE.
        group.set_dead(true);
        group.offsets.keys().cloned().collect()
    };
    let group = group_id.to_string();
    let count = keys.len();
    let finish = move |groups: &mut Groups, result: Result<(), &WriteError>| match result {
        Ok(()) => {
            groups.remove_group(&group);
            tracing::info!(group, offsets = count, "group deleted");
        }
        Err(_) => {
            if let Some(g) = groups.map.get_mut(&group) {
                g.set_dead(false);
            }
        }
    };
    match c.write(write, tombstones(group_id, &keys), finish).await {
        Ok(()) => NONE,
        Err(e) => e.code(),
    }
}

async fn delete_groups(c: &GroupCoordinator, r: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut response = DeleteGroupsResponse::default();
    for group_id in r.groups_names {
        let mut result = DeletableGroupResult::default();
        result.error_code =
            if c.is_closed() { err(ResponseError::NotCoordinator) } else { delete_group(c, &group_id).await };
        result.group_id = group_id;
        response.results.push(result);
    }
    response
}

async fn offset_delete(c: &GroupCoordinator, r: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let mut response = OffsetDeleteResponse::default();
    let asked: Vec<(TopicName, Vec<i32>)> =
        r.topics.into_iter().map(|t| (t.name, t.partitions.into_iter().map(|p| p.partition_index).collect())).collect();
    let group_id = r.group_id.to_string();
    let known = topic_partitions(c, asked.iter().map(|(t, _)| t.as_str()));
    let mut codes: Vec<Vec<i16>> = asked.iter().map(|(_, ps)| vec![NONE; ps.len()]).collect();
    let top_level = 'top: {
        if c.is_closed() {
            break 'top err(ResponseError::NotCoordinator);
        }
        if group_id.len() > GROUP_ID_BYTES_MAX {
            break 'top err(ResponseError::InvalidGroupId);
        }
        let Some(write) = c.write_lock(&group_id).await else {
            break 'top err(ResponseError::CoordinatorNotAvailable);
        };
        let mut deleting: Vec<(String, i32)> = Vec::new();
        {
            let groups = lock(&c.state);
            let Some(group) = groups.map.get(&group_id).filter(|g| g.state != GroupState::Dead) else {
                break 'top err(ResponseError::GroupIdNotFound);
            };
            let subscribed: Option<Option<Vec<String>>> = match group.state {
                GroupState::Empty => None,
                _ if group.protocol_type.as_deref() == Some("consumer") => Some(group.subscribed_topics()),
                _ => break 'top err(ResponseError::NonEmptyGroup),
            };
            for ((topic, partitions), topic_codes) in asked.iter().zip(codes.iter_mut()) {
                let in_use = subscribed
                    .as_ref()
                    .is_some_and(|s| s.as_ref().is_none_or(|s| s.iter().any(|t| t == topic.as_str())));
                for (partition, slot) in partitions.iter().zip(topic_codes.iter_mut()) {
                    *slot = if !partition_exists(&known, topic, *partition) {
                        err(ResponseError::UnknownTopicOrPartition)
                    } else if in_use {
                        err(ResponseError::GroupSubscribedToTopic)
                    } else {
                        if group.offsets.contains_key(&(topic.to_string(), *partition)) {
                            deleting.push((topic.to_string(), *partition));
                        }
                        NONE
                    };
                }
            }
        }
        let records = tombstones(&group_id, &deleting);
        let group = group_id.clone();
        let finish = move |groups: &mut Groups, result: Result<(), &WriteError>| {
            if result.is_ok() {
                groups.apply_offsets(&group, deleting.into_iter().map(|k| (k, None)), Instant::now());
            }
        };
        match c.write(write, records, finish).await {
            Ok(()) => NONE,
            Err(e) => e.code(),
        }
    };
    response.error_code = top_level;
    if top_level == NONE {
        response.topics = asked
            .into_iter()
            .zip(codes)
            .map(|((name, partitions), topic_codes)| {
                let mut topic = OffsetDeleteResponseTopic::default();
                topic.name = name;
                topic.partitions = partitions
                    .into_iter()
                    .zip(topic_codes)
                    .map(|(index, error)| {
                        let mut p = OffsetDeleteResponsePartition::default();
                        p.partition_index = index;
                        p.error_code = error;
                        p
                    })
                    .collect();
                topic
            })
            .collect();
    }
    response
}
