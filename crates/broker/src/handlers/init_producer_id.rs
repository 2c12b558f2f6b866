//! InitProducerId (key 22): hands out producer ids for idempotent producers.
//!
//! Ids come from blocks reserved in the metadata log (ProducerIdsRecord), so an id is never handed out
//! twice, even across restarts. A producer that presents its current id and epoch (v3+, KIP-360) gets
//! the same id with the epoch bumped. Transactional ids need the transaction coordinator, which does
//! not exist yet: such requests are refused with TRANSACTIONAL_ID_AUTHORIZATION_FAILED.

use strom_protocol::messages::init_producer_id_request::InitProducerIdRequest;
use strom_protocol::messages::init_producer_id_response::InitProducerIdResponse;
use strom_protocol::ErrorCode;

use crate::state::Broker;

pub async fn handle(
    broker: &Broker,
    request: InitProducerIdRequest,
    _version: i16,
) -> InitProducerIdResponse {
    let refuse = |error_code: i16| InitProducerIdResponse {
        error_code,
        producer_id: -1,
        producer_epoch: -1,
        ..Default::default()
    };
    if request.transactional_id.is_some() {
        tracing::warn!("transactional producers are not supported yet");
        return refuse(ErrorCode::TransactionalIdAuthorizationFailed.code());
    }
    if request.producer_id >= 0 && request.producer_epoch >= 0 {
        if request.producer_epoch == i16::MAX {
            return refuse(ErrorCode::InvalidProducerEpoch.code());
        }
        return InitProducerIdResponse {
            producer_id: request.producer_id,
            producer_epoch: request.producer_epoch + 1,
            ..Default::default()
        };
    }
    match broker.next_producer_id().await {
        Ok(producer_id) => InitProducerIdResponse {
            producer_id,
            producer_epoch: 0,
            ..Default::default()
        },
        Err(error) => {
            tracing::warn!(message = %error.message, "cannot allocate a producer id");
            refuse(error.code)
        }
    }
}
