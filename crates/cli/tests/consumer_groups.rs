//! Consumer groups end to end with librdkafka against a real `strom` process: partitions split
//! between the members of a group, every group reads everything, committed offsets (with their
//! metadata) survive a SIGKILL, partitions of a consumer that leaves, stops polling or dies
//! move to the others, the cooperative-sticky assignor moves only what it must, and a static
//! member restarts without a rebalance.

// Test code. (clippy.toml's allow-*-in-tests does not reach integration-test helpers.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::typed::TypedClient;
use common::{StromProcess, OP_TIMEOUT, WAIT_DEADLINE};
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use strom_protocol::codec::{Decode, Encode, Encoder};
use strom_protocol::messages::join_group_request::{JoinGroupRequest, JoinGroupRequestProtocol};
use strom_protocol::messages::join_group_response::JoinGroupResponse;
use strom_protocol::messages::sync_group_request::SyncGroupRequest;
use strom_protocol::messages::sync_group_response::SyncGroupResponse;
use strom_protocol::ErrorCode;

const PARTITIONS: i32 = 4;

/// Broker settings for group tests: no initial rebalance delay, few offsets partitions.
const BROKER_PROPS: &[(&str, &str)] = &[
    ("group.initial.rebalance.delay.ms", "0"),
    ("offsets.topic.num.partitions", "5"),
];

/// Counts the rebalance callbacks a consumer sees and the partitions it had revoked.
#[derive(Default)]
struct Counting {
    assigns: AtomicUsize,
    revoked_partitions: AtomicUsize,
}

#[derive(Clone, Default)]
struct CountingContext(Arc<Counting>);

impl ClientContext for CountingContext {}

impl ConsumerContext for CountingContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(_) => {
                self.0.assigns.fetch_add(1, Ordering::SeqCst);
            }
            Rebalance::Revoke(partitions) => {
                self.0
                    .revoked_partitions
                    .fetch_add(partitions.count(), Ordering::SeqCst);
            }
            Rebalance::Error(_) => {}
        }
    }
}

type GroupConsumer = BaseConsumer<CountingContext>;

fn client_config(broker: &StromProcess) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", broker.bootstrap())
        .set("log_level", "3")
        .set("socket.timeout.ms", "10000");
    config
}

/// A subscribed group member with short session and heartbeat intervals.
fn member(
    broker: &StromProcess,
    group: &str,
    topic: &str,
    extra: &[(&str, &str)],
) -> (GroupConsumer, Arc<Counting>) {
    let mut config = client_config(broker);
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("allow.auto.create.topics", "false")
        .set("fetch.wait.max.ms", "100")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500");
    for (key, value) in extra {
        config.set(*key, *value);
    }
    let context = CountingContext::default();
    let counting = context.0.clone();
    let consumer: GroupConsumer = config
        .create_with_context(context)
        .expect("create group consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    (consumer, counting)
}

fn create_topic(broker: &StromProcess, topic: &str, partitions: i32) {
    let admin = broker.admin();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let results = runtime
        .block_on(admin.create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &StromProcess::admin_options(),
        ))
        .expect("create topics");
    for result in results {
        result.expect("topic created");
    }
    broker.partition_count(topic);
}

/// Produces `count` records spread round-robin over `partitions`, values `prefix-i`.
fn produce(broker: &StromProcess, topic: &str, partitions: i32, prefix: &str, count: usize) {
    let producer: BaseProducer = client_config(broker)
        .set("linger.ms", "5")
        .set("message.timeout.ms", "15000")
        .create()
        .expect("create producer");
    for i in 0..count {
        let value = format!("{prefix}-{i}");
        let partition = i32::try_from(i).expect("index fits i32") % partitions;
        producer
            .send(
                BaseRecord::<(), _>::to(topic)
                    .payload(&value)
                    .partition(partition),
            )
            .unwrap_or_else(|(error, _)| panic!("enqueue failed: {error}"));
    }
    producer.flush(WAIT_DEADLINE).expect("flush producer");
}

/// The partitions currently assigned to a consumer.
fn assigned(consumer: &GroupConsumer) -> BTreeSet<i32> {
    consumer
        .assignment()
        .map(|list| list.elements().iter().map(|e| e.partition()).collect())
        .unwrap_or_default()
}

/// What each consumer received, as (partition, offset, value).
type Received = Vec<Vec<(i32, i64, String)>>;

