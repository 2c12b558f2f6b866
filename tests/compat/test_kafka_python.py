"""kafka-python (a pure-Python Kafka protocol implementation, independent of librdkafka) against strom:
produce with every compression codec and read back, offsets lookups, topic auto-creation, and the
admin API (topics, partitions, configs, records)."""

from __future__ import annotations

import time
import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka import codec as kafka_codec
from kafka import errors as kafka_errors
from kafka.admin import AlterConfigOp, ConfigResource, ConfigResourceType, OffsetSpec

from conftest import StromBroker, unique_topic, wait_until

REQUEST_TIMEOUT_MS = 10_000
SEND_TIMEOUT_S = 10

CODEC_AVAILABLE = {
    "gzip": kafka_codec.has_gzip,
    "snappy": kafka_codec.has_snappy,
    "lz4": kafka_codec.has_lz4,
    "zstd": kafka_codec.has_zstd,
}


def admin_client(broker: StromBroker) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=REQUEST_TIMEOUT_MS)


def producer(broker: StromBroker, **config) -> KafkaProducer:
    settings = {
        "bootstrap_servers": broker.bootstrap,
        "acks": "all",
        "request_timeout_ms": REQUEST_TIMEOUT_MS,
        "max_block_ms": REQUEST_TIMEOUT_MS,
    }
    return KafkaProducer(**{**settings, **config})


def read_all(broker: StromBroker, partitions: list[TopicPartition], count: int, **config) -> list:
    """Reads `count` records from the start of `partitions` without a consumer group."""
    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        enable_auto_commit=False,
        request_timeout_ms=REQUEST_TIMEOUT_MS,
        **config,
    )
    try:
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        records: list = []

        def received_all() -> bool:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
            return len(records) >= count

        wait_until(received_all, lambda: f"{count} records from {partitions} (have {len(records)})")
        # Nothing beyond what was produced.
        extra = [r for batch in consumer.poll(timeout_ms=200).values() for r in batch]
        assert extra == []
        return records
    finally:
        consumer.close()


def create_topic(admin: KafkaAdminClient, topic: str, partitions: int, configs: dict | None = None):
    admin.create_topics(
        {topic: {"num_partitions": partitions, "replication_factor": 1, "configs": configs or {}}},
        timeout_ms=REQUEST_TIMEOUT_MS,
    )


@pytest.mark.parametrize("compression", [None, "gzip", "snappy", "lz4", "zstd"])
def test_keyed_records_with_headers_round_trip(strom: StromBroker, compression: str | None):
    if compression is not None and not CODEC_AVAILABLE[compression]():
        pytest.skip(f"kafka-python has no {compression} codec installed")
    topic = unique_topic("kp-roundtrip")
    admin = admin_client(strom)
    create_topic(admin, topic, partitions=2)
    admin.close()

    sent = []
    base_timestamp = int(time.time() * 1000) - 60_000
    with_codec = producer(strom, compression_type=compression, enable_idempotence=True, linger_ms=5)
    futures = []
    for i in range(200):
        record = {
            "partition": i % 2,
            "key": f"key-{i}".encode(),
            "value": (f"value-{i}-" + "x" * (i % 17)).encode() * (1 + i % 5),
            "headers": [("index", str(i).encode()), ("codec", str(compression).encode())],
            "timestamp_ms": base_timestamp + i,
        }
        sent.append(record)
        futures.append(with_codec.send(topic, **record))
    with_codec.flush(timeout=SEND_TIMEOUT_S)
    metadata = [future.get(timeout=SEND_TIMEOUT_S) for future in futures]
    with_codec.close()
    # Offsets are dense per partition, in send order.
    for partition in (0, 1):
        offsets = [m.offset for m in metadata if m.partition == partition]
        assert offsets == list(range(100))

    partitions = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
    # A small fetch size forces many fetches, each starting mid-log.
    received = read_all(strom, partitions, len(sent), max_partition_fetch_bytes=1024)
    by_partition = {p: [r for r in received if r.partition == p] for p in (0, 1)}
    for partition in (0, 1):
        expected = [r for r in sent if r["partition"] == partition]
        got = by_partition[partition]
        assert [r.offset for r in got] == list(range(len(expected)))
        assert [(r.key, r.value, list(r.headers), r.timestamp) for r in got] == [
            (r["key"], r["value"], r["headers"], r["timestamp_ms"]) for r in expected
        ]


