//! The broker's side of its membership in the cluster (Kafka's `BrokerLifecycleManager`): it
//! registers with the controller under a new incarnation id at every start, sends a heartbeat every
//! `broker.heartbeat.interval.ms` carrying the metadata offset it has applied (the controller
//! unfences it once that reaches its registration, and fences it when heartbeats stop for
//! `broker.session.timeout.ms`), re-registers if the controller no longer knows its epoch, and on
//! shutdown asks for a controlled shutdown: it keeps heartbeating with `want_shut_down` until the
//! controller has moved its leaderships away. The active controller's side — fencing brokers whose
//! session expired — runs here too when this node is a controller ([`run_fencing`]), as do its
//! periodic leader elections ([`run_leader_elections`]: automatic preferred leader balancing and
//! unclean elections for leaderless partitions of topics that allow them).
//!
//! Beyond Kafka: a broker whose process is gone is fenced at once, not after its session. The
//! active controller suspects a broker when the connection its heartbeats came over closes, when
//! it has missed a heartbeat, and every broker when this node has just become the active
//! controller; it then connects to the suspect's listener, and a refused connection (nothing
//! listens: the process died) fences it. A broker that is alive but silent (paused, cut off)
//! still accepts connections, or times out, and keeps its session until
//! `broker.session.timeout.ms` as in Kafka. So a killed leader's partitions move in about the
//! time a TCP connection takes to fail, instead of 9 s.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strom_metadata::controller::{BrokerHeartbeatRequest, BrokerRegistrationRequest};
use strom_metadata::{Controller, MetadataError};
use strom_protocol::ErrorCode;
use tokio::sync::watch;

use crate::state::Broker;

/// How often the active controller looks for brokers to check (and to fence by session).
const PROBE_TICK: Duration = Duration::from_millis(250);
/// How long a check of a suspected broker's listener goes on: a process being killed closes its
/// connections a moment before its listening socket.
const PROBE_WINDOW: Duration = Duration::from_millis(600);

