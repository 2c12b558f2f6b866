//! ListGroups (key 16): every group this broker coordinates with its protocol type and state,
//! filtered by state (v4+) and group type (v5+; every group here is "classic");
//! COORDINATOR_LOAD_IN_PROGRESS while an offsets partition is being loaded. Called on the
//! blocking pool, as each group's lock may be held by a request writing to `__consumer_offsets`.

use std::sync::Arc;

use strom_protocol::messages::list_groups_request::ListGroupsRequest;
use strom_protocol::messages::list_groups_response::{ListGroupsResponse, ListedGroup};
use strom_protocol::ErrorCode;

use crate::groups::on_blocking_pool;
use crate::state::Broker;

const CLASSIC_GROUP_TYPE: &str = "classic";

pub async fn handle(
    broker: &Arc<Broker>,
    request: ListGroupsRequest,
    _version: i16,
) -> ListGroupsResponse {
    let wanted = |filter: &[String], value: &str| {
        filter.is_empty() || filter.iter().any(|f| f.eq_ignore_ascii_case(value))
    };
    let groups = if wanted(&request.types_filter, CLASSIC_GROUP_TYPE) {
        let listed = on_blocking_pool(broker, |broker| broker.groups.list_groups())
            .await
            .unwrap_or(Err(ErrorCode::CoordinatorNotAvailable));
        let listed = match listed {
            Ok(listed) => listed,
            Err(error) => {
                return ListGroupsResponse {
                    error_code: error.code(),
                    ..Default::default()
                }
            }
        };
        listed
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
