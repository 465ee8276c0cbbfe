//! The consumer group coordinator driven through `GroupCoordinator::handle` with request
//! structs: membership (join, sync, heartbeat, leave, expiry, static members), committed
//! offsets and their survival across a restart of the log, and the admin APIs.
//!
//! Timeouts are short and real; tests wait for results or poll for states, never assert on
//! timing. Every response is also encoded at the request's version, so a field set that the
//! version does not have fails the test.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use runnel_broker::group::{GroupConfig, GroupCoordinator, GroupError, GroupState, Host, OFFSETS_TOPIC};
use runnel_log::{Log, LogConfig, TopicConfig};

const NONE: i16 = 0;
const TOPIC: &str = "orders";
/// Session timeout of members that must not expire during a test.
const LONG_SESSION_MS: i32 = 60_000;
/// Bound on any wait for a condition; only reached when a test fails.
const WAIT_LIMIT: Duration = Duration::from_secs(30);

fn code(e: ResponseError) -> i16 {
    e.code()
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn host() -> Host {
    Host {
        node_id: 7,
        host: "broker.example".into(),
        port: 9092,
        client_id: "test-client".into(),
        client_host: "/127.0.0.1".into(),
    }
}

fn config() -> GroupConfig {
    GroupConfig { session_timeout_ms_min: 1, initial_rebalance_delay_ms: 0, ..GroupConfig::default() }
}

/// [`config`] with committed offsets kept only briefly (Kafka's `offsets.retention.minutes`).
fn short_offsets_retention() -> GroupConfig {
    GroupConfig { offsets_retention_ms: 200, offsets_retention_check_interval_ms: 50, ..config() }
}

struct Env {
    dir: tempfile::TempDir,
    log: Arc<Log>,
    c: Arc<GroupCoordinator>,
}

impl Env {
    fn new() -> Env {
        Env::with_config(config())
    }

    fn with_config(cfg: GroupConfig) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(LogConfig::new(dir.path())).unwrap();
        log.create_topic(TOPIC, 3, TopicConfig::default()).unwrap();
        log.create_topic("payments", 2, TopicConfig::default()).unwrap();
        let c = GroupCoordinator::open_with(log.clone(), 7, cfg).unwrap();
        Env { dir, log, c }
    }

    /// Stops the coordinator and the log, and opens both again on the same directory.
    fn reopen(self) -> Env {
        self.reopen_with(config())
    }

    /// [`Env::reopen`] with the coordinator opened with `cfg`.
    fn reopen_with(self, cfg: GroupConfig) -> Env {
        let Env { dir, log, c } = self;
        c.shutdown();
        drop(c);
        log.shutdown().unwrap();
        drop(log);
        let log = Log::open(LogConfig::new(dir.path())).unwrap();
        let c = GroupCoordinator::open_with(log.clone(), 7, cfg).unwrap();
        Env { dir, log, c }
    }
}

async fn call(c: &GroupCoordinator, key: ApiKey, version: i16, request: RequestKind) -> ResponseKind {
    let response = c.handle(key as i16, version, request, &host()).await.expect("a group API");
    let mut buf = BytesMut::new();
    response.encode(&mut buf, version).expect("the response encodes at the request's version");
    response
}

/// A `consumer` protocol subscription (ConsumerProtocolSubscription v0).
fn subscription(topics: &[&str]) -> Bytes {
    let mut b = Vec::new();
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for t in topics {
        b.extend_from_slice(&(t.len() as i16).to_be_bytes());
        b.extend_from_slice(t.as_bytes());
    }
    b.extend_from_slice(&(-1i32).to_be_bytes());
    Bytes::from(b)
}

#[derive(Clone)]
struct Joiner {
    group: String,
    member_id: String,
    instance: Option<String>,
    session_ms: i32,
    rebalance_ms: i32,
    protocols: Vec<(String, Bytes)>,
    version: i16,
}

impl Joiner {
    fn new(group: &str) -> Joiner {
        Joiner {
            group: group.into(),
            member_id: String::new(),
            instance: None,
            session_ms: LONG_SESSION_MS,
            rebalance_ms: 60_000,
            protocols: vec![("range".into(), subscription(&[TOPIC]))],
            version: 5,
        }
    }
    fn instance(mut self, id: &str) -> Joiner {
        self.instance = Some(id.into());
        self
    }
    fn session(mut self, ms: i32) -> Joiner {
        self.session_ms = ms;
        self
    }
    fn rebalance(mut self, ms: i32) -> Joiner {
        self.rebalance_ms = ms;
        self
    }
    fn protocols(mut self, protocols: &[(&str, Bytes)]) -> Joiner {
        self.protocols = protocols.iter().map(|(n, m)| (n.to_string(), m.clone())).collect();
        self
    }
    fn member(mut self, id: &str) -> Joiner {
        self.member_id = id.into();
        self
    }

    async fn send(&self, c: &GroupCoordinator) -> JoinGroupResponse {
        let request = JoinGroupRequest::default()
            .with_group_id(GroupId(s(&self.group)))
            .with_session_timeout_ms(self.session_ms)
            .with_rebalance_timeout_ms(self.rebalance_ms)
            .with_member_id(s(&self.member_id))
            .with_group_instance_id(self.instance.as_deref().map(s))
            .with_protocol_type(s("consumer"))
            .with_protocols(
                self.protocols
                    .iter()
                    .map(|(n, m)| JoinGroupRequestProtocol::default().with_name(s(n)).with_metadata(m.clone()))
                    .collect(),
            );
        match call(c, ApiKey::JoinGroup, self.version, RequestKind::JoinGroup(request)).await {
            ResponseKind::JoinGroup(r) => r,
            other => panic!("unexpected {other:?}"),
        }
    }

    /// The JoinGroup v4+ handshake: the first join returns MEMBER_ID_REQUIRED and an id.
    async fn member_id(mut self, c: &GroupCoordinator) -> Joiner {
        let r = self.send(c).await;
        assert_eq!(r.error_code, code(ResponseError::MemberIdRequired));
        assert!(!r.member_id.is_empty());
        self.member_id = r.member_id.to_string();
        self
    }
}

