//! Jepsen-style fault injection against a three-node `strom` cluster (combined broker and
//! controller nodes, real processes), with a checker that proves or disproves "no acknowledged
//! record is lost".
//!
//! A run ([`run`]): start the cluster (on a private network of namespaces when the machine allows
//! it, see [`crate::common::netns`]), create a topic with replication factor 3 and
//! `min.insync.replicas=2`, start the [`workload`] (idempotent `acks=all` writers, live readers),
//! let the [`nemesis`] kill, pause and cut off partition leaders for the run's duration, heal,
//! wait for the cluster to settle and the writers to succeed again, stop the clients, read every
//! partition from offset 0 to its high watermark, check the returning brokers (below), and give
//! the whole [`history::History`] to [`history::analyze`], whose counts must all be zero.
//!
//! **Returning brokers.** Each broker that a fault hit must hold every record written while it
//! was away. Once the cluster has settled, the check waits until the broker is back in the ISR
//! of every partition, then makes it the leader of every partition and reads them all from it
//! alone: it stops the two other nodes with SIGTERM, one after the other, so that their
//! controlled shutdowns move every leadership to it (the second shutdown is committed while two
//! of the three voters still run; after it the quorum is gone, but the broker keeps serving
//! reads as the leader its last image names), reads, and starts the two again. Everything it
//! serves must equal the final read, offset for offset. Every faulted broker is checked, those
//! leading the fewest partitions first (the final read came from the leaders, so theirs is the
//! copy it has not seen; by the last check, every replica has been compared). A partition it
//! cannot be made the leader of counts as unverified after three attempts (an attempt can fail
//! when the ISR a client saw was stale: a just-restarted node is still named in it until the
//! controller takes it out). Once preferred-leader election (ElectLeaders, API key 43) exists,
//! the same check can run without stopping nodes for the partitions whose first replica is the
//! broker.
//!
//! A run that finds anomalies copies the nodes' logs to `$TMPDIR/strom-chaos-<seed>/` and says
//! so.

pub mod history;
pub mod nemesis;
pub mod workload;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;

use crate::common::netns::Lan;
use crate::common::StromCluster;
use history::{BrokerRead, Counts};
use nemesis::Nemesis;
use workload::{Workload, WorkloadConfig};

/// `broker.session.timeout.ms` of the run's brokers: short, so that a fault that outlasts it
/// fits many times into a short run.
const SESSION_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the cluster gets to reach a state (leaders elected, brokers back, writes again).
const SETTLE_DEADLINE: Duration = Duration::from_secs(60);
/// How long a returning broker gets to be back in every ISR.
const CATCH_UP_DEADLINE: Duration = Duration::from_secs(20);
/// How often the returning-broker check tries to make a broker the leader of every partition.
const RETURNING_ATTEMPTS: u32 = 3;
/// How long a final read of all partitions may take.
const READ_DEADLINE: Duration = Duration::from_secs(60);
/// How long the writers get to be acknowledged on every partition again after the last fault.
const RESUME_DEADLINE: Duration = Duration::from_secs(20);
const TOPIC: &str = "chaos";
const ALL_NODES: [i32; 3] = [1, 2, 3];

/// Which faults a run injects while the writers write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Faults {
    /// None: such a run must come out clean on any build.
    None,
    /// The [`nemesis`], for the run's duration.
    Nemesis,
    /// After the run's duration, every node is killed (SIGKILL) and started again.
    RestartAll,
}

/// What to run.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// How long the nemesis runs.
    pub duration: Duration,
    pub faults: Faults,
    /// Of the topic; `min.insync.replicas` is 2 when it is 3, else 1.
    pub replication_factor: i32,
    pub partitions: i32,
    pub writers: usize,
    pub readers: usize,
    /// Records per second per writer.
    pub rate: u32,
    pub seed: u64,
}

impl Scenario {
    /// `duration` and the seed from `STROM_CHAOS_SECS` / `STROM_CHAOS_SEED` when set.
    pub fn from_env(default_duration: Duration) -> Scenario {
        let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
        let seed = env("STROM_CHAOS_SEED").unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() ^ u64::from(d.subsec_nanos()))
                .unwrap_or(1)
        });
        Scenario {
            duration: env("STROM_CHAOS_SECS").map_or(default_duration, Duration::from_secs),
            faults: Faults::Nemesis,
            replication_factor: 3,
            partitions: 6,
            writers: 3,
            readers: 2,
            rate: 100,
            seed,
        }
    }
}

/// One partition as metadata shows it.
struct PartitionState {
    id: i32,
    leader: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
}

