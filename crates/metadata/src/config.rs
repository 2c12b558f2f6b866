//! Topic configuration keys Kafka knows, their defaults and types, and validation of override values.
//!
//! DescribeConfigs reports every key of [`TOPIC_CONFIG_DEFAULTS`] with its default unless the topic
//! has an override; CreateTopics and (Incremental)AlterConfigs refuse unknown keys and values that do
//! not parse, with `INVALID_CONFIG` and a message naming the key (Kafka's wording).

use std::collections::BTreeMap;

use crate::error::MetadataError;

/// A configuration value's type, as DescribeConfigs (v3+) reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean,
    String,
    Int,
    Long,
    Double,
    List,
}

impl ConfigType {
    /// The `ConfigType` code of DescribeConfigs responses (Kafka's `ConfigDef.Type` ids).
    pub fn describe_code(self) -> i8 {
        match self {
            ConfigType::Boolean => 1,
            ConfigType::String => 2,
            ConfigType::Int => 3,
            ConfigType::Long => 5,
            ConfigType::Double => 6,
            ConfigType::List => 7,
        }
    }

    fn kafka_name(self) -> &'static str {
        match self {
            ConfigType::Boolean => "BOOLEAN",
            ConfigType::String => "STRING",
            ConfigType::Int => "INT",
            ConfigType::Long => "LONG",
            ConfigType::Double => "DOUBLE",
            ConfigType::List => "LIST",
        }
    }
}

/// Which values beyond the type's syntax a key accepts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRule {
    Any,
    /// Numeric, at least this.
    AtLeast(i64),
    /// Numeric, within these bounds (inclusive).
    Between(f64, f64),
    /// One of these strings (for lists: every element is one of them).
    OneOf(&'static [&'static str]),
}

/// One topic configuration key: its Kafka default (as a string), type and accepted values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TopicConfigDef {
    pub name: &'static str,
    pub default: &'static str,
    pub config_type: ConfigType,
    pub rule: ValueRule,
}

const fn def(
    name: &'static str,
    default: &'static str,
    config_type: ConfigType,
    rule: ValueRule,
) -> TopicConfigDef {
    TopicConfigDef {
        name,
        default,
        config_type,
        rule,
    }
}

use ConfigType::{Boolean, Double, Int, List, Long};
use ValueRule::{Any, AtLeast, Between, OneOf};

const LONG_MAX: &str = "9223372036854775807";

