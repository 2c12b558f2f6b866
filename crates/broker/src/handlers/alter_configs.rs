//! AlterConfigs (API 33), the legacy non-incremental form: each resource's listed configs replace
//! its whole set of overrides (keys not listed return to their defaults). A null value leaves its
//! key unset. Resource handling is shared with IncrementalAlterConfigs.

use strom_protocol::messages::alter_configs_request::AlterConfigsRequest;
use strom_protocol::messages::alter_configs_response::{
    AlterConfigsResourceResponse, AlterConfigsResponse,
};

use super::incremental_alter_configs::{
    alter_resources, check_unique_keys, ConfigChange, ResourceChange,
};
use crate::state::Broker;

pub fn handle(
    broker: &Broker,
    request: AlterConfigsRequest,
    _version: i16,
) -> AlterConfigsResponse {
    let resources = request
        .resources
        .into_iter()
        .map(|resource| ResourceChange {
            change: check_unique_keys(resource.configs.iter().map(|config| config.name.as_str()))
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
