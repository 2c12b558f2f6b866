//! The classic group coordinator's state machine, after Kafka's `GroupCoordinator`: JoinGroup,
//! SyncGroup, Heartbeat and LeaveGroup drive each group through Empty, PreparingRebalance,
//! CompletingRebalance and Stable; session, rebalance, sync and pending-member deadlines are
//! checked by [`GroupCoordinator::tick`]; committed offsets are written to the offsets log before
//! they are acknowledged, and [`GroupCoordinator::load`] rebuilds everything from that log.
//!
//! Locking, as in Kafka (where each `GroupMetadata` has its own lock): every group sits behind a
//! mutex of its own, and the map of groups behind a read-write lock that is held only to find,
//! insert or remove an entry, never while a group's lock is being acquired. Operations on
//! different groups therefore never wait for each other, not even while one group's records are
//! appended (and possibly fsynced) to the offsets log; that append happens under the group's lock,
//! so the log holds each group's records in the order its state changed. No lock is held across an
//! `.await`: a JoinGroup or SyncGroup that must wait for the rest of its group gets a oneshot
//! receiver ([`Pending::Waiting`]) and the response is sent into it by whichever request or timer
//! completes the phase. The calls block (on a group's lock, on the log), so the broker makes them
//! from its blocking pool (see [`super::on_blocking_pool`]).
//!
//! A group that dies (deleted, or its offsets expired) is marked Dead and removed from the map
//! before its lock is released. A request that looked the group up earlier and then waited for its
//! lock sees it Dead and looks the id up again, so it behaves as if it had arrived after the
//! deletion (a JoinGroup or an admin commit creates a new group; anything else finds none): the
//! operations below never see a Dead group. Time is passed in (milliseconds since the epoch),
//! which keeps the state machine deterministic under test.
//!
//! Leadership (Kafka's `onElection`/`onResignation`): the coordinator serves only the groups of
//! the `__consumer_offsets` partitions this broker leads, as the metadata publisher tells it
//! ([`GroupCoordinator::follow_leadership`]). A partition it becomes leader of is loaded in the
//! background from its log ([`GroupCoordinator::next_load`], [`GroupCoordinator::finish_load`]);
//! meanwhile its groups answer COORDINATOR_LOAD_IN_PROGRESS. A partition it stops leading is
//! unloaded at once: parked JoinGroup and SyncGroup requests are answered NOT_COORDINATOR and the
//! groups leave memory. Groups of any other partition answer NOT_COORDINATOR. Each partition's
//! leader epoch is remembered, so news older than what is known is ignored, and a load that
//! finishes after the partition was resigned or elected again in a newer epoch is discarded
//! (Kafka's coordinator epoch check). Ownership is checked under the map's lock, so no group is
//! ever created in a partition that is not served.
//!
//! Commits are acknowledged only once committed in the in-sync replicas (Kafka appends with
//! `acks=-1`): a commit's records are appended under the group's lock, then the group's lock is
//! released while the partition's high watermark is awaited, and the offsets become visible once
//! it passes them (Kafka's pending offset commits). The leader's SyncGroup waits the same way for
//! the group's metadata record before the members get their assignments. Other records (group
//! metadata after a rebalance to Empty or a static member's rejoin, tombstones) are appended
//! without waiting, as Kafka's own cleanup does.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use strom_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use strom_protocol::messages::join_group_request::JoinGroupRequest;
use strom_protocol::messages::join_group_response::JoinGroupResponse;
use strom_protocol::messages::sync_group_request::SyncGroupRequest;
use strom_protocol::messages::sync_group_response::SyncGroupResponse;
use strom_protocol::ErrorCode;
use tokio::sync::{oneshot, Notify};

use super::group::{Group, GroupState, InitialDelay, JoinTimer, Member};
use super::load::LoadedPartition;
use super::records::{partition_for_group, CommittedOffset, OffsetsKey};
use super::store::{OffsetsLog, OffsetsLogError};

/// How often offsets of empty groups are checked against `offsets.retention.minutes`.
const RETENTION_CHECK_INTERVAL_MS: i64 = 60_000;
/// The first JoinGroup version that must use MEMBER_ID_REQUIRED (KIP-394).
const FIRST_VERSION_REQUIRING_MEMBER_ID: i16 = 4;
/// The first JoinGroup version that understands `skip_assignment` (KIP-814).
const FIRST_VERSION_WITH_SKIP_ASSIGNMENT: i16 = 9;
/// From OffsetCommit v9 a generation for a group that does not exist is GROUP_ID_NOT_FOUND
/// (ILLEGAL_GENERATION before).
const FIRST_COMMIT_VERSION_WITH_GROUP_ID_NOT_FOUND: i16 = 9;

/// The coordinator's settings, from the broker configuration.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    pub offsets_partitions: i32,
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    pub initial_rebalance_delay_ms: i32,
    pub offsets_retention_ms: i64,
}

/// Who sent a JoinGroup: the request header's client id and the peer's address.
#[derive(Debug, Clone, Default)]
pub struct ClientIdentity {
    pub client_id: String,
    pub client_host: String,
}

/// A response that is either known now or will be sent once the group's phase completes.
#[derive(Debug)]
pub enum Pending<T> {
    Ready(T),
    Waiting(oneshot::Receiver<T>),
}

impl<T> Pending<T> {
    /// Waits for the response; `on_abandoned` answers if the coordinator dropped the request
    /// (replaced by a newer request of the same member, or the broker shuts down).
    pub async fn resolve(self, on_abandoned: impl FnOnce() -> T) -> T {
        match self {
            Pending::Ready(response) => response,
            Pending::Waiting(receiver) => receiver.await.unwrap_or_else(|_| on_abandoned()),
        }
    }
}

/// One group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    pub protocol_type: String,
    pub state: GroupState,
}

/// Who commits offsets: the group, and the member and generation it claims (generation -1 and
/// no member for a group that does not use the coordinator for membership).
#[derive(Debug, Clone, Copy)]
pub struct Committer<'a> {
    pub group_id: &'a str,
    pub generation_id: i32,
    pub member_id: &'a str,
    pub group_instance_id: Option<&'a str>,
}

/// The committed offsets of one topic as OffsetFetch reports them: `None` when nothing is committed.
pub type TopicOffsets = (String, Vec<(i32, Option<CommittedOffset>)>);

/// Everything about a JoinGroup besides the group and member ids.
struct JoinParams {
    group_instance_id: Option<String>,
    client: ClientIdentity,
    session_timeout_ms: i32,
    rebalance_timeout_ms: i32,
    protocol_type: String,
    protocols: Vec<(String, Bytes)>,
    require_known_member_id: bool,
    supports_skip_assignment: bool,
}

/// What the transitions need besides the group: the time, the settings and the offsets log.
struct Context<'a> {
    now_ms: i64,
    config: &'a GroupConfig,
    /// How many partitions the offsets topic has (which one holds a group's records).
    offsets_partitions: i32,
    log: &'a dyn OffsetsLog,
}

impl Context<'_> {
    /// The offsets partition that holds the records of `group_id`.
    fn partition_for(&self, group_id: &str) -> i32 {
        partition_for_group(group_id, self.offsets_partitions)
    }

    /// Appends records of `group_id` to its offsets partition; returns the log position after
    /// them (what the high watermark must reach for them to be committed).
    fn write(
        &self,
        group_id: &str,
        records: &[(Bytes, Option<Bytes>)],
    ) -> Result<i64, OffsetsLogError> {
        self.log
            .append(self.partition_for(group_id), records, self.now_ms)
    }

    /// Appends the group's membership (so that it can be described and carry on after the
    /// partition moves or the broker restarts); returns the log position after the record.
    fn store_group(&self, group: &Group) -> Result<i64, OffsetsLogError> {
        let key = OffsetsKey::Group {
            group: group.id.clone(),
        };
        let record = (key.encode(), Some(group.to_stored().encode()));
        self.write(&group.id, &[record])
    }

    /// Stores the group's membership without waiting for the in-sync replicas. A failure is
    /// logged; the in-memory group stays authoritative.
    fn persist_group(&self, group: &Group) {
        if let Err(error) = self.store_group(group) {
            tracing::warn!(group = %group.id, %error, "could not store group metadata");
        }
    }
}

