//! One replica fetcher: a task that copies the partitions this broker follows from one leader
//! (Kafka's `ReplicaFetcherThread`), all of them in each Fetch request.
//!
//! Each round asks, per partition, from the follower's log end with its leader epoch and the
//! epoch of its last batch; the leader long-polls (`replica.fetch.wait.max.ms`,
//! `replica.fetch.min.bytes`) until it has something. Per partition of the answer: records are
//! appended exactly as the leader wrote them and the leader's high watermark and log start are
//! taken; a `diverging_epoch` truncates the log where it parts from the leader's (KIP-595's
//! fetch validation, never by high watermark alone); OFFSET_OUT_OF_RANGE resets the log
//! ([`Partition::reset_out_of_range`]); a partition error pauses that partition while the
//! others go on: 50 ms when leader and follower disagree on the leadership for a moment (the
//! new leader's high watermark waits for this follower), `replica.fetch.backoff.ms` otherwise. A failed connection or request is retried after the same backoff on a new
//! connection. Appends and truncations block on the disk, so they run off the worker.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use strom_protocol::codec::Uuid;
use strom_protocol::messages::fetch_request::{
    FetchPartition, FetchRequest, FetchTopic, ReplicaState,
};
use strom_protocol::messages::fetch_response::FetchResponse;
use strom_protocol::messages::{RequestBody, ResponseBody};
use strom_protocol::ErrorCode;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::peer::{PeerConnection, PeerError};
use crate::partitions::{off_worker, FollowerPosition, Partition, PartitionError};
use crate::state::{endpoint_on, Broker};

/// The Fetch version followers use (topic ids, `replica_state`, diverging epochs).
const FETCH_VERSION: i16 = 15;

/// A partition this fetcher copies, keyed by topic id and index.
pub(super) type FollowedPartitions = BTreeMap<(Uuid, i32), Arc<Partition>>;

/// What the manager shares with one fetcher task.
pub(super) struct FetcherShared {
    pub leader: i32,
    pub partitions: Mutex<FollowedPartitions>,
    /// Woken when the partition set changes.
    pub changed: Notify,
}

impl FetcherShared {
    fn snapshot(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }
}

