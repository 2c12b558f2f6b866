//! Round-trip tests of the generated message codec against the `kafka-protocol` crate, for every
//! message both know and every version both support:
//!
//! - kafka-protocol's default message, encoded by it, must decode with ours (consuming every byte) and
//!   re-encode to the same bytes;
//! - a schema-driven sample (every field set to a distinct value, arrays of two, tagged fields
//!   present; and a minimal one with nulls and empty arrays), written by the independent writer in
//!   `common`, must decode and re-encode to the same bytes with ours AND with kafka-protocol. That is
//!   "ours -> theirs -> bytes equal" and "theirs -> ours -> bytes equal" on non-trivial messages.
//!
//! - and both decoders must hold, in the right fields, the values the sample writer put in (compared
//!   through their `Debug` renderings, field by field), so a codec that swapped two fields of the same
//!   type would be caught even though its bytes round-trip.
//!
//! Every mismatch is collected and reported with its message, version, sample and first differing
//! byte, so that one run lists all of them. The sample checks need Kafka's JSON schemas next to the
//! workspace and are skipped (with a notice) where they are absent.

// Test code. (clippy.toml's allow-*-in-tests does not reach integration-test helpers.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::{Bytes, BytesMut};
use common::{debug_leaves, load_schemas, sample_with_values, schema_dir, Sample, Schema};
use kafka_protocol::protocol::{Decodable, Encodable, Message};
use strom_protocol::codec::{Decode, Encode, Encoder};

/// Our supported versions of a message: the API table for requests and responses, else the schema.
fn our_versions(name: &str, schemas: Option<&HashMap<String, Schema>>) -> Option<(i16, i16)> {
    let api_name = name
        .strip_suffix("Request")
        .or_else(|| name.strip_suffix("Response"));
    if let Some(api) =
        api_name.and_then(|n| strom_protocol::messages::APIS.iter().find(|a| a.name == n))
    {
        return Some((api.min_version, api.max_version));
    }
    let schema = schemas?.get(name)?;
    Some((schema.valid.low, schema.valid.high))
}

fn first_difference(a: &[u8], b: &[u8]) -> String {
    let at = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    format!(
        "lengths {} vs {}, first difference at byte {at}: {:02x?} vs {:02x?}",
        a.len(),
        b.len(),
        &a[at.min(a.len())..(at + 8).min(a.len())],
        &b[at.min(b.len())..(at + 8).min(b.len())]
    )
}

fn ours_round_trip<O: Decode + Encode>(bytes: &Bytes, version: i16) -> Result<Bytes, String> {
    catch_unwind(AssertUnwindSafe(|| {
        let mut buf = bytes.clone();
        let message =
            O::decode(&mut buf, version).map_err(|e| format!("ours failed to decode: {e}"))?;
        if !buf.is_empty() {
            return Err(format!(
                "ours left {} of {} bytes undecoded",
                buf.len(),
                bytes.len()
            ));
        }
        let mut out = Encoder::new();
        message.encode(&mut out, version);
        Ok(out.into_bytes())
    }))
    .unwrap_or_else(|_| Err("ours panicked".to_string()))
}

fn theirs_round_trip<T: Decodable + Encodable>(
    bytes: &Bytes,
    version: i16,
) -> Result<Bytes, String> {
    catch_unwind(AssertUnwindSafe(|| {
        let mut buf = bytes.clone();
        let message =
            T::decode(&mut buf, version).map_err(|e| format!("theirs failed to decode: {e:#}"))?;
        if !buf.is_empty() {
            return Err(format!(
                "theirs left {} of {} bytes undecoded",
                buf.len(),
                bytes.len()
            ));
        }
        let mut out = BytesMut::new();
        message
            .encode(&mut out, version)
            .map_err(|e| format!("theirs failed to encode: {e:#}"))?;
        Ok(out.freeze())
    }))
    .unwrap_or_else(|_| Err("theirs panicked".to_string()))
}

/// Where kafka-protocol 0.18 itself is wrong or follows an older schema revision than Kafka's current
/// schemas, which ours follows: its side of the sample checks is skipped there.
const ORACLE_DISAGREES: &[(&str, &str)] = &[
    // A field named `Version` shadows the version variable in its generated decoder, so nested
    // structs are decoded at the value of that field.
    (
        "LeaderChangeMessage",
        "field `Version` shadows the message version in kafka-protocol",
    ),
    (
        "VotersRecord",
        "field `Version` shadows the message version in kafka-protocol",
    ),
    (
        "KRaftVersionRecord",
        "field `Version` shadows the message version in kafka-protocol",
    ),
    (
        "SnapshotHeaderRecord",
        "field `Version` shadows the message version in kafka-protocol",
    ),
    (
        "SnapshotFooterRecord",
        "field `Version` shadows the message version in kafka-protocol",
    ),
    // kafka-protocol's schema has PartitionResult.LeaderEpoch in v0, Kafka's current schema does not.
    (
        "ReadShareGroupStateSummaryResponse",
        "kafka-protocol has an older v0 schema",
    ),
];

