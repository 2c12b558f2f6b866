//! JoinGroup (key 11): a member joins (or rejoins) a classic group; the response waits until the
//! group's join phase completes. The state machine is [`crate::groups::GroupCoordinator::join`].

use strom_protocol::messages::join_group_request::JoinGroupRequest;
use strom_protocol::messages::join_group_response::JoinGroupResponse;

use crate::groups::codes::COORDINATOR_NOT_AVAILABLE;
use crate::groups::{ClientIdentity, OffsetsTopic};
use crate::state::{now_ms, Broker};

pub async fn handle(
    broker: &Broker,
    request: JoinGroupRequest,
    version: i16,
    client: ClientIdentity,
) -> JoinGroupResponse {
    let member_id = request.member_id.clone();
    let pending = broker.groups.join(
        request,
        version,
        client,
        now_ms(),
        &OffsetsTopic::new(broker),
    );
    pending
        .resolve(|| JoinGroupResponse {
            error_code: COORDINATOR_NOT_AVAILABLE,
            generation_id: -1,
            member_id,
            protocol_name: None,
            ..Default::default()
        })
        .await
}
