//! Which broker configs may change at run time, as Kafka's `DynamicBrokerConfig` decides, for
//! (Incremental)AlterConfigs on a BROKER resource (a broker id, or "" for the cluster-wide
//! default).
//!
//! In Kafka's order, a change is refused when it names: a static broker key ("Cannot update these
//! configs dynamically"); an SSL key or trust store key without a listener prefix ("These
//! security configs can be dynamically updated only per-listener using the listener prefix"); a
//! value its key does not accept; or, at the cluster-wide default, a per-broker key ("Cannot
//! update these configs at default cluster level, broker id must be specified"). Keys Kafka does
//! not know are custom configs and accepted, as in Kafka; a per-listener override
//! (`listener.name.<listener>.<key>`) is checked as its base key and is per-broker unless the base
//! key is a cluster-wide listener config (`max.connections`, `max.connection.creation.rate`,
//! `num.network.threads`). A thread pool may be resized to at least half and at most double the
//! size in effect. Kafka answers all of these with INVALID_REQUEST and the message.

use crate::def::BrokerScope;
use crate::{broker_key, broker_key_or_listener_base, listener_override};

/// Checks broker configs about to be set (`(key, value)`; deleted keys are not checked, as Kafka
/// validates what remains). `per_broker` is false for the cluster-wide default; `in_effect` gives
/// the value of a key the broker runs with now. The error is Kafka's message.
pub fn check_dynamic_broker_configs(
    configs: &[(&str, &str)],
    per_broker: bool,
    in_effect: impl Fn(&str) -> Option<String>,
) -> Result<(), String> {
    let static_keys = offending(configs, |key| {
        broker_key(key).is_some_and(|def| def.broker_scope == BrokerScope::ReadOnly)
    });
    check(static_keys, "Cannot update these configs dynamically")?;
    let store_keys = offending(configs, |key| {
        broker_key(key).is_some_and(|def| def.broker_scope == BrokerScope::PerListener)
    });
    check(
        store_keys,
        "These security configs can be dynamically updated only per-listener using the listener \
         prefix",
    )?;
    for (key, value) in configs {
        if let Some(def) = broker_key_or_listener_base(key).filter(|def| def.is_dynamic()) {
            def.validate(value).map_err(|error| error.to_string())?;
        }
    }
    if !per_broker {
        check(
            offending(configs, is_per_broker_only),
            "Cannot update these configs at default cluster level, broker id must be specified",
        )?;
    }
    for (key, value) in configs {
        let Some(def) = broker_key(key).filter(|def| def.thread_pool) else {
            continue;
        };
        let current = in_effect(key).and_then(|current| current.trim().parse().ok());
        if let (Ok(new), Some(current)) = (value.trim().parse(), current) {
            check_thread_count(def.name, new, current)?;
        }
    }
    Ok(())
}

/// Kafka's `DynamicThreadPool` rule: a pool may shrink to half and grow to double its size. The
/// message is Kafka's, as wrapped by its dynamic config validation.
fn check_thread_count(key: &str, new: i64, current: i64) -> Result<(), String> {
    let problem = if new == current {
        return Ok(());
    } else if new <= 0 {
        "value should be at least 1".to_owned()
    } else if new < current / 2 {
        format!("value should be at least half the current value {current}")
    } else if new > current.saturating_mul(2) {
        format!("value should not be greater than double the current value {current}")
    } else {
        return Ok(());
    };
    Err(format!(
        "Invalid value org.apache.kafka.common.config.ConfigException: Dynamic thread count \
         update validation failed for {key}={new}, {problem} for configuration Invalid dynamic \
         configuration"
    ))
}

/// Whether a broker key may be set for one broker only, not as the cluster-wide default.
pub fn is_per_broker_only(key: &str) -> bool {
    match listener_override(key) {
        Some(listener) => !broker_key(listener.base)
            .is_some_and(|def| def.per_listener && def.broker_scope == BrokerScope::ClusterWide),
        None => broker_key(key).is_some_and(|def| {
            matches!(
                def.broker_scope,
                BrokerScope::PerBroker | BrokerScope::PerListener
            )
        }),
    }
}

fn offending<'k>(configs: &[(&'k str, &str)], refused: impl Fn(&str) -> bool) -> Vec<&'k str> {
    configs
        .iter()
        .map(|(key, _)| *key)
        .filter(|key| refused(key))
        .collect()
}

