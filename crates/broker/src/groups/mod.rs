//! Consumer groups (classic protocol) and committed offsets: the group coordinator's state machine
//! ([`coordinator`]), the per-group data ([`group`]), the `__consumer_offsets` record format
//! ([`records`]), its persistence ([`store`]) and the replay of one partition ([`load`]). This
//! broker coordinates every group whose offsets partition it leads, which on a single node is
//! every group.
//!
//! Lifecycle: [`start`] asks the controller for the offsets topic; the metadata publisher calls
//! [`follow_leadership`] with every image it applies, which tells the coordinator which offsets
//! partitions this broker leads, in which leader epoch; [`run_timers`] loads the partitions this
//! broker became leader of (one at a time, on the blocking pool, from their logs) and drives
//! session, rebalance and retention deadlines in the background.
//!
//! Threads: every coordinator call blocks, on a group's lock or on the append (and fsync) of that
//! group's records to `__consumer_offsets`, which may hold that lock for as long as the disk
//! takes. Handlers and the timer task therefore make every call through [`on_blocking_pool`]
//! (`tokio::task::spawn_blocking`), readers such as Heartbeat included since they may wait for a
//! writer of their group, so no tokio worker ever waits for a disk. This takes the broker as an
//! `Arc` (connections own one and hand it to the handlers). `spawn_blocking` was chosen over
//! `block_in_place` because it works on any runtime (`block_in_place` panics on a current-thread
//! one) and does not hand the worker's other tasks over to another thread on every call.

pub mod coordinator;
pub mod group;
pub mod load;
pub mod records;
pub mod store;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use strom_metadata::MetadataImage;
use tokio::sync::watch;

pub use coordinator::{ClientIdentity, GroupConfig, GroupCoordinator};
pub use store::{OffsetsTopic, OFFSETS_TOPIC};

use crate::config::BrokerConfig;
use crate::partitions::Role;
use crate::state::{now_ms, Broker};

/// How often session, join, sync and retention deadlines are checked.
const TIMER_TICK: Duration = Duration::from_millis(100);

impl GroupConfig {
    pub fn from_broker(config: &BrokerConfig) -> Self {
        GroupConfig {
            offsets_partitions: config.offsets_topic_num_partitions,
            min_session_timeout_ms: config.group_min_session_timeout_ms,
            max_session_timeout_ms: config.group_max_session_timeout_ms,
            initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms,
            offsets_retention_ms: i64::from(config.offsets_retention_minutes) * 60_000,
        }
    }
}

/// Creates `__consumer_offsets` on a single node if needed. On a cluster the first
/// FindCoordinator creates it, as in Kafka: by then the brokers have registered, so its
/// partitions (and its replication factor, capped by the brokers available) spread over all of
/// them, where a broker starting first would have found itself alone. If the topic cannot be
/// created, the broker starts without it and FindCoordinator tries again (answering
/// COORDINATOR_NOT_AVAILABLE meanwhile). Then the groups of the offsets partitions this broker
/// leads at start are loaded before it serves clients, so a restarted broker answers committed
/// offsets at once rather than COORDINATOR_LOAD_IN_PROGRESS (which kafka-python's admin client,
/// for one, does not retry); later leadership changes load in the background.
pub async fn start(broker: &Arc<Broker>) {
    if broker.config.controller_quorum_voters.is_empty() {
        if let Err(error) = store::ensure_offsets_topic(broker).await {
            tracing::warn!(message = %error.message, "cannot create {OFFSETS_TOPIC} yet");
        }
    }
    while let Some((partition, epoch)) = broker.groups.next_load() {
        on_blocking_pool(broker, move |broker| {
            load_partition(broker, partition, epoch);
        })
        .await;
    }
}

/// Tells the coordinator which `__consumer_offsets` partitions this broker leads in `image`,
/// and in which leader epoch (called by the metadata publisher for every image it applies,
/// after the partition owners follow it; an owner whose storage failed leads nothing).
pub fn follow_leadership(broker: &Broker, image: &MetadataImage) {
    let partitions: Vec<(i32, i32, bool)> = image
        .topic(OFFSETS_TOPIC)
        .map(|topic| {
            topic
                .partitions
                .iter()
                .map(|(&index, partition)| {
                    let leads = partition.leader == broker.node_id
                        && broker
                            .partitions
                            .get(OFFSETS_TOPIC, index)
                            .is_some_and(|owner| owner.role() == Role::Leader);
                    (index, partition.leader_epoch, leads)
                })
                .collect()
        })
        .unwrap_or_default();
    broker.groups.follow_leadership(&partitions, now_ms());
}

/// Loads offsets partition `partition` for leader epoch `epoch` (Kafka's
/// `loadGroupsAndOffsets`): replays its log and hands the groups to the coordinator, which keeps
/// them only if the partition is still led here in that epoch.
fn load_partition(broker: &Broker, partition: i32, epoch: i32) {
    let mut loaded = load::LoadedPartition::default();
    match store::read_partition(broker, partition, |key, value| loaded.replay(key, value)) {
        Ok(()) => {
            broker
                .groups
                .finish_load(partition, epoch, loaded, now_ms());
        }
        Err(error) => {
            tracing::error!(partition, epoch, %error, "cannot load the groups of an offsets partition");
            broker.groups.abandon_load(partition, epoch);
        }
    }
}

/// Runs the scheduled loads one after another until shutdown.
async fn run_loads(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    loop {
        while let Some((partition, epoch)) = broker.groups.next_load() {
            on_blocking_pool(&broker, move |broker| {
                load_partition(broker, partition, epoch);
            })
            .await;
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            () = broker.groups.load_scheduled() => {}
        }
    }
}

/// Runs a coordinator call on tokio's blocking pool and waits for it; `None` (logged) if the call
/// panicked or the runtime is shutting down, which handlers answer COORDINATOR_NOT_AVAILABLE.
pub async fn on_blocking_pool<T: Send + 'static>(
    broker: &Arc<Broker>,
    call: impl FnOnce(&Broker) -> T + Send + 'static,
) -> Option<T> {
    let broker = Arc::clone(broker);
    match tokio::task::spawn_blocking(move || call(&broker)).await {
        Ok(result) => Some(result),
        Err(error) => {
            tracing::error!(%error, "group coordinator call failed");
            None
        }
    }
}

/// Checks the coordinator's deadlines every [`TIMER_TICK`] until shutdown, and runs the loads of
/// the offsets partitions this broker becomes leader of beside it.
pub async fn run_timers(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    tokio::spawn(run_loads(broker.clone(), shutdown.clone()));
    let mut tick = tokio::time::interval(TIMER_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tick.tick() => {}
        }
        on_blocking_pool(&broker, |broker| {
            broker.groups.tick(now_ms(), &OffsetsTopic::new(broker));
        })
        .await;
    }
}
