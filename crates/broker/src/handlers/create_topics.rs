//! CreateTopics (API 19): creates topics through the metadata store, like Kafka's controller.
//!
//! `num_partitions` / `replication_factor` of -1 take the broker's `num.partitions` /
//! `default.replication.factor`. A manual assignment is accepted when it is well formed and names
//! registered brokers; it then only fixes the partition count and replication factor (replicas are
//! placed by the metadata store). `timeout_ms` is moot: creation completes before the response.
//! From v5 the result carries the topic's partition count, replication factor and effective configs.
//! A topic whose partitions this broker could not create (their directory or log failed, so they
//! are offline here) is reported with KAFKA_STORAGE_ERROR once the publisher has applied it.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use strom_metadata::{MetadataError, MetadataImage, TopicSummary};
use strom_protocol::messages::create_topics_request::{CreatableTopic, CreateTopicsRequest};
use strom_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult, CreateTopicsResponse,
};
use strom_protocol::ErrorCode;

use super::describe_configs::topic_config_entries;
use crate::state::Broker;

/// Most partitions one CreateTopics or CreatePartitions request may create (Kafka's controller
/// `MAX_PARTITIONS_PER_BATCH`): a request asking for `i32::MAX` partitions must not make us
/// build that many records and directories.
pub(super) const MAX_PARTITIONS_PER_BATCH: i64 = 10_000;

/// The partitions a CreateTopics request would create at most, as Kafka's
/// `validateTotalNumberOfPartitions` counts them (saturating instead of wrapping).
fn requested_partitions(request: &CreateTopicsRequest, default_partitions: i32) -> i64 {
    request
        .topics
        .iter()
        .map(|topic| {
            if !topic.assignments.is_empty() {
                i64::try_from(topic.assignments.len()).unwrap_or(i64::MAX)
            } else if topic.num_partitions == -1 {
                i64::from(default_partitions)
            } else {
                i64::from(topic.num_partitions.max(0))
            }
        })
        .fold(0i64, i64::saturating_add)
}

fn replica_assignment_error(message: String) -> MetadataError {
    MetadataError::new(ErrorCode::InvalidReplicaAssignment.code(), message)
}

/// Checks one partition's replica list of a manual assignment: not empty, no broker twice, every
/// broker registered.
pub(super) fn check_replica_list(
    image: &MetadataImage,
    broker_ids: &[i32],
) -> Result<(), MetadataError> {
    if broker_ids.is_empty() {
        return Err(replica_assignment_error(
            "The manual partition assignment includes an empty replica list.".into(),
        ));
    }
    let mut seen = HashSet::new();
    for broker_id in broker_ids {
        if !seen.insert(broker_id) {
            return Err(replica_assignment_error(format!(
                "The manual partition assignment includes the broker {broker_id} more than once."
            )));
        }
        if !image.brokers.contains_key(broker_id) {
            return Err(replica_assignment_error(format!(
                "The manual partition assignment includes broker {broker_id}, but no such broker is registered."
            )));
        }
    }
    Ok(())
}

/// The partition count and replication factor a manual assignment implies, checked like Kafka's
/// `ReplicationControlManager` does.
fn manual_assignment_shape(
    topic: &CreatableTopic,
    image: &MetadataImage,
) -> Result<(i32, i16), MetadataError> {
    for (field, value) in [
        ("numPartitions", topic.num_partitions),
        ("replicationFactor", i32::from(topic.replication_factor)),
    ] {
        if value != -1 {
            return Err(MetadataError::new(
                ErrorCode::InvalidRequest.code(),
                format!(
                    "A manual partition assignment was specified, but {field} was not set to -1."
                ),
            ));
        }
    }
    let mut indexes: Vec<i32> = topic
        .assignments
        .iter()
        .map(|a| a.partition_index)
        .collect();
    indexes.sort_unstable();
    if indexes
        .iter()
        .zip(0..)
        .any(|(index, expected)| *index != expected)
    {
        return Err(replica_assignment_error(
            "partitions should be a consecutive 0-based integer sequence".into(),
        ));
    }
    let replicas = topic.assignments.first().map_or(0, |a| a.broker_ids.len());
    for assignment in &topic.assignments {
        if assignment.broker_ids.len() != replicas {
            return Err(replica_assignment_error(format!(
                "The manual partition assignment includes a partition with {} replica(s), but this is not \
                 consistent with previous partitions, which have {replicas} replica(s).",
                assignment.broker_ids.len()
            )));
        }
        check_replica_list(image, &assignment.broker_ids)?;
    }
    Ok((
        i32::try_from(indexes.len()).unwrap_or(i32::MAX),
        i16::try_from(replicas).unwrap_or(i16::MAX),
    ))
}