/// One group behind its own lock, shared by the requests working on it.
type GroupEntry = Arc<Mutex<Group>>;

/// An offsets partition this broker leads, in the leader epoch it was elected in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ownership {
    epoch: i32,
    /// Its groups are in memory (else they are being loaded).
    loaded: bool,
}

/// What the coordinator serves, behind one lock: the groups, and the offsets partitions they
/// belong to.
#[derive(Default)]
struct Served {
    /// Every group of a loaded partition, by id.
    groups: HashMap<String, GroupEntry>,
    /// The offsets partitions this broker leads.
    partitions: HashMap<i32, Ownership>,
    /// The newest leader epoch known of each offsets partition (Kafka's `epochForPartitionId`).
    epochs: HashMap<i32, i32>,
}

impl Served {
    /// Whether the groups of `partition` are served here: NOT_COORDINATOR if this broker does
    /// not lead it, COORDINATOR_LOAD_IN_PROGRESS while it is being loaded.
    fn check(&self, partition: i32) -> Result<(), ErrorCode> {
        match self.partitions.get(&partition) {
            Some(ownership) if ownership.loaded => Ok(()),
            Some(_) => Err(ErrorCode::CoordinatorLoadInProgress),
            None => Err(ErrorCode::NotCoordinator),
        }
    }

    /// Removes the groups of `partition` from the map and returns them.
    fn take_groups_of(&mut self, partition: i32, offsets_partitions: i32) -> Vec<GroupEntry> {
        let ids: Vec<String> = self
            .groups
            .keys()
            .filter(|id| partition_for_group(id, offsets_partitions) == partition)
            .cloned()
            .collect();
        ids.iter().filter_map(|id| self.groups.remove(id)).collect()
    }
}

/// The group coordinator: every group of the offsets partitions this broker leads.
pub struct GroupCoordinator {
    config: GroupConfig,
    /// Groups and partitions. Held only to check a partition and find, insert or remove an
    /// entry: never while a group's lock is being acquired (a group's lock may be held while
    /// taking this one, to remove it).
    served: RwLock<Served>,
    /// How many partitions the offsets topic has: the configured count until the topic exists,
    /// then the topic's own.
    offsets_partitions: AtomicI32,
    /// Loads to run, as (partition, leader epoch), oldest first.
    loads: Mutex<VecDeque<(i32, i32)>>,
    /// Wakes the loader when a load is scheduled.
    load_scheduled: Notify,
    next_retention_check_ms: AtomicI64,
}

impl GroupCoordinator {
    /// A coordinator that leads no offsets partition yet.
    pub fn new(config: GroupConfig) -> Self {
        GroupCoordinator {
            offsets_partitions: AtomicI32::new(config.offsets_partitions),
            config,
            served: RwLock::new(Served::default()),
            loads: Mutex::new(VecDeque::new()),
            load_scheduled: Notify::new(),
            next_retention_check_ms: AtomicI64::new(0),
        }
    }

    fn read_served(&self) -> RwLockReadGuard<'_, Served> {
        self.served
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_served(&self) -> RwLockWriteGuard<'_, Served> {
        self.served
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn partition_for(&self, group_id: &str) -> i32 {
        partition_for_group(group_id, self.offsets_partitions.load(Ordering::Acquire))
    }

    /// The entry of `group_id`, created (Empty, stamped `create_at_ms`) if absent and
    /// `create_at_ms` is given; an error if this broker does not serve the group's partition.
    fn find(
        &self,
        group_id: &str,
        create_at_ms: Option<i64>,
    ) -> Result<Option<GroupEntry>, ErrorCode> {
        let partition = self.partition_for(group_id);
        {
            let served = self.read_served();
            served.check(partition)?;
            if let Some(entry) = served.groups.get(group_id) {
                return Ok(Some(Arc::clone(entry)));
            }
        }
        let Some(now_ms) = create_at_ms else {
            return Ok(None);
        };
        let mut served = self.write_served();
        served.check(partition)?;
        let entry = served
            .groups
            .entry(group_id.to_string())
            .or_insert_with(|| Arc::new(Mutex::new(Group::new(group_id, now_ms))));
        Ok(Some(Arc::clone(entry)))
    }

    /// Every group entry at this moment.
    fn entries(&self) -> Vec<GroupEntry> {
        self.read_served().groups.values().cloned().collect()
    }

    /// Removes the entry of a group that died, unless the id already names a newer group.
    fn forget(&self, group_id: &str, entry: &GroupEntry) {
        let mut served = self.write_served();
        if served
            .groups
            .get(group_id)
            .is_some_and(|current| Arc::ptr_eq(current, entry))
        {
            served.groups.remove(group_id);
        }
    }

    /// Runs `operation` on group `group_id` under the group's lock, with `None` if there is no
    /// such group (with `create_at_ms`, an absent group is created first), or answers
    /// NOT_COORDINATOR / COORDINATOR_LOAD_IN_PROGRESS if the group's partition is not served
    /// here. A group found Dead once its lock is ours was deleted (or unloaded) meanwhile: the
    /// id is looked up again. A group the operation leaves Dead is removed from the map before
    /// its lock is released.
    fn with_group<R>(
        &self,
        group_id: &str,
        create_at_ms: Option<i64>,
        operation: impl FnOnce(Option<&mut Group>) -> R,
    ) -> Result<R, ErrorCode> {
        loop {
            let Some(entry) = self.find(group_id, create_at_ms)? else {
                return Ok(operation(None));
            };
            let mut group = lock_group(&entry);
            if group.state == GroupState::Dead {
                // Its killer removed it already; this only makes sure the loop moves on.
                self.forget(group_id, &entry);
                continue;
            }
            let result = operation(Some(&mut group));
            if group.state == GroupState::Dead {
                self.forget(group_id, &entry);
            }
            return Ok(result);
        }
    }

    /// How many holders the entry of `group_id` has (the map is one): lets a test know that a
    /// request has looked a group up and is about to wait for its lock.
    #[cfg(test)]
    pub(super) fn entry_holders(&self, group_id: &str) -> usize {
        self.read_served()
            .groups
            .get(group_id)
            .map_or(0, Arc::strong_count)
    }

    fn context<'a>(&'a self, now_ms: i64, log: &'a dyn OffsetsLog) -> Context<'a> {
        Context {
            now_ms,
            config: &self.config,
            offsets_partitions: self.offsets_partitions.load(Ordering::Acquire),
            log,
        }
    }

    /// Follows the leadership of the offsets partitions (Kafka's `onElection` and
    /// `onResignation`): `partitions` lists every partition of `__consumer_offsets` as
    /// (partition, leader epoch, whether this broker leads it). A partition newly led, or led
    /// again in a newer epoch, is scheduled for loading (its groups answer
    /// COORDINATOR_LOAD_IN_PROGRESS until [`GroupCoordinator::finish_load`]); a partition no
    /// longer led here is unloaded now. News older than the newest epoch known of a partition
    /// is ignored.
    pub fn follow_leadership(&self, partitions: &[(i32, i32, bool)], now_ms: i64) {
        if let Ok(count) = i32::try_from(partitions.len()) {
            if count > 0 {
                self.offsets_partitions.store(count, Ordering::Release);
            }
        }
        let offsets_partitions = self.offsets_partitions.load(Ordering::Acquire);
        let mut unloaded = Vec::new();
        let mut elected = Vec::new();
        {
            let mut served = self.write_served();
            for &(partition, epoch, leads) in partitions {
                let newest = served.epochs.entry(partition).or_insert(epoch);
                if epoch < *newest {
                    tracing::info!(
                        partition,
                        epoch,
                        newest = *newest,
                        "ignoring stale leadership of an offsets partition"
                    );
                    continue;
                }
                *newest = epoch;
                let current = served.partitions.get(&partition).copied();
                if current.is_some_and(|owned| owned.epoch == epoch && leads) {
                    continue;
                }
                if current.is_some() {
                    served.partitions.remove(&partition);
                    unloaded.extend(served.take_groups_of(partition, offsets_partitions));
                    tracing::info!(
                        partition,
                        epoch,
                        "resigned as the group coordinator of offsets partition"
                    );
                }
                if leads {
                    served.partitions.insert(
                        partition,
                        Ownership {
                            epoch,
                            loaded: false,
                        },
                    );
                    elected.push((partition, epoch));
                    tracing::info!(
                        partition,
                        epoch,
                        "elected as the group coordinator of offsets partition"
                    );
                }
            }
            // Partitions the topic no longer has.
            let listed: HashSet<i32> = partitions.iter().map(|(p, _, _)| *p).collect();
            let gone: Vec<i32> = served
                .partitions
                .keys()
                .filter(|p| !listed.contains(p))
                .copied()
                .collect();
            for partition in gone {
                served.partitions.remove(&partition);
                unloaded.extend(served.take_groups_of(partition, offsets_partitions));
            }
        }
        for entry in unloaded {
            unload(&mut lock_group(&entry), now_ms);
        }
        if !elected.is_empty() {
            lock_loads(&self.loads).extend(elected);
            self.load_scheduled.notify_one();
        }
    }

