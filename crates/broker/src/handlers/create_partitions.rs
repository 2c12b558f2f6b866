//! CreatePartitions (API 37): grows topics to a new partition count through the metadata store.
//!
//! As in Kafka: a topic named twice is INVALID_REQUEST, an unknown topic UNKNOWN_TOPIC_OR_PARTITION,
//! a count that is not an increase INVALID_PARTITIONS. A manual assignment must list one replica set
//! per new partition, each of registered brokers (INVALID_REPLICA_ASSIGNMENT otherwise); the
//! replicas themselves are placed by the metadata store, as for automatic assignment.

use strom_metadata::MetadataError;
use strom_protocol::messages::create_partitions_request::{
    CreatePartitionsRequest, CreatePartitionsTopic,
};
use strom_protocol::messages::create_partitions_response::{
    CreatePartitionsResponse, CreatePartitionsTopicResult,
};
use strom_protocol::ErrorCode;

use super::create_topics::{check_replica_list, count_occurrences, MAX_PARTITIONS_PER_BATCH};
use crate::state::Broker;

/// The partitions a request would add to existing topics, counted once per topic name.
fn requested_additions(broker: &Broker, request: &CreatePartitionsRequest) -> i64 {
    let image = broker.image();
    let mut seen = std::collections::HashSet::new();
    request
        .topics
        .iter()
        .filter(|topic| seen.insert(topic.name.as_str()))
        .filter_map(|topic| {
            let current = i64::try_from(image.topic(&topic.name)?.partitions.len()).ok()?;
            Some((i64::from(topic.count) - current).max(0))
        })
        .fold(0i64, i64::saturating_add)
}

/// Checks a manual assignment of the partitions to add, when the count is an increase.
fn check_assignments(broker: &Broker, topic: &CreatePartitionsTopic) -> Result<(), MetadataError> {
    let Some(assignments) = &topic.assignments else {
        return Ok(());
    };
    let image = broker.image();
    let Some(current) = image.topic(&topic.name).map(|t| t.partitions.len()) else {
        return Ok(());
    };
    let Some(added) = usize::try_from(topic.count)
        .ok()
        .and_then(|count| count.checked_sub(current))
    else {
        return Ok(());
    };
    if added > 0 && assignments.len() != added {
        return Err(MetadataError::of(
            ErrorCode::InvalidReplicaAssignment,
            format!(
                "Attempted to add {added} additional partition(s), but only {} assignment(s) were specified.",
                assignments.len()
            ),
        ));
    }
    assignments
        .iter()
        .try_for_each(|assignment| check_replica_list(&image, &assignment.broker_ids))
}

pub async fn handle(
    broker: &Broker,
    request: CreatePartitionsRequest,
    _version: i16,
) -> CreatePartitionsResponse {
    // Kafka's controller refuses a request producing more than MAX_RECORDS_PER_USER_OP records
    // as a whole ("excessively large batch operation").
    if requested_additions(broker, &request) > MAX_PARTITIONS_PER_BATCH {
        let results = request
            .topics
            .into_iter()
            .map(|topic| CreatePartitionsTopicResult {
                name: topic.name,
                error_code: ErrorCode::PolicyViolation.code(),
                error_message: Some("Unable to perform excessively large batch operation.".into()),
            })
            .collect();
        return CreatePartitionsResponse {
            throttle_time_ms: 0,
            results,
        };
    }
    let occurrences = count_occurrences(request.topics.iter().map(|t| t.name.as_str()));
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let outcome = if occurrences[topic.name.as_str()] > 1 {
            Err(MetadataError::of(
                ErrorCode::InvalidRequest,
                "Duplicate topic name.",
            ))
        } else {
            match check_assignments(broker, topic) {
                Ok(()) => {
                    broker
                        .controller
                        .create_partitions(&topic.name, topic.count, request.validate_only)
                        .await
                }
                Err(error) => Err(error),
            }
        };
        let (error_code, error_message) = match outcome {
            Ok(()) => (ErrorCode::None.code(), None),
            Err(error) => (error.code, Some(error.message)),
        };
        results.push(CreatePartitionsTopicResult {
            name: topic.name.clone(),
            error_code,
            error_message,
        });
    }
    // The publisher opens the new partitions' logs.
    broker.catch_up_with_controller().await;
    CreatePartitionsResponse {
        throttle_time_ms: 0,
        results,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::create_topics::tests::{create, test_broker};
    use strom_protocol::messages::create_partitions_request::CreatePartitionsAssignment;

    async fn grow(
        broker: &Broker,
        topics: &[(&str, i32, Option<usize>)],
        validate_only: bool,
    ) -> Vec<ErrorCode> {
        let request = CreatePartitionsRequest {
            topics: topics
                .iter()
                .map(|(name, count, assignments)| CreatePartitionsTopic {
                    name: (*name).into(),
                    count: *count,
                    assignments: assignments.map(|n| {
                        vec![
                            CreatePartitionsAssignment {
                                broker_ids: vec![broker.node_id]
                            };
                            n
                        ]
                    }),
                })
                .collect(),
            timeout_ms: 1000,
            validate_only,
        };
        handle(broker, request, 3)
            .await
            .results
            .iter()
            .map(|r| ErrorCode::from_code(r.error_code).expect("a Kafka error code"))
            .collect()
    }

    #[tokio::test]
    async fn grows_topics_and_refuses_bad_counts() {
        let (_dir, broker) = test_broker().await;
        create(&broker, &[("t", 1, &[])], false).await;
        let partitions = |broker: &Broker| broker.image().topic("t").map(|t| t.partitions.len());
        assert_eq!(
            grow(&broker, &[("t", 3, None)], true).await,
            [ErrorCode::None]
        );
        assert_eq!(partitions(&broker), Some(1));
        assert_eq!(
            grow(&broker, &[("t", 3, None)], false).await,
            [ErrorCode::None]
        );
        assert_eq!(partitions(&broker), Some(3));
        assert!(broker.partitions.get("t", 2).is_some());
        assert_eq!(
            grow(&broker, &[("t", 2, None), ("x", 2, None)], false).await,
            [
                ErrorCode::InvalidPartitions,
                ErrorCode::UnknownTopicOrPartition
            ]
        );
        assert_eq!(
            grow(&broker, &[("t", 3, None)], false).await,
            [ErrorCode::InvalidPartitions]
        );
        assert_eq!(
            grow(&broker, &[("t", 5, Some(1))], false).await,
            [ErrorCode::InvalidReplicaAssignment]
        );
        assert_eq!(
            grow(&broker, &[("t", 5, Some(2))], false).await,
            [ErrorCode::None]
        );
        assert_eq!(
            grow(&broker, &[("t", 6, None), ("t", 7, None)], false).await,
            [ErrorCode::InvalidRequest, ErrorCode::InvalidRequest]
        );
        assert_eq!(partitions(&broker), Some(5));
        assert_eq!(
            grow(&broker, &[("t", i32::MAX, None)], false).await,
            [ErrorCode::PolicyViolation]
        );
        assert_eq!(
            grow(&broker, &[("t", 6_000, None), ("t", 6_000, None)], false).await,
            [ErrorCode::InvalidRequest, ErrorCode::InvalidRequest]
        );
        assert_eq!(partitions(&broker), Some(5));
    }
}
