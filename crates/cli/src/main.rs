//! `strom`: one binary for the Strom broker (`strom server`) and the Kafka-protocol client tools
//! (`topics`, `produce`, `consume`, `groups`, `cluster`, `bench`) and `storage` (format data directories). The client tools use librdkafka through
//! the `rdkafka` crate, so they work against any Kafka-compatible cluster.

mod admin_rpc;
mod bench;
mod client;
mod cluster;
mod consume;
mod failover_bench;
mod groups;
mod leaders;
mod produce;
mod reassign;
mod server;
mod storage;
mod topics;
mod wire;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Command line of the `strom` binary.
#[derive(Debug, Parser)]
#[command(
    name = "strom",
    version,
    about = "Strom: a Kafka-compatible event streaming platform"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run a broker (configured with Kafka's server.properties keys).
    Server(server::ServerArgs),
    /// Create, list, describe, delete and configure topics.
    Topics(topics::TopicsArgs),
    /// Produce records read from stdin, one per line.
    Produce(produce::ProduceArgs),
    /// Consume records and print them to stdout.
    Consume(consume::ConsumeArgs),
    /// List, describe and delete consumer groups and reset their offsets.
    Groups(groups::GroupsArgs),
    /// Inspect the cluster.
    Cluster(cluster::ClusterArgs),
    /// Measure throughput and latency.
    Bench(bench::BenchArgs),
    /// Format data directories for a cluster (like kafka-storage.sh).
    Storage(storage::StorageArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Server(args) => server::run(args).await,
        Command::Topics(args) => {
            client::init_client_tracing();
            topics::run(args).await
        }
        Command::Produce(args) => {
            client::init_client_tracing();
            produce::run(args).await
        }
        Command::Consume(args) => {
            client::init_client_tracing();
            consume::run(args).await
        }
        Command::Groups(args) => {
            client::init_client_tracing();
            groups::run(args).await
        }
        Command::Cluster(args) => {
            client::init_client_tracing();
            cluster::run(args).await
        }
        Command::Storage(args) => storage::run(args),
        Command::Bench(args) => {
            client::init_client_tracing();
            bench::run(args).await
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn unknown_command_is_rejected() {
        assert!(Cli::try_parse_from(["strom", "frobnicate"]).is_err());
    }
}
