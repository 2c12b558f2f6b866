//! A cluster of three `strom` processes in combined mode (broker and controller, all voters of
//! the Raft metadata quorum over their controller listeners): they elect an active controller,
//! topics created through any node (forwarded to the active controller) reach every node's
//! metadata, and the cluster survives the loss of its active controller, whose restart catches up.
//! Any node describes the quorum (DescribeQuorum, forwarded to the leader), topics a page at a
//! time (DescribeTopicPartitions) and, through `strom cluster describe`, the voters' lag and the
//! brokers' states as a broker hangs, thaws and shuts down.
//! Group coordinators follow the leadership of the `__consumer_offsets` partitions: a group's
//! coordinator moves with its partition, and a broker that leads the partition again reloads
//! the group's committed offsets from its log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeSet, HashSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::typed::TypedClient;
use common::{StromCluster, StromProcess};
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use strom_protocol::messages::create_topics_request::{CreatableTopic, CreateTopicsRequest};
use strom_protocol::messages::create_topics_response::CreateTopicsResponse;
use strom_protocol::messages::describe_quorum_request::{
    DescribeQuorumRequest, PartitionData as QuorumPartition, TopicData as QuorumTopic,
};
use strom_protocol::messages::describe_quorum_response::DescribeQuorumResponse;
use strom_protocol::messages::describe_topic_partitions_request::{
    Cursor as RequestCursor, DescribeTopicPartitionsRequest, TopicRequest,
};
use strom_protocol::messages::describe_topic_partitions_response::DescribeTopicPartitionsResponse;
use strom_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use strom_protocol::messages::find_coordinator_response::FindCoordinatorResponse;
use strom_protocol::messages::metadata_response::MetadataResponse;
use strom_protocol::messages::offset_fetch_request::OffsetFetchRequest;
use strom_protocol::messages::offset_fetch_response::OffsetFetchResponse;

const OFFSET_FETCH: i16 = 9;
const FIND_COORDINATOR: i16 = 10;
const CREATE_TOPICS: i16 = 19;
const DESCRIBE_QUORUM: i16 = 55;
const DESCRIBE_TOPIC_PARTITIONS: i16 = 75;
/// Kafka's COORDINATOR_NOT_AVAILABLE and NOT_COORDINATOR error codes.
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const NOT_COORDINATOR: i16 = 16;
/// How long the cluster gets to reach a state (election, registration, catch-up).
const CLUSTER_DEADLINE: Duration = Duration::from_secs(60);

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
        let answers: Option<Vec<MetadataResponse>> =
            nodes.iter().map(|i| cluster.nodes[*i].metadata()).collect();
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

/// Creates `topic` (replication factor 1) by sending CreateTopics to `node` itself (which
/// forwards it to the active controller if it is not that), retrying while the cluster has no
/// controller.
fn create_topic_through(node: &StromProcess, topic: &str, partitions: i32) {
    create_replicated_topic_through(node, topic, partitions, 1);
}

