//! The partition registry: one open [`PartitionLog`] per partition this broker hosts, kept in line
//! with the metadata image (logs are created when a topic or partition appears and deleted when its
//! topic is deleted), plus the wake-up signal that long-polling fetches wait on.
//!
//! Directory layout follows Kafka: `<log.dirs>/<topic>-<partition>/`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use strom_metadata::MetadataImage;
use strom_storage::{compact_now, LogConfig, PartitionLog, StorageError};
use tokio::sync::Notify;

use crate::config::BrokerConfig;

/// One hosted partition: its log behind a lock, and what it was opened with.
pub struct Partition {
    pub topic: String,
    pub index: i32,
    pub topic_id: [u8; 16],
    log: Mutex<PartitionLog>,
}

impl Partition {
    /// Locks the partition's log. A poisoned lock (a panic while appending) is recovered: the log's
    /// own invariants are re-established by its next append or by recovery at restart.
    pub fn log(&self) -> MutexGuard<'_, PartitionLog> {
        self.log
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

type PartitionKey = (String, i32);

/// All partitions hosted here, by topic name and index.
pub struct PartitionRegistry {
    log_dir: PathBuf,
    /// The broker's configuration: its node id and `server.properties`, the static layer of each
    /// log's config.
    config: BrokerConfig,
    partitions: RwLock<HashMap<PartitionKey, Arc<Partition>>>,
    /// The metadata image version the registry last synced with.
    synced_version: Mutex<u64>,
    /// Woken on every append, so that waiting fetches can look again.
    pub data_arrived: Notify,
}

impl PartitionRegistry {
    pub fn new(log_dir: &Path, config: &BrokerConfig) -> Self {
        Self {
            log_dir: log_dir.to_path_buf(),
            config: config.clone(),
            partitions: RwLock::new(HashMap::new()),
            synced_version: Mutex::new(u64::MAX),
            data_arrived: Notify::new(),
        }
    }

    pub fn get(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        let partitions = self.partitions.read().unwrap_or_else(|p| p.into_inner());
        partitions.get(&(topic.to_string(), index)).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Partition>> {
        let partitions = self.partitions.read().unwrap_or_else(|p| p.into_inner());
        partitions.values().cloned().collect()
    }

    /// The log configuration of a topic: each topic key's effective value as
    /// [`strom_config::ConfigLayers`] resolves it (static broker defaults < dynamic cluster-wide
    /// broker configs < this broker's dynamic configs < the topic's overrides), the same values
    /// DescribeConfigs reports. A value the log cannot use (validated on write, so only from a
    /// damaged metadata log) is logged and its key keeps its default.
    pub fn topic_log_config(&self, image: &MetadataImage, topic: &str) -> LogConfig {
        let layers = self.config.config_layers(image, Some(topic));
        let mut config = LogConfig::default();
        for def in strom_config::topic_keys() {
            let Some((value, _)) = layers.topic_value(def.name) else {
                continue;
            };
            if let Err(error) = config.set(def.name, &value) {
                tracing::warn!(topic, %error, "ignoring an invalid topic config value");
            }
        }
        config
    }

    /// Opens logs for partitions that appeared, applies changed configs, and deletes the logs of
    /// topics that are gone. Idempotent; cheap when the image has not changed.
    pub fn sync_with_image(&self, image: &MetadataImage) {
        let mut synced = self
            .synced_version
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if *synced == image.version {
            return;
        }
        let mut partitions = self.partitions.write().unwrap_or_else(|p| p.into_inner());

        let mut wanted: HashMap<PartitionKey, [u8; 16]> = HashMap::new();
        for topic in image.topics.values() {
            for &index in topic.partitions.keys() {
                wanted.insert((topic.name.clone(), index), topic.id);
            }
        }

        let removed: Vec<PartitionKey> = partitions
            .iter()
            .filter(|(key, partition)| wanted.get(*key) != Some(&partition.topic_id))
            .map(|(key, _)| key.clone())
            .collect();
        for key in removed {
            if partitions.remove(&key).is_some() {
                let dir = self.partition_dir(&key.0, key.1);
                if let Err(error) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!(dir = %dir.display(), %error, "could not delete partition directory");
                } else {
                    tracing::info!(topic = %key.0, partition = key.1, "deleted partition log");
                }
            }
        }

        for ((topic, index), topic_id) in wanted {
            let config = self.topic_log_config(image, &topic);
            if let Some(existing) = partitions.get(&(topic.clone(), index)) {
                existing.log().set_config(config);
                continue;
            }
            let dir = self.partition_dir(&topic, index);
            match PartitionLog::open(&dir, config) {
                Ok(log) => {
                    partitions.insert(
                        (topic.clone(), index),
                        Arc::new(Partition {
                            topic,
                            index,
                            topic_id,
                            log: Mutex::new(log),
                        }),
                    );
                }
                Err(error) => {
                    tracing::error!(dir = %dir.display(), %error, "could not open partition log");
                }
            }
        }
        *synced = image.version;
    }

