//! OffsetDelete (key 47): removes committed offsets of a group, allowed for an empty group or for
//! topics its members do not subscribe to (GROUP_SUBSCRIBED_TO_TOPIC otherwise). The tombstones
//! are written on the blocking pool.

use std::sync::Arc;

use strom_protocol::messages::offset_delete_request::OffsetDeleteRequest;
use strom_protocol::messages::offset_delete_response::{
    OffsetDeleteResponse, OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use strom_protocol::ErrorCode;

use crate::groups::{on_blocking_pool, OffsetsTopic};
use crate::state::{now_ms, Broker};

pub async fn handle(
    broker: &Arc<Broker>,
    request: OffsetDeleteRequest,
    _version: i16,
) -> OffsetDeleteResponse {
    let partitions: Vec<(String, i32)> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.clone(), p.partition_index))
        })
        .collect();
    let group_id = request.group_id.clone();
    let result = on_blocking_pool(broker, move |broker| {
        broker
            .groups
            .delete_offsets(&group_id, &partitions, now_ms(), &OffsetsTopic::new(broker))
    })
    .await
    .unwrap_or(Err(ErrorCode::CoordinatorNotAvailable));
    let mut errors = match result {
        Ok(errors) => errors.into_iter(),
        Err(error) => {
            return OffsetDeleteResponse {
                error_code: error.code(),
                ..Default::default()
            }
        }
    };
    OffsetDeleteResponse {
        error_code: ErrorCode::None.code(),
        topics: request
            .topics
            .into_iter()
            .map(|topic| OffsetDeleteResponseTopic {
                name: topic.name,
                partitions: topic
                    .partitions
                    .into_iter()
                    .map(|p| OffsetDeleteResponsePartition {
                        partition_index: p.partition_index,
                        error_code: errors.next().unwrap_or(ErrorCode::None).code(),
                    })
                    .collect(),
            })
            .collect(),
        ..Default::default()
    }
}
