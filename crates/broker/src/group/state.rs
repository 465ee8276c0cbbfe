//! The classic group membership state machine, as in Kafka's `GroupMetadata` and the
//! join/sync/heartbeat/leave logic of its group coordinator, without I/O.
//!
//! Everything here runs under the coordinator's state mutex and never waits: a JoinGroup or
//! SyncGroup that has to wait for other members gets a [`Reply::Wait`] holding a oneshot
//! receiver, which the async handler awaits after releasing the lock. Timers (session expiry,
//! rebalance deadlines, pending member expiry) are deadlines checked by [`Groups::tick`].
//!
//! States: `Empty` (no members) -> `PreparingRebalance` (waiting for members to (re)join) ->
//! `CompletingRebalance` (generation chosen, waiting for the leader's assignments) -> `Stable`;
//! any membership change goes back to `PreparingRebalance`. `Dead` marks a group being deleted.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use tokio::sync::oneshot;
use tokio::time::{Duration, Instant};

use super::{
    GROUP_ID_BYTES_MAX, GROUP_INSTANCE_ID_BYTES_MAX, GROUP_STATE_BYTES_MAX, GroupConfig, MEMBER_ASSIGNMENT_BYTES_MAX,
    MEMBER_ID_CLIENT_PREFIX_BYTES_MAX, MEMBER_METADATA_BYTES_MAX, NEW_MEMBER_JOIN_TIMEOUT_MS, PROTOCOL_NAME_BYTES_MAX,
    PROTOCOLS_PER_MEMBER_MAX,
};

/// No error.
pub(crate) const NONE: i16 = 0;

pub(crate) fn code(e: ResponseError) -> i16 {
    e.code()
}

/// A group's state, named as in Kafka (ListGroups and DescribeGroups show these names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupState {
    /// No members; the group may still hold committed offsets.
    Empty,
    /// Waiting for members to (re)join for the next generation.
    PreparingRebalance,
    /// The generation is chosen; waiting for the leader's SyncGroup with the assignments.
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
    /// Being deleted.
    Dead,
}

impl GroupState {
    /// Kafka's name for the state.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }

    /// Parses a state name, ignoring case (as ListGroups' states filter does).
    pub fn parse(name: &str) -> Option<GroupState> {
        [
            GroupState::Empty,
            GroupState::PreparingRebalance,
            GroupState::CompletingRebalance,
            GroupState::Stable,
            GroupState::Dead,
        ]
        .into_iter()
        .find(|s| s.as_str().eq_ignore_ascii_case(name))
    }
}

impl std::fmt::Display for GroupState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a JoinGroup request gets back.
#[derive(Debug, Clone)]
pub(crate) struct JoinResult {
    pub error: i16,
    pub member_id: String,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    /// Every member with its metadata for the chosen protocol; only for the leader.
    pub members: Vec<JoinedMember>,
}

#[derive(Debug, Clone)]
pub(crate) struct JoinedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

impl JoinResult {
    pub fn error(error: i16, member_id: String) -> JoinResult {
        JoinResult {
            error,
            member_id,
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            members: Vec::new(),
        }
    }
}

/// What a SyncGroup request gets back.
#[derive(Debug, Clone)]
pub(crate) struct SyncResult {
    pub error: i16,
    pub assignment: Bytes,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
}

impl SyncResult {
    pub fn error(error: i16) -> SyncResult {
        SyncResult { error, assignment: Bytes::new(), protocol_type: None, protocol_name: None }
    }
}

/// An answer now, or one to wait for (after releasing the state lock).
pub(crate) enum Reply<T> {
    Now(T),
    Wait(oneshot::Receiver<T>),
}

/// A committed offset as kept in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
}

/// The parameters of one JoinGroup request.
#[derive(Debug, Clone)]
pub(crate) struct JoinParams {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    /// (protocol name, member metadata), in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: an unknown member first gets a member id with MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
}

pub(crate) struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    join_waiter: Option<oneshot::Sender<JoinResult>>,
    sync_waiter: Option<oneshot::Sender<SyncResult>>,
    /// The member is removed when this passes, unless it is waiting in a rebalance.
    heartbeat_deadline: Instant,
    /// Joined during the current rebalance (never had a generation).
    is_new: bool,
}

impl Member {
    fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|(name, _)| name == protocol)
    }

    /// The metadata the member sent for `protocol`.
    pub fn metadata(&self, protocol: Option<&str>) -> Bytes {
        protocol
            .and_then(|p| self.protocols.iter().find(|(name, _)| name == p))
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    fn metadata_bytes(&self) -> usize {
        protocols_bytes(&self.protocols)
    }

    fn same_protocols(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }

    fn awaiting_join(&self) -> bool {
        self.join_waiter.is_some()
    }

    /// Whether the member stays although its heartbeat deadline may have passed.
    fn keep_alive(&self, now: Instant) -> bool {
        let joining = self.join_waiter.as_ref().is_some_and(|tx| !tx.is_closed());
        let syncing = self.sync_waiter.as_ref().is_some_and(|tx| !tx.is_closed());
        (joining && !self.is_new) || syncing || now < self.heartbeat_deadline
    }

    fn heartbeat(&mut self, now: Instant) {
        self.heartbeat_deadline = now + self.session_timeout;
    }

    fn send_join(&mut self, result: JoinResult) {
        if let Some(tx) = self.join_waiter.take() {
            let _ = tx.send(result);
        }
    }

    fn send_sync(&mut self, result: SyncResult) {
        if let Some(tx) = self.sync_waiter.take() {
            let _ = tx.send(result);
        }
    }
}

fn protocols_bytes(protocols: &[(String, Bytes)]) -> usize {
    protocols.iter().map(|(name, m)| name.len() + m.len()).sum()
}

/// The first rebalance of an empty group waits `initial_rebalance_delay` for more members,
/// extended while new members keep arriving (Kafka's `group.initial.rebalance.delay.ms`).
#[derive(Debug, Clone, Copy)]
struct InitialDelay {
    delay: Duration,
    remaining: Duration,
    new_member_added: bool,
}

