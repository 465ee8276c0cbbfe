//! The consumer group coordinator: Kafka's classic group protocol, with committed offsets
//! stored durably in the internal compacted topic `__consumer_offsets`.
//!
//! Membership (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) follows Kafka's group state
//! machine ([`state`]): assignment stays on the client (the leader gets every member's
//! metadata and sends the assignments), so every client-side assignor works. Membership lives
//! in memory only: after a restart members get UNKNOWN_MEMBER_ID and rejoin. Committed
//! offsets ([`offsets`]) are appended to `__consumer_offsets` and fsynced before OffsetCommit
//! is answered, and replayed from it at [`GroupCoordinator::open`].
//!
//! Concurrency: all group state sits behind one mutex that is never held across an await or
//! I/O. JoinGroup and SyncGroup responses that must wait for other members are oneshot
//! channels awaited by the request's task. Writes to `__consumer_offsets` for one group are
//! serialised by a per-group async lock (so the log order is the order applied in memory) and
//! run on tokio's blocking pool; writes of different groups share fsyncs (group commit).
//! Session and rebalance timeouts are deadlines checked by a background task every
//! [`TICK_MS`].
//!
//! Committed offsets expire as with Kafka's `offsets.retention.minutes` (KIP-211): the same
//! task looks for expired offsets at most every `offsets_retention_check_interval_ms` and
//! writes their tombstones through the normal write path (see [`Group::expired_offsets`] for
//! the rule).
//!
//! [`Group::expired_offsets`]: state::Group::expired_offsets

mod api;
mod offsets;
mod state;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{RequestKind, ResponseKind};
use runnel_log::{AppendError, Log, LogError};
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use state::GroupState;
use state::{Groups, OffsetEntry};

/// The internal topic holding committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Most members (joined or holding a member id from MEMBER_ID_REQUIRED) of one group
/// (Kafka's `group.max.size`), by default.
pub const MEMBERS_PER_GROUP_MAX: usize = 1000;
/// Most groups the coordinator keeps, by default.
pub const GROUPS_MAX: usize = 10_000;
/// Most committed offsets (group, topic, partition) over all groups.
pub const OFFSETS_MAX: usize = 1_000_000;
/// Most committed offsets of one group.
pub const OFFSETS_PER_GROUP_MAX: usize = 100_000;
/// Longest group id, in bytes.
pub const GROUP_ID_BYTES_MAX: usize = 1024;
/// Longest `group.instance.id`, in bytes.
pub const GROUP_INSTANCE_ID_BYTES_MAX: usize = 1024;
/// Bytes of the client id (or instance id) kept as the prefix of a generated member id.
pub const MEMBER_ID_CLIENT_PREFIX_BYTES_MAX: usize = 128;
/// Longest protocol type or protocol name, in bytes.
pub const PROTOCOL_NAME_BYTES_MAX: usize = 255;
/// Most protocols (assignors) one member may offer.
pub const PROTOCOLS_PER_MEMBER_MAX: usize = 32;
/// Most bytes of protocol metadata (subscriptions) one member may send.
pub const MEMBER_METADATA_BYTES_MAX: usize = 1 << 20;
/// Largest assignment of one member, in bytes.
pub const MEMBER_ASSIGNMENT_BYTES_MAX: usize = 1 << 20;
/// Most bytes of metadata and assignments held for one group.
pub const GROUP_STATE_BYTES_MAX: usize = 64 << 20;
/// Longest offset commit metadata, in bytes (Kafka's `offset.metadata.max.bytes`).
pub const OFFSET_METADATA_BYTES_MAX: usize = 4096;
/// How long a member that joins for the first time may wait in a rebalance, in milliseconds
/// (Kafka's `NewMemberJoinTimeoutMs`).
pub const NEW_MEMBER_JOIN_TIMEOUT_MS: u64 = 300_000;
/// Interval of the timer checking session and rebalance deadlines, in milliseconds.
pub const TICK_MS: u64 = 50;
/// Default smallest session timeout a member may ask for, in milliseconds (Kafka's
/// `group.min.session.timeout.ms`).
pub const SESSION_TIMEOUT_MS_MIN_DEFAULT: u64 = 6_000;
/// Default largest session timeout, in milliseconds (Kafka's `group.max.session.timeout.ms`).
pub const SESSION_TIMEOUT_MS_MAX_DEFAULT: u64 = 1_800_000;
/// Default wait of the first rebalance of an empty group for more members, in milliseconds
/// (Kafka's `group.initial.rebalance.delay.ms`).
pub const INITIAL_REBALANCE_DELAY_MS_DEFAULT: u64 = 3_000;
/// Default time an empty group without committed offsets is kept, in milliseconds.
pub const EMPTY_GROUP_RETENTION_MS_DEFAULT: u64 = 600_000;
/// Default time the committed offsets of a group without members are kept, in milliseconds
/// (Kafka's `offsets.retention.minutes`, 10080 minutes: 7 days).
pub const OFFSETS_RETENTION_MS_DEFAULT: u64 = 7 * 24 * 60 * 60 * 1000;
/// Default interval between looks for expired offsets, in milliseconds (Kafka's
/// `offsets.retention.check.interval.ms`).
pub const OFFSETS_RETENTION_CHECK_INTERVAL_MS_DEFAULT: u64 = 600_000;
/// Largest offsets retention, in milliseconds: commit timestamps are i64 milliseconds.
pub const OFFSETS_RETENTION_MS_MAX: u64 = i64::MAX as u64;

