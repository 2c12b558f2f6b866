//! DescribeConfigs (API 32): the effective configuration of topics and of this broker, with each
//! value's source and, on request, its synonyms, as Kafka's `ConfigHelper` reports them.
//!
//! Keys, types, read-only and sensitive flags come from the key table of `strom-config`. A topic
//! key's value is resolved by [`strom_config::ConfigLayers`] from the topic's override, this
//! broker's dynamic configs, the cluster-wide dynamic defaults, `server.properties` and the
//! defaults, in that order: the same resolution that the partition logs and Produce enforce. Also
//! home of [`topic_config_entries`], which CreateTopics (v5+) reports.
//!
//! A broker key is listed with its value in the first layer that sets it (this broker's dynamic
//! configs, the cluster-wide defaults, `server.properties`), else its default; keys Kafka does not
//! know (custom configs) and passwords are sensitive and reported without value. The resource ""
//! lists only the cluster-wide dynamic defaults.

use std::collections::BTreeSet;

use strom_config::{
    ConfigLayers, ConfigMap, ConfigSource, ConfigSynonym, EffectiveValue, UNKNOWN_TYPE_CODE,
};
use strom_metadata::image::{CONFIG_RESOURCE_BROKER, CONFIG_RESOURCE_TOPIC};
use strom_metadata::{MetadataError, MetadataImage};
use strom_protocol::messages::describe_configs_request::{
    DescribeConfigsRequest, DescribeConfigsResource,
};
use strom_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResponse, DescribeConfigsResult,
    DescribeConfigsSynonym,
};
use strom_protocol::ErrorCode;

use crate::config::BrokerConfig;
use crate::state::Broker;

/// One config key as DescribeConfigs (and CreateTopics v5+) report it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ConfigEntry {
    pub name: String,
    /// `None` for a null value or a sensitive key.
    pub value: Option<String>,
    /// DescribeConfigs' `ConfigSource` code.
    pub source: i8,
    pub config_type: i8,
    pub read_only: bool,
    pub sensitive: bool,
    /// Where the value comes from, highest precedence first.
    pub synonyms: Vec<ConfigSynonym>,
}

impl ConfigEntry {
    /// A topic key's entry.
    fn topic(effective: EffectiveValue) -> Self {
        let sensitive = effective.def.is_sensitive();
        ConfigEntry {
            name: effective.def.name.to_owned(),
            value: (!sensitive).then_some(effective.value),
            source: effective.source.code(),
            config_type: effective.def.config_type.describe_code(),
            read_only: false,
            sensitive,
            synonyms: masked(effective.synonyms, sensitive),
        }
    }

    fn into_result(self, include_synonyms: bool) -> DescribeConfigsResourceResult {
        DescribeConfigsResourceResult {
            is_default: self.source == ConfigSource::Default.code(),
            synonyms: if include_synonyms {
                self.synonyms
                    .into_iter()
                    .map(|synonym| DescribeConfigsSynonym {
                        name: synonym.name,
                        value: synonym.value,
                        source: synonym.source.code(),
                    })
                    .collect()
            } else {
                Vec::new()
            },
            name: self.name,
            value: self.value,
            read_only: self.read_only,
            config_source: self.source,
            is_sensitive: self.sensitive,
            config_type: self.config_type,
            documentation: None,
        }
    }
}

/// Synonyms with their values hidden when the key is sensitive.
fn masked(synonyms: Vec<ConfigSynonym>, sensitive: bool) -> Vec<ConfigSynonym> {
    if !sensitive {
        return synonyms;
    }
    synonyms
        .into_iter()
        .map(|synonym| ConfigSynonym {
            value: None,
            ..synonym
        })
        .collect()
}