/// Runs one fetcher until it is aborted by the manager.
pub(super) async fn run(broker: Arc<Broker>, shared: Arc<FetcherShared>) {
    let settings = broker.config.replication.clone();
    let backoff = Duration::from_millis(u64::try_from(settings.fetch_backoff_ms).unwrap_or(1000));
    let socket_timeout =
        Duration::from_millis(u64::try_from(settings.socket_timeout_ms).unwrap_or(30_000));
    let max_wait =
        Duration::from_millis(u64::try_from(settings.fetch_wait_max_ms.max(0)).unwrap_or(500));
    let max_frame_bytes = usize::try_from(broker.config.socket_request_max_bytes)
        .unwrap_or(100 << 20)
        .max(usize::try_from(settings.fetch_response_max_bytes).unwrap_or(0) * 2);
    let mut connection: Option<PeerConnection> = None;
    let mut paused: HashMap<(Uuid, i32), Instant> = HashMap::new();
    let mut failures_logged = 0u32;
    loop {
        let now = Instant::now();
        paused.retain(|_, until| *until > now);
        let batch: Vec<(Arc<Partition>, FollowerPosition)> = shared
            .snapshot()
            .into_iter()
            .filter(|p| !paused.contains_key(&(p.topic_id, p.index)))
            .filter_map(|p| p.follower_position().map(|position| (p, position)))
            .collect();
        if batch.is_empty() {
            let next_resume = paused.values().min().copied();
            let wake = next_resume.unwrap_or(now + backoff);
            let _ = tokio::time::timeout_at(wake, shared.changed.notified()).await;
            continue;
        }
        if connection.is_none() {
            match connect(&broker, shared.leader, max_frame_bytes, socket_timeout).await {
                Ok(peer) => connection = Some(peer),
                Err(error) => {
                    log_failure(&mut failures_logged, shared.leader, &error);
                    let _ = tokio::time::timeout(backoff, shared.changed.notified()).await;
                    continue;
                }
            }
        }
        let Some(peer) = connection.as_mut() else {
            continue;
        };
        let request = fetch_request(&broker, &batch);
        let answer = peer
            .call(&request, FETCH_VERSION, max_wait + socket_timeout)
            .await;
        let response = match answer {
            Ok(ResponseBody::Fetch(response)) => response,
            Ok(other) => {
                let error = PeerError::Malformed {
                    address: peer.address().to_string(),
                    detail: format!("a Fetch was answered with API key {}", other.api_key()),
                };
                log_failure(&mut failures_logged, shared.leader, &error);
                connection = None;
                continue;
            }
            Err(error) => {
                log_failure(&mut failures_logged, shared.leader, &error);
                connection = None;
                let _ = tokio::time::timeout(backoff, shared.changed.notified()).await;
                continue;
            }
        };
        if failures_logged > 0 {
            tracing::info!(
                leader = shared.leader,
                "replica fetcher reconnected to its leader"
            );
            failures_logged = 0;
        }
        if response.error_code != 0 {
            tracing::warn!(
                leader = shared.leader,
                error = error_name(response.error_code),
                "the leader refused a replica fetch"
            );
            tokio::time::sleep(backoff).await;
            continue;
        }
        let positions: HashMap<(Uuid, i32), (Arc<Partition>, FollowerPosition)> = batch
            .into_iter()
            .map(|(p, position)| ((p.topic_id, p.index), (p, position)))
            .collect();
        let to_pause = off_worker(|| apply_response(response, &positions));
        for (key, pause) in to_pause {
            let pause = match pause {
                Pause::LeadershipSettling => backoff.min(LEADERSHIP_SETTLING_BACKOFF),
                Pause::Backoff => backoff,
            };
            paused.insert(key, Instant::now() + pause);
        }
    }
}

/// Connects to the leader's inter-broker listener as the published image names it.
async fn connect(
    broker: &Broker,
    leader: i32,
    max_frame_bytes: usize,
    timeout: Duration,
) -> Result<PeerConnection, PeerError> {
    let image = broker.image();
    // The leader's endpoint on the inter-broker listener (its first one if it lacks that).
    let listener = broker.config.inter_broker_listener();
    let (host, port) = image
        .brokers
        .get(&leader)
        .and_then(|registration| {
            endpoint_on(registration, &listener).or_else(|| registration.listeners.first())
        })
        .map(|endpoint| (endpoint.host.clone(), endpoint.port))
        .ok_or_else(|| PeerError::Connect {
            address: format!("broker {leader}"),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the leader is not registered",
            ),
        })?;
    let client_id = format!("strom-replica-fetcher-{}-to-{leader}", broker.node_id);
    PeerConnection::connect(&host, port, client_id, max_frame_bytes, timeout).await
}

