//! DescribeConfigs (API 32): the effective configuration of topics and of this broker, with each
//! value's source and, on request, its synonyms, as Kafka's `ConfigHelper` reports them.
//!
//! Also home of the config tables the other config handlers share: which broker keys stand behind a
//! topic key ([`TOPIC_CONFIG_SYNONYMS`]), the broker keys Strom knows ([`BROKER_CONFIG_KEYS`]) and
//! the resolution of a topic's effective configs ([`topic_config_entries`], used by CreateTopics).
//!
//! A topic key's value comes from the first of: the topic's override (`DYNAMIC_TOPIC_CONFIG`), a
//! dynamic config of this broker (`DYNAMIC_BROKER_CONFIG`), a cluster-wide dynamic broker default
//! (`DYNAMIC_DEFAULT_BROKER_CONFIG`), `server.properties` (`STATIC_BROKER_CONFIG`), Kafka's default
//! (`DEFAULT_CONFIG`).

use std::collections::{BTreeMap, BTreeSet};

use strom_metadata::config::TOPIC_CONFIG_DEFAULTS;
use strom_metadata::error::codes;
use strom_metadata::image::{CONFIG_RESOURCE_BROKER, CONFIG_RESOURCE_TOPIC};
use strom_metadata::{MetadataError, MetadataImage};
use strom_protocol::messages::describe_configs_request::{
    DescribeConfigsRequest, DescribeConfigsResource,
};
use strom_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResponse, DescribeConfigsResult,
    DescribeConfigsSynonym,
};

use crate::config::BrokerConfig;
use crate::state::Broker;

/// Kafka's `DescribeConfigsResponse.ConfigSource` ids.
pub(super) mod source {
    pub const DYNAMIC_TOPIC_CONFIG: i8 = 1;
    pub const DYNAMIC_BROKER_CONFIG: i8 = 2;
    pub const DYNAMIC_DEFAULT_BROKER_CONFIG: i8 = 3;
    pub const STATIC_BROKER_CONFIG: i8 = 4;
    pub const DEFAULT_CONFIG: i8 = 5;
}

/// Kafka's `DescribeConfigsResponse.ConfigType` ids of the types broker keys use.
mod config_type {
    pub const UNKNOWN: i8 = 0;
    pub const BOOLEAN: i8 = 1;
    pub const STRING: i8 = 2;
    pub const INT: i8 = 3;
    pub const SHORT: i8 = 4;
    pub const LONG: i8 = 5;
    pub const LIST: i8 = 7;
}

/// For each topic key, the broker keys that set its default, in Kafka's order of precedence
/// (`ServerTopicConfigSynonyms`). The first broker key is the one Kafka lets you change dynamically.
pub(super) const TOPIC_CONFIG_SYNONYMS: &[(&str, &[&str])] = &[
    ("cleanup.policy", &["log.cleanup.policy"]),
    ("compression.gzip.level", &["compression.gzip.level"]),
    ("compression.lz4.level", &["compression.lz4.level"]),
    ("compression.type", &["compression.type"]),
    ("compression.zstd.level", &["compression.zstd.level"]),
    ("delete.retention.ms", &["log.cleaner.delete.retention.ms"]),
    ("file.delete.delay.ms", &["log.segment.delete.delay.ms"]),
    ("flush.messages", &["log.flush.interval.messages"]),
    (
        "flush.ms",
        &["log.flush.interval.ms", "log.flush.scheduler.interval.ms"],
    ),
    ("index.interval.bytes", &["log.index.interval.bytes"]),
    ("local.retention.bytes", &["log.local.retention.bytes"]),
    ("local.retention.ms", &["log.local.retention.ms"]),
    (
        "max.compaction.lag.ms",
        &["log.cleaner.max.compaction.lag.ms"],
    ),
    ("max.message.bytes", &["message.max.bytes"]),
    (
        "message.downconversion.enable",
        &["log.message.downconversion.enable"],
    ),
    ("message.format.version", &["log.message.format.version"]),
    (
        "message.timestamp.after.max.ms",
        &["log.message.timestamp.after.max.ms"],
    ),
    (
        "message.timestamp.before.max.ms",
        &["log.message.timestamp.before.max.ms"],
    ),
    (
        "message.timestamp.difference.max.ms",
        &["log.message.timestamp.difference.max.ms"],
    ),
    ("message.timestamp.type", &["log.message.timestamp.type"]),
    (
        "min.cleanable.dirty.ratio",
        &["log.cleaner.min.cleanable.ratio"],
    ),
    (
        "min.compaction.lag.ms",
        &["log.cleaner.min.compaction.lag.ms"],
    ),
    ("min.insync.replicas", &["min.insync.replicas"]),
    ("preallocate", &["log.preallocate"]),
    ("retention.bytes", &["log.retention.bytes"]),
    (
        "retention.ms",
        &[
            "log.retention.ms",
            "log.retention.minutes",
            "log.retention.hours",
        ],
    ),
    ("segment.bytes", &["log.segment.bytes"]),
    ("segment.index.bytes", &["log.index.size.max.bytes"]),
    (
        "segment.jitter.ms",
        &["log.roll.jitter.ms", "log.roll.jitter.hours"],
    ),
    ("segment.ms", &["log.roll.ms", "log.roll.hours"]),
    (
        "unclean.leader.election.enable",
        &["unclean.leader.election.enable"],
    ),
];