/// The partitions of `topic` as the cluster reached through `bootstrap` reports them, if it
/// answers within a few seconds and knows the topic.
fn topic_state(bootstrap: &str, topic: &str) -> Option<Vec<PartitionState>> {
    let consumer: BaseConsumer = workload::client_config(bootstrap).create().ok()?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(3))
        .ok()?;
    let topic = metadata.topics().iter().find(|t| t.name() == topic)?;
    if topic.error().is_some() || topic.partitions().is_empty() {
        return None;
    }
    Some(
        topic
            .partitions()
            .iter()
            .map(|p| PartitionState {
                id: p.id(),
                leader: p.leader(),
                replicas: p.replicas().to_vec(),
                isr: p.isr().to_vec(),
            })
            .collect(),
    )
}

/// Whether every node, asked itself, names a live leader for every partition of the topic and
/// all name the same leader in the same epoch (and, with `full_isr`, every replica in the ISR).
fn agreed_view(cluster: &StromCluster, full_isr: bool) -> bool {
    let mut views = Vec::new();
    for node in &cluster.nodes {
        let Some(metadata) = node.metadata() else {
            return false;
        };
        let Some(topic) = metadata
            .topics
            .iter()
            .find(|t| t.name.as_deref() == Some(TOPIC))
        else {
            return false;
        };
        let mut view: Vec<(i32, i32, i32)> = Vec::new();
        for p in &topic.partitions {
            let in_sync = !full_isr || p.isr_nodes.len() == p.replica_nodes.len();
            if !ALL_NODES.contains(&p.leader_id) || !in_sync {
                return false;
            }
            view.push((p.partition_index, p.leader_id, p.leader_epoch));
        }
        view.sort_unstable();
        views.push(view);
    }
    views.windows(2).all(|pair| pair[0] == pair[1])
}

/// Polls `condition` every 200 ms until it holds or `deadline` passes; returns whether it held.
fn wait_for(deadline: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + deadline;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether every partition has a leader among `live` node ids.
fn led_by(state: &[PartitionState], live: &[i32]) -> bool {
    state.iter().all(|p| live.contains(&p.leader))
}

/// Creates the run's topic (with `min.insync.replicas` 2 if the replication factor is 3, else
/// 1), retrying while the cluster elects its controller.
fn create_topic(cluster: &StromCluster, partitions: i32, replication_factor: i32) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let admin: AdminClient<DefaultClientContext> =
        workload::client_config(&cluster.bootstrap_all())
            .create()
            .expect("admin client");
    let options = AdminOptions::new()
        .request_timeout(Some(Duration::from_secs(10)))
        .operation_timeout(Some(Duration::from_secs(10)));
    let created = wait_for(SETTLE_DEADLINE, || {
        let min_insync = if replication_factor >= 3 { "2" } else { "1" };
        let topic = NewTopic::new(
            TOPIC,
            partitions,
            TopicReplication::Fixed(replication_factor),
        )
        .set("min.insync.replicas", min_insync);
        let outcome = runtime.block_on(admin.create_topics([&topic], &options));
        matches!(
            outcome.as_deref(),
            Ok([Ok(_)]) | Ok([Err((_, RDKafkaErrorCode::TopicAlreadyExists))])
        )
    });
    assert!(created, "could not create {TOPIC}\n{}", cluster.logs());
}

