//! Shared client plumbing: the `--bootstrap-server` / `-X` options every client command takes,
//! librdkafka configuration with short timeouts, a client context that remembers the last
//! connection error, and helpers that turn librdkafka failures into one-line messages.

use std::io::IsTerminal as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail};
use clap::Args;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::metadata::Metadata;
use rdkafka::producer::{DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

/// How long a metadata request may take before the broker is reported unreachable.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// Connection options shared by every client command.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Broker(s) to bootstrap from, `host:port[,host:port...]`.
    #[arg(
        long,
        global = true,
        default_value = "127.0.0.1:9092",
        env = "STROM_BOOTSTRAP_SERVER"
    )]
    pub bootstrap_server: String,
    /// Extra librdkafka client property `key=value` (repeatable), e.g. `-X debug=broker`.
    #[arg(short = 'X', long = "client-property", global = true, value_parser = parse_key_value)]
    pub client_properties: Vec<(String, String)>,
}

impl ClientArgs {
    /// A librdkafka configuration with the bootstrap servers, short connection timeouts so a
    /// down broker is reported within seconds, and the user's `-X` properties applied last.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap_server)
            .set("socket.connection.setup.timeout.ms", "5000")
            .set("socket.timeout.ms", "10000")
            .set("topic.metadata.refresh.interval.ms", "30000")
            .set("log_level", "6");
        for (key, value) in &self.client_properties {
            config.set(key, value);
        }
        config
    }

    /// A client for metadata lookups. `allow_auto_create` lets a lookup of a missing topic
    /// create it where the broker allows auto-creation (as a producer's lookup does).
    pub fn metadata_client(&self, allow_auto_create: bool) -> anyhow::Result<MetadataClient> {
        let mut config = self.client_config();
        config.set(
            "allow.auto.create.topics",
            if allow_auto_create { "true" } else { "false" },
        );
        let (producer, context) = create_client(&config)?;
        Ok(MetadataClient {
            producer,
            context,
            args: self.clone(),
        })
    }

    /// Fetches cluster metadata (for one topic or all) with a fresh [`MetadataClient`].
    pub fn fetch_metadata(
        &self,
        topic: Option<&str>,
        allow_auto_create: bool,
    ) -> anyhow::Result<Metadata> {
        self.metadata_client(allow_auto_create)?.fetch(topic)
    }

    /// The partition ids of an existing topic: all of them, or just `only` after checking that the
    /// topic has it. A missing topic or partition is an error that names it.
    pub fn topic_partitions(
        &self,
        topic: &str,
        allow_auto_create: bool,
        only: Option<i32>,
    ) -> anyhow::Result<Vec<i32>> {
        let metadata = self.fetch_metadata(Some(topic), allow_auto_create)?;
        let found = metadata
            .topics()
            .iter()
            .find(|candidate| candidate.name() == topic)
            .ok_or_else(|| anyhow!("topic '{topic}' does not exist"))?;
        if let Some(code) = found.error() {
            bail!(topic_error_message(topic, code.into()));
        }
        let all: Vec<i32> = found.partitions().iter().map(|p| p.id()).collect();
        match only {
            Some(partition) if !all.contains(&partition) => {
                bail!("topic '{topic}' has no partition {partition}")
            }
            Some(partition) => Ok(vec![partition]),
            None => Ok(all),
        }
    }

    /// Describes a failure to talk to the cluster, preferring the connection error librdkafka
    /// reported (for example "Connection refused") over the generic timeout.
    pub fn unreachable(&self, context: &CliContext, error: &KafkaError) -> anyhow::Error {
        match context.last_error() {
            Some(reason) => anyhow!("cannot reach {}: {reason}", self.bootstrap_server),
            None => anyhow!("cannot reach {}: {error}", self.bootstrap_server),
        }
    }
}

/// A client used for Metadata requests. It is a producer underneath because a producer's
/// background thread serves librdkafka's log and error events, so the context learns the real
/// connection error (for example "Connection refused") while a metadata request waits.
pub struct MetadataClient {
    producer: ThreadedProducer<CliContext>,
    context: CliContext,
    args: ClientArgs,
}

impl MetadataClient {
    /// Fetches metadata for one topic or all, mapping a transport failure to
    /// "cannot reach <bootstrap>: <reason>".
    pub fn fetch(&self, topic: Option<&str>) -> anyhow::Result<Metadata> {
        self.producer
            .client()
            .fetch_metadata(topic, METADATA_TIMEOUT)
            .map_err(|error| self.args.unreachable(&self.context, &error))
    }
}

/// A group id for a consumer that only assigns partitions and never commits: `<prefix>-<pid>`.
pub fn throwaway_group_id(prefix: &str) -> String {
    format!("{prefix}-{}", std::process::id())
}

/// Context for librdkafka results that does not repeat the error code: a `KafkaError`'s source
/// is its own code, which the `{:#}` error chain would otherwise print twice.
pub trait KafkaResultExt<T> {
    /// Wraps the error as "<what>: <error>".
    fn kafka_context(self, what: impl std::fmt::Display) -> anyhow::Result<T>;
}

