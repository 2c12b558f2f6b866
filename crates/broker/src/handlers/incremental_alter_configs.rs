//! IncrementalAlterConfigs (API 44): SET / DELETE / APPEND / SUBTRACT of single config keys of
//! topics and brokers. Also the resource handling shared with AlterConfigs ([`alter_resources`]).
//!
//! As in Kafka: a resource named twice, a key named twice within a resource, or a null value for
//! anything but DELETE is INVALID_REQUEST. Topic configs go through the metadata store, which
//! refuses unknown keys and invalid values with INVALID_CONFIG. Broker configs (resource name ""
//! for the cluster-wide default, or this broker's id) may set what Kafka's `DynamicBrokerConfig`
//! accepts, as decided by [`strom_config::dynamic`]: refusals (static keys, SSL stores without a
//! listener prefix, invalid values, per-broker keys at the cluster level) are INVALID_REQUEST with
//! Kafka's message; APPEND/SUBTRACT of an unknown or non-list key is INVALID_CONFIG.

use std::collections::{HashMap, HashSet};

use strom_config::dynamic::check_dynamic_broker_configs;
use strom_config::ConfigType;
use strom_metadata::image::{CONFIG_RESOURCE_BROKER, CONFIG_RESOURCE_TOPIC};
use strom_metadata::{ConfigOp, ConfigOpType, MetadataError};
use strom_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, IncrementalAlterConfigsRequest,
};
use strom_protocol::messages::incremental_alter_configs_response::{
    AlterConfigsResourceResponse, IncrementalAlterConfigsResponse,
};
use strom_protocol::ErrorCode;

use super::describe_configs::unsupported_resource_type;
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
        Err(MetadataError::invalid_request(
            "Error due to duplicate config keys",
        ))
    }
}

/// The error for keys given a null value where a value is needed (Kafka's wording).
pub(super) fn check_no_null_values<'a>(
    null_keys: impl IntoIterator<Item = &'a str>,
) -> Result<(), MetadataError> {
    let null_keys: Vec<&str> = null_keys.into_iter().collect();
    if null_keys.is_empty() {
        Ok(())
    } else {
        Err(MetadataError::invalid_request(format!(
            "Null value not supported for : {}",
            null_keys.join(", ")
        )))
    }
}

/// The broker a BROKER resource names: `None` for "" (the cluster-wide default), else this
/// broker's id; another id is refused, as Kafka's brokers do.
fn target_broker(broker: &Broker, resource_name: &str) -> Result<Option<i32>, MetadataError> {
    if resource_name.is_empty() {
        return Ok(None);
    }
    let id: i32 = resource_name.parse().map_err(|_| {
        MetadataError::invalid_request(format!(
            "Node id must be an integer, but it is: {resource_name}"
        ))
    })?;
    if id != broker.node_id {
        return Err(MetadataError::invalid_request(format!(
            "Unexpected broker id, expected {}, but received {resource_name}",
            broker.node_id
        )));
    }
    Ok(Some(id))
}

/// Checks broker configs about to be set against Kafka's dynamic broker config rules, given the
/// values this broker runs with now.
fn check_broker_configs(
    broker: &Broker,
    configs: &[(&str, &str)],
    per_broker: bool,
) -> Result<(), MetadataError> {
    let image = broker.image();
    let layers = broker.config.config_layers(&image, None);
    let in_effect = |key: &str| match layers.broker_value(key) {
        Some((value, _)) => Some(value.to_owned()),
        None => strom_config::broker_key(key)?.default.map(str::to_owned),
    };
    check_dynamic_broker_configs(configs, per_broker, in_effect)
        .map_err(MetadataError::invalid_request)
}

/// Checks the operations on a broker resource: APPEND/SUBTRACT need a known list key, and every
/// value set must be acceptable (deleted keys are not checked, as in Kafka).
fn check_broker_ops(
    broker: &Broker,
    ops: &[ConfigOp],
    per_broker: bool,
) -> Result<(), MetadataError> {
    for op in ops {
        let verb = match op.op {
            ConfigOpType::Append => "append",
            ConfigOpType::Subtract => "subtract",
            ConfigOpType::Set | ConfigOpType::Delete => continue,
        };
        let def = strom_config::broker_key_or_listener_base(&op.key).ok_or_else(|| {
            MetadataError::invalid_config(format!("Unknown config name: {}", op.key))
        })?;
        if def.config_type != ConfigType::List {
            return Err(MetadataError::invalid_config(format!(
                "Config value {verb} is not allowed for config key: {}",
                op.key
            )));
        }
    }
    let set: Vec<(&str, &str)> = ops
        .iter()
        .filter(|op| op.op != ConfigOpType::Delete)
        .filter_map(|op| Some((op.key.as_str(), op.value.as_deref()?)))
        .collect();
    check_broker_configs(broker, &set, per_broker)
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
            let broker_id = target_broker(broker, resource_name)?;
            let set: Vec<(&str, &str)> = configs
                .iter()
                .map(|(key, value)| (key.as_str(), value.as_str()))
                .collect();
            check_broker_configs(broker, &set, broker_id.is_some())?;
            controller
                .replace_broker_configs(broker_id, configs, validate_only)
                .await
        }
        (CONFIG_RESOURCE_BROKER, ConfigChange::Incremental(ops)) => {
            let broker_id = target_broker(broker, resource_name)?;
            check_broker_ops(broker, ops, broker_id.is_some())?;
            controller
                .alter_broker_configs(broker_id, ops, validate_only)
                .await
        }
        (other, _) => Err(unsupported_resource_type(other)),
    }
}

