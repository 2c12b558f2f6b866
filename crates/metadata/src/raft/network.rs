//! How quorum members reach each other. A [`RaftTransport`] carries opaque request bytes (encoded
//! by [`super::wire`]) to a node id and brings back the answer; it knows nothing of Raft, so the
//! broker can carry it over the controller listener in Kafka-framed, bounded frames. On the
//! receiving node the bytes go to [`RaftRpcHandler::handle`], which decodes them and hands them to
//! the local Raft node.
//!
//! [`InProcessNetwork`] connects nodes of one process directly (tests, and single-process
//! clusters), and can cut a node off and heal it.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RPCTypes, Raft};
use serde::de::DeserializeOwned;

use super::convert::kafka_node_id;
use super::election::Liveness;
use super::{wire, TypeConfig};
use crate::quorum::now_ms;

/// Which Raft request a message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RaftRpcKind {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

/// Why a message got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The node could not be reached (down, unknown, cut off); Raft backs off and retries.
    #[error("metadata quorum member {node} is unreachable: {reason}")]
    Unreachable { node: i32, reason: String },
    /// The node received the message but could not read it.
    #[error("metadata quorum member {node} rejected a Raft message: {reason}")]
    Rejected { node: i32, reason: String },
}

/// A message in flight: resolves to the answer's bytes.
pub type TransportFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Bytes, TransportError>> + Send + 'a>>;

/// Whether a node's process is there, as far as its address tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reachability {
    /// It accepts connections.
    Reachable,
    /// Its address refuses connections: nothing listens there, the process is gone.
    Refused,
    /// No answer either way in time (its host or the network may be down).
    Unknown,
}

/// A probe in flight.
pub type ProbeFuture<'a> = Pin<Box<dyn Future<Output = Reachability> + Send + 'a>>;

/// Carries Raft messages from this node to the others.
pub trait RaftTransport: Send + Sync + fmt::Debug + 'static {
    /// Delivers `request` (a message of kind `kind`) to node `target` and resolves with its
    /// answer. Raft bounds the wait with its own timeout.
    fn send(&self, target: i32, kind: RaftRpcKind, request: Bytes) -> TransportFuture<'_>;

    /// Finds out within `timeout` whether node `target`'s process is there (without sending it
    /// anything): a follower whose leader went silent asks this to tell a dead process from a
    /// slow or unreachable one.
    fn probe(&self, target: i32, timeout: Duration) -> ProbeFuture<'_>;
}

/// The receiving end of a node's Raft messages.
#[derive(Clone)]
pub struct RaftRpcHandler {
    node_id: i32,
    raft: Raft<TypeConfig>,
    liveness: Arc<Liveness>,
}

impl fmt::Debug for RaftRpcHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RaftRpcHandler")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl RaftRpcHandler {
    pub(crate) fn new(node_id: i32, raft: Raft<TypeConfig>, liveness: Arc<Liveness>) -> Self {
        Self {
            node_id,
            raft,
            liveness,
        }
    }

    /// Handles one request and returns the answer to send back; an error means the request did
    /// not decode (the answer is then [`TransportError::Rejected`]).
    pub async fn handle(&self, kind: RaftRpcKind, request: Bytes) -> Result<Bytes, String> {
        let answer = match kind {
            RaftRpcKind::AppendEntries => {
                let request = wire::decode_append_entries(request).map_err(|e| e.to_string())?;
                let result = self.raft.append_entries(request).await;
                // Anything but a refusal of the sender's epoch is word from the leader.
                if matches!(&result, Ok(response) if !matches!(response, AppendEntriesResponse::HigherVote(_)))
                {
                    self.liveness.record_contact();
                }
                wire::encode_plain(&result)
            }
            RaftRpcKind::Vote => {
                let request: VoteRequest<u64> =
                    wire::decode_plain(request).map_err(|e| e.to_string())?;
                wire::encode_plain(&self.raft.vote(request).await)
            }
            RaftRpcKind::InstallSnapshot => {
                let request = wire::decode_install_snapshot(request).map_err(|e| e.to_string())?;
                let vote = request.vote;
                let result = self.raft.install_snapshot(request).await;
                if matches!(&result, Ok(response) if response.vote == vote) {
                    self.liveness.record_contact();
                }
                wire::encode_plain(&result)
            }
        };
        answer.map_err(|e| e.to_string())
    }
}

