//! The controller: turns metadata requests (create and delete topics, add partitions, alter
//! configs, register brokers, allocate producer ids) into batches of metadata records, like Kafka's
//! `QuorumController`. Each operation validates against the current image plus its own records
//! (applied to a private copy first: the pending state), proposes the batch to the [`Quorum`], and
//! returns once it is committed and applied to the [`MetadataState`]. Operations are serialized
//! through commit, so the pending state of one never has to account for another's uncommitted
//! records; the controller performs no effects itself — brokers apply committed records.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strom_config::{ConfigLayers, ConfigMap};
use strom_protocol::codec::Uuid;
use strom_protocol::ErrorCode;

use crate::config::{
    apply_config_ops, broker_list_default, topic_config_def_or_error, topic_list_default,
    validate_topic_config, ConfigOp,
};
use crate::error::MetadataError;
use crate::image::{
    BrokerListener, MetadataImage, TopicImage, CONFIG_RESOURCE_BROKER, CONFIG_RESOURCE_TOPIC,
};
use crate::leadership::{
    changes_for_arriving_broker, changes_for_leaving_broker, preferred_leader_rebalance,
    unclean_elections,
};
use crate::meta_properties::random_uuid;
use crate::placement::{place_replicas, Candidate};
use crate::quorum::{Quorum, QuorumError};
use crate::records::{
    serialize_record, BrokerRegistrationChangeRecord, ConfigRecord, FenceBrokerRecord,
    MetadataRecord, PartitionRecord, ProducerIdsRecord, RegisterBrokerRecord, RemoveTopicRecord,
    TopicRecord, UnfenceBrokerRecord,
};
use crate::state::MetadataState;

mod replication;

pub use replication::{
    AlterPartitionRequest, ElectionType, OngoingReassignment, PartitionOutcome, PartitionState,
    ReassignmentTargets, TopicOutcomes, TopicReassignments,
};

/// The topic key that allows leaders from outside the ISR.
const UNCLEAN_LEADER_ELECTION_ENABLE: &str = "unclean.leader.election.enable";

/// Longest legal topic name (Kafka's `Topic.MAX_NAME_LENGTH`).
pub const MAX_TOPIC_NAME_LENGTH: usize = 249;
/// The metadata log's own topic name (Kafka's `Topic.CLUSTER_METADATA_TOPIC_NAME`); its partition
/// directory holds this store, so no user topic may take the name.
pub const CLUSTER_METADATA_TOPIC_NAME: &str = "__cluster_metadata";

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

/// What a broker sends to register (Kafka's BrokerRegistration request, in short).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerRegistrationRequest {
    pub broker_id: i32,
    /// Random per broker process: a restarted broker registers with a new one.
    pub incarnation_id: Uuid,
    pub listeners: Vec<BrokerListener>,
    pub rack: Option<String>,
}

/// What a broker sends in each heartbeat (Kafka's BrokerHeartbeat request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerHeartbeatRequest {
    pub broker_id: i32,
    pub broker_epoch: i64,
    /// The offset of the newest metadata entry the broker has applied.
    pub current_metadata_offset: i64,
    pub want_fence: bool,
    pub want_shut_down: bool,
}

/// The controller's answer to a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerHeartbeatReply {
    /// The broker has applied the metadata up to its registration.
    pub is_caught_up: bool,
    pub is_fenced: bool,
    /// Controlled shutdown is complete: the broker leads nothing and may exit.
    pub should_shut_down: bool,
}

/// The controller of this node; only the quorum leader's can commit.
#[derive(Debug)]
pub struct Controller {
    node_id: i32,
    quorum: Arc<dyn Quorum>,
    state: Arc<MetadataState>,
    /// Serializes operations from validation through commit.
    operations: tokio::sync::Mutex<()>,
    /// `broker.session.timeout.ms`: a broker without a heartbeat for this long is fenced.
    session_timeout: Duration,
    /// When each broker last sent a heartbeat (volatile: a newly active controller starts empty
    /// and gives every broker a full session from its first check).
    last_heartbeat: std::sync::Mutex<HashMap<i32, Instant>>,
    /// Brokers whose connection to this controller closed: the fencing task checks at once
    /// whether their process is gone ([`Controller::suspect`]).
    suspects: std::sync::Mutex<std::collections::BTreeSet<i32>>,
    suspects_added: tokio::sync::Notify,
    /// This node's `server.properties`: the static layer under topic keys the controller
    /// resolves (`unclean.leader.election.enable`), as Kafka's controller uses its own.
    static_config: ConfigMap,
}

