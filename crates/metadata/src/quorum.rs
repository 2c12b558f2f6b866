//! The quorum seam: how the controller gets metadata records committed. A [`Quorum`] takes a batch
//! of serialized records from the active controller, appends it to the replicated metadata log,
//! and resolves once the batch is committed and applied to the [`crate::state::MetadataState`] it
//! drives (which publishes the new image). [`crate::local_quorum::LocalQuorum`] is the single-node
//! implementation; a Raft quorum of controllers implements the same trait.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;

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

/// What a node knows about the quorum right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumStatus {
    pub node_id: i32,
    /// The current leader (active controller), if one is known.
    pub leader_id: Option<i32>,
    /// The current epoch (Raft term).
    pub epoch: i32,
    /// The offset after the last committed entry.
    pub high_watermark: i64,
    /// The voters' ids.
    pub voters: Vec<i32>,
}

/// A replicated metadata log, seen from the controller.
pub trait Quorum: Send + Sync + std::fmt::Debug {
    /// Appends `records` as one entry through the leader and resolves with its offset once it is
    /// committed and applied to the metadata state.
    fn propose(&self, records: Vec<Bytes>) -> ProposeFuture<'_>;

    /// The quorum as this node sees it.
    fn status(&self) -> QuorumStatus;
}
