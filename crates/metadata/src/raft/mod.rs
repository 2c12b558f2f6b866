//! The replicated metadata quorum: Raft among the controllers, with brokers following the committed
//! log as observers, built on openraft 0.9. This module (with its submodules) is the only place
//! that names the library; the rest of the crate sees [`RaftQuorum`] through the [`Quorum`] trait,
//! and the broker sees the library-neutral [`RaftTransport`] / [`RaftRpcHandler`].
//!
//! # Terms are epochs, log ids are (epoch, offset)
//!
//! openraft is built with its `single-term-leader` feature: at most one leader per term, as in
//! standard Raft and in KRaft, where the term is the leader epoch. A log id is then just
//! (term, index), which is exactly what the metadata log stores for an entry (epoch, offset), so
//! entries, snapshots and the quorum-state file keep Kafka's meaning. (openraft's default mode lets
//! several leaders share a term and makes the leader's node id part of every log id, which the
//! metadata log has no room for.) Node ids are Kafka node ids widened to `u64`, log indexes are
//! offsets; the entry at offset 0 is the membership that bootstrapped the cluster.
//!
//! # What the metadata log holds
//!
//! A normal entry is one proposal: the serialized metadata records the controller committed as a
//! unit. openraft's other entries are stored as quorum control records
//! ([`crate::control_records`]), which the metadata state skips: a leader's first entry of its
//! epoch (openraft's blank entry) is a `LeaderChange` record, a membership entry a `Voters` record.
//! Snapshots start with the `Voters` record in force.
//!
//! # Storage, snapshots and purging
//!
//! [`log_store`] keeps entries in the metadata log and the vote in the quorum-state file, both
//! fsynced before openraft hears they are stored; [`state_machine`] applies committed entries to
//! the [`MetadataState`] and writes snapshots every `snapshot_interval_bytes` of applied entries
//! (Kafka's 20 MiB by default). After a snapshot the log is purged up to it; a member that needs
//! purged entries is sent the snapshot, in chunks of at most `snapshot_chunk_bytes`.
//!
//! # Voters and observers
//!
//! Controllers are voters. Brokers follow as openraft learners (Kafka's observers): they receive
//! and apply every committed entry but do not vote or count toward commits. openraft replicates to
//! each learner directly from the leader, with one replication stream (task, in-flight batch,
//! heartbeat) per member: with 100 brokers the active controller sends every entry, and every
//! heartbeat, 100 more times and tracks 100 more progress records. Metadata changes are small and
//! rare, so that is a bounded fan-out rather than a throughput problem, but it is work KRaft does
//! not do on the leader's initiative (observers there fetch at their own pace). A large cluster
//! may want a longer heartbeat interval or brokers fetching from followers.
//!
//! # Timeouts: Kafka's keys mapped to openraft
//!
//! openraft 0.9's own election timer waits a whole leader lease (its `election_timeout_max`) plus
//! a random election timeout after the last heartbeat, 3-4 s with Kafka's defaults, so it is
//! switched off (`enable_elect = false`) and [`election`] starts elections with Kafka's timers:
//!
//! | Kafka key (default) | here |
//! |---|---|
//! | `controller.quorum.fetch.timeout.ms` (2000) | a voter that heard nothing from its leader for this long starts an election; a leader no majority acknowledged for 1.5 × this stops counting as leader (check-quorum below) |
//! | `controller.quorum.election.timeout.ms` (1000) = E | a candidate that has not won within a random time in [E, 2E) tries again, as does a voter that knows no leader; a candidate that can no longer win backs off (binary exponential, heartbeat steps, at most E); E/2 is openraft's leader lease (`election_timeout_max`): a voter refuses to vote within it of hearing from a leader; openraft's `election_timeout_min` (the lease's half) bounds a vote request |
//! | (none; Kafka's fetches) | openraft's `heartbeat_interval`: 100 ms, at most E/10 |
//!
//! Failover after the leader's *process* dies (kill -9, crash) does not wait for the fetch
//! timeout: a follower that misses three heartbeats probes the leader's address
//! ([`RaftTransport::probe`]), and when it refuses connections elects itself half a heartbeat
//! after the lease (followers ordered by id, five heartbeats apart). So the lease (E/2) bounds a
//! failover after a crash: about 0.5 s with the defaults, plus the election and the first commit.
//! When the leader's host or network goes instead (no refusal), the fetch timeout bounds it.
//! A voter whose own process was frozen counts silence afresh when it thaws. There is no pre-vote
//! (KIP-996): a voter cut off for longer than the fetch timeout comes back with a higher epoch,
//! and the leader steps down when it hears of it, as in Kafka before 4.0.
//!
//! # Not the leader, cut off
//!
//! A proposal on a node that is not the leader fails at once with [`QuorumError::NotLeader`]
//! naming the leader if known. openraft 0.9 leaders do not step down when they lose their
//! majority, so this module does what Kafka's check-quorum does: a leader that no majority has
//! acknowledged for 1.5 × the fetch timeout reports no leader in its status and refuses
//! proposals at once with `NotLeader { leader: None }` (openraft still considers it leader until
//! it hears of a newer epoch). A proposal that does not commit within `propose_timeout` fails the
//! same way; its entry, if appended, is uncommitted and will be replaced by the new leader's log.

