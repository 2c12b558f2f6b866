//! Test harness for end-to-end tests of the `strom` binary: starts a broker process on a free port
//! with its own data directory, waits until it accepts connections, and builds rdkafka clients
//! pointed at it. The child process is always killed and reaped on drop. A three-node cluster
//! runs on loopback, or on a private network of network namespaces ([`netns::Lan`]) when a test
//! needs to cut nodes off from each other.
#![allow(dead_code)] // each test binary uses a different subset of these helpers

pub mod netns;
pub mod raw;
pub mod typed;

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use strom_protocol::messages::metadata_request::MetadataRequest;
use strom_protocol::messages::metadata_response::MetadataResponse;

/// How long a broker gets to start accepting TCP connections.
pub const STARTUP_DEADLINE: Duration = Duration::from_secs(20);
/// Default bound for a single client operation (metadata, admin request, ...).
pub const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// Default bound for waiting on a condition in a test.
pub const WAIT_DEADLINE: Duration = Duration::from_secs(30);
/// Kafka's API key of Metadata.
const METADATA: i16 = 3;
/// Interval between two checks of a polled condition.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// A running `strom server` child process with its own temporary data directory.
pub struct StromProcess {
    child: Option<Child>,
    /// The address the listeners bind: 127.0.0.1, or the node's address on a [`netns::Lan`].
    host: IpAddr,
    /// The network namespace the process runs in (`ip netns exec`), if not the test's own.
    netns: Option<String>,
    port: u16,
    dir: tempfile::TempDir,
    config_path: PathBuf,
    log_path: PathBuf,
    extra_args: Vec<String>,
}

impl StromProcess {
    /// Starts a broker with default test settings, overridden/extended by `extra_props`
    /// (server.properties keys), and waits until it accepts TCP connections.
    pub fn start(extra_props: &[(&str, &str)]) -> StromProcess {
        StromProcess::start_with_args(extra_props, &[])
    }

    /// Like `start`, with extra command-line arguments after `server --config FILE`.
    pub fn start_with_args(extra_props: &[(&str, &str)], extra_args: &[&str]) -> StromProcess {
        let mut process = StromProcess::prepare(extra_props, extra_args);
        process.spawn_and_wait_ready();
        process
    }

    /// Starts a broker whose settings `props_for` derives from its listener port (the one
    /// [`StromProcess::bootstrap`] names), on top of the test defaults, and waits until that
    /// port accepts TCP connections.
    pub fn start_with_port_props(
        props_for: impl FnOnce(u16) -> Vec<(String, String)>,
    ) -> StromProcess {
        let mut process = StromProcess::prepare(&[], &[]);
        let props = props_for(process.port);
        let props: Vec<(&str, &str)> = props
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        process.rewrite_config(&props);
        process.spawn_and_wait_ready();
        process
    }