/// Checks whether suspected broker `broker_id` is gone: connects to its endpoint on the
/// inter-broker `listener` (the one brokers reach each other by; all its endpoints if it lacks
/// that), each attempt bounded, a few attempts over [`PROBE_WINDOW`]; every one refusing means no
/// process listens, and the broker is fenced now.
async fn fence_if_gone(controller: Arc<Controller>, broker_id: i32, listener: String) {
    let checked_at = Instant::now();
    let image = controller.image();
    let Some(registration) = image.brokers.get(&broker_id) else {
        return;
    };
    let addresses: Vec<(String, u16)> = match crate::state::endpoint_on(registration, &listener) {
        Some(endpoint) => vec![(endpoint.host.clone(), endpoint.port)],
        None => registration
            .listeners
            .iter()
            .map(|endpoint| (endpoint.host.clone(), endpoint.port))
            .collect(),
    };
    if addresses.is_empty() {
        return;
    }
    let deadline = checked_at + PROBE_WINDOW;
    loop {
        let mut all_refused = true;
        for (host, port) in &addresses {
            let attempt = tokio::time::timeout(
                Duration::from_millis(200),
                tokio::net::TcpStream::connect((host.as_str(), *port)),
            )
            .await;
            let refused = matches!(&attempt, Ok(Err(error)) if error.kind() == std::io::ErrorKind::ConnectionRefused);
            all_refused &= refused;
        }
        if all_refused {
            match controller
                .fence_unreachable_broker(broker_id, checked_at)
                .await
            {
                Ok(true) => tracing::warn!(
                    broker = broker_id,
                    "fenced a broker whose process is gone (its listeners refuse connections)"
                ),
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(broker = broker_id, message = %error.message, "cannot fence a gone broker")
                }
            }
            return;
        }
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Pause between attempts while the controller cannot be reached or refuses.
const RETRY_BACKOFF: Duration = Duration::from_millis(100);
/// How long a start waits to be unfenced, and a shutdown to be let go, before giving up.
const PHASE_TIMEOUT: Duration = Duration::from_secs(60);

fn heartbeat_interval(broker: &Broker) -> Duration {
    Duration::from_millis(u64::try_from(broker.config.broker_heartbeat_interval_ms).unwrap_or(2000))
}

/// Registers this broker and heartbeats until the controller has unfenced it.
pub async fn register_and_unfence(broker: &Broker) -> anyhow::Result<()> {
    let deadline = Instant::now() + PHASE_TIMEOUT;
    let request = BrokerRegistrationRequest {
        broker_id: broker.node_id,
        incarnation_id: broker.incarnation_id,
        listeners: broker.advertised_listeners.clone(),
        rack: broker.config.broker_rack.clone(),
    };
    register(broker, &request, deadline).await?;
    loop {
        match send_heartbeat(broker, false).await {
            Ok(reply) if !reply.is_fenced => {
                tracing::info!(
                    broker_id = broker.node_id,
                    epoch = broker.broker_epoch.load(Ordering::Relaxed),
                    "registered with the controller and unfenced"
                );
                // Caught up with the committed metadata: only now is a log directory the image
                // does not name known to be stray.
                let image = broker.image();
                let partitions = &broker.partitions;
                crate::partitions::off_worker(|| partitions.set_aside_unknown_dirs(&image));
                return Ok(());
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(message = %error.message, "heartbeat failed; retrying"),
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "broker {} was not unfenced by the controller",
                broker.node_id
            );
        }
        broker.catch_up_with_controller().await;
        tokio::time::sleep(RETRY_BACKOFF).await;
    }
}

async fn register(
    broker: &Broker,
    request: &BrokerRegistrationRequest,
    deadline: Instant,
) -> anyhow::Result<()> {
    loop {
        match broker.controller.register(request.clone()).await {
            Ok(epoch) => {
                broker.broker_epoch.store(epoch, Ordering::Relaxed);
                return Ok(());
            }
            Err(error) if Instant::now() < deadline => {
                tracing::warn!(message = %error.message, "cannot register with the controller yet; retrying");
                tokio::time::sleep(RETRY_BACKOFF).await;
            }
            Err(error) => anyhow::bail!(
                "cannot register broker {} with the controller: {}",
                broker.node_id,
                error.message
            ),
        }
    }
}

async fn send_heartbeat(
    broker: &Broker,
    want_shut_down: bool,
) -> Result<strom_metadata::controller::BrokerHeartbeatReply, MetadataError> {
    broker
        .controller
        .heartbeat(BrokerHeartbeatRequest {
            broker_id: broker.node_id,
            broker_epoch: broker.broker_epoch.load(Ordering::Relaxed),
            current_metadata_offset: broker.image().last_offset,
            want_fence: false,
            want_shut_down,
        })
        .await
}

/// Heartbeats every `broker.heartbeat.interval.ms` until shutdown, re-registering when the
/// controller has lost this broker's registration (stale epoch, unknown id).
pub async fn run_heartbeats(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(heartbeat_interval(&broker));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tick.tick() => {}
        }
        match send_heartbeat(&broker, false).await {
            Ok(_) => {}
            Err(error)
                if error.code == ErrorCode::StaleBrokerEpoch.code()
                    || error.code == ErrorCode::BrokerIdNotRegistered.code() =>
            {
                tracing::warn!(message = %error.message, "the controller lost this broker's registration; registering again");
                if let Err(error) = register_and_unfence(&broker).await {
                    tracing::error!(%error, "re-registration failed");
                }
            }
            Err(error) => tracing::warn!(message = %error.message, "heartbeat failed"),
        }
    }
}

/// Controlled shutdown: asks the controller to move this broker's leaderships away and waits
/// until it says the broker may stop (or [`PHASE_TIMEOUT`] passes).
pub async fn controlled_shutdown(broker: &Broker) {
    let deadline = Instant::now() + PHASE_TIMEOUT;
    loop {
        match send_heartbeat(broker, true).await {
            Ok(reply) if reply.should_shut_down => {
                tracing::info!("controlled shutdown complete: leaderships moved");
                return;
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(message = %error.message, "controlled shutdown heartbeat failed")
            }
        }
        if Instant::now() >= deadline {
            tracing::warn!("controlled shutdown did not complete in time; stopping anyway");
            return;
        }
        tokio::time::sleep(RETRY_BACKOFF).await;
    }
}

