//! Per-partition log configuration: the topic-level settings Kafka applies to a log as typed fields.
//! Keys, defaults and valid values come from the key table of `strom-config`; this module only maps
//! each log key to its field (`segment.bytes`, `retention.ms`, ...).

use std::sync::LazyLock;

use strom_config::{list_elements, InvalidValue};

/// Settings of one partition log. [`Default`] gives Kafka's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes`: roll the active segment when an append would make it larger than this.
    pub segment_bytes: u64,
    /// `segment.ms`: roll the active segment once it spans more than this much time.
    pub segment_ms: i64,
    /// `retention.ms`: delete segments whose newest timestamp is older than this; -1 = forever.
    pub retention_ms: i64,
    /// `retention.bytes`: delete the oldest segments while the log is larger than this; -1 = no limit.
    pub retention_bytes: i64,
    /// `cleanup.policy` contains `delete`: time/size retention applies.
    pub cleanup_policy_delete: bool,
    /// `cleanup.policy` contains `compact`: the log is compacted (see [`crate::cleaner`]) and
    /// records without a key are refused.
    pub cleanup_policy_compact: bool,
    /// `delete.retention.ms`: how long a tombstone outlives the cleaning pass that first kept it.
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`: a segment whose newest record is younger than this is not cleaned.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: dirty data older than this is cleaned whatever the dirty ratio, and
    /// the active segment of a compacted log rolls at least this often.
    pub max_compaction_lag_ms: i64,
    /// `min.cleanable.dirty.ratio`: clean when dirty bytes / cleanable bytes reach this (0..=1).
    pub min_cleanable_dirty_ratio: f64,
    /// `max.message.bytes`: largest record batch accepted.
    pub max_message_bytes: usize,
    /// `flush.messages`: fsync after this many messages; 1 = fsync every append before it returns.
    pub flush_messages: i64,
    /// `flush.ms`: fsync when unflushed data is older than this.
    pub flush_ms: i64,
    /// `message.timestamp.type=LogAppendTime`: the broker stamps each batch with its append time.
    pub timestamp_type_log_append: bool,
    /// `index.interval.bytes`: bytes of log between two offset index entries.
    pub index_interval_bytes: usize,
    /// `message.timestamp.before.max.ms` (KIP-937): how far in the past a CreateTime record's
    /// timestamp may lie; `i64::MAX` (the default) defers to `message.timestamp.difference.max.ms`.
    /// Use [`LogConfig::timestamp_before_max_ms`] for the bound in force.
    pub message_timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms` (KIP-937): how far in the future a CreateTime record's
    /// timestamp may lie; `i64::MAX` (the default) defers to `message.timestamp.difference.max.ms`.
    /// Use [`LogConfig::timestamp_after_max_ms`] for the bound in force.
    pub message_timestamp_after_max_ms: i64,
    /// `message.timestamp.difference.max.ms` (deprecated): bounds both sides when the two settings
    /// above are left at their defaults.
    pub message_timestamp_difference_max_ms: i64,
}

// The only float, `min.cleanable.dirty.ratio`, is validated to lie in [0, 1] (never NaN), so
// equality stays reflexive.
impl Eq for LogConfig {}

/// The defaults of the key table, parsed once.
static DEFAULTS: LazyLock<LogConfig> = LazyLock::new(|| {
    let mut config = LogConfig::UNSET;
    for def in strom_config::topic_keys() {
        if let Some(default) = def.default {
            // The table's defaults are valid values of their keys (strom-config tests each one).
            if let Err(error) = config.set(def.name, default) {
                panic!("default of a log config key does not parse: {error}");
            }
        }
    }
    config
});

impl Default for LogConfig {
    /// Kafka's defaults, from the key table of `strom-config`.
    fn default() -> Self {
        DEFAULTS.clone()
    }
}

/// A topic config value that cannot be applied to a log (Kafka's wording: `Invalid value x for
/// configuration k: reason`).
pub type ConfigValueError = InvalidValue;

impl LogConfig {
    /// Every field before the table's defaults are applied.
    const UNSET: LogConfig = LogConfig {
        segment_bytes: 0,
        segment_ms: 0,
        retention_ms: 0,
        retention_bytes: 0,
        cleanup_policy_delete: false,
        cleanup_policy_compact: false,
        delete_retention_ms: 0,
        min_compaction_lag_ms: 0,
        max_compaction_lag_ms: 0,
        min_cleanable_dirty_ratio: 0.0,
        max_message_bytes: 0,
        flush_messages: 0,
        flush_ms: 0,
        timestamp_type_log_append: false,
        index_interval_bytes: 0,
        message_timestamp_before_max_ms: 0,
        message_timestamp_after_max_ms: 0,
        message_timestamp_difference_max_ms: 0,
    };

