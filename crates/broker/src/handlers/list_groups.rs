//! ListGroups (key 16): every group with its protocol type and state, filtered by state (v4+)
//! and group type (v5+; every group here is "classic").

use strom_protocol::messages::list_groups_request::ListGroupsRequest;
use strom_protocol::messages::list_groups_response::{ListGroupsResponse, ListedGroup};

use crate::state::Broker;

const CLASSIC_GROUP_TYPE: &str = "classic";

pub fn handle(broker: &Broker, request: ListGroupsRequest, _version: i16) -> ListGroupsResponse {
    let wanted = |filter: &[String], value: &str| {
        filter.is_empty() || filter.iter().any(|f| f.eq_ignore_ascii_case(value))
    };
    let groups = if wanted(&request.types_filter, CLASSIC_GROUP_TYPE) {
        broker
            .groups
            .list_groups()
            .into_iter()
            .filter(|g| wanted(&request.states_filter, g.state.name()))
            .map(|g| ListedGroup {
                group_id: g.group_id,
                protocol_type: g.protocol_type,
                group_state: g.state.name().to_string(),
                group_type: CLASSIC_GROUP_TYPE.to_string(),
            })
            .collect()
    } else {
        Vec::new()
    };
    ListGroupsResponse {
        groups,
        ..Default::default()
    }
}
