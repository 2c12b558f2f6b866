//! Log compaction seen by a real client (librdkafka): on a `cleanup.policy=compact` topic the
//! background cleaner keeps the latest value per key at its original offset, keeps tombstones
//! (within `delete.retention.ms`), and never moves offsets; records without key are refused
//! (INVALID_RECORD, each named in `record_errors`, seen with a hand-built Produce request).

// Test code. (clippy.toml's allow-*-in-tests does not reach integration-test helpers.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{StromProcess, WAIT_DEADLINE};
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use strom_protocol::codec::{Decode, Encode, Encoder};
use strom_protocol::messages::produce_request::{
    PartitionProduceData, ProduceRequest, TopicProduceData,
};
use strom_protocol::messages::produce_response::ProduceResponse;
use strom_protocol::messages::request_header::RequestHeader;
use strom_protocol::messages::response_header::ResponseHeader;
use strom_protocol::messages::{request_header_version, response_header_version};
use strom_protocol::records::{BatchBuilder, Compression};
use strom_protocol::ErrorCode;

const TOPIC: &str = "compacted";
const KEYS: usize = 10;
const ROUNDS: usize = 20;

/// Sends one record on its own (so it is its own batch) and returns its offset.
async fn send(producer: &FutureProducer, key: &str, value: Option<&str>) -> i64 {
    let mut record = FutureRecord::<str, str>::to(TOPIC).partition(0).key(key);
    if let Some(value) = value {
        record = record.payload(value);
    }
    producer
        .send(record, Duration::from_secs(5))
        .await
        .unwrap_or_else(|(error, _)| panic!("send {key} failed: {error}"))
        .offset
}

#[tokio::test]
async fn compaction_keeps_the_last_value_per_key_at_its_original_offset() {
    let broker = StromProcess::start(&[]);
    let topic = NewTopic::new(TOPIC, 1, TopicReplication::Fixed(1))
        .set("cleanup.policy", "compact")
        .set("segment.bytes", "1024")
        .set("min.cleanable.dirty.ratio", "0.01");
    let created = broker
        .admin()
        .create_topics([&topic], &StromProcess::admin_options())
        .await
        .expect("create_topics request");
    assert!(created[0].is_ok(), "create failed: {created:?}");

    let producer = broker.producer(&[("linger.ms", "0")]);
    let mut latest: HashMap<String, (i64, Option<String>)> = HashMap::new();
    for round in 0..ROUNDS {
        for key in 0..KEYS {
            let key = format!("key-{key}");
            let value = format!("round-{round}");
            let offset = send(&producer, &key, Some(&value)).await;
            latest.insert(key, (offset, Some(value)));
        }
    }
    send(&producer, "doomed", Some("soon gone")).await;
    let tombstone_offset = send(&producer, "doomed", None).await;
    latest.insert("doomed".to_string(), (tombstone_offset, None));
    let produced = ROUNDS * KEYS + 2;

    let mut remaining = Vec::new();
    broker.wait_until(
        "the cleaner removes superseded values",
        WAIT_DEADLINE,
        || {
            remaining = broker.consume_all(TOPIC, Duration::from_millis(200), WAIT_DEADLINE);
            remaining.len() < produced / 2
        },
    );

    // Offsets only grow, with gaps where superseded records were removed.
    let offsets: Vec<i64> = remaining.iter().map(|m| m.offset()).collect();
    assert!(
        offsets.windows(2).all(|w| w[0] < w[1]),
        "offsets out of order: {offsets:?}"
    );
    let mut last_seen: HashMap<String, (i64, Option<String>)> = HashMap::new();
    for message in &remaining {
        let key = String::from_utf8(message.key().expect("every record has a key").to_vec())
            .expect("utf-8 key");
        let value = message
            .payload()
            .map(|p| String::from_utf8_lossy(p).into_owned());
        last_seen.insert(key, (message.offset(), value));
    }
    assert_eq!(
        last_seen, latest,
        "the latest value of every key (and the tombstone) must survive at its original offset"
    );
    let high = broker.watermarks(TOPIC, 0).1;
    assert_eq!(
        high, produced as i64,
        "compaction must not move the high watermark"
    );
}

