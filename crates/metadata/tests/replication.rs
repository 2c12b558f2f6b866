//! The controller's side of partition replication, over the single-node quorum: AlterPartition
//! (ISR changes from partition leaders), with Kafka's refusals in Kafka's order; unclean leader
//! election (`unclean.leader.election.enable` and its layers); ElectLeaders; partition
//! reassignments (KIP-455).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{store_with_brokers, Store};
use strom_metadata::controller::{ElectionType, OngoingReassignment, TopicOutcomes};
use strom_metadata::{AlterPartitionRequest, ConfigOp, Controller, PartitionImage, PartitionState};
use strom_protocol::codec::Uuid;
use strom_protocol::ErrorCode;

/// A store with brokers 1..=3 and topic "t" of one partition on all three (leader 1).
fn three_brokers_one_topic(dir: &std::path::Path) -> (Store, Uuid) {
    let store = store_with_brokers(dir, 3);
    let topic = store.create_topic("t", 1, 3, &[], false).unwrap();
    let partition = partition(&store, "t", 0);
    assert_eq!(
        (partition.replicas, partition.isr, partition.leader),
        (vec![1, 2, 3], vec![1, 2, 3], 1)
    );
    (store, topic.topic_id)
}

fn partition(store: &Store, topic: &str, index: i32) -> PartitionImage {
    store.image().topic(topic).unwrap().partitions[&index].clone()
}

/// An AlterPartition from broker `broker` for t-0 with the epochs the image has now.
fn alter(store: &Store, topic_id: Uuid, broker: i32, new_isr: &[i32]) -> AlterPartitionRequest {
    let partition = partition(store, "t", 0);
    AlterPartitionRequest {
        broker_id: broker,
        broker_epoch: store.image().brokers[&broker].epoch,
        topic_id,
        partition: 0,
        leader_epoch: partition.leader_epoch,
        partition_epoch: partition.partition_epoch,
        new_isr: new_isr.to_vec(),
    }
}

/// Sends `request`, expects `error`, and checks that nothing was committed.
fn refused(store: &Store, request: AlterPartitionRequest, error: ErrorCode) {
    let before = store.image();
    let result = store.alter_partition(request.clone());
    assert_eq!(
        result.as_ref().map_err(|e| e.code),
        Err(error.code()),
        "{request:?}: {result:?}"
    );
    assert_eq!(store.image().last_offset, before.last_offset);
}

#[test]
fn alter_partition_shrinks_and_expands_the_isr_bumping_the_partition_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let (store, topic_id) = three_brokers_one_topic(dir.path());
    let state = store
        .alter_partition(alter(&store, topic_id, 1, &[1, 3]))
        .unwrap();
    let expected = PartitionState {
        leader: 1,
        leader_epoch: 0,
        partition_epoch: 1,
        isr: vec![1, 3],
    };
    assert_eq!(state, expected);
    let image = partition(&store, "t", 0);
    assert_eq!(
        (
            image.leader,
            image.leader_epoch,
            image.partition_epoch,
            image.isr
        ),
        (1, 0, 1, vec![1, 3])
    );
    let state = store
        .alter_partition(alter(&store, topic_id, 1, &[1, 3, 2]))
        .unwrap();
    assert_eq!((state.partition_epoch, state.isr), (2, vec![1, 3, 2]));
    assert_eq!(
        state.leader_epoch, 0,
        "an ISR change keeps the leader epoch"
    );
}

#[test]
fn alter_partition_to_the_current_isr_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, topic_id) = three_brokers_one_topic(dir.path());
    let before = store.image().last_offset;
    let state = store
        .alter_partition(alter(&store, topic_id, 1, &[1, 2, 3]))
        .unwrap();
    assert_eq!(state.partition_epoch, 0);
    assert_eq!(state.isr, vec![1, 2, 3]);
    assert_eq!(store.image().last_offset, before);
}