    /// Runs the broker with a configuration it must refuse: waits (bounded) for it to exit and
    /// returns whether it exited successfully plus its log.
    pub fn run_expecting_exit(extra_props: &[(&str, &str)], extra_args: &[&str]) -> (bool, String) {
        let mut process = StromProcess::prepare(extra_props, extra_args);
        process.spawn();
        let deadline = Instant::now() + STARTUP_DEADLINE;
        loop {
            let child = process.child.as_mut().expect("spawned");
            if let Some(status) = child.try_wait().expect("try_wait on broker") {
                process.child = None;
                return (status.success(), process.log_contents());
            }
            assert!(
                Instant::now() < deadline,
                "broker kept running with an invalid configuration\n--- broker log ---\n{}",
                process.log_contents()
            );
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Formats the node's metadata directory for cluster `cluster_id` with `strom storage format`.
    pub fn format_storage(&self, cluster_id: &str) {
        let output = Command::new(env!("CARGO_BIN_EXE_strom"))
            .args(["storage", "format", "-t", cluster_id, "--config"])
            .arg(&self.config_path)
            .output()
            .expect("run strom storage format");
        assert!(
            output.status.success(),
            "strom storage format failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn prepare(extra_props: &[(&str, &str)], extra_args: &[&str]) -> StromProcess {
        let dir = tempfile::Builder::new()
            .prefix("strom-it-")
            .tempdir()
            .expect("create temp dir");
        let port = free_port();
        let data_dir = dir.path().join("data");
        let mut props: Vec<(String, String)> = vec![
            ("node.id".into(), "1".into()),
            ("listeners".into(), format!("PLAINTEXT://127.0.0.1:{port}")),
            (
                "advertised.listeners".into(),
                format!("PLAINTEXT://127.0.0.1:{port}"),
            ),
            ("log.dirs".into(), data_dir.display().to_string()),
            ("num.partitions".into(), "1".into()),
        ];
        for (key, value) in extra_props {
            match props.iter_mut().find(|(k, _)| k == key) {
                Some(entry) => entry.1 = (*value).to_string(),
                None => props.push(((*key).to_string(), (*value).to_string())),
            }
        }
        let config_path = dir.path().join("server.properties");
        let mut config = String::new();
        for (key, value) in &props {
            config.push_str(&format!("{key}={value}\n"));
        }
        std::fs::write(&config_path, config).expect("write server.properties");
        let log_path = dir.path().join("strom.log");
        StromProcess {
            child: None,
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            netns: None,
            port,
            dir,
            config_path,
            log_path,
            extra_args: extra_args.iter().map(|a| (*a).to_string()).collect(),
        }
    }

    /// `host:port` for rdkafka's `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.addr().to_string()
    }

    /// The listener port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The socket address of the listener.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }

    /// The broker's `log.dirs` directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Process id of the running broker. Panics if it is not running.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("broker is not running").id()
    }

    /// Everything the broker wrote to stdout/stderr so far (across restarts).
    pub fn log_contents(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_else(|e| format!("<no log: {e}>"))
    }

    /// Panics (printing the broker log) if the broker process has exited.
    pub fn assert_running(&mut self) {
        let child = self.child.as_mut().expect("broker was stopped by the test");
        if let Some(status) = child.try_wait().expect("try_wait on broker") {
            panic!(
                "broker exited unexpectedly with {status}\n--- broker log ---\n{}",
                self.log_contents()
            );
        }
    }

    /// Sends SIGKILL to the broker and reaps it.
    pub fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // `Child::kill` is SIGKILL on Unix.
            child.kill().expect("SIGKILL the broker");
            child.wait().expect("reap killed broker");
        }
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit.
    pub fn terminate(&mut self) {
        if self.signal(libc::SIGTERM) {
            let deadline = Instant::now() + STARTUP_DEADLINE;
            while Instant::now() < deadline {
                if !self.is_running() {
                    return;
                }
                std::thread::sleep(POLL_INTERVAL);
            }
            panic!(
                "broker did not exit within {STARTUP_DEADLINE:?} after SIGTERM\n--- broker log ---\n{}",
                self.log_contents()
            );
        }
    }

    /// Freezes the broker with SIGSTOP (its sockets stay open, it answers nothing).
    pub fn pause(&mut self) {
        assert!(
            self.signal(libc::SIGSTOP),
            "pausing a broker that is not running"
        );
    }

    /// Lets a broker frozen by [`StromProcess::pause`] go on with SIGCONT.
    pub fn resume(&mut self) {
        assert!(
            self.signal(libc::SIGCONT),
            "resuming a broker that is not running"
        );
    }