mod convert;
mod election;
mod log_store;
mod network;
mod state_machine;
mod wire;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use openraft::error::{ClientWriteError, Fatal, InitializeError, RaftError};
use openraft::{BasicNode, ChangeMembers, Config, Raft, RaftMetrics, ServerState, SnapshotPolicy};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio::sync::mpsc;

pub use network::{
    InProcessNetwork, ProbeFuture, RaftRpcHandler, RaftRpcKind, RaftTransport, Reachability,
    TransportError, TransportFuture,
};

use crate::control_records::ControlRecord;
use crate::error::MetadataError;
use crate::local_quorum::DEFAULT_SNAPSHOT_INTERVAL_BYTES;
use crate::log::MetadataLog;
use crate::meta_properties::load_or_create_meta_properties;
use crate::quorum::{now_ms, ProposeFuture, Quorum, QuorumError, QuorumStatus, ReplicaStatus};
use crate::quorum_state::QuorumState;
use crate::snapshot::{self, SnapshotId};
use crate::state::MetadataState;
use convert::{kafka_node_id, raft_node_id};
use election::{Acks, Liveness};
use log_store::LogStore;
use state_machine::{SnapshotFiles, StateMachine};

openraft::declare_raft_types!(
    /// openraft's types for the metadata quorum.
    pub(crate) TypeConfig:
        D = MetadataRecords,
        R = i64,
        NodeId = u64,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        Responder = openraft::impls::OneshotResponder<TypeConfig>,
        AsyncRuntime = openraft::TokioRuntime,
);

type Entry = openraft::Entry<TypeConfig>;
type LogId = openraft::LogId<u64>;
type Vote = openraft::Vote<u64>;
type Membership = openraft::Membership<u64, BasicNode>;
type StoredMembership = openraft::StoredMembership<u64, BasicNode>;
type StorageError = openraft::StorageError<u64>;

/// The payload of a normal entry: a proposal's serialized metadata records. (Serde is required of
/// payloads by openraft's `serde` feature; messages carry entries in the log's binary format.)
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct MetadataRecords(pub(crate) Vec<Bytes>);

impl Serialize for MetadataRecords {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|record| record.as_ref()))
    }
}

impl<'de> Deserialize<'de> for MetadataRecords {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let records = Vec::<Vec<u8>>::deserialize(deserializer)?;
        Ok(Self(records.into_iter().map(Bytes::from).collect()))
    }
}

/// Timing and sizes of the Raft quorum.
#[derive(Debug, Clone)]
pub struct RaftQuorumConfig {
    /// How often the leader sends heartbeats (empty appends) to every member; also how long a
    /// member has to answer an append, and the unit of the elector's backoffs.
    pub heartbeat_interval: Duration,
    /// Kafka's `controller.quorum.election.timeout.ms` (1 s): a candidate that has not won within
    /// a random time between this and twice this starts a new election, as does a voter that
    /// knows no leader; half of it is the leader lease (see the module doc).
    pub election_timeout: Duration,
    /// Kafka's `controller.quorum.fetch.timeout.ms` (2 s): a voter that has heard nothing from
    /// its leader for this long starts an election; a leader that no majority has acknowledged for
    /// 1.5 times this no longer counts as leading.
    pub fetch_timeout: Duration,
    /// Bytes of entries applied between snapshots (Kafka's
    /// `metadata.log.max.record.bytes.between.snapshots`).
    pub snapshot_interval_bytes: u64,
    /// Largest snapshot chunk in one message.
    pub snapshot_chunk_bytes: u64,
    /// Most entries in one append message.
    pub max_entries_per_request: u64,
    /// How long a proposal may wait to commit before it fails.
    pub propose_timeout: Duration,
}