/// Runs `scenario`: see the module doc. Prints the nemesis's events and the checker's counts,
/// and returns the counts.
pub fn run(scenario: &Scenario) -> Counts {
    let clock = Instant::now();
    let say = |what: String| eprintln!("chaos t+{:.1}s: {what}", clock.elapsed().as_secs_f64());
    say(format!(
        "{scenario:?} (replay with STROM_CHAOS_SEED={})",
        scenario.seed
    ));
    let lan = match Lan::create(3) {
        Ok(lan) => Some(lan),
        Err(why) => {
            say(format!(
                "SKIPPING network partitions (isolate, cut off), the cluster runs on loopback: \
                 {why}"
            ));
            None
        }
    };
    let with_lan = lan.is_some();
    let session_ms = SESSION_TIMEOUT.as_millis().to_string();
    let mut cluster = StromCluster::start_on(
        lan,
        &[
            ("broker.session.timeout.ms", &session_ms),
            ("broker.heartbeat.interval.ms", "500"),
            ("num.partitions", "1"),
            // Kafka's default (30 s) would keep a lagging follower in the ISR through every
            // fault of a short run.
            ("replica.lag.time.max.ms", "3000"),
        ],
    );
    let bootstrap = cluster.bootstrap_all();
    // Placement spreads replicas over the unfenced brokers: wait for all three.
    let registered = wait_for(SETTLE_DEADLINE, || {
        workload::client_config(&bootstrap)
            .create::<BaseConsumer>()
            .ok()
            .and_then(|c| c.fetch_metadata(None, Duration::from_secs(3)).ok())
            .is_some_and(|m| m.brokers().len() == ALL_NODES.len())
    });
    assert!(
        registered,
        "not every broker registered\n{}",
        cluster.logs()
    );
    create_topic(&cluster, scenario.partitions, scenario.replication_factor);
    let settled = |bootstrap: &str| {
        wait_for(SETTLE_DEADLINE, || {
            topic_state(bootstrap, TOPIC).is_some_and(|state| led_by(&state, &ALL_NODES))
        })
    };
    assert!(
        settled(&bootstrap),
        "no leaders for {TOPIC}\n{}",
        cluster.logs()
    );
    say(format!(
        "cluster up, {TOPIC} created: {}",
        describe(&bootstrap)
    ));

    let config = WorkloadConfig {
        bootstrap: bootstrap.clone(),
        topic: TOPIC.into(),
        partitions: scenario.partitions,
        writers: scenario.writers,
        readers: scenario.readers,
        rate: scenario.rate,
        filler: 64,
    };
    let workload = Workload::start(&config);
    let acked_everywhere = |since: &BTreeMap<i32, usize>| {
        let now = workload.acked_per_partition();
        (0..scenario.partitions).all(|p| now.get(&p) > since.get(&p))
    };
    let warm = wait_for(SETTLE_DEADLINE, || acked_everywhere(&BTreeMap::new()));
    assert!(warm, "writers got no acknowledgements\n{}", cluster.logs());

    let mut nemesis = Nemesis::new(scenario.seed, SESSION_TIMEOUT, with_lan);
    match scenario.faults {
        Faults::None => std::thread::sleep(scenario.duration),
        Faults::Nemesis => {
            say("writers acknowledged on every partition; nemesis starts".into());
            nemesis.run(&mut cluster, scenario.duration, |rng| {
                let state = topic_state(&bootstrap, TOPIC)?;
                let partition = state.get(rng.below(state.len()))?;
                (partition.leader > 0).then_some(partition.leader)
            });
        }
        Faults::RestartAll => {
            std::thread::sleep(scenario.duration);
            say("killing every node, then starting them all again".into());
            for node in &mut cluster.nodes {
                node.kill_9();
            }
            for node in &mut cluster.nodes {
                node.start_again();
            }
        }
    }

    // Healed: the cluster settles and the writers get acknowledgements on every partition
    // again (so every leader's high watermark has moved past what was acknowledged before).
    let settled_again = settled(&bootstrap);
    let before = workload.acked_per_partition();
    let writing = wait_for(RESUME_DEADLINE, || acked_everywhere(&before));
    say(format!(
        "nemesis done; leaders for every partition: {settled_again}; writers acknowledged on every \
         partition again: {writing}; {}",
        describe(&bootstrap)
    ));
    let (mut history, summary) = workload.stop();
    say(summary);

    // Every node must name the same leaders in the same epochs before the final read: a node
    // that was cut off can go on answering as the leader it was, with the high watermark it had
    // then, until it has caught up with the metadata.
    let agreed = wait_for(SETTLE_DEADLINE, || agreed_view(&cluster, false));
    let in_sync = wait_for(CATCH_UP_DEADLINE, || agreed_view(&cluster, true));
    say(format!(
        "every node names the same leaders: {agreed}; every replica in the ISR: {in_sync}"
    ));
    history.final_read = workload::read_all(&config, &bootstrap, |_| true, READ_DEADLINE);
    say("final read done".into());

    // The brokers a fault hit, those leading the fewest partitions first: the final read came
    // from the leaders, so a broker that leads nothing is the one whose copy it has not seen.
    let mut returning: BTreeSet<i32> = nemesis.events.iter().map(|e| e.node).collect();
    if scenario.faults == Faults::RestartAll {
        returning.extend(ALL_NODES);
    }
    let state = topic_state(&bootstrap, TOPIC).unwrap_or_default();
    let mut faulted: Vec<i32> = returning.into_iter().collect();
    faulted.sort_by_key(|broker| state.iter().filter(|p| p.leader == *broker).count());
    for broker in faulted {
        let read = read_from_returning(&mut cluster, &config, broker);
        say(read.1);
        history.returning.push(read.0);
    }

    let counts = history::analyze(&history);
    say(format!("{} faults:", nemesis.events.len()));
    for event in &nemesis.events {
        eprintln!("chaos:   {event}");
    }
    if !counts.is_clean() {
        keep_logs(&cluster, scenario.seed);
    }
    eprint!("{counts}");
    counts
}

