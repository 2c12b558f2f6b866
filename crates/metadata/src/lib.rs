//! Strom's cluster metadata, kept as a log of typed records like Kafka's KRaft `__cluster_metadata`
//! log: topics, partitions, configs, producer-id blocks and broker registrations change only by
//! committing a batch of records to the metadata log.
//!
//! The seams, in the order a change travels:
//! - [`controller::Controller`] validates a request against the current image and its own pending
//!   records and turns it into a batch of records;
//! - a [`quorum::Quorum`] commits the batch to the replicated metadata log ([`log`], with
//!   [`snapshot`]s and the durable vote in [`quorum_state`]); [`local_quorum::LocalQuorum`] is the
//!   single-voter implementation, [`raft::RaftQuorum`] the replicated one (on openraft);
//! - the [`state::MetadataState`] applies committed entries to the immutable
//!   [`image::MetadataImage`] and publishes each new image; brokers turn image changes into effects.

pub mod config;
pub mod control_records;
pub mod controller;
pub mod error;
pub mod image;
pub mod leadership;
pub mod local_quorum;
pub mod log;
pub mod meta_properties;
pub mod partition_change;
pub mod placement;
pub mod quorum;
pub mod quorum_state;
pub mod raft;
pub mod records;
pub mod snapshot;
pub mod state;

pub use config::{ConfigOp, ConfigOpType};
pub use controller::{AlterPartitionRequest, Controller, PartitionState, TopicSummary};
pub use error::MetadataError;
pub use image::{
    BrokerListener, BrokerRegistration, MetadataImage, PartitionImage, TopicChanges, TopicImage,
};
pub use local_quorum::LocalQuorum;
pub use quorum::{Quorum, QuorumError, QuorumStatus, ReplicaStatus};
pub use raft::{RaftQuorum, RaftQuorumConfig};
pub use state::MetadataState;
