//! Heartbeat (key 12): keeps a member's session alive and tells it when to rejoin
//! (REBALANCE_IN_PROGRESS). Called on the blocking pool: the group's lock may be held by a
//! request of the same group that is writing to `__consumer_offsets`.

use std::sync::Arc;

use strom_protocol::messages::heartbeat_request::HeartbeatRequest;
use strom_protocol::messages::heartbeat_response::HeartbeatResponse;
use strom_protocol::ErrorCode;

use crate::groups::on_blocking_pool;
use crate::state::{now_ms, Broker};

pub async fn handle(
    broker: &Arc<Broker>,
    request: HeartbeatRequest,
    _version: i16,
) -> HeartbeatResponse {
    let error = on_blocking_pool(broker, move |broker| {
        broker.groups.heartbeat(
            &request.group_id,
            request.generation_id,
            &request.member_id,
            request.group_instance_id.as_deref(),
            now_ms(),
        )
    })
    .await
    .unwrap_or(ErrorCode::CoordinatorNotAvailable);
    HeartbeatResponse {
        error_code: error.code(),
        ..Default::default()
    }
}