async fn sync(
    c: &GroupCoordinator,
    group: &str,
    generation: i32,
    member: &str,
    assignments: &[(&str, &[u8])],
) -> SyncGroupResponse {
    let request = SyncGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(generation)
        .with_member_id(s(member))
        .with_protocol_type(Some(s("consumer")))
        .with_protocol_name(Some(s("range")))
        .with_assignments(
            assignments
                .iter()
                .map(|(m, a)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(s(m))
                        .with_assignment(Bytes::copy_from_slice(a))
                })
                .collect(),
        );
    match call(c, ApiKey::SyncGroup, 5, RequestKind::SyncGroup(request)).await {
        ResponseKind::SyncGroup(r) => r,
        other => panic!("unexpected {other:?}"),
    }
}

async fn heartbeat(c: &GroupCoordinator, group: &str, generation: i32, member: &str, instance: Option<&str>) -> i16 {
    let request = HeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(generation)
        .with_member_id(s(member))
        .with_group_instance_id(instance.map(s));
    match call(c, ApiKey::Heartbeat, 4, RequestKind::Heartbeat(request)).await {
        ResponseKind::Heartbeat(r) => r.error_code,
        other => panic!("unexpected {other:?}"),
    }
}

async fn commit(
    c: &GroupCoordinator,
    version: i16,
    group: &str,
    generation: i32,
    member: &str,
    offsets: &[(&str, i32, i64, Option<&str>)],
) -> Vec<(String, i32, i16)> {
    let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
    for (topic, partition, offset, metadata) in offsets {
        let p = OffsetCommitRequestPartition::default()
            .with_partition_index(*partition)
            .with_committed_offset(*offset)
            .with_committed_metadata(metadata.map(s));
        match topics.iter_mut().find(|t| t.name.as_str() == *topic) {
            Some(t) => t.partitions.push(p),
            None => {
                topics.push(OffsetCommitRequestTopic::default().with_name(TopicName(s(topic))).with_partitions(vec![p]))
            }
        }
    }
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(topics);
    match call(c, ApiKey::OffsetCommit, version, RequestKind::OffsetCommit(request)).await {
        ResponseKind::OffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.name.to_string(), p.partition_index, p.error_code)))
            .collect(),
        other => panic!("unexpected {other:?}"),
    }
}

/// OffsetFetch v7 for every committed offset: (topic, partition, offset, metadata).
async fn fetch_all(c: &GroupCoordinator, group: &str) -> Vec<(String, i32, i64, String)> {
    let request = OffsetFetchRequest::default().with_group_id(GroupId(s(group))).with_topics(None);
    match call(c, ApiKey::OffsetFetch, 7, RequestKind::OffsetFetch(request)).await {
        ResponseKind::OffsetFetch(r) => {
            assert_eq!(r.error_code, NONE);
            r.topics
                .iter()
                .flat_map(|t| {
                    t.partitions.iter().map(|p| {
                        assert_eq!(p.error_code, NONE);
                        let metadata = p.metadata.as_ref().map(|m| m.to_string()).unwrap_or_default();
                        (t.name.to_string(), p.partition_index, p.committed_offset, metadata)
                    })
                })
                .collect()
        }
        other => panic!("unexpected {other:?}"),
    }
}

async fn leave(c: &GroupCoordinator, group: &str, member: &str) -> i16 {
    let request = LeaveGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_members(vec![MemberIdentity::default().with_member_id(s(member))]);
    match call(c, ApiKey::LeaveGroup, 5, RequestKind::LeaveGroup(request)).await {
        ResponseKind::LeaveGroup(r) => {
            assert_eq!(r.error_code, NONE);
            r.members[0].error_code
        }
        other => panic!("unexpected {other:?}"),
    }
}

async fn delete_group(c: &GroupCoordinator, group: &str) -> i16 {
    let request = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(group))]);
    match call(c, ApiKey::DeleteGroups, 2, RequestKind::DeleteGroups(request)).await {
        ResponseKind::DeleteGroups(r) => r.results[0].error_code,
        other => panic!("unexpected {other:?}"),
    }
}

