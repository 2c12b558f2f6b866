//! Unit tests of the group coordinator, driven directly (no network) with explicit clock values
//! and an in-memory offsets log.

use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use strom_protocol::codec::Encoder;
use strom_protocol::messages::join_group_request::{JoinGroupRequest, JoinGroupRequestProtocol};
use strom_protocol::messages::join_group_response::JoinGroupResponse;
use strom_protocol::messages::sync_group_request::{SyncGroupRequest, SyncGroupRequestAssignment};
use strom_protocol::messages::sync_group_response::SyncGroupResponse;
use strom_protocol::ErrorCode;

use super::coordinator::{ClientIdentity, Committer, GroupConfig, GroupCoordinator, Pending};
use super::group::GroupState;
use super::load::LoadedPartition;
use super::records::{partition_for_group, CommittedOffset, OffsetsKey};
use super::store::{OffsetsLog, OffsetsLogError};
use crate::partitions::PartitionError;

const SESSION: i32 = 10_000;
const REBALANCE: i32 = 30_000;
/// The OffsetCommit version the tests speak.
const COMMIT_VERSION: i16 = 8;

/// How a partition error is made from the partition's name (a variant of [`PartitionError`]).
type MakeError = fn(String) -> PartitionError;

/// Records appended, as (partition, key, value); the position after a record is its index + 1
/// (one log for all partitions keeps positions increasing, which is all the coordinator needs).
#[derive(Default)]
struct MemoryLog {
    records: Mutex<Vec<(i32, Bytes, Option<Bytes>)>>,
    /// When set, appended records never get committed: `await_committed` fails with this error.
    uncommitted: Mutex<Option<MakeError>>,
}

impl OffsetsLog for MemoryLog {
    fn append(
        &self,
        partition: i32,
        records: &[(Bytes, Option<Bytes>)],
        _now_ms: i64,
    ) -> Result<i64, OffsetsLogError> {
        let mut stored = self.records.lock().unwrap();
        stored.extend(
            records
                .iter()
                .map(|(k, v)| (partition, k.clone(), v.clone())),
        );
        Ok(i64::try_from(stored.len()).unwrap())
    }

    fn await_committed(&self, partition: i32, _end_offset: i64) -> Result<(), OffsetsLogError> {
        match *self.uncommitted.lock().unwrap() {
            Some(error) => Err(OffsetsLogError::NotCommitted {
                partition,
                source: error(format!("__consumer_offsets-{partition}")),
            }),
            None => Ok(()),
        }
    }
}

impl MemoryLog {
    /// Makes every later commit fail to replicate with `error`.
    fn fail_replication(&self, error: MakeError) {
        *self.uncommitted.lock().unwrap() = Some(error);
    }

    /// The records of offsets partition `partition`, replayed as a load would.
    fn replay_partition(&self, partition: i32) -> LoadedPartition {
        let mut loaded = LoadedPartition::default();
        for (p, key, value) in self.records.lock().unwrap().iter() {
            if *p == partition {
                loaded.replay(key.clone(), value.clone());
            }
        }
        loaded
    }
}

/// Partitions of the offsets topic in the tests' configuration.
const OFFSETS_PARTITIONS: i32 = 50;

/// Every offsets partition in leader epoch `epoch`, led here or not.
fn every_partition(epoch: i32, leads: bool) -> Vec<(i32, i32, bool)> {
    (0..OFFSETS_PARTITIONS).map(|p| (p, epoch, leads)).collect()
}

/// The offsets partition of group `g`.
fn partition_of_g() -> i32 {
    partition_for_group("g", OFFSETS_PARTITIONS)
}

/// Every offsets partition led elsewhere in epoch 0, except `g`'s: in `epoch`, led here or not.
fn g_partition_in(epoch: i32, leads: bool) -> Vec<(i32, i32, bool)> {
    (0..OFFSETS_PARTITIONS)
        .map(|p| {
            if p == partition_of_g() {
                (p, epoch, leads)
            } else {
                (p, 0, false)
            }
        })
        .collect()
}

/// Runs every scheduled load from `log`, as the broker's loader does.
fn run_loads(coordinator: &GroupCoordinator, log: &MemoryLog, now_ms: i64) {
    while let Some((partition, epoch)) = coordinator.next_load() {
        assert!(coordinator.finish_load(partition, epoch, log.replay_partition(partition), now_ms));
    }
}

/// A coordinator that leads every offsets partition, loaded from `log` at `now_ms`.
fn serving_from(config: GroupConfig, log: &MemoryLog, now_ms: i64) -> GroupCoordinator {
    let coordinator = GroupCoordinator::new(config);
    coordinator.follow_leadership(&every_partition(0, true), now_ms);
    run_loads(&coordinator, log, now_ms);
    coordinator
}

/// A coordinator that leads every (empty) offsets partition.
fn serving(config: GroupConfig) -> GroupCoordinator {
    serving_from(config, &MemoryLog::default(), 0)
}

fn config(initial_delay_ms: i32) -> GroupConfig {
    GroupConfig {
        offsets_partitions: OFFSETS_PARTITIONS,
        min_session_timeout_ms: 6_000,
        max_session_timeout_ms: 300_000,
        initial_rebalance_delay_ms: initial_delay_ms,
        offsets_retention_ms: 60_000,
    }
}

/// A ConsumerProtocolSubscription v0 for `topics`.
fn subscription(topics: &[&str]) -> Bytes {
    let mut out = Encoder::new();
    out.put_i16(0);
    out.put_array_len(Some(topics.len()), false);
    for topic in topics {
        out.put_string(topic, false);
    }
    out.put_nullable_bytes(None, false);
    out.into_bytes()
}

fn join_request(
    member_id: &str,
    instance_id: Option<&str>,
    protocols: &[(&str, Bytes)],
) -> JoinGroupRequest {
    JoinGroupRequest {
        group_id: "g".into(),
        session_timeout_ms: SESSION,
        rebalance_timeout_ms: REBALANCE,
        member_id: member_id.into(),
        group_instance_id: instance_id.map(String::from),
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|(name, metadata)| JoinGroupRequestProtocol {
                name: (*name).into(),
                metadata: metadata.clone(),
            })
            .collect(),
        reason: None,
    }
}

fn range(topics: &[&str]) -> Vec<(&'static str, Bytes)> {
    vec![("range", subscription(topics))]
}

fn client(id: &str) -> ClientIdentity {
    ClientIdentity {
        client_id: id.into(),
        client_host: "/127.0.0.1".into(),
    }
}

fn committer(generation_id: i32, member_id: &str) -> Committer<'_> {
    Committer {
        group_id: "g",
        generation_id,
        member_id,
        group_instance_id: None,
    }
}

/// The response if it is already known (ready, or sent into the waiting channel).
fn answered<T>(pending: &mut Pending<T>) -> Option<T>
where
    T: Clone,
{
    match pending {
        Pending::Ready(response) => Some(response.clone()),
        Pending::Waiting(receiver) => receiver.try_recv().ok(),
    }
}

struct Harness {
    coordinator: GroupCoordinator,
    log: MemoryLog,
}

impl Harness {
    fn new(initial_delay_ms: i32) -> Self {
        Harness {
            coordinator: serving(config(initial_delay_ms)),
            log: MemoryLog::default(),
        }
    }

    fn join(&self, request: JoinGroupRequest, now: i64) -> Pending<JoinGroupResponse> {
        self.coordinator
            .join(request, 9, client("client"), now, &self.log)
    }