def test_null_keys_null_values_and_empty_payloads(strom: StromBroker):
    topic = unique_topic("kp-nulls")
    send = producer(strom)
    cases = [(None, b"no key"), (b"tombstone", None), (b"", b""), (b"k", b"v")]
    for key, value in cases:
        send.send(topic, key=key, value=value, partition=0)
    send.flush(timeout=SEND_TIMEOUT_S)
    send.close()
    received = read_all(strom, [TopicPartition(topic, 0)], len(cases))
    assert [(r.key, r.value) for r in received] == cases


def test_offset_lookups(strom: StromBroker):
    topic = unique_topic("kp-offsets")
    partition = TopicPartition(topic, 0)
    base = int(time.time() * 1000) - 3_600_000
    send = producer(strom)
    for i in range(10):
        send.send(topic, value=b"v%d" % i, partition=0, timestamp_ms=base + 1000 * i)
    send.flush(timeout=SEND_TIMEOUT_S)
    send.close()

    consumer = KafkaConsumer(bootstrap_servers=strom.bootstrap, request_timeout_ms=REQUEST_TIMEOUT_MS)
    try:
        assert consumer.beginning_offsets([partition]) == {partition: 0}
        assert consumer.end_offsets([partition]) == {partition: 10}
        found = consumer.offsets_for_times({partition: base + 4500})[partition]
        assert (found.offset, found.timestamp) == (5, base + 5000)
        assert consumer.offsets_for_times({partition: base + 10_000}) == {partition: None}
    finally:
        consumer.close()

    admin = admin_client(strom)
    offsets = admin.list_partition_offsets(
        {partition: OffsetSpec.EARLIEST}, timeout_ms=REQUEST_TIMEOUT_MS
    )
    assert offsets[partition].offset == 0
    offsets = admin.list_partition_offsets({partition: OffsetSpec.LATEST}, timeout_ms=REQUEST_TIMEOUT_MS)
    assert offsets[partition].offset == 10
    offsets = admin.list_partition_offsets(
        {partition: OffsetSpec.MAX_TIMESTAMP}, timeout_ms=REQUEST_TIMEOUT_MS
    )
    assert (offsets[partition].offset, offsets[partition].timestamp) == (9, base + 9000)
    admin.close()


def produce_one_gzip_batch(broker: StromBroker, topic: str, timestamps: list[int]) -> None:
    """Appends one gzip batch with the given record timestamps to partition 0. The values are
    compressible and the linger long: kafka-python only compresses when it helps."""
    send = producer(broker, compression_type="gzip", linger_ms=500, batch_size=1_000_000)
    futures = [send.send(topic, value=b"x" * 100, partition=0, timestamp_ms=ts) for ts in timestamps]
    send.flush(timeout=SEND_TIMEOUT_S)
    assert [f.get(timeout=SEND_TIMEOUT_S).offset for f in futures] == list(range(len(timestamps)))
    send.close()


def test_offsets_for_times_inside_a_compressed_batch(strom: StromBroker):
    topic = unique_topic("kp-offsets-gzip")
    partition = TopicPartition(topic, 0)
    base = int(time.time() * 1000) - 3_600_000
    produce_one_gzip_batch(strom, topic, [base + 1000 * i for i in range(10)])
    consumer = KafkaConsumer(bootstrap_servers=strom.bootstrap, request_timeout_ms=REQUEST_TIMEOUT_MS)
    try:
        found = consumer.offsets_for_times({partition: base + 2500})[partition]
        assert (found.offset, found.timestamp) == (3, base + 3000)
        found = consumer.offsets_for_times({partition: base})[partition]
        assert (found.offset, found.timestamp) == (0, base)
    finally:
        consumer.close()


