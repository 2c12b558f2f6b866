//! The metadata store: the controller side of cluster metadata. It validates requests (create and
//! delete topics, add partitions, alter configs, register brokers, allocate producer ids), turns
//! each into a batch of metadata records, appends the batch to the metadata log (fsynced) and
//! applies it to a new [`MetadataImage`], which readers obtain as a cheap `Arc` snapshot.
//!
//! The log is the only store of metadata; on open it is replayed from the start. Besides the log, the
//! metadata directory holds `meta.properties` (cluster id, node id), written once like Kafka's.

use std::collections::BTreeMap;
use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use strom_protocol::codec::Uuid;

use crate::config::{
    apply_config_ops, broker_list_default, topic_config_def_or_error, topic_list_default,
    validate_topic_config, ConfigOp,
};
use crate::error::{codes, MetadataError};
use crate::image::{MetadataImage, TopicImage, CONFIG_RESOURCE_BROKER, CONFIG_RESOURCE_TOPIC};
use crate::log::MetadataLog;
use crate::records::{
    deserialize_record, serialize_record, BrokerEndpoint, ConfigRecord, MetadataRecord,
    PartitionRecord, ProducerIdsRecord, RegisterBrokerRecord, RemoveTopicRecord, TopicRecord,
};

/// Longest legal topic name (Kafka's `Topic.MAX_NAME_LENGTH`).
pub const MAX_TOPIC_NAME_LENGTH: usize = 249;
/// The metadata log's own topic name (Kafka's `Topic.CLUSTER_METADATA_TOPIC_NAME`); its partition
/// directory holds this store, so no user topic may take the name.
pub const CLUSTER_METADATA_TOPIC_NAME: &str = "__cluster_metadata";
const META_PROPERTIES: &str = "meta.properties";
/// Epoch of entries written while the log is not yet replicated (a single-node quorum's first term).
const INITIAL_EPOCH: i32 = 1;
/// Kafka's `SecurityProtocol.PLAINTEXT` id.
const SECURITY_PROTOCOL_PLAINTEXT: i16 = 0;

/// What CreateTopics reports about a created (or validated) topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSummary {
    pub name: String,
    pub topic_id: Uuid,
    pub num_partitions: i32,
    pub replication_factor: i16,
    /// The topic's config overrides; every other key has its default.
    pub configs: BTreeMap<String, String>,
}

/// Owns the metadata log and the current image. All methods take `&self`; writers are serialized.
#[derive(Debug)]
pub struct MetadataStore {
    node_id: i32,
    writer: Mutex<Writer>,
    current: RwLock<Arc<MetadataImage>>,
    subscribers: Mutex<Vec<mpsc::Sender<Arc<MetadataImage>>>>,
}

