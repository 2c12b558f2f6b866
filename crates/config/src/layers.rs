//! Where a key's value comes from: the layers of configuration and the one resolution of a topic
//! key's effective value.
//!
//! A topic key takes the first of: the topic's override (`DYNAMIC_TOPIC_CONFIG`); a broker synonym
//! set dynamically for this broker (`DYNAMIC_BROKER_CONFIG`); one set as the cluster-wide dynamic
//! default (`DYNAMIC_DEFAULT_BROKER_CONFIG`); one in `server.properties` (`STATIC_BROKER_CONFIG`);
//! the default of a broker synonym (`DEFAULT_CONFIG`); the topic key's own default. Within a layer
//! the broker synonyms count in Kafka's order (`log.retention.ms` before `log.retention.minutes`
//! before `log.retention.hours`), and a synonym's value is converted to the topic key's unit.

use std::borrow::Borrow;
use std::collections::BTreeMap;

use crate::def::{list_elements, BrokerSynonym, ConfigDef, ConfigType};
use crate::{broker_key, listener_override, topic_key, topic_keys};

/// Config keys and values of one layer (a topic's overrides, a broker's dynamic configs, ...).
pub type ConfigMap = BTreeMap<String, String>;

/// Where a value comes from (DescribeConfigs' `ConfigSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    DynamicTopic,
    DynamicBroker,
    DynamicDefaultBroker,
    StaticBroker,
    Default,
}

impl ConfigSource {
    /// The `ConfigSource` code of DescribeConfigs responses.
    pub const fn code(self) -> i8 {
        match self {
            ConfigSource::DynamicTopic => 1,
            ConfigSource::DynamicBroker => 2,
            ConfigSource::DynamicDefaultBroker => 3,
            ConfigSource::StaticBroker => 4,
            ConfigSource::Default => 5,
        }
    }
}

/// One place a key's value is set, as DescribeConfigs lists synonyms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSynonym {
    pub name: String,
    /// The value as written in that layer (`None` for a null default).
    pub value: Option<String>,
    pub source: ConfigSource,
}

/// The effective value of a topic key and everything behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct EffectiveValue {
    pub def: &'static ConfigDef,
    /// The value in the topic key's unit.
    pub value: String,
    pub source: ConfigSource,
    /// Where the key is set, highest precedence first.
    pub synonyms: Vec<ConfigSynonym>,
}

/// The configuration layers that apply to a topic on this broker. Missing layers are empty.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConfigLayers<'a> {
    /// The topic's overrides.
    pub topic: Option<&'a ConfigMap>,
    /// Dynamic configs of this broker.
    pub dynamic_broker: Option<&'a ConfigMap>,
    /// Dynamic cluster-wide broker defaults.
    pub dynamic_default: Option<&'a ConfigMap>,
    /// `server.properties` (keys as written).
    pub static_broker: Option<&'a ConfigMap>,
}

/// A value found for a topic key: in which key and layer, and how it converts.
struct Candidate<'a> {
    name: &'a str,
    value: Option<&'a str>,
    source: ConfigSource,
    synonym: Option<&'static BrokerSynonym>,
}

impl Candidate<'_> {
    fn topic_value(&self) -> Option<String> {
        let value = self.value?;
        Some(match self.synonym {
            Some(synonym) => synonym.to_topic_units(value),
            None => value.to_owned(),
        })
    }

    fn into_synonym(self) -> ConfigSynonym {
        ConfigSynonym {
            name: self.name.to_owned(),
            value: self.value.map(str::to_owned),
            source: self.source,
        }
    }
}

