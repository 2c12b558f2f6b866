//! The controller's replication control (Kafka's `ReplicationControlManager` for partitions):
//! AlterPartition from partition leaders, ElectLeaders and partition reassignments
//! (AlterPartitionReassignments, ListPartitionReassignments). Every change goes through
//! [`PartitionChange`].

use serde::{Deserialize, Serialize};
use strom_protocol::codec::Uuid;
use strom_protocol::ErrorCode;

use super::Controller;
use crate::error::MetadataError;
use crate::image::{MetadataImage, PartitionImage, TopicImage, NO_LEADER_CHANGE};
use crate::leadership::is_live;
use crate::partition_change::{Election, PartitionChange};
use crate::records::MetadataRecord;

/// A partition leader's request to change its ISR (Kafka's AlterPartition, one partition).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlterPartitionRequest {
    /// The leader asking.
    pub broker_id: i32,
    pub broker_epoch: i64,
    pub topic_id: Uuid,
    pub partition: i32,
    /// The leader and partition epochs the leader knows.
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<i32>,
}

/// A partition's committed leadership, as AlterPartition answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub isr: Vec<i32>,
}

impl PartitionState {
    fn of(partition: &PartitionImage) -> Self {
        Self {
            leader: partition.leader,
            leader_epoch: partition.leader_epoch,
            partition_epoch: partition.partition_epoch,
            isr: partition.isr.clone(),
        }
    }
}

impl Controller {
    /// A partition leader changes its ISR (Kafka's AlterPartition, as its
    /// `ReplicationControlManager` validates it, in the same order): the requester's broker
    /// epoch (STALE_BROKER_EPOCH), the topic id (UNKNOWN_TOPIC_ID) and partition
    /// (UNKNOWN_TOPIC_OR_PARTITION); epochs newer than the controller's mean this controller is
    /// behind (NOT_CONTROLLER, so the caller retries where the metadata is current); an older
    /// leader epoch is FENCED_LEADER_EPOCH; a requester that is not the leader is INVALID_REQUEST
    /// (Kafka's code: with a current leader epoch only a confused broker gets there); an older
    /// partition epoch is INVALID_UPDATE_VERSION; an ISR with duplicates, non-replicas or without
    /// the leader is INVALID_REQUEST, one with a member that is not registered, fenced or shutting
    /// down INELIGIBLE_REPLICA. An ISR equal to the current one commits nothing. Answers the
    /// committed state: the new ISR takes effect only once committed. An ISR that completes a
    /// reassignment which removes the requester is committed and answered NEW_LEADER_ELECTED.
    pub async fn alter_partition(
        &self,
        request: AlterPartitionRequest,
    ) -> Result<PartitionState, MetadataError> {
        let _operation = self.operations.lock().await;
        let image = self.image();
        let record = {
            let (topic, partition) = validate_alter_partition(&image, &request)?;
            let election = if self.unclean_election_enabled(&image, topic) {
                Election::Unclean
            } else {
                Election::Online
            };
            PartitionChange::new(topic.id, request.partition, partition)
                .target_isr(request.new_isr.clone())
                .election(election)
                .build(|broker| is_live(&image, broker))
        };
        let Some(record) = record else {
            return current_partition_state(&image, &request);
        };
        tracing::debug!(
            broker = request.broker_id,
            partition = request.partition,
            isr = ?record.isr,
            "AlterPartition: ISR changed"
        );
        let new_leader = record.leader;
        self.commit(&image, vec![MetadataRecord::PartitionChange(record)])
            .await?;
        if new_leader != NO_LEADER_CHANGE && new_leader != request.broker_id {
            // The ISR change completed a reassignment that removed the requester, its leader
            // (Kafka answers so too: the change is committed, the leader must learn it from the
            // metadata).
            return Err(MetadataError::of(
                ErrorCode::NewLeaderElected,
                format!(
                    "The ISR change completed a reassignment; {new_leader} leads partition {}",
                    request.partition
                ),
            ));
        }
        current_partition_state(&self.image(), &request)
    }
}

