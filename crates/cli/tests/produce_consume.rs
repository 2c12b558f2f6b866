//! Produce/consume round trips through a real `strom` process: every compression codec, keys,
//! headers (including null header values), tombstones, explicit timestamps and all acks modes.

// Test code. (clippy.toml's allow-*-in-tests does not reach integration-test helpers.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{header_pairs, now_millis, StromProcess, WAIT_DEADLINE};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders, Timestamp};
use rdkafka::producer::FutureRecord;

const RECORDS_PER_CODEC: usize = 60;

/// What one produced record looked like, for comparison with what comes back.
#[derive(Debug, PartialEq)]
struct Expected {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    timestamp: i64,
}

fn expected_record(i: usize, base_timestamp: i64) -> Expected {
    let key = (i % 7 != 3).then(|| format!("key-{i}").into_bytes());
    // Every 10th record is a tombstone (null value); some values are large to make compression matter.
    let value = (i % 10 != 9).then(|| format!("value-{i}-{}", "x".repeat(i * 13)).into_bytes());
    let headers = match i % 3 {
        0 => Vec::new(),
        1 => vec![("h1".to_string(), Some(format!("hv-{i}").into_bytes()))],
        _ => vec![
            ("h1".to_string(), Some(b"first".to_vec())),
            ("null-header".to_string(), None),
            ("h1".to_string(), Some(b"duplicate key".to_vec())),
        ],
    };
    let timestamp = base_timestamp + i64::try_from(i).expect("index fits i64") * 1000;
    Expected {
        key,
        value,
        headers,
        timestamp,
    }
}

async fn round_trip(codec: &str) {
    let broker = StromProcess::start(&[]);
    let topic = format!("codec-{codec}");
    let producer = broker.producer(&[("compression.type", codec), ("linger.ms", "50")]);
    let base_timestamp = now_millis() - 3_600_000;
    let expected: Vec<Expected> = (0..RECORDS_PER_CODEC)
        .map(|i| expected_record(i, base_timestamp))
        .collect();

    let mut deliveries = Vec::new();
    for record in &expected {
        let mut headers = OwnedHeaders::new();
        for (key, value) in &record.headers {
            headers = headers.insert(Header {
                key: key.as_str(),
                value: value.as_deref(),
            });
        }
        let mut future_record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&topic)
            .partition(0)
            .timestamp(record.timestamp)
            .headers(headers);
        if let Some(key) = &record.key {
            future_record = future_record.key(key.as_slice());
        }
        if let Some(value) = &record.value {
            future_record = future_record.payload(value.as_slice());
        }
        match producer.send_result(future_record) {
            Ok(delivery) => deliveries.push(delivery),
            Err((error, _)) => panic!("enqueue failed: {error}"),
        }
    }
    for (i, delivery) in deliveries.into_iter().enumerate() {
        let delivered = delivery
            .await
            .expect("delivery future cancelled")
            .unwrap_or_else(|(error, _)| panic!("record {i} ({codec}) not delivered: {error}"));
        assert_eq!(
            delivered.offset,
            i64::try_from(i).expect("fits"),
            "offset of record {i}"
        );
    }

    let consumed = broker.consume_n(&topic, RECORDS_PER_CODEC, WAIT_DEADLINE);
    for (i, (message, want)) in consumed.iter().zip(&expected).enumerate() {
        assert_eq!(
            message.offset(),
            i64::try_from(i).expect("fits"),
            "offset ({codec})"
        );
        let got = Expected {
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers: header_pairs(message),
            timestamp: match message.timestamp() {
                Timestamp::CreateTime(ts) => ts,
                other => panic!("record {i} ({codec}): expected CreateTime, got {other:?}"),
            },
        };
        assert_eq!(&got, want, "record {i} ({codec})");
    }
}

#[tokio::test]
async fn round_trip_uncompressed() {
    round_trip("none").await;
}

#[tokio::test]
async fn round_trip_gzip() {
    round_trip("gzip").await;
}

#[tokio::test]
async fn round_trip_snappy() {
    round_trip("snappy").await;
}

#[tokio::test]
async fn round_trip_lz4() {
    round_trip("lz4").await;
}

#[tokio::test]
async fn round_trip_zstd() {
    round_trip("zstd").await;
}

async fn produce_with_acks(acks: &str) {
    let broker = StromProcess::start(&[]);
    let topic = format!("acks-{acks}");
    let producer = broker.producer(&[("acks", acks)]);
    let count = 200;
    let mut deliveries = Vec::new();
    for i in 0..count {
        let payload = format!("acks={acks} record {i}");
        let record = FutureRecord::<(), _>::to(&topic)
            .partition(0)
            .payload(&payload);
        match producer.send_result(record) {
            Ok(delivery) => deliveries.push(delivery),
            Err((error, _)) => panic!("enqueue failed: {error}"),
        }
    }
    for (i, delivery) in deliveries.into_iter().enumerate() {
        delivery
            .await
            .expect("delivery future cancelled")
            .unwrap_or_else(|(error, _)| panic!("acks={acks}: record {i} not delivered: {error}"));
    }
    let consumed = broker.consume_n(&topic, count, WAIT_DEADLINE);
    for (i, message) in consumed.iter().enumerate() {
        assert_eq!(message.offset(), i64::try_from(i).expect("fits"));
        let want = format!("acks={acks} record {i}");
        assert_eq!(message.payload(), Some(want.as_bytes()));
    }
}

