//! Storage failures as clients see them, on a real full disk: the broker's log directory is a
//! small tmpfs (the metadata log lives elsewhere, `metadata.log.dir`, as a Kafka deployment would
//! keep it). A partition that cannot be written goes offline (one ERROR line in the broker log),
//! clients get KAFKA_STORAGE_ERROR for it from Produce, Fetch, ListOffsets and Metadata, a topic
//! whose partitions cannot be created fails CreateTopics with that error, and the broker goes on
//! serving the partitions that still work. Mounting needs root: without it the test says it
//! skipped and passes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::typed::TypedClient;
use common::{StromProcess, OP_TIMEOUT, WAIT_DEADLINE};
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureRecord;
use strom_protocol::messages::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
use strom_protocol::messages::fetch_response::FetchResponse;
use strom_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic,
};
use strom_protocol::messages::list_offsets_response::ListOffsetsResponse;
use strom_protocol::messages::metadata_request::{MetadataRequest, MetadataRequestTopic};
use strom_protocol::messages::metadata_response::MetadataResponse;
use strom_protocol::messages::produce_request::{
    PartitionProduceData, ProduceRequest, TopicProduceData,
};
use strom_protocol::messages::produce_response::ProduceResponse;
use strom_protocol::records::{BatchBuilder, Compression};

const PRODUCE: i16 = 0;
const FETCH: i16 = 1;
const LIST_OFFSETS: i16 = 2;
const METADATA: i16 = 3;
const KAFKA_STORAGE_ERROR: i16 = 56;

/// A tmpfs mounted for the test, unmounted (lazily, should a file still be open) on drop.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (mount's syntax, e.g. `4m`) at `path`; `None` when mounting is
    /// not allowed here.
    fn mount(path: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).expect("create mount point");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output();
        match mounted {
            Ok(output) if output.status.success() => Some(Tmpfs {
                path: path.to_path_buf(),
            }),
            Ok(output) => {
                eprintln!(
                    "cannot mount a tmpfs: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                );
                None
            }
            Err(error) => {
                eprintln!("cannot run mount: {error}");
                None
            }
        }
    }

    /// Writes a file until the file system is full.
    fn fill(&self) {
        let mut filler = File::create(self.path.join("filler")).expect("create filler file");
        let chunk = vec![0x5a_u8; 64 * 1024];
        loop {
            match filler.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(error) => {
                    assert_eq!(error.raw_os_error(), Some(libc::ENOSPC), "filling: {error}");
                    break;
                }
            }
        }
        // The last page of the filler may have taken a partial chunk: write byte by byte to the end.
        while filler.write(&[0x5a]).is_ok_and(|written| written == 1) {}
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn one_record(value: &[u8]) -> Bytes {
    let mut batch = BatchBuilder::new(0, Compression::None, 0);
    batch.push(0, None, Some(Bytes::copy_from_slice(value)), Vec::new());
    batch.build()
}

fn produce_error(client: &mut TypedClient, topic: &str) -> i16 {
    let request = ProduceRequest {
        acks: -1,
        timeout_ms: 10_000,
        topic_data: vec![TopicProduceData {
            name: topic.into(),
            partition_data: vec![PartitionProduceData {
                index: 0,
                records: Some(one_record(&[7; 100_000])),
            }],
        }],
        ..Default::default()
    };
    let response: ProduceResponse = client.call(PRODUCE, 9, &request);
    response.responses[0].partition_responses[0].error_code
}

