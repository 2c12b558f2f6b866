//! ListOffsets (key 2): earliest, latest, max-timestamp and by-timestamp offset lookups.
//!
//! Special timestamps, as in Kafka: -2 earliest (log start), -1 latest (high watermark, or the last
//! stable offset for read_committed: the same here until transactions exist), -3 the record with the
//! largest timestamp (KIP-734), -4 earliest local (KIP-1005: the log start, as nothing is tiered),
//! -5 earliest pending upload (KIP-1023: nothing is tiered, so none). A timestamp >= 0 finds the
//! first record whose timestamp is at least that; none gives offset -1. As in Kafka's
//! `Partition.fetchOffsetForTimestamp`, an answer found by timestamp (or max timestamp) at or
//! after the high watermark is no answer: consumers cannot read there yet. The partition's owner
//! answers (`Partition::offset_for_timestamp`), off the async worker; a partition whose storage
//! failed answers KAFKA_STORAGE_ERROR.

use strom_protocol::messages::list_offsets_request::ListOffsetsRequest;
use strom_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsResponse, ListOffsetsTopicResponse,
};

use crate::partitions::off_worker;
use crate::state::Broker;

/// Answers off the async worker: a lookup by timestamp reads the disk.
pub async fn handle(
    broker: &Broker,
    request: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    off_worker(|| list_offsets(broker, request, version))
}

fn list_offsets(broker: &Broker, request: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|wanted| {
                    let mut answer = ListOffsetsPartitionResponse {
                        partition_index: wanted.partition_index,
                        timestamp: -1,
                        offset: -1,
                        leader_epoch: -1,
                        ..Default::default()
                    };
                    let Some(partition) =
                        broker.partitions.get(&topic.name, wanted.partition_index)
                    else {
                        answer.error_code =
                            broker.partition_not_hosted_error(&topic.name, wanted.partition_index);
                        return answer;
                    };
                    answer.leader_epoch = partition.leader_epoch();
                    match partition.offset_for_timestamp(wanted.timestamp) {
                        Ok(Some((timestamp, offset))) => {
                            answer.timestamp = timestamp;
                            answer.offset = offset;
                        }
                        Ok(None) => {}
                        Err(error) => answer.error_code = error.error_code(),
                    }
                    if version == 0 && answer.offset >= 0 {
                        answer.old_style_offsets = vec![answer.offset];
                    }
                    answer
                })
                .collect();
            ListOffsetsTopicResponse {
                name: topic.name,
                partitions,
            }
        })
        .collect();
    ListOffsetsResponse {
        topics,
        ..Default::default()
    }
}
