//! End-to-end tests of the controller over the single-node quorum: operations, validation codes,
//! replay after reopen, snapshots. A small synchronous wrapper drives the async controller.

// Test code. (clippy.toml's allow-*-in-tests does not reach integration-test helpers.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::{configs, open, registration, store_with_brokers, Store};
use strom_metadata::{
    AlterPartitionRequest, ConfigOp, ConfigOpType, MetadataError, MetadataImage, TopicSummary,
};
use strom_protocol::ErrorCode;

#[test]
fn new_cluster_gets_kafka_style_id_that_persists() {
    let dir = tempfile::tempdir().unwrap();
    let cluster_id = open(dir.path()).image().cluster_id.clone();
    assert_eq!(cluster_id.len(), 22);
    assert!(cluster_id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    let reopened = Store::open(dir.path(), 1, Some("ignored".into())).unwrap();
    assert_eq!(reopened.image().cluster_id, cluster_id);
    let properties = fs::read_to_string(dir.path().join("meta.properties")).unwrap();
    assert!(properties.contains(&format!("cluster.id={cluster_id}")));
    assert!(properties.contains("node.id=1"));

    let other = tempfile::tempdir().unwrap();
    let given = Store::open(other.path(), 1, Some("MkU3OEVBNTcwNTJENDM2Qg".into())).unwrap();
    assert_eq!(given.image().cluster_id, "MkU3OEVBNTcwNTJENDM2Qg");
    assert!(Store::open(other.path(), 2, None).is_err());
}

#[test]
fn create_topic_assigns_replicas_round_robin() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_brokers(dir.path(), 3);
    let version_before = store.image().version;
    let summary = store
        .create_topic("orders", 4, 2, &configs(&[("retention.ms", "1000")]), false)
        .unwrap();
    assert_eq!(summary.num_partitions, 4);
    assert_eq!(summary.replication_factor, 2);
    let image = store.image();
    assert!(image.version > version_before);
    let topic = image.topic("orders").unwrap();
    assert_eq!(topic.id, summary.topic_id);
    assert_eq!(image.topic_by_id(&summary.topic_id).unwrap().name, "orders");
    assert_eq!(
        topic.configs.get("retention.ms").map(String::as_str),
        Some("1000")
    );
    assert_eq!(topic.partitions.len(), 4);
    let replicas: Vec<Vec<i32>> = topic
        .partitions
        .values()
        .map(|p| p.replicas.clone())
        .collect();
    assert_eq!(
        replicas,
        // The fourth partition shares its leader with the first, so its follower shifts (Kafka does the same).
        vec![vec![1, 2], vec![2, 3], vec![3, 1], vec![1, 3]]
    );
    for partition in topic.partitions.values() {
        assert_eq!(partition.leader, partition.replicas[0]);
        assert_eq!(partition.isr, partition.replicas);
        assert_eq!(partition.leader_epoch, 0);
    }
}

#[test]
fn validate_only_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_brokers(dir.path(), 1);
    let before = store.image();
    store.create_topic("t", 3, 1, &[], true).unwrap();
    assert!(store.image().topic("t").is_none());
    store.create_topic("t", 3, 1, &[], false).unwrap();
    store.create_partitions("t", 5, true).unwrap();
    store
        .alter_topic_configs("t", &[ConfigOp::set("retention.ms", "5")], true)
        .unwrap();
    let topic = store.image().topic("t").unwrap().clone();
    assert_eq!(topic.partitions.len(), 3);
    assert!(topic.configs.is_empty());
    assert!(before.topics.is_empty());
}