/// Applies every resource's change in order, then waits until the publisher has brought the
/// partition logs in line with the new configs. Returns one outcome per resource, in request order.
/// A resource named more than once is refused each time (Kafka's "Each resource must appear at
/// most once.").
pub(super) async fn alter_resources(
    broker: &Broker,
    resources: Vec<ResourceChange>,
    validate_only: bool,
) -> Vec<ResourceOutcome> {
    let mut occurrences: HashMap<(i8, String), usize> = HashMap::new();
    for resource in &resources {
        *occurrences
            .entry((resource.resource_type, resource.resource_name.clone()))
            .or_default() += 1;
    }
    let mut outcomes: Vec<ResourceOutcome> = Vec::with_capacity(resources.len());
    for resource in resources {
        let key = (resource.resource_type, resource.resource_name);
        let result = if occurrences.get(&key).copied().unwrap_or_default() > 1 {
            Err(MetadataError::invalid_request(
                "Each resource must appear at most once.",
            ))
        } else {
            match resource.change {
                Ok(change) => alter_resource(broker, key.0, &key.1, &change, validate_only).await,
                Err(error) => Err(error),
            }
        };
        let (code, message) = match result {
            Ok(()) => (ErrorCode::None.code(), None),
            Err(error) => (error.code, Some(error.message)),
        };
        outcomes.push((key.0, key.1, code, message));
    }
    broker.catch_up_with_controller().await;
    outcomes
}

