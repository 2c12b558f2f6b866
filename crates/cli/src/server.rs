//! `strom server`: builds a [`BrokerConfig`] from an optional `server.properties` file plus
//! `--override key=value` settings (like Kafka's `kafka-server-start --override`), logs the
//! configuration warnings and runs the broker until SIGINT/SIGTERM.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use strom_broker::config::BrokerConfig;

use crate::client::{init_tracing, parse_key_value};

/// Options of `strom server`.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// A Kafka `server.properties` file.
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Set one configuration key, overriding the file (repeatable): `--override num.partitions=3`.
    #[arg(long = "override", value_parser = parse_key_value)]
    pub overrides: Vec<(String, String)>,
}

/// Builds the broker configuration described by `args`, returning it with the warnings
/// (unknown keys in the file) that should be logged.
pub fn build_config(args: &ServerArgs) -> anyhow::Result<(BrokerConfig, Vec<String>)> {
    let (mut config, warnings) = match &args.config {
        Some(path) => BrokerConfig::from_file(path)?,
        None => (BrokerConfig::default(), Vec::new()),
    };
    for (key, value) in &args.overrides {
        config
            .apply_override(key, value)
            .with_context(|| format!("bad --override {key}={value}"))?;
    }
    config.validate()?;
    Ok((config, warnings))
}

/// Runs `strom server`.
pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    init_tracing("info");
    let (config, warnings) = build_config(&args)?;
    for warning in &warnings {
        tracing::warn!("{warning}");
    }
    tracing::info!(
        node_id = config.node_id,
        listeners = %config
            .listeners
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
        log_dir = %config.log_dir().display(),
        "starting strom broker"
    );
    strom_broker::run(config).await
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::{Cli, Command};

    fn server_args(argv: &[&str]) -> ServerArgs {
        let mut full = vec!["strom", "server"];
        full.extend_from_slice(argv);
        match Cli::try_parse_from(full) {
            Ok(Cli {
                command: Command::Server(args),
            }) => args,
            other => panic!("unexpected parse result: {other:?}"),
        }
    }

    #[test]
    fn parses_config_and_overrides() {
        let args = server_args(&[
            "--config",
            "server.properties",
            "--override",
            "num.partitions=3",
            "--override",
            "log.dirs=/tmp/x",
        ]);
        assert_eq!(args.config, Some(PathBuf::from("server.properties")));
        assert_eq!(args.overrides.len(), 2);
        assert_eq!(
            args.overrides[0],
            ("num.partitions".to_string(), "3".to_string())
        );
    }

    #[test]
    fn overrides_win_over_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.properties");
        std::fs::write(&path, "num.partitions=2\nunknown.key=1\n").unwrap();
        let args = ServerArgs {
            config: Some(path),
            overrides: vec![("num.partitions".to_string(), "5".to_string())],
        };
        let (config, warnings) = build_config(&args).unwrap();
        assert_eq!(config.num_partitions, 5);
        assert_eq!(warnings.len(), 1);
    }

    #[test]
    fn bad_override_is_reported_with_key() {
        let args = ServerArgs {
            config: None,
            overrides: vec![("num.partitions".to_string(), "many".to_string())],
        };
        let message = format!("{:#}", build_config(&args).unwrap_err());
        assert!(message.contains("num.partitions"), "{message}");
        assert!(message.contains("many"), "{message}");
    }

    #[test]
    fn malformed_override_is_rejected_by_the_parser() {
        assert!(Cli::try_parse_from(["strom", "server", "--override", "novalue"]).is_err());
    }
}