#[test]
fn validation_errors_carry_kafka_codes() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_brokers(dir.path(), 2);
    let code = |r: Result<TopicSummary, MetadataError>| r.unwrap_err().code;
    for bad in ["", ".", "..", "has space", "ümlaut", &"x".repeat(250)] {
        assert_eq!(
            code(store.create_topic(bad, 1, 1, &[], false)),
            ErrorCode::InvalidTopicException.code(),
            "{bad:?}"
        );
    }
    assert!(store
        .create_topic(&"x".repeat(249), 1, 1, &[], false)
        .is_ok());
    store.create_topic("a.b", 1, 1, &[], false).unwrap();
    assert_eq!(
        code(store.create_topic("a.b", 1, 1, &[], false)),
        ErrorCode::TopicAlreadyExists.code()
    );
    assert_eq!(
        code(store.create_topic("a_b", 1, 1, &[], false)),
        ErrorCode::InvalidTopicException.code()
    );
    assert_eq!(
        code(store.create_topic("p", 0, 1, &[], false)),
        ErrorCode::InvalidPartitions.code()
    );
    assert_eq!(
        code(store.create_topic("p", -3, 1, &[], false)),
        ErrorCode::InvalidPartitions.code()
    );
    assert_eq!(
        code(store.create_topic("p", 1, 3, &[], false)),
        ErrorCode::InvalidReplicationFactor.code()
    );
    assert_eq!(
        code(store.create_topic("p", 1, 0, &[], false)),
        ErrorCode::InvalidReplicationFactor.code()
    );
    let err = store
        .create_topic("p", 1, 1, &configs(&[("no.such.config", "1")]), false)
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidConfig.code());
    assert!(err.message.contains("no.such.config"));
    let err = store
        .create_topic("p", 1, 1, &configs(&[("retention.ms", "forever")]), false)
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidConfig.code());
    assert!(err.message.contains("retention.ms"));
    assert_eq!(
        code(store.create_topic("p", 1, 1, &configs(&[("cleanup.policy", "shred")]), false)),
        ErrorCode::InvalidConfig.code()
    );
    assert!(store.image().topic("p").is_none());

    assert_eq!(
        store.delete_topic("missing").unwrap_err().code,
        ErrorCode::UnknownTopicOrPartition.code()
    );
    assert_eq!(
        store
            .create_partitions("missing", 3, false)
            .unwrap_err()
            .code,
        ErrorCode::UnknownTopicOrPartition.code()
    );
    assert_eq!(
        store
            .alter_topic_configs("missing", &[], false)
            .unwrap_err()
            .code,
        ErrorCode::UnknownTopicOrPartition.code()
    );
    store.create_topic("q", 2, 1, &[], false).unwrap();
    assert_eq!(
        store.create_partitions("q", 2, false).unwrap_err().code,
        ErrorCode::InvalidPartitions.code()
    );
    assert_eq!(
        store.create_partitions("q", 1, false).unwrap_err().code,
        ErrorCode::InvalidPartitions.code()
    );
    assert_eq!(
        store
            .alter_topic_configs("q", &[ConfigOp::set("segment.bytes", "big")], false)
            .unwrap_err()
            .code,
        ErrorCode::InvalidConfig.code()
    );
    let append = ConfigOp {
        key: "retention.ms".into(),
        value: Some("1".into()),
        op: ConfigOpType::Append,
    };
    assert_eq!(
        store
            .alter_topic_configs("q", &[append], false)
            .unwrap_err()
            .code,
        ErrorCode::InvalidConfig.code()
    );
    assert_eq!(
        store.allocate_producer_id_block(0).unwrap_err().code,
        ErrorCode::InvalidRequest.code()
    );
}

#[test]
fn no_brokers_means_no_topics() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let err = store.create_topic("t", 1, 1, &[], false).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidReplicationFactor.code());
}

#[test]
fn delete_and_recreate_topic() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_brokers(dir.path(), 1);
    let first = store
        .create_topic("t", 1, 1, &configs(&[("cleanup.policy", "compact")]), false)
        .unwrap();
    assert_eq!(store.delete_topic("t").unwrap(), first.topic_id);
    let image = store.image();
    assert!(image.topic("t").is_none());
    assert!(image.topic_by_id(&first.topic_id).is_none());
    let second = store.create_topic("t", 2, 1, &[], false).unwrap();
    assert_ne!(first.topic_id, second.topic_id);
    let topic = store.image().topic("t").unwrap().clone();
    assert!(
        topic.configs.is_empty(),
        "configs of the deleted topic are gone"
    );
    assert_eq!(topic.partitions.len(), 2);
}

