//! Dynamic configuration of a `strom` process end to end: what DescribeConfigs reports is what is
//! enforced (a cluster-wide dynamic `min.insync.replicas` refuses acks=all produce with
//! NOT_ENOUGH_REPLICAS, a topic override wins over it), and BROKER resources accept and refuse
//! keys as Kafka's dynamic broker config does. IncrementalAlterConfigs goes out as raw frames:
//! rdkafka's admin client cannot name the cluster-wide default resource ("").

// Test code. (clippy.toml's allow-*-in-tests does not reach integration-test helpers.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::raw::{connect, expect_response, request_frame};
use common::StromProcess;
use rdkafka::admin::{AlterConfig, ConfigSource, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureRecord;
use strom_protocol::ErrorCode;

const INCREMENTAL_ALTER_CONFIGS: i16 = 44;
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

fn put_string(body: &mut Vec<u8>, text: &str) {
    body.extend_from_slice(&i16::try_from(text.len()).expect("short").to_be_bytes());
    body.extend_from_slice(text.as_bytes());
}

fn read_i16(bytes: &[u8], at: &mut usize) -> i16 {
    let value = i16::from_be_bytes(bytes[*at..*at + 2].try_into().expect("2 bytes"));
    *at += 2;
    value
}

fn read_nullable_string(bytes: &[u8], at: &mut usize) -> Option<String> {
    let len = read_i16(bytes, at);
    let len = usize::try_from(len).ok()?;
    let text = String::from_utf8(bytes[*at..*at + len].to_vec()).expect("utf-8");
    *at += len;
    Some(text)
}

/// Sends IncrementalAlterConfigs v0 for one resource with `(key, operation, value)` changes and
/// returns its error code and message.
fn incremental_alter(
    broker: &StromProcess,
    resource: (i8, &str),
    ops: &[(&str, i8, Option<&str>)],
) -> (i16, Option<String>) {
    let mut body = Vec::new();
    body.extend_from_slice(&1i32.to_be_bytes());
    body.push(resource.0.to_be_bytes()[0]);
    put_string(&mut body, resource.1);
    body.extend_from_slice(&i32::try_from(ops.len()).expect("few").to_be_bytes());
    for (key, operation, value) in ops {
        put_string(&mut body, key);
        body.push(operation.to_be_bytes()[0]);
        match value {
            Some(value) => put_string(&mut body, value),
            None => body.extend_from_slice(&(-1i16).to_be_bytes()),
        }
    }
    body.push(0); // validate_only = false
    let mut stream = connect(broker);
    let frame = request_frame(INCREMENTAL_ALTER_CONFIGS, 0, 7, false, &body);
    std::io::Write::write_all(&mut stream, &frame).expect("send request");
    let response = expect_response(&mut stream, broker, 7);
    // throttle_time_ms, then an array of one response.
    let count = i32::from_be_bytes(response[4..8].try_into().expect("4 bytes"));
    assert_eq!(count, 1, "one resource answered");
    let mut at = 8;
    let error_code = read_i16(&response, &mut at);
    let message = read_nullable_string(&response, &mut at);
    (error_code, message)
}

/// The value and source DescribeConfigs reports for one key of a resource.
async fn described(
    broker: &StromProcess,
    resource: ResourceSpecifier<'_>,
    key: &str,
) -> Option<(Option<String>, ConfigSource)> {
    let results = broker
        .admin()
        .describe_configs([&resource], &StromProcess::admin_options())
        .await
        .expect("describe_configs request");
    let config = results
        .into_iter()
        .next()
        .expect("one result")
        .expect("described");
    let entry = config.entries.into_iter().find(|entry| entry.name == key)?;
    Some((entry.value, entry.source))
}

/// Produces one record with `acks`, without retries so that a refusal is reported as such.
async fn produce(broker: &StromProcess, topic: &str, acks: &str) -> Result<(), KafkaError> {
    let producer = broker.producer(&[
        ("acks", acks),
        ("enable.idempotence", "false"),
        ("message.send.max.retries", "0"),
    ]);
    producer
        .send(
            FutureRecord::to(topic).key("k").payload("v"),
            Duration::from_secs(10),
        )
        .await
        .map(|_| ())
        .map_err(|(error, _)| error)
}

#[tokio::test]
async fn min_insync_replicas_reported_is_min_insync_replicas_enforced() {
    let broker = StromProcess::start(&[]);
    let admin = broker.admin();
    let options = StromProcess::admin_options();
    let topic = NewTopic::new("guarded", 1, TopicReplication::Fixed(1));
    admin
        .create_topics([&topic], &options)
        .await
        .expect("create_topics request");
    broker.partition_count("guarded");
    assert!(produce(&broker, "guarded", "all").await.is_ok());

    // Cluster-wide dynamic default: min.insync.replicas=2 with one replica in sync.
    assert_eq!(
        incremental_alter(
            &broker,
            (RESOURCE_BROKER, ""),
            &[("min.insync.replicas", OP_SET, Some("2"))]
        ),
        (0, None)
    );
    assert_eq!(
        described(
            &broker,
            ResourceSpecifier::Topic("guarded"),
            "min.insync.replicas"
        )
        .await,
        Some((Some("2".into()), ConfigSource::DynamicDefaultBroker))
    );
    match produce(&broker, "guarded", "all").await {
        Err(KafkaError::MessageProduction(RDKafkaErrorCode::NotEnoughReplicas)) => {}
        other => panic!("acks=all with min.insync.replicas=2 gave {other:?}"),
    }
    assert!(produce(&broker, "guarded", "1").await.is_ok());

    // The topic override wins over the broker default.
    let alter =
        AlterConfig::new(ResourceSpecifier::Topic("guarded")).set("min.insync.replicas", "1");
    // (rust-rdkafka reports every resource of AlterConfigs as altered, so DescribeConfigs checks.)
    admin
        .alter_configs([&alter], &options)
        .await
        .expect("alter_configs request");
    assert_eq!(
        described(
            &broker,
            ResourceSpecifier::Topic("guarded"),
            "min.insync.replicas"
        )
        .await,
        Some((Some("1".into()), ConfigSource::DynamicTopic))
    );
    assert!(produce(&broker, "guarded", "all").await.is_ok());

    // Without the override, a per-broker dynamic value applies again, and it survives a restart.
    assert_eq!(
        incremental_alter(
            &broker,
            (RESOURCE_TOPIC, "guarded"),
            &[("min.insync.replicas", OP_DELETE, None)]
        ),
        (0, None)
    );
    assert_eq!(
        incremental_alter(
            &broker,
            (RESOURCE_BROKER, "1"),
            &[("min.insync.replicas", OP_SET, Some("3"))]
        ),
        (0, None)
    );
    let mut broker = broker;
    broker.restart();
    assert_eq!(
        described(
            &broker,
            ResourceSpecifier::Topic("guarded"),
            "min.insync.replicas"
        )
        .await,
        Some((Some("3".into()), ConfigSource::DynamicBroker))
    );
    match produce(&broker, "guarded", "all").await {
        Err(KafkaError::MessageProduction(RDKafkaErrorCode::NotEnoughReplicas)) => {}
        other => panic!("acks=all with min.insync.replicas=3 gave {other:?}"),
    }
}

#[tokio::test]
async fn broker_resources_accept_and_refuse_keys_like_kafka() {
    let broker = StromProcess::start(&[]);
    let this_broker = (RESOURCE_BROKER, "1");
    let cluster = (RESOURCE_BROKER, "");
    let keystore = "listener.name.plaintext.ssl.keystore.location";

    // An SSL key store for one listener of this broker is accepted and stored.
    assert_eq!(
        incremental_alter(
            &broker,
            this_broker,
            &[(keystore, OP_SET, Some("/etc/ks.jks"))]
        ),
        (0, None)
    );
    assert_eq!(
        described(&broker, ResourceSpecifier::Broker(1), keystore).await,
        Some((Some("/etc/ks.jks".into()), ConfigSource::DynamicBroker))
    );
    // A read-only key is refused with Kafka's error.
    assert_eq!(
        incremental_alter(
            &broker,
            this_broker,
            &[("log.dirs", OP_SET, Some("/elsewhere"))]
        ),
        (
            ErrorCode::InvalidRequest.code(),
            Some("Cannot update these configs dynamically: Set(log.dirs)".into())
        )
    );
    // A per-broker-only key is refused as the cluster-wide default.
    assert_eq!(
        incremental_alter(&broker, cluster, &[(keystore, OP_SET, Some("/etc/ks.jks"))]),
        (
            ErrorCode::InvalidRequest.code(),
            Some(format!(
                "Cannot update these configs at default cluster level, broker id must be \
                 specified: Set({keystore})"
            ))
        )
    );
    // Other keys Kafka updates dynamically are accepted cluster-wide.
    assert_eq!(
        incremental_alter(
            &broker,
            cluster,
            &[
                ("num.io.threads", OP_SET, Some("16")),
                ("log.cleaner.threads", OP_SET, Some("2")),
                ("max.connections.per.ip", OP_SET, Some("100")),
            ]
        ),
        (0, None)
    );
    assert_eq!(
        described(&broker, ResourceSpecifier::Broker(1), "num.io.threads").await,
        Some((Some("16".into()), ConfigSource::DynamicDefaultBroker))
    );
}
