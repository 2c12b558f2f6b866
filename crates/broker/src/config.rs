//! Broker configuration read from Kafka's own `server.properties` keys.
//!
//! [`BrokerConfig::from_properties_str`] understands the Java `.properties` syntax (`key=value`,
//! `key: value` or `key value`, `#`/`!` comment lines, `\` line continuations and escapes) and
//! maps the Kafka server keys Strom acts on to typed fields, using Kafka's defaults except where a
//! field's documentation says otherwise. Unknown keys produce a warning string (the caller logs
//! it); a recognised key with an invalid value is a [`ConfigError`] naming the key and the value.
//! Every recognised key that was explicitly set is also kept, as written, in
//! [`BrokerConfig::explicit`] so that DescribeConfigs can list it.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

/// Milliseconds in one minute.
const MS_PER_MINUTE: i64 = 60 * 1000;
/// Milliseconds in one hour.
const MS_PER_HOUR: i64 = 60 * MS_PER_MINUTE;
/// Kafka's default for `log.retention.hours` and `log.roll.hours`.
const DEFAULT_HOURS: i64 = 168;
/// Strom's default data directory (Kafka's `log.dir` default is `/tmp/kafka-logs`).
const DEFAULT_LOG_DIR: &str = "./strom-data";
/// Smallest `log.segment.bytes` Kafka accepts (the size of a legacy v0 record overhead).
const MIN_SEGMENT_BYTES: i64 = 14;
/// Strom's default for `queued.max.request.bytes` when `socket.request.max.bytes` is smaller
/// (Kafka's default is -1, unbounded). See [`BrokerConfig::queued_max_request_bytes`].
pub const DEFAULT_QUEUED_MAX_REQUEST_BYTES: i64 = 512 * 1024 * 1024;

/// Kafka server keys that Strom accepts without warning but that have no effect (thread pool
/// sizes, socket buffers, security protocol mapping, ...). They are kept in
/// [`BrokerConfig::explicit`] like every other recognised key.
const ACCEPTED_WITHOUT_EFFECT: &[&str] = &[
    "listener.security.protocol.map",
    "num.network.threads",
    "num.io.threads",
    "num.recovery.threads.per.data.dir",
    "num.replica.fetchers",
    "socket.send.buffer.bytes",
    "socket.receive.buffer.bytes",
    "background.threads",
    "share.coordinator.state.topic.replication.factor",
    "share.coordinator.state.topic.min.isr",
    "group.coordinator.rebalance.protocols",
    "auto.leader.rebalance.enable",
    "unclean.leader.election.enable",
    "metadata.log.dir",
    "metadata.log.segment.bytes",
];

/// An error building a [`BrokerConfig`].
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A recognised key has a value that cannot be used.
    #[error("invalid value '{value}' for {key}: {reason}")]
    InvalidValue {
        /// The configuration key.
        key: String,
        /// The offending value, as written.
        value: String,
        /// What was expected instead.
        reason: String,
    },
    /// An override names a key Strom does not know.
    #[error("unknown configuration key '{key}'")]
    UnknownKey {
        /// The unknown key.
        key: String,
    },
    /// The properties text itself is malformed (for example a bad `\uXXXX` escape).
    #[error("malformed properties at line {line}: {reason}")]
    Syntax {
        /// 1-based line number where the logical line starts.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// Individually valid settings that contradict each other.
    #[error("inconsistent configuration: {0}")]
    Inconsistent(String),
    /// The configuration file could not be read.
    #[error("cannot read configuration file {path}")]
    Io {
        /// The file that was being read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// The roles this node plays (`process.roles`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessRoles {
    /// The node serves clients (`broker`).
    pub broker: bool,
    /// The node is a metadata quorum member (`controller`).
    pub controller: bool,
}

impl fmt::Display for ProcessRoles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.broker, self.controller) {
            (true, true) => f.write_str("broker,controller"),
            (true, false) => f.write_str("broker"),
            (false, true) => f.write_str("controller"),
            (false, false) => Ok(()),
        }
    }
}

/// One entry of `listeners` / `advertised.listeners`: `NAME://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Listener name, upper-cased like Kafka normalises it (`PLAINTEXT`, `CONTROLLER`, ...).
    pub name: String,
    /// Host as written; an empty host in the configuration is stored as `0.0.0.0`.
    pub host: String,
    /// Port; `0` asks the operating system for a free port when binding.
    pub port: u16,
}

impl fmt::Display for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}://[{}]:{}", self.name, self.host, self.port)
        } else {
            write!(f, "{}://{}:{}", self.name, self.host, self.port)
        }
    }
}

/// A `host:port` pair (entries of `controller.quorum.bootstrap.servers`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
}

/// An entry of `controller.quorum.voters`: `id@host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumVoter {
    /// The voter's node id.
    pub id: i32,
    /// Where the voter's controller listener is reachable.
    pub endpoint: HostPort,
}

/// `log.message.timestamp.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    /// Keep the producer's timestamp.
    CreateTime,
    /// Overwrite the timestamp with the broker's append time.
    LogAppendTime,
}

impl TimestampType {
    /// The spelling Kafka uses in configuration values.
    pub fn as_str(self) -> &'static str {
        match self {
            TimestampType::CreateTime => "CreateTime",
            TimestampType::LogAppendTime => "LogAppendTime",
        }
    }
}

