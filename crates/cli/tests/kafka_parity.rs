//! Answers that independent clients found differing from Apache Kafka's, each pinned down against
//! a real `strom` process: the order in which the group coordinator checks an OffsetCommit or a
//! Heartbeat (member, then generation, then group state), the authorized-operations bit fields
//! Kafka reports without an authorizer, and transactional producers failing at once instead of
//! retrying until their timeout. Frames are built with the protocol crate where librdkafka cannot
//! be made to send them.

// Test code. (clippy.toml's allow-*-in-tests does not reach integration-test helpers.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::typed::TypedClient;
use common::{StromProcess, WAIT_DEADLINE};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::Producer;
use strom_protocol::codec::Encoder;
use strom_protocol::messages::create_topics_request::{CreatableTopic, CreateTopicsRequest};
use strom_protocol::messages::create_topics_response::CreateTopicsResponse;
use strom_protocol::messages::describe_cluster_request::DescribeClusterRequest;
use strom_protocol::messages::describe_cluster_response::DescribeClusterResponse;
use strom_protocol::messages::describe_groups_request::DescribeGroupsRequest;
use strom_protocol::messages::describe_groups_response::{DescribeGroupsResponse, DescribedGroup};
use strom_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use strom_protocol::messages::find_coordinator_response::FindCoordinatorResponse;
use strom_protocol::messages::heartbeat_request::HeartbeatRequest;
use strom_protocol::messages::heartbeat_response::HeartbeatResponse;
use strom_protocol::messages::join_group_request::{JoinGroupRequest, JoinGroupRequestProtocol};
use strom_protocol::messages::join_group_response::JoinGroupResponse;
use strom_protocol::messages::leave_group_request::{LeaveGroupRequest, MemberIdentity};
use strom_protocol::messages::leave_group_response::LeaveGroupResponse;
use strom_protocol::messages::metadata_request::{MetadataRequest, MetadataRequestTopic};
use strom_protocol::messages::metadata_response::MetadataResponse;
use strom_protocol::messages::offset_commit_request::{
    OffsetCommitRequest, OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use strom_protocol::messages::offset_commit_response::OffsetCommitResponse;
use strom_protocol::messages::sync_group_request::{SyncGroupRequest, SyncGroupRequestAssignment};
use strom_protocol::messages::sync_group_response::SyncGroupResponse;
use strom_protocol::ErrorCode;

const METADATA: i16 = 3;
const OFFSET_COMMIT: i16 = 8;
const FIND_COORDINATOR: i16 = 10;
const JOIN_GROUP: i16 = 11;
const HEARTBEAT: i16 = 12;
const LEAVE_GROUP: i16 = 13;
const SYNC_GROUP: i16 = 14;
const DESCRIBE_GROUPS: i16 = 15;
const CREATE_TOPICS: i16 = 19;
const DESCRIBE_CLUSTER: i16 = 60;

/// Kafka's `Utils.to32BitField` of the `AclOperation` codes each resource type supports
/// (`AclEntry.supportedOperations`), which is what a broker without an authorizer reports.
/// Topic: READ 3, WRITE 4, CREATE 5, DELETE 6, ALTER 7, DESCRIBE 8, DESCRIBE_CONFIGS 10,
/// ALTER_CONFIGS 11.
const TOPIC_OPERATIONS: i32 = 3576;
/// Cluster: CREATE 5, ALTER 7, DESCRIBE 8, CLUSTER_ACTION 9, DESCRIBE_CONFIGS 10,
/// ALTER_CONFIGS 11, IDEMPOTENT_WRITE 12.
const CLUSTER_OPERATIONS: i32 = 8096;
/// Group (Kafka 4.0, which added group configs): READ 3, DELETE 6, DESCRIBE 8,
/// DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11.
const GROUP_OPERATIONS: i32 = 3400;
/// The schema default of every authorized-operations field: "not requested".
const NOT_REQUESTED: i32 = i32::MIN;

const BROKER_PROPS: &[(&str, &str)] = &[
    ("group.initial.rebalance.delay.ms", "0"),
    ("offsets.topic.num.partitions", "3"),
];

fn create_topic(client: &mut TypedClient, name: &str) {
    let request = CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: name.into(),
            num_partitions: 1,
            replication_factor: 1,
            ..Default::default()
        }],
        timeout_ms: 10_000,
        validate_only: false,
    };
    let response: CreateTopicsResponse = client.call(CREATE_TOPICS, 7, &request);
    assert_eq!(
        response.topics[0].error_code,
        ErrorCode::None.code(),
        "{response:?}"
    );
}

