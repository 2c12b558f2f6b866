//! The quorum seam: how the controller gets metadata records committed. A [`Quorum`] takes a batch
//! of serialized records from the active controller, appends it to the replicated metadata log,
//! and resolves once the batch is committed and applied to the [`crate::state::MetadataState`] it
//! drives (which publishes the new image). [`crate::local_quorum::LocalQuorum`] is the single-node
//! implementation; a Raft quorum of controllers implements the same trait.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A proposal in flight: resolves to the committed offset of the entry.
pub type ProposeFuture<'a> = Pin<Box<dyn Future<Output = Result<i64, QuorumError>> + Send + 'a>>;

/// Why a proposal was not committed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuorumError {
    /// This node is not the quorum leader (the active controller); `leader` is who is, if known.
    #[error("this node is not the active controller (leader: {leader:?})")]
    NotLeader { leader: Option<i32> },
    /// The metadata log could not be written; the message says what failed.
    #[error("metadata log: {0}")]
    Storage(String),
    /// The quorum is stopping.
    #[error("the metadata quorum is shutting down")]
    ShuttingDown,
}

/// What a node knows about the quorum right now, in the shape of Kafka's DescribeQuorum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumStatus {
    pub node_id: i32,
    /// The current leader (active controller), if one is known.
    pub leader_id: Option<i32>,
    /// The current epoch (Raft term).
    pub epoch: i32,
    /// The offset after the last committed entry.
    pub high_watermark: i64,
    /// The voters, in id order; their progress is known only on the leader.
    pub voters: Vec<ReplicaStatus>,
    /// Members that follow the log without voting (brokers), in id order.
    pub observers: Vec<ReplicaStatus>,
}

impl QuorumStatus {
    /// The voters' ids.
    pub fn voter_ids(&self) -> Vec<i32> {
        self.voters.iter().map(|v| v.node_id).collect()
    }
}

/// One member of the quorum and, as the leader sees it, how far it has replicated the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    pub node_id: i32,
    /// The member's controller endpoint (`host:port`) as the membership records it, if any.
    pub endpoint: Option<String>,
    /// The offset after the last entry known to be in the member's log: for the leader its own
    /// log end; `None` when unknown (this node is not the leader, or has not heard back yet).
    pub log_end_offset: Option<i64>,
    /// When (ms since the Unix epoch) the member last acknowledged the leader's replication
    /// (Kafka's last fetch); the leader reports now for itself.
    pub last_fetch_ms: Option<i64>,
    /// When (ms since the Unix epoch) the member last had every entry the leader had appended
    /// when it sent that member's latest replication request; the leader reports now for itself.
    pub last_caught_up_ms: Option<i64>,
}

/// Wall-clock milliseconds since the Unix epoch, as DescribeQuorum's timestamps are.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A replicated metadata log, seen from the controller.
pub trait Quorum: Send + Sync + std::fmt::Debug {
    /// Appends `records` as one entry through the leader and resolves with its offset once it is
    /// committed and applied to the metadata state.
    fn propose(&self, records: Vec<Bytes>) -> ProposeFuture<'_>;

    /// The quorum as this node sees it.
    fn status(&self) -> QuorumStatus;
}