def test_max_timestamp_inside_a_compressed_batch(strom: StromBroker):
    topic = unique_topic("kp-maxts-gzip")
    partition = TopicPartition(topic, 0)
    base = int(time.time() * 1000) - 3_600_000
    timestamps = [base + 1000 * i for i in range(10)]
    timestamps[6] = base + 60_000  # the max timestamp is mid-batch
    produce_one_gzip_batch(strom, topic, timestamps)
    admin = admin_client(strom)
    latest = admin.list_partition_offsets({partition: OffsetSpec.MAX_TIMESTAMP})[partition]
    admin.close()
    assert (latest.offset, latest.timestamp) == (6, base + 60_000)


def test_produce_to_unknown_topic_auto_creates_it(start_strom):
    broker = start_strom({"num.partitions": "3", "auto.create.topics.enable": "true"})
    topic = unique_topic("kp-auto")
    send = producer(broker)
    metadata = send.send(topic, key=b"k", value=b"first").get(timeout=SEND_TIMEOUT_S)
    send.close()
    assert metadata.offset == 0
    admin = admin_client(broker)
    described = admin.describe_topics([topic])
    admin.close()
    assert [t["name"] for t in described] == [topic]
    assert len(described[0]["partitions"]) == 3
    received = read_all(broker, [TopicPartition(topic, metadata.partition)], 1)
    assert [(r.key, r.value) for r in received] == [(b"k", b"first")]


def test_admin_topic_lifecycle(strom: StromBroker):
    topic = unique_topic("kp-admin")
    admin = admin_client(strom)
    create_topic(admin, topic, partitions=2, configs={"retention.ms": "3600000", "cleanup.policy": "delete"})
    assert topic in admin.list_topics()
    with pytest.raises(kafka_errors.TopicAlreadyExistsError):
        create_topic(admin, topic, partitions=2)

    # Only the explicitly set configs count as modified.
    modified = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    retention = modified["topic"][topic]["retention.ms"]
    assert retention["value"] == "3600000"
    assert retention["config_source"] == "DYNAMIC_TOPIC_CONFIG"
    everything = admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all"
    )["topic"][topic]
    assert everything["segment.bytes"]["config_source"] in ("DEFAULT_CONFIG", "STATIC_BROKER_CONFIG")
    assert everything["retention.ms"]["value"] == "3600000"

    admin.create_partitions({topic: 5}, timeout_ms=REQUEST_TIMEOUT_MS)
    assert len(admin.describe_topics([topic])[0]["partitions"]) == 5
    with pytest.raises(kafka_errors.InvalidPartitionsError):
        admin.create_partitions({topic: 3}, timeout_ms=REQUEST_TIMEOUT_MS)

    admin.delete_topics([topic], timeout_ms=REQUEST_TIMEOUT_MS)
    wait_until(lambda: topic not in admin.list_topics(), f"{topic} to disappear from list_topics")
    with pytest.raises(kafka_errors.UnknownTopicOrPartitionError):
        admin.delete_topics([topic], timeout_ms=REQUEST_TIMEOUT_MS)
    admin.close()


def test_admin_rejects_invalid_topics(strom: StromBroker):
    admin = admin_client(strom)
    with pytest.raises(kafka_errors.InvalidPartitionsError):
        create_topic(admin, unique_topic("kp-zero"), partitions=0)
    with pytest.raises(kafka_errors.InvalidReplicationFactorError):
        admin.create_topics(
            {unique_topic("kp-rf"): {"num_partitions": 1, "replication_factor": 3}},
            timeout_ms=REQUEST_TIMEOUT_MS,
        )
    with pytest.raises(kafka_errors.InvalidConfigurationError):
        create_topic(admin, unique_topic("kp-badcfg"), partitions=1, configs={"retention.ms": "soon"})
    validated = unique_topic("kp-validate")
    admin.create_topics(
        {validated: {"num_partitions": 1, "replication_factor": 1}},
        timeout_ms=REQUEST_TIMEOUT_MS,
        validate_only=True,
    )
    assert validated not in admin.list_topics()
    admin.close()