/// AlterPartition's checks, in Kafka's order; the topic and partition it changes.
fn validate_alter_partition<'a>(
    image: &'a MetadataImage,
    request: &AlterPartitionRequest,
) -> Result<(&'a TopicImage, &'a PartitionImage), MetadataError> {
    match image.brokers.get(&request.broker_id) {
        None => {
            return Err(MetadataError::of(
                ErrorCode::StaleBrokerEpoch,
                format!(
                    "No broker registration found for broker id {}",
                    request.broker_id
                ),
            ))
        }
        Some(broker) if broker.epoch != request.broker_epoch => {
            return Err(MetadataError::of(
                ErrorCode::StaleBrokerEpoch,
                format!(
                    "Expected broker epoch {}, but got broker epoch {}",
                    broker.epoch, request.broker_epoch
                ),
            ))
        }
        Some(_) => {}
    }
    let topic = image.topic_by_id(&request.topic_id).ok_or_else(|| {
        MetadataError::of(
            ErrorCode::UnknownTopicId,
            format!("Unknown topic id {:?}", request.topic_id),
        )
    })?;
    let name = &topic.name;
    let index = request.partition;
    let partition = topic.partitions.get(&index).ok_or_else(|| {
        MetadataError::of(
            ErrorCode::UnknownTopicOrPartition,
            format!("Unknown partition {name}-{index}"),
        )
    })?;
    let refuse = |code: ErrorCode, message: String| {
        Err(MetadataError::of(
            code,
            format!(
                "AlterPartition from broker {} for {name}-{index}: {message}",
                request.broker_id
            ),
        ))
    };
    if request.leader_epoch > partition.leader_epoch
        || request.partition_epoch > partition.partition_epoch
    {
        return refuse(
            ErrorCode::NotController,
            format!(
                "epochs (leader {}, partition {}) are newer than this controller's ({}, {})",
                request.leader_epoch,
                request.partition_epoch,
                partition.leader_epoch,
                partition.partition_epoch
            ),
        );
    }
    if request.leader_epoch < partition.leader_epoch {
        return refuse(
            ErrorCode::FencedLeaderEpoch,
            format!(
                "the current leader epoch is {}, not {}",
                partition.leader_epoch, request.leader_epoch
            ),
        );
    }
    if request.broker_id != partition.leader {
        return refuse(
            ErrorCode::InvalidRequest,
            format!("the current leader is {}", partition.leader),
        );
    }
    if request.partition_epoch < partition.partition_epoch {
        return refuse(
            ErrorCode::InvalidUpdateVersion,
            format!(
                "the current partition epoch is {}, not {}",
                partition.partition_epoch, request.partition_epoch
            ),
        );
    }
    let isr = &request.new_isr;
    let distinct = isr
        .iter()
        .enumerate()
        .all(|(i, member)| !isr[..i].contains(member));
    if !distinct || !isr.iter().all(|member| partition.replicas.contains(member)) {
        return refuse(
            ErrorCode::InvalidRequest,
            format!("invalid ISR {isr:?} for replicas {:?}", partition.replicas),
        );
    }
    if !isr.contains(&partition.leader) {
        return refuse(
            ErrorCode::InvalidRequest,
            format!("the ISR {isr:?} does not include the leader"),
        );
    }
    let ineligible: Vec<String> = isr
        .iter()
        .filter_map(|member| match image.brokers.get(member) {
            None => Some(format!("{member} (not registered)")),
            Some(b) if b.in_controlled_shutdown => Some(format!("{member} (shutting down)")),
            Some(b) if b.fenced => Some(format!("{member} (fenced)")),
            Some(_) => None,
        })
        .collect();
    if !ineligible.is_empty() {
        return refuse(
            ErrorCode::IneligibleReplica,
            format!(
                "ineligible replicas {} in the ISR {isr:?}",
                ineligible.join(", ")
            ),
        );
    }
    Ok((topic, partition))
}

/// The committed state of the partition an AlterPartition named.
fn current_partition_state(
    image: &MetadataImage,
    request: &AlterPartitionRequest,
) -> Result<PartitionState, MetadataError> {
    image
        .topic_by_id(&request.topic_id)
        .and_then(|topic| topic.partitions.get(&request.partition))
        .map(PartitionState::of)
        .ok_or_else(|| {
            MetadataError::of(
                ErrorCode::UnknownTopicOrPartition,
                format!("Partition {} disappeared", request.partition),
            )
        })
}

/// Which leader ElectLeaders asks for (Kafka's `ElectionType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElectionType {
    /// The first replica, if it is live and in sync (code 0).
    Preferred,
    /// Any live replica, for a partition without a leader (code 1).
    Unclean,
}