/// A range-assignor consumer's JoinGroup (v5) for `topic`.
fn join_request(group: &str, member_id: &str, topic: &str) -> JoinGroupRequest {
    let mut subscription = Encoder::new();
    subscription.put_i16(0);
    subscription.put_array_len(Some(1), false);
    subscription.put_string(topic, false);
    subscription.put_nullable_bytes(None, false);
    JoinGroupRequest {
        group_id: group.into(),
        session_timeout_ms: 30_000,
        rebalance_timeout_ms: 30_000,
        member_id: member_id.into(),
        group_instance_id: None,
        protocol_type: "consumer".into(),
        protocols: vec![JoinGroupRequestProtocol {
            name: "range".into(),
            metadata: subscription.into_bytes(),
        }],
        reason: None,
    }
}

/// Sends the MEMBER_ID_REQUIRED round trip and the real JoinGroup, without waiting for the
/// latter's answer (it is parked until the join phase completes). Returns the member id.
fn send_join(client: &mut TypedClient, group: &str, topic: &str) -> String {
    let first: JoinGroupResponse = client.call(JOIN_GROUP, 5, &join_request(group, "", topic));
    assert_eq!(first.error_code, ErrorCode::MemberIdRequired.code());
    client.send(JOIN_GROUP, 5, &join_request(group, &first.member_id, topic));
    first.member_id
}

/// The group as DescribeGroups reports it.
fn describe(client: &mut TypedClient, group: &str) -> DescribedGroup {
    let request = DescribeGroupsRequest {
        groups: vec![group.into()],
        include_authorized_operations: false,
    };
    let response: DescribeGroupsResponse = client.call(DESCRIBE_GROUPS, 5, &request);
    response
        .groups
        .into_iter()
        .next()
        .expect("one group described")
}

/// Waits until `group` is in `state` (requests on other connections are handled concurrently,
/// so a JoinGroup just sent elsewhere may not have arrived yet).
fn wait_for_state(broker: &StromProcess, client: &mut TypedClient, group: &str, state: &str) {
    broker.wait_until(&format!("{group} in {state}"), WAIT_DEADLINE, || {
        describe(client, group).group_state == state
    });
}

/// An OffsetCommit of offset 1 for partition 0 of `topic`.
fn commit_request(
    group: &str,
    generation_id: i32,
    member_id: &str,
    group_instance_id: Option<&str>,
    topic: &str,
) -> OffsetCommitRequest {
    OffsetCommitRequest {
        group_id: group.into(),
        generation_id_or_member_epoch: generation_id,
        member_id: member_id.into(),
        group_instance_id: group_instance_id.map(String::from),
        retention_time_ms: -1,
        topics: vec![OffsetCommitRequestTopic {
            name: topic.into(),
            partitions: vec![OffsetCommitRequestPartition {
                partition_index: 0,
                committed_offset: 1,
                committed_leader_epoch: -1,
                commit_timestamp: -1,
                committed_metadata: None,
            }],
        }],
    }
}

/// The error of the only partition of an OffsetCommit.
fn commit_error(client: &mut TypedClient, version: i16, request: &OffsetCommitRequest) -> i16 {
    let response: OffsetCommitResponse = client.call(OFFSET_COMMIT, version, request);
    response.topics[0].partitions[0].error_code
}

fn commit(
    client: &mut TypedClient,
    group: &str,
    generation_id: i32,
    member_id: &str,
    group_instance_id: Option<&str>,
    topic: &str,
) -> i16 {
    let request = commit_request(group, generation_id, member_id, group_instance_id, topic);
    commit_error(client, 8, &request)
}

fn heartbeat(
    client: &mut TypedClient,
    group: &str,
    generation_id: i32,
    member_id: &str,
    group_instance_id: Option<&str>,
) -> i16 {
    let request = HeartbeatRequest {
        group_id: group.into(),
        generation_id,
        member_id: member_id.into(),
        group_instance_id: group_instance_id.map(String::from),
    };
    let response: HeartbeatResponse = client.call(HEARTBEAT, 4, &request);
    response.error_code
}

