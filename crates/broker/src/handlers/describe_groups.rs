//! DescribeGroups (key 15): state, protocol and members (client id, host, subscription and
//! assignment while Stable) of each requested group; unknown groups are reported as Dead.

use strom_protocol::messages::describe_groups_request::DescribeGroupsRequest;
use strom_protocol::messages::describe_groups_response::DescribeGroupsResponse;

use crate::state::Broker;

/// Without an authorizer every group operation is allowed: READ (3), DELETE (6), DESCRIBE (8).
const ALL_GROUP_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);

pub fn handle(
    broker: &Broker,
    request: DescribeGroupsRequest,
    _version: i16,
) -> DescribeGroupsResponse {
    DescribeGroupsResponse {
        groups: request
            .groups
            .iter()
            .map(|group_id| {
                let mut described = broker.groups.describe_group(group_id);
                described.authorized_operations = if request.include_authorized_operations {
                    ALL_GROUP_OPERATIONS
                } else {
                    i32::MIN
                };
                described
            })
            .collect(),
        ..Default::default()
    }
}