/// The broker keys Strom knows, with their DescribeConfigs type.
pub(super) const BROKER_CONFIG_KEYS: &[(&str, i8)] = &[
    ("advertised.listeners", config_type::STRING),
    ("auto.create.topics.enable", config_type::BOOLEAN),
    ("broker.rack", config_type::STRING),
    ("default.replication.factor", config_type::INT),
    ("delete.topic.enable", config_type::BOOLEAN),
    ("group.initial.rebalance.delay.ms", config_type::INT),
    ("group.max.session.timeout.ms", config_type::INT),
    ("group.min.session.timeout.ms", config_type::INT),
    ("listeners", config_type::STRING),
    ("log.cleanup.policy", config_type::LIST),
    ("log.dirs", config_type::STRING),
    ("log.flush.interval.messages", config_type::LONG),
    ("log.flush.interval.ms", config_type::LONG),
    ("log.index.interval.bytes", config_type::INT),
    ("log.message.timestamp.type", config_type::STRING),
    ("log.retention.bytes", config_type::LONG),
    ("log.retention.check.interval.ms", config_type::LONG),
    ("log.retention.ms", config_type::LONG),
    ("log.roll.ms", config_type::LONG),
    ("log.segment.bytes", config_type::INT),
    ("message.max.bytes", config_type::INT),
    ("min.insync.replicas", config_type::INT),
    ("node.id", config_type::INT),
    ("num.partitions", config_type::INT),
    ("offsets.retention.minutes", config_type::INT),
    ("offsets.topic.num.partitions", config_type::INT),
    ("offsets.topic.replication.factor", config_type::SHORT),
    ("offsets.topic.segment.bytes", config_type::INT),
    ("process.roles", config_type::LIST),
    ("socket.request.max.bytes", config_type::INT),
    ("transaction.max.timeout.ms", config_type::INT),
    ("transaction.state.log.min.isr", config_type::INT),
    ("transaction.state.log.num.partitions", config_type::INT),
    (
        "transaction.state.log.replication.factor",
        config_type::SHORT,
    ),
    ("transaction.state.log.segment.bytes", config_type::INT),
    ("transactional.id.expiration.ms", config_type::INT),
];

/// The broker keys standing behind a topic key (empty if none).
fn broker_synonyms(topic_key: &str) -> &'static [&'static str] {
    TOPIC_CONFIG_SYNONYMS
        .iter()
        .find(|(key, _)| *key == topic_key)
        .map_or(&[], |(_, synonyms)| synonyms)
}

