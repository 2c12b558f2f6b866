"""Consumer groups against strom with two independent client stacks: kafka-python (pure Python) and
confluent-kafka (librdkafka). Members of one group split a topic's partitions and together read each
record once; committed offsets make a later member of the group resume where the group stopped (also
across a broker crash); the admin APIs list, describe, reset and delete groups and their offsets.

Every broker here runs with `group.initial.rebalance.delay.ms=0` so a group forms as soon as its
first member joins, and every wait is a poll loop bounded by a deadline."""

from __future__ import annotations

import uuid
from typing import Callable

import confluent_kafka
import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from conftest import StromBroker, unique_topic, wait_until

REQUEST_TIMEOUT_MS = 10_000
TIMEOUT_S = 10.0
PARTITIONS = 4
# Group timings short enough that a rebalance completes within a test's deadlines.
SESSION_TIMEOUT_MS = 10_000
HEARTBEAT_INTERVAL_MS = 500
MAX_POLL_INTERVAL_MS = 10_000
# How long a consumer keeps polling to show that nothing more arrives.
QUIET_POLL_MS = 500


def unique_group(prefix: str) -> str:
    """A group id no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def group_broker(start_strom: Callable[..., StromBroker]) -> StromBroker:
    """A broker on which a group's first member does not wait for others before the group forms."""
    return start_strom({"group.initial.rebalance.delay.ms": "0"})


# ---------------------------------------------------------------------------------------------
# kafka-python helpers


def kp_admin(broker: StromBroker) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=REQUEST_TIMEOUT_MS)


def kp_create_topic(broker: StromBroker, topic: str, partitions: int) -> None:
    admin = kp_admin(broker)
    try:
        admin.create_topics(
            {topic: {"num_partitions": partitions, "replication_factor": 1}}, timeout_ms=REQUEST_TIMEOUT_MS
        )
    finally:
        admin.close()


def kp_produce(broker: StromBroker, topic: str, partitions: int, per_partition: int, tag: str) -> set:
    """Appends `per_partition` records to each partition; returns their (partition, offset, value)."""
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap, acks="all", request_timeout_ms=REQUEST_TIMEOUT_MS
    )
    try:
        futures = [
            (partition, value, producer.send(topic, value=value, partition=partition))
            for i in range(per_partition)
            for partition in range(partitions)
            for value in [f"{tag}-{partition}-{i}".encode()]
        ]
        producer.flush(timeout=TIMEOUT_S)
        return {(partition, f.get(timeout=TIMEOUT_S).offset, value) for partition, value, f in futures}
    finally:
        producer.close()


def kp_group_consumer(broker: StromBroker, topic: str, group: str) -> KafkaConsumer:
    """A kafka-python group member subscribed to `topic`, reading from the start without a commit."""
    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
        max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
        request_timeout_ms=REQUEST_TIMEOUT_MS,
    )
    consumer.subscribe([topic])
    return consumer


def kp_poll(consumer: KafkaConsumer, timeout_ms: int = 100) -> list:
    """One poll; returns the records as (partition, offset, value)."""
    return [
        (record.partition, record.offset, record.value)
        for batch in consumer.poll(timeout_ms=timeout_ms).values()
        for record in batch
    ]


def kp_read(consumers: list[KafkaConsumer], count: int) -> list[list]:
    """Polls every consumer in turn until together they have `count` records, then a little longer
    to show nothing more comes; returns each consumer's records."""
    received: list[list] = [[] for _ in consumers]

    def have_all() -> bool:
        for index, consumer in enumerate(consumers):
            received[index].extend(kp_poll(consumer))
        return sum(map(len, received)) >= count

    wait_until(have_all, lambda: f"{count} records (have {sum(map(len, received))})")
    for index, consumer in enumerate(consumers):
        received[index].extend(kp_poll(consumer, QUIET_POLL_MS))
    return received


