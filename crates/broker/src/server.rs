//! Starting and stopping a broker: opens the metadata store and partition logs, binds the listener,
//! accepts connections (one task each), runs housekeeping (segment roll, flush, retention) in the
//! background, and shuts down cleanly on SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use strom_metadata::MetadataStore;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::BrokerConfig;
use crate::connection;
use crate::groups::{self, GroupConfig, GroupCoordinator};
use crate::partitions::PartitionRegistry;
use crate::state::{now_ms, Broker};

/// How often time-based rolls and `flush.ms` flushes are checked.
const HOUSEKEEPING_TICK: Duration = Duration::from_millis(500);
/// How often compacted partitions are checked for a cleaning pass (Kafka's
/// `log.cleaner.backoff.ms` is 15 s; passes are skipped cheaply when nothing is dirty).
const COMPACTION_TICK: Duration = Duration::from_secs(2);

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
        self.broker.partitions.flush_all();
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

    let metadata_dir = log_dir.join("__cluster_metadata-0");
    let metadata = MetadataStore::open(&metadata_dir, config.node_id, None)
        .with_context(|| format!("cannot open metadata log in {}", metadata_dir.display()))?;
    metadata
        .register_broker(
            config.node_id,
            &advertised_host,
            i32::from(advertised_port),
            config.broker_rack.clone(),
        )
        .map_err(|e| anyhow::anyhow!("cannot register broker {}: {}", config.node_id, e.message))?;

    let partitions = PartitionRegistry::new(&log_dir, &config);

    let broker = Arc::new(Broker {
        node_id: config.node_id,
        advertised_host,
        advertised_port,
        metadata,
        partitions,
        producer_ids: std::sync::Mutex::new((0, 0)),
        groups: GroupCoordinator::new(GroupConfig::from_broker(&config)),
        config,
    });
    broker.sync_partitions();
    groups::start(&broker);
    tracing::info!(
        node_id = broker.node_id,
        %local_addr,
        advertised = %format!("{}:{}", broker.advertised_host, broker.advertised_port),
        log_dir = %log_dir.display(),
        cluster_id = %broker.image().cluster_id,
        "strom broker started"
    );

    let (shutdown, shutdown_rx) = watch::channel(false);
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

async fn accept_loop(
    broker: Arc<Broker>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let broker = broker.clone();
                    let shutdown = shutdown.clone();
                    tokio::spawn(async move {
                        connection::serve_connection(broker, stream, peer, shutdown).await;
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
            broker.sync_partitions();
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