/// The topic key a broker key can be changed dynamically for, if it is such a key (Kafka's
/// `DynamicLogConfig.ReconfigurableConfigs`: the first broker synonym of each topic key).
pub(crate) fn dynamic_broker_key_topic(broker_key: &str) -> Option<&'static str> {
    TOPIC_CONFIG_SYNONYMS
        .iter()
        .find(|(_, synonyms)| synonyms.first() == Some(&broker_key))
        .map(|(topic_key, _)| *topic_key)
}

/// Whether Strom knows `key` as a broker config key.
pub(super) fn is_known_broker_key(key: &str) -> bool {
    BROKER_CONFIG_KEYS.iter().any(|(name, _)| *name == key)
        || TOPIC_CONFIG_SYNONYMS
            .iter()
            .any(|(_, synonyms)| synonyms.contains(&key))
}

/// A broker key's value expressed in its topic key's unit (`log.retention.hours` is in hours,
/// `retention.ms` in milliseconds).
fn in_topic_units(broker_key: &str, value: &str) -> String {
    let factor = if broker_key.ends_with(".hours") {
        3_600_000
    } else if broker_key.ends_with(".minutes") {
        60_000
    } else {
        return value.to_owned();
    };
    value.trim().parse::<i64>().map_or_else(
        |_| value.to_owned(),
        |v| v.saturating_mul(factor).to_string(),
    )
}

/// One config key as DescribeConfigs (and CreateTopics v5+) report it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ConfigEntry {
    pub name: String,
    pub value: Option<String>,
    pub source: i8,
    pub config_type: i8,
    pub read_only: bool,
    /// Where the value comes from, highest precedence first (`(name, value, source)`).
    pub synonyms: Vec<(String, Option<String>, i8)>,
}

impl ConfigEntry {
    fn into_result(self, include_synonyms: bool) -> DescribeConfigsResourceResult {
        DescribeConfigsResourceResult {
            is_default: self.source == source::DEFAULT_CONFIG,
            synonyms: if include_synonyms {
                self.synonyms
                    .into_iter()
                    .map(|(name, value, source)| DescribeConfigsSynonym {
                        name,
                        value,
                        source,
                    })
                    .collect()
            } else {
                Vec::new()
            },
            name: self.name,
            value: self.value,
            read_only: self.read_only,
            config_source: self.source,
            is_sensitive: false,
            config_type: self.config_type,
            documentation: None,
        }
    }
}

/// The dynamic broker configs that apply to this broker: its own, then the cluster-wide defaults.
fn dynamic_broker_layers(
    image: &MetadataImage,
    node_id: i32,
) -> [(Option<&BTreeMap<String, String>>, i8); 2] {
    [
        (
            image.broker_config(Some(node_id)),
            source::DYNAMIC_BROKER_CONFIG,
        ),
        (
            image.broker_config(None),
            source::DYNAMIC_DEFAULT_BROKER_CONFIG,
        ),
    ]
}

/// Every topic config key with its effective value for a topic with `overrides`, sorted by name.
pub(super) fn topic_config_entries(
    config: &BrokerConfig,
    image: &MetadataImage,
    node_id: i32,
    overrides: &BTreeMap<String, String>,
) -> Vec<ConfigEntry> {
    let static_values: BTreeMap<String, String> = config
        .broker_defaults_as_topic_config()
        .into_iter()
        .collect();
    let dynamic = dynamic_broker_layers(image, node_id);
    TOPIC_CONFIG_DEFAULTS
        .iter()
        .map(|def| {
            let broker_keys = broker_synonyms(def.name);
            let mut synonyms = Vec::new();
            if let Some(value) = overrides.get(def.name) {
                synonyms.push((
                    def.name.to_owned(),
                    Some(value.clone()),
                    source::DYNAMIC_TOPIC_CONFIG,
                ));
            }
            let layers = dynamic
                .iter()
                .copied()
                .chain([(Some(&config.explicit), source::STATIC_BROKER_CONFIG)]);
            for (layer, layer_source) in layers {
                let Some(layer) = layer else { continue };
                for key in broker_keys {
                    if let Some(value) = layer.get(*key) {
                        synonyms.push(((*key).to_owned(), Some(value.clone()), layer_source));
                    }
                }
            }
            if let Some(primary) = broker_keys.first() {
                synonyms.push((
                    (*primary).to_owned(),
                    Some(def.default.to_owned()),
                    source::DEFAULT_CONFIG,
                ));
            }
            // A static broker setting is reported as the broker applies it (`log.retention.hours`
            // converted, negative retention normalised); other layers as written.
            let (value, source) = match synonyms.first() {
                Some((key, Some(value), source)) => {
                    let applied = (*source == source::STATIC_BROKER_CONFIG)
                        .then(|| static_values.get(def.name))
                        .flatten();
                    let value = applied
                        .cloned()
                        .unwrap_or_else(|| in_topic_units(key, value));
                    (value, *source)
                }
                _ => (def.default.to_owned(), source::DEFAULT_CONFIG),
            };
            ConfigEntry {
                name: def.name.to_owned(),
                value: Some(value),
                source,
                config_type: def.config_type.describe_code(),
                read_only: false,
                synonyms,
            }
        })
        .collect()
}

