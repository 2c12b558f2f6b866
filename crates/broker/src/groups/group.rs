//! One classic group's state: its state machine state, generation, members (with the responses
//! their pending JoinGroup/SyncGroup requests are waiting for), static member ids, the timers of a
//! rebalance in progress, and its committed offsets. Pure data plus the questions Kafka's
//! `GroupMetadata` answers (protocol support and selection, subscribed topics); the transitions
//! live in the coordinator.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use bytes::Bytes;
use strom_protocol::codec::{get_i16, get_i32, get_string};
use strom_protocol::messages::join_group_response::{JoinGroupResponse, JoinGroupResponseMember};
use strom_protocol::messages::sync_group_response::SyncGroupResponse;
use strom_protocol::ErrorCode;
use tokio::sync::oneshot;

use super::records::{CommittedOffset, StoredGroup, StoredMember};

/// The classic protocol's group states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The name Kafka reports in ListGroups and DescribeGroups.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// A group member and, while it waits, the channel its JoinGroup or SyncGroup response goes to.
#[derive(Debug)]
pub struct Member {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    /// The protocols (assignors) the member supports, in its order of preference, with metadata.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    pub join_waiter: Option<oneshot::Sender<JoinGroupResponse>>,
    pub sync_waiter: Option<oneshot::Sender<SyncGroupResponse>>,
    pub last_heartbeat_ms: i64,
}

impl Member {
    /// The member's metadata for `protocol`, empty if it does not support it.
    pub fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }

    pub fn is_awaiting_join(&self) -> bool {
        self.join_waiter.is_some()
    }

    /// Whether the session expired at `now_ms`. Members with a request parked at the coordinator
    /// are alive by definition (Kafka's `shouldKeepAlive`).
    pub fn session_expired(&self, now_ms: i64) -> bool {
        self.join_waiter.is_none()
            && self.sync_waiter.is_none()
            && now_ms >= self.last_heartbeat_ms + i64::from(self.session_timeout_ms)
    }

    /// Sends `response` to a parked JoinGroup request, if there is one.
    pub fn answer_join(&mut self, response: JoinGroupResponse) {
        if let Some(waiter) = self.join_waiter.take() {
            // The requester may have gone away; nobody else is interested in the answer.
            let _ = waiter.send(response);
        }
    }

    /// Sends `response` to a parked SyncGroup request, if there is one.
    pub fn answer_sync(&mut self, response: SyncGroupResponse) {
        if let Some(waiter) = self.sync_waiter.take() {
            let _ = waiter.send(response);
        }
    }
}

/// Kafka's `InitialDelayedJoin`: a new group waits `group.initial.rebalance.delay.ms` for more
/// members, extended while members keep arriving, up to the rebalance timeout.
#[derive(Debug, Clone, Copy)]
pub struct InitialDelay {
    pub delay_ms: i64,
    pub remaining_ms: i64,
    pub new_member_added: bool,
}

/// The timers of a group in PreparingRebalance.
#[derive(Debug, Clone, Copy)]
pub struct JoinTimer {
    /// When the join phase completes even if not every member has rejoined.
    pub deadline_ms: i64,
    /// Present while a new group is in its initial delay; the join then never completes early.
    pub initial_delay: Option<InitialDelay>,
}

/// A group: state, generation, members, and committed offsets by (topic, partition).
#[derive(Debug)]
pub struct Group {
    pub id: String,
    pub state: GroupState,
    /// When the group entered its current state (ms since the epoch).
    pub state_since_ms: i64,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub generation_id: i32,
    pub leader_id: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// group.instance.id -> member id of the static members.
    pub static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with when they expire if never used.
    pub pending_members: HashMap<String, i64>,
    pub join_timer: Option<JoinTimer>,
    /// Members that got their JoinGroup response but have not sent SyncGroup yet, and when they
    /// are removed if they never do.
    pub pending_sync: BTreeSet<String>,
    pub sync_deadline_ms: Option<i64>,
    /// Committed offsets: what OffsetFetch sees. An offset enters only once the in-sync
    /// replicas of the offsets partition have its record.
    pub offsets: BTreeMap<(String, i32), CommittedOffset>,
    /// Offsets appended to the log whose commit is not acknowledged yet (Kafka's
    /// `pendingOffsetCommits`): for each partition, the log position after the newest such
    /// record. A removal of the offset forgets it, so a late acknowledgement does not bring it
    /// back.
    pub pending_offsets: HashMap<(String, i32), i64>,
    /// The log position after the record of each offset this coordinator committed since the
    /// group was loaded, so that acknowledgements arriving out of order never replace a newer
    /// offset with an older one (loaded offsets have none: anything newer replaces them).
    pub offset_positions: HashMap<(String, i32), i64>,
}