impl Default for RaftQuorumConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_millis(100),
            election_timeout: Duration::from_millis(1000),
            fetch_timeout: Duration::from_millis(2000),
            snapshot_interval_bytes: DEFAULT_SNAPSHOT_INTERVAL_BYTES,
            snapshot_chunk_bytes: 1024 * 1024,
            max_entries_per_request: 300,
            propose_timeout: Duration::from_secs(10),
        }
    }
}

impl RaftQuorumConfig {
    /// How long a voter that heard from a leader refuses to vote for another (openraft's leader
    /// lease): half the election timeout, at least two heartbeats.
    fn lease(&self) -> Duration {
        (self.election_timeout / 2).max(self.heartbeat_interval * 2)
    }
}

/// What a node recovers from its metadata directory before Raft starts.
struct Recovered {
    state: Arc<MetadataState>,
    log: MetadataLog,
    quorum_state: QuorumState,
    snapshot: Option<(SnapshotId, StoredMembership)>,
}

/// Reads the metadata directory: `meta.properties`, the newest snapshot (installed into a new
/// state), the log made consistent with it, and the vote.
fn recover(
    dir: &Path,
    node_id: i32,
    cluster_id_if_new: Option<String>,
) -> Result<Recovered, MetadataError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| MetadataError::storage(&format!("creating {}", dir.display()), e))?;
    let cluster_id = load_or_create_meta_properties(dir, node_id, cluster_id_if_new)?;
    let state = Arc::new(MetadataState::new(cluster_id));
    let latest = snapshot::latest_snapshot(dir)
        .map_err(|e| MetadataError::storage("reading metadata snapshots", e))?;
    let mut snapshot = None;
    if let Some((id, records)) = &latest {
        let voters = match records.first().and_then(|r| ControlRecord::decode(r)) {
            Some(Ok(ControlRecord::Voters(voters))) => voters,
            _ => {
                return Err(MetadataError::storage(
                    "reading metadata snapshot",
                    format!("snapshot {id:?} does not start with the quorum's voters"),
                ))
            }
        };
        let membership = convert::stored_membership(&voters)
            .map_err(|e| MetadataError::storage("reading metadata snapshot", e))?;
        state
            .install_snapshot(*id, records)
            .map_err(|e| MetadataError::storage("loading metadata snapshot", e))?;
        snapshot = Some((*id, membership));
    }
    let log = MetadataLog::open_after_snapshot(dir, latest.as_ref().map(|(id, _)| *id))
        .map_err(|e| MetadataError::storage("opening the metadata log", e))?;
    let quorum_state = QuorumState::load(dir)
        .map_err(|e| MetadataError::storage("reading the quorum state", e))?;
    Ok(Recovered {
        state,
        log,
        quorum_state,
        snapshot,
    })
}

