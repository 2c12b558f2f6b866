//! The Strom broker: the network server that speaks Kafka's protocol, the request handlers (one module
//! per Kafka API under [`handlers`]), and the partition registry that ties the metadata image to the
//! partition logs on disk.
//!
//! Ownership: [`state::Broker`] owns the configuration, the metadata store (`strom-metadata`) and the
//! partition registry ([`partitions::PartitionRegistry`], which owns one `strom_storage::PartitionLog`
//! per partition). Connections borrow the broker through an `Arc` and never hold a lock across an
//! `.await`.

mod admission;
pub mod config;
mod connection;
mod groups;
mod handlers;
mod log_limit;
mod partitions;
mod server;
mod state;

pub use server::{run, serve, ServerHandle};
