//! Split roles with real processes: three controller-only voters (`process.roles=controller`,
//! only a CONTROLLER listener) and three combined nodes (ids 4-6). Only the combined nodes register
//! as brokers and host partitions; admin clients are told a broker as the controller (a
//! controller-only node serves no clients) and their requests are forwarded to the active
//! controller wherever it runs; losing the active controller elects another and the cluster keeps
//! taking metadata changes. Configurations Kafka refuses for a role are refused at start, naming
//! the key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::typed::TypedClient;
use common::{StromCluster, StromProcess};
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use strom_protocol::messages::metadata_request::MetadataRequest;
use strom_protocol::messages::metadata_response::MetadataResponse;

const METADATA: i16 = 3;
/// How long the cluster gets to reach a state (election, registration, catch-up).
const CLUSTER_DEADLINE: Duration = Duration::from_secs(60);
const BECAME_ACTIVE: &str = "became the active controller";
const NO_LONGER_ACTIVE: &str = "no longer the active controller";

/// The full metadata as `node` answers it, or `None` if it cannot answer now.
fn metadata_of(node: &StromProcess) -> Option<MetadataResponse> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut client = TypedClient::connect(node, "split-roles-test");
        let request = MetadataRequest {
            topics: None,
            allow_auto_topic_creation: false,
            ..MetadataRequest::default()
        };
        client.call::<MetadataResponse>(METADATA, 12, &request)
    }))
    .ok()
}

/// Every process of the cluster with its node id: controller-only ones first.
fn all_nodes(cluster: &StromCluster) -> Vec<(i32, &StromProcess)> {
    cluster
        .controllers
        .iter()
        .chain(&cluster.nodes)
        .enumerate()
        .map(|(i, node)| (i32::try_from(i + 1).expect("node id"), node))
        .collect()
}

/// The node, other than the `dead` ones (killed, so their logs are silent on it), whose log
/// says it is the active controller now (its last word on it is that it became active), if
/// exactly one does.
fn active_controller(cluster: &StromCluster, dead: &[i32]) -> Option<i32> {
    let active: Vec<i32> = all_nodes(cluster)
        .into_iter()
        .filter(|(id, _)| !dead.contains(id))
        .filter(|(_, node)| {
            let log = node.log_contents();
            match (log.rfind(BECAME_ACTIVE), log.rfind(NO_LONGER_ACTIVE)) {
                (Some(became), Some(left)) => became > left,
                (Some(_), None) => true,
                _ => false,
            }
        })
        .map(|(id, _)| id)
        .collect();
    match active.as_slice() {
        [id] => Some(*id),
        _ => None,
    }
}

