//! LeaveGroup (key 13): members leave their group, which rebalances without them. Versions 0-2
//! name one member; v3+ carry a batch of members, static ones possibly by instance id only.

use strom_protocol::messages::leave_group_request::LeaveGroupRequest;
use strom_protocol::messages::leave_group_response::{LeaveGroupResponse, MemberResponse};

use crate::groups::OffsetsTopic;
use crate::state::{now_ms, Broker};

/// LeaveGroup v3 and later leave a batch of members.
const FIRST_BATCHED_VERSION: i16 = 3;

pub fn handle(broker: &Broker, request: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    let leaving: Vec<(String, Option<String>)> = if version >= FIRST_BATCHED_VERSION {
        request
            .members
            .into_iter()
            .map(|m| (m.member_id, m.group_instance_id))
            .collect()
    } else {
        vec![(request.member_id, None)]
    };
    let (error_code, member_errors) = broker.groups.leave(
        &request.group_id,
        &leaving,
        now_ms(),
        &OffsetsTopic::new(broker),
    );
    if version < FIRST_BATCHED_VERSION {
        return LeaveGroupResponse {
            error_code: if error_code != 0 {
                error_code
            } else {
                member_errors.first().copied().unwrap_or(0)
            },
            ..Default::default()
        };
    }
    LeaveGroupResponse {
        error_code,
        members: leaving
            .into_iter()
            .zip(member_errors)
            .map(
                |((member_id, group_instance_id), error_code)| MemberResponse {
                    member_id,
                    group_instance_id,
                    error_code,
                },
            )
            .collect(),
        ..Default::default()
    }
}