/// The value of a broker key as Strom runs with it when `server.properties` does not set it.
fn broker_default_value(config: &BrokerConfig, key: &str) -> Option<String> {
    let joined = |items: Vec<String>| items.join(",");
    Some(match key {
        "advertised.listeners" => joined(
            config
                .advertised_listeners
                .iter()
                .map(ToString::to_string)
                .collect(),
        ),
        "auto.create.topics.enable" => config.auto_create_topics_enable.to_string(),
        "broker.rack" => return config.broker_rack.clone(),
        "default.replication.factor" => config.default_replication_factor.to_string(),
        "delete.topic.enable" => config.delete_topic_enable.to_string(),
        "group.initial.rebalance.delay.ms" => config.group_initial_rebalance_delay_ms.to_string(),
        "group.max.session.timeout.ms" => config.group_max_session_timeout_ms.to_string(),
        "group.min.session.timeout.ms" => config.group_min_session_timeout_ms.to_string(),
        "listeners" => joined(config.listeners.iter().map(ToString::to_string).collect()),
        "log.cleanup.policy" => config.log_cleanup_policy.clone(),
        "log.dirs" => config.log_dir().display().to_string(),
        "log.flush.interval.messages" => config.log_flush_interval_messages.to_string(),
        "log.flush.interval.ms" => config.log_flush_interval_ms.to_string(),
        "log.index.interval.bytes" => config.log_index_interval_bytes.to_string(),
        "log.message.timestamp.type" => config.log_message_timestamp_type.as_str().to_owned(),
        "log.retention.bytes" => config.log_retention_bytes.to_string(),
        "log.retention.check.interval.ms" => config.log_retention_check_interval_ms.to_string(),
        "log.retention.ms" => config.log_retention_ms.to_string(),
        "log.roll.ms" => config.log_roll_ms.to_string(),
        "log.segment.bytes" => config.log_segment_bytes.to_string(),
        "message.max.bytes" => config.message_max_bytes.to_string(),
        "min.insync.replicas" => config.min_insync_replicas.to_string(),
        "node.id" => config.node_id.to_string(),
        "num.partitions" => config.num_partitions.to_string(),
        "offsets.retention.minutes" => config.offsets_retention_minutes.to_string(),
        "offsets.topic.num.partitions" => config.offsets_topic_num_partitions.to_string(),
        "offsets.topic.replication.factor" => config.offsets_topic_replication_factor.to_string(),
        "offsets.topic.segment.bytes" => config.offsets_topic_segment_bytes.to_string(),
        "process.roles" => config.process_roles.to_string(),
        "socket.request.max.bytes" => config.socket_request_max_bytes.to_string(),
        "transaction.max.timeout.ms" => config.transaction_max_timeout_ms.to_string(),
        "transaction.state.log.min.isr" => config.transaction_state_log_min_isr.to_string(),
        "transaction.state.log.num.partitions" => {
            config.transaction_state_log_num_partitions.to_string()
        }
        "transaction.state.log.replication.factor" => {
            config.transaction_state_log_replication_factor.to_string()
        }
        "transaction.state.log.segment.bytes" => {
            config.transaction_state_log_segment_bytes.to_string()
        }
        "transactional.id.expiration.ms" => config.transactional_id_expiration_ms.to_string(),
        _ => return None,
    })
}

