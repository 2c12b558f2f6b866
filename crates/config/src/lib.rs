//! `strom-config`: one definition per Kafka configuration key, and the rules built on it.
//!
//! [`KEYS`] defines each key once: its name, type (as DescribeConfigs reports it), default,
//! validation rule, whether it is a topic key, whether it is a broker key and how a broker may
//! change it at run time (read-only, per broker, cluster-wide, per listener), whether it is
//! sensitive (passwords), and for a topic key the broker keys behind its default in Kafka's order
//! of precedence (`retention.ms` <- `log.retention.ms`, `log.retention.minutes`,
//! `log.retention.hours`). Everything that reads configuration goes through it:
//!
//! - parsing: `server.properties` (the broker's `BrokerConfig`) and topic overrides (the storage
//!   crate's `LogConfig`) check values with [`ConfigDef::validate`] and friends;
//! - validation: CreateTopics and (Incremental)AlterConfigs refuse unknown topic keys and invalid
//!   values; [`dynamic::check_dynamic_broker_configs`] decides which broker keys may change at run
//!   time, per broker or cluster-wide, with Kafka's errors;
//! - DescribeConfigs: values, sources, synonyms, types, read-only and sensitive flags;
//! - enforcement: [`ConfigLayers`] is the single place where the effective value of a topic key is
//!   resolved (static broker config < dynamic cluster default < dynamic per-broker config < topic
//!   override); the partition logs' `LogConfig`, Produce's `min.insync.replicas` check and
//!   DescribeConfigs all read it, so what DescribeConfigs reports is what is enforced.
//!
//! It is a crate of its own because its users sit side by side: storage (log settings), metadata
//! (validation of topic configs) and the broker (everything else) all depend on it, and it depends
//! on none of them.

mod def;
pub mod dynamic;
mod keys;
mod layers;

pub use def::{
    list_elements, BrokerScope, BrokerSynonym, ConfigDef, ConfigType, Conversion, InvalidValue,
    Validator, UNKNOWN_TYPE_CODE,
};
pub use keys::{KEYS, SECURITY_PROTOCOLS};
pub use layers::{ConfigLayers, ConfigMap, ConfigSource, ConfigSynonym, EffectiveValue};

/// The definition of a key, by exact name.
pub fn find(name: &str) -> Option<&'static ConfigDef> {
    keys::BY_NAME.get(name).copied()
}

/// The definition of a topic key.
pub fn topic_key(name: &str) -> Option<&'static ConfigDef> {
    find(name).filter(|def| def.is_topic_key)
}

/// The definition of a broker key (static or dynamic), by exact name.
pub fn broker_key(name: &str) -> Option<&'static ConfigDef> {
    find(name).filter(|def| def.is_broker_key())
}

/// Every key, in name order.
pub fn all_keys() -> impl Iterator<Item = &'static ConfigDef> {
    keys::BY_NAME.values().copied()
}

/// Every topic key, in name order.
pub fn topic_keys() -> impl Iterator<Item = &'static ConfigDef> {
    all_keys().filter(|def| def.is_topic_key)
}

/// Every broker key, in name order.
pub fn broker_keys() -> impl Iterator<Item = &'static ConfigDef> {
    all_keys().filter(|def| def.is_broker_key())
}

/// A broker key set for one listener: `listener.name.<listener>.<base>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerOverride<'a> {
    pub listener: &'a str,
    pub base: &'a str,
}

/// Splits `listener.name.<listener>.<base>` (the listener name holds no dot), as Kafka's
/// `ListenerConfigRegex` does.
pub fn listener_override(name: &str) -> Option<ListenerOverride<'_>> {
    let rest = name.strip_prefix("listener.name.")?;
    let (listener, base) = rest.split_once('.')?;
    Some(ListenerOverride { listener, base })
}

/// The definition behind a broker key as written: the key itself, or for a per-listener
/// override the base key it overrides (Kafka validates and types it as the base key).
pub fn broker_key_or_listener_base(name: &str) -> Option<&'static ConfigDef> {
    broker_key(name).or_else(|| broker_key(listener_override(name)?.base))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_defaults_valid() {
        assert_eq!(keys::BY_NAME.len(), KEYS.len(), "a key is defined twice");
        for def in KEYS {
            if let Some(default) = def.default {
                def.validate(default)
                    .unwrap_or_else(|e| panic!("default of {}: {e}", def.name));
            }
        }
    }

    #[test]
    fn topic_synonyms_are_broker_keys_and_first_ones_dynamic() {
        for def in topic_keys() {
            for (index, synonym) in def.broker_synonyms.iter().enumerate() {
                let broker = broker_key(synonym.name)
                    .unwrap_or_else(|| panic!("{} is not a broker key", synonym.name));
                assert_eq!(
                    broker.config_type == ConfigType::List,
                    def.config_type == ConfigType::List,
                    "{}",
                    synonym.name
                );
                // Kafka's DynamicLogConfig: the first synonym of each topic key is dynamic
                // (except log.message.format.version), the others are not.
                let dynamic = index == 0 && def.name != "message.format.version";
                assert_eq!(broker.is_dynamic(), dynamic, "{}", synonym.name);
                assert_eq!(
                    broker.broker_scope == BrokerScope::ClusterWide,
                    dynamic,
                    "{}",
                    synonym.name
                );
            }
        }
        let retention = topic_key("retention.ms").expect("retention.ms");
        let names: Vec<&str> = retention.broker_synonyms.iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "log.retention.ms",
                "log.retention.minutes",
                "log.retention.hours"
            ]
        );
    }

    #[test]
    fn lookups() {
        assert!(topic_key("retention.ms").is_some());
        assert!(topic_key("log.retention.ms").is_none());
        assert!(broker_key("log.retention.ms").is_some());
        assert!(broker_key("retention.ms").is_none());
        let both = find("min.insync.replicas").expect("min.insync.replicas");
        assert!(both.is_topic_key && both.is_broker_key());
        assert!(find("ssl.keystore.password").is_some_and(ConfigDef::is_sensitive));
        let names: Vec<&str> = all_keys().map(|def| def.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        assert_eq!(topic_keys().count(), 34);
    }

    #[test]
    fn listener_overrides() {
        assert_eq!(
            listener_override("listener.name.external.ssl.keystore.location"),
            Some(ListenerOverride {
                listener: "external",
                base: "ssl.keystore.location"
            })
        );
        assert_eq!(listener_override("listener.name.x"), None);
        assert_eq!(listener_override("ssl.keystore.location"), None);
        assert_eq!(
            broker_key_or_listener_base("listener.name.a.max.connections").map(|d| d.name),
            Some("max.connections")
        );
        assert!(broker_key_or_listener_base("listener.name.a.no.such.key").is_none());
    }
}