#[test]
fn create_partitions_extends_the_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_brokers(dir.path(), 3);
    store.create_topic("t", 1, 2, &[], false).unwrap();
    store.create_partitions("t", 4, false).unwrap();
    let topic = store.image().topic("t").unwrap().clone();
    let replicas: Vec<Vec<i32>> = topic
        .partitions
        .values()
        .map(|p| p.replicas.clone())
        .collect();
    assert_eq!(
        replicas,
        vec![vec![1, 2], vec![2, 3], vec![3, 1], vec![1, 3]]
    );
}

#[test]
fn alter_configs_incremental_and_replace() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_brokers(dir.path(), 1);
    store
        .create_topic(
            "t",
            1,
            1,
            &configs(&[("retention.ms", "1000"), ("segment.ms", "5000")]),
            false,
        )
        .unwrap();
    store
        .alter_topic_configs(
            "t",
            &[
                ConfigOp::set("retention.bytes", "100"),
                ConfigOp::delete("segment.ms"),
                ConfigOp {
                    key: "cleanup.policy".into(),
                    value: Some("compact".into()),
                    op: ConfigOpType::Append,
                },
            ],
            false,
        )
        .unwrap();
    let overrides = store.image().topic("t").unwrap().configs.clone();
    let expected = configs(&[
        ("cleanup.policy", "delete,compact"),
        ("retention.bytes", "100"),
        ("retention.ms", "1000"),
    ]);
    assert_eq!(overrides.into_iter().collect::<Vec<_>>(), expected);

    store
        .alter_topic_configs(
            "t",
            &[ConfigOp {
                key: "cleanup.policy".into(),
                value: Some("delete".into()),
                op: ConfigOpType::Subtract,
            }],
            false,
        )
        .unwrap();
    assert_eq!(
        store
            .image()
            .topic("t")
            .unwrap()
            .configs
            .get("cleanup.policy")
            .unwrap(),
        "compact"
    );

    store
        .replace_topic_configs("t", &configs(&[("max.message.bytes", "2000")]), false)
        .unwrap();
    let overrides = store.image().topic("t").unwrap().configs.clone();
    assert_eq!(
        overrides.into_iter().collect::<Vec<_>>(),
        configs(&[("max.message.bytes", "2000")])
    );

    // An operation that changes nothing appends nothing.
    let version = store.image().version;
    store
        .alter_topic_configs("t", &[ConfigOp::set("max.message.bytes", "2000")], false)
        .unwrap();
    assert_eq!(store.image().version, version);
}

#[test]
fn broker_configs() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_brokers(dir.path(), 2);
    store
        .alter_broker_configs(Some(1), &[ConfigOp::set("log.cleaner.threads", "2")], false)
        .unwrap();
    store
        .alter_broker_configs(None, &[ConfigOp::set("log.retention.ms", "100")], false)
        .unwrap();
    let image = store.image();
    assert_eq!(
        image
            .broker_config(Some(1))
            .unwrap()
            .get("log.cleaner.threads")
            .unwrap(),
        "2"
    );
    assert_eq!(
        image
            .broker_config(None)
            .unwrap()
            .get("log.retention.ms")
            .unwrap(),
        "100"
    );
    assert!(image.broker_config(Some(2)).is_none());
    store
        .alter_broker_configs(Some(1), &[ConfigOp::delete("log.cleaner.threads")], false)
        .unwrap();
    assert!(store.image().broker_config(Some(1)).is_none());
    drop(store);
    let reopened = open(dir.path());
    assert_eq!(
        reopened
            .image()
            .broker_config(None)
            .unwrap()
            .get("log.retention.ms")
            .unwrap(),
        "100"
    );
}