/// The configs of this broker (`per_broker`) or, for the resource name "", the cluster-wide
/// dynamic defaults only, as Kafka lists them.
fn broker_config_entries(
    broker: &Broker,
    image: &MetadataImage,
    per_broker: bool,
) -> Vec<ConfigEntry> {
    let config = &broker.config;
    let layers: Vec<(Option<&BTreeMap<String, String>>, i8)> = if per_broker {
        dynamic_broker_layers(image, broker.node_id)
            .into_iter()
            .chain([(Some(&config.explicit), source::STATIC_BROKER_CONFIG)])
            .collect()
    } else {
        vec![(
            image.broker_config(None),
            source::DYNAMIC_DEFAULT_BROKER_CONFIG,
        )]
    };
    let mut keys: BTreeSet<&str> = layers
        .iter()
        .filter_map(|(layer, _)| *layer)
        .flat_map(|layer| layer.keys().map(String::as_str))
        .collect();
    if per_broker {
        keys.extend(BROKER_CONFIG_KEYS.iter().map(|(name, _)| *name));
    }
    keys.into_iter()
        .map(|key| {
            let mut synonyms: Vec<(String, Option<String>, i8)> = layers
                .iter()
                .filter_map(|(layer, layer_source)| {
                    let value = (*layer)?.get(key)?;
                    Some((key.to_owned(), Some(value.clone()), *layer_source))
                })
                .collect();
            let default = broker_default_value(config, key);
            if per_broker && BROKER_CONFIG_KEYS.iter().any(|(name, _)| *name == key) {
                synonyms.push((key.to_owned(), default.clone(), source::DEFAULT_CONFIG));
            }
            let (value, source) = synonyms
                .first()
                .map_or((default, source::DEFAULT_CONFIG), |(_, value, source)| {
                    (value.clone(), *source)
                });
            ConfigEntry {
                name: key.to_owned(),
                value,
                source,
                config_type: BROKER_CONFIG_KEYS
                    .iter()
                    .find(|(name, _)| *name == key)
                    .map_or(config_type::UNKNOWN, |(_, code)| *code),
                read_only: dynamic_broker_key_topic(key).is_none(),
                synonyms,
            }
        })
        .collect()
}

/// Parses a BROKER resource name: "" is the cluster-wide default (`None`), else a broker id.
pub(super) fn parse_broker_resource(name: &str) -> Result<Option<i32>, MetadataError> {
    if name.is_empty() {
        return Ok(None);
    }
    name.parse::<i32>().map(Some).map_err(|_| {
        MetadataError::new(
            codes::INVALID_REQUEST,
            format!("Unable to parse broker name {name} as a base 10 number."),
        )
    })
}

