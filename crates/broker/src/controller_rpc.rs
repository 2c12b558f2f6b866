//! The controller listener and the client side of it: how the nodes of a cluster reach each
//! other's controllers. It carries two kinds of traffic, both Strom-private:
//!
//! - Raft messages of the metadata quorum (the bytes of [`RaftTransport`], handed to the local
//!   [`RaftRpcHandler`]);
//! - broker→controller calls (registration, heartbeats, topic and config changes, producer-id
//!   blocks, ISR changes, leader elections, reassignments), sent to the active controller by nodes that are not it.
//!
//! # Framing
//!
//! Every request is `size: i32 (big endian) | kind: u8 | payload`, where `size` counts the kind
//! byte and the payload; every answer is `size: i32 | status: u8 | payload` with status 0 (the
//! payload is the answer) or 1 (the payload is a UTF-8 error message). Kinds: 0 AppendEntries,
//! 1 Vote, 2 InstallSnapshot (payload: the quorum's own encoding of the Raft message), 3 a
//! controller call. A connection carries one request at a time. A frame larger than
//! `socket.request.max.bytes` or empty, an unknown kind, or a controller call that does not
//! decode closes the connection with a log line, as does `connections.max.idle.ms` without a
//! request. A frame's memory grows with the bytes that arrive, not with its announced size.
//!
//! # Controller calls
//!
//! A controller call is a small serde_json envelope ([`ControllerCall`], answered by a
//! [`ControllerAnswer`]). JSON rather than Kafka's BrokerRegistration/CreateTopics/... request
//! types because the calls mirror the [`Controller`]'s Rust API one to one (including operations
//! Kafka forwards inside an Envelope request, such as config changes), so one small enum replaces
//! ten request/response conversions, and the traffic is tiny and infrequent. The answer carries
//! the offset the active controller has committed and applied, so the caller can wait for its own
//! copy of the metadata to reach it.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use strom_metadata::controller::{
    AlterPartitionRequest, BrokerHeartbeatReply, BrokerHeartbeatRequest, BrokerRegistrationRequest,
    ElectionType, PartitionState, ReassignmentTargets, TopicOutcomes, TopicReassignments,
};
use strom_metadata::raft::{
    ProbeFuture, RaftRpcHandler, RaftRpcKind, RaftTransport, Reachability, TransportError,
    TransportFuture,
};
use strom_metadata::{
    BrokerListener, ConfigOp, ConfigOpType, Controller, MetadataError, QuorumStatus,
};
use strom_protocol::ErrorCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Request kinds of the controller listener.
const KIND_APPEND_ENTRIES: u8 = 0;
const KIND_VOTE: u8 = 1;
const KIND_INSTALL_SNAPSHOT: u8 = 2;
const KIND_CONTROLLER_CALL: u8 = 3;
/// How much of a frame is allocated before its bytes arrive.
const READ_CHUNK: usize = 64 * 1024;
/// Answer statuses.
const STATUS_OK: u8 = 0;
const STATUS_ERROR: u8 = 1;

/// How long one Raft message may take, connection included (openraft bounds its waits too).
const RAFT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one controller call may take (a proposal may wait up to 10 s to commit).
const CONTROLLER_CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Reconnection backoff after a failed connection attempt: doubles from the first to the last.
const RECONNECT_BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(1));
/// How long a call waits for an active controller to be known and reachable before it fails.
const CONTROLLER_CALL_DEADLINE: Duration = Duration::from_secs(20);
/// Pause between attempts of a controller call (Kafka's `controller.quorum.retry.backoff.ms`):
/// short, as after a failover the new leader is typically known within a few of them.
const CONTROLLER_RETRY_BACKOFF: Duration = Duration::from_millis(20);