def test_admin_partition_reassignments(strom: StromBroker):
    """KIP-455 through kafka-python's admin client on one broker: a reassignment to the replica a
    partition already has is accepted and completes at once (nothing is listed as ongoing); an
    unknown broker, a cancellation with nothing in progress and an unknown partition get Kafka's
    per-partition errors."""
    topic = unique_topic("kp-reassign")
    admin = admin_client(strom)
    create_topic(admin, topic, partitions=2)
    broker_id = admin.describe_topics([topic])[0]["partitions"][0]["leader_id"]
    outcome = admin.alter_partition_reassignments(
        {
            TopicPartition(topic, 0): [broker_id],
            TopicPartition(topic, 1): [broker_id, 99],
        },
        timeout_ms=REQUEST_TIMEOUT_MS,
    )
    assert outcome == {
        TopicPartition(topic, 0): None,
        TopicPartition(topic, 1): kafka_errors.InvalidReplicationAssignmentError,
    }
    outcome = admin.alter_partition_reassignments(
        {TopicPartition(topic, 0): None, TopicPartition(topic, 7): [broker_id]},
        timeout_ms=REQUEST_TIMEOUT_MS,
    )
    assert outcome == {
        TopicPartition(topic, 0): kafka_errors.NoReassignmentInProgressError,
        TopicPartition(topic, 7): kafka_errors.UnknownTopicOrPartitionError,
    }
    assert admin.list_partition_reassignments() == {}
    assert admin.list_partition_reassignments({topic: [0, 1]}) == {}
    admin.close()


def test_admin_alter_configs(strom: StromBroker):
    topic = unique_topic("kp-alter")
    admin = admin_client(strom)
    create_topic(admin, topic, partitions=1)
    resource = ConfigResource(
        ConfigResourceType.TOPIC, topic, configs={"retention.ms": (AlterConfigOp.SET, "7200000")}
    )
    admin.alter_configs([resource], incremental=True)
    modified = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])["topic"][topic]
    assert modified["retention.ms"]["value"] == "7200000"

    resource = ConfigResource(
        ConfigResourceType.TOPIC, topic, configs={"retention.ms": (AlterConfigOp.DELETE, None)}
    )
    admin.alter_configs([resource], incremental=True)
    modified = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])["topic"][topic]
    assert "retention.ms" not in modified

    # The legacy (non-incremental) AlterConfigs replaces the whole set of topic overrides.
    resource = ConfigResource(ConfigResourceType.TOPIC, topic, configs={"segment.ms": "600000"})
    admin.alter_configs([resource], incremental=False)
    modified = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])["topic"][topic]
    assert modified["segment.ms"]["value"] == "600000"
    admin.close()


def test_admin_delete_records(strom: StromBroker):
    topic = unique_topic("kp-delrec")
    partition = TopicPartition(topic, 0)
    send = producer(strom)
    for i in range(10):
        send.send(topic, value=b"v%d" % i, partition=0)
    send.flush(timeout=SEND_TIMEOUT_S)
    send.close()
    admin = admin_client(strom)
    result = admin.delete_records({partition: 4}, timeout_ms=REQUEST_TIMEOUT_MS)
    assert result[partition]["low_watermark"] == 4
    assert admin.list_partition_offsets({partition: OffsetSpec.EARLIEST})[partition].offset == 4
    admin.close()
    consumer = KafkaConsumer(bootstrap_servers=strom.bootstrap, request_timeout_ms=REQUEST_TIMEOUT_MS)
    try:
        assert consumer.beginning_offsets([partition]) == {partition: 4}
    finally:
        consumer.close()


