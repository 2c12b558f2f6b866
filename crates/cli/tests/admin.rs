//! Admin API behaviour of a `strom` process through rdkafka's AdminClient: create/delete topics,
//! describe/alter topic configs, create partitions, and topic auto-creation on and off.

// Test code. (clippy.toml's allow-*-in-tests does not reach integration-test helpers.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{StromProcess, OP_TIMEOUT, WAIT_DEADLINE};
use rdkafka::admin::{
    AlterConfig, ConfigSource, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::types::RDKafkaRespErr;

#[tokio::test]
async fn create_topic_then_create_again_fails() {
    let broker = StromProcess::start(&[]);
    let admin = broker.admin();
    let options = StromProcess::admin_options();
    let topic = NewTopic::new("orders", 3, TopicReplication::Fixed(1));
    let results = admin
        .create_topics([&topic], &options)
        .await
        .expect("create_topics request");
    assert_eq!(results, vec![Ok("orders".to_string())]);
    assert_eq!(broker.partition_count("orders"), 3);

    let results = admin
        .create_topics([&topic], &options)
        .await
        .expect("second create_topics request");
    assert_eq!(
        results,
        vec![Err((
            "orders".to_string(),
            RDKafkaErrorCode::TopicAlreadyExists
        ))]
    );
}

#[tokio::test]
async fn describe_and_alter_topic_configs() {
    let broker = StromProcess::start(&[]);
    let admin = broker.admin();
    let options = StromProcess::admin_options();
    let topic =
        NewTopic::new("configured", 1, TopicReplication::Fixed(1)).set("retention.ms", "123456");
    let results = admin
        .create_topics([&topic], &options)
        .await
        .expect("create_topics request");
    assert_eq!(results, vec![Ok("configured".to_string())]);

    let resource = ResourceSpecifier::Topic("configured");
    let described = admin
        .describe_configs([&resource], &options)
        .await
        .expect("describe_configs request");
    assert_eq!(described.len(), 1);
    let config = described[0].as_ref().expect("describe result for topic");
    let retention = config.get("retention.ms").expect("retention.ms listed");
    assert_eq!(retention.value.as_deref(), Some("123456"));
    assert_eq!(retention.source, ConfigSource::DynamicTopic);
    assert!(!retention.is_default);
    // Defaults are listed too (Kafka lists every topic config).
    let cleanup = config.get("cleanup.policy").expect("cleanup.policy listed");
    assert_eq!(cleanup.value.as_deref(), Some("delete"));
    assert!(cleanup.is_default || cleanup.source != ConfigSource::DynamicTopic);
    for name in [
        "segment.bytes",
        "retention.bytes",
        "max.message.bytes",
        "message.timestamp.type",
    ] {
        assert!(
            config.get(name).is_some(),
            "{name} not listed in describe_configs"
        );
    }

    let alter =
        AlterConfig::new(ResourceSpecifier::Topic("configured")).set("retention.ms", "654321");
    let altered = admin
        .alter_configs([&alter], &options)
        .await
        .expect("alter_configs request");
    assert_eq!(altered.len(), 1);
    assert!(altered[0].is_ok(), "alter_configs failed: {:?}", altered[0]);

    let described = admin
        .describe_configs([&resource], &options)
        .await
        .expect("describe_configs request");
    let config = described[0].as_ref().expect("describe result for topic");
    assert_eq!(
        config.get("retention.ms").and_then(|e| e.value.as_deref()),
        Some("654321")
    );
}

#[tokio::test]
async fn describe_configs_of_unknown_topic_fails() {
    let broker = StromProcess::start(&[("auto.create.topics.enable", "false")]);
    let admin = broker.admin();
    let resource = ResourceSpecifier::Topic("does-not-exist");
    let described = admin
        .describe_configs([&resource], &StromProcess::admin_options())
        .await;
    // rdkafka 0.39 drops per-resource error codes of DescribeConfigs (it reports the resource
    // as Ok with whatever entries came back), so the observable contract is: no entries.
    match described {
        Ok(results) => match &results[0] {
            Ok(resource) => assert!(
                resource.entries.is_empty(),
                "unknown topic described with entries: {:?}",
                resource.entries
            ),
            Err(code) => assert_eq!(*code, RDKafkaErrorCode::UnknownTopicOrPartition),
        },
        Err(error) => assert_eq!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::UnknownTopicOrPartition)
        ),
    }
}

