//! SyncGroup (key 14): the leader hands in the assignment, every member waits for its share. The
//! state machine is [`crate::groups::GroupCoordinator::sync`], called on the blocking pool (the
//! leader's assignment is stored in `__consumer_offsets`).

use std::sync::Arc;

use strom_protocol::messages::sync_group_request::SyncGroupRequest;
use strom_protocol::messages::sync_group_response::SyncGroupResponse;
use strom_protocol::ErrorCode;

use crate::groups::{on_blocking_pool, OffsetsTopic};
use crate::state::{now_ms, Broker};

pub async fn handle(
    broker: &Arc<Broker>,
    request: SyncGroupRequest,
    _version: i16,
) -> SyncGroupResponse {
    let unavailable = || SyncGroupResponse {
        error_code: ErrorCode::CoordinatorNotAvailable.code(),
        protocol_type: None,
        protocol_name: None,
        ..Default::default()
    };
    let pending = on_blocking_pool(broker, move |broker| {
        broker
            .groups
            .sync(request, now_ms(), &OffsetsTopic::new(broker))
    })
    .await;
    match pending {
        Some(pending) => pending.resolve(unavailable).await,
        None => unavailable(),
    }
}