    /// Joins as a new dynamic member through the MEMBER_ID_REQUIRED round trip.
    fn join_new(
        &self,
        protocols: &[(&str, Bytes)],
        now: i64,
    ) -> (String, Pending<JoinGroupResponse>) {
        let mut first = self.join(join_request("", None, protocols), now);
        let required = answered(&mut first).expect("first join answers at once");
        assert_eq!(required.error_code, ErrorCode::MemberIdRequired.code());
        assert!(required.member_id.starts_with("client-"));
        let pending = self.join(join_request(&required.member_id, None, protocols), now);
        (required.member_id, pending)
    }

    fn sync(
        &self,
        member_id: &str,
        generation_id: i32,
        assignments: &[(&str, &[u8])],
        now: i64,
    ) -> Pending<SyncGroupResponse> {
        let request = SyncGroupRequest {
            group_id: "g".into(),
            generation_id,
            member_id: member_id.into(),
            group_instance_id: None,
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            assignments: assignments
                .iter()
                .map(|(member, assignment)| SyncGroupRequestAssignment {
                    member_id: (*member).into(),
                    assignment: Bytes::copy_from_slice(assignment),
                })
                .collect(),
        };
        self.coordinator.sync(request, now, &self.log)
    }

    fn state(&self) -> String {
        self.coordinator.describe_group("g").group_state
    }

    /// A stable single member is joined by a second one and rejoins: both have their generation
    /// 2 JoinGroup responses and the group awaits SyncGroup. Returns (leader, follower).
    fn joined_pair(&self) -> (String, String) {
        let a = self.stable_single(0);
        let (b, mut b_join) = self.join_new(&range(&["t"]), 0);
        let mut a_join = self.join(join_request(&a, None, &range(&["t"])), 0);
        assert_eq!(answered(&mut a_join).unwrap().generation_id, 2);
        assert_eq!(answered(&mut b_join).unwrap().generation_id, 2);
        assert_eq!(self.state(), "CompletingRebalance");
        (a, b)
    }

    /// One member joins and syncs alone: a Stable group of generation 1 led by it.
    fn stable_single(&self, now: i64) -> String {
        let (member, mut join) = self.join_new(&range(&["t"]), now);
        let response = answered(&mut join).expect("single member completes the join at once");
        assert_eq!(response.generation_id, 1);
        assert_eq!(response.leader, member);
        let mut sync = self.sync(&member, 1, &[(member.as_str(), b"all")], now);
        assert_eq!(answered(&mut sync).unwrap().assignment.as_ref(), b"all");
        member
    }
}

#[test]
fn two_members_rebalance_and_receive_their_assignments() {
    let h = Harness::new(0);
    let a = h.stable_single(0);
    assert_eq!(h.state(), "Stable");

    let (b, mut b_join) = h.join_new(&range(&["t"]), 100);
    assert!(answered(&mut b_join).is_none(), "b waits for a to rejoin");
    assert_eq!(h.state(), "PreparingRebalance");
    assert_eq!(
        h.coordinator.heartbeat("g", 1, &a, None, 200),
        ErrorCode::RebalanceInProgress
    );

    let mut a_join = h.join(join_request(&a, None, &range(&["t"])), 300);
    let a_response = answered(&mut a_join).expect("everyone rejoined");
    let b_response = answered(&mut b_join).expect("b is answered too");
    assert_eq!(a_response.generation_id, 2);
    assert_eq!(b_response.generation_id, 2);
    assert_eq!(a_response.protocol_name.as_deref(), Some("range"));
    assert_eq!(a_response.leader, a);
    assert_eq!(a_response.members.len(), 2, "the leader sees every member");
    assert!(b_response.members.is_empty(), "followers see no members");
    assert_eq!(h.state(), "CompletingRebalance");

    let mut b_sync = h.sync(&b, 2, &[], 400);
    assert!(
        answered(&mut b_sync).is_none(),
        "follower waits for the leader"
    );
    let mut a_sync = h.sync(&a, 2, &[(a.as_str(), b"p0"), (b.as_str(), b"p1")], 500);
    assert_eq!(answered(&mut a_sync).unwrap().assignment.as_ref(), b"p0");
    assert_eq!(answered(&mut b_sync).unwrap().assignment.as_ref(), b"p1");
    assert_eq!(h.state(), "Stable");
    assert_eq!(
        h.coordinator.heartbeat("g", 2, &b, None, 600),
        ErrorCode::None
    );
    assert_eq!(
        h.coordinator.heartbeat("g", 1, &b, None, 600),
        ErrorCode::IllegalGeneration
    );
    assert_eq!(
        h.coordinator.heartbeat("g", 2, "nobody", None, 600),
        ErrorCode::UnknownMemberId
    );
}

#[test]
fn expired_session_removes_the_member_and_rebalances() {
    let h = Harness::new(0);
    let (a, b) = h.joined_pair();
    h.sync(&a, 2, &[(a.as_str(), b"p0"), (b.as_str(), b"p1")], 0);
    h.sync(&b, 2, &[], 0);
    assert_eq!(h.state(), "Stable");

    // a keeps heartbeating, b goes silent.
    for now in (1_000..=10_000).step_by(1_000) {
        assert_eq!(
            h.coordinator.heartbeat("g", 2, &a, None, now),
            ErrorCode::None
        );
        h.coordinator.tick(now, &h.log);
    }
    assert_eq!(
        h.state(),
        "PreparingRebalance",
        "b's session expired at 10 s"
    );
    let mut a_join = h.join(join_request(&a, None, &range(&["t"])), 10_100);
    let response = answered(&mut a_join).expect("only a is left, so the join completes");
    assert_eq!(response.generation_id, 3);
    assert_eq!(response.members.len(), 1);
    assert_eq!(
        h.coordinator.heartbeat("g", 3, &b, None, 10_200),
        ErrorCode::UnknownMemberId
    );
}

#[test]
fn member_that_does_not_rejoin_is_dropped_after_the_rebalance_timeout() {
    let h = Harness::new(0);
    let a = h.stable_single(0);
    let (_b, mut b_join) = h.join_new(&range(&["t"]), 1_000);
    // a keeps heartbeating (learning of the rebalance) but never rejoins.
    for now in (2_000..=30_000).step_by(2_000) {
        assert_eq!(
            h.coordinator.heartbeat("g", 1, &a, None, now),
            ErrorCode::RebalanceInProgress
        );
        h.coordinator.tick(now, &h.log);
    }
    h.coordinator.tick(1_000 + i64::from(REBALANCE) - 1, &h.log);
    assert!(answered(&mut b_join).is_none());
    h.coordinator.tick(1_000 + i64::from(REBALANCE), &h.log);
    let response = answered(&mut b_join).expect("join completes at the rebalance timeout");
    assert_eq!(response.generation_id, 2);
    assert_eq!(response.members.len(), 1, "a was removed");
    assert_eq!(
        h.coordinator.heartbeat("g", 2, &a, None, 40_000),
        ErrorCode::UnknownMemberId
    );
}

#[test]
fn initial_delay_waits_for_more_members_and_extends() {
    let h = Harness::new(3_000);
    let (_a, mut a_join) = h.join_new(&range(&["t"]), 0);
    h.coordinator.tick(2_999, &h.log);
    assert!(
        answered(&mut a_join).is_none(),
        "still in the initial delay"
    );
    let (_b, mut b_join) = h.join_new(&range(&["t"]), 1_000);
    h.coordinator.tick(3_000, &h.log);
    assert!(
        answered(&mut a_join).is_none(),
        "a member arrived: the delay is extended"
    );
    h.coordinator.tick(6_000, &h.log);
    let a_response = answered(&mut a_join).expect("delay over");
    let b_response = answered(&mut b_join).expect("delay over");
    assert_eq!(a_response.generation_id, 1);
    assert_eq!(b_response.generation_id, 1);
}