/// The error for a resource type the config APIs do not handle.
pub(super) fn unsupported_resource_type(resource_type: i8) -> MetadataError {
    MetadataError::new(
        codes::INVALID_REQUEST,
        format!("Unsupported resource type: {resource_type}"),
    )
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
                MetadataError::new(
                    codes::UNKNOWN_TOPIC_OR_PARTITION,
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
            None => Ok(broker_config_entries(broker, image, false)),
            Some(id) if id == broker.node_id => Ok(broker_config_entries(broker, image, true)),
            Some(_) => Err(MetadataError::new(
                codes::INVALID_REQUEST,
                format!(
                    "Unexpected broker id, expected {} or empty string, but received {name}",
                    broker.node_id
                ),
            )),
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
                error_code: 0,
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
    use strom_metadata::config::topic_config_def;

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
            ],
            4,
        );
        let codes: Vec<i16> = results.iter().map(|r| r.error_code).collect();
        assert_eq!(
            codes,
            [
                0,
                codes::UNKNOWN_TOPIC_OR_PARTITION,
                0,
                codes::INVALID_REQUEST,
                0,
                codes::INVALID_REQUEST
            ]
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
                    source::DYNAMIC_TOPIC_CONFIG,
                    5
                ),
                (
                    "segment.bytes",
                    Some("1073741824"),
                    source::DEFAULT_CONFIG,
                    3
                ),
            ]
        );
        assert_eq!(results[0].configs[0].synonyms[0].name, "retention.ms");
        assert_eq!(results[0].configs[1].documentation, None);

        let node_id = results[2]
            .configs
            .iter()
            .find(|c| c.name == "node.id")
            .expect("node.id");
        assert_eq!(
            (node_id.value.as_deref(), node_id.read_only),
            (Some("1"), true)
        );
        let retention = results[2]
            .configs
            .iter()
            .find(|c| c.name == "log.retention.ms")
            .expect("log.retention.ms");
        assert!(!retention.read_only);
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
    async fn every_synonym_entry_names_a_topic_key_in_order() {
        for pair in TOPIC_CONFIG_SYNONYMS.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{} out of order", pair[1].0);
        }
        for (key, synonyms) in TOPIC_CONFIG_SYNONYMS {
            assert!(
                topic_config_def(key).is_some(),
                "{key} is not a topic config key"
            );
            assert!(!synonyms.is_empty());
        }
        for pair in BROKER_CONFIG_KEYS.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{} out of order", pair[1].0);
        }
    }

    #[tokio::test]
    async fn converts_hours_and_minutes_to_milliseconds() {
        assert_eq!(in_topic_units("log.retention.hours", "2"), "7200000");
        assert_eq!(in_topic_units("log.retention.minutes", "3"), "180000");
        assert_eq!(in_topic_units("log.retention.ms", "5"), "5");
        assert_eq!(in_topic_units("log.cleanup.policy", "compact"), "compact");
    }

    fn entry<'a>(entries: &'a [ConfigEntry], name: &str) -> &'a ConfigEntry {
        entries
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("{name} missing"))
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
        assert_eq!(entries.len(), TOPIC_CONFIG_DEFAULTS.len());

        let segment = entry(&entries, "segment.bytes");
        assert_eq!(segment.value.as_deref(), Some("2048"));
        assert_eq!(segment.source, source::DYNAMIC_TOPIC_CONFIG);
        let sources: Vec<i8> = segment.synonyms.iter().map(|s| s.2).collect();
        assert_eq!(
            sources,
            [
                source::DYNAMIC_TOPIC_CONFIG,
                source::STATIC_BROKER_CONFIG,
                source::DEFAULT_CONFIG
            ]
        );

        let retention = entry(&entries, "retention.ms");
        assert_eq!(retention.value.as_deref(), Some("86400000"));
        assert_eq!(retention.source, source::STATIC_BROKER_CONFIG);
        assert_eq!(retention.synonyms[0].0, "log.retention.hours");
        assert_eq!(retention.config_type, 5);

        let policy = entry(&entries, "cleanup.policy");
        assert_eq!(policy.value.as_deref(), Some("delete"));
        assert_eq!(policy.source, source::DEFAULT_CONFIG);
        assert_eq!(policy.config_type, 7);

        let throttled = entry(&entries, "leader.replication.throttled.replicas");
        assert_eq!(throttled.source, source::DEFAULT_CONFIG);
        assert!(throttled.synonyms.is_empty());
    }

    #[tokio::test]
    async fn entry_result_honours_include_synonyms() {
        let entry = ConfigEntry {
            name: "retention.ms".into(),
            value: Some("1".into()),
            source: source::DEFAULT_CONFIG,
            config_type: 5,
            read_only: false,
            synonyms: vec![(
                "log.retention.ms".into(),
                Some("1".into()),
                source::DEFAULT_CONFIG,
            )],
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
            Err(codes::INVALID_REQUEST)
        );
        assert_eq!(
            dynamic_broker_key_topic("log.retention.ms"),
            Some("retention.ms")
        );
        assert_eq!(dynamic_broker_key_topic("log.retention.hours"), None);
        assert!(is_known_broker_key("log.retention.hours"));
        assert!(!is_known_broker_key("no.such.key"));
    }
}
