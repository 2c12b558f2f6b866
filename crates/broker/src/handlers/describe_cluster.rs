//! DescribeCluster (API 60): the cluster id, the active controller, and the live (unfenced)
//! brokers of the metadata image at their endpoints on the listener the request arrived on; a
//! broker without that listener is left out, as Kafka does.
//!
//! Strom's tagged fields (`xtask/extensions/DescribeCluster*.json`, which Kafka's clients skip):
//! a request with `StromIncludeFencedBrokers` (like Kafka 4.0's `IncludeFencedBrokers`) gets the
//! fenced brokers too, and every broker comes with its state (fenced, in controlled shutdown) and
//! every listener it registered — what `strom cluster describe` shows.
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
use crate::state::{endpoint_on, Broker};

/// `EndpointType.BROKER`.
const ENDPOINT_TYPE_BROKER: i8 = 1;

pub fn handle(
    broker: &Broker,
    request: DescribeClusterRequest,
    version: i16,
    listener: &str,
) -> DescribeClusterResponse {
    let image = broker.image();
    let mut response = DescribeClusterResponse {
        throttle_time_ms: 0,
        error_code: ErrorCode::None.code(),
        error_message: None,
        endpoint_type: ENDPOINT_TYPE_BROKER,
        cluster_id: image.cluster_id.clone(),
        controller_id: super::metadata::controller_id_for_clients(broker, &image, listener),
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
        .filter(|registration| request.strom_include_fenced_brokers || !registration.fenced)
        .filter_map(|registration| {
            let endpoint = endpoint_on(registration, listener)?;
            Some(DescribeClusterBroker {
                broker_id: registration.id,
                host: endpoint.host.clone(),
                port: i32::from(endpoint.port),
                rack: registration.rack.clone(),
                strom_fenced: registration.fenced,
                strom_in_controlled_shutdown: registration.in_controlled_shutdown,
                strom_listeners: registration
                    .listeners
                    .iter()
                    .map(|l| StromListener {
                        name: l.name.clone(),
                        host: l.host.clone(),
                        port: i32::from(l.port),
                        security_protocol: l.security_protocol,
                    })
                    .collect(),
            })
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
            strom_include_fenced_brokers: false,
        };
        let response = handle(&broker, request.clone(), 1, "PLAINTEXT");
        assert_eq!(response.error_code, ErrorCode::None.code());
        assert_eq!(response.controller_id, broker.node_id);
        assert_eq!(response.cluster_id, broker.image().cluster_id);
        assert_eq!(response.cluster_authorized_operations, i32::MIN);
        let listed = |response: DescribeClusterResponse| -> Vec<(i32, String, i32)> {
            response
                .brokers
                .into_iter()
                .map(|b| (b.broker_id, b.host, b.port))
                .collect()
        };
        assert_eq!(
            listed(response),
            [(broker.node_id, "localhost".to_string(), 9092)]
        );
        // Each listener sees the endpoints of its own name; an unknown listener sees none.
        assert_eq!(
            listed(handle(&broker, request.clone(), 1, "EXTERNAL")),
            [(broker.node_id, "external.example".to_string(), 19092)]
        );
        assert!(listed(handle(&broker, request.clone(), 1, "OTHER")).is_empty());
        // Strom's tagged fields: unfenced, not shutting down, with every listener it registered.
        let described = handle(&broker, request.clone(), 1, "PLAINTEXT");
        let registered = &described.brokers[0];
        assert!(!registered.strom_fenced && !registered.strom_in_controlled_shutdown);
        let listeners: Vec<(&str, i32)> = registered
            .strom_listeners
            .iter()
            .map(|l| (l.name.as_str(), l.port))
            .collect();
        assert_eq!(listeners, [("PLAINTEXT", 9092), ("EXTERNAL", 19092)]);

        let with_ops = DescribeClusterRequest {
            include_cluster_authorized_operations: true,
            ..request.clone()
        };
        assert_eq!(
            handle(&broker, with_ops, 0, "PLAINTEXT").cluster_authorized_operations,
            authorized_operations::CLUSTER
        );
        let controllers = DescribeClusterRequest {
            endpoint_type: 2,
            ..request
        };
        assert_eq!(
            handle(&broker, controllers, 1, "PLAINTEXT").error_code,
            ErrorCode::MismatchedEndpointType.code()
        );
    }
}