/// A broker→controller call.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ControllerCall {
    Register {
        broker_id: i32,
        incarnation_id: [u8; 16],
        /// (name, host, port, security protocol id)
        listeners: Vec<(String, String, u16, i16)>,
        rack: Option<String>,
    },
    Heartbeat {
        broker_id: i32,
        broker_epoch: i64,
        current_metadata_offset: i64,
        want_fence: bool,
        want_shut_down: bool,
    },
    CreateTopic {
        name: String,
        num_partitions: i32,
        replication_factor: i16,
        configs: Vec<(String, String)>,
        validate_only: bool,
    },
    DeleteTopic {
        name: String,
    },
    CreatePartitions {
        name: String,
        new_total: i32,
        validate_only: bool,
    },
    AlterTopicConfigs {
        name: String,
        /// (key, value, IncrementalAlterConfigs op code)
        ops: Vec<(String, Option<String>, i8)>,
        validate_only: bool,
    },
    ReplaceTopicConfigs {
        name: String,
        configs: Vec<(String, String)>,
        validate_only: bool,
    },
    AlterBrokerConfigs {
        broker_id: Option<i32>,
        ops: Vec<(String, Option<String>, i8)>,
        validate_only: bool,
    },
    ReplaceBrokerConfigs {
        broker_id: Option<i32>,
        configs: Vec<(String, String)>,
        validate_only: bool,
    },
    AllocateProducerIds {
        size: i64,
    },
    /// The quorum as the active controller (the Raft leader, which alone knows every member's
    /// progress) sees it, for DescribeQuorum.
    DescribeQuorum,
    AlterPartition(AlterPartitionRequest),
    ElectLeaders {
        election: ElectionType,
        /// (topic, partitions); `None` for every partition.
        topics: Option<Vec<(String, Vec<i32>)>>,
    },
    AlterPartitionReassignments {
        topics: Vec<ReassignmentTargets>,
    },
    ListPartitionReassignments {
        /// (topic, partitions); `None` for every partition.
        topics: Option<Vec<(String, Vec<i32>)>>,
    },
}

/// What a successful controller call returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum ControllerReply {
    BrokerEpoch {
        epoch: i64,
    },
    Heartbeat {
        is_caught_up: bool,
        is_fenced: bool,
        should_shut_down: bool,
    },
    Topic {
        name: String,
        topic_id: [u8; 16],
        num_partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
    },
    TopicId {
        topic_id: [u8; 16],
    },
    ProducerIds {
        first: i64,
        size: i64,
    },
    PartitionState(PartitionState),
    Elections {
        results: Vec<TopicOutcomes>,
    },
    Reassignments {
        results: Vec<TopicOutcomes>,
    },
    OngoingReassignments {
        topics: Vec<TopicReassignments>,
    },
    Done,
    Quorum {
        status: QuorumStatus,
    },
}

/// The answer to a controller call: its result (or Kafka error code and message) and the offset
/// the answering controller has committed and applied.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControllerAnswer {
    pub result: Result<ControllerReply, (i16, String)>,
    pub committed_offset: i64,
}

fn op_code(op: ConfigOpType) -> i8 {
    match op {
        ConfigOpType::Set => 0,
        ConfigOpType::Delete => 1,
        ConfigOpType::Append => 2,
        ConfigOpType::Subtract => 3,
    }
}

/// Config operations in their wire form.
pub fn wire_ops(ops: &[ConfigOp]) -> Vec<(String, Option<String>, i8)> {
    ops.iter()
        .map(|op| (op.key.clone(), op.value.clone(), op_code(op.op)))
        .collect()
}

fn config_ops(ops: Vec<(String, Option<String>, i8)>) -> Result<Vec<ConfigOp>, MetadataError> {
    ops.into_iter()
        .map(|(key, value, code)| {
            let op = ConfigOpType::from_code(code).ok_or_else(|| {
                MetadataError::invalid_request(format!("unknown config operation {code}"))
            })?;
            Ok(ConfigOp { key, value, op })
        })
        .collect()
}

impl ControllerCall {
    pub fn register(request: &BrokerRegistrationRequest) -> Self {
        Self::Register {
            broker_id: request.broker_id,
            incarnation_id: request.incarnation_id,
            listeners: request
                .listeners
                .iter()
                .map(|l| (l.name.clone(), l.host.clone(), l.port, l.security_protocol))
                .collect(),
            rack: request.rack.clone(),
        }
    }

    pub fn heartbeat(request: &BrokerHeartbeatRequest) -> Self {
        Self::Heartbeat {
            broker_id: request.broker_id,
            broker_epoch: request.broker_epoch,
            current_metadata_offset: request.current_metadata_offset,
            want_fence: request.want_fence,
            want_shut_down: request.want_shut_down,
        }
    }
}