/// Sends one Produce request (v8, the first with per-record errors) and decodes the response.
fn produce_v8(broker: &StromProcess, request: &ProduceRequest) -> ProduceResponse {
    const PRODUCE: i16 = 0;
    const VERSION: i16 = 8;
    let mut stream = TcpStream::connect(broker.addr()).expect("connect to broker");
    stream
        .set_read_timeout(Some(WAIT_DEADLINE))
        .expect("set read timeout");
    let header = RequestHeader {
        request_api_key: PRODUCE,
        request_api_version: VERSION,
        correlation_id: 1,
        client_id: Some("raw-producer".into()),
    };
    let mut out = Encoder::new();
    header.encode(&mut out, request_header_version(PRODUCE, VERSION));
    request.encode(&mut out, VERSION);
    let body = out.into_bytes();
    let size = i32::try_from(body.len()).expect("request fits i32");
    stream.write_all(&size.to_be_bytes()).expect("send size");
    stream.write_all(&body).expect("send request");
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).expect("read response size");
    let mut response = vec![0u8; usize::try_from(i32::from_be_bytes(size)).expect("size")];
    stream.read_exact(&mut response).expect("read response");
    let mut response = bytes::Bytes::from(response);
    ResponseHeader::decode(&mut response, response_header_version(PRODUCE, VERSION))
        .expect("decode response header");
    ProduceResponse::decode(&mut response, VERSION).expect("decode response")
}

#[tokio::test]
async fn records_without_key_are_refused_each_named_like_kafka() {
    const KEYED_ONLY: &str = "keyed-only";
    let broker = StromProcess::start(&[]);
    let topic =
        NewTopic::new(KEYED_ONLY, 1, TopicReplication::Fixed(1)).set("cleanup.policy", "compact");
    let created = broker
        .admin()
        .create_topics([&topic], &StromProcess::admin_options())
        .await
        .expect("create_topics request");
    assert!(created[0].is_ok(), "create failed: {created:?}");

    // Hand-built: records 1 and 3 of the batch have no key.
    let now = common::now_millis();
    let mut batch = BatchBuilder::new(0, Compression::None, now);
    for key in [Some("a"), None, Some("b"), None] {
        batch.push(
            now,
            key.map(|k| bytes::Bytes::copy_from_slice(k.as_bytes())),
            Some(bytes::Bytes::from_static(b"value")),
            Vec::new(),
        );
    }
    let request = ProduceRequest {
        transactional_id: None,
        acks: -1,
        timeout_ms: 10_000,
        topic_data: vec![TopicProduceData {
            name: KEYED_ONLY.into(),
            partition_data: vec![PartitionProduceData {
                index: 0,
                records: Some(batch.build()),
            }],
        }],
    };
    let response = produce_v8(&broker, &request);
    let partition = &response.responses[0].partition_responses[0];
    assert_eq!(partition.error_code, ErrorCode::InvalidRecord.code());
    let per_record =
        "Compacted topic cannot accept message without key in topic partition keyed-only-0";
    let named: Vec<(i32, Option<&str>)> = partition
        .record_errors
        .iter()
        .map(|e| (e.batch_index, e.batch_index_error_message.as_deref()))
        .collect();
    assert_eq!(named, [(1, Some(per_record)), (3, Some(per_record))]);
    assert_eq!(
        partition.error_message.as_deref(),
        Some(
            format!(
                "One or more records have been rejected due to 2 record errors in total, and only \
                 showing the first three errors at most: [RecordError(batchIndex=1, message='{per_record}'), \
                 RecordError(batchIndex=3, message='{per_record}')]"
            )
            .as_str()
        )
    );

    // A real client sees INVALID_RECORD for a keyless record, and nothing is written.
    let producer = broker.producer(&[("linger.ms", "0")]);
    let refused = producer
        .send(
            FutureRecord::<str, str>::to(KEYED_ONLY)
                .partition(0)
                .payload("no key"),
            Duration::from_secs(5),
        )
        .await;
    match refused {
        Err((KafkaError::MessageProduction(code), _)) => {
            assert_eq!(code, RDKafkaErrorCode::InvalidRecord)
        }
        other => panic!("expected INVALID_RECORD, got {other:?}"),
    }
    assert_eq!(broker.watermarks(KEYED_ONLY, 0), (0, 0));
    let accepted = producer
        .send(
            FutureRecord::to(KEYED_ONLY)
                .partition(0)
                .key("k")
                .payload("v"),
            Duration::from_secs(5),
        )
        .await
        .expect("a keyed record is accepted");
    assert_eq!(accepted.offset, 0);
}