const _: () = assert!(OFFSETS_RETENTION_MS_DEFAULT <= OFFSETS_RETENTION_MS_MAX);
const _: () = assert!(OFFSETS_RETENTION_CHECK_INTERVAL_MS_DEFAULT >= TICK_MS);

/// Settings of the coordinator; [`GroupConfig::default`] has Kafka's defaults.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    pub session_timeout_ms_min: u64,
    pub session_timeout_ms_max: u64,
    /// 0 starts the first rebalance of an empty group at once.
    pub initial_rebalance_delay_ms: u64,
    pub members_per_group_max: usize,
    pub groups_max: usize,
    pub offsets_max: usize,
    pub offsets_per_group_max: usize,
    pub empty_group_retention_ms: u64,
    /// How long the committed offsets of a group without members are kept (Kafka's
    /// `offsets.retention.minutes`, in milliseconds); 0 expires them at the next check.
    pub offsets_retention_ms: u64,
    /// Interval between looks for expired offsets (Kafka's
    /// `offsets.retention.check.interval.ms`); checks run on the [`TICK_MS`] timer, so at most
    /// that often.
    pub offsets_retention_check_interval_ms: u64,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            session_timeout_ms_min: SESSION_TIMEOUT_MS_MIN_DEFAULT,
            session_timeout_ms_max: SESSION_TIMEOUT_MS_MAX_DEFAULT,
            initial_rebalance_delay_ms: INITIAL_REBALANCE_DELAY_MS_DEFAULT,
            members_per_group_max: MEMBERS_PER_GROUP_MAX,
            groups_max: GROUPS_MAX,
            offsets_max: OFFSETS_MAX,
            offsets_per_group_max: OFFSETS_PER_GROUP_MAX,
            empty_group_retention_ms: EMPTY_GROUP_RETENTION_MS_DEFAULT,
            offsets_retention_ms: OFFSETS_RETENTION_MS_DEFAULT,
            offsets_retention_check_interval_ms: OFFSETS_RETENTION_CHECK_INTERVAL_MS_DEFAULT,
        }
    }
}

/// Who is asking and how to reach this broker (for FindCoordinator).
#[derive(Debug, Clone)]
pub struct Host {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub client_id: String,
    pub client_host: String,
}

/// A group as listed by [`GroupCoordinator::list_groups_summary`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSummary {
    pub group_id: String,
    /// `consumer` for Kafka consumers; empty for groups that only hold offsets.
    pub protocol_type: String,
    pub state: GroupState,
    pub members: usize,
}

/// A group's members, protocol and state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: GroupState,
    pub protocol_type: String,
    /// The assignor chosen for the current generation (empty while none).
    pub protocol_name: String,
    pub generation: i32,
    pub leader: Option<String>,
    pub members: Vec<MemberDescription>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// The member's metadata (subscription) for the chosen protocol.
    pub metadata: Bytes,
    /// The assignment the leader gave it (empty until SyncGroup).
    pub assignment: Bytes,
}

/// A committed offset of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// -1 when the consumer did not say.
    pub leader_epoch: i32,
    pub metadata: String,
    /// When the commit was made, in milliseconds since the Unix epoch.
    pub commit_timestamp: i64,
}

/// Why a coordinator operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    #[error("group {0:?} has active members; stop its consumers first")]
    NotEmpty(String),
    #[error("invalid offset {offset} for {topic}-{partition}: offsets are 0 or more")]
    InvalidOffset { topic: String, partition: i32, offset: i64 },
    #[error("cannot commit the offset of {topic}-{partition}: {error}")]
    Partition { topic: String, partition: i32, error: ResponseError },
    #[error("group {group:?}: {error}")]
    Group { group: String, error: ResponseError },
    #[error("cannot write to {OFFSETS_TOPIC}: {0}")]
    Write(String),
}

