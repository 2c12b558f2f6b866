"""All three client stacks share one partition: kafka-python, confluent-kafka and kcat each append
batches with every compression codec, then each of them reads the whole log back and all three
must see the same records at the same offsets."""

from __future__ import annotations

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer
from confluent_kafka import TopicPartition as ConfluentTopicPartition
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KafkaPythonTopicPartition

from conftest import StromBroker, kcat, unique_topic, wait_until

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
RECORDS_PER_BATCH = 20
TIMEOUT_S = 10


def expected_records(client: str, codec: str) -> list[tuple[str, str]]:
    return [
        (f"{client}-{codec}-{i}", f"{client} {codec} record {i} " + "payload " * (i % 9))
        for i in range(RECORDS_PER_BATCH)
    ]


def append_with_kafka_python(broker: StromBroker, topic: str, codec: str) -> None:
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap,
        acks="all",
        compression_type=None if codec == "none" else codec,
        linger_ms=50,
    )
    for key, value in expected_records("kafka-python", codec):
        producer.send(topic, key=key.encode(), value=value.encode(), partition=0)
    producer.flush(timeout=TIMEOUT_S)
    producer.close()


def append_with_confluent(broker: StromBroker, topic: str, codec: str) -> None:
    producer = Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "enable.idempotence": True,
            "compression.type": codec,
            "linger.ms": 50,
        }
    )
    for key, value in expected_records("confluent", codec):
        producer.produce(topic, key=key.encode(), value=value.encode(), partition=0)
    assert producer.flush(TIMEOUT_S) == 0


def append_with_kcat(broker: StromBroker, topic: str, codec: str) -> None:
    lines = [f"{key}\t{value}" for key, value in expected_records("kcat", codec)]
    kcat(
        broker,
        "-P",
        "-t",
        topic,
        "-p",
        "0",
        "-K\t",
        "-X",
        f"compression.codec={codec}",
        stdin="\n".join(lines) + "\n",
    )


def read_with_kafka_python(broker: StromBroker, topic: str, count: int) -> list[tuple[int, str, str]]:
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    partition = KafkaPythonTopicPartition(topic, 0)
    try:
        consumer.assign([partition])
        consumer.seek_to_beginning()
        records: list = []

        def received_all() -> bool:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
            return len(records) >= count

        wait_until(received_all, lambda: f"kafka-python to read {count} records (have {len(records)})")
        return [(r.offset, r.key.decode(), r.value.decode()) for r in records]
    finally:
        consumer.close()


def read_with_confluent(broker: StromBroker, topic: str, count: int) -> list[tuple[int, str, str]]:
    consumer = Consumer(
        {"bootstrap.servers": broker.bootstrap, "group.id": "compat-unused", "enable.auto.commit": False}
    )
    try:
        consumer.assign([ConfluentTopicPartition(topic, 0, OFFSET_BEGINNING)])
        records: list = []

        def received_all() -> bool:
            for message in consumer.consume(num_messages=count - len(records), timeout=0.2):
                if message.error():
                    raise KafkaException(message.error())
                records.append(message)
            return len(records) >= count

        wait_until(received_all, lambda: f"confluent-kafka to read {count} records (have {len(records)})")
        return [(m.offset(), m.key().decode(), m.value().decode()) for m in records]
    finally:
        consumer.close()


def read_with_kcat(broker: StromBroker, topic: str) -> list[tuple[int, str, str]]:
    output = kcat(broker, "-C", "-t", topic, "-p", "0", "-e", "-o", "beginning", "-f", "%o\t%k\t%s\n")
    records = []
    for line in output.splitlines():
        offset, key, value = line.split("\t", 2)
        records.append((int(offset), key, value))
    return records


def test_every_client_reads_what_every_client_wrote(strom: StromBroker):
    topic = unique_topic("cross")
    expected: list[tuple[str, str]] = []
    for codec in CODECS:
        append_with_kafka_python(strom, topic, codec)
        expected += expected_records("kafka-python", codec)
        append_with_confluent(strom, topic, codec)
        expected += expected_records("confluent", codec)
        append_with_kcat(strom, topic, codec)
        expected += expected_records("kcat", codec)
    log = [(offset, key, value) for offset, (key, value) in enumerate(expected)]

    assert read_with_kafka_python(strom, topic, len(log)) == log
    assert read_with_confluent(strom, topic, len(log)) == log
    assert read_with_kcat(strom, topic) == log

