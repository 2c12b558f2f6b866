//! The controller tests' harness: a controller over the single-node quorum in a temporary
//! directory, driven synchronously through a runtime of its own.
#![allow(dead_code)] // each test binary uses a different subset of these helpers

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use strom_metadata::controller::{
    BrokerHeartbeatReply, BrokerHeartbeatRequest, BrokerRegistrationRequest,
};
use strom_metadata::{
    AlterPartitionRequest, BrokerListener, ConfigOp, Controller, LocalQuorum, MetadataError,
    MetadataImage, MetadataState, PartitionState, TopicSummary,
};
use tokio::sync::watch;

/// The session timeout of these tests' controllers.
pub const SESSION_TIMEOUT: Duration = Duration::from_millis(300);

/// A registration of a broker with one PLAINTEXT listener and a new incarnation.
pub fn registration(
    id: i32,
    host: &str,
    port: u16,
    rack: Option<String>,
) -> BrokerRegistrationRequest {
    BrokerRegistrationRequest {
        broker_id: id,
        incarnation_id: strom_metadata::meta_properties::random_uuid(),
        listeners: vec![BrokerListener {
            name: "PLAINTEXT".into(),
            host: host.into(),
            port,
            security_protocol: 0,
        }],
        rack,
    }
}

/// The controller and the state it commits to, with a runtime to block on.
pub struct Store {
    pub runtime: tokio::runtime::Runtime,
    pub controller: Controller,
    pub quorum: Arc<LocalQuorum>,
    pub state: Arc<MetadataState>,
}

impl Store {
    pub fn open(
        dir: &Path,
        node_id: i32,
        cluster_id: Option<String>,
    ) -> Result<Store, MetadataError> {
        Self::open_with_snapshots(dir, node_id, cluster_id, u64::MAX)
    }

    pub fn open_with_snapshots(
        dir: &Path,
        node_id: i32,
        cluster_id: Option<String>,
        snapshot_interval_bytes: u64,
    ) -> Result<Store, MetadataError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (quorum, state) = LocalQuorum::open(dir, node_id, cluster_id, snapshot_interval_bytes)?;
        let quorum = Arc::new(quorum);
        let controller = Controller::new(node_id, quorum.clone(), state.clone(), SESSION_TIMEOUT);
        Ok(Store {
            runtime,
            controller,
            quorum,
            state,
        })
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.state.image()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.state.subscribe()
    }

    /// Registers a broker and sends the heartbeat that unfences it; returns its epoch.
    pub fn register_broker(
        &self,
        id: i32,
        host: &str,
        port: u16,
        rack: Option<String>,
    ) -> Result<i64, MetadataError> {
        let epoch = self
            .runtime
            .block_on(self.controller.register(registration(id, host, port, rack)))?;
        let reply = self.heartbeat(id, epoch, i64::MAX, false, false)?;
        assert!(!reply.is_fenced);
        Ok(epoch)
    }

    pub fn heartbeat(
        &self,
        broker_id: i32,
        broker_epoch: i64,
        current_metadata_offset: i64,
        want_fence: bool,
        want_shut_down: bool,
    ) -> Result<BrokerHeartbeatReply, MetadataError> {
        self.runtime
            .block_on(self.controller.heartbeat(BrokerHeartbeatRequest {
                broker_id,
                broker_epoch,
                current_metadata_offset,
                want_fence,
                want_shut_down,
            }))
    }

    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &[(String, String)],
        validate_only: bool,
    ) -> Result<TopicSummary, MetadataError> {
        self.runtime.block_on(self.controller.create_topic(
            name,
            partitions,
            replication_factor,
            configs,
            validate_only,
        ))
    }

    pub fn delete_topic(&self, name: &str) -> Result<[u8; 16], MetadataError> {
        self.runtime.block_on(self.controller.delete_topic(name))
    }

    pub fn create_partitions(
        &self,
        name: &str,
        total: i32,
        validate_only: bool,
    ) -> Result<(), MetadataError> {
        self.runtime.block_on(
            self.controller
                .create_partitions(name, total, validate_only),
        )
    }

    pub fn alter_topic_configs(
        &self,
        name: &str,
        ops: &[ConfigOp],
        validate_only: bool,
    ) -> Result<(), MetadataError> {
        self.runtime.block_on(
            self.controller
                .alter_topic_configs(name, ops, validate_only),
        )
    }

    pub fn replace_topic_configs(
        &self,
        name: &str,
        configs: &[(String, String)],
        validate_only: bool,
    ) -> Result<(), MetadataError> {
        self.runtime.block_on(
            self.controller
                .replace_topic_configs(name, configs, validate_only),
        )
    }

    pub fn alter_broker_configs(
        &self,
        broker: Option<i32>,
        ops: &[ConfigOp],
        validate_only: bool,
    ) -> Result<(), MetadataError> {
        self.runtime.block_on(
            self.controller
                .alter_broker_configs(broker, ops, validate_only),
        )
    }

    pub fn alter_partition(
        &self,
        request: AlterPartitionRequest,
    ) -> Result<PartitionState, MetadataError> {
        self.runtime
            .block_on(self.controller.alter_partition(request))
    }

    pub fn allocate_producer_id_block(&self, size: i64) -> Result<(i64, i64), MetadataError> {
        self.runtime
            .block_on(self.controller.allocate_producer_id_block(size))
    }
}

pub fn open(dir: &Path) -> Store {
    Store::open(dir, 1, None).unwrap()
}

pub fn store_with_brokers(dir: &Path, brokers: i32) -> Store {
    let store = open(dir);
    for id in 1..=brokers {
        store
            .register_broker(id, "localhost", 9091 + id as u16, None)
            .unwrap();
    }
    store
}

pub fn configs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