#[test]
fn join_checks_session_timeout_and_protocols() {
    let h = Harness::new(0);
    let mut request = join_request("", None, &range(&["t"]));
    request.session_timeout_ms = 1_000;
    let mut pending = h.join(request, 0);
    assert_eq!(
        answered(&mut pending).unwrap().error_code,
        ErrorCode::InvalidSessionTimeout.code()
    );

    let mut pending = h.join(join_request("unknown", None, &range(&["t"])), 0);
    assert_eq!(
        answered(&mut pending).unwrap().error_code,
        ErrorCode::UnknownMemberId.code()
    );

    h.stable_single(0);
    let mut other = h.join(
        join_request("", None, &[("roundrobin", subscription(&["t"]))]),
        0,
    );
    assert_eq!(
        answered(&mut other).unwrap().error_code,
        ErrorCode::InconsistentGroupProtocol.code()
    );
}

#[test]
fn old_clients_join_without_member_id_round_trip() {
    let h = Harness::new(0);
    let mut pending = h.coordinator.join(
        join_request("", None, &range(&["t"])),
        3,
        client("old"),
        0,
        &h.log,
    );
    let response = answered(&mut pending).expect("alone in the group");
    assert_eq!(response.error_code, ErrorCode::None.code());
    assert!(response.member_id.starts_with("old-"));
}

#[test]
fn protocol_with_most_votes_among_common_ones_is_selected() {
    let h = Harness::new(0);
    let meta = subscription(&["t"]);
    let (a, mut a_join) = h.join_new(&[("range", meta.clone()), ("roundrobin", meta.clone())], 0);
    answered(&mut a_join).unwrap();
    let (_b, _b_join) = h.join_new(&[("roundrobin", meta.clone()), ("range", meta.clone())], 0);
    let (_c, _c_join) = h.join_new(
        &[
            ("roundrobin", meta.clone()),
            ("sticky", meta.clone()),
            ("range", meta.clone()),
        ],
        0,
    );
    let mut a_join = h.join(
        join_request(&a, None, &[("range", meta.clone()), ("roundrobin", meta)]),
        0,
    );
    let response = answered(&mut a_join).expect("all rejoined");
    assert_eq!(response.protocol_name.as_deref(), Some("roundrobin"));
}

#[test]
fn long_protocol_lists_are_matched_without_comparing_every_pair() {
    let h = Harness::new(0);
    let meta = subscription(&["t"]);
    let names: Vec<String> = (0..20_000).map(|i| format!("p{i}")).collect();
    let listed: Vec<(&str, Bytes)> = names.iter().map(|n| (n.as_str(), meta.clone())).collect();
    let (_a, mut a_join) = h.join_new(&listed, 0);
    answered(&mut a_join).expect("alone in the group");
    // 20 000 x 20 000 names with nothing in common: refused (in linear time).
    let others: Vec<String> = (0..20_000).map(|i| format!("q{i}")).collect();
    let unrelated: Vec<(&str, Bytes)> = others.iter().map(|n| (n.as_str(), meta.clone())).collect();
    let mut refused = h.join(join_request("", None, &unrelated), 0);
    assert_eq!(
        answered(&mut refused).unwrap().error_code,
        ErrorCode::InconsistentGroupProtocol.code()
    );
    // One name in common, listed twice, is enough.
    let (_b, _b_join) = h.join_new(
        &[
            ("q1", meta.clone()),
            ("p19999", meta.clone()),
            ("p19999", meta),
        ],
        0,
    );
}

#[test]
fn static_member_restart_gets_its_assignment_back_without_rebalance() {
    let h = Harness::new(0);
    let protocols = range(&["t"]);
    let mut first = h.join(join_request("", Some("instance-1"), &protocols), 0);
    let joined = answered(&mut first).expect("static members need no member id round trip");
    let old_id = joined.member_id.clone();
    let mut sync = h.sync(&old_id, 1, &[(old_id.as_str(), b"mine")], 0);
    answered(&mut sync).unwrap();

    // The process restarts: same instance id, no member id.
    let mut rejoin = h.join(join_request("", Some("instance-1"), &protocols), 5_000);
    let response = answered(&mut rejoin).expect("answered at once, no rebalance");
    assert_eq!(response.error_code, ErrorCode::None.code());
    assert_eq!(response.generation_id, 1, "same generation");
    assert_ne!(response.member_id, old_id);
    assert!(
        response.skip_assignment,
        "the leader keeps the current assignment"
    );
    assert_eq!(h.state(), "Stable");
    let mut sync = h.sync(&response.member_id, 1, &[], 5_000);
    assert_eq!(answered(&mut sync).unwrap().assignment.as_ref(), b"mine");
    assert_eq!(
        h.coordinator
            .heartbeat("g", 1, &old_id, Some("instance-1"), 5_100),
        ErrorCode::FencedInstanceId
    );

    // Leaving by instance id removes it.
    let (top, errors) = h.coordinator.leave(
        "g",
        &[(String::new(), Some("instance-1".into()))],
        6_000,
        &h.log,
    );
    assert_eq!((top, errors), (ErrorCode::None, vec![ErrorCode::None]));
    assert_eq!(h.state(), "Empty");
}

#[test]
fn leave_group_rebalances_the_rest() {
    let h = Harness::new(0);
    let (a, b) = h.joined_pair();
    h.sync(&a, 2, &[], 0);
    h.sync(&b, 2, &[], 0);

    let (top, errors) = h.coordinator.leave(
        "g",
        &[(a.clone(), None), ("ghost".into(), None)],
        100,
        &h.log,
    );
    assert_eq!(top, ErrorCode::None);
    assert_eq!(errors, vec![ErrorCode::None, ErrorCode::UnknownMemberId]);
    assert_eq!(h.state(), "PreparingRebalance");
    let mut b_join = h.join(join_request(&b, None, &range(&["t"])), 200);
    let response = answered(&mut b_join).expect("b is the only member");
    assert_eq!(response.leader, b, "leadership moved to b");
    assert_eq!(response.generation_id, 3);
}

#[test]
fn commits_are_checked_against_membership_and_generation() {
    let h = Harness::new(0);
    let offset = |value: i64| CommittedOffset {
        offset: value,
        leader_epoch: 0,
        metadata: "meta".into(),
        commit_timestamp_ms: 0,
    };
    let commit = |generation: i32, member: &str, value: i64| {
        h.coordinator.commit_offsets(
            &committer(generation, member),
            vec![(("t".into(), 0), offset(value))],
            COMMIT_VERSION,
            0,
            &h.log,
        )
    };
    assert_eq!(
        commit(5, "m", 1),
        ErrorCode::IllegalGeneration,
        "unknown group, generation given"
    );
    assert_eq!(
        commit(-1, "", 7),
        ErrorCode::None,
        "simple commit to an empty group"
    );
    let fetched = h
        .coordinator
        .fetch_offsets("g", Some(vec![("t".into(), vec![0, 1])]))
        .unwrap();
    assert_eq!(fetched[0].1[0], (0, Some(offset(7))));
    assert_eq!(fetched[0].1[1], (1, None));

    let member = h.stable_single(0);
    assert_eq!(commit(1, &member, 9), ErrorCode::None);
    assert_eq!(commit(2, &member, 10), ErrorCode::IllegalGeneration);
    assert_eq!(commit(1, "stranger", 10), ErrorCode::UnknownMemberId);
    assert_eq!(
        commit(-1, "", 10),
        ErrorCode::UnknownMemberId,
        "simple commits need an empty group"
    );
    let all = h.coordinator.fetch_offsets("g", None).unwrap();
    assert_eq!(all, vec![("t".to_string(), vec![(0, Some(offset(9)))])]);
}

