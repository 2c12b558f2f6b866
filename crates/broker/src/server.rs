//! Starting and stopping a broker: opens the metadata quorum, applies the replayed metadata
//! (partition logs, group state) through the publisher, registers with the controller, binds the listener,
//! accepts connections (one task each), runs housekeeping (segment roll, flush, retention) in the
//! background, and shuts down cleanly on SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use strom_metadata::local_quorum::DEFAULT_SNAPSHOT_INTERVAL_BYTES;
use strom_metadata::log::METADATA_LOG_DIR_NAME;
use strom_metadata::{Controller, LocalQuorum};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admission::ConnectionLimits;
use crate::config::BrokerConfig;
use crate::connection::{self, ConnectionShared};
use crate::controller_client::ControllerClient;
use crate::groups::{self, GroupConfig, GroupCoordinator};
use crate::partitions::PartitionRegistry;
use crate::publisher;
use crate::state::{now_ms, Broker};

/// How often time-based rolls and `flush.ms` flushes are checked.
const HOUSEKEEPING_TICK: Duration = Duration::from_millis(500);
/// How often compacted partitions are checked for a cleaning pass (Kafka's
/// `log.cleaner.backoff.ms` is 15 s; passes are skipped cheaply when nothing is dirty).
const COMPACTION_TICK: Duration = Duration::from_secs(2);
/// How often summaries of suppressed log lines are written.
const SUPPRESSED_WARNINGS_TICK: Duration = Duration::from_secs(1);

/// A running broker: its bound address, and the means to stop it.
pub struct ServerHandle {
    pub local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
    broker: Arc<Broker>,
}

impl ServerHandle {
    /// Stops accepting, lets connection tasks end, and flushes every log.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
        let broker = self.broker;
        if let Err(error) = tokio::task::spawn_blocking(move || broker.partitions.flush_all()).await
        {
            tracing::error!(%error, "flushing the logs failed");
        }
    }
}