#[tokio::test]
async fn create_partitions_grows_topic() {
    let broker = StromProcess::start(&[]);
    let admin = broker.admin();
    let options = StromProcess::admin_options();
    let topic = NewTopic::new("growing", 3, TopicReplication::Fixed(1));
    admin
        .create_topics([&topic], &options)
        .await
        .expect("create_topics request")
        .into_iter()
        .for_each(|r| assert!(r.is_ok(), "create failed: {r:?}"));
    assert_eq!(broker.partition_count("growing"), 3);

    let grow = NewPartitions::new("growing", 5);
    let results = admin
        .create_partitions([&grow], &options)
        .await
        .expect("create_partitions request");
    assert_eq!(results, vec![Ok("growing".to_string())]);
    broker.wait_until("metadata shows 5 partitions", WAIT_DEADLINE, || {
        broker.partition_count("growing") == 5
    });

    // The new partitions accept records.
    let producer = broker.producer(&[]);
    let delivered = producer
        .send(
            FutureRecord::<(), _>::to("growing")
                .partition(4)
                .payload("on partition 4"),
            Duration::from_secs(5),
        )
        .await
        .unwrap_or_else(|(error, _)| panic!("send to new partition failed: {error}"));
    assert_eq!((delivered.partition, delivered.offset), (4, 0));

    // Shrinking is invalid.
    let shrink = NewPartitions::new("growing", 2);
    let results = admin
        .create_partitions([&shrink], &options)
        .await
        .expect("create_partitions request");
    assert_eq!(
        results,
        vec![Err((
            "growing".to_string(),
            RDKafkaErrorCode::InvalidPartitions
        ))]
    );
}

#[tokio::test]
async fn delete_topic_removes_it_from_metadata() {
    let broker = StromProcess::start(&[]);
    let admin = broker.admin();
    let options = StromProcess::admin_options();
    let topic = NewTopic::new("doomed", 2, TopicReplication::Fixed(1));
    admin
        .create_topics([&topic], &options)
        .await
        .expect("create_topics request")
        .into_iter()
        .for_each(|r| assert!(r.is_ok(), "create failed: {r:?}"));
    let producer = broker.producer(&[]);
    producer
        .send(
            FutureRecord::<(), _>::to("doomed")
                .partition(0)
                .payload("bye"),
            Duration::from_secs(5),
        )
        .await
        .unwrap_or_else(|(error, _)| panic!("send failed: {error}"));
    assert!(broker.topic_names().contains("doomed"));

    let results = admin
        .delete_topics(&["doomed"], &options)
        .await
        .expect("delete_topics request");
    assert_eq!(results, vec![Ok("doomed".to_string())]);
    broker.wait_until("deleted topic leaves metadata", WAIT_DEADLINE, || {
        !broker.topic_names().contains("doomed")
    });

    let results = admin
        .delete_topics(&["doomed"], &options)
        .await
        .expect("second delete_topics request");
    assert_eq!(
        results,
        vec![Err((
            "doomed".to_string(),
            RDKafkaErrorCode::UnknownTopicOrPartition
        ))]
    );
}

#[tokio::test]
async fn auto_create_enabled_by_default() {
    let broker = StromProcess::start(&[("num.partitions", "2")]);
    let producer = broker.producer(&[]);
    let delivered = producer
        .send(
            FutureRecord::<(), _>::to("auto-created")
                .partition(0)
                .payload("hello"),
            Duration::from_secs(5),
        )
        .await
        .unwrap_or_else(|(error, _)| panic!("send to new topic failed: {error}"));
    assert_eq!((delivered.partition, delivered.offset), (0, 0));
    assert_eq!(broker.partition_count("auto-created"), 2);
    let consumed = broker.consume_partition(
        "auto-created",
        0,
        rdkafka::Offset::Beginning,
        1,
        WAIT_DEADLINE,
    );
    assert_eq!(consumed[0].payload(), Some(&b"hello"[..]));
}

