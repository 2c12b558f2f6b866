//! DescribeQuorum (API 55): the metadata quorum, for `kafka-metadata-quorum`-style tools. Kafka's
//! brokers forward it to the active controller, the Raft leader, the only member that knows how
//! far every voter and observer has replicated; here the request goes the same way through the
//! controller client (answered locally on the active controller, over the controller listener
//! elsewhere).
//!
//! As in Kafka's Raft client, the request must name exactly `__cluster_metadata` partition 0
//! (else UNKNOWN_TOPIC_OR_PARTITION for each partition asked), and without a reachable active
//! controller the answer is NOT_LEADER_OR_FOLLOWER. Voters and observers carry their log end
//! offset and last fetch / caught-up times (-1 when unknown; the leader reports now for itself),
//! and the zero directory id, as Kafka reports voters configured by `controller.quorum.voters`.
//! From v2 `nodes` lists each voter's controller endpoint, named after the first of
//! `controller.listener.names`.

use strom_metadata::{MetadataError, QuorumStatus, ReplicaStatus};
use strom_protocol::messages::describe_quorum_request::DescribeQuorumRequest;
use strom_protocol::messages::describe_quorum_response::{
    DescribeQuorumResponse, Listener, Node, PartitionData, ReplicaState, TopicData,
};
use strom_protocol::ErrorCode;

use crate::state::Broker;

/// The metadata log's topic.
const METADATA_TOPIC: &str = "__cluster_metadata";
/// Kafka's message for UNKNOWN_TOPIC_OR_PARTITION.
const UNKNOWN_PARTITION_MESSAGE: &str = "This server does not host this topic-partition.";
/// Kafka's message for NOT_LEADER_OR_FOLLOWER.
const NOT_LEADER_MESSAGE: &str = "For requests intended only for the leader, this error indicates \
     that the broker is not the current leader. For requests intended for any replica, this error \
     indicates that the broker is not a replica of the topic partition.";

pub async fn handle(
    broker: &Broker,
    request: DescribeQuorumRequest,
    version: i16,
) -> DescribeQuorumResponse {
    let asks_for_metadata_partition = matches!(
        request.topics.as_slice(),
        [topic] if topic.topic_name == METADATA_TOPIC
            && matches!(topic.partitions.as_slice(), [p] if p.partition_index == 0)
    );
    if !asks_for_metadata_partition {
        return DescribeQuorumResponse {
            topics: request
                .topics
                .into_iter()
                .map(|topic| TopicData {
                    topic_name: topic.topic_name,
                    partitions: topic
                        .partitions
                        .into_iter()
                        .map(|p| PartitionData {
                            partition_index: p.partition_index,
                            ..partition_error(
                                ErrorCode::UnknownTopicOrPartition,
                                UNKNOWN_PARTITION_MESSAGE,
                            )
                        })
                        .collect(),
                })
                .collect(),
            ..Default::default()
        };
    }
    match broker.controller.describe_quorum().await {
        Ok(status) => describe(broker, &status, version),
        Err(error) => singleton(partition_error_of(&error)),
    }
}

fn partition_error(code: ErrorCode, message: &str) -> PartitionData {
    PartitionData {
        partition_index: 0,
        error_code: code.code(),
        error_message: Some(message.to_string()),
        leader_id: -1,
        leader_epoch: -1,
        high_watermark: -1,
        ..Default::default()
    }
}

/// No active controller could answer: what a controller that is not the leader answers.
fn partition_error_of(error: &MetadataError) -> PartitionData {
    if error.code == ErrorCode::NotController.code() {
        partition_error(ErrorCode::NotLeaderOrFollower, NOT_LEADER_MESSAGE)
    } else {
        PartitionData {
            error_code: error.code,
            error_message: Some(error.message.clone()),
            ..partition_error(ErrorCode::UnknownServerError, "")
        }
    }
}

fn singleton(partition: PartitionData) -> DescribeQuorumResponse {
    DescribeQuorumResponse {
        topics: vec![TopicData {
            topic_name: METADATA_TOPIC.to_string(),
            partitions: vec![partition],
        }],
        ..Default::default()
    }
}

