//! IncrementalAlterConfigs (API 44): SET / DELETE / APPEND / SUBTRACT of single config keys of
//! topics and brokers. Also the resource handling shared with AlterConfigs ([`alter_resources`]).
//!
//! Topic configs go through the metadata store, which refuses unknown keys and invalid values with
//! INVALID_CONFIG. Broker configs (resource name "" for the cluster-wide default, or a broker id) may
//! set only the keys Kafka updates dynamically, the broker-level defaults of topic configs such as
//! `log.retention.ms`; other known broker keys are INVALID_REQUEST ("Cannot update these configs
//! dynamically"), unknown ones INVALID_CONFIG.

use std::collections::HashSet;

use strom_metadata::config::{
    topic_config_def, validate_topic_config, ConfigOp, ConfigOpType, ConfigType,
};
use strom_metadata::error::codes;
use strom_metadata::image::{CONFIG_RESOURCE_BROKER, CONFIG_RESOURCE_TOPIC};
use strom_metadata::MetadataError;
use strom_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, IncrementalAlterConfigsRequest,
};
use strom_protocol::messages::incremental_alter_configs_response::{
    AlterConfigsResourceResponse, IncrementalAlterConfigsResponse,
};

use super::describe_configs::{
    dynamic_broker_key_topic, is_known_broker_key, parse_broker_resource, unsupported_resource_type,
};
use crate::state::Broker;

/// What an alter request does to one resource's configs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ConfigChange {
    /// AlterConfigs: these configs become the resource's complete set of overrides.
    Replace(Vec<(String, String)>),
    /// IncrementalAlterConfigs: operations on single keys.
    Incremental(Vec<ConfigOp>),
}

/// One resource of an alter request.
pub(super) struct ResourceChange {
    pub resource_type: i8,
    pub resource_name: String,
    /// The change, or the request-level error found while decoding it.
    pub change: Result<ConfigChange, MetadataError>,
}

/// The outcome for one resource: `(resource_type, resource_name, error_code, error_message)`.
pub(super) type ResourceOutcome = (i8, String, i16, Option<String>);

/// The error for a key named twice within one resource (Kafka's wording).
pub(super) fn check_unique_keys<'a>(
    keys: impl IntoIterator<Item = &'a str>,
) -> Result<(), MetadataError> {
    let mut seen = HashSet::new();
    if keys.into_iter().all(|key| seen.insert(key)) {
        Ok(())
    } else {
        Err(MetadataError::new(
            codes::INVALID_REQUEST,
            "Error due to duplicate config keys",
        ))
    }
}

/// Checks that a broker key may be changed dynamically and that a value set for it is valid.
fn check_broker_key(key: &str, op: ConfigOpType, value: Option<&str>) -> Result<(), MetadataError> {
    let Some(topic_key) = dynamic_broker_key_topic(key) else {
        return Err(if is_known_broker_key(key) {
            MetadataError::new(
                codes::INVALID_REQUEST,
                format!("Cannot update these configs dynamically: Set({key})"),
            )
        } else {
            MetadataError::invalid_config(format!("Unknown broker config name: {key}"))
        });
    };
    let is_list =
        topic_config_def(topic_key).is_some_and(|def| def.config_type == ConfigType::List);
    if matches!(op, ConfigOpType::Append | ConfigOpType::Subtract) && !is_list {
        return Err(MetadataError::invalid_config(format!(
            "Can't {} to key {key} because its type is not LIST.",
            format!("{op:?}").to_uppercase()
        )));
    }
    match (op, value) {
        (ConfigOpType::Delete, _) | (_, None) => Ok(()),
        (_, Some(value)) => validate_topic_config(topic_key, value).map_err(|error| {
            MetadataError::new(error.code, error.message.replacen(topic_key, key, 1))
        }),
    }
}