/// Kafka's `validateOffsetCommit` order: member, then generation, then the group state.
#[test]
fn commits_check_member_and_generation_before_the_rebalance_state() {
    let h = Harness::new(0);
    let offset = CommittedOffset {
        offset: 1,
        leader_epoch: 0,
        metadata: String::new(),
        commit_timestamp_ms: 0,
    };
    let commit = |committer: Committer<'_>, version: i16| {
        h.coordinator.commit_offsets(
            &committer,
            vec![(("t".into(), 0), offset.clone())],
            version,
            0,
            &h.log,
        )
    };
    assert_eq!(commit(committer(3, "m"), 9), ErrorCode::GroupIdNotFound);
    assert_eq!(commit(committer(3, "m"), 8), ErrorCode::IllegalGeneration);

    let (a, b) = h.joined_pair();
    assert_eq!(h.state(), "CompletingRebalance");
    assert_eq!(commit(committer(1, &a), 8), ErrorCode::IllegalGeneration);
    assert_eq!(
        commit(committer(2, "stranger"), 8),
        ErrorCode::UnknownMemberId
    );
    assert_eq!(commit(committer(-1, ""), 8), ErrorCode::UnknownMemberId);
    assert_eq!(commit(committer(2, &a), 8), ErrorCode::RebalanceInProgress);

    h.sync(&a, 2, &[], 0);
    h.sync(&b, 2, &[], 0);
    assert_eq!(commit(committer(2, &b), 8), ErrorCode::None);
    let (_c, _c_join) = h.join_new(&range(&["t"]), 0);
    assert_eq!(h.state(), "PreparingRebalance");
    assert_eq!(
        commit(committer(2, &b), 8),
        ErrorCode::None,
        "the current generation may commit while the group prepares a rebalance"
    );
    assert_eq!(commit(committer(1, &b), 8), ErrorCode::IllegalGeneration);
}

/// An instance id the group does not know is an unknown member for every API, even when the
/// member id belongs to a dynamic member (Kafka's `validateMember`).
#[test]
fn unknown_instance_id_is_an_unknown_member_everywhere() {
    let h = Harness::new(0);
    let member = h.stable_single(0);
    let ghost = Some("ghost");
    assert_eq!(
        h.coordinator.heartbeat("g", 1, &member, ghost, 0),
        ErrorCode::UnknownMemberId
    );
    let committed = h.coordinator.commit_offsets(
        &Committer {
            group_instance_id: ghost,
            ..committer(1, &member)
        },
        Vec::new(),
        COMMIT_VERSION,
        0,
        &h.log,
    );
    assert_eq!(committed, ErrorCode::UnknownMemberId);
    let mut sync = h.coordinator.sync(
        SyncGroupRequest {
            group_id: "g".into(),
            generation_id: 1,
            member_id: member.clone(),
            group_instance_id: ghost.map(String::from),
            ..Default::default()
        },
        0,
        &h.log,
    );
    assert_eq!(
        answered(&mut sync).unwrap().error_code,
        ErrorCode::UnknownMemberId.code()
    );
    let mut join = h.join(join_request(&member, ghost, &range(&["t"])), 0);
    assert_eq!(
        answered(&mut join).unwrap().error_code,
        ErrorCode::UnknownMemberId.code()
    );
    let (top, errors) =
        h.coordinator
            .leave("g", &[(member.clone(), ghost.map(String::from))], 0, &h.log);
    assert_eq!(
        (top, errors),
        (ErrorCode::None, vec![ErrorCode::UnknownMemberId])
    );
    assert_eq!(h.state(), "Stable", "nothing changed");
    assert_eq!(
        h.coordinator.heartbeat("g", 1, &member, None, 0),
        ErrorCode::None
    );
}

/// SyncGroup, Heartbeat and LeaveGroup refuse an empty group id as Kafka does, rather than
/// treating it as a group without members.
#[test]
fn empty_group_id_is_invalid() {
    let h = Harness::new(0);
    assert_eq!(
        h.coordinator.heartbeat("", 1, "m", None, 0),
        ErrorCode::InvalidGroupId
    );
    let mut sync = h.coordinator.sync(SyncGroupRequest::default(), 0, &h.log);
    assert_eq!(
        answered(&mut sync).unwrap().error_code,
        ErrorCode::InvalidGroupId.code()
    );
    let (top, errors) = h.coordinator.leave("", &[("m".into(), None)], 0, &h.log);
    assert_eq!((top, errors), (ErrorCode::InvalidGroupId, Vec::new()));
}

/// As in Kafka 4.0, members of a group that is not Stable are described with their current
/// assignment but without their metadata.
#[test]
fn described_members_keep_their_assignment_during_a_rebalance() {
    let h = Harness::new(0);
    let a = h.stable_single(0);
    let (_b, _b_join) = h.join_new(&range(&["t"]), 0);
    let described = h.coordinator.describe_group("g");
    assert_eq!(described.group_state, "PreparingRebalance");
    assert_eq!(described.protocol_data, "");
    let member = described
        .members
        .iter()
        .find(|m| m.member_id == a)
        .expect("a is described");
    assert_eq!(member.member_assignment.as_ref(), b"all");
    assert!(member.member_metadata.is_empty());
}

#[test]
fn offsets_and_groups_survive_a_reload() {
    let h = Harness::new(0);
    let member = h.stable_single(0);
    let committed = CommittedOffset {
        offset: 42,
        leader_epoch: 3,
        metadata: "checkpoint".into(),
        commit_timestamp_ms: 5,
    };
    let result = h.coordinator.commit_offsets(
        &committer(1, &member),
        vec![
            (("t".into(), 2), committed.clone()),
            (("u".into(), 0), committed.clone()),
        ],
        COMMIT_VERSION,
        0,
        &h.log,
    );
    assert_eq!(result, ErrorCode::None);
    let deleted = h
        .coordinator
        .delete_offsets("g", &[("u".into(), 0), ("t".into(), 2)], 0, &h.log);
    assert_eq!(
        deleted,
        Ok(vec![ErrorCode::None, ErrorCode::GroupSubscribedToTopic])
    );

    let reloaded = serving_from(config(0), &h.log, 1_000);
    let fetched = reloaded.fetch_offsets("g", None).unwrap();
    assert_eq!(fetched, vec![("t".to_string(), vec![(2, Some(committed))])]);
    let described = reloaded.describe_group("g");
    assert_eq!(described.group_state, "Stable");
    assert_eq!(described.protocol_data, "range");
    assert_eq!(described.members.len(), 1);
    assert_eq!(described.members[0].member_id, member);
    assert_eq!(described.members[0].member_assignment.as_ref(), b"all");
    assert_eq!(
        reloaded.heartbeat("g", 1, &member, None, 1_500),
        ErrorCode::None,
        "members carry on after a restart"
    );

    // Records go to the group's partition, keys in Kafka's format.
    let records = h.log.records.lock().unwrap();
    assert!(records.iter().all(|(p, _, _)| *p == partition_of_g()));
    assert!(records
        .iter()
        .any(|(_, k, v)| v.is_none() && OffsetsKey::decode(k.clone()).is_ok()));
}