def kp_wait_for_split(consumers: list[KafkaConsumer], topic: str, partitions: int) -> None:
    """Polls the members until each owns a non-empty share and the shares partition the topic."""

    def assignments() -> list[set]:
        return [{tp.partition for tp in consumer.assignment()} for consumer in consumers]

    def split() -> bool:
        for consumer in consumers:
            consumer.poll(timeout_ms=50)
        owned = assignments()
        together = [p for share in owned for p in share]
        return all(owned) and sorted(together) == list(range(partitions))

    wait_until(split, lambda: f"the members to split {topic}'s partitions (have {assignments()})")


def kp_committed(broker: StromBroker, group: str) -> dict[int, int]:
    """The group's committed offsets by partition, read with the admin client."""
    admin = kp_admin(broker)
    try:
        offsets = admin.list_group_offsets({group: None})[group]
    finally:
        admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items()}


# ---------------------------------------------------------------------------------------------
# kafka-python tests


def test_kafka_python_members_split_partitions_and_commits_resume(start_strom):
    broker = group_broker(start_strom)
    topic = unique_topic("kp-group")
    group = unique_group("kp-group")
    kp_create_topic(broker, topic, PARTITIONS)

    first = kp_group_consumer(broker, topic, group)
    second = kp_group_consumer(broker, topic, group)
    try:
        kp_wait_for_split([first, second], topic, PARTITIONS)
        sent = kp_produce(broker, topic, PARTITIONS, per_partition=10, tag="old")
        received = kp_read([first, second], len(sent))
        # Each member reads only its own partitions; together every record exactly once.
        for consumer, records in zip((first, second), received):
            owned = {tp.partition for tp in consumer.assignment()}
            assert {partition for partition, _, _ in records} <= owned
        everything = received[0] + received[1]
        assert len(everything) == len(sent)
        assert set(everything) == sent
        first.commit()
        second.commit()

        admin = kp_admin(broker)
        try:
            described = admin.describe_groups([group])[group]
        finally:
            admin.close()
        assert described["group_state"] == "Stable"
        shares = [
            {
                partition
                for owned in member["member_assignment"]["assigned_partitions"]
                for partition in owned["partitions"]
            }
            for member in described["members"]
        ]
        assert sorted(len(share) for share in shares) == [2, 2]
        assert set.union(*shares) == set(range(PARTITIONS))
    finally:
        first.close()
        second.close()
    assert kp_committed(broker, group) == {p: 10 for p in range(PARTITIONS)}

    # A new member of the group resumes after the committed offsets: only new records.
    newer = kp_produce(broker, topic, PARTITIONS, per_partition=3, tag="new")
    resumed = kp_group_consumer(broker, topic, group)
    try:
        [records] = kp_read([resumed], len(newer))
        assert sorted(records) == sorted(newer)
        resumed.commit()
    finally:
        resumed.close()
    assert kp_committed(broker, group) == {p: 13 for p in range(PARTITIONS)}

    # Another group has no commits: it reads everything from the start.
    other = kp_group_consumer(broker, topic, unique_group("kp-other"))
    try:
        [records] = kp_read([other], len(sent) + len(newer))
        assert sorted(records) == sorted(sent | newer)
    finally:
        other.close(autocommit=False)