/// The Fetch request for `batch`, one topic entry per topic.
fn fetch_request(broker: &Broker, batch: &[(Arc<Partition>, FollowerPosition)]) -> RequestBody {
    let settings = &broker.config.replication;
    let mut topics: BTreeMap<Uuid, Vec<FetchPartition>> = BTreeMap::new();
    for (partition, position) in batch {
        topics
            .entry(partition.topic_id)
            .or_default()
            .push(FetchPartition {
                partition: partition.index,
                current_leader_epoch: position.leader_epoch,
                fetch_offset: position.fetch_offset,
                last_fetched_epoch: position.last_fetched_epoch,
                log_start_offset: position.log_start_offset,
                partition_max_bytes: settings.fetch_max_bytes,
                ..Default::default()
            });
    }
    RequestBody::Fetch(FetchRequest {
        replica_id: broker.node_id,
        replica_state: ReplicaState {
            replica_id: broker.node_id,
            replica_epoch: broker
                .broker_epoch
                .load(std::sync::atomic::Ordering::Acquire),
        },
        max_wait_ms: settings.fetch_wait_max_ms,
        min_bytes: settings.fetch_min_bytes,
        max_bytes: settings.fetch_response_max_bytes,
        isolation_level: 0,
        session_id: 0,
        session_epoch: -1,
        topics: topics
            .into_iter()
            .map(|(topic_id, partitions)| FetchTopic {
                topic_id,
                partitions,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    })
}

/// How long a partition pauses after its leader answered for another leadership than ours
/// (NOT_LEADER_OR_FOLLOWER, FENCED/UNKNOWN_LEADER_EPOCH): the two brokers apply the same
/// metadata moments apart, and the new leader's high watermark waits for this fetch, so the
/// retry comes soon rather than after `replica.fetch.backoff.ms`.
const LEADERSHIP_SETTLING_BACKOFF: Duration = Duration::from_millis(50);

/// Why a partition pauses.
enum Pause {
    /// Leader and follower disagree on the leadership for a moment.
    LeadershipSettling,
    /// Anything else: `replica.fetch.backoff.ms`.
    Backoff,
}

/// Applies a leader's answer to the followed partitions (blocking); returns the partitions to
/// pause, and for how long.
fn apply_response(
    response: FetchResponse,
    positions: &HashMap<(Uuid, i32), (Arc<Partition>, FollowerPosition)>,
) -> Vec<((Uuid, i32), Pause)> {
    let mut to_pause = Vec::new();
    for topic in response.responses {
        for data in topic.partitions {
            let key = (topic.topic_id, data.partition_index);
            let Some((partition, position)) = positions.get(&key) else {
                continue;
            };
            let epoch = position.leader_epoch;
            let outcome = match ErrorCode::from_code(data.error_code) {
                Some(ErrorCode::None) if data.diverging_epoch.epoch >= 0 => partition
                    .truncate_to_divergence(
                        epoch,
                        data.diverging_epoch.epoch,
                        data.diverging_epoch.end_offset,
                    ),
                Some(ErrorCode::None) => {
                    let records = data.records.unwrap_or_default();
                    partition.append_from_leader(
                        epoch,
                        &records,
                        data.high_watermark,
                        data.log_start_offset,
                    )
                }
                Some(ErrorCode::OffsetOutOfRange) => partition.reset_out_of_range(
                    epoch,
                    position.fetch_offset,
                    data.high_watermark,
                    data.log_start_offset,
                ),
                error => {
                    tracing::debug!(
                        partition = %partition.name(),
                        error = error_name(data.error_code),
                        "replica fetch of a partition refused: pausing it"
                    );
                    let pause = match error {
                        Some(
                            ErrorCode::NotLeaderOrFollower
                            | ErrorCode::FencedLeaderEpoch
                            | ErrorCode::UnknownLeaderEpoch,
                        ) => Pause::LeadershipSettling,
                        _ => Pause::Backoff,
                    };
                    to_pause.push((key, pause));
                    continue;
                }
            };
            match outcome {
                Ok(()) => {}
                // The leadership moved meanwhile: the manager reassigns the partition.
                Err(PartitionError::NotLeader(_)) => {}
                Err(error) => {
                    tracing::warn!(partition = %partition.name(), %error, "replicating a partition failed");
                    to_pause.push((key, Pause::Backoff));
                }
            }
        }
    }
    to_pause
}

/// Logs a fetcher failure: the first few at WARN, then every 100th.
fn log_failure(failures_logged: &mut u32, leader: i32, error: &PeerError) {
    *failures_logged = failures_logged.saturating_add(1);
    if *failures_logged <= 3 || failures_logged.is_multiple_of(100) {
        tracing::warn!(leader, %error, failures = *failures_logged, "replica fetcher cannot fetch from its leader; retrying");
    }
}

/// A Kafka error code's name, for log lines.
fn error_name(code: i16) -> &'static str {
    ErrorCode::from_code(code).map_or("UNKNOWN_SERVER_ERROR", ErrorCode::name)
}