#[test]
fn brokers_register_fenced_and_are_unfenced_once_caught_up() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let request = registration(1, "h1", 9092, Some("r1".into()));
    let epoch = store
        .runtime
        .block_on(store.controller.register(request.clone()))
        .unwrap();
    let broker = store.image().brokers.get(&1).unwrap().clone();
    assert!(broker.fenced, "a new registration is fenced");
    assert_eq!(broker.epoch, epoch);
    assert_eq!(
        (broker.host.as_str(), broker.port, broker.rack.as_deref()),
        ("h1", 9092, Some("r1"))
    );
    // The same incarnation registering again (a retry) gets its epoch back and writes nothing.
    let version = store.image().version;
    assert_eq!(
        store
            .runtime
            .block_on(store.controller.register(request))
            .unwrap(),
        epoch
    );
    assert_eq!(store.image().version, version);
    // Not caught up: stays fenced; caught up: unfenced.
    let reply = store.heartbeat(1, epoch, epoch - 1, false, false).unwrap();
    assert!(reply.is_fenced && !reply.is_caught_up);
    let reply = store.heartbeat(1, epoch, epoch, false, false).unwrap();
    assert!(!reply.is_fenced && reply.is_caught_up);
    assert!(!store.image().brokers[&1].fenced);
    // Another incarnation of a live broker is refused; a stale epoch and an unknown id too.
    let duplicate = store
        .runtime
        .block_on(store.controller.register(registration(1, "h2", 9093, None)))
        .unwrap_err();
    assert_eq!(duplicate.code, 101);
    assert_eq!(
        store
            .heartbeat(1, epoch + 1, i64::MAX, false, false)
            .unwrap_err()
            .code,
        77
    );
    assert_eq!(
        store
            .heartbeat(9, 0, i64::MAX, false, false)
            .unwrap_err()
            .code,
        102
    );
}

#[test]
fn a_broker_that_misses_heartbeats_is_fenced_and_its_leaderships_move() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let epochs: Vec<i64> = (1..=3)
        .map(|id| {
            store
                .register_broker(id, "h", 9090 + id as u16, None)
                .unwrap()
        })
        .collect();
    store.create_topic("t", 3, 3, &[], false).unwrap();
    let led_by_1 = store
        .image()
        .topic("t")
        .unwrap()
        .partitions
        .values()
        .filter(|p| p.leader == 1)
        .count();
    assert!(led_by_1 > 0);
    // Brokers 2 and 3 keep heartbeating; broker 1 falls silent.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for id in [2, 3] {
            store
                .heartbeat(id, epochs[id as usize - 1], i64::MAX, false, false)
                .unwrap();
        }
        let fenced = store
            .runtime
            .block_on(store.controller.fence_stale_brokers())
            .unwrap();
        if fenced.contains(&1) {
            break;
        }
        assert!(Instant::now() < deadline, "broker 1 was never fenced");
        std::thread::sleep(Duration::from_millis(50));
    }
    let image = store.image();
    assert!(image.brokers[&1].fenced && !image.brokers[&2].fenced && !image.brokers[&3].fenced);
    for partition in image.topic("t").unwrap().partitions.values() {
        assert!(
            partition.leader == 2 || partition.leader == 3,
            "{partition:?}"
        );
        assert!(
            !partition.isr.contains(&1),
            "a fenced broker leaves the ISR: {partition:?}"
        );
    }
    // Broker 1 comes back (a new incarnation) and is unfenced once caught up.
    let epoch = store.register_broker(1, "h", 9091, None).unwrap();
    assert!(epoch > epochs[0]);
    assert!(!store.image().brokers[&1].fenced);
}

#[test]
fn controlled_shutdown_moves_leadership_then_lets_the_broker_go() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let e1 = store.register_broker(1, "h", 9091, None).unwrap();
    store.register_broker(2, "h", 9092, None).unwrap();
    store.create_topic("t", 4, 2, &[], false).unwrap();
    let reply = store.heartbeat(1, e1, i64::MAX, false, true).unwrap();
    assert!(
        reply.should_shut_down,
        "broker 1 leads nothing once its partitions moved"
    );
    let image = store.image();
    assert!(image.brokers[&1].in_controlled_shutdown);
    assert!(image
        .topic("t")
        .unwrap()
        .partitions
        .values()
        .all(|p| p.leader == 2));
    // A broker shutting down takes no new replicas.
    assert_eq!(
        store.create_topic("u", 1, 2, &[], false).unwrap_err().code,
        ErrorCode::InvalidReplicationFactor.code()
    );
}

