//! Starting and stopping a broker: binds every client listener (each listener not named in
//! `controller.listener.names`), opens the metadata quorum (a [`LocalQuorum`] on a zero-config
//! single node; a [`RaftQuorum`] over the controller listener when `controller.quorum.voters` is
//! set), applies the replayed metadata (partition logs, group state) through the publisher,
//! registers with the controller under every advertised client endpoint, accepts connections on
//! each listener (one task per connection, which knows its listener's name), runs housekeeping
//! (segment roll, flush, retention) in the background, and shuts down cleanly on SIGINT/SIGTERM.
//! A controller-only node (`process.roles=controller`) opens only its quorum member, controller
//! listener and the active controller's timers ([`run`]).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use strom_metadata::local_quorum::DEFAULT_SNAPSHOT_INTERVAL_BYTES;
use strom_metadata::log::METADATA_LOG_DIR_NAME;
use strom_metadata::meta_properties::read_meta_properties;
use strom_metadata::{
    BrokerListener, Controller, LocalQuorum, MetadataState, RaftQuorum, RaftQuorumConfig,
};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admission::ConnectionLimits;
use crate::config::BrokerConfig;
use crate::connection::{self, ConnectionShared};
use crate::controller_client::ControllerClient;
use crate::controller_rpc::{
    self, ControllerChannel, ControllerEndpoint, QuorumControllerClient, TcpRaftTransport,
};
use crate::groups::{self, GroupConfig, GroupCoordinator};
use crate::lifecycle;
use crate::partitions::PartitionRegistry;
use crate::publisher;
use crate::replication;
use crate::state::{now_ms, Broker};

/// How often time-based rolls and `flush.ms` flushes are checked.
const HOUSEKEEPING_TICK: Duration = Duration::from_millis(500);
/// How often compacted partitions are checked for a cleaning pass (Kafka's
/// `log.cleaner.backoff.ms` is 15 s; passes are skipped cheaply when nothing is dirty).
const COMPACTION_TICK: Duration = Duration::from_secs(2);
/// How often summaries of suppressed log lines are written.
const SUPPRESSED_WARNINGS_TICK: Duration = Duration::from_secs(1);

/// Kafka's `SecurityProtocol.PLAINTEXT` id, the protocol of every endpoint Strom registers.
pub(crate) const SECURITY_PROTOCOL_PLAINTEXT: i16 = 0;

/// A PLAINTEXT endpoint `name://host:port` as a broker registers it (for tests that open a
/// broker without binding listeners).
#[cfg(test)]
pub(crate) fn plaintext_endpoint(name: &str, host: &str, port: u16) -> BrokerListener {
    BrokerListener {
        name: name.to_string(),
        host: host.to_string(),
        port,
        security_protocol: SECURITY_PROTOCOL_PLAINTEXT,
    }
}

/// A running broker: the addresses its client listeners bound, and the means to stop it.
pub struct ServerHandle {
    /// Each client listener's name and bound address, in the order of `listeners`.
    pub listeners: Vec<(String, SocketAddr)>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    broker: Arc<Broker>,
}

impl ServerHandle {
    /// Controlled shutdown first (the controller moves this broker's leaderships away), then stops
    /// accepting, lets connection tasks end, and flushes every log.
    pub async fn shutdown(self) {
        lifecycle::controlled_shutdown(&self.broker).await;
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        self.broker.replica_fetchers.stop_all();
        let broker = self.broker;
        if let Err(error) = tokio::task::spawn_blocking(move || broker.partitions.flush_all()).await
        {
            tracing::error!(%error, "flushing the logs failed");
        }
    }
}