#[test]
fn alter_partition_refusals_carry_kafka_codes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, topic_id) = three_brokers_one_topic(dir.path());
    let ok = alter(&store, topic_id, 1, &[1, 2]);

    let unregistered = AlterPartitionRequest {
        broker_id: 9,
        ..ok.clone()
    };
    refused(&store, unregistered, ErrorCode::StaleBrokerEpoch);
    let stale_broker = AlterPartitionRequest {
        broker_epoch: ok.broker_epoch - 1,
        ..ok.clone()
    };
    refused(&store, stale_broker, ErrorCode::StaleBrokerEpoch);
    let unknown_topic = AlterPartitionRequest {
        topic_id: [7; 16],
        ..ok.clone()
    };
    refused(&store, unknown_topic, ErrorCode::UnknownTopicId);
    let unknown_partition = AlterPartitionRequest {
        partition: 1,
        ..ok.clone()
    };
    refused(
        &store,
        unknown_partition,
        ErrorCode::UnknownTopicOrPartition,
    );
    // Epochs from the future: this controller is behind.
    let newer_leader = AlterPartitionRequest {
        leader_epoch: 1,
        ..ok.clone()
    };
    refused(&store, newer_leader, ErrorCode::NotController);
    let newer_partition = AlterPartitionRequest {
        partition_epoch: 1,
        ..ok.clone()
    };
    refused(&store, newer_partition, ErrorCode::NotController);
    // A replica that is not the leader, with the current epochs.
    refused(
        &store,
        alter(&store, topic_id, 2, &[1, 2]),
        ErrorCode::InvalidRequest,
    );
    for bad_isr in [&[2, 3][..], &[1, 4], &[1, 1, 2], &[], &[1, -1]] {
        refused(
            &store,
            alter(&store, topic_id, 1, bad_isr),
            ErrorCode::InvalidRequest,
        );
    }

    // Once the ISR changed, the old partition epoch is stale.
    store.alter_partition(ok.clone()).unwrap();
    refused(&store, ok.clone(), ErrorCode::InvalidUpdateVersion);

    // A fenced or shutting-down broker cannot join the ISR.
    let broker_3 = store.image().brokers[&3].epoch;
    store.heartbeat(3, broker_3, i64::MAX, true, false).unwrap();
    refused(
        &store,
        alter(&store, topic_id, 1, &[1, 2, 3]),
        ErrorCode::IneligibleReplica,
    );
    store.register_broker(3, "localhost", 9094, None).unwrap();
    let broker_3 = store.image().brokers[&3].epoch;
    store.heartbeat(3, broker_3, i64::MAX, false, true).unwrap();
    assert!(store.image().brokers[&3].in_controlled_shutdown);
    refused(
        &store,
        alter(&store, topic_id, 1, &[1, 2, 3]),
        ErrorCode::IneligibleReplica,
    );

    // The leader moves away (broker 1 is fenced): its old leader epoch is fenced.
    let before = alter(&store, topic_id, 1, &[1]);
    let broker_1 = store.image().brokers[&1].epoch;
    store.heartbeat(1, broker_1, i64::MAX, true, false).unwrap();
    let moved = partition(&store, "t", 0);
    assert_eq!((moved.leader, moved.leader_epoch), (2, 1));
    refused(&store, before, ErrorCode::FencedLeaderEpoch);
    // The new leader's request goes through.
    let state = store
        .alter_partition(alter(&store, topic_id, 2, &[2]))
        .unwrap();
    assert_eq!((state.leader, state.isr), (2, vec![2]));
}

/// Fences `broker` as a missed session would.
fn fence(store: &Store, broker: i32) {
    let epoch = store.image().brokers[&broker].epoch;
    store
        .heartbeat(broker, epoch, i64::MAX, true, false)
        .unwrap();
}

/// Topic "t" on brokers 1..=3 with `configs`, its ISR shrunk to the leader (1) alone.
fn isr_of_one(dir: &std::path::Path, configs: &[(&str, &str)]) -> (Store, Uuid) {
    let store = store_with_brokers(dir, 3);
    let topic = store
        .create_topic("t", 1, 3, &common::configs(configs), false)
        .unwrap();
    store
        .alter_partition(alter(&store, topic.topic_id, 1, &[1]))
        .unwrap();
    (store, topic.topic_id)
}

const UNCLEAN: (&str, &str) = ("unclean.leader.election.enable", "true");

#[test]
fn without_unclean_election_a_partition_whose_isr_is_gone_stays_leaderless() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = isr_of_one(dir.path(), &[]);
    fence(&store, 1);
    let p = partition(&store, "t", 0);
    assert_eq!((p.leader, p.isr), (-1, vec![1]));
    assert_eq!(
        store
            .runtime
            .block_on(store.controller.elect_unclean_leaders())
            .unwrap(),
        0
    );
    // A replica outside the ISR coming back does not lead either.
    fence(&store, 2);
    store.register_broker(2, "localhost", 9093, None).unwrap();
    assert_eq!(partition(&store, "t", 0).leader, -1);
    // The in-sync replica coming back does.
    store.register_broker(1, "localhost", 9092, None).unwrap();
    assert_eq!(partition(&store, "t", 0).leader, 1);
}