@pytest.mark.parametrize("api_version", [(0, 11), (1, 1), (2, 1), (2, 4), (3, 0)])
def test_older_protocol_versions(strom: StromBroker, api_version: tuple[int, int]):
    """Pinning kafka-python to an older broker version makes it use older (mostly non-flexible)
    versions of Produce, Fetch, ListOffsets, Metadata and the admin APIs."""
    topic = unique_topic("kp-old")
    partition = TopicPartition(topic, 0)
    base = int(time.time() * 1000) - 600_000
    send = producer(strom, api_version=api_version, compression_type="gzip")
    for i in range(5):
        send.send(topic, key=b"k%d" % i, value=b"v%d" % i, headers=[("h", b"%d" % i)], timestamp_ms=base + i)
    send.flush(timeout=SEND_TIMEOUT_S)
    send.close()

    received = read_all(strom, [partition], 5, api_version=api_version)
    assert [(r.offset, r.key, r.value, list(r.headers), r.timestamp) for r in received] == [
        (i, b"k%d" % i, b"v%d" % i, [("h", b"%d" % i)], base + i) for i in range(5)
    ]
    consumer = KafkaConsumer(
        bootstrap_servers=strom.bootstrap, api_version=api_version, request_timeout_ms=REQUEST_TIMEOUT_MS
    )
    try:
        assert consumer.end_offsets([partition]) == {partition: 5}
        assert consumer.offsets_for_times({partition: base + 5}) == {partition: None}
    finally:
        consumer.close()

    admin = KafkaAdminClient(
        bootstrap_servers=strom.bootstrap, api_version=api_version, request_timeout_ms=REQUEST_TIMEOUT_MS
    )
    created = unique_topic("kp-old-admin")
    create_topic(admin, created, partitions=2)
    assert created in admin.list_topics()
    admin.delete_topics([created], timeout_ms=REQUEST_TIMEOUT_MS)
    wait_until(lambda: created not in admin.list_topics(), f"{created} to disappear")
    admin.close()