/// Validates one topic and, unless `validate_only`, has the controller create it.
async fn create_topic(
    broker: &Broker,
    image: &MetadataImage,
    topic: &CreatableTopic,
    validate_only: bool,
) -> Result<TopicSummary, MetadataError> {
    let (num_partitions, replication_factor) = if topic.assignments.is_empty() {
        (
            if topic.num_partitions == -1 {
                broker.config.num_partitions
            } else {
                topic.num_partitions
            },
            if topic.replication_factor == -1 {
                broker.config.default_replication_factor
            } else {
                topic.replication_factor
            },
        )
    } else {
        manual_assignment_shape(topic, image)?
    };
    let null_valued: Vec<&str> = topic
        .configs
        .iter()
        .filter(|config| config.value.is_none())
        .map(|config| config.name.as_str())
        .collect();
    if !null_valued.is_empty() {
        return Err(MetadataError::invalid_config(format!(
            "Null value not supported for topic configs: {}",
            null_valued.join(",")
        )));
    }
    let configs: Vec<(String, String)> = topic
        .configs
        .iter()
        .filter_map(|config| Some((config.name.clone(), config.value.clone()?)))
        .collect();
    broker
        .controller
        .create_topic(
            &topic.name,
            num_partitions,
            replication_factor,
            &configs,
            validate_only,
        )
        .await
}

/// How often each item occurs (to refuse topics a request names twice, as Kafka does).
pub(super) fn count_occurrences<T: Eq + Hash>(
    items: impl IntoIterator<Item = T>,
) -> HashMap<T, usize> {
    let mut counts = HashMap::new();
    for item in items {
        *counts.entry(item).or_default() += 1;
    }
    counts
}

/// The v5+ result of a created (or validated) topic.
fn success(broker: &Broker, image: &MetadataImage, summary: TopicSummary) -> CreatableTopicResult {
    let configs = topic_config_entries(&broker.config, image, broker.node_id, &summary.configs)
        .into_iter()
        .map(|entry| CreatableTopicConfigs {
            name: entry.name,
            value: entry.value,
            read_only: entry.read_only,
            config_source: entry.source,
            is_sensitive: false,
        })
        .collect();
    CreatableTopicResult {
        name: summary.name,
        topic_id: summary.topic_id,
        error_code: 0,
        error_message: None,
        topic_config_error_code: 0,
        num_partitions: summary.num_partitions,
        replication_factor: summary.replication_factor,
        configs: Some(configs),
    }
}

/// KAFKA_STORAGE_ERROR when partitions of the created topic could not be created on this
/// broker (their directory or log failed: they are registered offline).
fn storage_failure(
    broker: &Broker,
    summary: &TopicSummary,
    validate_only: bool,
) -> Option<MetadataError> {
    if validate_only {
        return None;
    }
    let offline = broker.partitions.offline_partitions(&summary.name);
    if offline.is_empty() {
        return None;
    }
    let listed: Vec<String> = offline.iter().map(i32::to_string).collect();
    Some(MetadataError::new(
        ErrorCode::KafkaStorageError.code(),
        format!(
            "Topic {} was created, but its partitions [{}] could not be created in the log \
             directory of broker {}: they are offline (see the broker log)",
            summary.name,
            listed.join(", "),
            broker.node_id
        ),
    ))
}

fn failure(name: String, error: MetadataError) -> CreatableTopicResult {
    CreatableTopicResult {
        name,
        error_code: error.code,
        error_message: Some(error.message),
        ..CreatableTopicResult::default()
    }
}