/// A commit with a stale generation while the group awaits its SyncGroup (as a cooperative
/// consumer's commit during the second rebalance is) is ILLEGAL_GENERATION, not
/// REBALANCE_IN_PROGRESS: Kafka checks member and generation before the group state. A commit
/// with the current generation while the group prepares a rebalance is accepted.
#[test]
fn offset_commit_checks_member_and_generation_before_the_rebalance_state() {
    let broker = StromProcess::start(BROKER_PROPS);
    let (group, topic) = ("parity-group", "parity-topic");
    let mut a = TypedClient::connect(&broker, "member-a");
    create_topic(&mut a, topic);

    let a_id = send_join(&mut a, group, topic);
    let joined: JoinGroupResponse = a.receive();
    assert_eq!(
        (joined.error_code, joined.generation_id),
        (ErrorCode::None.code(), 1)
    );
    let sync = SyncGroupRequest {
        group_id: group.into(),
        generation_id: 1,
        member_id: a_id.clone(),
        assignments: vec![SyncGroupRequestAssignment {
            member_id: a_id.clone(),
            assignment: bytes::Bytes::new(),
        }],
        ..Default::default()
    };
    let synced: SyncGroupResponse = a.call(SYNC_GROUP, 3, &sync);
    assert_eq!(synced.error_code, ErrorCode::None.code());

    // b's join starts a rebalance and waits for a to rejoin.
    let mut b = TypedClient::connect(&broker, "member-b");
    send_join(&mut b, group, topic);
    wait_for_state(&broker, &mut a, group, "PreparingRebalance");
    assert_eq!(
        commit(&mut a, group, 1, &a_id, None, topic),
        ErrorCode::None.code(),
        "commits of the current generation are accepted while the group prepares a rebalance"
    );
    a.send(JOIN_GROUP, 5, &join_request(group, &a_id, topic));
    let a_joined: JoinGroupResponse = a.receive();
    let b_joined: JoinGroupResponse = b.receive();
    assert_eq!((a_joined.generation_id, b_joined.generation_id), (2, 2));

    assert_eq!(describe(&mut a, group).group_state, "CompletingRebalance");
    assert_eq!(
        commit(&mut a, group, 1, &a_id, None, topic),
        ErrorCode::IllegalGeneration.code(),
        "stale generation"
    );
    let mut stranger = TypedClient::connect(&broker, "stranger");
    assert_eq!(
        commit(&mut stranger, group, 2, "stranger-id", None, topic),
        ErrorCode::UnknownMemberId.code(),
        "unknown member"
    );
    assert_eq!(
        commit(&mut a, group, 2, &a_id, None, topic),
        ErrorCode::RebalanceInProgress.code(),
        "current member and generation, but no assignment yet"
    );
    assert_eq!(
        heartbeat(&mut a, group, 1, &a_id, None),
        ErrorCode::IllegalGeneration.code()
    );
    assert_eq!(
        heartbeat(&mut a, group, 2, &a_id, None),
        ErrorCode::None.code()
    );
}

/// A group.instance.id the group does not know makes the request an unknown member's, even when
/// the member id is a (dynamic) member of the group (Kafka's `validateMember`).
#[test]
fn unknown_group_instance_id_is_an_unknown_member() {
    let broker = StromProcess::start(BROKER_PROPS);
    let (group, topic) = ("static-parity", "static-topic");
    let mut a = TypedClient::connect(&broker, "member-a");
    create_topic(&mut a, topic);
    let a_id = send_join(&mut a, group, topic);
    let joined: JoinGroupResponse = a.receive();
    assert_eq!(joined.generation_id, 1);

    let instance = Some("never-joined");
    assert_eq!(
        heartbeat(&mut a, group, 1, &a_id, instance),
        ErrorCode::UnknownMemberId.code()
    );
    assert_eq!(
        commit(&mut a, group, 1, &a_id, instance, topic),
        ErrorCode::UnknownMemberId.code()
    );
    assert_eq!(
        heartbeat(&mut a, group, 1, &a_id, None),
        ErrorCode::None.code()
    );
}

