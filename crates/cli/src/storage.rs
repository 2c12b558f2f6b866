//! `strom storage`: prepares data directories like Kafka's `kafka-storage.sh`. `format` writes the
//! cluster id and node id into the node's metadata directory (a multi-node cluster's nodes must be
//! formatted with one cluster id before their first start; a zero-config single node formats
//! itself), `random-uuid` prints a new cluster id, `info` shows how a directory is formatted.

use anyhow::Context as _;
use clap::{Args, Subcommand};
use strom_metadata::log::METADATA_LOG_DIR_NAME;
use strom_metadata::meta_properties::{
    base64url, format_directory, random_uuid, read_meta_properties,
};

use crate::server::{build_config, ServerArgs};

/// Options of `strom storage`.
#[derive(Debug, Args)]
pub struct StorageArgs {
    #[command(subcommand)]
    command: StorageCommand,
}

#[derive(Debug, Subcommand)]
enum StorageCommand {
    /// Format the node's metadata directory for a cluster (`kafka-storage format`).
    Format {
        /// The cluster id (22 characters of URL-safe base64; see `strom storage random-uuid`).
        #[arg(long = "cluster-id", short = 't')]
        cluster_id: String,
        /// Skip a directory already formatted for this cluster and node instead of failing.
        #[arg(long = "ignore-formatted", short = 'g')]
        ignore_formatted: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Print a new random cluster id.
    RandomUuid,
    /// Show the cluster id and node id a node's metadata directory is formatted with.
    Info {
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// Runs `strom storage`.
pub fn run(args: StorageArgs) -> anyhow::Result<()> {
    match args.command {
        StorageCommand::RandomUuid => {
            println!("{}", base64url(&random_uuid()));
            Ok(())
        }
        StorageCommand::Format {
            cluster_id,
            ignore_formatted,
            server,
        } => {
            let (config, _) = build_config(&server)?;
            let dir = config.metadata_log_dir().join(METADATA_LOG_DIR_NAME);
            let formatted = format_directory(&dir, &cluster_id, config.node_id, ignore_formatted)
                .map_err(|e| anyhow::anyhow!("{}", e.message))
                .with_context(|| format!("cannot format {}", dir.display()))?;
            if formatted {
                println!(
                    "Formatting metadata directory {} with cluster.id {cluster_id} and node.id {}",
                    dir.display(),
                    config.node_id
                );
            } else {
                println!(
                    "{} is already formatted for this node; skipped",
                    dir.display()
                );
            }
            Ok(())
        }
        StorageCommand::Info { server } => {
            let (config, _) = build_config(&server)?;
            let dir = config.metadata_log_dir().join(METADATA_LOG_DIR_NAME);
            match read_meta_properties(&dir).map_err(|e| anyhow::anyhow!("{}", e.message))? {
                Some(properties) => println!(
                    "{}: cluster.id={} node.id={} directory.id={}",
                    dir.display(),
                    properties.cluster_id,
                    properties
                        .node_id
                        .map_or_else(|| "none".into(), |id| id.to_string()),
                    properties.directory_id.unwrap_or_default()
                ),
                None => println!("{}: not formatted", dir.display()),
            }
            Ok(())
        }
    }
}