/// The broker's configuration. Construct with [`BrokerConfig::default`],
/// [`BrokerConfig::from_properties_str`] or [`BrokerConfig::from_file`], then refine with
/// [`BrokerConfig::apply_override`] and check with [`BrokerConfig::validate`].
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerConfig {
    /// `node.id` (or the legacy `broker.id`); default 1 (Kafka requires it to be set).
    pub node_id: i32,
    /// `process.roles`; default `broker,controller`.
    pub process_roles: ProcessRoles,
    /// `listeners`; default `PLAINTEXT://127.0.0.1:9092`.
    pub listeners: Vec<Listener>,
    /// `advertised.listeners`. When not set it is derived from `listeners`, with a wildcard host
    /// (`0.0.0.0`, `::`, empty) advertised as `127.0.0.1` (Kafka advertises the machine's
    /// canonical host name instead; Strom keeps it simple and local).
    pub advertised_listeners: Vec<Listener>,
    /// `controller.listener.names`; default empty (Strom's in-process controller needs none).
    pub controller_listener_names: Vec<String>,
    /// `controller.quorum.voters`; parsed and stored.
    pub controller_quorum_voters: Vec<QuorumVoter>,
    /// `controller.quorum.bootstrap.servers`; parsed and stored.
    pub controller_quorum_bootstrap_servers: Vec<HostPort>,
    /// `inter.broker.listener.name`; `None` when not set.
    pub inter_broker_listener_name: Option<String>,
    /// `log.dirs`, else `log.dir`; default `./strom-data`. Only the first directory is used.
    pub log_dirs: Vec<PathBuf>,
    /// `num.partitions`; default 1.
    pub num_partitions: i32,
    /// `default.replication.factor`; default 1.
    pub default_replication_factor: i16,
    /// `auto.create.topics.enable`; default true.
    pub auto_create_topics_enable: bool,
    /// `delete.topic.enable`; default true.
    pub delete_topic_enable: bool,
    /// `message.max.bytes`; default 1048588.
    pub message_max_bytes: i32,
    /// `socket.request.max.bytes`; default 104857600.
    pub socket_request_max_bytes: i32,
    /// `fetch.max.bytes`: the most a fetch response carries; default 57671680 (55 MiB).
    pub fetch_max_bytes: i32,
    /// `connections.max.idle.ms`: a connection idle this long is closed; default 600000.
    pub connections_max_idle_ms: i64,
    /// `max.connections`: the most connections open at once; default `i32::MAX`. As in Kafka,
    /// the listener stops accepting while the limit is reached (new connections wait in the
    /// accept backlog) and resumes when a connection closes.
    pub max_connections: i32,
    /// `max.connections.per.ip`: the most connections open at once from one client address;
    /// default `i32::MAX`. A connection over the limit is accepted and closed at once, as in
    /// Kafka. May be 0 only if `max.connections.per.ip.overrides` is set.
    pub max_connections_per_ip: i32,
    /// `max.connections.per.ip.overrides`: `host:count,...` with IP addresses or host names
    /// (resolved when the key is read; every address of a name gets the count); default empty.
    pub max_connections_per_ip_overrides: BTreeMap<IpAddr, i32>,
    /// `queued.max.request.bytes`: the most bytes of request frames held in memory at once,
    /// across all connections; zero or negative means unbounded, as in Kafka. A connection
    /// takes a frame's size from this budget before it reads the frame body, and gives it back
    /// once the request no longer needs the frame (Produce: when handled; others: when decoded,
    /// as in Kafka); while the budget is spent, connections stop reading
    /// (back-pressure). Kafka's default is -1; Strom's default is the larger of
    /// [`DEFAULT_QUEUED_MAX_REQUEST_BYTES`] (512 MiB) and `socket.request.max.bytes`: five
    /// maximum-size requests at once, far above what clients send in practice, so that a
    /// flood of large frames costs a bounded amount of memory instead of all of it. An explicit
    /// positive value must be at least `socket.request.max.bytes` (Kafka's rule), so every
    /// admissible frame fits in the budget.
    ///
    /// (`queued.max.requests`, Kafka's bound on parsed requests waiting for a handler thread, is
    /// validated but has nothing to bound: a Strom connection handles its request itself, one
    /// at a time, so no request ever waits in a queue; requests in flight are bounded by
    /// `max.connections`.)
    pub queued_max_request_bytes: i64,
    /// Effective retention time from `log.retention.ms` > `log.retention.minutes` >
    /// `log.retention.hours` (default 168 hours); any negative value becomes -1 (unlimited).
    pub log_retention_ms: i64,
    /// `log.retention.bytes`; default -1 (unlimited).
    pub log_retention_bytes: i64,
    /// `log.segment.bytes`; default 1073741824.
    pub log_segment_bytes: i32,
    /// Effective roll time from `log.roll.ms` > `log.roll.hours` (default 168 hours).
    pub log_roll_ms: i64,
    /// `log.flush.interval.messages`; default `i64::MAX` (never flush by count).
    pub log_flush_interval_messages: i64,
    /// `log.flush.interval.ms`, else `log.flush.scheduler.interval.ms`; default `i64::MAX`
    /// (never flush by time; the operating system decides).
    pub log_flush_interval_ms: i64,
    /// `log.retention.check.interval.ms`; default 300000.
    pub log_retention_check_interval_ms: i64,
    /// `log.cleanup.policy`, normalised to a comma list of `delete`/`compact`; default `delete`.
    pub log_cleanup_policy: String,
    /// `log.message.timestamp.type`; default `CreateTime`.
    pub log_message_timestamp_type: TimestampType,
    /// `log.index.interval.bytes`; default 4096.
    pub log_index_interval_bytes: i32,
    /// `offsets.topic.num.partitions`; default 50.
    pub offsets_topic_num_partitions: i32,
    /// `offsets.topic.replication.factor`; default 1 (Kafka's is 3, which a single node cannot
    /// satisfy).
    pub offsets_topic_replication_factor: i16,
    /// `offsets.topic.segment.bytes`; default 104857600.
    pub offsets_topic_segment_bytes: i32,
    /// `offsets.retention.minutes`; default 10080 (7 days).
    pub offsets_retention_minutes: i32,
    /// `group.initial.rebalance.delay.ms`; default 3000.
    pub group_initial_rebalance_delay_ms: i32,
    /// `group.min.session.timeout.ms`; default 6000.
    pub group_min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`; default 1800000.
    pub group_max_session_timeout_ms: i32,
    /// `min.insync.replicas`; default 1.
    pub min_insync_replicas: i32,
    /// `transaction.state.log.num.partitions`; default 50.
    pub transaction_state_log_num_partitions: i32,
    /// `transaction.state.log.replication.factor`; default 1 (Kafka's is 3).
    pub transaction_state_log_replication_factor: i16,
    /// `transaction.state.log.min.isr`; default 1 (Kafka's is 2).
    pub transaction_state_log_min_isr: i32,
    /// `transaction.state.log.segment.bytes`; default 104857600.
    pub transaction_state_log_segment_bytes: i32,
    /// `transaction.max.timeout.ms`; default 900000.
    pub transaction_max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`; default 604800000 (7 days).
    pub transactional_id_expiration_ms: i32,
    /// `broker.rack`; default none.
    pub broker_rack: Option<String>,
    /// Every recognised key that was explicitly set, with its value as written (trimmed).
    pub explicit: BTreeMap<String, String>,
    /// Raw settings behind the derived fields above, kept so that overrides applied later still
    /// honour Kafka's precedence rules.
    sources: DerivedSources,
}

/// Settings that feed derived fields (several keys for one effective value).
#[derive(Debug, Clone, Default, PartialEq)]
struct DerivedSources {
    node_id: Option<i32>,
    broker_id: Option<i32>,
    retention_ms: Option<i64>,
    retention_minutes: Option<i64>,
    retention_hours: Option<i64>,
    roll_ms: Option<i64>,
    roll_hours: Option<i64>,
    flush_interval_ms: Option<i64>,
    flush_scheduler_interval_ms: Option<i64>,
    log_dirs: Option<Vec<PathBuf>>,
    log_dir: Option<PathBuf>,
    advertised_listeners: Option<Vec<Listener>>,
    queued_max_request_bytes: Option<i64>,
}

/// What [`BrokerConfig::set`] made of a key.
enum KeyKind {
    /// A key Strom acts on or deliberately accepts.
    Recognised,
    /// A key Strom does not know.
    Unknown,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        let listeners = vec![Listener {
            name: "PLAINTEXT".to_string(),
            host: "127.0.0.1".to_string(),
            port: 9092,
        }];
        let mut config = BrokerConfig {
            node_id: 1,
            process_roles: ProcessRoles {
                broker: true,
                controller: true,
            },
            advertised_listeners: Vec::new(),
            listeners,
            controller_listener_names: Vec::new(),
            controller_quorum_voters: Vec::new(),
            controller_quorum_bootstrap_servers: Vec::new(),
            inter_broker_listener_name: None,
            log_dirs: Vec::new(),
            num_partitions: 1,
            default_replication_factor: 1,
            auto_create_topics_enable: true,
            delete_topic_enable: true,
            message_max_bytes: 1_048_588,
            socket_request_max_bytes: 104_857_600,
            fetch_max_bytes: 57_671_680,
            connections_max_idle_ms: 600_000,
            max_connections: i32::MAX,
            max_connections_per_ip: i32::MAX,
            max_connections_per_ip_overrides: BTreeMap::new(),
            queued_max_request_bytes: DEFAULT_QUEUED_MAX_REQUEST_BYTES,
            log_retention_ms: 0,
            log_retention_bytes: -1,
            log_segment_bytes: 1_073_741_824,
            log_roll_ms: 0,
            log_flush_interval_messages: i64::MAX,
            log_flush_interval_ms: 0,
            log_retention_check_interval_ms: 300_000,
            log_cleanup_policy: "delete".to_string(),
            log_message_timestamp_type: TimestampType::CreateTime,
            log_index_interval_bytes: 4096,
            offsets_topic_num_partitions: 50,
            offsets_topic_replication_factor: 1,
            offsets_topic_segment_bytes: 104_857_600,
            offsets_retention_minutes: 10_080,
            group_initial_rebalance_delay_ms: 3000,
            group_min_session_timeout_ms: 6000,
            group_max_session_timeout_ms: 1_800_000,
            min_insync_replicas: 1,
            transaction_state_log_num_partitions: 50,
            transaction_state_log_replication_factor: 1,
            transaction_state_log_min_isr: 1,
            transaction_state_log_segment_bytes: 104_857_600,
            transaction_max_timeout_ms: 900_000,
            transactional_id_expiration_ms: 604_800_000,
            broker_rack: None,
            explicit: BTreeMap::new(),
            sources: DerivedSources::default(),
        };
        config.resolve_derived();
        config
    }
}

