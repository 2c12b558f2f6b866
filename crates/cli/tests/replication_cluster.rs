//! Partition replication between real `strom` processes, judged by librdkafka (the `rdkafka`
//! crate): a topic with replication factor 3 on a 3-node cluster keeps every record a producer
//! had acknowledged with `acks=all` when its leader is killed with SIGKILL, the killed broker
//! catches up and rejoins the ISR when it returns, and a follower paused with SIGSTOP leaves the
//! ISR after `replica.lag.time.max.ms` instead of holding `acks=all` producers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{StromCluster, StromProcess};
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::Offset;

/// How long the cluster gets to reach a state (election, failover, catch-up).
const DEADLINE: Duration = Duration::from_secs(90);

/// (leader, replicas, ISR) of `topic`'s partition `partition` as `node` reports it.
fn partition_state(
    node: &StromProcess,
    topic: &str,
    partition: i32,
) -> Option<(i32, Vec<i32>, Vec<i32>)> {
    let consumer = node.consumer(None, &[]);
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .ok()?;
    let topic = metadata.topics().iter().find(|t| t.name() == topic)?;
    let p = topic.partitions().iter().find(|p| p.id() == partition)?;
    Some((p.leader(), p.replicas().to_vec(), p.isr().to_vec()))
}

/// Polls `node`'s metadata until `condition` holds for the partition's (leader, replicas, ISR).
fn wait_for_partition(
    cluster: &StromCluster,
    node: usize,
    topic: &str,
    what: &str,
    condition: impl Fn(i32, &[i32], &[i32]) -> bool,
) -> (i32, Vec<i32>, Vec<i32>) {
    let started = Instant::now();
    let until = started + DEADLINE;
    loop {
        if let Some((leader, replicas, isr)) = partition_state(&cluster.nodes[node], topic, 0) {
            if condition(leader, &replicas, &isr) {
                eprintln!("{what}: after {:?}", started.elapsed());
                return (leader, replicas, isr);
            }
        }
        if Instant::now() >= until {
            let logs: Vec<String> = cluster.nodes.iter().map(|n| n.log_contents()).collect();
            panic!(
                "{what}: not reached in time\n--- logs ---\n{}",
                logs.join("\n---\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Creates `topic` (one partition, replication factor 3) through `node`, retrying while the
/// cluster settles.
fn create_replicated_topic(node: &StromProcess, topic: &str) {
    let admin = node.admin();
    let until = Instant::now() + DEADLINE;
    runtime().block_on(async {
        loop {
            let new_topic = NewTopic::new(topic, 1, TopicReplication::Fixed(3));
            let outcome = admin
                .create_topics([&new_topic], &StromProcess::admin_options())
                .await;
            match outcome.as_deref() {
                Ok([Ok(_)]) | Ok([Err((_, RDKafkaErrorCode::TopicAlreadyExists))]) => return,
                other => assert!(Instant::now() < until, "creating {topic}: {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

/// Sends `values` in order with an idempotent `acks=all` producer bootstrapped from `node`;
/// every send must be acknowledged (the producer retries through a failover).
fn produce_acknowledged(node: &StromProcess, topic: &str, values: impl Iterator<Item = String>) {
    let producer = node.producer(&[
        ("acks", "all"),
        ("enable.idempotence", "true"),
        ("message.timeout.ms", "60000"),
    ]);
    runtime().block_on(async {
        // Queue every record first (librdkafka batches them), then collect the acknowledgements.
        let deliveries: Vec<_> = values
            .map(|value| {
                let delivery = producer
                    .send_result(
                        FutureRecord::<(), _>::to(topic)
                            .partition(0)
                            .payload(&value),
                    )
                    .unwrap_or_else(|(error, _)| panic!("queueing {value}: {error}"));
                (value, delivery)
            })
            .collect();
        for (value, delivery) in deliveries {
            match delivery.await {
                Ok(Ok(_)) => {}
                other => panic!("{value}: an acks=all record was not acknowledged: {other:?}"),
            }
        }
    });
}

/// Every value of partition 0 of `topic`, read from the beginning through `node` (whatever
/// broker leads it), until the high watermark.
fn read_all(node: &StromProcess, topic: &str) -> Vec<String> {
    let (_, high) = node.watermarks(topic, 0);
    let count = usize::try_from(high).expect("high watermark");
    node.consume_partition(topic, 0, Offset::Beginning, count, DEADLINE)
        .iter()
        .map(|m| String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned())
        .collect()
}

fn values(range: std::ops::Range<usize>) -> impl Iterator<Item = String> {
    range.map(|i| format!("record-{i:05}"))
}

#[test]
fn acknowledged_records_survive_killing_the_leader_and_the_leader_catches_up() {
    let mut cluster = StromCluster::start(&[]);
    create_replicated_topic(&cluster.nodes[0], "replicated");
    let (leader, replicas, _) =
        wait_for_partition(&cluster, 0, "replicated", "ISR of 3", |l, _, isr| {
            l >= 0 && isr.len() == 3
        });
    assert_eq!(replicas.len(), 3);

    produce_acknowledged(&cluster.nodes[0], "replicated", values(0..500));

    // The leader dies with records in flight to nobody: every acknowledged one is on the ISR.
    let killed = usize::try_from(leader - 1).expect("node index");
    cluster.nodes[killed].kill_9();
    let survivor = (killed + 1) % 3;
    let (new_leader, _, _) =
        wait_for_partition(&cluster, survivor, "replicated", "new leader", |l, _, _| {
            l >= 0 && l != leader
        });
    eprintln!("leadership moved from {leader} to {new_leader}");

    produce_acknowledged(&cluster.nodes[survivor], "replicated", values(500..1000));
    let expected: Vec<String> = values(0..1000).collect();
    assert_eq!(read_all(&cluster.nodes[survivor], "replicated"), expected);

    // The killed broker returns, catches up, and is back in the ISR.
    cluster.nodes[killed].start_again();
    wait_for_partition(
        &cluster,
        survivor,
        "replicated",
        "returned broker back in the ISR",
        |_, _, isr| isr.contains(&leader) && isr.len() == 3,
    );

    // It is the preferred replica (the first): a preferred election makes it the leader again,
    // and reading through it shows it holds every record written while it was away.
    assert_eq!(
        replicas[0], leader,
        "the first leader is the preferred replica"
    );
    let until = Instant::now() + DEADLINE;
    loop {
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_strom"))
            .args([
                "topics",
                "elect-leaders",
                "--topic",
                "replicated",
                "--partition",
                "0",
            ])
            .args(["--type", "preferred", "--bootstrap-server"])
            .arg(cluster.nodes[survivor].bootstrap())
            .status()
            .expect("run strom topics elect-leaders");
        if status.success()
            || partition_state(&cluster.nodes[survivor], "replicated", 0)
                .is_some_and(|(l, _, _)| l == leader)
        {
            break;
        }
        assert!(Instant::now() < until, "preferred election never succeeded");
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_for_partition(
        &cluster,
        killed,
        "replicated",
        "returned broker leads again",
        |l, _, _| l == leader,
    );
    assert_eq!(read_all(&cluster.nodes[killed], "replicated"), expected);
}

#[test]
fn a_paused_follower_leaves_the_isr_and_does_not_hold_producers() {
    let mut cluster = StromCluster::start(&[("replica.lag.time.max.ms", "2000")]);
    create_replicated_topic(&cluster.nodes[0], "paused");
    let (leader, _, _) = wait_for_partition(&cluster, 0, "paused", "ISR of 3", |l, _, isr| {
        l >= 0 && isr.len() == 3
    });
    let leader_index = usize::try_from(leader - 1).expect("node index");
    let paused = (leader_index + 1) % 3;
    let paused_id = i32::try_from(paused + 1).expect("id");
    cluster.nodes[paused].pause();
    produce_acknowledged(&cluster.nodes[leader_index], "paused", values(0..100));
    wait_for_partition(
        &cluster,
        leader_index,
        "paused",
        "paused follower out of the ISR",
        |_, _, isr| !isr.contains(&paused_id),
    );
    cluster.nodes[paused].resume();
    wait_for_partition(
        &cluster,
        leader_index,
        "paused",
        "resumed follower back in the ISR",
        |_, _, isr| isr.contains(&paused_id),
    );
    let expected: Vec<String> = values(0..100).collect();
    assert_eq!(read_all(&cluster.nodes[leader_index], "paused"), expected);
}
