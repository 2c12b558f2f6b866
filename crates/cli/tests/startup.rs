//! Startup and configuration handling of the `strom` binary: `--override` takes precedence over
//! the properties file, and invalid configurations make the process exit with an error.

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