pub(crate) struct Group {
    pub id: String,
    pub state: GroupState,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub generation: i32,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// group.instance.id -> member id.
    static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, until they join or expire.
    pending: HashMap<String, Instant>,
    rebalance_deadline: Option<Instant>,
    initial_delay: Option<InitialDelay>,
    /// Committed offsets by (topic, partition).
    pub offsets: BTreeMap<(String, i32), OffsetEntry>,
    /// When the group last became empty (for dropping empty groups without offsets).
    empty_since: Instant,
    /// When the group lost its last member, if that happened since the coordinator opened
    /// (membership is not persisted), for the expiry of its offsets.
    emptied_at: Option<Instant>,
}

impl Group {
    pub fn new(id: String, now: Instant) -> Group {
        Group {
            id,
            state: GroupState::Empty,
            protocol_type: None,
            protocol_name: None,
            generation: 0,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending: HashMap::new(),
            rebalance_deadline: None,
            initial_delay: None,
            offsets: BTreeMap::new(),
            empty_since: now,
            emptied_at: None,
        }
    }

    fn is_full(&self, cfg: &GroupConfig) -> bool {
        self.members.len() + self.pending.len() >= cfg.members_per_group_max
    }

    /// Bytes of member metadata and assignments held, except `except`'s.
    fn state_bytes_except(&self, except: Option<&str>) -> usize {
        self.members
            .values()
            .filter(|m| Some(m.id.as_str()) != except)
            .map(|m| m.metadata_bytes() + m.assignment.len())
            .sum()
    }

    fn fits(&self, replacing: Option<&str>, protocols: &[(String, Bytes)]) -> bool {
        let kept_assignment = replacing.and_then(|id| self.members.get(id)).map_or(0, |m| m.assignment.len());
        self.state_bytes_except(replacing) + protocols_bytes(protocols) + kept_assignment <= GROUP_STATE_BYTES_MAX
    }

