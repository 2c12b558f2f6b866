//! ListOffsets (key 2): earliest, latest, max-timestamp and by-timestamp offset lookups.
//!
//! Special timestamps, as in Kafka: -2 earliest (log start), -1 latest (high watermark, or the last
//! stable offset for read_committed: the same here until transactions exist), -3 the record with the
//! largest timestamp (KIP-734), -4 earliest local (KIP-1005: the log start, as nothing is tiered),
//! -5 earliest pending upload (KIP-1023: nothing is tiered, so none). A timestamp >= 0 finds the
//! first record whose timestamp is at least that; none gives offset -1. As in Kafka's
//! `Partition.fetchOffsetForTimestamp`, an answer found by timestamp (or max timestamp) at or
//! after the high watermark is no answer: consumers cannot read there yet.

use strom_protocol::messages::list_offsets_request::ListOffsetsRequest;
use strom_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsResponse, ListOffsetsTopicResponse,
};

use crate::state::Broker;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const EARLIEST_PENDING_UPLOAD: i64 = -5;

pub fn handle(broker: &Broker, request: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    let image = broker.image();
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let leader_epoch = |index: i32| {
                image
                    .topic(&topic.name)
                    .and_then(|t| t.partitions.get(&index))
                    .map(|p| p.leader_epoch)
                    .unwrap_or(-1)
            };
            let partitions = topic
                .partitions
                .iter()
                .map(|wanted| {
                    let mut answer = ListOffsetsPartitionResponse {
                        partition_index: wanted.partition_index,
                        timestamp: -1,
                        offset: -1,
                        leader_epoch: leader_epoch(wanted.partition_index),
                        ..Default::default()
                    };
                    let Some(partition) = broker.led_partition(&topic.name, wanted.partition_index)
                    else {
                        answer.error_code =
                            broker.partition_not_hosted_error(&topic.name, wanted.partition_index);
                        return answer;
                    };
                    let log = partition.log();
                    let high_watermark = log.high_watermark();
                    let committed = |found: Option<(i64, i64)>| {
                        found.filter(|&(_, offset)| offset < high_watermark)
                    };
                    let found = match wanted.timestamp {
                        LATEST => Ok(Some((-1, high_watermark))),
                        EARLIEST | EARLIEST_LOCAL => Ok(Some((-1, log.log_start_offset()))),
                        MAX_TIMESTAMP => Ok(committed(log.max_timestamp())),
                        EARLIEST_PENDING_UPLOAD => Ok(None),
                        timestamp => log
                            .offset_for_timestamp(timestamp)
                            .map(|found| committed(found.map(|(offset, ts)| (ts, offset)))),
                    };
                    match found {
                        Ok(Some((timestamp, offset))) => {
                            answer.timestamp = timestamp;
                            answer.offset = offset;
                        }
                        Ok(None) => {}
                        Err(error) => answer.error_code = error.kafka_error_code(),
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