#[derive(Debug)]
struct Writer {
    log: MetadataLog,
    epoch: i32,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MetadataStore {
    /// Opens the metadata directory `dir` (by convention `<log.dir>/__cluster_metadata-0`, see
    /// [`crate::log::METADATA_LOG_DIR_NAME`]), replaying the metadata log.
    ///
    /// A directory without `meta.properties` starts a new cluster, with `cluster_id_if_new` or a
    /// random Kafka-style cluster id.
    pub fn open(
        dir: &Path,
        node_id: i32,
        cluster_id_if_new: Option<String>,
    ) -> Result<Self, MetadataError> {
        fs::create_dir_all(dir)
            .map_err(|e| MetadataError::storage(&format!("creating {}", dir.display()), e))?;
        let cluster_id = load_or_create_meta_properties(dir, node_id, cluster_id_if_new)?;
        let (log, entries) = MetadataLog::open(dir)
            .map_err(|e| MetadataError::storage("opening the metadata log", e))?;
        let mut image = MetadataImage::empty(cluster_id);
        for entry in entries {
            let records = entry
                .records
                .into_iter()
                .map(deserialize_record)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| {
                    MetadataError::storage(
                        &format!("reading metadata log entry {}", entry.offset),
                        e,
                    )
                })?;
            image.apply_entry(entry.offset, &records).map_err(|e| {
                MetadataError::storage(&format!("replaying metadata log entry {}", entry.offset), e)
            })?;
        }
        let epoch = log.last_epoch().max(INITIAL_EPOCH);
        Ok(Self {
            node_id,
            writer: Mutex::new(Writer { log, epoch }),
            current: RwLock::new(Arc::new(image)),
            subscribers: Mutex::new(Vec::new()),
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> i32 {
        self.node_id
    }

    /// The current metadata image (a cheap shared snapshot).
    pub fn image(&self) -> Arc<MetadataImage> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A channel receiving each new image after it is committed. Dropping the receiver unsubscribes.
    pub fn subscribe(&self) -> mpsc::Receiver<Arc<MetadataImage>> {
        let (sender, receiver) = mpsc::channel();
        lock(&self.subscribers).push(sender);
        receiver
    }

    /// Registers (or re-registers with a new endpoint) a broker. Re-registering unchanged is a no-op.
    pub fn register_broker(
        &self,
        broker_id: i32,
        host: &str,
        port: i32,
        rack: Option<String>,
    ) -> Result<(), MetadataError> {
        let port = u16::try_from(port).map_err(|_| {
            MetadataError::new(codes::INVALID_REQUEST, format!("Invalid port {port}"))
        })?;
        let mut writer = lock(&self.writer);
        let image = self.image();
        if let Some(existing) = image.brokers.get(&broker_id) {
            if existing.host == host && existing.port == i32::from(port) && existing.rack == rack {
                return Ok(());
            }
        }
        let record = RegisterBrokerRecord {
            broker_id,
            incarnation_id: random_uuid(),
            // Like Kafka, the broker epoch is the offset of the registration in the metadata log.
            broker_epoch: writer.log.next_offset(),
            end_points: vec![BrokerEndpoint {
                name: "PLAINTEXT".into(),
                host: host.into(),
                port,
                security_protocol: SECURITY_PROTOCOL_PLAINTEXT,
            }],
            rack,
            fenced: false,
            ..Default::default()
        };
        self.commit(
            &mut writer,
            &image,
            vec![MetadataRecord::RegisterBroker(record)],
        )
    }

    /// Creates a topic: TopicRecord, ConfigRecords and PartitionRecords, committed as one entry.
    pub fn create_topic(
        &self,
        name: &str,
        num_partitions: i32,
        replication_factor: i16,
        configs: &[(String, String)],
        validate_only: bool,
    ) -> Result<TopicSummary, MetadataError> {
        let mut writer = lock(&self.writer);
        let image = self.image();
        validate_topic_name(name)?;
        if name == CLUSTER_METADATA_TOPIC_NAME {
            return Err(MetadataError::new(
                codes::INVALID_REQUEST,
                format!("Creation of internal topic {name} is prohibited."),
            ));
        }
        if image.topics.contains_key(name) {
            return Err(MetadataError::new(
                codes::TOPIC_ALREADY_EXISTS,
                format!("Topic '{name}' already exists."),
            ));
        }
        let normalized = name.replace('.', "_");
        if let Some(other) = image
            .topics
            .keys()
            .find(|other| other.replace('.', "_") == normalized)
        {
            return Err(MetadataError::new(
                codes::INVALID_TOPIC_EXCEPTION,
                format!("Topic '{name}' collides with existing topic: {other}"),
            ));
        }
        if num_partitions <= 0 {
            return Err(MetadataError::new(
                codes::INVALID_PARTITIONS,
                "Number of partitions was set to an invalid non-positive value.",
            ));
        }
        if replication_factor <= 0 {
            return Err(MetadataError::new(
                codes::INVALID_REPLICATION_FACTOR,
                "Replication factor must be larger than 0.",
            ));
        }
        let brokers: Vec<i32> = image.brokers.keys().copied().collect();
        check_replication_factor(replication_factor, brokers.len())?;
        let mut overrides = BTreeMap::new();
        for (key, value) in configs {
            validate_topic_config(key, value)?;
            overrides.insert(key.clone(), value.clone());
        }
        let topic_id = loop {
            let id = random_uuid();
            if !image.topic_names_by_id.contains_key(&id) {
                break id;
            }
        };
        let summary = TopicSummary {
            name: name.to_owned(),
            topic_id,
            num_partitions,
            replication_factor,
            configs: overrides,
        };
        if validate_only {
            return Ok(summary);
        }
        let mut records = vec![MetadataRecord::Topic(TopicRecord {
            name: name.to_owned(),
            topic_id,
        })];
        records.extend(summary.configs.iter().map(|(key, value)| {
            MetadataRecord::Config(ConfigRecord {
                resource_type: CONFIG_RESOURCE_TOPIC,
                resource_name: name.to_owned(),
                name: key.clone(),
                value: Some(value.clone()),
            })
        }));
        let start = image.topics.len() % brokers.len();
        records.extend((0..num_partitions).map(|partition| {
            new_partition_record(topic_id, partition, &brokers, start, replication_factor)
        }));
        self.commit(&mut writer, &image, records)?;
        Ok(summary)
    }

    /// Deletes a topic (one RemoveTopicRecord) and returns its id.
    pub fn delete_topic(&self, name: &str) -> Result<Uuid, MetadataError> {
        let mut writer = lock(&self.writer);
        let image = self.image();
        let topic = image
            .topic(name)
            .ok_or_else(|| MetadataError::unknown_topic(name))?;
        let topic_id = topic.id;
        let record = MetadataRecord::RemoveTopic(RemoveTopicRecord { topic_id });
        self.commit(&mut writer, &image, vec![record])?;
        Ok(topic_id)
    }

    /// Grows a topic to `new_total` partitions, replicated like its partition 0.
    pub fn create_partitions(
        &self,
        name: &str,
        new_total: i32,
        validate_only: bool,
    ) -> Result<(), MetadataError> {
        let mut writer = lock(&self.writer);
        let image = self.image();
        let topic = image
            .topic(name)
            .ok_or_else(|| MetadataError::unknown_topic(name))?;
        let current = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
        if new_total < current {
            return Err(MetadataError::new(
                codes::INVALID_PARTITIONS,
                format!(
                    "The topic {name} currently has {current} partition(s); {new_total} would not be an increase."
                ),
            ));
        }
        if new_total == current {
            return Err(MetadataError::new(
                codes::INVALID_PARTITIONS,
                format!("Topic already has {current} partition(s)."),
            ));
        }
        let brokers: Vec<i32> = image.brokers.keys().copied().collect();
        let replication_factor = topic
            .partitions
            .values()
            .next()
            .map_or(1, |p| i16::try_from(p.replicas.len()).unwrap_or(i16::MAX));
        check_replication_factor(replication_factor, brokers.len())?;
        if validate_only {
            return Ok(());
        }
        let start = first_replica_position(topic, &brokers);
        let records = (current..new_total)
            .map(|partition| {
                new_partition_record(topic.id, partition, &brokers, start, replication_factor)
            })
            .collect();
        self.commit(&mut writer, &image, records)
    }

    /// IncrementalAlterConfigs on a topic.
    pub fn alter_topic_configs(
        &self,
        name: &str,
        ops: &[ConfigOp],
        validate_only: bool,
    ) -> Result<(), MetadataError> {
        self.change_topic_configs(name, validate_only, |current| {
            for op in ops {
                topic_config_def_or_error(&op.key)?;
            }
            let updated = apply_config_ops(current, ops, topic_list_default)?;
            for (key, value) in &updated {
                validate_topic_config(key, value)?;
            }
            Ok(updated)
        })
    }

    /// AlterConfigs (non-incremental) on a topic: `configs` become its complete set of overrides.
    pub fn replace_topic_configs(
        &self,
        name: &str,
        configs: &[(String, String)],
        validate_only: bool,
    ) -> Result<(), MetadataError> {
        self.change_topic_configs(name, validate_only, |_| {
            let mut updated = BTreeMap::new();
            for (key, value) in configs {
                validate_topic_config(key, value)?;
                updated.insert(key.clone(), value.clone());
            }
            Ok(updated)
        })
    }

    /// IncrementalAlterConfigs on a broker (`Some(id)`) or the cluster-wide broker default (`None`).
    ///
    /// Broker keys are not checked here (the broker decides which keys may change dynamically);
    /// APPEND/SUBTRACT apply to list keys and start from the key's default.
    pub fn alter_broker_configs(
        &self,
        broker_id: Option<i32>,
        ops: &[ConfigOp],
        validate_only: bool,
    ) -> Result<(), MetadataError> {
        self.change_broker_configs(broker_id, validate_only, |current| {
            apply_config_ops(current, ops, broker_list_default)
        })
    }

    /// AlterConfigs (non-incremental) on a broker or the cluster default: replaces all overrides.
    pub fn replace_broker_configs(
        &self,
        broker_id: Option<i32>,
        configs: &[(String, String)],
        validate_only: bool,
    ) -> Result<(), MetadataError> {
        self.change_broker_configs(broker_id, validate_only, |_| {
            Ok(configs.iter().cloned().collect())
        })
    }

    /// Reserves `size` producer ids; returns the first one and the size.
    pub fn allocate_producer_id_block(&self, size: i64) -> Result<(i64, i64), MetadataError> {
        if size <= 0 {
            return Err(MetadataError::new(
                codes::INVALID_REQUEST,
                format!("Producer id block size must be positive, not {size}"),
            ));
        }
        let mut writer = lock(&self.writer);
        let image = self.image();
        let first = image.next_producer_id;
        let next_producer_id = first.checked_add(size).ok_or_else(|| {
            MetadataError::new(codes::UNKNOWN_SERVER_ERROR, "Producer ids are exhausted")
        })?;
        let broker_epoch = image.brokers.get(&self.node_id).map_or(-1, |b| b.epoch);
        let record = MetadataRecord::ProducerIds(ProducerIdsRecord {
            broker_id: self.node_id,
            broker_epoch,
            next_producer_id,
        });
        self.commit(&mut writer, &image, vec![record])?;
        Ok((first, size))
    }

    fn change_topic_configs(
        &self,
        name: &str,
        validate_only: bool,
        update: impl FnOnce(
            &BTreeMap<String, String>,
        ) -> Result<BTreeMap<String, String>, MetadataError>,
    ) -> Result<(), MetadataError> {
        let mut writer = lock(&self.writer);
        let image = self.image();
        let topic = image
            .topic(name)
            .ok_or_else(|| MetadataError::unknown_topic(name))?;
        let updated = update(&topic.configs)?;
        if validate_only {
            return Ok(());
        }
        let records = config_change_records(CONFIG_RESOURCE_TOPIC, name, &topic.configs, &updated);
        self.commit(&mut writer, &image, records)
    }

    fn change_broker_configs(
        &self,
        broker_id: Option<i32>,
        validate_only: bool,
        update: impl FnOnce(
            &BTreeMap<String, String>,
        ) -> Result<BTreeMap<String, String>, MetadataError>,
    ) -> Result<(), MetadataError> {
        let mut writer = lock(&self.writer);
        let image = self.image();
        let empty = BTreeMap::new();
        let current = image.broker_config(broker_id).unwrap_or(&empty);
        let updated = update(current)?;
        if let Some(key) = updated.keys().find(|key| key.is_empty()) {
            return Err(MetadataError::invalid_config(format!(
                "Invalid broker config name {key:?}"
            )));
        }
        if validate_only {
            return Ok(());
        }
        let resource_name = broker_id.map_or_else(String::new, |id| id.to_string());
        let records =
            config_change_records(CONFIG_RESOURCE_BROKER, &resource_name, current, &updated);
        self.commit(&mut writer, &image, records)
    }

    /// Applies `records` to a copy of `base`, appends them to the log as one entry, and publishes
    /// the new image. Nothing is written if the records do not apply. An empty batch is a no-op.
    fn commit(
        &self,
        writer: &mut Writer,
        base: &MetadataImage,
        records: Vec<MetadataRecord>,
    ) -> Result<(), MetadataError> {
        if records.is_empty() {
            return Ok(());
        }
        let offset = writer.log.next_offset();
        let mut next = base.clone();
        next.apply_entry(offset, &records).map_err(|e| {
            MetadataError::new(
                codes::UNKNOWN_SERVER_ERROR,
                format!("metadata records do not apply: {e}"),
            )
        })?;
        let serialized = records
            .iter()
            .map(serialize_record)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| MetadataError::new(codes::UNKNOWN_SERVER_ERROR, e.to_string()))?;
        writer
            .log
            .append(writer.epoch, &serialized)
            .map_err(|e| MetadataError::storage("appending to the metadata log", e))?;
        let next = Arc::new(next);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = next.clone();
        lock(&self.subscribers).retain(|subscriber| subscriber.send(next.clone()).is_ok());
        Ok(())
    }
}

fn check_replication_factor(replication_factor: i16, brokers: usize) -> Result<(), MetadataError> {
    if usize::try_from(replication_factor).unwrap_or(usize::MAX) > brokers {
        return Err(MetadataError::new(
            codes::INVALID_REPLICATION_FACTOR,
            format!(
                "Unable to replicate the partition {replication_factor} time(s): The target \
                 replication factor of {replication_factor} cannot be reached because only \
                 {brokers} broker(s) are registered."
            ),
        ));
    }
    Ok(())
}

/// Checks a topic name like Kafka's `Topic.validate`.
pub fn validate_topic_name(name: &str) -> Result<(), MetadataError> {
    let invalid = |message: String| MetadataError::new(codes::INVALID_TOPIC_EXCEPTION, message);
    if name.is_empty() {
        return Err(invalid("Topic name is illegal, it can't be empty".into()));
    }
    if name == "." || name == ".." {
        return Err(invalid("Topic name cannot be \".\" or \"..\"".into()));
    }
    if name.len() > MAX_TOPIC_NAME_LENGTH {
        return Err(invalid(format!(
            "Topic name is illegal, it can't be longer than {MAX_TOPIC_NAME_LENGTH} characters, topic name: {name}"
        )));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(invalid(format!(
            "Topic name \"{name}\" is illegal, it contains a character other than ASCII \
             alphanumerics, '.', '_' and '-'"
        )));
    }
    Ok(())
}

/// A new partition: replicas round-robin over `brokers` from `start + partition`, leader first.
fn new_partition_record(
    topic_id: Uuid,
    partition: i32,
    brokers: &[i32],
    start: usize,
    replication_factor: i16,
) -> MetadataRecord {
    let offset = start + usize::try_from(partition).unwrap_or(0);
    let replicas: Vec<i32> = (0..usize::try_from(replication_factor).unwrap_or(0))
        .map(|replica| brokers[(offset + replica) % brokers.len()])
        .collect();
    MetadataRecord::Partition(PartitionRecord {
        partition_id: partition,
        topic_id,
        // Kafka's `DirectoryId.UNASSIGNED` for each replica: the broker picks the directory.
        directories: vec![[0; 16]; replicas.len()],
        leader: replicas.first().copied().unwrap_or(-1),
        isr: replicas.clone(),
        replicas,
        leader_epoch: 0,
        partition_epoch: 0,
        ..Default::default()
    })
}

/// Where partition 0's first replica sits in `brokers`, so new partitions continue its rotation.
fn first_replica_position(topic: &TopicImage, brokers: &[i32]) -> usize {
    topic
        .partitions
        .get(&0)
        .and_then(|p| p.replicas.first())
        .and_then(|first| brokers.iter().position(|b| b == first))
        .unwrap_or(0)
}

/// ConfigRecords turning overrides `before` into `after` (value `None` deletes a key).
fn config_change_records(
    resource_type: i8,
    resource_name: &str,
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> Vec<MetadataRecord> {
    let record = |name: &str, value: Option<&String>| {
        MetadataRecord::Config(ConfigRecord {
            resource_type,
            resource_name: resource_name.to_owned(),
            name: name.to_owned(),
            value: value.cloned(),
        })
    };
    let removed = before
        .keys()
        .filter(|key| !after.contains_key(*key))
        .map(|key| record(key, None));
    let set = after
        .iter()
        .filter(|(key, value)| before.get(*key) != Some(value))
        .map(|(key, value)| record(key, Some(value)));
    removed.chain(set).collect()
}

/// Reads `meta.properties` (cluster id, node id) or writes it for a new cluster; returns the
/// cluster id.
fn load_or_create_meta_properties(
    dir: &Path,
    node_id: i32,
    cluster_id_if_new: Option<String>,
) -> Result<String, MetadataError> {
    let path = dir.join(META_PROPERTIES);
    let storage = |context: &str, e: std::io::Error| {
        MetadataError::storage(&format!("{context} {}", path.display()), e)
    };
    match fs::read_to_string(&path) {
        Ok(text) => {
            let properties: BTreeMap<&str, &str> = text
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty() && !line.starts_with('#'))
                .filter_map(|line| line.split_once('='))
                .map(|(k, v)| (k.trim(), v.trim()))
                .collect();
            let cluster_id = properties.get("cluster.id").ok_or_else(|| {
                MetadataError::storage(
                    &format!("reading {}", path.display()),
                    "no cluster.id property",
                )
            })?;
            if let Some(stored) = properties.get("node.id") {
                if *stored != node_id.to_string() {
                    return Err(MetadataError::storage(
                        &format!("reading {}", path.display()),
                        format!("node.id {stored} doesn't match the configured node id {node_id}"),
                    ));
                }
            }
            Ok((*cluster_id).to_owned())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let cluster_id = cluster_id_if_new.unwrap_or_else(|| base64url(&random_uuid()));
            let contents = format!(
                "#\n#Written by strom\ncluster.id={cluster_id}\ndirectory.id={}\nnode.id={node_id}\nversion=1\n",
                base64url(&random_uuid())
            );
            let tmp = dir.join(format!("{META_PROPERTIES}.tmp"));
            fs::write(&tmp, contents)
                .and_then(|()| fs::File::open(&tmp)?.sync_all())
                .and_then(|()| fs::rename(&tmp, &path))
                .and_then(|()| fs::File::open(dir)?.sync_all())
                .map_err(|e| storage("writing", e))?;
            Ok(cluster_id)
        }
        Err(e) => Err(storage("reading", e)),
    }
}

/// A random version-4 UUID usable as a Kafka id: never all-zero or the reserved metadata topic id,
/// and its base64 form never starts with '-' (Kafka's `Uuid.randomUuid` rules).
pub fn random_uuid() -> Uuid {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    loop {
        let mut bytes = [0u8; 16];
        for half in bytes.chunks_mut(8) {
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            hasher.write_u128(nanos);
            hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
            hasher.write_u32(std::process::id());
            half.copy_from_slice(&hasher.finish().to_be_bytes());
        }
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        let reserved = bytes == [0; 16] || bytes == METADATA_TOPIC_ID;
        if !reserved && !base64url(&bytes).starts_with('-') {
            return bytes;
        }
    }
}

/// Kafka's `Uuid.METADATA_TOPIC_ID` (0...01), reserved for the metadata topic.
const METADATA_TOPIC_ID: Uuid = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// URL-safe base64 without padding, as Kafka prints UUIDs (22 characters for 16 bytes).
pub fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 0x3f) as usize]));
        }
    }
    out
}