#[tokio::test]
async fn auto_create_disabled_rejects_unknown_topic() {
    let broker = StromProcess::start(&[("auto.create.topics.enable", "false")]);
    let producer = broker.producer(&[
        ("message.timeout.ms", "3000"),
        ("topic.metadata.propagation.max.ms", "500"),
    ]);
    let result = producer
        .send(
            FutureRecord::<(), _>::to("never-created").payload("lost"),
            Duration::from_secs(5),
        )
        .await;
    match result {
        Ok(delivery) => panic!("produce to unknown topic succeeded: {delivery:?}"),
        Err((KafkaError::MessageProduction(code), _)) => assert!(
            matches!(
                code,
                RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic
            ),
            "unexpected produce error code {code:?}"
        ),
        Err((error, _)) => panic!("unexpected produce error {error}"),
    }

    let consumer = broker.consumer(None, &[]);
    let metadata = consumer
        .fetch_metadata(Some("never-created"), OP_TIMEOUT)
        .expect("metadata request");
    let topic = metadata
        .topics()
        .iter()
        .find(|t| t.name() == "never-created")
        .expect("requested topic is in the response");
    assert_eq!(
        topic.error(),
        Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
    );
    assert!(!broker.topic_names().contains("never-created"));
}

#[tokio::test]
async fn metadata_without_auto_create_permission_does_not_create() {
    // Auto-creation is on, but the consumer's Metadata request says allow_auto_topic_creation=false.
    let broker = StromProcess::start(&[]);
    let consumer = broker.consumer(None, &[]);
    let metadata = consumer
        .fetch_metadata(Some("ghost"), OP_TIMEOUT)
        .expect("metadata request");
    let topic = metadata
        .topics()
        .iter()
        .find(|t| t.name() == "ghost")
        .expect("requested topic is in the response");
    assert_eq!(
        topic.error(),
        Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
    );
    assert!(!broker.topic_names().contains("ghost"));
}

#[tokio::test]
async fn create_topics_validation() {
    let broker = StromProcess::start(&[]);
    let admin = broker.admin();

    let dry_run = NewTopic::new("dry-run", 2, TopicReplication::Fixed(1));
    let results = admin
        .create_topics(
            [&dry_run],
            &StromProcess::admin_options().validate_only(true),
        )
        .await
        .expect("create_topics request");
    assert_eq!(results, vec![Ok("dry-run".to_string())]);
    assert!(
        !broker.topic_names().contains("dry-run"),
        "validate_only created the topic"
    );

    let bad_config =
        NewTopic::new("bad-config", 1, TopicReplication::Fixed(1)).set("retention.ms", "soon");
    let results = admin
        .create_topics([&bad_config], &StromProcess::admin_options())
        .await
        .expect("create_topics request");
    assert_eq!(
        results,
        vec![Err((
            "bad-config".to_string(),
            RDKafkaErrorCode::InvalidConfig
        ))]
    );

    let unknown_config =
        NewTopic::new("unknown-config", 1, TopicReplication::Fixed(1)).set("no.such.config", "1");
    let results = admin
        .create_topics([&unknown_config], &StromProcess::admin_options())
        .await
        .expect("create_topics request");
    assert_eq!(
        results,
        vec![Err((
            "unknown-config".to_string(),
            RDKafkaErrorCode::InvalidConfig
        ))]
    );

    let bad_name = NewTopic::new("bad/name", 1, TopicReplication::Fixed(1));
    let results = admin
        .create_topics([&bad_name], &StromProcess::admin_options())
        .await
        .expect("create_topics request");
    assert_eq!(
        results,
        vec![Err((
            "bad/name".to_string(),
            RDKafkaErrorCode::InvalidTopic
        ))]
    );

    let too_many_replicas = NewTopic::new("replicated", 1, TopicReplication::Fixed(3));
    let results = admin
        .create_topics([&too_many_replicas], &StromProcess::admin_options())
        .await
        .expect("create_topics request");
    assert_eq!(
        results,
        vec![Err((
            "replicated".to_string(),
            RDKafkaErrorCode::InvalidReplicationFactor
        ))]
    );
    let names = broker.topic_names();
    for name in ["bad-config", "unknown-config", "bad/name", "replicated"] {
        assert!(
            !names.contains(name),
            "{name} was created despite the error"
        );
    }
}