impl<'a> ConfigLayers<'a> {
    /// The broker layers, highest precedence first.
    fn broker_layers(&self) -> [(Option<&'a ConfigMap>, ConfigSource); 3] {
        [
            (self.dynamic_broker, ConfigSource::DynamicBroker),
            (self.dynamic_default, ConfigSource::DynamicDefaultBroker),
            (self.static_broker, ConfigSource::StaticBroker),
        ]
    }

    /// Every value set for a topic key, highest precedence first, ending with the defaults of its
    /// broker synonyms.
    fn topic_candidates(&self, def: &'static ConfigDef) -> impl Iterator<Item = Candidate<'a>> {
        let topic = self
            .topic
            .and_then(|overrides| overrides.get(def.name))
            .map(|value| Candidate {
                name: def.name,
                value: Some(value.as_str()),
                source: ConfigSource::DynamicTopic,
                synonym: None,
            });
        let brokers = self
            .broker_layers()
            .into_iter()
            .flat_map(move |(layer, source)| {
                def.broker_synonyms.iter().filter_map(move |synonym| {
                    let value = layer?.get(synonym.name)?;
                    Some(Candidate {
                        name: synonym.name,
                        value: Some(value.as_str()),
                        source,
                        synonym: Some(synonym),
                    })
                })
            });
        let defaults = def.broker_synonyms.iter().filter_map(|synonym| {
            let default = broker_key(synonym.name)?.default?;
            Some(Candidate {
                name: synonym.name,
                value: Some(default),
                source: ConfigSource::Default,
                synonym: Some(synonym),
            })
        });
        topic.into_iter().chain(brokers).chain(defaults)
    }

    /// The effective value of a topic key and its source, or `None` if `name` is not a topic key.
    pub fn topic_value(&self, name: &str) -> Option<(String, ConfigSource)> {
        let def = topic_key(name)?;
        Some(resolve(def, self.topic_candidates(def)))
    }

    /// The effective value of a topic key with its synonyms.
    pub fn topic_config(&self, def: &'static ConfigDef) -> EffectiveValue {
        let candidates: Vec<Candidate<'a>> = self.topic_candidates(def).collect();
        let (value, source) = resolve(def, &candidates);
        EffectiveValue {
            def,
            value,
            source,
            synonyms: candidates
                .into_iter()
                .map(Candidate::into_synonym)
                .collect(),
        }
    }

    /// Every topic key's effective value, in name order.
    pub fn topic_configs(&self) -> Vec<EffectiveValue> {
        topic_keys().map(|def| self.topic_config(def)).collect()
    }

    /// A broker key's value as set in the broker layers (exact name), with its source.
    pub fn broker_value(&self, name: &str) -> Option<(&'a str, ConfigSource)> {
        self.broker_layers()
            .into_iter()
            .find_map(|(layer, source)| {
                let value = layer?.get(name)?;
                Some((value.as_str(), source))
            })
    }

    /// Where a broker key is set, as Kafka lists its synonyms: every key of its synonym group
    /// (`log.roll.ms`, `log.roll.hours`; a listener override and its base key) in each layer, then
    /// their defaults, starting at the first entry of the key itself.
    pub fn broker_synonyms(&self, name: &str) -> Vec<ConfigSynonym> {
        let group = broker_synonym_group(name);
        let mut synonyms: Vec<ConfigSynonym> = Vec::new();
        for (layer, source) in self.broker_layers() {
            for key in &group {
                if let Some(value) = layer.and_then(|layer| layer.get(*key)) {
                    synonyms.push(ConfigSynonym {
                        name: (*key).to_owned(),
                        value: Some(value.clone()),
                        source,
                    });
                }
            }
        }
        for key in &group {
            // A listener override has no default of its own; its base key has.
            if let Some(default) = broker_key(key).and_then(|def| def.default) {
                synonyms.push(ConfigSynonym {
                    name: (*key).to_owned(),
                    value: Some(default.to_owned()),
                    source: ConfigSource::Default,
                });
            }
        }
        let first_own = synonyms
            .iter()
            .position(|synonym| synonym.name == name)
            .unwrap_or(synonyms.len());
        synonyms.split_off(first_own)
    }
}

/// The value of the first candidate in the topic key's unit (a list as `a,b`, the way Kafka
/// prints it), else the topic key's own default.
fn resolve<'c, C: Borrow<Candidate<'c>>>(
    def: &ConfigDef,
    candidates: impl IntoIterator<Item = C>,
) -> (String, ConfigSource) {
    let (value, source) = candidates
        .into_iter()
        .find_map(|candidate| {
            let candidate = candidate.borrow();
            Some((candidate.topic_value()?, candidate.source))
        })
        .unwrap_or_else(|| {
            (
                def.default.unwrap_or_default().to_owned(),
                ConfigSource::Default,
            )
        });
    if def.config_type == ConfigType::List {
        (list_elements(&value).collect::<Vec<_>>().join(","), source)
    } else {
        (value, source)
    }
}

/// The broker keys that set the same thing as `name`, in Kafka's order of precedence: the broker
/// synonyms of a topic key when it has several (`log.retention.ms`, `.minutes`, `.hours`), a
/// listener override and its base key, or `name` alone.
fn broker_synonym_group(name: &str) -> Vec<&str> {
    if let Some(listener) = listener_override(name) {
        return vec![name, listener.base];
    }
    topic_keys()
        .map(|def| def.broker_synonyms)
        .find(|synonyms| synonyms.len() > 1 && synonyms.iter().any(|s| s.name == name))
        .map_or_else(
            || vec![name],
            |synonyms| synonyms.iter().map(|s| s.name).collect(),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(&str, &str)]) -> ConfigMap {
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn sources(synonyms: &[ConfigSynonym]) -> Vec<(&str, ConfigSource)> {
        synonyms
            .iter()
            .map(|s| (s.name.as_str(), s.source))
            .collect()
    }

    #[test]
    fn topic_value_follows_the_layers_in_order() {
        let topic = map(&[("min.insync.replicas", "3")]);
        let broker = map(&[("min.insync.replicas", "2")]);
        let default = map(&[("min.insync.replicas", "4"), ("log.retention.ms", "10")]);
        let server = map(&[
            ("log.retention.hours", "1"),
            ("log.segment.bytes", "2048"),
            ("log.cleanup.policy", " compact , delete"),
        ]);
        let mut layers = ConfigLayers {
            topic: Some(&topic),
            dynamic_broker: Some(&broker),
            dynamic_default: Some(&default),
            static_broker: Some(&server),
        };
        let value = |layers: &ConfigLayers<'_>, key| layers.topic_value(key).expect("topic key");
        assert_eq!(
            value(&layers, "min.insync.replicas"),
            ("3".into(), ConfigSource::DynamicTopic)
        );
        layers.topic = None;
        assert_eq!(
            value(&layers, "min.insync.replicas"),
            ("2".into(), ConfigSource::DynamicBroker)
        );
        layers.dynamic_broker = None;
        assert_eq!(
            value(&layers, "min.insync.replicas"),
            ("4".into(), ConfigSource::DynamicDefaultBroker)
        );
        assert_eq!(
            value(&layers, "retention.ms"),
            ("10".into(), ConfigSource::DynamicDefaultBroker)
        );
        layers.dynamic_default = None;
        assert_eq!(
            value(&layers, "retention.ms"),
            ("3600000".into(), ConfigSource::StaticBroker)
        );
        assert_eq!(
            value(&layers, "segment.bytes"),
            ("2048".into(), ConfigSource::StaticBroker)
        );
        assert_eq!(
            value(&layers, "cleanup.policy"),
            ("compact,delete".into(), ConfigSource::StaticBroker)
        );
        layers.static_broker = None;
        assert_eq!(
            value(&layers, "retention.ms"),
            ("604800000".into(), ConfigSource::Default)
        );
        assert_eq!(
            value(&layers, "leader.replication.throttled.replicas"),
            (String::new(), ConfigSource::Default)
        );
        assert_eq!(layers.topic_value("log.retention.ms"), None);
    }

    #[test]
    fn every_topic_key_resolves_through_the_same_layers() {
        // For each topic key with a dynamic broker synonym: the static value loses to the cluster
        // default, which loses to the per-broker value, which loses to the topic override.
        for def in topic_keys().filter(|def| !def.broker_synonyms.is_empty()) {
            let primary = def.broker_synonyms[0].name;
            let Some(valid) = def.default else { continue };
            let server = map(&[(primary, valid)]);
            let default = map(&[(primary, valid)]);
            let broker = map(&[(primary, valid)]);
            let topic = map(&[(def.name, valid)]);
            let mut layers = ConfigLayers {
                static_broker: Some(&server),
                ..ConfigLayers::default()
            };
            let source = |layers: &ConfigLayers<'_>| layers.topic_config(def).source;
            assert_eq!(source(&layers), ConfigSource::StaticBroker, "{}", def.name);
            layers.dynamic_default = Some(&default);
            assert_eq!(
                source(&layers),
                ConfigSource::DynamicDefaultBroker,
                "{}",
                def.name
            );
            layers.dynamic_broker = Some(&broker);
            assert_eq!(source(&layers), ConfigSource::DynamicBroker, "{}", def.name);
            layers.topic = Some(&topic);
            let effective = layers.topic_config(def);
            assert_eq!(effective.source, ConfigSource::DynamicTopic, "{}", def.name);
            assert_eq!(effective.value, valid, "{}", def.name);
            assert_eq!(
                layers.topic_value(def.name),
                Some((effective.value.clone(), effective.source))
            );
        }
    }

    #[test]
    fn topic_synonyms_are_layer_major_with_defaults_last() {
        let default = map(&[("log.retention.hours", "2")]);
        let server = map(&[("log.retention.ms", "5"), ("log.retention.minutes", "1")]);
        let layers = ConfigLayers {
            dynamic_default: Some(&default),
            static_broker: Some(&server),
            ..ConfigLayers::default()
        };
        let retention = layers.topic_config(topic_key("retention.ms").expect("key"));
        assert_eq!(retention.value, "7200000");
        assert_eq!(
            sources(&retention.synonyms),
            [
                ("log.retention.hours", ConfigSource::DynamicDefaultBroker),
                ("log.retention.ms", ConfigSource::StaticBroker),
                ("log.retention.minutes", ConfigSource::StaticBroker),
                ("log.retention.hours", ConfigSource::Default),
            ]
        );
        let negative = map(&[("log.retention.minutes", "-3")]);
        let layers = ConfigLayers {
            static_broker: Some(&negative),
            ..ConfigLayers::default()
        };
        assert_eq!(
            layers.topic_value("retention.ms"),
            Some(("-1".into(), ConfigSource::StaticBroker))
        );
    }

    #[test]
    fn broker_synonyms_start_at_the_key_itself() {
        let dynamic = map(&[("log.retention.ms", "5")]);
        let server = map(&[
            ("log.retention.hours", "3"),
            ("listener.name.x.ssl.keystore.type", "PKCS12"),
        ]);
        let layers = ConfigLayers {
            dynamic_broker: Some(&dynamic),
            static_broker: Some(&server),
            ..ConfigLayers::default()
        };
        assert_eq!(
            sources(&layers.broker_synonyms("log.retention.ms")),
            [
                ("log.retention.ms", ConfigSource::DynamicBroker),
                ("log.retention.hours", ConfigSource::StaticBroker),
                ("log.retention.hours", ConfigSource::Default),
            ]
        );
        assert_eq!(
            sources(&layers.broker_synonyms("log.retention.hours")),
            [
                ("log.retention.hours", ConfigSource::StaticBroker),
                ("log.retention.hours", ConfigSource::Default),
            ]
        );
        assert_eq!(
            sources(&layers.broker_synonyms("listener.name.x.ssl.keystore.type")),
            [
                (
                    "listener.name.x.ssl.keystore.type",
                    ConfigSource::StaticBroker
                ),
                ("ssl.keystore.type", ConfigSource::Default),
            ]
        );
        assert_eq!(
            layers.broker_value("log.retention.ms"),
            Some(("5", ConfigSource::DynamicBroker))
        );
        assert_eq!(layers.broker_value("num.partitions"), None);
        assert_eq!(
            sources(&layers.broker_synonyms("num.partitions")),
            [("num.partitions", ConfigSource::Default)]
        );
    }
}