#[test]
fn the_only_replica_fenced_leaves_its_partitions_leaderless_until_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let epoch = store.register_broker(1, "h", 9091, None).unwrap();
    store.create_topic("t", 2, 1, &[], false).unwrap();
    store.heartbeat(1, epoch, i64::MAX, true, false).unwrap();
    let image = store.image();
    for partition in image.topic("t").unwrap().partitions.values() {
        assert_eq!(partition.leader, -1);
        assert_eq!(
            partition.isr,
            vec![1],
            "the last in-sync replica stays in the ISR"
        );
    }
    let before = image.topic("t").unwrap().partitions[&0].leader_epoch;
    // A restart: new incarnation, unfenced once caught up, and leader again at a new epoch.
    store.register_broker(1, "h", 9091, None).unwrap();
    let image = store.image();
    for partition in image.topic("t").unwrap().partitions.values() {
        assert_eq!(partition.leader, 1);
    }
    assert!(image.topic("t").unwrap().partitions[&0].leader_epoch > before);
}

#[test]
fn producer_id_blocks_never_repeat_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let store = open(dir.path());
        for _ in 0..2 {
            let (first, size) = store.allocate_producer_id_block(1000).unwrap();
            assert_eq!(size, 1000);
            seen.push(first);
        }
    }
    assert_eq!(seen, vec![0, 1000, 2000, 3000, 4000, 5000]);
}

#[test]
fn reopen_replays_to_an_identical_image() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let store = store_with_brokers(dir.path(), 3);
        store
            .create_topic("a", 3, 3, &configs(&[("compression.type", "zstd")]), false)
            .unwrap();
        store.create_topic("b", 1, 1, &[], false).unwrap();
        store.create_topic("c", 2, 2, &[], false).unwrap();
        store.delete_topic("b").unwrap();
        store.create_partitions("c", 5, false).unwrap();
        store
            .alter_topic_configs("a", &[ConfigOp::set("retention.ms", "-1")], false)
            .unwrap();
        store.allocate_producer_id_block(1000).unwrap();
        store.image()
    };
    let after = open(dir.path()).image();
    assert_eq!(*after, *before);
}

#[test]
fn torn_tail_is_truncated_on_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = store_with_brokers(dir.path(), 1);
        store.create_topic("kept", 1, 1, &[], false).unwrap();
        store.create_topic("torn", 1, 1, &[], false).unwrap();
    }
    let file = fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|ext| ext == "log"))
        .unwrap();
    let bytes = fs::read(&file).unwrap();
    fs::write(&file, &bytes[..bytes.len() - 5]).unwrap();
    let store = open(dir.path());
    let image = store.image();
    assert!(image.topic("kept").is_some());
    assert!(image.topic("torn").is_none());
    // The log continues cleanly after the truncation point.
    store.create_topic("next", 1, 1, &[], false).unwrap();
    drop(store);
    let image = open(dir.path()).image();
    assert!(image.topic("kept").is_some() && image.topic("next").is_some());
}

#[test]
fn subscribers_see_each_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_brokers(dir.path(), 1);
    let mut changes = store.subscribe();
    changes.borrow_and_update();
    store.create_topic("t", 1, 1, &[], false).unwrap();
    assert!(changes.has_changed().unwrap());
    let image = changes.borrow_and_update().clone();
    assert!(image.topic("t").is_some());
    assert!(!changes.has_changed().unwrap());
}

#[test]
fn topic_changes_between_images() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_brokers(dir.path(), 1);
    store.create_topic("stays", 1, 1, &[], false).unwrap();
    store.create_topic("grows", 1, 1, &[], false).unwrap();
    store.create_topic("goes", 1, 1, &[], false).unwrap();
    store.create_topic("reborn", 1, 1, &[], false).unwrap();
    let before = store.image();
    store.create_partitions("grows", 2, false).unwrap();
    store.delete_topic("goes").unwrap();
    store.delete_topic("reborn").unwrap();
    store.create_topic("reborn", 1, 1, &[], false).unwrap();
    store.create_topic("new", 1, 1, &[], false).unwrap();
    let after = store.image();
    let changes = after.topic_changes_since(&before);
    let names = |topics: &[std::sync::Arc<strom_metadata::TopicImage>]| {
        let mut names: Vec<String> = topics.iter().map(|t| t.name.clone()).collect();
        names.sort();
        names
    };
    assert_eq!(names(&changes.created), vec!["new", "reborn"]);
    assert_eq!(names(&changes.deleted), vec!["goes", "reborn"]);
    assert_eq!(names(&changes.updated), vec!["grows"]);
    assert!(after.topic_changes_since(&after).is_empty());
}

