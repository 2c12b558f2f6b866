//! OffsetFetch (key 9): a group's committed offsets. Versions 0-7 ask for one group, v8+ for a
//! batch of groups; a null topic list means every partition with a committed offset. Partitions
//! without one answer offset -1. Offsets whose commit is not yet acknowledged are not shown (the
//! coordinator shows an offset once the in-sync replicas have it), and with no transactions
//! there are no pending transactional offsets, so `require_stable` is always satisfied. Called on the blocking pool, as a group's lock may be
//! held by a request writing to `__consumer_offsets`.

use std::sync::Arc;

use strom_protocol::messages::offset_fetch_request::OffsetFetchRequest;
use strom_protocol::messages::offset_fetch_response::{
    OffsetFetchResponse, OffsetFetchResponseGroup, OffsetFetchResponsePartition,
    OffsetFetchResponsePartitions, OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use strom_protocol::ErrorCode;

use crate::groups::coordinator::TopicOffsets;
use crate::groups::on_blocking_pool;
use crate::state::Broker;

/// OffsetFetch v8 and later fetch a batch of groups.
const FIRST_BATCHED_VERSION: i16 = 8;
/// OffsetFetch v2 and later report a group's error at the top level.
const FIRST_VERSION_WITH_TOP_LEVEL_ERROR: i16 = 2;

/// The committed offsets of one group as response topics of the given types (the single-group
/// and batched versions use different types with the same fields), or the group's error.
macro_rules! fetch_group {
    ($broker:expr, $group_id:expr, $topics:expr, $topic:ident, $partition:ident) => {{
        let wanted = $topics.map(|topics| {
            topics
                .into_iter()
                .map(|t| (t.name, t.partition_indexes))
                .collect()
        });
        $broker
            .groups
            .fetch_offsets($group_id, wanted)
            .map(|found| {
                shape(
                    found,
                    |name, partitions| $topic { name, partitions },
                    |partition_index, committed_offset, committed_leader_epoch, metadata| {
                        $partition {
                            partition_index,
                            committed_offset,
                            committed_leader_epoch,
                            metadata,
                            error_code: ErrorCode::None.code(),
                        }
                    },
                )
            })
    }};
}

pub async fn handle(
    broker: &Arc<Broker>,
    request: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    let group_ids: Vec<String> = request.groups.iter().map(|g| g.group_id.clone()).collect();
    on_blocking_pool(broker, move |broker| respond(broker, request, version))
        .await
        .unwrap_or_else(|| OffsetFetchResponse {
            error_code: ErrorCode::CoordinatorNotAvailable.code(),
            groups: group_ids
                .into_iter()
                .map(|group_id| OffsetFetchResponseGroup {
                    group_id,
                    error_code: ErrorCode::CoordinatorNotAvailable.code(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
}

/// The response, built with the coordinator's (blocking) answers. A group this broker does not
/// coordinate (or is still loading) gets the error as Kafka reports it: per group from v8, at
/// the top level in v2-v7, and in every requested partition in v0-v1, which have no top-level
/// error.
fn respond(broker: &Broker, request: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
    if version >= FIRST_BATCHED_VERSION {
        let groups = request
            .groups
            .into_iter()
            .map(|group| {
                let fetched = fetch_group!(
                    broker,
                    &group.group_id,
                    group.topics,
                    OffsetFetchResponseTopics,
                    OffsetFetchResponsePartitions
                );
                match fetched {
                    Ok(topics) => OffsetFetchResponseGroup {
                        group_id: group.group_id,
                        topics,
                        error_code: ErrorCode::None.code(),
                    },
                    Err(error) => OffsetFetchResponseGroup {
                        group_id: group.group_id,
                        error_code: error.code(),
                        ..Default::default()
                    },
                }
            })
            .collect();
        return OffsetFetchResponse {
            groups,
            ..Default::default()
        };
    }
    let requested = request.topics.clone();
    let fetched = fetch_group!(
        broker,
        &request.group_id,
        request.topics,
        OffsetFetchResponseTopic,
        OffsetFetchResponsePartition
    );
    match fetched {
        Ok(topics) => OffsetFetchResponse {
            topics,
            ..Default::default()
        },
        Err(error) if version < FIRST_VERSION_WITH_TOP_LEVEL_ERROR => OffsetFetchResponse {
            topics: requested
                .unwrap_or_default()
                .into_iter()
                .map(|topic| OffsetFetchResponseTopic {
                    name: topic.name,
                    partitions: topic
                        .partition_indexes
                        .into_iter()
                        .map(|partition_index| OffsetFetchResponsePartition {
                            partition_index,
                            committed_offset: -1,
                            committed_leader_epoch: -1,
                            metadata: Some(String::new()),
                            error_code: error.code(),
                        })
                        .collect(),
                })
                .collect(),
            ..Default::default()
        },
        Err(error) => OffsetFetchResponse {
            error_code: error.code(),
            ..Default::default()
        },
    }
}

/// Builds the response topics (whose types differ between the single-group and batched
/// versions) from the coordinator's answer: offset -1, leader epoch -1 and empty metadata where
/// nothing is committed.
fn shape<Topic, Partition>(
    found: Vec<TopicOffsets>,
    topic: impl Fn(String, Vec<Partition>) -> Topic,
    partition: impl Fn(i32, i64, i32, Option<String>) -> Partition,
) -> Vec<Topic> {
    found
        .into_iter()
        .map(|(name, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|(index, committed)| match committed {
                    Some(c) => partition(index, c.offset, c.leader_epoch, Some(c.metadata)),
                    None => partition(index, -1, -1, Some(String::new())),
                })
                .collect();
            topic(name, partitions)
        })
        .collect()
}
