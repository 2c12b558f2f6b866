//! Idempotent producing against a `strom` process: with enable.idempotence=true every record is
//! written exactly once and in order, including across a broker restart that forces retries; and,
//! with hand-built Produce requests, the broker's duplicate and sequence-gap checks.

// Test code. (clippy.toml's allow-*-in-tests does not reach integration-test helpers.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::raw::{connect, expect_response, request_frame};
use common::{StromProcess, WAIT_DEADLINE};
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::message::Message;
use rdkafka::producer::future_producer::DeliveryFuture;
use rdkafka::producer::{FutureProducer, FutureRecord};
use strom_protocol::ErrorCode;

fn idempotent_producer(broker: &StromProcess) -> FutureProducer {
    broker.producer(&[
        ("enable.idempotence", "true"),
        ("acks", "all"),
        ("retries", "1000"),
        ("retry.backoff.ms", "50"),
        ("max.in.flight.requests.per.connection", "5"),
        ("message.timeout.ms", "30000"),
        ("batch.num.messages", "20"),
    ])
}

fn enqueue(
    producer: &FutureProducer,
    topic: &str,
    numbers: std::ops::Range<usize>,
) -> Vec<DeliveryFuture> {
    numbers
        .map(|i| {
            let payload = format!("idempotent {i}");
            let key = format!("k{i}");
            producer
                .send_result(
                    FutureRecord::to(topic)
                        .partition(0)
                        .key(&key)
                        .payload(&payload),
                )
                .map_err(|(error, _)| error)
                .expect("enqueue")
        })
        .collect()
}

async fn await_all(deliveries: Vec<DeliveryFuture>) {
    for (i, delivery) in deliveries.into_iter().enumerate() {
        delivery
            .await
            .expect("delivery cancelled")
            .unwrap_or_else(|(error, _)| panic!("record {i} not delivered: {error}"));
    }
}

fn assert_exactly_once_in_order(broker: &StromProcess, topic: &str, count: usize) {
    let messages = broker.consume_all(topic, Duration::from_millis(500), WAIT_DEADLINE);
    let payloads: Vec<String> = messages
        .iter()
        .map(|m| String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned())
        .collect();
    let want: Vec<String> = (0..count).map(|i| format!("idempotent {i}")).collect();
    assert_eq!(payloads, want);
    for (i, message) in messages.iter().enumerate() {
        assert_eq!(message.offset(), i64::try_from(i).expect("fits"));
    }
}

#[tokio::test]
async fn idempotent_producer_writes_each_record_once() {
    let broker = StromProcess::start(&[]);
    let producer = idempotent_producer(&broker);
    let deliveries = enqueue(&producer, "idem", 0..1000);
    await_all(deliveries).await;
    assert_exactly_once_in_order(&broker, "idem", 1000);
}

#[tokio::test]
async fn idempotent_producer_survives_broker_restart() {
    let mut broker = StromProcess::start(&[("log.flush.interval.messages", "1")]);
    let producer = idempotent_producer(&broker);
    await_all(enqueue(&producer, "idem-restart", 0..300)).await;
    // Records enqueued while the broker is down are retried after it comes back.
    broker.kill_9();
    let pending = enqueue(&producer, "idem-restart", 300..600);
    broker.restart();
    await_all(pending).await;
    await_all(enqueue(&producer, "idem-restart", 600..700)).await;
    assert_exactly_once_in_order(&broker, "idem-restart", 700);
}

/// CRC-32C (Castagnoli), as used by record batch v2.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.push((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    out.push(zigzag as u8);
}

/// An uncompressed record batch (magic v2) from an idempotent producer.
fn idempotent_batch(producer_id: i64, epoch: i16, base_sequence: i32, values: &[&[u8]]) -> Vec<u8> {
    let timestamp = common::now_millis();
    let mut records = Vec::new();
    for (delta, value) in values.iter().enumerate() {
        let delta = i64::try_from(delta).expect("fits");
        let mut record = vec![0u8]; // attributes
        put_varint(&mut record, 0); // timestamp delta
        put_varint(&mut record, delta); // offset delta
        put_varint(&mut record, -1); // null key
        put_varint(&mut record, i64::try_from(value.len()).expect("fits"));
        record.extend_from_slice(value);
        put_varint(&mut record, 0); // no headers
        put_varint(&mut records, i64::try_from(record.len()).expect("fits"));
        records.extend_from_slice(&record);
    }
    let count = i32::try_from(values.len()).expect("fits");
    let mut after_crc = Vec::new();
    after_crc.extend_from_slice(&0i16.to_be_bytes()); // attributes
    after_crc.extend_from_slice(&(count - 1).to_be_bytes()); // last offset delta
    after_crc.extend_from_slice(&timestamp.to_be_bytes()); // base timestamp
    after_crc.extend_from_slice(&timestamp.to_be_bytes()); // max timestamp
    after_crc.extend_from_slice(&producer_id.to_be_bytes());
    after_crc.extend_from_slice(&epoch.to_be_bytes());
    after_crc.extend_from_slice(&base_sequence.to_be_bytes());
    after_crc.extend_from_slice(&count.to_be_bytes());
    after_crc.extend_from_slice(&records);
    let mut batch = Vec::new();
    batch.extend_from_slice(&0i64.to_be_bytes()); // base offset
    let batch_length = 4 + 1 + 4 + after_crc.len(); // leader epoch, magic, crc, rest
    batch.extend_from_slice(&i32::try_from(batch_length).expect("fits").to_be_bytes());
    batch.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
    batch.push(2); // magic
    batch.extend_from_slice(&crc32c(&after_crc).to_be_bytes());
    batch.extend_from_slice(&after_crc);
    batch
}

