//! The broker's side of its membership in the cluster (Kafka's `BrokerLifecycleManager`): it
//! registers with the controller under a new incarnation id at every start, sends a heartbeat every
//! `broker.heartbeat.interval.ms` carrying the metadata offset it has applied (the controller
//! unfences it once that reaches its registration, and fences it when heartbeats stop for
//! `broker.session.timeout.ms`), re-registers if the controller no longer knows its epoch, and on
//! shutdown asks for a controlled shutdown: it keeps heartbeating with `want_shut_down` until the
//! controller has moved its leaderships away. The active controller's side — fencing brokers whose
//! session expired — runs here too when this node is a controller ([`run_fencing`]).
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
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tick.tick() => {}
            () = controller.suspects_added() => {}
        }
        let active = controller.quorum().status().leader_id == Some(controller.node_id());
        if !active {
            was_active = false;
            continue;
        }
        if !was_active {
            // Heartbeats went to another controller meanwhile: start every session afresh (and
            // suspect every broker at once: take_suspects sees no heartbeat from any).
            controller.reset_sessions();
            was_active = true;
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