fn replica_state(replica: &ReplicaStatus) -> ReplicaState {
    ReplicaState {
        replica_id: replica.node_id,
        // Kafka's NO_DIRECTORY_ID: voters from `controller.quorum.voters` have none.
        replica_directory_id: [0; 16],
        log_end_offset: replica.log_end_offset.unwrap_or(-1),
        last_fetch_timestamp: replica.last_fetch_ms.unwrap_or(-1),
        last_caught_up_timestamp: replica.last_caught_up_ms.unwrap_or(-1),
    }
}

fn describe(broker: &Broker, status: &QuorumStatus, version: i16) -> DescribeQuorumResponse {
    let mut response = singleton(PartitionData {
        partition_index: 0,
        error_code: ErrorCode::None.code(),
        leader_id: status.leader_id.unwrap_or(-1),
        leader_epoch: status.epoch,
        high_watermark: status.high_watermark,
        current_voters: status.voters.iter().map(replica_state).collect(),
        observers: status.observers.iter().map(replica_state).collect(),
        ..Default::default()
    });
    if version >= 2 {
        let listener_name = broker
            .config
            .controller_listener_names
            .first()
            .cloned()
            .unwrap_or_default();
        response.nodes = status
            .voters
            .iter()
            .map(|voter| Node {
                node_id: voter.node_id,
                listeners: voter
                    .endpoint
                    .as_deref()
                    .and_then(|endpoint| endpoint.rsplit_once(':'))
                    .and_then(|(host, port)| {
                        Some(Listener {
                            name: listener_name.clone(),
                            host: host
                                .trim_start_matches('[')
                                .trim_end_matches(']')
                                .to_string(),
                            port: port.parse().ok()?,
                        })
                    })
                    .into_iter()
                    .collect(),
            })
            .collect();
    }
    response
}

#[cfg(test)]
mod tests {
    use strom_protocol::messages::describe_quorum_request::{
        PartitionData as RequestPartition, TopicData as RequestTopic,
    };

    use super::*;
    use crate::handlers::create_topics::tests::test_broker;

    fn request(topic: &str, partitions: &[i32]) -> DescribeQuorumRequest {
        DescribeQuorumRequest {
            topics: vec![RequestTopic {
                topic_name: topic.to_string(),
                partitions: partitions
                    .iter()
                    .map(|p| RequestPartition {
                        partition_index: *p,
                    })
                    .collect(),
            }],
        }
    }

    #[tokio::test]
    async fn a_single_node_is_the_only_voter_and_leads() {
        let (_dir, broker) = test_broker().await;
        let response = handle(&broker, request(METADATA_TOPIC, &[0]), 2).await;
        assert_eq!(response.error_code, 0);
        let [topic] = response.topics.as_slice() else {
            panic!("one topic: {response:?}");
        };
        assert_eq!(topic.topic_name, METADATA_TOPIC);
        let [partition] = topic.partitions.as_slice() else {
            panic!("one partition: {topic:?}");
        };
        assert_eq!(partition.error_code, 0);
        assert_eq!(partition.leader_id, broker.node_id);
        assert!(partition.leader_epoch >= 1);
        assert!(partition.high_watermark > 0);
        let [voter] = partition.current_voters.as_slice() else {
            panic!("one voter: {partition:?}");
        };
        assert_eq!(voter.replica_id, broker.node_id);
        assert_eq!(voter.log_end_offset, partition.high_watermark);
        assert!(voter.last_fetch_timestamp > 0 && voter.last_caught_up_timestamp > 0);
        assert!(partition.observers.is_empty());
        // No controller listener on a single node: the voter has no endpoint to list.
        assert_eq!(response.nodes.len(), 1);
        assert!(response.nodes[0].listeners.is_empty());
    }

    #[tokio::test]
    async fn only_the_metadata_partition_can_be_described() {
        let (_dir, broker) = test_broker().await;
        for (topic, partitions) in [
            ("orders", vec![0]),
            (METADATA_TOPIC, vec![1]),
            (METADATA_TOPIC, vec![0, 1]),
        ] {
            let response = handle(&broker, request(topic, &partitions), 1).await;
            let codes: Vec<i16> = response.topics[0]
                .partitions
                .iter()
                .map(|p| p.error_code)
                .collect();
            assert_eq!(
                codes,
                vec![ErrorCode::UnknownTopicOrPartition.code(); partitions.len()],
                "{topic} {partitions:?}"
            );
        }
    }
}