impl ElectionType {
    /// The election type of an ElectLeaders request's `election_type` code.
    pub fn from_code(code: i8) -> Option<Self> {
        match code {
            0 => Some(Self::Preferred),
            1 => Some(Self::Unclean),
            _ => None,
        }
    }
}

/// One partition's outcome of ElectLeaders or AlterPartitionReassignments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionOutcome {
    pub partition: i32,
    pub error_code: i16,
    pub error_message: Option<String>,
}

/// One topic's outcomes of ElectLeaders or AlterPartitionReassignments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicOutcomes {
    pub topic: String,
    pub partitions: Vec<PartitionOutcome>,
}

impl Controller {
    /// ElectLeaders (Kafka's `ReplicationControlManager.electLeaders`): for each named partition
    /// (all partitions for `None`), a preferred election moves leadership to the first replica
    /// if it is live and in the ISR (ELECTION_NOT_NEEDED if it leads already,
    /// PREFERRED_LEADER_NOT_AVAILABLE if it cannot), an unclean election gives a partition
    /// without a leader any live replica (ELECTION_NOT_NEEDED if it has a leader,
    /// ELIGIBLE_LEADERS_NOT_AVAILABLE if no replica is live). Unknown partitions are
    /// UNKNOWN_TOPIC_OR_PARTITION. For `None`, partitions that need no election are left out of
    /// the answer. All elections are committed as one entry.
    pub async fn elect_leaders(
        &self,
        election: ElectionType,
        topics: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<Vec<TopicOutcomes>, MetadataError> {
        let _operation = self.operations.lock().await;
        let image = self.image();
        let all = topics.is_none();
        let wanted = topics.unwrap_or_else(|| {
            image
                .topics
                .values()
                .map(|t| (t.name.clone(), t.partitions.keys().copied().collect()))
                .collect()
        });
        let mut working = MetadataImage::clone(&image);
        let mut records = Vec::new();
        let mut results = Vec::with_capacity(wanted.len());
        for (topic, partitions) in wanted {
            let mut outcomes = Vec::with_capacity(partitions.len());
            for partition in partitions {
                let outcome = elect_leader(&working, &topic, partition, election);
                let (error_code, error_message) = match outcome {
                    Ok(record) => {
                        let record = MetadataRecord::PartitionChange(record);
                        working
                            .apply_entry(working.last_offset, std::slice::from_ref(&record))
                            .map_err(|e| {
                                MetadataError::of(ErrorCode::UnknownServerError, e.to_string())
                            })?;
                        records.push(record);
                        (ErrorCode::None.code(), None)
                    }
                    Err(error) if all && error.code == ErrorCode::ElectionNotNeeded.code() => {
                        continue;
                    }
                    Err(error) => (error.code, Some(error.message)),
                };
                outcomes.push(PartitionOutcome {
                    partition,
                    error_code,
                    error_message,
                });
            }
            results.push(TopicOutcomes {
                topic,
                partitions: outcomes,
            });
        }
        self.commit(&image, records).await?;
        Ok(results)
    }
}

/// The record of one ElectLeaders election, or why there is none.
fn elect_leader(
    image: &MetadataImage,
    topic_name: &str,
    index: i32,
    election: ElectionType,
) -> Result<crate::records::PartitionChangeRecord, MetadataError> {
    let topic = image.topic(topic_name).ok_or_else(|| {
        MetadataError::of(
            ErrorCode::UnknownTopicOrPartition,
            format!("No such topic as {topic_name}"),
        )
    })?;
    let partition = topic.partitions.get(&index).ok_or_else(|| {
        MetadataError::of(
            ErrorCode::UnknownTopicOrPartition,
            format!("No such partition as {topic_name}-{index}"),
        )
    })?;
    let not_needed = match election {
        ElectionType::Preferred => partition.replicas.first() == Some(&partition.leader),
        ElectionType::Unclean => partition.leader != crate::leadership::NO_LEADER,
    };
    if not_needed {
        return Err(MetadataError::of(
            ErrorCode::ElectionNotNeeded,
            "Leader election not needed for topic partition.",
        ));
    }
    let kind = match election {
        ElectionType::Preferred => Election::Preferred,
        ElectionType::Unclean => Election::Unclean,
    };
    PartitionChange::new(topic.id, index, partition)
        .election(kind)
        .build(|broker| is_live(image, broker))
        .ok_or_else(|| match election {
            ElectionType::Preferred => MetadataError::of(
                ErrorCode::PreferredLeaderNotAvailable,
                format!("The preferred leader of {topic_name}-{index} is not live and in sync."),
            ),
            ElectionType::Unclean => MetadataError::of(
                ErrorCode::EligibleLeadersNotAvailable,
                format!("No live replica of {topic_name}-{index} can lead."),
            ),
        })
}

/// A partition's ongoing reassignment, as ListPartitionReassignments reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OngoingReassignment {
    pub partition: i32,
    /// The target replicas followed by those being removed.
    pub replicas: Vec<i32>,
    pub adding_replicas: Vec<i32>,
    pub removing_replicas: Vec<i32>,
}

