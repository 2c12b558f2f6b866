//! How request handlers reach the controller. Handlers never change metadata themselves: they ask
//! the controller, which commits records through the quorum, and then read the image this broker
//! publishes once it has applied those records ([`crate::state::Broker::catch_up_with_controller`]).
//!
//! A zero-config single node runs its own controller ([`ControllerClient::Local`]); a node of a
//! Raft cluster ([`ControllerClient::Quorum`]) runs calls on its own controller when it is the
//! active one and sends them to the active controller over the controller listener otherwise
//! ([`crate::controller_rpc`]).

use std::sync::Arc;

use strom_metadata::controller::{
    AlterPartitionRequest, BrokerHeartbeatReply, BrokerHeartbeatRequest, BrokerRegistrationRequest,
    ElectionType, PartitionState, ReassignmentTargets, TopicOutcomes, TopicReassignments,
};
use strom_metadata::{ConfigOp, Controller, MetadataError, QuorumStatus, TopicSummary};
use strom_protocol::codec::Uuid;

use crate::controller_rpc::{
    heartbeat_reply, unexpected_reply, wire_ops, ControllerCall, ControllerReply,
    QuorumControllerClient,
};

/// The controller as a broker's handlers see it.
#[derive(Debug, Clone)]
pub enum ControllerClient {
    /// The controller of this process (combined broker + controller).
    Local(Arc<Controller>),
    /// A node of a Raft cluster: the active controller may be this node or another.
    Quorum(Arc<QuorumControllerClient>),
}

fn expect_done(reply: ControllerReply) -> Result<(), MetadataError> {
    match reply {
        ControllerReply::Done => Ok(()),
        other => Err(unexpected_reply(&other)),
    }
}

impl ControllerClient {
    /// The id of the active controller, as Metadata and DescribeCluster report it.
    pub fn active_controller_id(&self) -> Option<i32> {
        match self {
            Self::Local(controller) => controller.quorum().status().leader_id,
            Self::Quorum(client) => client.local.quorum().status().leader_id,
        }
    }

    /// Offset of the newest metadata entry the controller has committed and applied; a broker
    /// that has published this offset sees every change the controller has answered for.
    pub fn committed_offset(&self) -> i64 {
        match self {
            Self::Local(controller) => controller.image().last_offset,
            Self::Quorum(client) => client.committed_offset(),
        }
    }

    /// Registers this broker (a new incarnation is recorded fenced); returns its broker epoch.
    pub async fn register(&self, request: BrokerRegistrationRequest) -> Result<i64, MetadataError> {
        match self {
            Self::Local(c) => c.register(request).await,
            Self::Quorum(client) => match client.call(ControllerCall::register(&request)).await? {
                ControllerReply::BrokerEpoch { epoch } => Ok(epoch),
                other => Err(unexpected_reply(&other)),
            },
        }
    }

    /// Sends one heartbeat of this broker.
    pub async fn heartbeat(
        &self,
        request: BrokerHeartbeatRequest,
    ) -> Result<BrokerHeartbeatReply, MetadataError> {
        match self {
            Self::Local(c) => c.heartbeat(request).await,
            Self::Quorum(client) => {
                heartbeat_reply(client.call(ControllerCall::heartbeat(&request)).await?)
            }
        }
    }

    pub async fn create_topic(
        &self,
        name: &str,
        num_partitions: i32,
        replication_factor: i16,
        configs: &[(String, String)],
        validate_only: bool,
    ) -> Result<TopicSummary, MetadataError> {
        match self {
            Self::Local(c) => {
                c.create_topic(
                    name,
                    num_partitions,
                    replication_factor,
                    configs,
                    validate_only,
                )
                .await
            }
            Self::Quorum(client) => {
                let call = ControllerCall::CreateTopic {
                    name: name.to_string(),
                    num_partitions,
                    replication_factor,
                    configs: configs.to_vec(),
                    validate_only,
                };
                match client.call(call).await? {
                    ControllerReply::Topic {
                        name,
                        topic_id,
                        num_partitions,
                        replication_factor,
                        configs,
                    } => Ok(TopicSummary {
                        name,
                        topic_id,
                        num_partitions,
                        replication_factor,
                        configs,
                    }),
                    other => Err(unexpected_reply(&other)),
                }
            }
        }
    }

    pub async fn delete_topic(&self, name: &str) -> Result<Uuid, MetadataError> {
        match self {
            Self::Local(c) => c.delete_topic(name).await,
            Self::Quorum(client) => {
                let call = ControllerCall::DeleteTopic {
                    name: name.to_string(),
                };
                match client.call(call).await? {
                    ControllerReply::TopicId { topic_id } => Ok(topic_id),
                    other => Err(unexpected_reply(&other)),
                }
            }
        }
    }

    pub async fn create_partitions(
        &self,
        name: &str,
        new_total: i32,
        validate_only: bool,
    ) -> Result<(), MetadataError> {
        match self {
            Self::Local(c) => c.create_partitions(name, new_total, validate_only).await,
            Self::Quorum(client) => expect_done(
                client
                    .call(ControllerCall::CreatePartitions {
                        name: name.to_string(),
                        new_total,
                        validate_only,
                    })
                    .await?,
            ),
        }
    }

