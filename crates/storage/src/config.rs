//! Per-partition log configuration: the topic-level settings Kafka applies to a log, with Kafka's
//! defaults, and parsing of topic config overrides (`segment.bytes`, `retention.ms`, ...).

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

/// Kafka's default `segment.ms` and `retention.ms`: seven days.
pub const SEVEN_DAYS_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// Kafka's default `delete.retention.ms`: one day.
pub const ONE_DAY_MS: i64 = 24 * 60 * 60 * 1000;

// The only float, `min.cleanable.dirty.ratio`, is validated to lie in [0, 1] (never NaN), so
// equality stays reflexive.
impl Eq for LogConfig {}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 1 << 30,
            segment_ms: SEVEN_DAYS_MS,
            retention_ms: SEVEN_DAYS_MS,
            retention_bytes: -1,
            cleanup_policy_delete: true,
            cleanup_policy_compact: false,
            delete_retention_ms: ONE_DAY_MS,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            min_cleanable_dirty_ratio: 0.5,
            max_message_bytes: 1_048_588,
            flush_messages: i64::MAX,
            flush_ms: i64::MAX,
            timestamp_type_log_append: false,
            index_interval_bytes: 4096,
            message_timestamp_before_max_ms: i64::MAX,
            message_timestamp_after_max_ms: i64::MAX,
            message_timestamp_difference_max_ms: i64::MAX,
        }
    }
}

/// A topic config value that cannot be applied to a log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value {value:?} for config {key}: {reason}")]
pub struct ConfigValueError {
    pub key: String,
    pub value: String,
    pub reason: String,
}

/// Smallest `segment.bytes` Kafka accepts (one record batch log overhead plus a little).
const MIN_SEGMENT_BYTES: i64 = 14;

impl LogConfig {
    /// Applies topic-level overrides (Kafka key names) on top of `self`. Keys that are not log
    /// settings (e.g. `min.insync.replicas`) are ignored; a bad value of a known key is an error
    /// naming the key.
    pub fn with_overrides(
        &self,
        overrides: &[(String, String)],
    ) -> Result<LogConfig, ConfigValueError> {
        let mut config = self.clone();
        for (key, value) in overrides {
            config.apply(key, value)?;
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

    /// Whether `key` is one of the topic configs this type understands.
    pub fn is_log_config_key(key: &str) -> bool {
        matches!(
            key,
            "segment.bytes"
                | "segment.ms"
                | "retention.ms"
                | "retention.bytes"
                | "cleanup.policy"
                | "max.message.bytes"
                | "flush.messages"
                | "flush.ms"
                | "message.timestamp.type"
                | "message.timestamp.before.max.ms"
                | "message.timestamp.after.max.ms"
                | "message.timestamp.difference.max.ms"
                | "index.interval.bytes"
                | "delete.retention.ms"
                | "min.compaction.lag.ms"
                | "max.compaction.lag.ms"
                | "min.cleanable.dirty.ratio"
        )
    }

    fn apply(&mut self, key: &str, value: &str) -> Result<(), ConfigValueError> {
        let error = |reason: &str| ConfigValueError {
            key: key.to_string(),
            value: value.to_string(),
            reason: reason.to_string(),
        };
        let long = |min: i64, max: i64| -> Result<i64, ConfigValueError> {
            let parsed: i64 = value.trim().parse().map_err(|_| error("not an integer"))?;
            if parsed < min || parsed > max {
                return Err(error(&format!("must be in [{min}, {max}]")));
            }
            Ok(parsed)
        };
        match key {
            "segment.bytes" => {
                self.segment_bytes = long(MIN_SEGMENT_BYTES, i64::from(i32::MAX))? as u64
            }
            "segment.ms" => self.segment_ms = long(1, i64::MAX)?,
            "retention.ms" => self.retention_ms = long(-1, i64::MAX)?,
            "retention.bytes" => self.retention_bytes = long(i64::MIN, i64::MAX)?,
            "cleanup.policy" => {
                let mut delete = false;
                let mut compact = false;
                for policy in value.split(',').map(str::trim) {
                    match policy {
                        "delete" => delete = true,
                        "compact" => compact = true,
                        _ => return Err(error("must be a list of delete and compact")),
                    }
                }
                self.cleanup_policy_delete = delete;
                self.cleanup_policy_compact = compact;
            }
            "max.message.bytes" => self.max_message_bytes = long(0, i64::from(i32::MAX))? as usize,
            "flush.messages" => self.flush_messages = long(1, i64::MAX)?,
            "flush.ms" => self.flush_ms = long(0, i64::MAX)?,
            "message.timestamp.type" => {
                self.timestamp_type_log_append = match value.trim() {
                    "CreateTime" => false,
                    "LogAppendTime" => true,
                    _ => return Err(error("must be CreateTime or LogAppendTime")),
                }
            }
            "message.timestamp.before.max.ms" => {
                self.message_timestamp_before_max_ms = long(0, i64::MAX)?
            }
            "message.timestamp.after.max.ms" => {
                self.message_timestamp_after_max_ms = long(0, i64::MAX)?
            }
            "message.timestamp.difference.max.ms" => {
                self.message_timestamp_difference_max_ms = long(0, i64::MAX)?
            }
            "index.interval.bytes" => {
                self.index_interval_bytes = long(0, i64::from(i32::MAX))? as usize
            }
            "delete.retention.ms" => self.delete_retention_ms = long(0, i64::MAX)?,
            "min.compaction.lag.ms" => self.min_compaction_lag_ms = long(0, i64::MAX)?,
            "max.compaction.lag.ms" => self.max_compaction_lag_ms = long(1, i64::MAX)?,
            "min.cleanable.dirty.ratio" => {
                let ratio: f64 = value.trim().parse().map_err(|_| error("not a number"))?;
                if !(0.0..=1.0).contains(&ratio) {
                    return Err(error("must be in [0, 1]"));
                }
                self.min_cleanable_dirty_ratio = ratio;
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
        assert_eq!(defaults.max_segment_ms(), SEVEN_DAYS_MS);
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
            assert!(LogConfig::is_log_config_key(key));
            let error = defaults.with_overrides(&pairs(&[(key, "-1")])).unwrap_err();
            assert_eq!(error.key, key);
        }
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