def test_kafka_python_admin_lists_describes_and_deletes_groups(start_strom):
    broker = group_broker(start_strom)
    topic = unique_topic("kp-admin-group")
    group = unique_group("kp-admin-group")
    kp_create_topic(broker, topic, 2)
    sent = kp_produce(broker, topic, 2, per_partition=5, tag="v")

    admin = kp_admin(broker)
    member = kp_group_consumer(broker, topic, group)
    try:
        [records] = kp_read([member], len(sent))
        assert set(records) == sent
        member.commit()

        listed = {g["group_id"]: g for g in admin.list_groups()}
        assert group in listed
        assert listed[group]["protocol_type"] == "consumer"

        described = admin.describe_groups([group])[group]
        assert described["error"] is None
        assert described["group_state"] == "Stable"
        assert described["protocol_type"] == "consumer"
        assert len(described["members"]) == 1
        # A group with a live member cannot be deleted.
        assert admin.delete_groups([group]) == {group: "NonEmptyGroupError"}
        [description] = described["members"]
        assert description["client_id"]
        # kafka-python decodes the member's subscription and assignment: both partitions of the topic.
        assert description["member_metadata"]["topics"] == [topic]
        assert {
            (owned["topic"], partition)
            for owned in description["member_assignment"]["assigned_partitions"]
            for partition in owned["partitions"]
        } == {(topic, 0), (topic, 1)}
    finally:
        member.close()

    try:
        offsets = admin.list_group_offsets({group: None})[group]
        assert {tp: meta.offset for tp, meta in offsets.items()} == {
            TopicPartition(topic, 0): 5,
            TopicPartition(topic, 1): 5,
        }
        # After the only member left, the group is empty: it can be deleted, with its offsets.
        wait_until(
            lambda: admin.describe_groups([group])[group]["group_state"] == "Empty",
            f"{group} to become Empty",
        )
        assert admin.delete_groups([group]) == {group: "OK"}
        assert group not in {g["group_id"] for g in admin.list_groups()}
        assert admin.list_group_offsets({group: None})[group] == {}
        # Deleting it again: the group no longer exists.
        assert admin.delete_groups([group]) == {group: "GroupIdNotFoundError"}
    finally:
        admin.close()


def test_kafka_python_committed_offsets_survive_broker_crash(start_strom):
    broker = group_broker(start_strom)
    topic = unique_topic("kp-crash-group")
    group = unique_group("kp-crash-group")
    kp_create_topic(broker, topic, 2)
    sent = kp_produce(broker, topic, 2, per_partition=6, tag="before")

    member = kp_group_consumer(broker, topic, group)
    try:
        [records] = kp_read([member], len(sent))
        assert set(records) == sent
        # An explicit commit of chosen offsets (with metadata), not just the positions.
        member.commit(
            {
                TopicPartition(topic, 0): OffsetAndMetadata(6, "zero", -1),
                TopicPartition(topic, 1): OffsetAndMetadata(4, "one", -1),
            }
        )
    finally:
        member.close(autocommit=False)

    broker.restart(crash=True)

    admin = kp_admin(broker)
    try:
        offsets = admin.list_group_offsets({group: None})[group]
    finally:
        admin.close()
    assert {tp.partition: (meta.offset, meta.metadata) for tp, meta in offsets.items()} == {
        0: (6, "zero"),
        1: (4, "one"),
    }

    newer = kp_produce(broker, topic, 2, per_partition=2, tag="after")
    resumed = kp_group_consumer(broker, topic, group)
    try:
        [records] = kp_read([resumed], len(newer) + 2)
        # Partition 1 resumes at offset 4 (two old records), partition 0 after all old ones.
        expected = newer | {r for r in sent if r[0] == 1 and r[1] >= 4}
        assert sorted(records) == sorted(expected)
    finally:
        resumed.close(autocommit=False)


# ---------------------------------------------------------------------------------------------
# confluent-kafka helpers


def ck_admin(broker: StromBroker) -> AdminClient:
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def ck_produce(broker: StromBroker, topic: str, partitions: int, per_partition: int, tag: str) -> set:
    """Appends `per_partition` records to each partition; returns their (partition, offset, value)."""
    producer = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    delivered: set = set()
    errors: list = []

    def on_delivery(error, message):
        if error is not None:
            errors.append(error)
        else:
            delivered.add((message.partition(), message.offset(), message.value()))

    for i in range(per_partition):
        for partition in range(partitions):
            producer.produce(
                topic, value=f"{tag}-{partition}-{i}".encode(), partition=partition, on_delivery=on_delivery
            )
    assert producer.flush(TIMEOUT_S) == 0
    assert errors == []
    assert len(delivered) == partitions * per_partition
    return delivered