/// Polls every consumer until `done` holds, panicking with the broker log at the deadline.
fn poll_until(
    broker: &StromProcess,
    consumers: &[&GroupConsumer],
    what: &str,
    mut done: impl FnMut(&Received) -> bool,
) -> Received {
    let until = Instant::now() + WAIT_DEADLINE * 2;
    let mut received: Received = vec![Vec::new(); consumers.len()];
    while !done(&received) {
        assert!(
            Instant::now() < until,
            "timed out waiting for: {what}\n--- broker log ---\n{}",
            broker.log_contents()
        );
        for (index, consumer) in consumers.iter().enumerate() {
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(50)) {
                let value =
                    String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned();
                received[index].push((message.partition(), message.offset(), value));
            }
        }
    }
    received
}

/// Polls until the consumers' assignments are disjoint, cover every partition and each holds
/// at least one.
fn wait_for_split(broker: &StromProcess, consumers: &[&GroupConsumer]) {
    poll_until(
        broker,
        consumers,
        "partitions split between all members",
        |_| {
            let assignments: Vec<BTreeSet<i32>> = consumers.iter().map(|c| assigned(c)).collect();
            let total: usize = assignments.iter().map(BTreeSet::len).sum();
            let union: BTreeSet<i32> = assignments.iter().flatten().copied().collect();
            assignments.iter().all(|a| !a.is_empty())
                && total == union.len()
                && union.len() == PARTITIONS as usize
        },
    );
}

/// Polls until `consumer` owns `count` partitions.
fn wait_for_partitions(broker: &StromProcess, consumer: &GroupConsumer, count: usize, what: &str) {
    poll_until(broker, &[consumer], what, |_| {
        assigned(consumer).len() == count
    });
}

fn total(received: &Received) -> usize {
    received.iter().map(Vec::len).sum()
}

fn distinct_values(received: &Received) -> HashSet<String> {
    received
        .iter()
        .flatten()
        .map(|(_, _, value)| value.clone())
        .collect()
}

#[test]
fn two_members_split_the_partitions_and_a_second_group_reads_everything_again() {
    let broker = StromProcess::start(BROKER_PROPS);
    create_topic(&broker, "split", PARTITIONS);
    let (first, _) = member(&broker, "readers", "split", &[]);
    let (second, _) = member(&broker, "readers", "split", &[]);
    wait_for_split(&broker, &[&first, &second]);

    produce(&broker, "split", PARTITIONS, "record", 200);
    let received = poll_until(&broker, &[&first, &second], "200 records", |r| {
        total(r) >= 200
    });
    assert_eq!(total(&received), 200, "no record read twice");
    assert_eq!(distinct_values(&received).len(), 200, "every record read");
    for (consumer, got) in [&first, &second].iter().zip(&received) {
        let mine = assigned(consumer);
        assert!(
            got.iter().all(|(p, _, _)| mine.contains(p)),
            "records only from own partitions"
        );
    }

    let (auditor, _) = member(&broker, "auditors", "split", &[]);
    let again = poll_until(&broker, &[&auditor], "a second group reads all 200", |r| {
        total(r) >= 200
    });
    assert_eq!(distinct_values(&again).len(), 200);
}

#[test]
fn committed_offsets_and_metadata_survive_kill_9() {
    let mut broker = StromProcess::start(BROKER_PROPS);
    create_topic(&broker, "durable", 1);
    produce(&broker, "durable", 1, "v", 100);

    let mut commit = TopicPartitionList::new();
    commit
        .add_partition_offset("durable", 0, Offset::Offset(40))
        .expect("add partition");
    commit
        .find_partition("durable", 0)
        .expect("partition in list")
        .set_metadata("checkpoint-40");
    {
        let (consumer, _) = member(&broker, "keeper", "durable", &[]);
        poll_until(&broker, &[&consumer], "first 40 records", |r| {
            total(r) >= 40
        });
        consumer
            .commit(&commit, CommitMode::Sync)
            .expect("commit offsets");
    }

    broker.kill_9();
    broker.restart();

    let (consumer, _) = member(&broker, "keeper", "durable", &[]);
    let mut wanted = TopicPartitionList::new();
    wanted.add_partition("durable", 0);
    let committed = consumer
        .committed_offsets(wanted, OP_TIMEOUT)
        .expect("fetch committed offsets");
    let element = committed
        .find_partition("durable", 0)
        .expect("partition returned");
    assert_eq!(element.offset(), Offset::Offset(40));
    assert_eq!(element.metadata(), "checkpoint-40");
    // A partition list from committed_offsets() must not outlive its consumer: librdkafka's
    // destroy would wait forever for the partition references it holds (librdkafka #3796).
    drop(committed);
    let received = poll_until(
        &broker,
        &[&consumer],
        "resume at the committed offset",
        |r| total(r) > 0,
    );
    assert_eq!(
        received[0][0].1, 40,
        "consumption resumes at the committed offset"
    );
    assert_eq!(received[0][0].2, "v-40");
}

