//! Fetch behaviour of a `strom` process as seen by librdkafka consumers: out-of-range offsets,
//! batches larger than the fetch limits, long polling, large records, concurrent producers and
//! many topics at once.

// Test code. (clippy.toml's allow-*-in-tests does not reach integration-test helpers.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{StromProcess, OP_TIMEOUT, WAIT_DEADLINE};
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

async fn send(producer: &FutureProducer, topic: &str, partition: i32, payload: &[u8]) -> i64 {
    producer
        .send(
            FutureRecord::<(), _>::to(topic)
                .partition(partition)
                .payload(payload),
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|(error, _)| panic!("send to {topic}/{partition} failed: {error}"))
        .offset
}

#[tokio::test]
async fn fetch_beyond_the_end_reports_offset_out_of_range() {
    let broker = StromProcess::start(&[]);
    let producer = broker.producer(&[]);
    for i in 0..3 {
        send(&producer, "short", 0, format!("r{i}").as_bytes()).await;
    }
    let consumer = broker.consumer(None, &[("auto.offset.reset", "error")]);
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset("short", 0, Offset::Offset(1000))
        .expect("add partition");
    consumer.assign(&assignment).expect("assign");
    let deadline = Instant::now() + WAIT_DEADLINE;
    loop {
        assert!(
            Instant::now() < deadline,
            "no OffsetOutOfRange error reported"
        );
        match consumer.poll(Duration::from_millis(200)) {
            // librdkafka surfaces the broker's OFFSET_OUT_OF_RANGE as a failed auto reset.
            Some(Err(KafkaError::MessageConsumption(code))) => {
                assert!(
                    matches!(
                        code,
                        RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange
                    ),
                    "unexpected error code {code:?}"
                );
                break;
            }
            Some(Err(other)) => panic!("unexpected consumer error {other}"),
            Some(Ok(message)) => panic!("unexpected message at offset {}", message.offset()),
            None => {}
        }
    }
    drop(consumer);

    // With auto.offset.reset=earliest the consumer restarts from the log start.
    let consumer = broker.consumer(None, &[("auto.offset.reset", "earliest")]);
    consumer.assign(&assignment).expect("assign");
    let deadline = Instant::now() + WAIT_DEADLINE;
    loop {
        assert!(
            Instant::now() < deadline,
            "no message after reset to earliest"
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                assert_eq!((message.offset(), message.payload()), (0, Some(&b"r0"[..])));
                break;
            }
            Some(Err(error)) => panic!("unexpected consumer error {error}"),
            None => {}
        }
    }
}

#[tokio::test]
async fn fetch_from_the_middle_of_a_batch() {
    fetch_from_middle("none").await;
}

#[tokio::test]
async fn fetch_from_the_middle_of_a_compressed_batch() {
    fetch_from_middle("gzip").await;
}

