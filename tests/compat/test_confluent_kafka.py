"""confluent-kafka (a current librdkafka) against strom: idempotent produce with each compression
codec and read back through an assigned consumer, offset lookups, and the admin API (topics,
partitions, configs, cluster description, record deletion, leader elections)."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ElectionType,
    KafkaError,
    KafkaException,
    Producer,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

from conftest import StromBroker, unique_topic, wait_until

TIMEOUT_S = 10.0


def admin_client(broker: StromBroker) -> AdminClient:
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def results(futures: dict) -> dict:
    """Waits for every future of an admin call; returns key -> result (raises the first error)."""
    return {key: future.result(timeout=TIMEOUT_S) for key, future in futures.items()}


def create_topic(admin: AdminClient, topic: str, partitions: int, config: dict | None = None) -> None:
    new_topic = NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})
    results(admin.create_topics([new_topic], operation_timeout=TIMEOUT_S, request_timeout=TIMEOUT_S))


def partition_count(admin: AdminClient, topic: str) -> int:
    metadata = admin.list_topics(topic=topic, timeout=TIMEOUT_S)
    return len(metadata.topics[topic].partitions)


def consume(broker: StromBroker, partitions: list[TopicPartition], count: int) -> list:
    """Reads `count` records from the start of `partitions` (assigned, so no group coordination)."""
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            # librdkafka requires a group.id to build a consumer; with assign() it is never used.
            "group.id": "compat-unused",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
    try:
        consumer.assign([TopicPartition(p.topic, p.partition, OFFSET_BEGINNING) for p in partitions])
        records: list = []

        def received_all() -> bool:
            for message in consumer.consume(num_messages=count - len(records), timeout=0.2):
                if message.error():
                    raise KafkaException(message.error())
                records.append(message)
            return len(records) >= count

        wait_until(received_all, lambda: f"{count} records (have {len(records)})")
        return records
    finally:
        consumer.close()


@pytest.mark.parametrize("compression", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_idempotent_round_trip(strom: StromBroker, compression: str):
    topic = unique_topic("ck-roundtrip")
    admin = admin_client(strom)
    create_topic(admin, topic, partitions=3)

    producer = Producer(
        {
            "bootstrap.servers": strom.bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": compression,
            "linger.ms": 5,
        }
    )
    reports: list = []

    def on_delivery(error, message):
        reports.append((error, message.partition(), message.offset()))

    sent = []
    base_timestamp = int(time.time() * 1000) - 60_000
    for i in range(300):
        record = (i % 3, f"key-{i}".encode(), f"value-{i}".encode() * (1 + i % 7), [("i", str(i).encode())])
        sent.append(record)
        partition, key, value, headers = record
        producer.produce(
            topic,
            key=key,
            value=value,
            partition=partition,
            headers=headers,
            timestamp=base_timestamp + i,
            on_delivery=on_delivery,
        )
    assert producer.flush(TIMEOUT_S) == 0
    assert [r for r in reports if r[0] is not None] == []
    for partition in range(3):
        offsets = sorted(r[2] for r in reports if r[1] == partition)
        assert offsets == list(range(100))

    received = consume(strom, [TopicPartition(topic, p) for p in range(3)], len(sent))
    for partition in range(3):
        got = [m for m in received if m.partition() == partition]
        assert [m.offset() for m in got] == list(range(100))
        assert [(m.key(), m.value(), m.headers(), m.timestamp()[1]) for m in got] == [
            (key, value, headers, base_timestamp + int(key.split(b"-")[1]))
            for p, key, value, headers in sent
            if p == partition
        ]

    watermarks = Consumer({"bootstrap.servers": strom.bootstrap, "group.id": "compat-unused"})
    try:
        low, high = watermarks.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT_S)
    finally:
        watermarks.close()
    assert (low, high) == (0, 100)


def test_admin_topic_lifecycle(strom: StromBroker):
    topic = unique_topic("ck-admin")
    admin = admin_client(strom)
    create_topic(admin, topic, partitions=2, config={"retention.ms": "3600000"})
    assert topic in admin.list_topics(timeout=TIMEOUT_S).topics
    assert partition_count(admin, topic) == 2

    with pytest.raises(KafkaException) as duplicate:
        create_topic(admin, topic, partitions=2)
    assert duplicate.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS

    (configs,) = results(admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)])).values()
    assert configs["retention.ms"].value == "3600000"
    assert configs["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert configs["cleanup.policy"].value == "delete"
    assert configs["cleanup.policy"].source == ConfigSource.DEFAULT_CONFIG.value

    results(admin.create_partitions([NewPartitions(topic, 6)], request_timeout=TIMEOUT_S))
    assert partition_count(admin, topic) == 6
    with pytest.raises(KafkaException) as shrink:
        results(admin.create_partitions([NewPartitions(topic, 2)], request_timeout=TIMEOUT_S))
    assert shrink.value.args[0].code() == KafkaError.INVALID_PARTITIONS

    results(admin.delete_topics([topic], operation_timeout=TIMEOUT_S, request_timeout=TIMEOUT_S))
    wait_until(
        lambda: topic not in admin.list_topics(timeout=TIMEOUT_S).topics,
        f"{topic} to disappear from the metadata",
    )
    with pytest.raises(KafkaException) as unknown:
        results(admin.delete_topics([topic], operation_timeout=TIMEOUT_S, request_timeout=TIMEOUT_S))
    assert unknown.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_admin_validate_only_creates_nothing(strom: StromBroker):
    topic = unique_topic("ck-validate")
    admin = admin_client(strom)
    new_topic = NewTopic(topic, num_partitions=1, replication_factor=1)
    results(admin.create_topics([new_topic], validate_only=True, request_timeout=TIMEOUT_S))
    assert topic not in admin.list_topics(timeout=TIMEOUT_S).topics


def test_admin_incremental_alter_configs(strom: StromBroker):
    topic = unique_topic("ck-alter")
    admin = admin_client(strom)
    create_topic(admin, topic, partitions=1)
    resource = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    results(admin.incremental_alter_configs([resource]))
    (configs,) = results(admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)])).values()
    assert configs["retention.ms"].value == "7200000"
    assert configs["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value


def test_describe_cluster(strom: StromBroker):
    admin = admin_client(strom)
    cluster = admin.describe_cluster(request_timeout=TIMEOUT_S).result(timeout=TIMEOUT_S)
    assert [(node.id, node.host, node.port) for node in cluster.nodes] == [(1, "127.0.0.1", strom.port)]
    assert cluster.controller.id == 1
    assert cluster.cluster_id


def test_list_offsets_and_delete_records(strom: StromBroker):
    topic = unique_topic("ck-offsets")
    admin = admin_client(strom)
    create_topic(admin, topic, partitions=1)
    base = int(time.time() * 1000) - 3_600_000
    producer = Producer({"bootstrap.servers": strom.bootstrap})
    for i in range(10):
        producer.produce(topic, value=b"v%d" % i, partition=0, timestamp=base + 1000 * i)
    assert producer.flush(TIMEOUT_S) == 0
    partition = TopicPartition(topic, 0)

    def offset_for(spec: OffsetSpec) -> int:
        (info,) = results(admin.list_offsets({partition: spec}, request_timeout=TIMEOUT_S)).values()
        return info.offset

    assert offset_for(OffsetSpec.earliest()) == 0
    assert offset_for(OffsetSpec.latest()) == 10
    assert offset_for(OffsetSpec.for_timestamp(base + 2500)) == 3
    assert offset_for(OffsetSpec.max_timestamp()) == 9

    deletion = admin.delete_records([TopicPartition(topic, 0, 6)], request_timeout=TIMEOUT_S)
    (deleted,) = results(deletion).values()
    assert deleted.low_watermark == 6
    assert offset_for(OffsetSpec.earliest()) == 6
    received = consume(strom, [partition], 4)
    assert [(m.offset(), m.value()) for m in received] == [(i, b"v%d" % i) for i in range(6, 10)]


def test_record_size_limit_and_null_header_values(strom: StromBroker):
    small = unique_topic("ck-small")
    large = unique_topic("ck-large")
    admin = admin_client(strom)
    create_topic(admin, small, partitions=1)
    create_topic(admin, large, partitions=1, config={"max.message.bytes": "3000000"})
    big_value = bytes(range(256)) * 5000  # 1.28 MB: over the default max.message.bytes (1048588)
    producer = Producer(
        {"bootstrap.servers": strom.bootstrap, "message.max.bytes": 4_000_000, "compression.type": "none"}
    )
    reports: dict[str, list] = {small: [], large: []}

    def on_delivery(error, message):
        reports[message.topic()].append(error.code() if error else message.offset())

    headers = [("null", None), ("empty", b"")]
    producer.produce(small, value=big_value, headers=headers, on_delivery=on_delivery)
    producer.produce(large, value=big_value, headers=headers, on_delivery=on_delivery)
    producer.produce(large, value=b"after", headers=headers, on_delivery=on_delivery)
    assert producer.flush(TIMEOUT_S) == 0
    assert reports == {small: [KafkaError.MSG_SIZE_TOO_LARGE], large: [0, 1]}

    received = consume(strom, [TopicPartition(large, 0)], 2)
    assert [(m.offset(), m.value(), m.headers()) for m in received] == [
        (0, big_value, headers),
        (1, b"after", headers),
    ]


def test_admin_error_codes(strom: StromBroker):
    admin = admin_client(strom)

    def create_error(topic: str, config: dict | None = None) -> int:
        with pytest.raises(KafkaException) as error:
            create_topic(admin, topic, partitions=1, config=config)
        return error.value.args[0].code()

    assert create_error("bad name!") == KafkaError.TOPIC_EXCEPTION
    assert create_error("x" * 250) == KafkaError.TOPIC_EXCEPTION
    assert create_error(unique_topic("ck-key"), {"no.such.key": "1"}) == KafkaError.INVALID_CONFIG
    assert create_error(unique_topic("ck-value"), {"retention.ms": "soon"}) == KafkaError.INVALID_CONFIG

    missing = unique_topic("ck-missing")
    with pytest.raises(KafkaException) as error:
        results(admin.describe_configs([ConfigResource(ResourceType.TOPIC, missing)]))
    assert error.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    with pytest.raises(KafkaException) as error:
        results(admin.describe_topics(TopicCollection([missing]), request_timeout=TIMEOUT_S))
    assert error.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART

    topic = unique_topic("ck-invalid-alter")
    create_topic(admin, topic, partitions=1)
    resource = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[ConfigEntry("retention.ms", "xyz", incremental_operation=AlterConfigOpType.SET)],
    )
    with pytest.raises(KafkaException) as error:
        results(admin.incremental_alter_configs([resource]))
    assert error.value.args[0].code() == KafkaError.INVALID_CONFIG


def test_elect_leaders(strom: StromBroker):
    """On one broker every partition already has its preferred leader: ElectLeaders answers
    ELECTION_NOT_NEEDED per partition (UNKNOWN_TOPIC_OR_PART for one that does not exist), and for
    the whole cluster lists nothing."""
    admin = admin_client(strom)
    topic = unique_topic("ck-elect")
    create_topic(admin, topic, partitions=2)

    def elect(election: ElectionType, partitions: list[TopicPartition] | None) -> dict:
        # (confluent-kafka 2.16's elect_leaders refuses timeout keyword arguments.)
        future = admin.elect_leaders(election, partitions)
        outcome = future.result(timeout=TIMEOUT_S)
        return {
            (tp.topic, tp.partition): (None if error is None else error.code())
            for tp, error in outcome.items()
        }

    wanted = [TopicPartition(topic, 0), TopicPartition(topic, 1), TopicPartition(topic, 7)]
    assert elect(ElectionType.PREFERRED, wanted) == {
        (topic, 0): KafkaError.ELECTION_NOT_NEEDED,
        (topic, 1): KafkaError.ELECTION_NOT_NEEDED,
        (topic, 7): KafkaError.UNKNOWN_TOPIC_OR_PART,
    }
    assert elect(ElectionType.UNCLEAN, wanted[:1]) == {(topic, 0): KafkaError.ELECTION_NOT_NEEDED}
    assert elect(ElectionType.PREFERRED, None) == {}


def test_broker_configs_and_topic_description(start_strom):
    broker = start_strom({"log.retention.hours": "48"})
    admin = admin_client(broker)
    (broker_configs,) = results(admin.describe_configs([ConfigResource(ResourceType.BROKER, "1")])).values()
    assert broker_configs["log.retention.hours"].value == "48"
    assert broker_configs["log.retention.hours"].source == ConfigSource.STATIC_BROKER_CONFIG.value
    assert broker_configs["num.partitions"].value == "1"

    topic = unique_topic("ck-describe")
    create_topic(admin, topic, partitions=2)
    (topic_configs,) = results(admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)])).values()
    # A topic without its own retention.ms inherits the broker's log.retention.hours.
    assert topic_configs["retention.ms"].value == str(48 * 3_600_000)
    assert topic_configs["retention.ms"].source == ConfigSource.STATIC_BROKER_CONFIG.value

    descriptions = admin.describe_topics(TopicCollection([topic]), request_timeout=TIMEOUT_S)
    (description,) = results(descriptions).values()
    assert description.name == topic
    assert not description.is_internal
    assert [
        (p.id, p.leader.id, [r.id for r in p.replicas], [r.id for r in p.isr]) for p in description.partitions
    ] == [(0, 1, [1], [1]), (1, 1, [1], [1])]


def test_waiting_fetch_wakes_up_on_produce(strom: StromBroker):
    """A fetch parked at the log end (fetch.wait.max.ms=10s) answers as soon as a record arrives,
    as Kafka's delayed fetch does, instead of after the whole wait."""
    topic = unique_topic("ck-longpoll")
    admin = admin_client(strom)
    create_topic(admin, topic, partitions=1)
    consumer = Consumer(
        {
            "bootstrap.servers": strom.bootstrap,
            "group.id": "compat-unused",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "fetch.wait.max.ms": 10_000,
        }
    )
    producer = Producer({"bootstrap.servers": strom.bootstrap})
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        # Gives the consumer time to park a fetch on the empty log; nothing is expected here.
        assert consumer.poll(1.0) is None
        producer.produce(topic, value=b"wake up", partition=0)
        assert producer.flush(TIMEOUT_S) == 0
        produced_at = time.monotonic()
        received: list = []

        def arrived() -> bool:
            message = consumer.poll(0.05)
            if message is not None and message.error() is None:
                received.append(message)
            return bool(received)

        wait_until(arrived, "the record to reach the parked consumer", deadline_s=TIMEOUT_S)
        assert received[0].value() == b"wake up"
        assert time.monotonic() - produced_at < 5.0, "the fetch was not woken up by the append"
    finally:
        consumer.close()