/// Runs `call` on this node's controller (which fails with NOT_CONTROLLER unless it is active).
pub async fn dispatch(
    controller: &Controller,
    call: ControllerCall,
) -> Result<ControllerReply, MetadataError> {
    Ok(match call {
        ControllerCall::Register {
            broker_id,
            incarnation_id,
            listeners,
            rack,
        } => {
            let listeners = listeners
                .into_iter()
                .map(|(name, host, port, security_protocol)| BrokerListener {
                    name,
                    host,
                    port,
                    security_protocol,
                })
                .collect();
            let epoch = controller
                .register(BrokerRegistrationRequest {
                    broker_id,
                    incarnation_id,
                    listeners,
                    rack,
                })
                .await?;
            ControllerReply::BrokerEpoch { epoch }
        }
        ControllerCall::Heartbeat {
            broker_id,
            broker_epoch,
            current_metadata_offset,
            want_fence,
            want_shut_down,
        } => {
            let reply = controller
                .heartbeat(BrokerHeartbeatRequest {
                    broker_id,
                    broker_epoch,
                    current_metadata_offset,
                    want_fence,
                    want_shut_down,
                })
                .await?;
            ControllerReply::Heartbeat {
                is_caught_up: reply.is_caught_up,
                is_fenced: reply.is_fenced,
                should_shut_down: reply.should_shut_down,
            }
        }
        ControllerCall::CreateTopic {
            name,
            num_partitions,
            replication_factor,
            configs,
            validate_only,
        } => {
            let summary = controller
                .create_topic(
                    &name,
                    num_partitions,
                    replication_factor,
                    &configs,
                    validate_only,
                )
                .await?;
            ControllerReply::Topic {
                name: summary.name,
                topic_id: summary.topic_id,
                num_partitions: summary.num_partitions,
                replication_factor: summary.replication_factor,
                configs: summary.configs,
            }
        }
        ControllerCall::DeleteTopic { name } => ControllerReply::TopicId {
            topic_id: controller.delete_topic(&name).await?,
        },
        ControllerCall::CreatePartitions {
            name,
            new_total,
            validate_only,
        } => {
            controller
                .create_partitions(&name, new_total, validate_only)
                .await?;
            ControllerReply::Done
        }
        ControllerCall::AlterTopicConfigs {
            name,
            ops,
            validate_only,
        } => {
            let ops = config_ops(ops)?;
            controller
                .alter_topic_configs(&name, &ops, validate_only)
                .await?;
            ControllerReply::Done
        }
        ControllerCall::ReplaceTopicConfigs {
            name,
            configs,
            validate_only,
        } => {
            controller
                .replace_topic_configs(&name, &configs, validate_only)
                .await?;
            ControllerReply::Done
        }
        ControllerCall::AlterBrokerConfigs {
            broker_id,
            ops,
            validate_only,
        } => {
            let ops = config_ops(ops)?;
            controller
                .alter_broker_configs(broker_id, &ops, validate_only)
                .await?;
            ControllerReply::Done
        }
        ControllerCall::ReplaceBrokerConfigs {
            broker_id,
            configs,
            validate_only,
        } => {
            controller
                .replace_broker_configs(broker_id, &configs, validate_only)
                .await?;
            ControllerReply::Done
        }
        ControllerCall::AllocateProducerIds { size } => {
            let (first, size) = controller.allocate_producer_id_block(size).await?;
            ControllerReply::ProducerIds { first, size }
        }
        ControllerCall::DescribeQuorum => {
            let status = controller.quorum().status();
            if status.leader_id != Some(controller.node_id()) {
                return Err(MetadataError::new(
                    ErrorCode::NotController.code(),
                    "this node is not the active controller",
                ));
            }
            ControllerReply::Quorum { status }
        }
        ControllerCall::AlterPartition(request) => {
            ControllerReply::PartitionState(controller.alter_partition(request).await?)
        }
        ControllerCall::ElectLeaders { election, topics } => ControllerReply::Elections {
            results: controller.elect_leaders(election, topics).await?,
        },
        ControllerCall::AlterPartitionReassignments { topics } => ControllerReply::Reassignments {
            results: controller.alter_partition_reassignments(topics).await?,
        },
        ControllerCall::ListPartitionReassignments { topics } => {
            ControllerReply::OngoingReassignments {
                topics: controller.list_partition_reassignments(topics),
            }
        }
    })
}

/// The reply did not match the call (a peer of another version, or a bug).
pub fn unexpected_reply(reply: &ControllerReply) -> MetadataError {
    MetadataError::new(
        ErrorCode::UnknownServerError.code(),
        format!("unexpected answer from the controller: {reply:?}"),
    )
}