/// On a controller node: fences brokers whose session expired, checking four times per session
/// while this node is the active controller.
pub async fn run_fencing(
    controller: Arc<Controller>,
    session_timeout: Duration,
    heartbeat_interval: Duration,
    inter_broker_listener: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let tick_every = (session_timeout / 4)
        .min(PROBE_TICK)
        .max(Duration::from_millis(10));
    let mut tick = tokio::time::interval(tick_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_active = false;
    let mut last_round = Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tick.tick() => {}
            () = controller.suspects_added() => {}
        }
        // A controller that stood still itself (paused, starved) heard no heartbeats meanwhile:
        // the brokers' silence is its own, so their sessions start afresh.
        let stalled = last_round.elapsed() > session_timeout / 2;
        last_round = Instant::now();
        let status = controller.quorum().status();
        let active = status.leader_id == Some(controller.node_id());
        if !active {
            if was_active {
                tracing::info!(epoch = status.epoch, "no longer the active controller");
            }
            was_active = false;
            continue;
        }
        if !was_active {
            tracing::info!(epoch = status.epoch, "became the active controller");
            // Heartbeats went to another controller meanwhile: start every session afresh (and
            // suspect every broker at once: take_suspects sees no heartbeat from any).
            controller.reset_sessions();
            was_active = true;
        } else if stalled {
            tracing::info!(
                "this controller stood still for a while: brokers' sessions start afresh"
            );
            controller.reset_sessions();
        }
        // A heartbeat missed by more than this is reason to check the broker's process.
        let silence = heartbeat_interval + PROBE_TICK;
        for broker_id in controller.take_suspects(silence) {
            tokio::spawn(fence_if_gone(
                controller.clone(),
                broker_id,
                inter_broker_listener.clone(),
            ));
        }
        match controller.fence_stale_brokers().await {
            Ok(fenced) if !fenced.is_empty() => {
                tracing::warn!(brokers = ?fenced, "fenced brokers whose session expired");
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(message = %error.message, "cannot fence stale brokers"),
        }
    }
}

/// When the active controller runs its periodic leader elections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElectionSchedule {
    /// `leader.imbalance.check.interval.seconds`, `None` unless `auto.leader.rebalance.enable`.
    pub balance_every: Option<Duration>,
    /// `leader.imbalance.per.broker.percentage`.
    pub imbalance_percentage: i32,
    /// `unclean.leader.election.interval.ms`.
    pub unclean_every: Duration,
}

impl ElectionSchedule {
    pub fn from_config(config: &crate::config::BrokerConfig) -> Self {
        let seconds = u64::try_from(config.leader_imbalance_check_interval_seconds).unwrap_or(300);
        let unclean_ms =
            u64::try_from(config.unclean_leader_election_interval_ms).unwrap_or(300_000);
        Self {
            balance_every: config
                .auto_leader_rebalance_enable
                .then(|| Duration::from_secs(seconds.max(1))),
            imbalance_percentage: config.leader_imbalance_per_broker_percentage,
            unclean_every: Duration::from_millis(unclean_ms.max(1)),
        }
    }
}

