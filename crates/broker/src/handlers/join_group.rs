//! JoinGroup (key 11): a member joins (or rejoins) a classic group; the response waits until the
//! group's join phase completes. The state machine is [`crate::groups::GroupCoordinator::join`],
//! called on the blocking pool (it may store the group in `__consumer_offsets`).

use std::sync::Arc;

use strom_protocol::messages::join_group_request::JoinGroupRequest;
use strom_protocol::messages::join_group_response::JoinGroupResponse;
use strom_protocol::ErrorCode;

use crate::groups::{on_blocking_pool, ClientIdentity, OffsetsTopic};
use crate::state::{now_ms, Broker};

pub async fn handle(
    broker: &Arc<Broker>,
    request: JoinGroupRequest,
    version: i16,
    client: ClientIdentity,
) -> JoinGroupResponse {
    let member_id = request.member_id.clone();
    let unavailable = || JoinGroupResponse {
        error_code: ErrorCode::CoordinatorNotAvailable.code(),
        generation_id: -1,
        member_id,
        protocol_name: None,
        ..Default::default()
    };
    let pending = on_blocking_pool(broker, move |broker| {
        let log = OffsetsTopic::new(broker);
        broker.groups.join(request, version, client, now_ms(), &log)
    })
    .await;
    match pending {
        Some(pending) => pending.resolve(unavailable).await,
        None => unavailable(),
    }
}
