//! Shared broker state handed to every connection and handler: configuration, the metadata store,
//! the partition registry and the broker's identity as clients see it.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use strom_metadata::{MetadataError, MetadataImage, MetadataStore};

use crate::config::BrokerConfig;
use crate::groups::GroupCoordinator;
use crate::partitions::PartitionRegistry;

/// Everything a request handler may need, shared by all connections.
pub struct Broker {
    pub config: BrokerConfig,
    pub node_id: i32,
    pub advertised_host: String,
    pub advertised_port: u16,
    pub metadata: MetadataStore,
    pub partitions: PartitionRegistry,
    /// The unused rest of the producer-id block this broker reserved: (next id, end exclusive).
    pub producer_ids: Mutex<(i64, i64)>,
    /// The consumer group coordinator and committed offsets.
    pub groups: GroupCoordinator,
}

/// How many producer ids are reserved in the metadata log at a time.
const PRODUCER_ID_BLOCK: i64 = 1000;

impl Broker {
    /// A consistent snapshot of the cluster metadata.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.metadata.image()
    }

    /// A producer id never handed out before, reserving a new block in the metadata log when needed.
    pub fn next_producer_id(&self) -> Result<i64, MetadataError> {
        let mut ids = self.producer_ids.lock().unwrap_or_else(|p| p.into_inner());
        if ids.0 >= ids.1 {
            let (first, size) = self
                .metadata
                .allocate_producer_id_block(PRODUCER_ID_BLOCK)?;
            *ids = (first, first + size);
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(id)
    }

    /// Brings the partition logs in line with the metadata image after a metadata change.
    pub fn sync_partitions(&self) {
        self.partitions.sync_with_image(&self.image());
    }
}

/// Milliseconds since the Unix epoch, as Kafka timestamps are.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