/// A topic's ongoing reassignments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicReassignments {
    pub topic: String,
    pub partitions: Vec<OngoingReassignment>,
}

/// What AlterPartitionReassignments asks for one topic: per partition, the target replicas, or
/// `None` to cancel its ongoing reassignment.
pub type ReassignmentTargets = (String, Vec<(i32, Option<Vec<i32>>)>);

impl Controller {
    /// AlterPartitionReassignments (KIP-455, as Kafka's `ReplicationControlManager` does it):
    /// a target replica list of registered, distinct brokers (INVALID_REPLICA_ASSIGNMENT
    /// otherwise) starts a reassignment: the replicas become the target followed by the replicas
    /// being removed, with the adding and removing sets recorded; the reassignment completes
    /// (removed replicas leave, a removed leader is replaced) once every target replica is in the
    /// ISR, which AlterPartition brings about as new replicas catch up. A target that only
    /// reorders or drops replicas completes at once. `None` cancels an ongoing reassignment
    /// (NO_REASSIGNMENT_IN_PROGRESS if there is none): the added replicas leave again, which is
    /// refused (INVALID_REPLICA_ASSIGNMENT) when only they are in sync and the topic does not
    /// allow unclean election. Unknown partitions are UNKNOWN_TOPIC_OR_PARTITION. All changes are
    /// committed as one entry.
    pub async fn alter_partition_reassignments(
        &self,
        topics: Vec<ReassignmentTargets>,
    ) -> Result<Vec<TopicOutcomes>, MetadataError> {
        let _operation = self.operations.lock().await;
        let image = self.image();
        let mut working = MetadataImage::clone(&image);
        let mut records = Vec::new();
        let mut results = Vec::with_capacity(topics.len());
        for (topic, partitions) in topics {
            let mut outcomes = Vec::with_capacity(partitions.len());
            for (partition, target) in partitions {
                let change = self.reassignment_change(&working, &topic, partition, target);
                let (error_code, error_message) = match change {
                    Ok(Some(record)) => {
                        let record = MetadataRecord::PartitionChange(record);
                        working
                            .apply_entry(working.last_offset, std::slice::from_ref(&record))
                            .map_err(|e| {
                                MetadataError::of(ErrorCode::UnknownServerError, e.to_string())
                            })?;
                        records.push(record);
                        (ErrorCode::None.code(), None)
                    }
                    Ok(None) => (ErrorCode::None.code(), None),
                    Err(error) => (error.code, Some(error.message)),
                };
                outcomes.push(PartitionOutcome {
                    partition,
                    error_code,
                    error_message,
                });
            }
            results.push(TopicOutcomes {
                topic,
                partitions: outcomes,
            });
        }
        self.commit(&image, records).await?;
        Ok(results)
    }