    /// Kafka's `supportsProtocols`: the protocol type matches and one of the protocols is
    /// supported by every member.
    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(name, _)| self.members.values().all(|m| m.supports(name)))
    }

    /// `Err(code)` unless `member_id` is a member and `instance_id` (if any) maps to it.
    pub fn validate_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), i16> {
        if let Some(instance) = instance_id {
            match self.static_members.get(instance) {
                Some(current) if current != member_id => return Err(code(ResponseError::FencedInstanceId)),
                Some(_) => {}
                None => return Err(code(ResponseError::UnknownMemberId)),
            }
        }
        if self.members.contains_key(member_id) { Ok(()) } else { Err(code(ResponseError::UnknownMemberId)) }
    }

    /// The protocol for the next generation: among the protocols every member supports, the one
    /// most members prefer (each member votes for its first supported one); ties go to the
    /// leader's order of preference.
    fn select_protocol(&self) -> Option<String> {
        let reference =
            self.leader.as_ref().and_then(|l| self.members.get(l)).or_else(|| self.members.values().next())?;
        let candidates: Vec<&str> = reference
            .protocols
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| self.members.values().all(|m| m.supports(name)))
            .collect();
        let mut votes = vec![0usize; candidates.len()];
        for m in self.members.values() {
            if let Some(i) =
                m.protocols.iter().find_map(|(name, _)| candidates.iter().position(|c| *c == name.as_str()))
            {
                votes[i] += 1;
            }
        }
        let mut best: Option<usize> = None;
        for (i, v) in votes.iter().enumerate() {
            if best.is_none_or(|b| *v > votes[b]) {
                best = Some(i);
            }
        }
        best.map(|i| candidates[i].to_string()).or_else(|| reference.protocols.first().map(|(name, _)| name.clone()))
    }

    fn max_rebalance_timeout(&self) -> Duration {
        self.members.values().map(|m| m.rebalance_timeout).max().unwrap_or(Duration::ZERO)
    }

    fn all_joined(&self) -> bool {
        self.pending.is_empty() && self.members.values().all(Member::awaiting_join)
    }

    fn is_leader(&self, member_id: &str) -> bool {
        self.leader.as_deref() == Some(member_id)
    }

    fn joined_members(&self) -> Vec<JoinedMember> {
        let protocol = self.protocol_name.as_deref();
        self.members
            .values()
            .map(|m| JoinedMember {
                member_id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                metadata: m.metadata(protocol),
            })
            .collect()
    }

    /// The current generation, as a JoinGroup response for `member_id`.
    fn current_join_result(&self, member_id: &str) -> JoinResult {
        let leader = self.leader.clone().unwrap_or_default();
        let members = if leader == member_id { self.joined_members() } else { Vec::new() };
        JoinResult {
            error: NONE,
            member_id: member_id.to_string(),
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader,
            members,
        }
    }

    fn join(&mut self, p: JoinParams, cfg: &GroupConfig, now: Instant) -> Reply<JoinResult> {
        let fail = |error: i16, member_id: &str| Reply::Now(JoinResult::error(error, member_id.to_string()));
        if self.state == GroupState::Dead {
            return fail(code(ResponseError::CoordinatorNotAvailable), &p.member_id);
        }
        if !self.supports(&p.protocol_type, &p.protocols) {
            return fail(code(ResponseError::InconsistentGroupProtocol), &p.member_id);
        }
        if p.member_id.is_empty() { self.join_new(p, cfg, now) } else { self.join_known(p, cfg, now) }
    }

    fn join_new(&mut self, p: JoinParams, cfg: &GroupConfig, now: Instant) -> Reply<JoinResult> {
        let prefix = p.instance_id.as_deref().unwrap_or(&p.client_id);
        let member_id = new_member_id(prefix);
        if let Some(instance) = &p.instance_id
            && let Some(old) = self.static_members.get(instance).cloned()
        {
            return self.replace_static_member(&old, member_id, p, now);
        }
        if self.is_full(cfg) {
            return Reply::Now(JoinResult::error(code(ResponseError::GroupMaxSizeReached), String::new()));
        }
        if p.instance_id.is_none() && p.require_known_member_id {
            self.pending.insert(member_id.clone(), now + p.session_timeout);
            return Reply::Now(JoinResult::error(code(ResponseError::MemberIdRequired), member_id));
        }
        self.add_member_and_rebalance(member_id, p, cfg, now)
    }

    fn join_known(&mut self, p: JoinParams, cfg: &GroupConfig, now: Instant) -> Reply<JoinResult> {
        if self.pending.remove(&p.member_id).is_some() {
            let member_id = p.member_id.clone();
            return self.add_member_and_rebalance(member_id, p, cfg, now);
        }
        if let Err(error) = self.validate_member(&p.member_id, p.instance_id.as_deref()) {
            return Reply::Now(JoinResult::error(error, p.member_id));
        }
        let Some(same) = self.members.get(&p.member_id).map(|m| m.same_protocols(&p.protocols)) else {
            return Reply::Now(JoinResult::error(code(ResponseError::UnknownMemberId), p.member_id));
        };
        let is_leader = self.is_leader(&p.member_id);
        match self.state {
            GroupState::PreparingRebalance => self.update_member_and_rebalance(p, cfg, now),
            // CompletingRebalance: the member probably missed its JoinGroup response; Stable:
            // nothing changed for a follower. Either way, answer with the current generation.
            GroupState::CompletingRebalance | GroupState::Stable
                if same && (self.state == GroupState::CompletingRebalance || !is_leader) =>
            {
                if let Some(member) = self.members.get_mut(&p.member_id) {
                    member.heartbeat(now);
                }
                Reply::Now(self.current_join_result(&p.member_id))
            }
            GroupState::CompletingRebalance | GroupState::Stable => self.update_member_and_rebalance(p, cfg, now),
            GroupState::Empty | GroupState::Dead => {
                Reply::Now(JoinResult::error(code(ResponseError::UnknownMemberId), p.member_id))
            }
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        member_id: String,
        p: JoinParams,
        cfg: &GroupConfig,
        now: Instant,
    ) -> Reply<JoinResult> {
        if !self.fits(None, &p.protocols) {
            return Reply::Now(JoinResult::error(code(ResponseError::GroupMaxSizeReached), member_id));
        }
        if self.members.is_empty() {
            self.protocol_type = Some(p.protocol_type.clone());
        }
        let (tx, rx) = oneshot::channel();
        let join_timeout = p.session_timeout.max(Duration::from_millis(NEW_MEMBER_JOIN_TIMEOUT_MS));
        let member = Member {
            id: member_id.clone(),
            instance_id: p.instance_id.clone(),
            client_id: p.client_id,
            client_host: p.client_host,
            session_timeout: p.session_timeout,
            rebalance_timeout: p.rebalance_timeout,
            protocols: p.protocols,
            assignment: Bytes::new(),
            join_waiter: Some(tx),
            sync_waiter: None,
            heartbeat_deadline: now + join_timeout,
            is_new: true,
        };
        if let Some(instance) = p.instance_id {
            self.static_members.insert(instance, member_id.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(member_id.clone());
        }
        self.members.insert(member_id, member);
        if let Some(d) = &mut self.initial_delay {
            d.new_member_added = true;
        }
        self.maybe_prepare_rebalance(cfg, now);
        self.check_join(now);
        Reply::Wait(rx)
    }

    fn update_member_and_rebalance(&mut self, p: JoinParams, cfg: &GroupConfig, now: Instant) -> Reply<JoinResult> {
        if !self.fits(Some(&p.member_id), &p.protocols) {
            return Reply::Now(JoinResult::error(code(ResponseError::GroupMaxSizeReached), p.member_id));
        }
        let Some(member) = self.members.get_mut(&p.member_id) else {
            return Reply::Now(JoinResult::error(code(ResponseError::UnknownMemberId), p.member_id));
        };
        member.protocols = p.protocols;
        member.session_timeout = p.session_timeout;
        member.rebalance_timeout = p.rebalance_timeout;
        member.client_id = p.client_id;
        member.client_host = p.client_host;
        member.heartbeat(now);
        // A second JoinGroup from the same member replaces the first.
        member.send_join(JoinResult::error(code(ResponseError::RebalanceInProgress), p.member_id.clone()));
        let (tx, rx) = oneshot::channel();
        member.join_waiter = Some(tx);
        self.maybe_prepare_rebalance(cfg, now);
        self.check_join(now);
        Reply::Wait(rx)
    }

    /// A static member rejoined with an empty member id: it takes over its old member id's
    /// place (and assignment), fencing the old id, without a rebalance if the group is stable
    /// and the chosen protocol stays the same.
    fn replace_static_member(
        &mut self,
        old_id: &str,
        new_id: String,
        p: JoinParams,
        now: Instant,
    ) -> Reply<JoinResult> {
        if !self.fits(Some(old_id), &p.protocols) {
            return Reply::Now(JoinResult::error(code(ResponseError::GroupMaxSizeReached), String::new()));
        }
        let Some(mut member) = self.members.remove(old_id) else {
            return Reply::Now(JoinResult::error(code(ResponseError::UnknownMemberId), String::new()));
        };
        member.send_join(JoinResult::error(code(ResponseError::FencedInstanceId), old_id.to_string()));
        member.send_sync(SyncResult::error(code(ResponseError::FencedInstanceId)));
        let old_leader = self.leader.clone().unwrap_or_default();
        if self.is_leader(old_id) {
            self.leader = Some(new_id.clone());
        }
        if let Some(instance) = &p.instance_id {
            self.static_members.insert(instance.clone(), new_id.clone());
        }
        member.id = new_id.clone();
        member.protocols = p.protocols;
        member.session_timeout = p.session_timeout;
        member.rebalance_timeout = p.rebalance_timeout;
        member.client_id = p.client_id;
        member.client_host = p.client_host;
        member.heartbeat(now);
        self.members.insert(new_id.clone(), member);
        let wait = |group: &mut Group| {
            let (tx, rx) = oneshot::channel();
            if let Some(m) = group.members.get_mut(&new_id) {
                m.join_waiter = Some(tx);
            }
            rx
        };
        match self.state {
            GroupState::Stable if self.select_protocol() == self.protocol_name => {
                // The old leader id is returned so that the member does not think it leads
                // and runs an assignment a stable group would not distribute.
                Reply::Now(JoinResult {
                    error: NONE,
                    member_id: new_id.clone(),
                    generation: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol_name.clone(),
                    leader: old_leader,
                    members: Vec::new(),
                })
            }
            GroupState::Stable | GroupState::CompletingRebalance => {
                let rx = wait(self);
                self.prepare_rebalance(now, None);
                self.check_join(now);
                Reply::Wait(rx)
            }
            GroupState::PreparingRebalance => {
                let rx = wait(self);
                self.check_join(now);
                Reply::Wait(rx)
            }
            GroupState::Empty | GroupState::Dead => {
                Reply::Now(JoinResult::error(code(ResponseError::UnknownMemberId), new_id.clone()))
            }
        }
    }

    fn maybe_prepare_rebalance(&mut self, cfg: &GroupConfig, now: Instant) {
        if matches!(self.state, GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty) {
            self.prepare_rebalance(now, Some(cfg));
        }
    }

    /// Starts a rebalance: members must rejoin within the largest rebalance timeout.
    fn prepare_rebalance(&mut self, now: Instant, cfg: Option<&GroupConfig>) {
        if self.state == GroupState::CompletingRebalance {
            for m in self.members.values_mut() {
                m.assignment = Bytes::new();
                m.send_sync(SyncResult::error(code(ResponseError::RebalanceInProgress)));
            }
        }
        let initial = cfg.map_or(Duration::ZERO, |c| Duration::from_millis(c.initial_rebalance_delay_ms));
        if self.state == GroupState::Empty && !initial.is_zero() {
            self.initial_delay = Some(InitialDelay {
                delay: initial,
                remaining: self.max_rebalance_timeout().saturating_sub(initial),
                new_member_added: false,
            });
            self.rebalance_deadline = Some(now + initial);
        } else {
            self.initial_delay = None;
            self.rebalance_deadline = Some(now + self.max_rebalance_timeout());
        }
        self.state = GroupState::PreparingRebalance;
    }

    /// Completes the join phase early once every known member has rejoined.
    fn check_join(&mut self, now: Instant) {
        if self.state == GroupState::PreparingRebalance && self.initial_delay.is_none() && self.all_joined() {
            self.complete_join(now);
        }
    }

    /// Ends the join phase: members that did not rejoin leave, the generation moves on, and
    /// every joined member gets its JoinGroup response (the leader with all members' metadata).
    fn complete_join(&mut self, now: Instant) {
        let gone: Vec<String> = self.members.values().filter(|m| !m.awaiting_join()).map(|m| m.id.clone()).collect();
        for id in gone {
            self.drop_member(&id);
        }
        self.rebalance_deadline = None;
        self.initial_delay = None;
        self.generation = if self.generation >= i32::MAX - 1 { 1 } else { self.generation + 1 };
        if self.members.is_empty() {
            self.protocol_name = None;
            self.leader = None;
            self.state = GroupState::Empty;
            self.empty_since = now;
            self.emptied_at = Some(now);
            return;
        }
        self.protocol_name = self.select_protocol();
        if !self.leader.as_ref().is_some_and(|l| self.members.contains_key(l)) {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = GroupState::CompletingRebalance;
        let leader = self.leader.clone().unwrap_or_default();
        let joined = self.joined_members();
        let (generation, protocol_type, protocol_name) =
            (self.generation, self.protocol_type.clone(), self.protocol_name.clone());
        for m in self.members.values_mut() {
            m.is_new = false;
            m.heartbeat(now);
            let members = if m.id == leader { joined.clone() } else { Vec::new() };
            m.send_join(JoinResult {
                error: NONE,
                member_id: m.id.clone(),
                generation,
                protocol_type: protocol_type.clone(),
                protocol_name: protocol_name.clone(),
                leader: leader.clone(),
                members,
            });
        }
    }

    /// Removes a member without touching the group's state.
    fn drop_member(&mut self, member_id: &str) {
        let Some(mut m) = self.members.remove(member_id) else { return };
        m.send_join(JoinResult::error(code(ResponseError::UnknownMemberId), String::new()));
        m.send_sync(SyncResult::error(code(ResponseError::UnknownMemberId)));
        if let Some(instance) = &m.instance_id
            && self.static_members.get(instance).is_some_and(|id| id == member_id)
        {
            self.static_members.remove(instance);
        }
        if self.is_leader(member_id) {
            self.leader = self.members.keys().next().cloned();
        }
    }

    /// Removes a member (left, expired or kicked out) and rebalances the others.
    fn remove_member(&mut self, member_id: &str, cfg: &GroupConfig, now: Instant) {
        self.drop_member(member_id);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.maybe_prepare_rebalance(cfg, now);
                // Completes at once when nobody is left to wait for.
                self.check_join(now);
            }
            GroupState::PreparingRebalance => self.check_join(now),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// Expires sessions and pending members, and ends a join phase whose deadline passed.
    fn tick(&mut self, cfg: &GroupConfig, now: Instant) {
        let pending_before = self.pending.len();
        self.pending.retain(|_, deadline| *deadline > now);
        let expired: Vec<String> = self.members.values().filter(|m| !m.keep_alive(now)).map(|m| m.id.clone()).collect();
        for id in expired {
            tracing::info!(group = %self.id, member = %id, "member session expired");
            self.remove_member(&id, cfg, now);
        }
        if self.pending.len() != pending_before {
            self.check_join(now);
        }
        if self.state == GroupState::PreparingRebalance && self.rebalance_deadline.is_some_and(|d| d <= now) {
            match &mut self.initial_delay {
                Some(d) if d.new_member_added && !d.remaining.is_zero() => {
                    let step = d.delay.min(d.remaining);
                    d.remaining -= step;
                    d.new_member_added = false;
                    self.rebalance_deadline = Some(now + step);
                }
                _ => {
                    self.initial_delay = None;
                    self.complete_join(now);
                }
            }
        }
    }

    /// Whether the group can be forgotten: empty for a while, no offsets, nobody joining.
    fn is_idle(&self, cfg: &GroupConfig, now: Instant) -> bool {
        self.state == GroupState::Empty
            && self.members.is_empty()
            && self.pending.is_empty()
            && self.offsets.is_empty()
            && now.saturating_duration_since(self.empty_since) >= Duration::from_millis(cfg.empty_group_retention_ms)
    }

    /// The committed offsets past `retention_ms` (Kafka's `offsets.retention.minutes`,
    /// KIP-211), at `now` (`now_ms` on the wall clock):
    /// - a group without members (Empty, nobody holding a member id from MEMBER_ID_REQUIRED),
    ///   including one that only ever had standalone commits: all of its offsets, once
    ///   [`empty_group_offsets_expired`];
    /// - a Stable `consumer` group: the offsets of topics no member subscribes to, each
    ///   `retention_ms` after its own commit, as Kafka does;
    /// - otherwise (rebalancing, being deleted): none.
    pub fn expired_offsets(&self, retention_ms: u64, now: Instant, now_ms: i64) -> Vec<(String, i32)> {
        match self.state {
            GroupState::Empty if self.members.is_empty() && self.pending.is_empty() => {
                let Some(latest_commit_ms) = self.offsets.values().map(|e| e.commit_timestamp).max() else {
                    return Vec::new();
                };
                let emptied_at_ms = self.emptied_at.map(|at| {
                    let empty_for_ms = i64::try_from(now.saturating_duration_since(at).as_millis()).unwrap_or(i64::MAX);
                    now_ms.saturating_sub(empty_for_ms)
                });
                if empty_group_offsets_expired(latest_commit_ms, emptied_at_ms, now_ms, retention_ms) {
                    self.offsets.keys().cloned().collect()
                } else {
                    Vec::new()
                }
            }
            GroupState::Stable => {
                let Some(subscribed) = self.subscribed_topics() else { return Vec::new() };
                self.offsets
                    .iter()
                    .filter(|((topic, _), e)| {
                        subscribed.binary_search(topic).is_err()
                            && retention_passed(e.commit_timestamp, now_ms, retention_ms)
                    })
                    .map(|(key, _)| key.clone())
                    .collect()
            }
            _ => Vec::new(),
        }
    }

    /// Topics the members consume, from their `consumer` protocol subscriptions; `None` when
    /// unknown (then every topic counts as subscribed).
    pub fn subscribed_topics(&self) -> Option<Vec<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = Vec::new();
        for m in self.members.values() {
            topics.extend(parse_subscription_topics(&m.metadata(Some(protocol)))?);
        }
        topics.sort();
        topics.dedup();
        Some(topics)
    }

    /// Mark the group as being deleted (only when empty).
    pub fn set_dead(&mut self, dead: bool) {
        self.state = if dead { GroupState::Dead } else { GroupState::Empty };
    }

    /// Fails every pending JoinGroup and SyncGroup with `error` (coordinator shutdown).
    fn fail_waiters(&mut self, error: i16) {
        for m in self.members.values_mut() {
            m.send_join(JoinResult::error(error, m.id.clone()));
            m.send_sync(SyncResult::error(error));
        }
    }
}

/// Whether the offsets of a group without members have expired: `retention_ms` passed since
/// the later of its latest commit and the moment it lost its last member (`emptied_at_ms`,
/// `None` when not seen since the coordinator opened). Kafka counts from the moment the group
/// became empty, which it persists; runnel does not persist membership, so the latest commit
/// (whose timestamp is in `__consumer_offsets`) is the lower bound it has after a restart. A
/// commit timestamp in the future (the clock went back) keeps the offsets.
pub(crate) fn empty_group_offsets_expired(
    latest_commit_ms: i64,
    emptied_at_ms: Option<i64>,
    now_ms: i64,
    retention_ms: u64,
) -> bool {
    let since_ms = emptied_at_ms.map_or(latest_commit_ms, |at| at.max(latest_commit_ms));
    retention_passed(since_ms, now_ms, retention_ms)
}

/// Whether `retention_ms` passed between `since_ms` and `now_ms` (wall clock, any values).
fn retention_passed(since_ms: i64, now_ms: i64, retention_ms: u64) -> bool {
    i128::from(now_ms) - i128::from(since_ms) >= i128::from(retention_ms)
}

/// Topics of a `ConsumerProtocolSubscription` (any version: the topic array comes first and
/// the encoding is never flexible). Parsed by hand, bounded by the input.
pub(crate) fn parse_subscription_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut pos = 0usize;
    let mut take = |n: usize| -> Option<&[u8]> {
        let s = metadata.get(pos..pos.checked_add(n)?)?;
        pos += n;
        Some(s)
    };
    let version = i16::from_be_bytes(take(2)?.try_into().ok()?);
    if version < 0 {
        return None;
    }
    let count = i32::from_be_bytes(take(4)?.try_into().ok()?);
    let count = usize::try_from(count).ok()?;
    let mut topics = Vec::with_capacity(count.min(metadata.len() / 2));
    for _ in 0..count {
        let len = i16::from_be_bytes(take(2)?.try_into().ok()?);
        let len = usize::try_from(len).ok()?;
        topics.push(std::str::from_utf8(take(len)?).ok()?.to_string());
    }
    Some(topics)
}