/// A member of the Raft metadata quorum (voter or observer).
pub struct RaftQuorum {
    node_id: i32,
    raft: Raft<TypeConfig>,
    state: Arc<MetadataState>,
    propose_timeout: Duration,
    /// A leader unacknowledged by a majority for longer than this no longer counts as leading.
    check_quorum_timeout: Duration,
    /// What the network layer saw of replication and votes.
    liveness: Arc<Liveness>,
    snapshot_trigger: tokio::task::JoinHandle<()>,
    elector: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for RaftQuorum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftQuorum")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

fn fatal_error(error: &Fatal<u64>) -> QuorumError {
    match error {
        Fatal::Stopped => QuorumError::ShuttingDown,
        Fatal::StorageError(error) => QuorumError::Storage(error.to_string()),
        Fatal::Panicked => QuorumError::Storage("the Raft node panicked".into()),
    }
}

fn client_write_error(error: RaftError<u64, ClientWriteError<u64, BasicNode>>) -> QuorumError {
    match error {
        RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => QuorumError::NotLeader {
            leader: forward.leader_id.map(kafka_node_id),
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(error)) => {
            QuorumError::Storage(format!("membership change refused: {error}"))
        }
        RaftError::Fatal(fatal) => fatal_error(&fatal),
    }
}

impl RaftQuorum {
    /// Opens the metadata directory `dir` (by convention `<log.dir>/__cluster_metadata-0`) of node
    /// `node_id` and starts its Raft node, which reaches the others through `transport`. A
    /// directory without `meta.properties` is a new member (with `cluster_id_if_new`, or a random
    /// cluster id); a new cluster is then started with [`Self::bootstrap`], a new observer joins
    /// when the leader adds it ([`Self::add_learner`]). The returned state starts at the newest
    /// snapshot and catches up as committed entries are applied.
    pub async fn open(
        dir: &Path,
        node_id: i32,
        cluster_id_if_new: Option<String>,
        config: RaftQuorumConfig,
        transport: Arc<dyn RaftTransport>,
    ) -> Result<(Self, Arc<MetadataState>), MetadataError> {
        let raft_id = raft_node_id(node_id)
            .map_err(|e| MetadataError::storage("starting the metadata quorum", e))?;
        let owned_dir: PathBuf = dir.to_path_buf();
        let recovered =
            tokio::task::spawn_blocking(move || recover(&owned_dir, node_id, cluster_id_if_new))
                .await
                .map_err(|e| MetadataError::storage("opening the metadata directory", e))??;
        let Recovered {
            state,
            log,
            quorum_state,
            snapshot,
        } = recovered;

        let (last_applied, membership) = match &snapshot {
            Some((id, membership)) => (
                Some(convert::log_id(id.epoch, id.end_offset - 1)),
                membership.clone(),
            ),
            None => (None, StoredMembership::default()),
        };
        let current_snapshot =
            snapshot.map(|(id, membership)| (id, state_machine::snapshot_meta(id, membership)));
        let files = Arc::new(SnapshotFiles::new(dir.to_path_buf(), current_snapshot));
        let log_store = LogStore::new(
            dir.to_path_buf(),
            log,
            quorum_state,
            last_applied,
            files.subscribe(),
        );
        let (snapshot_wanted, mut snapshot_requests) = mpsc::channel(1);
        let state_machine = StateMachine::new(
            state.clone(),
            files,
            last_applied,
            membership,
            config.snapshot_interval_bytes,
            snapshot_wanted,
        );
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1);
        let heartbeat = millis(config.heartbeat_interval);
        // The lease is openraft's election_timeout_max; its election timer (drawn between min and
        // max) is off, min only bounds how long a vote request may take.
        let lease = millis(config.lease()).max(heartbeat + 2);
        let raft_config = Config {
            cluster_name: state.image().cluster_id.clone(),
            heartbeat_interval: heartbeat,
            election_timeout_min: (lease / 2).max(heartbeat + 1),
            election_timeout_max: lease,
            enable_elect: false,
            install_snapshot_timeout: millis(config.propose_timeout),
            max_payload_entries: config.max_entries_per_request.max(1),
            snapshot_policy: SnapshotPolicy::Never,
            snapshot_max_chunk_size: config.snapshot_chunk_bytes.max(1),
            max_in_snapshot_log_to_keep: 0,
            purge_batch_size: 1,
            ..Config::default()
        }
        .validate()
        .map_err(|e| MetadataError::storage("configuring the metadata quorum", e))?;
        let liveness = Arc::new(Liveness::default());
        let network = network::NetworkFactory::new(
            raft_id,
            transport.clone(),
            liveness.clone(),
            config.heartbeat_interval,
        );
        let raft = Raft::new(
            raft_id,
            Arc::new(raft_config),
            network,
            log_store,
            state_machine,
        )
        .await
        .map_err(|e| MetadataError::storage("starting the metadata quorum", e))?;

        liveness.set_metrics(raft.metrics());
        let elector = tokio::spawn(election::run(
            raft.clone(),
            raft_id,
            liveness.clone(),
            transport,
            election::Timers {
                heartbeat: config.heartbeat_interval,
                election_timeout: config.election_timeout,
                fetch_timeout: config.fetch_timeout,
                lease: Duration::from_millis(lease),
            },
        ));
        let trigger_raft = raft.clone();
        let snapshot_trigger = tokio::spawn(async move {
            while snapshot_requests.recv().await.is_some() {
                if trigger_raft.trigger().snapshot().await.is_err() {
                    break;
                }
            }
        });
        tracing::info!(node_id, "started the metadata quorum member");
        Ok((
            Self {
                node_id,
                raft,
                state: state.clone(),
                propose_timeout: config.propose_timeout,
                check_quorum_timeout: config.fetch_timeout * 3 / 2,
                liveness,
                snapshot_trigger,
                elector,
            },
            state,
        ))
    }