impl BrokerConfig {
    /// Parses `server.properties` text. Returns the configuration and one warning per unknown
    /// key; fails on malformed syntax, an invalid value or inconsistent settings.
    pub fn from_properties_str(text: &str) -> Result<(BrokerConfig, Vec<String>), ConfigError> {
        let mut config = BrokerConfig::default();
        let mut warnings = Vec::new();
        for (line, key, value) in parse_properties(text)? {
            if let KeyKind::Unknown = config.set(&key, &value)? {
                warnings.push(format!(
                    "unknown configuration key '{key}' (line {line}) ignored"
                ));
            }
        }
        config.validate()?;
        Ok((config, warnings))
    }

    /// Reads and parses a `server.properties` file; see [`BrokerConfig::from_properties_str`].
    pub fn from_file(path: &Path) -> Result<(BrokerConfig, Vec<String>), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        BrokerConfig::from_properties_str(&text)
    }

    /// Sets one key, like `kafka-server-start --override key=value`. Unknown keys are an error
    /// here (a typo on a command line is more likely than a foreign key). Call
    /// [`BrokerConfig::validate`] once all overrides are applied.
    pub fn apply_override(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        match self.set(key.trim(), value)? {
            KeyKind::Recognised => Ok(()),
            KeyKind::Unknown => Err(ConfigError::UnknownKey {
                key: key.trim().to_string(),
            }),
        }
    }

    /// Checks that the settings agree with each other: a broker needs a listener that is not a
    /// controller listener, named listeners must exist, and every listener host must resolve.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut seen = Vec::new();
        for listener in &self.listeners {
            if seen.contains(&listener.name) {
                return Err(ConfigError::Inconsistent(format!(
                    "listener name {} appears more than once in listeners",
                    listener.name
                )));
            }
            seen.push(listener.name.clone());
            resolve_bind_addr(listener)?;
        }
        if self.process_roles.broker && self.broker_listener().is_none() {
            return Err(ConfigError::Inconsistent(
                "process.roles includes broker but every listener is a controller listener"
                    .to_string(),
            ));
        }
        if self.process_roles.controller {
            for name in &self.controller_listener_names {
                if !seen.contains(name) {
                    return Err(ConfigError::Inconsistent(format!(
                        "controller.listener.names contains {name}, which is not in listeners"
                    )));
                }
            }
        }
        if let Some(name) = &self.inter_broker_listener_name {
            if !seen.contains(name) || self.controller_listener_names.contains(name) {
                return Err(ConfigError::Inconsistent(format!(
                    "inter.broker.listener.name {name} must name a non-controller listener"
                )));
            }
        }
        for advertised in &self.advertised_listeners {
            if !seen.contains(&advertised.name) {
                return Err(ConfigError::Inconsistent(format!(
                    "advertised.listeners contains {}, which is not in listeners",
                    advertised.name
                )));
            }
        }
        if self.queued_max_request_bytes > 0
            && self.queued_max_request_bytes < i64::from(self.socket_request_max_bytes)
        {
            return Err(ConfigError::Inconsistent(format!(
                "queued.max.request.bytes ({}) must be at least socket.request.max.bytes ({}), \
                 or -1 for no bound",
                self.queued_max_request_bytes, self.socket_request_max_bytes
            )));
        }
        if self.max_connections_per_ip == 0 && self.max_connections_per_ip_overrides.is_empty() {
            return Err(ConfigError::Inconsistent(
                "max.connections.per.ip can be set to zero only if \
                 max.connections.per.ip.overrides is set"
                    .to_string(),
            ));
        }
        if self.group_min_session_timeout_ms > self.group_max_session_timeout_ms {
            return Err(ConfigError::Inconsistent(
                "group.min.session.timeout.ms is larger than group.max.session.timeout.ms"
                    .to_string(),
            ));
        }
        Ok(())
    }

    /// The address the client listener binds: the first listener that is not a controller
    /// listener (or the first listener on a controller-only node). Host names were checked by
    /// [`BrokerConfig::validate`]; should one stop resolving, this falls back to loopback
    /// rather than exposing the broker on every interface. See
    /// [`BrokerConfig::try_listener_addr`] for the fallible form.
    pub fn listener_addr(&self) -> SocketAddr {
        let listener = self.client_listener();
        self.try_listener_addr()
            .unwrap_or_else(|_| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), listener.port))
    }

    /// Like [`BrokerConfig::listener_addr`] but reports a host that does not resolve.
    pub fn try_listener_addr(&self) -> Result<SocketAddr, ConfigError> {
        resolve_bind_addr(&self.client_listener())
    }

    /// The host and port clients are told to connect to: the advertised listener with the same
    /// name as the client listener (see [`BrokerConfig::listener_addr`]). When the listener
    /// binds port 0 the caller should advertise the port actually bound.
    pub fn advertised_host_port(&self) -> (String, u16) {
        let listener = self.client_listener();
        self.advertised_listeners
            .iter()
            .find(|advertised| advertised.name == listener.name)
            .map(|advertised| (advertised.host.clone(), advertised.port))
            .unwrap_or_else(|| (advertised_host(&listener.host), listener.port))
    }

    /// The data directory: the first entry of `log.dirs` / `log.dir`.
    pub fn log_dir(&self) -> PathBuf {
        self.log_dirs
            .first()
            .cloned()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_LOG_DIR))
    }

    /// The broker-wide defaults for topic-level configs, as `(topic key, value)` pairs:
    /// `log.retention.ms` -> `retention.ms`, `log.retention.bytes` -> `retention.bytes`,
    /// `log.segment.bytes` -> `segment.bytes`, `log.roll.ms` -> `segment.ms`,
    /// `log.flush.interval.messages` -> `flush.messages`, `log.flush.interval.ms` -> `flush.ms`,
    /// `message.max.bytes` -> `max.message.bytes`, `log.cleanup.policy` -> `cleanup.policy`,
    /// `log.message.timestamp.type` -> `message.timestamp.type`, `log.index.interval.bytes` ->
    /// `index.interval.bytes`, `min.insync.replicas` -> `min.insync.replicas`.
    pub fn broker_defaults_as_topic_config(&self) -> Vec<(String, String)> {
        [
            ("cleanup.policy", self.log_cleanup_policy.clone()),
            (
                "flush.messages",
                self.log_flush_interval_messages.to_string(),
            ),
            ("flush.ms", self.log_flush_interval_ms.to_string()),
            (
                "index.interval.bytes",
                self.log_index_interval_bytes.to_string(),
            ),
            ("max.message.bytes", self.message_max_bytes.to_string()),
            (
                "message.timestamp.type",
                self.log_message_timestamp_type.as_str().to_string(),
            ),
            ("min.insync.replicas", self.min_insync_replicas.to_string()),
            ("retention.bytes", self.log_retention_bytes.to_string()),
            ("retention.ms", self.log_retention_ms.to_string()),
            ("segment.bytes", self.log_segment_bytes.to_string()),
            ("segment.ms", self.log_roll_ms.to_string()),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_string(), value))
        .collect()
    }

    /// The listener serving clients: the first non-controller listener, else the first one.
    fn client_listener(&self) -> Listener {
        self.broker_listener()
            .or_else(|| self.listeners.first())
            .cloned()
            .unwrap_or_else(|| Listener {
                name: "PLAINTEXT".to_string(),
                host: "127.0.0.1".to_string(),
                port: 9092,
            })
    }

    /// The first listener that is not named in `controller.listener.names`.
    fn broker_listener(&self) -> Option<&Listener> {
        self.listeners
            .iter()
            .find(|listener| !self.controller_listener_names.contains(&listener.name))
    }

    /// Parses and stores one key. Recognised keys are recorded in `explicit`.
    fn set(&mut self, key: &str, raw_value: &str) -> Result<KeyKind, ConfigError> {
        let value = raw_value.trim();
        let v = Value { key, value };
        match key {
            "node.id" => self.sources.node_id = Some(v.int_at_least(0)?),
            "broker.id" => self.sources.broker_id = Some(v.int_at_least(0)?),
            "process.roles" => self.process_roles = v.process_roles()?,
            "listeners" => self.listeners = v.listeners()?,
            "advertised.listeners" => self.sources.advertised_listeners = Some(v.listeners()?),
            "controller.listener.names" => {
                self.controller_listener_names = v
                    .list()
                    .into_iter()
                    .map(|name| name.to_ascii_uppercase())
                    .collect()
            }
            "controller.quorum.voters" => self.controller_quorum_voters = v.quorum_voters()?,
            "controller.quorum.bootstrap.servers" => {
                self.controller_quorum_bootstrap_servers = v
                    .list()
                    .into_iter()
                    .map(|entry| v.host_port(&entry))
                    .collect::<Result<_, _>>()?
            }
            "inter.broker.listener.name" => {
                self.inter_broker_listener_name = Some(v.non_empty()?.to_ascii_uppercase())
            }
            "log.dirs" => self.sources.log_dirs = Some(v.paths()?),
            "log.dir" => self.sources.log_dir = Some(PathBuf::from(v.non_empty()?)),
            "num.partitions" => self.num_partitions = v.int_at_least(1)?,
            "default.replication.factor" => {
                self.default_replication_factor = v.short_at_least(1)?
            }
            "auto.create.topics.enable" => self.auto_create_topics_enable = v.boolean()?,
            "delete.topic.enable" => self.delete_topic_enable = v.boolean()?,
            "message.max.bytes" => self.message_max_bytes = v.int_at_least(0)?,
            "socket.request.max.bytes" => self.socket_request_max_bytes = v.int_at_least(1)?,
            "fetch.max.bytes" => self.fetch_max_bytes = v.int_at_least(1024)?,
            "connections.max.idle.ms" => self.connections_max_idle_ms = v.long_at_least(1)?,
            "max.connections" => self.max_connections = v.int_at_least(0)?,
            "max.connections.per.ip" => self.max_connections_per_ip = v.int_at_least(0)?,
            "max.connections.per.ip.overrides" => {
                self.max_connections_per_ip_overrides = v.connection_overrides()?
            }
            // Validated only; see `queued_max_request_bytes` for why there is no queue to bound.
            "queued.max.requests" => {
                v.int_at_least(1)?;
            }
            "queued.max.request.bytes" => self.sources.queued_max_request_bytes = Some(v.long()?),
            "log.retention.ms" => self.sources.retention_ms = Some(v.long()?),
            "log.retention.minutes" => self.sources.retention_minutes = Some(v.int()?.into()),
            "log.retention.hours" => self.sources.retention_hours = Some(v.int()?.into()),
            "log.retention.bytes" => self.log_retention_bytes = v.long()?,
            "log.segment.bytes" => {
                self.log_segment_bytes = v.int_at_least(MIN_SEGMENT_BYTES as i32)?
            }
            "log.roll.ms" => self.sources.roll_ms = Some(v.long_at_least(1)?),
            "log.roll.hours" => self.sources.roll_hours = Some(v.int_at_least(1)?.into()),
            "log.flush.interval.messages" => {
                self.log_flush_interval_messages = v.long_at_least(1)?
            }
            "log.flush.interval.ms" => self.sources.flush_interval_ms = Some(v.long()?),
            "log.flush.scheduler.interval.ms" => {
                self.sources.flush_scheduler_interval_ms = Some(v.long()?)
            }
            "log.retention.check.interval.ms" => {
                self.log_retention_check_interval_ms = v.long_at_least(1)?
            }
            "log.cleanup.policy" => self.log_cleanup_policy = v.cleanup_policy()?,
            "log.message.timestamp.type" => self.log_message_timestamp_type = v.timestamp_type()?,
            "log.index.interval.bytes" => self.log_index_interval_bytes = v.int_at_least(0)?,
            "offsets.topic.num.partitions" => {
                self.offsets_topic_num_partitions = v.int_at_least(1)?
            }
            "offsets.topic.replication.factor" => {
                self.offsets_topic_replication_factor = v.short_at_least(1)?
            }
            "offsets.topic.segment.bytes" => {
                self.offsets_topic_segment_bytes = v.int_at_least(1)?
            }
            "offsets.retention.minutes" => self.offsets_retention_minutes = v.int_at_least(1)?,
            "group.initial.rebalance.delay.ms" => {
                self.group_initial_rebalance_delay_ms = v.int_at_least(0)?
            }
            "group.min.session.timeout.ms" => self.group_min_session_timeout_ms = v.int()?,
            "group.max.session.timeout.ms" => self.group_max_session_timeout_ms = v.int()?,
            "min.insync.replicas" => self.min_insync_replicas = v.int_at_least(1)?,
            "transaction.state.log.num.partitions" => {
                self.transaction_state_log_num_partitions = v.int_at_least(1)?
            }
            "transaction.state.log.replication.factor" => {
                self.transaction_state_log_replication_factor = v.short_at_least(1)?
            }
            "transaction.state.log.min.isr" => {
                self.transaction_state_log_min_isr = v.int_at_least(1)?
            }
            "transaction.state.log.segment.bytes" => {
                self.transaction_state_log_segment_bytes = v.int_at_least(1)?
            }
            "transaction.max.timeout.ms" => self.transaction_max_timeout_ms = v.int_at_least(1)?,
            "transactional.id.expiration.ms" => {
                self.transactional_id_expiration_ms = v.int_at_least(1)?
            }
            "broker.rack" => {
                self.broker_rack = Some(value.to_string()).filter(|rack| !rack.is_empty())
            }
            other if ACCEPTED_WITHOUT_EFFECT.contains(&other) => {}
            _ => return Ok(KeyKind::Unknown),
        }
        self.explicit.insert(key.to_string(), value.to_string());
        self.resolve_derived();
        Ok(KeyKind::Recognised)
    }

    /// Recomputes the fields that several keys contribute to, with Kafka's precedence.
    fn resolve_derived(&mut self) {
        let sources = &self.sources;
        self.node_id = sources.node_id.or(sources.broker_id).unwrap_or(1);
        let retention = sources
            .retention_ms
            .or_else(|| {
                sources
                    .retention_minutes
                    .map(|m| m.saturating_mul(MS_PER_MINUTE))
            })
            .unwrap_or_else(|| {
                sources
                    .retention_hours
                    .unwrap_or(DEFAULT_HOURS)
                    .saturating_mul(MS_PER_HOUR)
            });
        self.log_retention_ms = if retention < 0 { -1 } else { retention };
        self.log_roll_ms = sources.roll_ms.unwrap_or_else(|| {
            sources
                .roll_hours
                .unwrap_or(DEFAULT_HOURS)
                .saturating_mul(MS_PER_HOUR)
        });
        self.log_flush_interval_ms = sources
            .flush_interval_ms
            .or(sources.flush_scheduler_interval_ms)
            .unwrap_or(i64::MAX);
        self.queued_max_request_bytes = sources.queued_max_request_bytes.unwrap_or_else(|| {
            DEFAULT_QUEUED_MAX_REQUEST_BYTES.max(i64::from(self.socket_request_max_bytes))
        });
        self.log_dirs = sources
            .log_dirs
            .clone()
            .or_else(|| sources.log_dir.clone().map(|dir| vec![dir]))
            .unwrap_or_else(|| vec![PathBuf::from(DEFAULT_LOG_DIR)]);
        self.advertised_listeners = match &sources.advertised_listeners {
            Some(listeners) => listeners.clone(),
            None => self
                .listeners
                .iter()
                .map(|listener| Listener {
                    name: listener.name.clone(),
                    host: advertised_host(&listener.host),
                    port: listener.port,
                })
                .collect(),
        };
    }
}