#[test]
fn partitions_of_a_closed_member_move_to_the_remaining_one() {
    let broker = StromProcess::start(BROKER_PROPS);
    create_topic(&broker, "handover", PARTITIONS);
    let (stays, _) = member(&broker, "handover-group", "handover", &[]);
    let (leaves, _) = member(&broker, "handover-group", "handover", &[]);
    wait_for_split(&broker, &[&stays, &leaves]);

    produce(&broker, "handover", PARTITIONS, "before", 100);
    poll_until(&broker, &[&stays, &leaves], "the first 100 records", |r| {
        total(r) >= 100
    });
    stays
        .commit_consumer_state(CommitMode::Sync)
        .expect("commit");
    leaves
        .commit_consumer_state(CommitMode::Sync)
        .expect("commit");
    drop(leaves);

    wait_for_partitions(
        &broker,
        &stays,
        PARTITIONS as usize,
        "the remaining member owns all",
    );
    produce(&broker, "handover", PARTITIONS, "after", 100);
    let received = poll_until(&broker, &[&stays], "the second 100 records", |r| {
        r[0].iter()
            .filter(|(_, _, v)| v.starts_with("after"))
            .count()
            >= 100
    });
    assert!(
        received[0].iter().all(|(_, _, v)| v.starts_with("after")),
        "committed records of the departed member are not read again"
    );
}

#[test]
fn cooperative_sticky_moves_only_the_partitions_it_must() {
    let broker = StromProcess::start(BROKER_PROPS);
    create_topic(&broker, "sticky", PARTITIONS);
    let cooperative = [("partition.assignment.strategy", "cooperative-sticky")];
    let (first, first_counts) = member(&broker, "sticky-group", "sticky", &cooperative);
    wait_for_partitions(
        &broker,
        &first,
        PARTITIONS as usize,
        "the first member owns all",
    );
    let (second, _) = member(&broker, "sticky-group", "sticky", &cooperative);
    wait_for_split(&broker, &[&first, &second]);
    assert_eq!(
        first_counts.revoked_partitions.load(Ordering::SeqCst),
        2,
        "only the two partitions that moved were revoked"
    );

    produce(&broker, "sticky", PARTITIONS, "coop", 100);
    let received = poll_until(&broker, &[&first, &second], "100 records", |r| {
        total(r) >= 100
    });
    assert_eq!(distinct_values(&received).len(), 100);
}

#[test]
fn static_member_restarts_without_a_rebalance() {
    let broker = StromProcess::start(BROKER_PROPS);
    create_topic(&broker, "static", PARTITIONS);
    let first_id = [("group.instance.id", "first")];
    let (first, _) = member(&broker, "static-group", "static", &first_id);
    let (second, second_counts) = member(
        &broker,
        "static-group",
        "static",
        &[("group.instance.id", "second")],
    );
    wait_for_split(&broker, &[&first, &second]);
    let first_assignment = assigned(&first);
    let second_assignment = assigned(&second);
    let second_assigns = second_counts.assigns.load(Ordering::SeqCst);

    // A static member does not leave its group on close; its replacement (same instance id)
    // takes over its assignment within the session timeout.
    drop(first);
    let (restarted, _) = member(&broker, "static-group", "static", &first_id);
    poll_until(
        &broker,
        &[&restarted, &second],
        "the restarted member's partitions",
        |_| assigned(&restarted) == first_assignment,
    );
    // What must not happen cannot be awaited: give a rebalance, were one triggered, four
    // heartbeat intervals to reach the other member.
    let settle = Instant::now() + Duration::from_secs(2);
    poll_until(&broker, &[&restarted, &second], "a quiet period", |_| {
        Instant::now() >= settle
    });
    assert_eq!(assigned(&second), second_assignment);
    assert_eq!(
        second_counts.assigns.load(Ordering::SeqCst),
        second_assigns,
        "the other member saw no rebalance"
    );
}