#[test]
fn a_topic_with_unclean_election_gets_a_leader_from_outside_the_isr_when_its_leader_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = isr_of_one(dir.path(), &[UNCLEAN]);
    let before = partition(&store, "t", 0);
    fence(&store, 1);
    let after = partition(&store, "t", 0);
    assert_eq!((after.leader, after.isr.clone()), (2, vec![2]));
    assert_eq!(after.leader_epoch, before.leader_epoch + 1);
}

#[test]
fn a_broker_arriving_at_a_leaderless_unclean_topic_leads_it() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = isr_of_one(dir.path(), &[UNCLEAN]);
    fence(&store, 2);
    fence(&store, 3);
    fence(&store, 1);
    let p = partition(&store, "t", 0);
    assert_eq!((p.leader, p.isr), (-1, vec![1]), "no live replica at all");
    store.register_broker(3, "localhost", 9094, None).unwrap();
    let p = partition(&store, "t", 0);
    assert_eq!((p.leader, p.isr), (3, vec![3]));
}

#[test]
fn enabling_unclean_election_at_run_time_elects_leaderless_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = isr_of_one(dir.path(), &[]);
    fence(&store, 1);
    assert_eq!(partition(&store, "t", 0).leader, -1);
    let elect = || {
        store
            .runtime
            .block_on(store.controller.elect_unclean_leaders())
            .unwrap()
    };
    // The cluster-wide dynamic default, then a topic override saying no.
    store
        .alter_broker_configs(None, &[ConfigOp::set(UNCLEAN.0, "true")], false)
        .unwrap();
    store
        .alter_topic_configs("t", &[ConfigOp::set(UNCLEAN.0, "false")], false)
        .unwrap();
    assert_eq!(elect(), 0);
    assert_eq!(partition(&store, "t", 0).leader, -1);
    store
        .alter_topic_configs("t", &[ConfigOp::delete(UNCLEAN.0)], false)
        .unwrap();
    assert_eq!(elect(), 1);
    let p = partition(&store, "t", 0);
    assert_eq!((p.leader, p.isr), (2, vec![2]));
    assert_eq!(elect(), 0, "nothing left to elect");
}

#[test]
fn unclean_election_follows_the_config_layers() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_brokers(dir.path(), 1);
    store.create_topic("t", 1, 1, &[], false).unwrap();
    let with_static = |value: &str| {
        Controller::new(
            1,
            store.quorum.clone(),
            store.state.clone(),
            common::SESSION_TIMEOUT,
        )
        .with_static_config([(UNCLEAN.0.to_string(), value.to_string())].into())
    };
    let enabled = |controller: &Controller| {
        let image = store.image();
        controller.unclean_election_enabled(&image, image.topic("t").unwrap())
    };
    assert!(!enabled(&store.controller), "off by default");
    assert!(enabled(&with_static("true")), "server.properties");
    // This node's dynamic config overrides server.properties, a topic override both.
    store
        .alter_broker_configs(Some(1), &[ConfigOp::set(UNCLEAN.0, "false")], false)
        .unwrap();
    assert!(!enabled(&with_static("true")));
    store
        .alter_topic_configs("t", &[ConfigOp::set(UNCLEAN.0, "true")], false)
        .unwrap();
    assert!(enabled(&with_static("false")));
    assert!(enabled(&store.controller));
}

fn elect(
    store: &Store,
    election: ElectionType,
    topics: Option<&[(&str, &[i32])]>,
) -> Vec<TopicOutcomes> {
    let topics = topics.map(|topics| {
        topics
            .iter()
            .map(|(name, partitions)| (name.to_string(), partitions.to_vec()))
            .collect()
    });
    store
        .runtime
        .block_on(store.controller.elect_leaders(election, topics))
        .unwrap()
}

/// The error codes of one topic's results, by partition.
fn codes(results: &[TopicOutcomes], topic: &str) -> Vec<(i32, ErrorCode)> {
    results
        .iter()
        .filter(|t| t.topic == topic)
        .flat_map(|t| &t.partitions)
        .map(|p| (p.partition, ErrorCode::from_code(p.error_code).unwrap()))
        .collect()
}