/// The host to advertise for a bound host: wildcards become loopback.
fn advertised_host(bound_host: &str) -> String {
    match bound_host {
        "" | "0.0.0.0" | "::" => "127.0.0.1".to_string(),
        host => host.to_string(),
    }
}

/// Resolves a listener's host to the socket address to bind.
fn resolve_bind_addr(listener: &Listener) -> Result<SocketAddr, ConfigError> {
    if let Ok(ip) = listener.host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, listener.port));
    }
    if listener.host.eq_ignore_ascii_case("localhost") {
        return Ok(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            listener.port,
        ));
    }
    let unresolvable = |reason: String| ConfigError::InvalidValue {
        key: "listeners".to_string(),
        value: listener.to_string(),
        reason,
    };
    (listener.host.as_str(), listener.port)
        .to_socket_addrs()
        .map_err(|error| unresolvable(format!("cannot resolve host: {error}")))?
        .next()
        .ok_or_else(|| unresolvable("host resolves to no address".to_string()))
}

/// A key and its trimmed value, with typed parsers that produce [`ConfigError::InvalidValue`].
struct Value<'a> {
    key: &'a str,
    value: &'a str,
}

impl Value<'_> {
    fn invalid(&self, reason: impl Into<String>) -> ConfigError {
        ConfigError::InvalidValue {
            key: self.key.to_string(),
            value: self.value.to_string(),
            reason: reason.into(),
        }
    }

    fn int(&self) -> Result<i32, ConfigError> {
        self.value
            .parse()
            .map_err(|_| self.invalid("expected an integer"))
    }

    fn long(&self) -> Result<i64, ConfigError> {
        self.value
            .parse()
            .map_err(|_| self.invalid("expected an integer"))
    }

    fn int_at_least(&self, min: i32) -> Result<i32, ConfigError> {
        let parsed = self.int()?;
        if parsed < min {
            return Err(self.invalid(format!("must be at least {min}")));
        }
        Ok(parsed)
    }

    fn long_at_least(&self, min: i64) -> Result<i64, ConfigError> {
        let parsed = self.long()?;
        if parsed < min {
            return Err(self.invalid(format!("must be at least {min}")));
        }
        Ok(parsed)
    }

    fn short_at_least(&self, min: i16) -> Result<i16, ConfigError> {
        let parsed: i16 = self
            .value
            .parse()
            .map_err(|_| self.invalid("expected an integer between -32768 and 32767"))?;
        if parsed < min {
            return Err(self.invalid(format!("must be at least {min}")));
        }
        Ok(parsed)
    }

    fn boolean(&self) -> Result<bool, ConfigError> {
        if self.value.eq_ignore_ascii_case("true") {
            Ok(true)
        } else if self.value.eq_ignore_ascii_case("false") {
            Ok(false)
        } else {
            Err(self.invalid("expected true or false"))
        }
    }

    fn non_empty(&self) -> Result<&str, ConfigError> {
        if self.value.is_empty() {
            return Err(self.invalid("must not be empty"));
        }
        Ok(self.value)
    }

    /// A comma-separated list with entries trimmed and empty entries dropped (Kafka's LIST).
    fn list(&self) -> Vec<String> {
        self.value
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(str::to_string)
            .collect()
    }

    fn paths(&self) -> Result<Vec<PathBuf>, ConfigError> {
        let paths: Vec<PathBuf> = self.list().into_iter().map(PathBuf::from).collect();
        if paths.is_empty() {
            return Err(self.invalid("expected at least one directory"));
        }
        Ok(paths)
    }

    fn process_roles(&self) -> Result<ProcessRoles, ConfigError> {
        let mut roles = ProcessRoles {
            broker: false,
            controller: false,
        };
        for role in self.list() {
            let slot = match role.as_str() {
                "broker" => &mut roles.broker,
                "controller" => &mut roles.controller,
                _ => return Err(self.invalid("expected broker, controller or broker,controller")),
            };
            if *slot {
                return Err(self.invalid(format!("role {role} listed twice")));
            }
            *slot = true;
        }
        if !roles.broker && !roles.controller {
            return Err(self.invalid("expected broker, controller or broker,controller"));
        }
        Ok(roles)
    }

    fn cleanup_policy(&self) -> Result<String, ConfigError> {
        let policies = self.list();
        if policies.is_empty() {
            return Err(self.invalid("expected delete, compact or compact,delete"));
        }
        for policy in &policies {
            if policy != "delete" && policy != "compact" {
                return Err(self.invalid("expected delete, compact or compact,delete"));
            }
        }
        Ok(policies.join(","))
    }

    fn timestamp_type(&self) -> Result<TimestampType, ConfigError> {
        match self.value {
            "CreateTime" => Ok(TimestampType::CreateTime),
            "LogAppendTime" => Ok(TimestampType::LogAppendTime),
            _ => Err(self.invalid("expected CreateTime or LogAppendTime")),
        }
    }

    /// Parses `host:port` (IPv6 hosts in brackets; an empty host is allowed).
    fn host_port(&self, entry: &str) -> Result<HostPort, ConfigError> {
        let (host, port) = entry
            .rsplit_once(':')
            .ok_or_else(|| self.invalid(format!("'{entry}' is not host:port")))?;
        let host = match host.strip_prefix('[') {
            Some(bracketed) => bracketed
                .strip_suffix(']')
                .ok_or_else(|| self.invalid(format!("'{entry}' has an unclosed '['")))?,
            None if host.contains(':') => {
                return Err(self.invalid(format!("'{entry}': put IPv6 addresses in brackets")))
            }
            None => host,
        };
        let port = port
            .parse()
            .map_err(|_| self.invalid(format!("'{entry}' has an invalid port")))?;
        Ok(HostPort {
            host: host.to_string(),
            port,
        })
    }

    /// Parses `max.connections.per.ip.overrides`: `host:count` entries (split at the last `:`,
    /// so bare IPv6 addresses work; brackets are allowed), hosts being IP addresses or names.
    fn connection_overrides(&self) -> Result<BTreeMap<IpAddr, i32>, ConfigError> {
        let mut overrides = BTreeMap::new();
        for entry in self.list() {
            let (host, count) = entry
                .rsplit_once(':')
                .ok_or_else(|| self.invalid(format!("'{entry}' is not host:count")))?;
            let count: i32 = count
                .trim()
                .parse()
                .ok()
                .filter(|count| *count >= 0)
                .ok_or_else(|| self.invalid(format!("'{entry}' has an invalid count")))?;
            let host = host.trim();
            let host = host
                .strip_prefix('[')
                .and_then(|bracketed| bracketed.strip_suffix(']'))
                .unwrap_or(host);
            if host.is_empty() {
                return Err(self.invalid(format!("'{entry}' has no host")));
            }
            let addresses: Vec<IpAddr> = match host.parse::<IpAddr>() {
                Ok(ip) => vec![ip],
                Err(_) => (host, 0)
                    .to_socket_addrs()
                    .map_err(|error| self.invalid(format!("cannot resolve '{host}': {error}")))?
                    .map(|address| address.ip())
                    .collect(),
            };
            if addresses.is_empty() {
                return Err(self.invalid(format!("'{host}' resolves to no address")));
            }
            for address in addresses {
                overrides.insert(address.to_canonical(), count);
            }
        }
        Ok(overrides)
    }

    fn listeners(&self) -> Result<Vec<Listener>, ConfigError> {
        let entries = self.list();
        if entries.is_empty() {
            return Err(self.invalid("expected at least one NAME://host:port"));
        }
        entries
            .iter()
            .map(|entry| {
                let (name, address) = entry.split_once("://").ok_or_else(|| {
                    self.invalid(format!("'{entry}' is not of the form NAME://host:port"))
                })?;
                if name.is_empty() {
                    return Err(self.invalid(format!("'{entry}' has no listener name")));
                }
                let HostPort { host, port } = self.host_port(address)?;
                Ok(Listener {
                    name: name.to_ascii_uppercase(),
                    host: if host.is_empty() {
                        "0.0.0.0".to_string()
                    } else {
                        host
                    },
                    port,
                })
            })
            .collect()
    }

    fn quorum_voters(&self) -> Result<Vec<QuorumVoter>, ConfigError> {
        self.list()
            .iter()
            .map(|entry| {
                let (id, address) = entry
                    .split_once('@')
                    .ok_or_else(|| self.invalid(format!("'{entry}' is not id@host:port")))?;
                let id = id
                    .parse()
                    .map_err(|_| self.invalid(format!("'{entry}' has an invalid node id")))?;
                Ok(QuorumVoter {
                    id,
                    endpoint: self.host_port(address)?,
                })
            })
            .collect()
    }
}

