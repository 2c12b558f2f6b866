//! Log compaction seen by a real client (librdkafka): on a `cleanup.policy=compact` topic the
//! background cleaner keeps the latest value per key at its original offset, keeps tombstones
//! (within `delete.retention.ms`), and never moves offsets.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{StromProcess, WAIT_DEADLINE};
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};

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