/// Converts a heartbeat reply.
pub fn heartbeat_reply(reply: ControllerReply) -> Result<BrokerHeartbeatReply, MetadataError> {
    match reply {
        ControllerReply::Heartbeat {
            is_caught_up,
            is_fenced,
            should_shut_down,
        } => Ok(BrokerHeartbeatReply {
            is_caught_up,
            is_fenced,
            should_shut_down,
        }),
        other => Err(unexpected_reply(&other)),
    }
}

// ---------------------------------------------------------------------------------------------
// Framing

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
enum FrameError {
    #[error("frame size {0} outside 1..={1}")]
    BadSize(i64, usize),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one frame: `Ok(None)` on a clean end of stream before a frame starts.
async fn read_frame(
    stream: &mut TcpStream,
    max_frame: usize,
) -> Result<Option<(u8, Bytes)>, FrameError> {
    let mut size = [0u8; 4];
    match stream.read_exact(&mut size).await {
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error.into()),
    }
    let size = i32::from_be_bytes(size);
    let len = usize::try_from(size).unwrap_or(0);
    if len < 1 || len > max_frame {
        return Err(FrameError::BadSize(i64::from(size), max_frame));
    }
    // Memory grows with the bytes that actually arrive, not with the size a peer announces.
    let mut body = Vec::with_capacity(len.min(READ_CHUNK));
    let read = (&mut *stream)
        .take(len as u64)
        .read_to_end(&mut body)
        .await?;
    if read < len {
        return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    let tag = body[0];
    Ok(Some((tag, Bytes::from(body).slice(1..))))
}

async fn write_frame(stream: &mut TcpStream, tag: u8, payload: &[u8]) -> std::io::Result<()> {
    let size = i32::try_from(payload.len() + 1)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "frame too large"))?;
    let mut frame = Vec::with_capacity(payload.len() + 5);
    frame.extend_from_slice(&size.to_be_bytes());
    frame.push(tag);
    frame.extend_from_slice(payload);
    stream.write_all(&frame).await?;
    stream.flush().await
}

fn raft_kind(tag: u8) -> Option<RaftRpcKind> {
    match tag {
        KIND_APPEND_ENTRIES => Some(RaftRpcKind::AppendEntries),
        KIND_VOTE => Some(RaftRpcKind::Vote),
        KIND_INSTALL_SNAPSHOT => Some(RaftRpcKind::InstallSnapshot),
        _ => None,
    }
}

fn raft_tag(kind: RaftRpcKind) -> u8 {
    match kind {
        RaftRpcKind::AppendEntries => KIND_APPEND_ENTRIES,
        RaftRpcKind::Vote => KIND_VOTE,
        RaftRpcKind::InstallSnapshot => KIND_INSTALL_SNAPSHOT,
    }
}

// ---------------------------------------------------------------------------------------------
// Server side

/// What the controller listener serves.
#[derive(Debug, Clone)]
pub struct ControllerEndpoint {
    pub raft: RaftRpcHandler,
    pub controller: Arc<Controller>,
    /// Largest accepted request frame (`socket.request.max.bytes`).
    pub max_frame: usize,
    /// A connection without a complete request for this long is closed
    /// (`connections.max.idle.ms`).
    pub max_idle: Duration,
}

