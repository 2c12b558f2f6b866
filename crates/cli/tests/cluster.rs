//! A cluster of three `strom` processes in combined mode (broker and controller, all voters of
//! the Raft metadata quorum over their controller listeners): they elect an active controller,
//! topics created through any node (forwarded to the active controller) reach every node's
//! metadata, and the cluster survives the loss of its active controller, whose restart catches up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeSet, HashSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::typed::TypedClient;
use common::{StromCluster, StromProcess};
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use strom_protocol::messages::create_topics_request::{CreatableTopic, CreateTopicsRequest};
use strom_protocol::messages::create_topics_response::CreateTopicsResponse;
use strom_protocol::messages::metadata_request::MetadataRequest;
use strom_protocol::messages::metadata_response::MetadataResponse;

const METADATA: i16 = 3;
const CREATE_TOPICS: i16 = 19;
/// How long the cluster gets to reach a state (election, registration, catch-up).
const CLUSTER_DEADLINE: Duration = Duration::from_secs(60);

/// The full metadata as node `node` answers it, or `None` if it cannot answer now.
fn metadata_of(node: &StromProcess) -> Option<MetadataResponse> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut client = TypedClient::connect(node, "cluster-test");
        let request = MetadataRequest {
            topics: None,
            allow_auto_topic_creation: false,
            ..MetadataRequest::default()
        };
        client.call::<MetadataResponse>(METADATA, 12, &request)
    }))
    .ok()
}

