//! AlterPartitionReassignments (API 45, KIP-455): moves partitions to new replicas, run by the
//! active controller (as Kafka's brokers forward it there). Per partition: a target replica list
//! starts (or changes) a reassignment, a null one cancels it; Kafka's codes
//! (INVALID_REPLICA_ASSIGNMENT for unknown or repeated brokers or an empty list,
//! NO_REASSIGNMENT_IN_PROGRESS, UNKNOWN_TOPIC_OR_PARTITION). The new replicas copy the partition
//! as followers; the controller drops the old ones once every target replica is in the ISR.
//! A controller that cannot be reached fails the request with a top-level error.

use strom_protocol::messages::alter_partition_reassignments_request::AlterPartitionReassignmentsRequest;
use strom_protocol::messages::alter_partition_reassignments_response::{
    AlterPartitionReassignmentsResponse, ReassignablePartitionResponse, ReassignableTopicResponse,
};
use strom_protocol::ErrorCode;

use crate::state::Broker;

pub async fn handle(
    broker: &Broker,
    request: AlterPartitionReassignmentsRequest,
    _version: i16,
) -> AlterPartitionReassignmentsResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .into_iter()
                .map(|p| (p.partition_index, p.replicas))
                .collect();
            (topic.name, partitions)
        })
        .collect();
    match broker
        .controller
        .alter_partition_reassignments(topics)
        .await
    {
        Ok(results) => {
            // The publisher opens the new replicas' logs on this broker, if it is one of them.
            broker.catch_up_with_controller().await;
            AlterPartitionReassignmentsResponse {
                throttle_time_ms: 0,
                error_code: ErrorCode::None.code(),
                error_message: None,
                responses: results
                    .into_iter()
                    .map(|topic| ReassignableTopicResponse {
                        name: topic.topic,
                        partitions: topic
                            .partitions
                            .into_iter()
                            .map(|p| ReassignablePartitionResponse {
                                partition_index: p.partition,
                                error_code: p.error_code,
                                error_message: p.error_message,
                            })
                            .collect(),
                    })
                    .collect(),
            }
        }
        Err(error) => AlterPartitionReassignmentsResponse {
            throttle_time_ms: 0,
            error_code: error.code,
            error_message: Some(error.message),
            responses: Vec::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::create_topics::tests::{create, test_broker};
    use crate::handlers::list_partition_reassignments;
    use strom_protocol::messages::alter_partition_reassignments_request::{
        ReassignablePartition, ReassignableTopic,
    };
    use strom_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsRequest;

    async fn reassign(broker: &Broker, partitions: &[(i32, Option<&[i32]>)]) -> Vec<ErrorCode> {
        let request = AlterPartitionReassignmentsRequest {
            timeout_ms: 1000,
            topics: vec![ReassignableTopic {
                name: "t".into(),
                partitions: partitions
                    .iter()
                    .map(|(partition_index, replicas)| ReassignablePartition {
                        partition_index: *partition_index,
                        replicas: replicas.map(<[i32]>::to_vec),
                    })
                    .collect(),
            }],
        };
        let response = handle(broker, request, 0).await;
        assert_eq!(response.error_code, 0);
        response.responses[0]
            .partitions
            .iter()
            .map(|p| ErrorCode::from_code(p.error_code).expect("a Kafka error code"))
            .collect()
    }

    #[tokio::test]
    async fn reassignments_answer_per_partition_with_kafka_codes() {
        let (_dir, broker) = test_broker().await;
        create(&broker, &[("t", 2, &[])], false).await;
        let me = broker.node_id;
        assert_eq!(
            reassign(
                &broker,
                &[
                    (0, Some(&[me])),
                    (1, Some(&[me, 7])),
                    (1, Some(&[])),
                    (1, None),
                    (5, Some(&[me]))
                ]
            )
            .await,
            [
                ErrorCode::None,
                ErrorCode::InvalidReplicaAssignment,
                ErrorCode::InvalidReplicaAssignment,
                ErrorCode::NoReassignmentInProgress,
                ErrorCode::UnknownTopicOrPartition,
            ]
        );
        let listed = list_partition_reassignments::handle(
            &broker,
            ListPartitionReassignmentsRequest {
                timeout_ms: 1000,
                topics: None,
            },
            0,
        )
        .await;
        assert_eq!(listed.error_code, 0);
        assert!(listed.topics.is_empty(), "nothing is being reassigned");
    }
}