/// Every topic config key with its effective value for a topic with `overrides` on broker
/// `node_id`, sorted by name.
pub(super) fn topic_config_entries(
    config: &BrokerConfig,
    image: &MetadataImage,
    node_id: i32,
    overrides: &ConfigMap,
) -> Vec<ConfigEntry> {
    let layers = ConfigLayers {
        topic: Some(overrides),
        dynamic_broker: image.broker_config(Some(node_id)),
        dynamic_default: image.broker_config(None),
        static_broker: Some(&config.explicit),
    };
    layers
        .topic_configs()
        .into_iter()
        .map(ConfigEntry::topic)
        .collect()
}

/// The value of a broker key that no layer sets: the node id for `node.id` and `broker.id`
/// (which stand for each other), else the table's default.
fn broker_default(config: &BrokerConfig, key: &str) -> Option<String> {
    match key {
        "node.id" | "broker.id" => Some(config.node_id.to_string()),
        _ => strom_config::broker_key(key)?.default.map(str::to_owned),
    }
}

/// The configs of this broker (`per_broker`) or, for the resource name "", the cluster-wide
/// dynamic defaults only, as Kafka lists them.
fn broker_config_entries(
    config: &BrokerConfig,
    image: &MetadataImage,
    per_broker: bool,
) -> Vec<ConfigEntry> {
    let layers = if per_broker {
        config.config_layers(image, None)
    } else {
        ConfigLayers {
            dynamic_default: image.broker_config(None),
            ..ConfigLayers::default()
        }
    };
    let mut keys: BTreeSet<&str> = [
        layers.dynamic_broker,
        layers.dynamic_default,
        layers.static_broker,
    ]
    .into_iter()
    .flatten()
    .flat_map(|layer| layer.keys().map(String::as_str))
    .collect();
    if per_broker {
        keys.extend(strom_config::broker_keys().map(|def| def.name));
    }
    keys.into_iter()
        .map(|key| {
            let def = strom_config::broker_key_or_listener_base(key);
            // Kafka treats a key whose type it cannot tell as sensitive.
            let sensitive = def.is_none_or(|def| def.is_sensitive());
            let (value, source) = layers.broker_value(key).map_or_else(
                || (broker_default(config, key), ConfigSource::Default),
                |(value, source)| (Some(value.to_owned()), source),
            );
            let synonyms = layers
                .broker_synonyms(key)
                .into_iter()
                .filter(|s| per_broker || s.source == ConfigSource::DynamicDefaultBroker)
                .collect();
            ConfigEntry {
                name: key.to_owned(),
                value: value.filter(|_| !sensitive),
                source: source.code(),
                config_type: def.map_or(UNKNOWN_TYPE_CODE, |def| def.config_type.describe_code()),
                // Kafka: read-only unless one of its dynamic broker keys (so a per-listener
                // override or a custom key is read-only).
                read_only: strom_config::broker_key(key).is_none_or(|def| def.is_read_only()),
                sensitive,
                synonyms: masked(synonyms, sensitive),
            }
        })
        .collect()
}

/// Parses a BROKER resource name: "" is the cluster-wide default (`None`), else a broker id.
fn parse_broker_resource(name: &str) -> Result<Option<i32>, MetadataError> {
    if name.is_empty() {
        return Ok(None);
    }
    name.parse::<i32>().map(Some).map_err(|_| {
        MetadataError::invalid_request(format!("Broker id must be an integer, but it is: {name}"))
    })
}

/// The error for a resource type the config APIs do not handle.
pub(super) fn unsupported_resource_type(resource_type: i8) -> MetadataError {
    MetadataError::invalid_request(format!("Unsupported resource type: {resource_type}"))
}