/// Splits Java `.properties` text into `(line number, key, value)` entries in file order.
///
/// Follows `java.util.Properties::load`: comment lines start with `#` or `!`; a line ending in
/// an odd number of backslashes continues on the next line (whose leading whitespace is
/// dropped); the key ends at the first unescaped `=`, `:` or whitespace; escapes `\t \n \r \f
/// \uXXXX` are decoded and any other escaped character stands for itself.
pub fn parse_properties(text: &str) -> Result<Vec<(usize, String, String)>, ConfigError> {
    let mut entries = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((index, first)) = lines.next() {
        let line_number = index + 1;
        let trimmed = first.trim_start_matches([' ', '\t', '\x0c']);
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with('!') {
            continue;
        }
        let mut logical = String::new();
        let mut current = trimmed;
        loop {
            let trailing = current.len() - current.trim_end_matches('\\').len();
            if trailing % 2 == 1 {
                logical.push_str(&current[..current.len() - 1]);
                match lines.next() {
                    Some((_, next)) => current = next.trim_start_matches([' ', '\t', '\x0c']),
                    None => break,
                }
            } else {
                logical.push_str(current);
                break;
            }
        }
        let (key, value) = split_key_value(&logical);
        entries.push((
            line_number,
            unescape(key, line_number)?,
            unescape(value, line_number)?,
        ));
    }
    Ok(entries)
}