    /// The next scheduled load, as (partition, leader epoch), if it is still wanted: loads
    /// overtaken by a resignation or a newer election are dropped here.
    pub fn next_load(&self) -> Option<(i32, i32)> {
        loop {
            let (partition, epoch) = lock_loads(&self.loads).pop_front()?;
            let wanted = self.read_served().partitions.get(&partition)
                == Some(&Ownership {
                    epoch,
                    loaded: false,
                });
            if wanted {
                return Some((partition, epoch));
            }
        }
    }

    /// Resolves when a load may have been scheduled since the last call (then
    /// [`GroupCoordinator::next_load`] says which).
    pub async fn load_scheduled(&self) {
        self.load_scheduled.notified().await;
    }

    /// Installs the groups of `partition` read from its log for the load of leader epoch
    /// `epoch`, unless the partition was resigned or elected again meanwhile (then the load is
    /// discarded, as Kafka's epoch check does). Returns whether the groups were installed.
    pub fn finish_load(
        &self,
        partition: i32,
        epoch: i32,
        loaded: LoadedPartition,
        now_ms: i64,
    ) -> bool {
        if loaded.skipped() > 0 {
            tracing::warn!(
                partition,
                skipped = loaded.skipped(),
                "skipped unreadable __consumer_offsets records"
            );
        }
        let groups = loaded.into_groups(now_ms);
        let count = groups.len();
        let mut served = self.write_served();
        let loading = Ownership {
            epoch,
            loaded: false,
        };
        if served.partitions.get(&partition) != Some(&loading) {
            tracing::info!(
                partition,
                epoch,
                "discarding the load of an offsets partition no longer led in that epoch"
            );
            return false;
        }
        for group in groups {
            let id = group.id.clone();
            served.groups.insert(id, Arc::new(Mutex::new(group)));
        }
        served.partitions.insert(
            partition,
            Ownership {
                epoch,
                loaded: true,
            },
        );
        tracing::info!(
            partition,
            epoch,
            groups = count,
            "loaded consumer groups of offsets partition"
        );
        true
    }

    /// Gives up the load of `partition` in `epoch` (its log could not be read): its groups
    /// answer NOT_COORDINATOR until it is elected again.
    pub fn abandon_load(&self, partition: i32, epoch: i32) {
        let mut served = self.write_served();
        let loading = Ownership {
            epoch,
            loaded: false,
        };
        if served.partitions.get(&partition) == Some(&loading) {
            served.partitions.remove(&partition);
        }
    }

    /// JoinGroup (Kafka's `handleJoinGroup`).
    pub fn join(
        &self,
        request: JoinGroupRequest,
        version: i16,
        client: ClientIdentity,
        now_ms: i64,
        log: &dyn OffsetsLog,
    ) -> Pending<JoinGroupResponse> {
        let member_id = request.member_id;
        if request.group_id.is_empty() {
            return Pending::Ready(join_error(ErrorCode::InvalidGroupId, &member_id));
        }
        let session = request.session_timeout_ms;
        if session < self.config.min_session_timeout_ms
            || session > self.config.max_session_timeout_ms
        {
            return Pending::Ready(join_error(ErrorCode::InvalidSessionTimeout, &member_id));
        }
        let params = JoinParams {
            group_instance_id: request.group_instance_id,
            client,
            session_timeout_ms: session,
            // v0 has no rebalance timeout: the session timeout serves as both.
            rebalance_timeout_ms: if request.rebalance_timeout_ms < 0 {
                session
            } else {
                request.rebalance_timeout_ms
            },
            protocol_type: request.protocol_type,
            protocols: request
                .protocols
                .into_iter()
                .map(|p| (p.name, p.metadata))
                .collect(),
            require_known_member_id: version >= FIRST_VERSION_REQUIRING_MEMBER_ID,
            supports_skip_assignment: version >= FIRST_VERSION_WITH_SKIP_ASSIGNMENT,
        };
        let ctx = self.context(now_ms, log);
        // A new member creates the group; a known member of a group that does not exist is not.
        let create_at_ms = member_id.is_empty().then_some(now_ms);
        self.with_group(&request.group_id, create_at_ms, |group| {
            let Some(group) = group else {
                return Pending::Ready(join_error(ErrorCode::UnknownMemberId, &member_id));
            };
            let outcome = if member_id.is_empty() {
                join_new_member(group, params, &ctx)
            } else {
                join_known_member(group, &member_id, params, &ctx)
            };
            try_complete_join(group, &ctx);
            outcome
        })
        .unwrap_or_else(|code| Pending::Ready(join_error(code, &member_id)))
    }

    /// SyncGroup (Kafka's `handleSyncGroup`). The leader's assignment is stored in the offsets
    /// log and, once the in-sync replicas have it, handed to every member; if it cannot be
    /// stored the members get the error and the group rebalances. This waits for the in-sync
    /// replicas (without the group's lock) before it returns.
    pub fn sync(
        &self,
        request: SyncGroupRequest,
        now_ms: i64,
        log: &dyn OffsetsLog,
    ) -> Pending<SyncGroupResponse> {
        if request.group_id.is_empty() {
            return Pending::Ready(sync_error(ErrorCode::InvalidGroupId));
        }
        let ctx = self.context(now_ms, log);
        let group_id = request.group_id.clone();
        let outcome = self.with_group(&group_id, None, |group| {
            let Some(group) = group else {
                return (Pending::Ready(sync_error(ErrorCode::UnknownMemberId)), None);
            };
            sync_member(group, request, &ctx)
        });
        let (pending, stored) = match outcome {
            Ok(outcome) => outcome,
            Err(code) => return Pending::Ready(sync_error(code)),
        };
        if let Some(assignment) = stored {
            let committed = log.await_committed(ctx.partition_for(&group_id), assignment.1);
            // A group unloaded meanwhile has answered its members already.
            let _ = self.with_group(&group_id, None, |group| {
                if let Some(group) = group {
                    complete_assignment(group, assignment, committed, &ctx);
                }
            });
        }
        pending
    }

    /// Heartbeat (Kafka's `handleHeartbeat`): the error code to answer with. While the group's
    /// partition is loading the answer is NONE, as in Kafka (the member learns the group's
    /// state at its next heartbeat).
    pub fn heartbeat(
        &self,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
        now_ms: i64,
    ) -> ErrorCode {
        if group_id.is_empty() {
            return ErrorCode::InvalidGroupId;
        }
        self.with_group(group_id, None, |group| {
            let Some(group) = group else {
                return ErrorCode::UnknownMemberId;
            };
            if let Err(code) = check_member(group, group_instance_id, member_id, generation_id) {
                return code;
            }
            let answer = match group.state {
                GroupState::Empty | GroupState::Dead => return ErrorCode::UnknownMemberId,
                GroupState::PreparingRebalance => ErrorCode::RebalanceInProgress,
                GroupState::CompletingRebalance | GroupState::Stable => ErrorCode::None,
            };
            if let Some(member) = group.members.get_mut(member_id) {
                member.last_heartbeat_ms = now_ms;
            }
            answer
        })
        .unwrap_or_else(|code| match code {
            ErrorCode::CoordinatorLoadInProgress => ErrorCode::None,
            code => code,
        })
    }