/// A commit with a generation to a group that does not exist: GROUP_ID_NOT_FOUND from
/// OffsetCommit v9, ILLEGAL_GENERATION before. The group's verdict also comes before the check of
/// each partition's metadata size, as in Kafka.
#[test]
fn offset_commit_to_an_unknown_group() {
    let broker = StromProcess::start(BROKER_PROPS);
    let topic = "lonely-topic";
    let mut client = TypedClient::connect(&broker, "committer");
    create_topic(&mut client, topic);
    let stale = commit_request("no-such-group", 3, "m", None, topic);
    assert_eq!(
        commit_error(&mut client, 9, &stale),
        ErrorCode::GroupIdNotFound.code()
    );
    assert_eq!(
        commit_error(&mut client, 8, &stale),
        ErrorCode::IllegalGeneration.code()
    );

    let mut oversized = stale.clone();
    oversized.topics[0].partitions[0].committed_metadata = Some("m".repeat(5_000));
    assert_eq!(
        commit_error(&mut client, 8, &oversized),
        ErrorCode::IllegalGeneration.code(),
        "the committer is checked first"
    );
    oversized.generation_id_or_member_epoch = -1;
    oversized.member_id = String::new();
    assert_eq!(
        commit_error(&mut client, 8, &oversized),
        ErrorCode::OffsetMetadataTooLarge.code()
    );
    let simple = commit_request("simple-group", -1, "", None, topic);
    assert_eq!(
        commit_error(&mut client, 9, &simple),
        ErrorCode::None.code(),
        "a commit without a generation creates a simple group"
    );
}