#[tokio::test]
async fn describe_broker_configs() {
    let broker = StromProcess::start(&[("num.partitions", "7"), ("log.retention.ms", "3600000")]);
    let admin = broker.admin();
    let resource = ResourceSpecifier::Broker(1);
    let described = admin
        .describe_configs([&resource], &StromProcess::admin_options())
        .await
        .expect("describe_configs request");
    let config = described[0].as_ref().expect("describe result for broker");
    let num_partitions = config.get("num.partitions").expect("num.partitions listed");
    assert_eq!(num_partitions.value.as_deref(), Some("7"));
    assert_eq!(num_partitions.source, ConfigSource::StaticBroker);
    assert_eq!(
        config
            .get("log.retention.ms")
            .and_then(|e| e.value.as_deref()),
        Some("3600000")
    );
    // A topic without overrides inherits the broker's retention.
    let topic = NewTopic::new("inherits", 1, TopicReplication::Fixed(1));
    admin
        .create_topics([&topic], &StromProcess::admin_options())
        .await
        .expect("create_topics request");
    let resource = ResourceSpecifier::Topic("inherits");
    let described = admin
        .describe_configs([&resource], &StromProcess::admin_options())
        .await
        .expect("describe_configs request");
    let config = described[0].as_ref().expect("describe result for topic");
    let retention = config.get("retention.ms").expect("retention.ms listed");
    assert_eq!(retention.value.as_deref(), Some("3600000"));
    assert_eq!(retention.source, ConfigSource::StaticBroker);
}

#[tokio::test]
async fn topic_name_rules_follow_kafka() {
    let broker = StromProcess::start(&[]);
    let admin = broker.admin();
    let options = StromProcess::admin_options();
    let longest = "t".repeat(249);
    let results = admin
        .create_topics(
            [&NewTopic::new(&longest, 1, TopicReplication::Fixed(1))],
            &options,
        )
        .await
        .expect("create_topics request");
    assert_eq!(
        results,
        vec![Ok(longest.clone())],
        "249 characters is allowed"
    );

    let too_long = "t".repeat(250);
    for name in [too_long.as_str(), ".", "..", "", "spaced name", "ümlaut"] {
        let results = admin
            .create_topics(
                [&NewTopic::new(name, 1, TopicReplication::Fixed(1))],
                &options,
            )
            .await;
        match results {
            Ok(results) => assert_eq!(
                results,
                vec![Err((name.to_string(), RDKafkaErrorCode::InvalidTopic))],
                "topic name {name:?}"
            ),
            // librdkafka may refuse some names itself.
            Err(error) => assert!(
                matches!(error, KafkaError::AdminOpCreation(_)),
                "topic name {name:?}: {error}"
            ),
        }
    }

    // Names that differ only by '.' versus '_' collide in metric names: Kafka refuses the second.
    let results = admin
        .create_topics(
            [&NewTopic::new("metrics.a", 1, TopicReplication::Fixed(1))],
            &options,
        )
        .await
        .expect("create_topics request");
    assert_eq!(results, vec![Ok("metrics.a".to_string())]);
    let results = admin
        .create_topics(
            [&NewTopic::new("metrics_a", 1, TopicReplication::Fixed(1))],
            &options,
        )
        .await
        .expect("create_topics request");
    assert_eq!(
        results,
        vec![Err((
            "metrics_a".to_string(),
            RDKafkaErrorCode::InvalidTopic
        ))]
    );
}
