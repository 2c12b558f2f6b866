//! Several client listeners on one broker, as Kafka's `listeners`, `advertised.listeners` and
//! `listener.security.protocol.map` set them up: the broker binds every non-controller listener,
//! and each client is told the endpoints of the listener its connection arrived on (Metadata,
//! FindCoordinator, DescribeCluster) — real rdkafka clients bootstrapped through two listeners of
//! one broker each see their own advertised address and produce and consume through it; a
//! listener that is bound but not advertised leaves the broker out of what its clients see
//! (LISTENER_NOT_FOUND for the partitions it leads); in a three-node cluster every node
//! advertises both listeners; and listener settings Kafka refuses stop the broker at start with
//! a message naming the key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::typed::TypedClient;
use common::{free_port, StromCluster, StromProcess, OP_TIMEOUT, WAIT_DEADLINE};
use rdkafka::admin::{AdminClient, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use strom_protocol::messages::describe_cluster_request::DescribeClusterRequest;
use strom_protocol::messages::describe_cluster_response::DescribeClusterResponse;
use strom_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use strom_protocol::messages::find_coordinator_response::FindCoordinatorResponse;
use strom_protocol::messages::metadata_request::{MetadataRequest, MetadataRequestTopic};
use strom_protocol::messages::metadata_response::MetadataResponse;

const METADATA: i16 = 3;
const FIND_COORDINATOR: i16 = 10;
const DESCRIBE_CLUSTER: i16 = 60;
/// Kafka's LISTENER_NOT_FOUND error code.
const LISTENER_NOT_FOUND: i16 = 72;
/// How long a three-node cluster gets to elect, register and agree.
const CLUSTER_DEADLINE: Duration = Duration::from_secs(60);

/// A single broker with three client listeners on 127.0.0.1: PLAINTEXT (its usual port,
/// advertised as 127.0.0.1), EXTERNAL (advertised as localhost) and HIDDEN (bound but not
/// advertised). Returns the broker and the EXTERNAL and HIDDEN ports.
fn three_listener_broker() -> (StromProcess, u16, u16) {
    let (external, hidden) = (free_port(), free_port());
    let broker = StromProcess::start_with_port_props(|port| {
        vec![
            (
                "listeners".into(),
                format!(
                    "PLAINTEXT://127.0.0.1:{port},EXTERNAL://127.0.0.1:{external},\
                     HIDDEN://127.0.0.1:{hidden}"
                ),
            ),
            (
                "advertised.listeners".into(),
                format!("PLAINTEXT://127.0.0.1:{port},EXTERNAL://localhost:{external}"),
            ),
            (
                "listener.security.protocol.map".into(),
                "PLAINTEXT:PLAINTEXT,EXTERNAL:PLAINTEXT,HIDDEN:PLAINTEXT".into(),
            ),
            ("inter.broker.listener.name".into(), "PLAINTEXT".into()),
        ]
    });
    (broker, external, hidden)
}

fn client_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("log_level", "3")
        .set("socket.timeout.ms", "10000");
    config
}

/// The brokers (id, host, port) a client bootstrapped at `bootstrap` learns from Metadata.
fn brokers_seen_through(bootstrap: &str) -> BTreeSet<(i32, String, i32)> {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", "listeners-metadata")
        .create()
        .expect("create consumer");
    let metadata = consumer
        .fetch_metadata(None, OP_TIMEOUT)
        .expect("fetch metadata");
    metadata
        .brokers()
        .iter()
        .map(|b| (b.id(), b.host().to_string(), b.port()))
        .collect()
}

