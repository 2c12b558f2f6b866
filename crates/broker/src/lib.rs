//! The Strom broker: the network server that speaks Kafka's protocol, the request handlers (one module
//! per Kafka API under [`handlers`]), and the partition registry that ties the metadata image to the
//! partition logs on disk.
//!
//! Ownership: [`state::Broker`] owns the configuration, the controller client, the published
//! metadata image (applied by [`publisher`]) and the partition registry
//! ([`partitions::PartitionRegistry`]), which holds one owner per partition
//! ([`partitions::Partition`]: role, leader epoch, log, high watermark); requests wait for
//! partitions in [`purgatory`]. Connections borrow the broker through an `Arc` and never hold a lock across an
//! `.await`.

mod admission;
pub mod config;
mod connection;
mod controller_client;
mod controller_rpc;
mod groups;
mod handlers;
mod lifecycle;
mod log_limit;
mod partitions;
mod publisher;
mod purgatory;
mod replica_set;
mod replication;
mod server;
mod state;

pub use server::{run, serve, ServerHandle};