/// SyncGroup, Heartbeat and LeaveGroup with an empty group id are INVALID_GROUP_ID, as in Kafka.
#[test]
fn empty_group_id_is_invalid() {
    let broker = StromProcess::start(BROKER_PROPS);
    let mut client = TypedClient::connect(&broker, "nameless");
    assert_eq!(
        heartbeat(&mut client, "", 1, "m", None),
        ErrorCode::InvalidGroupId.code()
    );
    let synced: SyncGroupResponse = client.call(SYNC_GROUP, 5, &SyncGroupRequest::default());
    assert_eq!(synced.error_code, ErrorCode::InvalidGroupId.code());
    let leave = LeaveGroupRequest {
        members: vec![MemberIdentity {
            member_id: "m".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let left: LeaveGroupResponse = client.call(LEAVE_GROUP, 5, &leave);
    assert_eq!(left.error_code, ErrorCode::InvalidGroupId.code());
}

/// Kafka 4.0 describes the members of a group that is rebalancing with their current assignment
/// (but without their subscription metadata), so tools still show who owns what.
#[test]
fn members_of_a_rebalancing_group_are_described_with_their_assignment() {
    let broker = StromProcess::start(BROKER_PROPS);
    let (group, topic) = ("described-group", "described-topic");
    let mut a = TypedClient::connect(&broker, "member-a");
    create_topic(&mut a, topic);
    let a_id = send_join(&mut a, group, topic);
    let joined: JoinGroupResponse = a.receive();
    assert_eq!(joined.generation_id, 1);
    let sync = SyncGroupRequest {
        group_id: group.into(),
        generation_id: 1,
        member_id: a_id.clone(),
        assignments: vec![SyncGroupRequestAssignment {
            member_id: a_id.clone(),
            assignment: bytes::Bytes::from_static(b"a-share"),
        }],
        ..Default::default()
    };
    let synced: SyncGroupResponse = a.call(SYNC_GROUP, 3, &sync);
    assert_eq!(synced.assignment.as_ref(), b"a-share");

    let mut b = TypedClient::connect(&broker, "member-b");
    send_join(&mut b, group, topic);
    wait_for_state(&broker, &mut a, group, "PreparingRebalance");
    let described = describe(&mut a, group);
    let member = described
        .members
        .iter()
        .find(|m| m.member_id == a_id)
        .expect("a is described");
    assert_eq!(member.member_assignment.as_ref(), b"a-share");
    assert!(member.member_metadata.is_empty());
}

/// Without an authorizer, Kafka answers a request for authorized operations with every
/// operation the resource type supports: Metadata (cluster in v8-v10, topics from v8),
/// DescribeCluster and DescribeGroups.
#[test]
fn authorized_operations_are_every_supported_operation() {
    let broker = StromProcess::start(BROKER_PROPS);
    let mut client = TypedClient::connect(&broker, "describer");
    create_topic(&mut client, "described");

    let by_name = |name: &str| MetadataRequestTopic {
        name: Some(name.into()),
        ..Default::default()
    };
    let request = MetadataRequest {
        topics: Some(vec![by_name("described"), by_name("missing")]),
        allow_auto_topic_creation: false,
        include_cluster_authorized_operations: true,
        include_topic_authorized_operations: true,
    };
    for version in [8, 10] {
        let response: MetadataResponse = client.call(METADATA, version, &request);
        assert_eq!(
            response.cluster_authorized_operations, CLUSTER_OPERATIONS,
            "v{version}"
        );
        let operations: Vec<(Option<&str>, i16, i32)> = response
            .topics
            .iter()
            .map(|t| {
                (
                    t.name.as_deref(),
                    t.error_code,
                    t.topic_authorized_operations,
                )
            })
            .collect();
        assert_eq!(
            operations,
            [
                (Some("described"), ErrorCode::None.code(), TOPIC_OPERATIONS),
                (Some("missing"), 3, TOPIC_OPERATIONS),
            ],
            "v{version}"
        );
    }
    let not_asked = MetadataRequest {
        include_cluster_authorized_operations: false,
        include_topic_authorized_operations: false,
        ..request.clone()
    };
    let response: MetadataResponse = client.call(METADATA, 10, &not_asked);
    assert_eq!(response.cluster_authorized_operations, NOT_REQUESTED);
    assert_eq!(
        response.topics[0].topic_authorized_operations,
        NOT_REQUESTED
    );

    // v12: no cluster operations any more; a topic id nobody knows gets no operations.
    let by_id = MetadataRequest {
        topics: Some(vec![MetadataRequestTopic {
            topic_id: [7; 16],
            name: None,
        }]),
        ..request.clone()
    };
    let response: MetadataResponse = client.call(METADATA, 12, &by_id);
    assert_eq!(response.cluster_authorized_operations, NOT_REQUESTED);
    assert_eq!(
        response.topics[0].error_code,
        ErrorCode::UnknownTopicId.code()
    );
    assert_eq!(
        response.topics[0].topic_authorized_operations,
        NOT_REQUESTED
    );

    let cluster: DescribeClusterResponse = client.call(
        DESCRIBE_CLUSTER,
        1,
        &DescribeClusterRequest {
            include_cluster_authorized_operations: true,
            endpoint_type: 1,
            ..DescribeClusterRequest::default()
        },
    );
    assert_eq!(cluster.cluster_authorized_operations, CLUSTER_OPERATIONS);

    let groups: DescribeGroupsResponse = client.call(
        DESCRIBE_GROUPS,
        5,
        &DescribeGroupsRequest {
            groups: vec!["any-group".into()],
            include_authorized_operations: true,
        },
    );
    assert_eq!(groups.groups[0].authorized_operations, GROUP_OPERATIONS);
}

/// Transactions do not exist yet: a transactional producer must learn that at once, with a
/// fatal error, instead of retrying the coordinator lookup until its timeout.
#[test]
fn init_transactions_fails_at_once_with_a_fatal_error() {
    let broker = StromProcess::start(BROKER_PROPS);
    let producer = broker.producer(&[("transactional.id", "parity-txn")]);
    let error = producer
        .init_transactions(Duration::from_secs(30))
        .expect_err("transactions are not supported");
    let KafkaError::Transaction(error) = error else {
        panic!("not a transaction error: {error:?}");
    };
    assert_ne!(error.code(), RDKafkaErrorCode::OperationTimedOut, "{error}");
    assert!(error.is_fatal(), "{error}");
    assert_eq!(
        error.code(),
        RDKafkaErrorCode::TransactionalIdAuthorizationFailed,
        "{error}"
    );
    assert!(error.string().contains("not supported"), "{error}");

    // The batched lookup (v4+) answers per key, with the same error and its reason.
    let mut client = TypedClient::connect(&broker, "txn-lookup");
    let lookup = FindCoordinatorRequest {
        key_type: 1,
        coordinator_keys: vec!["parity-txn".into()],
        ..Default::default()
    };
    let response: FindCoordinatorResponse = client.call(FIND_COORDINATOR, 4, &lookup);
    let coordinator = &response.coordinators[0];
    assert_eq!(
        coordinator.error_code,
        ErrorCode::TransactionalIdAuthorizationFailed.code()
    );
    assert_eq!(
        coordinator.error_message.as_deref(),
        Some("transactions are not supported by this broker")
    );
}