/// Every topic-level configuration key of Kafka (3.x), sorted by name, with Kafka's default value.
pub const TOPIC_CONFIG_DEFAULTS: &[TopicConfigDef] = &[
    def(
        "cleanup.policy",
        "delete",
        List,
        OneOf(&["delete", "compact"]),
    ),
    def("compression.gzip.level", "-1", Int, Any),
    def("compression.lz4.level", "9", Int, Between(1.0, 17.0)),
    def(
        "compression.type",
        "producer",
        ConfigType::String,
        OneOf(&["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]),
    ),
    def("compression.zstd.level", "3", Int, Between(-131072.0, 22.0)),
    def("delete.retention.ms", "86400000", Long, AtLeast(0)),
    def("file.delete.delay.ms", "60000", Long, AtLeast(0)),
    def("flush.messages", LONG_MAX, Long, AtLeast(1)),
    def("flush.ms", LONG_MAX, Long, AtLeast(0)),
    def("follower.replication.throttled.replicas", "", List, Any),
    def("index.interval.bytes", "4096", Int, AtLeast(0)),
    def("leader.replication.throttled.replicas", "", List, Any),
    def("local.retention.bytes", "-2", Long, AtLeast(-2)),
    def("local.retention.ms", "-2", Long, AtLeast(-2)),
    def("max.compaction.lag.ms", LONG_MAX, Long, AtLeast(1)),
    def("max.message.bytes", "1048588", Int, AtLeast(0)),
    def("message.downconversion.enable", "true", Boolean, Any),
    def("message.format.version", "3.0-IV1", ConfigType::String, Any),
    def("message.timestamp.after.max.ms", LONG_MAX, Long, AtLeast(0)),
    def(
        "message.timestamp.before.max.ms",
        LONG_MAX,
        Long,
        AtLeast(0),
    ),
    def(
        "message.timestamp.difference.max.ms",
        LONG_MAX,
        Long,
        AtLeast(0),
    ),
    def(
        "message.timestamp.type",
        "CreateTime",
        ConfigType::String,
        OneOf(&["CreateTime", "LogAppendTime"]),
    ),
    def(
        "min.cleanable.dirty.ratio",
        "0.5",
        Double,
        Between(0.0, 1.0),
    ),
    def("min.compaction.lag.ms", "0", Long, AtLeast(0)),
    def("min.insync.replicas", "1", Int, AtLeast(1)),
    def("preallocate", "false", Boolean, Any),
    def("remote.storage.enable", "false", Boolean, Any),
    def("retention.bytes", "-1", Long, Any),
    def("retention.ms", "604800000", Long, AtLeast(-1)),
    def("segment.bytes", "1073741824", Int, AtLeast(14)),
    def("segment.index.bytes", "10485760", Int, AtLeast(4)),
    def("segment.jitter.ms", "0", Long, AtLeast(0)),
    def("segment.ms", "604800000", Long, AtLeast(1)),
    def("unclean.leader.election.enable", "false", Boolean, Any),
];

/// The definition of a topic configuration key, if Kafka knows it.
pub fn topic_config_def(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIG_DEFAULTS.iter().find(|def| def.name == name)
}

/// The definition of a topic configuration key, or `INVALID_CONFIG` naming the unknown key.
pub fn topic_config_def_or_error(name: &str) -> Result<&'static TopicConfigDef, MetadataError> {
    topic_config_def(name)
        .ok_or_else(|| MetadataError::invalid_config(format!("Unknown topic config name: {name}")))
}

/// Checks that `name` is a topic configuration key and `value` a valid value for it.
pub fn validate_topic_config(name: &str, value: &str) -> Result<(), MetadataError> {
    validate_value(topic_config_def_or_error(name)?, value)
}

fn validate_value(def: &TopicConfigDef, value: &str) -> Result<(), MetadataError> {
    let invalid = |why: String| {
        MetadataError::invalid_config(format!(
            "Invalid value {value} for configuration {}: {why}",
            def.name
        ))
    };
    let trimmed = value.trim();
    let number: Option<f64> = match def.config_type {
        ConfigType::Boolean => {
            if !trimmed.eq_ignore_ascii_case("true") && !trimmed.eq_ignore_ascii_case("false") {
                return Err(invalid("Expected value to be either true or false".into()));
            }
            None
        }
        ConfigType::Int => Some(
            trimmed
                .parse::<i32>()
                .map_err(|_| {
                    invalid(format!(
                        "Not a number of type {}",
                        def.config_type.kafka_name()
                    ))
                })?
                .into(),
        ),
        ConfigType::Long => Some(trimmed.parse::<i64>().map_err(|_| {
            invalid(format!(
                "Not a number of type {}",
                def.config_type.kafka_name()
            ))
        })? as f64),
        ConfigType::Double => Some(
            trimmed
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| {
                    invalid(format!(
                        "Not a number of type {}",
                        def.config_type.kafka_name()
                    ))
                })?,
        ),
        ConfigType::String | ConfigType::List => None,
    };
    match (def.rule, number) {
        (AtLeast(min), Some(n)) if n < min as f64 => {
            Err(invalid(format!("Value must be at least {min}")))
        }
        (Between(min, max), Some(n)) if n < min || n > max => Err(invalid(format!(
            "Value must be no less than {min} and no more than {max}"
        ))),
        (OneOf(allowed), _) => {
            let elements: Vec<&str> = if def.config_type == List {
                list_elements(value).collect()
            } else {
                vec![value]
            };
            match elements.iter().find(|e| !allowed.contains(e)) {
                Some(bad) if def.config_type == List => Err(invalid(format!(
                    "String must be one of: {} (found {bad})",
                    allowed.join(", ")
                ))),
                Some(_) => Err(invalid(format!(
                    "String must be one of: {}",
                    allowed.join(", ")
                ))),
                None => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

/// The elements of a comma-separated list value, trimmed, without empty ones.
pub fn list_elements(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|e| !e.is_empty())
}

/// What an (Incremental)AlterConfigs operation does to one key (Kafka's `AlterConfigOp.OpType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigOpType {
    Set,
    Delete,
    /// Adds elements to a list value (starting from the default if not overridden).
    Append,
    /// Removes elements from a list value.
    Subtract,
}

impl ConfigOpType {
    /// From the wire code of IncrementalAlterConfigs (0 set, 1 delete, 2 append, 3 subtract).
    pub fn from_code(code: i8) -> Option<Self> {
        match code {
            0 => Some(ConfigOpType::Set),
            1 => Some(ConfigOpType::Delete),
            2 => Some(ConfigOpType::Append),
            3 => Some(ConfigOpType::Subtract),
            _ => None,
        }
    }

    fn kafka_name(self) -> &'static str {
        match self {
            ConfigOpType::Set => "SET",
            ConfigOpType::Delete => "DELETE",
            ConfigOpType::Append => "APPEND",
            ConfigOpType::Subtract => "SUBTRACT",
        }
    }
}

/// One config change of an IncrementalAlterConfigs request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigOp {
    pub key: String,
    pub value: Option<String>,
    pub op: ConfigOpType,
}

