//! Validation of topic config overrides against the key table of `strom-config`, and the
//! (Incremental)AlterConfigs operations on a resource's configs.
//!
//! CreateTopics and (Incremental)AlterConfigs refuse unknown topic keys and values that do not
//! parse, with `INVALID_CONFIG` and a message naming the key (Kafka's wording).

use std::collections::BTreeMap;

use strom_config::{list_elements, ConfigDef, ConfigType};

use crate::error::MetadataError;

/// The definition of a topic configuration key, or `INVALID_CONFIG` naming the unknown key.
pub fn topic_config_def_or_error(name: &str) -> Result<&'static ConfigDef, MetadataError> {
    strom_config::topic_key(name)
        .ok_or_else(|| MetadataError::invalid_config(format!("Unknown topic config name: {name}")))
}

/// Checks that `name` is a topic configuration key and `value` a valid value for it.
pub fn validate_topic_config(name: &str, value: &str) -> Result<(), MetadataError> {
    topic_config_def_or_error(name)?
        .validate(value)
        .map_err(|error| MetadataError::invalid_config(error.to_string()))
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
    list_default(strom_config::topic_key(key)?)
}

/// The default of a broker config key (or of the base key of a per-listener override) if it is a
/// list, where APPEND/SUBTRACT start when the key is not set.
pub(crate) fn broker_list_default(key: &str) -> Option<&'static str> {
    list_default(strom_config::broker_key_or_listener_base(key)?)
}

fn list_default(def: &ConfigDef) -> Option<&'static str> {
    (def.config_type == ConfigType::List).then(|| def.default.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use strom_protocol::ErrorCode;

    const INVALID_CONFIG: i16 = ErrorCode::InvalidConfig.code();

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
        let err = validate_topic_config("retention.ms", "-2").unwrap_err();
        assert_eq!(
            err.message,
            "Invalid value -2 for configuration retention.ms: Value must be at least -1"
        );
        assert_eq!(topic_list_default("cleanup.policy"), Some("delete"));
        assert_eq!(topic_list_default("retention.ms"), None);
        assert_eq!(broker_list_default("log.cleanup.policy"), Some("delete"));
        assert_eq!(
            broker_list_default("listener.name.a.ssl.cipher.suites"),
            Some("")
        );
        assert_eq!(broker_list_default("custom.key"), None);
        let err = validate_topic_config("no.such.key", "1").unwrap_err();
        assert_eq!(err.code, INVALID_CONFIG);
        assert!(err.message.contains("no.such.key"));
    }
}