    /// LeaveGroup (Kafka's `handleLeaveGroup`): the top-level error and one error per leaving
    /// member, given as (member id, group instance id).
    pub fn leave(
        &self,
        group_id: &str,
        leaving: &[(String, Option<String>)],
        now_ms: i64,
        log: &dyn OffsetsLog,
    ) -> (ErrorCode, Vec<ErrorCode>) {
        if group_id.is_empty() {
            return (ErrorCode::InvalidGroupId, Vec::new());
        }
        let ctx = self.context(now_ms, log);
        self.with_group(group_id, None, |group| {
            let Some(group) = group else {
                return (
                    ErrorCode::None,
                    vec![ErrorCode::UnknownMemberId; leaving.len()],
                );
            };
            let errors = leaving
                .iter()
                .map(|(member_id, instance_id)| {
                    if member_id.is_empty() {
                        let known = instance_id
                            .as_ref()
                            .and_then(|id| group.static_members.get(id))
                            .cloned();
                        return match known {
                            Some(id) => {
                                remove_member_and_update(group, &id, &ctx);
                                ErrorCode::None
                            }
                            None => ErrorCode::UnknownMemberId,
                        };
                    }
                    if group.pending_members.remove(member_id).is_some() {
                        try_complete_join(group, &ctx);
                        return ErrorCode::None;
                    }
                    if let Err(code) = group.validate_member(instance_id.as_deref(), member_id) {
                        return code;
                    }
                    remove_member_and_update(group, member_id, &ctx);
                    ErrorCode::None
                })
                .collect();
            (ErrorCode::None, errors)
        })
        .unwrap_or_else(|code| (code, Vec::new()))
    }

    /// OffsetCommit (Kafka's `handleCommitOffsets`): checks the committer, appends the offsets
    /// to the offsets log, waits (without the group's lock) until the in-sync replicas have
    /// them, and only then makes them visible. Returns the error for every partition; with no
    /// offsets the committer is only checked.
    pub fn commit_offsets(
        &self,
        committer: &Committer<'_>,
        offsets: Vec<((String, i32), CommittedOffset)>,
        version: i16,
        now_ms: i64,
        log: &dyn OffsetsLog,
    ) -> ErrorCode {
        let group_id = committer.group_id;
        let ctx = self.context(now_ms, log);
        // A group that does not rely on the coordinator for membership may store offsets (and
        // is created by them); a generation for a group that does not exist is refused.
        let create_at_ms = (committer.generation_id < 0).then_some(now_ms);
        let appended = self.with_group(group_id, create_at_ms, |group| {
            let Some(group) = group else {
                return Err(if version >= FIRST_COMMIT_VERSION_WITH_GROUP_ID_NOT_FOUND {
                    ErrorCode::GroupIdNotFound
                } else {
                    ErrorCode::IllegalGeneration
                });
            };
            validate_commit(group, committer)?;
            // A commit keeps the member's session alive, as a heartbeat would.
            if matches!(
                group.state,
                GroupState::Stable | GroupState::PreparingRebalance
            ) {
                if let Some(member) = group.members.get_mut(committer.member_id) {
                    member.last_heartbeat_ms = now_ms;
                }
            }
            if offsets.is_empty() {
                return Ok(None);
            }
            let records: Vec<(Bytes, Option<Bytes>)> = offsets
                .iter()
                .map(|((topic, partition), offset)| {
                    let key = OffsetsKey::Offset {
                        group: group_id.to_string(),
                        topic: topic.clone(),
                        partition: *partition,
                    };
                    (key.encode(), Some(offset.encode()))
                })
                .collect();
            let end_offset = ctx.write(group_id, &records).map_err(|error| {
                tracing::warn!(group = group_id, %error, "could not store committed offsets");
                error.coordinator_error()
            })?;
            for (key, _) in &offsets {
                group.pending_offsets.insert(key.clone(), end_offset);
            }
            Ok(Some(end_offset))
        });
        let end_offset = match appended {
            Ok(Ok(Some(end_offset))) => end_offset,
            Ok(Ok(None)) => return ErrorCode::None,
            Ok(Err(code)) | Err(code) => return code,
        };
        let committed = log.await_committed(ctx.partition_for(group_id), end_offset);
        // A group deleted or unloaded meanwhile no longer wants the offsets in memory (the new
        // coordinator of the partition reads them from the log).
        let _ = self.with_group(group_id, None, |group| {
            if let Some(group) = group {
                settle_pending_offsets(group, offsets, end_offset, committed.is_ok());
            }
        });
        match committed {
            Ok(()) => ErrorCode::None,
            Err(error) => {
                tracing::warn!(group = group_id, %error, "committed offsets not replicated");
                error.coordinator_error()
            }
        }
    }

