//! Startup and configuration handling of the `strom` binary: `--override` takes precedence over
//! the properties file, and invalid configurations make the process exit with an error.

// Test code. (clippy.toml's allow-*-in-tests does not reach integration-test helpers.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::StromProcess;
use rdkafka::producer::FutureRecord;

#[tokio::test]
async fn override_flag_beats_properties_file() {
    let broker = StromProcess::start_with_args(
        &[("num.partitions", "1")],
        &["--override", "num.partitions=3"],
    );
    let producer = broker.producer(&[]);
    producer
        .send(
            FutureRecord::<(), _>::to("overridden")
                .partition(0)
                .payload("x"),
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|(error, _)| panic!("send failed: {error}"));
    assert_eq!(broker.partition_count("overridden"), 3);
}

#[test]
fn invalid_number_is_refused() {
    let (success, log) = StromProcess::run_expecting_exit(&[("num.partitions", "many")], &[]);
    assert!(
        !success,
        "broker exited successfully with num.partitions=many"
    );
    assert!(
        log.contains("num.partitions"),
        "error should name the bad key:\n{log}"
    );
}

#[test]
fn missing_config_file_is_refused() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_strom"))
        .args(["server", "--config", "/nonexistent/strom.properties"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn strom");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            child.kill().expect("kill");
            child.wait().expect("reap");
            panic!("broker kept running without a config file");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        !status.success(),
        "broker exited successfully without a config file"
    );
}

/// Runs `strom` with `args` to completion (bounded) and returns (success, stdout + stderr).
fn run_strom(args: &[&str]) -> (bool, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_strom"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn strom");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() >= deadline {
            child.kill().expect("kill");
            child.wait().expect("reap");
            panic!("strom {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn storage_format_sets_the_cluster_id_and_a_directory_of_another_node_is_refused() {
    let (ok, cluster_id) = run_strom(&["storage", "random-uuid"]);
    assert!(ok);
    let cluster_id = cluster_id.trim().to_string();
    assert_eq!(cluster_id.len(), 22, "{cluster_id}");

    let dir = tempfile::tempdir().expect("temp dir");
    let log_dirs = format!("log.dirs={}", dir.path().display());
    let format = |id: &str, extra: &[&str]| {
        let mut args = vec!["storage", "format", "-t", id, "--override", &log_dirs];
        args.extend_from_slice(extra);
        run_strom(&args)
    };
    let (ok, output) = format(&cluster_id, &[]);
    assert!(ok, "{output}");
    let (ok, output) = format(&cluster_id, &[]);
    assert!(!ok && output.contains("already formatted"), "{output}");
    let (ok, output) = format(&cluster_id, &["--ignore-formatted"]);
    assert!(ok, "{output}");
    let (ok, output) = format("not-a-cluster-id", &["--ignore-formatted"]);
    assert!(!ok && output.contains("valid UUID"), "{output}");

    // The broker starts with the formatted cluster id...
    let mut broker = StromProcess::start(&[("log.dirs", &dir.path().display().to_string())]);
    broker.wait_until(
        "the broker reports its cluster id",
        Duration::from_secs(20),
        || broker.log_contents().contains("strom broker started"),
    );
    assert!(
        broker.log_contents().contains(&cluster_id),
        "the broker should run with the formatted cluster id {cluster_id}:\n{}",
        broker.log_contents()
    );
    broker.terminate();
    // ...and a node with another id refuses the directory, naming both ids.
    let (success, log) = StromProcess::run_expecting_exit(
        &[
            ("log.dirs", &dir.path().display().to_string()),
            ("node.id", "2"),
        ],
        &[],
    );
    assert!(
        !success,
        "a directory of node 1 was accepted by node 2:\n{log}"
    );
    assert!(
        log.contains("node.id 1") && log.contains("node id 2"),
        "the refusal should name both node ids:\n{log}"
    );
    let (ok, info) = run_strom(&["storage", "info", "--override", &log_dirs]);
    assert!(
        ok && info.contains(&cluster_id) && info.contains("node.id=1"),
        "{info}"
    );
}