    /// Applies topic-level overrides (Kafka key names) on top of `self`. Topic keys that are not
    /// log settings (e.g. `min.insync.replicas`) are ignored; a bad value, or a key that is not a
    /// topic key, is an error naming the key.
    pub fn with_overrides(
        &self,
        overrides: &[(String, String)],
    ) -> Result<LogConfig, ConfigValueError> {
        let mut config = self.clone();
        for (key, value) in overrides {
            config.set(key, value)?;
        }
        Ok(config)
    }

    /// The longest the active segment may live: `segment.ms`, and for compacted logs also
    /// `max.compaction.lag.ms` (Kafka's `maxSegmentMs`), so dirty data can become cleanable in time.
    pub fn max_segment_ms(&self) -> i64 {
        if self.cleanup_policy_compact && self.max_compaction_lag_ms > 0 {
            self.segment_ms.min(self.max_compaction_lag_ms)
        } else {
            self.segment_ms
        }
    }

    /// The largest `now - timestamp` accepted for a CreateTime record: `message.timestamp.before.max.ms`
    /// unless left at its default, else `message.timestamp.difference.max.ms` (Kafka's rule).
    pub fn timestamp_before_max_ms(&self) -> i64 {
        if self.message_timestamp_before_max_ms != i64::MAX {
            self.message_timestamp_before_max_ms
        } else {
            self.message_timestamp_difference_max_ms
        }
    }

    /// The largest `timestamp - now` accepted for a CreateTime record: `message.timestamp.after.max.ms`
    /// unless left at its default, else `message.timestamp.difference.max.ms` (Kafka's rule).
    pub fn timestamp_after_max_ms(&self) -> i64 {
        if self.message_timestamp_after_max_ms != i64::MAX {
            self.message_timestamp_after_max_ms
        } else {
            self.message_timestamp_difference_max_ms
        }
    }