#[test]
fn delete_groups_only_removes_empty_groups() {
    let h = Harness::new(0);
    let member = h.stable_single(0);
    let names = vec!["g".to_string(), "nope".to_string()];
    assert_eq!(
        h.coordinator.delete_groups(&names, 0, &h.log),
        vec![ErrorCode::NonEmptyGroup, ErrorCode::GroupIdNotFound]
    );
    h.coordinator.leave("g", &[(member, None)], 0, &h.log);
    assert_eq!(h.state(), "Empty");
    assert_eq!(
        h.coordinator.delete_groups(&names[..1], 0, &h.log),
        vec![ErrorCode::None]
    );
    assert_eq!(h.state(), "Dead");
    assert!(h.coordinator.list_groups().unwrap().is_empty());
    let reloaded = serving_from(config(0), &h.log, 0);
    assert!(
        reloaded.list_groups().unwrap().is_empty(),
        "tombstones delete the group on reload"
    );
}

#[test]
fn offsets_of_empty_groups_expire_after_the_retention() {
    let h = Harness::new(0);
    let offset = CommittedOffset {
        offset: 1,
        leader_epoch: -1,
        metadata: String::new(),
        commit_timestamp_ms: 1_000,
    };
    let result = h.coordinator.commit_offsets(
        &committer(-1, ""),
        vec![(("t".into(), 0), offset)],
        COMMIT_VERSION,
        1_000,
        &h.log,
    );
    assert_eq!(result, ErrorCode::None);
    h.coordinator.tick(1_000, &h.log);
    assert_eq!(h.coordinator.list_groups().unwrap().len(), 1);
    // Retention is 60 s and checked at most once a minute.
    h.coordinator.tick(61_000, &h.log);
    assert!(
        h.coordinator.list_groups().unwrap().is_empty(),
        "offsets expired, group removed"
    );
    assert_eq!(h.coordinator.fetch_offsets("g", None).unwrap(), vec![]);
}

#[test]
fn member_that_never_syncs_is_removed() {
    let h = Harness::new(0);
    let (a, b) = h.joined_pair();
    h.sync(&a, 2, &[(a.as_str(), b"x")], 0);
    assert_eq!(h.state(), "Stable");
    // Both keep heartbeating, but b never syncs.
    for now in (2_000..=30_000).step_by(2_000) {
        assert_eq!(
            h.coordinator.heartbeat("g", 2, &a, None, now),
            ErrorCode::None
        );
        assert_eq!(
            h.coordinator.heartbeat("g", 2, &b, None, now),
            ErrorCode::None
        );
        h.coordinator.tick(now, &h.log);
    }
    assert_eq!(h.state(), "PreparingRebalance");
    assert_eq!(
        h.coordinator.heartbeat("g", 2, &b, None, 31_000),
        ErrorCode::UnknownMemberId
    );
    assert_eq!(GroupState::Stable.name(), "Stable");
}

#[test]
fn stable_groups_lose_only_offsets_of_topics_nobody_subscribes_to() {
    let h = Harness::new(0);
    let member = h.stable_single(0);
    let offset = CommittedOffset {
        offset: 3,
        leader_epoch: -1,
        metadata: String::new(),
        commit_timestamp_ms: 0,
    };
    let result = h.coordinator.commit_offsets(
        &committer(1, &member),
        vec![
            (("t".into(), 0), offset.clone()),
            (("old".into(), 0), offset.clone()),
        ],
        COMMIT_VERSION,
        0,
        &h.log,
    );
    assert_eq!(result, ErrorCode::None);
    assert_eq!(
        h.coordinator.heartbeat("g", 1, &member, None, 60_000),
        ErrorCode::None
    );
    h.coordinator.tick(60_000, &h.log);
    assert_eq!(h.state(), "Stable");
    let left = h.coordinator.fetch_offsets("g", None).unwrap();
    assert_eq!(left, vec![("t".to_string(), vec![(0, Some(offset))])]);
}

#[test]
fn offsets_of_deleted_topics_are_removed_from_every_group() {
    let h = Harness::new(0);
    let offset = CommittedOffset {
        offset: 5,
        leader_epoch: -1,
        metadata: String::new(),
        commit_timestamp_ms: 1_000,
    };
    let result = h.coordinator.commit_offsets(
        &committer(-1, ""),
        vec![
            (("doomed".into(), 0), offset.clone()),
            (("kept".into(), 0), offset),
        ],
        COMMIT_VERSION,
        1_000,
        &h.log,
    );
    assert_eq!(result, ErrorCode::None);
    h.coordinator
        .remove_topic_offsets(&["doomed".to_string()], 2_000, &h.log);
    let remaining = h.coordinator.fetch_offsets("g", None).unwrap();
    assert_eq!(
        remaining.len(),
        1,
        "only the kept topic remains: {remaining:?}"
    );
    assert_eq!(remaining[0].0, "kept");
}

/// How long the concurrency tests wait for something that must happen; only reached on failure.
const DEADLINE: Duration = Duration::from_secs(10);

/// An offsets log whose first append of one group's records waits until the test lets it
/// through (reporting when it starts waiting); everything else is appended at once.
struct GatedLog {
    memory: MemoryLog,
    gated_group: String,
    /// (where to report that the append waits, what lets it through), taken by that append.
    gate: Mutex<Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>>,
}

impl GatedLog {
    /// The log and (the signal that the gated append is waiting, the switch that releases it).
    fn new(gated_group: &str) -> (Self, mpsc::Receiver<()>, mpsc::Sender<()>) {
        let (arrived_tx, arrived_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel();
        let log = GatedLog {
            memory: MemoryLog::default(),
            gated_group: gated_group.into(),
            gate: Mutex::new(Some((arrived_tx, release_rx))),
        };
        (log, arrived_rx, release_tx)
    }
}

impl OffsetsLog for GatedLog {
    fn append(
        &self,
        partition: i32,
        records: &[(Bytes, Option<Bytes>)],
        now_ms: i64,
    ) -> Result<i64, OffsetsLogError> {
        let of_gated_group =
            records
                .iter()
                .any(|(key, _)| match OffsetsKey::decode(key.clone()).unwrap() {
                    OffsetsKey::Offset { group, .. } | OffsetsKey::Group { group } => {
                        group == self.gated_group
                    }
                });
        let gate = if of_gated_group {
            self.gate.lock().unwrap().take()
        } else {
            None
        };
        if let Some((arrived, release)) = gate {
            arrived.send(()).unwrap();
            release
                .recv_timeout(DEADLINE)
                .expect("the test releases the gated append");
        }
        self.memory.append(partition, records, now_ms)
    }

