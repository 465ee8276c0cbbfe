//! Consumer groups: FindCoordinator, ListGroups, DescribeGroups, DeleteGroups, OffsetFetch,
//! OffsetCommit (as a member, or as an admin: generation -1 and no member id, which the
//! coordinator accepts only while the group has no members), and the membership calls
//! (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) for simple consumers and tests.

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DescribeGroupsRequest, FindCoordinatorRequest, GroupId, HeartbeatRequest, JoinGroupRequest,
    LeaveGroupRequest, ListGroupsRequest, OffsetCommitRequest, OffsetFetchRequest, SyncGroupRequest,
};

use crate::error::{Error, KafkaError, check};
use crate::{Client, Connection, name, str_bytes};

/// FindCoordinator key type of a consumer group.
const KEY_TYPE_GROUP: i8 = 0;
/// MEMBER_ID_REQUIRED: JoinGroup v4+ hands out a member id to join with.
const MEMBER_ID_REQUIRED: i16 = 79;

fn group_id(group: &str) -> GroupId {
    GroupId(str_bytes(group))
}

/// A group as listed by ListGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    pub protocol_type: String,
    /// Empty when the broker is older than ListGroups v4.
    pub state: String,
}

/// A group as described by DescribeGroups.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub group_id: String,
    /// Empty, PreparingRebalance, CompletingRebalance, Stable or Dead (no such group).
    pub state: String,
    pub protocol_type: String,
    /// The assignor chosen (only while Stable).
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

/// One member of a group.
#[derive(Debug, Clone)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: i32,
    /// `None`: nothing committed for this partition.
    pub offset: Option<i64>,
    pub metadata: String,
}

/// What JoinGroup answered this member.
#[derive(Debug, Clone)]
pub struct JoinedGroup {
    pub generation: i32,
    pub member_id: String,
    pub leader: String,
    pub protocol: String,
    /// Every member's id and metadata, when this member leads.
    pub members: Vec<(String, Bytes)>,
}

impl JoinedGroup {
    pub fn is_leader(&self) -> bool {
        self.leader == self.member_id
    }
}

impl Client {
    /// The coordinator's connection for `group`.
    pub async fn coordinator(&mut self, group: &str) -> Result<&mut Connection, Error> {
        let connection = self.bootstrap_connection();
        let version = connection.version::<FindCoordinatorRequest>()?;
        let mut request = FindCoordinatorRequest::default().with_key_type(KEY_TYPE_GROUP);
        if version >= 4 {
            request.coordinator_keys = vec![str_bytes(group)];
        } else {
            request.key = str_bytes(group);
        }
        let response = connection.call_at(version, &request).await?;
        let what = || format!("cannot find the coordinator of group {group:?}");
        let node_id = if version >= 4 {
            let Some(c) = response.coordinators.first() else {
                return Err(Error::Protocol {
                    addr: self.bootstrap.clone(),
                    api: "FindCoordinator".to_string(),
                    detail: "no coordinator in the answer".to_string(),
                });
            };
            check(c.error_code, c.error_message.as_deref(), what)?;
            c.node_id.0
        } else {
            check(response.error_code, response.error_message.as_deref(), what)?;
            response.node_id.0
        };
        if self.brokers.is_empty() {
            self.metadata(Some(&[])).await?;
        }
        self.connection_to(node_id).await
    }

    /// Every group the broker knows.
    pub async fn list_groups(&mut self) -> Result<Vec<GroupListing>, Error> {
        let connection = self.bootstrap_connection();
        let response = connection.call(&ListGroupsRequest::default()).await?;
        check(response.error_code, None, || "cannot list groups".to_string())?;
        let mut groups: Vec<GroupListing> = response
            .groups
            .into_iter()
            .map(|g| GroupListing {
                group_id: g.group_id.to_string(),
                protocol_type: g.protocol_type.to_string(),
                state: g.group_state.to_string(),
            })
            .collect();
        groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        Ok(groups)
    }

    /// A group's state and members; a group that does not exist is described as Dead.
    pub async fn describe_group(&mut self, group: &str) -> Result<GroupDescription, Error> {
        let connection = self.coordinator(group).await?;
        let request = DescribeGroupsRequest::default().with_groups(vec![group_id(group)]);
        let response = connection.call(&request).await?;
        let Some(g) = response.groups.into_iter().next() else {
            return Err(Error::Protocol {
                addr: connection.addr().to_string(),
                api: "DescribeGroups".to_string(),
                detail: "no group in the answer".to_string(),
            });
        };
        // GROUP_ID_NOT_FOUND (v6) means the same as a Dead group in older versions.
        if g.error_code != 69 {
            check(g.error_code, g.error_message.as_deref(), || format!("cannot describe group {group:?}"))?;
        }
        Ok(GroupDescription {
            group_id: g.group_id.to_string(),
            state: if g.error_code == 69 { "Dead".to_string() } else { g.group_state.to_string() },
            protocol_type: g.protocol_type.to_string(),
            protocol: g.protocol_data.to_string(),
            members: g
                .members
                .into_iter()
                .map(|m| MemberDescription {
                    member_id: m.member_id.to_string(),
                    group_instance_id: m.group_instance_id.map(|i| i.to_string()),
                    client_id: m.client_id.to_string(),
                    client_host: m.client_host.to_string(),
                    metadata: m.member_metadata,
                    assignment: m.member_assignment,
                })
                .collect(),
        })
    }