/// Accepts connections on the controller listener until `shutdown` changes, one task each.
pub async fn accept_loop(
    endpoint: Arc<ControllerEndpoint>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve_connection(endpoint.clone(), stream, peer, shutdown.clone()));
                }
                Err(error) => {
                    tracing::warn!(%error, "controller listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// The broker whose heartbeats a controller connection carries: when the connection ends, the
/// broker is suspected dead and checked at once ([`Controller::suspect`]), so a killed broker is
/// fenced in milliseconds rather than after `broker.session.timeout.ms`.
struct HeartbeatSource {
    controller: Arc<Controller>,
    broker_id: Option<i32>,
}

impl Drop for HeartbeatSource {
    fn drop(&mut self) {
        if let Some(broker_id) = self.broker_id {
            self.controller.suspect(broker_id);
        }
    }
}

async fn serve_connection(
    endpoint: Arc<ControllerEndpoint>,
    mut stream: TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut heartbeats = HeartbeatSource {
        controller: endpoint.controller.clone(),
        broker_id: None,
    };
    loop {
        let frame = tokio::select! {
            _ = shutdown.changed() => return,
            frame = tokio::time::timeout(endpoint.max_idle, read_frame(&mut stream, endpoint.max_frame)) => frame,
        };
        let (tag, payload) = match frame {
            Ok(Ok(Some(frame))) => frame,
            Ok(Ok(None)) => return,
            Err(_) => {
                tracing::debug!(%peer, "closing idle controller connection");
                return;
            }
            Ok(Err(error)) => {
                tracing::warn!(%peer, %error, "closing controller connection: bad frame");
                return;
            }
        };
        let answer = if let Some(kind) = raft_kind(tag) {
            endpoint.raft.handle(kind, payload).await
        } else if tag == KIND_CONTROLLER_CALL {
            let call: ControllerCall = match serde_json::from_slice(&payload) {
                Ok(call) => call,
                Err(error) => {
                    tracing::warn!(%peer, %error, "closing controller connection: undecodable controller call");
                    return;
                }
            };
            if let ControllerCall::Heartbeat { broker_id, .. } = &call {
                heartbeats.broker_id = Some(*broker_id);
            }
            let result = dispatch(&endpoint.controller, call)
                .await
                .map_err(|e| (e.code, e.message));
            let answer = ControllerAnswer {
                result,
                committed_offset: endpoint.controller.image().last_offset,
            };
            serde_json::to_vec(&answer)
                .map(Bytes::from)
                .map_err(|e| e.to_string())
        } else {
            tracing::warn!(%peer, tag, "closing controller connection: unknown request kind");
            return;
        };
        let written = match answer {
            Ok(bytes) => write_frame(&mut stream, STATUS_OK, &bytes).await,
            Err(message) => write_frame(&mut stream, STATUS_ERROR, message.as_bytes()).await,
        };
        if let Err(error) = written {
            tracing::debug!(%peer, %error, "controller connection closed while answering");
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Client side

/// Connections from this node to the controller listeners of the voters: idle connections are
/// pooled per target, a failed connection attempt delays the next one (doubling backoff), and
/// every request has a timeout.
#[derive(Debug)]
pub struct ControllerChannel {
    addresses: HashMap<i32, String>,
    idle: Mutex<HashMap<i32, Vec<TcpStream>>>,
    /// Per target: no new connection attempt before the instant; the backoff to use next.
    backoff: Mutex<HashMap<i32, (Instant, Duration)>>,
    max_frame: usize,
}

impl ControllerChannel {
    /// A channel to the voters at `addresses` (node id → `host:port` of its controller listener).
    pub fn new(addresses: HashMap<i32, String>, max_frame: usize) -> Self {
        Self {
            addresses,
            idle: Mutex::new(HashMap::new()),
            backoff: Mutex::new(HashMap::new()),
            max_frame,
        }
    }

    fn unreachable(target: i32, reason: impl Into<String>) -> TransportError {
        TransportError::Unreachable {
            node: target,
            reason: reason.into(),
        }
    }

    async fn connection(&self, target: i32) -> Result<TcpStream, TransportError> {
        if let Some(stream) = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(&target)
            .and_then(Vec::pop)
        {
            return Ok(stream);
        }
        let address = self
            .addresses
            .get(&target)
            .ok_or_else(|| Self::unreachable(target, "not a known voter"))?;
        let now = Instant::now();
        if let Some((retry_at, _)) = self
            .backoff
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&target)
        {
            if now < *retry_at {
                return Err(Self::unreachable(
                    target,
                    "backing off after a failed connection",
                ));
            }
        }
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await;
        let mut backoff = self.backoff.lock().unwrap_or_else(PoisonError::into_inner);
        match connected {
            Ok(Ok(stream)) => {
                backoff.remove(&target);
                let _ = stream.set_nodelay(true);
                Ok(stream)
            }
            failed => {
                let next = backoff
                    .get(&target)
                    .map_or(RECONNECT_BACKOFF.0, |(_, last)| {
                        (*last * 2).min(RECONNECT_BACKOFF.1)
                    });
                backoff.insert(target, (Instant::now() + next, next));
                let reason = match failed {
                    Ok(Err(error)) => format!("cannot connect to {address}: {error}"),
                    _ => format!("connecting to {address} timed out"),
                };
                Err(Self::unreachable(target, reason))
            }
        }
    }

    /// Whether node `target`'s controller listener accepts a connection within `timeout` (the
    /// connection is closed at once; pooled ones and the backoff are left alone).
    async fn probe(&self, target: i32, timeout: Duration) -> Reachability {
        let Some(address) = self.addresses.get(&target) else {
            return Reachability::Unknown;
        };
        match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
            Ok(Ok(_)) => Reachability::Reachable,
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
                Reachability::Refused
            }
            _ => Reachability::Unknown,
        }
    }

    /// Sends one request and returns the answer: `Ok(Ok(bytes))`, or `Ok(Err(message))` when the
    /// target reported an error.
    async fn request(
        &self,
        target: i32,
        tag: u8,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<Result<Bytes, String>, TransportError> {
        let exchange = async {
            let mut stream = self.connection(target).await?;
            let io = |error: std::io::Error| Self::unreachable(target, error.to_string());
            write_frame(&mut stream, tag, payload).await.map_err(io)?;
            let answer = match read_frame(&mut stream, self.max_frame).await {
                Ok(Some(answer)) => answer,
                Ok(None) => return Err(Self::unreachable(target, "connection closed")),
                Err(error) => return Err(Self::unreachable(target, error.to_string())),
            };
            self.idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(target)
                .or_default()
                .push(stream);
            Ok(answer)
        };
        let (status, body) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| Self::unreachable(target, format!("no answer within {timeout:?}")))??;
        Ok(if status == STATUS_OK {
            Ok(body)
        } else {
            Err(String::from_utf8_lossy(&body).into_owned())
        })
    }

    /// Sends a controller call to node `target`.
    pub async fn call_controller(
        &self,
        target: i32,
        call: &ControllerCall,
    ) -> Result<ControllerAnswer, TransportError> {
        let payload = serde_json::to_vec(call).map_err(|e| TransportError::Rejected {
            node: target,
            reason: e.to_string(),
        })?;
        let rejected = |reason: String| TransportError::Rejected {
            node: target,
            reason,
        };
        let body = self
            .request(
                target,
                KIND_CONTROLLER_CALL,
                &payload,
                CONTROLLER_CALL_TIMEOUT,
            )
            .await?
            .map_err(rejected)?;
        serde_json::from_slice(&body).map_err(|e| rejected(e.to_string()))
    }
}

/// The metadata quorum's transport over the controller listeners.
#[derive(Debug)]
pub struct TcpRaftTransport(pub Arc<ControllerChannel>);

impl RaftTransport for TcpRaftTransport {
    fn send(&self, target: i32, kind: RaftRpcKind, request: Bytes) -> TransportFuture<'_> {
        Box::pin(async move {
            self.0
                .request(target, raft_tag(kind), &request, RAFT_REQUEST_TIMEOUT)
                .await?
                .map_err(|reason| TransportError::Rejected {
                    node: target,
                    reason,
                })
        })
    }

    fn probe(&self, target: i32, timeout: Duration) -> ProbeFuture<'_> {
        Box::pin(self.0.probe(target, timeout))
    }
}

