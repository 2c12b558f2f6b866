//! `strom cluster describe`: the cluster id, the controller and the brokers (id, endpoint,
//! rack) as seen through the Metadata and DescribeConfigs APIs.

use std::time::Duration;

use clap::{Args, Subcommand};
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};

use crate::client::{create_client, CliContext, ClientArgs};

/// Options of `strom cluster`.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: ClusterCommand,
}

/// The `strom cluster` subcommands.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Print the cluster id, the controller and the brokers.
    Describe,
}

/// Runs `strom cluster ...`.
pub async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    match args.command {
        ClusterCommand::Describe => describe(&args.client).await,
    }
}

async fn describe(client_args: &ClientArgs) -> anyhow::Result<()> {
    let (admin, _): (AdminClient<CliContext>, _) = create_client(&client_args.client_config())?;
    let metadata_client = client_args.metadata_client(false)?;
    let metadata = metadata_client.fetch(None)?;
    let cluster_id = metadata_client
        .cluster_id()
        .unwrap_or_else(|| "unknown".to_string());
    let controller = metadata_client
        .controller_id()
        .map_or_else(|| "unknown".to_string(), |id| id.to_string());
    println!("Cluster ID: {cluster_id}");
    println!("Controller: {controller}");
    println!("Brokers:");
    let mut brokers: Vec<_> = metadata.brokers().iter().collect();
    brokers.sort_by_key(|broker| broker.id());
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    for broker in brokers {
        let rack = broker_rack(&admin, &options, broker.id())
            .await
            .unwrap_or_else(|| "-".to_string());
        println!(
            "  {} {}:{} rack={rack}",
            broker.id(),
            broker.host(),
            broker.port()
        );
    }
    Ok(())
}

/// The broker's `broker.rack` from DescribeConfigs (the Metadata API of rdkafka does not
/// expose racks); `None` when unset or not reported.
async fn broker_rack(
    admin: &AdminClient<CliContext>,
    options: &AdminOptions,
    broker_id: i32,
) -> Option<String> {
    let results = admin
        .describe_configs([&ResourceSpecifier::Broker(broker_id)], options)
        .await
        .ok()?;
    let resource = results.into_iter().next()?.ok()?;
    resource
        .get("broker.rack")
        .and_then(|entry| entry.value.clone())
        .filter(|rack| !rack.is_empty())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::{Cli, Command};

    #[test]
    fn parses_cluster_describe() {
        let cli =
            Cli::try_parse_from(["strom", "cluster", "describe", "--bootstrap-server", "h:9"])
                .unwrap();
        let Command::Cluster(args) = cli.command else {
            panic!("expected cluster");
        };
        assert_eq!(args.client.bootstrap_server, "h:9");
        assert!(matches!(args.command, ClusterCommand::Describe));
    }
}