/// Kafka's `"<message>: Set(a, b)"` when any key is refused.
fn check(refused: Vec<&str>, message: &str) -> Result<(), String> {
    if refused.is_empty() {
        Ok(())
    } else {
        Err(format!("{message}: Set({})", refused.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table's defaults are in effect.
    fn in_effect(key: &str) -> Option<String> {
        crate::find(key)?.default.map(str::to_owned)
    }

    fn per_broker(configs: &[(&str, &str)]) -> Result<(), String> {
        check_dynamic_broker_configs(configs, true, in_effect)
    }

    fn cluster(configs: &[(&str, &str)]) -> Result<(), String> {
        check_dynamic_broker_configs(configs, false, in_effect)
    }

    #[test]
    fn accepts_what_kafka_updates_dynamically() {
        for key_value in [
            ("min.insync.replicas", "2"),
            ("log.retention.ms", "1000"),
            ("compression.type", "zstd"),
            ("message.max.bytes", "2000000"),
            ("log.cleaner.threads", "2"),
            ("num.io.threads", "4"),
            ("num.network.threads", "4"),
            ("num.replica.fetchers", "2"),
            ("background.threads", "5"),
            ("max.connections", "100"),
            ("max.connections.per.ip", "10"),
            ("unclean.leader.election.enable", "true"),
            ("listener.name.external.max.connections", "10"),
            ("custom.plugin.setting", "anything"),
        ] {
            assert_eq!(cluster(&[key_value]), Ok(()), "{key_value:?}");
            assert_eq!(per_broker(&[key_value]), Ok(()), "{key_value:?}");
        }
        for key_value in [
            (
                "listener.name.external.ssl.keystore.location",
                "/etc/ks.jks",
            ),
            ("listener.name.external.ssl.keystore.password", "secret"),
            ("ssl.cipher.suites", "TLS_AES_128_GCM_SHA256"),
            ("sasl.enabled.mechanisms", "PLAIN,SCRAM-SHA-256"),
            ("listeners", "PLAINTEXT://127.0.0.1:9092"),
            ("advertised.listeners", "PLAINTEXT://localhost:9092"),
        ] {
            assert_eq!(per_broker(&[key_value]), Ok(()), "{key_value:?}");
        }
    }

    #[test]
    fn refuses_with_kafkas_messages() {
        assert_eq!(
            per_broker(&[("log.dirs", "/x")]),
            Err("Cannot update these configs dynamically: Set(log.dirs)".into())
        );
        assert_eq!(
            cluster(&[("broker.id", "2"), ("num.partitions", "3")]),
            Err("Cannot update these configs dynamically: Set(broker.id, num.partitions)".into())
        );
        assert_eq!(
            per_broker(&[("log.retention.hours", "1")]),
            Err("Cannot update these configs dynamically: Set(log.retention.hours)".into())
        );
        assert_eq!(
            per_broker(&[("ssl.keystore.location", "/x")]),
            Err(
                "These security configs can be dynamically updated only per-listener using \
                 the listener prefix: Set(ssl.keystore.location)"
                    .into()
            )
        );
        assert_eq!(
            cluster(&[("listener.name.external.ssl.keystore.location", "/x")]),
            Err(
                "Cannot update these configs at default cluster level, broker id must be \
                 specified: Set(listener.name.external.ssl.keystore.location)"
                    .into()
            )
        );
        assert!(cluster(&[("listeners", "PLAINTEXT://h:1")]).is_err());
        assert!(cluster(&[("ssl.cipher.suites", "x")]).is_err());
        assert_eq!(
            per_broker(&[("min.insync.replicas", "0")]),
            Err(
                "Invalid value 0 for configuration min.insync.replicas: Value must be at least 1"
                    .into()
            )
        );
        assert_eq!(
            cluster(&[("num.io.threads", "17")]),
            Err(
                "Invalid value org.apache.kafka.common.config.ConfigException: Dynamic thread \
                 count update validation failed for num.io.threads=17, value should not be \
                 greater than double the current value 8 for configuration Invalid dynamic \
                 configuration"
                    .into()
            )
        );
        assert!(cluster(&[("num.io.threads", "3")])
            .is_err_and(|e| e.contains("at least half the current value 8")));
        assert!(cluster(&[("num.replica.fetchers", "0")])
            .is_err_and(|e| e.contains("value should be at least 1")));
        assert_eq!(cluster(&[("num.io.threads", "4")]), Ok(()));
        assert_eq!(
            per_broker(&[("listener.name.x.max.connections", "-1")]),
            Err(
                "Invalid value -1 for configuration max.connections: Value must be at least 0"
                    .into()
            )
        );
    }
}