fn fetch_error(client: &mut TypedClient, topic: &str) -> i16 {
    let request = FetchRequest {
        replica_id: -1,
        max_wait_ms: 0,
        max_bytes: 1 << 20,
        topics: vec![FetchTopic {
            topic: topic.into(),
            partitions: vec![FetchPartition {
                partition: 0,
                partition_max_bytes: 1 << 20,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let response: FetchResponse = client.call(FETCH, 12, &request);
    response.responses[0].partitions[0].error_code
}

fn list_offsets_error(client: &mut TypedClient, topic: &str) -> i16 {
    let request = ListOffsetsRequest {
        replica_id: -1,
        topics: vec![ListOffsetsTopic {
            name: topic.into(),
            partitions: vec![ListOffsetsPartition {
                partition_index: 0,
                timestamp: -1,
                ..Default::default()
            }],
        }],
        ..Default::default()
    };
    let response: ListOffsetsResponse = client.call(LIST_OFFSETS, 7, &request);
    response.topics[0].partitions[0].error_code
}

/// The error code and offline replicas Metadata reports for partition 0 of `topic`.
fn metadata_of(client: &mut TypedClient, topic: &str) -> (i16, Vec<i32>) {
    let request = MetadataRequest {
        topics: Some(vec![MetadataRequestTopic {
            name: Some(topic.into()),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let response: MetadataResponse = client.call(METADATA, 12, &request);
    let partition = &response.topics[0].partitions[0];
    (partition.error_code, partition.offline_replicas.clone())
}

/// Waits (bounded) until `path` holds `expected` as its last line.
fn wait_for_checkpoint(path: &Path, expected: &str) {
    let deadline = Instant::now() + WAIT_DEADLINE;
    loop {
        let contents = std::fs::read_to_string(path).unwrap_or_default();
        if contents.lines().last() == Some(expected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} never held {expected}: {contents:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn a_full_disk_takes_partitions_offline_with_kafka_storage_error() {
    let root = tempfile::tempdir().expect("temp dir");
    let data = root.path().join("data");
    // Declared before the broker: dropped (unmounted) after the broker process is gone.
    let Some(disk) = Tmpfs::mount(&data, "8m") else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let metadata_dir = root.path().join("metadata");
    let mut broker = StromProcess::start(&[
        ("log.dirs", data.to_str().expect("utf-8 path")),
        (
            "metadata.log.dir",
            metadata_dir.to_str().expect("utf-8 path"),
        ),
        ("offsets.topic.num.partitions", "1"),
    ]);
    let admin = broker.admin();
    let options = AdminOptions::new().request_timeout(Some(OP_TIMEOUT));
    let topics = [
        NewTopic::new("healthy", 1, TopicReplication::Fixed(1)),
        NewTopic::new("full", 1, TopicReplication::Fixed(1)),
    ];
    for result in admin
        .create_topics(&topics, &options)
        .await
        .expect("create topics")
    {
        result.expect("topic created");
    }

    // Records in "healthy", their high watermark checkpointed: nothing more to write there.
    let producer = broker.producer(&[("retries", "0"), ("acks", "all")]);
    for i in 0..3 {
        producer
            .send(
                FutureRecord::<(), _>::to("healthy")
                    .partition(0)
                    .payload(format!("h{i}").as_bytes()),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|(error, _)| panic!("produce to healthy: {error}"));
    }
    wait_for_checkpoint(
        &data.join("healthy-0").join("replication-offset-checkpoint"),
        "3",
    );

    disk.fill();

    // The first append that needs space fails: the client sees KAFKA_STORAGE_ERROR.
    let delivery = producer
        .send(
            FutureRecord::<(), _>::to("full")
                .partition(0)
                .payload(&[1_u8; 100_000][..]),
            Duration::from_secs(10),
        )
        .await;
    match delivery {
        Err((KafkaError::MessageProduction(RDKafkaErrorCode::KafkaStorageError), _)) => {}
        other => panic!(
            "expected KafkaStorageError, got {other:?}\n--- broker log ---\n{}",
            broker.log_contents()
        ),
    }

    // From now on the partition is offline: every request for it says so.
    let mut client = TypedClient::connect(&broker, "storage-errors");
    assert_eq!(produce_error(&mut client, "full"), KAFKA_STORAGE_ERROR);
    assert_eq!(fetch_error(&mut client, "full"), KAFKA_STORAGE_ERROR);
    assert_eq!(list_offsets_error(&mut client, "full"), KAFKA_STORAGE_ERROR);
    assert_eq!(
        metadata_of(&mut client, "full"),
        (KAFKA_STORAGE_ERROR, vec![1])
    );

    // A topic whose partition directory cannot be written is not reported as created.
    let created = admin
        .create_topics(
            &[NewTopic::new("later", 1, TopicReplication::Fixed(1))],
            &options,
        )
        .await
        .expect("create topics request");
    match created.as_slice() {
        [Err((name, RDKafkaErrorCode::KafkaStorageError))] if name == "later" => {}
        other => panic!(
            "expected KafkaStorageError for 'later', got {other:?}\n--- broker log ---\n{}",
            broker.log_contents()
        ),
    }
    assert_eq!(metadata_of(&mut client, "later").0, KAFKA_STORAGE_ERROR);

    // The broker goes on serving what still works.
    assert_eq!(metadata_of(&mut client, "healthy"), (0, vec![]));
    let messages =
        broker.consume_partition("healthy", 0, rdkafka::Offset::Beginning, 3, WAIT_DEADLINE);
    assert_eq!(messages.len(), 3);
    broker.assert_running();

    // One ERROR line for the failed partition, however many requests it refused since.
    let log = broker.log_contents();
    let errors_about = |topic: &str| {
        log.lines()
            .filter(|line| line.contains("ERROR") && line.contains(&format!("{topic}-0")))
            .count()
    };
    assert_eq!(errors_about("full"), 1, "--- broker log ---\n{log}");
    assert_eq!(errors_about("later"), 1, "--- broker log ---\n{log}");
    drop(broker);
}
