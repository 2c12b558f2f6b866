//! `strom bench failover`: the controller quorum's failover and metadata propagation, measured on
//! a cluster this command starts itself: three `strom server` processes of this binary in
//! combined mode (each a broker and a voter), on free loopback ports, in a scratch directory
//! (removed afterwards unless `--dir` is given), with Kafka's default timeouts unless
//! `--server-property` says otherwise.
//!
//! * **propagation**: CreateTopics through one node (in turn), then the time until Metadata on
//!   every node shows the topic with a leader for each partition (each node polled every
//!   millisecond), and the time the CreateTopics answer took.
//! * **failover**: each round kills the active controller with SIGKILL (or freezes it with SIGSTOP,
//!   `--freeze`: its port then still accepts connections) while two clients keep
//!   creating topics through the other two nodes; right after the kill each of those nodes is also
//!   sent a fresh CreateTopics, and the round's figure is the time from the kill to the first of
//!   them answered as committed (the nodes forward it to whichever controller is active). The
//!   killed node is then restarted, and the next round waits until it is a caught-up voter and a
//!   registered broker again.
//!
//! Every request is timed here, over Strom's own protocol client ([`crate::wire`]): what is
//! measured is the cluster, not a client library's retry policy. Output lines look like
//! `failover round 3: killed controller 2; CreateTopics committed after 512.4 ms (node 1: 512.4 ms,
//! node 3: 530.1 ms); new controller 1`.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use clap::Args;
use strom_protocol::messages::create_topics_request::{CreatableTopic, CreateTopicsRequest};
use strom_protocol::messages::create_topics_response::CreateTopicsResponse;
use strom_protocol::messages::describe_quorum_request::{
    DescribeQuorumRequest, PartitionData, TopicData,
};
use strom_protocol::messages::describe_quorum_response::DescribeQuorumResponse;
use strom_protocol::messages::metadata_request::{MetadataRequest, MetadataRequestTopic};
use strom_protocol::messages::metadata_response::MetadataResponse;

use crate::client::parse_key_value;
use crate::wire::WireClient;

const METADATA: (i16, i16) = (3, 12);
const CREATE_TOPICS: (i16, i16) = (19, 7);
const DESCRIBE_QUORUM: (i16, i16) = (55, 2);
/// Nodes of the cluster.
const NODES: usize = 3;
/// How long one connection or request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the cluster gets to reach a state (start, election, a restarted node's catch-up).
const SETTLE_DEADLINE: Duration = Duration::from_secs(120);
/// The `timeout_ms` of every CreateTopics.
const CREATE_TIMEOUT_MS: i32 = 30_000;
/// CreateTopics' error for a topic that exists.
const TOPIC_ALREADY_EXISTS: i16 = 36;
/// Metadata polls of the propagation phase.
const PROPAGATION_POLL: Duration = Duration::from_millis(1);

/// Options of `strom bench failover`.
#[derive(Debug, Clone, Args)]
pub struct FailoverBench {
    /// Rounds of killing the active controller.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: u32,
    /// Topics created to time their propagation to every node (0 skips that phase).
    #[arg(long, default_value_t = 20)]
    pub propagation_topics: u32,
    /// Partitions of every topic created.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..))]
    pub partitions: i32,
    /// Directory for the nodes' data, configs and logs (kept afterwards); default: a new
    /// directory under the system's temporary directory, removed afterwards.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// A server.properties key for every node, `key=value` (repeatable), e.g.
    /// `controller.quorum.election.timeout.ms=500`.
    #[arg(long = "server-property", value_parser = parse_key_value)]
    pub server_properties: Vec<(String, String)>,
    /// Freeze the active controller with SIGSTOP instead of killing it: a hung process or a lost
    /// host, whose port still accepts connections but nothing answers (killed after the round).
    #[arg(long)]
    pub freeze: bool,
    /// The `strom` binary the nodes run (default: this one), e.g. an older build to compare with.
    #[arg(long)]
    pub server_binary: Option<PathBuf>,
}

/// One node: its ports, files and process.
struct Node {
    id: i32,
    port: u16,
    config: PathBuf,
    log: PathBuf,
    process: Option<Child>,
}

