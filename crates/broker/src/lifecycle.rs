//! The broker's side of its membership in the cluster (Kafka's `BrokerLifecycleManager`): it
//! registers with the controller under a new incarnation id at every start, sends a heartbeat every
//! `broker.heartbeat.interval.ms` carrying the metadata offset it has applied (the controller
//! unfences it once that reaches its registration, and fences it when heartbeats stop for
//! `broker.session.timeout.ms`), re-registers if the controller no longer knows its epoch, and on
//! shutdown asks for a controlled shutdown: it keeps heartbeating with `want_shut_down` until the
//! controller has moved its leaderships away. The active controller's side — fencing brokers whose
//! session expired — runs here too when this node is a controller ([`run_fencing`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strom_metadata::controller::{BrokerHeartbeatRequest, BrokerRegistrationRequest};
use strom_metadata::{Controller, MetadataError};
use strom_protocol::ErrorCode;
use tokio::sync::watch;

use crate::state::Broker;

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
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval((session_timeout / 4).max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_active = false;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tick.tick() => {}
        }
        let active = controller.quorum().status().leader_id == Some(controller.node_id());
        if !active {
            was_active = false;
            continue;
        }
        if !was_active {
            // Heartbeats went to another controller meanwhile: start every session afresh.
            controller.reset_sessions();
            was_active = true;
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
