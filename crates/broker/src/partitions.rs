//! The partition registry: one open [`PartitionLog`] per partition this broker hosts, kept in line
//! with the metadata image (logs are created when a topic or partition appears and deleted when its
//! topic is deleted), plus the wake-up signal that long-polling fetches wait on.
//!
//! Directory layout follows Kafka: `<log.dirs>/<topic>-<partition>/`, and each partition directory
//! holds Kafka's `partition.metadata` file naming the topic id it belongs to. A directory is only
//! ever opened for the topic id it names: one left behind by another incarnation of a topic (say,
//! the metadata that knew it was lost, and a topic of the same name was created again), or one the
//! metadata does not know at all, is renamed aside with a `-stray` suffix and reported at WARN,
//! never adopted silently. A directory without the file (written before Strom kept it) is adopted
//! once, with a WARN line, and the file is written.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use strom_metadata::meta_properties::base64url;
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
    /// The metadata image version the registry last synced with (`u64::MAX` before the first).
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
        let first_sync = *synced == u64::MAX;
        let mut partitions = self.partitions.write().unwrap_or_else(|p| p.into_inner());

        let mut wanted: HashMap<PartitionKey, [u8; 16]> = HashMap::new();
        // Only the partitions with a replica on this broker are hosted here.
        for topic in image.topics.values() {
            for (&index, partition) in &topic.partitions {
                if partition.replicas.contains(&self.config.node_id) {
                    wanted.insert((topic.name.clone(), index), topic.id);
                }
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

        if first_sync {
            self.set_aside_unknown_dirs(&wanted);
        }
        for ((topic, index), topic_id) in wanted {
            let config = self.topic_log_config(image, &topic);
            if let Some(existing) = partitions.get(&(topic.clone(), index)) {
                existing.log().set_config(config);
                continue;
            }
            let dir = self.partition_dir(&topic, index);
            if let Err(error) = claim_partition_dir(&dir, &topic_id) {
                tracing::error!(dir = %dir.display(), %error, "could not prepare partition directory");
                continue;
            }
            match PartitionLog::open(&dir, config) {
                Ok(mut log) => {
                    // Single node: this broker leads with itself as the only in-sync replica, so
                    // everything in its log is committed (Kafka's leader HW on becoming leader).
                    log.update_high_watermark(log.log_end_offset());
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

    /// Renames aside every partition directory in the log directory that the metadata does not
    /// name (at start: logs of topics deleted while this broker was down, or of lost metadata).
    fn set_aside_unknown_dirs(&self, wanted: &HashMap<PartitionKey, [u8; 16]>) {
        let Ok(entries) = std::fs::read_dir(&self.log_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let Some((topic, index)) = parse_partition_dir_name(&name) else {
                continue;
            };
            if !path.is_dir() || wanted.contains_key(&(topic.to_owned(), index)) {
                continue;
            }
            set_aside(&path, "the metadata has no such partition");
        }
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

/// Kafka's per-partition file naming the topic id the directory belongs to.
const PARTITION_METADATA_FILE: &str = "partition.metadata";

/// `<topic>-<partition>` directory names (not the metadata log's, nor `-stray`/`-delete` ones).
fn parse_partition_dir_name(name: &str) -> Option<(&str, i32)> {
    let (topic, index) = name.rsplit_once('-')?;
    let index: i32 = index.parse().ok()?;
    (!topic.is_empty() && index >= 0 && name != strom_metadata::log::METADATA_LOG_DIR_NAME)
        .then_some((topic, index))
}

/// Makes `dir` the directory of topic `topic_id`: a directory of another topic id is set aside
/// first; a new or legacy directory gets the `partition.metadata` file.
fn claim_partition_dir(dir: &Path, topic_id: &[u8; 16]) -> std::io::Result<()> {
    let path = dir.join(PARTITION_METADATA_FILE);
    let expected = base64url(topic_id);
    match std::fs::read_to_string(&path) {
        Ok(contents) => {
            let recorded = contents
                .lines()
                .find_map(|line| line.strip_prefix("topic_id:"))
                .map(str::trim);
            if recorded == Some(expected.as_str()) {
                return Ok(());
            }
            set_aside(
                dir,
                &format!(
                    "it belongs to topic id {} but the metadata names {expected}",
                    recorded.unwrap_or("(none)")
                ),
            );
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            if dir.is_dir() {
                tracing::warn!(
                    dir = %dir.display(),
                    topic_id = %expected,
                    "adopting a partition directory that has no {PARTITION_METADATA_FILE}"
                );
            }
        }
        Err(error) => return Err(error),
    }
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{PARTITION_METADATA_FILE}.tmp"));
    std::fs::write(&tmp, format!("version: 0\ntopic_id: {expected}\n"))?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Renames a partition directory that must not be used to `<name>.<random>-stray`, as Kafka does.
fn set_aside(dir: &Path, why: &str) {
    let stray_name = format!(
        "{}.{}-stray",
        dir.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("partition"),
        base64url(&strom_metadata::meta_properties::random_uuid())
    );
    let stray = dir.with_file_name(stray_name);
    match std::fs::rename(dir, &stray) {
        Ok(()) => tracing::warn!(
            dir = %dir.display(),
            moved_to = %stray.display(),
            "set aside a partition directory: {why}"
        ),
        Err(error) => tracing::error!(
            dir = %dir.display(),
            %error,
            "could not set aside a partition directory ({why})"
        ),
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
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use strom_metadata::{PartitionImage, TopicImage};

    use super::*;

    fn image_with_topic(name: &str, id: [u8; 16]) -> MetadataImage {
        let mut image = MetadataImage::empty("cluster".into());
        image.topics.insert(
            name.into(),
            Arc::new(TopicImage {
                name: name.into(),
                id,
                // One replica, on this (default-configured) broker.
                partitions: BTreeMap::from([(
                    0,
                    PartitionImage {
                        replicas: vec![BrokerConfig::default().node_id],
                        ..PartitionImage::default()
                    },
                )]),
                configs: BTreeMap::new(),
            }),
        );
        image.topic_names_by_id.insert(id, name.into());
        image.version = 1;
        image
    }

    fn strays(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.ends_with("-stray"))
            .collect()
    }

    #[test]
    fn a_directory_of_another_topic_incarnation_is_set_aside_not_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let old = PartitionRegistry::new(dir.path(), &BrokerConfig::default());
        old.sync_with_image(&image_with_topic("t", [1; 16]));
        let partition = old.get("t", 0).unwrap();
        let mut builder = strom_protocol::records::BatchBuilder::new(
            0,
            strom_protocol::records::Compression::None,
            0,
        );
        builder.push(0, None, Some(bytes::Bytes::from_static(b"old")), Vec::new());
        let batch = builder.build();
        partition.log().append(&batch, 0, 0).unwrap();
        drop(partition);
        drop(old);

        // The metadata now names another topic "t" (a new id): the old data must not reappear.
        let new = PartitionRegistry::new(dir.path(), &BrokerConfig::default());
        new.sync_with_image(&image_with_topic("t", [2; 16]));
        assert_eq!(new.get("t", 0).unwrap().log().log_end_offset(), 0);
        assert_eq!(strays(dir.path()).len(), 1);

        // A directory the metadata does not know at all is set aside at start.
        std::fs::create_dir_all(dir.path().join("unknown-0")).unwrap();
        let restarted = PartitionRegistry::new(dir.path(), &BrokerConfig::default());
        restarted.sync_with_image(&image_with_topic("t", [2; 16]));
        assert!(!dir.path().join("unknown-0").exists());
        assert_eq!(strays(dir.path()).len(), 2);
        assert!(dir
            .path()
            .join("t-0")
            .join(PARTITION_METADATA_FILE)
            .exists());
    }

    #[test]
    fn log_config_layers_static_dynamic_and_topic_values() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (config, _) = BrokerConfig::from_properties_str(
            "log.retention.minutes=5\nlog.segment.bytes=4096\nmessage.max.bytes=2000",
        )
        .expect("valid properties");
        let mut image = image_with_topic("t", [1; 16]);
        if let Some(topic) = image.topics.get_mut("t") {
            Arc::make_mut(topic)
                .configs
                .insert("flush.messages".into(), "1".into());
        }
        let pairs = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        image.broker_configs.insert(
            None,
            pairs(&[
                ("log.cleanup.policy", "compact"),
                ("log.segment.bytes", "16384"),
                ("message.max.bytes", "3000"),
            ]),
        );
        image.broker_configs.insert(
            Some(config.node_id),
            pairs(&[("log.segment.bytes", "8192")]),
        );

        let registry = PartitionRegistry::new(dir.path(), &config);
        let log = registry.topic_log_config(&image, "t");
        assert_eq!(log.retention_ms, 300_000, "static log.retention.minutes");
        assert_eq!(log.segment_bytes, 8192, "per-broker beats cluster default");
        assert_eq!(log.max_message_bytes, 3000, "cluster default beats static");
        assert!(log.cleanup_policy_compact && !log.cleanup_policy_delete);
        assert_eq!(log.flush_messages, 1, "topic override");
        let other = registry.topic_log_config(&image, "not-a-topic");
        assert_eq!(other.flush_messages, LogConfig::default().flush_messages);
    }
}
