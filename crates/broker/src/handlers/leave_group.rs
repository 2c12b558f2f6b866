//! LeaveGroup (key 13): members leave their group, which rebalances without them. Versions 0-2
//! name one member; v3+ carry a batch of members, static ones possibly by instance id only.
//! Called on the blocking pool: the group may be stored in `__consumer_offsets`.

use std::sync::Arc;

use strom_protocol::messages::leave_group_request::LeaveGroupRequest;
use strom_protocol::messages::leave_group_response::{LeaveGroupResponse, MemberResponse};
use strom_protocol::ErrorCode;

use crate::groups::{on_blocking_pool, OffsetsTopic};
use crate::state::{now_ms, Broker};

/// LeaveGroup v3 and later leave a batch of members.
const FIRST_BATCHED_VERSION: i16 = 3;

pub async fn handle(
    broker: &Arc<Broker>,
    request: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    let leaving: Vec<(String, Option<String>)> = if version >= FIRST_BATCHED_VERSION {
        request
            .members
            .into_iter()
            .map(|m| (m.member_id, m.group_instance_id))
            .collect()
    } else {
        vec![(request.member_id, None)]
    };
    let group_id = request.group_id;
    let (error, member_errors, leaving) = on_blocking_pool(broker, move |broker| {
        let (error, member_errors) =
            broker
                .groups
                .leave(&group_id, &leaving, now_ms(), &OffsetsTopic::new(broker));
        (error, member_errors, leaving)
    })
    .await
    .unwrap_or((ErrorCode::CoordinatorNotAvailable, Vec::new(), Vec::new()));
    if version < FIRST_BATCHED_VERSION {
        // The one member's error, unless the whole request failed.
        let error = match error {
            ErrorCode::None => member_errors.first().copied().unwrap_or(ErrorCode::None),
            error => error,
        };
        return LeaveGroupResponse {
            error_code: error.code(),
            ..Default::default()
        };
    }
    LeaveGroupResponse {
        error_code: error.code(),
        members: leaving
            .into_iter()
            .zip(member_errors)
            .map(|((member_id, group_instance_id), error)| MemberResponse {
                member_id,
                group_instance_id,
                error_code: error.code(),
            })
            .collect(),
        ..Default::default()
    }
}
