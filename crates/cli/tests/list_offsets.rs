//! ListOffsets and DeleteRecords against a `strom` process: earliest/latest watermarks, offset
//! lookup by timestamp, and advancing the log start offset with DeleteRecords.

// Test code. (clippy.toml's allow-*-in-tests does not reach integration-test helpers.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{now_millis, StromProcess, OP_TIMEOUT, WAIT_DEADLINE};
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

/// Produces records numbered `numbers` to partition 0, one at a time (so each is its own batch),
/// with timestamps `base + i * 1000`; record `i` must land at offset `i`.
async fn produce_numbered(
    producer: &FutureProducer,
    topic: &str,
    numbers: std::ops::Range<i64>,
    base_timestamp: i64,
) {
    for i in numbers {
        let payload = format!("record {i}");
        let delivered = producer
            .send(
                FutureRecord::<(), _>::to(topic)
                    .partition(0)
                    .payload(&payload)
                    .timestamp(base_timestamp + i * 1000),
                Duration::from_secs(5),
            )
            .await
            .unwrap_or_else(|(error, _)| panic!("send {i} failed: {error}"));
        assert_eq!(delivered.offset, i);
    }
}

#[tokio::test]
async fn watermarks_track_produced_records() {
    let broker = StromProcess::start(&[]);
    let producer = broker.producer(&[]);
    produce_numbered(&producer, "marks", 0..1, now_millis()).await;
    assert_eq!(broker.watermarks("marks", 0), (0, 1));
    produce_numbered(&producer, "marks", 1..11, now_millis()).await;
    assert_eq!(broker.watermarks("marks", 0), (0, 11));
}

#[tokio::test]
async fn offsets_for_times_returns_first_offset_at_or_after_timestamp() {
    let broker = StromProcess::start(&[]);
    let producer = broker.producer(&[]);
    let base = now_millis() - 600_000;
    produce_numbered(&producer, "timed", 0..10, base).await;

    let consumer = broker.consumer(None, &[]);
    let lookup = |timestamp: i64| -> Offset {
        let mut query = TopicPartitionList::new();
        query
            .add_partition_offset("timed", 0, Offset::Offset(timestamp))
            .expect("add partition");
        let answer = consumer
            .offsets_for_times(query, OP_TIMEOUT)
            .expect("offsets_for_times");
        let element = answer
            .find_partition("timed", 0)
            .expect("partition in answer");
        element.error().expect("no per-partition error");
        element.offset()
    };
    assert_eq!(lookup(base - 1), Offset::Offset(0));
    assert_eq!(lookup(base), Offset::Offset(0));
    assert_eq!(lookup(base + 1), Offset::Offset(1));
    assert_eq!(lookup(base + 2500), Offset::Offset(3));
    assert_eq!(lookup(base + 9000), Offset::Offset(9));
    // No record at or after the timestamp: Kafka answers offset -1.
    assert_eq!(lookup(base + 9001), Offset::End);
}

#[tokio::test]
async fn offsets_for_times_inside_a_multi_record_batch() {
    offsets_for_times_inside_batch("none").await;
}

#[tokio::test]
async fn offsets_for_times_inside_a_compressed_batch() {
    offsets_for_times_inside_batch("lz4").await;
}

async fn offsets_for_times_inside_batch(codec: &str) {
    let broker = StromProcess::start(&[]);
    // One batch holding all records: the broker must look inside the batch.
    let producer = broker.producer(&[("linger.ms", "200"), ("compression.type", codec)]);
    let base = now_millis() - 600_000;
    let mut deliveries = Vec::new();
    for i in 0..10i64 {
        let payload = format!("batched {i}");
        let record = FutureRecord::<(), _>::to("batched")
            .partition(0)
            .payload(&payload)
            .timestamp(base + i * 1000);
        deliveries.push(
            producer
                .send_result(record)
                .map_err(|(e, _)| e)
                .expect("enqueue"),
        );
    }
    for delivery in deliveries {
        delivery
            .await
            .expect("delivery cancelled")
            .unwrap_or_else(|(error, _)| panic!("send failed: {error}"));
    }
    let consumer = broker.consumer(None, &[]);
    let mut query = TopicPartitionList::new();
    query
        .add_partition_offset("batched", 0, Offset::Offset(base + 4500))
        .expect("add partition");
    let answer = consumer
        .offsets_for_times(query, OP_TIMEOUT)
        .expect("offsets_for_times");
    let element = answer
        .find_partition("batched", 0)
        .expect("partition in answer");
    assert_eq!(element.offset(), Offset::Offset(5));
}

#[tokio::test]
async fn delete_records_advances_low_watermark() {
    let broker = StromProcess::start(&[]);
    let producer = broker.producer(&[]);
    produce_numbered(&producer, "trimmed", 0..10, now_millis()).await;

    let admin = broker.admin();
    let mut request = TopicPartitionList::new();
    request
        .add_partition_offset("trimmed", 0, Offset::Offset(4))
        .expect("add partition");
    let result = admin
        .delete_records(&request, &StromProcess::admin_options())
        .await
        .expect("delete_records request");
    let element = result
        .find_partition("trimmed", 0)
        .expect("partition in result");
    element.error().expect("delete_records partition error");
    assert_eq!(element.offset(), Offset::Offset(4), "new low watermark");
    assert_eq!(broker.watermarks("trimmed", 0), (4, 10));

    let remaining = broker.consume_n("trimmed", 6, WAIT_DEADLINE);
    let offsets: Vec<i64> = remaining.iter().map(Message::offset).collect();
    assert_eq!(offsets, (4..10).collect::<Vec<_>>());
    assert_eq!(remaining[0].payload(), Some(&b"record 4"[..]));

    // Offset::End deletes everything.
    let mut request = TopicPartitionList::new();
    request
        .add_partition_offset("trimmed", 0, Offset::End)
        .expect("add partition");
    let result = admin
        .delete_records(&request, &StromProcess::admin_options())
        .await
        .expect("delete_records request");
    let element = result
        .find_partition("trimmed", 0)
        .expect("partition in result");
    element.error().expect("delete_records partition error");
    assert_eq!(broker.watermarks("trimmed", 0), (10, 10));

    // Beyond the high watermark is OFFSET_OUT_OF_RANGE.
    let mut request = TopicPartitionList::new();
    request
        .add_partition_offset("trimmed", 0, Offset::Offset(50))
        .expect("add partition");
    let result = admin
        .delete_records(&request, &StromProcess::admin_options())
        .await;
    let out_of_range = match result {
        Ok(list) => list
            .find_partition("trimmed", 0)
            .expect("partition in result")
            .error()
            .is_err(),
        Err(_) => true,
    };
    assert!(
        out_of_range,
        "delete_records beyond high watermark must fail"
    );

    // Producing continues at the old end.
    produce_numbered(&producer, "trimmed", 10..11, now_millis()).await;
    assert_eq!(broker.watermarks("trimmed", 0), (10, 11));
}