/// The controller as a node of a Raft cluster sees it: calls run on this node's controller when
/// it is the active one, and go to the active controller over the controller listener otherwise.
#[derive(Debug)]
pub struct QuorumControllerClient {
    pub local: Arc<Controller>,
    channel: Arc<ControllerChannel>,
    /// The highest committed offset an active controller has reported to this node.
    reported_offset: AtomicI64,
}

impl QuorumControllerClient {
    pub fn new(local: Arc<Controller>, channel: Arc<ControllerChannel>) -> Self {
        Self {
            local,
            channel,
            reported_offset: AtomicI64::new(-1),
        }
    }

    /// The offset of the newest entry the active controller is known to have committed.
    pub fn committed_offset(&self) -> i64 {
        self.local
            .image()
            .last_offset
            .max(self.reported_offset.load(Ordering::Relaxed))
    }

    /// Sends `call` to node `leader`, giving up (`None`) as soon as this node's quorum names
    /// another leader: a leader that hangs (frozen, its host gone) keeps the connection open
    /// without answering, and the call moves on once a new leader is elected instead of waiting
    /// for the request timeout. (As after a lost connection, a retried call whose first attempt
    /// did commit gets the answer of a repeat, e.g. TOPIC_ALREADY_EXISTS, as with Kafka's
    /// forwarding.)
    async fn call_while_leader(
        &self,
        leader: i32,
        call: &ControllerCall,
    ) -> Option<Result<ControllerAnswer, TransportError>> {
        let replaced = async {
            loop {
                tokio::time::sleep(CONTROLLER_RETRY_BACKOFF).await;
                let named = self.local.quorum().status().leader_id;
                if named.is_some_and(|named| named != leader) {
                    return;
                }
            }
        };
        tokio::select! {
            answer = self.channel.call_controller(leader, call) => Some(answer),
            () = replaced => None,
        }
    }

