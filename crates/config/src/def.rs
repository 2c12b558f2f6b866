//! What a configuration key is ([`ConfigDef`]: type, default, validation, whether it is a topic
//! key, a broker key and how a broker may update it) and the checking and parsing of values
//! against it, with Kafka's error wording (`Invalid value x for configuration k: reason`).

/// A value's type, as Kafka's `ConfigDef.Type` and DescribeConfigs (v3+) name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean,
    String,
    Int,
    Short,
    Long,
    Double,
    List,
    Class,
    Password,
}

/// DescribeConfigs' type code for a key whose type is unknown (a custom key).
pub const UNKNOWN_TYPE_CODE: i8 = 0;

impl ConfigType {
    /// The `ConfigType` code of DescribeConfigs responses.
    pub const fn describe_code(self) -> i8 {
        match self {
            ConfigType::Boolean => 1,
            ConfigType::String => 2,
            ConfigType::Int => 3,
            ConfigType::Short => 4,
            ConfigType::Long => 5,
            ConfigType::Double => 6,
            ConfigType::List => 7,
            ConfigType::Class => 8,
            ConfigType::Password => 9,
        }
    }

    /// Kafka's name of the type, as it appears in error messages.
    pub const fn kafka_name(self) -> &'static str {
        match self {
            ConfigType::Boolean => "BOOLEAN",
            ConfigType::String => "STRING",
            ConfigType::Int => "INT",
            ConfigType::Short => "SHORT",
            ConfigType::Long => "LONG",
            ConfigType::Double => "DOUBLE",
            ConfigType::List => "LIST",
            ConfigType::Class => "CLASS",
            ConfigType::Password => "PASSWORD",
        }
    }
}

/// Which values beyond the type's syntax a key accepts (Kafka's validators).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Validator {
    Any,
    /// Numeric, at least this (`atLeast`).
    AtLeast(i64),
    /// Numeric, within these bounds, inclusive (`between`).
    Between(f64, f64),
    /// Numeric, within `min..=max` or exactly `or` (the gzip level: 1..=9 or -1).
    BetweenOr {
        min: i64,
        max: i64,
        or: i64,
    },
    /// One of these strings; for a list, every element is (`ValidString.in`, `ValidList.in`).
    OneOf(&'static [&'static str]),
}

/// How a broker key may be changed at run time (Kafka's `DynamicBrokerConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerScope {
    /// Not a broker key (a topic-only key).
    NotBroker,
    /// Set in `server.properties` only; DescribeConfigs reports it read-only and AlterConfigs
    /// refuses it ("Cannot update these configs dynamically").
    ReadOnly,
    /// Dynamic for one broker (resource name = broker id), not as the cluster-wide default.
    PerBroker,
    /// Dynamic per broker and as the cluster-wide default (resource name "").
    ClusterWide,
    /// Dynamic only per listener (`listener.name.<listener>.<key>`) of one broker: the SSL key
    /// and trust stores.
    PerListener,
}

/// How a broker synonym's value converts to its topic key's unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    /// Same unit.
    AsIs,
    /// Minutes to milliseconds (`log.retention.minutes`).
    MinutesToMs,
    /// Hours to milliseconds (`log.retention.hours`, `log.roll.hours`).
    HoursToMs,
}

/// A broker key that sets the default of a topic key (Kafka's `ServerTopicConfigSynonyms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerSynonym {
    pub name: &'static str,
    pub conversion: Conversion,
    /// A negative value means "unlimited" and becomes -1 (the `log.retention.*` rule).
    pub negative_is_unlimited: bool,
}

impl BrokerSynonym {
    /// `value` of this broker key in the unit of the topic key; values that are not numbers are
    /// returned as they are.
    pub fn to_topic_units(&self, value: &str) -> String {
        let factor: i64 = match self.conversion {
            Conversion::AsIs if !self.negative_is_unlimited => return value.to_owned(),
            Conversion::AsIs => 1,
            Conversion::MinutesToMs => 60_000,
            Conversion::HoursToMs => 3_600_000,
        };
        match value.trim().parse::<i64>() {
            Ok(number) if number < 0 && self.negative_is_unlimited => "-1".to_owned(),
            Ok(number) => number.saturating_mul(factor).to_string(),
            Err(_) => value.to_owned(),
        }
    }
}

/// One configuration key. See the crate documentation and [`crate::KEYS`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConfigDef {
    pub name: &'static str,
    pub config_type: ConfigType,
    /// The default value as Strom runs with it (Kafka's, except where the table says otherwise);
    /// `None` is Kafka's null default.
    pub default: Option<&'static str>,
    pub validator: Validator,
    /// A topic-level key (settable per topic).
    pub is_topic_key: bool,
    /// Whether and how this is a broker key.
    pub broker_scope: BrokerScope,
    /// May also be set for one listener as `listener.name.<listener>.<key>` (Kafka's listener
    /// configs); such an override is cluster-wide if the key is [`BrokerScope::ClusterWide`].
    pub per_listener: bool,
    /// A thread pool size that a dynamic update may change to at least half and at most double
    /// the size in effect (Kafka's `DynamicThreadPool` rule).
    pub thread_pool: bool,
    /// For a topic key: the broker keys that set its default, in Kafka's order of precedence.
    pub broker_synonyms: &'static [BrokerSynonym],
}