/// Writing to `__consumer_offsets` failed.
#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error("{OFFSETS_TOPIC} is not available")]
    Unavailable,
    #[error(transparent)]
    Append(#[from] AppendError),
}

impl WriteError {
    /// The error code Kafka gives for a failed write of the offsets topic.
    fn code(&self) -> i16 {
        match self {
            WriteError::Append(AppendError::MessageTooLarge { .. }) => ResponseError::InvalidCommitOffsetSize.code(),
            WriteError::Append(AppendError::InvalidBatch(_)) => ResponseError::UnknownServerError.code(),
            _ => ResponseError::CoordinatorNotAvailable.code(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Coordinates every consumer group of this broker.
pub struct GroupCoordinator {
    log: Arc<Log>,
    node_id: i32,
    config: GroupConfig,
    state: Mutex<Groups>,
    /// Per-group locks serialising writes to `__consumer_offsets`; an entry lives while
    /// someone holds or waits for it.
    write_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    ticker: Mutex<Option<JoinHandle<()>>>,
    /// When the last look for expired offsets started (the opening counts as one).
    offsets_checked_at: Mutex<Instant>,
    /// An expiry pass (a task writing tombstones) is running; at most one runs at a time.
    expiring: Arc<AtomicBool>,
    closed: AtomicBool,
    me: Weak<GroupCoordinator>,
}

/// Clears the `expiring` flag when the expiry task ends, even if it is cancelled.
struct ExpiringGuard(Arc<AtomicBool>);

impl Drop for ExpiringGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// Holds a group's write lock; dropping it frees the map entry when nobody else wants it.
/// It owns the coordinator so that it can move into the blocking task doing the write: the
/// write, its fsync and the update of memory finish even if the request is cancelled.
struct WriteGuard {
    coordinator: Arc<GroupCoordinator>,
    group_id: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for WriteGuard {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = lock(&self.coordinator.write_locks);
        if locks.get(&self.group_id).is_some_and(|l| Arc::strong_count(l) == 1) {
            locks.remove(&self.group_id);
        }
    }
}

impl GroupCoordinator {
    /// Opens the coordinator with Kafka's default settings: creates `__consumer_offsets` if
    /// missing and replays it to rebuild committed offsets.
    pub fn open(log: Arc<Log>, node_id: i32) -> Result<Arc<GroupCoordinator>, LogError> {
        Self::open_with(log, node_id, GroupConfig::default())
    }

    /// [`GroupCoordinator::open`] with explicit settings.
    pub fn open_with(log: Arc<Log>, node_id: i32, config: GroupConfig) -> Result<Arc<GroupCoordinator>, LogError> {
        offsets::ensure_topic(&log)?;
        let mut groups = Groups::default();
        let stats =
            offsets::replay(&log, &mut groups, config.groups_max, config.offsets_max, config.offsets_per_group_max)?;
        tracing::info!(
            records = stats.records,
            skipped = stats.skipped,
            groups = groups.map.len(),
            offsets = groups.offsets_total,
            "group coordinator loaded {OFFSETS_TOPIC}"
        );
        let coordinator = Arc::new_cyclic(|me| GroupCoordinator {
            log,
            node_id,
            config,
            state: Mutex::new(groups),
            write_locks: Mutex::new(HashMap::new()),
            ticker: Mutex::new(None),
            offsets_checked_at: Mutex::new(Instant::now()),
            expiring: Arc::new(AtomicBool::new(false)),
            closed: AtomicBool::new(false),
            me: me.clone(),
        });
        // Offsets expire even if no client ever connects (started again at the first request
        // if opened outside a runtime).
        coordinator.ensure_ticker();
        Ok(coordinator)
    }

    /// How long the committed offsets of a group without members are kept, in milliseconds
    /// (Kafka's `offsets.retention.minutes`).
    pub fn offsets_retention_ms(&self) -> u64 {
        self.config.offsets_retention_ms
    }

    /// Handles FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit,
    /// OffsetFetch, ListGroups, DescribeGroups, DeleteGroups, OffsetDelete. Returns None for
    /// other API keys (or a request that does not match `api_key`).
    pub async fn handle(
        &self,
        api_key: i16,
        api_version: i16,
        request: RequestKind,
        host: &Host,
    ) -> Option<ResponseKind> {
        self.ensure_ticker();
        api::handle(self, api_key, api_version, request, host).await
    }

    /// (API key, min version, max version) of every API handled here, for ApiVersions.
    pub fn supported_versions() -> Vec<(i16, i16, i16)> {
        api::SUPPORTED_VERSIONS.to_vec()
    }

    /// Stops the timer and answers every waiting JoinGroup/SyncGroup with NOT_COORDINATOR.
    /// Committed offsets are already durable.
    pub fn shutdown(&self) {
        self.closed.store(true, Ordering::SeqCst);
        if let Some(ticker) = lock(&self.ticker).take() {
            ticker.abort();
        }
        lock(&self.state).fail_waiters(ResponseError::NotCoordinator.code());
    }

    /// The node id this coordinator was opened with.
    pub fn node_id(&self) -> i32 {
        self.node_id
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Starts (or restarts, if its runtime went away) the deadline timer; does nothing outside
    /// a tokio runtime.
    fn ensure_ticker(&self) {
        let mut ticker = lock(&self.ticker);
        if self.is_closed()
            || ticker.as_ref().is_some_and(|t| !t.is_finished())
            || tokio::runtime::Handle::try_current().is_err()
        {
            return;
        }
        let me = self.me.clone();
        *ticker = Some(tokio::spawn(async move {
            let mut interval = tokio::time::interval(std::time::Duration::from_millis(TICK_MS));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                let Some(coordinator) = me.upgrade() else { break };
                if coordinator.is_closed() {
                    break;
                }
                coordinator.tick(Instant::now());
            }
        }));
    }

    fn tick(&self, now: Instant) {
        lock(&self.state).tick(&self.config, now);
        self.check_offsets_retention(now);
    }

    /// Looks for expired committed offsets if `offsets_retention_check_interval_ms` passed
    /// since the last look, and spawns the task writing their tombstones. A look is skipped
    /// while the previous pass still runs.
    fn check_offsets_retention(&self, now: Instant) {
        {
            let mut checked_at = lock(&self.offsets_checked_at);
            let interval = std::time::Duration::from_millis(self.config.offsets_retention_check_interval_ms);
            if now.saturating_duration_since(*checked_at) < interval || self.expiring.swap(true, Ordering::SeqCst) {
                return;
            }
            *checked_at = now;
        }
        let guard = ExpiringGuard(self.expiring.clone());
        let retention_ms = self.offsets_retention_ms();
        let expired = lock(&self.state).with_expired_offsets(retention_ms, now, now_ms());
        if expired.is_empty() {
            return;
        }
        let Some(coordinator) = self.me.upgrade() else { return };
        tokio::spawn(async move {
            let _guard = guard;
            coordinator.expire_offsets(expired).await;
        });
    }

    /// Deletes the expired committed offsets of `group_ids`: for each group, under its write
    /// lock (so no commit of it is in flight), finds them again and writes their tombstones,
    /// then removes them from memory once durable.
    async fn expire_offsets(&self, group_ids: Vec<String>) {
        for group_id in group_ids {
            if self.is_closed() {
                return;
            }
            let Some(write) = self.write_lock(&group_id).await else { return };
            let keys = {
                let groups = lock(&self.state);
                let retention_ms = self.offsets_retention_ms();
                groups.map.get(&group_id).map(|g| g.expired_offsets(retention_ms, Instant::now(), now_ms()))
            };
            let Some(keys) = keys.filter(|k| !k.is_empty()) else { continue };
            let records = api::tombstones(&group_id, &keys);
            let (group, count) = (group_id.clone(), keys.len());
            let finish = move |groups: &mut Groups, result: Result<(), &WriteError>| {
                if result.is_ok() {
                    groups.apply_offsets(&group, keys.into_iter().map(|k| (k, None)), Instant::now());
                    tracing::info!(group, offsets = count, "committed offsets expired (offsets.retention.minutes)");
                }
            };
            // A failed write is logged by `write`; the next check tries again.
            let _ = self.write(write, records, finish).await;
        }
    }

    /// Waits for the group's write lock. `None` only if the coordinator is being dropped.
    async fn write_lock(&self, group_id: &str) -> Option<WriteGuard> {
        let coordinator = self.me.upgrade()?;
        let mutex = lock(&self.write_locks).entry(group_id.to_string()).or_default().clone();
        let guard = mutex.lock_owned().await;
        Some(WriteGuard { coordinator, group_id: group_id.to_string(), guard: Some(guard) })
    }

    /// Appends records to `__consumer_offsets`, waits until they are fsynced, then runs
    /// `finish` on the group state with the outcome, all under the group's write lock and
    /// to the end even if the caller stops waiting.
    async fn write(
        &self,
        guard: WriteGuard,
        records: Vec<(Vec<u8>, Option<Vec<u8>>)>,
        finish: impl FnOnce(&mut Groups, Result<(), &WriteError>) + Send + 'static,
    ) -> Result<(), WriteError> {
        let log = self.log.clone();
        let task = tokio::task::spawn_blocking(move || {
            let result = if records.is_empty() {
                Ok(())
            } else {
                (|| -> Result<(), WriteError> {
                    let now = now_ms();
                    let batches = offsets::build_batches(records, now);
                    let partition = log.partition(OFFSETS_TOPIC, 0).ok_or(WriteError::Unavailable)?;
                    // Answered once synced: commits of concurrent groups share one write too.
                    let info = partition.append_buffered(&batches, now)?;
                    partition.sync_to(info.last_offset + 1)?;
                    Ok(())
                })()
            };
            if let Err(e) = &result {
                tracing::warn!(error = %e, "writing {OFFSETS_TOPIC} failed");
            }
            finish(&mut lock(&guard.coordinator.state), result.as_ref().map(|_| ()));
            drop(guard);
            result
        });
        task.await.unwrap_or(Err(WriteError::Unavailable))
    }

    /// Every group, sorted by id.
    pub fn list_groups_summary(&self) -> Vec<GroupSummary> {
        let groups = lock(&self.state);
        let mut list: Vec<GroupSummary> = groups
            .map
            .values()
            .map(|g| GroupSummary {
                group_id: g.id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state,
                members: g.members.len(),
            })
            .collect();
        list.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        list
    }

    /// A group's state, protocol and members; `None` if the group is unknown.
    pub fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        let groups = lock(&self.state);
        let g = groups.map.get(group_id)?;
        let protocol = g.protocol_name.as_deref();
        Some(GroupDescription {
            group_id: g.id.clone(),
            state: g.state,
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol_name: g.protocol_name.clone().unwrap_or_default(),
            generation: g.generation,
            leader: g.leader.clone(),
            members: g
                .members
                .values()
                .map(|m| MemberDescription {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: m.metadata(protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        })
    }

    /// A group's committed offsets, sorted by topic and partition (empty if unknown).
    pub fn committed_offsets(&self, group_id: &str) -> Vec<CommittedOffset> {
        let groups = lock(&self.state);
        let Some(g) = groups.map.get(group_id) else { return Vec::new() };
        g.offsets
            .iter()
            .map(|((topic, partition), e)| CommittedOffset {
                topic: topic.clone(),
                partition: *partition,
                offset: e.offset,
                leader_epoch: e.leader_epoch,
                metadata: e.metadata.clone(),
                commit_timestamp: e.commit_timestamp,
            })
            .collect()
    }

    /// Sets a group's committed offsets, as `runnel group reset-offsets` does through
    /// OffsetCommit with generation -1: refused while the group has members.
    pub async fn reset_offsets(&self, group_id: &str, offsets: Vec<(String, i32, i64)>) -> Result<(), GroupError> {
        if let Some((topic, partition, offset)) = offsets.iter().find(|(_, _, o)| *o < 0) {
            return Err(GroupError::InvalidOffset { topic: topic.clone(), partition: *partition, offset: *offset });
        }
        let entries: Vec<api::CommitEntry> = offsets
            .iter()
            .map(|(topic, partition, offset)| api::CommitEntry {
                topic: topic.clone(),
                partition: *partition,
                offset: *offset,
                leader_epoch: -1,
                metadata: None,
            })
            .collect();
        let not_empty = ResponseError::UnknownMemberId.code();
        let codes = match api::commit(self, group_id, -1, "", None, &entries).await {
            Ok(codes) => codes,
            Err(error) if error == not_empty => return Err(GroupError::NotEmpty(group_id.to_string())),
            Err(error) => {
                let error = ResponseError::try_from_code(error).unwrap_or(ResponseError::UnknownServerError);
                return Err(GroupError::Group { group: group_id.to_string(), error });
            }
        };
        for (entry, error) in entries.iter().zip(codes) {
            if let Some(error) = ResponseError::try_from_code(error) {
                return Err(GroupError::Partition { topic: entry.topic.clone(), partition: entry.partition, error });
            }
        }
        Ok(())
    }
}

/// The stored form of a commit.
fn offset_entry(offset: i64, leader_epoch: i32, metadata: Option<&str>) -> OffsetEntry {
    OffsetEntry { offset, leader_epoch, metadata: metadata.unwrap_or_default().to_string(), commit_timestamp: now_ms() }
}