/// Decodes `bytes` and checks that every value the sample writer put in is where it belongs.
fn holds_values<M: std::fmt::Debug>(
    decode: impl FnOnce(&mut Bytes) -> Result<M, String>,
    bytes: &Bytes,
    written: &[(String, String)],
) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(|| {
        let message = decode(&mut bytes.clone())?;
        let rendered = format!("{message:?}");
        let leaves = debug_leaves(&rendered);
        for (path, value) in written {
            match leaves.get(path) {
                Some(found) if found == value => {}
                found => {
                    return Err(format!(
                        "field {path}: wrote {value}, decoded {}\n    in {rendered}",
                        found.map_or("nothing", String::as_str)
                    ))
                }
            }
        }
        Ok(())
    }))
    .unwrap_or_else(|_| Err("decoder panicked".to_string()))
}

/// Messages whose fields kafka-protocol names differently (a later schema renamed them): its side of
/// the value check is skipped there, the byte checks still run.
const RENAMED_IN_ORACLE: &[&str] = &[
    // VoteRequest PartitionData.CandidateEpoch/CandidateId are ReplicaEpoch/ReplicaId there.
    "VoteRequest",
];

struct Report {
    schemas: Option<HashMap<String, Schema>>,
    failures: Vec<String>,
    checked: usize,
}

impl Report {
    fn expect_same(&mut self, what: String, expected: &Bytes, actual: Result<Bytes, String>) {
        self.checked += 1;
        match actual {
            Ok(actual) if actual == *expected => {}
            Ok(actual) => self
                .failures
                .push(format!("{what}: {}", first_difference(expected, &actual))),
            Err(err) => self.failures.push(format!("{what}: {err}")),
        }
    }

    fn expect_ok(&mut self, what: String, result: Result<(), String>) {
        self.checked += 1;
        if let Err(err) = result {
            self.failures.push(format!("{what}: {err}"));
        }
    }

    fn check<
        O: Decode + Encode + std::fmt::Debug,
        T: Decodable + Encodable + Message + Default + std::fmt::Debug,
    >(
        &mut self,
        name: &str,
    ) {
        let Some((our_min, our_max)) = our_versions(name, self.schemas.as_ref()) else {
            return;
        };
        let low = our_min.max(T::VERSIONS.min);
        let high = our_max.min(T::VERSIONS.max);
        for version in low..=high {
            let mut theirs = BytesMut::new();
            match T::default().encode(&mut theirs, version) {
                Ok(()) => {
                    let theirs = theirs.freeze();
                    let ours = ours_round_trip::<O>(&theirs, version);
                    self.expect_same(
                        format!("{name} v{version} default, theirs -> ours"),
                        &theirs,
                        ours,
                    );
                }
                Err(err) => self.failures.push(format!(
                    "{name} v{version}: theirs cannot encode its default: {err:#}"
                )),
            }
            let Some(schema) = self.schemas.as_ref().and_then(|s| s.get(name)).cloned() else {
                continue;
            };
            for sample in [Sample::Full, Sample::Minimal] {
                let message = sample_with_values(&schema, version, sample);
                let (bytes, written) = (Bytes::from(message.bytes), message.written);
                // Ours must also hold the schema defaults where the sample has no value.
                let expected_by_ours: Vec<_> =
                    written.iter().chain(&message.defaults).cloned().collect();
                let what = format!("{name} v{version} {sample:?} sample");
                let ours = ours_round_trip::<O>(&bytes, version);
                self.expect_same(format!("{what}, ours"), &bytes, ours);
                let decode_ours =
                    |buf: &mut Bytes| O::decode(buf, version).map_err(|e| e.to_string());
                self.expect_ok(
                    format!("{what}, ours' values"),
                    holds_values(decode_ours, &bytes, &expected_by_ours),
                );
                if ORACLE_DISAGREES
                    .iter()
                    .any(|(disagreeing, _)| *disagreeing == name)
                {
                    continue;
                }
                let theirs = theirs_round_trip::<T>(&bytes, version);
                self.expect_same(format!("{what}, theirs"), &bytes, theirs);
                if RENAMED_IN_ORACLE.contains(&name) {
                    continue;
                }
                let decode_theirs =
                    |buf: &mut Bytes| T::decode(buf, version).map_err(|e| format!("{e:#}"));
                self.expect_ok(
                    format!("{what}, theirs' values"),
                    holds_values(decode_theirs, &bytes, &written),
                );
            }
        }
    }
}

macro_rules! check_all {
    ($report:expr; $($name:ident),* $(,)?) => {
        $(
            $report.check::<strom_protocol::messages::$name, kafka_protocol::messages::$name>(stringify!($name));
        )*
    };
}