impl Controller {
    pub fn new(
        node_id: i32,
        quorum: Arc<dyn Quorum>,
        state: Arc<MetadataState>,
        session_timeout: Duration,
    ) -> Self {
        Self {
            node_id,
            quorum,
            state,
            operations: tokio::sync::Mutex::new(()),
            session_timeout,
            last_heartbeat: std::sync::Mutex::new(HashMap::new()),
            suspects: std::sync::Mutex::new(std::collections::BTreeSet::new()),
            suspects_added: tokio::sync::Notify::new(),
            static_config: ConfigMap::new(),
        }
    }

    /// The controller with this node's `server.properties` as the static config layer.
    #[must_use]
    pub fn with_static_config(mut self, static_config: ConfigMap) -> Self {
        self.static_config = static_config;
        self
    }

    /// Whether `topic` allows unclean leader election: `unclean.leader.election.enable` of the
    /// topic, else this node's dynamic config, else the cluster-wide dynamic default, else
    /// `server.properties`, else false (Kafka's `uncleanLeaderElectionEnabledForTopic`).
    pub fn unclean_election_enabled(&self, image: &MetadataImage, topic: &TopicImage) -> bool {
        let layers = ConfigLayers {
            topic: Some(&topic.configs),
            dynamic_broker: image.broker_config(Some(self.node_id)),
            dynamic_default: image.broker_config(None),
            static_broker: Some(&self.static_config),
        };
        layers
            .topic_value(UNCLEAN_LEADER_ELECTION_ENABLE)
            .is_some_and(|(value, _)| value.eq_ignore_ascii_case("true"))
    }

    /// The unclean-election rule of `image`'s topics, for the leadership changes.
    fn unclean_rule<'a>(&'a self, image: &'a MetadataImage) -> impl Fn(&TopicImage) -> bool + 'a {
        move |topic| self.unclean_election_enabled(image, topic)
    }

