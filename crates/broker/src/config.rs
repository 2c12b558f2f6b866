//! Broker configuration read from Kafka's own `server.properties` keys.
//!
//! [`BrokerConfig::from_properties_str`] understands the Java `.properties` syntax (`key=value`,
//! `key: value` or `key value`, `#`/`!` comment lines, `\` line continuations and escapes). Keys,
//! types, defaults and valid values come from the key table of `strom-config`: a key the table
//! does not know produces a warning string (the caller logs it); a known key with an invalid value
//! is a [`ConfigError`] naming the key and the value. The broker keys Strom acts on become typed
//! fields; every known key that was explicitly set is also kept, as written, in
//! [`BrokerConfig::explicit`]: the static layer of [`BrokerConfig::config_layers`], from which the
//! broker-level defaults of topic configs (`log.retention.ms`, `min.insync.replicas`, ...) are
//! resolved together with the dynamic configs and topic overrides.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use strom_config::{ConfigDef, ConfigLayers, ConfigSource, InvalidValue, SECURITY_PROTOCOLS};
use strom_metadata::MetadataImage;

/// Strom's default for `queued.max.request.bytes` when `socket.request.max.bytes` is smaller
/// (Kafka's default is -1, unbounded). See [`BrokerConfig::queued_max_request_bytes`].
pub const DEFAULT_QUEUED_MAX_REQUEST_BYTES: i64 = 512 * 1024 * 1024;

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

impl Listener {
    /// The socket address to bind for this listener. IP addresses and `localhost` are taken as
    /// they are; other host names are resolved (the first address wins). The error names
    /// `listeners`.
    pub fn bind_addr(&self) -> Result<SocketAddr, ConfigError> {
        resolve_bind_addr(self)
    }
}

/// The security protocol Strom serves (Kafka's `SecurityProtocol.PLAINTEXT`); listeners mapped
/// to SSL, SASL_PLAINTEXT or SASL_SSL are refused at start.
pub const PLAINTEXT: &str = "PLAINTEXT";

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

