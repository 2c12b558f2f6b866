"""kcat from Debian's packages (kcat 1.7.1 on librdkafka 2.0.2) against strom. An old librdkafka
negotiates older API versions and is strict about flexible-version encoding (it chokes on tagged
fields it does not expect), so these tests guard compatibility with clients that are years old:
metadata listing, keyed produce (plain, compressed, idempotent), consume from the beginning, and
offsets-for-times queries."""

from __future__ import annotations

import json
import time

import pytest
from kafka import KafkaProducer

from conftest import KCAT_TIMEOUT_S, StromBroker, kcat, unique_topic


def consume_all(broker: StromBroker, topic: str, output_format: str = "%k=%s\\n") -> list[str]:
    return kcat(broker, "-C", "-t", topic, "-e", "-o", "beginning", "-f", output_format).splitlines()


def test_metadata_listing(strom: StromBroker):
    empty = json.loads(kcat(strom, "-L", "-J"))
    assert empty["brokers"] == [{"id": 1, "name": strom.bootstrap}]
    assert empty["controllerid"] == 1

    topic = unique_topic("kcat-meta")
    kcat(strom, "-P", "-t", topic, stdin="hello\n")
    listed = json.loads(kcat(strom, "-L", "-J", "-t", topic))
    assert [t["topic"] for t in listed["topics"]] == [topic]
    (partition,) = listed["topics"][0]["partitions"]
    assert partition["partition"] == 0
    assert partition["leader"] == 1
    assert partition["replicas"] == [{"id": 1}]
    assert partition["isrs"] == [{"id": 1}]
    assert "error" not in listed["topics"][0]

    plain = kcat(strom, "-L")
    assert f'topic "{topic}" with 1 partitions:' in plain


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_keyed_produce_and_consume(strom: StromBroker, codec: str):
    topic = unique_topic(f"kcat-{codec}")
    lines = [f"key{i}:value {i} " + "abc" * (i % 11) for i in range(50)]
    kcat(
        strom,
        "-P",
        "-t",
        topic,
        "-K:",
        "-H",
        "origin=kcat",
        "-X",
        f"compression.codec={codec}",
        stdin="\n".join(lines) + "\n",
    )
    assert consume_all(strom, topic) == [line.replace(":", "=", 1) for line in lines]
    detailed = consume_all(strom, topic, "%o|%k|%h\\n")
    assert detailed == [f"{i}|key{i}|origin=kcat" for i in range(50)]


def test_idempotent_produce(strom: StromBroker):
    topic = unique_topic("kcat-idem")
    lines = [f"k{i}:v{i}" for i in range(20)]
    kcat(
        strom,
        "-P",
        "-t",
        topic,
        "-K:",
        "-X",
        "enable.idempotence=true",
        stdin="\n".join(lines) + "\n",
    )
    assert consume_all(strom, topic, "%o %k=%s\\n") == [f"{i} k{i}=v{i}" for i in range(20)]


def test_consumes_what_kafka_python_wrote(strom: StromBroker):
    topic = unique_topic("kcat-cross")
    producer = KafkaProducer(bootstrap_servers=strom.bootstrap, acks="all", compression_type="gzip")
    for i in range(30):
        producer.send(topic, key=b"k%d" % i, value=b"v%d" % i, partition=0)
    producer.flush(timeout=KCAT_TIMEOUT_S)
    producer.close()
    assert consume_all(strom, topic) == [f"k{i}=v{i}" for i in range(30)]


def test_offsets_for_times_query(strom: StromBroker):
    topic = unique_topic("kcat-query")
    base = int(time.time() * 1000) - 3_600_000
    producer = KafkaProducer(bootstrap_servers=strom.bootstrap, acks="all")
    for i in range(10):
        producer.send(topic, value=b"v%d" % i, partition=0, timestamp_ms=base + 1000 * i)
    producer.flush(timeout=KCAT_TIMEOUT_S)
    producer.close()

    def offset_at(timestamp: int) -> str:
        return kcat(strom, "-Q", "-t", f"{topic}:0:{timestamp}").strip()

    assert offset_at(base + 4500) == f"{topic} [0] offset 5"
    assert offset_at(base) == f"{topic} [0] offset 0"
    # kcat's -Q takes librdkafka's logical offsets: -1 is the end, -2 the beginning.
    assert offset_at(-1) == f"{topic} [0] offset 10"
    assert offset_at(-2) == f"{topic} [0] offset 0"
    # Past the last timestamp there is no such offset: Kafka answers -1.
    assert offset_at(base + 60_000) == f"{topic} [0] offset -1"