    /// Starts a new cluster whose voters are `voters` (node id and address), by writing the first
    /// membership at offset 0. Call it on every voter with the same set (like Kafka's
    /// `controller.quorum.voters`); a member whose log already has entries ignores it, as does a
    /// node that is not among the voters.
    pub async fn bootstrap(&self, voters: &BTreeMap<i32, String>) -> Result<(), QuorumError> {
        let members = voters
            .iter()
            .map(|(id, address)| raft_node_id(*id).map(|id| (id, BasicNode::new(address))))
            .collect::<Result<BTreeMap<_, _>, _>>()
            .map_err(|e| QuorumError::Storage(e.to_string()))?;
        match self.raft.initialize(members).await {
            Ok(())
            | Err(RaftError::APIError(
                InitializeError::NotAllowed(_) | InitializeError::NotInMembers(_),
            )) => Ok(()),
            Err(RaftError::Fatal(fatal)) => Err(fatal_error(&fatal)),
        }
    }

    /// Adds node `node_id`, reachable at `address`, as an observer (an openraft learner) that
    /// receives the committed log without voting; resolves once the change is committed. Only the
    /// leader can.
    pub async fn add_learner(&self, node_id: i32, address: &str) -> Result<(), QuorumError> {
        let id = raft_node_id(node_id).map_err(|e| QuorumError::Storage(e.to_string()))?;
        self.raft
            .add_learner(id, BasicNode::new(address), false)
            .await
            .map(drop)
            .map_err(client_write_error)
    }

    /// Makes `voters` the voter set (through joint consensus); every new voter must already be a
    /// member (added with [`Self::add_learner`]). Removed voters stay as observers when
    /// `keep_removed_as_observers`. Only the leader can.
    pub async fn change_membership(
        &self,
        voters: &BTreeSet<i32>,
        keep_removed_as_observers: bool,
    ) -> Result<(), QuorumError> {
        let ids = voters
            .iter()
            .map(|id| raft_node_id(*id))
            .collect::<Result<BTreeSet<_>, _>>()
            .map_err(|e| QuorumError::Storage(e.to_string()))?;
        self.raft
            .change_membership(
                ChangeMembers::ReplaceAllVoters(ids),
                keep_removed_as_observers,
            )
            .await
            .map(drop)
            .map_err(client_write_error)
    }

    /// Takes a snapshot of the applied image now (and purges the log behind it); resolves with the
    /// snapshot's end offset once it is on disk.
    pub async fn snapshot_now(&self) -> Result<i64, QuorumError> {
        let applied = u64::try_from(self.state.applied_offset())
            .map_err(|_| QuorumError::Storage("nothing to snapshot yet".into()))?;
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| fatal_error(&e))?;
        let mut metrics = self.raft.metrics();
        let taken = tokio::time::timeout(
            self.propose_timeout,
            metrics.wait_for(|m| m.snapshot.is_some_and(|s| s.index >= applied)),
        )
        .await;
        match taken {
            Ok(Ok(metrics)) => Ok(metrics
                .snapshot
                .map_or(0, |s| i64::try_from(s.index).unwrap_or(i64::MAX) + 1)),
            Ok(Err(_)) => Err(QuorumError::ShuttingDown),
            Err(_) => Err(QuorumError::Storage(
                "the metadata snapshot was not taken in time".into(),
            )),
        }
    }

    /// The leader as far as this node can tell: openraft's, unless that is this node and no
    /// majority has acknowledged it lately (it is cut off, and the others have likely moved on).
    fn leader(&self, metrics: &RaftMetrics<u64, BasicNode>) -> Option<i32> {
        let leader = metrics.current_leader?;
        let unacknowledged = metrics
            .millis_since_quorum_ack
            .is_none_or(|millis| u128::from(millis) > self.check_quorum_timeout.as_millis());
        if leader == metrics.id && unacknowledged {
            return None;
        }
        // A new leader acts as the active controller only once its state machine has applied an
        // entry of its own term (the blank entry it commits on election), hence every entry
        // committed before: a restarted node elected at once must not validate, fence or unfence
        // against the image of a log it has not replayed yet (Kafka's controller likewise waits
        // until it has caught up with the log before it acts).
        let caught_up = metrics
            .last_applied
            .is_some_and(|applied| applied.leader_id.term == metrics.current_term);
        if leader == metrics.id && !caught_up {
            return None;
        }
        Some(kafka_node_id(leader))
    }

    /// The receiving end of this node's Raft messages, for the transport to deliver to.
    pub fn rpc_handler(&self) -> RaftRpcHandler {
        RaftRpcHandler::new(self.node_id, self.raft.clone(), self.liveness.clone())
    }

    /// Stops this node's Raft (as a stopped process would); proposals then fail with
    /// [`QuorumError::ShuttingDown`].
    pub async fn shutdown(&self) {
        self.snapshot_trigger.abort();
        self.elector.abort();
        if let Err(error) = self.raft.shutdown().await {
            tracing::warn!(%error, "the metadata quorum did not stop cleanly");
        }
    }
}