    /// OffsetFetch: the committed offsets of the requested partitions, or of every partition with
    /// a committed offset when `topics` is `None`; an error if the group is not served here.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<Vec<TopicOffsets>, ErrorCode> {
        self.with_group(group_id, None, |group| {
            let offsets = group.map(|g| &g.offsets);
            match topics {
                Some(topics) => topics
                    .into_iter()
                    .map(|(topic, partitions)| {
                        let found = partitions
                            .into_iter()
                            .map(|p| (p, offsets.and_then(|o| o.get(&(topic.clone(), p))).cloned()))
                            .collect();
                        (topic, found)
                    })
                    .collect(),
                None => {
                    let mut by_topic: BTreeMap<String, Vec<(i32, Option<CommittedOffset>)>> =
                        BTreeMap::new();
                    for ((topic, partition), offset) in offsets.into_iter().flatten() {
                        by_topic
                            .entry(topic.clone())
                            .or_default()
                            .push((*partition, Some(offset.clone())));
                    }
                    by_topic.into_iter().collect()
                }
            }
        })
    }

    /// OffsetDelete (Kafka's `handleDeleteOffsets`): per-partition errors, or a group-level error.
    pub fn delete_offsets(
        &self,
        group_id: &str,
        partitions: &[(String, i32)],
        now_ms: i64,
        log: &dyn OffsetsLog,
    ) -> Result<Vec<ErrorCode>, ErrorCode> {
        let ctx = self.context(now_ms, log);
        self.with_group(group_id, None, |group| {
            let Some(group) = group else {
                return Err(ErrorCode::GroupIdNotFound);
            };
            let subscribed = match group.state {
                GroupState::Dead => return Err(ErrorCode::GroupIdNotFound),
                GroupState::Empty => Default::default(),
                _ => group.subscribed_topics().ok_or(ErrorCode::NonEmptyGroup)?,
            };
            let errors: Vec<ErrorCode> = partitions
                .iter()
                .map(|(topic, _)| {
                    if subscribed.contains(topic) {
                        ErrorCode::GroupSubscribedToTopic
                    } else {
                        ErrorCode::None
                    }
                })
                .collect();
            let doomed: Vec<(String, i32)> = partitions
                .iter()
                .zip(&errors)
                .filter(|(key, error)| {
                    **error == ErrorCode::None
                        && (group.offsets.contains_key(*key)
                            || group.pending_offsets.contains_key(*key))
                })
                .map(|(key, _)| key.clone())
                .collect();
            remove_offsets(group, &doomed, &ctx).map_err(|error| error.coordinator_error())?;
            Ok(errors)
        })?
    }

    /// Forgets every group's committed offsets for deleted topics (Kafka's cleanup of offsets of
    /// deleted partitions), writing tombstones so they stay gone after a restart.
    pub fn remove_topic_offsets(&self, topics: &[String], now_ms: i64, log: &dyn OffsetsLog) {
        let ctx = self.context(now_ms, log);
        for entry in self.entries() {
            let mut group = lock_group(&entry);
            if group.state == GroupState::Dead {
                continue;
            }
            let doomed: Vec<(String, i32)> = group
                .offset_keys()
                .into_iter()
                .filter(|(topic, _)| topics.contains(topic))
                .collect();
            if doomed.is_empty() {
                continue;
            }
            if remove_offsets(&mut group, &doomed, &ctx).is_err() {
                tracing::warn!(group = %group.id, "could not remove offsets of deleted topics");
            }
        }
    }

    /// ListGroups: every group coordinated here with its protocol type and state, or
    /// COORDINATOR_LOAD_IN_PROGRESS while an offsets partition is being loaded (as Kafka's
    /// coordinator, which lists no partial answer).
    pub fn list_groups(&self) -> Result<Vec<GroupListing>, ErrorCode> {
        if self
            .read_served()
            .partitions
            .values()
            .any(|ownership| !ownership.loaded)
        {
            return Err(ErrorCode::CoordinatorLoadInProgress);
        }
        let mut listed: Vec<GroupListing> = self
            .entries()
            .iter()
            .map(lock_group)
            .filter(|group| group.state != GroupState::Dead)
            .map(|group| GroupListing {
                group_id: group.id.clone(),
                protocol_type: group.protocol_type.clone().unwrap_or_default(),
                state: group.state,
            })
            .collect();
        listed.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        Ok(listed)
    }

    /// DescribeGroups for one group (Kafka 4.0's `describeGroups`): members with their current
    /// assignment, their metadata and the protocol only while Stable; an unknown group is
    /// reported as Dead.
    pub fn describe_group(&self, group_id: &str) -> DescribedGroup {
        self.with_group(group_id, None, |group| {
            let Some(group) = group else {
                return DescribedGroup {
                    group_id: group_id.to_string(),
                    group_state: GroupState::Dead.name().to_string(),
                    ..Default::default()
                };
            };
            let stable = group.state == GroupState::Stable;
            let protocol = if stable {
                group.protocol_name.clone().unwrap_or_default()
            } else {
                String::new()
            };
            DescribedGroup {
                error_code: ErrorCode::None.code(),
                group_id: group.id.clone(),
                group_state: group.state.name().to_string(),
                protocol_type: group.protocol_type.clone().unwrap_or_default(),
                protocol_data: protocol.clone(),
                members: group
                    .members
                    .values()
                    .map(|member| DescribedGroupMember {
                        member_id: member.member_id.clone(),
                        group_instance_id: member.group_instance_id.clone(),
                        client_id: member.client_id.clone(),
                        client_host: member.client_host.clone(),
                        member_metadata: if stable {
                            member.metadata_for(&protocol)
                        } else {
                            Bytes::new()
                        },
                        member_assignment: member.assignment.clone(),
                    })
                    .collect(),
                ..Default::default()
            }
        })
        .unwrap_or_else(|code| DescribedGroup {
            error_code: code.code(),
            group_id: group_id.to_string(),
            ..Default::default()
        })
    }

    /// DeleteGroups: removes empty groups with their offsets (tombstones in the offsets log).
    pub fn delete_groups(
        &self,
        group_ids: &[String],
        now_ms: i64,
        log: &dyn OffsetsLog,
    ) -> Vec<ErrorCode> {
        let ctx = self.context(now_ms, log);
        group_ids
            .iter()
            .map(|group_id| {
                self.with_group(group_id, None, |group| {
                    let Some(group) = group else {
                        return ErrorCode::GroupIdNotFound;
                    };
                    match group.state {
                        GroupState::Dead => return ErrorCode::GroupIdNotFound,
                        GroupState::Empty => {}
                        _ => return ErrorCode::NonEmptyGroup,
                    }
                    if let Err(error) = delete_group_records(group, &ctx) {
                        return error.coordinator_error();
                    }
                    // Dead: `with_group` removes it before anyone else can lock it.
                    group.transition(GroupState::Dead, now_ms);
                    ErrorCode::None
                })
                .unwrap_or_else(|code| code)
            })
            .collect()
    }

    /// Runs every deadline that passed by `now_ms`: expired sessions and pending member ids,
    /// finished join phases (including the initial delay), members that never synced, and,
    /// at most once a minute, offset retention for empty groups.
    pub fn tick(&self, now_ms: i64, log: &dyn OffsetsLog) {
        let ctx = self.context(now_ms, log);
        let check_retention = now_ms >= self.next_retention_check_ms.load(Ordering::Relaxed);
        if check_retention {
            self.next_retention_check_ms
                .store(now_ms + RETENTION_CHECK_INTERVAL_MS, Ordering::Relaxed);
        }
        for entry in self.entries() {
            let mut group = lock_group(&entry);
            if group.state == GroupState::Dead {
                continue;
            }
            expire_members(&mut group, &ctx);
            run_join_timer(&mut group, &ctx);
            run_sync_deadline(&mut group, &ctx);
            if check_retention && expire_offsets(&mut group, &ctx) {
                self.forget(&group.id, &entry);
            }
        }
    }
}

/// Once the records of a commit (ending at log position `end_offset`) were committed in the
/// in-sync replicas, or not (Kafka's `onOffsetCommitAppend` / `failPendingOffsetWrite`): a
/// committed offset becomes visible unless it was removed meanwhile or a newer commit of the
/// same partition is visible already; a pending entry is cleared if it was this commit's.
fn settle_pending_offsets(
    group: &mut Group,
    offsets: Vec<((String, i32), CommittedOffset)>,
    end_offset: i64,
    committed: bool,
) {
    for (key, offset) in offsets {
        let Some(&pending) = group.pending_offsets.get(&key) else {
            // Removed (deleted, expired) since it was appended.
            continue;
        };
        if committed
            && group
                .offset_positions
                .get(&key)
                .is_none_or(|&position| position < end_offset)
        {
            group.offset_positions.insert(key.clone(), end_offset);
            group.offsets.insert(key.clone(), offset);
        }
        if pending == end_offset {
            group.pending_offsets.remove(&key);
        }
    }
}

/// The leader's assignment, appended to the offsets log and waiting for the in-sync replicas:
/// the generation it is for, the log position after its record, and each member's share.
type StoredAssignment = (i32, i64, HashMap<String, Bytes>);

/// SyncGroup under the group's lock: the response (or the channel it will come through) and,
/// when the leader's assignment was appended, what must happen once it is committed.
fn sync_member(
    group: &mut Group,
    request: SyncGroupRequest,
    ctx: &Context<'_>,
) -> (Pending<SyncGroupResponse>, Option<StoredAssignment>) {
    let now_ms = ctx.now_ms;
    let member_id = request.member_id.as_str();
    if let Err(code) = check_member(
        group,
        request.group_instance_id.as_deref(),
        member_id,
        request.generation_id,
    ) {
        return (Pending::Ready(sync_error(code)), None);
    }
    let type_mismatch = request
        .protocol_type
        .as_ref()
        .is_some_and(|t| group.protocol_type.as_ref() != Some(t));
    let name_mismatch = request
        .protocol_name
        .as_ref()
        .is_some_and(|n| group.protocol_name.as_ref() != Some(n));
    if type_mismatch || name_mismatch {
        return (
            Pending::Ready(sync_error(ErrorCode::InconsistentGroupProtocol)),
            None,
        );
    }
    group.pending_sync.remove(member_id);
    if group.pending_sync.is_empty() {
        group.sync_deadline_ms = None;
    }
    match group.state {
        GroupState::Empty | GroupState::Dead => {
            (Pending::Ready(sync_error(ErrorCode::UnknownMemberId)), None)
        }
        GroupState::PreparingRebalance => (
            Pending::Ready(sync_error(ErrorCode::RebalanceInProgress)),
            None,
        ),
        GroupState::Stable => {
            let assignment = match group.members.get_mut(member_id) {
                Some(member) => {
                    member.last_heartbeat_ms = now_ms;
                    member.assignment.clone()
                }
                None => Bytes::new(),
            };
            (Pending::Ready(sync_ok(group, assignment)), None)
        }
        GroupState::CompletingRebalance => {
            let (sender, receiver) = oneshot::channel();
            if let Some(member) = group.members.get_mut(member_id) {
                member.sync_waiter = Some(sender);
                member.last_heartbeat_ms = now_ms;
            }
            if !group.is_leader(member_id) {
                return (Pending::Waiting(receiver), None);
            }
            // Members the leader left out get an empty assignment.
            let mut given: HashMap<String, Bytes> = request
                .assignments
                .into_iter()
                .map(|a| (a.member_id, a.assignment))
                .collect();
            let assignments: HashMap<String, Bytes> = group
                .members
                .keys()
                .map(|id| (id.clone(), given.remove(id).unwrap_or_default()))
                .collect();
            let mut stored = group.to_stored();
            for member in &mut stored.members {
                member.assignment = assignments
                    .get(&member.member_id)
                    .cloned()
                    .unwrap_or_default();
            }
            let key = OffsetsKey::Group {
                group: group.id.clone(),
            };
            match ctx.write(&group.id, &[(key.encode(), Some(stored.encode()))]) {
                Ok(end_offset) => (
                    Pending::Waiting(receiver),
                    Some((group.generation_id, end_offset, assignments)),
                ),
                Err(error) => {
                    fail_assignment(group, &error, ctx);
                    (Pending::Waiting(receiver), None)
                }
            }
        }
    }
}