def test_pipelined_idempotent_produce_keeps_order(strom: StromBroker):
    """One record per request and five requests in flight per connection: the broker must handle a
    connection's requests in order and accept each producer sequence exactly once."""
    topic = unique_topic("ck-pipeline")
    admin = admin_client(strom)
    create_topic(admin, topic, partitions=2)
    producer = Producer(
        {
            "bootstrap.servers": strom.bootstrap,
            "enable.idempotence": True,
            "linger.ms": 0,
            "batch.num.messages": 1,
            "max.in.flight.requests.per.connection": 5,
        }
    )
    errors: list = []
    acknowledged: dict[int, list[tuple[int, int]]] = {0: [], 1: []}

    def on_delivery(error, message):
        if error is not None:
            errors.append(error)
        else:
            acknowledged[message.partition()].append((message.offset(), int(message.value())))

    record_count = 4000
    for i in range(record_count):
        producer.produce(topic, value=b"%d" % i, partition=i % 2, on_delivery=on_delivery)
        producer.poll(0)
    assert producer.flush(TIMEOUT_S * 3) == 0
    assert errors == []
    for partition in (0, 1):
        expected_values = list(range(partition, record_count, 2))
        assert sorted(acknowledged[partition]) == list(enumerate(expected_values))

    received = consume(strom, [TopicPartition(topic, 0), TopicPartition(topic, 1)], record_count)
    for partition in (0, 1):
        got = [(m.offset(), int(m.value())) for m in received if m.partition() == partition]
        assert got == list(enumerate(range(partition, record_count, 2)))