/// The operations of one resource, checked for unknown operation codes, repeated keys and null
/// values (allowed for DELETE only).
fn operations(resource: &AlterConfigsResource) -> Result<ConfigChange, MetadataError> {
    check_unique_keys(resource.configs.iter().map(|config| config.name.as_str()))?;
    let ops = resource
        .configs
        .iter()
        .map(|config| {
            let op = ConfigOpType::from_code(config.config_operation).ok_or_else(|| {
                MetadataError::invalid_request(format!(
                    "Unknown config operation type {}",
                    config.config_operation
                ))
            })?;
            Ok(ConfigOp {
                key: config.name.clone(),
                value: config.value.clone(),
                op,
            })
        })
        .collect::<Result<Vec<ConfigOp>, MetadataError>>()?;
    check_no_null_values(
        ops.iter()
            .filter(|op| op.op != ConfigOpType::Delete && op.value.is_none())
            .map(|op| op.key.as_str()),
    )?;
    Ok(ConfigChange::Incremental(ops))
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
    use crate::handlers::describe_configs::topic_config_entries;
    use strom_config::ConfigSource;
    use strom_protocol::messages::incremental_alter_configs_request::AlterableConfig;

    const INVALID_CONFIG: i16 = ErrorCode::InvalidConfig.code();
    const INVALID_REQUEST: i16 = ErrorCode::InvalidRequest.code();

    fn resource(resource: (i8, &str), ops: &[(&str, i8, Option<&str>)]) -> AlterConfigsResource {
        AlterConfigsResource {
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
        }
    }

    /// The error code and message of one resource's alteration.
    async fn alter_with_message(
        broker: &Broker,
        target: (i8, &str),
        ops: &[(&str, i8, Option<&str>)],
        validate_only: bool,
    ) -> (i16, Option<String>) {
        let request = IncrementalAlterConfigsRequest {
            resources: vec![resource(target, ops)],
            validate_only,
        };
        let response = handle(broker, request, 1).await.responses.remove(0);
        (response.error_code, response.error_message)
    }

    async fn alter(
        broker: &Broker,
        target: (i8, &str),
        ops: &[(&str, i8, Option<&str>)],
        validate_only: bool,
    ) -> i16 {
        alter_with_message(broker, target, ops, validate_only)
            .await
            .0
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
            ErrorCode::UnknownTopicOrPartition.code()
        );
        assert_eq!(
            alter(&broker, topic, &[("bogus", 0, Some("1"))], false).await,
            INVALID_CONFIG
        );
        assert_eq!(alter(&broker, (8, "t"), &ops, false).await, INVALID_REQUEST);

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
            alter_with_message(
                &broker,
                (CONFIG_RESOURCE_BROKER, "1"),
                &[("num.partitions", 0, Some("3"))],
                false
            )
            .await,
            (
                INVALID_REQUEST,
                Some("Cannot update these configs dynamically: Set(num.partitions)".into())
            )
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
            (Some("60000"), ConfigSource::DynamicDefaultBroker.code())
        );
    }

    #[tokio::test]
    async fn broker_resources_follow_kafkas_dynamic_config_rules() {
        let (_dir, broker) = test_broker().await;
        let this_broker = (CONFIG_RESOURCE_BROKER, "1");
        let cluster = (CONFIG_RESOURCE_BROKER, "");
        let ok = (0, None);
        let refused = |message: &str| (INVALID_REQUEST, Some(message.to_owned()));
        for (target, ops, expected) in [
            (
                this_broker,
                vec![("log.retention.ms", 0, Some("1000"))],
                ok.clone(),
            ),
            (this_broker, vec![("log.retention.ms", 1, None)], ok.clone()),
            (this_broker, vec![("log.dirs", 1, None)], ok.clone()),
            (
                this_broker,
                vec![("log.cleanup.policy", 2, Some("compact"))],
                ok.clone(),
            ),
            (
                this_broker,
                vec![(
                    "listener.name.external.ssl.keystore.location",
                    0,
                    Some("/etc/ks.jks"),
                )],
                ok.clone(),
            ),
            (cluster, vec![("num.io.threads", 0, Some("16"))], ok.clone()),
            (
                this_broker,
                vec![("num.io.threads", 0, Some("33"))],
                refused(
                    "Invalid value org.apache.kafka.common.config.ConfigException: Dynamic \
                     thread count update validation failed for num.io.threads=33, value should \
                     not be greater than double the current value 16 for configuration Invalid \
                     dynamic configuration",
                ),
            ),
            (
                cluster,
                vec![("custom.plugin.key", 0, Some("x"))],
                ok.clone(),
            ),
            (
                this_broker,
                vec![("log.dirs", 0, Some("/elsewhere"))],
                refused("Cannot update these configs dynamically: Set(log.dirs)"),
            ),
            (
                cluster,
                vec![("broker.id", 0, Some("7"))],
                refused("Cannot update these configs dynamically: Set(broker.id)"),
            ),
            (
                cluster,
                vec![(
                    "listener.name.external.ssl.keystore.location",
                    0,
                    Some("/etc/ks.jks"),
                )],
                refused(
                    "Cannot update these configs at default cluster level, broker id must be \
                     specified: Set(listener.name.external.ssl.keystore.location)",
                ),
            ),
            (
                this_broker,
                vec![("log.retention.ms", 0, Some("soon"))],
                refused(
                    "Invalid value soon for configuration log.retention.ms: Not a number of \
                     type LONG",
                ),
            ),
            (
                this_broker,
                vec![("log.retention.ms", 2, Some("1"))],
                (
                    INVALID_CONFIG,
                    Some(
                        "Config value append is not allowed for config key: log.retention.ms"
                            .into(),
                    ),
                ),
            ),
            (
                this_broker,
                vec![("no.such.key", 3, Some("1"))],
                (
                    INVALID_CONFIG,
                    Some("Unknown config name: no.such.key".into()),
                ),
            ),
            (
                this_broker,
                vec![("log.retention.ms", 0, None)],
                refused("Null value not supported for : log.retention.ms"),
            ),
            (
                (CONFIG_RESOURCE_BROKER, "2"),
                vec![("log.retention.ms", 0, Some("1"))],
                refused("Unexpected broker id, expected 1, but received 2"),
            ),
            (
                (CONFIG_RESOURCE_BROKER, "one"),
                vec![("log.retention.ms", 0, Some("1"))],
                refused("Node id must be an integer, but it is: one"),
            ),
        ] {
            assert_eq!(
                alter_with_message(&broker, target, &ops, false).await,
                expected,
                "{target:?} {ops:?}"
            );
        }
        let image = broker.image();
        let stored = image.broker_config(Some(1)).expect("broker configs");
        assert_eq!(
            stored.get("log.cleanup.policy").map(String::as_str),
            Some("delete,compact")
        );
        assert!(!stored.contains_key("log.dirs"));
    }

    #[tokio::test]
    async fn a_resource_named_twice_is_refused() {
        let (_dir, broker) = test_broker().await;
        let target = (CONFIG_RESOURCE_BROKER, "");
        let ops = [("log.retention.ms", 0, Some("1"))];
        let request = IncrementalAlterConfigsRequest {
            resources: vec![resource(target, &ops), resource(target, &ops)],
            validate_only: false,
        };
        let codes: Vec<i16> = handle(&broker, request, 1)
            .await
            .responses
            .iter()
            .map(|r| r.error_code)
            .collect();
        assert_eq!(codes, [INVALID_REQUEST, INVALID_REQUEST]);
        assert!(broker.image().broker_config(None).is_none());
    }

    #[tokio::test]
    async fn operations_reject_unknown_codes_and_repeated_keys() {
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
        assert_eq!(code(vec![config("retention.ms", 9)]), Err(INVALID_REQUEST));
        assert_eq!(
            code(vec![config("retention.ms", 0), config("retention.ms", 1)]),
            Err(INVALID_REQUEST)
        );
    }
}