    /// Runs `call` on the active controller, following leadership changes (NOT_CONTROLLER, no
    /// leader known, leader unreachable or replaced) until [`CONTROLLER_CALL_DEADLINE`].
    pub async fn call(&self, call: ControllerCall) -> Result<ControllerReply, MetadataError> {
        let deadline = Instant::now() + CONTROLLER_CALL_DEADLINE;
        loop {
            let leader = self.local.quorum().status().leader_id;
            let last_error = match leader {
                Some(id) if id == self.local.node_id() => {
                    match dispatch(&self.local, call.clone()).await {
                        Err(error) if error.code == ErrorCode::NotController.code() => {
                            error.message
                        }
                        result => return result,
                    }
                }
                Some(id) => match self.call_while_leader(id, &call).await {
                    None => format!("node {id} stopped leading before it answered"),
                    Some(Err(error)) => error.to_string(),
                    Some(Ok(answer)) => {
                        self.reported_offset
                            .fetch_max(answer.committed_offset, Ordering::Relaxed);
                        match answer.result {
                            Err((code, message)) if code == ErrorCode::NotController.code() => {
                                message
                            }
                            Err((code, message)) => return Err(MetadataError::new(code, message)),
                            Ok(reply) => return Ok(reply),
                        }
                    }
                },
                None => "no active controller is known".to_string(),
            };
            if Instant::now() >= deadline {
                return Err(MetadataError::new(
                    ErrorCode::NotController.code(),
                    format!("cannot reach the active controller: {last_error}"),
                ));
            }
            tracing::debug!(reason = %last_error, "controller call failed; retrying");
            tokio::time::sleep(CONTROLLER_RETRY_BACKOFF).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn connected_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(address), listener.accept());
        (client.unwrap(), accepted.unwrap().0)
    }

    #[tokio::test]
    async fn frames_round_trip_and_bad_sizes_are_refused() {
        let (mut a, mut b) = connected_pair().await;
        write_frame(&mut a, KIND_VOTE, b"payload").await.unwrap();
        let (tag, payload) = read_frame(&mut b, 1024).await.unwrap().unwrap();
        assert_eq!((tag, payload.as_ref()), (KIND_VOTE, b"payload".as_ref()));

        a.write_all(&2048i32.to_be_bytes()).await.unwrap();
        assert!(matches!(
            read_frame(&mut b, 1024).await,
            Err(FrameError::BadSize(2048, 1024))
        ));
        let (mut a, mut b) = connected_pair().await;
        a.write_all(&0i32.to_be_bytes()).await.unwrap();
        assert!(matches!(
            read_frame(&mut b, 1024).await,
            Err(FrameError::BadSize(0, 1024))
        ));
        // A frame cut short by the peer is an error, a clean close before a frame is not.
        let (mut a, mut b) = connected_pair().await;
        a.write_all(&10i32.to_be_bytes()).await.unwrap();
        a.write_all(b"abc").await.unwrap();
        drop(a);
        assert!(read_frame(&mut b, 1024).await.is_err());
        let (a, mut b) = connected_pair().await;
        drop(a);
        assert!(read_frame(&mut b, 1024).await.unwrap().is_none());
    }

    #[test]
    fn controller_calls_and_answers_round_trip_through_json() {
        let call = ControllerCall::AlterTopicConfigs {
            name: "t".into(),
            ops: wire_ops(&[ConfigOp::set("retention.ms", "1")]),
            validate_only: true,
        };
        let decoded: ControllerCall =
            serde_json::from_slice(&serde_json::to_vec(&call).unwrap()).unwrap();
        let ControllerCall::AlterTopicConfigs { ops, .. } = decoded else {
            panic!("decoded another call: {decoded:?}");
        };
        let ops = config_ops(ops).unwrap();
        assert_eq!(ops, vec![ConfigOp::set("retention.ms", "1")]);
        assert!(config_ops(vec![("k".into(), None, 9)]).is_err());

        let answer = ControllerAnswer {
            result: Err((ErrorCode::NotController.code(), "moved".into())),
            committed_offset: 7,
        };
        let decoded: ControllerAnswer =
            serde_json::from_slice(&serde_json::to_vec(&answer).unwrap()).unwrap();
        assert_eq!(
            decoded.result.unwrap_err().0,
            ErrorCode::NotController.code()
        );
        assert_eq!(decoded.committed_offset, 7);
    }

