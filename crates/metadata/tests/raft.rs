//! The Raft metadata quorum end to end, in one process: members connected by the in-process
//! network (which can cut a member off), each with its own metadata directory, a controller on the
//! leader committing through the quorum, every member's metadata state converging. Waits poll with
//! deadlines; nothing sleeps for a fixed time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use strom_metadata::controller::{BrokerHeartbeatRequest, BrokerRegistrationRequest};
use strom_metadata::raft::InProcessNetwork;
use strom_metadata::{
    Controller, MetadataState, Quorum, QuorumError, RaftQuorum, RaftQuorumConfig,
};
use tokio::time::{sleep, Instant};

const DEADLINE: Duration = Duration::from_secs(30);
const CLUSTER_ID: &str = "raft-test-cluster-id0";

/// Quick timings.
fn test_config() -> RaftQuorumConfig {
    RaftQuorumConfig {
        heartbeat_interval: Duration::from_millis(20),
        election_timeout: Duration::from_millis(200),
        fetch_timeout: Duration::from_millis(1000),
        snapshot_interval_bytes: u64::MAX,
        snapshot_chunk_bytes: 512,
        max_entries_per_request: 300,
        propose_timeout: Duration::from_secs(2),
    }
}

/// Polls `check` until it returns `Some`, failing the test after [`DEADLINE`].
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        sleep(Duration::from_millis(20)).await;
    }
}

struct Member {
    quorum: Arc<RaftQuorum>,
    state: Arc<MetadataState>,
}

/// Quorum members in one process, each in its own directory.
struct Cluster {
    _root: tempfile::TempDir,
    root: PathBuf,
    network: Arc<InProcessNetwork>,
    config: RaftQuorumConfig,
    members: BTreeMap<i32, Member>,
}

impl Cluster {
    /// A new cluster of `voters`, bootstrapped and with a leader.
    async fn start(voters: &[i32], config: RaftQuorumConfig) -> Cluster {
        let root = tempfile::tempdir().unwrap();
        let mut cluster = Cluster {
            root: root.path().to_path_buf(),
            _root: root,
            network: InProcessNetwork::new(),
            config,
            members: BTreeMap::new(),
        };
        let addresses: BTreeMap<i32, String> = voters
            .iter()
            .map(|id| (*id, format!("localhost:{}", 9090 + id)))
            .collect();
        for id in voters {
            cluster.open(*id).await;
        }
        for member in cluster.members.values() {
            member.quorum.bootstrap(&addresses).await.unwrap();
        }
        cluster.leader().await;
        cluster
    }

    fn dir(&self, id: i32) -> PathBuf {
        self.root.join(format!("node-{id}"))
    }

    /// Opens member `id` from its directory (new or existing) and connects it.
    async fn open(&mut self, id: i32) {
        self.open_with(id, self.config.clone()).await;
    }

    /// Opens member `id` with `config`.
    async fn open_with(&mut self, id: i32, config: RaftQuorumConfig) {
        let (quorum, state) = RaftQuorum::open(
            &self.dir(id),
            id,
            Some(CLUSTER_ID.into()),
            config,
            self.network.transport(id),
        )
        .await
        .unwrap();
        self.network.register(quorum.rpc_handler());
        self.members.insert(
            id,
            Member {
                quorum: Arc::new(quorum),
                state,
            },
        );
    }

    /// Stops member `id` as a stopped process would.
    async fn stop(&mut self, id: i32) {
        let member = self.members.remove(&id).unwrap();
        self.network.unregister(id);
        member.quorum.shutdown().await;
    }

    fn member(&self, id: i32) -> &Member {
        &self.members[&id]
    }

    /// The leader the running members (those not cut off in `excluded`) agree on.
    async fn leader_among(&self, ids: &[i32]) -> i32 {
        eventually("the members agree on a leader", || async {
            let statuses: Vec<_> = ids
                .iter()
                .map(|id| self.member(*id).quorum.status())
                .collect();
            let leader = statuses[0].leader_id?;
            let agreed = statuses.iter().all(|s| s.leader_id == Some(leader));
            let leads = ids.contains(&leader);
            (agreed && leads).then_some(leader)
        })
        .await
    }

    async fn leader(&self) -> i32 {
        let ids: Vec<i32> = self.members.keys().copied().collect();
        self.leader_among(&ids).await
    }

