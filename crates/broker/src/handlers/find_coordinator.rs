//! FindCoordinator (key 10): names the broker that coordinates a group, the leader of the group's
//! `__consumer_offsets` partition (this broker on a single node), at its endpoint on the listener
//! the request arrived on (COORDINATOR_NOT_AVAILABLE when the leader lacks that listener, as in
//! Kafka).
//! Batched lookups (`coordinator_keys`, v4+) are answered key by key. Transaction coordinators
//! (key type 1) do not exist yet: the lookup fails with a non-retriable error (see
//! [`TRANSACTIONS_UNSUPPORTED`]).

use strom_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use strom_protocol::messages::find_coordinator_response::{Coordinator, FindCoordinatorResponse};
use strom_protocol::ErrorCode;

use crate::groups::records::partition_for_group;
use crate::groups::store::ensure_offsets_topic;
use crate::groups::OFFSETS_TOPIC;
use crate::state::{endpoint_on, Broker};

/// The answer to a transaction coordinator lookup while transactions do not exist:
/// TRANSACTIONAL_ID_AUTHORIZATION_FAILED. A retriable error (COORDINATOR_NOT_AVAILABLE)
/// makes clients retry until their timeout. Among the non-retriable ones this is the only error
/// that both main clients treat as fatal right away: librdkafka (`txnmgr`) raises a fatal error
/// at FindCoordinator only for it and CLUSTER_AUTHORIZATION_FAILED and retries every other code
/// (UNSUPPORTED_VERSION, INVALID_REQUEST, ...) until `init_transactions` times out; the Java
/// producer fails fatally on it too. InitProducerId and Produce refuse transactional ids with the
/// same code, so a client sees one consistent error whichever request comes first; the message
/// says why.
const TRANSACTIONS_UNSUPPORTED: ErrorCode = ErrorCode::TransactionalIdAuthorizationFailed;
const TRANSACTIONS_UNSUPPORTED_MESSAGE: &str = "transactions are not supported by this broker";
const GROUP_KEY_TYPE: i8 = 0;
const TRANSACTION_KEY_TYPE: i8 = 1;
/// FindCoordinator v4 and later look up a batch of keys.
const FIRST_BATCHED_VERSION: i16 = 4;

pub async fn handle(
    broker: &Broker,
    request: FindCoordinatorRequest,
    version: i16,
    listener: &str,
) -> FindCoordinatorResponse {
    if version >= FIRST_BATCHED_VERSION {
        let mut coordinators = Vec::with_capacity(request.coordinator_keys.len());
        for key in request.coordinator_keys {
            coordinators.push(lookup(broker, key, request.key_type, listener).await);
        }
        return FindCoordinatorResponse {
            coordinators,
            ..Default::default()
        };
    }
    let found = lookup(broker, request.key, request.key_type, listener).await;
    FindCoordinatorResponse {
        error_code: found.error_code,
        error_message: found.error_message,
        node_id: found.node_id,
        host: found.host,
        port: found.port,
        ..Default::default()
    }
}

async fn lookup(broker: &Broker, key: String, key_type: i8, listener: &str) -> Coordinator {
    let failed = |key: String, error: ErrorCode, message: &str| Coordinator {
        key,
        node_id: -1,
        host: String::new(),
        port: -1,
        error_code: error.code(),
        error_message: Some(message.to_string()),
    };
    if key_type == GROUP_KEY_TYPE && !offsets_topic_ready(broker).await {
        return failed(
            key,
            ErrorCode::CoordinatorNotAvailable,
            "the offsets topic cannot be created yet",
        );
    }
    match key_type {
        GROUP_KEY_TYPE => match group_coordinator(broker, &key, listener) {
            Some((node_id, host, port)) => Coordinator {
                key,
                node_id,
                host,
                port,
                error_code: ErrorCode::None.code(),
                error_message: None,
            },
            None => failed(
                key,
                ErrorCode::CoordinatorNotAvailable,
                "the group's offsets partition has no available leader on this listener",
            ),
        },
        TRANSACTION_KEY_TYPE => failed(
            key,
            TRANSACTIONS_UNSUPPORTED,
            TRANSACTIONS_UNSUPPORTED_MESSAGE,
        ),
        _ => failed(
            key,
            ErrorCode::InvalidRequest,
            "unknown coordinator key type",
        ),
    }
}

/// The broker coordinating `group_id` (node id, host and port advertised on `listener`): the
/// leader of the group's `__consumer_offsets` partition, when it is known, unfenced and has that
/// listener.
fn group_coordinator(
    broker: &Broker,
    group_id: &str,
    listener: &str,
) -> Option<(i32, String, i32)> {
    let image = broker.image();
    let topic = image.topic(OFFSETS_TOPIC)?;
    let partitions = i32::try_from(topic.partitions.len()).ok()?;
    let leader = topic
        .partitions
        .get(&partition_for_group(group_id, partitions))?
        .leader;
    let endpoint = if leader == broker.node_id {
        broker.advertised_listener(listener)?
    } else {
        endpoint_on(image.brokers.get(&leader).filter(|b| !b.fenced)?, listener)?
    };
    Some((leader, endpoint.host.clone(), i32::from(endpoint.port)))
}

/// Whether `__consumer_offsets` exists, creating it if it could not be created at start.
async fn offsets_topic_ready(broker: &Broker) -> bool {
    broker.image().topic(OFFSETS_TOPIC).is_some() || ensure_offsets_topic(broker).await.is_ok()
}