    pub async fn alter_topic_configs(
        &self,
        name: &str,
        ops: &[ConfigOp],
        validate_only: bool,
    ) -> Result<(), MetadataError> {
        match self {
            Self::Local(c) => c.alter_topic_configs(name, ops, validate_only).await,
            Self::Quorum(client) => expect_done(
                client
                    .call(ControllerCall::AlterTopicConfigs {
                        name: name.to_string(),
                        ops: wire_ops(ops),
                        validate_only,
                    })
                    .await?,
            ),
        }
    }

    pub async fn replace_topic_configs(
        &self,
        name: &str,
        configs: &[(String, String)],
        validate_only: bool,
    ) -> Result<(), MetadataError> {
        match self {
            Self::Local(c) => c.replace_topic_configs(name, configs, validate_only).await,
            Self::Quorum(client) => expect_done(
                client
                    .call(ControllerCall::ReplaceTopicConfigs {
                        name: name.to_string(),
                        configs: configs.to_vec(),
                        validate_only,
                    })
                    .await?,
            ),
        }
    }

    pub async fn alter_broker_configs(
        &self,
        broker_id: Option<i32>,
        ops: &[ConfigOp],
        validate_only: bool,
    ) -> Result<(), MetadataError> {
        match self {
            Self::Local(c) => c.alter_broker_configs(broker_id, ops, validate_only).await,
            Self::Quorum(client) => expect_done(
                client
                    .call(ControllerCall::AlterBrokerConfigs {
                        broker_id,
                        ops: wire_ops(ops),
                        validate_only,
                    })
                    .await?,
            ),
        }
    }

    pub async fn replace_broker_configs(
        &self,
        broker_id: Option<i32>,
        configs: &[(String, String)],
        validate_only: bool,
    ) -> Result<(), MetadataError> {
        match self {
            Self::Local(c) => {
                c.replace_broker_configs(broker_id, configs, validate_only)
                    .await
            }
            Self::Quorum(client) => expect_done(
                client
                    .call(ControllerCall::ReplaceBrokerConfigs {
                        broker_id,
                        configs: configs.to_vec(),
                        validate_only,
                    })
                    .await?,
            ),
        }
    }

    /// The metadata quorum as the active controller sees it (with every member's progress).
    pub async fn describe_quorum(&self) -> Result<QuorumStatus, MetadataError> {
        match self {
            Self::Local(c) => Ok(c.quorum().status()),
            Self::Quorum(client) => match client.call(ControllerCall::DescribeQuorum).await? {
                ControllerReply::Quorum { status } => Ok(status),
                other => Err(unexpected_reply(&other)),
            },
        }
    }

    /// Reserves a block of `size` producer ids: (first id, size).
    pub async fn allocate_producer_id_block(&self, size: i64) -> Result<(i64, i64), MetadataError> {
        match self {
            Self::Local(c) => c.allocate_producer_id_block(size).await,
            Self::Quorum(client) => {
                match client
                    .call(ControllerCall::AllocateProducerIds { size })
                    .await?
                {
                    ControllerReply::ProducerIds { first, size } => Ok((first, size)),
                    other => Err(unexpected_reply(&other)),
                }
            }
        }
    }

    /// Asks the controller to change a partition's ISR (this broker leads it); answers the
    /// committed state, which the new ISR may be used from.
    pub async fn alter_partition(
        &self,
        request: AlterPartitionRequest,
    ) -> Result<PartitionState, MetadataError> {
        match self {
            Self::Local(c) => c.alter_partition(request).await,
            Self::Quorum(client) => {
                match client.call(ControllerCall::AlterPartition(request)).await? {
                    ControllerReply::PartitionState(state) => Ok(state),
                    other => Err(unexpected_reply(&other)),
                }
            }
        }
    }

    /// ElectLeaders for `topics` (every partition for `None`).
    pub async fn elect_leaders(
        &self,
        election: ElectionType,
        topics: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<Vec<TopicOutcomes>, MetadataError> {
        match self {
            Self::Local(c) => c.elect_leaders(election, topics).await,
            Self::Quorum(client) => {
                match client
                    .call(ControllerCall::ElectLeaders { election, topics })
                    .await?
                {
                    ControllerReply::Elections { results } => Ok(results),
                    other => Err(unexpected_reply(&other)),
                }
            }
        }
    }

    /// AlterPartitionReassignments: per partition a target replica list, or `None` to cancel.
    pub async fn alter_partition_reassignments(
        &self,
        topics: Vec<ReassignmentTargets>,
    ) -> Result<Vec<TopicOutcomes>, MetadataError> {
        match self {
            Self::Local(c) => c.alter_partition_reassignments(topics).await,
            Self::Quorum(client) => {
                match client
                    .call(ControllerCall::AlterPartitionReassignments { topics })
                    .await?
                {
                    ControllerReply::Reassignments { results } => Ok(results),
                    other => Err(unexpected_reply(&other)),
                }
            }
        }
    }

    /// ListPartitionReassignments of `topics` (every partition for `None`), as the active
    /// controller knows them.
    pub async fn list_partition_reassignments(
        &self,
        topics: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<Vec<TopicReassignments>, MetadataError> {
        match self {
            Self::Local(c) => Ok(c.list_partition_reassignments(topics)),
            Self::Quorum(client) => {
                match client
                    .call(ControllerCall::ListPartitionReassignments { topics })
                    .await?
                {
                    ControllerReply::OngoingReassignments { topics } => Ok(topics),
                    other => Err(unexpected_reply(&other)),
                }
            }
        }
    }
}
