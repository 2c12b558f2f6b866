//! OffsetForLeaderEpoch (key 23): where a leader epoch ends in the leader's log (KIP-101), which
//! consumers use after a leader change to check that their position was not truncated away
//! (KIP-320: librdkafka and the Java consumer validate positions with it). Answered by the
//! partition's leader only (NOT_LEADER_OR_FOLLOWER elsewhere), after the same leader-epoch check
//! as Fetch (FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH). Followers of this broker learn
//! divergence from Fetch itself (`diverging_epoch`), so they never send it.

use strom_protocol::messages::offset_for_leader_epoch_request::OffsetForLeaderEpochRequest;
use strom_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderEpochResponse, OffsetForLeaderTopicResult,
};

use crate::state::Broker;

pub fn handle(
    broker: &Broker,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|wanted| {
                    let mut answer = EpochEndOffset {
                        partition: wanted.partition,
                        leader_epoch: -1,
                        end_offset: -1,
                        ..Default::default()
                    };
                    let Some(partition) = broker.partitions.get(&topic.topic, wanted.partition)
                    else {
                        answer.error_code =
                            broker.partition_not_hosted_error(&topic.topic, wanted.partition);
                        return answer;
                    };
                    match partition.end_offset_for_leader_epoch(
                        wanted.current_leader_epoch,
                        wanted.leader_epoch,
                    ) {
                        Ok((epoch, end_offset)) => {
                            answer.leader_epoch = epoch;
                            answer.end_offset = end_offset;
                        }
                        Err(error) => answer.error_code = error.error_code(),
                    }
                    answer
                })
                .collect();
            OffsetForLeaderTopicResult {
                topic: topic.topic,
                partitions,
            }
        })
        .collect();
    OffsetForLeaderEpochResponse {
        throttle_time_ms: 0,
        topics,
    }
}
