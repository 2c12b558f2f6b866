//! The controller: turns metadata requests (create and delete topics, add partitions, alter
//! configs, register brokers, allocate producer ids) into batches of metadata records, like Kafka's
//! `QuorumController`. Each operation validates against the current image plus its own records
//! (applied to a private copy first: the pending state), proposes the batch to the [`Quorum`], and
//! returns once it is committed and applied to the [`MetadataState`]. Operations are serialized
//! through commit, so the pending state of one never has to account for another's uncommitted
//! records; the controller performs no effects itself — brokers apply committed records.

use std::collections::BTreeMap;
use std::sync::Arc;

use strom_protocol::codec::Uuid;
use strom_protocol::ErrorCode;

use crate::config::{
    apply_config_ops, broker_list_default, topic_config_def_or_error, topic_list_default,
    validate_topic_config, ConfigOp,
};
use crate::error::MetadataError;
use crate::image::{MetadataImage, TopicImage, CONFIG_RESOURCE_BROKER, CONFIG_RESOURCE_TOPIC};
use crate::meta_properties::random_uuid;
use crate::quorum::{Quorum, QuorumError};
use crate::records::{
    serialize_record, BrokerEndpoint, ConfigRecord, MetadataRecord, PartitionRecord,
    ProducerIdsRecord, RegisterBrokerRecord, RemoveTopicRecord, TopicRecord,
};
use crate::state::MetadataState;

/// Longest legal topic name (Kafka's `Topic.MAX_NAME_LENGTH`).
pub const MAX_TOPIC_NAME_LENGTH: usize = 249;
/// The metadata log's own topic name (Kafka's `Topic.CLUSTER_METADATA_TOPIC_NAME`); its partition
/// directory holds this store, so no user topic may take the name.
pub const CLUSTER_METADATA_TOPIC_NAME: &str = "__cluster_metadata";
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

/// The controller of this node; only the quorum leader's can commit.
#[derive(Debug)]
pub struct Controller {
    node_id: i32,
    quorum: Arc<dyn Quorum>,
    state: Arc<MetadataState>,
    /// Serializes operations from validation through commit.
    operations: tokio::sync::Mutex<()>,
}

impl Controller {
    pub fn new(node_id: i32, quorum: Arc<dyn Quorum>, state: Arc<MetadataState>) -> Self {
        Self {
            node_id,
            quorum,
            state,
            operations: tokio::sync::Mutex::new(()),
        }
    }

    /// This node's id.
    pub fn node_id(&self) -> i32 {
        self.node_id
    }

    /// The quorum this controller writes through.
    pub fn quorum(&self) -> &Arc<dyn Quorum> {
        &self.quorum
    }

    /// The committed image (what validation starts from).
    pub fn image(&self) -> Arc<MetadataImage> {
        self.state.image()
    }

    /// Registers (or re-registers with a new endpoint) a broker. Re-registering unchanged is a no-op.
    pub async fn register_broker(
        &self,
        broker_id: i32,
        host: &str,
        port: i32,
        rack: Option<String>,
    ) -> Result<(), MetadataError> {
        let port = u16::try_from(port).map_err(|_| {
            MetadataError::of(ErrorCode::InvalidRequest, format!("Invalid port {port}"))
        })?;
        let _operation = self.operations.lock().await;
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
            broker_epoch: self.quorum.status().high_watermark,
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
        self.commit(&image, vec![MetadataRecord::RegisterBroker(record)])
            .await
    }

