//! DescribeCluster (API 60): the cluster id, this node as the controller, and the registered
//! brokers from the metadata image — fenced ones too, each with Strom's tagged fields (see
//! `xtask/extensions/DescribeClusterResponse.json`: fenced, in controlled shutdown, every
//! registered listener), which `strom cluster describe` reads and Kafka's clients skip.
//!
//! A broker endpoint answers only for `endpoint_type` 1 (brokers); asking it about controllers is
//! MISMATCHED_ENDPOINT_TYPE, as in Kafka. Without an authorizer every cluster operation is allowed,
//! so the requested authorized-operations bit field holds all operations Kafka defines on a cluster.

use strom_protocol::messages::describe_cluster_request::DescribeClusterRequest;
use strom_protocol::messages::describe_cluster_response::{
    DescribeClusterBroker, DescribeClusterResponse, StromListener,
};
use strom_protocol::ErrorCode;

use super::authorized_operations;
use crate::state::Broker;

/// `EndpointType.BROKER`.
const ENDPOINT_TYPE_BROKER: i8 = 1;

pub fn handle(
    broker: &Broker,
    request: DescribeClusterRequest,
    version: i16,
) -> DescribeClusterResponse {
    let image = broker.image();
    let mut response = DescribeClusterResponse {
        throttle_time_ms: 0,
        error_code: ErrorCode::None.code(),
        error_message: None,
        endpoint_type: ENDPOINT_TYPE_BROKER,
        cluster_id: image.cluster_id.clone(),
        controller_id: broker.controller.active_controller_id().unwrap_or(-1),
        brokers: Vec::new(),
        cluster_authorized_operations: authorized_operations::NOT_REQUESTED,
    };
    if version >= 1 && request.endpoint_type != ENDPOINT_TYPE_BROKER {
        let wanted = if request.endpoint_type == 2 {
            "CONTROLLER"
        } else {
            "UNKNOWN"
        };
        response.error_code = ErrorCode::MismatchedEndpointType.code();
        response.error_message = Some(format!(
            "The request was sent to an endpoint of type BROKER, but we wanted an endpoint of type {wanted}"
        ));
        return response;
    }
    response.brokers = image
        .brokers
        .values()
        .map(|registration| DescribeClusterBroker {
            broker_id: registration.id,
            host: registration.host.clone(),
            port: registration.port,
            rack: registration.rack.clone(),
            strom_fenced: registration.fenced,
            strom_in_controlled_shutdown: registration.in_controlled_shutdown,
            strom_listeners: registration
                .listeners
                .iter()
                .map(|listener| StromListener {
                    name: listener.name.clone(),
                    host: listener.host.clone(),
                    port: i32::from(listener.port),
                    security_protocol: listener.security_protocol,
                })
                .collect(),
        })
        .collect();
    if request.include_cluster_authorized_operations {
        response.cluster_authorized_operations = authorized_operations::CLUSTER;
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::create_topics::tests::test_broker;

    #[tokio::test]
    async fn lists_registered_brokers_with_this_node_as_controller() {
        let (_dir, broker) = test_broker().await;
        let request = DescribeClusterRequest {
            include_cluster_authorized_operations: false,
            endpoint_type: 1,
        };
        let response = handle(&broker, request.clone(), 1);
        assert_eq!(response.error_code, ErrorCode::None.code());
        assert_eq!(response.controller_id, broker.node_id);
        assert_eq!(response.cluster_id, broker.image().cluster_id);
        assert_eq!(response.cluster_authorized_operations, i32::MIN);
        let listed: Vec<(i32, &str, i32)> = response
            .brokers
            .iter()
            .map(|b| (b.broker_id, b.host.as_str(), b.port))
            .collect();
        assert_eq!(listed, [(broker.node_id, "localhost", 9092)]);
        // Strom's tagged fields: registered and unfenced, with the listener it registered.
        let registered = &response.brokers[0];
        assert!(!registered.strom_fenced && !registered.strom_in_controlled_shutdown);
        let listeners: Vec<(&str, i32)> = registered
            .strom_listeners
            .iter()
            .map(|l| (l.host.as_str(), l.port))
            .collect();
        assert_eq!(listeners, [("localhost", 9092)]);

        let with_ops = DescribeClusterRequest {
            include_cluster_authorized_operations: true,
            ..request.clone()
        };
        assert_eq!(
            handle(&broker, with_ops, 0).cluster_authorized_operations,
            authorized_operations::CLUSTER
        );
        let controllers = DescribeClusterRequest {
            endpoint_type: 2,
            ..request
        };
        assert_eq!(
            handle(&broker, controllers, 1).error_code,
            ErrorCode::MismatchedEndpointType.code()
        );
    }
}