    /// The record that starts, changes or cancels one partition's reassignment (`None` when
    /// the partition is already as asked).
    fn reassignment_change(
        &self,
        image: &MetadataImage,
        topic_name: &str,
        index: i32,
        target: Option<Vec<i32>>,
    ) -> Result<Option<crate::records::PartitionChangeRecord>, MetadataError> {
        let topic = image.topic(topic_name).ok_or_else(|| {
            MetadataError::of(
                ErrorCode::UnknownTopicOrPartition,
                format!("Unable to find a topic named {topic_name}."),
            )
        })?;
        let partition = topic.partitions.get(&index).ok_or_else(|| {
            MetadataError::of(
                ErrorCode::UnknownTopicOrPartition,
                format!("Unable to find partition {topic_name}:{index}."),
            )
        })?;
        let unclean = self.unclean_election_enabled(image, topic);
        let election = if unclean {
            Election::Unclean
        } else {
            Election::Online
        };
        let change = PartitionChange::new(topic.id, index, partition).election(election);
        let acceptable = |broker: i32| is_live(image, broker);
        let Some(target) = target else {
            if !partition.is_reassigning() {
                return Err(MetadataError::of(
                    ErrorCode::NoReassignmentInProgress,
                    "No partition reassignment is in progress for this topic or partition.",
                ));
            }
            let adding = &partition.adding_replicas;
            let original: Vec<i32> = without(&partition.replicas, adding);
            let mut isr: Vec<i32> = without(&partition.isr, adding);
            if isr.is_empty() {
                if !unclean {
                    return Err(MetadataError::of(
                        ErrorCode::InvalidReplicaAssignment,
                        format!(
                            "Unable to revert partition assignment for {topic_name}:{index} \
                             because it would require an unclean leader election."
                        ),
                    ));
                }
                isr.extend(original.first());
            }
            return Ok(change
                .target_isr(isr)
                .target_replicas(original, Vec::new(), Vec::new())
                .build(acceptable));
        };
        validate_manual_assignment(image, &target)?;
        let mut removing: Vec<i32> = without(&partition.replicas, &target);
        removing.sort_unstable();
        let mut adding: Vec<i32> = without(&target, &partition.replicas);
        adding.sort_unstable();
        let mut replicas = target;
        replicas.extend(&removing);
        // As Kafka does, an empty set keeps what an ongoing reassignment recorded.
        if removing.is_empty() {
            removing.clone_from(&partition.removing_replicas);
        }
        if adding.is_empty() {
            adding.clone_from(&partition.adding_replicas);
        }
        Ok(change
            .target_replicas(replicas, adding, removing)
            .build(acceptable))
    }

    /// ListPartitionReassignments: the ongoing reassignments of the named partitions (unknown
    /// topics and partitions without one are left out), or of every partition for `None`.
    pub fn list_partition_reassignments(
        &self,
        topics: Option<Vec<(String, Vec<i32>)>>,
    ) -> Vec<TopicReassignments> {
        let image = self.image();
        let wanted = topics.unwrap_or_else(|| {
            image
                .topics
                .values()
                .map(|t| (t.name.clone(), t.partitions.keys().copied().collect()))
                .collect()
        });
        wanted
            .into_iter()
            .filter_map(|(name, partitions)| {
                let topic = image.topic(&name)?;
                let ongoing: Vec<OngoingReassignment> = partitions
                    .into_iter()
                    .filter_map(|index| {
                        let partition = topic.partitions.get(&index)?;
                        partition.is_reassigning().then(|| OngoingReassignment {
                            partition: index,
                            replicas: partition.replicas.clone(),
                            adding_replicas: partition.adding_replicas.clone(),
                            removing_replicas: partition.removing_replicas.clone(),
                        })
                    })
                    .collect();
                (!ongoing.is_empty()).then_some(TopicReassignments {
                    topic: name,
                    partitions: ongoing,
                })
            })
            .collect()
    }
}

/// `list` without the members of `removed`, in order.
fn without(list: &[i32], removed: &[i32]) -> Vec<i32> {
    list.iter()
        .copied()
        .filter(|r| !removed.contains(r))
        .collect()
}

/// A replica list given by hand: not empty, registered brokers, none twice (Kafka's
/// `validateManualPartitionAssignment`).
fn validate_manual_assignment(
    image: &MetadataImage,
    replicas: &[i32],
) -> Result<(), MetadataError> {
    let invalid = |message: String| MetadataError::of(ErrorCode::InvalidReplicaAssignment, message);
    if replicas.is_empty() {
        return Err(invalid(
            "The manual partition assignment includes an empty replica list.".into(),
        ));
    }
    let mut sorted = replicas.to_vec();
    sorted.sort_unstable();
    for (i, broker) in sorted.iter().enumerate() {
        if !image.brokers.contains_key(broker) {
            return Err(invalid(format!(
                "The manual partition assignment includes broker {broker}, but no such broker is registered."
            )));
        }
        if i > 0 && sorted[i - 1] == *broker {
            return Err(invalid(format!(
                "The manual partition assignment includes the broker {broker} more than once."
            )));
        }
    }
    Ok(())
}
