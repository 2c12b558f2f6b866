//! Shared broker state handed to every connection and handler: configuration, the controller
//! client, the metadata image this broker has published, the partition registry, the group
//! coordinator, and the broker's identity as clients see it.

use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use strom_metadata::meta_properties::random_uuid;
use strom_metadata::{BrokerListener, BrokerRegistration, MetadataError, MetadataImage};
use strom_protocol::codec::Uuid;
use strom_protocol::ErrorCode;
use tokio::sync::watch;

use crate::config::BrokerConfig;
use crate::controller_client::ControllerClient;
use crate::groups::GroupCoordinator;
use crate::partitions::PartitionRegistry;
use crate::replication::ReplicaFetcherManager;

/// How long a handler waits for this broker to apply a change the controller committed before it
/// answers anyway (the publisher is local, so this bounds only a stalled disk).
const METADATA_CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything a request handler may need, shared by all connections.
pub struct Broker {
    pub config: BrokerConfig,
    pub node_id: i32,
    /// The endpoints this broker registers and clients are told, one per client listener
    /// (`advertised.listeners` without the controller listeners; a port 0 replaced by the
    /// port bound).
    pub advertised_listeners: Vec<BrokerListener>,
    /// Where metadata changes are proposed.
    pub controller: ControllerClient,
    /// Random per process: the controller recognises a restarted broker by a new one.
    pub incarnation_id: Uuid,
    /// The epoch the controller gave this broker's registration (-1 before it registered).
    pub broker_epoch: AtomicI64,
    /// The metadata image after this broker applied its effects; set by [`crate::publisher`].
    published: watch::Sender<Arc<MetadataImage>>,
    pub partitions: PartitionRegistry,
    /// The unused rest of the producer-id block this broker reserved: (next id, end exclusive).
    pub producer_ids: tokio::sync::Mutex<(i64, i64)>,
    /// The consumer group coordinator and committed offsets.
    pub groups: GroupCoordinator,
    /// The fetchers copying the partitions this broker follows.
    pub replica_fetchers: ReplicaFetcherManager,
}

/// How many producer ids are reserved in the metadata log at a time.
const PRODUCER_ID_BLOCK: i64 = 1000;

impl Broker {
    /// A broker that has published nothing yet (an empty image of cluster `cluster_id`).
    pub fn new(
        config: BrokerConfig,
        advertised_listeners: Vec<BrokerListener>,
        controller: ControllerClient,
        cluster_id: String,
        partitions: PartitionRegistry,
        groups: GroupCoordinator,
    ) -> Self {
        let (published, _) = watch::channel(Arc::new(MetadataImage::empty(cluster_id)));
        Self {
            node_id: config.node_id,
            config,
            advertised_listeners,
            controller,
            incarnation_id: random_uuid(),
            broker_epoch: AtomicI64::new(-1),
            published,
            partitions,
            producer_ids: tokio::sync::Mutex::new((0, 0)),
            groups,
            replica_fetchers: ReplicaFetcherManager::default(),
        }
    }

    /// This broker's advertised endpoint on the listener named `listener`.
    pub fn advertised_listener(&self, listener: &str) -> Option<&BrokerListener> {
        self.advertised_listeners
            .iter()
            .find(|endpoint| endpoint.name == listener)
    }

    /// A consistent snapshot of the cluster metadata, as far as this broker has applied it.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.published.borrow().clone()
    }

    /// Makes `image` the one handlers read (after its effects were applied).
    pub(crate) fn publish(&self, image: Arc<MetadataImage>) {
        self.published.send_replace(image);
    }

    /// The error for a data request on a partition this broker does not host or lead: Kafka's
    /// NOT_LEADER_OR_FOLLOWER when the partition exists (another broker leads it, so the client
    /// refreshes its metadata and goes there), UNKNOWN_TOPIC_OR_PARTITION otherwise.
    pub fn partition_not_hosted_error(&self, topic: &str, index: i32) -> i16 {
        let exists = self
            .image()
            .topic(topic)
            .is_some_and(|t| t.partitions.contains_key(&index));
        if exists {
            ErrorCode::NotLeaderOrFollower.code()
        } else {
            ErrorCode::UnknownTopicOrPartition.code()
        }
    }

    /// Waits until this broker has applied every metadata change the controller has committed so
    /// far, so that a handler answering for a change it asked for sees its effects.
    pub async fn catch_up_with_controller(&self) {
        let offset = self.controller.committed_offset();
        let mut published = self.published.subscribe();
        let caught_up = published.wait_for(|image| image.last_offset >= offset);
        if tokio::time::timeout(METADATA_CATCH_UP_TIMEOUT, caught_up)
            .await
            .is_err()
        {
            tracing::warn!(
                offset,
                "metadata publisher has not caught up with the controller"
            );
        }
    }

    /// A producer id never handed out before, reserving a new block through the controller when
    /// needed.
    pub async fn next_producer_id(&self) -> Result<i64, MetadataError> {
        let mut ids = self.producer_ids.lock().await;
        if ids.0 >= ids.1 {
            let (first, size) = self
                .controller
                .allocate_producer_id_block(PRODUCER_ID_BLOCK)
                .await?;
            *ids = (first, first + size);
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(id)
    }
}

/// The endpoint a registered broker advertises on the listener named `listener` (Kafka's
/// `BrokerRegistration.node(listenerName)`): clients are told the endpoints of the listener their
/// connection arrived on, brokers reach each other on the inter-broker listener
/// ([`BrokerConfig::inter_broker_listener`]).
pub fn endpoint_on<'a>(
    registration: &'a BrokerRegistration,
    listener: &str,
) -> Option<&'a BrokerListener> {
    registration
        .listeners
        .iter()
        .find(|endpoint| endpoint.name == listener)
}

/// Milliseconds since the Unix epoch, as Kafka timestamps are.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