/// Once the leader's assignment for `generation_id` was committed (or not): hands every member
/// its share and makes the group Stable, or answers the error and rebalances (Kafka's
/// `setAndPropagateAssignment` / `resetAndPropagateAssignmentError`). Nothing happens if the
/// group moved on meanwhile (a member joined, or left, and a new rebalance began).
fn complete_assignment(
    group: &mut Group,
    assignment: StoredAssignment,
    committed: Result<(), OffsetsLogError>,
    ctx: &Context<'_>,
) {
    let (generation_id, _, mut assignments) = assignment;
    if group.state != GroupState::CompletingRebalance || group.generation_id != generation_id {
        return;
    }
    if let Err(error) = committed {
        fail_assignment(group, &error, ctx);
        return;
    }
    for member in group.members.values_mut() {
        member.assignment = assignments.remove(&member.member_id).unwrap_or_default();
    }
    group.transition(GroupState::Stable, ctx.now_ms);
    tracing::info!(
        group = %group.id,
        generation = group.generation_id,
        "group is stable"
    );
    let responses: Vec<(String, SyncGroupResponse)> = group
        .members
        .values()
        .map(|m| (m.member_id.clone(), sync_ok(group, m.assignment.clone())))
        .collect();
    for (id, response) in responses {
        if let Some(member) = group.members.get_mut(&id) {
            member.answer_sync(response);
        }
    }
}

/// The leader's assignment could not be stored: every member waiting in SyncGroup gets the
/// error, and the group rebalances.
fn fail_assignment(group: &mut Group, error: &OffsetsLogError, ctx: &Context<'_>) {
    let code = error.coordinator_error();
    tracing::warn!(group = %group.id, %error, "could not store the group's assignment");
    for member in group.members.values_mut() {
        member.assignment = Bytes::new();
        member.answer_sync(sync_error(code));
    }
    maybe_prepare_rebalance(group, ctx);
}

/// Drops a group whose partition this broker no longer leads (Kafka's `onGroupUnloaded`):
/// requests parked by its members are answered NOT_COORDINATOR, so the clients look for the
/// new coordinator, and the group is Dead for anyone still holding it.
fn unload(group: &mut Group, now_ms: i64) {
    for member in group.members.values_mut() {
        member.answer_join(join_error(ErrorCode::NotCoordinator, &member.member_id));
        member.answer_sync(sync_error(ErrorCode::NotCoordinator));
    }
    group.transition(GroupState::Dead, now_ms);
}

