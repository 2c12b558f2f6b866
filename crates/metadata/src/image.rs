//! The in-memory metadata image: the state obtained by applying every record of the metadata log in
//! order. Request handlers read it through a shared `Arc<MetadataImage>` snapshot; the store builds
//! a new image for each committed batch (copy-on-write: topics are behind `Arc`s, so a change copies
//! only the maps' spines and the topics it touches).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use strom_protocol::codec::Uuid;

use crate::records::{
    ConfigRecord, MetadataRecord, PartitionChangeRecord, PartitionRecord, RegisterBrokerRecord,
};

/// `ConfigRecord.resource_type` of a topic (Kafka's `ConfigResource.Type.TOPIC`).
pub const CONFIG_RESOURCE_TOPIC: i8 = 2;
/// `ConfigRecord.resource_type` of a broker (Kafka's `ConfigResource.Type.BROKER`).
pub const CONFIG_RESOURCE_BROKER: i8 = 4;

/// A partition's replica assignment and leadership.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartitionImage {
    /// During a reassignment (KIP-455): the target replicas, then those being removed.
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// Replicas an ongoing reassignment adds (empty when none is in progress).
    pub adding_replicas: Vec<i32>,
    /// Replicas an ongoing reassignment removes (empty when none is in progress).
    pub removing_replicas: Vec<i32>,
}

impl PartitionImage {
    /// Whether a reassignment of this partition is in progress.
    pub fn is_reassigning(&self) -> bool {
        !self.adding_replicas.is_empty() || !self.removing_replicas.is_empty()
    }
}

/// A topic: its id, partitions by index, and its configuration overrides (key -> value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicImage {
    pub name: String,
    pub id: Uuid,
    pub partitions: BTreeMap<i32, PartitionImage>,
    pub configs: BTreeMap<String, String>,
}

/// One listener a broker registered: name, address and security protocol id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerListener {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub security_protocol: i16,
}

impl BrokerListener {
    /// The listener as a `RegisterBrokerRecord` endpoint.
    pub fn to_endpoint(&self) -> crate::records::BrokerEndpoint {
        crate::records::BrokerEndpoint {
            name: self.name.clone(),
            host: self.host.clone(),
            port: self.port,
            security_protocol: self.security_protocol,
        }
    }
}

/// A registered broker. `host` and `port` are those of its first listener, the one clients use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerRegistration {
    pub id: i32,
    pub epoch: i64,
    pub incarnation_id: Uuid,
    pub host: String,
    pub port: i32,
    pub listeners: Vec<BrokerListener>,
    pub rack: Option<String>,
    pub fenced: bool,
    pub in_controlled_shutdown: bool,
}

/// Snapshot of the cluster metadata after some prefix of the metadata log.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetadataImage {
    /// Incremented by each applied log entry; compare two snapshots' versions to detect changes.
    pub version: u64,
    /// Offset of the last applied log entry, -1 if none.
    pub last_offset: i64,
    pub cluster_id: String,
    pub topics: BTreeMap<String, Arc<TopicImage>>,
    pub topic_names_by_id: HashMap<Uuid, String>,
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    /// Dynamic broker config overrides, by broker id; `None` holds cluster-wide defaults.
    pub broker_configs: BTreeMap<Option<i32>, BTreeMap<String, String>>,
    /// First producer id of the next block to hand out.
    pub next_producer_id: i64,
    /// Finalized feature levels (`FeatureLevelRecord`s), by feature name.
    pub features: BTreeMap<String, i16>,
}

/// Topics created, deleted, or changed (partitions added, configs altered) between two images.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TopicChanges {
    pub created: Vec<Arc<TopicImage>>,
    pub deleted: Vec<Arc<TopicImage>>,
    pub updated: Vec<Arc<TopicImage>>,
}

impl TopicChanges {
    pub fn is_empty(&self) -> bool {
        self.created.is_empty() && self.deleted.is_empty() && self.updated.is_empty()
    }
}

/// Why a record could not be applied to the image (the log is inconsistent).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("record refers to unknown topic id {0:?}")]
    UnknownTopicId(Uuid),
    #[error("record refers to unknown topic {0}")]
    UnknownTopic(String),
    #[error("record for partition {partition} of a topic that lacks it")]
    UnknownPartition { partition: i32 },
    #[error("topic {0} already exists")]
    DuplicateTopic(String),
    #[error("broker config resource name {0:?} is not a broker id")]
    InvalidBrokerResource(String),
}