/// A value that a key does not accept, worded like Kafka's `ConfigException`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid value {value} for configuration {key}: {reason}")]
pub struct InvalidValue {
    pub key: String,
    pub value: String,
    pub reason: String,
}

impl InvalidValue {
    pub fn new(key: &str, value: &str, reason: impl Into<String>) -> Self {
        Self {
            key: key.to_owned(),
            value: value.to_owned(),
            reason: reason.into(),
        }
    }
}

/// The elements of a comma-separated list value, trimmed, without empty ones (Kafka's LIST).
pub fn list_elements(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|e| !e.is_empty())
}

impl ConfigDef {
    /// Whether this is a broker key (static or dynamic).
    pub const fn is_broker_key(&self) -> bool {
        !matches!(self.broker_scope, BrokerScope::NotBroker)
    }

    /// Whether a broker may change this key at run time (in any scope).
    pub const fn is_dynamic(&self) -> bool {
        matches!(
            self.broker_scope,
            BrokerScope::PerBroker | BrokerScope::ClusterWide | BrokerScope::PerListener
        )
    }

    /// Whether DescribeConfigs reports this broker key read-only (it is not dynamic).
    pub const fn is_read_only(&self) -> bool {
        !self.is_dynamic()
    }

    /// Whether the value is secret: DescribeConfigs reports it as null, flagged sensitive.
    pub const fn is_sensitive(&self) -> bool {
        matches!(self.config_type, ConfigType::Password)
    }

    /// Checks `value` against the key's type and validator.
    pub fn validate(&self, value: &str) -> Result<(), InvalidValue> {
        let number = self.parse_number(value)?;
        let invalid =
            |shown: &str, reason: String| Err(InvalidValue::new(self.name, shown, reason));
        match (self.validator, number) {
            (Validator::AtLeast(min), Some(n)) if n < min as f64 => {
                invalid(value.trim(), format!("Value must be at least {min}"))
            }
            (Validator::Between(min, _), Some(n)) if n < min => {
                invalid(value.trim(), format!("Value must be at least {min}"))
            }
            (Validator::Between(_, max), Some(n)) if n > max => {
                invalid(value.trim(), format!("Value must be no more than {max}"))
            }
            (Validator::BetweenOr { min, max, or }, Some(n))
                if n != or as f64 && (n < min as f64 || n > max as f64) =>
            {
                invalid(
                    value.trim(),
                    format!("Value must be between {min} and {max} or equal to {or}"),
                )
            }
            (Validator::OneOf(allowed), _) => {
                let reason = format!("String must be one of: {}", allowed.join(", "));
                if self.config_type == ConfigType::List {
                    match list_elements(value).find(|e| !allowed.contains(e)) {
                        Some(bad) => invalid(bad, reason),
                        None => Ok(()),
                    }
                } else if allowed.contains(&value.trim()) {
                    Ok(())
                } else {
                    invalid(value.trim(), reason)
                }
            }
            _ => Ok(()),
        }
    }

    /// The value of a numeric key (INT, SHORT, LONG), validated.
    pub fn parse_long(&self, value: &str) -> Result<i64, InvalidValue> {
        self.validate(value)?;
        value.trim().parse().map_err(|_| self.not_a_number(value))
    }

    /// The value of a DOUBLE key, validated.
    pub fn parse_double(&self, value: &str) -> Result<f64, InvalidValue> {
        self.validate(value)?;
        value.trim().parse().map_err(|_| self.not_a_number(value))
    }

    /// The value of a BOOLEAN key, validated.
    pub fn parse_bool(&self, value: &str) -> Result<bool, InvalidValue> {
        self.validate(value)?;
        Ok(value.trim().eq_ignore_ascii_case("true"))
    }

    fn not_a_number(&self, value: &str) -> InvalidValue {
        InvalidValue::new(
            self.name,
            value.trim(),
            format!("Not a number of type {}", self.config_type.kafka_name()),
        )
    }

    /// Checks the type's syntax; returns the number for numeric types.
    fn parse_number(&self, value: &str) -> Result<Option<f64>, InvalidValue> {
        let trimmed = value.trim();
        let number = match self.config_type {
            ConfigType::Boolean => {
                if trimmed.eq_ignore_ascii_case("true") || trimmed.eq_ignore_ascii_case("false") {
                    return Ok(None);
                }
                return Err(InvalidValue::new(
                    self.name,
                    trimmed,
                    "Expected value to be either true or false",
                ));
            }
            ConfigType::Short => trimmed.parse::<i16>().ok().map(f64::from),
            ConfigType::Int => trimmed.parse::<i32>().ok().map(f64::from),
            ConfigType::Long => trimmed.parse::<i64>().ok().map(|n| n as f64),
            ConfigType::Double => trimmed.parse::<f64>().ok().filter(|n| n.is_finite()),
            ConfigType::String | ConfigType::List | ConfigType::Class | ConfigType::Password => {
                return Ok(None)
            }
        };
        number.map(Some).ok_or_else(|| self.not_a_number(value))
    }
}