/// Applies one resource's change (or only validates it).
async fn alter_resource(
    broker: &Broker,
    resource_type: i8,
    resource_name: &str,
    change: &ConfigChange,
    validate_only: bool,
) -> Result<(), MetadataError> {
    let controller = &broker.controller;
    match (resource_type, change) {
        (CONFIG_RESOURCE_TOPIC, ConfigChange::Replace(configs)) => {
            controller
                .replace_topic_configs(resource_name, configs, validate_only)
                .await
        }
        (CONFIG_RESOURCE_TOPIC, ConfigChange::Incremental(ops)) => {
            controller
                .alter_topic_configs(resource_name, ops, validate_only)
                .await
        }
        (CONFIG_RESOURCE_BROKER, ConfigChange::Replace(configs)) => {
            let broker_id = parse_broker_resource(resource_name)?;
            for (key, value) in configs {
                check_broker_key(key, ConfigOpType::Set, Some(value))?;
            }
            controller
                .replace_broker_configs(broker_id, configs, validate_only)
                .await
        }
        (CONFIG_RESOURCE_BROKER, ConfigChange::Incremental(ops)) => {
            let broker_id = parse_broker_resource(resource_name)?;
            for op in ops {
                check_broker_key(&op.key, op.op, op.value.as_deref())?;
            }
            controller
                .alter_broker_configs(broker_id, ops, validate_only)
                .await
        }
        (other, _) => Err(unsupported_resource_type(other)),
    }
}

/// Applies every resource's change in order, then waits until the publisher has brought the
/// partition logs in line with the new configs. Returns one outcome per resource, in request order.
pub(super) async fn alter_resources(
    broker: &Broker,
    resources: Vec<ResourceChange>,
    validate_only: bool,
) -> Vec<ResourceOutcome> {
    let mut outcomes: Vec<ResourceOutcome> = Vec::with_capacity(resources.len());
    for resource in resources {
        let result = match resource.change {
            Ok(change) => {
                alter_resource(
                    broker,
                    resource.resource_type,
                    &resource.resource_name,
                    &change,
                    validate_only,
                )
                .await
            }
            Err(error) => Err(error),
        };
        let (code, message) = match result {
            Ok(()) => (0, None),
            Err(error) => (error.code, Some(error.message)),
        };
        outcomes.push((
            resource.resource_type,
            resource.resource_name,
            code,
            message,
        ));
    }
    broker.catch_up_with_controller().await;
    outcomes
}

/// The operations of one resource, checked for unknown operation codes and repeated keys.
fn operations(resource: &AlterConfigsResource) -> Result<ConfigChange, MetadataError> {
    check_unique_keys(resource.configs.iter().map(|config| config.name.as_str()))?;
    resource
        .configs
        .iter()
        .map(|config| {
            let op = ConfigOpType::from_code(config.config_operation).ok_or_else(|| {
                MetadataError::new(
                    codes::INVALID_REQUEST,
                    format!("Unknown config operation type {}", config.config_operation),
                )
            })?;
            Ok(ConfigOp {
                key: config.name.clone(),
                value: config.value.clone(),
                op,
            })
        })
        .collect::<Result<_, _>>()
        .map(ConfigChange::Incremental)
}