pub async fn handle(
    broker: &Broker,
    request: CreateTopicsRequest,
    _version: i16,
) -> CreateTopicsResponse {
    if requested_partitions(&request, broker.config.num_partitions) > MAX_PARTITIONS_PER_BATCH {
        let mut reported = HashSet::new();
        let topics = request
            .topics
            .into_iter()
            .filter(|topic| reported.insert(topic.name.clone()))
            .map(|topic| {
                let error = MetadataError::new(
                    ErrorCode::PolicyViolation.code(),
                    "Excessively large number of partitions per request.",
                );
                failure(topic.name, error)
            })
            .collect();
        return CreateTopicsResponse {
            throttle_time_ms: 0,
            topics,
        };
    }
    let occurrences = count_occurrences(request.topics.iter().map(|t| t.name.as_str()));
    let mut reported = HashSet::new();
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        if !reported.insert(topic.name.as_str()) {
            continue;
        }
        if occurrences[topic.name.as_str()] > 1 {
            let error =
                MetadataError::new(ErrorCode::InvalidRequest.code(), "Duplicate topic name.");
            results.push(failure(topic.name.clone(), error));
            continue;
        }
        let image = broker.image();
        let result = match create_topic(broker, &image, topic, request.validate_only).await {
            Ok(summary) => {
                // The publisher opens the new topic's logs; the result describes its configs,
                // unless this broker could not carry the creation out.
                broker.catch_up_with_controller().await;
                match storage_failure(broker, &summary, request.validate_only) {
                    Some(error) => failure(topic.name.clone(), error),
                    None => success(broker, &broker.image(), summary),
                }
            }
            Err(error) => failure(topic.name.clone(), error),
        };
        results.push(result);
    }
    CreateTopicsResponse {
        throttle_time_ms: 0,
        topics: results,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::sync::Arc;
    use strom_metadata::BrokerRegistration;
    use strom_protocol::messages::create_topics_request::{
        CreatableReplicaAssignment, CreatableTopicConfig,
    };

    use crate::config::BrokerConfig;

    /// A topic to create: name, partition count, configs.
    pub(in crate::handlers) type TopicSpec<'a> = (&'a str, i32, &'a [(&'a str, Option<&'a str>)]);

    /// Keeps a test broker's directory and background tasks alive.
    pub(in crate::handlers) struct TestDir {
        _dir: tempfile::TempDir,
        _shutdown: tokio::sync::watch::Sender<bool>,
    }

    /// A broker (node 1, default config) with its metadata and logs in a new temporary directory,
    /// started like a real one (controller, publisher, registration, offsets topic). It
    /// advertises two listeners: PLAINTEXT at localhost:9092 and EXTERNAL at
    /// external.example:19092.
    pub(in crate::handlers) async fn test_broker() -> (TestDir, Arc<Broker>) {
        let temp_dir = tempfile::tempdir().expect("temp dir");
        let config = BrokerConfig {
            log_dirs: vec![temp_dir.path().to_path_buf()],
            ..BrokerConfig::default()
        };
        let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
        let advertised = vec![
            crate::server::plaintext_endpoint("PLAINTEXT", "localhost", 9092),
            crate::server::plaintext_endpoint("EXTERNAL", "external.example", 19092),
        ];
        let broker = crate::server::open_broker(config, advertised, shutdown_rx)
            .await
            .expect("open broker");
        let dir = TestDir {
            _dir: temp_dir,
            _shutdown: shutdown,
        };
        (dir, broker)
    }

    /// Creates topics through the handler, returning `(name, error code)` per result.
    pub(in crate::handlers) async fn create(
        broker: &Broker,
        topics: &[TopicSpec<'_>],
        validate_only: bool,
    ) -> Vec<(String, i16)> {
        let request = CreateTopicsRequest {
            topics: topics
                .iter()
                .map(|(name, num_partitions, configs)| CreatableTopic {
                    name: (*name).into(),
                    num_partitions: *num_partitions,
                    replication_factor: -1,
                    assignments: Vec::new(),
                    configs: configs
                        .iter()
                        .map(|(name, value)| CreatableTopicConfig {
                            name: (*name).into(),
                            value: value.map(Into::into),
                        })
                        .collect(),
                })
                .collect(),
            timeout_ms: 1000,
            validate_only,
        };
        handle(broker, request, 7)
            .await
            .topics
            .into_iter()
            .map(|topic| (topic.name, topic.error_code))
            .collect()
    }

    #[tokio::test]
    async fn creates_topics_with_defaults_and_reports_errors() {
        let (_dir, broker) = test_broker().await;
        let request = CreateTopicsRequest {
            topics: vec![CreatableTopic {
                name: "events".into(),
                num_partitions: 2,
                replication_factor: -1,
                assignments: Vec::new(),
                configs: vec![CreatableTopicConfig {
                    name: "retention.ms".into(),
                    value: Some("1000".into()),
                }],
            }],
            timeout_ms: 1000,
            validate_only: false,
        };
        let response = handle(&broker, request, 7).await;
        let result = &response.topics[0];
        assert_eq!(
            (result.error_code, result.error_message.as_deref()),
            (0, None)
        );
        assert_eq!((result.num_partitions, result.replication_factor), (2, 1));
        let image = broker.image();
        let topic = image.topic("events").expect("topic created");
        assert_eq!(result.topic_id, topic.id);
        let configs = result.configs.as_ref().expect("v5+ configs");
        let retention = configs
            .iter()
            .find(|c| c.name == "retention.ms")
            .expect("retention.ms");
        assert_eq!(retention.value.as_deref(), Some("1000"));
        assert_eq!(retention.config_source, 1);
        assert!(broker.partitions.get("events", 1).is_some());

        let codes_of =
            |results: Vec<(String, i16)>| results.into_iter().map(|r| r.1).collect::<Vec<_>>();
        assert_eq!(
            codes_of(create(&broker, &[("events", -1, &[])], false).await),
            [36]
        );
        assert_eq!(
            codes_of(create(&broker, &[("d", -1, &[]), ("d", 1, &[])], false).await),
            [42]
        );
        assert_eq!(
            codes_of(create(&broker, &[("n", -1, &[("retention.ms", None)])], false).await),
            [40]
        );
        assert_eq!(
            codes_of(create(&broker, &[("n", -1, &[("bogus", Some("1"))])], false).await),
            [40]
        );
        assert_eq!(
            codes_of(create(&broker, &[("n", 0, &[])], false).await),
            [37]
        );
        assert_eq!(
            codes_of(create(&broker, &[("v", -1, &[])], true).await),
            [0]
        );
        assert!(broker.image().topic("v").is_none());
        assert_eq!(
            codes_of(create(&broker, &[("v", -1, &[])], false).await),
            [0]
        );
        assert_eq!(
            broker.image().topic("v").map(|t| t.partitions.len()),
            Some(1)
        );
    }

    fn image_with_broker(id: i32) -> MetadataImage {
        let mut image = MetadataImage::empty("cluster".into());
        image.brokers.insert(
            id,
            BrokerRegistration {
                id,
                epoch: 0,
                incarnation_id: [0; 16],
                host: "localhost".into(),
                port: 9092,
                listeners: Vec::new(),
                rack: None,
                fenced: false,
                in_controlled_shutdown: false,
            },
        );
        image
    }

    fn manual(assignments: &[(i32, &[i32])]) -> CreatableTopic {
        CreatableTopic {
            name: "t".into(),
            num_partitions: -1,
            replication_factor: -1,
            assignments: assignments
                .iter()
                .map(|(index, brokers)| CreatableReplicaAssignment {
                    partition_index: *index,
                    broker_ids: brokers.to_vec(),
                })
                .collect(),
            configs: Vec::new(),
        }
    }

    #[tokio::test]
    async fn excessive_partition_counts_are_a_policy_violation() {
        let (_dir, broker) = test_broker().await;
        for topics in [
            &[("huge", i32::MAX, &[][..])][..],
            &[("a", 6_000, &[]), ("b", 4_001, &[])],
            &[("a", i32::MAX, &[]), ("b", i32::MAX, &[]), ("c", 1, &[])],
        ] {
            let results = create(&broker, topics, false).await;
            assert_eq!(results.len(), topics.len());
            assert!(results
                .iter()
                .all(|(_, code)| *code == ErrorCode::PolicyViolation.code()));
        }
        assert!(broker
            .image()
            .topics
            .keys()
            .all(|name| name == "__consumer_offsets"));
    }

    #[tokio::test]
    async fn manual_assignment_gives_partition_count_and_replication_factor() {
        let image = image_with_broker(1);
        let shape = manual_assignment_shape(&manual(&[(1, &[1]), (0, &[1])]), &image);
        assert_eq!(shape, Ok((2, 1)));
    }

    #[tokio::test]
    async fn manual_assignment_errors() {
        let image = image_with_broker(1);
        let code =
            |topic: &CreatableTopic| manual_assignment_shape(topic, &image).map_err(|e| e.code);
        assert_eq!(
            code(&manual(&[(1, &[1])])),
            Err(ErrorCode::InvalidReplicaAssignment.code())
        );
        assert_eq!(
            code(&manual(&[(0, &[2])])),
            Err(ErrorCode::InvalidReplicaAssignment.code())
        );
        assert_eq!(
            code(&manual(&[(0, &[1, 1])])),
            Err(ErrorCode::InvalidReplicaAssignment.code())
        );
        assert_eq!(
            code(&manual(&[(0, &[])])),
            Err(ErrorCode::InvalidReplicaAssignment.code())
        );
        let mut with_count = manual(&[(0, &[1])]);
        with_count.num_partitions = 1;
        assert_eq!(code(&with_count), Err(ErrorCode::InvalidRequest.code()));
    }
}