#[test]
fn member_that_stops_polling_leaves_after_max_poll_interval() {
    let broker = StromProcess::start(BROKER_PROPS);
    create_topic(&broker, "stalled", PARTITIONS);
    let (active, _) = member(&broker, "stalled-group", "stalled", &[]);
    let (stalls, _) = member(
        &broker,
        "stalled-group",
        "stalled",
        &[("max.poll.interval.ms", "7000")],
    );
    wait_for_split(&broker, &[&active, &stalls]);
    // `stalls` is never polled again: once max.poll.interval.ms passes it leaves the group.
    wait_for_partitions(
        &broker,
        &active,
        PARTITIONS as usize,
        "the active member owns all",
    );
}
/// A group member speaking the protocol itself, so that it can vanish without a LeaveGroup the
/// way a killed process does.
struct RawMember {
    client: TypedClient,
}

impl RawMember {
    const JOIN_GROUP: i16 = 11;
    const SYNC_GROUP: i16 = 14;
    const JOIN_VERSION: i16 = 5;
    const SYNC_VERSION: i16 = 3;

    fn connect(broker: &StromProcess) -> RawMember {
        RawMember {
            client: TypedClient::connect(broker, "raw-member"),
        }
    }

    fn call<Response: Decode>(
        &mut self,
        api_key: i16,
        version: i16,
        request: &impl Encode,
    ) -> Response {
        self.client.call(api_key, version, request)
    }

    /// Joins `group` as a range-assignor consumer of `topic` and syncs; returns the assignment.
    fn join_and_sync(&mut self, group: &str, topic: &str, session_timeout_ms: i32) -> bytes::Bytes {
        let mut subscription = Encoder::new();
        subscription.put_i16(0);
        subscription.put_array_len(Some(1), false);
        subscription.put_string(topic, false);
        subscription.put_nullable_bytes(None, false);
        let mut request = JoinGroupRequest {
            group_id: group.into(),
            session_timeout_ms,
            rebalance_timeout_ms: 30_000,
            member_id: String::new(),
            group_instance_id: None,
            protocol_type: "consumer".into(),
            protocols: vec![JoinGroupRequestProtocol {
                name: "range".into(),
                metadata: subscription.into_bytes(),
            }],
            reason: None,
        };
        let first: JoinGroupResponse = self.call(Self::JOIN_GROUP, Self::JOIN_VERSION, &request);
        assert_eq!(first.error_code, ErrorCode::MemberIdRequired.code());
        request.member_id = first.member_id;
        let joined: JoinGroupResponse = self.call(Self::JOIN_GROUP, Self::JOIN_VERSION, &request);
        assert_eq!(
            joined.error_code,
            ErrorCode::None.code(),
            "join: {joined:?}"
        );
        let sync = SyncGroupRequest {
            group_id: group.into(),
            generation_id: joined.generation_id,
            member_id: joined.member_id,
            ..Default::default()
        };
        let synced: SyncGroupResponse = self.call(Self::SYNC_GROUP, Self::SYNC_VERSION, &sync);
        assert_eq!(
            synced.error_code,
            ErrorCode::None.code(),
            "sync: {synced:?}"
        );
        synced.assignment
    }
}

#[test]
fn partitions_of_a_killed_member_move_after_its_session_timeout() {
    let broker = StromProcess::start(BROKER_PROPS);
    create_topic(&broker, "orphaned", PARTITIONS);
    let (survivor, _) = member(&broker, "orphan-group", "orphaned", &[]);
    poll_until(
        &broker,
        &[&survivor],
        "the first member owns everything",
        |_| assigned(&survivor).len() == PARTITIONS as usize,
    );

    // The raw member's JoinGroup waits for the survivor to rejoin, so poll it meanwhile.
    let raw = std::thread::spawn({
        let mut raw = RawMember::connect(&broker);
        move || {
            let assignment = raw.join_and_sync("orphan-group", "orphaned", 8_000);
            (raw, assignment)
        }
    });
    poll_until(&broker, &[&survivor], "the raw member joined", |_| {
        raw.is_finished()
    });
    let (raw, assignment) = raw.join().expect("raw member thread");
    assert!(!assignment.is_empty(), "the raw member got partitions");
    poll_until(&broker, &[&survivor], "the survivor gave up half", |_| {
        assigned(&survivor).len() == PARTITIONS as usize / 2
    });

    // The raw member dies: no LeaveGroup, no more heartbeats.
    drop(raw);
    poll_until(
        &broker,
        &[&survivor],
        "the survivor owns every partition again",
        |_| assigned(&survivor).len() == PARTITIONS as usize,
    );
}
