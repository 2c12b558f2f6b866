//! SyncGroup (key 14): the leader hands in the assignment, every member waits for its share. The
//! state machine is [`crate::groups::GroupCoordinator::sync`].

use strom_protocol::messages::sync_group_request::SyncGroupRequest;
use strom_protocol::messages::sync_group_response::SyncGroupResponse;

use crate::groups::codes::COORDINATOR_NOT_AVAILABLE;
use crate::groups::OffsetsTopic;
use crate::state::{now_ms, Broker};

pub async fn handle(
    broker: &Broker,
    request: SyncGroupRequest,
    _version: i16,
) -> SyncGroupResponse {
    let pending = broker
        .groups
        .sync(request, now_ms(), &OffsetsTopic::new(broker));
    pending
        .resolve(|| SyncGroupResponse {
            error_code: COORDINATOR_NOT_AVAILABLE,
            protocol_type: None,
            protocol_name: None,
            ..Default::default()
        })
        .await
}