impl Node {
    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// The three nodes; dropping it kills and reaps every process (and removes a scratch directory).
struct Cluster {
    exe: PathBuf,
    dir: PathBuf,
    remove_dir: bool,
    nodes: Vec<Node>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut process) = node.process.take() {
                let _ = process.kill();
                let _ = process.wait();
            }
        }
        if self.remove_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Free loopback ports, all bound at once so that they differ.
fn free_ports(count: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("finding free ports")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

impl Cluster {
    /// Formats and starts the nodes.
    fn start(bench: &FailoverBench) -> anyhow::Result<Cluster> {
        let exe = match &bench.server_binary {
            Some(binary) => binary.clone(),
            None => std::env::current_exe().context("locating the strom binary")?,
        };
        let (dir, remove_dir) = match &bench.dir {
            Some(dir) => (dir.clone(), false),
            None => (
                std::env::temp_dir().join(format!("strom-bench-failover-{}", std::process::id())),
                true,
            ),
        };
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let ports = free_ports(2 * NODES)?;
        let (client_ports, controller_ports) = ports.split_at(NODES);
        let voters = controller_ports
            .iter()
            .enumerate()
            .map(|(i, port)| format!("{}@127.0.0.1:{port}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            exe,
            dir,
            remove_dir,
            nodes: Vec::new(),
        };
        let cluster_id = cluster.strom(&["storage", "random-uuid"])?;
        for (i, (port, controller_port)) in client_ports.iter().zip(controller_ports).enumerate() {
            let id = i32::try_from(i + 1)?;
            let mut props = vec![
                ("node.id".to_string(), id.to_string()),
                ("process.roles".into(), "broker,controller".into()),
                ("controller.quorum.voters".into(), voters.clone()),
                ("controller.listener.names".into(), "CONTROLLER".into()),
                (
                    "listeners".into(),
                    format!(
                        "PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}"
                    ),
                ),
                (
                    "advertised.listeners".into(),
                    format!("PLAINTEXT://127.0.0.1:{port}"),
                ),
                (
                    "log.dirs".into(),
                    cluster.dir.join(format!("node-{id}")).display().to_string(),
                ),
            ];
            props.extend(bench.server_properties.iter().cloned());
            let config = cluster.dir.join(format!("node-{id}.properties"));
            let text: String = props.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
            std::fs::write(&config, text)
                .with_context(|| format!("writing {}", config.display()))?;
            let config_arg = config.display().to_string();
            cluster.strom(&[
                "storage",
                "format",
                "-t",
                &cluster_id,
                "--config",
                &config_arg,
            ])?;
            cluster.nodes.push(Node {
                id,
                port: *port,
                config,
                log: cluster.dir.join(format!("node-{id}.log")),
                process: None,
            });
        }
        for index in 0..NODES {
            cluster.spawn(index)?;
        }
        Ok(cluster)
    }

    /// Runs `strom <args>` to completion and returns its trimmed standard output.
    fn strom(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = Command::new(&self.exe)
            .args(args)
            .output()
            .with_context(|| format!("running strom {}", args.join(" ")))?;
        if !output.status.success() {
            bail!(
                "strom {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    fn spawn(&mut self, index: usize) -> anyhow::Result<()> {
        let node = &mut self.nodes[index];
        let log = File::options()
            .create(true)
            .append(true)
            .open(&node.log)
            .with_context(|| format!("opening {}", node.log.display()))?;
        let process = Command::new(&self.exe)
            .arg("server")
            .arg("--config")
            .arg(&node.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting strom server")?;
        node.process = Some(process);
        Ok(())
    }

    /// Freezes node `index` with SIGSTOP (through kill(1)).
    fn freeze(&mut self, index: usize) -> anyhow::Result<()> {
        let pid = self.nodes[index]
            .process
            .as_ref()
            .ok_or_else(|| anyhow!("node {} is not running", index + 1))?
            .id();
        let status = Command::new("kill")
            .args(["-STOP", &pid.to_string()])
            .status()
            .context("running kill -STOP")?;
        if !status.success() {
            bail!("kill -STOP {pid} failed");
        }
        Ok(())
    }

    /// SIGKILLs node `index` and reaps it.
    fn kill(&mut self, index: usize) -> anyhow::Result<()> {
        let mut process = self.nodes[index]
            .process
            .take()
            .ok_or_else(|| anyhow!("node {} is not running", index + 1))?;
        process.kill().context("killing the controller")?;
        process.wait().context("reaping the controller")?;
        Ok(())
    }

    fn running(&self) -> Vec<usize> {
        (0..NODES)
            .filter(|i| self.nodes[*i].process.is_some())
            .collect()
    }
}

fn metadata_request(topic: Option<&str>) -> MetadataRequest {
    MetadataRequest {
        topics: topic.map(|name| {
            vec![MetadataRequestTopic {
                name: Some(name.to_string()),
                ..Default::default()
            }]
        }),
        allow_auto_topic_creation: false,
        ..Default::default()
    }
}

/// Metadata as `address` answers it now, if it answers.
async fn metadata_of(address: &str, topic: Option<&str>) -> Option<MetadataResponse> {
    let mut client = WireClient::connect_to(address, Duration::from_secs(2))
        .await
        .ok()?;
    let request = metadata_request(topic);
    client
        .call(METADATA.0, METADATA.1, &request)
        .await
        .ok()
        .map(|(answer, _)| answer)
}

/// Polls until the nodes `asked` report the same active controller (and, when given, that many
/// brokers); returns that controller's id.
async fn settled(
    cluster: &Cluster,
    asked: &[usize],
    brokers: Option<usize>,
) -> anyhow::Result<i32> {
    let deadline = Instant::now() + SETTLE_DEADLINE;
    loop {
        let mut controllers = BTreeSet::new();
        let mut complete = true;
        for index in asked.iter().copied() {
            match metadata_of(&cluster.nodes[index].address(), None).await {
                Some(m) if m.controller_id >= 0 && brokers.is_none_or(|n| m.brokers.len() == n) => {
                    controllers.insert(m.controller_id);
                }
                _ => complete = false,
            }
        }
        if complete && controllers.len() == 1 {
            if let Some(controller) = controllers.first() {
                return Ok(*controller);
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "the cluster did not settle within {SETTLE_DEADLINE:?} (logs in {})",
                cluster.dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls DescribeQuorum through `address` until every voter has the leader's log end (returns
/// at once from a server that does not serve it).
async fn voters_caught_up(cluster: &Cluster, address: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + SETTLE_DEADLINE;
    let request = DescribeQuorumRequest {
        topics: vec![TopicData {
            topic_name: "__cluster_metadata".into(),
            partitions: vec![PartitionData { partition_index: 0 }],
        }],
    };
    loop {
        if let Ok(mut client) = WireClient::connect_to(address, Duration::from_secs(2)).await {
            if client
                .version(DESCRIBE_QUORUM.0, DESCRIBE_QUORUM.1)
                .is_none()
            {
                // An older server (--server-binary) without DescribeQuorum: registered is enough.
                return Ok(());
            }
            let answer: Option<(DescribeQuorumResponse, i16)> = client
                .call(DESCRIBE_QUORUM.0, DESCRIBE_QUORUM.1, &request)
                .await
                .ok();
            let caught_up = answer.is_some_and(|(quorum, _)| {
                quorum
                    .topics
                    .first()
                    .and_then(|t| t.partitions.first())
                    .is_some_and(|p| {
                        let ends: BTreeSet<i64> =
                            p.current_voters.iter().map(|v| v.log_end_offset).collect();
                        p.error_code == 0 && p.current_voters.len() == NODES && ends.len() == 1
                    })
            });
            if caught_up {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "the voters did not catch up within {SETTLE_DEADLINE:?} (logs in {})",
                cluster.dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn create_request(name: &str, partitions: i32) -> CreateTopicsRequest {
    CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: name.to_string(),
            num_partitions: partitions,
            replication_factor: 1,
            ..Default::default()
        }],
        timeout_ms: CREATE_TIMEOUT_MS,
        validate_only: false,
    }
}

/// Sends one CreateTopics on `client`; its error code (0 when committed).
async fn create_topic(client: &mut WireClient, name: &str, partitions: i32) -> anyhow::Result<i16> {
    let (answer, _): (CreateTopicsResponse, _) = client
        .call(
            CREATE_TOPICS.0,
            CREATE_TOPICS.1,
            &create_request(name, partitions),
        )
        .await?;
    answer
        .topics
        .first()
        .map(|t| t.error_code)
        .ok_or_else(|| anyhow!("CreateTopics answered without the topic"))
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// `min / median / max` of `values` (milliseconds).
fn summary(values: &[f64]) -> String {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match (sorted.first(), sorted.last()) {
        (Some(min), Some(max)) => {
            let mid = sorted.len() / 2;
            let median = if sorted.len().is_multiple_of(2) {
                (sorted[mid - 1] + sorted[mid]) / 2.0
            } else {
                sorted[mid]
            };
            format!("min {min:.1} ms, median {median:.1} ms, max {max:.1} ms")
        }
        _ => "no samples".to_string(),
    }
}

/// The machine, for the record: CPUs, their model, the load average.
fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, model)| model.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string());
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".to_string());
    format!("{cpus} CPUs ({model}), load average {load}")
}

/// Runs `strom bench failover`.
pub async fn run(bench: FailoverBench) -> anyhow::Result<()> {
    let mut cluster = Cluster::start(&bench)?;
    println!("failover: machine {}", machine());
    println!(
        "failover: 3 nodes (combined broker + controller) of {} in {}, server properties {:?}",
        cluster.exe.display(),
        cluster.dir.display(),
        bench.server_properties
    );
    let controller = settled(&cluster, &cluster.running(), Some(NODES)).await?;
    voters_caught_up(&cluster, &cluster.nodes[0].address()).await?;
    println!("failover: cluster up, controller {controller}");

    if bench.propagation_topics > 0 {
        propagation(&cluster, &bench).await?;
    }

    let mut failovers = Vec::new();
    for round in 1..=bench.rounds {
        failovers.push(failover_round(&mut cluster, &bench, round).await?);
    }
    println!(
        "failover: {} of the active controller -> first CreateTopics committed, {} rounds: {}",
        if bench.freeze { "SIGSTOP" } else { "kill -9" },
        failovers.len(),
        summary(&failovers)
    );
    Ok(())
}

/// The propagation phase: CreateTopics, then Metadata on every node until each serves it.
async fn propagation(cluster: &Cluster, bench: &FailoverBench) -> anyhow::Result<()> {
    let mut answered = Vec::new();
    let mut everywhere = Vec::new();
    let mut clients = Vec::new();
    for node in &cluster.nodes {
        clients.push(WireClient::connect_to(&node.address(), REQUEST_TIMEOUT).await?);
    }
    for i in 0..bench.propagation_topics {
        let name = format!("propagation-{i}");
        let through = usize::try_from(i)? % NODES;
        let sent = Instant::now();
        let code = create_topic(&mut clients[through], &name, bench.partitions).await?;
        if code != 0 {
            bail!("creating {name} failed with error {code}");
        }
        answered.push(millis(sent.elapsed()));
        let mut waits = Vec::new();
        for node in &cluster.nodes {
            let address = node.address();
            let name = name.clone();
            let partitions = usize::try_from(bench.partitions)?;
            waits.push(tokio::spawn(async move {
                let mut client = WireClient::connect_to(&address, REQUEST_TIMEOUT).await?;
                let request = metadata_request(Some(&name));
                let deadline = Instant::now() + SETTLE_DEADLINE;
                loop {
                    let (answer, _): (MetadataResponse, _) =
                        client.call(METADATA.0, METADATA.1, &request).await?;
                    let serves = answer.topics.iter().any(|t| {
                        t.error_code == 0
                            && t.partitions.len() == partitions
                            && t.partitions.iter().all(|p| p.leader_id >= 0)
                    });
                    if serves {
                        return anyhow::Ok(Instant::now());
                    }
                    if Instant::now() >= deadline {
                        bail!("{address} did not serve {name} in time");
                    }
                    tokio::time::sleep(PROPAGATION_POLL).await;
                }
            }));
        }
        let mut last = sent;
        for wait in waits {
            last = last.max(wait.await??);
        }
        everywhere.push(millis(last.duration_since(sent)));
    }
    println!(
        "propagation: CreateTopics ({} partitions) answered: {}",
        bench.partitions,
        summary(&answered)
    );
    println!(
        "propagation: CreateTopics -> Metadata on all {NODES} nodes shows it with leaders, {} topics: {}",
        answered.len(),
        summary(&everywhere)
    );
    Ok(())
}

/// One round: topics being created through the two other nodes, the controller killed, the time
/// to the first CreateTopics committed after the kill; then the killed node restarted and
/// caught up. Returns the round's figure in milliseconds.
async fn failover_round(
    cluster: &mut Cluster,
    bench: &FailoverBench,
    round: u32,
) -> anyhow::Result<f64> {
    let controller = settled(cluster, &cluster.running(), Some(NODES)).await?;
    let killed = cluster
        .nodes
        .iter()
        .position(|n| n.id == controller)
        .ok_or_else(|| anyhow!("controller {controller} is not a node of this cluster"))?;
    let survivors: Vec<usize> = (0..NODES).filter(|i| *i != killed).collect();

    // Background load: each survivor creates topics one after another until the round ends.
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for index in &survivors {
        let address = cluster.nodes[*index].address();
        let stop = stop.clone();
        let partitions = bench.partitions;
        let node_id = cluster.nodes[*index].id;
        load.push(tokio::spawn(async move {
            let mut client = WireClient::connect_to(&address, REQUEST_TIMEOUT).await?;
            let mut created = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let name = format!("load-r{round}-n{node_id}-{created}");
                // Errors while the controller is down are expected; the forwarding retries.
                let _ = create_topic(&mut client, &name, partitions).await;
                created += 1;
            }
            anyhow::Ok(created)
        }));
    }
    // The probes' connections are open before the kill.
    let mut probes = Vec::new();
    for index in &survivors {
        probes.push((
            cluster.nodes[*index].id,
            WireClient::connect_to(&cluster.nodes[*index].address(), REQUEST_TIMEOUT).await?,
        ));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    if bench.freeze {
        cluster.freeze(killed)?;
    } else {
        cluster.kill(killed)?;
    }
    let killed_at = Instant::now();
    let mut answers = Vec::new();
    for (node_id, mut client) in probes {
        let name = format!("failover-r{round}-n{node_id}");
        let partitions = bench.partitions;
        answers.push(tokio::spawn(async move {
            let code = create_topic(&mut client, &name, partitions).await?;
            anyhow::Ok((node_id, code, Instant::now()))
        }));
    }
    let mut per_node = Vec::new();
    for answer in answers {
        let (node_id, code, at) = answer.await??;
        // TOPIC_ALREADY_EXISTS: the node's forwarded call committed but its answer was lost to the
        // failover, and the retry found the topic (names are unique to each round and node).
        if code != 0 && code != TOPIC_ALREADY_EXISTS {
            bail!("round {round}: CreateTopics through node {node_id} failed with error {code}");
        }
        per_node.push((node_id, millis(at.duration_since(killed_at))));
    }
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await??;
    }
    let first = per_node
        .iter()
        .map(|(_, ms)| *ms)
        .fold(f64::INFINITY, f64::min);
    let new_controller = settled(cluster, &survivors, None).await.ok();
    println!(
        "failover round {round}: {} controller {controller}; CreateTopics committed after \
         {first:.1} ms ({}); new controller {}",
        if bench.freeze { "froze" } else { "killed" },
        per_node
            .iter()
            .map(|(id, ms)| format!("node {id}: {ms:.1} ms"))
            .collect::<Vec<_>>()
            .join(", "),
        new_controller.map_or("unknown".to_string(), |id| id.to_string())
    );

    // The killed node comes back, catches up and registers again before the next round.
    if bench.freeze {
        cluster.kill(killed)?;
    }
    cluster.spawn(killed)?;
    settled(cluster, &cluster.running(), Some(NODES)).await?;
    voters_caught_up(cluster, &cluster.nodes[survivors[0]].address()).await?;
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_give_min_median_max() {
        assert_eq!(
            summary(&[3.0, 1.0, 2.0]),
            "min 1.0 ms, median 2.0 ms, max 3.0 ms"
        );
        assert_eq!(
            summary(&[4.0, 1.0, 2.0, 3.0]),
            "min 1.0 ms, median 2.5 ms, max 4.0 ms"
        );
        assert_eq!(summary(&[]), "no samples");
    }
}
