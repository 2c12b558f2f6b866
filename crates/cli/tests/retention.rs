//! Log retention in a `strom` process: with tiny segments, size- and time-based retention delete
//! old segments and the low watermark advances while the remaining records stay readable.

// Test code. (clippy.toml's allow-*-in-tests does not reach integration-test helpers.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{now_millis, StromProcess, WAIT_DEADLINE};
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Offset;

const RECORDS: i64 = 100;

/// Produces `RECORDS` records of ~200 bytes one at a time (one batch each) with `timestamp`.
async fn produce_one_by_one(producer: &FutureProducer, topic: &str, timestamp: i64) {
    for i in 0..RECORDS {
        let payload = format!("{i:05}-{}", "r".repeat(200));
        producer
            .send(
                FutureRecord::<(), _>::to(topic)
                    .partition(0)
                    .payload(&payload)
                    .timestamp(timestamp),
                Duration::from_secs(5),
            )
            .await
            .unwrap_or_else(|(error, _)| panic!("send {i} failed: {error}"));
    }
}

/// Waits until the low watermark passes `at_least` (retention ran), then checks that what is
/// left is readable and that a fresh record is appended at the old end.
async fn assert_retention_kicks_in(
    broker: &StromProcess,
    producer: &FutureProducer,
    topic: &str,
    at_least: i64,
) {
    let mut low = 0;
    broker.wait_until("low watermark advances", WAIT_DEADLINE, || {
        let (current_low, high) = broker.watermarks(topic, 0);
        assert_eq!(
            high, RECORDS,
            "retention must not change the high watermark"
        );
        low = current_low;
        low >= at_least
    });
    assert!(low <= RECORDS);

    let delivered = producer
        .send(
            FutureRecord::<(), _>::to(topic)
                .partition(0)
                .payload("fresh"),
            Duration::from_secs(5),
        )
        .await
        .unwrap_or_else(|(error, _)| panic!("fresh send failed: {error}"));
    assert_eq!(delivered.offset, RECORDS);
    // The earliest readable record is at or above the low watermark and is the right one.
    let first = broker.consume_partition(topic, 0, Offset::Beginning, 1, WAIT_DEADLINE);
    assert!(first[0].offset() >= low, "read below the low watermark");
    let payload = first[0].payload().expect("payload");
    if first[0].offset() < RECORDS {
        let expected_prefix = format!("{:05}-", first[0].offset());
        assert!(payload.starts_with(expected_prefix.as_bytes()));
    } else {
        assert_eq!(payload, b"fresh");
    }
}

#[tokio::test]
async fn size_based_retention_with_broker_settings() {
    let broker = StromProcess::start(&[
        ("log.segment.bytes", "1024"),
        ("log.retention.bytes", "2048"),
        ("log.retention.check.interval.ms", "200"),
    ]);
    let producer = broker.producer(&[]);
    produce_one_by_one(&producer, "by-size", now_millis()).await;
    assert_retention_kicks_in(&broker, &producer, "by-size", 1).await;
}

#[tokio::test]
async fn time_based_retention_with_broker_settings() {
    let broker = StromProcess::start(&[
        ("log.segment.bytes", "1024"),
        ("log.retention.ms", "60000"),
        ("log.retention.check.interval.ms", "200"),
    ]);
    let producer = broker.producer(&[]);
    // Records stamped ten minutes ago are past a one-minute retention as soon as they land.
    produce_one_by_one(&producer, "by-time", now_millis() - 600_000).await;
    // Kafka deletes every expired segment, rolling the active one first: nothing is left.
    assert_retention_kicks_in(&broker, &producer, "by-time", RECORDS).await;
}

#[tokio::test]
async fn size_based_retention_with_topic_settings() {
    let broker = StromProcess::start(&[("log.retention.check.interval.ms", "200")]);
    let admin = broker.admin();
    let topic = NewTopic::new("topic-retention", 1, TopicReplication::Fixed(1))
        .set("segment.bytes", "1024")
        .set("retention.bytes", "2048");
    let results = admin
        .create_topics([&topic], &StromProcess::admin_options())
        .await
        .expect("create_topics request");
    assert!(results[0].is_ok(), "create failed: {results:?}");
    let producer = broker.producer(&[]);
    produce_one_by_one(&producer, "topic-retention", now_millis()).await;
    assert_retention_kicks_in(&broker, &producer, "topic-retention", 1).await;
}