#[tokio::test]
async fn acks_zero_records_are_readable() {
    produce_with_acks("0").await;
}

#[tokio::test]
async fn acks_one_records_are_readable() {
    produce_with_acks("1").await;
}

#[tokio::test]
async fn acks_all_records_are_readable() {
    produce_with_acks("all").await;
}

#[tokio::test]
async fn messages_land_on_requested_partitions() {
    let broker = StromProcess::start(&[("num.partitions", "3")]);
    let topic = "three-partitions";
    let producer = broker.producer(&[]);
    for partition in 0..3 {
        for i in 0..5 {
            let payload = format!("p{partition}-{i}");
            let delivered = producer
                .send(
                    FutureRecord::<(), _>::to(topic)
                        .partition(partition)
                        .payload(&payload),
                    Duration::from_secs(5),
                )
                .await
                .unwrap_or_else(|(error, _)| panic!("send failed: {error}"));
            assert_eq!(delivered.partition, partition);
            assert_eq!(delivered.offset, i64::from(i));
        }
    }
    assert_eq!(broker.partition_count(topic), 3);
    for partition in 0..3 {
        let messages = broker.consume_partition(
            topic,
            partition,
            rdkafka::Offset::Beginning,
            5,
            WAIT_DEADLINE,
        );
        let payloads: Vec<_> = messages
            .iter()
            .map(|m| String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned())
            .collect();
        let want: Vec<_> = (0..5).map(|i| format!("p{partition}-{i}")).collect();
        assert_eq!(payloads, want);
    }
}

#[tokio::test]
async fn record_batch_over_message_max_bytes_is_rejected() {
    let broker = StromProcess::start(&[("message.max.bytes", "2000")]);
    let producer = broker.producer(&[("linger.ms", "0")]);
    let big = vec![b'b'; 10_000];
    let result = producer
        .send(
            FutureRecord::<(), _>::to("limited")
                .partition(0)
                .payload(&big),
            Duration::from_secs(5),
        )
        .await;
    match result {
        Ok(delivery) => panic!("oversized record accepted: {delivery:?}"),
        Err((KafkaError::MessageProduction(code), _)) => {
            assert_eq!(code, RDKafkaErrorCode::MessageSizeTooLarge)
        }
        Err((error, _)) => panic!("unexpected error {error}"),
    }
    let delivered = producer
        .send(
            FutureRecord::<(), _>::to("limited")
                .partition(0)
                .payload("small"),
            Duration::from_secs(5),
        )
        .await
        .unwrap_or_else(|(error, _)| panic!("small record rejected: {error}"));
    assert_eq!(delivered.offset, 0);
}

#[tokio::test]
async fn log_append_time_replaces_producer_timestamps() {
    log_append_time(&[]).await;
}

#[tokio::test]
async fn log_append_time_on_compressed_batches() {
    log_append_time(&[("compression.type", "zstd"), ("linger.ms", "100")]).await;
}

async fn log_append_time(producer_settings: &[(&str, &str)]) {
    let broker = StromProcess::start(&[("log.message.timestamp.type", "LogAppendTime")]);
    let producer = broker.producer(producer_settings);
    let before = now_millis();
    let mut deliveries = Vec::new();
    for i in 0..5 {
        let payload = format!("append-time {i}");
        let record = FutureRecord::<(), _>::to("append-time")
            .partition(0)
            .payload(&payload)
            .timestamp(1_000_000 + i);
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
    let after = now_millis();
    for message in broker.consume_n("append-time", 5, WAIT_DEADLINE) {
        match message.timestamp() {
            Timestamp::LogAppendTime(ts) => assert!(
                (before..=after).contains(&ts),
                "append time {ts} outside [{before}, {after}]"
            ),
            other => panic!("expected LogAppendTime, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn empty_is_not_null() {
    let broker = StromProcess::start(&[]);
    let producer = broker.producer(&[]);
    let empty: &[u8] = b"";
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "",
            value: Some(empty),
        })
        .insert(Header {
            key: "null",
            value: None::<&[u8]>,
        });
    let cases: Vec<FutureRecord<'_, [u8], [u8]>> = vec![
        FutureRecord::to("empties")
            .partition(0)
            .key(empty)
            .payload(empty),
        FutureRecord::to("empties").partition(0),
        FutureRecord::to("empties")
            .partition(0)
            .payload(empty)
            .headers(headers),
    ];
    for record in cases {
        producer
            .send(record, Duration::from_secs(5))
            .await
            .unwrap_or_else(|(error, _)| panic!("send failed: {error}"));
    }
    let messages = broker.consume_n("empties", 3, WAIT_DEADLINE);
    assert_eq!(
        (messages[0].key(), messages[0].payload()),
        (Some(empty), Some(empty))
    );
    assert_eq!((messages[1].key(), messages[1].payload()), (None, None));
    assert_eq!(
        (messages[2].key(), messages[2].payload()),
        (None, Some(empty))
    );
    assert_eq!(
        header_pairs(&messages[2]),
        vec![
            (String::new(), Some(Vec::new())),
            ("null".to_string(), None)
        ]
    );
}