/// The configs of one resource, or why they cannot be described.
fn describe_resource(
    broker: &Broker,
    image: &MetadataImage,
    resource: &DescribeConfigsResource,
) -> Result<Vec<ConfigEntry>, MetadataError> {
    let name = resource.resource_name.as_str();
    match resource.resource_type {
        CONFIG_RESOURCE_TOPIC => {
            let topic = image.topic(name).ok_or_else(|| {
                MetadataError::of(
                    ErrorCode::UnknownTopicOrPartition,
                    "This server does not host this topic-partition.",
                )
            })?;
            Ok(topic_config_entries(
                &broker.config,
                image,
                broker.node_id,
                &topic.configs,
            ))
        }
        CONFIG_RESOURCE_BROKER => match parse_broker_resource(name)? {
            None => Ok(broker_config_entries(&broker.config, image, false)),
            Some(id) if id == broker.node_id => {
                Ok(broker_config_entries(&broker.config, image, true))
            }
            Some(_) => Err(MetadataError::invalid_request(format!(
                "Unexpected broker id, expected {} or empty string, but received {name}",
                broker.node_id
            ))),
        },
        other => Err(unsupported_resource_type(other)),
    }
}

pub fn handle(
    broker: &Broker,
    request: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let image = broker.image();
    let include_synonyms = version >= 1 && request.include_synonyms;
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let described = describe_resource(broker, &image, &resource);
            let mut result = DescribeConfigsResult {
                error_code: ErrorCode::None.code(),
                error_message: None,
                resource_type: resource.resource_type,
                resource_name: resource.resource_name,
                configs: Vec::new(),
            };
            match described {
                Ok(entries) => {
                    let wanted = resource.configuration_keys.as_ref();
                    result.configs = entries
                        .into_iter()
                        .filter(|entry| wanted.is_none_or(|keys| keys.contains(&entry.name)))
                        .map(|entry| entry.into_result(include_synonyms))
                        .collect();
                }
                Err(error) => {
                    result.error_code = error.code;
                    result.error_message = Some(error.message);
                }
            }
            result
        })
        .collect();
    DescribeConfigsResponse {
        throttle_time_ms: 0,
        results,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use strom_metadata::ConfigOp;

    use crate::handlers::create_topics::tests::{create, test_broker};

    fn describe(
        broker: &Broker,
        resources: &[(i8, &str, Option<&[&str]>)],
        version: i16,
    ) -> Vec<DescribeConfigsResult> {
        let request = DescribeConfigsRequest {
            resources: resources
                .iter()
                .map(|(resource_type, name, keys)| DescribeConfigsResource {
                    resource_type: *resource_type,
                    resource_name: (*name).into(),
                    configuration_keys: keys.map(|keys| keys.iter().map(|k| (*k).into()).collect()),
                })
                .collect(),
            include_synonyms: true,
            include_documentation: false,
        };
        handle(broker, request, version).results
    }

    fn find<'a>(
        result: &'a DescribeConfigsResult,
        name: &str,
    ) -> &'a DescribeConfigsResourceResult {
        result
            .configs
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("{name} not listed"))
    }

    #[tokio::test]
    async fn describes_topics_and_this_broker() {
        let (_dir, broker) = test_broker().await;
        create(
            &broker,
            &[("t", 1, &[("retention.ms", Some("1000"))])],
            false,
        )
        .await;
        let results = describe(
            &broker,
            &[
                (
                    CONFIG_RESOURCE_TOPIC,
                    "t",
                    Some(&["segment.bytes", "retention.ms"]),
                ),
                (CONFIG_RESOURCE_TOPIC, "missing", None),
                (CONFIG_RESOURCE_BROKER, "1", None),
                (CONFIG_RESOURCE_BROKER, "2", None),
                (CONFIG_RESOURCE_BROKER, "", None),
                (8, "x", None),
                (CONFIG_RESOURCE_BROKER, "x", None),
            ],
            4,
        );
        let codes: Vec<i16> = results.iter().map(|r| r.error_code).collect();
        let invalid_request = ErrorCode::InvalidRequest.code();
        assert_eq!(
            codes,
            [
                0,
                ErrorCode::UnknownTopicOrPartition.code(),
                0,
                invalid_request,
                0,
                invalid_request,
                invalid_request
            ]
        );
        assert_eq!(
            results[6].error_message.as_deref(),
            Some("Broker id must be an integer, but it is: x")
        );

        let topic: Vec<(&str, Option<&str>, i8, i8)> = results[0]
            .configs
            .iter()
            .map(|c| {
                (
                    c.name.as_str(),
                    c.value.as_deref(),
                    c.config_source,
                    c.config_type,
                )
            })
            .collect();
        assert_eq!(
            topic,
            [
                (
                    "retention.ms",
                    Some("1000"),
                    ConfigSource::DynamicTopic.code(),
                    5
                ),
                (
                    "segment.bytes",
                    Some("1073741824"),
                    ConfigSource::Default.code(),
                    3
                ),
            ]
        );
        assert_eq!(results[0].configs[0].synonyms[0].name, "retention.ms");
        assert_eq!(results[0].configs[1].documentation, None);

        let node_id = find(&results[2], "node.id");
        assert_eq!(
            (node_id.value.as_deref(), node_id.read_only),
            (Some("1"), true)
        );
        let retention = find(&results[2], "log.retention.ms");
        assert!(!retention.read_only);
        assert_eq!(retention.value, None);
        let hours = find(&results[2], "log.retention.hours");
        assert_eq!(
            (hours.value.as_deref(), hours.read_only),
            (Some("168"), true)
        );
        let password = find(&results[2], "ssl.keystore.password");
        assert!(password.is_sensitive && !password.read_only);
        assert_eq!(password.config_type, 9);
        assert!(results[4].configs.is_empty());

        let v0 = describe(
            &broker,
            &[(
                CONFIG_RESOURCE_TOPIC,
                "t",
                Some(&["retention.ms", "segment.bytes"]),
            )],
            0,
        );
        let defaults: Vec<bool> = v0[0].configs.iter().map(|c| c.is_default).collect();
        assert_eq!(defaults, [false, true]);
        assert!(v0[0].configs[0].synonyms.is_empty());
    }

    #[tokio::test]
    async fn broker_entries_list_dynamic_values_and_hide_secrets() {
        let (_dir, broker) = test_broker().await;
        let controller = &broker.controller;
        controller
            .alter_broker_configs(
                None,
                &[
                    ConfigOp::set("min.insync.replicas", "2"),
                    ConfigOp::set("custom.key", "x"),
                ],
                false,
            )
            .await
            .expect("stored");
        controller
            .alter_broker_configs(
                Some(1),
                &[
                    ConfigOp::set("listener.name.external.ssl.keystore.location", "/ks"),
                    ConfigOp::set("listener.name.external.ssl.keystore.password", "secret"),
                ],
                false,
            )
            .await
            .expect("stored");
        broker.catch_up_with_controller().await;
        let results = describe(
            &broker,
            &[
                (CONFIG_RESOURCE_BROKER, "1", None),
                (CONFIG_RESOURCE_BROKER, "", None),
            ],
            4,
        );
        let min_isr = find(&results[0], "min.insync.replicas");
        assert_eq!(min_isr.value.as_deref(), Some("2"));
        assert_eq!(
            min_isr.config_source,
            ConfigSource::DynamicDefaultBroker.code()
        );
        let location = find(&results[0], "listener.name.external.ssl.keystore.location");
        assert_eq!(location.value.as_deref(), Some("/ks"));
        assert_eq!(location.config_type, 2);
        let synonyms: Vec<&str> = location.synonyms.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(synonyms, ["listener.name.external.ssl.keystore.location"]);
        let password = find(&results[0], "listener.name.external.ssl.keystore.password");
        assert!(password.is_sensitive);
        assert_eq!(password.value, None);
        assert_eq!(password.synonyms[0].value, None);
        let custom = find(&results[0], "custom.key");
        assert!(custom.is_sensitive && custom.read_only);
        assert_eq!((custom.value.as_deref(), custom.config_type), (None, 0));

        let cluster: Vec<&str> = results[1].configs.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(cluster, ["custom.key", "min.insync.replicas"]);
        let min_isr = find(&results[1], "min.insync.replicas");
        assert_eq!(min_isr.synonyms.len(), 1);
        assert_eq!(
            min_isr.synonyms[0].source,
            ConfigSource::DynamicDefaultBroker.code()
        );

        let topic = topic_config_entries(
            &broker.config,
            &broker.image(),
            1,
            &BTreeMap::from([("segment.bytes".to_owned(), "2048".to_owned())]),
        );
        let min_isr = topic
            .iter()
            .find(|e| e.name == "min.insync.replicas")
            .expect("listed");
        assert_eq!(
            (min_isr.value.as_deref(), min_isr.source),
            (Some("2"), ConfigSource::DynamicDefaultBroker.code())
        );
    }

    #[tokio::test]
    async fn topic_configs_resolve_override_static_and_default() {
        let (config, _) = BrokerConfig::from_properties_str(
            "log.retention.hours=24\nlog.segment.bytes=1048576\n",
        )
        .expect("valid properties");
        let image = MetadataImage::empty("cluster".into());
        let overrides = BTreeMap::from([("segment.bytes".to_owned(), "2048".to_owned())]);
        let entries = topic_config_entries(&config, &image, config.node_id, &overrides);
        assert_eq!(entries.len(), strom_config::topic_keys().count());
        let entry = |name: &str| {
            entries
                .iter()
                .find(|e| e.name == name)
                .unwrap_or_else(|| panic!("{name} missing"))
        };

        let segment = entry("segment.bytes");
        assert_eq!(segment.value.as_deref(), Some("2048"));
        assert_eq!(segment.source, ConfigSource::DynamicTopic.code());
        let sources: Vec<ConfigSource> = segment.synonyms.iter().map(|s| s.source).collect();
        assert_eq!(
            sources,
            [
                ConfigSource::DynamicTopic,
                ConfigSource::StaticBroker,
                ConfigSource::Default
            ]
        );

        let retention = entry("retention.ms");
        assert_eq!(retention.value.as_deref(), Some("86400000"));
        assert_eq!(retention.source, ConfigSource::StaticBroker.code());
        assert_eq!(retention.synonyms[0].name, "log.retention.hours");
        assert_eq!(retention.config_type, 5);

        let policy = entry("cleanup.policy");
        assert_eq!(policy.value.as_deref(), Some("delete"));
        assert_eq!(policy.source, ConfigSource::Default.code());
        assert_eq!(policy.config_type, 7);

        let throttled = entry("leader.replication.throttled.replicas");
        assert_eq!(throttled.source, ConfigSource::Default.code());
        assert!(throttled.synonyms.is_empty());
    }

    #[tokio::test]
    async fn entry_result_honours_include_synonyms() {
        let entry = ConfigEntry {
            name: "retention.ms".into(),
            value: Some("1".into()),
            source: ConfigSource::Default.code(),
            config_type: 5,
            read_only: false,
            sensitive: false,
            synonyms: vec![ConfigSynonym {
                name: "log.retention.ms".into(),
                value: Some("1".into()),
                source: ConfigSource::Default,
            }],
        };
        let with = entry.clone().into_result(true);
        assert_eq!(with.synonyms.len(), 1);
        assert!(with.is_default);
        assert_eq!(with.documentation, None);
        assert!(entry.into_result(false).synonyms.is_empty());
    }

    #[tokio::test]
    async fn broker_resource_names() {
        assert_eq!(parse_broker_resource(""), Ok(None));
        assert_eq!(parse_broker_resource("3"), Ok(Some(3)));
        assert_eq!(
            parse_broker_resource("x").map_err(|e| e.code),
            Err(ErrorCode::InvalidRequest.code())
        );
    }
}