#[test]
fn concurrent_writers_are_serialized() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(store_with_brokers(dir.path(), 1));
    let threads: Vec<_> = (0..4)
        .map(|thread| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut blocks = Vec::new();
                for i in 0..10 {
                    store
                        .create_topic(&format!("t{thread}-{i}"), 1, 1, &[], false)
                        .unwrap();
                    blocks.push(store.allocate_producer_id_block(10).unwrap().0);
                }
                blocks
            })
        })
        .collect();
    let mut blocks: Vec<i64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    blocks.sort();
    assert_eq!(blocks, (0..40).map(|i| i * 10).collect::<Vec<_>>());
    assert_eq!(store.image().topics.len(), 40);
    let replayed = open(dir.path()).image();
    assert_eq!(*replayed, *store.image());
}

#[test]
fn snapshots_purge_the_log_and_rebuild_the_same_image() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        // A snapshot after every ~4 KiB of entries.
        let store = Store::open_with_snapshots(dir.path(), 1, None, 4096).unwrap();
        store
            .register_broker(1, "localhost", 9092, Some("rack-a".into()))
            .unwrap();
        for i in 0..60 {
            store
                .create_topic(
                    &format!("topic-{i}"),
                    3,
                    1,
                    &configs(&[("retention.ms", "1000")]),
                    false,
                )
                .unwrap();
        }
        store.delete_topic("topic-7").unwrap();
        store
            .alter_broker_configs(None, &[ConfigOp::set("log.retention.ms", "5000")], false)
            .unwrap();
        store.allocate_producer_id_block(1000).unwrap();
        store.runtime.block_on(store.quorum.snapshot_now()).unwrap();
        store.image()
    };
    let snapshots: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".checkpoint"))
        .collect();
    assert_eq!(
        snapshots.len(),
        1,
        "older snapshots are deleted: {snapshots:?}"
    );
    let segments: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".log"))
        .collect();
    assert_eq!(
        segments.len(),
        1,
        "the log is purged behind the snapshot: {segments:?}"
    );
    assert!(!segments.contains(&format!("{:020}.log", 0)));

    let store = Store::open_with_snapshots(dir.path(), 1, None, 4096).unwrap();
    let mut after = MetadataImage::clone(&store.image());
    after.version = before.version;
    assert_eq!(after, *before);
    // Producer ids continue after the snapshot, and the log keeps working.
    assert_eq!(store.allocate_producer_id_block(10).unwrap().0, 1000);
    store
        .create_topic("after-snapshot", 1, 1, &[], false)
        .unwrap();
    drop(store);
    assert!(open(dir.path()).image().topic("after-snapshot").is_some());
}

#[test]
fn corruption_inside_the_log_stops_the_node() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = store_with_brokers(dir.path(), 1);
        for i in 0..5 {
            store
                .create_topic(&format!("t{i}"), 1, 1, &[], false)
                .unwrap();
        }
    }
    let file = dir.path().join(format!("{:020}.log", 0));
    let mut bytes = fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    fs::write(&file, &bytes).unwrap();
    let error = Store::open(dir.path(), 1, None)
        .err()
        .expect("a corrupt log must not open");
    assert_eq!(error.code, ErrorCode::KafkaStorageError.code());
    assert!(error.message.contains("corrupt"), "{}", error.message);
}