def test_out_of_range_offset_resets_or_raises(strom: StromBroker):
    topic = unique_topic("kp-range")
    partition = TopicPartition(topic, 0)
    send = producer(strom)
    for i in range(5):
        send.send(topic, value=b"v%d" % i, partition=0)
    send.flush(timeout=SEND_TIMEOUT_S)
    send.close()

    resetting = KafkaConsumer(
        bootstrap_servers=strom.bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    try:
        resetting.assign([partition])
        resetting.seek(partition, 1000)
        records: list = []

        def received_all() -> bool:
            for batch in resetting.poll(timeout_ms=200).values():
                records.extend(batch)
            return len(records) >= 5

        wait_until(received_all, "records after an out-of-range reset")
        assert [r.offset for r in records] == list(range(5))
    finally:
        resetting.close()

    strict = KafkaConsumer(
        bootstrap_servers=strom.bootstrap, enable_auto_commit=False, auto_offset_reset="none"
    )
    try:
        strict.assign([partition])
        strict.seek(partition, 1000)

        def poll_once() -> bool:
            strict.poll(timeout_ms=200)
            return False

        with pytest.raises(kafka_errors.OffsetOutOfRangeError):
            wait_until(poll_once, "poll to raise OffsetOutOfRangeError", deadline_s=10)
    finally:
        strict.close()


def test_recreated_topic_starts_empty(strom: StromBroker):
    topic = unique_topic("kp-recreate")
    partition = TopicPartition(topic, 0)
    admin = admin_client(strom)
    create_topic(admin, topic, partitions=1)
    (old,) = admin.describe_topics([topic])
    # Metadata v10+ can look topics up by id.
    assert [t["name"] for t in admin.describe_topics([uuid.UUID(str(old["topic_id"]))])] == [topic]
    send = producer(strom)
    for i in range(5):
        send.send(topic, value=b"old%d" % i, partition=0)
    send.flush(timeout=SEND_TIMEOUT_S)

    admin.delete_topics([topic], timeout_ms=REQUEST_TIMEOUT_MS)
    wait_until(lambda: topic not in admin.list_topics(), f"{topic} to disappear")
    create_topic(admin, topic, partitions=2)
    (new,) = admin.describe_topics([topic])
    assert new["topic_id"] != old["topic_id"]
    assert len(new["partitions"]) == 2
    admin.close()

    for i in range(3):
        send.send(topic, value=b"new%d" % i, partition=0)
    send.flush(timeout=SEND_TIMEOUT_S)
    send.close()
    received = read_all(strom, [partition], 3)
    assert [(r.offset, r.value) for r in received] == [(i, b"new%d" % i) for i in range(3)]


def test_acks_zero_and_read_committed_consumer(strom: StromBroker):
    """acks=0 produce requests get no response; a read_committed consumer (no transactions in play)
    sees everything up to the high watermark."""
    topic = unique_topic("kp-acks0")
    partition = TopicPartition(topic, 0)
    admin = admin_client(strom)
    create_topic(admin, topic, partitions=1)
    admin.close()
    send = producer(strom, acks=0, enable_idempotence=False)
    for i in range(100):
        send.send(topic, value=b"v%d" % i, partition=0)
        if i == 49:
            send.flush(timeout=SEND_TIMEOUT_S)
    send.flush(timeout=SEND_TIMEOUT_S)
    send.close()
    received = read_all(strom, [partition], 100, isolation_level="read_committed")
    assert [(r.offset, r.value) for r in received] == [(i, b"v%d" % i) for i in range(100)]


def test_compacted_topic_refuses_records_without_key(strom: StromBroker):
    topic = unique_topic("kp-compact")
    admin = admin_client(strom)
    create_topic(admin, topic, partitions=1, configs={"cleanup.policy": "compact"})
    admin.close()
    # Not idempotent: kafka-python makes an idempotent producer unusable after any refused batch.
    send = producer(strom, enable_idempotence=False, retries=0)
    with pytest.raises(kafka_errors.InvalidRecordError):
        send.send(topic, value=b"no key", partition=0).get(timeout=SEND_TIMEOUT_S)
    assert send.send(topic, key=b"k", value=b"v", partition=0).get(timeout=SEND_TIMEOUT_S).offset == 0
    send.close()


def test_refused_produce_says_why(strom: StromBroker):
    topic = unique_topic("kp-why")
    admin = admin_client(strom)
    create_topic(admin, topic, partitions=1, configs={"cleanup.policy": "compact"})
    admin.close()
    send = producer(strom, enable_idempotence=False, retries=0)
    with pytest.raises(kafka_errors.InvalidRecordError) as refused:
        send.send(topic, value=b"no key", partition=0).get(timeout=SEND_TIMEOUT_S)
    send.close()
    # kafka-python puts the broker's error_message / record error message in args[0].
    assert refused.value.args and refused.value.args[0]


@pytest.mark.parametrize(
    ("bound", "offset_ms"),
    [("message.timestamp.before.max.ms", -3_600_000), ("message.timestamp.after.max.ms", 3_600_000)],
)
def test_timestamp_bounds_are_enforced(strom: StromBroker, bound: str, offset_ms: int):
    topic = unique_topic("kp-tsbound")
    admin = admin_client(strom)
    create_topic(admin, topic, partitions=1, configs={bound: "60000"})
    admin.close()
    send = producer(strom, enable_idempotence=False, retries=0)
    now = int(time.time() * 1000)
    accepted = send.send(topic, value=b"now", partition=0, timestamp_ms=now)
    assert accepted.get(timeout=SEND_TIMEOUT_S).offset == 0
    with pytest.raises(kafka_errors.InvalidTimestampError):
        send.send(topic, value=b"far", partition=0, timestamp_ms=now + offset_ms).get(timeout=SEND_TIMEOUT_S)
    send.close()


def test_log_append_time_topic(strom: StromBroker):
    """Under LogAppendTime the broker stamps records: the produce response and the fetched records
    carry the append time, not the producer's timestamp."""
    topic = unique_topic("kp-logappend")
    admin = admin_client(strom)
    create_topic(admin, topic, partitions=1, configs={"message.timestamp.type": "LogAppendTime"})
    admin.close()
    producer_timestamp = 1_000_000_000_000
    before = int(time.time() * 1000)
    send = producer(strom, linger_ms=20)
    futures = [
        send.send(topic, value=b"v%d" % i, partition=0, timestamp_ms=producer_timestamp + i) for i in range(3)
    ]
    send.flush(timeout=SEND_TIMEOUT_S)
    append_times = [f.get(timeout=SEND_TIMEOUT_S).timestamp for f in futures]
    send.close()
    after = int(time.time() * 1000)
    assert all(before <= append_time <= after for append_time in append_times), append_times

    received = read_all(strom, [TopicPartition(topic, 0)], 3)
    log_append_time_type = 1
    assert [(r.timestamp_type, r.timestamp) for r in received] == [
        (log_append_time_type, append_time) for append_time in append_times
    ]


def test_describe_metadata_quorum(strom: StromBroker):
    """DescribeQuorum: a single node is the only voter of its metadata quorum, and leads it."""
    admin = admin_client(strom)
    quorum = admin.describe_metadata_quorum()
    admin.close()
    [topic] = quorum["topics"]
    assert topic["topic_name"] == "__cluster_metadata"
    [partition] = topic["partitions"]
    assert partition["error"] is None
    assert partition["partition_index"] == 0
    assert partition["leader_id"] == 1
    assert partition["leader_epoch"] >= 1
    assert partition["high_watermark"] > 0
    [voter] = partition["current_voters"]
    assert voter["replica_id"] == 1
    assert voter["log_end_offset"] == partition["high_watermark"]
    now_ms = time.time() * 1000
    for timestamp in (voter["last_fetch_timestamp"], voter["last_caught_up_timestamp"]):
        assert abs(timestamp - now_ms) < 60_000
    assert partition["observers"] == []


def test_describe_topic_partitions_pages_with_a_cursor(strom: StromBroker):
    """DescribeTopicPartitions (KIP-966): named topics in name order, a page at a time."""
    admin = admin_client(strom)
    first_topic, second_topic = sorted([unique_topic("kp-dtp"), unique_topic("kp-dtp")])
    create_topic(admin, first_topic, partitions=3)
    create_topic(admin, second_topic, partitions=2)
    missing = unique_topic("kp-dtp-missing")

    def listed(page) -> list[tuple[str, list[int]]]:
        return [(t["name"], [p["partition_index"] for p in t["partitions"]]) for t in page["topics"]]

    page = admin.describe_topic_partitions([second_topic, first_topic], response_partition_limit=2)
    assert listed(page) == [(first_topic, [0, 1])]
    assert page["next_cursor"] == {"topic_name": first_topic, "partition_index": 2}
    page = admin.describe_topic_partitions(
        [first_topic, second_topic], response_partition_limit=2, cursor=page["next_cursor"]
    )
    assert listed(page) == [(first_topic, [2]), (second_topic, [0])]
    page = admin.describe_topic_partitions(
        [first_topic, second_topic], response_partition_limit=2, cursor=page["next_cursor"]
    )
    assert listed(page) == [(second_topic, [1])]
    assert page["next_cursor"] is None

    whole = admin.describe_topic_partitions([first_topic, missing])
    admin.close()
    by_name = {t["name"]: t for t in whole["topics"]}
    assert by_name[missing]["error_code"] == kafka_errors.UnknownTopicOrPartitionError.errno
    described = by_name[first_topic]
    assert described["error_code"] == 0 and not described["is_internal"]
    for partition in described["partitions"]:
        assert partition["error_code"] == 0
        assert partition["leader_id"] == 1
        assert partition["replica_nodes"] == [1] and partition["isr_nodes"] == [1]
        assert partition["offline_replicas"] == []


def test_admin_describe_log_dirs(strom: StromBroker):
    """DescribeLogDirs: the broker's log directory lists the topic's partitions with their sizes
    (a leader's offset lag is 0)."""
    topic = unique_topic("kp-logdirs")
    admin = admin_client(strom)
    create_topic(admin, topic, partitions=2)
    send = producer(strom)
    for i in range(20):
        send.send(topic, value=b"x" * 100, partition=0)
    send.flush(timeout=SEND_TIMEOUT_S)
    send.close()
    (broker_result,) = admin.describe_log_dirs({topic: [0, 1]})
    admin.close()
    (log_dir,) = broker_result["log_dirs"]
    assert log_dir["error_code"] == 0
    (described,) = [t for t in log_dir["topics"] if t["name"] == topic]
    found = {p["partition_index"]: (p["partition_size"], p["offset_lag"]) for p in described["partitions"]}
    assert set(found) == {0, 1}, log_dir
    assert found[0][0] > 2000 and found[1][0] == 0, log_dir
    assert found[0][1] == 0 and found[1][1] == 0, log_dir