/// The broker's configuration: the broker keys Strom acts on as typed fields (defaults from the
/// key table of `strom-config`), and every explicitly set key as written. Construct with
/// [`BrokerConfig::default`], [`BrokerConfig::from_properties_str`] or
/// [`BrokerConfig::from_file`], then refine with [`BrokerConfig::apply_override`] and check with
/// [`BrokerConfig::validate`].
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerConfig {
    /// `node.id`, else the legacy `broker.id`.
    pub node_id: i32,
    /// `process.roles`.
    pub process_roles: ProcessRoles,
    /// `listeners`.
    pub listeners: Vec<Listener>,
    /// `advertised.listeners`. When not set it is derived from `listeners`, with a wildcard host
    /// (`0.0.0.0`, `::`, empty) advertised as `127.0.0.1` (Kafka advertises the machine's
    /// canonical host name instead; Strom keeps it simple and local); an empty host in an
    /// explicit entry is advertised the same way. Entries named in `controller.listener.names`
    /// are accepted (Kafka 3.9+ advertises controller endpoints this way) but never shown to
    /// clients: see [`BrokerConfig::advertised_broker_listeners`].
    pub advertised_listeners: Vec<Listener>,
    /// The effective `listener.security.protocol.map`: listener name -> security protocol, both
    /// upper-cased. When the key is not set this is Kafka's default plus `NAME:PLAINTEXT` for
    /// every controller listener name, as Kafka's KRaft mode does (unless an SSL or SASL
    /// listener name is in use).
    pub listener_security_protocol_map: BTreeMap<String, String>,
    /// `controller.listener.names` (Strom's in-process controller needs none).
    pub controller_listener_names: Vec<String>,
    /// `controller.quorum.voters`; parsed and stored.
    pub controller_quorum_voters: Vec<QuorumVoter>,
    /// `controller.quorum.bootstrap.servers`; parsed and stored.
    pub controller_quorum_bootstrap_servers: Vec<HostPort>,
    /// `inter.broker.listener.name`; see [`BrokerConfig::inter_broker_listener`] for the name in
    /// effect when it is not set.
    pub inter_broker_listener_name: Option<String>,
    /// `log.dirs`, else `log.dir`. Only the first directory is used.
    pub log_dirs: Vec<PathBuf>,
    /// `num.partitions`.
    pub num_partitions: i32,
    /// `default.replication.factor`.
    pub default_replication_factor: i16,
    /// `auto.create.topics.enable`.
    pub auto_create_topics_enable: bool,
    /// `delete.topic.enable`.
    pub delete_topic_enable: bool,
    /// `socket.request.max.bytes`.
    pub socket_request_max_bytes: i32,
    /// `fetch.max.bytes`: the most a fetch response carries.
    pub fetch_max_bytes: i32,
    /// `connections.max.idle.ms`: a connection idle this long is closed.
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
    /// `log.retention.check.interval.ms`.
    pub log_retention_check_interval_ms: i64,
    /// `offsets.commit.timeout.ms`: how long the group coordinator waits for the in-sync
    /// replicas of `__consumer_offsets` to have a commit before it answers
    /// COORDINATOR_NOT_AVAILABLE.
    pub offsets_commit_timeout_ms: i32,
    /// `offsets.topic.num.partitions`.
    pub offsets_topic_num_partitions: i32,
    /// `offsets.topic.replication.factor`.
    pub offsets_topic_replication_factor: i16,
    /// `offsets.topic.segment.bytes`.
    pub offsets_topic_segment_bytes: i32,
    /// `offsets.retention.minutes`.
    pub offsets_retention_minutes: i32,
    /// `group.initial.rebalance.delay.ms`.
    pub group_initial_rebalance_delay_ms: i32,
    /// `group.min.session.timeout.ms`.
    pub group_min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub group_max_session_timeout_ms: i32,
    /// `transaction.state.log.num.partitions`.
    pub transaction_state_log_num_partitions: i32,
    /// `transaction.state.log.replication.factor`.
    pub transaction_state_log_replication_factor: i16,
    /// `transaction.state.log.min.isr`.
    pub transaction_state_log_min_isr: i32,
    /// `transaction.state.log.segment.bytes`.
    pub transaction_state_log_segment_bytes: i32,
    /// `transaction.max.timeout.ms`.
    pub transaction_max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`.
    pub transactional_id_expiration_ms: i32,
    /// `broker.rack`.
    pub broker_rack: Option<String>,
    /// `broker.session.timeout.ms`: how long the active controller waits for a broker's heartbeat
    /// before fencing it.
    pub broker_session_timeout_ms: i32,
    /// `broker.heartbeat.interval.ms`: how often a broker sends its heartbeat to the controller.
    pub broker_heartbeat_interval_ms: i32,
    /// `controller.quorum.election.timeout.ms`: how long a candidate (or a voter without a
    /// leader) waits, randomized up to twice this, before a new election.
    pub controller_quorum_election_timeout_ms: i32,
    /// `controller.quorum.fetch.timeout.ms`: a voter that hears nothing from its leader for this
    /// long starts an election.
    pub controller_quorum_fetch_timeout_ms: i32,
    /// `auto.leader.rebalance.enable`, `leader.imbalance.check.interval.seconds`,
    /// `leader.imbalance.per.broker.percentage`: the active controller's preferred leader balancing.
    pub auto_leader_rebalance_enable: bool,
    pub leader_imbalance_check_interval_seconds: i64,
    pub leader_imbalance_per_broker_percentage: i32,
    /// `unclean.leader.election.interval.ms` (Kafka's internal key): how often the active
    /// controller elects unclean leaders for leaderless partitions of topics that allow it.
    pub unclean_leader_election_interval_ms: i64,
    /// How followers fetch from leaders and leaders judge them (`replica.*`, `num.replica.fetchers`).
    pub replication: ReplicationSettings,
    /// Every known key that was explicitly set, with its value as written (trimmed): the static
    /// broker layer of [`BrokerConfig::config_layers`].
    pub explicit: BTreeMap<String, String>,
}

/// The replication keys, with Kafka's meanings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicationSettings {
    /// `num.replica.fetchers`: fetcher connections per source broker.
    pub num_fetchers: i32,
    /// `replica.fetch.backoff.ms`: pause after a failed fetch.
    pub fetch_backoff_ms: i32,
    /// `replica.fetch.max.bytes`: bytes asked per partition (the first batch always comes whole).
    pub fetch_max_bytes: i32,
    /// `replica.fetch.min.bytes`: bytes a follower's fetch waits for.
    pub fetch_min_bytes: i32,
    /// `replica.fetch.response.max.bytes`: bytes asked per fetch response.
    pub fetch_response_max_bytes: i32,
    /// `replica.fetch.wait.max.ms`: how long a follower's fetch may wait at the leader.
    pub fetch_wait_max_ms: i32,
    /// `replica.lag.time.max.ms`: a follower not caught up for this long leaves the ISR.
    pub lag_time_max_ms: i64,
    /// `replica.socket.timeout.ms`: a fetch unanswered for this long (beyond its wait) is retried
    /// on a new connection.
    pub socket_timeout_ms: i32,
}

/// What [`BrokerConfig::set`] made of a key.
enum KeyKind {
    /// A key of the table (or a per-listener override of one).
    Recognised,
    /// A key Strom does not know.
    Unknown,
}

impl Default for BrokerConfig {
    /// The table's default of every broker key, parsed like a `server.properties` value.
    fn default() -> Self {
        let mut config = BrokerConfig {
            node_id: 0,
            process_roles: ProcessRoles {
                broker: false,
                controller: false,
            },
            listeners: Vec::new(),
            advertised_listeners: Vec::new(),
            listener_security_protocol_map: BTreeMap::new(),
            controller_listener_names: Vec::new(),
            controller_quorum_voters: Vec::new(),
            controller_quorum_bootstrap_servers: Vec::new(),
            inter_broker_listener_name: None,
            log_dirs: Vec::new(),
            num_partitions: 0,
            default_replication_factor: 0,
            auto_create_topics_enable: false,
            delete_topic_enable: false,
            socket_request_max_bytes: 0,
            fetch_max_bytes: 0,
            connections_max_idle_ms: 0,
            max_connections: 0,
            max_connections_per_ip: 0,
            max_connections_per_ip_overrides: BTreeMap::new(),
            queued_max_request_bytes: 0,
            log_retention_check_interval_ms: 0,
            offsets_commit_timeout_ms: 0,
            offsets_topic_num_partitions: 0,
            offsets_topic_replication_factor: 0,
            offsets_topic_segment_bytes: 0,
            offsets_retention_minutes: 0,
            group_initial_rebalance_delay_ms: 0,
            group_min_session_timeout_ms: 0,
            group_max_session_timeout_ms: 0,
            transaction_state_log_num_partitions: 0,
            transaction_state_log_replication_factor: 0,
            transaction_state_log_min_isr: 0,
            transaction_state_log_segment_bytes: 0,
            transaction_max_timeout_ms: 0,
            transactional_id_expiration_ms: 0,
            broker_rack: None,
            broker_session_timeout_ms: 0,
            broker_heartbeat_interval_ms: 0,
            controller_quorum_election_timeout_ms: 0,
            controller_quorum_fetch_timeout_ms: 0,
            auto_leader_rebalance_enable: false,
            leader_imbalance_check_interval_seconds: 0,
            leader_imbalance_per_broker_percentage: 0,
            unclean_leader_election_interval_ms: 0,
            replication: ReplicationSettings::default(),
            explicit: BTreeMap::new(),
        };
        let defaults = strom_config::broker_keys()
            .filter_map(|def| Some((def, def.default?)))
            .try_for_each(|(def, value)| config.assign(def, value))
            .and_then(|()| config.resolve_derived());
        // The table's defaults are valid values of their keys (strom-config tests each one, and
        // this crate's tests build a default configuration).
        if let Err(error) = defaults {
            panic!("a default of the config key table does not parse: {error}");
        }
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

    /// Checks that the settings agree with each other: the listeners as Kafka checks them (see
    /// [`BrokerConfig::validate_listeners`]), the request-memory and connection limits, the group
    /// session bounds, and that the broker-level defaults of topic keys are valid topic values.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_listeners()?;
        self.validate_roles()?;
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
        self.check_topic_defaults()
    }

    /// Checks that each broker-level default of a topic key set in `server.properties` is a valid
    /// value of the topic key (`log.roll.ms=0` would make `segment.ms` 0).
    fn check_topic_defaults(&self) -> Result<(), ConfigError> {
        let layers = ConfigLayers {
            static_broker: Some(&self.explicit),
            ..ConfigLayers::default()
        };
        for effective in layers.topic_configs() {
            if effective.source != ConfigSource::StaticBroker {
                continue;
            }
            if let Err(error) = effective.def.validate(&effective.value) {
                let set_by = &effective.synonyms[0];
                let value = set_by.value.as_deref().unwrap_or_default();
                return Err(invalid_value(&set_by.name, value, error));
            }
        }
        Ok(())
    }

    /// Kafka's listener rules, each failure naming the key to fix:
    /// - `listeners`: names distinct; ports distinct (port 0 aside, and two listeners may share a
    ///   port when one binds an IPv4 and the other an IPv6 address); every host resolves;
    /// - `advertised.listeners`: names distinct (ports may repeat: several brokers behind one
    ///   address), every name one of `listeners`, no nonroutable meta-address (`0.0.0.0`, `::`);
    /// - `listener.security.protocol.map`: a protocol for every listener, and PLAINTEXT for each
    ///   one this node binds (Strom serves no SSL or SASL); `security.inter.broker.protocol`
    ///   PLAINTEXT, and not set together with `inter.broker.listener.name`;
    /// - a broker advertises at least one non-controller listener, and the inter-broker listener
    ///   is one of them; a controller's `controller.listener.names` are all in `listeners`.
    fn validate_listeners(&self) -> Result<(), ConfigError> {
        let inconsistent = |message: String| Err(ConfigError::Inconsistent(message));
        for (index, listener) in self.listeners.iter().enumerate() {
            for other in &self.listeners[..index] {
                if other.name == listener.name {
                    return inconsistent(format!(
                        "listeners: each listener must have a different name, and {} appears \
                         more than once",
                        listener.name
                    ));
                }
                if listener.port != 0
                    && other.port == listener.port
                    && !ipv4_and_ipv6(other, listener)
                {
                    return inconsistent(format!(
                        "listeners: each listener must have a different port (unless one binds an \
                         IPv4 and the other an IPv6 address), and {other} and {listener} both use \
                         port {}",
                        listener.port
                    ));
                }
            }
            listener.bind_addr()?;
        }
        let bound = |name: &String| self.listeners.iter().any(|l| &l.name == name);
        for (index, advertised) in self.advertised_listeners.iter().enumerate() {
            if self.advertised_listeners[..index]
                .iter()
                .any(|other| other.name == advertised.name)
            {
                return inconsistent(format!(
                    "advertised.listeners: each listener must have a different name, and {} \
                     appears more than once",
                    advertised.name
                ));
            }
            if !bound(&advertised.name) {
                return inconsistent(format!(
                    "advertised.listeners contains {}, which is not in listeners ({})",
                    advertised.name,
                    names(&self.listeners)
                ));
            }
            if matches!(advertised.host.as_str(), "0.0.0.0" | "::") {
                return inconsistent(format!(
                    "advertised.listeners cannot use the nonroutable meta-address {} ({advertised}): \
                     advertise a host name or address clients can reach",
                    advertised.host
                ));
            }
        }
        self.validate_security_protocols()?;
        if self.process_roles.controller {
            for name in &self.controller_listener_names {
                if !bound(name) {
                    return inconsistent(format!(
                        "controller.listener.names contains {name}, which is not in listeners ({})",
                        names(&self.listeners)
                    ));
                }
            }
        }
        if self.process_roles.broker {
            let advertised: Vec<&Listener> = self.advertised_broker_listeners().collect();
            if advertised.is_empty() {
                return inconsistent(
                    "advertised.listeners: a broker must advertise at least one listener that is \
                     not a controller listener (process.roles includes broker, but every \
                     listener is a controller listener or named in controller.listener.names)"
                        .to_string(),
                );
            }
            let inter_broker = self.inter_broker_listener();
            if !advertised.iter().any(|l| l.name == inter_broker) {
                let source = match &self.inter_broker_listener_name {
                    Some(_) => "inter.broker.listener.name".to_string(),
                    None => format!(
                        "inter.broker.listener.name is not set, so security.inter.broker.protocol \
                         names the inter-broker listener, {inter_broker}; it"
                    ),
                };
                return inconsistent(format!(
                    "{source} must be a listener defined in advertised.listeners (or listeners) \
                     that is not a controller listener; the valid options are {}",
                    advertised
                        .iter()
                        .map(|l| l.name.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                ));
            }
        }
        Ok(())
    }

    /// Kafka's KRaft role rules (`KafkaConfig.validateValues`), each failure naming the key:
    /// a controller-only node binds controller listeners only and names at least one in
    /// `controller.listener.names`, and needs `controller.quorum.voters`; a broker-only node binds
    /// no controller listener and is not one of `controller.quorum.voters`; a node with the
    /// controller role in a quorum is one of its voters.
    fn validate_roles(&self) -> Result<(), ConfigError> {
        let inconsistent = |message: String| Err(ConfigError::Inconsistent(message));
        let voters = || {
            self.controller_quorum_voters
                .iter()
                .map(|v| format!("{}@{}:{}", v.id, v.endpoint.host, v.endpoint.port))
                .collect::<Vec<_>>()
                .join(",")
        };
        let is_voter = self
            .controller_quorum_voters
            .iter()
            .any(|voter| voter.id == self.node_id);
        let roles = self.process_roles;
        if roles.controller && !roles.broker {
            if self.controller_listener_names.is_empty() {
                return inconsistent(
                    "controller.listener.names must name at least one listener of listeners \
                     when process.roles=controller"
                        .to_string(),
                );
            }
            if let Some(listener) = self.client_listeners().next() {
                return inconsistent(format!(
                    "listeners must contain only controller listeners from \
                     controller.listener.names ({}) when process.roles=controller, but \
                     contains {listener}",
                    self.controller_listener_names.join(",")
                ));
            }
            if self.controller_quorum_voters.is_empty() {
                return inconsistent(
                    "controller.quorum.voters must list the quorum's voters (this node among \
                     them) when process.roles=controller"
                        .to_string(),
                );
            }
        }
        if roles.broker && !roles.controller {
            if is_voter {
                return inconsistent(format!(
                    "controller.quorum.voters ({}) must not include node {} (node.id): \
                     process.roles=broker makes it a broker only, not a voter",
                    voters(),
                    self.node_id
                ));
            }
            if let Some(listener) = self
                .listeners
                .iter()
                .find(|l| self.controller_listener_names.contains(&l.name))
            {
                return inconsistent(format!(
                    "controller.listener.names must not name a listener of listeners when \
                     process.roles=broker, but {listener} is one"
                ));
            }
        }
        if roles.controller && !self.controller_quorum_voters.is_empty() && !is_voter {
            return inconsistent(format!(
                "controller.quorum.voters ({}) must include node {} (node.id), since \
                 process.roles includes controller",
                voters(),
                self.node_id
            ));
        }
        Ok(())
    }

    /// The security-protocol rules of [`BrokerConfig::validate_listeners`].
    fn validate_security_protocols(&self) -> Result<(), ConfigError> {
        let map_key = "listener.security.protocol.map";
        let inconsistent = |message: String| Err(ConfigError::Inconsistent(message));
        if self.explicit.contains_key("inter.broker.listener.name")
            && self.explicit.contains_key("security.inter.broker.protocol")
        {
            return inconsistent(
                "only one of inter.broker.listener.name and security.inter.broker.protocol \
                 should be set"
                    .to_string(),
            );
        }
        if let Some(protocol) = self.explicit.get("security.inter.broker.protocol") {
            if protocol != PLAINTEXT {
                return inconsistent(format!(
                    "security.inter.broker.protocol is {protocol}, but Strom serves PLAINTEXT \
                     only (no SSL or SASL)"
                ));
            }
        }
        let controller_names = self
            .controller_listener_names
            .iter()
            .filter(|_| self.process_roles.controller);
        let named = self
            .listeners
            .iter()
            .chain(&self.advertised_listeners)
            .map(|l| &l.name)
            .chain(controller_names);
        for name in named {
            let Some(protocol) = self.listener_security_protocol_map.get(name) else {
                return inconsistent(format!(
                    "{map_key} defines no security protocol for listener {name} (add \
                     {name}:PLAINTEXT)"
                ));
            };
            if protocol != PLAINTEXT && self.listeners.iter().any(|l| &l.name == name) {
                return inconsistent(format!(
                    "{map_key} maps listener {name} to {protocol}, but Strom serves PLAINTEXT \
                     listeners only (no SSL or SASL): map {name} to PLAINTEXT or remove it from \
                     listeners"
                ));
            }
        }
        Ok(())
    }

    /// The listeners that serve clients, in the order of `listeners`: every listener not named
    /// in `controller.listener.names`. A broker binds each of them.
    pub fn client_listeners(&self) -> impl Iterator<Item = &Listener> {
        self.listeners
            .iter()
            .filter(|listener| !self.controller_listener_names.contains(&listener.name))
    }

    /// What the broker registers and clients are told, in the order of `advertised.listeners`
    /// (else `listeners`): the advertised listeners not named in `controller.listener.names`.
    /// An entry with port 0 stands for the port its listener actually bound.
    pub fn advertised_broker_listeners(&self) -> impl Iterator<Item = &Listener> {
        self.advertised_listeners
            .iter()
            .filter(|listener| !self.controller_listener_names.contains(&listener.name))
    }

    /// The listener brokers use to reach each other (Kafka's `interBrokerListenerName`):
    /// `inter.broker.listener.name`, else the listener named like
    /// `security.inter.broker.protocol` (default PLAINTEXT).
    pub fn inter_broker_listener(&self) -> String {
        self.inter_broker_listener_name.clone().unwrap_or_else(|| {
            self.explicit
                .get("security.inter.broker.protocol")
                .cloned()
                .unwrap_or_else(|| default_value("security.inter.broker.protocol").to_string())
        })
    }

    /// The data directory: the first entry of `log.dirs` / `log.dir`.
    pub fn log_dir(&self) -> PathBuf {
        self.log_dirs
            .first()
            .cloned()
            .unwrap_or_else(|| PathBuf::from(default_value("log.dir")))
    }

    /// The directory that holds the metadata log (`<dir>/__cluster_metadata-0`) and the node's
    /// `meta.properties`: `metadata.log.dir`, else the first log directory, as in Kafka. Keeping
    /// it apart lets the metadata survive a full data disk.
    pub fn metadata_log_dir(&self) -> PathBuf {
        self.explicit
            .get("metadata.log.dir")
            .filter(|dir| !dir.is_empty())
            .map_or_else(|| self.log_dir(), PathBuf::from)
    }

    /// The configuration layers that apply to `topic` (or to any topic, for `None`) on this
    /// broker: the topic's overrides, this broker's and the cluster-wide dynamic configs of the
    /// metadata image, and `server.properties`. Every topic key's effective value is resolved from
    /// them by [`ConfigLayers::topic_value`] / [`ConfigLayers::topic_configs`].
    pub fn config_layers<'a>(
        &'a self,
        image: &'a MetadataImage,
        topic: Option<&str>,
    ) -> ConfigLayers<'a> {
        ConfigLayers {
            topic: topic.and_then(|name| image.topic(name)).map(|t| &t.configs),
            dynamic_broker: image.broker_config(Some(self.node_id)),
            dynamic_default: image.broker_config(None),
            static_broker: Some(&self.explicit),
        }
    }

    /// Checks one key against the key table, stores it and records it in `explicit`.
    fn set(&mut self, key: &str, raw_value: &str) -> Result<KeyKind, ConfigError> {
        let value = raw_value.trim();
        let Some(def) = strom_config::broker_key_or_listener_base(key) else {
            return Ok(KeyKind::Unknown);
        };
        def.validate(value)
            .map_err(|error| invalid_value(key, value, error))?;
        if def.name == key {
            self.assign(def, value)?;
        }
        self.explicit.insert(key.to_string(), value.to_string());
        self.resolve_derived()?;
        Ok(KeyKind::Recognised)
    }

    /// Stores the value of a key Strom acts on in its typed field; other keys (and the keys
    /// [`BrokerConfig::resolve_derived`] combines) have no field.
    fn assign(&mut self, def: &ConfigDef, value: &str) -> Result<(), ConfigError> {
        let v = Value { def, value };
        match def.name {
            "process.roles" => self.process_roles = v.process_roles()?,
            "listeners" => self.listeners = v.listeners("0.0.0.0")?,
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
            "num.partitions" => self.num_partitions = v.int()?,
            "default.replication.factor" => self.default_replication_factor = v.short()?,
            "auto.create.topics.enable" => self.auto_create_topics_enable = v.boolean()?,
            "delete.topic.enable" => self.delete_topic_enable = v.boolean()?,
            "socket.request.max.bytes" => self.socket_request_max_bytes = v.int()?,
            "fetch.max.bytes" => self.fetch_max_bytes = v.int()?,
            "connections.max.idle.ms" => self.connections_max_idle_ms = v.long()?,
            "max.connections" => self.max_connections = v.int()?,
            "max.connections.per.ip" => self.max_connections_per_ip = v.int()?,
            "max.connections.per.ip.overrides" => {
                self.max_connections_per_ip_overrides = v.connection_overrides()?
            }
            "log.retention.check.interval.ms" => self.log_retention_check_interval_ms = v.long()?,
            "offsets.commit.timeout.ms" => self.offsets_commit_timeout_ms = v.int()?,
            "offsets.topic.num.partitions" => self.offsets_topic_num_partitions = v.int()?,
            "offsets.topic.replication.factor" => {
                self.offsets_topic_replication_factor = v.short()?
            }
            "offsets.topic.segment.bytes" => self.offsets_topic_segment_bytes = v.int()?,
            "offsets.retention.minutes" => self.offsets_retention_minutes = v.int()?,
            "group.initial.rebalance.delay.ms" => {
                self.group_initial_rebalance_delay_ms = v.int()?
            }
            "group.min.session.timeout.ms" => self.group_min_session_timeout_ms = v.int()?,
            "group.max.session.timeout.ms" => self.group_max_session_timeout_ms = v.int()?,
            "transaction.state.log.num.partitions" => {
                self.transaction_state_log_num_partitions = v.int()?
            }
            "transaction.state.log.replication.factor" => {
                self.transaction_state_log_replication_factor = v.short()?
            }
            "transaction.state.log.min.isr" => self.transaction_state_log_min_isr = v.int()?,
            "transaction.state.log.segment.bytes" => {
                self.transaction_state_log_segment_bytes = v.int()?
            }
            "transaction.max.timeout.ms" => self.transaction_max_timeout_ms = v.int()?,
            "transactional.id.expiration.ms" => self.transactional_id_expiration_ms = v.int()?,
            "broker.session.timeout.ms" => self.broker_session_timeout_ms = v.int()?,
            "broker.heartbeat.interval.ms" => self.broker_heartbeat_interval_ms = v.int()?,
            "auto.leader.rebalance.enable" => self.auto_leader_rebalance_enable = v.boolean()?,
            "leader.imbalance.check.interval.seconds" => {
                self.leader_imbalance_check_interval_seconds = v.long()?
            }
            "leader.imbalance.per.broker.percentage" => {
                self.leader_imbalance_per_broker_percentage = v.int()?
            }
            "unclean.leader.election.interval.ms" => {
                self.unclean_leader_election_interval_ms = v.long()?
            }
            "controller.quorum.election.timeout.ms" => {
                self.controller_quorum_election_timeout_ms = v.int()?
            }
            "controller.quorum.fetch.timeout.ms" => {
                self.controller_quorum_fetch_timeout_ms = v.int()?
            }
            "num.replica.fetchers" => self.replication.num_fetchers = v.int()?,
            "replica.fetch.backoff.ms" => self.replication.fetch_backoff_ms = v.int()?,
            "replica.fetch.max.bytes" => self.replication.fetch_max_bytes = v.int()?,
            "replica.fetch.min.bytes" => self.replication.fetch_min_bytes = v.int()?,
            "replica.fetch.response.max.bytes" => {
                self.replication.fetch_response_max_bytes = v.int()?
            }
            "replica.fetch.wait.max.ms" => self.replication.fetch_wait_max_ms = v.int()?,
            "replica.lag.time.max.ms" => self.replication.lag_time_max_ms = v.long()?,
            "replica.socket.timeout.ms" => self.replication.socket_timeout_ms = v.int()?,
            "broker.rack" => {
                self.broker_rack = Some(value.to_string()).filter(|rack| !rack.is_empty())
            }
            _ => {}
        }
        Ok(())
    }

    /// Recomputes the fields that several keys contribute to, with Kafka's precedence: `node.id`
    /// over `broker.id`, `log.dirs` over `log.dir`, `advertised.listeners` over `listeners`.
    fn resolve_derived(&mut self) -> Result<(), ConfigError> {
        let (key, value) = self.first_setting(&["node.id", "broker.id"]);
        self.node_id = Value::of(key, &value)?.int()?;
        self.queued_max_request_bytes = match self.explicit.get("queued.max.request.bytes") {
            Some(value) => Value::of("queued.max.request.bytes", value)?.long()?,
            None => DEFAULT_QUEUED_MAX_REQUEST_BYTES.max(i64::from(self.socket_request_max_bytes)),
        };
        let (key, value) = self.first_setting(&["log.dirs", "log.dir"]);
        self.log_dirs = Value::of(key, &value)?.paths()?;
        let advertised = match self.explicit.get("advertised.listeners") {
            // An empty host is advertised like a wildcard listener; an explicit 0.0.0.0 is kept
            // for validate() to refuse, as Kafka does.
            Some(value) => Value::of("advertised.listeners", value)?.listeners("")?,
            None => self.listeners.clone(),
        };
        self.advertised_listeners = advertised
            .into_iter()
            .map(|listener| Listener {
                host: if self.explicit.contains_key("advertised.listeners") {
                    advertised_host_of_explicit(&listener.host)
                } else {
                    advertised_host(&listener.host)
                },
                ..listener
            })
            .collect();
        self.listener_security_protocol_map = self.effective_security_protocol_map()?;
        Ok(())
    }

    /// `listener.security.protocol.map` as Kafka reads it in KRaft mode: the value set, else the
    /// default plus PLAINTEXT for each controller listener name (when no listener or controller
    /// listener is named SSL, SASL_PLAINTEXT or SASL_SSL).
    fn effective_security_protocol_map(&self) -> Result<BTreeMap<String, String>, ConfigError> {
        let key = "listener.security.protocol.map";
        let explicit = self.explicit.get(key);
        let value = explicit.map_or_else(|| default_value(key).to_string(), Clone::clone);
        let mut map = Value::of(key, &value)?.security_protocol_map()?;
        if explicit.is_none() {
            let secure =
                |name: &String| SECURITY_PROTOCOLS.contains(&name.as_str()) && name != PLAINTEXT;
            let secure_in_use = self
                .listeners
                .iter()
                .map(|l| &l.name)
                .chain(&self.controller_listener_names)
                .any(secure);
            if !secure_in_use {
                for name in &self.controller_listener_names {
                    map.entry(name.clone())
                        .or_insert_with(|| PLAINTEXT.to_string());
                }
            }
        }
        Ok(map)
    }

    /// The first of `keys` that is explicitly set, else the first that has a default.
    fn first_setting(&self, keys: &[&'static str]) -> (&'static str, String) {
        let explicit = keys
            .iter()
            .find_map(|key| Some((*key, self.explicit.get(*key)?.clone())));
        explicit.unwrap_or_else(|| {
            keys.iter()
                .find_map(|key| Some((*key, strom_config::find(key)?.default?.to_string())))
                .unwrap_or_default()
        })
    }
}

/// The table's default of a key ("" for a null default).
fn default_value(key: &str) -> &'static str {
    strom_config::find(key)
        .and_then(|def| def.default)
        .unwrap_or_default()
}

fn invalid_value(key: &str, value: &str, error: InvalidValue) -> ConfigError {
    ConfigError::InvalidValue {
        key: key.to_string(),
        value: value.to_string(),
        reason: error.reason,
    }
}

/// The host to advertise for a bound host: wildcards become loopback.
fn advertised_host(bound_host: &str) -> String {
    match bound_host {
        "" | "0.0.0.0" | "::" => "127.0.0.1".to_string(),
        host => host.to_string(),
    }
}

/// The host to advertise for an entry of `advertised.listeners`: an empty host like a wildcard
/// listener's; anything else as written (a meta-address is refused by validation).
fn advertised_host_of_explicit(host: &str) -> String {
    if host.is_empty() {
        advertised_host(host)
    } else {
        host.to_string()
    }
}

/// Whether two listeners bind literal addresses of different families (Kafka lets such a pair
/// share a port).
fn ipv4_and_ipv6(a: &Listener, b: &Listener) -> bool {
    match (a.host.parse::<IpAddr>(), b.host.parse::<IpAddr>()) {
        (Ok(a), Ok(b)) => a.is_ipv4() != b.is_ipv4(),
        _ => false,
    }
}

/// Listener names, comma-separated, for messages.
fn names(listeners: &[Listener]) -> String {
    listeners
        .iter()
        .map(|l| l.name.as_str())
        .collect::<Vec<_>>()
        .join(",")
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

/// A key's definition and its trimmed value, with typed parsers that produce
/// [`ConfigError::InvalidValue`].
struct Value<'a> {
    def: &'a ConfigDef,
    value: &'a str,
}

impl<'a> Value<'a> {
    /// The value of a key of the table.
    fn of(key: &str, value: &'a str) -> Result<Value<'a>, ConfigError> {
        let def = strom_config::find(key).ok_or_else(|| ConfigError::UnknownKey {
            key: key.to_string(),
        })?;
        Ok(Value { def, value })
    }

    fn invalid(&self, reason: impl Into<String>) -> ConfigError {
        ConfigError::InvalidValue {
            key: self.def.name.to_string(),
            value: self.value.to_string(),
            reason: reason.into(),
        }
    }

    fn long(&self) -> Result<i64, ConfigError> {
        self.def
            .parse_long(self.value)
            .map_err(|error| invalid_value(self.def.name, self.value, error))
    }

    fn int(&self) -> Result<i32, ConfigError> {
        i32::try_from(self.long()?).map_err(|_| self.invalid("Not a number of type INT"))
    }

    fn short(&self) -> Result<i16, ConfigError> {
        i16::try_from(self.long()?).map_err(|_| self.invalid("Not a number of type SHORT"))
    }

    fn boolean(&self) -> Result<bool, ConfigError> {
        self.def
            .parse_bool(self.value)
            .map_err(|error| invalid_value(self.def.name, self.value, error))
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

    /// `NAME://host:port,...` with names upper-cased; an empty host becomes `empty_host`.
    fn listeners(&self, empty_host: &str) -> Result<Vec<Listener>, ConfigError> {
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
                        empty_host.to_string()
                    } else {
                        host
                    },
                    port,
                })
            })
            .collect()
    }

    /// `NAME:PROTOCOL,...` (names and protocols upper-cased, as Kafka normalises them); the
    /// protocol must be one Kafka defines.
    fn security_protocol_map(&self) -> Result<BTreeMap<String, String>, ConfigError> {
        let mut map = BTreeMap::new();
        for entry in self.list() {
            let (name, protocol) = entry
                .split_once(':')
                .map(|(name, protocol)| (name.trim(), protocol.trim()))
                .filter(|(name, protocol)| !name.is_empty() && !protocol.is_empty())
                .ok_or_else(|| self.invalid(format!("'{entry}' is not NAME:PROTOCOL")))?;
            let protocol = protocol.to_ascii_uppercase();
            if !SECURITY_PROTOCOLS.contains(&protocol.as_str()) {
                return Err(self.invalid(format!(
                    "invalid security protocol '{protocol}' for listener {name} (expected one of {})",
                    SECURITY_PROTOCOLS.join(", ")
                )));
            }
            map.insert(name.to_ascii_uppercase(), protocol);
        }
        Ok(map)
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

    /// The value a topic key gets from `server.properties` (or the default) alone.
    fn topic_default(config: &BrokerConfig, key: &str) -> String {
        let layers = ConfigLayers {
            static_broker: Some(&config.explicit),
            ..ConfigLayers::default()
        };
        layers.topic_value(key).expect("a topic key").0
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
        assert_eq!(
            listed(config.advertised_broker_listeners()),
            ["PLAINTEXT://127.0.0.1:9092"]
        );
        assert_eq!(config.inter_broker_listener(), "PLAINTEXT");
        assert_eq!(config.log_dir(), PathBuf::from("./strom-data"));
        assert_eq!(config.num_partitions, 1);
        assert_eq!(config.default_replication_factor, 1);
        assert!(config.auto_create_topics_enable);
        assert_eq!(config.socket_request_max_bytes, 104_857_600);
        assert_eq!(config.log_retention_check_interval_ms, 300_000);
        assert_eq!(config.offsets_topic_num_partitions, 50);
        assert_eq!(config.offsets_topic_replication_factor, 3);
        assert_eq!(config.offsets_commit_timeout_ms, 5000);
        assert_eq!(config.offsets_retention_minutes, 10_080);
        assert_eq!(config.group_initial_rebalance_delay_ms, 3000);
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
        // Its controller listener is advertised (Kafka 3.9+), which clients never see.
        assert_eq!(
            listed(config.client_listeners()),
            ["PLAINTEXT://0.0.0.0:9092"]
        );
        assert_eq!(
            listed(config.advertised_broker_listeners()),
            ["PLAINTEXT://localhost:9092"]
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
            "invalid value 'abc' for num.partitions: Not a number of type INT"
        );
        assert_eq!(
            parse_error("num.partitions=0"),
            "invalid value '0' for num.partitions: Value must be at least 1"
        );
        assert!(parse_error("auto.create.topics.enable=yes").contains("either true or false"));
        assert!(parse_error("process.roles=worker").contains("process.roles"));
        assert!(parse_error("log.cleanup.policy=forever").contains("log.cleanup.policy"));
        assert!(parse_error("log.message.timestamp.type=Now").contains("CreateTime"));
        assert!(parse_error("listeners=localhost:9092").contains("NAME://host:port"));
        assert!(parse_error("listeners=PLAINTEXT://host:99999").contains("invalid port"));
        assert!(parse_error("default.replication.factor=40000").contains("no more than 32767"));
        assert!(parse_error("log.segment.bytes=10").contains("at least 14"));
        assert!(parse_error("controller.quorum.voters=1@h").contains("host:port"));
        assert!(parse_error("controller.quorum.voters=x@h:1").contains("node id"));
        assert_eq!(
            parse_error("log.roll.ms=0"),
            "invalid value '0' for log.roll.ms: Value must be at least 1"
        );
        assert!(parse_error("log.flush.interval.ms=-1").contains("log.flush.interval.ms"));
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
        let retention = |text| topic_default(&parse(text).0, "retention.ms");
        assert_eq!(retention(""), "604800000");
        assert_eq!(retention("log.retention.hours=1"), "3600000");
        assert_eq!(
            retention("log.retention.hours=1\nlog.retention.minutes=2"),
            "120000"
        );
        assert_eq!(
            retention("log.retention.ms=5\nlog.retention.hours=1\nlog.retention.minutes=2"),
            "5"
        );
        assert_eq!(retention("log.retention.minutes=-5"), "-1");
        let (mut config, _) = parse("log.retention.ms=100");
        config.apply_override("log.retention.hours", "2").unwrap();
        assert_eq!(topic_default(&config, "retention.ms"), "100");
    }

    #[test]
    fn roll_and_flush_precedence() {
        let value = |text, key| topic_default(&parse(text).0, key);
        assert_eq!(value("log.roll.hours=2", "segment.ms"), "7200000");
        assert_eq!(
            value("log.roll.hours=2\nlog.roll.ms=10", "segment.ms"),
            "10"
        );
        assert_eq!(
            value("log.flush.scheduler.interval.ms=500", "flush.ms"),
            "500"
        );
        assert_eq!(
            value(
                "log.flush.scheduler.interval.ms=500\nlog.flush.interval.ms=7",
                "flush.ms"
            ),
            "7"
        );
        assert_eq!(
            value("log.flush.interval.messages=1", "flush.messages"),
            "1"
        );
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
        assert_eq!(config.metadata_log_dir(), PathBuf::from("/a"));
        let (config, _) = parse("log.dirs=/a\nmetadata.log.dir=/meta");
        assert_eq!(config.metadata_log_dir(), PathBuf::from("/meta"));
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
        let (config, _) = parse(
            "process.roles=controller\nnode.id=1\nlisteners=CONTROLLER://:9093\n\
             controller.listener.names=CONTROLLER\ncontroller.quorum.voters=1@localhost:9093",
        );
        assert!(!config.process_roles.broker);
        assert!(parse_error("process.roles=broker,broker").contains("twice"));
        assert!(parse_error("process.roles=").contains("process.roles"));
    }

    #[test]
    fn listeners_parse_names_hosts_and_ipv6() {
        let (config, _) = parse(
            "listeners=plaintext://[::1]:9000, EXTERNAL://:0\n\
             listener.security.protocol.map=PLAINTEXT:PLAINTEXT,external:plaintext",
        );
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
        assert_eq!(
            config.listeners[0].bind_addr().unwrap(),
            "[::1]:9000".parse().unwrap()
        );
        assert_eq!(config.listeners[0].to_string(), "PLAINTEXT://[::1]:9000");
        assert_eq!(config.advertised_listeners[1].host, "127.0.0.1");
        assert_eq!(
            config.listener_security_protocol_map.get("EXTERNAL"),
            Some(&"PLAINTEXT".to_string())
        );
        // An IPv4 and an IPv6 listener may share a port.
        parse(
            "listeners=PLAINTEXT://127.0.0.1:9092,OTHER://[::1]:9092\n\
             listener.security.protocol.map=PLAINTEXT:PLAINTEXT,OTHER:PLAINTEXT",
        );
    }

    /// Listeners as in the compose cluster: two client listeners, a controller listener, each
    /// client listener advertised with its own address.
    const THREE_LISTENERS: &str =
        "listeners=INTERNAL://:9092,EXTERNAL://0.0.0.0:19092,CONTROLLER://:9093\n\
        advertised.listeners=INTERNAL://strom-1:9092,EXTERNAL://localhost:9094\n\
        listener.security.protocol.map=INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
        inter.broker.listener.name=INTERNAL\ncontroller.listener.names=CONTROLLER";

    fn listed<'a>(listeners: impl Iterator<Item = &'a Listener>) -> Vec<String> {
        listeners.map(Listener::to_string).collect()
    }

    #[test]
    fn several_client_listeners_each_with_its_advertised_address() {
        let (config, warnings) = parse(THREE_LISTENERS);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            listed(config.client_listeners()),
            ["INTERNAL://0.0.0.0:9092", "EXTERNAL://0.0.0.0:19092"]
        );
        assert_eq!(
            listed(config.advertised_broker_listeners()),
            ["INTERNAL://strom-1:9092", "EXTERNAL://localhost:9094"]
        );
        assert_eq!(config.inter_broker_listener(), "INTERNAL");
        assert_eq!(
            config
                .client_listeners()
                .next()
                .unwrap()
                .bind_addr()
                .unwrap(),
            "0.0.0.0:9092".parse().unwrap()
        );
    }

    #[test]
    fn advertised_listeners_default_to_listeners_without_controller_ones() {
        let (config, _) = parse(
            "listeners=CONTROLLER://127.0.0.1:9093,PLAINTEXT://0.0.0.0:9092\n\
             controller.listener.names=CONTROLLER",
        );
        assert_eq!(
            listed(config.client_listeners()),
            ["PLAINTEXT://0.0.0.0:9092"]
        );
        // A wildcard is advertised as loopback; the controller listener is never advertised.
        assert_eq!(
            listed(config.advertised_broker_listeners()),
            ["PLAINTEXT://127.0.0.1:9092"]
        );
        // Without an explicit map, controller listener names map to PLAINTEXT (Kafka's KRaft).
        assert_eq!(
            config.listener_security_protocol_map.get("CONTROLLER"),
            Some(&"PLAINTEXT".to_string())
        );
        // An explicit entry with an empty host is advertised like a wildcard listener.
        let (config, _) = parse("advertised.listeners=PLAINTEXT://:19092");
        assert_eq!(
            listed(config.advertised_broker_listeners()),
            ["PLAINTEXT://127.0.0.1:19092"]
        );
    }

    #[test]
    fn listener_errors_name_the_key() {
        let map = "listener.security.protocol.map";
        for (text, key, detail) in [
            ("listeners=A://127.0.0.1:1,a://127.0.0.1:2", "listeners", "more than once"),
            (
                "listeners=PLAINTEXT://:9092,CONTROLLER://:9092\ncontroller.listener.names=CONTROLLER",
                "listeners",
                "different port",
            ),
            (
                "advertised.listeners=PLAINTEXT://a:1,plaintext://b:2",
                "advertised.listeners",
                "more than once",
            ),
            (
                "listeners=PLAINTEXT://0.0.0.0:9092\nadvertised.listeners=PLAINTEXT://0.0.0.0:9092",
                "advertised.listeners",
                "nonroutable meta-address 0.0.0.0",
            ),
            ("advertised.listeners=OTHER://h:1", "advertised.listeners", "not in listeners"),
            ("listeners=PLAINTEXT://:9092,EXTERNAL://:9094", map, "EXTERNAL"),
            ("listeners=SSL://:9093,PLAINTEXT://:9092", map, "serves PLAINTEXT listeners only"),
            (
                "listeners=PLAINTEXT://:9092,SECURE://:9094\n\
                 listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SECURE:SASL_SSL",
                map,
                "maps listener SECURE to SASL_SSL",
            ),
            (
                "listeners=PLAINTEXT://:9092,CONTROLLER://:9093\ncontroller.listener.names=CONTROLLER\n\
                 listener.security.protocol.map=PLAINTEXT:PLAINTEXT",
                map,
                "CONTROLLER",
            ),
            ("listener.security.protocol.map=PLAINTEXT:TLS", map, "TLS"),
            ("security.inter.broker.protocol=SSL", "security.inter.broker.protocol", "PLAINTEXT only"),
            (
                "inter.broker.listener.name=PLAINTEXT\nsecurity.inter.broker.protocol=PLAINTEXT",
                "security.inter.broker.protocol",
                "only one of",
            ),
            ("inter.broker.listener.name=INTERNAL", "inter.broker.listener.name", "PLAINTEXT"),
            (
                "listeners=INTERNAL://:9092\nlistener.security.protocol.map=INTERNAL:PLAINTEXT",
                "security.inter.broker.protocol",
                "valid options are INTERNAL",
            ),
            (
                "listeners=PLAINTEXT://:9092,CONTROLLER://:9093\ncontroller.listener.names=CONTROLLER\n\
                 inter.broker.listener.name=CONTROLLER",
                "inter.broker.listener.name",
                "not a controller listener",
            ),
            (
                "listeners=CONTROLLER://127.0.0.1:9093\ncontroller.listener.names=CONTROLLER",
                "advertised.listeners",
                "every listener is a controller listener",
            ),
            ("controller.listener.names=CONTROLLER", "controller.listener.names", "not in listeners"),
        ] {
            let error = parse_error(text);
            assert!(
                error.contains(key) && error.contains(detail),
                "{text}: {error} (expected {key} and {detail})"
            );
        }
    }

    #[test]
    fn other_inconsistent_settings_are_rejected() {
        assert!(
            parse_error("group.min.session.timeout.ms=10\ngroup.max.session.timeout.ms=5")
                .contains("group.min.session.timeout.ms")
        );
    }

    #[test]
    fn role_conflicts_name_the_key() {
        let controller_only = "process.roles=controller\nnode.id=1\n\
                               controller.listener.names=CONTROLLER\n";
        let error = parse_error(&format!(
            "{controller_only}listeners=PLAINTEXT://:9092,CONTROLLER://:9093\n\
             controller.quorum.voters=1@localhost:9093"
        ));
        assert!(
            error.contains("listeners must contain only controller listeners"),
            "{error}"
        );
        let error = parse_error(&format!("{controller_only}listeners=CONTROLLER://:9093"));
        assert!(error.contains("controller.quorum.voters"), "{error}");
        let error = parse_error(
            "process.roles=controller\nnode.id=1\nlisteners=CONTROLLER://:9093\n\
             listener.security.protocol.map=CONTROLLER:PLAINTEXT\n\
             controller.quorum.voters=1@localhost:9093",
        );
        assert!(
            error.contains("controller.listener.names must name"),
            "{error}"
        );
        let error = parse_error(
            "process.roles=broker\nnode.id=1\ncontroller.listener.names=CONTROLLER\n\
             controller.quorum.voters=1@localhost:9093",
        );
        assert!(error.contains("must not include node 1"), "{error}");
        let error = parse_error(
            "process.roles=broker\nnode.id=4\ncontroller.listener.names=CONTROLLER\n\
             listeners=PLAINTEXT://:9092,CONTROLLER://:9093\n\
             controller.quorum.voters=1@localhost:9093",
        );
        assert!(
            error.contains("controller.listener.names must not name"),
            "{error}"
        );
        let error = parse_error(
            "process.roles=broker,controller\nnode.id=4\ncontroller.listener.names=CONTROLLER\n\
             listeners=PLAINTEXT://:9092,CONTROLLER://:9093\n\
             controller.quorum.voters=1@localhost:9093",
        );
        assert!(error.contains("must include node 4"), "{error}");
        // A broker-only node outside the voters is a valid configuration.
        parse(
            "process.roles=broker\nnode.id=4\ncontroller.listener.names=CONTROLLER\n\
             controller.quorum.voters=1@localhost:9093",
        );
    }

    #[test]
    fn quorum_voters_are_parsed() {
        let (config, _) =
            parse("node.id=1\ncontroller.quorum.voters=1@localhost:9093, 2@[::1]:9094");
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
        assert_eq!(
            listed(config.advertised_broker_listeners()),
            ["PLAINTEXT://127.0.0.1:0"]
        );
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
        for (key, value) in [
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
        ] {
            assert_eq!(topic_default(&config, key), value, "{key}");
        }
    }

    #[test]
    fn listener_overrides_of_known_keys_are_recognised() {
        let (config, warnings) = parse(
            "listener.name.external.ssl.keystore.location=/ks\n\
             listener.name.external.max.connections=10\nlistener.name.x.no.such.key=1",
        );
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("listener.name.x.no.such.key"));
        assert_eq!(
            config
                .explicit
                .get("listener.name.external.ssl.keystore.location")
                .map(String::as_str),
            Some("/ks")
        );
        assert!(parse_error("listener.name.external.max.connections=-1")
            .contains("Value must be at least 0"));
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
}