impl Group {
    pub fn new(id: &str, now_ms: i64) -> Self {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            state_since_ms: now_ms,
            protocol_type: None,
            protocol_name: None,
            generation_id: 0,
            leader_id: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending_members: HashMap::new(),
            join_timer: None,
            pending_sync: BTreeSet::new(),
            sync_deadline_ms: None,
            offsets: BTreeMap::new(),
            pending_offsets: HashMap::new(),
            offset_positions: HashMap::new(),
        }
    }

    /// Whether the group holds offsets, committed or still pending (Kafka's `hasOffsets`).
    pub fn has_offsets(&self) -> bool {
        !self.offsets.is_empty() || !self.pending_offsets.is_empty()
    }

    /// The partitions with an offset, committed or pending.
    pub fn offset_keys(&self) -> BTreeSet<(String, i32)> {
        self.offsets
            .keys()
            .chain(self.pending_offsets.keys())
            .cloned()
            .collect()
    }

    /// Forgets an offset, committed or pending.
    pub fn remove_offset(&mut self, key: &(String, i32)) {
        self.offsets.remove(key);
        self.pending_offsets.remove(key);
        self.offset_positions.remove(key);
    }

    pub fn transition(&mut self, state: GroupState, now_ms: i64) {
        self.state = state;
        self.state_since_ms = now_ms;
    }

    pub fn is_leader(&self, member_id: &str) -> bool {
        self.leader_id.as_deref() == Some(member_id)
    }

    /// Kafka's `validateMember`, the membership check of JoinGroup (known member), SyncGroup,
    /// Heartbeat, LeaveGroup and OffsetCommit: a request naming a `group.instance.id` must come
    /// from that static member's current member id (an instance id the group does not know:
    /// UNKNOWN_MEMBER_ID; another member id: the sender was replaced, FENCED_INSTANCE_ID), and
    /// the member id must belong to the group (UNKNOWN_MEMBER_ID).
    pub fn validate_member(
        &self,
        instance_id: Option<&str>,
        member_id: &str,
    ) -> Result<(), ErrorCode> {
        if let Some(instance_id) = instance_id {
            match self.static_members.get(instance_id) {
                None => return Err(ErrorCode::UnknownMemberId),
                Some(current) if current != member_id => return Err(ErrorCode::FencedInstanceId),
                Some(_) => {}
            }
        }
        if self.members.contains_key(member_id) {
            Ok(())
        } else {
            Err(ErrorCode::UnknownMemberId)
        }
    }

    /// Kafka's `supportsProtocols`: an empty group accepts any non-empty protocol list; otherwise
    /// the protocol type must match and one protocol must be supported by every member.
    pub fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.state == GroupState::Empty || self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        let support = self.protocol_support();
        protocols
            .iter()
            .any(|(name, _)| support.get(name.as_str()) == Some(&self.members.len()))
    }

    /// How many members support each protocol name (a member listing a name twice counts once),
    /// in one pass: protocol checks stay linear in what the members sent, however long their
    /// protocol lists are (Kafka keeps the same counts).
    fn protocol_support(&self) -> HashMap<&str, usize> {
        let mut support: HashMap<&str, usize> = HashMap::new();
        for member in self.members.values() {
            let mut listed = HashSet::new();
            for (name, _) in &member.protocols {
                if listed.insert(name.as_str()) {
                    *support.entry(name.as_str()).or_default() += 1;
                }
            }
        }
        support
    }

    /// Kafka's `selectProtocol`: among the protocols every member supports, the one most members
    /// list first (each member votes for its most preferred candidate). Ties go to the protocol
    /// that comes first in the leader's (or first member's) preference list.
    pub fn select_protocol(&self) -> Option<String> {
        let mut members = self.members.values();
        let first = self
            .leader_id
            .as_ref()
            .and_then(|id| self.members.get(id))
            .or_else(|| members.next())?;
        let support = self.protocol_support();
        let supported_by_all = |name: &str| support.get(name) == Some(&self.members.len());
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(name, _)| name)
            .filter(|name| supported_by_all(name))
            .collect();
        let mut votes: HashMap<&String, usize> = HashMap::new();
        for member in self.members.values() {
            if let Some((vote, _)) = member
                .protocols
                .iter()
                .find(|(name, _)| supported_by_all(name))
            {
                *votes.entry(vote).or_default() += 1;
            }
        }
        let most = votes.values().copied().max()?;
        candidates
            .into_iter()
            .find(|name| votes.get(name) == Some(&most))
            .cloned()
    }

    /// The members with their metadata for the selected protocol, as the leader receives them.
    pub fn member_metadata(&self) -> Vec<JoinGroupResponseMember> {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        self.members
            .values()
            .map(|member| JoinGroupResponseMember {
                member_id: member.member_id.clone(),
                group_instance_id: member.group_instance_id.clone(),
                metadata: member.metadata_for(&protocol),
            })
            .collect()
    }

    /// The topics the members subscribe to, when the group uses the consumer protocol and every
    /// subscription parses; `None` when that cannot be known.
    pub fn subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = BTreeSet::new();
        for member in self.members.values() {
            topics.extend(parse_subscription_topics(member.metadata_for(protocol))?);
        }
        Some(topics)
    }

    /// The group's state as written to `__consumer_offsets`.
    pub fn to_stored(&self) -> StoredGroup {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        StoredGroup {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation_id: self.generation_id,
            protocol_name: self.protocol_name.clone(),
            leader_id: self.leader_id.clone(),
            current_state_timestamp_ms: self.state_since_ms,
            members: self
                .members
                .values()
                .map(|member| StoredMember {
                    member_id: member.member_id.clone(),
                    group_instance_id: member.group_instance_id.clone(),
                    client_id: member.client_id.clone(),
                    client_host: member.client_host.clone(),
                    rebalance_timeout_ms: member.rebalance_timeout_ms,
                    session_timeout_ms: member.session_timeout_ms,
                    subscription: member.metadata_for(&protocol),
                    assignment: member.assignment.clone(),
                })
                .collect(),
        }
    }

    /// Replaces membership and generation with what was stored; a group with members comes back
    /// Stable and its members must heartbeat within their session timeout to stay.
    pub fn restore(&mut self, stored: StoredGroup, now_ms: i64) {
        let protocol = stored.protocol_name.clone().unwrap_or_default();
        self.protocol_type = (!stored.protocol_type.is_empty()).then_some(stored.protocol_type);
        self.generation_id = stored.generation_id;
        self.protocol_name = stored.protocol_name;
        self.leader_id = stored.leader_id;
        self.members.clear();
        self.static_members.clear();
        for member in stored.members {
            if let Some(instance_id) = &member.group_instance_id {
                self.static_members
                    .insert(instance_id.clone(), member.member_id.clone());
            }
            self.members.insert(
                member.member_id.clone(),
                Member {
                    member_id: member.member_id,
                    group_instance_id: member.group_instance_id,
                    client_id: member.client_id,
                    client_host: member.client_host,
                    session_timeout_ms: member.session_timeout_ms,
                    rebalance_timeout_ms: member.rebalance_timeout_ms,
                    protocols: vec![(protocol.clone(), member.subscription)],
                    assignment: member.assignment,
                    join_waiter: None,
                    sync_waiter: None,
                    last_heartbeat_ms: now_ms,
                },
            );
        }
        let state = if self.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        let since = if stored.current_state_timestamp_ms >= 0 {
            stored.current_state_timestamp_ms
        } else {
            now_ms
        };
        self.transition(state, since);
    }

    /// The longest rebalance timeout among the members (how long a join phase may last).
    pub fn max_rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }
}

/// The topics of a `ConsumerProtocolSubscription` (any version: they all start with the topic
/// list), or `None` if the bytes are not one.
fn parse_subscription_topics(mut metadata: Bytes) -> Option<Vec<String>> {
    let _version = get_i16(&mut metadata).ok()?;
    let count = get_i32(&mut metadata).ok()?;
    (0..count.max(0))
        .map(|_| get_string(&mut metadata, false).ok())
        .collect()
}