    /// Deletes a group without members, and its committed offsets.
    pub async fn delete_group(&mut self, group: &str) -> Result<(), Error> {
        let connection = self.coordinator(group).await?;
        let response =
            connection.call(&DeleteGroupsRequest::default().with_groups_names(vec![group_id(group)])).await?;
        for r in &response.results {
            check(r.error_code, None, || format!("cannot delete group {group:?}"))?;
        }
        Ok(())
    }

    /// Committed offsets of `group`: of the partitions named, or every committed one (`None`).
    pub async fn offset_fetch(
        &mut self,
        group: &str,
        topics: Option<&[(String, Vec<i32>)]>,
    ) -> Result<Vec<CommittedOffset>, Error> {
        let connection = self.coordinator(group).await?;
        let version = connection.version::<OffsetFetchRequest>()?;
        let what = || format!("cannot fetch the offsets of group {group:?}");
        let mut offsets = Vec::new();
        if version >= 8 {
            let request = OffsetFetchRequest::default().with_groups(vec![
                OffsetFetchRequestGroup::default().with_group_id(group_id(group)).with_topics(topics.map(|ts| {
                    ts.iter()
                        .map(|(t, ps)| {
                            OffsetFetchRequestTopics::default().with_name(name(t)).with_partition_indexes(ps.clone())
                        })
                        .collect()
                })),
            ]);
            let response = connection.call_at(version, &request).await?;
            for g in response.groups {
                check(g.error_code, None, what)?;
                for t in g.topics {
                    for p in t.partitions {
                        check(p.error_code, None, what)?;
                        offsets.push(CommittedOffset {
                            topic: t.name.to_string(),
                            partition: p.partition_index,
                            offset: (p.committed_offset >= 0).then_some(p.committed_offset),
                            metadata: p.metadata.map(|m| m.to_string()).unwrap_or_default(),
                        });
                    }
                }
            }
        } else {
            let request = OffsetFetchRequest::default().with_group_id(group_id(group)).with_topics(topics.map(|ts| {
                ts.iter()
                    .map(|(t, ps)| {
                        OffsetFetchRequestTopic::default().with_name(name(t)).with_partition_indexes(ps.clone())
                    })
                    .collect()
            }));
            let response = connection.call_at(version, &request).await?;
            check(response.error_code, None, what)?;
            for t in response.topics {
                for p in t.partitions {
                    check(p.error_code, None, what)?;
                    offsets.push(CommittedOffset {
                        topic: t.name.to_string(),
                        partition: p.partition_index,
                        offset: (p.committed_offset >= 0).then_some(p.committed_offset),
                        metadata: p.metadata.map(|m| m.to_string()).unwrap_or_default(),
                    });
                }
            }
        }
        offsets.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(offsets)
    }

    /// Commits offsets as an administrator (generation -1, no member id), as Kafka's
    /// AlterConsumerGroupOffsets does: the coordinator refuses (UNKNOWN_MEMBER_ID) while the
    /// group has members.
    pub async fn commit_offsets(&mut self, group: &str, offsets: &[(String, i32, i64)]) -> Result<(), Error> {
        self.commit_offsets_as(group, -1, "", offsets).await
    }

    /// Commits offsets as member `member_id` of generation `generation`.
    pub async fn commit_offsets_as(
        &mut self,
        group: &str,
        generation: i32,
        member_id: &str,
        offsets: &[(String, i32, i64)],
    ) -> Result<(), Error> {
        let connection = self.coordinator(group).await?;
        let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
        for (topic, partition, offset) in offsets {
            let partition = OffsetCommitRequestPartition::default()
                .with_partition_index(*partition)
                .with_committed_offset(*offset)
                .with_committed_leader_epoch(-1)
                .with_committed_metadata(Some(str_bytes("")));
            match topics.iter_mut().find(|t| t.name.as_str() == topic) {
                Some(t) => t.partitions.push(partition),
                None => topics
                    .push(OffsetCommitRequestTopic::default().with_name(name(topic)).with_partitions(vec![partition])),
            }
        }
        let request = OffsetCommitRequest::default()
            .with_group_id(group_id(group))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(str_bytes(member_id))
            .with_retention_time_ms(-1)
            .with_topics(topics);
        let response = connection.call(&request).await?;
        for t in &response.topics {
            for p in &t.partitions {
                check(p.error_code, None, || {
                    format!(
                        "cannot commit the offset of partition {} of topic {:?} for group {group:?}",
                        p.partition_index,
                        t.name.as_str()
                    )
                })?;
            }
        }
        Ok(())
    }