/// Makes openraft's per-peer clients over a transport.
pub(crate) struct NetworkFactory {
    node_id: u64,
    transport: Arc<dyn RaftTransport>,
    liveness: Arc<Liveness>,
    /// How long the leader waits before retrying an unreachable member.
    retry_after: Duration,
}

impl NetworkFactory {
    pub(crate) fn new(
        node_id: u64,
        transport: Arc<dyn RaftTransport>,
        liveness: Arc<Liveness>,
        retry_after: Duration,
    ) -> Self {
        Self {
            node_id,
            transport,
            liveness,
            retry_after,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> Peer {
        Peer {
            node_id: self.node_id,
            target,
            transport: self.transport.clone(),
            liveness: self.liveness.clone(),
            retry_after: self.retry_after,
        }
    }
}

/// openraft's client of one peer; records what the peer answers to appends and votes.
pub(crate) struct Peer {
    node_id: u64,
    target: u64,
    transport: Arc<dyn RaftTransport>,
    liveness: Arc<Liveness>,
    retry_after: Duration,
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<u64, BasicNode, RaftError<u64, E>>>;

impl Peer {
    /// Sends `request` and reads the answer: the receiver's response, or the error its Raft
    /// returned.
    async fn call<T, E>(
        &self,
        kind: RaftRpcKind,
        action: RPCTypes,
        request: Result<Bytes, wire::WireError>,
        timeout: Duration,
    ) -> RpcResult<T, E>
    where
        T: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let request = request.map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let target = kafka_node_id(self.target);
        let sent = self.transport.send(target, kind, request);
        let answer = match tokio::time::timeout(timeout, sent).await {
            Err(_) => {
                return Err(RPCError::Timeout(Timeout {
                    action,
                    id: self.node_id,
                    target: self.target,
                    timeout,
                }))
            }
            Ok(Err(error @ TransportError::Unreachable { .. })) => {
                return Err(RPCError::Unreachable(Unreachable::new(&error)))
            }
            Ok(Err(error @ TransportError::Rejected { .. })) => {
                return Err(RPCError::Network(NetworkError::new(&error)))
            }
            Ok(Ok(answer)) => answer,
        };
        let result: Result<T, RaftError<u64, E>> =
            wire::decode_plain(answer).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|error| RPCError::RemoteError(RemoteError::new(self.target, error)))
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    /// A member that was unreachable is tried again after a heartbeat interval (openraft's
    /// default is 500 ms): a restarted member hears from its leader well within the fetch
    /// timeout, instead of starting an election. The transport bounds connection attempts on its
    /// own.
    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(self.retry_after))
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>> {
        let request = wire::encode_append_entries(&rpc);
        let term = rpc.vote.leader_id().get_term();
        let reaches = rpc
            .entries
            .last()
            .map(|entry| entry.log_id.index)
            .or(rpc.prev_log_id.map(|id| id.index));
        let sent_ms = now_ms();
        let leader_last = self.liveness.last_log_index();
        let result = self
            .call(
                RaftRpcKind::AppendEntries,
                RPCTypes::AppendEntries,
                request,
                option.hard_ttl(),
            )
            .await;
        let matched = match &result {
            Ok(AppendEntriesResponse::Success) => Some(Some(reaches)),
            Ok(AppendEntriesResponse::PartialSuccess(matched)) => {
                Some(Some(matched.map(|id| id.index)))
            }
            Ok(AppendEntriesResponse::Conflict) => Some(None),
            Ok(AppendEntriesResponse::HigherVote(_)) | Err(_) => None,
        };
        if let Some(matched) = matched {
            self.liveness
                .record_ack(term, self.target, sent_ms, matched, leader_last);
        }
        result
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<u64>, InstallSnapshotError> {
        let request = wire::encode_install_snapshot(&rpc);
        self.call(
            RaftRpcKind::InstallSnapshot,
            RPCTypes::InstallSnapshot,
            request,
            option.hard_ttl(),
        )
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<u64>> {
        let request = wire::encode_plain(&rpc);
        let term = rpc.vote.leader_id().get_term();
        let result: RpcResult<VoteResponse<u64>> = self
            .call(
                RaftRpcKind::Vote,
                RPCTypes::Vote,
                request,
                option.hard_ttl(),
            )
            .await;
        if !matches!(&result, Ok(response) if response.vote_granted) {
            self.liveness.record_refusal(term, self.target);
        }
        result
    }
}

/// Nodes of one process, connected directly; any node can be cut off from all others and healed.
#[derive(Debug, Default)]
pub struct InProcessNetwork {
    nodes: Mutex<InProcessNodes>,
}

#[derive(Debug, Default)]
struct InProcessNodes {
    handlers: HashMap<i32, RaftRpcHandler>,
    isolated: HashSet<i32>,
}

impl InProcessNetwork {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The transport node `from` sends with.
    pub fn transport(self: &Arc<Self>, from: i32) -> Arc<dyn RaftTransport> {
        Arc::new(InProcessTransport {
            network: self.clone(),
            from,
        })
    }

    /// Makes a node reachable (again, after a restart).
    pub fn register(&self, handler: RaftRpcHandler) {
        self.lock().handlers.insert(handler.node_id, handler);
    }

    /// Makes a node unreachable, as if its process had stopped.
    pub fn unregister(&self, node_id: i32) {
        self.lock().handlers.remove(&node_id);
    }

    /// Cuts `node_id` off: nothing it sends arrives and nothing reaches it.
    pub fn isolate(&self, node_id: i32) {
        self.lock().isolated.insert(node_id);
    }

    /// Reconnects a node cut off by [`Self::isolate`].
    pub fn heal(&self, node_id: i32) {
        self.lock().isolated.remove(&node_id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, InProcessNodes> {
        self.nodes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The handler of `to` if a message from `from` can reach it now.
    fn route(&self, from: i32, to: i32) -> Result<RaftRpcHandler, TransportError> {
        let nodes = self.lock();
        let unreachable = |reason: &str| TransportError::Unreachable {
            node: to,
            reason: reason.into(),
        };
        if nodes.isolated.contains(&from) || nodes.isolated.contains(&to) {
            return Err(unreachable("cut off"));
        }
        nodes
            .handlers
            .get(&to)
            .cloned()
            .ok_or_else(|| unreachable("not running"))
    }
}

#[derive(Debug)]
struct InProcessTransport {
    network: Arc<InProcessNetwork>,
    from: i32,
}

impl RaftTransport for InProcessTransport {
    fn send(&self, target: i32, kind: RaftRpcKind, request: Bytes) -> TransportFuture<'_> {
        Box::pin(async move {
            let handler = self.network.route(self.from, target)?;
            let answer =
                handler
                    .handle(kind, request)
                    .await
                    .map_err(|reason| TransportError::Rejected {
                        node: target,
                        reason,
                    })?;
            // A node cut off while the request was being handled loses the answer.
            self.network.route(self.from, target)?;
            Ok(answer)
        })
    }

    /// A stopped node refuses; a node cut off (or cut off from) does not answer at all.
    fn probe(&self, target: i32, _timeout: Duration) -> ProbeFuture<'_> {
        Box::pin(async move {
            let nodes = self.network.lock();
            if nodes.isolated.contains(&self.from) || nodes.isolated.contains(&target) {
                Reachability::Unknown
            } else if nodes.handlers.contains_key(&target) {
                Reachability::Reachable
            } else {
                Reachability::Refused
            }
        })
    }
}