/// Runs a broker until SIGINT or SIGTERM, then shuts it down cleanly.
pub async fn run(config: BrokerConfig) -> anyhow::Result<()> {
    if !config.process_roles.broker {
        return run_controller_only(config).await;
    }
    let handle = serve(config).await?;
    wait_for_signal().await;
    tracing::info!("shutting down");
    handle.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// Runs a controller-only node (`process.roles=controller`) until SIGINT or SIGTERM: a voter of
/// the metadata quorum serving only its controller listener (Raft messages and the brokers'
/// controller calls), with the active controller's timers (fencing of expired broker sessions,
/// periodic leader elections). No client listener, no partitions, no broker registration.
async fn run_controller_only(config: BrokerConfig) -> anyhow::Result<()> {
    let session_timeout =
        Duration::from_millis(u64::try_from(config.broker_session_timeout_ms).unwrap_or(9000));
    let heartbeat_interval =
        Duration::from_millis(u64::try_from(config.broker_heartbeat_interval_ms).unwrap_or(2000));
    let (shutdown, shutdown_rx) = watch::channel(false);
    let (controller, _client, metadata_state) =
        open_raft_controller(&config, session_timeout, shutdown_rx.clone()).await?;
    tracing::info!(
        node_id = config.node_id,
        cluster_id = %metadata_state.image().cluster_id,
        "strom controller started (process.roles=controller)"
    );
    let tasks = [
        tokio::spawn(lifecycle::run_leader_elections(
            controller.clone(),
            lifecycle::ElectionSchedule::from_config(&config),
            shutdown_rx.clone(),
        )),
        tokio::spawn(lifecycle::run_fencing(
            controller,
            session_timeout,
            heartbeat_interval,
            config.inter_broker_listener(),
            shutdown_rx,
        )),
    ];
    wait_for_signal().await;
    tracing::info!("shutting down");
    let _ = shutdown.send(true);
    for task in tasks {
        let _ = task.await;
    }
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

/// Opens storage, binds every client listener and starts serving in the background.
pub async fn serve(config: BrokerConfig) -> anyhow::Result<ServerHandle> {
    if !config.process_roles.broker {
        anyhow::bail!("process.roles=controller: a controller-only node serves no clients");
    }
    let log_dir = config.log_dir();
    std::fs::create_dir_all(&log_dir)
        .with_context(|| format!("cannot create log directory {}", log_dir.display()))?;

    let mut bound = Vec::new();
    for listener in config.client_listeners() {
        let address = listener.bind_addr()?;
        let socket = TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on {address} (listeners: {listener})"))?;
        let local_addr = socket
            .local_addr()
            .with_context(|| format!("listener {listener} has no local address"))?;
        bound.push((listener.name.clone(), local_addr, socket));
    }
    let advertised = advertised_endpoints(&config, &bound);

    let (shutdown, shutdown_rx) = watch::channel(false);
    let broker = open_broker(config, advertised, shutdown_rx.clone()).await?;
    let describe = |endpoints: Vec<String>| endpoints.join(",");
    tracing::info!(
        node_id = broker.node_id,
        listeners = %describe(bound.iter().map(|(name, addr, _)| format!("{name}://{addr}")).collect()),
        advertised = %describe(
            broker
                .advertised_listeners
                .iter()
                .map(|e| format!("{}://{}:{}", e.name, e.host, e.port))
                .collect()
        ),
        inter_broker_listener = %broker.config.inter_broker_listener(),
        log_dir = %log_dir.display(),
        cluster_id = %broker.image().cluster_id,
        "strom broker started"
    );

    // One connection budget, one request-memory budget and one set of log limits for all
    // listeners (Kafka's broker-wide `max.connections` and `queued.max.request.bytes`).
    let limits = ConnectionLimits::from_config(&broker.config);
    let shared = ConnectionShared::from_config(&broker.config);
    tokio::spawn(report_suppressed_warnings(
        limits.clone(),
        shared.clone(),
        shutdown_rx.clone(),
    ));
    let mut listeners = Vec::new();
    let mut tasks = Vec::new();
    for (name, local_addr, socket) in bound {
        tasks.push(tokio::spawn(accept_loop(
            broker.clone(),
            Listening {
                name: Arc::from(name.as_str()),
                socket,
                limits: limits.clone(),
                shared: shared.clone(),
            },
            shutdown_rx.clone(),
        )));
        listeners.push((name, local_addr));
    }
    tokio::spawn(groups::run_timers(broker.clone(), shutdown_rx.clone()));
    tokio::spawn(housekeeping_loop(broker.clone(), shutdown_rx.clone()));
    tokio::spawn(compaction_loop(broker.clone(), shutdown_rx));
    Ok(ServerHandle {
        listeners,
        shutdown,
        tasks,
        broker,
    })
}

/// The endpoints the broker registers: its advertised client listeners
/// ([`BrokerConfig::advertised_broker_listeners`]), an advertised port 0 replaced by the port its
/// listener bound (as Kafka does), all PLAINTEXT.
fn advertised_endpoints(
    config: &BrokerConfig,
    bound: &[(String, SocketAddr, TcpListener)],
) -> Vec<BrokerListener> {
    config
        .advertised_broker_listeners()
        .map(|advertised| {
            let bound_port = bound
                .iter()
                .find(|(name, _, _)| *name == advertised.name)
                .map(|(_, address, _)| address.port());
            BrokerListener {
                name: advertised.name.clone(),
                host: advertised.host.clone(),
                port: match advertised.port {
                    0 => bound_port.unwrap_or(0),
                    port => port,
                },
                security_protocol: SECURITY_PROTOCOL_PLAINTEXT,
            }
        })
        .collect()
}

/// Opens the metadata quorum and controller of this node, builds the broker, applies the replayed
/// metadata (partition logs, group state), starts the metadata publisher, registers the broker
/// with the controller and makes sure the offsets topic exists. Background tasks stop when
/// `shutdown` changes.
pub(crate) async fn open_broker(
    config: BrokerConfig,
    advertised_listeners: Vec<BrokerListener>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Arc<Broker>> {
    let log_dir = config.log_dir();
    let metadata_dir = config.metadata_log_dir().join(METADATA_LOG_DIR_NAME);
    let session_timeout =
        Duration::from_millis(u64::try_from(config.broker_session_timeout_ms).unwrap_or(9000));
    let (controller, controller_client, metadata_state) =
        if config.controller_quorum_voters.is_empty() {
            let (quorum, metadata_state) = LocalQuorum::open(
                &metadata_dir,
                config.node_id,
                None,
                DEFAULT_SNAPSHOT_INTERVAL_BYTES,
            )
            .with_context(|| format!("cannot open metadata log in {}", metadata_dir.display()))?;
            let controller = Arc::new(
                Controller::new(
                    config.node_id,
                    Arc::new(quorum),
                    metadata_state.clone(),
                    session_timeout,
                )
                .with_static_config(config.explicit.clone()),
            );
            let client = ControllerClient::Local(controller.clone());
            (controller, client, metadata_state)
        } else {
            open_raft_controller(&config, session_timeout, shutdown.clone()).await?
        };

    let partitions = PartitionRegistry::new(&log_dir, &config);
    let groups = GroupCoordinator::new(GroupConfig::from_broker(&config));
    let broker = Arc::new(Broker::new(
        config,
        advertised_listeners,
        controller_client,
        metadata_state.image().cluster_id.clone(),
        partitions,
        groups,
    ));

    // Effects of the replayed metadata (partition logs, group state) before anything else runs.
    let images = metadata_state.subscribe();
    publisher::apply_current(&broker, metadata_state.image()).await;
    tokio::spawn(publisher::run(broker.clone(), images, shutdown.clone()));
    tokio::spawn(lifecycle::run_leader_elections(
        controller.clone(),
        lifecycle::ElectionSchedule::from_config(&broker.config),
        shutdown.clone(),
    ));
    let heartbeat_interval = Duration::from_millis(
        u64::try_from(broker.config.broker_heartbeat_interval_ms).unwrap_or(2000),
    );
    tokio::spawn(lifecycle::run_fencing(
        controller,
        session_timeout,
        heartbeat_interval,
        broker.config.inter_broker_listener(),
        shutdown.clone(),
    ));
    lifecycle::register_and_unfence(&broker).await?;
    tokio::spawn(replication::run_isr_expiration(
        broker.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(lifecycle::run_heartbeats(broker.clone(), shutdown));
    groups::start(&broker).await;
    Ok(broker)
}

/// Opens this node's member of the Raft metadata quorum over `<log dir>/__cluster_metadata-0`
/// (which `strom storage format` must have prepared), binds the controller listener and starts
/// serving it, and bootstraps the voters' membership on first start.
async fn open_raft_controller(
    config: &BrokerConfig,
    session_timeout: Duration,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(Arc<Controller>, ControllerClient, Arc<MetadataState>)> {
    if !config.process_roles.controller {
        anyhow::bail!(
            "process.roles=broker with controller.quorum.voters: broker-only nodes cannot follow \
             a metadata quorum yet; run node {} as process.roles=broker,controller (a voter)",
            config.node_id
        );
    }
    let metadata_dir = config.metadata_log_dir().join(METADATA_LOG_DIR_NAME);
    let formatted = read_meta_properties(&metadata_dir)
        .map_err(|e| anyhow::anyhow!("{}", e.message))
        .with_context(|| format!("cannot read {}", metadata_dir.display()))?;
    if formatted.is_none() {
        anyhow::bail!(
            "{} is not formatted: a node with controller.quorum.voters must be formatted with the \
             cluster id first (`strom storage format -t <cluster id> -c <config>`)",
            metadata_dir.display()
        );
    }
    let voters: BTreeMap<i32, String> = config
        .controller_quorum_voters
        .iter()
        .map(|voter| {
            (
                voter.id,
                format!("{}:{}", voter.endpoint.host, voter.endpoint.port),
            )
        })
        .collect();
    let max_frame = usize::try_from(config.socket_request_max_bytes).unwrap_or(usize::MAX);
    let channel = Arc::new(ControllerChannel::new(
        voters
            .iter()
            .map(|(id, a)| (*id, a.clone()))
            .collect::<HashMap<_, _>>(),
        max_frame,
    ));

    let mut listeners = Vec::new();
    for listener in config
        .listeners
        .iter()
        .filter(|l| config.controller_listener_names.contains(&l.name))
    {
        let address = format!("{}:{}", listener.host, listener.port);
        let bound = TcpListener::bind(&address)
            .await
            .with_context(|| format!("cannot listen on controller listener {listener}"))?;
        listeners.push(bound);
    }
    if listeners.is_empty() {
        anyhow::bail!("controller.listener.names names no listener of listeners");
    }

    let (quorum, metadata_state) = RaftQuorum::open(
        &metadata_dir,
        config.node_id,
        None,
        raft_config(config),
        Arc::new(TcpRaftTransport(channel.clone())),
    )
    .await
    .with_context(|| format!("cannot open metadata quorum in {}", metadata_dir.display()))?;
    quorum
        .bootstrap(&voters)
        .await
        .context("cannot bootstrap the metadata quorum")?;
    let raft = quorum.rpc_handler();
    let controller = Arc::new(
        Controller::new(
            config.node_id,
            Arc::new(quorum),
            metadata_state.clone(),
            session_timeout,
        )
        .with_static_config(config.explicit.clone()),
    );
    let endpoint = Arc::new(ControllerEndpoint {
        raft,
        controller: controller.clone(),
        max_frame,
        max_idle: Duration::from_millis(
            u64::try_from(config.connections_max_idle_ms).unwrap_or(u64::MAX),
        ),
    });
    for listener in listeners {
        if let Ok(address) = listener.local_addr() {
            tracing::info!(%address, "controller listener started");
        }
        tokio::spawn(controller_rpc::accept_loop(
            endpoint.clone(),
            listener,
            shutdown.clone(),
        ));
    }
    let client = ControllerClient::Quorum(Arc::new(QuorumControllerClient::new(
        controller.clone(),
        channel,
    )));
    Ok((controller, client, metadata_state))
}

/// The quorum's timing from `controller.quorum.election.timeout.ms` and
/// `controller.quorum.fetch.timeout.ms` (how they map onto Raft: `strom_metadata::raft`), with
/// leader heartbeats at most a tenth of the election timeout.
fn raft_config(config: &BrokerConfig) -> RaftQuorumConfig {
    let defaults = RaftQuorumConfig::default();
    let millis = |ms: i32| Duration::from_millis(u64::try_from(ms).unwrap_or(0).max(1));
    let election = millis(config.controller_quorum_election_timeout_ms);
    RaftQuorumConfig {
        heartbeat_interval: defaults
            .heartbeat_interval
            .min(election / 10)
            .max(Duration::from_millis(1)),
        election_timeout: election,
        fetch_timeout: millis(config.controller_quorum_fetch_timeout_ms),
        ..defaults
    }
}

/// One bound client listener and what its connections share with every other listener's.
struct Listening {
    /// The listener's name, which each of its connections carries into its requests.
    name: Arc<str>,
    socket: TcpListener,
    limits: Arc<ConnectionLimits>,
    shared: Arc<ConnectionShared>,
}

/// Accepts connections on one listener within `max.connections` (waiting, as Kafka does, while
/// that many are open) and `max.connections.per.ip` (closing the ones over it), one task each.
async fn accept_loop(
    broker: Arc<Broker>,
    listening: Listening,
    mut shutdown: watch::Receiver<bool>,
) {
    let Listening {
        name,
        socket: listener,
        limits,
        shared,
    } = listening;
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
                    let name = name.clone();
                    let shutdown = shutdown.clone();
                    tokio::spawn(async move {
                        connection::serve_connection(broker, shared, stream, peer, name, shutdown)
                            .await;
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