/// Polls until `f` holds (failing the test after `WAIT_LIMIT`).
async fn wait_until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT_LIMIT;
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Three members joined and synced: (member ids, generation, leader).
async fn stable_group_of_three(c: &Arc<GroupCoordinator>, group: &str) -> (Vec<String>, i32, String) {
    let mut joiners = Vec::new();
    for _ in 0..3 {
        joiners.push(Joiner::new(group).member_id(c).await);
    }
    let mut tasks = Vec::new();
    for j in joiners {
        let c = c.clone();
        tasks.push(tokio::spawn(async move { j.send(&c).await }));
    }
    let mut responses = Vec::new();
    for t in tasks {
        responses.push(t.await.unwrap());
    }
    let generation = responses[0].generation_id;
    let leader = responses[0].leader.to_string();
    let ids: Vec<String> = responses.iter().map(|r| r.member_id.to_string()).collect();
    for r in &responses {
        assert_eq!(r.error_code, NONE);
        assert_eq!(r.generation_id, generation);
        assert_eq!(r.leader.as_str(), leader);
        assert_eq!(r.protocol_name.as_ref().map(|p| p.as_str()), Some("range"));
        if r.member_id.as_str() == leader {
            let mut got: Vec<&str> = r.members.iter().map(|m| m.member_id.as_str()).collect();
            got.sort();
            let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
            want.sort();
            assert_eq!(got, want);
            assert!(r.members.iter().all(|m| m.metadata == subscription(&[TOPIC])));
        } else {
            assert!(r.members.is_empty(), "only the leader gets the members");
        }
    }
    assert_eq!(responses.iter().filter(|r| r.member_id.as_str() == leader).count(), 1);
    // Followers sync first and wait; the leader's assignments complete them.
    let mut waiting = Vec::new();
    for id in ids.iter().filter(|id| **id != leader) {
        let (c, group, id) = (c.clone(), group.to_string(), id.clone());
        waiting.push(tokio::spawn(async move { (id.clone(), sync(&c, &group, generation, &id, &[]).await) }));
    }
    let assignments: Vec<(String, Vec<u8>)> =
        ids.iter().map(|id| (id.clone(), format!("assignment of {id}").into_bytes())).collect();
    let refs: Vec<(&str, &[u8])> = assignments.iter().map(|(id, a)| (id.as_str(), a.as_slice())).collect();
    let r = sync(c, group, generation, &leader, &refs).await;
    assert_eq!(r.error_code, NONE);
    assert_eq!(r.assignment, Bytes::from(format!("assignment of {leader}")));
    assert_eq!(r.protocol_name.as_ref().map(|p| p.as_str()), Some("range"));
    for w in waiting {
        let (id, r) = w.await.unwrap();
        assert_eq!(r.error_code, NONE);
        assert_eq!(r.assignment, Bytes::from(format!("assignment of {id}")));
    }
    (ids, generation, leader)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_coordinator_answers_this_broker_for_every_version() {
    let env = Env::new();
    for version in 0..=6 {
        let mut request = FindCoordinatorRequest::default();
        if version >= 4 {
            request = request.with_coordinator_keys(vec![s("g1"), s("g2")]);
        } else {
            request = request.with_key(s("g1"));
        }
        let ResponseKind::FindCoordinator(r) =
            call(&env.c, ApiKey::FindCoordinator, version, RequestKind::FindCoordinator(request)).await
        else {
            panic!()
        };
        if version >= 4 {
            assert_eq!(r.coordinators.len(), 2);
            for (c, key) in r.coordinators.iter().zip(["g1", "g2"]) {
                assert_eq!(
                    (c.key.as_str(), c.node_id.0, c.host.as_str(), c.port, c.error_code),
                    (key, 7, "broker.example", 9092, NONE)
                );
            }
        } else {
            assert_eq!((r.error_code, r.node_id.0, r.host.as_str(), r.port), (NONE, 7, "broker.example", 9092));
        }
    }
    let bad = FindCoordinatorRequest::default().with_key(s("x")).with_key_type(9);
    let ResponseKind::FindCoordinator(r) =
        call(&env.c, ApiKey::FindCoordinator, 3, RequestKind::FindCoordinator(bad)).await
    else {
        panic!()
    };
    assert_eq!(r.error_code, code(ResponseError::InvalidRequest));
    assert!(
        env.c
            .handle(ApiKey::Produce as i16, 9, RequestKind::Produce(ProduceRequest::default()), &host())
            .await
            .is_none()
    );
    let versions = GroupCoordinator::supported_versions();
    assert!(versions.contains(&(ApiKey::JoinGroup as i16, 0, 9)));
    assert_eq!(versions.len(), 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_join_and_sync() {
    let env = Env::new();
    let (ids, generation, leader) = stable_group_of_three(&env.c, "g").await;
    assert_eq!(generation, 1);
    let d = env.c.describe("g").unwrap();
    assert_eq!(d.state, GroupState::Stable);
    assert_eq!(d.protocol_type, "consumer");
    assert_eq!(d.protocol_name, "range");
    assert_eq!(d.leader.as_deref(), Some(leader.as_str()));
    assert_eq!(d.members.len(), 3);
    for m in &d.members {
        assert!(ids.contains(&m.member_id));
        assert_eq!(m.client_id, "test-client");
        assert!(m.member_id.starts_with("test-client-"));
        assert_eq!(m.assignment, Bytes::from(format!("assignment of {}", m.member_id)));
    }
    for id in &ids {
        assert_eq!(heartbeat(&env.c, "g", generation, id, None).await, NONE);
    }
    assert_eq!(heartbeat(&env.c, "g", generation - 1, &ids[0], None).await, code(ResponseError::IllegalGeneration));
    assert_eq!(heartbeat(&env.c, "g", generation, "nobody", None).await, code(ResponseError::UnknownMemberId));
    assert_eq!(heartbeat(&env.c, "nogroup", generation, &ids[0], None).await, code(ResponseError::UnknownMemberId));
    // A follower rejoining with the same metadata in a stable group gets the generation back.
    let follower = ids.iter().find(|id| **id != leader).unwrap();
    let r = Joiner::new("g").member(follower).send(&env.c).await;
    assert_eq!((r.error_code, r.generation_id, r.leader.as_str()), (NONE, generation, leader.as_str()));
    assert_eq!(env.c.describe("g").unwrap().state, GroupState::Stable);

    // DescribeGroups over the wire.
    let request =
        DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g"))]).with_include_authorized_operations(true);
    let ResponseKind::DescribeGroups(r) =
        call(&env.c, ApiKey::DescribeGroups, 5, RequestKind::DescribeGroups(request)).await
    else {
        panic!()
    };
    let g = &r.groups[0];
    assert_eq!(
        (g.error_code, g.group_state.as_str(), g.protocol_type.as_str(), g.protocol_data.as_str()),
        (NONE, "Stable", "consumer", "range")
    );
    assert_eq!(g.members.len(), 3);
    assert!(g.members.iter().all(|m| m.member_metadata == subscription(&[TOPIC]) && !m.member_assignment.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_member_rebalances_the_group_and_heartbeats_say_so() {
    let env = Env::new();
    let (ids, generation, leader) = stable_group_of_three(&env.c, "g").await;
    let newcomer = Joiner::new("g").member_id(&env.c).await;
    let c = env.c.clone();
    let joining = tokio::spawn(async move { newcomer.send(&c).await });
    wait_until("the group rebalances", async || env.c.describe("g").unwrap().state == GroupState::PreparingRebalance)
        .await;
    for id in &ids {
        assert_eq!(heartbeat(&env.c, "g", generation, id, None).await, code(ResponseError::RebalanceInProgress));
    }
    // A commit of the still current generation is accepted during the join phase.
    assert_eq!(
        commit(&env.c, 8, "g", generation, &ids[0], &[(TOPIC, 0, 5, None)]).await,
        vec![(TOPIC.into(), 0, NONE)]
    );
    let mut rejoins = Vec::new();
    for id in &ids {
        let (c, j) = (env.c.clone(), Joiner::new("g").member(id));
        rejoins.push(tokio::spawn(async move { j.send(&c).await }));
    }
    let mut responses = vec![joining.await.unwrap()];
    for r in rejoins {
        responses.push(r.await.unwrap());
    }
    for r in &responses {
        assert_eq!((r.error_code, r.generation_id, r.leader.as_str()), (NONE, generation + 1, leader.as_str()));
    }
    let led = responses.iter().find(|r| r.member_id.as_str() == leader).unwrap();
    assert_eq!(led.members.len(), 4);
    // The old generation is now illegal for syncs, heartbeats and commits.
    assert_eq!(sync(&env.c, "g", generation, &ids[0], &[]).await.error_code, code(ResponseError::IllegalGeneration));
    assert_eq!(heartbeat(&env.c, "g", generation + 1, &ids[0], None).await, NONE);
    assert_eq!(
        commit(&env.c, 8, "g", generation + 1, &ids[0], &[(TOPIC, 0, 6, None)]).await,
        vec![(TOPIC.into(), 0, code(ResponseError::RebalanceInProgress))],
        "commits wait until the assignment is known"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaving_member_triggers_a_rebalance() {
    let env = Env::new();
    let (ids, generation, leader) = stable_group_of_three(&env.c, "g").await;
    assert_eq!(leave(&env.c, "g", &leader).await, NONE);
    assert_eq!(leave(&env.c, "g", &leader).await, code(ResponseError::UnknownMemberId));
    assert_eq!(env.c.describe("g").unwrap().state, GroupState::PreparingRebalance);
    let rest: Vec<&String> = ids.iter().filter(|id| **id != leader).collect();
    let mut rejoins = Vec::new();
    for id in &rest {
        assert_eq!(heartbeat(&env.c, "g", generation, id, None).await, code(ResponseError::RebalanceInProgress));
        let (c, j) = (env.c.clone(), Joiner::new("g").member(id));
        rejoins.push(tokio::spawn(async move { j.send(&c).await }));
    }
    let mut leaders = Vec::new();
    for r in rejoins {
        let r = r.await.unwrap();
        assert_eq!((r.error_code, r.generation_id), (NONE, generation + 1));
        leaders.push(r.leader.to_string());
    }
    assert_eq!(leaders[0], leaders[1]);
    assert!(rest.iter().any(|id| **id == leaders[0]), "a remaining member leads");
    // Everyone leaves: the group is empty, with a new generation.
    for id in &rest {
        assert_eq!(leave(&env.c, "g", id).await, NONE);
    }
    let d = env.c.describe("g").unwrap();
    assert_eq!((d.state, d.members.len(), d.generation), (GroupState::Empty, 0, generation + 2));

    // LeaveGroup v0-2 carries one member id and a top-level error.
    let request = LeaveGroupRequest::default().with_group_id(GroupId(s("g"))).with_member_id(s("ghost"));
    let ResponseKind::LeaveGroup(r) = call(&env.c, ApiKey::LeaveGroup, 1, RequestKind::LeaveGroup(request)).await
    else {
        panic!()
    };
    assert_eq!(r.error_code, code(ResponseError::UnknownMemberId));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_member_expires_after_its_session_timeout() {
    let env = Env::new();
    let a = Joiner::new("g").member_id(&env.c).await;
    let b = Joiner::new("g").session(1_000).member_id(&env.c).await;
    let (c1, c2) = (env.c.clone(), env.c.clone());
    let (ja, jb) = (a.clone(), b.clone());
    let ra = tokio::spawn(async move { ja.send(&c1).await });
    let rb = tokio::spawn(async move { jb.send(&c2).await });
    let (ra, rb) = (ra.await.unwrap(), rb.await.unwrap());
    let generation = ra.generation_id;
    assert_eq!(rb.generation_id, generation);
    let leader = ra.leader.to_string();
    let follower = if leader == a.member_id { b.member_id.clone() } else { a.member_id.clone() };
    let (c, f) = (env.c.clone(), follower.clone());
    let follower_sync = tokio::spawn(async move { sync(&c, "g", generation, &f, &[]).await });
    assert_eq!(
        sync(&env.c, "g", generation, &leader, &[(&a.member_id, b"A"), (&b.member_id, b"B")]).await.error_code,
        NONE
    );
    assert_eq!(follower_sync.await.unwrap().error_code, NONE);
    // Only a heartbeats; b's session (1 s) runs out and the group rebalances without it.
    wait_until("b is expired", async || {
        let hb = heartbeat(&env.c, "g", generation, &a.member_id, None).await;
        assert!(hb == NONE || hb == code(ResponseError::RebalanceInProgress));
        env.c.describe("g").unwrap().members.iter().all(|m| m.member_id != b.member_id)
    })
    .await;
    let r = Joiner::new("g").member(&a.member_id).send(&env.c).await;
    assert_eq!((r.error_code, r.generation_id, r.leader.as_str()), (NONE, generation + 1, a.member_id.as_str()));
    assert_eq!(r.members.len(), 1);
    assert_eq!(heartbeat(&env.c, "g", generation, &b.member_id, None).await, code(ResponseError::UnknownMemberId));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_that_do_not_rejoin_in_the_rebalance_timeout_are_removed() {
    let env = Env::new();
    let a = Joiner::new("g").rebalance(200).member_id(&env.c).await;
    let r = a.send(&env.c).await;
    assert_eq!((r.error_code, r.generation_id), (NONE, 1));
    assert_eq!(sync(&env.c, "g", 1, &a.member_id, &[(&a.member_id, b"x")]).await.error_code, NONE);
    // b joins; a never rejoins; after the rebalance timeout b is alone in generation 2.
    let b = Joiner::new("g").rebalance(200).member_id(&env.c).await;
    let r = b.send(&env.c).await;
    assert_eq!((r.error_code, r.generation_id, r.leader.as_str()), (NONE, 2, b.member_id.as_str()));
    assert_eq!(r.members.len(), 1);
    assert_eq!(heartbeat(&env.c, "g", 1, &a.member_id, None).await, code(ResponseError::UnknownMemberId));
    // The last member leaving empties the group at once.
    assert_eq!(leave(&env.c, "g", &b.member_id).await, NONE);
    assert_eq!(env.c.describe("g").unwrap().state, GroupState::Empty);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_member_id_expires_and_unknown_ids_are_refused() {
    let env = Env::new();
    let r = Joiner::new("g").member("made-up").send(&env.c).await;
    assert_eq!(r.error_code, code(ResponseError::UnknownMemberId));
    // b got a member id but never joins: a's join waits for it until b's id expires (its
    // session timeout), then completes alone.
    let a = Joiner::new("g").member_id(&env.c).await;
    let b = Joiner::new("g").session(100).member_id(&env.c).await;
    let r = a.send(&env.c).await;
    assert_eq!((r.error_code, r.generation_id, r.members.len()), (NONE, 1, 1));
    let r = b.send(&env.c).await;
    assert_eq!(r.error_code, code(ResponseError::UnknownMemberId), "an expired member id is unknown");
    // JoinGroup v3 has no handshake.
    let mut old = Joiner::new("g2");
    old.version = 3;
    let r = old.send(&env.c).await;
    assert_eq!((r.error_code, r.generation_id), (NONE, 1));
    assert_eq!(r.members.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_member_rejoins_without_a_rebalance_and_fences_its_old_id() {
    let env = Env::new();
    let a = Joiner::new("g").instance("host-a");
    let r = a.send(&env.c).await;
    assert_eq!((r.error_code, r.generation_id), (NONE, 1), "static members need no member id handshake");
    let a = a.member(r.member_id.as_str());
    assert!(a.member_id.starts_with("host-a-"));
    assert_eq!(sync(&env.c, "g", 1, &a.member_id, &[(&a.member_id, b"all")]).await.error_code, NONE);
    let b = Joiner::new("g").instance("host-b");
    let c = env.c.clone();
    let jb = b.clone();
    let joining = tokio::spawn(async move { jb.send(&c).await });
    wait_until("the group rebalances", async || env.c.describe("g").unwrap().state == GroupState::PreparingRebalance)
        .await;
    let ra = a.send(&env.c).await;
    let rb = joining.await.unwrap();
    assert_eq!((ra.error_code, ra.generation_id, rb.generation_id), (NONE, 2, 2));
    let b = b.member(rb.member_id.as_str());
    let c = env.c.clone();
    let bid = b.member_id.clone();
    let follower = tokio::spawn(async move { sync(&c, "g", 2, &bid, &[]).await });
    let r = sync(&env.c, "g", 2, &a.member_id, &[(&a.member_id, b"p0"), (&b.member_id, b"p1")]).await;
    assert_eq!((r.error_code, &r.assignment[..]), (NONE, &b"p0"[..]));
    assert_eq!(follower.await.unwrap().assignment, Bytes::from_static(b"p1"));

    // b restarts: same instance id, empty member id. No rebalance; a new id; same generation.
    let restarted = Joiner::new("g").instance("host-b").send(&env.c).await;
    assert_eq!((restarted.error_code, restarted.generation_id), (NONE, 2));
    assert_ne!(restarted.member_id.as_str(), b.member_id);
    assert_eq!(restarted.leader.as_str(), a.member_id);
    assert_eq!(env.c.describe("g").unwrap().state, GroupState::Stable);
    let new_b = restarted.member_id.to_string();
    let r = sync(&env.c, "g", 2, &new_b, &[]).await;
    assert_eq!((r.error_code, &r.assignment[..]), (NONE, &b"p1"[..]), "the assignment is kept");
    assert_eq!(heartbeat(&env.c, "g", 2, &new_b, Some("host-b")).await, NONE);
    assert_eq!(heartbeat(&env.c, "g", 2, &a.member_id, Some("host-a")).await, NONE);
    // The old incarnation is fenced.
    assert_eq!(heartbeat(&env.c, "g", 2, &b.member_id, Some("host-b")).await, code(ResponseError::FencedInstanceId));
    let r = b.send(&env.c).await;
    assert_eq!(r.error_code, code(ResponseError::FencedInstanceId));
    assert_eq!(
        commit(&env.c, 8, "g", 2, &b.member_id, &[(TOPIC, 0, 1, None)]).await[0].2,
        code(ResponseError::UnknownMemberId)
    );
    assert_eq!(env.c.describe("g").unwrap().generation, 2);
    // Removal by instance id (LeaveGroup v3+ with an empty member id).
    let request = LeaveGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_members(vec![MemberIdentity::default().with_group_instance_id(Some(s("host-b")))]);
    let ResponseKind::LeaveGroup(r) = call(&env.c, ApiKey::LeaveGroup, 4, RequestKind::LeaveGroup(request)).await
    else {
        panic!()
    };
    assert_eq!(r.members[0].error_code, NONE);
    assert_eq!(env.c.describe("g").unwrap().members.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocols_are_chosen_among_those_every_member_supports() {
    let env = Env::new();
    let sub = subscription(&[TOPIC]);
    let a = Joiner::new("g")
        .protocols(&[("cooperative-sticky", sub.clone()), ("range", sub.clone())])
        .member_id(&env.c)
        .await;
    let b = Joiner::new("g").protocols(&[("roundrobin", sub.clone()), ("range", sub.clone())]).member_id(&env.c).await;
    let odd = Joiner::new("g").protocols(&[("mine", sub.clone())]).member_id(&env.c).await;
    let (c1, c2) = (env.c.clone(), env.c.clone());
    let ta = tokio::spawn(async move { a.send(&c1).await });
    let tb = tokio::spawn(async move { b.send(&c2).await });
    wait_until("a member joined", async || env.c.describe("g").is_some_and(|d| !d.members.is_empty())).await;
    let r = odd.send(&env.c).await;
    assert_eq!(r.error_code, code(ResponseError::InconsistentGroupProtocol));
    // The odd member's id stays pending until it expires; leave to let the others complete.
    assert_eq!(leave(&env.c, "g", &odd.member_id).await, NONE);
    let (ra, rb) = (ta.await.unwrap(), tb.await.unwrap());
    assert_eq!(ra.protocol_name.as_ref().map(|p| p.as_str()), Some("range"));
    assert_eq!(rb.protocol_name.as_ref().map(|p| p.as_str()), Some("range"));
    let request = JoinGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_session_timeout_ms(10_000)
        .with_member_id(s(""))
        .with_protocol_type(s("connect"))
        .with_protocols(vec![JoinGroupRequestProtocol::default().with_name(s("range")).with_metadata(sub)]);
    let ResponseKind::JoinGroup(r) = call(&env.c, ApiKey::JoinGroup, 9, RequestKind::JoinGroup(request)).await else {
        panic!()
    };
    assert_eq!(r.error_code, code(ResponseError::InconsistentGroupProtocol));
    let bad_session = Joiner::new("g3").session(LONG_SESSION_MS * 100).send(&env.c).await;
    assert_eq!(bad_session.error_code, code(ResponseError::InvalidSessionTimeout));
    let no_group = Joiner::new("").send(&env.c).await;
    assert_eq!(no_group.error_code, code(ResponseError::InvalidGroupId));
    // Old versions: protocol_name non-nullable on errors.
    let mut v0 = Joiner::new("");
    v0.version = 0;
    assert_eq!(v0.send(&env.c).await.error_code, code(ResponseError::InvalidGroupId));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_are_committed_fetched_and_survive_a_restart() {
    let env = Env::new();
    // A simple consumer (generation -1, no member id) may commit while the group is empty.
    let r = commit(
        &env.c,
        2,
        "simple",
        -1,
        "",
        &[(TOPIC, 0, 42, Some("meta")), (TOPIC, 2, 7, None), ("payments", 1, 3, None)],
    )
    .await;
    assert!(r.iter().all(|(_, _, e)| *e == NONE), "{r:?}");
    let r = commit(&env.c, 9, "simple", -1, "", &[(TOPIC, 0, 43, Some("newer"))]).await;
    assert_eq!(r, vec![(TOPIC.into(), 0, NONE)]);
    let r =
        commit(&env.c, 9, "simple", -1, "", &[("nope", 0, 1, None), (TOPIC, 3, 1, None), (TOPIC, -1, 1, None)]).await;
    assert!(r.iter().all(|(_, _, e)| *e == code(ResponseError::UnknownTopicOrPartition)), "{r:?}");
    let long = "m".repeat(5000);
    let r = commit(&env.c, 9, "simple", -1, "", &[(TOPIC, 1, 1, Some(&long))]).await;
    assert_eq!(r[0].2, code(ResponseError::OffsetMetadataTooLarge));
    assert_eq!(
        commit(&env.c, 9, "unknown", 3, "someone", &[(TOPIC, 0, 1, None)]).await[0].2,
        code(ResponseError::IllegalGeneration)
    );
    let want = vec![
        ("orders".to_string(), 0, 43, "newer".to_string()),
        ("orders".to_string(), 2, 7, String::new()),
        ("payments".to_string(), 1, 3, String::new()),
    ];
    let mut got = fetch_all(&env.c, "simple").await;
    got.sort();
    assert_eq!(got, want);

    // A real group's members commit with their generation; outsiders are refused.
    let (ids, generation, _) = stable_group_of_three(&env.c, "members").await;
    assert_eq!(commit(&env.c, 8, "members", generation, &ids[1], &[(TOPIC, 1, 100, None)]).await[0].2, NONE);
    assert_eq!(
        commit(&env.c, 8, "members", -1, "", &[(TOPIC, 1, 0, None)]).await[0].2,
        code(ResponseError::UnknownMemberId),
        "a non-member cannot commit while the group has members"
    );
    assert_eq!(
        commit(&env.c, 8, "members", generation + 5, &ids[1], &[(TOPIC, 1, 0, None)]).await[0].2,
        code(ResponseError::IllegalGeneration)
    );
    assert!(matches!(env.c.reset_offsets("members", vec![(TOPIC.into(), 1, 0)]).await, Err(GroupError::NotEmpty(_))));

    // OffsetFetch v1 (explicit partitions) and v8 (several groups).
    let request = OffsetFetchRequest::default().with_group_id(GroupId(s("simple"))).with_topics(Some(vec![
        OffsetFetchRequestTopic::default().with_name(TopicName(s(TOPIC))).with_partition_indexes(vec![0, 1]),
    ]));
    let ResponseKind::OffsetFetch(r) = call(&env.c, ApiKey::OffsetFetch, 1, RequestKind::OffsetFetch(request)).await
    else {
        panic!()
    };
    let offsets: Vec<(i32, i64)> =
        r.topics[0].partitions.iter().map(|p| (p.partition_index, p.committed_offset)).collect();
    assert_eq!(offsets, vec![(0, 43), (1, -1)]);
    let request = OffsetFetchRequest::default().with_groups(vec![
        OffsetFetchRequestGroup::default().with_group_id(GroupId(s("members"))).with_topics(None),
        OffsetFetchRequestGroup::default().with_group_id(GroupId(s("simple"))).with_topics(Some(vec![
            OffsetFetchRequestTopics::default().with_name(TopicName(s("payments"))).with_partition_indexes(vec![1]),
        ])),
        OffsetFetchRequestGroup::default().with_group_id(GroupId(s("nobody"))).with_topics(None),
    ]);
    let ResponseKind::OffsetFetch(r) = call(&env.c, ApiKey::OffsetFetch, 8, RequestKind::OffsetFetch(request)).await
    else {
        panic!()
    };
    assert_eq!(r.groups.len(), 3);
    assert_eq!(r.groups[0].topics[0].partitions[0].committed_offset, 100);
    assert_eq!(r.groups[1].topics[0].partitions[0].committed_offset, 3);
    assert!(r.groups[2].topics.is_empty());
    assert_eq!(env.c.committed_offsets("simple").len(), 3);

    // Restart: the log is reopened and the coordinator replays __consumer_offsets.
    let env = env.reopen();
    assert!(env.log.topic(OFFSETS_TOPIC).unwrap().internal);
    let mut got = fetch_all(&env.c, "simple").await;
    got.sort();
    assert_eq!(got, want);
    assert_eq!(fetch_all(&env.c, "members").await, vec![("orders".to_string(), 1, 100, String::new())]);
    // Membership is not persisted: the group is empty and its members must rejoin.
    let d = env.c.describe("members").unwrap();
    assert_eq!((d.state, d.members.len()), (GroupState::Empty, 0));
    assert_eq!(heartbeat(&env.c, "members", generation, &ids[0], None).await, code(ResponseError::UnknownMemberId));
    env.c.reset_offsets("members", vec![(TOPIC.into(), 1, 0), (TOPIC.into(), 2, 9)]).await.unwrap();
    let env = env.reopen();
    let summary: Vec<(String, GroupState)> =
        env.c.list_groups_summary().into_iter().map(|g| (g.group_id, g.state)).collect();
    assert_eq!(summary, vec![("members".to_string(), GroupState::Empty), ("simple".to_string(), GroupState::Empty)]);
    let offsets: Vec<(String, i32, i64)> =
        env.c.committed_offsets("members").into_iter().map(|o| (o.topic, o.partition, o.offset)).collect();
    assert_eq!(offsets, vec![(TOPIC.to_string(), 1, 0), (TOPIC.to_string(), 2, 9)]);
    assert!(matches!(
        env.c.reset_offsets("members", vec![("nope".into(), 0, 0)]).await,
        Err(GroupError::Partition { error: ResponseError::UnknownTopicOrPartition, .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_empty_groups_can_be_deleted_and_deletion_is_durable() {
    let env = Env::new();
    assert_eq!(delete_group(&env.c, "ghost").await, code(ResponseError::GroupIdNotFound));
    let (ids, generation, _) = stable_group_of_three(&env.c, "g").await;
    assert_eq!(commit(&env.c, 8, "g", generation, &ids[0], &[(TOPIC, 0, 10, None)]).await[0].2, NONE);
    assert_eq!(delete_group(&env.c, "g").await, code(ResponseError::NonEmptyGroup));
    for id in &ids {
        let (c, id) = (env.c.clone(), id.clone());
        // Leaving in any order: the last one leaves an empty group.
        assert_eq!(leave(&c, "g", &id).await, NONE);
    }
    assert_eq!(env.c.describe("g").unwrap().state, GroupState::Empty);
    assert_eq!(commit(&env.c, 8, "other", -1, "", &[(TOPIC, 0, 1, None)]).await[0].2, NONE);
    assert_eq!(delete_group(&env.c, "g").await, NONE);
    assert!(env.c.describe("g").is_none());
    assert!(fetch_all(&env.c, "g").await.is_empty());
    let request = DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g"))]);
    let ResponseKind::DescribeGroups(r) =
        call(&env.c, ApiKey::DescribeGroups, 6, RequestKind::DescribeGroups(request.clone())).await
    else {
        panic!()
    };
    assert_eq!(r.groups[0].error_code, code(ResponseError::GroupIdNotFound));
    let ResponseKind::DescribeGroups(r) =
        call(&env.c, ApiKey::DescribeGroups, 0, RequestKind::DescribeGroups(request)).await
    else {
        panic!()
    };
    assert_eq!((r.groups[0].error_code, r.groups[0].group_state.as_str()), (NONE, "Dead"));
    let env = env.reopen();
    assert!(env.c.describe("g").is_none(), "tombstones keep the group deleted after a restart");
    assert_eq!(env.c.committed_offsets("other").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_of_subscribed_topics_cannot_be_deleted() {
    let env = Env::new();
    let (ids, generation, _) = stable_group_of_three(&env.c, "g").await;
    let r = commit(&env.c, 8, "g", generation, &ids[0], &[(TOPIC, 0, 10, None), ("payments", 0, 4, None)]).await;
    assert!(r.iter().all(|(_, _, e)| *e == NONE));
    let request = OffsetDeleteRequest::default().with_group_id(GroupId(s("g"))).with_topics(vec![
        OffsetDeleteRequestTopic::default()
            .with_name(TopicName(s(TOPIC)))
            .with_partitions(vec![OffsetDeleteRequestPartition::default().with_partition_index(0)]),
        OffsetDeleteRequestTopic::default()
            .with_name(TopicName(s("payments")))
            .with_partitions(vec![OffsetDeleteRequestPartition::default().with_partition_index(0)]),
    ]);
    let ResponseKind::OffsetDelete(r) =
        call(&env.c, ApiKey::OffsetDelete, 0, RequestKind::OffsetDelete(request.clone())).await
    else {
        panic!()
    };
    assert_eq!(r.error_code, NONE);
    assert_eq!(r.topics[0].partitions[0].error_code, code(ResponseError::GroupSubscribedToTopic));
    assert_eq!(r.topics[1].partitions[0].error_code, NONE);
    assert_eq!(fetch_all(&env.c, "g").await, vec![(TOPIC.to_string(), 0, 10, String::new())]);
    let unknown = OffsetDeleteRequest::default().with_group_id(GroupId(s("nope")));
    let ResponseKind::OffsetDelete(r) = call(&env.c, ApiKey::OffsetDelete, 0, RequestKind::OffsetDelete(unknown)).await
    else {
        panic!()
    };
    assert_eq!(r.error_code, code(ResponseError::GroupIdNotFound));
    let env = env.reopen();
    assert_eq!(fetch_all(&env.c, "g").await, vec![(TOPIC.to_string(), 0, 10, String::new())]);
    // Empty now (membership is not persisted): every offset may go.
    let ResponseKind::OffsetDelete(r) = call(&env.c, ApiKey::OffsetDelete, 0, RequestKind::OffsetDelete(request)).await
    else {
        panic!()
    };
    assert_eq!(r.topics[0].partitions[0].error_code, NONE);
    assert!(fetch_all(&env.c, "g").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_groups_filters_by_state_and_type() {
    let env = Env::new();
    stable_group_of_three(&env.c, "busy").await;
    assert_eq!(commit(&env.c, 8, "idle", -1, "", &[(TOPIC, 0, 1, None)]).await[0].2, NONE);
    let list = async |version: i16, states: &[&str], types: &[&str]| {
        let request = ListGroupsRequest::default()
            .with_states_filter(states.iter().map(|x| s(x)).collect())
            .with_types_filter(types.iter().map(|x| s(x)).collect());
        let ResponseKind::ListGroups(r) =
            call(&env.c, ApiKey::ListGroups, version, RequestKind::ListGroups(request)).await
        else {
            panic!()
        };
        assert_eq!(r.error_code, NONE);
        let mut groups: Vec<(String, String, String)> = r
            .groups
            .iter()
            .map(|g| (g.group_id.to_string(), g.protocol_type.to_string(), g.group_state.to_string()))
            .collect();
        groups.sort();
        groups
    };
    let all = list(4, &[], &[]).await;
    assert_eq!(
        all,
        vec![("busy".into(), "consumer".into(), "Stable".into()), ("idle".into(), String::new(), "Empty".into()),]
    );
    assert_eq!(list(4, &["stable"], &[]).await.len(), 1);
    assert_eq!(list(4, &["Empty", "Stable"], &[]).await.len(), 2);
    assert_eq!(list(4, &["Dead"], &[]).await.len(), 0);
    assert_eq!(list(5, &[], &["classic"]).await.len(), 2);
    assert_eq!(list(5, &[], &["consumer"]).await.len(), 0);
    assert_eq!(list(0, &[], &[]).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_waiting_joins() {
    let env = Env::new();
    let a = Joiner::new("g").member_id(&env.c).await;
    let _b = Joiner::new("g").member_id(&env.c).await;
    let c = env.c.clone();
    // a waits for b, who never joins.
    let waiting = tokio::spawn(async move { a.send(&c).await });
    wait_until("a is waiting", async || env.c.describe("g").unwrap().members.len() == 1).await;
    env.c.shutdown();
    assert_eq!(waiting.await.unwrap().error_code, code(ResponseError::NotCoordinator));
    assert_eq!(heartbeat(&env.c, "g", 0, "x", None).await, code(ResponseError::NotCoordinator));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_rebalance_waits_for_more_members() {
    let env = Env::with_config(GroupConfig { initial_rebalance_delay_ms: 1_000, ..config() });
    let a = Joiner::new("g").rebalance(5_000).member_id(&env.c).await;
    let c = env.c.clone();
    let ja = a.clone();
    let first = tokio::spawn(async move { ja.send(&c).await });
    wait_until("a joined", async || env.c.describe("g").unwrap().members.len() == 1).await;
    let b = Joiner::new("g").rebalance(5_000).member_id(&env.c).await;
    let rb = b.send(&env.c).await;
    let ra = first.await.unwrap();
    assert_eq!((ra.error_code, rb.error_code), (NONE, NONE));
    assert_eq!((ra.generation_id, rb.generation_id), (1, 1), "one rebalance for both");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_of_a_group_without_members_expire_and_stay_expired_after_a_restart() {
    // Committed with the default retention (7 days): kept.
    let env = Env::new();
    let r = commit(&env.c, 8, "standalone", -1, "", &[(TOPIC, 0, 42, None), ("payments", 1, 3, None)]).await;
    assert!(r.iter().all(|(_, _, e)| *e == NONE), "{r:?}");
    assert_eq!(fetch_all(&env.c, "standalone").await.len(), 2);
    // Restarted with a short retention: the group has no members and, membership not being
    // persisted, its latest commit is when it was last known active; its offsets expire.
    let env = env.reopen_with(short_offsets_retention());
    assert_eq!(env.c.offsets_retention_ms(), 200);
    wait_until("the offsets of the standalone group expired", async || {
        fetch_all(&env.c, "standalone").await.is_empty()
    })
    .await;
    let request = OffsetFetchRequest::default().with_group_id(GroupId(s("standalone"))).with_topics(Some(vec![
        OffsetFetchRequestTopic::default().with_name(TopicName(s(TOPIC))).with_partition_indexes(vec![0]),
    ]));
    let ResponseKind::OffsetFetch(r) = call(&env.c, ApiKey::OffsetFetch, 7, RequestKind::OffsetFetch(request)).await
    else {
        panic!()
    };
    assert_eq!(r.topics[0].partitions[0].committed_offset, -1);
    // A standalone commit made while running expires the same way.
    assert_eq!(commit(&env.c, 8, "assigned", -1, "", &[(TOPIC, 2, 5, None)]).await[0].2, NONE);
    wait_until("the offsets of a new standalone commit expired", async || {
        fetch_all(&env.c, "assigned").await.is_empty()
    })
    .await;
    // Tombstones were written: with the default retention again, nothing comes back.
    let env = env.reopen();
    assert!(fetch_all(&env.c, "standalone").await.is_empty(), "expired offsets stay gone after a restart");
    assert!(env.c.committed_offsets("standalone").is_empty());
    assert!(env.c.committed_offsets("assigned").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_with_members_keeps_the_offsets_of_its_topics_until_it_is_empty() {
    let env = Env::with_config(short_offsets_retention());
    // Three members subscribed to TOPIC (long sessions: none expires during the test).
    let (ids, generation, _) = stable_group_of_three(&env.c, "g").await;
    let r = commit(&env.c, 8, "g", generation, &ids[0], &[(TOPIC, 0, 10, None), ("payments", 0, 4, None)]).await;
    assert!(r.iter().all(|(_, _, e)| *e == NONE), "{r:?}");
    // As in Kafka, the offsets of a topic no member subscribes to expire while the group is
    // stable; those of TOPIC, committed at the same moment, are kept.
    wait_until("the offset of the unsubscribed topic expired", async || {
        fetch_all(&env.c, "g").await.iter().all(|(topic, ..)| topic != "payments")
    })
    .await;
    assert_eq!(fetch_all(&env.c, "g").await, vec![(TOPIC.to_string(), 0, 10, String::new())]);
    assert_eq!(env.c.describe("g").unwrap().state, GroupState::Stable);
    // Once every member has left, the group is empty and its offsets expire too.
    for id in &ids {
        assert_eq!(leave(&env.c, "g", id).await, NONE);
    }
    assert_eq!(env.c.describe("g").unwrap().state, GroupState::Empty);
    wait_until("the offsets of the emptied group expired", async || fetch_all(&env.c, "g").await.is_empty()).await;
    let env = env.reopen();
    assert!(fetch_all(&env.c, "g").await.is_empty(), "expired offsets stay gone after a restart");
}