/// Polls until `condition` holds for the metadata of every node in `nodes`, returning the last
/// answers; panics with the nodes' logs at the deadline.
fn wait_for_metadata(
    cluster: &StromCluster,
    nodes: &[usize],
    what: &str,
    condition: impl Fn(&[MetadataResponse]) -> bool,
) -> Vec<MetadataResponse> {
    let deadline = Instant::now() + CLUSTER_DEADLINE;
    let started = Instant::now();
    loop {
        let answers: Option<Vec<MetadataResponse>> = nodes
            .iter()
            .map(|i| metadata_of(&cluster.nodes[*i]))
            .collect();
        if let Some(answers) = answers {
            if condition(&answers) {
                eprintln!("{what}: after {:?}", started.elapsed());
                return answers;
            }
        }
        if Instant::now() >= deadline {
            let logs: Vec<String> = cluster.nodes.iter().map(|n| n.log_contents()).collect();
            panic!(
                "{what}: not reached in time\n--- logs ---\n{}",
                logs.join("\n---\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The controller every node in `answers` reports, if they agree on one.
fn agreed_controller(answers: &[MetadataResponse]) -> Option<i32> {
    let ids: HashSet<i32> = answers.iter().map(|a| a.controller_id).collect();
    match ids.into_iter().collect::<Vec<_>>().as_slice() {
        [id] if *id >= 0 => Some(*id),
        _ => None,
    }
}

fn has_topic(answer: &MetadataResponse, topic: &str, partitions: usize) -> bool {
    answer.topics.iter().any(|t| {
        t.name.as_deref() == Some(topic) && t.error_code == 0 && t.partitions.len() == partitions
    })
}

/// Creates `topic` by sending CreateTopics to `node` itself (which forwards it to the active
/// controller if it is not that), retrying while the cluster has no controller.
fn create_topic_through(node: &StromProcess, topic: &str, partitions: i32) {
    let deadline = Instant::now() + CLUSTER_DEADLINE;
    loop {
        let mut client = TypedClient::connect(node, "cluster-test");
        let request = CreateTopicsRequest {
            topics: vec![CreatableTopic {
                name: topic.to_string(),
                num_partitions: partitions,
                replication_factor: 1,
                ..CreatableTopic::default()
            }],
            timeout_ms: 30_000,
            validate_only: false,
        };
        let response: CreateTopicsResponse = client.call(CREATE_TOPICS, 7, &request);
        let result = &response.topics[0];
        // 0 NONE; 36 TOPIC_ALREADY_EXISTS when a retried creation had committed.
        if result.error_code == 0 || result.error_code == 36 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "creating {topic} through node failed: {} {:?}\n{}",
            result.error_code,
            result.error_message,
            node.log_contents()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Creates `topic` with an rdkafka admin client bootstrapped from `node` (it sends CreateTopics
/// to the controller the Metadata response names), retrying while the cluster settles.
fn create_topic_with_admin(node: &StromProcess, topic: &str, partitions: i32) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let admin = node.admin();
    let deadline = Instant::now() + CLUSTER_DEADLINE;
    runtime.block_on(async {
        loop {
            let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
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

/// Sends `per_partition` records (acks=all) to each partition of `topic` through a producer
/// bootstrapped from `node`.
fn produce_to_every_partition(
    node: &StromProcess,
    topic: &str,
    partitions: i32,
    per_partition: i32,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let producer = node.producer(&[("acks", "all")]);
    runtime.block_on(async {
        for partition in 0..partitions {
            for i in 0..per_partition {
                let payload = format!("p{partition}-{i}");
                producer
                    .send(
                        FutureRecord::<(), _>::to(topic)
                            .partition(partition)
                            .payload(&payload),
                        Duration::from_secs(15),
                    )
                    .await
                    .unwrap_or_else(|(error, _)| {
                        panic!("send to partition {partition} failed: {error}")
                    });
            }
        }
    });
}

/// Consumes `count` records of `topic` as a member of `group` and commits its position.
fn consume_as_group(node: &StromProcess, topic: &str, group: &str, count: usize) {
    let consumer = node.consumer(Some(group), &[]);
    consumer.subscribe(&[topic]).expect("subscribe");
    let deadline = Instant::now() + CLUSTER_DEADLINE;
    let mut received = 0;
    while received < count {
        assert!(
            Instant::now() < deadline,
            "group member received {received} of {count} records\n{}",
            node.log_contents()
        );
        if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
            received += 1;
        }
    }
    consumer
        .commit_consumer_state(CommitMode::Sync)
        .expect("commit through the group coordinator");
}

#[test]
fn three_nodes_form_one_cluster_and_survive_losing_the_controller() {
    let mut cluster = StromCluster::start(&[]);
    let all = [0, 1, 2];

    let answers = wait_for_metadata(
        &cluster,
        &all,
        "controller elected, brokers registered",
        |a| agreed_controller(a).is_some() && a.iter().all(|m| m.brokers.len() == 3),
    );
    let controller = agreed_controller(&answers).expect("agreed");
    // Each broker registered its client listener, not the controller one.
    let ports: BTreeSet<i32> = answers[0].brokers.iter().map(|b| b.port).collect();
    let client_ports: BTreeSet<i32> = cluster.nodes.iter().map(|n| i32::from(n.port())).collect();
    assert_eq!(ports, client_ports);

    // Through a node that is not the active controller: the call is forwarded.
    let follower = all
        .iter()
        .copied()
        .find(|i| (*i as i32) + 1 != controller)
        .expect("a follower");
    create_topic_through(&cluster.nodes[follower], "spread", 6);
    let answers = wait_for_metadata(&cluster, &all, "topic visible on all nodes", |a| {
        a.iter().all(|m| has_topic(m, "spread", 6))
    });
    let spread = answers[0]
        .topics
        .iter()
        .find(|t| t.name.as_deref() == Some("spread"))
        .expect("topic");
    let leaders: BTreeSet<i32> = spread.partitions.iter().map(|p| p.leader_id).collect();
    assert_eq!(
        leaders,
        BTreeSet::from([1, 2, 3]),
        "leaders spread over the brokers"
    );

    // Data through one bootstrap node reaches every partition's leader, and reads back.
    produce_to_every_partition(&cluster.nodes[follower], "spread", 6, 10);
    let reader = &cluster.nodes[(follower + 1) % 3];
    let messages = reader.consume_n("spread", 60, CLUSTER_DEADLINE);
    assert_eq!(messages.len(), 60);
    let per_partition: BTreeSet<(i32, usize)> = (0..6)
        .map(|p| (p, messages.iter().filter(|m| m.partition() == p).count()))
        .collect();
    assert_eq!(per_partition, (0..6).map(|p| (p, 10)).collect());
    // A group member finds its coordinator (the leader of the group's offsets partition).
    consume_as_group(&cluster.nodes[follower], "spread", "cluster-group", 60);

    // Lose the active controller: the two others elect a new one and keep taking changes.
    let killed = usize::try_from(controller - 1).expect("node index");
    cluster.nodes[killed].kill_9();
    let survivors: Vec<usize> = all.iter().copied().filter(|i| *i != killed).collect();
    let answers = wait_for_metadata(&cluster, &survivors, "new controller elected", |a| {
        agreed_controller(a).is_some_and(|id| id != controller)
    });
    let new_controller = agreed_controller(&answers).expect("agreed");
    eprintln!("controller moved from node {controller} to node {new_controller}");
    create_topic_with_admin(&cluster.nodes[survivors[0]], "after-failover", 2);
    wait_for_metadata(&cluster, &survivors, "topic created after failover", |a| {
        a.iter().all(|m| has_topic(m, "after-failover", 2))
    });

    // The killed node restarts and catches up with what it missed.
    cluster.nodes[killed].start_again();
    wait_for_metadata(&cluster, &[killed], "restarted node caught up", |a| {
        has_topic(&a[0], "after-failover", 2) && has_topic(&a[0], "spread", 6)
    });

    // Its partitions come back to it once it is unfenced, and take writes again.
    wait_for_metadata(&cluster, &all, "every partition has a leader again", |a| {
        a.iter().all(|m| {
            m.topics
                .iter()
                .filter(|t| t.name.as_deref() == Some("spread"))
                .all(|t| t.partitions.iter().all(|p| p.leader_id >= 0))
        })
    });
    produce_to_every_partition(&cluster.nodes[killed], "spread", 6, 1);

    // SIGTERM on a node runs its controlled shutdown through the active controller.
    let stopping = survivors[0];
    cluster.nodes[stopping].terminate();
    assert!(cluster.nodes[stopping]
        .log_contents()
        .contains("controlled shutdown complete"));
}

/// Whether the peer closes `stream` (end of stream or reset) instead of answering.
fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(error) => error.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

#[test]
fn the_controller_listener_closes_bad_frames_and_keeps_serving() {
    let cluster = StromCluster::start(&[]);
    wait_for_metadata(&cluster, &[0, 1, 2], "controller elected", |a| {
        agreed_controller(a).is_some()
    });
    let port = cluster.controller_ports[0];
    let connect = || {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to controller port");
        stream
            .set_read_timeout(Some(CLUSTER_DEADLINE))
            .expect("read timeout");
        stream
    };
    let frame = |kind: u8, payload: &[u8]| {
        let mut frame = i32::try_from(payload.len() + 1)
            .expect("small")
            .to_be_bytes()
            .to_vec();
        frame.push(kind);
        frame.extend_from_slice(payload);
        frame
    };
    let cases: [(&str, Vec<u8>); 4] = [
        ("oversized", i32::MAX.to_be_bytes().to_vec()),
        ("empty", 0i32.to_be_bytes().to_vec()),
        ("undecodable controller call", frame(3, b"{not json")),
        ("unknown kind", frame(9, b"x")),
    ];
    for (what, bytes) in cases {
        let mut stream = connect();
        stream.write_all(&bytes).expect("send frame");
        assert!(closed_by_peer(&mut stream), "{what}: connection not closed");
    }
    assert!(cluster.nodes[0]
        .log_contents()
        .contains("closing controller connection"));
    // The node still serves the quorum and clients.
    create_topic_through(&cluster.nodes[0], "still-serving", 1);
    wait_for_metadata(
        &cluster,
        &[0, 1, 2],
        "topic created after bad frames",
        |a| a.iter().all(|m| has_topic(m, "still-serving", 1)),
    );
}

#[test]
fn an_unformatted_node_with_voters_is_refused() {
    let (ok, log) = StromProcess::run_expecting_exit(
        &[
            ("process.roles", "broker,controller"),
            ("controller.quorum.voters", "1@127.0.0.1:1"),
            ("controller.listener.names", "CONTROLLER"),
            (
                "listeners",
                "PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:0",
            ),
            ("advertised.listeners", "PLAINTEXT://127.0.0.1:9092"),
        ],
        &[],
    );
    assert!(!ok);
    assert!(log.contains("strom storage format"), "{log}");
}