/// A fresh member id: `<client id or group instance id>-<random UUID>`, as Kafka makes them.
fn new_member_id(prefix: &str) -> String {
    let mut end = prefix.len().min(MEMBER_ID_CLIENT_PREFIX_BYTES_MAX);
    while !prefix.is_char_boundary(end) {
        end -= 1;
    }
    let (a, b) = (random_u64(), random_u64());
    let uuid = ((a as u128) << 64) | b as u128;
    // Version 4 (random), variant 1, as java.util.UUID.randomUUID() makes them.
    let uuid = (uuid & !(0xf_u128 << 76)) | (0x4_u128 << 76);
    let uuid = (uuid & !(0x3_u128 << 62)) | (0x2_u128 << 62);
    let h = format!("{uuid:032x}");
    format!("{}-{}-{}-{}-{}-{}", &prefix[..end], &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// 64 unpredictable bits from the standard library's randomly keyed SipHash.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

/// Every group of the coordinator.
#[derive(Default)]
pub(crate) struct Groups {
    pub map: HashMap<String, Group>,
    /// Committed offsets held, over all groups.
    pub offsets_total: usize,
}

/// Why a JoinGroup is refused before looking at the group.
fn validate_join(group_id: &str, p: &JoinParams, cfg: &GroupConfig) -> Result<(), i16> {
    if group_id.is_empty() || group_id.len() > GROUP_ID_BYTES_MAX {
        return Err(code(ResponseError::InvalidGroupId));
    }
    let session = p.session_timeout.as_millis();
    if session < u128::from(cfg.session_timeout_ms_min) || session > u128::from(cfg.session_timeout_ms_max) {
        return Err(code(ResponseError::InvalidSessionTimeout));
    }
    if p.protocol_type.is_empty() || p.protocols.is_empty() {
        return Err(code(ResponseError::InconsistentGroupProtocol));
    }
    if p.protocols.len() > PROTOCOLS_PER_MEMBER_MAX
        || p.protocol_type.len() > PROTOCOL_NAME_BYTES_MAX
        || p.protocols.iter().any(|(name, _)| name.len() > PROTOCOL_NAME_BYTES_MAX)
        || p.instance_id.as_ref().is_some_and(|i| i.len() > GROUP_INSTANCE_ID_BYTES_MAX)
        || p.member_id.len() > GROUP_INSTANCE_ID_BYTES_MAX + MEMBER_ID_CLIENT_PREFIX_BYTES_MAX
    {
        return Err(code(ResponseError::InvalidRequest));
    }
    if protocols_bytes(&p.protocols) > MEMBER_METADATA_BYTES_MAX {
        return Err(code(ResponseError::MessageTooLarge));
    }
    Ok(())
}

impl Groups {
    pub fn join(&mut self, group_id: &str, p: JoinParams, cfg: &GroupConfig, now: Instant) -> Reply<JoinResult> {
        if let Err(error) = validate_join(group_id, &p, cfg) {
            return Reply::Now(JoinResult::error(error, p.member_id));
        }
        if !self.map.contains_key(group_id) {
            if !p.member_id.is_empty() {
                return Reply::Now(JoinResult::error(code(ResponseError::UnknownMemberId), p.member_id));
            }
            if self.map.len() >= cfg.groups_max {
                tracing::warn!(group = group_id, max = cfg.groups_max, "too many groups: JoinGroup refused");
                return Reply::Now(JoinResult::error(code(ResponseError::GroupMaxSizeReached), p.member_id));
            }
            self.map.insert(group_id.to_string(), Group::new(group_id.to_string(), now));
        }
        match self.map.get_mut(group_id) {
            Some(group) => group.join(p, cfg, now),
            None => Reply::Now(JoinResult::error(code(ResponseError::CoordinatorNotAvailable), p.member_id)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &mut self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
    ) -> Reply<SyncResult> {
        let fail = |e: ResponseError| Reply::Now(SyncResult::error(code(e)));
        if group_id.is_empty() || group_id.len() > GROUP_ID_BYTES_MAX {
            return fail(ResponseError::InvalidGroupId);
        }
        let Some(group) = self.map.get_mut(group_id) else {
            return fail(ResponseError::UnknownMemberId);
        };
        if group.state == GroupState::Dead {
            return fail(ResponseError::CoordinatorNotAvailable);
        }
        if let Err(error) = group.validate_member(member_id, instance_id) {
            return Reply::Now(SyncResult::error(error));
        }
        if generation != group.generation {
            return fail(ResponseError::IllegalGeneration);
        }
        if protocol_type.is_some_and(|t| group.protocol_type.as_deref() != Some(t))
            || protocol_name.is_some_and(|n| group.protocol_name.as_deref() != Some(n))
        {
            return fail(ResponseError::InconsistentGroupProtocol);
        }
        let is_leader = group.is_leader(member_id);
        let result = |group: &Group, assignment: Bytes| SyncResult {
            error: NONE,
            assignment,
            protocol_type: group.protocol_type.clone(),
            protocol_name: group.protocol_name.clone(),
        };
        match group.state {
            GroupState::Empty | GroupState::Dead => fail(ResponseError::UnknownMemberId),
            GroupState::PreparingRebalance => fail(ResponseError::RebalanceInProgress),
            GroupState::Stable => {
                let Some(member) = group.members.get_mut(member_id) else {
                    return fail(ResponseError::UnknownMemberId);
                };
                member.heartbeat(now);
                let assignment = member.assignment.clone();
                Reply::Now(result(group, assignment))
            }
            GroupState::CompletingRebalance => {
                if is_leader {
                    let too_large = assignments.iter().any(|(_, a)| a.len() > MEMBER_ASSIGNMENT_BYTES_MAX)
                        || group.state_bytes_except(None) + assignments.iter().map(|(_, a)| a.len()).sum::<usize>()
                            > GROUP_STATE_BYTES_MAX;
                    if too_large {
                        tracing::warn!(group = group_id, "SyncGroup assignments too large: rebalancing");
                        group.prepare_rebalance(now, None);
                        return fail(ResponseError::MessageTooLarge);
                    }
                }
                let Some(member) = group.members.get_mut(member_id) else {
                    return fail(ResponseError::UnknownMemberId);
                };
                member.heartbeat(now);
                member.send_sync(SyncResult::error(code(ResponseError::RebalanceInProgress)));
                let (tx, rx) = oneshot::channel();
                member.sync_waiter = Some(tx);
                if is_leader {
                    for m in group.members.values_mut() {
                        m.assignment = Bytes::new();
                    }
                    for (id, assignment) in assignments {
                        if let Some(m) = group.members.get_mut(&id) {
                            m.assignment = assignment;
                        }
                    }
                    group.state = GroupState::Stable;
                    let (protocol_type, protocol_name) = (group.protocol_type.clone(), group.protocol_name.clone());
                    for m in group.members.values_mut() {
                        let assignment = m.assignment.clone();
                        m.send_sync(SyncResult {
                            error: NONE,
                            assignment,
                            protocol_type: protocol_type.clone(),
                            protocol_name: protocol_name.clone(),
                        });
                    }
                }
                Reply::Wait(rx)
            }
        }
    }

    pub fn heartbeat(
        &mut self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
    ) -> i16 {
        if group_id.is_empty() || group_id.len() > GROUP_ID_BYTES_MAX {
            return code(ResponseError::InvalidGroupId);
        }
        let Some(group) = self.map.get_mut(group_id) else {
            return code(ResponseError::UnknownMemberId);
        };
        if group.state == GroupState::Dead {
            return code(ResponseError::CoordinatorNotAvailable);
        }
        if let Err(error) = group.validate_member(member_id, instance_id) {
            return error;
        }
        let state = group.state;
        let current = group.generation;
        let Some(member) = group.members.get_mut(member_id) else {
            return code(ResponseError::UnknownMemberId);
        };
        match state {
            GroupState::Empty | GroupState::Dead => code(ResponseError::UnknownMemberId),
            GroupState::PreparingRebalance => {
                member.heartbeat(now);
                code(ResponseError::RebalanceInProgress)
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                if generation != current {
                    return code(ResponseError::IllegalGeneration);
                }
                member.heartbeat(now);
                NONE
            }
        }
    }

    /// LeaveGroup: `Err(top-level error)` or one error per leaving member.
    pub fn leave(
        &mut self,
        group_id: &str,
        leaving: &[(String, Option<String>)],
        cfg: &GroupConfig,
        now: Instant,
    ) -> Result<Vec<i16>, i16> {
        if group_id.is_empty() || group_id.len() > GROUP_ID_BYTES_MAX {
            return Err(code(ResponseError::InvalidGroupId));
        }
        let Some(group) = self.map.get_mut(group_id) else {
            return Ok(leaving.iter().map(|_| code(ResponseError::UnknownMemberId)).collect());
        };
        if group.state == GroupState::Dead {
            return Err(code(ResponseError::CoordinatorNotAvailable));
        }
        let mut errors = Vec::with_capacity(leaving.len());
        for (member_id, instance_id) in leaving {
            let error = if member_id.is_empty() {
                // Administrative removal by group.instance.id.
                match instance_id.as_ref().and_then(|i| group.static_members.get(i)).cloned() {
                    Some(id) => {
                        group.remove_member(&id, cfg, now);
                        NONE
                    }
                    None => code(ResponseError::UnknownMemberId),
                }
            } else if group.pending.remove(member_id).is_some() {
                group.check_join(now);
                NONE
            } else {
                match group.validate_member(member_id, instance_id.as_deref()) {
                    Ok(()) => {
                        tracing::debug!(group = group_id, member = %member_id, "member left");
                        group.remove_member(member_id, cfg, now);
                        NONE
                    }
                    Err(error) => error,
                }
            };
            errors.push(error);
        }
        Ok(errors)
    }

    /// Checks that an OffsetCommit may go ahead (Kafka's rules): members of the current
    /// generation, or anyone with generation -1 and no member id while the group is empty
    /// (a "simple consumer", or an admin resetting offsets). Creates the group for the latter.
    pub fn validate_commit(
        &mut self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        cfg: &GroupConfig,
        now: Instant,
    ) -> Result<(), i16> {
        if group_id.len() > GROUP_ID_BYTES_MAX {
            return Err(code(ResponseError::InvalidGroupId));
        }
        let Some(group) = self.map.get_mut(group_id) else {
            if generation >= 0 {
                return Err(code(ResponseError::IllegalGeneration));
            }
            if self.map.len() >= cfg.groups_max {
                tracing::warn!(group = group_id, max = cfg.groups_max, "too many groups: OffsetCommit refused");
                return Err(code(ResponseError::GroupMaxSizeReached));
            }
            self.map.insert(group_id.to_string(), Group::new(group_id.to_string(), now));
            return Ok(());
        };
        if group.state == GroupState::Dead {
            return Err(code(ResponseError::CoordinatorNotAvailable));
        }
        if generation >= 0 || !member_id.is_empty() || instance_id.is_some() {
            group.validate_member(member_id, instance_id)?;
            if generation != group.generation {
                return Err(code(ResponseError::IllegalGeneration));
            }
        } else if group.state != GroupState::Empty {
            return Err(code(ResponseError::UnknownMemberId));
        }
        if group.state == GroupState::CompletingRebalance {
            return Err(code(ResponseError::RebalanceInProgress));
        }
        if let Some(member) = group.members.get_mut(member_id) {
            member.heartbeat(now);
        }
        Ok(())
    }

    /// Records durable commits (tombstones when `entry` is `None`).
    pub fn apply_offsets(
        &mut self,
        group_id: &str,
        entries: impl IntoIterator<Item = ((String, i32), Option<OffsetEntry>)>,
        now: Instant,
    ) {
        let group = self.map.entry(group_id.to_string()).or_insert_with(|| Group::new(group_id.to_string(), now));
        for (key, entry) in entries {
            match entry {
                Some(entry) => {
                    if group.offsets.insert(key, entry).is_none() {
                        self.offsets_total += 1;
                    }
                }
                None => {
                    if group.offsets.remove(&key).is_some() {
                        self.offsets_total = self.offsets_total.saturating_sub(1);
                    }
                }
            }
        }
        if group.offsets.is_empty() && group.state == GroupState::Empty {
            group.empty_since = now;
        }
    }

    /// Removes a group that was being deleted.
    pub fn remove_group(&mut self, group_id: &str) {
        if let Some(group) = self.map.remove(group_id) {
            self.offsets_total = self.offsets_total.saturating_sub(group.offsets.len());
        }
    }

    pub fn tick(&mut self, cfg: &GroupConfig, now: Instant) {
        for group in self.map.values_mut() {
            group.tick(cfg, now);
        }
        self.map.retain(|_, g| !g.is_idle(cfg, now));
    }

    /// The ids of the groups with committed offsets past `retention_ms` (see
    /// [`Group::expired_offsets`]).
    pub fn with_expired_offsets(&self, retention_ms: u64, now: Instant, now_ms: i64) -> Vec<String> {
        self.map
            .values()
            .filter(|g| !g.expired_offsets(retention_ms, now, now_ms).is_empty())
            .map(|g| g.id.clone())
            .collect()
    }

    pub fn fail_waiters(&mut self, error: i16) {
        for group in self.map.values_mut() {
            group.fail_waiters(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_parse_and_garbage_does_not() {
        let mut m = Vec::new();
        m.extend_from_slice(&3i16.to_be_bytes());
        m.extend_from_slice(&2i32.to_be_bytes());
        for t in ["a", "bc"] {
            m.extend_from_slice(&(t.len() as i16).to_be_bytes());
            m.extend_from_slice(t.as_bytes());
        }
        m.extend_from_slice(&[0xff; 12]);
        assert_eq!(parse_subscription_topics(&m), Some(vec!["a".to_string(), "bc".to_string()]));
        for n in 0..8 {
            assert_eq!(parse_subscription_topics(&m[..n]), None);
        }
        // A huge claimed count is bounded by the input, not allocated.
        let huge = [&0i16.to_be_bytes()[..], &i32::MAX.to_be_bytes()].concat();
        assert_eq!(parse_subscription_topics(&huge), None);
        assert_eq!(parse_subscription_topics(&[0, 0, 0xff, 0xff, 0xff, 0xff]), None);
    }

    #[test]
    fn member_ids_are_prefixed_uuids() {
        let a = new_member_id("rdkafka");
        let b = new_member_id("rdkafka");
        assert_ne!(a, b);
        let uuid = a.strip_prefix("rdkafka-").unwrap();
        let parts: Vec<&str> = uuid.split('-').collect();
        assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), vec![8, 4, 4, 4, 12]);
        assert!(parts[2].starts_with('4'));
        let long = "é".repeat(200);
        let id = new_member_id(&long);
        assert!(id.len() <= MEMBER_ID_CLIENT_PREFIX_BYTES_MAX + 37);
    }

    const DAY_MS: u64 = 24 * 60 * 60 * 1000;

    #[test]
    fn offsets_of_an_empty_group_expire_from_the_later_of_last_commit_and_emptied() {
        let now_ms = 1_700_000_000_000i64;
        let ago = |ms: u64| now_ms - ms as i64;
        // Unknown since when it is empty (after a restart): the latest commit counts.
        assert!(empty_group_offsets_expired(ago(DAY_MS), None, now_ms, DAY_MS));
        assert!(!empty_group_offsets_expired(ago(DAY_MS - 1), None, now_ms, DAY_MS));
        // Emptied after the last commit: counted from then.
        assert!(!empty_group_offsets_expired(ago(3 * DAY_MS), Some(ago(DAY_MS - 1)), now_ms, DAY_MS));
        assert!(empty_group_offsets_expired(ago(3 * DAY_MS), Some(ago(DAY_MS)), now_ms, DAY_MS));
        // A standalone commit after the group emptied restarts the clock.
        assert!(!empty_group_offsets_expired(ago(1), Some(ago(3 * DAY_MS)), now_ms, DAY_MS));
        // The clock went back: a commit in the future keeps its offsets; extremes do not overflow.
        assert!(!empty_group_offsets_expired(now_ms + 1_000, None, now_ms, 0));
        assert!(empty_group_offsets_expired(i64::MIN, None, i64::MAX, u64::MAX));
        assert!(!empty_group_offsets_expired(i64::MAX, Some(i64::MIN), i64::MIN, 0));
        assert!(empty_group_offsets_expired(now_ms, None, now_ms, 0));
    }

    fn entry(commit_timestamp: i64) -> OffsetEntry {
        OffsetEntry { offset: 1, leader_epoch: -1, metadata: String::new(), commit_timestamp }
    }

    #[test]
    fn every_offset_of_an_empty_group_expires_together() {
        let (now, now_ms) = (Instant::now(), 1_700_000_000_000i64);
        let mut g = Group::new("g".into(), now);
        assert!(g.expired_offsets(0, now, now_ms).is_empty(), "nothing committed");
        g.offsets.insert(("t".into(), 0), entry(now_ms - 5_000));
        g.offsets.insert(("t".into(), 1), entry(now_ms - 500));
        assert!(g.expired_offsets(1_000, now, now_ms).is_empty(), "the latest commit is recent");
        assert_eq!(g.expired_offsets(500, now, now_ms), vec![("t".to_string(), 0), ("t".to_string(), 1)]);
        // Became empty after the commits (while running): counted from then.
        g.emptied_at = Some(now);
        assert!(g.expired_offsets(500, now + Duration::from_millis(499), now_ms + 499).is_empty());
        assert_eq!(g.expired_offsets(500, now + Duration::from_millis(500), now_ms + 500).len(), 2);
        // Somebody holding a member id is about to join: kept.
        g.pending.insert("m".into(), now + Duration::from_secs(60));
        assert!(g.expired_offsets(0, now + Duration::from_secs(1), now_ms + 1_000).is_empty());
        g.pending.clear();
        // Rebalancing or being deleted: kept.
        for state in [GroupState::PreparingRebalance, GroupState::CompletingRebalance, GroupState::Dead] {
            g.state = state;
            assert!(g.expired_offsets(0, now, now_ms).is_empty(), "{state}");
        }
    }

    #[test]
    fn a_stable_group_loses_only_old_offsets_of_topics_nobody_subscribes_to() {
        let (now, now_ms) = (Instant::now(), 1_700_000_000_000i64);
        let mut subscription = Vec::new();
        subscription.extend_from_slice(&0i16.to_be_bytes());
        subscription.extend_from_slice(&1i32.to_be_bytes());
        subscription.extend_from_slice(&1i16.to_be_bytes());
        subscription.extend_from_slice(b"a");
        let mut g = Group::new("g".into(), now);
        g.state = GroupState::Stable;
        g.protocol_type = Some("consumer".into());
        g.protocol_name = Some("range".into());
        let (tx, _rx) = oneshot::channel();
        g.members.insert(
            "m".into(),
            Member {
                id: "m".into(),
                instance_id: None,
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                session_timeout: Duration::from_secs(10),
                rebalance_timeout: Duration::from_secs(10),
                protocols: vec![("range".into(), Bytes::from(subscription))],
                assignment: Bytes::new(),
                join_waiter: None,
                sync_waiter: Some(tx),
                heartbeat_deadline: now + Duration::from_secs(10),
                is_new: false,
            },
        );
        g.offsets.insert(("a".into(), 0), entry(now_ms - 10_000));
        g.offsets.insert(("b".into(), 0), entry(now_ms - 10_000));
        g.offsets.insert(("c".into(), 0), entry(now_ms - 10));
        assert_eq!(g.expired_offsets(1_000, now, now_ms), vec![("b".to_string(), 0)]);
        // Not a `consumer` group: subscriptions unknown, every offset kept.
        g.protocol_type = Some("connect".into());
        assert!(g.expired_offsets(0, now, now_ms).is_empty());
    }

    #[test]
    fn state_names_parse_ignoring_case() {
        assert_eq!(GroupState::parse("stable"), Some(GroupState::Stable));
        assert_eq!(GroupState::parse("COMPLETINGREBALANCE"), Some(GroupState::CompletingRebalance));
        assert_eq!(GroupState::parse("Assigning"), None);
    }
}