/// One controller operation of a generated history.
#[derive(Debug, Clone)]
enum Operation {
    RegisterBroker(i32),
    CreateTopic(u8, i32),
    DeleteTopic(u8),
    AddPartitions(u8, i32),
    SetTopicConfig(u8, i64),
    SetBrokerDefault(i64),
    AllocateProducerIds,
    /// The broker asks to be fenced (as a missed session would do).
    FenceBroker(i32),
    /// The broker restarts: a new incarnation registers and catches up.
    RestartBroker(i32),
    /// The leader of a partition asks for the ISR made of the replicas a mask selects (plus
    /// itself, unless the mask says otherwise: the controller must refuse that).
    AlterIsr(u8, i32, u8),
    /// A reassignment of a partition to the brokers a mask selects (in a rotated order), or
    /// with mask 0 the cancellation of its reassignment.
    Reassign(u8, i32, u8),
}

fn operation() -> impl proptest::strategy::Strategy<Value = Operation> {
    use proptest::prelude::*;
    prop_oneof![
        (1..4i32).prop_map(Operation::RegisterBroker),
        (0..6u8, 1..4i32).prop_map(|(t, p)| Operation::CreateTopic(t, p)),
        (0..6u8).prop_map(Operation::DeleteTopic),
        (0..6u8, 1..6i32).prop_map(|(t, p)| Operation::AddPartitions(t, p)),
        (0..6u8, 1..100_000i64).prop_map(|(t, v)| Operation::SetTopicConfig(t, v)),
        (1..100_000i64).prop_map(Operation::SetBrokerDefault),
        Just(Operation::AllocateProducerIds),
        (1..4i32).prop_map(Operation::FenceBroker),
        (1..4i32).prop_map(Operation::RestartBroker),
        (0..6u8, 0..4i32, 0..16u8).prop_map(|(t, p, m)| Operation::AlterIsr(t, p, m)),
        (0..6u8, 0..4i32, 0..8u8).prop_map(|(t, p, m)| Operation::Reassign(t, p, m)),
    ]
}

/// Every partition's ISR is a non-empty subset of its replicas; a partition with a leader has it
/// in its ISR and live; a partition without one has no live broker in its ISR.
fn check_leadership_invariants(
    image: &MetadataImage,
) -> Result<(), proptest::test_runner::TestCaseError> {
    let live = |id: &i32| {
        image
            .brokers
            .get(id)
            .is_some_and(|b| !b.fenced && !b.in_controlled_shutdown)
    };
    for topic in image.topics.values() {
        for (index, partition) in &topic.partitions {
            let what = format!("{}-{index}: {partition:?}", topic.name);
            proptest::prop_assert!(!partition.isr.is_empty(), "empty ISR {}", what);
            proptest::prop_assert!(
                partition.isr.iter().all(|b| partition.replicas.contains(b)),
                "ISR outside replicas {}",
                what
            );
            proptest::prop_assert!(
                partition
                    .adding_replicas
                    .iter()
                    .chain(&partition.removing_replicas)
                    .all(|b| partition.replicas.contains(b)),
                "reassignment sets outside replicas {}",
                what
            );
            let mut distinct = partition.replicas.clone();
            distinct.sort_unstable();
            distinct.dedup();
            proptest::prop_assert_eq!(distinct.len(), partition.replicas.len(), "{}", what);
            if partition.leader == -1 {
                proptest::prop_assert!(
                    !partition.isr.iter().any(live),
                    "leaderless with a live ISR member {}",
                    what
                );
            } else {
                proptest::prop_assert!(
                    partition.isr.contains(&partition.leader),
                    "leader outside ISR {}",
                    what
                );
                proptest::prop_assert!(live(&partition.leader), "leader not live {}", what);
            }
        }
    }
    Ok(())
}

/// Reassigns `topic`-`index` to the brokers (1..=3) `mask` selects, starting the list at a
/// broker the mask also picks, or cancels its reassignment for mask 0. A per-partition refusal
/// is an error, as a failed operation.
fn reassign(store: &Store, topic: &str, index: i32, mask: u8) -> Result<(), MetadataError> {
    let target = (mask != 0).then(|| {
        let mut brokers: Vec<i32> = (1..=3).filter(|b| mask & (1 << (b - 1)) != 0).collect();
        let len = brokers.len();
        brokers.rotate_left(usize::from(mask) % len);
        brokers
    });
    let results = store.runtime.block_on(
        store
            .controller
            .alter_partition_reassignments(vec![(topic.to_string(), vec![(index, target)])]),
    )?;
    let outcome = &results[0].partitions[0];
    if outcome.error_code == 0 {
        Ok(())
    } else {
        Err(MetadataError::new(
            outcome.error_code,
            outcome.error_message.clone().unwrap_or_default(),
        ))
    }
}