    fn await_committed(&self, partition: i32, end_offset: i64) -> Result<(), OffsetsLogError> {
        self.memory.await_committed(partition, end_offset)
    }
}

/// A new member joins `group_id` as an old (v3) client does, without the MEMBER_ID_REQUIRED
/// round trip; alone in the group, it is answered at once.
fn join_alone(
    coordinator: &GroupCoordinator,
    group_id: &str,
    log: &dyn OffsetsLog,
) -> JoinGroupResponse {
    let request = JoinGroupRequest {
        group_id: group_id.into(),
        ..join_request("", None, &range(&["t"]))
    };
    let mut pending = coordinator.join(request, 3, client("client"), 0, log);
    answered(&mut pending).expect("a lone member's join completes at once")
}

/// Offset 1 of partition 0 of topic `t`, committed at time 0.
fn offset_one() -> CommittedOffset {
    CommittedOffset {
        offset: 1,
        leader_epoch: -1,
        metadata: String::new(),
        commit_timestamp_ms: 0,
    }
}

/// Group `g`'s commit is stuck in the offsets log (a slow fsync) while holding `g`'s lock;
/// meanwhile another group joins, syncs, heartbeats, commits and is described and fetched.
#[test]
fn a_slow_commit_does_not_hold_up_other_groups() {
    let coordinator = serving(config(0));
    let (log, gated_append_waits, release_gated_append) = GatedLog::new("g");
    let (others_done, others_result) = mpsc::channel();
    std::thread::scope(|scope| {
        let slow_commit = scope.spawn(|| {
            coordinator.commit_offsets(
                &committer(-1, ""),
                vec![(("t".into(), 0), offset_one())],
                COMMIT_VERSION,
                0,
                &log,
            )
        });
        gated_append_waits
            .recv_timeout(DEADLINE)
            .expect("the commit of g reaches the log");
        scope.spawn(|| {
            let joined = join_alone(&coordinator, "other", &log);
            let member = joined.member_id.clone();
            let sync = SyncGroupRequest {
                group_id: "other".into(),
                generation_id: joined.generation_id,
                member_id: member.clone(),
                group_instance_id: None,
                protocol_type: Some("consumer".into()),
                protocol_name: Some("range".into()),
                assignments: vec![SyncGroupRequestAssignment {
                    member_id: member.clone(),
                    assignment: Bytes::from_static(b"all"),
                }],
            };
            let synced = answered(&mut coordinator.sync(sync, 0, &log)).map(|r| r.error_code);
            let heartbeat = coordinator.heartbeat("other", 1, &member, None, 1);
            let commit = coordinator.commit_offsets(
                &Committer {
                    group_id: "other",
                    generation_id: 1,
                    member_id: &member,
                    group_instance_id: None,
                },
                vec![(("t".into(), 0), offset_one())],
                COMMIT_VERSION,
                1,
                &log,
            );
            let fetched = coordinator.fetch_offsets("other", None).unwrap();
            let state = coordinator.describe_group("other").group_state;
            // The receiver is gone only if the test already failed.
            let _ =
                others_done.send((joined.error_code, synced, heartbeat, commit, fetched, state));
        });
        let others = others_result.recv_timeout(DEADLINE);
        release_gated_append.send(()).unwrap();
        let (joined, synced, heartbeat, commit, fetched, state) =
            others.expect("the other group is served while g's commit waits for the log");
        assert_eq!(joined, ErrorCode::None.code());
        assert_eq!(synced, Some(ErrorCode::None.code()));
        assert_eq!(heartbeat, ErrorCode::None);
        assert_eq!(commit, ErrorCode::None);
        assert_eq!(fetched, vec![("t".into(), vec![(0, Some(offset_one()))])]);
        assert_eq!(state, "Stable");
        assert_eq!(slow_commit.join().unwrap(), ErrorCode::None);
    });
    assert_eq!(
        coordinator.fetch_offsets("g", None).unwrap(),
        vec![("t".into(), vec![(0, Some(offset_one()))])],
        "g's commit completed once the log let it through"
    );
}

/// A JoinGroup that looked group `g` up while DeleteGroups was deleting it waits for the group's
/// lock, finds the group Dead, and joins a new `g` instead, as if it had arrived after the
/// deletion; the old group's offsets stay deleted.
#[test]
fn a_join_that_waited_for_a_deleted_group_joins_a_new_one() {
    let coordinator = serving(config(0));
    let (log, gated_append_waits, release_gated_append) = GatedLog::new("g");
    let committed = coordinator.commit_offsets(
        &committer(-1, ""),
        vec![(("t".into(), 0), offset_one())],
        COMMIT_VERSION,
        0,
        &log.memory,
    );
    assert_eq!(committed, ErrorCode::None);
    std::thread::scope(|scope| {
        let delete = scope.spawn(|| coordinator.delete_groups(&["g".to_string()], 0, &log));
        gated_append_waits
            .recv_timeout(DEADLINE)
            .expect("the deletion of g writes its tombstones");
        let join = scope.spawn(|| join_alone(&coordinator, "g", &log));
        // The map, the deletion and the join hold the old group: the join waits for its lock.
        let deadline = Instant::now() + DEADLINE;
        while coordinator.entry_holders("g") < 3 {
            assert!(Instant::now() < deadline, "the join never looked g up");
            std::thread::yield_now();
        }
        release_gated_append.send(()).unwrap();
        assert_eq!(delete.join().unwrap(), vec![ErrorCode::None]);
        let joined = join.join().unwrap();
        assert_eq!(joined.error_code, ErrorCode::None.code());
        assert_eq!(joined.generation_id, 1, "a new group's first generation");
    });
    assert_eq!(
        coordinator.describe_group("g").group_state,
        "CompletingRebalance"
    );
    assert_eq!(coordinator.fetch_offsets("g", None).unwrap(), vec![]);
    assert_eq!(coordinator.list_groups().unwrap().len(), 1);
}

/// The error each group API answers for group `g` (ListGroups: for the whole coordinator).
#[derive(Debug, PartialEq, Eq)]
struct Answers {
    join: i16,
    sync: i16,
    heartbeat: ErrorCode,
    leave: ErrorCode,
    commit: ErrorCode,
    fetch: Option<ErrorCode>,
    describe: i16,
    delete: ErrorCode,
    delete_offsets: Option<ErrorCode>,
    list: Option<ErrorCode>,
}

impl Answers {
    /// What `coordinator` answers every group API for `g`.
    fn of(coordinator: &GroupCoordinator, log: &MemoryLog) -> Self {
        let join = coordinator.join(
            join_request("", None, &range(&["t"])),
            9,
            client("c"),
            0,
            log,
        );
        let sync = SyncGroupRequest {
            group_id: "g".into(),
            generation_id: 1,
            member_id: "m".into(),
            ..Default::default()
        };
        Answers {
            join: answered_now(join).error_code,
            sync: answered_now(coordinator.sync(sync, 0, log)).error_code,
            heartbeat: coordinator.heartbeat("g", 1, "m", None, 0),
            leave: coordinator.leave("g", &[("m".into(), None)], 0, log).0,
            commit: coordinator.commit_offsets(
                &committer(-1, ""),
                vec![(("t".into(), 0), offset_one())],
                COMMIT_VERSION,
                0,
                log,
            ),
            fetch: coordinator.fetch_offsets("g", None).err(),
            describe: coordinator.describe_group("g").error_code,
            delete: coordinator.delete_groups(&["g".to_string()], 0, log)[0],
            delete_offsets: coordinator
                .delete_offsets("g", &[("t".into(), 0)], 0, log)
                .err(),
            list: coordinator.list_groups().err(),
        }
    }

