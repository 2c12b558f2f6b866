//! Per-partition log configuration: the topic-level settings Kafka applies to a log, with Kafka's
//! defaults, and parsing of topic config overrides (`segment.bytes`, `retention.ms`, ...).

/// Settings of one partition log. [`Default`] gives Kafka's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

/// Kafka's default `segment.ms` and `retention.ms`: seven days.
pub const SEVEN_DAYS_MS: i64 = 7 * 24 * 60 * 60 * 1000;

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 1 << 30,
            segment_ms: SEVEN_DAYS_MS,
            retention_ms: SEVEN_DAYS_MS,
            retention_bytes: -1,
            cleanup_policy_delete: true,
            max_message_bytes: 1_048_588,
            flush_messages: i64::MAX,
            flush_ms: i64::MAX,
            timestamp_type_log_append: false,
            index_interval_bytes: 4096,
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
                | "index.interval.bytes"
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
                for policy in value.split(',').map(str::trim) {
                    match policy {
                        "delete" => delete = true,
                        "compact" => {}
                        _ => return Err(error("must be a list of delete and compact")),
                    }
                }
                self.cleanup_policy_delete = delete;
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
            "index.interval.bytes" => {
                self.index_interval_bytes = long(0, i64::from(i32::MAX))? as usize
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
        assert!(config.timestamp_type_log_append);
        assert_eq!(config.flush_messages, 1);
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