    /// Creates a topic: TopicRecord, ConfigRecords and PartitionRecords, committed as one entry.
    pub async fn create_topic(
        &self,
        name: &str,
        num_partitions: i32,
        replication_factor: i16,
        configs: &[(String, String)],
        validate_only: bool,
    ) -> Result<TopicSummary, MetadataError> {
        let _operation = self.operations.lock().await;
        let image = self.image();
        validate_topic_name(name)?;
        if name == CLUSTER_METADATA_TOPIC_NAME {
            return Err(MetadataError::of(
                ErrorCode::InvalidRequest,
                format!("Creation of internal topic {name} is prohibited."),
            ));
        }
        if image.topics.contains_key(name) {
            return Err(MetadataError::of(
                ErrorCode::TopicAlreadyExists,
                format!("Topic '{name}' already exists."),
            ));
        }
        let normalized = name.replace('.', "_");
        if let Some(other) = image
            .topics
            .keys()
            .find(|other| other.replace('.', "_") == normalized)
        {
            return Err(MetadataError::of(
                ErrorCode::InvalidTopicException,
                format!("Topic '{name}' collides with existing topic: {other}"),
            ));
        }
        if num_partitions <= 0 {
            return Err(MetadataError::of(
                ErrorCode::InvalidPartitions,
                "Number of partitions was set to an invalid non-positive value.",
            ));
        }
        if replication_factor <= 0 {
            return Err(MetadataError::of(
                ErrorCode::InvalidReplicationFactor,
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
        self.commit(&image, records).await?;
        Ok(summary)
    }

    /// Deletes a topic (one RemoveTopicRecord) and returns its id.
    pub async fn delete_topic(&self, name: &str) -> Result<Uuid, MetadataError> {
        let _operation = self.operations.lock().await;
        let image = self.image();
        let topic = image
            .topic(name)
            .ok_or_else(|| MetadataError::unknown_topic(name))?;
        let topic_id = topic.id;
        let record = MetadataRecord::RemoveTopic(RemoveTopicRecord { topic_id });
        self.commit(&image, vec![record]).await?;
        Ok(topic_id)
    }

    /// Grows a topic to `new_total` partitions, replicated like its partition 0.
    pub async fn create_partitions(
        &self,
        name: &str,
        new_total: i32,
        validate_only: bool,
    ) -> Result<(), MetadataError> {
        let _operation = self.operations.lock().await;
        let image = self.image();
        let topic = image
            .topic(name)
            .ok_or_else(|| MetadataError::unknown_topic(name))?;
        let current = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
        if new_total < current {
            return Err(MetadataError::of(
                ErrorCode::InvalidPartitions,
                format!(
                    "The topic {name} currently has {current} partition(s); {new_total} would not be an increase."
                ),
            ));
        }
        if new_total == current {
            return Err(MetadataError::of(
                ErrorCode::InvalidPartitions,
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
        self.commit(&image, records).await
    }

    /// IncrementalAlterConfigs on a topic.
    pub async fn alter_topic_configs(
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
        .await
    }

    /// AlterConfigs (non-incremental) on a topic: `configs` become its complete set of overrides.
    pub async fn replace_topic_configs(
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
        .await
    }

    /// IncrementalAlterConfigs on a broker (`Some(id)`) or the cluster-wide broker default (`None`).
    ///
    /// Broker keys are not checked here (the broker decides which keys may change dynamically);
    /// APPEND/SUBTRACT apply to list keys and start from the key's default.
    pub async fn alter_broker_configs(
        &self,
        broker_id: Option<i32>,
        ops: &[ConfigOp],
        validate_only: bool,
    ) -> Result<(), MetadataError> {
        self.change_broker_configs(broker_id, validate_only, |current| {
            apply_config_ops(current, ops, broker_list_default)
        })
        .await
    }

    /// AlterConfigs (non-incremental) on a broker or the cluster default: replaces all overrides.
    pub async fn replace_broker_configs(
        &self,
        broker_id: Option<i32>,
        configs: &[(String, String)],
        validate_only: bool,
    ) -> Result<(), MetadataError> {
        self.change_broker_configs(broker_id, validate_only, |_| {
            Ok(configs.iter().cloned().collect())
        })
        .await
    }

    /// Reserves `size` producer ids; returns the first one and the size.
    pub async fn allocate_producer_id_block(&self, size: i64) -> Result<(i64, i64), MetadataError> {
        if size <= 0 {
            return Err(MetadataError::of(
                ErrorCode::InvalidRequest,
                format!("Producer id block size must be positive, not {size}"),
            ));
        }
        let _operation = self.operations.lock().await;
        let image = self.image();
        let first = image.next_producer_id;
        let next_producer_id = first.checked_add(size).ok_or_else(|| {
            MetadataError::of(ErrorCode::UnknownServerError, "Producer ids are exhausted")
        })?;
        let broker_epoch = image.brokers.get(&self.node_id).map_or(-1, |b| b.epoch);
        let record = MetadataRecord::ProducerIds(ProducerIdsRecord {
            broker_id: self.node_id,
            broker_epoch,
            next_producer_id,
        });
        self.commit(&image, vec![record]).await?;
        Ok((first, size))
    }

    async fn change_topic_configs(
        &self,
        name: &str,
        validate_only: bool,
        update: impl FnOnce(
            &BTreeMap<String, String>,
        ) -> Result<BTreeMap<String, String>, MetadataError>,
    ) -> Result<(), MetadataError> {
        let _operation = self.operations.lock().await;
        let image = self.image();
        let topic = image
            .topic(name)
            .ok_or_else(|| MetadataError::unknown_topic(name))?;
        let updated = update(&topic.configs)?;
        if validate_only {
            return Ok(());
        }
        let records = config_change_records(CONFIG_RESOURCE_TOPIC, name, &topic.configs, &updated);
        self.commit(&image, records).await
    }

    async fn change_broker_configs(
        &self,
        broker_id: Option<i32>,
        validate_only: bool,
        update: impl FnOnce(
            &BTreeMap<String, String>,
        ) -> Result<BTreeMap<String, String>, MetadataError>,
    ) -> Result<(), MetadataError> {
        let _operation = self.operations.lock().await;
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
        self.commit(&image, records).await
    }

    /// Applies `records` to a copy of `base` (the pending state: a batch whose records do not
    /// apply is refused before anything is written), proposes them as one entry, and waits until
    /// the entry is committed and applied. An empty batch is a no-op.
    async fn commit(
        &self,
        base: &MetadataImage,
        records: Vec<MetadataRecord>,
    ) -> Result<(), MetadataError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut pending = base.clone();
        pending
            .apply_entry(base.last_offset + 1, &records)
            .map_err(|e| {
                MetadataError::of(
                    ErrorCode::UnknownServerError,
                    format!("metadata records do not apply: {e}"),
                )
            })?;
        let serialized = records
            .iter()
            .map(serialize_record)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| MetadataError::of(ErrorCode::UnknownServerError, e.to_string()))?;
        self.quorum
            .propose(serialized)
            .await
            .map(drop)
            .map_err(quorum_error)
    }
}

/// The Kafka error a failed proposal is reported with.
fn quorum_error(error: QuorumError) -> MetadataError {
    match error {
        QuorumError::NotLeader { .. } | QuorumError::ShuttingDown => {
            MetadataError::of(ErrorCode::NotController, error.to_string())
        }
        QuorumError::Storage(message) => MetadataError::storage("metadata log", message),
    }
}

fn check_replication_factor(replication_factor: i16, brokers: usize) -> Result<(), MetadataError> {
    if usize::try_from(replication_factor).unwrap_or(usize::MAX) > brokers {
        return Err(MetadataError::of(
            ErrorCode::InvalidReplicationFactor,
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
    let invalid = |message: String| MetadataError::of(ErrorCode::InvalidTopicException, message);
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