/// The leader of `topic`-`index` (if any) asks for the replicas `mask` selects as its ISR, with
/// itself added unless bit 3 is set.
fn alter_isr(
    store: &Store,
    image: &MetadataImage,
    topic: &str,
    index: i32,
    mask: u8,
) -> Result<(), MetadataError> {
    let Some(topic) = image.topic(topic) else {
        return Ok(());
    };
    let Some(partition) = topic.partitions.get(&index) else {
        return Ok(());
    };
    let Some(broker) = image.brokers.get(&partition.leader) else {
        return Ok(());
    };
    let mut new_isr: Vec<i32> = partition
        .replicas
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, r)| *r)
        .collect();
    if mask & 8 == 0 && !new_isr.contains(&partition.leader) {
        new_isr.push(partition.leader);
    }
    store
        .alter_partition(AlterPartitionRequest {
            broker_id: partition.leader,
            broker_epoch: broker.epoch,
            topic_id: topic.id,
            partition: index,
            leader_epoch: partition.leader_epoch,
            partition_epoch: partition.partition_epoch,
            new_isr,
        })
        .map(drop)
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Whatever the history, a snapshot of the image (image -> records) rebuilds the same image,
    /// and so does replaying the log; invalid operations are refused without changing anything.
    #[test]
    fn snapshots_and_replay_rebuild_the_image(operations in proptest::collection::vec(operation(), 1..24)) {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_brokers(dir.path(), 1);
        for operation in &operations {
            let before = store.image();
            let result = match operation {
                Operation::RegisterBroker(id) => store.register_broker(*id, "h", 9000 + *id as u16, None).map(drop),
                Operation::CreateTopic(t, p) => store.create_topic(&format!("t{t}"), *p, (*p % 3 + 1) as i16, &[], false).map(drop),
                Operation::DeleteTopic(t) => store.delete_topic(&format!("t{t}")).map(drop),
                Operation::AddPartitions(t, p) => store.create_partitions(&format!("t{t}"), *p, false),
                Operation::SetTopicConfig(t, v) => store.alter_topic_configs(
                    &format!("t{t}"), &[ConfigOp::set("retention.ms", v.to_string())], false),
                Operation::SetBrokerDefault(v) => store.alter_broker_configs(
                    None, &[ConfigOp::set("log.retention.ms", v.to_string())], false),
                Operation::AllocateProducerIds => store.allocate_producer_id_block(100).map(drop),
                Operation::FenceBroker(id) => match before.brokers.get(id) {
                    Some(broker) => store.heartbeat(*id, broker.epoch, i64::MAX, true, false).map(drop),
                    None => Ok(()),
                },
                Operation::RestartBroker(id) => {
                    let fenced = match before.brokers.get(id) {
                        Some(broker) => store.heartbeat(*id, broker.epoch, i64::MAX, true, false).map(drop),
                        None => Ok(()),
                    };
                    fenced.and_then(|()| store.register_broker(*id, "h", 9000 + *id as u16, None).map(drop))
                }
                Operation::AlterIsr(t, p, mask) => alter_isr(&store, &before, &format!("t{t}"), *p, *mask),
                Operation::Reassign(t, p, mask) => reassign(&store, &format!("t{t}"), *p, *mask),
            };
            check_leadership_invariants(&store.image())?;
            if result.is_err() {
                proptest::prop_assert_eq!(&*store.image(), &*before);
            }
        }
        let image = store.image();
        let records: Vec<_> = strom_metadata::snapshot::image_records(&image);
        let mut rebuilt = MetadataImage::empty(image.cluster_id.clone());
        rebuilt.apply_entry(image.last_offset, &records).unwrap();
        rebuilt.version = image.version;
        proptest::prop_assert_eq!(&rebuilt, &*image);
        drop(store);
        let replayed = open(dir.path()).image();
        proptest::prop_assert_eq!(&*replayed, &*image);
    }
}
