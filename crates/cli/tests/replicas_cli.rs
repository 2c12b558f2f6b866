//! `strom topics elect-leaders` against a real `strom` process, and ElectLeaders on the wire at
//! each version: on one broker every partition has its preferred leader, so elections are not
//! needed; unknown partitions and bad requests get Kafka's codes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Output};

use common::typed::TypedClient;
use common::StromProcess;
use strom_protocol::messages::elect_leaders_request::{ElectLeadersRequest, TopicPartitions};
use strom_protocol::messages::elect_leaders_response::ElectLeadersResponse;
use strom_protocol::ErrorCode;

const ELECT_LEADERS: i16 = 43;

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

fn stdout_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn strom_ok(broker: &StromProcess, args: &[&str]) -> String {
    let output = strom(broker, args);
    assert!(
        output.status.success(),
        "strom {args:?} failed\n--- stdout ---\n{}\n--- stderr ---\n{}",
        stdout_of(&output),
        stderr_of(&output)
    );
    stdout_of(&output)
}

#[test]
fn elect_leaders_from_the_cli() {
    let broker = StromProcess::start(&[]);
    strom_ok(&broker, &["topics", "create", "t", "--partitions", "2"]);
    let out = strom_ok(&broker, &["topics", "elect-leaders", "--topic", "t"]);
    assert_eq!(
        out,
        "Valid replica already elected for partitions t-0, t-1\n"
    );
    let out = strom_ok(
        &broker,
        &[
            "topics",
            "elect-leaders",
            "--topic",
            "t",
            "--partition",
            "1",
            "--type",
            "unclean",
        ],
    );
    assert_eq!(out, "Valid replica already elected for partitions t-1\n");
    let out = strom_ok(
        &broker,
        &["topics", "elect-leaders", "--all-topic-partitions"],
    );
    assert_eq!(out, "No partition needed a leader election.\n");

    let missing = strom(&broker, &["topics", "elect-leaders", "--topic", "nope"]);
    assert!(!missing.status.success());
    assert!(
        stderr_of(&missing).contains("'nope' does not exist"),
        "{}",
        stderr_of(&missing)
    );
    let missing = strom(
        &broker,
        &[
            "topics",
            "elect-leaders",
            "--topic",
            "t",
            "--partition",
            "9",
        ],
    );
    assert!(!missing.status.success());
    assert!(
        stderr_of(&missing).contains("no partition 9"),
        "{}",
        stderr_of(&missing)
    );
}

#[test]
fn elect_leaders_on_the_wire_at_each_version() {
    let broker = StromProcess::start(&[]);
    strom_ok(&broker, &["topics", "create", "t", "--partitions", "1"]);
    let mut client = TypedClient::connect(&broker, "elect-test");
    let request = |election_type: i8, partitions: Vec<i32>| ElectLeadersRequest {
        election_type,
        topic_partitions: Some(vec![TopicPartitions {
            topic: "t".into(),
            partitions,
        }]),
        timeout_ms: 10_000,
    };
    let codes = |response: &ElectLeadersResponse| -> Vec<(i32, i16)> {
        response
            .replica_election_results
            .iter()
            .flat_map(|t| &t.partition_result)
            .map(|p| (p.partition_id, p.error_code))
            .collect()
    };
    let not_needed = ErrorCode::ElectionNotNeeded.code();
    let unknown = ErrorCode::UnknownTopicOrPartition.code();
    for version in 0..=2 {
        let response: ElectLeadersResponse =
            client.call(ELECT_LEADERS, version, &request(0, vec![0, 3]));
        assert_eq!(response.error_code, 0, "v{version}");
        assert_eq!(
            codes(&response),
            [(0, not_needed), (3, unknown)],
            "v{version}"
        );
    }
    // An election type Kafka does not know fails the request (v1 is the first to carry it).
    let response: ElectLeadersResponse = client.call(ELECT_LEADERS, 1, &request(7, vec![0]));
    assert_eq!(response.error_code, ErrorCode::InvalidRequest.code());
    assert_eq!(codes(&response), [(0, ErrorCode::InvalidRequest.code())]);
    // Null topics: every partition, none needing an election.
    let all = ElectLeadersRequest {
        election_type: 0,
        topic_partitions: None,
        timeout_ms: 10_000,
    };
    let response: ElectLeadersResponse = client.call(ELECT_LEADERS, 2, &all);
    assert!(codes(&response).is_empty(), "{response:?}");
}