/// Polls `probe` until it returns `Some`, panicking with every node's log at the deadline.
fn wait_for<T>(cluster: &StromCluster, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + CLUSTER_DEADLINE;
    let started = Instant::now();
    loop {
        if let Some(value) = probe() {
            eprintln!("{what}: after {:?}", started.elapsed());
            return value;
        }
        if Instant::now() >= deadline {
            let logs: Vec<String> = all_nodes(cluster)
                .iter()
                .map(|(id, node)| format!("node {id}:\n{}", node.log_contents()))
                .collect();
            panic!(
                "{what}: not reached in time\n--- logs ---\n{}",
                logs.join("\n---\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn has_topic(answer: &MetadataResponse, topic: &str, partitions: usize) -> bool {
    answer.topics.iter().any(|t| {
        t.name.as_deref() == Some(topic)
            && t.error_code == 0
            && t.partitions.len() == partitions
            && t.partitions.iter().all(|p| p.leader_id >= 0)
    })
}

/// Creates `topic` with rdkafka's admin client bootstrapped from `node`, retrying until the
/// cluster takes it.
fn create_topic_with_admin(node: &StromProcess, topic: &str, partitions: i32, replicas: i32) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let admin = node.admin();
    let deadline = Instant::now() + CLUSTER_DEADLINE;
    runtime.block_on(async {
        loop {
            let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(replicas));
            let outcome = admin
                .create_topics([&new_topic], &StromProcess::admin_options())
                .await;
            match outcome.as_deref() {
                Ok([Ok(_)]) | Ok([Err((_, RDKafkaErrorCode::TopicAlreadyExists))]) => return,
                other => assert!(
                    Instant::now() < deadline,
                    "creating {topic} with the admin client failed: {other:?}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

/// Sends `count` records (acks=all) to `topic` through a producer bootstrapped from `node`.
fn produce_acks_all(node: &StromProcess, topic: &str, count: usize) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let producer = node.producer(&[("acks", "all")]);
    runtime.block_on(async {
        for i in 0..count {
            let payload = format!("{topic}-{i}");
            producer
                .send(
                    FutureRecord::<(), _>::to(topic).payload(&payload),
                    Duration::from_secs(15),
                )
                .await
                .map_err(|(error, _)| error)
                .expect("acks=all produce");
        }
    });
}

/// Produces `count` records to `topic` through `writer` and reads them all back through `reader`.
fn round_trip(writer: &StromProcess, reader: &StromProcess, topic: &str, count: usize) {
    produce_acks_all(writer, topic, count);
    let messages = reader.consume_n(topic, count, CLUSTER_DEADLINE);
    let payloads: BTreeSet<Vec<u8>> = messages
        .iter()
        .filter_map(|m| m.payload().map(<[u8]>::to_vec))
        .collect();
    let expected: BTreeSet<Vec<u8>> = (0..count)
        .map(|i| format!("{topic}-{i}").into_bytes())
        .collect();
    assert_eq!(payloads, expected);
}

#[test]
fn controller_only_voters_serve_the_brokers_and_survive_losing_the_active_controller() {
    let mut cluster = StromCluster::start_with_controller_only_voters(&[]);
    let brokers = [0, 1, 2];

    // Only the nodes with the broker role register; every broker names a broker as controller.
    wait_for(&cluster, "brokers 4-6 registered and unfenced", || {
        brokers
            .iter()
            .all(|i| {
                metadata_of(&cluster.nodes[*i]).is_some_and(|m| {
                    let ids: BTreeSet<i32> = m.brokers.iter().map(|b| b.node_id).collect();
                    ids == BTreeSet::from([4, 5, 6]) && ids.contains(&m.controller_id)
                })
            })
            .then_some(())
    });
    let controller = wait_for(&cluster, "one active controller", || {
        active_controller(&cluster, &[])
    });
    eprintln!("active controller: node {controller}");
    for controller_only in &cluster.controllers {
        assert!(
            !controller_only
                .log_contents()
                .contains("strom broker started"),
            "a controller-only node started a broker"
        );
    }

    // Created through a broker with a real admin client (forwarded to the active controller),
    // written with acks=all over three replicas and read back.
    create_topic_with_admin(&cluster.nodes[0], "split", 3, 3);
    wait_for(&cluster, "topic on every broker", || {
        brokers
            .iter()
            .all(|i| metadata_of(&cluster.nodes[*i]).is_some_and(|m| has_topic(&m, "split", 3)))
            .then_some(())
    });
    round_trip(&cluster.nodes[1], &cluster.nodes[2], "split", 30);

    // Lose the active controller, wherever it runs: another node becomes active, and a second
    // topic is created and used through a surviving broker.
    let all_ids: Vec<i32> = (1..=6).collect();
    let killed = usize::try_from(controller - 1).expect("node index");
    match killed.checked_sub(cluster.controllers.len()) {
        Some(broker) => cluster.nodes[broker].kill_9(),
        None => cluster.controllers[killed].kill_9(),
    }
    let new_controller = wait_for(&cluster, "a new active controller", || {
        active_controller(&cluster, &[controller])
    });
    assert!(all_ids.contains(&new_controller));
    eprintln!("controller moved from node {controller} to node {new_controller}");
    let surviving: Vec<usize> = brokers
        .iter()
        .copied()
        .filter(|i| i32::try_from(*i).expect("index") + 4 != controller)
        .collect();
    let through = &cluster.nodes[surviving[0]];
    create_topic_with_admin(through, "after-failover", 2, 2);
    wait_for(&cluster, "second topic on the surviving brokers", || {
        surviving
            .iter()
            .all(|i| {
                metadata_of(&cluster.nodes[*i]).is_some_and(|m| has_topic(&m, "after-failover", 2))
            })
            .then_some(())
    });
    round_trip(
        through,
        &cluster.nodes[surviving[surviving.len() - 1]],
        "after-failover",
        20,
    );
}

#[test]
fn role_conflicts_are_refused_naming_the_key() {
    let voters = "1@127.0.0.1:1";
    // A controller-only node with a client listener.
    let (ok, log) = StromProcess::run_expecting_exit(
        &[
            ("process.roles", "controller"),
            ("controller.quorum.voters", voters),
            ("controller.listener.names", "CONTROLLER"),
            (
                "listeners",
                "PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:0",
            ),
            ("advertised.listeners", "CONTROLLER://127.0.0.1:1"),
        ],
        &[],
    );
    assert!(!ok);
    assert!(
        log.contains("listeners must contain only controller listeners"),
        "{log}"
    );
    // A broker-only node listed among the voters.
    let (ok, log) = StromProcess::run_expecting_exit(
        &[
            ("process.roles", "broker"),
            ("controller.quorum.voters", voters),
            ("controller.listener.names", "CONTROLLER"),
        ],
        &[],
    );
    assert!(!ok);
    assert!(
        log.contains("controller.quorum.voters") && log.contains("must not include node 1"),
        "{log}"
    );
    // A broker-only node of a quorum (not a voter): refused until brokers can follow the log.
    let (ok, log) = StromProcess::run_expecting_exit(
        &[
            ("node.id", "4"),
            ("process.roles", "broker"),
            ("controller.quorum.voters", voters),
            ("controller.listener.names", "CONTROLLER"),
        ],
        &[],
    );
    assert!(!ok);
    assert!(
        log.contains("process.roles=broker with controller.quorum.voters"),
        "{log}"
    );
}
