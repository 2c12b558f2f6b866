//! DeleteGroups (key 42): deletes empty groups and their committed offsets (tombstones in
//! `__consumer_offsets`); NON_EMPTY_GROUP for groups with members, GROUP_ID_NOT_FOUND for
//! unknown ones.

use strom_protocol::messages::delete_groups_request::DeleteGroupsRequest;
use strom_protocol::messages::delete_groups_response::{
    DeletableGroupResult, DeleteGroupsResponse,
};

use crate::groups::OffsetsTopic;
use crate::state::{now_ms, Broker};

pub fn handle(
    broker: &Broker,
    request: DeleteGroupsRequest,
    _version: i16,
) -> DeleteGroupsResponse {
    let errors =
        broker
            .groups
            .delete_groups(&request.groups_names, now_ms(), &OffsetsTopic::new(broker));
    DeleteGroupsResponse {
        results: request
            .groups_names
            .into_iter()
            .zip(errors)
            .map(|(group_id, error_code)| DeletableGroupResult {
                group_id,
                error_code,
            })
            .collect(),
        ..Default::default()
    }
}
