//! OffsetCommit (key 8): stores a group's consumed positions. Partitions of unknown topics and
//! oversized metadata strings are refused one by one; the rest are checked against the group's
//! membership and generation and written to `__consumer_offsets` before the answer
//! ([`crate::groups::GroupCoordinator::commit_offsets`]).

use strom_protocol::messages::offset_commit_request::OffsetCommitRequest;
use strom_protocol::messages::offset_commit_response::{
    OffsetCommitResponse, OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};

use crate::groups::codes::{
    INVALID_GROUP_ID, OFFSET_METADATA_TOO_LARGE, UNKNOWN_TOPIC_OR_PARTITION,
};
use crate::groups::coordinator::Committer;
use crate::groups::records::CommittedOffset;
use crate::groups::OffsetsTopic;
use crate::state::{now_ms, Broker};

/// Kafka's `offset.metadata.max.bytes` default.
const OFFSET_METADATA_MAX_BYTES: usize = 4096;
/// Only OffsetCommit v1 carries a per-partition commit timestamp.
const VERSION_WITH_COMMIT_TIMESTAMP: i16 = 1;

pub fn handle(broker: &Broker, request: OffsetCommitRequest, version: i16) -> OffsetCommitResponse {
    let now = now_ms();
    let image = broker.image();
    // (topic index, partition index, error) for every requested partition; valid ones are
    // filled in with the coordinator's answer.
    let mut errors: Vec<(usize, usize, Option<i16>)> = Vec::new();
    let mut offsets = Vec::new();
    for (topic_index, topic) in request.topics.iter().enumerate() {
        let known = image.topic(&topic.name);
        for (partition_index, partition) in topic.partitions.iter().enumerate() {
            let metadata = partition.committed_metadata.clone().unwrap_or_default();
            let error = if request.group_id.is_empty() {
                Some(INVALID_GROUP_ID)
            } else if !known.is_some_and(|t| t.partitions.contains_key(&partition.partition_index))
            {
                Some(UNKNOWN_TOPIC_OR_PARTITION)
            } else if metadata.len() > OFFSET_METADATA_MAX_BYTES {
                Some(OFFSET_METADATA_TOO_LARGE)
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
                None
            };
            errors.push((topic_index, partition_index, error));
        }
    }
    let group_error = if offsets.is_empty() {
        0
    } else {
        let committer = Committer {
            group_id: &request.group_id,
            generation_id: request.generation_id_or_member_epoch,
            member_id: &request.member_id,
            group_instance_id: request.group_instance_id.as_deref(),
        };
        broker
            .groups
            .commit_offsets(&committer, offsets, now, &OffsetsTopic::new(broker))
    };
    let mut topics: Vec<OffsetCommitResponseTopic> = request
        .topics
        .iter()
        .map(|topic| OffsetCommitResponseTopic {
            name: topic.name.clone(),
            partitions: Vec::with_capacity(topic.partitions.len()),
        })
        .collect();
    for (topic_index, partition_index, error) in errors {
        let partition = &request.topics[topic_index].partitions[partition_index];
        topics[topic_index]
            .partitions
            .push(OffsetCommitResponsePartition {
                partition_index: partition.partition_index,
                error_code: error.unwrap_or(group_error),
            });
    }
    OffsetCommitResponse {
        topics,
        ..Default::default()
    }
}
