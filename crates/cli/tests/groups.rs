//! Consumer groups against a `strom` process through librdkafka's high-level consumer:
//! committed offsets are resumed by the next member, and members of one group split partitions.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{StromProcess, OP_TIMEOUT, WAIT_DEADLINE};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Offset;

const GROUP_BROKER_SETTINGS: &[(&str, &str)] = &[("group.initial.rebalance.delay.ms", "0")];
const MEMBER_SETTINGS: &[(&str, &str)] = &[
    ("session.timeout.ms", "6000"),
    ("heartbeat.interval.ms", "300"),
];

async fn produce(producer: &FutureProducer, topic: &str, partition: i32, payload: &str) {
    producer
        .send(
            FutureRecord::<(), _>::to(topic)
                .partition(partition)
                .payload(payload),
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|(error, _)| panic!("send failed: {error}"));
}

/// Polls `consumer` until `n` messages arrived; returns (partition, offset, payload).
fn poll_n(broker: &StromProcess, consumer: &BaseConsumer, n: usize) -> Vec<(i32, i64, String)> {
    let deadline = Instant::now() + WAIT_DEADLINE;
    let mut got = Vec::new();
    while got.len() < n {
        assert!(
            Instant::now() < deadline,
            "group member got {} of {n} messages\n--- broker log ---\n{}",
            got.len(),
            broker.log_contents()
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => got.push((
                message.partition(),
                message.offset(),
                String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned(),
            )),
            Some(Err(error)) => panic!(
                "consumer error: {error}\n--- broker log ---\n{}",
                broker.log_contents()
            ),
            None => {}
        }
    }
    got
}

#[tokio::test]
async fn committed_offsets_are_resumed_by_the_next_member() {
    let broker = StromProcess::start(GROUP_BROKER_SETTINGS);
    let producer = broker.producer(&[]);
    for i in 0..20 {
        produce(&producer, "grouped", 0, &format!("g{i}")).await;
    }

    let first = broker.consumer(Some("resumers"), MEMBER_SETTINGS);
    first.subscribe(&["grouped"]).expect("subscribe");
    let got = poll_n(&broker, &first, 20);
    let offsets: Vec<i64> = got.iter().map(|(_, offset, _)| *offset).collect();
    assert_eq!(offsets, (0..20).collect::<Vec<_>>());
    first
        .commit_consumer_state(CommitMode::Sync)
        .expect("commit");
    let committed = first.committed(OP_TIMEOUT).expect("committed offsets");
    let element = committed
        .find_partition("grouped", 0)
        .expect("partition in committed list");
    assert_eq!(element.offset(), Offset::Offset(20));
    drop(first);

    for i in 20..25 {
        produce(&producer, "grouped", 0, &format!("g{i}")).await;
    }
    let second = broker.consumer(Some("resumers"), MEMBER_SETTINGS);
    second.subscribe(&["grouped"]).expect("subscribe");
    let got = poll_n(&broker, &second, 5);
    let want: Vec<(i32, i64, String)> = (20..25).map(|i| (0, i, format!("g{i}"))).collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn members_of_a_group_split_the_partitions() {
    let mut settings = GROUP_BROKER_SETTINGS.to_vec();
    settings.push(("num.partitions", "4"));
    let broker = StromProcess::start(&settings);
    let producer = broker.producer(&[]);
    for partition in 0..4 {
        produce(&producer, "split", partition, "warm-up").await;
    }

    let members = [
        broker.consumer(Some("splitters"), MEMBER_SETTINGS),
        broker.consumer(Some("splitters"), MEMBER_SETTINGS),
    ];
    for member in &members {
        member.subscribe(&["split"]).expect("subscribe");
    }
    // Poll both until the assignment is stable: disjoint, non-empty, covering all 4 partitions.
    let deadline = Instant::now() + WAIT_DEADLINE;
    let mut seen = BTreeSet::new();
    loop {
        for member in &members {
            if let Some(Ok(message)) = member.poll(Duration::from_millis(50)) {
                seen.insert((message.partition(), message.offset()));
            }
        }
        let assignments: Vec<BTreeSet<i32>> = members
            .iter()
            .map(|member| {
                member
                    .assignment()
                    .expect("assignment")
                    .elements()
                    .iter()
                    .map(|e| e.partition())
                    .collect()
            })
            .collect();
        let union: BTreeSet<i32> = assignments.iter().flatten().copied().collect();
        let disjoint = assignments[0].is_disjoint(&assignments[1]);
        if disjoint && union.len() == 4 && assignments.iter().all(|a| !a.is_empty()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "group never settled: assignments {assignments:?}\n--- broker log ---\n{}",
            broker.log_contents()
        );
    }

    // Every record produced now is delivered to exactly one member.
    for partition in 0..4 {
        for i in 0..5 {
            produce(&producer, "split", partition, &format!("p{partition}-{i}")).await;
        }
    }
    let deadline = Instant::now() + WAIT_DEADLINE;
    let mut delivered = Vec::new();
    while delivered.len() < 20 {
        assert!(
            Instant::now() < deadline,
            "only {} of 20 records delivered to the group",
            delivered.len()
        );
        for member in &members {
            if let Some(Ok(message)) = member.poll(Duration::from_millis(50)) {
                if message.offset() >= 1 {
                    delivered.push((message.partition(), message.offset()));
                } else {
                    seen.insert((message.partition(), message.offset()));
                }
            }
        }
    }
    let unique: BTreeSet<(i32, i64)> = delivered.iter().copied().collect();
    assert_eq!(
        unique.len(),
        delivered.len(),
        "a record was delivered twice: {delivered:?}"
    );
    let want: BTreeSet<(i32, i64)> = (0..4).flat_map(|p| (1..6).map(move |o| (p, o))).collect();
    assert_eq!(unique, want);
}