    /// Joins `group` (answering MEMBER_ID_REQUIRED by rejoining with the id handed out) and
    /// waits for the rebalance to complete its join phase.
    pub async fn join_group(
        &mut self,
        group: &str,
        member_id: &str,
        protocol_type: &str,
        protocols: &[(&str, Bytes)],
        session_timeout_ms: i32,
    ) -> Result<JoinedGroup, Error> {
        let mut member_id = member_id.to_string();
        for _ in 0..2 {
            let connection = self.coordinator(group).await?;
            let request = JoinGroupRequest::default()
                .with_group_id(group_id(group))
                .with_session_timeout_ms(session_timeout_ms)
                .with_rebalance_timeout_ms(session_timeout_ms)
                .with_member_id(str_bytes(&member_id))
                .with_protocol_type(str_bytes(protocol_type))
                .with_protocols(
                    protocols
                        .iter()
                        .map(|(n, metadata)| {
                            JoinGroupRequestProtocol::default().with_name(str_bytes(n)).with_metadata(metadata.clone())
                        })
                        .collect(),
                );
            let response = connection.call(&request).await?;
            if response.error_code == MEMBER_ID_REQUIRED && member_id.is_empty() {
                member_id = response.member_id.to_string();
                continue;
            }
            check(response.error_code, None, || format!("cannot join group {group:?}"))?;
            return Ok(JoinedGroup {
                generation: response.generation_id,
                member_id: response.member_id.to_string(),
                leader: response.leader.to_string(),
                protocol: response.protocol_name.map(|p| p.to_string()).unwrap_or_default(),
                members: response.members.into_iter().map(|m| (m.member_id.to_string(), m.metadata)).collect(),
            });
        }
        Err(Error::Kafka {
            what: format!("cannot join group {group:?}"),
            error: KafkaError::from_code(MEMBER_ID_REQUIRED, None).expect("an error code"),
        })
    }

    /// SyncGroup: the leader sends every member's assignment; each member gets its own.
    pub async fn sync_group(
        &mut self,
        group: &str,
        joined: &JoinedGroup,
        protocol_type: &str,
        assignments: &[(String, Bytes)],
    ) -> Result<Bytes, Error> {
        let connection = self.coordinator(group).await?;
        let request = SyncGroupRequest::default()
            .with_group_id(group_id(group))
            .with_generation_id(joined.generation)
            .with_member_id(str_bytes(&joined.member_id))
            .with_protocol_type(Some(str_bytes(protocol_type)))
            .with_protocol_name(Some(str_bytes(&joined.protocol)))
            .with_assignments(
                assignments
                    .iter()
                    .map(|(m, a)| {
                        SyncGroupRequestAssignment::default().with_member_id(str_bytes(m)).with_assignment(a.clone())
                    })
                    .collect(),
            );
        let response = connection.call(&request).await?;
        check(response.error_code, None, || format!("cannot sync group {group:?}"))?;
        Ok(response.assignment)
    }

    /// Heartbeat: `Err` with REBALANCE_IN_PROGRESS when the member must rejoin.
    pub async fn heartbeat(&mut self, group: &str, generation: i32, member_id: &str) -> Result<(), Error> {
        let connection = self.coordinator(group).await?;
        let request = HeartbeatRequest::default()
            .with_group_id(group_id(group))
            .with_generation_id(generation)
            .with_member_id(str_bytes(member_id));
        let response = connection.call(&request).await?;
        check(response.error_code, None, || format!("heartbeat to group {group:?} failed"))
    }

    /// Leaves the group.
    pub async fn leave_group(&mut self, group: &str, member_id: &str) -> Result<(), Error> {
        let connection = self.coordinator(group).await?;
        let version = connection.version::<LeaveGroupRequest>()?;
        let mut request = LeaveGroupRequest::default().with_group_id(group_id(group));
        if version >= 3 {
            request.members = vec![MemberIdentity::default().with_member_id(str_bytes(member_id))];
        } else {
            request.member_id = str_bytes(member_id);
        }
        let response = connection.call_at(version, &request).await?;
        check(response.error_code, None, || format!("cannot leave group {group:?}"))?;
        for m in &response.members {
            check(m.error_code, None, || format!("cannot leave group {group:?}"))?;
        }
        Ok(())
    }
}