fn put_string(out: &mut Vec<u8>, value: &str) {
    out.extend_from_slice(&i16::try_from(value.len()).expect("fits").to_be_bytes());
    out.extend_from_slice(value.as_bytes());
}

/// InitProducerId v0 for a non-transactional producer: (producer id, epoch).
fn init_producer_id(stream: &mut TcpStream, broker: &StromProcess) -> (i64, i16) {
    let mut body = (-1i16).to_be_bytes().to_vec(); // null transactional id
    body.extend_from_slice(&60_000i32.to_be_bytes());
    stream
        .write_all(&request_frame(INIT_PRODUCER_ID, 0, 1, false, &body))
        .expect("write InitProducerId");
    let response = expect_response(stream, broker, 1);
    let error_code = i16::from_be_bytes([response[4], response[5]]);
    assert_eq!(error_code, ErrorCode::None.code(), "InitProducerId error");
    let producer_id = i64::from_be_bytes(response[6..14].try_into().expect("8 bytes"));
    let epoch = i16::from_be_bytes([response[14], response[15]]);
    (producer_id, epoch)
}

/// Produce v3 (acks=all) of one batch to partition 0: (error code, base offset).
fn produce_raw(
    stream: &mut TcpStream,
    broker: &StromProcess,
    correlation_id: i32,
    topic: &str,
    batch: &[u8],
) -> (i16, i64) {
    let mut body = (-1i16).to_be_bytes().to_vec(); // null transactional id
    body.extend_from_slice(&(-1i16).to_be_bytes()); // acks=all
    body.extend_from_slice(&10_000i32.to_be_bytes()); // timeout
    body.extend_from_slice(&1i32.to_be_bytes()); // one topic
    put_string(&mut body, topic);
    body.extend_from_slice(&1i32.to_be_bytes()); // one partition
    body.extend_from_slice(&0i32.to_be_bytes()); // partition 0
    body.extend_from_slice(&i32::try_from(batch.len()).expect("fits").to_be_bytes());
    body.extend_from_slice(batch);
    stream
        .write_all(&request_frame(PRODUCE, 3, correlation_id, false, &body))
        .expect("write Produce");
    let response = expect_response(stream, broker, correlation_id);
    // responses: [name, partitions: [index, error_code, base_offset, log_append_time]], throttle
    let name_length =
        usize::try_from(i16::from_be_bytes([response[4], response[5]])).expect("name");
    let at = 6 + name_length + 4 + 4; // name, partition count, partition index
    let error_code = i16::from_be_bytes([response[at], response[at + 1]]);
    let base_offset = i64::from_be_bytes(response[at + 2..at + 10].try_into().expect("8 bytes"));
    (error_code, base_offset)
}

const PRODUCE: i16 = 0;
const INIT_PRODUCER_ID: i16 = 22;

#[tokio::test]
async fn broker_drops_duplicate_batches_and_rejects_sequence_gaps() {
    let mut broker = StromProcess::start(&[]);
    let admin = broker.admin();
    let topic = NewTopic::new("raw-idem", 1, TopicReplication::Fixed(1));
    let results = admin
        .create_topics([&topic], &StromProcess::admin_options())
        .await
        .expect("create_topics request");
    assert!(results[0].is_ok(), "create failed: {results:?}");

    let mut stream = connect(&broker);
    let (producer_id, epoch) = init_producer_id(&mut stream, &broker);
    assert!(
        producer_id >= 0 && epoch >= 0,
        "bad producer id {producer_id}/{epoch}"
    );

    let first = idempotent_batch(producer_id, epoch, 0, &[b"r0", b"r1", b"r2"]);
    assert_eq!(
        produce_raw(&mut stream, &broker, 10, "raw-idem", &first),
        (0, 0)
    );
    // A retry of the same batch is acknowledged with its original offset and not written again.
    assert_eq!(
        produce_raw(&mut stream, &broker, 11, "raw-idem", &first),
        (0, 0)
    );
    // A gap in the sequence is refused.
    let gap = idempotent_batch(producer_id, epoch, 5, &[b"gap"]);
    assert_eq!(
        produce_raw(&mut stream, &broker, 12, "raw-idem", &gap).0,
        ErrorCode::OutOfOrderSequenceNumber.code()
    );
    let next = idempotent_batch(producer_id, epoch, 3, &[b"r3", b"r4"]);
    assert_eq!(
        produce_raw(&mut stream, &broker, 13, "raw-idem", &next),
        (0, 3)
    );
    assert_eq!(broker.watermarks("raw-idem", 0), (0, 5));

    // Producer state is rebuilt from the log after a crash: the retry is still a duplicate.
    drop(stream);
    broker.kill_9();
    broker.restart();
    let mut stream = connect(&broker);
    assert_eq!(
        produce_raw(&mut stream, &broker, 14, "raw-idem", &next),
        (0, 3)
    );
    assert_eq!(broker.watermarks("raw-idem", 0), (0, 5));

    let messages = broker.consume_n("raw-idem", 5, WAIT_DEADLINE);
    let values: Vec<&[u8]> = messages
        .iter()
        .map(|m| m.payload().unwrap_or_default())
        .collect();
    assert_eq!(values, vec![&b"r0"[..], b"r1", b"r2", b"r3", b"r4"]);
}