/// Locks the queue of scheduled loads.
fn lock_loads(loads: &Mutex<VecDeque<(i32, i32)>>) -> MutexGuard<'_, VecDeque<(i32, i32)>> {
    loads
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Locks one group. A panic while it was locked leaves the group as the panicking request left
/// it, which is no worse than dropping that request halfway: the lock is taken anyway.
fn lock_group(entry: &GroupEntry) -> MutexGuard<'_, Group> {
    entry
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A JoinGroup with an empty member id (Kafka's `doNewMemberJoin`).
fn join_new_member(
    group: &mut Group,
    params: JoinParams,
    ctx: &Context<'_>,
) -> Pending<JoinGroupResponse> {
    if !group.supports_protocols(&params.protocol_type, &params.protocols) {
        return Pending::Ready(join_error(ErrorCode::InconsistentGroupProtocol, ""));
    }
    let new_member_id = format!("{}-{}", params.client.client_id, random_uuid());
    if let Some(instance_id) = &params.group_instance_id {
        if let Some(old_member_id) = group.static_members.get(instance_id).cloned() {
            return replace_static_member(group, &old_member_id, new_member_id, params, ctx);
        }
    } else if params.require_known_member_id {
        let expiry = ctx.now_ms + i64::from(params.session_timeout_ms);
        group.pending_members.insert(new_member_id.clone(), expiry);
        return Pending::Ready(join_error(ErrorCode::MemberIdRequired, &new_member_id));
    }
    add_member_and_rebalance(group, new_member_id, params, ctx)
}

/// A JoinGroup with a member id (Kafka's `doCurrentMemberJoin`).
fn join_known_member(
    group: &mut Group,
    member_id: &str,
    params: JoinParams,
    ctx: &Context<'_>,
) -> Pending<JoinGroupResponse> {
    if !group.supports_protocols(&params.protocol_type, &params.protocols) {
        return Pending::Ready(join_error(ErrorCode::InconsistentGroupProtocol, member_id));
    }
    if group.pending_members.remove(member_id).is_some() {
        return add_member_and_rebalance(group, member_id.to_string(), params, ctx);
    }
    if let Err(code) = group.validate_member(params.group_instance_id.as_deref(), member_id) {
        return Pending::Ready(join_error(code, member_id));
    }
    let Some(member) = group.members.get(member_id) else {
        return Pending::Ready(join_error(ErrorCode::UnknownMemberId, member_id));
    };
    let unchanged = member.protocols == params.protocols;
    match group.state {
        GroupState::Empty | GroupState::Dead => {
            Pending::Ready(join_error(ErrorCode::UnknownMemberId, member_id))
        }
        GroupState::CompletingRebalance | GroupState::Stable
            if unchanged
                && (group.state == GroupState::CompletingRebalance
                    || !group.is_leader(member_id)) =>
        {
            // Nothing changed: answer with the current generation (the join response was lost).
            let with_members = group.is_leader(member_id);
            Pending::Ready(join_ok(group, member_id, with_members))
        }
        _ => update_member_and_rebalance(group, member_id, params, ctx),
    }
}

/// A static member (known `group.instance.id`) rejoining with a new member id (Kafka's
/// `updateStaticMemberAndRebalance`): the old id is fenced and, if the group is stable and the
/// subscription unchanged, the member gets its old assignment back without a rebalance.
fn replace_static_member(
    group: &mut Group,
    old_member_id: &str,
    new_member_id: String,
    params: JoinParams,
    ctx: &Context<'_>,
) -> Pending<JoinGroupResponse> {
    let Some(mut member) = group.members.remove(old_member_id) else {
        return add_member_and_rebalance(group, new_member_id, params, ctx);
    };
    member.answer_join(join_error(ErrorCode::FencedInstanceId, old_member_id));
    member.answer_sync(sync_error(ErrorCode::FencedInstanceId));
    let selected = group.protocol_name.clone().unwrap_or_default();
    let subscription_changed = member.metadata_for(&selected)
        != params
            .protocols
            .iter()
            .find(|(name, _)| *name == selected)
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default();
    member.member_id = new_member_id.clone();
    member.client_id = params.client.client_id.clone();
    member.client_host = params.client.client_host.clone();
    member.session_timeout_ms = params.session_timeout_ms;
    member.rebalance_timeout_ms = params.rebalance_timeout_ms;
    member.protocols = params.protocols.clone();
    member.last_heartbeat_ms = ctx.now_ms;
    let was_leader = group.is_leader(old_member_id);
    if was_leader {
        group.leader_id = Some(new_member_id.clone());
    }
    if let Some(instance_id) = &member.group_instance_id {
        group
            .static_members
            .insert(instance_id.clone(), new_member_id.clone());
    }
    if group.pending_sync.remove(old_member_id) {
        group.pending_sync.insert(new_member_id.clone());
    }
    group.members.insert(new_member_id.clone(), member);

    if group.state != GroupState::Stable || subscription_changed {
        return update_member_and_rebalance(group, &new_member_id, params, ctx);
    }
    ctx.persist_group(group);
    let mut response = join_ok(group, &new_member_id, false);
    if was_leader && params.supports_skip_assignment {
        response.members = group.member_metadata();
        response.skip_assignment = true;
    } else if was_leader {
        // An old client must not believe it leads: its assignment would be ignored by a stable
        // group. Reporting the old leader id keeps it a follower (as Kafka does).
        response.leader = old_member_id.to_string();
    }
    Pending::Ready(response)
}

fn add_member_and_rebalance(
    group: &mut Group,
    member_id: String,
    params: JoinParams,
    ctx: &Context<'_>,
) -> Pending<JoinGroupResponse> {
    let (sender, receiver) = oneshot::channel();
    if group.members.is_empty() {
        group.protocol_type = Some(params.protocol_type.clone());
    }
    if group.leader_id.is_none() {
        group.leader_id = Some(member_id.clone());
    }
    if let Some(instance_id) = &params.group_instance_id {
        group
            .static_members
            .insert(instance_id.clone(), member_id.clone());
    }
    if let Some(delay) = group
        .join_timer
        .as_mut()
        .and_then(|t| t.initial_delay.as_mut())
    {
        delay.new_member_added = true;
    }
    group.members.insert(
        member_id.clone(),
        Member {
            member_id,
            group_instance_id: params.group_instance_id,
            client_id: params.client.client_id,
            client_host: params.client.client_host,
            session_timeout_ms: params.session_timeout_ms,
            rebalance_timeout_ms: params.rebalance_timeout_ms,
            protocols: params.protocols,
            assignment: Bytes::new(),
            join_waiter: Some(sender),
            sync_waiter: None,
            last_heartbeat_ms: ctx.now_ms,
        },
    );
    maybe_prepare_rebalance(group, ctx);
    Pending::Waiting(receiver)
}

fn update_member_and_rebalance(
    group: &mut Group,
    member_id: &str,
    params: JoinParams,
    ctx: &Context<'_>,
) -> Pending<JoinGroupResponse> {
    let (sender, receiver) = oneshot::channel();
    if let Some(member) = group.members.get_mut(member_id) {
        member.protocols = params.protocols;
        member.session_timeout_ms = params.session_timeout_ms;
        member.rebalance_timeout_ms = params.rebalance_timeout_ms;
        member.last_heartbeat_ms = ctx.now_ms;
        // A repeated join replaces a parked one, as in Kafka; the abandoned request is answered
        // COORDINATOR_NOT_AVAILABLE when its sender is dropped, which only makes a client retry.
        member.join_waiter = Some(sender);
    }
    maybe_prepare_rebalance(group, ctx);
    Pending::Waiting(receiver)
}

fn maybe_prepare_rebalance(group: &mut Group, ctx: &Context<'_>) {
    if matches!(
        group.state,
        GroupState::Empty | GroupState::Stable | GroupState::CompletingRebalance
    ) {
        prepare_rebalance(group, ctx);
    }
}

/// Enters PreparingRebalance: members waiting for an assignment are told to rejoin, and the join
/// phase gets its deadline (for a new group: the initial delay).
fn prepare_rebalance(group: &mut Group, ctx: &Context<'_>) {
    if group.state == GroupState::CompletingRebalance {
        for member in group.members.values_mut() {
            member.assignment = Bytes::new();
            member.answer_sync(sync_error(ErrorCode::RebalanceInProgress));
        }
    }
    let rebalance_timeout = group.max_rebalance_timeout_ms();
    let delay = i64::from(ctx.config.initial_rebalance_delay_ms);
    let timer = if group.state == GroupState::Empty && delay > 0 {
        JoinTimer {
            deadline_ms: ctx.now_ms + delay,
            initial_delay: Some(InitialDelay {
                delay_ms: delay,
                remaining_ms: (rebalance_timeout - delay).max(0),
                new_member_added: false,
            }),
        }
    } else {
        JoinTimer {
            deadline_ms: ctx.now_ms + rebalance_timeout,
            initial_delay: None,
        }
    };
    group.pending_sync.clear();
    group.sync_deadline_ms = None;
    group.join_timer = Some(timer);
    group.transition(GroupState::PreparingRebalance, ctx.now_ms);
    try_complete_join(group, ctx);
}

/// Completes the join phase early when every member has rejoined (Kafka's `DelayedJoin`), except
/// during a new group's initial delay.
fn try_complete_join(group: &mut Group, ctx: &Context<'_>) {
    let in_initial_delay = group
        .join_timer
        .is_some_and(|timer| timer.initial_delay.is_some());
    let all_joined =
        group.pending_members.is_empty() && group.members.values().all(Member::is_awaiting_join);
    if group.state == GroupState::PreparingRebalance && !in_initial_delay && all_joined {
        complete_join(group, ctx);
    }
}

/// Ends the join phase (Kafka's `onCompleteJoin`): members that did not rejoin are removed, the
/// generation advances, a protocol is selected and every member gets its JoinGroup response, the
/// leader with everyone's metadata.
fn complete_join(group: &mut Group, ctx: &Context<'_>) {
    group.join_timer = None;
    let absent: Vec<String> = group
        .members
        .values()
        .filter(|m| !m.is_awaiting_join())
        .map(|m| m.member_id.clone())
        .collect();
    for member_id in absent {
        remove_member(group, &member_id);
    }
    group.generation_id += 1;
    if group.members.is_empty() {
        group.protocol_name = None;
        group.leader_id = None;
        group.transition(GroupState::Empty, ctx.now_ms);
        ctx.persist_group(group);
        return;
    }
    if !group
        .leader_id
        .as_ref()
        .is_some_and(|leader| group.members.contains_key(leader))
    {
        group.leader_id = group.members.keys().next().cloned();
    }
    group.protocol_name = group.select_protocol();
    group.transition(GroupState::CompletingRebalance, ctx.now_ms);
    tracing::info!(
        group = %group.id,
        generation = group.generation_id,
        members = group.members.len(),
        protocol = group.protocol_name.as_deref().unwrap_or_default(),
        "join phase complete"
    );
    group.pending_sync = group.members.keys().cloned().collect();
    group.sync_deadline_ms = Some(ctx.now_ms + group.max_rebalance_timeout_ms());
    let responses: Vec<(String, JoinGroupResponse)> = group
        .members
        .keys()
        .map(|id| (id.clone(), join_ok(group, id, group.is_leader(id))))
        .collect();
    for (id, response) in responses {
        if let Some(member) = group.members.get_mut(&id) {
            member.answer_join(response);
            member.last_heartbeat_ms = ctx.now_ms;
        }
    }
}

/// Removes a member, answering any request it has parked with UNKNOWN_MEMBER_ID.
fn remove_member(group: &mut Group, member_id: &str) {
    let Some(mut member) = group.members.remove(member_id) else {
        return;
    };
    member.answer_join(join_error(ErrorCode::UnknownMemberId, member_id));
    member.answer_sync(sync_error(ErrorCode::UnknownMemberId));
    if let Some(instance_id) = &member.group_instance_id {
        if group.static_members.get(instance_id).map(String::as_str) == Some(member_id) {
            group.static_members.remove(instance_id);
        }
    }
    group.pending_sync.remove(member_id);
    if group.is_leader(member_id) {
        group.leader_id = group.members.keys().next().cloned();
    }
}

/// Removes a member and moves the group on: a rebalance if it was settled, a possibly complete
/// join phase if one is in progress.
fn remove_member_and_update(group: &mut Group, member_id: &str, ctx: &Context<'_>) {
    remove_member(group, member_id);
    match group.state {
        GroupState::Stable | GroupState::CompletingRebalance => prepare_rebalance(group, ctx),
        GroupState::PreparingRebalance => try_complete_join(group, ctx),
        GroupState::Empty | GroupState::Dead => {}
    }
}

/// Removes members whose session expired and member ids handed out but never used.
fn expire_members(group: &mut Group, ctx: &Context<'_>) {
    let now = ctx.now_ms;
    let before = group.pending_members.len();
    group.pending_members.retain(|_, expiry| *expiry > now);
    if group.pending_members.len() != before {
        try_complete_join(group, ctx);
    }
    let expired: Vec<String> = group
        .members
        .values()
        .filter(|m| m.session_expired(now))
        .map(|m| m.member_id.clone())
        .collect();
    for member_id in expired {
        tracing::info!(group = %group.id, member = %member_id, "member session expired");
        remove_member_and_update(group, &member_id, ctx);
    }
}

/// Ends a join phase whose deadline passed, or extends a new group's initial delay while members
/// keep arriving (Kafka's `InitialDelayedJoin`).
fn run_join_timer(group: &mut Group, ctx: &Context<'_>) {
    let Some(timer) = group.join_timer else {
        return;
    };
    if group.state != GroupState::PreparingRebalance || timer.deadline_ms > ctx.now_ms {
        return;
    }
    match timer.initial_delay {
        Some(delay) if delay.new_member_added && delay.remaining_ms > 0 => {
            let extension = delay.delay_ms.min(delay.remaining_ms);
            group.join_timer = Some(JoinTimer {
                deadline_ms: ctx.now_ms + extension,
                initial_delay: Some(InitialDelay {
                    delay_ms: delay.delay_ms,
                    remaining_ms: (delay.remaining_ms - extension).max(0),
                    new_member_added: false,
                }),
            });
        }
        _ => complete_join(group, ctx),
    }
}

/// Members that got their JoinGroup response but never sent SyncGroup within the rebalance
/// timeout are removed, and the group rebalances without them.
fn run_sync_deadline(group: &mut Group, ctx: &Context<'_>) {
    let Some(deadline) = group.sync_deadline_ms else {
        return;
    };
    if deadline > ctx.now_ms {
        return;
    }
    group.sync_deadline_ms = None;
    let laggards: Vec<String> = std::mem::take(&mut group.pending_sync)
        .into_iter()
        .collect();
    if laggards.is_empty()
        || !matches!(
            group.state,
            GroupState::CompletingRebalance | GroupState::Stable
        )
    {
        return;
    }
    for member_id in &laggards {
        tracing::info!(group = %group.id, member = %member_id, "member never synced; removing it");
        remove_member(group, member_id);
    }
    prepare_rebalance(group, ctx);
}

/// `offsets.retention.minutes` (Kafka's `removeExpiredOffsets`): an empty group loses offsets
/// older than the retention counted from when it became empty; a group without membership counts
/// from each commit; a stable consumer group loses, counted from each commit, only the offsets of
/// topics none of its members subscribes to (KIP-496). Returns whether the group is now gone
/// (empty, without offsets).
fn expire_offsets(group: &mut Group, ctx: &Context<'_>) -> bool {
    if !group.pending_members.is_empty() {
        return false;
    }
    let deadline = ctx.now_ms.saturating_sub(ctx.config.offsets_retention_ms);
    let expired: Vec<(String, i32)> = match (group.state, &group.protocol_type) {
        (GroupState::Empty, Some(_)) if group.state_since_ms <= deadline => group
            .offsets
            .keys()
            .filter(|key| !group.pending_offsets.contains_key(*key))
            .cloned()
            .collect(),
        (GroupState::Empty, None) => committed_before(group, deadline, |_| true),
        (GroupState::Stable, Some(_)) => match group.subscribed_topics() {
            Some(subscribed) => {
                committed_before(group, deadline, |topic| !subscribed.contains(topic))
            }
            None => Vec::new(),
        },
        _ => Vec::new(),
    };
    if remove_offsets(group, &expired, ctx).is_err() {
        return false;
    }
    if !expired.is_empty() {
        tracing::info!(group = %group.id, expired = expired.len(), "expired committed offsets");
    }
    if group.state == GroupState::Empty && !group.has_offsets() {
        if delete_group_records(group, ctx).is_err() {
            return false;
        }
        group.transition(GroupState::Dead, ctx.now_ms);
        return true;
    }
    false
}

/// The offsets of topics chosen by `topic_filter` committed at or before `deadline`.
fn committed_before(
    group: &Group,
    deadline: i64,
    topic_filter: impl Fn(&str) -> bool,
) -> Vec<(String, i32)> {
    group
        .offsets
        .iter()
        .filter(|(key, offset)| {
            offset.commit_timestamp_ms <= deadline
                && topic_filter(&key.0)
                && !group.pending_offsets.contains_key(*key)
        })
        .map(|(key, _)| key.clone())
        .collect()
}

/// Writes tombstones for the given offsets, then forgets them.
fn remove_offsets(
    group: &mut Group,
    keys: &[(String, i32)],
    ctx: &Context<'_>,
) -> Result<(), OffsetsLogError> {
    if keys.is_empty() {
        return Ok(());
    }
    let tombstones: Vec<(Bytes, Option<Bytes>)> = keys
        .iter()
        .map(|(topic, partition)| {
            let key = OffsetsKey::Offset {
                group: group.id.clone(),
                topic: topic.clone(),
                partition: *partition,
            };
            (key.encode(), None)
        })
        .collect();
    ctx.write(&group.id, &tombstones).inspect_err(|error| {
        tracing::warn!(group = %group.id, %error, "could not delete committed offsets");
    })?;
    for key in keys {
        group.remove_offset(key);
    }
    Ok(())
}

/// Writes tombstones for all of a group's offsets and its metadata.
fn delete_group_records(group: &mut Group, ctx: &Context<'_>) -> Result<(), OffsetsLogError> {
    let keys: Vec<(String, i32)> = group.offset_keys().into_iter().collect();
    remove_offsets(group, &keys, ctx)?;
    let key = OffsetsKey::Group {
        group: group.id.clone(),
    };
    ctx.write(&group.id, &[(key.encode(), None)])?;
    Ok(())
}

/// The checks Heartbeat and SyncGroup share: group alive, a member of it (not fenced), of the
/// current generation.
fn check_member(
    group: &Group,
    instance_id: Option<&str>,
    member_id: &str,
    generation_id: i32,
) -> Result<(), ErrorCode> {
    group.validate_member(instance_id, member_id)?;
    if generation_id != group.generation_id {
        return Err(ErrorCode::IllegalGeneration);
    }
    Ok(())
}

/// Kafka's `ClassicGroup.validateOffsetCommit`. Member and generation are checked before the
/// group state, so a member with a stale generation learns ILLEGAL_GENERATION even while the
/// group rebalances. A commit without a generation (an admin or a consumer that assigns its own
/// partitions) is accepted only while the group is empty.
fn validate_commit(group: &Group, committer: &Committer<'_>) -> Result<(), ErrorCode> {
    if committer.generation_id < 0 && group.state == GroupState::Empty {
        return Ok(());
    }
    if committer.generation_id >= 0
        || !committer.member_id.is_empty()
        || committer.group_instance_id.is_some()
    {
        group.validate_member(committer.group_instance_id, committer.member_id)?;
        if committer.generation_id != group.generation_id {
            return Err(ErrorCode::IllegalGeneration);
        }
    } else {
        // No member, no generation, and the group has members: only they may commit.
        return Err(ErrorCode::UnknownMemberId);
    }
    if group.state == GroupState::CompletingRebalance {
        // A current member that has its JoinGroup answer but not yet its assignment.
        return Err(ErrorCode::RebalanceInProgress);
    }
    Ok(())
}

fn join_error(error: ErrorCode, member_id: &str) -> JoinGroupResponse {
    JoinGroupResponse {
        error_code: error.code(),
        generation_id: -1,
        protocol_type: None,
        protocol_name: None,
        leader: String::new(),
        member_id: member_id.to_string(),
        ..Default::default()
    }
}

fn join_ok(group: &Group, member_id: &str, with_members: bool) -> JoinGroupResponse {
    JoinGroupResponse {
        error_code: ErrorCode::None.code(),
        generation_id: group.generation_id,
        protocol_type: group.protocol_type.clone(),
        protocol_name: group.protocol_name.clone(),
        leader: group.leader_id.clone().unwrap_or_default(),
        member_id: member_id.to_string(),
        members: if with_members {
            group.member_metadata()
        } else {
            Vec::new()
        },
        ..Default::default()
    }
}

fn sync_error(error: ErrorCode) -> SyncGroupResponse {
    SyncGroupResponse {
        error_code: error.code(),
        protocol_type: None,
        protocol_name: None,
        ..Default::default()
    }
}

fn sync_ok(group: &Group, assignment: Bytes) -> SyncGroupResponse {
    SyncGroupResponse {
        error_code: ErrorCode::None.code(),
        protocol_type: group.protocol_type.clone(),
        protocol_name: group.protocol_name.clone(),
        assignment,
        ..Default::default()
    }
}

/// A random (version 4) UUID in its usual text form, for member ids. Randomness comes from the
/// standard library's per-process hash keys mixed with a counter and the clock.
fn random_uuid() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut bytes = [0u8; 16];
    for half in bytes.chunks_mut(8) {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        hasher.write_u128(nanos);
        half.copy_from_slice(&hasher.finish().to_le_bytes());
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}
