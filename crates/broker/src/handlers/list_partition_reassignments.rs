//! ListPartitionReassignments (API 46, KIP-455): the ongoing reassignments of the named
//! partitions, or of all partitions for a null topic list, as the active controller knows them
//! (target replicas followed by those being removed, and the adding and removing sets).
//! Partitions without one, and unknown topics, are left out, as in Kafka.

use strom_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsRequest;
use strom_protocol::messages::list_partition_reassignments_response::{
    ListPartitionReassignmentsResponse, OngoingPartitionReassignment, OngoingTopicReassignment,
};
use strom_protocol::ErrorCode;

use crate::state::Broker;

pub async fn handle(
    broker: &Broker,
    request: ListPartitionReassignmentsRequest,
    _version: i16,
) -> ListPartitionReassignmentsResponse {
    let topics = request.topics.map(|topics| {
        topics
            .into_iter()
            .map(|topic| (topic.name, topic.partition_indexes))
            .collect()
    });
    match broker.controller.list_partition_reassignments(topics).await {
        Ok(topics) => ListPartitionReassignmentsResponse {
            throttle_time_ms: 0,
            error_code: ErrorCode::None.code(),
            error_message: None,
            topics: topics
                .into_iter()
                .map(|topic| OngoingTopicReassignment {
                    name: topic.topic,
                    partitions: topic
                        .partitions
                        .into_iter()
                        .map(|p| OngoingPartitionReassignment {
                            partition_index: p.partition,
                            replicas: p.replicas,
                            adding_replicas: p.adding_replicas,
                            removing_replicas: p.removing_replicas,
                        })
                        .collect(),
                })
                .collect(),
        },
        Err(error) => ListPartitionReassignmentsResponse {
            throttle_time_ms: 0,
            error_code: error.code,
            error_message: Some(error.message),
            topics: Vec::new(),
        },
    }
}