impl<T> KafkaResultExt<T> for Result<T, KafkaError> {
    fn kafka_context(self, what: impl std::fmt::Display) -> anyhow::Result<T> {
        self.map_err(|error| anyhow!("{what}: {error}"))
    }
}

/// Parses `key=value` (the value may contain further `=`).
pub fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(format!("expected key=value, got '{text}'")),
    }
}

/// Client context shared by the CLI's producers, consumers and admin clients: forwards
/// librdkafka logs to `tracing` at debug level and remembers the last client error so it can be
/// shown instead of a bare timeout.
/// Clones share the remembered error, so the caller keeps a handle to the context it gave to a
/// client (producers wrap their context and do not hand it back).
#[derive(Debug, Default, Clone)]
pub struct CliContext {
    last_error: Arc<Mutex<Option<String>>>,
}

impl CliContext {
    /// The most recent error librdkafka reported, if any.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .map(|guard| guard.clone())
            .unwrap_or_default()
    }

    fn remember(&self, reason: &str) {
        if let Ok(mut guard) = self.last_error.lock() {
            *guard = Some(reason.to_string());
        }
    }
}

impl ClientContext for CliContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        tracing::debug!(?level, facility, "librdkafka: {message}");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!("librdkafka error: {error}: {reason}");
        // "All brokers are down" follows the specific connection failure; keep the specific one.
        let generic = error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown);
        if !generic || self.last_error().is_none() {
            self.remember(&simplify_reason(reason));
        }
    }
}

impl ConsumerContext for CliContext {}

impl ProducerContext for CliContext {
    type DeliveryOpaque = ();

    fn delivery(&self, _result: &DeliveryResult<'_>, _opaque: ()) {}
}

/// Trims librdkafka's connection error down to its useful part:
/// "127.0.0.1:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed: Connection refused (after
/// 0ms in state CONNECT)" becomes "Connection refused".
fn simplify_reason(reason: &str) -> String {
    // Drop the "host:port/id: " prefix naming the broker connection.
    let reason = match reason.split_once(": ") {
        Some((prefix, rest)) if prefix.contains('/') => rest,
        _ => reason,
    };
    let after_failed = reason
        .rsplit_once("failed: ")
        .map_or(reason, |(_, rest)| rest);
    after_failed
        .split(" (after ")
        .next()
        .unwrap_or(after_failed)
        .trim()
        .to_string()
}

/// Creates a librdkafka client of type `T` with a fresh [`CliContext`], returning the client
/// and a handle to its context.
pub fn create_client<T>(config: &ClientConfig) -> anyhow::Result<(T, CliContext)>
where
    T: rdkafka::config::FromClientConfigAndContext<CliContext>,
{
    let context = CliContext::default();
    let client = config
        .create_with_context(context.clone())
        .kafka_context("cannot create Kafka client")?;
    Ok((client, context))
}

/// Turns a per-topic error code into a message, recognising the common cases.
pub fn topic_error_message(topic: &str, code: RDKafkaErrorCode) -> String {
    match code {
        RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic => {
            format!("topic '{topic}' does not exist")
        }
        RDKafkaErrorCode::TopicAlreadyExists => format!("topic '{topic}' already exists"),
        RDKafkaErrorCode::TopicAuthorizationFailed => {
            format!("not authorized to access topic '{topic}'")
        }
        other => format!("topic '{topic}': {other}"),
    }
}

/// Initialises logging for client commands: warnings only unless `RUST_LOG` says otherwise.
pub fn init_client_tracing() {
    init_tracing("warn");
}

/// Installs a `tracing` subscriber writing to stderr, filtered by `RUST_LOG` or `default_filter`.
pub fn init_tracing(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    // A second initialisation (only possible in tests) is harmless; ignore it.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_writer(std::io::stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_parsing() {
        assert_eq!(
            parse_key_value("a=b=c"),
            Ok(("a".to_string(), "b=c".to_string()))
        );
        assert_eq!(parse_key_value("a="), Ok(("a".to_string(), String::new())));
        assert!(parse_key_value("novalue").is_err());
        assert!(parse_key_value("=x").is_err());
    }

    #[test]
    fn connection_errors_are_simplified() {
        assert_eq!(
            simplify_reason(
                "127.0.0.1:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed: \
                 Connection refused (after 0ms in state CONNECT)"
            ),
            "Connection refused"
        );
        assert_eq!(simplify_reason("something else"), "something else");
        assert_eq!(
            simplify_reason(
                "h.invalid:9092/bootstrap: Failed to resolve 'h.invalid:9092': Name or service \
                 not known (after 1ms in state CONNECT)"
            ),
            "Failed to resolve 'h.invalid:9092': Name or service not known"
        );
    }

    #[test]
    fn client_properties_are_applied_last() {
        let args = ClientArgs {
            bootstrap_server: "h:1".to_string(),
            client_properties: vec![("socket.timeout.ms".to_string(), "1234".to_string())],
        };
        let config = args.client_config();
        assert_eq!(config.get("bootstrap.servers"), Some("h:1"));
        assert_eq!(config.get("socket.timeout.ms"), Some("1234"));
    }
}