/// Runs a broker until SIGINT or SIGTERM, then shuts it down cleanly.
pub async fn run(config: BrokerConfig) -> anyhow::Result<()> {
    let handle = serve(config).await?;
    wait_for_signal().await;
    tracing::info!("shutting down");
    handle.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for SIGTERM; stopping on Ctrl-C only");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Opens storage, binds the listener and starts serving in the background.
pub async fn serve(config: BrokerConfig) -> anyhow::Result<ServerHandle> {
    let log_dir = config.log_dir();
    std::fs::create_dir_all(&log_dir)
        .with_context(|| format!("cannot create log directory {}", log_dir.display()))?;

    let listen_addr = config.listener_addr();
    let listener = TcpListener::bind(listen_addr)
        .await
        .with_context(|| format!("cannot listen on {listen_addr}"))?;
    let local_addr = listener
        .local_addr()
        .context("listener has no local address")?;
    let (advertised_host, mut advertised_port) = config.advertised_host_port();
    if advertised_port == 0 {
        advertised_port = local_addr.port();
    }

    let (shutdown, shutdown_rx) = watch::channel(false);
    let broker = open_broker(
        config,
        advertised_host,
        advertised_port,
        shutdown_rx.clone(),
    )
    .await?;
    tracing::info!(
        node_id = broker.node_id,
        %local_addr,
        advertised = %format!("{}:{}", broker.advertised_host, broker.advertised_port),
        log_dir = %log_dir.display(),
        cluster_id = %broker.image().cluster_id,
        "strom broker started"
    );

    let task = tokio::spawn(accept_loop(broker.clone(), listener, shutdown_rx.clone()));
    tokio::spawn(groups::run_timers(broker.clone(), shutdown_rx.clone()));
    tokio::spawn(housekeeping_loop(broker.clone(), shutdown_rx.clone()));
    tokio::spawn(compaction_loop(broker.clone(), shutdown_rx));
    Ok(ServerHandle {
        local_addr,
        shutdown,
        task,
        broker,
    })
}

/// Opens the metadata quorum and controller of this node, builds the broker, applies the replayed
/// metadata (partition logs, group state), starts the metadata publisher, registers the broker
/// with the controller and makes sure the offsets topic exists. Background tasks stop when
/// `shutdown` changes.
pub(crate) async fn open_broker(
    config: BrokerConfig,
    advertised_host: String,
    advertised_port: u16,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Arc<Broker>> {
    let log_dir = config.log_dir();
    let metadata_dir = config.metadata_log_dir().join(METADATA_LOG_DIR_NAME);
    let (quorum, metadata_state) = LocalQuorum::open(
        &metadata_dir,
        config.node_id,
        None,
        DEFAULT_SNAPSHOT_INTERVAL_BYTES,
    )
    .with_context(|| format!("cannot open metadata log in {}", metadata_dir.display()))?;
    let controller = Arc::new(Controller::new(
        config.node_id,
        Arc::new(quorum),
        metadata_state.clone(),
    ));

    let partitions = PartitionRegistry::new(&log_dir, &config);
    let groups = GroupCoordinator::new(GroupConfig::from_broker(&config));
    let broker = Arc::new(Broker::new(
        config,
        advertised_host,
        advertised_port,
        ControllerClient::Local(controller),
        metadata_state.image().cluster_id.clone(),
        partitions,
        groups,
    ));

    // Effects of the replayed metadata (partition logs, group state) before anything else runs.
    let images = metadata_state.subscribe();
    publisher::apply_current(&broker, metadata_state.image()).await;
    tokio::spawn(publisher::run(broker.clone(), images, shutdown));
    broker
        .controller
        .register_broker(
            broker.node_id,
            &broker.advertised_host,
            i32::from(broker.advertised_port),
            broker.config.broker_rack.clone(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("cannot register broker {}: {}", broker.node_id, e.message))?;
    groups::start(&broker).await;
    Ok(broker)
}

/// Accepts connections within `max.connections` (waiting, as Kafka does, while that many are
/// open) and `max.connections.per.ip` (closing the ones over it), one task each.
async fn accept_loop(
    broker: Arc<Broker>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    let limits = ConnectionLimits::from_config(&broker.config);
    let shared = ConnectionShared::from_config(&broker.config);
    tokio::spawn(report_suppressed_warnings(
        limits.clone(),
        shared.clone(),
        shutdown.clone(),
    ));
    loop {
        let free_slot = tokio::select! {
            _ = shutdown.changed() => return,
            free_slot = limits.wait_for_free_slot() => free_slot,
        };
        tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Over its address's limit: dropping the stream closes it.
                    let Some(slot) = limits.admit(free_slot, peer.ip()) else {
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let broker = broker.clone();
                    let shared = shared.clone();
                    let shutdown = shutdown.clone();
                    tokio::spawn(async move {
                        connection::serve_connection(broker, shared, stream, peer, shutdown).await;
                        drop(slot);
                    });
                }
                Err(error) => {
                    // Typically EMFILE: back off briefly instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// Writes the summary lines of rate-limited log lines (see [`crate::log_limit`]) once their
/// window has ended, so that a burst is reported even when nothing follows it.
async fn report_suppressed_warnings(
    limits: Arc<ConnectionLimits>,
    shared: Arc<ConnectionShared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(SUPPRESSED_WARNINGS_TICK);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tick.tick() => {}
        }
        let now = std::time::Instant::now();
        limits.report_suppressed(now);
        shared.report_suppressed_warnings(now);
    }
}

async fn housekeeping_loop(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let retention_every =
        Duration::from_millis(broker.config.log_retention_check_interval_ms.max(1) as u64);
    let mut tick = tokio::time::interval(HOUSEKEEPING_TICK.min(retention_every));
    let mut last_retention = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tick.tick() => {}
        }
        let apply_retention = last_retention.elapsed() >= retention_every;
        if apply_retention {
            last_retention = tokio::time::Instant::now();
        }
        let broker = broker.clone();
        let work = tokio::task::spawn_blocking(move || {
            broker
                .partitions
                .run_housekeeping(now_ms(), apply_retention);
        });
        if let Err(error) = work.await {
            tracing::error!(%error, "housekeeping task failed");
        }
    }
}

async fn compaction_loop(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(COMPACTION_TICK);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tick.tick() => {}
        }
        let broker = broker.clone();
        let work = tokio::task::spawn_blocking(move || broker.partitions.run_compaction(now_ms()));
        if let Err(error) = work.await {
            tracing::error!(%error, "compaction task failed");
        }
    }
}
