//! Strom's cluster metadata, kept as a log of typed records like Kafka's KRaft `__cluster_metadata`
//! log: topics, partitions, configs, producer-id blocks and broker registrations change only by
//! appending a batch of records to the metadata log ([`log`]); the log is replayed at start and
//! applied to an in-memory [`image::MetadataImage`] that request handlers read. [`MetadataStore`]
//! validates requests and turns them into record batches.

pub mod config;
pub mod error;
pub mod image;
pub mod log;
pub mod records;
pub mod store;

pub use config::{ConfigOp, ConfigOpType};
pub use error::MetadataError;
pub use image::{BrokerRegistration, MetadataImage, PartitionImage, TopicChanges, TopicImage};
pub use store::{MetadataStore, TopicSummary};