    /// A call through its JSON form, dispatched, and the reply back through its JSON form: what
    /// a node that is not the active controller gets.
    async fn remote_dispatch(
        controller: &Controller,
        call: &ControllerCall,
    ) -> Result<ControllerReply, (i16, String)> {
        let call: ControllerCall =
            serde_json::from_slice(&serde_json::to_vec(call).unwrap()).unwrap();
        let answer = ControllerAnswer {
            result: dispatch(controller, call)
                .await
                .map_err(|e| (e.code, e.message)),
            committed_offset: controller.image().last_offset,
        };
        let answer: ControllerAnswer =
            serde_json::from_slice(&serde_json::to_vec(&answer).unwrap()).unwrap();
        answer.result
    }

    #[tokio::test]
    async fn alter_partition_travels_as_a_controller_call() {
        let dir = tempfile::tempdir().unwrap();
        let (quorum, state) = strom_metadata::LocalQuorum::open(dir.path(), 1, None, u64::MAX)
            .expect("metadata log opens");
        let controller = Controller::new(1, Arc::new(quorum), state, Duration::from_secs(30));
        let registration = BrokerRegistrationRequest {
            broker_id: 1,
            incarnation_id: [1; 16],
            listeners: Vec::new(),
            rack: None,
        };
        let broker_epoch = controller.register(registration).await.unwrap();
        let heartbeat = BrokerHeartbeatRequest {
            broker_id: 1,
            broker_epoch,
            current_metadata_offset: i64::MAX,
            want_fence: false,
            want_shut_down: false,
        };
        controller.heartbeat(heartbeat).await.unwrap();
        let topic = controller
            .create_topic("t", 1, 1, &[], false)
            .await
            .unwrap();
        let request = AlterPartitionRequest {
            broker_id: 1,
            broker_epoch,
            topic_id: topic.topic_id,
            partition: 0,
            leader_epoch: 0,
            partition_epoch: 0,
            new_isr: vec![1],
        };
        let reply = remote_dispatch(
            &controller,
            &ControllerCall::AlterPartition(request.clone()),
        )
        .await
        .unwrap();
        let ControllerReply::PartitionState(state) = reply else {
            panic!("another reply: {reply:?}");
        };
        assert_eq!((state.leader, state.isr), (1, vec![1]));
        let stale = AlterPartitionRequest {
            broker_epoch: broker_epoch + 1,
            ..request
        };
        let refused = remote_dispatch(&controller, &ControllerCall::AlterPartition(stale))
            .await
            .unwrap_err();
        assert_eq!(refused.0, ErrorCode::StaleBrokerEpoch.code());
    }

    #[tokio::test]
    async fn an_unreachable_voter_backs_off_and_an_unknown_one_is_refused() {
        // A port nothing listens on: bind, note the port, close.
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            listener.local_addr().unwrap().port()
        };
        let channel =
            ControllerChannel::new(HashMap::from([(1, format!("127.0.0.1:{port}"))]), 1024);
        let first = channel
            .request(1, KIND_VOTE, b"x", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(first.to_string().contains("cannot connect"), "{first}");
        let backoff =
            |channel: &ControllerChannel| channel.backoff.lock().unwrap().get(&1).map(|b| b.1);
        assert_eq!(backoff(&channel), Some(RECONNECT_BACKOFF.0));
        // Until the backoff has passed no connection is attempted; after it the next failure
        // doubles it.
        tokio::time::sleep(RECONNECT_BACKOFF.0).await;
        channel
            .request(1, KIND_VOTE, b"x", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(backoff(&channel), Some(RECONNECT_BACKOFF.0 * 2));
        let unknown = channel
            .request(2, KIND_VOTE, b"x", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            unknown.to_string().contains("not a known voter"),
            "{unknown}"
        );
    }
}