    fn heartbeats(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Instant>> {
        self.last_heartbeat
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `broker_id` has a live session: a heartbeat within the session timeout.
    fn has_live_session(&self, broker_id: i32, now: Instant) -> bool {
        self.heartbeats()
            .get(&broker_id)
            .is_some_and(|last| now.duration_since(*last) < self.session_timeout)
    }

    /// Registers a broker (Kafka's BrokerRegistration): a new incarnation is recorded fenced, with
    /// its broker epoch the offset of its registration, and whatever its previous incarnation led
    /// moves away; the broker is unfenced by a heartbeat once it has caught up. The same
    /// incarnation registering again gets its epoch back. Another live incarnation of the same id
    /// is refused with DUPLICATE_BROKER_REGISTRATION. Returns the broker epoch.
    pub async fn register(&self, request: BrokerRegistrationRequest) -> Result<i64, MetadataError> {
        let _operation = self.operations.lock().await;
        let image = self.image();
        let now = Instant::now();
        if let Some(existing) = image.brokers.get(&request.broker_id) {
            if existing.incarnation_id == request.incarnation_id {
                return Ok(existing.epoch);
            }
            if !existing.fenced && self.has_live_session(request.broker_id, now) {
                return Err(MetadataError::new(
                    ErrorCode::DuplicateBrokerRegistration.code(),
                    format!(
                        "Another broker is registered with that broker id {}.",
                        request.broker_id
                    ),
                ));
            }
        }
        let broker_epoch = self.quorum.status().high_watermark;
        let mut records: Vec<MetadataRecord> =
            changes_for_leaving_broker(&image, request.broker_id, &self.unclean_rule(&image))
                .into_iter()
                .map(MetadataRecord::PartitionChange)
                .collect();
        records.push(MetadataRecord::RegisterBroker(RegisterBrokerRecord {
            broker_id: request.broker_id,
            incarnation_id: request.incarnation_id,
            // Like Kafka, the broker epoch is the offset of the registration in the metadata log.
            broker_epoch,
            end_points: request
                .listeners
                .iter()
                .map(BrokerListener::to_endpoint)
                .collect(),
            rack: request.rack,
            fenced: true,
            ..Default::default()
        }));
        self.commit(&image, records).await?;
        self.heartbeats().insert(request.broker_id, now);
        Ok(self
            .image()
            .brokers
            .get(&request.broker_id)
            .map_or(broker_epoch, |b| b.epoch))
    }

    /// A broker's heartbeat (Kafka's BrokerHeartbeat): keeps its session, unfences it once it has
    /// applied the metadata up to its registration, fences it when it asks, and runs its controlled
    /// shutdown (leaderships move away; `should_shut_down` once it leads nothing).
    pub async fn heartbeat(
        &self,
        request: BrokerHeartbeatRequest,
    ) -> Result<BrokerHeartbeatReply, MetadataError> {
        let _operation = self.operations.lock().await;
        let image = self.image();
        let Some(broker) = image.brokers.get(&request.broker_id) else {
            return Err(MetadataError::new(
                ErrorCode::BrokerIdNotRegistered.code(),
                format!("Broker {} is not registered.", request.broker_id),
            ));
        };
        if broker.epoch != request.broker_epoch {
            return Err(MetadataError::new(
                ErrorCode::StaleBrokerEpoch.code(),
                format!(
                    "Expected broker epoch {}, but got broker epoch {}",
                    broker.epoch, request.broker_epoch
                ),
            ));
        }
        self.heartbeats().insert(request.broker_id, Instant::now());
        let is_caught_up = request.current_metadata_offset >= broker.epoch;
        let id = request.broker_id;
        let mut records = Vec::new();
        if request.want_shut_down && !broker.in_controlled_shutdown {
            records.extend(
                changes_for_leaving_broker(&image, id, &self.unclean_rule(&image))
                    .into_iter()
                    .map(MetadataRecord::PartitionChange),
            );
            records.push(MetadataRecord::BrokerRegistrationChange(
                BrokerRegistrationChangeRecord {
                    broker_id: id,
                    broker_epoch: broker.epoch,
                    in_controlled_shutdown: 1,
                    ..Default::default()
                },
            ));
        } else if broker.fenced && is_caught_up && !request.want_fence && !request.want_shut_down {
            records.push(MetadataRecord::UnfenceBroker(UnfenceBrokerRecord {
                id,
                epoch: broker.epoch,
            }));
            records.extend(
                changes_for_arriving_broker(&image, id, &self.unclean_rule(&image))
                    .into_iter()
                    .map(MetadataRecord::PartitionChange),
            );
        } else if !broker.fenced && request.want_fence {
            records.extend(self.fencing_records(&image, id, broker.epoch));
        }
        self.commit(&image, records).await?;
        let image = self.image();
        let broker = image.brokers.get(&id);
        let leads_nothing = image
            .topics
            .values()
            .flat_map(|t| t.partitions.values())
            .all(|p| p.leader != id);
        Ok(BrokerHeartbeatReply {
            is_caught_up,
            is_fenced: broker.is_none_or(|b| b.fenced),
            should_shut_down: request.want_shut_down
                && broker.is_some_and(|b| b.in_controlled_shutdown)
                && leads_nothing,
        })
    }

    /// Marks `broker_id` as possibly dead (the connection its heartbeats came over closed), for
    /// the fencing task to check now rather than at the end of its session.
    pub fn suspect(&self, broker_id: i32) {
        self.suspects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(broker_id);
        self.suspects_added.notify_one();
    }

    /// Waits until [`Controller::suspect`] names a broker.
    pub async fn suspects_added(&self) {
        self.suspects_added.notified().await;
    }

    /// The brokers suspected since the last call, plus every unfenced broker (other than this
    /// node) that has sent no heartbeat for `silence`.
    pub fn take_suspects(&self, silence: Duration) -> Vec<i32> {
        let mut suspects = std::mem::take(
            &mut *self
                .suspects
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let now = Instant::now();
        let image = self.image();
        let heartbeats = self.heartbeats();
        for broker in image.brokers.values().filter(|b| !b.fenced) {
            let silent = heartbeats
                .get(&broker.id)
                .is_none_or(|last| now.duration_since(*last) >= silence);
            if silent {
                suspects.insert(broker.id);
            }
        }
        suspects.remove(&self.node_id);
        suspects.into_iter().collect()
    }

    /// Fences `broker_id` at once (its process was found gone: its listener refuses
    /// connections), unless it is already fenced or a heartbeat arrived after `checked_at`.
    /// Returns whether it was fenced.
    pub async fn fence_unreachable_broker(
        &self,
        broker_id: i32,
        checked_at: Instant,
    ) -> Result<bool, MetadataError> {
        let _operation = self.operations.lock().await;
        let image = self.image();
        let Some(broker) = image.brokers.get(&broker_id).filter(|b| !b.fenced) else {
            return Ok(false);
        };
        let heard_since = self
            .heartbeats()
            .get(&broker_id)
            .is_some_and(|last| *last > checked_at);
        if heard_since {
            return Ok(false);
        }
        let records = self.fencing_records(&image, broker_id, broker.epoch);
        self.commit(&image, records).await?;
        Ok(true)
    }

    /// Forgets when brokers last sent a heartbeat, so that each gets a full session from the next
    /// check: for a node that has just become the active controller, whose records (if any) are
    /// from an earlier time it was active.
    pub fn reset_sessions(&self) {
        self.heartbeats().clear();
    }

    /// Fences every unfenced broker whose last heartbeat is older than the session timeout (a
    /// broker this controller has not heard from yet gets a full session from now). Returns the
    /// ids fenced. Only the active controller's call commits anything.
    pub async fn fence_stale_brokers(&self) -> Result<Vec<i32>, MetadataError> {
        let _operation = self.operations.lock().await;
        let image = self.image();
        let now = Instant::now();
        let stale: Vec<(i32, i64)> = {
            let mut heartbeats = self.heartbeats();
            image
                .brokers
                .values()
                .filter(|b| !b.fenced)
                .filter(|b| {
                    let last = *heartbeats.entry(b.id).or_insert(now);
                    now.duration_since(last) >= self.session_timeout
                })
                .map(|b| (b.id, b.epoch))
                .collect()
        };
        let mut records = Vec::new();
        let mut working = MetadataImage::clone(&image);
        for (id, epoch) in &stale {
            let fencing = self.fencing_records(&working, *id, *epoch);
            working
                .apply_entry(working.last_offset, &fencing)
                .map_err(|e| MetadataError::of(ErrorCode::UnknownServerError, e.to_string()))?;
            records.extend(fencing);
        }
        self.commit(&image, records).await?;
        Ok(stale.into_iter().map(|(id, _)| id).collect())
    }

    /// Elects leaders from outside the ISR for leaderless partitions of topics that allow unclean
    /// election (Kafka's periodic `maybeElectUncleanLeaders`, which makes enabling
    /// `unclean.leader.election.enable` at run time take effect). Returns how many partitions got
    /// a leader. Only the active controller's call commits anything.
    pub async fn elect_unclean_leaders(&self) -> Result<usize, MetadataError> {
        let _operation = self.operations.lock().await;
        let image = self.image();
        let changes = unclean_elections(&image, &self.unclean_rule(&image));
        let elected = changes.len();
        for change in &changes {
            tracing::warn!(
                topic = image
                    .topic_names_by_id
                    .get(&change.topic_id)
                    .map(String::as_str),
                partition = change.partition_id,
                leader = change.leader,
                "unclean leader election for a partition without a live in-sync replica"
            );
        }
        let records = changes
            .into_iter()
            .map(MetadataRecord::PartitionChange)
            .collect();
        self.commit(&image, records).await?;
        Ok(elected)
    }

    /// Automatic preferred leader balancing (`auto.leader.rebalance.enable`): moves leadership
    /// back to preferred replicas of brokers whose share of partitions led by another broker
    /// exceeds `leader.imbalance.per.broker.percentage` ([`preferred_leader_rebalance`]).
    /// Returns how many partitions changed leader. Only the active controller's call commits.
    pub async fn balance_leaders(&self, imbalance_percentage: i32) -> Result<usize, MetadataError> {
        let _operation = self.operations.lock().await;
        let image = self.image();
        let changes = preferred_leader_rebalance(&image, imbalance_percentage);
        let moved = changes.len();
        let records = changes
            .into_iter()
            .map(MetadataRecord::PartitionChange)
            .collect();
        self.commit(&image, records).await?;
        Ok(moved)
    }

    /// Records that fence `broker_id` and move its leaderships and ISR memberships away.
    fn fencing_records(
        &self,
        image: &MetadataImage,
        broker_id: i32,
        broker_epoch: i64,
    ) -> Vec<MetadataRecord> {
        let mut records: Vec<MetadataRecord> =
            changes_for_leaving_broker(image, broker_id, &self.unclean_rule(image))
                .into_iter()
                .map(MetadataRecord::PartitionChange)
                .collect();
        records.push(MetadataRecord::FenceBroker(FenceBrokerRecord {
            id: broker_id,
            epoch: broker_epoch,
        }));
        records
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
        let candidates = placement_candidates(&image);
        let count = usize::try_from(num_partitions).unwrap_or(0);
        let rotation = image.topics.len();
        let placements = place(&candidates, 0, count, replication_factor, rotation)?;
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
        records.extend(
            (0..num_partitions)
                .zip(placements)
                .map(|(partition, replicas)| new_partition_record(topic_id, partition, replicas)),
        );
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
        let replication_factor = topic
            .partitions
            .values()
            .next()
            .map_or(1, |p| i16::try_from(p.replicas.len()).unwrap_or(i16::MAX));
        let candidates = placement_candidates(&image);
        let rotation = topic_rotation(topic, &candidates);
        let first = usize::try_from(current).unwrap_or(0);
        let count = usize::try_from(new_total - current).unwrap_or(0);
        let placements = place(&candidates, first, count, replication_factor, rotation)?;
        if validate_only {
            return Ok(());
        }
        let records = (current..new_total)
            .zip(placements)
            .map(|(partition, replicas)| new_partition_record(topic.id, partition, replicas))
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
        // Records are validated against this node's image: only the active controller, caught
        // up with the log (see `Quorum::status`), may commit.
        if self.quorum.status().leader_id != Some(self.node_id) {
            return Err(MetadataError::of(
                ErrorCode::NotController,
                "this node is not the active controller, or has not replayed the log yet",
            ));
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

/// Brokers that can take new replicas: registered, unfenced, not shutting down.
fn placement_candidates(image: &MetadataImage) -> Vec<Candidate> {
    image
        .brokers
        .values()
        .filter(|broker| !broker.fenced && !broker.in_controlled_shutdown)
        .map(|broker| Candidate {
            id: broker.id,
            rack: broker.rack.clone(),
        })
        .collect()
}

/// Replica lists for `count` new partitions starting at index `first`, or Kafka's
/// INVALID_REPLICATION_FACTOR when they cannot be placed.
fn place(
    candidates: &[Candidate],
    first: usize,
    count: usize,
    replication_factor: i16,
    rotation: usize,
) -> Result<Vec<Vec<i32>>, MetadataError> {
    let replication_factor = usize::try_from(replication_factor).unwrap_or(0);
    place_replicas(candidates, first, count, replication_factor, rotation).map_err(|error| {
        MetadataError::of(
            ErrorCode::InvalidReplicationFactor,
            format!("Unable to replicate the partition {replication_factor} time(s): {error}"),
        )
    })
}

/// The rotation that puts a topic's partition 0 leader where it is, so new partitions continue
/// the topic's rotation.
fn topic_rotation(topic: &TopicImage, candidates: &[Candidate]) -> usize {
    let Some(leader) = topic.partitions.get(&0).and_then(|p| p.replicas.first()) else {
        return 0;
    };
    (0..candidates.len())
        .find(|&rotation| {
            place_replicas(candidates, 0, 1, 1, rotation)
                .ok()
                .and_then(|placed| placed.first().and_then(|r| r.first().copied()))
                == Some(*leader)
        })
        .unwrap_or(0)
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

/// A new partition with `replicas` (leader first), all in sync.
fn new_partition_record(topic_id: Uuid, partition: i32, replicas: Vec<i32>) -> MetadataRecord {
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