    /// Every group API refused with `error` (Heartbeat and ListGroups as given).
    fn refused(error: ErrorCode, heartbeat: ErrorCode, list: Option<ErrorCode>) -> Self {
        Answers {
            join: error.code(),
            sync: error.code(),
            heartbeat,
            leave: error,
            commit: error,
            fetch: Some(error),
            describe: error.code(),
            delete: error,
            delete_offsets: Some(error),
            list,
        }
    }
}

/// The response of a request that must be answered at once.
fn answered_now<T: Clone>(mut pending: Pending<T>) -> T {
    answered(&mut pending).expect("answered at once")
}

/// Kafka's `validateGroupStatus`: a group whose offsets partition is led elsewhere gets
/// NOT_COORDINATOR from every group API, one whose partition is still loading
/// COORDINATOR_LOAD_IN_PROGRESS (Heartbeat answers NONE, as in Kafka, and ListGroups refuses
/// to give a partial list); once loaded, the group is served.
#[test]
fn groups_are_served_only_where_their_partition_is_led_and_loaded() {
    let log = MemoryLog::default();
    let coordinator = GroupCoordinator::new(config(0));
    assert_eq!(
        Answers::of(&coordinator, &log),
        Answers::refused(ErrorCode::NotCoordinator, ErrorCode::NotCoordinator, None),
        "nothing led yet"
    );
    coordinator.follow_leadership(&every_partition(1, false), 0);
    assert_eq!(
        Answers::of(&coordinator, &log),
        Answers::refused(ErrorCode::NotCoordinator, ErrorCode::NotCoordinator, None),
        "another broker leads every partition"
    );
    assert_eq!(coordinator.list_groups().unwrap(), vec![]);

    coordinator.follow_leadership(&every_partition(2, true), 0);
    let loading = ErrorCode::CoordinatorLoadInProgress;
    assert_eq!(
        Answers::of(&coordinator, &log),
        Answers::refused(loading, ErrorCode::None, Some(loading)),
        "elected, loading"
    );
    assert!(
        log.records.lock().unwrap().is_empty(),
        "nothing was written"
    );

    run_loads(&coordinator, &log, 0);
    let served = Answers::of(&coordinator, &log);
    assert_eq!(served.join, ErrorCode::MemberIdRequired.code());
    assert_eq!(served.commit, ErrorCode::None);
    assert_eq!(served.fetch, None);
    assert_eq!(served.list, None);
}

/// Only the groups of the partitions this broker leads are served: another partition's group
/// gets NOT_COORDINATOR and is not listed.
#[test]
fn a_broker_serves_the_groups_of_its_partitions_only() {
    let log = MemoryLog::default();
    let coordinator = GroupCoordinator::new(config(0));
    coordinator.follow_leadership(&g_partition_in(0, true), 0);
    run_loads(&coordinator, &log, 0);
    let elsewhere = (0..)
        .map(|i| format!("group-{i}"))
        .find(|id| partition_for_group(id, OFFSETS_PARTITIONS) != partition_of_g())
        .unwrap();
    let commit = |group_id: &str| {
        coordinator.commit_offsets(
            &Committer {
                group_id,
                ..committer(-1, "")
            },
            vec![(("t".into(), 0), offset_one())],
            COMMIT_VERSION,
            0,
            &log,
        )
    };
    assert_eq!(commit("g"), ErrorCode::None);
    assert_eq!(commit(&elsewhere), ErrorCode::NotCoordinator);
    assert_eq!(
        coordinator.fetch_offsets(&elsewhere, None),
        Err(ErrorCode::NotCoordinator)
    );
    let listed: Vec<String> = coordinator
        .list_groups()
        .unwrap()
        .into_iter()
        .map(|g| g.group_id)
        .collect();
    assert_eq!(listed, vec!["g".to_string()]);
}

/// Kafka's `onResignation`: when this broker stops leading a partition, members' parked
/// JoinGroup and SyncGroup requests are answered NOT_COORDINATOR (so they look for the new
/// coordinator), the groups leave memory, and the partition's groups get NOT_COORDINATOR.
#[test]
fn resigning_a_partition_answers_parked_requests_and_drops_its_groups() {
    // A parked SyncGroup: b waits for the leader's assignment.
    let h = Harness::new(0);
    let (_a, b) = h.joined_pair();
    let mut b_sync = h.sync(&b, 2, &[], 0);
    assert!(answered(&mut b_sync).is_none(), "b waits for the leader");
    // A parked JoinGroup in another group of the same partition: a new member of a stable
    // group waits for the others to rejoin.
    let other = (0..)
        .map(|i| format!("other-{i}"))
        .find(|id| partition_for_group(id, OFFSETS_PARTITIONS) == partition_of_g())
        .unwrap();
    let joined = join_alone(&h.coordinator, &other, &h.log);
    let sync = SyncGroupRequest {
        group_id: other.clone(),
        generation_id: joined.generation_id,
        member_id: joined.member_id.clone(),
        assignments: vec![SyncGroupRequestAssignment {
            member_id: joined.member_id.clone(),
            assignment: Bytes::from_static(b"all"),
        }],
        ..Default::default()
    };
    assert_eq!(
        answered_now(h.coordinator.sync(sync, 0, &h.log)).error_code,
        0
    );
    let mut parked_join = h.coordinator.join(
        JoinGroupRequest {
            group_id: other.clone(),
            ..join_request("", None, &range(&["t"]))
        },
        3,
        client("late"),
        0,
        &h.log,
    );
    assert!(answered(&mut parked_join).is_none(), "the newcomer waits");

    let mut leadership = every_partition(0, true);
    leadership[usize::try_from(partition_of_g()).unwrap()].2 = false;
    h.coordinator.follow_leadership(&leadership, 0);

    assert_eq!(
        answered(&mut b_sync).unwrap().error_code,
        ErrorCode::NotCoordinator.code()
    );
    assert_eq!(
        answered(&mut parked_join).unwrap().error_code,
        ErrorCode::NotCoordinator.code()
    );
    assert_eq!(
        h.coordinator.heartbeat("g", 2, &b, None, 0),
        ErrorCode::NotCoordinator
    );
    assert_eq!(
        h.coordinator.describe_group("g").error_code,
        ErrorCode::NotCoordinator.code()
    );
    assert_eq!(h.coordinator.list_groups().unwrap(), vec![]);
}

/// Kafka's coordinator epoch check: a load that finishes after its partition was resigned, or
/// elected again in a newer epoch, is discarded; leadership news older than the newest epoch
/// known is ignored.
#[test]
fn loads_and_resignations_of_older_epochs_are_discarded() {
    let log = MemoryLog::default();
    let p = partition_of_g();
    // The partition's log: group g's offset.
    let writer = serving(config(0));
    assert_eq!(
        writer.commit_offsets(
            &committer(-1, ""),
            vec![(("t".into(), 0), offset_one())],
            COMMIT_VERSION,
            0,
            &log,
        ),
        ErrorCode::None
    );

    let coordinator = GroupCoordinator::new(config(0));
    coordinator.follow_leadership(&g_partition_in(1, true), 0);
    assert_eq!(coordinator.next_load(), Some((p, 1)));
    // Resigned (another broker leads in epoch 2) before the epoch-1 load finished.
    coordinator.follow_leadership(&g_partition_in(2, false), 0);
    assert!(!coordinator.finish_load(p, 1, log.replay_partition(p), 0));
    assert_eq!(
        coordinator.fetch_offsets("g", None),
        Err(ErrorCode::NotCoordinator)
    );

    // Elected in epoch 3, and in epoch 4 before that load ran: only the newest load runs.
    coordinator.follow_leadership(&g_partition_in(3, true), 0);
    coordinator.follow_leadership(&g_partition_in(4, true), 0);
    assert_eq!(coordinator.next_load(), Some((p, 4)));
    assert_eq!(coordinator.next_load(), None, "the epoch-3 load is dropped");
    assert!(!coordinator.finish_load(p, 3, log.replay_partition(p), 0));
    assert_eq!(
        coordinator.fetch_offsets("g", None),
        Err(ErrorCode::CoordinatorLoadInProgress)
    );
    assert!(coordinator.finish_load(p, 4, log.replay_partition(p), 0));
    assert_eq!(
        coordinator.fetch_offsets("g", None).unwrap(),
        vec![("t".into(), vec![(0, Some(offset_one()))])]
    );

    // A stale resignation (epoch 2 < 4) changes nothing.
    coordinator.follow_leadership(&g_partition_in(2, false), 0);
    assert!(coordinator.fetch_offsets("g", None).is_ok());
}

/// Led again in a newer epoch (leadership went elsewhere and came back between two images):
/// the partition's groups are unloaded and read again from the log, which is the truth now.
#[test]
fn a_partition_led_again_in_a_newer_epoch_is_reloaded_from_its_log() {
    let h = Harness::new(0);
    let (_a, b) = h.joined_pair();
    let mut b_sync = h.sync(&b, 2, &[], 0);
    let p = partition_of_g();
    h.coordinator.follow_leadership(&g_partition_in(5, true), 0);
    assert_eq!(
        answered(&mut b_sync).unwrap().error_code,
        ErrorCode::NotCoordinator.code(),
        "unloaded: parked requests answered"
    );
    assert_eq!(h.state(), "");
    assert_eq!(h.coordinator.next_load(), Some((p, 5)));
    assert!(h
        .coordinator
        .finish_load(p, 5, h.log.replay_partition(p), 1_000));
    let described = h.coordinator.describe_group("g");
    assert_eq!(
        (described.group_state.as_str(), described.members.len()),
        ("Stable", 1),
        "as stored: generation 1, one member (generation 2 never completed)"
    );
}

/// An offsets log whose first wait for the in-sync replicas blocks until the test lets it
/// through (reporting when it starts waiting).
struct SlowReplicationLog {
    memory: MemoryLog,
    /// (where to report that the wait began, what ends it), taken by the first wait.
    gate: Mutex<Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>>,
}

impl SlowReplicationLog {
    fn new() -> (Self, mpsc::Receiver<()>, mpsc::Sender<()>) {
        let (waiting_tx, waiting_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel();
        let log = SlowReplicationLog {
            memory: MemoryLog::default(),
            gate: Mutex::new(Some((waiting_tx, release_rx))),
        };
        (log, waiting_rx, release_tx)
    }
}

impl OffsetsLog for SlowReplicationLog {
    fn append(
        &self,
        partition: i32,
        records: &[(Bytes, Option<Bytes>)],
        now_ms: i64,
    ) -> Result<i64, OffsetsLogError> {
        self.memory.append(partition, records, now_ms)
    }