#[test]
fn preferred_election_moves_leadership_back_once_the_preferred_replica_is_in_sync() {
    let dir = tempfile::tempdir().unwrap();
    let (store, topic_id) = three_brokers_one_topic(dir.path());
    let t0: &[(&str, &[i32])] = &[("t", &[0])];
    let results = elect(&store, ElectionType::Preferred, Some(t0));
    assert_eq!(codes(&results, "t"), [(0, ErrorCode::ElectionNotNeeded)]);

    // Broker 1 restarts: leadership moves to 2, and 1 returns outside the ISR.
    fence(&store, 1);
    store.register_broker(1, "localhost", 9092, None).unwrap();
    let p = partition(&store, "t", 0);
    assert_eq!((p.leader, p.isr.clone()), (2, vec![2, 3]));
    let results = elect(&store, ElectionType::Preferred, Some(t0));
    assert_eq!(
        codes(&results, "t"),
        [(0, ErrorCode::PreferredLeaderNotAvailable)]
    );
    // For the whole cluster, partitions that need no election are left out.
    store.create_topic("led", 1, 1, &[], false).unwrap();
    let results = elect(&store, ElectionType::Preferred, None);
    assert_eq!(
        codes(&results, "t"),
        [(0, ErrorCode::PreferredLeaderNotAvailable)]
    );
    assert_eq!(codes(&results, "led"), []);
    assert!(results.iter().any(|t| t.topic == "led"));

    // The leader takes 1 back into the ISR; now the preferred election moves leadership.
    store
        .alter_partition(alter(&store, topic_id, 2, &[2, 3, 1]))
        .unwrap();
    let results = elect(&store, ElectionType::Preferred, None);
    assert_eq!(codes(&results, "t"), [(0, ErrorCode::None)]);
    let after = partition(&store, "t", 0);
    assert_eq!(after.leader, 1);
    assert_eq!(after.leader_epoch, p.leader_epoch + 1);

    let unknown: &[(&str, &[i32])] = &[("t", &[0, 5]), ("nope", &[0])];
    let results = elect(&store, ElectionType::Preferred, Some(unknown));
    assert_eq!(
        codes(&results, "t"),
        [
            (0, ErrorCode::ElectionNotNeeded),
            (5, ErrorCode::UnknownTopicOrPartition)
        ]
    );
    assert_eq!(
        codes(&results, "nope"),
        [(0, ErrorCode::UnknownTopicOrPartition)]
    );
}

#[test]
fn unclean_election_on_demand_only_for_partitions_without_a_leader() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = isr_of_one(dir.path(), &[]);
    let t0: &[(&str, &[i32])] = &[("t", &[0])];
    let results = elect(&store, ElectionType::Unclean, Some(t0));
    assert_eq!(codes(&results, "t"), [(0, ErrorCode::ElectionNotNeeded)]);
    fence(&store, 2);
    fence(&store, 3);
    fence(&store, 1);
    assert_eq!(partition(&store, "t", 0).leader, -1);
    let results = elect(&store, ElectionType::Unclean, Some(t0));
    assert_eq!(
        codes(&results, "t"),
        [(0, ErrorCode::EligibleLeadersNotAvailable)]
    );
    store.register_broker(3, "localhost", 9094, None).unwrap();
    assert_eq!(
        partition(&store, "t", 0).leader,
        -1,
        "not unclean by config"
    );
    let results = elect(&store, ElectionType::Unclean, None);
    assert_eq!(codes(&results, "t"), [(0, ErrorCode::None)]);
    let p = partition(&store, "t", 0);
    assert_eq!((p.leader, p.isr), (3, vec![3]));
}

fn reassign(store: &Store, topic: &str, partition: i32, target: Option<&[i32]>) -> ErrorCode {
    let request = vec![(
        topic.to_string(),
        vec![(partition, target.map(<[i32]>::to_vec))],
    )];
    let results = store
        .runtime
        .block_on(store.controller.alter_partition_reassignments(request))
        .unwrap();
    ErrorCode::from_code(results[0].partitions[0].error_code).unwrap()
}

/// Every ongoing reassignment, with its topic.
fn ongoing(store: &Store) -> Vec<(String, OngoingReassignment)> {
    store
        .controller
        .list_partition_reassignments(None)
        .into_iter()
        .flat_map(|t| t.partitions.into_iter().map(move |p| (t.topic.clone(), p)))
        .collect()
}

/// Four brokers and topic "t" of one partition on brokers 1, 2, 3 (leader 1).
fn four_brokers(dir: &std::path::Path) -> (Store, Uuid) {
    let store = store_with_brokers(dir, 4);
    let topic = store.create_topic("t", 1, 3, &[], false).unwrap();
    // Broker 4 joins the ISR of nothing yet: make the partition's replicas [1, 2, 3].
    assert_eq!(reassign(&store, "t", 0, Some(&[1, 2, 3])), ErrorCode::None);
    let p = partition(&store, "t", 0);
    assert_eq!(
        (p.replicas, p.isr, p.leader),
        (vec![1, 2, 3], vec![1, 2, 3], 1)
    );
    (store, topic.topic_id)
}