async fn fetch_from_middle(codec: &str) {
    let broker = StromProcess::start(&[]);
    let producer = broker.producer(&[("linger.ms", "100"), ("compression.type", codec)]);
    let mut deliveries = Vec::new();
    for i in 0..20 {
        let payload = format!("m{i}");
        let record = FutureRecord::<(), _>::to("middle")
            .partition(0)
            .payload(&payload);
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
    let messages = broker.consume_partition("middle", 0, Offset::Offset(13), 7, WAIT_DEADLINE);
    let got: Vec<(i64, String)> = messages
        .iter()
        .map(|m| {
            (
                m.offset(),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
            )
        })
        .collect();
    let want: Vec<(i64, String)> = (13..20).map(|i| (i, format!("m{i}"))).collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn batches_larger_than_fetch_limits_still_make_progress() {
    let broker = StromProcess::start(&[]);
    let producer = broker.producer(&[]);
    let big = vec![b'z'; 100_000];
    for _ in 0..5 {
        send(&producer, "chunky", 0, &big).await;
    }
    // Kafka returns the first batch even when it exceeds the fetch limits (KIP-74).
    let consumer = broker.consumer(
        None,
        &[
            ("message.max.bytes", "1000"),
            ("fetch.max.bytes", "1024"),
            ("max.partition.fetch.bytes", "1024"),
        ],
    );
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset("chunky", 0, Offset::Beginning)
        .expect("add partition");
    consumer.assign(&assignment).expect("assign");
    let deadline = Instant::now() + WAIT_DEADLINE;
    let mut offsets = Vec::new();
    while offsets.len() < 5 {
        assert!(Instant::now() < deadline, "only got offsets {offsets:?}");
        if let Some(result) = consumer.poll(Duration::from_millis(200)) {
            let message = result.expect("consume");
            assert_eq!(message.payload().map(<[u8]>::len), Some(big.len()));
            offsets.push(message.offset());
        }
    }
    assert_eq!(offsets, vec![0, 1, 2, 3, 4]);
}

#[tokio::test]
async fn large_record_round_trip() {
    let broker = StromProcess::start(&[]);
    let producer = broker.producer(&[]);
    // Under librdkafka's producer limit (message.max.bytes 1000000) and Kafka's broker default
    // (1048588), including batch overhead.
    let payload: Vec<u8> = (0..900_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(send(&producer, "large", 0, &payload).await, 0);
    let messages = broker.consume_n("large", 1, WAIT_DEADLINE);
    assert!(
        messages[0].payload() == Some(payload.as_slice()),
        "large payload differs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_consumer_gets_record_produced_later() {
    let broker = StromProcess::start(&[]);
    let producer = broker.producer(&[]);
    send(&producer, "later", 0, b"first").await;
    let consumer = broker.consumer(None, &[("fetch.wait.max.ms", "500")]);
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset("later", 0, Offset::Offset(1))
        .expect("add partition");
    consumer.assign(&assignment).expect("assign");
    // Nothing there yet: polls come back empty.
    for _ in 0..3 {
        if let Some(result) = consumer.poll(Duration::from_millis(200)) {
            panic!(
                "unexpected result on an idle partition: {:?}",
                result.map(|m| m.offset())
            );
        }
    }
    send(&producer, "later", 0, b"second").await;
    let deadline = Instant::now() + WAIT_DEADLINE;
    loop {
        assert!(
            Instant::now() < deadline,
            "record produced later never arrived"
        );
        if let Some(result) = consumer.poll(Duration::from_millis(200)) {
            let message = result.expect("consume");
            assert_eq!(
                (message.offset(), message.payload()),
                (1, Some(&b"second"[..]))
            );
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_producers_interleave_without_loss() {
    let broker = StromProcess::start(&[]);
    let mut tasks = Vec::new();
    for producer_id in 0..4 {
        let producer = broker.producer(&[("acks", "all")]);
        tasks.push(tokio::spawn(async move {
            let mut deliveries = Vec::new();
            for i in 0..250 {
                let payload = format!("{producer_id}:{i}");
                let record = FutureRecord::<(), _>::to("shared")
                    .partition(0)
                    .payload(&payload);
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
        }));
    }
    for task in tasks {
        task.await.expect("producer task");
    }
    let messages = broker.consume_n("shared", 1000, WAIT_DEADLINE);
    let mut per_producer: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for (i, message) in messages.iter().enumerate() {
        assert_eq!(
            message.offset(),
            i64::try_from(i).expect("fits"),
            "offsets are dense"
        );
        let text = std::str::from_utf8(message.payload().expect("payload")).expect("utf8");
        let (producer_id, number) = text.split_once(':').expect("id:number");
        per_producer
            .entry(producer_id.parse().expect("producer id"))
            .or_default()
            .push(number.parse().expect("number"));
    }
    assert_eq!(per_producer.len(), 4);
    for (producer_id, numbers) in per_producer {
        assert_eq!(
            numbers,
            (0..250).collect::<Vec<_>>(),
            "producer {producer_id} order"
        );
    }
    assert_eq!(broker.watermarks("shared", 0), (0, 1000));
}

#[tokio::test]
async fn many_topics_and_partitions() {
    let broker = StromProcess::start(&[("num.partitions", "4")]);
    let producer = broker.producer(&[]);
    let mut deliveries = Vec::new();
    for topic in 0..15 {
        for partition in 0..4 {
            for i in 0..5 {
                let topic_name = format!("many-{topic}");
                let payload = format!("{topic}/{partition}/{i}");
                let record = FutureRecord::<(), _>::to(&topic_name)
                    .partition(partition)
                    .payload(&payload);
                deliveries.push(
                    producer
                        .send_result(record)
                        .map_err(|(e, _)| e)
                        .expect("enqueue"),
                );
            }
        }
    }
    for delivery in deliveries {
        delivery
            .await
            .expect("delivery cancelled")
            .unwrap_or_else(|(error, _)| panic!("send failed: {error}"));
    }
    let consumer = broker.consumer(None, &[]);
    for topic in 0..15 {
        let name = format!("many-{topic}");
        assert_eq!(broker.partition_count(&name), 4);
        for partition in 0..4 {
            let marks = consumer
                .fetch_watermarks(&name, partition, OP_TIMEOUT)
                .expect("watermarks");
            assert_eq!(marks, (0, 5), "{name}/{partition}");
        }
    }
    let messages = broker.consume_n("many-7", 20, WAIT_DEADLINE);
    for message in messages {
        let want = format!("7/{}/{}", message.partition(), message.offset());
        assert_eq!(message.payload(), Some(want.as_bytes()));
    }
}

#[tokio::test]
async fn fetch_returns_after_max_wait_even_below_min_bytes() {
    let broker = StromProcess::start(&[]);
    let producer = broker.producer(&[]);
    send(&producer, "min-bytes", 0, b"tiny").await;
    // The broker must answer when fetch.wait.max.ms expires, with whatever it has.
    let consumer = broker.consumer(
        None,
        &[("fetch.min.bytes", "1000000"), ("fetch.wait.max.ms", "300")],
    );
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset("min-bytes", 0, Offset::Beginning)
        .expect("add partition");
    consumer.assign(&assignment).expect("assign");
    let deadline = Instant::now() + WAIT_DEADLINE;
    loop {
        assert!(Instant::now() < deadline, "small record never delivered");
        if let Some(result) = consumer.poll(Duration::from_millis(200)) {
            let message = result.expect("consume");
            assert_eq!(message.payload(), Some(&b"tiny"[..]));
            break;
        }
    }
}