/// Builders for the key table; `const` so that the table is a static.
impl ConfigDef {
    pub(crate) const fn new(
        name: &'static str,
        config_type: ConfigType,
        default: Option<&'static str>,
        validator: Validator,
    ) -> Self {
        Self {
            name,
            config_type,
            default,
            validator,
            is_topic_key: false,
            broker_scope: BrokerScope::NotBroker,
            per_listener: false,
            thread_pool: false,
            broker_synonyms: &[],
        }
    }

    /// Marks a topic key, with the broker keys behind its default.
    pub(crate) const fn topic(self, broker_synonyms: &'static [BrokerSynonym]) -> Self {
        Self {
            is_topic_key: true,
            broker_synonyms,
            ..self
        }
    }

    /// Marks a broker key and how it may be updated.
    pub(crate) const fn broker(self, broker_scope: BrokerScope) -> Self {
        Self {
            broker_scope,
            ..self
        }
    }

    /// Marks a key that may be overridden per listener.
    pub(crate) const fn per_listener(self) -> Self {
        Self {
            per_listener: true,
            ..self
        }
    }

    /// Marks a thread pool size, whose dynamic updates are bounded by the size in effect.
    pub(crate) const fn thread_pool(self) -> Self {
        Self {
            thread_pool: true,
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn def(config_type: ConfigType, validator: Validator) -> ConfigDef {
        ConfigDef::new("k", config_type, None, validator)
    }

    fn reason(def: &ConfigDef, value: &str) -> String {
        def.validate(value).expect_err("invalid").to_string()
    }

    #[test]
    fn types_and_validators_word_errors_like_kafka() {
        let int = def(ConfigType::Int, Validator::AtLeast(1));
        assert!(int.validate(" 7 ").is_ok());
        assert_eq!(
            reason(&int, "0"),
            "Invalid value 0 for configuration k: Value must be at least 1"
        );
        assert_eq!(
            reason(&int, "x"),
            "Invalid value x for configuration k: Not a number of type INT"
        );
        assert!(int.validate("99999999999").is_err());
        let short = def(ConfigType::Short, Validator::Any);
        assert!(short.validate("40000").is_err());
        let ratio = def(ConfigType::Double, Validator::Between(0.0, 1.0));
        assert!(ratio.validate("0.25").is_ok());
        assert_eq!(
            reason(&ratio, "1.5"),
            "Invalid value 1.5 for configuration k: Value must be no more than 1"
        );
        assert!(ratio.validate("NaN").is_err());
        let boolean = def(ConfigType::Boolean, Validator::Any);
        assert!(boolean.validate("TRUE").is_ok());
        assert!(reason(&boolean, "yes").contains("either true or false"));
        let level = def(
            ConfigType::Int,
            Validator::BetweenOr {
                min: 1,
                max: 9,
                or: -1,
            },
        );
        assert!(level.validate("-1").is_ok() && level.validate("9").is_ok());
        assert!(reason(&level, "0").contains("between 1 and 9 or equal to -1"));
        let list = def(ConfigType::List, Validator::OneOf(&["compact", "delete"]));
        assert!(list.validate("compact, delete").is_ok());
        assert!(list.validate("").is_ok());
        assert_eq!(
            reason(&list, "compact,shred"),
            "Invalid value shred for configuration k: String must be one of: compact, delete"
        );
        let string = def(ConfigType::String, Validator::OneOf(&["a", "b"]));
        assert!(string.validate("a").is_ok() && string.validate("c").is_err());
    }

    #[test]
    fn parses_typed_values() {
        let long = def(ConfigType::Long, Validator::AtLeast(-1));
        assert_eq!(long.parse_long("-1"), Ok(-1));
        assert!(long.parse_long("-2").is_err());
        let double = def(ConfigType::Double, Validator::Any);
        assert_eq!(double.parse_double("0.5"), Ok(0.5));
        let boolean = def(ConfigType::Boolean, Validator::Any);
        assert_eq!(boolean.parse_bool("False"), Ok(false));
    }

    #[test]
    fn synonyms_convert_to_topic_units() {
        let hours = BrokerSynonym {
            name: "log.retention.hours",
            conversion: Conversion::HoursToMs,
            negative_is_unlimited: true,
        };
        assert_eq!(hours.to_topic_units("2"), "7200000");
        assert_eq!(hours.to_topic_units("-5"), "-1");
        let millis = BrokerSynonym {
            conversion: Conversion::AsIs,
            ..hours
        };
        assert_eq!(millis.to_topic_units("-5"), "-1");
        assert_eq!(millis.to_topic_units("5"), "5");
        let plain = BrokerSynonym {
            name: "log.cleanup.policy",
            conversion: Conversion::AsIs,
            negative_is_unlimited: false,
        };
        assert_eq!(plain.to_topic_units("compact"), "compact");
    }
}
