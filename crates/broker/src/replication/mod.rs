//! Partition replication on this broker (Kafka's `ReplicaManager` duties beyond serving
//! requests): the replica fetchers that copy the partitions this broker follows from their
//! leaders, and, for the partitions it leads, the ISR changes it proposes to the controller.
//!
//! - [`ReplicaFetcherManager`] keeps one fetcher task per (leader, fetcher index):
//!   `num.replica.fetchers` per source broker, each partition on one of them by hash. The
//!   publisher calls [`on_image`] after every applied metadata image, so a partition starts
//!   following its new leader as soon as this broker learns of it, and stops when this broker
//!   leads it or no longer hosts it. See [`fetcher`] for one fetcher's loop.
//! - The leader side lives in the partition owner ([`crate::partitions::Partition::fetch`] and
//!   [`crate::replica_set`]); what it decides to change in the ISR goes to the controller here
//!   ([`propose_isr_change`], AlterPartition) and takes effect once committed. Lagging followers
//!   are checked every `replica.lag.time.max.ms / 2` ([`run_isr_expiration`]).

mod fetcher;
mod peer;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use strom_metadata::controller::AlterPartitionRequest;
use strom_metadata::MetadataImage;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::partitions::{Partition, Role};
use crate::replica_set::IsrChange;
use crate::state::Broker;
use fetcher::{FetcherShared, FollowedPartitions};

/// A fetcher's identity: the leader it copies from, and its index among that leader's fetchers.
type FetcherKey = (i32, usize);

/// The running fetchers of this broker.
#[derive(Default)]
pub struct ReplicaFetcherManager {
    fetchers: Mutex<HashMap<FetcherKey, RunningFetcher>>,
}

struct RunningFetcher {
    shared: Arc<FetcherShared>,
    task: JoinHandle<()>,
}

impl ReplicaFetcherManager {
    /// Stops every fetcher (shutdown).
    pub fn stop_all(&self) {
        let fetchers = std::mem::take(&mut *self.lock());
        for fetcher in fetchers.into_values() {
            fetcher.task.abort();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<FetcherKey, RunningFetcher>> {
        self.fetchers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Brings the fetchers in line with `image` (already applied to the partition registry): every
/// partition this broker follows, with a live leader elsewhere, is copied by exactly one fetcher.
pub fn on_image(broker: &Arc<Broker>, image: &MetadataImage) {
    let fetcher_count = usize::try_from(broker.config.replication.num_fetchers.max(1)).unwrap_or(1);
    let mut wanted: HashMap<FetcherKey, FollowedPartitions> = HashMap::new();
    for partition in broker.partitions.all() {
        if partition.role() != Role::Follower {
            continue;
        }
        let leader = image
            .topic_by_id(&partition.topic_id)
            .and_then(|topic| topic.partitions.get(&partition.index))
            .map_or(-1, |p| p.leader);
        if leader < 0 || leader == broker.node_id {
            continue;
        }
        let key = (leader, fetcher_index(&partition, fetcher_count));
        wanted
            .entry(key)
            .or_default()
            .insert((partition.topic_id, partition.index), partition);
    }
    let mut fetchers = broker.replica_fetchers.lock();
    fetchers.retain(|key, fetcher| {
        let keep = wanted.contains_key(key);
        if !keep {
            fetcher.task.abort();
        }
        keep
    });
    for (key, partitions) in wanted {
        match fetchers.get(&key) {
            Some(fetcher) => {
                let mut current = fetcher
                    .shared
                    .partitions
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let same = current.len() == partitions.len()
                    && current
                        .iter()
                        .zip(partitions.iter())
                        .all(|((a, pa), (b, pb))| a == b && Arc::ptr_eq(pa, pb));
                if !same {
                    *current = partitions;
                    fetcher.shared.changed.notify_one();
                }
            }
            None => {
                tracing::info!(
                    leader = key.0,
                    fetcher = key.1,
                    partitions = partitions.len(),
                    "starting a replica fetcher"
                );
                let shared = Arc::new(FetcherShared {
                    leader: key.0,
                    partitions: Mutex::new(partitions),
                    changed: Notify::new(),
                });
                let task = tokio::spawn(fetcher::run(broker.clone(), shared.clone()));
                fetchers.insert(key, RunningFetcher { shared, task });
            }
        }
    }
}

/// Which of a leader's fetchers copies `partition`.
fn fetcher_index(partition: &Partition, fetcher_count: usize) -> usize {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (&partition.topic, partition.index).hash(&mut hasher);
    usize::try_from(hasher.finish() % fetcher_count as u64).unwrap_or(0)
}

/// Sends an ISR change this leader decided on (already marked in flight in the partition) to the
/// controller, and settles it with the controller's answer. Returns at once.
pub fn propose_isr_change(broker: &Broker, partition: &Arc<Partition>, change: IsrChange) {
    let controller = broker.controller.clone();
    let before = partition.isr();
    tracing::info!(
        partition = %partition.name(),
        from = ?before,
        to = ?change.new_isr,
        "proposing an ISR change"
    );
    let request = AlterPartitionRequest {
        broker_id: broker.node_id,
        broker_epoch: broker
            .broker_epoch
            .load(std::sync::atomic::Ordering::Acquire),
        topic_id: partition.topic_id,
        partition: partition.index,
        leader_epoch: change.leader_epoch,
        partition_epoch: change.partition_epoch,
        new_isr: change.new_isr,
    };
    let partition = partition.clone();
    tokio::spawn(async move {
        let committed = match controller.alter_partition(request).await {
            Ok(state) if state.leader_epoch == change.leader_epoch => {
                Some((state.isr, state.partition_epoch))
            }
            Ok(_) => None,
            Err(error) => {
                tracing::warn!(partition = %partition.name(), %error, "the controller refused an ISR change");
                None
            }
        };
        let settle = tokio::task::spawn_blocking(move || partition.complete_isr_change(committed));
        if let Err(error) = settle.await {
            tracing::error!(%error, "settling an ISR change failed");
        }
    });
}

/// Every `replica.lag.time.max.ms / 2`, proposes to drop from the ISR of each partition this
/// broker leads the followers that have not caught up for `replica.lag.time.max.ms`.
///
/// A round that comes much later than its tick means this broker itself stood still (paused,
/// starved): its followers could not fetch from it meanwhile, so their lag says nothing about
/// them, and that round is skipped — otherwise a leader resuming from a pause would drop every
/// follower from its ISR.
pub async fn run_isr_expiration(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let max_lag_ms = broker.config.replication.lag_time_max_ms.max(1);
    let tick = Duration::from_millis(u64::try_from(max_lag_ms / 2).unwrap_or(1).max(1));
    let mut last_round = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            () = tokio::time::sleep(tick) => {}
        }
        let now = tokio::time::Instant::now();
        let stalled = now.duration_since(last_round) > tick * 3 / 2;
        last_round = now;
        if stalled {
            tracing::info!(
                "this broker stood still for a while: skipping one lagging-follower check"
            );
            continue;
        }
        let scan = {
            let broker = broker.clone();
            tokio::task::spawn_blocking(move || {
                broker
                    .partitions
                    .all()
                    .into_iter()
                    .filter_map(|partition| {
                        let change = partition.isr_shrink_due(max_lag_ms)?;
                        Some((partition, change))
                    })
                    .collect::<Vec<_>>()
            })
        };
        match scan.await {
            Ok(changes) => {
                for (partition, change) in changes {
                    propose_isr_change(&broker, &partition, change);
                }
            }
            Err(error) => tracing::error!(%error, "checking for lagging followers failed"),
        }
    }
}