/// The offset after the last applied entry.
fn applied_end(last_applied: Option<LogId>) -> i64 {
    last_applied.map_or(0, |id| {
        i64::try_from(id.index)
            .unwrap_or(i64::MAX)
            .saturating_add(1)
    })
}

impl Drop for RaftQuorum {
    fn drop(&mut self) {
        self.snapshot_trigger.abort();
        self.elector.abort();
    }
}

impl Quorum for RaftQuorum {
    fn propose(&self, records: Vec<Bytes>) -> ProposeFuture<'_> {
        Box::pin(async move {
            let metrics = self.raft.metrics().borrow().clone();
            if metrics.current_leader == Some(metrics.id) && self.leader(&metrics).is_none() {
                return Err(QuorumError::NotLeader { leader: None });
            }
            let write = self.raft.client_write(MetadataRecords(records));
            match tokio::time::timeout(self.propose_timeout, write).await {
                Ok(Ok(response)) => Ok(response.data),
                Ok(Err(error)) => Err(client_write_error(error)),
                Err(_) => {
                    tracing::warn!(
                        node_id = self.node_id,
                        timeout = ?self.propose_timeout,
                        "metadata proposal did not commit in time; this node has likely lost its quorum"
                    );
                    Err(QuorumError::NotLeader { leader: None })
                }
            }
        })
    }

    /// Voters and observers with, on the leader, how far each has replicated the log and when it
    /// last acknowledged and was caught up (from the appends this node sent it).
    fn status(&self) -> QuorumStatus {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let leading = metrics.state == ServerState::Leader;
        let acks = if leading {
            self.liveness.acks(metrics.current_term)
        } else {
            HashMap::new()
        };
        let now = now_ms();
        let to_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let leader_end = metrics.last_log_index.map_or(0, |i| i.saturating_add(1));
        let replica = |id: u64| {
            let endpoint = membership.get_node(&id).map(|node| node.addr.clone());
            let (log_end, times) = if !leading {
                (None, Acks::default())
            } else if id == metrics.id {
                let now = Some(now);
                (
                    Some(leader_end),
                    Acks {
                        last_fetch_ms: now,
                        last_caught_up_ms: now,
                    },
                )
            } else {
                let matched = metrics.replication.as_ref().and_then(|r| r.get(&id));
                (
                    matched.map(|m| m.map_or(0, |id| id.index.saturating_add(1))),
                    acks.get(&id).copied().unwrap_or_default(),
                )
            };
            ReplicaStatus {
                node_id: kafka_node_id(id),
                endpoint,
                log_end_offset: log_end.map(to_i64),
                last_fetch_ms: times.last_fetch_ms,
                last_caught_up_ms: times.last_caught_up_ms,
            }
        };
        QuorumStatus {
            node_id: self.node_id,
            leader_id: self.leader(&metrics),
            epoch: i32::try_from(metrics.current_term).unwrap_or(i32::MAX),
            high_watermark: applied_end(metrics.last_applied),
            voters: membership.voter_ids().map(replica).collect(),
            observers: membership.learner_ids().map(replica).collect(),
        }
    }
}