    fn partition_dir(&self, topic: &str, index: i32) -> PathBuf {
        self.log_dir.join(format!("{topic}-{index}"))
    }

    /// Runs time-based segment rolls, `flush.ms` flushes and retention on every partition.
    pub fn run_housekeeping(&self, now_ms: i64, apply_retention: bool) {
        for partition in self.all() {
            let mut log = partition.log();
            if let Err(error) = log.maybe_roll_and_flush(now_ms) {
                report(&partition, "roll/flush", &error);
            }
            if apply_retention {
                match log.apply_retention(now_ms) {
                    Ok(0) => {}
                    Ok(deleted) => tracing::info!(
                        topic = %partition.topic,
                        partition = partition.index,
                        deleted,
                        "retention deleted segments"
                    ),
                    Err(error) => report(&partition, "retention", &error),
                }
            }
        }
    }

    /// Runs a compaction pass on every partition whose `cleanup.policy` includes `compact` and
    /// which is dirty enough. Appends continue while a pass cleans; only its swap takes the lock.
    pub fn run_compaction(&self, now_ms: i64) {
        for partition in self.all() {
            if !partition.log().config().cleanup_policy_compact {
                continue;
            }
            match compact_now(&partition.log, now_ms) {
                Ok(Some(stats)) => tracing::info!(
                    topic = %partition.topic,
                    partition = partition.index,
                    records_removed = stats.records_removed,
                    tombstones_removed = stats.tombstones_removed,
                    bytes_before = stats.bytes_before,
                    bytes_after = stats.bytes_after,
                    "compacted"
                ),
                Ok(None) => {}
                Err(error) => report(&partition, "compaction", &error),
            }
        }
    }

    /// Flushes every log to disk (clean shutdown).
    pub fn flush_all(&self) {
        for partition in self.all() {
            if let Err(error) = partition.log().flush() {
                report(&partition, "flush", &error);
            }
        }
    }
}

fn report(partition: &Partition, what: &str, error: &StorageError) {
    tracing::error!(
        topic = %partition.topic,
        partition = partition.index,
        %error,
        "{what} failed"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use strom_metadata::{ConfigOp, MetadataStore};

    #[test]
    fn log_config_layers_static_dynamic_and_topic_values() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (config, _) = BrokerConfig::from_properties_str(
            "log.retention.minutes=5\nlog.segment.bytes=4096\nmessage.max.bytes=2000",
        )
        .expect("valid properties");
        let metadata = MetadataStore::open(&dir.path().join("meta"), config.node_id, None)
            .expect("open metadata store");
        metadata
            .register_broker(config.node_id, "localhost", 9092, None)
            .expect("register broker");
        let overrides = [("flush.messages".to_owned(), "1".to_owned())];
        metadata
            .create_topic("t", 1, 1, &overrides, false)
            .expect("create topic");
        let set = |broker_id, key: &str, value: &str| {
            metadata
                .alter_broker_configs(broker_id, &[ConfigOp::set(key, value)], false)
                .expect("alter broker configs");
        };
        set(None, "log.cleanup.policy", "compact");
        set(None, "log.segment.bytes", "16384");
        set(Some(config.node_id), "log.segment.bytes", "8192");
        set(None, "message.max.bytes", "3000");

        let registry = PartitionRegistry::new(dir.path(), &config);
        let log = registry.topic_log_config(&metadata.image(), "t");
        assert_eq!(log.retention_ms, 300_000, "static log.retention.minutes");
        assert_eq!(log.segment_bytes, 8192, "per-broker beats cluster default");
        assert_eq!(log.max_message_bytes, 3000, "cluster default beats static");
        assert!(log.cleanup_policy_compact && !log.cleanup_policy_delete);
        assert_eq!(log.flush_messages, 1, "topic override");
        let other = registry.topic_log_config(&metadata.image(), "not-a-topic");
        assert_eq!(other.flush_messages, LogConfig::default().flush_messages);
    }
}
