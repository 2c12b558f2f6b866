//! DescribeGroups (key 15): state, protocol and members (client id, host, assignment, and the
//! subscription while Stable) of each requested group; unknown groups are reported as Dead,
//! groups coordinated by another broker get NOT_COORDINATOR (COORDINATOR_LOAD_IN_PROGRESS while
//! their offsets partition is being loaded here), as every group API does.
//! Called on the blocking pool, as each group's lock may be held by a request writing to
//! `__consumer_offsets`.

use std::sync::Arc;

use strom_protocol::messages::describe_groups_request::DescribeGroupsRequest;
use strom_protocol::messages::describe_groups_response::{DescribeGroupsResponse, DescribedGroup};
use strom_protocol::ErrorCode;

use super::authorized_operations;
use crate::groups::on_blocking_pool;
use crate::state::Broker;

pub async fn handle(
    broker: &Arc<Broker>,
    request: DescribeGroupsRequest,
    _version: i16,
) -> DescribeGroupsResponse {
    let authorized_operations = if request.include_authorized_operations {
        authorized_operations::GROUP
    } else {
        authorized_operations::NOT_REQUESTED
    };
    let group_ids = request.groups.clone();
    let described: Vec<DescribedGroup> = on_blocking_pool(broker, move |broker| {
        group_ids
            .iter()
            .map(|group_id| broker.groups.describe_group(group_id))
            .collect()
    })
    .await
    .unwrap_or_else(|| {
        request
            .groups
            .into_iter()
            .map(|group_id| DescribedGroup {
                error_code: ErrorCode::CoordinatorNotAvailable.code(),
                group_id,
                ..Default::default()
            })
            .collect()
    });
    DescribeGroupsResponse {
        groups: described
            .into_iter()
            .map(|group| DescribedGroup {
                authorized_operations,
                ..group
            })
            .collect(),
        ..Default::default()
    }
}
