//! OffsetCommit (key 8): stores a group's consumed positions. Partitions of unknown topics are
//! refused one by one; the committer is then checked against the group's membership and
//! generation ([`crate::groups::GroupCoordinator::commit_offsets`]), whose verdict answers every
//! other partition; if it passes, partitions with oversized metadata are refused and the rest
//! are written to `__consumer_offsets` (on the blocking pool: the append may fsync) and
//! acknowledged once the partition's in-sync replicas have them (COORDINATOR_NOT_AVAILABLE after
//! `offsets.commit.timeout.ms`, NOT_COORDINATOR if the leadership moved meanwhile).

use std::sync::Arc;

use strom_protocol::messages::offset_commit_request::OffsetCommitRequest;
use strom_protocol::messages::offset_commit_response::{
    OffsetCommitResponse, OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use strom_protocol::ErrorCode;

use crate::groups::coordinator::Committer;
use crate::groups::records::CommittedOffset;
use crate::groups::{on_blocking_pool, OffsetsTopic};
use crate::state::{now_ms, Broker};

/// Kafka's `offset.metadata.max.bytes` default.
const OFFSET_METADATA_MAX_BYTES: usize = 4096;
/// Only OffsetCommit v1 carries a per-partition commit timestamp.
const VERSION_WITH_COMMIT_TIMESTAMP: i16 = 1;

/// What happens to one requested partition.
enum PartitionOutcome {
    /// Refused before the group is consulted (unknown topic or partition, empty group id).
    Refused(ErrorCode),
    /// Refused only once the committer passed the group's checks, as in Kafka.
    MetadataTooLarge,
    /// Handed to the coordinator; answered with the group's verdict.
    Committed,
}

pub async fn handle(
    broker: &Arc<Broker>,
    request: OffsetCommitRequest,
    version: i16,
) -> OffsetCommitResponse {
    let now = now_ms();
    let image = broker.image();
    // (topic index, partition index, outcome) for every requested partition.
    let mut outcomes: Vec<(usize, usize, PartitionOutcome)> = Vec::new();
    let mut offsets = Vec::new();
    for (topic_index, topic) in request.topics.iter().enumerate() {
        let known = image.topic(&topic.name);
        for (partition_index, partition) in topic.partitions.iter().enumerate() {
            let metadata = partition.committed_metadata.clone().unwrap_or_default();
            let outcome = if request.group_id.is_empty() {
                PartitionOutcome::Refused(ErrorCode::InvalidGroupId)
            } else if !known.is_some_and(|t| t.partitions.contains_key(&partition.partition_index))
            {
                PartitionOutcome::Refused(ErrorCode::UnknownTopicOrPartition)
            } else if metadata.len() > OFFSET_METADATA_MAX_BYTES {
                PartitionOutcome::MetadataTooLarge
            } else {
                let commit_timestamp_ms = if version == VERSION_WITH_COMMIT_TIMESTAMP
                    && partition.commit_timestamp >= 0
                {
                    partition.commit_timestamp
                } else {
                    now
                };
                offsets.push((
                    (topic.name.clone(), partition.partition_index),
                    CommittedOffset {
                        offset: partition.committed_offset,
                        leader_epoch: partition.committed_leader_epoch,
                        metadata,
                        commit_timestamp_ms,
                    },
                ));
                PartitionOutcome::Committed
            };
            outcomes.push((topic_index, partition_index, outcome));
        }
    }
    // As in Kafka, the committer is checked whenever a partition of an existing topic is asked
    // for, even if all of them carry oversized metadata.
    let consult_group = outcomes
        .iter()
        .any(|(_, _, outcome)| !matches!(outcome, PartitionOutcome::Refused(_)));
    let group_error = if consult_group {
        let group_id = request.group_id.clone();
        let generation_id = request.generation_id_or_member_epoch;
        let member_id = request.member_id.clone();
        let group_instance_id = request.group_instance_id.clone();
        on_blocking_pool(broker, move |broker| {
            let committer = Committer {
                group_id: &group_id,
                generation_id,
                member_id: &member_id,
                group_instance_id: group_instance_id.as_deref(),
            };
            broker.groups.commit_offsets(
                &committer,
                offsets,
                version,
                now,
                &OffsetsTopic::new(broker),
            )
        })
        .await
        .unwrap_or(ErrorCode::CoordinatorNotAvailable)
    } else {
        ErrorCode::None
    };
    let mut topics: Vec<OffsetCommitResponseTopic> = request
        .topics
        .iter()
        .map(|topic| OffsetCommitResponseTopic {
            name: topic.name.clone(),
            partitions: Vec::with_capacity(topic.partitions.len()),
        })
        .collect();
    for (topic_index, partition_index, outcome) in outcomes {
        let error = match outcome {
            PartitionOutcome::Refused(error) => error,
            PartitionOutcome::MetadataTooLarge if group_error == ErrorCode::None => {
                ErrorCode::OffsetMetadataTooLarge
            }
            PartitionOutcome::MetadataTooLarge | PartitionOutcome::Committed => group_error,
        };
        let partition = &request.topics[topic_index].partitions[partition_index];
        topics[topic_index]
            .partitions
            .push(OffsetCommitResponsePartition {
                partition_index: partition.partition_index,
                error_code: error.code(),
            });
    }
    OffsetCommitResponse {
        topics,
        ..Default::default()
    }
}
