//! `strom groups` end to end: the built binary against a real `strom` process. A group consumes
//! and commits; `groups list` shows it, `groups describe` shows its member and the right
//! CURRENT-OFFSET / LOG-END-OFFSET / LAG, `reset-offsets` is a dry run unless `--execute` (and
//! refuses while the group has members), and `delete` removes the group. Also a smoke run of
//! `strom bench rebalance` (form, join, leave and death phases) on a small group.

// Test code. (clippy.toml's allow-*-in-tests does not reach integration-test helpers.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{StromProcess, WAIT_DEADLINE};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

/// Broker settings for group tests: no initial rebalance delay, few offsets partitions.
const BROKER_PROPS: &[(&str, &str)] = &[
    ("group.initial.rebalance.delay.ms", "0"),
    ("offsets.topic.num.partitions", "5"),
];

const TOPIC: &str = "orders";
const GROUP: &str = "billing";
/// Records produced to partitions 0 and 1.
const RECORDS: [i64; 2] = [10, 6];
/// Offsets the group commits on partitions 0 and 1.
const COMMITTED: [i64; 2] = [7, 6];

/// Runs the `strom` binary against `broker`.
fn strom(broker: &StromProcess, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strom"))
        .args(args)
        .arg("--bootstrap-server")
        .arg(broker.bootstrap())
        .env("NO_COLOR", "1")
        .output()
        .expect("run strom")
}

/// Runs `strom` and returns its stdout, panicking (with stderr) if it fails.
fn strom_ok(broker: &StromProcess, args: &[&str]) -> String {
    let output = strom(broker, args);
    assert!(
        output.status.success(),
        "strom {args:?} failed\n--- stdout ---\n{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `strom`, expecting it to fail; returns its stderr.
fn strom_err(broker: &StromProcess, args: &[&str]) -> String {
    let output = strom(broker, args);
    assert!(
        !output.status.success(),
        "strom {args:?} unexpectedly succeeded\n--- stdout ---\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// One row of the offsets table of `groups describe`.
#[derive(Debug, Clone, PartialEq)]
struct OffsetRow {
    current: String,
    log_end: String,
    lag: String,
    consumer_id: String,
}

/// The offsets table rows of `groups describe` output for `TOPIC`, by partition.
fn offset_rows(describe: &str) -> BTreeMap<i32, OffsetRow> {
    describe
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|cells| cells.len() == 9 && cells[0] == GROUP && cells[1] == TOPIC)
        .map(|cells| {
            (
                cells[2].parse().expect("partition column"),
                OffsetRow {
                    current: cells[3].to_string(),
                    log_end: cells[4].to_string(),
                    lag: cells[5].to_string(),
                    consumer_id: cells.get(6).unwrap_or(&"-").to_string(),
                },
            )
        })
        .collect()
}

/// The STATE of `GROUP` in `groups list` output (None when not listed).
fn listed_state(list: &str) -> Option<String> {
    list.lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&GROUP))
        .and_then(|cells| cells.get(1).map(|state| (*state).to_string()))
}

fn row(current: i64, log_end: i64) -> (String, String, String) {
    (
        current.to_string(),
        log_end.to_string(),
        (log_end - current).to_string(),
    )
}

fn offsets_of(rows: &BTreeMap<i32, OffsetRow>, partition: i32) -> (String, String, String) {
    let row = rows
        .get(&partition)
        .unwrap_or_else(|| panic!("no row for partition {partition} in {rows:?}"));
    (row.current.clone(), row.log_end.clone(), row.lag.clone())
}

fn produce(broker: &StromProcess) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("log_level", "3")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "15000")
        .create()
        .expect("create producer");
    for (partition, count) in (0i32..).zip(RECORDS) {
        for index in 0..count {
            let value = format!("record-{partition}-{index}");
            producer
                .send(
                    BaseRecord::<(), _>::to(TOPIC)
                        .payload(&value)
                        .partition(partition),
                )
                .expect("enqueue record");
        }
    }
    producer
        .flush(Duration::from_secs(15))
        .expect("flush produced records");
    for (partition, count) in (0i32..).zip(RECORDS) {
        assert_eq!(broker.watermarks(TOPIC, partition), (0, count));
    }
}

