//! DeleteGroups (key 42): deletes empty groups and their committed offsets (tombstones in
//! `__consumer_offsets`); NON_EMPTY_GROUP for groups with members, GROUP_ID_NOT_FOUND for
//! unknown ones. The tombstones are written on the blocking pool.

use std::sync::Arc;

use strom_protocol::messages::delete_groups_request::DeleteGroupsRequest;
use strom_protocol::messages::delete_groups_response::{
    DeletableGroupResult, DeleteGroupsResponse,
};
use strom_protocol::ErrorCode;

use crate::groups::{on_blocking_pool, OffsetsTopic};
use crate::state::{now_ms, Broker};

pub async fn handle(
    broker: &Arc<Broker>,
    request: DeleteGroupsRequest,
    _version: i16,
) -> DeleteGroupsResponse {
    let group_ids = request.groups_names.clone();
    let errors = on_blocking_pool(broker, move |broker| {
        broker
            .groups
            .delete_groups(&group_ids, now_ms(), &OffsetsTopic::new(broker))
    })
    .await
    .unwrap_or_else(|| vec![ErrorCode::CoordinatorNotAvailable; request.groups_names.len()]);
    DeleteGroupsResponse {
        results: request
            .groups_names
            .into_iter()
            .zip(errors)
            .map(|(group_id, error)| DeletableGroupResult {
                group_id,
                error_code: error.code(),
            })
            .collect(),
        ..Default::default()
    }
}