pub async fn handle(
    broker: &Broker,
    request: IncrementalAlterConfigsRequest,
    _version: i16,
) -> IncrementalAlterConfigsResponse {
    let resources = request
        .resources
        .into_iter()
        .map(|resource| ResourceChange {
            change: operations(&resource),
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
    IncrementalAlterConfigsResponse {
        throttle_time_ms: 0,
        responses,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::create_topics::tests::{create, test_broker};
    use crate::handlers::describe_configs::{source, topic_config_entries};
    use strom_protocol::messages::incremental_alter_configs_request::AlterableConfig;

    async fn alter(
        broker: &Broker,
        resource: (i8, &str),
        ops: &[(&str, i8, Option<&str>)],
        validate_only: bool,
    ) -> i16 {
        let request = IncrementalAlterConfigsRequest {
            resources: vec![AlterConfigsResource {
                resource_type: resource.0,
                resource_name: resource.1.into(),
                configs: ops
                    .iter()
                    .map(|(name, config_operation, value)| AlterableConfig {
                        name: (*name).into(),
                        config_operation: *config_operation,
                        value: value.map(Into::into),
                    })
                    .collect(),
            }],
            validate_only,
        };
        handle(broker, request, 1).await.responses[0].error_code
    }

    #[tokio::test]
    async fn alters_topic_and_broker_configs() {
        let (_dir, broker) = test_broker().await;
        create(&broker, &[("t", 1, &[])], false).await;
        let topic = (CONFIG_RESOURCE_TOPIC, "t");
        let ops = [
            ("retention.ms", 0, Some("5000")),
            ("cleanup.policy", 2, Some("compact")),
        ];
        assert_eq!(alter(&broker, topic, &ops, false).await, 0);
        assert_eq!(
            alter(&broker, topic, &[("segment.bytes", 0, Some("2048"))], true).await,
            0
        );
        let overrides = |broker: &Broker| {
            broker
                .image()
                .topic("t")
                .map(|t| t.configs.clone())
                .unwrap_or_default()
        };
        let expected: Vec<(String, String)> = vec![
            ("cleanup.policy".into(), "delete,compact".into()),
            ("retention.ms".into(), "5000".into()),
        ];
        assert_eq!(overrides(&broker).into_iter().collect::<Vec<_>>(), expected);
        assert_eq!(
            alter(&broker, (CONFIG_RESOURCE_TOPIC, "missing"), &ops, false).await,
            codes::UNKNOWN_TOPIC_OR_PARTITION
        );
        assert_eq!(
            alter(&broker, topic, &[("bogus", 0, Some("1"))], false).await,
            codes::INVALID_CONFIG
        );
        assert_eq!(
            alter(&broker, (8, "t"), &ops, false).await,
            codes::INVALID_REQUEST
        );

        let cluster_default = (CONFIG_RESOURCE_BROKER, "");
        assert_eq!(
            alter(
                &broker,
                cluster_default,
                &[("log.retention.ms", 0, Some("60000"))],
                false
            )
            .await,
            0
        );
        assert_eq!(
            alter(
                &broker,
                (CONFIG_RESOURCE_BROKER, "1"),
                &[("num.partitions", 0, Some("3"))],
                false
            )
            .await,
            codes::INVALID_REQUEST
        );
        assert_eq!(
            alter(&broker, topic, &[("retention.ms", 1, None)], false).await,
            0
        );
        let image = broker.image();
        let entries =
            topic_config_entries(&broker.config, &image, broker.node_id, &overrides(&broker));
        let retention = entries
            .iter()
            .find(|e| e.name == "retention.ms")
            .expect("retention.ms");
        assert_eq!(
            (retention.value.as_deref(), retention.source),
            (Some("60000"), source::DYNAMIC_DEFAULT_BROKER_CONFIG)
        );
    }

    #[tokio::test]
    async fn broker_keys_must_be_dynamic_and_valid() {
        let code = |key, op, value| check_broker_key(key, op, value).map_err(|e| e.code);
        assert_eq!(
            code("log.retention.ms", ConfigOpType::Set, Some("1000")),
            Ok(())
        );
        assert_eq!(code("log.retention.ms", ConfigOpType::Delete, None), Ok(()));
        assert_eq!(
            code("log.cleanup.policy", ConfigOpType::Append, Some("compact")),
            Ok(())
        );
        assert_eq!(
            code("log.retention.ms", ConfigOpType::Set, Some("soon")),
            Err(codes::INVALID_CONFIG)
        );
        assert_eq!(
            code("log.retention.ms", ConfigOpType::Append, Some("1")),
            Err(codes::INVALID_CONFIG)
        );
        assert_eq!(
            code("num.partitions", ConfigOpType::Set, Some("3")),
            Err(codes::INVALID_REQUEST)
        );
        assert_eq!(
            code("log.retention.hours", ConfigOpType::Set, Some("3")),
            Err(codes::INVALID_REQUEST)
        );
        assert_eq!(
            code("no.such.key", ConfigOpType::Set, Some("3")),
            Err(codes::INVALID_CONFIG)
        );
        let message = check_broker_key("message.max.bytes", ConfigOpType::Set, Some("x"))
            .expect_err("not a number")
            .message;
        assert!(message.contains("message.max.bytes"), "{message}");
    }

    #[tokio::test]
    async fn operations_reject_unknown_codes_and_repeated_keys() {
        use strom_protocol::messages::incremental_alter_configs_request::AlterableConfig;
        let config = |name: &str, config_operation| AlterableConfig {
            name: name.into(),
            config_operation,
            value: Some("1".into()),
        };
        let resource = |configs| AlterConfigsResource {
            resource_type: CONFIG_RESOURCE_TOPIC,
            resource_name: "t".into(),
            configs,
        };
        assert_eq!(
            operations(&resource(vec![config("retention.ms", 0)])),
            Ok(ConfigChange::Incremental(vec![ConfigOp::set(
                "retention.ms",
                "1"
            )]))
        );
        let code = |configs| operations(&resource(configs)).map_err(|e| e.code);
        assert_eq!(
            code(vec![config("retention.ms", 9)]),
            Err(codes::INVALID_REQUEST)
        );
        assert_eq!(
            code(vec![config("retention.ms", 0), config("retention.ms", 1)]),
            Err(codes::INVALID_REQUEST)
        );
    }
}