def ck_create_topic(broker: StromBroker, topic: str, partitions: int) -> None:
    admin = ck_admin(broker)
    new_topic = confluent_kafka.admin.NewTopic(topic, num_partitions=partitions, replication_factor=1)
    for future in admin.create_topics([new_topic], request_timeout=TIMEOUT_S).values():
        future.result(timeout=TIMEOUT_S)


def ck_group_consumer(broker: StromBroker, topic: str, group: str, **config) -> confluent_kafka.Consumer:
    """A librdkafka group member subscribed to `topic`, reading from the start without a commit."""
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            "session.timeout.ms": SESSION_TIMEOUT_MS,
            "heartbeat.interval.ms": HEARTBEAT_INTERVAL_MS,
            "max.poll.interval.ms": MAX_POLL_INTERVAL_MS,
            **config,
        }
    )
    consumer.subscribe([topic])
    return consumer


def ck_poll(consumer: confluent_kafka.Consumer, timeout_s: float = 0.1) -> list:
    """One consume call; returns the records as (partition, offset, value)."""
    records = []
    for message in consumer.consume(num_messages=100, timeout=timeout_s):
        if message.error():
            raise KafkaException(message.error())
        records.append((message.partition(), message.offset(), message.value()))
    return records


def ck_read(consumers: list[confluent_kafka.Consumer], count: int) -> list[list]:
    """Polls every consumer in turn until together they have `count` records, then a little longer
    to show nothing more comes; returns each consumer's records."""
    received: list[list] = [[] for _ in consumers]

    def have_all() -> bool:
        for index, consumer in enumerate(consumers):
            received[index].extend(ck_poll(consumer))
        return sum(map(len, received)) >= count

    wait_until(have_all, lambda: f"{count} records (have {sum(map(len, received))})")
    for index, consumer in enumerate(consumers):
        received[index].extend(ck_poll(consumer, QUIET_POLL_MS / 1000))
    return received


def ck_committed(admin: AdminClient, group: str) -> dict[int, int]:
    """The group's committed offsets by partition."""
    futures = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])
    result = futures[group].result(timeout=TIMEOUT_S)
    return {tp.partition: tp.offset for tp in result.topic_partitions}


# ---------------------------------------------------------------------------------------------
# confluent-kafka tests


def test_confluent_group_commit_and_admin_lifecycle(start_strom):
    broker = group_broker(start_strom)
    topic = unique_topic("ck-group")
    group = unique_group("ck-group")
    ck_create_topic(broker, topic, PARTITIONS)
    sent = ck_produce(broker, topic, PARTITIONS, per_partition=5, tag="v")

    admin = ck_admin(broker)
    member = ck_group_consumer(broker, topic, group)
    try:
        [records] = ck_read([member], len(sent))
        assert sorted(records) == sorted(sent)
        committed = member.commit(asynchronous=False)
        assert {(tp.partition, tp.offset) for tp in committed if tp.error is None} == {
            (p, 5) for p in range(PARTITIONS)
        }

        listed = admin.list_consumer_groups(request_timeout=TIMEOUT_S).result(timeout=TIMEOUT_S)
        assert listed.errors == []
        listing = {g.group_id: g for g in listed.valid}
        assert group in listing
        assert not listing[group].is_simple_consumer_group
        assert listing[group].state == confluent_kafka.ConsumerGroupState.STABLE

        description = admin.describe_consumer_groups([group], request_timeout=TIMEOUT_S)[group].result(
            timeout=TIMEOUT_S
        )
        assert description.group_id == group
        assert description.state == confluent_kafka.ConsumerGroupState.STABLE
        assert not description.is_simple_consumer_group
        assert description.partition_assignor == "range"
        [described_member] = description.members
        deleting = admin.delete_consumer_groups([group], request_timeout=TIMEOUT_S)[group]
        with pytest.raises(KafkaException) as not_empty:
            deleting.result(timeout=TIMEOUT_S)
        assert not_empty.value.args[0].code() == KafkaError.NON_EMPTY_GROUP
        assert {(tp.topic, tp.partition) for tp in described_member.assignment.topic_partitions} == {
            (topic, p) for p in range(PARTITIONS)
        }
    finally:
        member.close()

    assert ck_committed(admin, group) == {p: 5 for p in range(PARTITIONS)}
    wait_until(
        lambda: admin.describe_consumer_groups([group])[group].result(timeout=TIMEOUT_S).state
        == confluent_kafka.ConsumerGroupState.EMPTY,
        f"{group} to become Empty",
    )

    # Reset every partition of the (empty) group to offset 0: a new member re-reads everything.
    reset = ConsumerGroupTopicPartitions(
        group, [confluent_kafka.TopicPartition(topic, p, 0) for p in range(PARTITIONS)]
    )
    altered = admin.alter_consumer_group_offsets([reset])[group].result(timeout=TIMEOUT_S)
    assert all(tp.error is None for tp in altered.topic_partitions)
    assert ck_committed(admin, group) == {p: 0 for p in range(PARTITIONS)}
    rereader = ck_group_consumer(broker, topic, group)
    try:
        [records] = ck_read([rereader], len(sent))
        assert sorted(records) == sorted(sent)
    finally:
        rereader.close()

    wait_until(
        lambda: admin.describe_consumer_groups([group])[group].result(timeout=TIMEOUT_S).state
        == confluent_kafka.ConsumerGroupState.EMPTY,
        f"{group} to become Empty again",
    )
    admin.delete_consumer_groups([group], request_timeout=TIMEOUT_S)[group].result(timeout=TIMEOUT_S)
    listed = admin.list_consumer_groups(request_timeout=TIMEOUT_S).result(timeout=TIMEOUT_S)
    assert group not in {g.group_id for g in listed.valid}
    assert ck_committed(admin, group) == {}