@pytest.mark.parametrize("crash", [False, True], ids=["clean-stop", "sigkill"])
def test_idempotent_producer_carries_on_across_a_broker_restart(strom: StromBroker, crash: bool):
    """The broker rebuilds its producer state from the log, so an idempotent producer's sequence
    numbers are still accepted after a restart, and nothing is lost or duplicated."""
    topic = unique_topic("ck-restart")
    admin = admin_client(strom)
    create_topic(admin, topic, partitions=1)
    producer = Producer(
        {
            "bootstrap.servers": strom.bootstrap,
            "enable.idempotence": True,
            "linger.ms": 5,
            "message.timeout.ms": 30_000,
        }
    )
    errors: list = []
    acknowledged: list = []

    def on_delivery(error, message):
        if error is not None:
            errors.append(error)
        else:
            acknowledged.append((message.offset(), message.value()))

    for i in range(100):
        producer.produce(topic, value=b"before-%d" % i, partition=0, on_delivery=on_delivery)
    assert producer.flush(TIMEOUT_S) == 0
    strom.restart(crash=crash)
    for i in range(100):
        producer.produce(topic, value=b"after-%d" % i, partition=0, on_delivery=on_delivery)
    assert producer.flush(TIMEOUT_S * 3) == 0
    assert errors == []
    expected = [b"before-%d" % i for i in range(100)] + [b"after-%d" % i for i in range(100)]
    assert sorted(acknowledged) == list(enumerate(expected))

    received = consume(strom, [TopicPartition(topic, 0)], len(expected))
    assert [(m.offset(), m.value()) for m in received] == list(enumerate(expected))


def test_metadata_auto_creation_follows_the_request_flag(start_strom):
    """With auto.create.topics.enable on, a Metadata request creates a missing topic only when it
    allows auto-creation: librdkafka's consumer (allow.auto.create.topics=false) must not create
    one, a producer must."""
    broker = start_strom({"auto.create.topics.enable": "true"})
    admin = admin_client(broker)
    untouched = unique_topic("ck-no-autocreate")
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "compat-unused",
            "allow.auto.create.topics": False,
            "topic.metadata.refresh.interval.ms": 100,
        }
    )
    try:
        consumer.assign([TopicPartition(untouched, 0, OFFSET_BEGINNING)])
        # One second of fetch attempts, each asking the broker for the topic's metadata.
        assert consumer.consume(num_messages=1, timeout=1.0) == []
    finally:
        consumer.close()
    assert untouched not in admin.list_topics(timeout=TIMEOUT_S).topics

    created = unique_topic("ck-autocreate")
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    reports: list = []
    producer.produce(created, value=b"v", on_delivery=lambda error, message: reports.append(error))
    assert producer.flush(TIMEOUT_S) == 0
    assert reports == [None]
    assert created in admin.list_topics(timeout=TIMEOUT_S).topics
