//! Consumer groups (classic protocol) and committed offsets: the group coordinator's state machine
//! ([`coordinator`]), the per-group data ([`group`]), the `__consumer_offsets` record format
//! ([`records`]) and its persistence ([`store`]). This broker coordinates every group whose offsets
//! partition it leads, which on a single node is every group.
//!
//! Lifecycle: [`start`] asks the controller for the offsets topic; when the metadata publisher
//! sees it appear on this broker it calls [`load`], which replays it into the coordinator;
//! [`run_timers`] drives session, rebalance and retention deadlines in the background.
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
pub mod records;
pub mod store;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

pub use coordinator::{ClientIdentity, GroupConfig, GroupCoordinator};
pub use store::{OffsetsTopic, OFFSETS_TOPIC};

use crate::config::BrokerConfig;
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

/// Creates `__consumer_offsets` if needed. If the topic cannot be created yet (say, too few
/// brokers for its replication factor), the broker still starts; FindCoordinator tries again and
/// answers COORDINATOR_NOT_AVAILABLE meanwhile.
pub async fn start(broker: &Broker) {
    if let Err(error) = store::ensure_offsets_topic(broker).await {
        tracing::warn!(message = %error.message, "cannot create {OFFSETS_TOPIC} yet");
    }
}

/// Loads every group and committed offset from the offsets partitions hosted here (called by the
/// metadata publisher once their logs are open).
pub fn load(broker: &Broker) {
    let records = store::read_offsets_topic(broker);
    broker.groups.load(records, now_ms());
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

/// Checks the coordinator's deadlines every [`TIMER_TICK`] until shutdown.
pub async fn run_timers(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
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