    /// Sets one topic key, checked against the key table; topic keys that are not log settings
    /// are ignored.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigValueError> {
        let def = strom_config::topic_key(key)
            .ok_or_else(|| InvalidValue::new(key, value, "Unknown topic config name"))?;
        let long = || def.parse_long(value);
        let size = |value: i64| usize::try_from(value).unwrap_or(usize::MAX);
        match key {
            "segment.bytes" => self.segment_bytes = long()?.unsigned_abs(),
            "segment.ms" => self.segment_ms = long()?,
            "retention.ms" => self.retention_ms = long()?,
            "retention.bytes" => self.retention_bytes = long()?,
            "cleanup.policy" => {
                def.validate(value)?;
                self.cleanup_policy_delete = list_elements(value).any(|p| p == "delete");
                self.cleanup_policy_compact = list_elements(value).any(|p| p == "compact");
            }
            "max.message.bytes" => self.max_message_bytes = size(long()?),
            "flush.messages" => self.flush_messages = long()?,
            "flush.ms" => self.flush_ms = long()?,
            "message.timestamp.type" => {
                def.validate(value)?;
                self.timestamp_type_log_append = value.trim() == "LogAppendTime";
            }
            "message.timestamp.before.max.ms" => self.message_timestamp_before_max_ms = long()?,
            "message.timestamp.after.max.ms" => self.message_timestamp_after_max_ms = long()?,
            "message.timestamp.difference.max.ms" => {
                self.message_timestamp_difference_max_ms = long()?
            }
            "index.interval.bytes" => self.index_interval_bytes = size(long()?),
            "delete.retention.ms" => self.delete_retention_ms = long()?,
            "min.compaction.lag.ms" => self.min_compaction_lag_ms = long()?,
            "max.compaction.lag.ms" => self.max_compaction_lag_ms = long()?,
            "min.cleanable.dirty.ratio" => {
                self.min_cleanable_dirty_ratio = def.parse_double(value)?
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn overrides_apply_and_unknown_keys_are_ignored() {
        let config = LogConfig::default()
            .with_overrides(&pairs(&[
                ("segment.bytes", "1024"),
                ("retention.ms", "-1"),
                ("cleanup.policy", "compact"),
                ("message.timestamp.type", "LogAppendTime"),
                ("flush.messages", "1"),
                ("min.insync.replicas", "2"),
            ]))
            .unwrap();
        assert_eq!(config.segment_bytes, 1024);
        assert_eq!(config.retention_ms, -1);
        assert!(!config.cleanup_policy_delete);
        assert!(config.cleanup_policy_compact);
        assert!(config.timestamp_type_log_append);
        assert_eq!(config.flush_messages, 1);
    }

    #[test]
    fn compaction_settings() {
        let defaults = LogConfig::default();
        assert!(!defaults.cleanup_policy_compact);
        assert_eq!(defaults.delete_retention_ms, 86_400_000);
        assert_eq!(defaults.max_segment_ms(), 7 * 24 * 3_600_000);
        let config = defaults
            .with_overrides(&pairs(&[
                ("cleanup.policy", "compact, delete"),
                ("delete.retention.ms", "100"),
                ("min.compaction.lag.ms", "5"),
                ("max.compaction.lag.ms", "60000"),
                ("min.cleanable.dirty.ratio", "0.25"),
            ]))
            .unwrap();
        assert!(config.cleanup_policy_compact && config.cleanup_policy_delete);
        assert_eq!(
            (config.delete_retention_ms, config.min_compaction_lag_ms),
            (100, 5)
        );
        assert_eq!(config.max_segment_ms(), 60_000);
        assert_eq!(config.min_cleanable_dirty_ratio, 0.25);
        for (key, value) in [
            ("min.cleanable.dirty.ratio", "1.5"),
            ("min.cleanable.dirty.ratio", "NaN"),
            ("max.compaction.lag.ms", "0"),
            ("delete.retention.ms", "-1"),
        ] {
            let error = defaults
                .with_overrides(&pairs(&[(key, value)]))
                .unwrap_err();
            assert_eq!(error.key, key);
        }
    }

    #[test]
    fn timestamp_bounds_and_the_deprecated_difference() {
        let defaults = LogConfig::default();
        assert_eq!(defaults.timestamp_before_max_ms(), i64::MAX);
        assert_eq!(defaults.timestamp_after_max_ms(), i64::MAX);
        let difference = defaults
            .with_overrides(&pairs(&[("message.timestamp.difference.max.ms", "5000")]))
            .unwrap();
        assert_eq!(difference.timestamp_before_max_ms(), 5000);
        assert_eq!(difference.timestamp_after_max_ms(), 5000);
        let mixed = difference
            .with_overrides(&pairs(&[
                ("message.timestamp.before.max.ms", "100"),
                ("message.timestamp.after.max.ms", "0"),
            ]))
            .unwrap();
        assert_eq!(mixed.timestamp_before_max_ms(), 100);
        assert_eq!(mixed.timestamp_after_max_ms(), 0);
        let only_after = defaults
            .with_overrides(&pairs(&[("message.timestamp.after.max.ms", "3600000")]))
            .unwrap();
        assert_eq!(only_after.timestamp_before_max_ms(), i64::MAX);
        assert_eq!(only_after.timestamp_after_max_ms(), 3_600_000);
        for key in [
            "message.timestamp.before.max.ms",
            "message.timestamp.after.max.ms",
            "message.timestamp.difference.max.ms",
        ] {
            let error = defaults.with_overrides(&pairs(&[(key, "-1")])).unwrap_err();
            assert_eq!(error.key, key);
        }
    }

    #[test]
    fn defaults_come_from_the_key_table() {
        let defaults = LogConfig::default();
        assert_eq!(defaults.segment_bytes, 1 << 30);
        assert_eq!(defaults.segment_ms, 7 * 24 * 3_600_000);
        assert_eq!(defaults.retention_ms, 7 * 24 * 3_600_000);
        assert_eq!(defaults.retention_bytes, -1);
        assert!(defaults.cleanup_policy_delete && !defaults.cleanup_policy_compact);
        assert_eq!(defaults.max_message_bytes, 1_048_588);
        assert_eq!(defaults.flush_messages, i64::MAX);
        assert_eq!(defaults.flush_ms, i64::MAX);
        assert_eq!(defaults.index_interval_bytes, 4096);
        assert_eq!(defaults.max_compaction_lag_ms, i64::MAX);
        assert_eq!(defaults.min_cleanable_dirty_ratio, 0.5);
        assert!(!defaults.timestamp_type_log_append);
        let no_policy = defaults
            .with_overrides(&pairs(&[("cleanup.policy", "")]))
            .unwrap();
        assert!(!no_policy.cleanup_policy_delete && !no_policy.cleanup_policy_compact);
        let error = defaults
            .with_overrides(&pairs(&[("no.such.key", "1")]))
            .unwrap_err();
        assert_eq!(error.key, "no.such.key");
    }

    #[test]
    fn bad_value_names_the_key() {
        let error = LogConfig::default()
            .with_overrides(&pairs(&[("segment.bytes", "ten")]))
            .unwrap_err();
        assert_eq!(error.key, "segment.bytes");
        let error = LogConfig::default()
            .with_overrides(&pairs(&[("message.timestamp.type", "Now")]))
            .unwrap_err();
        assert_eq!(error.key, "message.timestamp.type");
    }
}