    fn await_committed(&self, partition: i32, end_offset: i64) -> Result<(), OffsetsLogError> {
        let gate = self.gate.lock().unwrap().take();
        if let Some((waiting, release)) = gate {
            waiting.send(()).unwrap();
            release
                .recv_timeout(DEADLINE)
                .expect("the test ends the wait");
        }
        self.memory.await_committed(partition, end_offset)
    }
}

/// A commit is acknowledged, and its offset shown, only once the in-sync replicas have it;
/// meanwhile the group's lock is free (its members heartbeat, a newer commit of the same
/// partition goes through), and the late acknowledgement of the older commit does not hide
/// the newer offset.
#[test]
fn a_commit_is_shown_once_replicated_without_holding_up_its_group() {
    let coordinator = serving(config(0));
    let (log, replication_waits, release) = SlowReplicationLog::new();
    let member = join_alone(&coordinator, "g", &log).member_id;
    let sync = SyncGroupRequest {
        group_id: "g".into(),
        generation_id: 1,
        member_id: member.clone(),
        assignments: vec![SyncGroupRequestAssignment {
            member_id: member.clone(),
            assignment: Bytes::from_static(b"all"),
        }],
        ..Default::default()
    };
    // The sync's store takes the slow wait's gate: let it through first.
    std::thread::scope(|scope| {
        let synced = scope.spawn(|| answered_now(coordinator.sync(sync, 0, &log)));
        replication_waits.recv_timeout(DEADLINE).unwrap();
        assert_eq!(
            coordinator.describe_group("g").group_state,
            "CompletingRebalance"
        );
        release.send(()).unwrap();
        assert_eq!(synced.join().unwrap().error_code, 0);
    });
    assert_eq!(coordinator.describe_group("g").group_state, "Stable");

    let (log, replication_waits, release) = SlowReplicationLog::new();
    let commit = |value: i64| {
        coordinator.commit_offsets(
            &committer(1, &member),
            vec![(
                ("t".into(), 0),
                CommittedOffset {
                    offset: value,
                    ..offset_one()
                },
            )],
            COMMIT_VERSION,
            0,
            &log,
        )
    };
    std::thread::scope(|scope| {
        let first = scope.spawn(|| commit(10));
        replication_waits.recv_timeout(DEADLINE).unwrap();
        assert_eq!(
            coordinator.fetch_offsets("g", None).unwrap(),
            vec![],
            "not committed yet: not shown"
        );
        assert_eq!(
            coordinator.heartbeat("g", 1, &member, None, 0),
            ErrorCode::None
        );
        assert_eq!(commit(20), ErrorCode::None, "a newer commit goes through");
        release.send(()).unwrap();
        assert_eq!(first.join().unwrap(), ErrorCode::None);
    });
    let fetched = coordinator.fetch_offsets("g", None).unwrap();
    assert_eq!(fetched[0].1[0].1.as_ref().map(|o| o.offset), Some(20));
}

/// Kafka's mapping of append errors for commits: a replication timeout (or too few replicas) is
/// COORDINATOR_NOT_AVAILABLE, a lost leadership NOT_COORDINATOR; the offset is not shown.
#[test]
fn a_commit_the_replicas_do_not_get_fails_with_the_coordinator_error() {
    for (error, expected) in [
        (
            PartitionError::ReplicationTimedOut as MakeError,
            ErrorCode::CoordinatorNotAvailable,
        ),
        (PartitionError::NotLeader, ErrorCode::NotCoordinator),
        (PartitionError::Offline, ErrorCode::NotCoordinator),
    ] {
        let h = Harness::new(0);
        h.log.fail_replication(error);
        let result = h.coordinator.commit_offsets(
            &committer(-1, ""),
            vec![(("t".into(), 0), offset_one())],
            COMMIT_VERSION,
            0,
            &h.log,
        );
        assert_eq!(result, expected);
        assert_eq!(h.coordinator.fetch_offsets("g", None).unwrap(), vec![]);
    }
}

/// The leader's assignment must reach the in-sync replicas before anyone gets it: if it does
/// not, every waiting member gets the error and the group rebalances (Kafka's
/// `resetAndPropagateAssignmentError`).
#[test]
fn an_assignment_the_replicas_do_not_get_fails_the_sync_and_rebalances() {
    let h = Harness::new(0);
    let (member, mut join) = h.join_new(&range(&["t"]), 0);
    assert_eq!(answered(&mut join).unwrap().generation_id, 1);
    h.log.fail_replication(PartitionError::ReplicationTimedOut);
    let mut sync = h.sync(&member, 1, &[(member.as_str(), b"all")], 0);
    assert_eq!(
        answered(&mut sync).unwrap().error_code,
        ErrorCode::CoordinatorNotAvailable.code()
    );
    assert_eq!(h.state(), "PreparingRebalance");
}
