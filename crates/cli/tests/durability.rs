//! Durability of a `strom` process across restarts: clean restarts keep records, topics and
//! configs; SIGKILL during acks=all produce with fsync-per-message loses no acknowledged record;
//! a torn or garbage-extended segment tail is recovered on startup.

// Test code. (clippy.toml's allow-*-in-tests does not reach integration-test helpers.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{open_append, StromProcess, WAIT_DEADLINE};
use rdkafka::admin::{NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::Offset;

async fn send_one(producer: &FutureProducer, topic: &str, partition: i32, payload: &str) -> i64 {
    producer
        .send(
            FutureRecord::<(), _>::to(topic)
                .partition(partition)
                .payload(payload),
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|(error, _)| panic!("send {payload:?} failed: {error}"))
        .offset
}

fn payloads(messages: &[rdkafka::message::OwnedMessage]) -> Vec<String> {
    messages
        .iter()
        .map(|m| String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned())
        .collect()
}

async fn restart_keeps_everything(graceful: bool) {
    let mut broker = StromProcess::start(&[("log.flush.interval.messages", "1")]);
    let admin = broker.admin();
    let topic = NewTopic::new("kept", 2, TopicReplication::Fixed(1)).set("retention.ms", "7777777");
    let results = admin
        .create_topics([&topic], &StromProcess::admin_options())
        .await
        .expect("create_topics request");
    assert!(results[0].is_ok(), "create failed: {results:?}");
    drop(admin);
    let producer = broker.producer(&[("acks", "all")]);
    for i in 0..20 {
        send_one(&producer, "kept", i % 2, &format!("kept {i}")).await;
    }
    send_one(&producer, "auto", 0, "auto-created before restart").await;
    drop(producer);

    if graceful {
        broker.terminate();
        // SIGTERM runs a controlled shutdown: the controller moves leaderships off first.
        assert!(
            broker
                .log_contents()
                .contains("controlled shutdown complete"),
            "no controlled shutdown on SIGTERM:\n{}",
            broker.log_contents()
        );
    }
    broker.restart();

    assert_eq!(broker.partition_count("kept"), 2);
    assert!(broker.topic_names().contains("auto"));
    for partition in 0..2 {
        let messages =
            broker.consume_partition("kept", partition, Offset::Beginning, 10, WAIT_DEADLINE);
        let want: Vec<String> = (0..20)
            .filter(|i| i % 2 == partition)
            .map(|i| format!("kept {i}"))
            .collect();
        assert_eq!(payloads(&messages), want, "partition {partition}");
        assert_eq!(broker.watermarks("kept", partition), (0, 10));
    }
    let auto = broker.consume_n("auto", 1, WAIT_DEADLINE);
    assert_eq!(
        payloads(&auto),
        vec!["auto-created before restart".to_string()]
    );

    let admin = broker.admin();
    let resource = ResourceSpecifier::Topic("kept");
    let described = admin
        .describe_configs([&resource], &StromProcess::admin_options())
        .await
        .expect("describe_configs request");
    let config = described[0].as_ref().expect("describe result");
    assert_eq!(
        config.get("retention.ms").and_then(|e| e.value.as_deref()),
        Some("7777777")
    );

    // Offsets continue where they were.
    let producer = broker.producer(&[("acks", "all")]);
    assert_eq!(send_one(&producer, "kept", 0, "after restart").await, 10);
}

#[tokio::test]
async fn graceful_restart_keeps_records_topics_and_configs() {
    restart_keeps_everything(true).await;
}

#[tokio::test]
async fn kill_9_restart_keeps_records_topics_and_configs() {
    restart_keeps_everything(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_produce_loses_no_acknowledged_record() {
    let mut broker = StromProcess::start(&[("log.flush.interval.messages", "1")]);
    let producer = Arc::new(broker.producer(&[
        ("acks", "all"),
        ("message.timeout.ms", "20000"),
        ("linger.ms", "1"),
    ]));
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));

    let sender = {
        let producer = Arc::clone(&producer);
        let acknowledged = Arc::clone(&acknowledged);
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut deliveries = Vec::new();
            let mut number = 0u64;
            while !stop.load(Ordering::SeqCst) && number < 50_000 {
                // Keep at most ~1000 records in flight so the kill lands mid-stream.
                let in_flight = number - acknowledged.lock().expect("lock").len() as u64;
                if in_flight >= 1000 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    continue;
                }
                let payload = format!("{number}");
                match producer.send_result(
                    FutureRecord::<(), _>::to("crash")
                        .partition(0)
                        .payload(&payload),
                ) {
                    Ok(delivery) => {
                        let acknowledged = Arc::clone(&acknowledged);
                        deliveries.push(tokio::spawn(async move {
                            if let Ok(Ok(_)) = delivery.await {
                                acknowledged.lock().expect("lock").insert(number);
                            }
                        }));
                        number += 1;
                    }
                    // Local queue full: let deliveries drain.
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
            for delivery in deliveries {
                delivery.await.expect("delivery task");
            }
            number
        })
    };

    // Kill the broker once a good number of records are acknowledged, with more in flight.
    let deadline = Instant::now() + WAIT_DEADLINE;
    while acknowledged.lock().expect("lock").len() < 500 {
        assert!(
            Instant::now() < deadline,
            "only {} records acknowledged before the deadline\n--- broker log ---\n{}",
            acknowledged.lock().expect("lock").len(),
            broker.log_contents()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    broker.kill_9();
    let acknowledged_at_kill = acknowledged.lock().expect("lock").len();
    stop.store(true, Ordering::SeqCst);
    broker.restart();
    // Outstanding records are delivered to the restarted broker or time out.
    producer
        .flush(Duration::from_secs(30))
        .expect("flush after restart");
    let sent = sender.await.expect("sender task");
    let acknowledged = acknowledged.lock().expect("lock").clone();
    assert!(acknowledged.len() >= acknowledged_at_kill);
    assert!(
        usize::try_from(sent).expect("fits") > acknowledged_at_kill,
        "the kill did not land mid-stream ({sent} sent, {acknowledged_at_kill} acknowledged)"
    );

    let messages = broker.consume_all("crash", Duration::from_millis(500), WAIT_DEADLINE);
    let present: BTreeSet<u64> = messages
        .iter()
        .map(|m| {
            std::str::from_utf8(m.payload().expect("payload"))
                .expect("utf8")
                .parse()
                .expect("number")
        })
        .collect();
    let lost: Vec<u64> = acknowledged.difference(&present).copied().collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged records lost (of {} acknowledged, {sent} sent), first: {:?}",
        lost.len(),
        acknowledged.len(),
        &lost[..lost.len().min(10)]
    );
    // Offsets are dense.
    for (i, message) in messages.iter().enumerate() {
        assert_eq!(message.offset(), i64::try_from(i).expect("fits"));
    }
}

/// The newest `.log` segment file in a partition directory.
fn last_segment(partition_dir: &Path) -> PathBuf {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(partition_dir)
        .expect("read partition dir")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    logs.sort();
    logs.pop().expect("a .log segment file")
}

/// Byte positions where each complete batch of a segment file starts, plus the end of the last
/// complete batch (batch = baseOffset i64, batchLength i32, then batchLength bytes).
fn batch_boundaries(bytes: &[u8]) -> (Vec<usize>, usize) {
    let mut starts = Vec::new();
    let mut position = 0usize;
    while position + 12 <= bytes.len() {
        let length_bytes: [u8; 4] = bytes[position + 8..position + 12]
            .try_into()
            .expect("4 bytes");
        let length = i32::from_be_bytes(length_bytes);
        let Ok(length) = usize::try_from(length) else {
            break;
        };
        if length == 0 || position + 12 + length > bytes.len() {
            break;
        }
        starts.push(position);
        position += 12 + length;
    }
    (starts, position)
}

async fn produce_ten_batches(broker: &StromProcess, topic: &str) {
    let producer = broker.producer(&[("acks", "all")]);
    for i in 0..10 {
        assert_eq!(send_one(&producer, topic, 0, &format!("torn {i}")).await, i);
    }
}

#[tokio::test]
async fn torn_tail_is_truncated_on_startup() {
    let mut broker = StromProcess::start(&[("log.flush.interval.messages", "1")]);
    produce_ten_batches(&broker, "torn").await;
    broker.kill_9();

    let segment = last_segment(&broker.partition_dir("torn", 0));
    let bytes = std::fs::read(&segment).expect("read segment");
    let (starts, end) = batch_boundaries(&bytes);
    assert_eq!(
        starts.len(),
        10,
        "expected one batch per record in {}",
        segment.display()
    );
    let last_start = starts[9];
    let cut_at = last_start + (end - last_start) / 2;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .expect("open segment for truncation");
    file.set_len(u64::try_from(cut_at).expect("fits"))
        .expect("truncate segment");
    drop(file);

    broker.restart();
    let messages = broker.consume_n("torn", 9, WAIT_DEADLINE);
    let want: Vec<String> = (0..9).map(|i| format!("torn {i}")).collect();
    assert_eq!(payloads(&messages), want);
    assert_eq!(broker.watermarks("torn", 0), (0, 9));

    let producer = broker.producer(&[("acks", "all")]);
    assert_eq!(send_one(&producer, "torn", 0, "after recovery").await, 9);
    let messages = broker.consume_n("torn", 10, WAIT_DEADLINE);
    assert_eq!(messages[9].payload(), Some(&b"after recovery"[..]));
}

#[tokio::test]
async fn garbage_tail_is_truncated_on_startup() {
    let mut broker = StromProcess::start(&[("log.flush.interval.messages", "1")]);
    produce_ten_batches(&broker, "garbage").await;
    broker.kill_9();

    let segment = last_segment(&broker.partition_dir("garbage", 0));
    let mut file = open_append(&segment);
    file.write_all(&[0xAB; 77]).expect("append garbage");
    drop(file);

    broker.restart();
    let messages = broker.consume_n("garbage", 10, WAIT_DEADLINE);
    let want: Vec<String> = (0..10).map(|i| format!("torn {i}")).collect();
    assert_eq!(payloads(&messages), want);
    assert_eq!(broker.watermarks("garbage", 0), (0, 10));

    let producer = broker.producer(&[("acks", "all")]);
    assert_eq!(
        send_one(&producer, "garbage", 0, "after recovery").await,
        10
    );
    let messages = broker.consume_n("garbage", 11, WAIT_DEADLINE);
    assert_eq!(messages[10].payload(), Some(&b"after recovery"[..]));
}

#[tokio::test]
async fn corrupted_last_batch_is_dropped_on_startup() {
    let mut broker = StromProcess::start(&[("log.flush.interval.messages", "1")]);
    produce_ten_batches(&broker, "flipped").await;
    broker.kill_9();

    // Flip a byte inside the last batch's records: its CRC no longer matches.
    let segment = last_segment(&broker.partition_dir("flipped", 0));
    let mut bytes = std::fs::read(&segment).expect("read segment");
    let (starts, end) = batch_boundaries(&bytes);
    assert_eq!(starts.len(), 10);
    bytes[end - 2] ^= 0xFF;
    std::fs::write(&segment, &bytes).expect("rewrite segment");

    broker.restart();
    let messages = broker.consume_n("flipped", 9, WAIT_DEADLINE);
    let want: Vec<String> = (0..9).map(|i| format!("torn {i}")).collect();
    assert_eq!(payloads(&messages), want);
    assert_eq!(broker.watermarks("flipped", 0), (0, 9));
}

#[tokio::test]
async fn admin_changes_survive_restart() {
    let mut broker = StromProcess::start(&[]);
    let admin = broker.admin();
    let options = StromProcess::admin_options();
    for name in ["grown", "gone", "trimmed"] {
        let topic = NewTopic::new(name, 2, TopicReplication::Fixed(1));
        let results = admin
            .create_topics([&topic], &options)
            .await
            .expect("create_topics request");
        assert!(results[0].is_ok(), "create {name} failed: {results:?}");
    }
    let grow = rdkafka::admin::NewPartitions::new("grown", 4);
    let results = admin
        .create_partitions([&grow], &options)
        .await
        .expect("create_partitions request");
    assert!(results[0].is_ok(), "create_partitions failed: {results:?}");
    let alter = rdkafka::admin::AlterConfig::new(ResourceSpecifier::Topic("grown"))
        .set("retention.ms", "4444444");
    let results = admin
        .alter_configs([&alter], &options)
        .await
        .expect("alter_configs request");
    assert!(results[0].is_ok(), "alter_configs failed: {results:?}");
    let results = admin
        .delete_topics(&["gone"], &options)
        .await
        .expect("delete_topics request");
    assert!(results[0].is_ok(), "delete failed: {results:?}");

    let producer = broker.producer(&[("acks", "all")]);
    for i in 0..6 {
        send_one(&producer, "trimmed", 0, &format!("trim {i}")).await;
    }
    let mut request = rdkafka::TopicPartitionList::new();
    request
        .add_partition_offset("trimmed", 0, Offset::Offset(4))
        .expect("add partition");
    let result = admin
        .delete_records(&request, &options)
        .await
        .expect("delete_records request");
    let element = result
        .find_partition("trimmed", 0)
        .expect("partition in result");
    element.error().expect("delete_records partition error");
    drop(admin);
    drop(producer);
    broker.wait_until("deleted topic leaves metadata", WAIT_DEADLINE, || {
        !broker.topic_names().contains("gone")
    });

    broker.restart();

    assert_eq!(broker.partition_count("grown"), 4);
    let names = broker.topic_names();
    assert!(
        !names.contains("gone"),
        "deleted topic came back after restart: {names:?}"
    );
    assert_eq!(
        broker.watermarks("trimmed", 0),
        (4, 6),
        "log start offset survives restart"
    );
    let messages = broker.consume_partition("trimmed", 0, Offset::Beginning, 2, WAIT_DEADLINE);
    assert_eq!(
        payloads(&messages),
        vec!["trim 4".to_string(), "trim 5".to_string()]
    );
    let admin = broker.admin();
    let resource = ResourceSpecifier::Topic("grown");
    let described = admin
        .describe_configs([&resource], &StromProcess::admin_options())
        .await
        .expect("describe_configs request");
    let config = described[0].as_ref().expect("describe result");
    assert_eq!(
        config.get("retention.ms").and_then(|e| e.value.as_deref()),
        Some("4444444")
    );
    // A topic of the deleted name can be created again, empty.
    let topic = NewTopic::new("gone", 1, TopicReplication::Fixed(1));
    let results = admin
        .create_topics([&topic], &StromProcess::admin_options())
        .await
        .expect("create_topics request");
    assert!(results[0].is_ok(), "re-create failed: {results:?}");
    assert_eq!(broker.watermarks("gone", 0), (0, 0));
}

#[tokio::test]
async fn retention_progress_survives_restart() {
    let mut broker = StromProcess::start(&[
        ("log.segment.bytes", "1024"),
        ("log.retention.bytes", "2048"),
        ("log.retention.check.interval.ms", "200"),
    ]);
    let producer = broker.producer(&[("acks", "all")]);
    for i in 0..60 {
        send_one(
            &producer,
            "retained",
            0,
            &format!("{i:05}-{}", "p".repeat(200)),
        )
        .await;
    }
    drop(producer);
    let mut low = 0;
    broker.wait_until(
        "retention advances the low watermark",
        WAIT_DEADLINE,
        || {
            low = broker.watermarks("retained", 0).0;
            low > 0
        },
    );
    broker.restart();
    let (low_after, high_after) = broker.watermarks("retained", 0);
    assert!(
        low_after >= low,
        "low watermark went back from {low} to {low_after}"
    );
    assert_eq!(high_after, 60);
}

/// Finds the offset of the first record with timestamp >= `timestamp` via ListOffsets.
fn offset_for_time(broker: &StromProcess, topic: &str, timestamp: i64) -> Offset {
    use rdkafka::consumer::Consumer;
    let consumer = broker.consumer(None, &[]);
    let mut query = rdkafka::TopicPartitionList::new();
    query
        .add_partition_offset(topic, 0, Offset::Offset(timestamp))
        .expect("add partition");
    let answer = consumer
        .offsets_for_times(query, common::OP_TIMEOUT)
        .expect("offsets_for_times");
    let element = answer
        .find_partition(topic, 0)
        .expect("partition in answer");
    element.offset()
}

#[tokio::test]
async fn many_segments_and_lost_indexes_are_recovered_after_crash() {
    let mut broker = StromProcess::start(&[("log.segment.bytes", "1024")]);
    let producer = broker.producer(&[("acks", "all")]);
    let base = common::now_millis() - 600_000;
    for i in 0..120i64 {
        let payload = format!("{i:04}-{}", "s".repeat(100));
        let delivered = producer
            .send(
                FutureRecord::<(), _>::to("segmented")
                    .partition(0)
                    .payload(&payload)
                    .timestamp(base + i * 1000),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|(error, _)| panic!("send {i} failed: {error}"));
        assert_eq!(delivered.offset, i);
    }
    drop(producer);
    broker.kill_9();

    let partition_dir = broker.partition_dir("segmented", 0);
    let mut log_files = 0;
    for entry in std::fs::read_dir(&partition_dir).expect("read partition dir") {
        let path = entry.expect("dir entry").path();
        match path.extension().and_then(|ext| ext.to_str()) {
            Some("log") => log_files += 1,
            // Kafka rebuilds missing offset and time indexes on startup.
            Some("index" | "timeindex") => std::fs::remove_file(&path).expect("remove index"),
            _ => {}
        }
    }
    assert!(log_files >= 10, "expected many segments, found {log_files}");

    broker.restart();
    assert_eq!(broker.watermarks("segmented", 0), (0, 120));
    let all = broker.consume_n("segmented", 120, WAIT_DEADLINE);
    for (i, message) in all.iter().enumerate() {
        let want = format!("{i:04}-");
        assert_eq!(message.offset(), i64::try_from(i).expect("fits"));
        assert!(message
            .payload()
            .unwrap_or_default()
            .starts_with(want.as_bytes()));
    }
    for start in [1i64, 37, 64, 119] {
        let messages =
            broker.consume_partition("segmented", 0, Offset::Offset(start), 1, WAIT_DEADLINE);
        assert_eq!(messages[0].offset(), start, "fetch at {start}");
    }
    assert_eq!(
        offset_for_time(&broker, "segmented", base + 73_000),
        Offset::Offset(73)
    );
    assert_eq!(
        offset_for_time(&broker, "segmented", base + 73_001),
        Offset::Offset(74)
    );
    let producer = broker.producer(&[("acks", "all")]);
    assert_eq!(send_one(&producer, "segmented", 0, "after").await, 120);
}