impl ConfigOp {
    pub fn set(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: Some(value.into()),
            op: ConfigOpType::Set,
        }
    }

    pub fn delete(key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: None,
            op: ConfigOpType::Delete,
        }
    }
}

/// Applies `ops` to the overrides `current` and returns the resulting overrides.
///
/// `list_default_of` gives a list key's default (where APPEND/SUBTRACT start when the key has no
/// override), or `None` when the key is not a list and cannot be appended to or subtracted from.
pub(crate) fn apply_config_ops(
    current: &BTreeMap<String, String>,
    ops: &[ConfigOp],
    list_default_of: impl Fn(&str) -> Option<&'static str>,
) -> Result<BTreeMap<String, String>, MetadataError> {
    let mut configs = current.clone();
    for op in ops {
        match (op.op, &op.value) {
            (ConfigOpType::Set, Some(value)) => {
                configs.insert(op.key.clone(), value.clone());
            }
            (ConfigOpType::Set, None) | (ConfigOpType::Delete, _) => {
                configs.remove(&op.key);
            }
            (ConfigOpType::Append | ConfigOpType::Subtract, value) => {
                let default = list_default_of(&op.key).ok_or_else(|| {
                    MetadataError::invalid_config(format!(
                        "Can't {} to key {} because its type is not LIST.",
                        op.op.kafka_name(),
                        op.key
                    ))
                })?;
                let base = configs.get(&op.key).map_or(default, String::as_str);
                let mut elements: Vec<String> = list_elements(base).map(str::to_owned).collect();
                let changes = value.as_deref().map(list_elements).into_iter().flatten();
                for change in changes {
                    let present = elements.iter().any(|e| e == change);
                    if op.op == ConfigOpType::Append && !present {
                        elements.push(change.to_owned());
                    } else if op.op == ConfigOpType::Subtract {
                        elements.retain(|e| e != change);
                    }
                }
                configs.insert(op.key.clone(), elements.join(","));
            }
        }
    }
    Ok(configs)
}

/// The default of a topic config key if it is a list (APPEND/SUBTRACT apply to lists only).
pub(crate) fn topic_list_default(key: &str) -> Option<&'static str> {
    topic_config_def(key)
        .filter(|def| def.config_type == List)
        .map(|def| def.default)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::codes::INVALID_CONFIG;

    #[test]
    fn definitions_are_sorted_and_defaults_valid() {
        for pair in TOPIC_CONFIG_DEFAULTS.windows(2) {
            assert!(pair[0].name < pair[1].name, "{} out of order", pair[1].name);
        }
        for def in TOPIC_CONFIG_DEFAULTS {
            if def.default.is_empty() && def.config_type == List {
                continue;
            }
            validate_value(def, def.default).unwrap_or_else(|e| panic!("{}: {e}", def.name));
        }
    }

    #[test]
    fn validates_values() {
        assert!(validate_topic_config("retention.ms", "1000").is_ok());
        assert!(validate_topic_config("retention.ms", "-1").is_ok());
        let err = validate_topic_config("retention.ms", "soon").unwrap_err();
        assert_eq!(err.code, INVALID_CONFIG);
        assert!(err.message.contains("retention.ms"));
        assert!(validate_topic_config("cleanup.policy", "compact,delete").is_ok());
        assert!(validate_topic_config("cleanup.policy", "compact").is_ok());
        assert!(validate_topic_config("cleanup.policy", "shred").is_err());
        assert!(validate_topic_config("min.cleanable.dirty.ratio", "1.5").is_err());
        assert!(validate_topic_config("preallocate", "yes").is_err());
        assert!(validate_topic_config("segment.bytes", "99999999999").is_err());
        let err = validate_topic_config("no.such.key", "1").unwrap_err();
        assert_eq!(err.code, INVALID_CONFIG);
        assert!(err.message.contains("no.such.key"));
    }
}
