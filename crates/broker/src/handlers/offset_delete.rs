//! OffsetDelete (key 47): removes committed offsets of a group, allowed for an empty group or for
//! topics its members do not subscribe to (GROUP_SUBSCRIBED_TO_TOPIC otherwise).

use strom_protocol::messages::offset_delete_request::OffsetDeleteRequest;
use strom_protocol::messages::offset_delete_response::{
    OffsetDeleteResponse, OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};

use crate::groups::OffsetsTopic;
use crate::state::{now_ms, Broker};

pub fn handle(
    broker: &Broker,
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
    let result = broker.groups.delete_offsets(
        &request.group_id,
        &partitions,
        now_ms(),
        &OffsetsTopic::new(broker),
    );
    let mut errors = match result {
        Ok(errors) => errors.into_iter(),
        Err(error_code) => {
            return OffsetDeleteResponse {
                error_code,
                ..Default::default()
            }
        }
    };
    OffsetDeleteResponse {
        error_code: 0,
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
                        error_code: errors.next().unwrap_or(0),
                    })
                    .collect(),
            })
            .collect(),
        ..Default::default()
    }
}