/// Splits a logical line into its raw (still escaped) key and value.
fn split_key_value(logical: &str) -> (&str, &str) {
    let mut escaped = false;
    let mut key_end = logical.len();
    for (position, c) in logical.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if matches!(c, '=' | ':' | ' ' | '\t' | '\x0c') {
            key_end = position;
            break;
        }
    }
    let key = &logical[..key_end];
    let mut rest = logical[key_end..].trim_start_matches([' ', '\t', '\x0c']);
    if let Some(after) = rest.strip_prefix(['=', ':']) {
        rest = after.trim_start_matches([' ', '\t', '\x0c']);
    }
    (key, rest)
}

/// Decodes `.properties` escapes.
fn unescape(raw: &str, line: usize) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\x0c'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let decoded = u32::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| hex.len() == 4)
                    .and_then(char::from_u32)
                    .ok_or_else(|| ConfigError::Syntax {
                        line,
                        reason: format!("malformed \\uxxxx escape '\\u{hex}'"),
                    })?;
                out.push(decoded);
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (BrokerConfig, Vec<String>) {
        match BrokerConfig::from_properties_str(text) {
            Ok(parsed) => parsed,
            Err(error) => panic!("unexpected error: {error}"),
        }
    }

    fn parse_error(text: &str) -> String {
        match BrokerConfig::from_properties_str(text) {
            Ok(_) => panic!("expected an error for {text:?}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn defaults_match_kafka_except_documented_ones() {
        let config = BrokerConfig::default();
        assert_eq!(config.node_id, 1);
        assert!(config.process_roles.broker && config.process_roles.controller);
        assert_eq!(
            config.listeners[0].to_string(),
            "PLAINTEXT://127.0.0.1:9092"
        );
        assert_eq!(config.listener_addr(), "127.0.0.1:9092".parse().unwrap());
        assert_eq!(
            config.advertised_host_port(),
            ("127.0.0.1".to_string(), 9092)
        );
        assert_eq!(config.log_dir(), PathBuf::from("./strom-data"));
        assert_eq!(config.num_partitions, 1);
        assert_eq!(config.default_replication_factor, 1);
        assert!(config.auto_create_topics_enable);
        assert_eq!(config.message_max_bytes, 1_048_588);
        assert_eq!(config.socket_request_max_bytes, 104_857_600);
        assert_eq!(config.log_retention_ms, 168 * 3_600_000);
        assert_eq!(config.log_retention_bytes, -1);
        assert_eq!(config.log_segment_bytes, 1_073_741_824);
        assert_eq!(config.log_roll_ms, 168 * 3_600_000);
        assert_eq!(config.log_flush_interval_messages, i64::MAX);
        assert_eq!(config.log_flush_interval_ms, i64::MAX);
        assert_eq!(config.log_retention_check_interval_ms, 300_000);
        assert_eq!(config.log_cleanup_policy, "delete");
        assert_eq!(config.log_message_timestamp_type, TimestampType::CreateTime);
        assert_eq!(config.log_index_interval_bytes, 4096);
        assert_eq!(config.offsets_topic_num_partitions, 50);
        assert_eq!(config.offsets_topic_replication_factor, 1);
        assert_eq!(config.offsets_retention_minutes, 10_080);
        assert_eq!(config.group_initial_rebalance_delay_ms, 3000);
        assert_eq!(config.min_insync_replicas, 1);
        assert_eq!(config.transaction_state_log_num_partitions, 50);
        assert_eq!(config.broker_rack, None);
        assert!(config.explicit.is_empty());
        assert!(config.validate().is_ok());
    }

    #[test]
    fn empty_text_gives_defaults() {
        let (config, warnings) = parse("");
        assert_eq!(config, BrokerConfig::default());
        assert!(warnings.is_empty());
    }

    #[test]
    fn kafka_sample_server_properties_parse_without_warnings() {
        let text = r#"
# Licensed to the Apache Software Foundation (ASF)
############################# Server Basics #############################
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=localhost:9093
listeners=PLAINTEXT://:9092,CONTROLLER://:9093
inter.broker.listener.name=PLAINTEXT
advertised.listeners=PLAINTEXT://localhost:9092,CONTROLLER://localhost:9093
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL
num.network.threads=3
num.io.threads=8
socket.send.buffer.bytes=102400
socket.receive.buffer.bytes=102400
socket.request.max.bytes=104857600
log.dirs=/tmp/kraft-combined-logs
num.partitions=1
num.recovery.threads.per.data.dir=1
offsets.topic.replication.factor=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
#log.flush.interval.messages=10000
#log.flush.interval.ms=1000
log.retention.hours=168
#log.retention.bytes=1073741824
log.segment.bytes=1073741824
log.retention.check.interval.ms=300000
"#;
        let (config, warnings) = parse(text);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(config.listener_addr(), "0.0.0.0:9092".parse().unwrap());
        assert_eq!(
            config.advertised_host_port(),
            ("localhost".to_string(), 9092)
        );
        assert_eq!(config.controller_listener_names, vec!["CONTROLLER"]);
        assert_eq!(
            config.controller_quorum_bootstrap_servers,
            vec![HostPort {
                host: "localhost".to_string(),
                port: 9093
            }]
        );
        assert_eq!(
            config.inter_broker_listener_name.as_deref(),
            Some("PLAINTEXT")
        );
        assert_eq!(config.log_dir(), PathBuf::from("/tmp/kraft-combined-logs"));
        assert_eq!(
            config.explicit.get("num.io.threads").map(String::as_str),
            Some("8")
        );
        assert_eq!(config.explicit.len(), 24);
    }

    #[test]
    fn properties_syntax_separators_comments_and_continuations() {
        let text = "  # comment\n! also a comment\n\n\
                    a=1\n\
                    b : 2\n\
                    c 3\n\
                    d=\n\
                    e\n\
                    f = x=y:z\n\
                    g = first, \\\n      second\n\
                    key\\ with\\ spaces = tab\\there\n\
                    h=\\u0041\\\\\n\
                    i=ends with escaped backslash\\\\\n";
        let entries = parse_properties(text).unwrap();
        let pairs: Vec<(&str, &str)> = entries
            .iter()
            .map(|(_, key, value)| (key.as_str(), value.as_str()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("a", "1"),
                ("b", "2"),
                ("c", "3"),
                ("d", ""),
                ("e", ""),
                ("f", "x=y:z"),
                ("g", "first, second"),
                ("key with spaces", "tab\there"),
                ("h", "A\\"),
                ("i", "ends with escaped backslash\\"),
            ]
        );
        assert_eq!(entries[0].0, 4);
    }

    #[test]
    fn malformed_unicode_escape_is_a_syntax_error() {
        let message = parse_error("a=1\nb=\\u12G4\n");
        assert!(message.contains("line 2"), "{message}");
    }

    #[test]
    fn continuation_on_last_line_is_tolerated() {
        let entries = parse_properties("a=1\\").unwrap();
        assert_eq!(entries, vec![(1, "a".to_string(), "1".to_string())]);
    }

    #[test]
    fn unknown_keys_warn_and_are_not_stored() {
        let (config, warnings) = parse("num.partitions=3\nfoo.bar=1\n");
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("foo.bar"), "{warnings:?}");
        assert_eq!(config.num_partitions, 3);
        assert!(!config.explicit.contains_key("foo.bar"));
    }

    #[test]
    fn invalid_values_name_key_and_value() {
        assert_eq!(
            parse_error("num.partitions=abc"),
            "invalid value 'abc' for num.partitions: expected an integer"
        );
        assert_eq!(
            parse_error("num.partitions=0"),
            "invalid value '0' for num.partitions: must be at least 1"
        );
        assert!(parse_error("auto.create.topics.enable=yes").contains("expected true or false"));
        assert!(parse_error("process.roles=worker").contains("process.roles"));
        assert!(parse_error("log.cleanup.policy=forever").contains("log.cleanup.policy"));
        assert!(parse_error("log.message.timestamp.type=Now").contains("CreateTime"));
        assert!(parse_error("listeners=localhost:9092").contains("NAME://host:port"));
        assert!(parse_error("listeners=PLAINTEXT://host:99999").contains("invalid port"));
        assert!(parse_error("default.replication.factor=40000").contains("between"));
        assert!(parse_error("log.segment.bytes=10").contains("at least 14"));
        assert!(parse_error("controller.quorum.voters=1@h").contains("host:port"));
        assert!(parse_error("controller.quorum.voters=x@h:1").contains("node id"));
    }

    #[test]
    fn values_are_trimmed_and_booleans_case_insensitive() {
        let (config, _) = parse("num.partitions =  7  \nauto.create.topics.enable=FALSE\n");
        assert_eq!(config.num_partitions, 7);
        assert!(!config.auto_create_topics_enable);
        assert_eq!(
            config.explicit.get("num.partitions").map(String::as_str),
            Some("7")
        );
    }

    #[test]
    fn retention_precedence_ms_over_minutes_over_hours() {
        let (config, _) = parse("log.retention.hours=1");
        assert_eq!(config.log_retention_ms, 3_600_000);
        let (config, _) = parse("log.retention.hours=1\nlog.retention.minutes=2");
        assert_eq!(config.log_retention_ms, 120_000);
        let (config, _) =
            parse("log.retention.ms=5\nlog.retention.hours=1\nlog.retention.minutes=2");
        assert_eq!(config.log_retention_ms, 5);
        let (config, _) = parse("log.retention.minutes=-5");
        assert_eq!(config.log_retention_ms, -1);
        let (mut config, _) = parse("log.retention.ms=100");
        config.apply_override("log.retention.hours", "2").unwrap();
        assert_eq!(config.log_retention_ms, 100);
    }

    #[test]
    fn roll_and_flush_precedence() {
        let (config, _) = parse("log.roll.hours=2");
        assert_eq!(config.log_roll_ms, 7_200_000);
        let (config, _) = parse("log.roll.hours=2\nlog.roll.ms=10");
        assert_eq!(config.log_roll_ms, 10);
        let (config, _) = parse("log.flush.scheduler.interval.ms=500");
        assert_eq!(config.log_flush_interval_ms, 500);
        let (config, _) = parse("log.flush.scheduler.interval.ms=500\nlog.flush.interval.ms=7");
        assert_eq!(config.log_flush_interval_ms, 7);
        let (config, _) = parse("log.flush.interval.messages=1");
        assert_eq!(config.log_flush_interval_messages, 1);
    }

    #[test]
    fn log_dirs_over_log_dir_and_first_is_used() {
        let (config, _) = parse("log.dir=/single");
        assert_eq!(config.log_dir(), PathBuf::from("/single"));
        let (config, _) = parse("log.dir=/single\nlog.dirs= /a , /b ");
        assert_eq!(
            config.log_dirs,
            vec![PathBuf::from("/a"), PathBuf::from("/b")]
        );
        assert_eq!(config.log_dir(), PathBuf::from("/a"));
    }

    #[test]
    fn node_id_and_legacy_broker_id() {
        let (config, _) = parse("broker.id=4");
        assert_eq!(config.node_id, 4);
        let (config, _) = parse("broker.id=4\nnode.id=5");
        assert_eq!(config.node_id, 5);
        assert!(parse_error("node.id=-1").contains("at least 0"));
    }

    #[test]
    fn process_roles_variants() {
        let (config, _) = parse("process.roles=broker");
        assert_eq!(config.process_roles.to_string(), "broker");
        let (config, _) = parse("process.roles=controller, broker");
        assert_eq!(config.process_roles.to_string(), "broker,controller");
        let (config, _) = parse("process.roles=controller");
        assert!(!config.process_roles.broker);
        assert!(parse_error("process.roles=broker,broker").contains("twice"));
        assert!(parse_error("process.roles=").contains("process.roles"));
    }

    #[test]
    fn listeners_parse_names_hosts_and_ipv6() {
        let (config, _) = parse("listeners=plaintext://[::1]:9000, EXTERNAL://:0");
        assert_eq!(
            config.listeners,
            vec![
                Listener {
                    name: "PLAINTEXT".to_string(),
                    host: "::1".to_string(),
                    port: 9000
                },
                Listener {
                    name: "EXTERNAL".to_string(),
                    host: "0.0.0.0".to_string(),
                    port: 0
                },
            ]
        );
        assert_eq!(config.listener_addr(), "[::1]:9000".parse().unwrap());
        assert_eq!(config.listeners[0].to_string(), "PLAINTEXT://[::1]:9000");
        assert_eq!(config.advertised_listeners[1].host, "127.0.0.1");
    }

    #[test]
    fn listener_addr_skips_controller_listeners() {
        let (config, _) = parse(
            "listeners=CONTROLLER://127.0.0.1:9093,PLAINTEXT://0.0.0.0:9092\n\
             controller.listener.names=CONTROLLER",
        );
        assert_eq!(config.listener_addr(), "0.0.0.0:9092".parse().unwrap());
        assert_eq!(
            config.advertised_host_port(),
            ("127.0.0.1".to_string(), 9092)
        );
        let (config, _) = parse(
            "process.roles=controller\nlisteners=CONTROLLER://127.0.0.1:9093\n\
             controller.listener.names=CONTROLLER",
        );
        assert_eq!(config.listener_addr(), "127.0.0.1:9093".parse().unwrap());
    }

    #[test]
    fn explicit_advertised_listener_is_used() {
        let (config, _) = parse(
            "listeners=PLAINTEXT://0.0.0.0:9092\nadvertised.listeners=PLAINTEXT://broker.example:19092",
        );
        assert_eq!(
            config.advertised_host_port(),
            ("broker.example".to_string(), 19092)
        );
    }

    #[test]
    fn advertised_listener_without_match_falls_back_to_bound_listener() {
        let (mut config, _) = parse("listeners=PLAINTEXT://127.0.0.1:9092,OTHER://127.0.0.1:1");
        config
            .apply_override("advertised.listeners", "OTHER://example:2")
            .unwrap();
        assert_eq!(
            config.advertised_host_port(),
            ("127.0.0.1".to_string(), 9092)
        );
    }

    #[test]
    fn inconsistent_settings_are_rejected() {
        assert!(parse_error(
            "listeners=CONTROLLER://127.0.0.1:9093\ncontroller.listener.names=CONTROLLER"
        )
        .contains("every listener is a controller listener"));
        assert!(parse_error("controller.listener.names=CONTROLLER").contains("not in listeners"));
        assert!(parse_error("inter.broker.listener.name=INTERNAL").contains("non-controller"));
        assert!(parse_error("advertised.listeners=OTHER://h:1").contains("not in listeners"));
        assert!(parse_error("listeners=A://127.0.0.1:1,a://127.0.0.1:2").contains("more than once"));
        assert!(
            parse_error("group.min.session.timeout.ms=10\ngroup.max.session.timeout.ms=5")
                .contains("group.min.session.timeout.ms")
        );
    }

    #[test]
    fn quorum_voters_are_parsed() {
        let (config, _) = parse("controller.quorum.voters=1@localhost:9093, 2@[::1]:9094");
        assert_eq!(
            config.controller_quorum_voters,
            vec![
                QuorumVoter {
                    id: 1,
                    endpoint: HostPort {
                        host: "localhost".to_string(),
                        port: 9093
                    }
                },
                QuorumVoter {
                    id: 2,
                    endpoint: HostPort {
                        host: "::1".to_string(),
                        port: 9094
                    }
                },
            ]
        );
    }

    #[test]
    fn overrides_set_known_keys_and_reject_unknown_ones() {
        let mut config = BrokerConfig::default();
        config.apply_override("num.partitions", "3").unwrap();
        config.apply_override("broker.rack", "rack-a").unwrap();
        config
            .apply_override("listeners", "PLAINTEXT://127.0.0.1:0")
            .unwrap();
        assert_eq!(config.num_partitions, 3);
        assert_eq!(config.broker_rack.as_deref(), Some("rack-a"));
        assert_eq!(config.listener_addr(), "127.0.0.1:0".parse().unwrap());
        assert_eq!(config.advertised_host_port(), ("127.0.0.1".to_string(), 0));
        assert_eq!(
            config.explicit.get("num.partitions").map(String::as_str),
            Some("3")
        );
        assert!(matches!(
            config.apply_override("no.such.key", "1"),
            Err(ConfigError::UnknownKey { .. })
        ));
        assert!(matches!(
            config.apply_override("num.partitions", "x"),
            Err(ConfigError::InvalidValue { .. })
        ));
        assert!(config.validate().is_ok());
    }

    #[test]
    fn connection_and_request_memory_limits() {
        let config = BrokerConfig::default();
        assert_eq!(config.max_connections, i32::MAX);
        assert_eq!(config.max_connections_per_ip, i32::MAX);
        assert!(config.max_connections_per_ip_overrides.is_empty());
        assert_eq!(config.queued_max_request_bytes, 512 * 1024 * 1024);

        let (config, warnings) = parse(
            "max.connections=100\nmax.connections.per.ip=0\nqueued.max.requests=10\n\
             max.connections.per.ip.overrides=127.0.0.1:5, [::1]:7, ::2:3 ,10.0.0.1:0",
        );
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(config.max_connections, 100);
        assert_eq!(config.max_connections_per_ip, 0);
        let overrides: Vec<(String, i32)> = config
            .max_connections_per_ip_overrides
            .iter()
            .map(|(ip, count)| (ip.to_string(), *count))
            .collect();
        assert_eq!(
            overrides,
            [("10.0.0.1", 0), ("127.0.0.1", 5), ("::1", 7), ("::2", 3)]
                .map(|(ip, count)| (ip.to_string(), count))
        );
        let (config, _) = parse("max.connections.per.ip.overrides=localhost:9");
        assert_eq!(
            config
                .max_connections_per_ip_overrides
                .get(&IpAddr::V4(Ipv4Addr::LOCALHOST)),
            Some(&9)
        );

        // The default budget grows with socket.request.max.bytes; -1 means no bound.
        let (config, _) = parse("socket.request.max.bytes=1073741824");
        assert_eq!(config.queued_max_request_bytes, 1_073_741_824);
        let (config, _) = parse("queued.max.request.bytes=-1");
        assert_eq!(config.queued_max_request_bytes, -1);
        let (config, _) =
            parse("socket.request.max.bytes=1048576\nqueued.max.request.bytes=1048576");
        assert_eq!(config.queued_max_request_bytes, 1_048_576);

        // Kafka's rules: every admissible frame fits in the budget; per-ip 0 needs overrides.
        let error = parse_error("queued.max.request.bytes=1048576");
        assert!(
            error.contains("queued.max.request.bytes")
                && error.contains("socket.request.max.bytes"),
            "{error}"
        );
        let error = parse_error("max.connections.per.ip=0");
        assert!(
            error.contains("max.connections.per.ip.overrides"),
            "{error}"
        );
        for bad in [
            "max.connections=-1",
            "max.connections.per.ip=-1",
            "queued.max.requests=0",
            "queued.max.request.bytes=lots",
            "max.connections.per.ip.overrides=127.0.0.1",
            "max.connections.per.ip.overrides=127.0.0.1:many",
            "max.connections.per.ip.overrides=127.0.0.1:-2",
            "max.connections.per.ip.overrides=:5",
        ] {
            let error = parse_error(bad);
            let key = bad.split('=').next().unwrap();
            assert!(error.contains(key), "{bad}: {error}");
        }
    }

    #[test]
    fn transaction_state_log_settings_are_stored() {
        let (config, _) = parse(
            "transaction.state.log.num.partitions=5\ntransaction.state.log.replication.factor=2\n\
             transaction.state.log.min.isr=2\ntransaction.state.log.segment.bytes=1000",
        );
        assert_eq!(config.transaction_state_log_num_partitions, 5);
        assert_eq!(config.transaction_state_log_replication_factor, 2);
        assert_eq!(config.transaction_state_log_min_isr, 2);
        assert_eq!(config.transaction_state_log_segment_bytes, 1000);
    }

    #[test]
    fn topic_config_defaults_follow_broker_settings() {
        let (config, _) = parse(
            "log.retention.ms=1000\nlog.segment.bytes=2048\nlog.roll.ms=3000\n\
             log.flush.interval.messages=10\nlog.flush.interval.ms=20\nmessage.max.bytes=4096\n\
             log.cleanup.policy=compact, delete\nlog.message.timestamp.type=LogAppendTime\n\
             log.index.interval.bytes=100\nmin.insync.replicas=2\nlog.retention.bytes=99",
        );
        let defaults: BTreeMap<String, String> = config
            .broker_defaults_as_topic_config()
            .into_iter()
            .collect();
        let expected: BTreeMap<String, String> = [
            ("retention.ms", "1000"),
            ("retention.bytes", "99"),
            ("segment.bytes", "2048"),
            ("segment.ms", "3000"),
            ("flush.messages", "10"),
            ("flush.ms", "20"),
            ("max.message.bytes", "4096"),
            ("cleanup.policy", "compact,delete"),
            ("message.timestamp.type", "LogAppendTime"),
            ("index.interval.bytes", "100"),
            ("min.insync.replicas", "2"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(defaults, expected);
    }

    #[test]
    fn from_file_reads_and_reports_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.properties");
        std::fs::write(&path, "num.partitions=4\n").unwrap();
        let (config, warnings) = BrokerConfig::from_file(&path).unwrap();
        assert_eq!(config.num_partitions, 4);
        assert!(warnings.is_empty());
        let missing = dir.path().join("missing.properties");
        let message = BrokerConfig::from_file(&missing).unwrap_err().to_string();
        assert!(message.contains("missing.properties"), "{message}");
    }
}