/// Copies every node's log out of its temporary directory (removed with the cluster) for a run
/// that found anomalies, and says where.
fn keep_logs(cluster: &StromCluster, seed: u64) {
    let dir = std::env::temp_dir().join(format!("strom-chaos-{seed}"));
    let kept = std::fs::create_dir_all(&dir).and_then(|()| {
        for (i, node) in cluster.nodes.iter().enumerate() {
            std::fs::write(dir.join(format!("node{}.log", i + 1)), node.log_contents())?;
        }
        Ok(())
    });
    match kept {
        Ok(()) => eprintln!("chaos: the nodes' logs are in {}", dir.display()),
        Err(error) => eprintln!(
            "chaos: could not keep the nodes' logs in {}: {error}",
            dir.display()
        ),
    }
}

/// Leader and ISR of every partition of the topic, for the report.
fn describe(bootstrap: &str) -> String {
    match topic_state(bootstrap, TOPIC) {
        None => "no metadata".into(),
        Some(state) => state
            .iter()
            .map(|p| format!("p{}: leader {} isr {:?}", p.id, p.leader, p.isr))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// The returning-broker check for node id `broker` (see the module doc), with a line for the
/// report.
fn read_from_returning(
    cluster: &mut StromCluster,
    config: &WorkloadConfig,
    broker: i32,
) -> (BrokerRead, String) {
    let started = Instant::now();
    let bootstrap = cluster.bootstrap_all();
    let own = cluster.nodes[usize::try_from(broker - 1).expect("node ids start at 1")].bootstrap();
    let others: Vec<usize> = (0..cluster.nodes.len())
        .filter(|i| i32::try_from(*i + 1).ok() != Some(broker))
        .collect();
    // The partitions it replicates: the ones it can lead.
    let mine: Vec<i32> = topic_state(&bootstrap, TOPIC)
        .unwrap_or_default()
        .iter()
        .filter(|p| p.replicas.contains(&broker))
        .map(|p| p.id)
        .collect();
    let in_every_isr = || {
        topic_state(&bootstrap, TOPIC).is_some_and(|state| {
            state
                .iter()
                .all(|p| !mine.contains(&p.id) || p.isr.contains(&broker))
        })
    };
    for attempt in 1..=RETURNING_ATTEMPTS {
        // Two looks a second apart: just after a restart the ISR can still name a node that
        // the controller is about to take out of it until it has caught up.
        let in_isr = wait_for(CATCH_UP_DEADLINE, || {
            in_every_isr() && {
                std::thread::sleep(Duration::from_secs(1));
                in_every_isr()
            }
        });
        for other in &others {
            cluster.nodes[*other].terminate();
        }
        // Leaderships move with the controlled shutdowns; wait until the broker's own
        // metadata has taken them all (those it can take).
        let mut led: Vec<i32> = Vec::new();
        wait_for(Duration::from_secs(10), || {
            led = topic_state(&own, TOPIC)
                .unwrap_or_default()
                .iter()
                .filter(|p| p.leader == broker)
                .map(|p| p.id)
                .collect();
            mine.iter().all(|p| led.contains(p))
        });
        let complete = mine.iter().all(|p| led.contains(p));
        let partitions = (complete || attempt == RETURNING_ATTEMPTS).then(|| {
            let mut read = workload::read_all(config, &own, |p| led.contains(&p), READ_DEADLINE);
            read.retain(|p, _| mine.contains(p));
            read
        });
        for other in &others {
            cluster.nodes[*other].start_again();
        }
        let settled = wait_for(SETTLE_DEADLINE, || agreed_view(cluster, false));
        if let Some(partitions) = partitions {
            let report = format!(
                "returning broker {broker}: in every ISR: {in_isr}; led {}/{} of its partitions \
                 (attempt {attempt}); read {}; cluster settled again: {settled} ({:.1}s)",
                led.len(),
                mine.len(),
                partitions
                    .iter()
                    .map(|(p, read)| format!(
                        "p{p}:{}",
                        read.as_ref()
                            .map_or("-".to_string(), |r| r.records.len().to_string())
                    ))
                    .collect::<Vec<_>>()
                    .join(" "),
                started.elapsed().as_secs_f64()
            );
            return (BrokerRead { broker, partitions }, report);
        }
    }
    unreachable!("the last attempt always reads")
}