#[test]
fn every_message_round_trips_like_kafka_protocol() {
    let schemas = load_schemas(&schema_dir());
    if schemas.is_none() {
        eprintln!(
            "Kafka schemas not found at {}: schema-driven samples skipped",
            schema_dir().display()
        );
    }
    let mut report = Report {
        schemas,
        failures: Vec::new(),
        checked: 0,
    };
    check_all!(report;
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, AddRaftVoterRequest, AddRaftVoterResponse,
    AllocateProducerIdsRequest, AllocateProducerIdsResponse, AlterClientQuotasRequest,
    AlterClientQuotasResponse, AlterConfigsRequest, AlterConfigsResponse,
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, AlterPartitionRequest,
    AlterPartitionResponse, AlterReplicaLogDirsRequest, AlterReplicaLogDirsResponse,
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, ApiVersionsRequest,
    ApiVersionsResponse, AssignReplicasToDirsRequest, AssignReplicasToDirsResponse,
    BeginQuorumEpochRequest, BeginQuorumEpochResponse, BrokerHeartbeatRequest,
    BrokerHeartbeatResponse, BrokerRegistrationRequest, BrokerRegistrationResponse,
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse, ConsumerProtocolAssignment, ConsumerProtocolSubscription,
    ControllerRegistrationRequest, ControllerRegistrationResponse, CreateAclsRequest,
    CreateAclsResponse, CreateDelegationTokenRequest, CreateDelegationTokenResponse,
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DefaultPrincipalData, DeleteAclsRequest, DeleteAclsResponse, DeleteGroupsRequest,
    DeleteGroupsResponse, DeleteRecordsRequest, DeleteRecordsResponse,
    DeleteShareGroupStateRequest, DeleteShareGroupStateResponse, DeleteTopicsRequest,
    DeleteTopicsResponse, DescribeAclsRequest, DescribeAclsResponse, DescribeClientQuotasRequest,
    DescribeClientQuotasResponse, DescribeClusterRequest, DescribeClusterResponse,
    DescribeConfigsRequest, DescribeConfigsResponse, DescribeDelegationTokenRequest,
    DescribeDelegationTokenResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    DescribeLogDirsRequest, DescribeLogDirsResponse, DescribeProducersRequest,
    DescribeProducersResponse, DescribeQuorumRequest, DescribeQuorumResponse,
    DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, DescribeTransactionsRequest,
    DescribeTransactionsResponse, DescribeUserScramCredentialsRequest,
    DescribeUserScramCredentialsResponse, ElectLeadersRequest, ElectLeadersResponse,
    EndQuorumEpochRequest, EndQuorumEpochResponse, EndTxnRequest, EndTxnResponse, EnvelopeRequest,
    EnvelopeResponse, ExpireDelegationTokenRequest, ExpireDelegationTokenResponse, FetchRequest,
    FetchResponse, FetchSnapshotRequest, FetchSnapshotResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, GetTelemetrySubscriptionsRequest, GetTelemetrySubscriptionsResponse,
    HeartbeatRequest, HeartbeatResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse, InitProducerIdRequest, InitProducerIdResponse,
    InitializeShareGroupStateRequest, InitializeShareGroupStateResponse, JoinGroupRequest,
    JoinGroupResponse, KRaftVersionRecord, LeaderChangeMessage, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, ListOffsetsRequest,
    ListOffsetsResponse, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
    ListTransactionsRequest, ListTransactionsResponse, MetadataRequest, MetadataResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    OffsetFetchRequest, OffsetFetchResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse, ProduceRequest, ProduceResponse, PushTelemetryRequest,
    PushTelemetryResponse, ReadShareGroupStateRequest, ReadShareGroupStateResponse,
    ReadShareGroupStateSummaryRequest, ReadShareGroupStateSummaryResponse, RemoveRaftVoterRequest,
    RemoveRaftVoterResponse, RenewDelegationTokenRequest, RenewDelegationTokenResponse,
    RequestHeader, ResponseHeader, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse, ShareAcknowledgeRequest, ShareAcknowledgeResponse,
    ShareFetchRequest, ShareFetchResponse, ShareGroupDescribeRequest, ShareGroupDescribeResponse,
    ShareGroupHeartbeatRequest, ShareGroupHeartbeatResponse, SnapshotFooterRecord,
    SnapshotHeaderRecord, SyncGroupRequest, SyncGroupResponse, TxnOffsetCommitRequest,
    TxnOffsetCommitResponse, UnregisterBrokerRequest, UnregisterBrokerResponse,
    UpdateFeaturesRequest, UpdateFeaturesResponse, UpdateRaftVoterRequest, UpdateRaftVoterResponse,
    VoteRequest, VoteResponse, VotersRecord, WriteShareGroupStateRequest,
    WriteShareGroupStateResponse, WriteTxnMarkersRequest, WriteTxnMarkersResponse
    );
    // Without the schemas only the default-message checks run (one per message and version).
    let expected = if report.schemas.is_some() { 4000 } else { 500 };
    assert!(
        report.checked > expected,
        "only {} checks ran",
        report.checked
    );
    assert!(
        report.failures.is_empty(),
        "{} of {} round trips failed:\n{}",
        report.failures.len(),
        report.checked,
        report.failures.join("\n")
    );
}
