//! ElectLeaders (API 43): preferred or unclean leader election, run by the active controller
//! (as Kafka's brokers forward it there). Per partition, Kafka's codes: ELECTION_NOT_NEEDED,
//! PREFERRED_LEADER_NOT_AVAILABLE, ELIGIBLE_LEADERS_NOT_AVAILABLE,
//! UNKNOWN_TOPIC_OR_PARTITION; a null topic list means every partition (those needing no
//! election are left out), an empty one nothing. An unknown election type, or a controller that
//! cannot be reached, fails every listed partition and sets the top-level error code.

use strom_metadata::controller::ElectionType;
use strom_metadata::MetadataError;
use strom_protocol::messages::elect_leaders_request::ElectLeadersRequest;
use strom_protocol::messages::elect_leaders_response::{
    ElectLeadersResponse, PartitionResult, ReplicaElectionResult,
};
use strom_protocol::ErrorCode;

use crate::state::Broker;

pub async fn handle(
    broker: &Broker,
    request: ElectLeadersRequest,
    _version: i16,
) -> ElectLeadersResponse {
    let topics = request.topic_partitions.map(|topics| {
        topics
            .into_iter()
            .map(|topic| (topic.topic, topic.partitions))
            .collect::<Vec<_>>()
    });
    if topics.as_ref().is_some_and(Vec::is_empty) {
        return ElectLeadersResponse::default();
    }
    let outcome = match ElectionType::from_code(request.election_type) {
        Some(election) => {
            broker
                .controller
                .elect_leaders(election, topics.clone())
                .await
        }
        None => Err(MetadataError::invalid_request(format!(
            "Unknown election type {}",
            request.election_type
        ))),
    };
    match outcome {
        Ok(results) => {
            // Clients refresh metadata after the election: let this broker's reflect it.
            broker.catch_up_with_controller().await;
            ElectLeadersResponse {
                throttle_time_ms: 0,
                error_code: ErrorCode::None.code(),
                replica_election_results: results
                    .into_iter()
                    .map(|topic| ReplicaElectionResult {
                        topic: topic.topic,
                        partition_result: topic
                            .partitions
                            .into_iter()
                            .map(|p| PartitionResult {
                                partition_id: p.partition,
                                error_code: p.error_code,
                                error_message: p.error_message,
                            })
                            .collect(),
                    })
                    .collect(),
            }
        }
        Err(error) => ElectLeadersResponse {
            throttle_time_ms: 0,
            error_code: error.code,
            replica_election_results: topics
                .unwrap_or_default()
                .into_iter()
                .map(|(topic, partitions)| ReplicaElectionResult {
                    topic,
                    partition_result: partitions
                        .into_iter()
                        .map(|partition_id| PartitionResult {
                            partition_id,
                            error_code: error.code,
                            error_message: Some(error.message.clone()),
                        })
                        .collect(),
                })
                .collect(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::create_topics::tests::{create, test_broker};
    use strom_protocol::messages::elect_leaders_request::TopicPartitions;

    fn request(election_type: i8, topics: Option<&[(&str, &[i32])]>) -> ElectLeadersRequest {
        ElectLeadersRequest {
            election_type,
            topic_partitions: topics.map(|topics| {
                topics
                    .iter()
                    .map(|(topic, partitions)| TopicPartitions {
                        topic: (*topic).into(),
                        partitions: partitions.to_vec(),
                    })
                    .collect()
            }),
            timeout_ms: 1000,
        }
    }

    fn codes(response: &ElectLeadersResponse) -> Vec<(String, i32, ErrorCode)> {
        response
            .replica_election_results
            .iter()
            .flat_map(|t| {
                t.partition_result.iter().map(|p| {
                    (
                        t.topic.clone(),
                        p.partition_id,
                        ErrorCode::from_code(p.error_code).expect("a Kafka error code"),
                    )
                })
            })
            .collect()
    }

    #[tokio::test]
    async fn elections_answer_per_partition_with_kafka_codes() {
        let (_dir, broker) = test_broker().await;
        create(&broker, &[("t", 2, &[])], false).await;
        let listed: &[(&str, &[i32])] = &[("t", &[0, 1, 7]), ("missing", &[0])];
        let response = handle(&broker, request(0, Some(listed)), 2).await;
        assert_eq!(response.error_code, 0);
        assert_eq!(
            codes(&response),
            [
                ("t".into(), 0, ErrorCode::ElectionNotNeeded),
                ("t".into(), 1, ErrorCode::ElectionNotNeeded),
                ("t".into(), 7, ErrorCode::UnknownTopicOrPartition),
                ("missing".into(), 0, ErrorCode::UnknownTopicOrPartition),
            ]
        );
        let response = handle(&broker, request(1, Some(&[("t", &[0])])), 2).await;
        assert_eq!(
            codes(&response),
            [("t".into(), 0, ErrorCode::ElectionNotNeeded)]
        );
        // Every partition: none needs an election, so none is listed.
        let response = handle(&broker, request(0, None), 2).await;
        assert_eq!(codes(&response), []);
        assert_eq!(
            handle(&broker, request(0, Some(&[])), 2).await,
            ElectLeadersResponse::default()
        );
        // An unknown election type fails the request.
        let response = handle(&broker, request(5, Some(&[("t", &[0])])), 2).await;
        assert_eq!(response.error_code, ErrorCode::InvalidRequest.code());
        assert_eq!(
            codes(&response),
            [("t".into(), 0, ErrorCode::InvalidRequest)]
        );
    }
}
