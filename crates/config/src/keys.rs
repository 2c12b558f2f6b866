//! The table: every configuration key Strom knows, each defined once (see [`ConfigDef`]).
//!
//! It holds Kafka's topic keys; the broker keys Strom acts on; and every key Kafka's
//! `DynamicBrokerConfig` lets a broker change at run time (SSL, SASL, listeners, connection
//! limits, thread pools, the log cleaner, remote log, replication quotas), which Strom accepts and
//! stores even where it does not act on them yet. Values follow Kafka 3.9/4.0; where Strom's
//! default differs from Kafka's, the entry says so.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use crate::def::BrokerScope::{ClusterWide, PerBroker, PerListener, ReadOnly};
use crate::def::ConfigType::{Boolean, Class, Double, Int, List, Long, Password, Short};
use crate::def::Validator::{Any, AtLeast, Between, BetweenOr, OneOf};
use crate::def::{BrokerSynonym, ConfigDef, ConfigType, Conversion};

const LONG_MAX: Option<&str> = Some("9223372036854775807");
const INT_MAX: Option<&str> = Some("2147483647");
const NULL: Option<&str> = None;
const STRING: ConfigType = ConfigType::String;

const CLEANUP_POLICIES: &[&str] = &["compact", "delete"];
const COMPRESSION_TYPES: &[&str] = &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];
const TIMESTAMP_TYPES: &[&str] = &["CreateTime", "LogAppendTime"];
/// Kafka's `SecurityProtocol` names (Strom serves PLAINTEXT listeners only).
pub const SECURITY_PROTOCOLS: &[&str] = &["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];

/// A broker key in the same unit as its topic key.
const fn same(name: &'static str) -> BrokerSynonym {
    BrokerSynonym {
        name,
        conversion: Conversion::AsIs,
        negative_is_unlimited: false,
    }
}

/// A broker key in hours behind a topic key in milliseconds.
const fn hours(name: &'static str) -> BrokerSynonym {
    BrokerSynonym {
        conversion: Conversion::HoursToMs,
        ..same(name)
    }
}

/// A `log.retention.*` key: converted to milliseconds, any negative value meaning unlimited (-1).
const fn retention(name: &'static str, conversion: Conversion) -> BrokerSynonym {
    BrokerSynonym {
        name,
        conversion,
        negative_is_unlimited: true,
    }
}

const fn key(
    name: &'static str,
    config_type: ConfigType,
    default: Option<&'static str>,
    validator: crate::def::Validator,
) -> ConfigDef {
    ConfigDef::new(name, config_type, default, validator)
}

/// Every key, grouped by purpose. Look keys up with [`crate::find`]; iterate in name order with
/// [`crate::all_keys`].
pub static KEYS: &[ConfigDef] = &[
    // ---- Topic keys, each with the broker keys behind its default (ServerTopicConfigSynonyms) ----
    key(
        "cleanup.policy",
        List,
        Some("delete"),
        OneOf(CLEANUP_POLICIES),
    )
    .topic(&[same("log.cleanup.policy")]),
    key(
        "compression.gzip.level",
        Int,
        Some("-1"),
        BetweenOr {
            min: 1,
            max: 9,
            or: -1,
        },
    )
    .topic(&[same("compression.gzip.level")])
    .broker(ClusterWide),
    key("compression.lz4.level", Int, Some("9"), Between(1.0, 17.0))
        .topic(&[same("compression.lz4.level")])
        .broker(ClusterWide),
    key(
        "compression.type",
        STRING,
        Some("producer"),
        OneOf(COMPRESSION_TYPES),
    )
    .topic(&[same("compression.type")])
    .broker(ClusterWide),
    key(
        "compression.zstd.level",
        Int,
        Some("3"),
        Between(-131072.0, 22.0),
    )
    .topic(&[same("compression.zstd.level")])
    .broker(ClusterWide),
    key("delete.retention.ms", Long, Some("86400000"), AtLeast(0))
        .topic(&[same("log.cleaner.delete.retention.ms")]),
    key("file.delete.delay.ms", Long, Some("60000"), AtLeast(0))
        .topic(&[same("log.segment.delete.delay.ms")]),
    key("flush.messages", Long, LONG_MAX, AtLeast(1)).topic(&[same("log.flush.interval.messages")]),
    key("flush.ms", Long, LONG_MAX, AtLeast(0)).topic(&[
        same("log.flush.interval.ms"),
        same("log.flush.scheduler.interval.ms"),
    ]),
    key(
        "follower.replication.throttled.replicas",
        List,
        Some(""),
        Any,
    )
    .topic(&[]),
    key("index.interval.bytes", Int, Some("4096"), AtLeast(0))
        .topic(&[same("log.index.interval.bytes")]),
    key("leader.replication.throttled.replicas", List, Some(""), Any).topic(&[]),
    key("local.retention.bytes", Long, Some("-2"), AtLeast(-2))
        .topic(&[same("log.local.retention.bytes")]),
    key("local.retention.ms", Long, Some("-2"), AtLeast(-2))
        .topic(&[same("log.local.retention.ms")]),
    key("max.compaction.lag.ms", Long, LONG_MAX, AtLeast(1))
        .topic(&[same("log.cleaner.max.compaction.lag.ms")]),
    key("max.message.bytes", Int, Some("1048588"), AtLeast(0)).topic(&[same("message.max.bytes")]),
    key("message.downconversion.enable", Boolean, Some("true"), Any)
        .topic(&[same("log.message.downconversion.enable")]),
    key("message.format.version", STRING, Some("3.0-IV1"), Any)
        .topic(&[same("log.message.format.version")]),
    key("message.timestamp.after.max.ms", Long, LONG_MAX, AtLeast(0))
        .topic(&[same("log.message.timestamp.after.max.ms")]),
    key(
        "message.timestamp.before.max.ms",
        Long,
        LONG_MAX,
        AtLeast(0),
    )
    .topic(&[same("log.message.timestamp.before.max.ms")]),
    key(
        "message.timestamp.difference.max.ms",
        Long,
        LONG_MAX,
        AtLeast(0),
    )
    .topic(&[same("log.message.timestamp.difference.max.ms")]),
    key(
        "message.timestamp.type",
        STRING,
        Some("CreateTime"),
        OneOf(TIMESTAMP_TYPES),
    )
    .topic(&[same("log.message.timestamp.type")]),
    key(
        "min.cleanable.dirty.ratio",
        Double,
        Some("0.5"),
        Between(0.0, 1.0),
    )
    .topic(&[same("log.cleaner.min.cleanable.ratio")]),
    key("min.compaction.lag.ms", Long, Some("0"), AtLeast(0))
        .topic(&[same("log.cleaner.min.compaction.lag.ms")]),
    key("min.insync.replicas", Int, Some("1"), AtLeast(1))
        .topic(&[same("min.insync.replicas")])
        .broker(ClusterWide),
    key("preallocate", Boolean, Some("false"), Any).topic(&[same("log.preallocate")]),
    key("remote.storage.enable", Boolean, Some("false"), Any).topic(&[]),
    key("retention.bytes", Long, Some("-1"), Any).topic(&[same("log.retention.bytes")]),
    key("retention.ms", Long, Some("604800000"), AtLeast(-1)).topic(&[
        retention("log.retention.ms", Conversion::AsIs),
        retention("log.retention.minutes", Conversion::MinutesToMs),
        retention("log.retention.hours", Conversion::HoursToMs),
    ]),
    key("segment.bytes", Int, Some("1073741824"), AtLeast(14)).topic(&[same("log.segment.bytes")]),
    key("segment.index.bytes", Int, Some("10485760"), AtLeast(4))
        .topic(&[same("log.index.size.max.bytes")]),
    key("segment.jitter.ms", Long, Some("0"), AtLeast(0))
        .topic(&[same("log.roll.jitter.ms"), hours("log.roll.jitter.hours")]),
    key("segment.ms", Long, Some("604800000"), AtLeast(1))
        .topic(&[same("log.roll.ms"), hours("log.roll.hours")]),
    key(
        "unclean.leader.election.enable",
        Boolean,
        Some("false"),
        Any,
    )
    .topic(&[same("unclean.leader.election.enable")])
    .broker(ClusterWide),
    // ---- Broker defaults of topic keys (DynamicLogConfig: the first synonym is dynamic) ----
    key(
        "log.cleaner.delete.retention.ms",
        Long,
        Some("86400000"),
        AtLeast(0),
    )
    .broker(ClusterWide),
    key(
        "log.cleaner.max.compaction.lag.ms",
        Long,
        LONG_MAX,
        AtLeast(1),
    )
    .broker(ClusterWide),
    key(
        "log.cleaner.min.cleanable.ratio",
        Double,
        Some("0.5"),
        Between(0.0, 1.0),
    )
    .broker(ClusterWide),
    key(
        "log.cleaner.min.compaction.lag.ms",
        Long,
        Some("0"),
        AtLeast(0),
    )
    .broker(ClusterWide),
    key(
        "log.cleanup.policy",
        List,
        Some("delete"),
        OneOf(CLEANUP_POLICIES),
    )
    .broker(ClusterWide),
    key("log.flush.interval.messages", Long, LONG_MAX, AtLeast(1)).broker(ClusterWide),
    key("log.flush.interval.ms", Long, NULL, Any).broker(ClusterWide),
    key("log.flush.scheduler.interval.ms", Long, LONG_MAX, Any).broker(ReadOnly),
    key("log.index.interval.bytes", Int, Some("4096"), AtLeast(0)).broker(ClusterWide),
    key(
        "log.index.size.max.bytes",
        Int,
        Some("10485760"),
        AtLeast(4),
    )
    .broker(ClusterWide),
    key("log.local.retention.bytes", Long, Some("-2"), AtLeast(-2)).broker(ClusterWide),
    key("log.local.retention.ms", Long, Some("-2"), AtLeast(-2)).broker(ClusterWide),
    key(
        "log.message.downconversion.enable",
        Boolean,
        Some("true"),
        Any,
    )
    .broker(ClusterWide),
    // Not dynamic in Kafka: every broker must support the version first.
    key("log.message.format.version", STRING, Some("3.0-IV1"), Any).broker(ReadOnly),
    key(
        "log.message.timestamp.after.max.ms",
        Long,
        LONG_MAX,
        AtLeast(0),
    )
    .broker(ClusterWide),
    key(
        "log.message.timestamp.before.max.ms",
        Long,
        LONG_MAX,
        AtLeast(0),
    )
    .broker(ClusterWide),
    key(
        "log.message.timestamp.difference.max.ms",
        Long,
        LONG_MAX,
        AtLeast(0),
    )
    .broker(ClusterWide),
    key(
        "log.message.timestamp.type",
        STRING,
        Some("CreateTime"),
        OneOf(TIMESTAMP_TYPES),
    )
    .broker(ClusterWide),
    key("log.preallocate", Boolean, Some("false"), Any).broker(ClusterWide),
    key("log.retention.bytes", Long, Some("-1"), Any).broker(ClusterWide),
    key("log.retention.hours", Int, Some("168"), Any).broker(ReadOnly),
    key("log.retention.minutes", Int, NULL, Any).broker(ReadOnly),
    key("log.retention.ms", Long, NULL, Any).broker(ClusterWide),
    key("log.roll.hours", Int, Some("168"), AtLeast(1)).broker(ReadOnly),
    key("log.roll.jitter.hours", Int, Some("0"), AtLeast(0)).broker(ReadOnly),
    key("log.roll.jitter.ms", Long, NULL, Any).broker(ClusterWide),
    key("log.roll.ms", Long, NULL, Any).broker(ClusterWide),
    key("log.segment.bytes", Int, Some("1073741824"), AtLeast(14)).broker(ClusterWide),
    key(
        "log.segment.delete.delay.ms",
        Long,
        Some("60000"),
        AtLeast(0),
    )
    .broker(ClusterWide),
    key("message.max.bytes", Int, Some("1048588"), AtLeast(0)).broker(ClusterWide),
    // ---- Broker keys Strom acts on (static) ----
    key("auto.create.topics.enable", Boolean, Some("true"), Any).broker(ReadOnly),
    key("auto.leader.rebalance.enable", Boolean, Some("true"), Any).broker(ReadOnly),
    // Strom: unset means "the node id" (Kafka's default is -1).
    key("broker.id", Int, NULL, AtLeast(0)).broker(ReadOnly),
    key(
        "broker.heartbeat.interval.ms",
        Int,
        Some("2000"),
        AtLeast(1),
    )
    .broker(ReadOnly),
    key("broker.rack", STRING, NULL, Any).broker(ReadOnly),
    key("broker.session.timeout.ms", Int, Some("9000"), AtLeast(1)).broker(ReadOnly),
    // Replication: followers fetch from leaders; leaders keep the in-sync replica set.
    key("replica.fetch.backoff.ms", Int, Some("1000"), AtLeast(0)).broker(ReadOnly),
    key("replica.fetch.max.bytes", Int, Some("1048576"), AtLeast(0)).broker(ReadOnly),
    key("replica.fetch.min.bytes", Int, Some("1"), Any).broker(ReadOnly),
    key(
        "replica.fetch.response.max.bytes",
        Int,
        Some("10485760"),
        AtLeast(0),
    )
    .broker(ReadOnly),
    key("replica.fetch.wait.max.ms", Int, Some("500"), Any).broker(ReadOnly),
    key("replica.lag.time.max.ms", Long, Some("30000"), Any).broker(ReadOnly),
    key("replica.socket.timeout.ms", Int, Some("30000"), Any).broker(ReadOnly),
    // Strom: at least 1 (Kafka accepts any value; a negative one disables the idle timeout).
    key("connections.max.idle.ms", Long, Some("600000"), AtLeast(1)).broker(ReadOnly),
    key("controller.listener.names", STRING, NULL, Any).broker(ReadOnly),
    key("controller.quorum.bootstrap.servers", List, Some(""), Any).broker(ReadOnly),
    key(
        "controller.quorum.election.timeout.ms",
        Int,
        Some("1000"),
        AtLeast(1),
    )
    .broker(ReadOnly),
    key(
        "controller.quorum.fetch.timeout.ms",
        Int,
        Some("2000"),
        AtLeast(1),
    )
    .broker(ReadOnly),
    key("controller.quorum.voters", List, Some(""), Any).broker(ReadOnly),
    // Strom: a replication factor is a 16-bit number on the wire, so at most 32767.
    key(
        "default.replication.factor",
        Int,
        Some("1"),
        Between(1.0, 32767.0),
    )
    .broker(ReadOnly),
    key("delete.topic.enable", Boolean, Some("true"), Any).broker(ReadOnly),
    key("fetch.max.bytes", Int, Some("57671680"), AtLeast(1024)).broker(ReadOnly),
    key(
        "group.initial.rebalance.delay.ms",
        Int,
        Some("3000"),
        AtLeast(0),
    )
    .broker(ReadOnly),
    key("group.max.session.timeout.ms", Int, Some("1800000"), Any).broker(ReadOnly),
    key("group.min.session.timeout.ms", Int, Some("6000"), Any).broker(ReadOnly),
    key("inter.broker.listener.name", STRING, NULL, Any).broker(ReadOnly),
    key(
        "leader.imbalance.check.interval.seconds",
        Long,
        Some("300"),
        AtLeast(1),
    )
    .broker(ReadOnly),
    key(
        "leader.imbalance.per.broker.percentage",
        Int,
        Some("10"),
        Any,
    )
    .broker(ReadOnly),
    key(
        "security.inter.broker.protocol",
        STRING,
        Some("PLAINTEXT"),
        OneOf(SECURITY_PROTOCOLS),
    )
    .broker(ReadOnly),
    // Strom: ./strom-data (Kafka: /tmp/kafka-logs).
    key("log.dir", STRING, Some("./strom-data"), Any).broker(ReadOnly),
    key("log.dirs", STRING, NULL, Any).broker(ReadOnly),
    key(
        "log.retention.check.interval.ms",
        Long,
        Some("300000"),
        AtLeast(1),
    )
    .broker(ReadOnly),
    // Strom: 1 (Kafka requires it to be set).
    key("node.id", Int, Some("1"), AtLeast(0)).broker(ReadOnly),
    key("num.partitions", Int, Some("1"), AtLeast(1)).broker(ReadOnly),
    key("offsets.commit.timeout.ms", Int, Some("5000"), AtLeast(1)).broker(ReadOnly),
    key("offsets.retention.minutes", Int, Some("10080"), AtLeast(1)).broker(ReadOnly),
    key("offsets.topic.num.partitions", Int, Some("50"), AtLeast(1)).broker(ReadOnly),
    // Kafka's 3; Strom caps it by the brokers available when the topic is created, so a
    // single node gets 1 (Kafka refuses to create the topic until enough brokers are alive).
    key(
        "offsets.topic.replication.factor",
        Short,
        Some("3"),
        AtLeast(1),
    )
    .broker(ReadOnly),
    key(
        "offsets.topic.segment.bytes",
        Int,
        Some("104857600"),
        AtLeast(1),
    )
    .broker(ReadOnly),
    // Strom: broker,controller (Kafka requires it to be set).
    key(
        "process.roles",
        List,
        Some("broker,controller"),
        OneOf(&["broker", "controller"]),
    )
    .broker(ReadOnly),
    key(
        "socket.request.max.bytes",
        Int,
        Some("104857600"),
        AtLeast(1),
    )
    .broker(ReadOnly),
    key(
        "transaction.max.timeout.ms",
        Int,
        Some("900000"),
        AtLeast(1),
    )
    .broker(ReadOnly),
    // Strom: 1 (Kafka: 2).
    key("transaction.state.log.min.isr", Int, Some("1"), AtLeast(1)).broker(ReadOnly),
    key(
        "transaction.state.log.num.partitions",
        Int,
        Some("50"),
        AtLeast(1),
    )
    .broker(ReadOnly),
    // Strom: 1 (Kafka: 3).
    key(
        "transaction.state.log.replication.factor",
        Short,
        Some("1"),
        AtLeast(1),
    )
    .broker(ReadOnly),
    key(
        "transaction.state.log.segment.bytes",
        Int,
        Some("104857600"),
        AtLeast(1),
    )
    .broker(ReadOnly),
    key(
        "transactional.id.expiration.ms",
        Int,
        Some("604800000"),
        AtLeast(1),
    )
    .broker(ReadOnly),
    // Kafka's internal key: how often the active controller looks for leaderless partitions of
    // topics that allow unclean leader election.
    key(
        "unclean.leader.election.interval.ms",
        Long,
        Some("300000"),
        AtLeast(1),
    )
    .broker(ReadOnly),
    // ---- Static broker keys Strom accepts without effect ----
    key(
        "group.coordinator.rebalance.protocols",
        List,
        Some("classic,consumer"),
        Any,
    )
    .broker(ReadOnly),
    key("log.cleaner.enable", Boolean, Some("true"), Any).broker(ReadOnly),
    key("metadata.log.dir", STRING, NULL, Any).broker(ReadOnly),
    key(
        "metadata.log.segment.bytes",
        Int,
        Some("1073741824"),
        AtLeast(12),
    )
    .broker(ReadOnly),
    // Kafka's default is -1 (unbounded); Strom bounds request memory at 512 MiB (or
    // socket.request.max.bytes if larger; see the broker's BrokerConfig).
    key("queued.max.request.bytes", Long, Some("536870912"), Any).broker(ReadOnly),
    key("queued.max.requests", Int, Some("500"), AtLeast(1)).broker(ReadOnly),
    key(
        "share.coordinator.state.topic.min.isr",
        Short,
        Some("2"),
        AtLeast(1),
    )
    .broker(ReadOnly),
    key(
        "share.coordinator.state.topic.replication.factor",
        Short,
        Some("3"),
        AtLeast(1),
    )
    .broker(ReadOnly),
    key("socket.receive.buffer.bytes", Int, Some("102400"), Any).broker(ReadOnly),
    key("socket.send.buffer.bytes", Int, Some("102400"), Any).broker(ReadOnly),
    // ---- Dynamic broker keys Strom stores without acting on them yet ----
    // Listeners (per broker).
    key("advertised.listeners", STRING, NULL, Any).broker(PerBroker),
    // Strom: binds 127.0.0.1 by default (Kafka: PLAINTEXT://:9092, every interface).
    key("listeners", STRING, Some("PLAINTEXT://127.0.0.1:9092"), Any).broker(PerBroker),
    key(
        "listener.security.protocol.map",
        STRING,
        Some("PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL"),
        Any,
    )
    .broker(PerBroker),
    // Connection limits and network threads (cluster-wide, also per listener).
    key("max.connection.creation.rate", Int, INT_MAX, AtLeast(0))
        .broker(ClusterWide)
        .per_listener(),
    key("max.connections", Int, INT_MAX, AtLeast(0))
        .broker(ClusterWide)
        .per_listener(),
    key("max.connections.per.ip", Int, INT_MAX, AtLeast(0)).broker(ClusterWide),
    key("max.connections.per.ip.overrides", STRING, Some(""), Any).broker(ClusterWide),
    key("num.network.threads", Int, Some("3"), AtLeast(1))
        .broker(ClusterWide)
        .per_listener()
        .thread_pool(),
    // Thread pools.
    key("background.threads", Int, Some("10"), AtLeast(1))
        .broker(ClusterWide)
        .thread_pool(),
    key("num.io.threads", Int, Some("8"), AtLeast(1))
        .broker(ClusterWide)
        .thread_pool(),
    key(
        "num.recovery.threads.per.data.dir",
        Int,
        Some("1"),
        AtLeast(1),
    )
    .broker(ClusterWide)
    .thread_pool(),
    key("num.replica.fetchers", Int, Some("1"), Any)
        .broker(ClusterWide)
        .thread_pool(),
    // Log cleaner.
    key("log.cleaner.backoff.ms", Long, Some("15000"), AtLeast(0)).broker(ClusterWide),
    key(
        "log.cleaner.dedupe.buffer.size",
        Long,
        Some("134217728"),
        Any,
    )
    .broker(ClusterWide),
    key(
        "log.cleaner.io.buffer.load.factor",
        Double,
        Some("0.9"),
        Any,
    )
    .broker(ClusterWide),
    key(
        "log.cleaner.io.buffer.size",
        Int,
        Some("524288"),
        AtLeast(0),
    )
    .broker(ClusterWide),
    key(
        "log.cleaner.io.max.bytes.per.second",
        Double,
        Some("1.7976931348623157E308"),
        Any,
    )
    .broker(ClusterWide),
    key("log.cleaner.threads", Int, Some("1"), AtLeast(0)).broker(ClusterWide),
    // Metrics, producer state, remote log, replication quotas.
    key("metric.reporters", List, Some(""), Any).broker(ClusterWide),
    key(
        "producer.id.expiration.ms",
        Int,
        Some("86400000"),
        AtLeast(1),
    )
    .broker(ClusterWide),
    key(
        "transaction.partition.verification.enable",
        Boolean,
        Some("true"),
        Any,
    )
    .broker(ClusterWide),
    key("remote.fetch.max.wait.ms", Int, Some("500"), AtLeast(1)).broker(ClusterWide),
    key(
        "remote.list.offsets.request.timeout.ms",
        Long,
        Some("30000"),
        AtLeast(1),
    )
    .broker(ClusterWide),
    key(
        "remote.log.index.file.cache.total.size.bytes",
        Long,
        Some("1073741824"),
        AtLeast(1),
    )
    .broker(ClusterWide),
    key(
        "remote.log.manager.copy.max.bytes.per.second",
        Long,
        LONG_MAX,
        AtLeast(1),
    )
    .broker(ClusterWide),
    key(
        "remote.log.manager.fetch.max.bytes.per.second",
        Long,
        LONG_MAX,
        AtLeast(1),
    )
    .broker(ClusterWide),
    key(
        "follower.replication.throttled.rate",
        Long,
        LONG_MAX,
        AtLeast(0),
    )
    .broker(ClusterWide),
    key(
        "leader.replication.throttled.rate",
        Long,
        LONG_MAX,
        AtLeast(0),
    )
    .broker(ClusterWide),
    key(
        "replica.alter.log.dirs.io.max.bytes.per.second",
        Long,
        LONG_MAX,
        AtLeast(0),
    )
    .broker(ClusterWide),
    // SSL (per broker, also per listener; key and trust stores only per listener).
    key(
        "principal.builder.class",
        Class,
        Some("org.apache.kafka.common.security.authenticator.DefaultKafkaPrincipalBuilder"),
        Any,
    )
    .broker(PerBroker)
    .per_listener(),
    key("ssl.cipher.suites", List, Some(""), Any)
        .broker(PerBroker)
        .per_listener(),
    key(
        "ssl.client.auth",
        STRING,
        Some("none"),
        OneOf(&["required", "requested", "none"]),
    )
    .broker(PerBroker)
    .per_listener(),
    key("ssl.enabled.protocols", List, Some("TLSv1.2,TLSv1.3"), Any)
        .broker(PerBroker)
        .per_listener(),
    key(
        "ssl.endpoint.identification.algorithm",
        STRING,
        Some("https"),
        Any,
    )
    .broker(PerBroker)
    .per_listener(),
    key("ssl.engine.factory.class", Class, NULL, Any)
        .broker(PerBroker)
        .per_listener(),
    key("ssl.key.password", Password, NULL, Any)
        .broker(PerListener)
        .per_listener(),
    key("ssl.keymanager.algorithm", STRING, Some("SunX509"), Any)
        .broker(PerBroker)
        .per_listener(),
    key("ssl.keystore.certificate.chain", Password, NULL, Any)
        .broker(PerListener)
        .per_listener(),
    key("ssl.keystore.key", Password, NULL, Any)
        .broker(PerListener)
        .per_listener(),
    key("ssl.keystore.location", STRING, NULL, Any)
        .broker(PerListener)
        .per_listener(),
    key("ssl.keystore.password", Password, NULL, Any)
        .broker(PerListener)
        .per_listener(),
    key("ssl.keystore.type", STRING, Some("JKS"), Any)
        .broker(PerListener)
        .per_listener(),
    key("ssl.protocol", STRING, Some("TLSv1.3"), Any)
        .broker(PerBroker)
        .per_listener(),
    key("ssl.provider", STRING, NULL, Any)
        .broker(PerBroker)
        .per_listener(),
    key("ssl.secure.random.implementation", STRING, NULL, Any)
        .broker(PerBroker)
        .per_listener(),
    key("ssl.trustmanager.algorithm", STRING, Some("PKIX"), Any)
        .broker(PerBroker)
        .per_listener(),
    key("ssl.truststore.certificates", Password, NULL, Any)
        .broker(PerListener)
        .per_listener(),
    key("ssl.truststore.location", STRING, NULL, Any)
        .broker(PerListener)
        .per_listener(),
    key("ssl.truststore.password", Password, NULL, Any)
        .broker(PerListener)
        .per_listener(),
    key("ssl.truststore.type", STRING, Some("JKS"), Any)
        .broker(PerListener)
        .per_listener(),
    // SASL (per broker, also per listener).
    key("sasl.enabled.mechanisms", List, Some("GSSAPI"), Any)
        .broker(PerBroker)
        .per_listener(),
    key("sasl.jaas.config", Password, NULL, Any)
        .broker(PerBroker)
        .per_listener(),
    key(
        "sasl.kerberos.kinit.cmd",
        STRING,
        Some("/usr/bin/kinit"),
        Any,
    )
    .broker(PerBroker)
    .per_listener(),
    key(
        "sasl.kerberos.min.time.before.relogin",
        Long,
        Some("60000"),
        Any,
    )
    .broker(PerBroker)
    .per_listener(),
    key(
        "sasl.kerberos.principal.to.local.rules",
        List,
        Some("DEFAULT"),
        Any,
    )
    .broker(PerBroker)
    .per_listener(),
    key("sasl.kerberos.service.name", STRING, NULL, Any)
        .broker(PerBroker)
        .per_listener(),
    key(
        "sasl.kerberos.ticket.renew.jitter",
        Double,
        Some("0.05"),
        Any,
    )
    .broker(PerBroker)
    .per_listener(),
    key(
        "sasl.kerberos.ticket.renew.window.factor",
        Double,
        Some("0.8"),
        Any,
    )
    .broker(PerBroker)
    .per_listener(),
    key("sasl.login.refresh.buffer.seconds", Short, Some("300"), Any)
        .broker(PerBroker)
        .per_listener(),
    key(
        "sasl.login.refresh.min.period.seconds",
        Short,
        Some("60"),
        Any,
    )
    .broker(PerBroker)
    .per_listener(),
    key("sasl.login.refresh.window.factor", Double, Some("0.8"), Any)
        .broker(PerBroker)
        .per_listener(),
    key(
        "sasl.login.refresh.window.jitter",
        Double,
        Some("0.05"),
        Any,
    )
    .broker(PerBroker)
    .per_listener(),
    key(
        "sasl.mechanism.inter.broker.protocol",
        STRING,
        Some("GSSAPI"),
        Any,
    )
    .broker(PerBroker)
    .per_listener(),
];

/// The table indexed by name (built once).
pub(crate) static BY_NAME: LazyLock<BTreeMap<&'static str, &'static ConfigDef>> =
    LazyLock::new(|| KEYS.iter().map(|def| (def.name, def)).collect());