/// An interval whose first tick is one period from now.
fn periodic(period: Duration) -> tokio::time::Interval {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

/// On a controller node: while it is the active controller, balances leaders every
/// `leader.imbalance.check.interval.seconds` (if `auto.leader.rebalance.enable`) and elects
/// unclean leaders every `unclean.leader.election.interval.ms` where topics allow it.
pub async fn run_leader_elections(
    controller: Arc<Controller>,
    schedule: ElectionSchedule,
    mut shutdown: watch::Receiver<bool>,
) {
    // With balancing off its timer never fires (a period far beyond any run).
    let never = Duration::from_secs(u64::from(u32::MAX));
    let mut balance = periodic(schedule.balance_every.unwrap_or(never));
    let mut unclean = periodic(schedule.unclean_every);
    loop {
        let balancing = tokio::select! {
            _ = shutdown.changed() => return,
            _ = balance.tick() => true,
            _ = unclean.tick() => false,
        };
        if controller.quorum().status().leader_id != Some(controller.node_id()) {
            continue;
        }
        if balancing && schedule.balance_every.is_some() {
            match controller
                .balance_leaders(schedule.imbalance_percentage)
                .await
            {
                Ok(0) => {}
                Ok(moved) => tracing::info!(
                    partitions = moved,
                    "moved leadership back to preferred replicas"
                ),
                Err(error) => tracing::warn!(message = %error.message, "cannot balance leaders"),
            }
        } else if !balancing {
            if let Err(error) = controller.elect_unclean_leaders().await {
                tracing::warn!(message = %error.message, "cannot elect unclean leaders");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use strom_metadata::controller::AlterPartitionRequest;

    use super::*;

    async fn register(controller: &Controller, id: i32) -> i64 {
        let epoch = controller
            .register(BrokerRegistrationRequest {
                broker_id: id,
                incarnation_id: strom_metadata::meta_properties::random_uuid(),
                listeners: Vec::new(),
                rack: None,
            })
            .await
            .expect("registered");
        let heartbeat = |want_fence| BrokerHeartbeatRequest {
            broker_id: id,
            broker_epoch: epoch,
            current_metadata_offset: i64::MAX,
            want_fence,
            want_shut_down: false,
        };
        controller
            .heartbeat(heartbeat(false))
            .await
            .expect("unfenced");
        epoch
    }

    #[tokio::test]
    async fn the_active_controller_moves_leadership_back_to_preferred_replicas() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (quorum, state) = strom_metadata::LocalQuorum::open(dir.path(), 1, None, u64::MAX)
            .expect("metadata log opens");
        let controller = Arc::new(Controller::new(
            1,
            Arc::new(quorum),
            state,
            Duration::from_secs(60),
        ));
        let mut epochs = std::collections::HashMap::new();
        for id in 1..=3 {
            epochs.insert(id, register(&controller, id).await);
        }
        let topic = controller
            .create_topic("t", 1, 3, &[], false)
            .await
            .expect("topic");
        let partition = || controller.image().topic("t").expect("topic").partitions[&0].clone();
        // Broker 1 restarts: leadership moves to 2; 2 then takes 1 back into the ISR.
        controller
            .heartbeat(BrokerHeartbeatRequest {
                broker_id: 1,
                broker_epoch: epochs[&1],
                current_metadata_offset: i64::MAX,
                want_fence: true,
                want_shut_down: false,
            })
            .await
            .expect("fenced");
        register(&controller, 1).await;
        let moved = partition();
        assert_eq!(moved.leader, 2);
        controller
            .alter_partition(AlterPartitionRequest {
                broker_id: 2,
                broker_epoch: epochs[&2],
                topic_id: topic.topic_id,
                partition: 0,
                leader_epoch: moved.leader_epoch,
                partition_epoch: moved.partition_epoch,
                new_isr: vec![2, 3, 1],
            })
            .await
            .expect("ISR expanded");

        let (stop, stopped) = watch::channel(false);
        let schedule = ElectionSchedule {
            balance_every: Some(Duration::from_millis(20)),
            imbalance_percentage: 10,
            unclean_every: Duration::from_secs(3600),
        };
        let task = tokio::spawn(run_leader_elections(controller.clone(), schedule, stopped));
        let deadline = Instant::now() + Duration::from_secs(10);
        while partition().leader != 1 {
            assert!(Instant::now() < deadline, "leadership never moved back");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.send(true).expect("task listens");
        task.await.expect("task ends");
    }

    #[test]
    fn the_schedule_follows_the_config() {
        let mut config = crate::config::BrokerConfig::default();
        let schedule = ElectionSchedule::from_config(&config);
        assert_eq!(schedule.balance_every, Some(Duration::from_secs(300)));
        assert_eq!(schedule.imbalance_percentage, 10);
        assert_eq!(schedule.unclean_every, Duration::from_secs(300));
        config.auto_leader_rebalance_enable = false;
        assert_eq!(ElectionSchedule::from_config(&config).balance_every, None);
    }
}