/// Like [`create_topic_through`], with `replication_factor` replicas per partition.
fn create_replicated_topic_through(
    node: &StromProcess,
    topic: &str,
    partitions: i32,
    replication_factor: i16,
) {
    let deadline = Instant::now() + CLUSTER_DEADLINE;
    loop {
        let mut client = TypedClient::connect(node, "cluster-test");
        let request = CreateTopicsRequest {
            topics: vec![CreatableTopic {
                name: topic.to_string(),
                num_partitions: partitions,
                replication_factor,
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

/// DescribeQuorum as node `node` answers it (forwarded to the active controller), or `None` if
/// it cannot answer now.
fn quorum_of(node: &StromProcess) -> Option<DescribeQuorumResponse> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut client = TypedClient::connect(node, "cluster-test");
        let request = DescribeQuorumRequest {
            topics: vec![QuorumTopic {
                topic_name: "__cluster_metadata".into(),
                partitions: vec![QuorumPartition { partition_index: 0 }],
            }],
        };
        client.call::<DescribeQuorumResponse>(DESCRIBE_QUORUM, 2, &request)
    }))
    .ok()
}

/// `strom cluster describe` run against `node`: its output, once it succeeds.
fn cli_describe(node: &StromProcess) -> Option<String> {
    let output = Command::new(env!("CARGO_BIN_EXE_strom"))
        .args([
            "cluster",
            "describe",
            "--bootstrap-server",
            &node.bootstrap(),
        ])
        .output()
        .expect("run strom cluster describe");
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The whitespace-normalized row of `id` in the section of `text` that starts with `section`.
fn row_in(text: &str, section: &str, id: i32) -> Option<String> {
    text.lines()
        .skip_while(|line| !line.trim_start().starts_with(section))
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .find(|row| row.split(' ').next() == Some(id.to_string().as_str()))
}

/// Polls `strom cluster describe` on `node` until `condition` holds for its output.
fn wait_for_cli(
    cluster: &StromCluster,
    node: usize,
    what: &str,
    condition: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + CLUSTER_DEADLINE;
    let mut last = None;
    loop {
        if let Some(text) = cli_describe(&cluster.nodes[node]) {
            if condition(&text) {
                eprintln!("{what}:\n{text}");
                return text;
            }
            last = Some(text);
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not reached in time; last output:\n{}\n--- logs ---\n{}",
            last.unwrap_or_default(),
            cluster.nodes[node].log_contents()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_quorum_and_the_brokers_are_described_from_any_node() {
    let mut cluster = StromCluster::start(&[
        ("broker.session.timeout.ms", "3000"),
        ("broker.heartbeat.interval.ms", "500"),
    ]);
    let all = [0, 1, 2];
    let answers = wait_for_metadata(
        &cluster,
        &all,
        "controller elected, brokers registered",
        |a| agreed_controller(a).is_some() && a.iter().all(|m| m.brokers.len() == 3),
    );
    let controller = agreed_controller(&answers).expect("agreed");
    let index_of = |id: i32| usize::try_from(id - 1).expect("node index");
    let others: Vec<usize> = all
        .into_iter()
        .filter(|i| *i != index_of(controller))
        .collect();
    let (asked, paused) = (others[0], others[1]);

    // DescribeQuorum through every node reaches the leader, which knows every voter's progress.
    for node in all {
        let deadline = Instant::now() + CLUSTER_DEADLINE;
        loop {
            let caught_up = quorum_of(&cluster.nodes[node]).filter(|q| {
                let p = &q.topics[0].partitions[0];
                let ends: BTreeSet<i64> =
                    p.current_voters.iter().map(|v| v.log_end_offset).collect();
                p.error_code == 0
                    && p.leader_id == controller
                    && p.current_voters.len() == 3
                    && ends.len() == 1
                    && p.current_voters
                        .iter()
                        .all(|v| v.last_caught_up_timestamp > 0)
            });
            if let Some(quorum) = caught_up {
                let p = &quorum.topics[0].partitions[0];
                assert!(p.high_watermark > 0 && p.leader_epoch > 0, "{quorum:?}");
                assert!(p.observers.is_empty());
                let endpoints: BTreeSet<(i32, String, u16)> = quorum
                    .nodes
                    .iter()
                    .flat_map(|n| {
                        n.listeners
                            .iter()
                            .map(move |l| (n.node_id, l.name.clone(), l.port))
                    })
                    .collect();
                let expected: BTreeSet<(i32, String, u16)> = cluster
                    .controller_ports
                    .iter()
                    .enumerate()
                    .map(|(i, port)| {
                        (
                            i32::try_from(i + 1).expect("id"),
                            "CONTROLLER".into(),
                            *port,
                        )
                    })
                    .collect();
                assert_eq!(endpoints, expected);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "DescribeQuorum through node {node}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // DescribeTopicPartitions through a node that is not the controller, a page at a time.
    create_topic_through(&cluster.nodes[asked], "described", 6);
    wait_for_metadata(&cluster, &all, "topic visible on all nodes", |a| {
        a.iter().all(|m| has_topic(m, "described", 6))
    });
    let mut client = TypedClient::connect(&cluster.nodes[asked], "cluster-test");
    let page = |cursor: Option<(&str, i32)>| DescribeTopicPartitionsRequest {
        topics: vec![TopicRequest {
            name: "described".into(),
        }],
        response_partition_limit: 4,
        cursor: cursor.map(|(topic_name, partition_index)| RequestCursor {
            topic_name: topic_name.into(),
            partition_index,
        }),
    };
    let first: DescribeTopicPartitionsResponse =
        client.call(DESCRIBE_TOPIC_PARTITIONS, 0, &page(None));
    let next = first.next_cursor.as_ref().expect("a second page");
    assert_eq!(
        (next.topic_name.as_str(), next.partition_index),
        ("described", 4)
    );
    let second: DescribeTopicPartitionsResponse =
        client.call(DESCRIBE_TOPIC_PARTITIONS, 0, &page(Some(("described", 4))));
    assert!(second.next_cursor.is_none());
    let partitions: Vec<_> = first.topics[0]
        .partitions
        .iter()
        .chain(second.topics[0].partitions.iter())
        .collect();
    assert_eq!(
        partitions
            .iter()
            .map(|p| p.partition_index)
            .collect::<Vec<_>>(),
        (0..6).collect::<Vec<_>>()
    );
    let leaders: BTreeSet<i32> = partitions.iter().map(|p| p.leader_id).collect();
    assert_eq!(leaders, BTreeSet::from([1, 2, 3]), "leaders spread");
    assert!(partitions
        .iter()
        .all(|p| p.replica_nodes == vec![p.leader_id] && p.isr_nodes == vec![p.leader_id]));

    // strom cluster describe: the quorum with its lag, the brokers with their state.
    let text = wait_for_cli(
        &cluster,
        asked,
        "every voter caught up, every broker unfenced",
        |t| {
            (1..=3).all(|id| {
                row_in(t, "Voters:", id).is_some_and(|row| row.split(' ').nth(3) == Some("0"))
                    && row_in(t, "Brokers:", id)
                        .is_some_and(|row| row.starts_with(&format!("{id} unfenced ")))
            })
        },
    );
    assert!(
        text.contains(&format!("Metadata quorum: leader {controller},")),
        "{text}"
    );
    assert!(
        text.contains(&format!("Controller: {controller}")),
        "{text}"
    );
    let leader_row = row_in(&text, "Voters:", controller).expect("leader row");
    assert!(
        leader_row.starts_with(&format!("{controller} leader ")),
        "{leader_row}"
    );

    // A hung broker is fenced and falls behind the metadata it missed; thawed, it catches up.
    let paused_id = i32::try_from(paused + 1).expect("id");
    cluster.nodes[paused].pause();
    wait_for_cli(&cluster, asked, "the hung broker fenced and lagging", |t| {
        row_in(t, "Brokers:", paused_id)
            .is_some_and(|row| row.starts_with(&format!("{paused_id} fenced ")))
            && row_in(t, "Voters:", paused_id)
                .and_then(|row| {
                    row.split(' ')
                        .nth(3)
                        .and_then(|lag| lag.parse::<i64>().ok())
                })
                .is_some_and(|lag| lag > 0)
    });
    cluster.nodes[paused].resume();
    wait_for_cli(
        &cluster,
        asked,
        "the thawed broker unfenced and caught up",
        |t| {
            row_in(t, "Brokers:", paused_id)
                .is_some_and(|row| row.starts_with(&format!("{paused_id} unfenced ")))
                && row_in(t, "Voters:", paused_id)
                    .is_some_and(|row| row.split(' ').nth(3) == Some("0"))
        },
    );

    // After a controlled shutdown (SIGTERM) the broker is fenced, as shut down.
    cluster.nodes[paused].terminate();
    wait_for_cli(
        &cluster,
        asked,
        "the stopped broker fenced after its shutdown",
        |t| {
            row_in(t, "Brokers:", paused_id)
                .is_some_and(|row| row.starts_with(&format!("{paused_id} fenced (shut down) ")))
        },
    );
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

/// What `node` answers FindCoordinator for `group`: (error code, coordinator node id), or `None`
/// if it cannot answer now.
fn coordinator_of(node: &StromProcess, group: &str) -> Option<(i16, i32)> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut client = TypedClient::connect(node, "cluster-test");
        let request = FindCoordinatorRequest {
            key: group.to_string(),
            key_type: 0,
            ..FindCoordinatorRequest::default()
        };
        let response: FindCoordinatorResponse = client.call(FIND_COORDINATOR, 2, &request);
        (response.error_code, response.node_id)
    }))
    .ok()
}

/// Polls until `node` answers FindCoordinator for `group` as `wanted` says; returns the answer.
fn wait_for_coordinator(
    cluster: &StromCluster,
    node: usize,
    group: &str,
    what: &str,
    wanted: impl Fn(i16, i32) -> bool,
) -> (i16, i32) {
    let deadline = Instant::now() + CLUSTER_DEADLINE;
    loop {
        if let Some((error, id)) = coordinator_of(&cluster.nodes[node], group) {
            if wanted(error, id) {
                eprintln!("{what}: error {error}, coordinator {id}");
                return (error, id);
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

/// The top-level error `node` answers to an OffsetFetch (v7, every partition) for `group`.
fn offset_fetch_error(node: &StromProcess, group: &str) -> i16 {
    let mut client = TypedClient::connect(node, "cluster-test");
    let request = OffsetFetchRequest {
        group_id: group.to_string(),
        topics: None,
        ..OffsetFetchRequest::default()
    };
    let response: OffsetFetchResponse = client.call(OFFSET_FETCH, 7, &request);
    response.error_code
}

/// The node index (into `cluster.nodes`) of broker `id`.
fn index_of(id: i32) -> usize {
    usize::try_from(id - 1).expect("node ids start at 1")
}

/// The offsets `group` has committed for `partitions` partitions of `topic`, as a consumer
/// bootstrapped from `node` reads them (retrying while the coordinator loads or moves).
fn committed_offsets(node: &StromProcess, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer = node.consumer(Some(group), &[]);
    let mut wanted = TopicPartitionList::new();
    for partition in 0..partitions {
        wanted.add_partition(topic, partition);
    }
    let deadline = Instant::now() + CLUSTER_DEADLINE;
    loop {
        match consumer.committed_offsets(wanted.clone(), Duration::from_secs(10)) {
            Ok(list) => {
                return list
                    .elements()
                    .iter()
                    .map(|e| match e.offset() {
                        Offset::Offset(offset) => offset,
                        _ => -1,
                    })
                    .collect()
            }
            Err(error) => assert!(
                Instant::now() < deadline,
                "reading committed offsets of {group} failed: {error}\n{}",
                node.log_contents()
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Stops (SIGSTOP) or resumes (SIGCONT) a node's process.
#[allow(unsafe_code)] // the `kill(2)` call; see its SAFETY comment
fn send_signal(node: &StromProcess, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(node.pid()).expect("pid fits pid_t");
    // SAFETY: plain syscall on the pid of a child the harness owns and has not reaped yet.
    let sent = unsafe { libc::kill(pid, signal) };
    assert_eq!(sent, 0, "signal {signal} to pid {pid}");
}

/// With `__consumer_offsets` at replication factor 1 its partitions cannot move: when the
/// broker leading a group's partition goes silent (SIGSTOP) it is fenced and the group has no
/// coordinator (COORDINATOR_NOT_AVAILABLE); once it is back (SIGCONT) and leads the partition
/// again in a newer leader epoch, it reloads the group from its log, so the group's members
/// resume at their committed offsets.
#[test]
fn a_returning_offsets_partition_leader_reloads_committed_offsets() {
    let cluster = StromCluster::start(&[
        ("offsets.topic.replication.factor", "1"),
        ("broker.session.timeout.ms", "3000"),
        ("broker.heartbeat.interval.ms", "500"),
    ]);
    let all = [0, 1, 2];
    wait_for_metadata(&cluster, &all, "brokers registered", |a| {
        agreed_controller(a).is_some() && a.iter().all(|m| m.brokers.len() == 3)
    });
    create_topic_through(&cluster.nodes[0], "resume", 3);
    wait_for_metadata(&cluster, &all, "topic visible on all nodes", |a| {
        a.iter().all(|m| has_topic(m, "resume", 3))
    });
    produce_to_every_partition(&cluster.nodes[0], "resume", 3, 10);
    let group = "resume-group";
    consume_as_group(&cluster.nodes[0], "resume", group, 30);
    let (_, coordinator) =
        wait_for_coordinator(&cluster, 0, group, "group coordinator", |e, _| e == 0);
    let paused = index_of(coordinator);
    let survivor = (paused + 1) % 3;

    send_signal(&cluster.nodes[paused], libc::SIGSTOP);
    wait_for_coordinator(
        &cluster,
        survivor,
        group,
        "no coordinator while the only replica is fenced",
        |error, _| error == COORDINATOR_NOT_AVAILABLE,
    );

    send_signal(&cluster.nodes[paused], libc::SIGCONT);
    wait_for_coordinator(
        &cluster,
        survivor,
        group,
        "the returning broker coordinates the group again",
        |error, id| error == 0 && id == coordinator,
    );
    wait_for_metadata(&cluster, &all, "every partition has a leader again", |a| {
        a.iter().all(|m| {
            m.topics
                .iter()
                .filter(|t| t.name.as_deref() == Some("resume"))
                .all(|t| t.partitions.iter().all(|p| p.leader_id >= 0))
        })
    });
    assert_eq!(
        committed_offsets(&cluster.nodes[survivor], group, "resume", 3),
        vec![10, 10, 10],
        "committed offsets reloaded from the returning leader's log\n{}",
        cluster.nodes[paused].log_contents()
    );
    let log = cluster.nodes[paused].log_contents();
    assert!(
        log.contains("resigned as the group coordinator") && log.contains("groups=1"),
        "the group was unloaded and loaded again\n{log}"
    );
    // A member of the group resumes where the group left off: only the new records.
    produce_to_every_partition(&cluster.nodes[survivor], "resume", 3, 1);
    let consumer = cluster.nodes[survivor].consumer(Some(group), &[]);
    consumer.subscribe(&["resume"]).expect("subscribe");
    let deadline = Instant::now() + CLUSTER_DEADLINE;
    let mut offsets = Vec::new();
    while offsets.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "resumed member got {offsets:?}\n{}",
            cluster.nodes[paused].log_contents()
        );
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            offsets.push(message.offset());
        }
    }
    assert_eq!(offsets, vec![10, 10, 10]);
}

/// With `__consumer_offsets` at its default replication factor (3, capped by the brokers) a
/// commit is acknowledged once every in-sync replica of the group's offsets partition has it.
/// Stopping the broker that coordinates the group (SIGTERM: controlled shutdown moves its
/// leaderships) moves the coordinator to the partition's new leader, which loads the group from
/// its own replica: the offsets committed before the move are there, and a member of the group
/// resumes from them and commits through the new coordinator. The stopped broker, back as a
/// follower of the partition, answers NOT_COORDINATOR for the group.
#[test]
fn a_group_coordinator_moves_with_its_offsets_partition() {
    let mut cluster = StromCluster::start(&[]);
    let all = [0, 1, 2];
    wait_for_metadata(&cluster, &all, "brokers registered", |a| {
        agreed_controller(a).is_some() && a.iter().all(|m| m.brokers.len() == 3)
    });
    create_replicated_topic_through(&cluster.nodes[0], "moves", 3, 3);
    wait_for_metadata(&cluster, &all, "topic visible on all nodes", |a| {
        a.iter().all(|m| has_topic(m, "moves", 3))
    });
    produce_to_every_partition(&cluster.nodes[0], "moves", 3, 10);
    let group = "moving-group";
    consume_as_group(&cluster.nodes[0], "moves", group, 30);
    let answers = wait_for_metadata(&cluster, &[0], "offsets topic created", |a| {
        has_topic(&a[0], "__consumer_offsets", 50)
    });
    let offsets_topic = answers[0]
        .topics
        .iter()
        .find(|t| t.name.as_deref() == Some("__consumer_offsets"))
        .expect("offsets topic");
    assert!(
        offsets_topic
            .partitions
            .iter()
            .all(|p| p.replica_nodes.len() == 3),
        "offsets.topic.replication.factor defaults to 3"
    );
    let (_, old) = wait_for_coordinator(&cluster, 0, group, "group coordinator", |e, _| e == 0);
    let stopped = index_of(old);
    let survivors: Vec<usize> = all.iter().copied().filter(|i| *i != stopped).collect();

    cluster.nodes[stopped].terminate();
    let (_, new) = wait_for_coordinator(
        &cluster,
        survivors[0],
        group,
        "coordinator moved",
        |error, id| error == 0 && id != old,
    );
    assert_eq!(
        coordinator_of(&cluster.nodes[survivors[1]], group),
        Some((0, new)),
        "every live broker names the new coordinator"
    );
    assert_eq!(
        committed_offsets(&cluster.nodes[survivors[0]], group, "moves", 3),
        vec![10, 10, 10],
        "the offsets committed before the move, loaded from the new leader's replica\n{}",
        cluster.nodes[index_of(new)].log_contents()
    );
    // A member resumes at the committed offsets through the new coordinator, and commits there.
    wait_for_metadata(&cluster, &survivors, "data partitions led again", |a| {
        a.iter().all(|m| {
            m.topics
                .iter()
                .filter(|t| t.name.as_deref() == Some("moves"))
                .all(|t| t.partitions.iter().all(|p| p.leader_id >= 0))
        })
    });
    produce_to_every_partition(&cluster.nodes[survivors[0]], "moves", 3, 1);
    let consumer = cluster.nodes[survivors[0]].consumer(Some(group), &[]);
    consumer.subscribe(&["moves"]).expect("subscribe");
    let deadline = Instant::now() + CLUSTER_DEADLINE;
    let mut offsets = Vec::new();
    while offsets.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "resumed member got {offsets:?}\n{}",
            cluster.nodes[index_of(new)].log_contents()
        );
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            offsets.push(message.offset());
        }
    }
    assert_eq!(
        offsets,
        vec![10, 10, 10],
        "resumed at the committed offsets"
    );
    consumer
        .commit_consumer_state(CommitMode::Sync)
        .expect("commit through the new coordinator");
    drop(consumer);
    assert_eq!(
        committed_offsets(&cluster.nodes[survivors[1]], group, "moves", 3),
        vec![11, 11, 11]
    );

    // Back, the stopped broker follows the partition: it does not coordinate the group.
    cluster.nodes[stopped].start_again();
    wait_for_coordinator(
        &cluster,
        stopped,
        group,
        "the returned broker names the new coordinator",
        |error, id| error == 0 && id == new,
    );
    assert_eq!(
        offset_fetch_error(&cluster.nodes[stopped], group),
        NOT_COORDINATOR
    );
    assert_eq!(offset_fetch_error(&cluster.nodes[index_of(new)], group), 0);
}
