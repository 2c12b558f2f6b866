//! DescribeGroups (key 15): state, protocol and members (client id, host, assignment, and the
//! subscription while Stable) of each requested group; unknown groups are reported as Dead.

use strom_protocol::messages::describe_groups_request::DescribeGroupsRequest;
use strom_protocol::messages::describe_groups_response::DescribeGroupsResponse;

use super::authorized_operations;
use crate::state::Broker;

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
                    authorized_operations::GROUP
                } else {
                    authorized_operations::NOT_REQUESTED
                };
                described
            })
            .collect(),
        ..Default::default()
    }
}