#[test]
fn a_reassignment_adds_replicas_then_completes_once_they_are_in_sync() {
    let dir = tempfile::tempdir().unwrap();
    let (store, topic_id) = four_brokers(dir.path());
    assert_eq!(reassign(&store, "t", 0, Some(&[1, 2, 4])), ErrorCode::None);
    let p = partition(&store, "t", 0);
    assert_eq!(
        (
            p.replicas.clone(),
            p.adding_replicas.clone(),
            p.removing_replicas.clone()
        ),
        (vec![1, 2, 4, 3], vec![4], vec![3])
    );
    assert_eq!((p.isr.clone(), p.leader), (vec![1, 2, 3], 1));
    let expected = OngoingReassignment {
        partition: 0,
        replicas: vec![1, 2, 4, 3],
        adding_replicas: vec![4],
        removing_replicas: vec![3],
    };
    assert_eq!(ongoing(&store), [("t".to_string(), expected)]);
    // The leader takes 4 into the ISR: the reassignment completes, 3 leaves.
    let state = store
        .alter_partition(alter(&store, topic_id, 1, &[1, 2, 3, 4]))
        .unwrap();
    assert_eq!((state.leader, state.isr.clone()), (1, vec![1, 2, 4]));
    assert_eq!(state.leader_epoch, p.leader_epoch + 1, "3 is fenced off");
    let p = partition(&store, "t", 0);
    assert_eq!(p.replicas, vec![1, 2, 4]);
    assert!(!p.is_reassigning());
    assert_eq!(ongoing(&store), []);
}

#[test]
fn a_reassignment_that_removes_the_leader_moves_leadership_when_it_completes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, topic_id) = four_brokers(dir.path());
    assert_eq!(reassign(&store, "t", 0, Some(&[4])), ErrorCode::None);
    let p = partition(&store, "t", 0);
    assert_eq!(
        (p.replicas, p.adding_replicas, p.removing_replicas, p.leader),
        (vec![4, 1, 2, 3], vec![4], vec![1, 2, 3], 1)
    );
    let error = store
        .alter_partition(alter(&store, topic_id, 1, &[1, 2, 3, 4]))
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::NewLeaderElected.code());
    let p = partition(&store, "t", 0);
    assert_eq!((p.replicas, p.isr, p.leader), (vec![4], vec![4], 4));
}

#[test]
fn reorderings_and_removals_complete_at_once_and_cancelling_reverts() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = four_brokers(dir.path());
    assert_eq!(reassign(&store, "t", 0, Some(&[3, 2, 1])), ErrorCode::None);
    let p = partition(&store, "t", 0);
    assert_eq!(
        (p.replicas.clone(), p.leader, p.is_reassigning()),
        (vec![3, 2, 1], 1, false)
    );
    assert_eq!(reassign(&store, "t", 0, Some(&[3, 1])), ErrorCode::None);
    let p = partition(&store, "t", 0);
    assert_eq!((p.replicas, p.isr), (vec![3, 1], vec![1, 3]));
    assert_eq!(
        reassign(&store, "t", 0, None),
        ErrorCode::NoReassignmentInProgress
    );

    assert_eq!(reassign(&store, "t", 0, Some(&[4, 2])), ErrorCode::None);
    let p = partition(&store, "t", 0);
    assert_eq!(
        (p.replicas, p.adding_replicas, p.removing_replicas),
        (vec![4, 2, 1, 3], vec![2, 4], vec![1, 3])
    );
    assert_eq!(reassign(&store, "t", 0, None), ErrorCode::None);
    let p = partition(&store, "t", 0);
    assert_eq!(
        (
            p.replicas.clone(),
            p.isr.clone(),
            p.leader,
            p.is_reassigning()
        ),
        (vec![1, 3], vec![1, 3], 1, false)
    );
    assert_eq!(ongoing(&store), []);
}

#[test]
fn reassignment_refusals_carry_kafka_codes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = four_brokers(dir.path());
    let before = store.image().last_offset;
    for bad in [&[1, 9][..], &[1, 1], &[]] {
        assert_eq!(
            reassign(&store, "t", 0, Some(bad)),
            ErrorCode::InvalidReplicaAssignment,
            "{bad:?}"
        );
    }
    assert_eq!(
        reassign(&store, "t", 3, Some(&[1])),
        ErrorCode::UnknownTopicOrPartition
    );
    assert_eq!(
        reassign(&store, "nope", 0, Some(&[1])),
        ErrorCode::UnknownTopicOrPartition
    );
    assert_eq!(store.image().last_offset, before);
}