    /// Whether the broker process is running (reaps it if it has exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            None => false,
            Some(child) => {
                if child.try_wait().expect("try_wait on broker").is_some() {
                    self.child = None;
                    false
                } else {
                    true
                }
            }
        }
    }

    /// Sends `signal` to the broker process; false if it is not running.
    #[allow(unsafe_code)] // the `kill(2)` call; see its SAFETY comment
    fn signal(&mut self, signal: libc::c_int) -> bool {
        match self.child.as_ref() {
            None => false,
            Some(child) => {
                let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
                // SAFETY: plain syscall on the pid of a child we own and have not reaped yet.
                let result = unsafe { libc::kill(pid, signal) };
                assert_eq!(result, 0, "kill({pid}, {signal}) failed");
                true
            }
        }
    }

    /// Restarts the broker on the same port and data directory (SIGKILLs it first if it is
    /// still running) and waits until it accepts connections again.
    pub fn restart(&mut self) {
        self.kill_9();
        self.spawn_and_wait_ready();
    }

    fn spawn_and_wait_ready(&mut self) {
        self.spawn();
        self.wait_ready();
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "broker already running");
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open broker log file");
        writeln!(log, "=== starting strom on port {} ===", self.port).expect("write log");
        let stderr_log = log.try_clone().expect("clone log file handle");
        // `ip netns exec` execs the binary, so the child's pid is the broker's own.
        let mut command = match &self.netns {
            None => Command::new(env!("CARGO_BIN_EXE_strom")),
            Some(netns) => {
                let mut command = Command::new("ip");
                command
                    .args(["netns", "exec", netns])
                    .arg(env!("CARGO_BIN_EXE_strom"));
                command
            }
        };
        let child = command
            .arg("server")
            .arg("--config")
            .arg(&self.config_path)
            .args(&self.extra_args)
            .env("RUST_BACKTRACE", "1")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr_log))
            .spawn()
            .expect("spawn strom binary");
        self.child = Some(child);
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + STARTUP_DEADLINE;
        let addr = self.addr();
        loop {
            self.assert_running();
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "broker did not accept connections on {addr} within {STARTUP_DEADLINE:?}\n--- broker log ---\n{}",
                    self.log_contents()
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    fn base_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", self.bootstrap())
            .set("log_level", "3")
            .set("socket.timeout.ms", "10000");
        config
    }

    /// A FutureProducer with `extra` client settings applied on top of test defaults.
    pub fn producer(&self, extra: &[(&str, &str)]) -> FutureProducer {
        let mut config = self.base_config();
        config
            .set("message.timeout.ms", "15000")
            .set("linger.ms", "5");
        for (key, value) in extra {
            config.set(*key, *value);
        }
        config.create().expect("create producer")
    }

    /// A consumer. `group` of `None` gives it a unique throwaway group (for assign() use).
    pub fn consumer(&self, group: Option<&str>, extra: &[(&str, &str)]) -> BaseConsumer {
        let mut config = self.base_config();
        config
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("allow.auto.create.topics", "false")
            .set("fetch.wait.max.ms", "100");
        // librdkafka refuses assign() without a group.id; a unique one that never joins or
        // commits keeps consumers independent.
        let group = match group {
            Some(group) => group.to_string(),
            None => format!("strom-it-{}", unique_suffix()),
        };
        config.set("group.id", group);
        for (key, value) in extra {
            config.set(*key, *value);
        }
        config.create().expect("create consumer")
    }

    /// An AdminClient.
    pub fn admin(&self) -> AdminClient<DefaultClientContext> {
        self.base_config().create().expect("create admin client")
    }

    /// The full metadata as this broker itself answers it (Metadata v12 on a connection of its
    /// own, where rdkafka would ask any broker it knows), or `None` if it cannot answer now.
    pub fn metadata(&self) -> Option<MetadataResponse> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut client = typed::TypedClient::connect(self, "strom-it-metadata");
            let request = MetadataRequest {
                topics: None,
                allow_auto_topic_creation: false,
                ..MetadataRequest::default()
            };
            client.call::<MetadataResponse>(METADATA, 12, &request)
        }))
        .ok()
    }

    /// Number of partitions of `topic` as reported by metadata, waiting until it is known.
    pub fn partition_count(&self, topic: &str) -> usize {
        let consumer = self.consumer(None, &[]);
        let deadline = Instant::now() + WAIT_DEADLINE;
        loop {
            if let Ok(metadata) = consumer.fetch_metadata(Some(topic), OP_TIMEOUT) {
                if let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) {
                    if t.error().is_none() && !t.partitions().is_empty() {
                        return t.partitions().len();
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "topic {topic} never appeared in metadata\n--- broker log ---\n{}",
                self.log_contents()
            );
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Names of all topics in a full metadata response.
    pub fn topic_names(&self) -> HashSet<String> {
        let consumer = self.consumer(None, &[]);
        let metadata = consumer
            .fetch_metadata(None, OP_TIMEOUT)
            .expect("fetch full metadata");
        metadata
            .topics()
            .iter()
            .map(|t| t.name().to_string())
            .collect()
    }

    /// Consumes `n` messages from all partitions of `topic`, starting at the beginning of each
    /// partition (assign(), no group). Panics (with the broker log) if fewer arrive by `deadline`.
    /// Checks that a regular rdkafka client can still produce one record to the new topic
    /// `topic` and consume it back (after hostile input, a memory flood, ...).
    pub async fn assert_serves_rdkafka(&mut self, topic: &str) {
        self.assert_running();
        let producer = self.producer(&[]);
        let delivered = producer
            .send(
                rdkafka::producer::FutureRecord::<(), _>::to(topic)
                    .partition(0)
                    .payload("still here"),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|(error, _)| {
                panic!(
                    "produce to {topic} failed: {error}\n--- broker log ---\n{}",
                    self.log_contents()
                )
            });
        assert_eq!(delivered.offset, 0);
        let messages = self.consume_n(topic, 1, WAIT_DEADLINE);
        assert_eq!(messages[0].payload(), Some(&b"still here"[..]));
        self.assert_running();
    }

    pub fn consume_n(&self, topic: &str, n: usize, deadline: Duration) -> Vec<OwnedMessage> {
        let partitions = self.partition_count(topic);
        let mut assignment = TopicPartitionList::new();
        for partition in 0..partitions {
            let partition = i32::try_from(partition).expect("partition fits i32");
            assignment
                .add_partition_offset(topic, partition, Offset::Beginning)
                .expect("add partition");
        }
        self.consume_assignment(&assignment, n, deadline)
    }

    /// Consumes `n` messages from one partition starting at `offset`.
    pub fn consume_partition(
        &self,
        topic: &str,
        partition: i32,
        offset: Offset,
        n: usize,
        deadline: Duration,
    ) -> Vec<OwnedMessage> {
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(topic, partition, offset)
            .expect("add partition");
        self.consume_assignment(&assignment, n, deadline)
    }

    fn consume_assignment(
        &self,
        assignment: &TopicPartitionList,
        n: usize,
        deadline: Duration,
    ) -> Vec<OwnedMessage> {
        let consumer = self.consumer(None, &[]);
        consumer.assign(assignment).expect("assign");
        let until = Instant::now() + deadline;
        let mut messages = Vec::with_capacity(n);
        let mut last_error = None;
        while messages.len() < n {
            let remaining = until.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                panic!(
                    "consumed only {} of {n} messages within {deadline:?} (last error: {last_error:?})\n--- broker log ---\n{}",
                    messages.len(),
                    self.log_contents()
                );
            }
            match consumer.poll(remaining.min(Duration::from_millis(200))) {
                Some(Ok(message)) => messages.push(message.detach()),
                Some(Err(error)) => last_error = Some(error),
                None => {}
            }
        }
        messages
    }

    /// Consumes from the beginning of `topic` until `quiet` passes without new messages, with an
    /// overall bound of `deadline`; used where the exact count is unknown.
    pub fn consume_all(
        &self,
        topic: &str,
        quiet: Duration,
        deadline: Duration,
    ) -> Vec<OwnedMessage> {
        let consumer = self.consumer(None, &[]);
        let partitions = self.partition_count(topic);
        let mut assignment = TopicPartitionList::new();
        let mut high_watermarks = Vec::new();
        for partition in 0..partitions {
            let partition = i32::try_from(partition).expect("partition fits i32");
            assignment
                .add_partition_offset(topic, partition, Offset::Beginning)
                .expect("add partition");
            let (_, high) = consumer
                .fetch_watermarks(topic, partition, OP_TIMEOUT)
                .expect("fetch watermarks");
            high_watermarks.push(high);
        }
        consumer.assign(&assignment).expect("assign");
        let until = Instant::now() + deadline;
        let mut last_message_at = Instant::now();
        let mut messages: Vec<OwnedMessage> = Vec::new();
        loop {
            let done = high_watermarks.iter().enumerate().all(|(p, high)| {
                messages
                    .iter()
                    .filter(|m| m.partition() as usize == p)
                    .map(|m| m.offset() + 1)
                    .max()
                    .unwrap_or(0)
                    >= *high
            });
            if done && last_message_at.elapsed() >= quiet {
                return messages;
            }
            assert!(
                Instant::now() < until,
                "consume_all did not finish within {deadline:?}; got {} messages, high watermarks {high_watermarks:?}\n--- broker log ---\n{}",
                messages.len(),
                self.log_contents()
            );
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
                messages.push(message.detach());
                last_message_at = Instant::now();
            }
        }
    }

    /// Low and high watermark of a partition.
    pub fn watermarks(&self, topic: &str, partition: i32) -> (i64, i64) {
        self.consumer(None, &[])
            .fetch_watermarks(topic, partition, OP_TIMEOUT)
            .expect("fetch watermarks")
    }

    /// Polls `condition` until it is true, panicking with `what` and the broker log at `deadline`.
    pub fn wait_until(&self, what: &str, deadline: Duration, mut condition: impl FnMut() -> bool) {
        let until = Instant::now() + deadline;
        while !condition() {
            assert!(
                Instant::now() < until,
                "timed out after {deadline:?} waiting for: {what}\n--- broker log ---\n{}",
                self.log_contents()
            );
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Admin options with bounded timeouts.
    pub fn admin_options() -> AdminOptions {
        AdminOptions::new()
            .request_timeout(Some(OP_TIMEOUT))
            .operation_timeout(Some(OP_TIMEOUT))
    }

    /// Path of the partition directory `<topic>-<partition>` under the data dir (searched
    /// recursively so the exact layout below `log.dirs` does not matter).
    pub fn partition_dir(&self, topic: &str, partition: i32) -> PathBuf {
        let name = format!("{topic}-{partition}");
        find_dir(&self.data_dir(), &name).unwrap_or_else(|| {
            panic!(
                "no directory {name} under {}\n--- broker log ---\n{}",
                self.data_dir().display(),
                self.log_contents()
            )
        })
    }
}

impl Drop for StromProcess {
    fn drop(&mut self) {
        self.kill_9();
        if std::thread::panicking() {
            eprintln!(
                "--- broker log ({}) ---\n{}",
                self.log_path.display(),
                self.log_contents()
            );
        }
    }
}

/// Three `strom` processes in combined mode (`process.roles=broker,controller`) forming one
/// cluster: each has a PLAINTEXT listener and a CONTROLLER listener on free ports, and all three
/// are voters of the metadata quorum, formatted with one cluster id. Node `i` (from 0) has node id
/// `i + 1`. Dropping it kills and reaps every node, then removes its network, if it has one.
pub struct StromCluster {
    /// The nodes with the broker role, node ids `controllers.len() + 1` upwards.
    pub nodes: Vec<StromProcess>,
    /// Controller-only nodes (`process.roles=controller`, node ids 1, 2, ...), whose only
    /// listener is CONTROLLER on their [`StromProcess::port`]; empty in plain combined mode.
    pub controllers: Vec<StromProcess>,
    /// The CONTROLLER listener port of each node, in the order of `nodes`.
    pub controller_ports: Vec<u16>,
    /// The EXTERNAL listener port of each node, in the order of `nodes`, when the cluster was
    /// started with [`StromCluster::start_with_external_listeners`]; else empty.
    pub external_ports: Vec<u16>,
    /// The private network the nodes run on, if not loopback (declared after `nodes`, so the
    /// processes are gone before their namespaces are removed).
    pub lan: Option<netns::Lan>,
}

impl StromCluster {
    /// Formats and starts the three nodes (node ids 1, 2, 3) on loopback with `extra_props` on
    /// each.
    pub fn start(extra_props: &[(&str, &str)]) -> StromCluster {
        StromCluster::start_nodes(None, extra_props, false, 0)
    }

    /// Split roles: three controller-only voters (node ids 1, 2, 3) and three combined nodes
    /// (ids 4, 5, 6, voters too: broker-only nodes cannot follow the quorum yet), `extra_props`
    /// on the combined ones.
    pub fn start_with_controller_only_voters(extra_props: &[(&str, &str)]) -> StromCluster {
        StromCluster::start_nodes(None, extra_props, false, 3)
    }

    /// Like [`StromCluster::start`], each node with a second client listener, EXTERNAL, bound
    /// on 127.0.0.1 and advertised as `localhost:<port>`; PLAINTEXT stays the inter-broker
    /// listener, advertised as `127.0.0.1:<port>`.
    pub fn start_with_external_listeners(extra_props: &[(&str, &str)]) -> StromCluster {
        StromCluster::start_nodes(None, extra_props, true, 0)
    }

    /// Like [`StromCluster::start`], on `lan` if given: node `i` then runs in the namespace
    /// `lan.node_netns(i)` and listens on `lan.node_host(i)`.
    pub fn start_on(lan: Option<netns::Lan>, extra_props: &[(&str, &str)]) -> StromCluster {
        StromCluster::start_nodes(lan, extra_props, false, 0)
    }

    fn start_nodes(
        lan: Option<netns::Lan>,
        extra_props: &[(&str, &str)],
        external: bool,
        controller_only: usize,
    ) -> StromCluster {
        let output = Command::new(env!("CARGO_BIN_EXE_strom"))
            .args(["storage", "random-uuid"])
            .output()
            .expect("run strom storage random-uuid");
        let cluster_id = String::from_utf8_lossy(&output.stdout).trim().to_string();
        let mut controllers: Vec<StromProcess> = (0..controller_only)
            .map(|_| StromProcess::prepare(&[], &[]))
            .collect();
        let hosts: Vec<IpAddr> = (0..3)
            .map(|i| match &lan {
                Some(lan) => lan.node_host(i),
                None => IpAddr::V4(Ipv4Addr::LOCALHOST),
            })
            .collect();
        let controller_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let voters = controllers
            .iter()
            .map(|c| (c.port, IpAddr::V4(Ipv4Addr::LOCALHOST)))
            .chain(controller_ports.iter().copied().zip(hosts.iter().copied()))
            .enumerate()
            .map(|(i, (port, host))| format!("{}@{host}:{port}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        for (i, controller) in controllers.iter_mut().enumerate() {
            let node_id = (i + 1).to_string();
            let listeners = format!("CONTROLLER://127.0.0.1:{}", controller.port);
            controller.rewrite_config(&[
                ("node.id", &node_id),
                ("process.roles", "controller"),
                ("controller.quorum.voters", &voters),
                ("controller.listener.names", "CONTROLLER"),
                ("listeners", &listeners),
                ("advertised.listeners", &listeners),
            ]);
            controller.format_storage(&cluster_id);
        }
        let external_ports: Vec<u16> = if external {
            (0..3).map(|_| free_port()).collect()
        } else {
            Vec::new()
        };
        let mut nodes = Vec::new();
        for (i, (controller_port, host)) in controller_ports.iter().zip(&hosts).enumerate() {
            let node_id = (controller_only + i + 1).to_string();
            let mut process = StromProcess::prepare(&[], &[]);
            process.host = *host;
            process.netns = lan.as_ref().map(|lan| lan.node_netns(i));
            let port = process.port;
            let mut listeners =
                format!("PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}");
            let mut advertised = format!("PLAINTEXT://{host}:{port}");
            if let Some(external_port) = external_ports.get(i) {
                listeners.push_str(&format!(",EXTERNAL://127.0.0.1:{external_port}"));
                advertised.push_str(&format!(",EXTERNAL://localhost:{external_port}"));
            }
            let mut props: Vec<(&str, &str)> = vec![
                ("node.id", &node_id),
                ("process.roles", "broker,controller"),
                ("controller.quorum.voters", &voters),
                ("controller.listener.names", "CONTROLLER"),
                ("listeners", &listeners),
            ];
            if external {
                props.push((
                    "listener.security.protocol.map",
                    "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,EXTERNAL:PLAINTEXT",
                ));
                props.push(("inter.broker.listener.name", "PLAINTEXT"));
            }
            props.extend_from_slice(extra_props);
            props.push(("advertised.listeners", &advertised));
            process.rewrite_config(&props);
            process.format_storage(&cluster_id);
            nodes.push(process);
        }
        for node in controllers.iter_mut().chain(&mut nodes) {
            node.spawn_and_wait_ready();
        }
        StromCluster {
            nodes,
            controllers,
            controller_ports,
            external_ports,
            lan,
        }
    }

    /// Every node's client listener, for rdkafka's `bootstrap.servers`.
    pub fn bootstrap_all(&self) -> String {
        self.nodes
            .iter()
            .map(StromProcess::bootstrap)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Every node's log, each under a heading naming its node id.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, node)| format!("--- node {} ---\n{}", i + 1, node.log_contents()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl StromProcess {
    /// Sets `props` in the node's server.properties (other keys keep their values).
    fn rewrite_config(&mut self, props: &[(&str, &str)]) {
        let text = std::fs::read_to_string(&self.config_path).expect("read server.properties");
        let mut lines: Vec<(String, String)> = text
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for (key, value) in props {
            match lines.iter_mut().find(|(k, _)| k == key) {
                Some(entry) => entry.1 = (*value).to_string(),
                None => lines.push(((*key).to_string(), (*value).to_string())),
            }
        }
        let config: String = lines.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        std::fs::write(&self.config_path, config).expect("write server.properties");
    }

    /// Starts the broker again after [`StromProcess::kill_9`] and waits until it accepts
    /// connections.
    pub fn start_again(&mut self) {
        self.spawn_and_wait_ready();
    }
}

/// A process-wide unique number for naming throwaway consumer groups.
fn unique_suffix() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Picks a currently unused TCP port on 127.0.0.1 *below* the kernel's ephemeral range, so that
/// while a broker is down for a restart the kernel cannot hand its port to another test's
/// `bind(:0)` or to an outgoing client connection.
pub fn free_port() -> u16 {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_low.saturating_sub(1));
    if high > low {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let mut state =
            u64::from(std::process::id()) << 32 ^ u64::from(nanos) ^ unique_suffix() << 16;
        for _ in 0..500 {
            // xorshift64: cheap spread over the range; collisions are caught by bind().
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let span = u64::from(high - low);
            let port = low + u16::try_from(state % span).expect("below span");
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

fn find_dir(root: &Path, name: &str) -> Option<PathBuf> {
    let entries = std::fs::read_dir(root).ok()?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == name) {
                return Some(path);
            }
            if let Some(found) = find_dir(&path, name) {
                return Some(found);
            }
        }
    }
    None
}

/// Opens a file for appending (used to damage segment files).
pub fn open_append(path: &Path) -> File {
    OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {} for append: {e}", path.display()))
}

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after epoch");
    i64::try_from(since_epoch.as_millis()).expect("millis fit i64")
}

/// Headers of a message as (key, value) pairs, comparable across produced and consumed messages.
pub fn header_pairs(message: &OwnedMessage) -> Vec<(String, Option<Vec<u8>>)> {
    match message.headers() {
        None => Vec::new(),
        Some(headers) => headers
            .iter()
            .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
            .collect(),
    }
}
