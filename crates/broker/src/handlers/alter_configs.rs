//! AlterConfigs (API 33), the legacy non-incremental form: each resource's listed configs replace
//! its whole set of overrides (keys not listed return to their defaults). A null value is refused
//! (INVALID_REQUEST), as by Kafka. Resource handling is shared with IncrementalAlterConfigs.

use strom_protocol::messages::alter_configs_request::AlterConfigsRequest;
use strom_protocol::messages::alter_configs_response::{
    AlterConfigsResourceResponse, AlterConfigsResponse,
};

use super::incremental_alter_configs::{
    alter_resources, check_no_null_values, check_unique_keys, ConfigChange, ResourceChange,
};
use crate::state::Broker;

pub async fn handle(
    broker: &Broker,
    request: AlterConfigsRequest,
    _version: i16,
) -> AlterConfigsResponse {
    let resources = request
        .resources
        .into_iter()
        .map(|resource| ResourceChange {
            change: check_unique_keys(resource.configs.iter().map(|config| config.name.as_str()))
                .and_then(|()| {
                    check_no_null_values(
                        resource
                            .configs
                            .iter()
                            .filter(|config| config.value.is_none())
                            .map(|config| config.name.as_str()),
                    )
                })
                .map(|()| {
                    ConfigChange::Replace(
                        resource
                            .configs
                            .iter()
                            .filter_map(|config| Some((config.name.clone(), config.value.clone()?)))
                            .collect(),
                    )
                }),
            resource_type: resource.resource_type,
            resource_name: resource.resource_name,
        })
        .collect();
    let responses = alter_resources(broker, resources, request.validate_only)
        .await
        .into_iter()
        .map(
            |(resource_type, resource_name, error_code, error_message)| {
                AlterConfigsResourceResponse {
                    error_code,
                    error_message,
                    resource_type,
                    resource_name,
                }
            },
        )
        .collect();
    AlterConfigsResponse {
        throttle_time_ms: 0,
        responses,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::create_topics::tests::{create, test_broker};
    use strom_metadata::image::CONFIG_RESOURCE_TOPIC;
    use strom_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};

    #[tokio::test]
    async fn replaces_all_overrides_of_a_topic() {
        let (_dir, broker) = test_broker().await;
        create(
            &broker,
            &[("t", 1, &[("retention.ms", Some("1000"))])],
            false,
        )
        .await;
        let request = AlterConfigsRequest {
            resources: vec![AlterConfigsResource {
                resource_type: CONFIG_RESOURCE_TOPIC,
                resource_name: "t".into(),
                configs: vec![AlterableConfig {
                    name: "segment.bytes".into(),
                    value: Some("2048".into()),
                }],
            }],
            validate_only: false,
        };
        let response = handle(&broker, request, 2).await;
        assert_eq!(
            response.responses[0].error_code,
            strom_protocol::ErrorCode::None.code()
        );
        let image = broker.image();
        let overrides: Vec<(&str, &str)> = image
            .topic("t")
            .expect("topic")
            .configs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(overrides, [("segment.bytes", "2048")]);
    }

    #[tokio::test]
    async fn null_values_are_refused() {
        let (_dir, broker) = test_broker().await;
        create(&broker, &[("t", 1, &[])], false).await;
        let request = AlterConfigsRequest {
            resources: vec![AlterConfigsResource {
                resource_type: CONFIG_RESOURCE_TOPIC,
                resource_name: "t".into(),
                configs: vec![AlterableConfig {
                    name: "flush.ms".into(),
                    value: None,
                }],
            }],
            validate_only: false,
        };
        let response = handle(&broker, request, 2).await;
        assert_eq!(
            response.responses[0].error_code,
            strom_protocol::ErrorCode::InvalidRequest.code()
        );
        assert_eq!(
            response.responses[0].error_message.as_deref(),
            Some("Null value not supported for : flush.ms")
        );
    }
}