def test_confluent_cooperative_sticky_members_split_and_take_over(start_strom):
    broker = group_broker(start_strom)
    topic = unique_topic("ck-coop")
    group = unique_group("ck-coop")
    ck_create_topic(broker, topic, PARTITIONS)

    cooperative = {"partition.assignment.strategy": "cooperative-sticky"}
    first = ck_group_consumer(broker, topic, group, **cooperative)
    second = ck_group_consumer(broker, topic, group, **cooperative)
    members = [first, second]
    try:

        def assignments() -> list[set]:
            return [{tp.partition for tp in consumer.assignment()} for consumer in members]

        def split() -> bool:
            for consumer in members:
                ck_poll(consumer, 0.05)
            owned = assignments()
            together = [p for share in owned for p in share]
            return all(owned) and sorted(together) == list(range(PARTITIONS))

        wait_until(split, lambda: f"the members to split {topic} (have {assignments()})")

        sent = ck_produce(broker, topic, PARTITIONS, per_partition=10, tag="v")
        received = ck_read(members, len(sent))
        for consumer, records in zip(members, received):
            owned = {tp.partition for tp in consumer.assignment()}
            assert {partition for partition, _, _ in records} <= owned
        everything = received[0] + received[1]
        assert len(everything) == len(sent)
        assert set(everything) == sent
        for consumer in members:
            consumer.commit(asynchronous=False)

        admin = ck_admin(broker)
        description = admin.describe_consumer_groups([group], request_timeout=TIMEOUT_S)[group].result(
            timeout=TIMEOUT_S
        )
        assert description.partition_assignor == "cooperative-sticky"
        assert len(description.members) == 2

        # When one member leaves, the other takes over its partitions and resumes at their commits.
        second.close()
        members.remove(second)

        def first_owns_everything() -> bool:
            ck_poll(first, 0.05)
            return len(first.assignment()) == PARTITIONS

        wait_until(
            first_owns_everything, lambda: f"the remaining member to own all (has {first.assignment()})"
        )
        newer = ck_produce(broker, topic, PARTITIONS, per_partition=2, tag="new")
        [records] = ck_read([first], len(newer))
        assert sorted(records) == sorted(newer)
        first.commit(asynchronous=False)
    finally:
        for consumer in members:
            consumer.close()
    assert ck_committed(admin, group) == {p: 12 for p in range(PARTITIONS)}