#[test]
fn groups_list_describe_reset_and_delete() {
    let broker = StromProcess::start(BROKER_PROPS);
    strom_ok(&broker, &["topics", "create", TOPIC, "--partitions", "2"]);
    broker.partition_count(TOPIC);
    produce(&broker);

    // A member of the group reads every record and commits COMMITTED.
    let consumer = broker.consumer(
        Some(GROUP),
        &[
            ("session.timeout.ms", "6000"),
            ("heartbeat.interval.ms", "500"),
        ],
    );
    consumer.subscribe(&[TOPIC]).expect("subscribe");
    let total: i64 = RECORDS.iter().sum();
    let mut received = 0i64;
    let until = Instant::now() + WAIT_DEADLINE;
    while received < total {
        assert!(
            Instant::now() < until,
            "the group member received only {received} of {total} records"
        );
        if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
            received += 1;
        }
    }
    let mut commit = TopicPartitionList::new();
    for (partition, offset) in (0i32..).zip(COMMITTED) {
        commit
            .add_partition_offset(TOPIC, partition, Offset::Offset(offset))
            .expect("add partition");
    }
    consumer
        .commit(&commit, CommitMode::Sync)
        .expect("commit offsets");

    // While the member is active: listed as Stable, shown with its assignment, and offsets
    // cannot be reset.
    broker.wait_until("the group is listed as Stable", WAIT_DEADLINE, || {
        listed_state(&strom_ok(&broker, &["groups", "list"])).as_deref() == Some("Stable")
    });
    let describe = strom_ok(&broker, &["groups", "describe", GROUP]);
    let rows = offset_rows(&describe);
    assert_eq!(rows.len(), 2, "{describe}");
    for (partition, (offset, end)) in (0i32..).zip(COMMITTED.into_iter().zip(RECORDS)) {
        assert_eq!(offsets_of(&rows, partition), row(offset, end), "{describe}");
        assert_ne!(rows[&partition].consumer_id, "-", "{describe}");
    }
    assert!(describe.contains(&format!("{TOPIC}(0,1)")), "{describe}");
    let refused = strom_err(
        &broker,
        &[
            "groups",
            "reset-offsets",
            GROUP,
            "--topic",
            TOPIC,
            "--to-earliest",
            "--execute",
        ],
    );
    assert!(refused.contains("inactive"), "{refused}");
    let refused = strom_err(&broker, &["groups", "delete", GROUP]);
    assert!(refused.contains("active members"), "{refused}");

    // The member leaves: the group is Empty and keeps its offsets.
    drop(consumer);
    broker.wait_until("the group is listed as Empty", WAIT_DEADLINE, || {
        listed_state(&strom_ok(&broker, &["groups", "list", "--state", "empty"])).as_deref()
            == Some("Empty")
    });
    let describe = strom_ok(&broker, &["groups", "describe", GROUP]);
    assert!(describe.contains("has no active members"), "{describe}");
    let rows = offset_rows(&describe);
    for (partition, (offset, end)) in (0i32..).zip(COMMITTED.into_iter().zip(RECORDS)) {
        assert_eq!(offsets_of(&rows, partition), row(offset, end), "{describe}");
        assert_eq!(rows[&partition].consumer_id, "-", "{describe}");
    }

    // A dry run prints the plan and changes nothing.
    let plan = strom_ok(
        &broker,
        &[
            "groups",
            "reset-offsets",
            GROUP,
            "--topic",
            TOPIC,
            "--to-earliest",
        ],
    );
    let planned: Vec<Vec<&str>> = plan
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(
        planned,
        vec![vec![GROUP, TOPIC, "0", "0"], vec![GROUP, TOPIC, "1", "0"]],
        "{plan}"
    );
    // A time after every record maps to the log end offsets.
    let future = (common::now_millis() + 3_600_000).to_string();
    let plan = strom_ok(
        &broker,
        &[
            "groups",
            "reset-offsets",
            GROUP,
            "--topic",
            TOPIC,
            "--to-timestamp",
            &future,
        ],
    );
    let planned: Vec<String> = plan
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().nth(3).map(str::to_string))
        .collect();
    assert_eq!(planned, RECORDS.map(|count| count.to_string()), "{plan}");
    let rows = offset_rows(&strom_ok(&broker, &["groups", "describe", GROUP]));
    assert_eq!(offsets_of(&rows, 0), row(COMMITTED[0], RECORDS[0]));
    assert_eq!(offsets_of(&rows, 1), row(COMMITTED[1], RECORDS[1]));

    // --execute commits the plan.
    strom_ok(
        &broker,
        &[
            "groups",
            "reset-offsets",
            GROUP,
            "--topic",
            TOPIC,
            "--to-earliest",
            "--execute",
        ],
    );
    let rows = offset_rows(&strom_ok(&broker, &["groups", "describe", GROUP]));
    for (partition, end) in (0i32..).zip(RECORDS) {
        assert_eq!(offsets_of(&rows, partition), row(0, end));
    }
    strom_ok(
        &broker,
        &[
            "groups",
            "reset-offsets",
            GROUP,
            "--topic",
            &format!("{TOPIC}:1"),
            "--shift-by",
            "4",
            "--execute",
        ],
    );
    let rows = offset_rows(&strom_ok(&broker, &["groups", "describe", GROUP]));
    assert_eq!(offsets_of(&rows, 0), row(0, RECORDS[0]));
    assert_eq!(offsets_of(&rows, 1), row(4, RECORDS[1]));

    // delete removes the group; deleting it again is an error.
    let deleted = strom_ok(&broker, &["groups", "delete", GROUP]);
    assert!(deleted.contains(GROUP), "{deleted}");
    assert_eq!(listed_state(&strom_ok(&broker, &["groups", "list"])), None);
    let missing = strom_err(&broker, &["groups", "delete", GROUP]);
    assert!(missing.contains("does not exist"), "{missing}");
    let describe = strom_ok(&broker, &["groups", "describe", GROUP]);
    assert!(describe.contains("does not exist"), "{describe}");
}

#[test]
fn rebalance_benchmark_measures_every_phase() {
    let broker = StromProcess::start(BROKER_PROPS);
    let output = strom_ok(
        &broker,
        &[
            "bench",
            "rebalance",
            "--topic",
            "rebalancing",
            "--consumers",
            "3",
            "--partitions",
            "8",
            "--session-timeout-ms",
            "6000",
            "--heartbeat-interval-ms",
            "300",
        ],
    );
    assert!(
        output.contains("group.initial.rebalance.delay.ms 0"),
        "{output}"
    );
    for phase in ["form:", "join:", "leave:", "death:"] {
        let line = output
            .lines()
            .find(|line| line.starts_with(phase))
            .unwrap_or_else(|| panic!("no {phase} line in\n{output}"));
        assert!(line.contains("stable after"), "{output}");
    }
}