    /// A controller on member `id`.
    fn controller(&self, id: i32) -> Controller {
        let member = self.member(id);
        Controller::new(
            id,
            member.quorum.clone(),
            member.state.clone(),
            std::time::Duration::from_secs(9),
        )
    }

    /// Waits until the members `ids` have applied the same image, holding `topics`.
    async fn converged(&self, ids: &[i32], topics: &[&str]) {
        let expected: BTreeSet<String> = topics.iter().map(|t| t.to_string()).collect();
        eventually("the members' images converge", || async {
            let images: Vec<_> = ids
                .iter()
                .map(|id| self.member(*id).state.image())
                .collect();
            let first = &images[0];
            let names: BTreeSet<String> = first.topics.keys().cloned().collect();
            let same = images.iter().all(|image| {
                image.last_offset == first.last_offset
                    && image.topics == first.topics
                    && image.brokers == first.brokers
            });
            (same && names == expected).then_some(())
        })
        .await;
    }
}

async fn create_topic(controller: &Controller, name: &str) {
    controller
        .create_topic(name, 2, 1, &[], false)
        .await
        .unwrap_or_else(|e| panic!("creating {name}: {e}"));
}

/// Registers a broker through `controller`, and unfences it, so that topics can be placed.
async fn register_broker(controller: &Controller) {
    let epoch = controller
        .register(BrokerRegistrationRequest {
            broker_id: 1,
            incarnation_id: strom_metadata::meta_properties::random_uuid(),
            listeners: vec![strom_metadata::BrokerListener {
                name: "PLAINTEXT".into(),
                host: "localhost".into(),
                port: 9092,
                security_protocol: 0,
            }],
            rack: None,
        })
        .await
        .unwrap();
    let reply = controller
        .heartbeat(BrokerHeartbeatRequest {
            broker_id: 1,
            broker_epoch: epoch,
            current_metadata_offset: i64::MAX,
            want_fence: false,
            want_shut_down: false,
        })
        .await
        .unwrap();
    assert!(!reply.is_fenced);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_voters_elect_one_leader_and_converge() {
    let cluster = Cluster::start(&[1, 2, 3], test_config()).await;
    let leader = cluster.leader().await;
    let statuses: Vec<_> = [1, 2, 3]
        .iter()
        .map(|id| cluster.member(*id).quorum.status())
        .collect();
    assert!(statuses.iter().all(|s| s.voter_ids() == vec![1, 2, 3]));
    let epochs: BTreeSet<i32> = statuses.iter().map(|s| s.epoch).collect();
    assert_eq!(epochs.len(), 1, "one epoch: {statuses:?}");

    let controller = cluster.controller(leader);
    register_broker(&controller).await;
    create_topic(&controller, "orders").await;
    create_topic(&controller, "payments").await;
    cluster.converged(&[1, 2, 3], &["orders", "payments"]).await;

    // A follower's controller is refused and told who leads.
    let follower = [1, 2, 3].into_iter().find(|id| *id != leader).unwrap();
    let error = cluster
        .member(follower)
        .quorum
        .propose(vec![])
        .await
        .unwrap_err();
    assert_eq!(
        error,
        QuorumError::NotLeader {
            leader: Some(leader)
        }
    );

    // The leader knows how far each voter got: all the way to the high watermark.
    let described = eventually("every voter has caught up", || async {
        let described = cluster.member(leader).quorum.status();
        let high_watermark = Some(described.high_watermark);
        described
            .voters
            .iter()
            .all(|v| {
                v.log_end_offset == high_watermark
                    && v.last_fetch_ms.is_some()
                    && v.last_caught_up_ms.is_some()
            })
            .then_some(described)
    })
    .await;
    assert_eq!(described.leader_id, Some(leader));
    assert!(described.high_watermark >= 4, "{described:?}");
    assert!(described.observers.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_takes_over_without_losing_committed_metadata() {
    // A fetch timeout the test never reaches: the followers find the stopped leader gone (its
    // address refuses them) and elect a new one once its lease has passed.
    let config = RaftQuorumConfig {
        fetch_timeout: Duration::from_secs(3600),
        ..test_config()
    };
    let mut cluster = Cluster::start(&[1, 2, 3], config).await;
    let first_leader = cluster.leader().await;
    let controller = cluster.controller(first_leader);
    register_broker(&controller).await;
    create_topic(&controller, "before").await;
    let first_epoch = cluster.member(first_leader).quorum.status().epoch;

    cluster.stop(first_leader).await;
    let rest: Vec<i32> = [1, 2, 3]
        .into_iter()
        .filter(|id| *id != first_leader)
        .collect();
    let second_leader = cluster.leader_among(&rest).await;
    assert_ne!(second_leader, first_leader);
    assert!(cluster.member(second_leader).quorum.status().epoch > first_epoch);

    create_topic(&cluster.controller(second_leader), "after").await;
    cluster.converged(&rest, &["after", "before"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_leader_cannot_commit_while_the_majority_goes_on() {
    let cluster = Cluster::start(&[1, 2, 3], test_config()).await;
    let old_leader = cluster.leader().await;
    register_broker(&cluster.controller(old_leader)).await;
    create_topic(&cluster.controller(old_leader), "committed").await;
    cluster.converged(&[1, 2, 3], &["committed"]).await;

    cluster.network.isolate(old_leader);
    // Proposed at once, the entry is most likely appended to the old leader's log but can never
    // commit; the proposal times out.
    let error = cluster
        .controller(old_leader)
        .create_topic("lost", 1, 1, &[], false)
        .await
        .unwrap_err();
    assert_eq!(
        error.code,
        strom_protocol::ErrorCode::NotController.code(),
        "{error}"
    );
    // Like Kafka's check-quorum: unacknowledged by a majority, it stops claiming leadership and
    // refuses proposals at once.
    eventually("the cut-off leader stops claiming to lead", || async {
        let status = cluster.member(old_leader).quorum.status();
        status.leader_id.is_none().then_some(())
    })
    .await;
    let error = cluster
        .member(old_leader)
        .quorum
        .propose(vec![])
        .await
        .unwrap_err();
    assert_eq!(error, QuorumError::NotLeader { leader: None });

    let rest: Vec<i32> = [1, 2, 3]
        .into_iter()
        .filter(|id| *id != old_leader)
        .collect();
    let new_leader = cluster.leader_among(&rest).await;
    create_topic(&cluster.controller(new_leader), "majority").await;
    cluster.converged(&rest, &["committed", "majority"]).await;

    // Reconnected, the old leader follows the new one; its uncommitted entry is gone.
    cluster.network.heal(old_leader);
    assert_eq!(cluster.leader().await, new_leader);
    cluster
        .converged(&[1, 2, 3], &["committed", "majority"])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_follower_is_refused_at_once() {
    let cluster = Cluster::start(&[1, 2, 3], test_config()).await;
    let leader = cluster.leader().await;
    let follower = [1, 2, 3].into_iter().find(|id| *id != leader).unwrap();
    cluster.network.isolate(follower);
    let error = cluster
        .member(follower)
        .quorum
        .propose(vec![])
        .await
        .unwrap_err();
    assert!(matches!(error, QuorumError::NotLeader { .. }), "{error}");
    register_broker(&cluster.controller(leader)).await;
    create_topic(&cluster.controller(leader), "still-works").await;
    cluster.network.heal(follower);
    cluster.converged(&[1, 2, 3], &["still-works"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_member_rejoins_and_catches_up() {
    let mut cluster = Cluster::start(&[1, 2, 3], test_config()).await;
    let leader = cluster.leader().await;
    register_broker(&cluster.controller(leader)).await;
    create_topic(&cluster.controller(leader), "one").await;
    let follower = [1, 2, 3].into_iter().find(|id| *id != leader).unwrap();
    cluster.converged(&[1, 2, 3], &["one"]).await;

    cluster.stop(follower).await;
    create_topic(&cluster.controller(leader), "two").await;
    create_topic(&cluster.controller(leader), "three").await;

    cluster.open(follower).await;
    cluster
        .converged(&[1, 2, 3], &["one", "three", "two"])
        .await;
}

fn snapshot_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".checkpoint"))
        .collect();
    names.sort();
    names
}

fn segment_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".log"))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_missing_purged_entries_get_a_snapshot() {
    let config = RaftQuorumConfig {
        snapshot_interval_bytes: 2048,
        ..test_config()
    };
    let mut cluster = Cluster::start(&[1, 2, 3], config).await;
    let leader = cluster.leader().await;
    let controller = cluster.controller(leader);
    register_broker(&controller).await;
    let lagging = [1, 2, 3].into_iter().find(|id| *id != leader).unwrap();
    cluster.stop(lagging).await;

    let mut topics = Vec::new();
    for index in 0..40 {
        let name = format!("topic-{index:02}");
        create_topic(&controller, &name).await;
        topics.push(name);
    }
    // A snapshot was taken by size; one taken now covers the whole log, which is purged (the
    // log is rolled at each purge, so the segment holding offset 0 goes now at the latest).
    let leader_dir = cluster.dir(leader);
    eventually("the leader takes a snapshot by size", || async {
        (!snapshot_files(&leader_dir).is_empty()).then_some(())
    })
    .await;
    let end = cluster.member(leader).quorum.snapshot_now().await.unwrap();
    assert!(end > 40, "snapshot ends at {end}");
    eventually("the leader's log is purged behind its snapshot", || async {
        let segments = segment_files(&leader_dir);
        let purged = !segments.contains(&format!("{:020}.log", 0));
        (purged && snapshot_files(&leader_dir).len() == 1).then_some(())
    })
    .await;

    // The members that join from here never snapshot on their own, so a snapshot file in their
    // directory is one they received.
    let follower_config = RaftQuorumConfig {
        snapshot_interval_bytes: u64::MAX,
        ..test_config()
    };
    // The restarted member needs purged entries: it gets the snapshot.
    assert!(snapshot_files(&cluster.dir(lagging)).is_empty());
    cluster.open_with(lagging, follower_config.clone()).await;
    let topic_names: Vec<&str> = topics.iter().map(String::as_str).collect();
    cluster.converged(&[1, 2, 3], &topic_names).await;
    let lagging_dir = cluster.dir(lagging);
    eventually("the restarted member stores the snapshot", || async {
        (snapshot_files(&lagging_dir).len() == 1).then_some(())
    })
    .await;

    // So does a brand-new observer, which then follows the log without voting.
    cluster.open_with(4, follower_config.clone()).await;
    cluster
        .member(leader)
        .quorum
        .add_learner(4, "localhost:9094")
        .await
        .unwrap();
    cluster.converged(&[1, 2, 3, 4], &topic_names).await;
    let observer_dir = cluster.dir(4);
    eventually("the observer stores the snapshot", || async {
        (snapshot_files(&observer_dir).len() == 1).then_some(())
    })
    .await;
    create_topic(&controller, "after-snapshot").await;
    let mut all = topic_names.clone();
    all.push("after-snapshot");
    cluster.converged(&[1, 2, 3, 4], &all).await;

    let described = cluster.member(leader).quorum.status();
    assert_eq!(
        described
            .voters
            .iter()
            .map(|v| v.node_id)
            .collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(
        described
            .observers
            .iter()
            .map(|o| o.node_id)
            .collect::<Vec<_>>(),
        vec![4]
    );
    assert_eq!(cluster.member(4).quorum.status().voter_ids(), vec![1, 2, 3]);

    // The observer restarts from its snapshot and log.
    cluster.stop(4).await;
    cluster.open_with(4, follower_config).await;
    cluster.converged(&[1, 2, 3, 4], &all).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_voter_commits_and_recovers_from_its_directory() {
    let mut cluster = Cluster::start(&[1], test_config()).await;
    let controller = cluster.controller(1);
    register_broker(&controller).await;
    create_topic(&controller, "alone").await;
    let status = cluster.member(1).quorum.status();
    assert_eq!(status.leader_id, Some(1));
    assert_eq!(status.voter_ids(), vec![1]);

    cluster.stop(1).await;
    cluster.open(1).await;
    cluster.leader().await;
    cluster.converged(&[1], &["alone"]).await;

    cluster.member(1).quorum.snapshot_now().await.unwrap();
    create_topic(&cluster.controller(1), "after-snapshot").await;
    cluster.stop(1).await;
    cluster.open(1).await;
    cluster.leader().await;
    cluster.converged(&[1], &["after-snapshot", "alone"]).await;
    assert_eq!(
        cluster
            .member(1)
            .state
            .image()
            .brokers
            .keys()
            .collect::<Vec<_>>(),
        vec![&1]
    );
}