/// Polls `brokers_seen_through(bootstrap)` until it equals `expected`.
fn wait_for_brokers(bootstrap: &str, expected: &BTreeSet<(i32, String, i32)>, deadline: Duration) {
    let until = Instant::now() + deadline;
    loop {
        let seen = brokers_seen_through(bootstrap);
        if &seen == expected {
            return;
        }
        assert!(
            Instant::now() < until,
            "through {bootstrap}: brokers {seen:?}, expected {expected:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn localhost(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn one(id: i32, host: &str, port: u16) -> BTreeSet<(i32, String, i32)> {
    BTreeSet::from([(id, host.to_string(), i32::from(port))])
}

async fn produce(bootstrap: &str, topic: &str, values: &[String]) {
    let producer: FutureProducer = client_config(bootstrap)
        .set("message.timeout.ms", "15000")
        .create()
        .expect("create producer");
    for value in values {
        producer
            .send(
                FutureRecord::<(), _>::to(topic).payload(value.as_str()),
                Duration::from_secs(15),
            )
            .await
            .unwrap_or_else(|(error, _)| panic!("produce through {bootstrap}: {error}"));
    }
}

/// Consumes `count` records of `topic` as a member of `group` (FindCoordinator, JoinGroup,
/// SyncGroup, Fetch, OffsetCommit through the listener of `bootstrap`).
fn consume_in_group(bootstrap: &str, group: &str, topic: &str, count: usize) -> BTreeSet<String> {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("create consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let until = Instant::now() + WAIT_DEADLINE;
    let mut values = BTreeSet::new();
    while values.len() < count {
        assert!(
            Instant::now() < until,
            "through {bootstrap}: consumed {values:?} of {count} records"
        );
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            let value = String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned();
            values.insert(value);
        }
    }
    consumer
        .commit_consumer_state(CommitMode::Sync)
        .expect("commit through the group coordinator");
    values
}

/// FindCoordinator (v3, one key) for `group` through the listener at `port`: (node, host, port).
fn coordinator_through(port: u16, group: &str) -> (i32, String, i32) {
    let until = Instant::now() + WAIT_DEADLINE;
    loop {
        let mut client = TypedClient::connect_to(localhost(port), "listeners-test");
        let request = FindCoordinatorRequest {
            key: group.to_string(),
            key_type: 0,
            ..FindCoordinatorRequest::default()
        };
        let response: FindCoordinatorResponse = client.call(FIND_COORDINATOR, 3, &request);
        if response.error_code == 0 {
            return (response.node_id, response.host, response.port);
        }
        assert!(
            Instant::now() < until,
            "FindCoordinator through port {port}: error {}",
            response.error_code
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn described_through(port: u16) -> Vec<(i32, String, i32)> {
    let mut client = TypedClient::connect_to(localhost(port), "listeners-test");
    let request = DescribeClusterRequest {
        include_cluster_authorized_operations: false,
        endpoint_type: 1,
        ..DescribeClusterRequest::default()
    };
    let response: DescribeClusterResponse = client.call(DESCRIBE_CLUSTER, 1, &request);
    assert_eq!(response.error_code, 0);
    response
        .brokers
        .into_iter()
        .map(|b| (b.broker_id, b.host, b.port))
        .collect()
}

fn metadata_through(port: u16, topic: &str, version: i16) -> MetadataResponse {
    let mut client = TypedClient::connect_to(localhost(port), "listeners-test");
    let request = MetadataRequest {
        topics: Some(vec![MetadataRequestTopic {
            name: Some(topic.to_string()),
            ..MetadataRequestTopic::default()
        }]),
        allow_auto_topic_creation: false,
        ..MetadataRequest::default()
    };
    client.call(METADATA, version, &request)
}

#[tokio::test(flavor = "multi_thread")]
async fn each_listener_advertises_its_own_address() {
    let (broker, external, hidden) = three_listener_broker();
    let plaintext = broker.port();
    let through_plaintext = broker.bootstrap();
    let through_external = format!("127.0.0.1:{external}");

    // rdkafka bootstrapped through either listener learns that listener's advertised address.
    assert_eq!(
        brokers_seen_through(&through_plaintext),
        one(1, "127.0.0.1", plaintext)
    );
    assert_eq!(
        brokers_seen_through(&through_external),
        one(1, "localhost", external)
    );

    // Clients then work through the address they were told: produce through one listener,
    // consume in a group through the other, and the other way round.
    let admin: AdminClient<DefaultClientContext> =
        client_config(&through_external).create().expect("admin");
    let created = admin
        .create_topics(
            &[NewTopic::new("two-doors", 2, TopicReplication::Fixed(1))],
            &StromProcess::admin_options(),
        )
        .await
        .expect("create topics");
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    let first: Vec<String> = (0..5).map(|i| format!("external-{i}")).collect();
    produce(&through_external, "two-doors", &first).await;
    assert_eq!(
        consume_in_group(&through_plaintext, "via-plaintext", "two-doors", 5),
        first.iter().cloned().collect()
    );
    let second: Vec<String> = (0..5).map(|i| format!("plaintext-{i}")).collect();
    produce(&through_plaintext, "two-doors", &second).await;
    assert_eq!(
        consume_in_group(&through_external, "via-external", "two-doors", 10),
        first.iter().chain(&second).cloned().collect()
    );

    // FindCoordinator and DescribeCluster answer with the asking listener's endpoint too.
    assert_eq!(
        coordinator_through(plaintext, "via-external"),
        (1, "127.0.0.1".to_string(), i32::from(plaintext))
    );
    assert_eq!(
        coordinator_through(external, "via-external"),
        (1, "localhost".to_string(), i32::from(external))
    );
    assert_eq!(
        described_through(plaintext),
        [(1, "127.0.0.1".to_string(), i32::from(plaintext))]
    );
    assert_eq!(
        described_through(external),
        [(1, "localhost".to_string(), i32::from(external))]
    );

    // A listener that is bound but not advertised: the broker is not among the brokers its
    // clients see, and the partitions it leads have no leader reachable there
    // (LISTENER_NOT_FOUND from Metadata v6, LEADER_NOT_AVAILABLE before), as in Kafka.
    let hidden_view = metadata_through(hidden, "two-doors", 12);
    assert!(hidden_view.brokers.is_empty(), "{:?}", hidden_view.brokers);
    let partitions = &hidden_view.topics[0].partitions;
    assert_eq!(partitions.len(), 2);
    assert!(
        partitions
            .iter()
            .all(|p| p.error_code == LISTENER_NOT_FOUND && p.leader_id == -1),
        "{partitions:?}"
    );
    let old_client_view = metadata_through(hidden, "two-doors", 5);
    assert!(old_client_view.topics[0]
        .partitions
        .iter()
        .all(|p| p.error_code == 5));
    assert!(described_through(hidden).is_empty());
    let plaintext_view = metadata_through(plaintext, "two-doors", 12);
    assert!(plaintext_view.topics[0]
        .partitions
        .iter()
        .all(|p| p.error_code == 0 && p.leader_id == 1));

    let log = broker.log_contents();
    assert!(
        log.contains(&format!("EXTERNAL://localhost:{external}")),
        "the start line names the advertised endpoints: {log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_node_of_a_cluster_advertises_each_listener() {
    let cluster = StromCluster::start_with_external_listeners(&[]);
    let plaintext: BTreeSet<_> = cluster
        .nodes
        .iter()
        .zip(1..)
        .map(|(node, id)| (id, "127.0.0.1".to_string(), i32::from(node.port())))
        .collect();
    let external: BTreeSet<_> = cluster
        .external_ports
        .iter()
        .zip(1..)
        .map(|(port, id)| (id, "localhost".to_string(), i32::from(*port)))
        .collect();
    // Every node, asked through either listener, lists the three brokers at that listener's
    // addresses.
    for (node, external_port) in cluster.nodes.iter().zip(&cluster.external_ports) {
        wait_for_brokers(&node.bootstrap(), &plaintext, CLUSTER_DEADLINE);
        wait_for_brokers(
            &format!("127.0.0.1:{external_port}"),
            &external,
            CLUSTER_DEADLINE,
        );
    }

    // Partitions spread over the three brokers: a producer bootstrapped through one node's
    // EXTERNAL listener reaches every leader at its localhost address, and a group consumer
    // through another node's PLAINTEXT listener reads everything back.
    let through_external = format!("127.0.0.1:{}", cluster.external_ports[1]);
    let admin: AdminClient<DefaultClientContext> =
        client_config(&through_external).create().expect("admin");
    let created = admin
        .create_topics(
            &[NewTopic::new("spread", 6, TopicReplication::Fixed(1))],
            &StromProcess::admin_options(),
        )
        .await
        .expect("create topics");
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    let values: Vec<String> = (0..30).map(|i| format!("record-{i}")).collect();
    produce(&through_external, "spread", &values).await;
    assert_eq!(
        consume_in_group(
            &cluster.nodes[2].bootstrap(),
            "spread-readers",
            "spread",
            30
        ),
        values.iter().cloned().collect()
    );
}

#[test]
fn listener_settings_kafka_refuses_stop_the_broker_with_the_key_named() {
    let cases: [(&[(&str, &str)], &str); 4] = [
        (
            &[
                ("listeners", "PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0"),
                ("advertised.listeners", "PLAINTEXT://127.0.0.1:9092"),
            ],
            "listener.security.protocol.map maps listener SSL to SSL",
        ),
        (
            &[("advertised.listeners", "PLAINTEXT://0.0.0.0:9092")],
            "advertised.listeners cannot use the nonroutable meta-address 0.0.0.0",
        ),
        (
            &[
                (
                    "listeners",
                    "PLAINTEXT://127.0.0.1:0,EXTERNAL://127.0.0.1:0",
                ),
                (
                    "advertised.listeners",
                    "PLAINTEXT://127.0.0.1:9092,OTHER://h:1",
                ),
            ],
            "advertised.listeners contains OTHER, which is not in listeners",
        ),
        (
            &[(
                "listeners",
                "PLAINTEXT://127.0.0.1:9092,EXTERNAL://127.0.0.1:9092",
            )],
            "listeners: each listener must have a different port",
        ),
    ];
    for (props, expected) in cases {
        let (ok, log) = StromProcess::run_expecting_exit(props, &[]);
        assert!(!ok, "{props:?} was accepted");
        assert!(
            log.contains(expected),
            "{props:?}: expected {expected:?} in\n{log}"
        );
    }
}
