//! Heartbeat (key 12): keeps a member's session alive and tells it when to rejoin
//! (REBALANCE_IN_PROGRESS).

use strom_protocol::messages::heartbeat_request::HeartbeatRequest;
use strom_protocol::messages::heartbeat_response::HeartbeatResponse;

use crate::state::{now_ms, Broker};

pub fn handle(broker: &Broker, request: HeartbeatRequest, _version: i16) -> HeartbeatResponse {
    let error_code = broker.groups.heartbeat(
        &request.group_id,
        request.generation_id,
        &request.member_id,
        request.group_instance_id.as_deref(),
        now_ms(),
    );
    HeartbeatResponse {
        error_code,
        ..Default::default()
    }
}
