//! Idempotent producing against a `strom` process: with enable.idempotence=true every record is
//! written exactly once and in order, including across a broker restart that forces retries.

mod common;

use std::time::Duration;

use common::{StromProcess, WAIT_DEADLINE};
use rdkafka::message::Message;
use rdkafka::producer::future_producer::DeliveryFuture;
use rdkafka::producer::{FutureProducer, FutureRecord};

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
