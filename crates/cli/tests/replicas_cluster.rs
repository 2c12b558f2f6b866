//! Leadership and replica placement on a 3-node cluster of real `strom` processes, driven by
//! the `strom` CLI and judged by librdkafka: a partition reassigned to other brokers is copied
//! there before its old replica is dropped (every acknowledged record reads back from the new
//! replicas, the old directory goes); a preferred replica that returns gets its leadership back
//! through `strom topics elect-leaders`, or by itself with `auto.leader.rebalance.enable`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{StromCluster, StromProcess};
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::Offset;

/// How long the cluster gets to reach a state (election, catch-up, reassignment).
const DEADLINE: Duration = Duration::from_secs(90);

/// Runs the `strom` binary against `node`; panics (with its output) if it fails.
fn strom_ok(node: &StromProcess, args: &[&str]) -> String {
    let output: Output = Command::new(env!("CARGO_BIN_EXE_strom"))
        .args(args)
        .arg("--bootstrap-server")
        .arg(node.bootstrap())
        .env("NO_COLOR", "1")
        .output()
        .expect("run strom");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "strom {args:?} failed\n--- stdout ---\n{stdout}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Runs `strom` until it succeeds (the cluster may still be electing or registering).
fn strom_eventually(node: &StromProcess, args: &[&str]) -> String {
    let until = Instant::now() + DEADLINE;
    loop {
        let output = Command::new(env!("CARGO_BIN_EXE_strom"))
            .args(args)
            .arg("--bootstrap-server")
            .arg(node.bootstrap())
            .output()
            .expect("run strom");
        if output.status.success() {
            return String::from_utf8_lossy(&output.stdout).into_owned();
        }
        assert!(
            Instant::now() < until,
            "strom {args:?} kept failing: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// (leader, replicas, ISR) of partition 0 of `topic` as `node` reports it.
fn partition_state(node: &StromProcess, topic: &str) -> Option<(i32, Vec<i32>, Vec<i32>)> {
    let consumer = node.consumer(None, &[]);
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .ok()?;
    let topic = metadata.topics().iter().find(|t| t.name() == topic)?;
    let p = topic.partitions().iter().find(|p| p.id() == 0)?;
    Some((p.leader(), p.replicas().to_vec(), p.isr().to_vec()))
}

/// Polls `node`'s metadata until `condition` holds for partition 0 of `topic`.
fn wait_for_partition(
    cluster: &StromCluster,
    node: usize,
    topic: &str,
    what: &str,
    condition: impl Fn(i32, &[i32], &[i32]) -> bool,
) -> (i32, Vec<i32>, Vec<i32>) {
    let started = Instant::now();
    loop {
        if let Some((leader, replicas, isr)) = partition_state(&cluster.nodes[node], topic) {
            if condition(leader, &replicas, &isr) {
                eprintln!("{what}: after {:?}", started.elapsed());
                return (leader, replicas, isr);
            }
        }
        if started.elapsed() >= DEADLINE {
            let logs: Vec<String> = cluster.nodes.iter().map(|n| n.log_contents()).collect();
            panic!(
                "{what}: not reached in time\n--- logs ---\n{}",
                logs.join("\n---\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn values(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("record-{i:05}")).collect()
}

/// Sends `values` to partition 0 with an idempotent `acks=all` producer; each must be
/// acknowledged.
fn produce_acknowledged(node: &StromProcess, topic: &str, values: &[String]) {
    let producer = node.producer(&[
        ("acks", "all"),
        ("enable.idempotence", "true"),
        ("message.timeout.ms", "60000"),
    ]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let deliveries: Vec<_> = values
            .iter()
            .map(|value| {
                producer
                    .send_result(FutureRecord::<(), _>::to(topic).partition(0).payload(value))
                    .unwrap_or_else(|(error, _)| panic!("queueing {value}: {error}"))
            })
            .collect();
        for (value, delivery) in values.iter().zip(deliveries) {
            match delivery.await {
                Ok(Ok(_)) => {}
                other => panic!("{value}: an acks=all record was not acknowledged: {other:?}"),
            }
        }
    });
}

/// Every value of partition 0 of `topic`, read through `node` up to the high watermark.
fn read_all(node: &StromProcess, topic: &str) -> Vec<String> {
    let (_, high) = node.watermarks(topic, 0);
    let count = usize::try_from(high).expect("high watermark");
    node.consume_partition(topic, 0, Offset::Beginning, count, DEADLINE)
        .iter()
        .map(|m| String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned())
        .collect()
}

fn index_of(broker: i32) -> usize {
    usize::try_from(broker - 1).expect("node index")
}

#[test]
fn reassignment_copies_the_partition_and_elect_leaders_restores_the_preferred_leader() {
    let mut cluster = StromCluster::start(&[("auto.leader.rebalance.enable", "false")]);

    // A partition on one broker moves to the two others, data first.
    strom_eventually(
        &cluster.nodes[0],
        &["topics", "create", "moved", "--replication-factor", "1"],
    );
    let (old, _, _) =
        wait_for_partition(&cluster, 0, "moved", "moved has a leader", |l, _, _| l >= 0);
    let records = values(0..300);
    produce_acknowledged(&cluster.nodes[0], "moved", &records);
    let old_dir = cluster.nodes[index_of(old)].partition_dir("moved", 0);
    let targets: Vec<i32> = (1..=3).filter(|b| *b != old).collect();
    let target_list = format!("{},{}", targets[0], targets[1]);
    let out = strom_ok(
        &cluster.nodes[0],
        &[
            "topics",
            "reassign",
            "--topic",
            "moved",
            "--partition",
            "0",
            "--replicas",
            &target_list,
            "--wait",
            "60",
        ],
    );
    assert!(out.contains("is complete"), "{out}");
    let (leader, replicas, isr) = wait_for_partition(
        &cluster,
        0,
        "moved",
        "moved to its new replicas",
        |l, r, _| l == targets[0] && r == targets.as_slice(),
    );
    assert_eq!((leader, replicas), (targets[0], targets.clone()));
    assert_eq!(isr.len(), 2, "both new replicas are in sync");
    assert_eq!(read_all(&cluster.nodes[0], "moved"), records);
    cluster.nodes[index_of(old)].wait_until("the old replica's log deleted", DEADLINE, || {
        !old_dir.exists()
    });
    let out = strom_ok(&cluster.nodes[0], &["topics", "list-reassignments"]);
    assert_eq!(out, "No partition reassignment is in progress.\n");

    // The preferred leader of a replicated partition restarts: leadership moves away and,
    // with automatic balancing off, comes back only through an election.
    strom_eventually(
        &cluster.nodes[0],
        &["topics", "create", "pref", "--replication-factor", "3"],
    );
    let (preferred, _, _) =
        wait_for_partition(&cluster, 0, "pref", "pref fully in sync", |l, r, isr| {
            l >= 0 && l == r[0] && isr.len() == 3
        });
    produce_acknowledged(&cluster.nodes[0], "pref", &values(0..50));
    let restarted = index_of(preferred);
    let observer = (restarted + 1) % 3;
    cluster.nodes[restarted].kill_9();
    wait_for_partition(
        &cluster,
        observer,
        "pref",
        "leadership moved away",
        |l, _, _| l >= 0 && l != preferred,
    );
    cluster.nodes[restarted].start_again();
    wait_for_partition(
        &cluster,
        observer,
        "pref",
        "the preferred replica back in the ISR",
        |_, _, isr| isr.contains(&preferred),
    );
    let (leader, _, _) = partition_state(&cluster.nodes[observer], "pref").expect("metadata");
    assert_ne!(leader, preferred, "no automatic balancing");
    let out = strom_eventually(
        &cluster.nodes[observer],
        &["topics", "elect-leaders", "--topic", "pref"],
    );
    assert_eq!(
        out,
        "Successfully completed leader election (PREFERRED) for partitions pref-0\n"
    );
    wait_for_partition(
        &cluster,
        observer,
        "pref",
        "preferred leader again",
        |l, _, _| l == preferred,
    );
    assert_eq!(read_all(&cluster.nodes[observer], "pref"), values(0..50));
}

#[test]
fn automatic_balancing_gives_a_returning_preferred_replica_its_leadership_back() {
    let mut cluster = StromCluster::start(&[("leader.imbalance.check.interval.seconds", "1")]);
    strom_eventually(
        &cluster.nodes[0],
        &["topics", "create", "auto", "--replication-factor", "3"],
    );
    let (preferred, _, _) =
        wait_for_partition(&cluster, 0, "auto", "auto fully in sync", |l, r, isr| {
            l >= 0 && l == r[0] && isr.len() == 3
        });
    let restarted = index_of(preferred);
    let observer = (restarted + 1) % 3;
    cluster.nodes[restarted].kill_9();
    wait_for_partition(
        &cluster,
        observer,
        "auto",
        "leadership moved away",
        |l, _, _| l >= 0 && l != preferred,
    );
    cluster.nodes[restarted].start_again();
    wait_for_partition(
        &cluster,
        observer,
        "auto",
        "leadership back on the preferred replica",
        |l, _, isr| l == preferred && isr.contains(&preferred),
    );
}