impl MetadataImage {
    pub fn empty(cluster_id: String) -> Self {
        Self {
            last_offset: -1,
            cluster_id,
            ..Self::default()
        }
    }

    pub fn topic(&self, name: &str) -> Option<&Arc<TopicImage>> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, id: &Uuid) -> Option<&Arc<TopicImage>> {
        self.topic_names_by_id
            .get(id)
            .and_then(|name| self.topics.get(name))
    }

    /// Dynamic config overrides of a broker (`Some(id)`) or the cluster default (`None`).
    pub fn broker_config(&self, broker_id: Option<i32>) -> Option<&BTreeMap<String, String>> {
        self.broker_configs.get(&broker_id)
    }

    /// Which topics differ between `previous` and this image: what a broker needs to create or
    /// delete partition logs. A topic deleted and re-created under the same name appears in both
    /// `deleted` (old id) and `created` (new id).
    pub fn topic_changes_since(&self, previous: &MetadataImage) -> TopicChanges {
        let mut changes = TopicChanges::default();
        for (name, topic) in &self.topics {
            match previous.topics.get(name) {
                Some(old) if old.id == topic.id => {
                    if !Arc::ptr_eq(old, topic) && old != topic {
                        changes.updated.push(topic.clone());
                    }
                }
                Some(old) => {
                    changes.deleted.push(old.clone());
                    changes.created.push(topic.clone());
                }
                None => changes.created.push(topic.clone()),
            }
        }
        changes.deleted.extend(
            previous
                .topics
                .iter()
                .filter(|(name, _)| !self.topics.contains_key(*name))
                .map(|(_, topic)| topic.clone()),
        );
        changes
    }

    /// Applies one log entry's records, in order, and records `offset` as applied.
    pub fn apply_entry(
        &mut self,
        offset: i64,
        records: &[MetadataRecord],
    ) -> Result<(), ApplyError> {
        for record in records {
            self.apply(record)?;
        }
        self.last_offset = offset;
        self.version += 1;
        Ok(())
    }

    fn apply(&mut self, record: &MetadataRecord) -> Result<(), ApplyError> {
        match record {
            MetadataRecord::Topic(topic) => {
                if self.topics.contains_key(&topic.name)
                    || self.topic_names_by_id.contains_key(&topic.topic_id)
                {
                    return Err(ApplyError::DuplicateTopic(topic.name.clone()));
                }
                self.topic_names_by_id
                    .insert(topic.topic_id, topic.name.clone());
                self.topics.insert(
                    topic.name.clone(),
                    Arc::new(TopicImage {
                        name: topic.name.clone(),
                        id: topic.topic_id,
                        partitions: BTreeMap::new(),
                        configs: BTreeMap::new(),
                    }),
                );
            }
            MetadataRecord::Partition(partition) => self.apply_partition(partition)?,
            MetadataRecord::PartitionChange(change) => self.apply_partition_change(change)?,
            MetadataRecord::RemoveTopic(remove) => {
                let name = self
                    .topic_names_by_id
                    .remove(&remove.topic_id)
                    .ok_or(ApplyError::UnknownTopicId(remove.topic_id))?;
                self.topics.remove(&name);
            }
            MetadataRecord::Config(config) => self.apply_config(config)?,
            MetadataRecord::ProducerIds(ids) => self.next_producer_id = ids.next_producer_id,
            MetadataRecord::RegisterBroker(broker) => self.apply_register_broker(broker),
            MetadataRecord::FenceBroker(fence) => {
                if let Some(broker) = self.brokers.get_mut(&fence.id) {
                    broker.fenced = true;
                }
            }
            MetadataRecord::BrokerRegistrationChange(change) => {
                if let Some(broker) = self.brokers.get_mut(&change.broker_id) {
                    match change.fenced {
                        1 => broker.fenced = true,
                        -1 => broker.fenced = false,
                        _ => {}
                    }
                    if change.in_controlled_shutdown == 1 {
                        broker.in_controlled_shutdown = true;
                    }
                }
            }
            MetadataRecord::UnfenceBroker(unfence) => {
                if let Some(broker) = self.brokers.get_mut(&unfence.id) {
                    broker.fenced = false;
                }
            }
            MetadataRecord::FeatureLevel(feature) => {
                self.features
                    .insert(feature.name.clone(), feature.feature_level);
            }
            // Record types this image does not track (ACLs, quotas, fencing, ...) change nothing.
            _ => {}
        }
        Ok(())
    }

    fn topic_mut_by_id(&mut self, id: &Uuid) -> Result<&mut TopicImage, ApplyError> {
        let name = self
            .topic_names_by_id
            .get(id)
            .ok_or(ApplyError::UnknownTopicId(*id))?;
        let topic = self
            .topics
            .get_mut(name)
            .ok_or_else(|| ApplyError::UnknownTopic(name.clone()))?;
        Ok(Arc::make_mut(topic))
    }

    fn apply_partition(&mut self, record: &PartitionRecord) -> Result<(), ApplyError> {
        let topic = self.topic_mut_by_id(&record.topic_id)?;
        topic.partitions.insert(
            record.partition_id,
            PartitionImage {
                replicas: record.replicas.clone(),
                isr: record.isr.clone(),
                leader: record.leader,
                leader_epoch: record.leader_epoch,
                partition_epoch: record.partition_epoch,
                adding_replicas: record.adding_replicas.clone(),
                removing_replicas: record.removing_replicas.clone(),
            },
        );
        Ok(())
    }

    /// Applies a partition change like Kafka's `PartitionRegistration.merge`: absent fields keep
    /// their value, the partition epoch always advances, the leader epoch advances with a new leader.
    fn apply_partition_change(&mut self, change: &PartitionChangeRecord) -> Result<(), ApplyError> {
        let topic = self.topic_mut_by_id(&change.topic_id)?;
        let partition =
            topic
                .partitions
                .get_mut(&change.partition_id)
                .ok_or(ApplyError::UnknownPartition {
                    partition: change.partition_id,
                })?;
        if let Some(isr) = &change.isr {
            partition.isr = isr.clone();
        }
        if let Some(replicas) = &change.replicas {
            partition.replicas = replicas.clone();
        }
        if let Some(adding) = &change.adding_replicas {
            partition.adding_replicas = adding.clone();
        }
        if let Some(removing) = &change.removing_replicas {
            partition.removing_replicas = removing.clone();
        }
        if change.leader != NO_LEADER_CHANGE {
            partition.leader = change.leader;
            partition.leader_epoch += 1;
        }
        partition.partition_epoch += 1;
        Ok(())
    }

    fn apply_config(&mut self, record: &ConfigRecord) -> Result<(), ApplyError> {
        let configs = match record.resource_type {
            CONFIG_RESOURCE_TOPIC => {
                let topic = self
                    .topics
                    .get_mut(&record.resource_name)
                    .ok_or_else(|| ApplyError::UnknownTopic(record.resource_name.clone()))?;
                &mut Arc::make_mut(topic).configs
            }
            CONFIG_RESOURCE_BROKER => {
                let broker = if record.resource_name.is_empty() {
                    None
                } else {
                    Some(record.resource_name.parse::<i32>().map_err(|_| {
                        ApplyError::InvalidBrokerResource(record.resource_name.clone())
                    })?)
                };
                self.broker_configs.entry(broker).or_default()
            }
            // Other resource types (client metrics, groups, ...) are not tracked.
            _ => return Ok(()),
        };
        match &record.value {
            Some(value) => {
                configs.insert(record.name.clone(), value.clone());
            }
            None => {
                configs.remove(&record.name);
            }
        }
        if record.resource_type == CONFIG_RESOURCE_BROKER {
            self.broker_configs.retain(|_, configs| !configs.is_empty());
        }
        Ok(())
    }

    fn apply_register_broker(&mut self, record: &RegisterBrokerRecord) {
        let (host, port) = record
            .end_points
            .first()
            .map_or((String::new(), -1), |e| (e.host.clone(), i32::from(e.port)));
        let listeners = record
            .end_points
            .iter()
            .map(|e| BrokerListener {
                name: e.name.clone(),
                host: e.host.clone(),
                port: e.port,
                security_protocol: e.security_protocol,
            })
            .collect();
        self.brokers.insert(
            record.broker_id,
            BrokerRegistration {
                id: record.broker_id,
                epoch: record.broker_epoch,
                incarnation_id: record.incarnation_id,
                host,
                port,
                listeners,
                rack: record.rack.clone(),
                fenced: record.fenced,
                in_controlled_shutdown: record.in_controlled_shutdown,
            },
        );
    }
}

/// `PartitionChangeRecord.leader` meaning "the leader did not change".
pub const NO_LEADER_CHANGE: i32 = -2;
