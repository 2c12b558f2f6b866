//! The bytes of Raft messages between quorum members, which a [`super::RaftTransport`] carries
//! without looking inside.
//!
//! ```text
//! message := header_length:u32 header tail
//! ```
//!
//! `header` is JSON; `tail` is binary and depends on the message:
//!
//! * AppendEntries request: header `{vote, prev_log_id, leader_commit}`, tail the entries in the
//!   metadata log's own checksummed entry format ([`crate::log`]; blank and membership entries as
//!   control records), so a batch costs what it costs on disk;
//! * Vote request: header the request, no tail;
//! * InstallSnapshot request: header `{vote, meta, offset, done}`, tail the chunk of the snapshot
//!   file (at most the configured chunk size);
//! * responses: header the result (the response, or the error the receiving node's Raft returned),
//!   no tail.
//!
//! A message is bounded by the entries per request and the snapshot chunk size the quorum is
//! configured with.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::convert::{log_entry, raft_entry};
use super::{LogId, TypeConfig, Vote};
use crate::log::{encode_entry, parse_entry_at};

/// Why a message could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WireError {
    #[error("Raft message is truncated")]
    Truncated,
    #[error("Raft message header: {0}")]
    Header(#[from] serde_json::Error),
    #[error("Raft message entry at byte {0} is damaged")]
    Entry(usize),
    #[error("Raft message entry: {0}")]
    Convert(String),
}

#[derive(Serialize, Deserialize)]
struct AppendEntriesHeader {
    vote: Vote,
    prev_log_id: Option<LogId>,
    leader_commit: Option<LogId>,
}

#[derive(Serialize, Deserialize)]
struct InstallSnapshotHeader {
    vote: Vote,
    meta: openraft::SnapshotMeta<u64, openraft::BasicNode>,
    offset: u64,
    done: bool,
}

fn encode(header: &impl Serialize, tail: &[u8]) -> Result<Bytes, WireError> {
    let header = serde_json::to_vec(header)?;
    let mut out = BytesMut::with_capacity(4 + header.len() + tail.len());
    out.put_u32(u32::try_from(header.len()).map_err(|_| WireError::Truncated)?);
    out.put_slice(&header);
    out.put_slice(tail);
    Ok(out.freeze())
}

fn decode<T: DeserializeOwned>(mut message: Bytes) -> Result<(T, Bytes), WireError> {
    if message.len() < 4 {
        return Err(WireError::Truncated);
    }
    let header_len = message.get_u32() as usize;
    if message.len() < header_len {
        return Err(WireError::Truncated);
    }
    let header = message.split_to(header_len);
    Ok((serde_json::from_slice(&header)?, message))
}

/// A header-only message (vote requests, every response).
pub(crate) fn encode_plain(value: &impl Serialize) -> Result<Bytes, WireError> {
    encode(value, &[])
}

/// Reads a header-only message.
pub(crate) fn decode_plain<T: DeserializeOwned>(message: Bytes) -> Result<T, WireError> {
    decode(message).map(|(value, _)| value)
}

pub(crate) fn encode_append_entries(
    request: &AppendEntriesRequest<TypeConfig>,
) -> Result<Bytes, WireError> {
    let header = AppendEntriesHeader {
        vote: request.vote,
        prev_log_id: request.prev_log_id,
        leader_commit: request.leader_commit,
    };
    let mut tail = BytesMut::new();
    for entry in &request.entries {
        let stored = log_entry(entry).map_err(|e| WireError::Convert(e.to_string()))?;
        let encoded = encode_entry(&stored).map_err(|e| WireError::Convert(e.to_string()))?;
        tail.put_slice(&encoded);
    }
    encode(&header, &tail)
}

pub(crate) fn decode_append_entries(
    message: Bytes,
) -> Result<AppendEntriesRequest<TypeConfig>, WireError> {
    let (header, tail): (AppendEntriesHeader, Bytes) = decode(message)?;
    let mut entries = Vec::new();
    let mut position = 0;
    while position < tail.len() {
        let (stored, len) = parse_entry_at(&tail, position).ok_or(WireError::Entry(position))?;
        entries.push(raft_entry(&stored).map_err(|e| WireError::Convert(e.to_string()))?);
        position += len;
    }
    Ok(AppendEntriesRequest {
        vote: header.vote,
        prev_log_id: header.prev_log_id,
        entries,
        leader_commit: header.leader_commit,
    })
}

pub(crate) fn encode_install_snapshot(
    request: &InstallSnapshotRequest<TypeConfig>,
) -> Result<Bytes, WireError> {
    let header = InstallSnapshotHeader {
        vote: request.vote,
        meta: request.meta.clone(),
        offset: request.offset,
        done: request.done,
    };
    encode(&header, &request.data)
}

pub(crate) fn decode_install_snapshot(
    message: Bytes,
) -> Result<InstallSnapshotRequest<TypeConfig>, WireError> {
    let (header, tail): (InstallSnapshotHeader, Bytes) = decode(message)?;
    Ok(InstallSnapshotRequest {
        vote: header.vote,
        meta: header.meta,
        offset: header.offset,
        data: tail.to_vec(),
        done: header.done,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::{BasicNode, EntryPayload, LeaderId};

    use super::super::convert::log_id;
    use super::super::{Entry, Membership, MetadataRecords};
    use super::*;

    #[test]
    fn append_entries_round_trip() {
        let vote = Vote {
            leader_id: LeaderId {
                term: 3,
                voted_for: Some(1),
            },
            committed: true,
        };
        let membership = Membership::new(
            vec![BTreeSet::from([1])],
            BTreeMap::from([(1, BasicNode::new("a:1"))]),
        );
        let request = AppendEntriesRequest::<TypeConfig> {
            vote,
            prev_log_id: Some(log_id(2, 9)),
            entries: vec![
                Entry {
                    log_id: log_id(3, 10),
                    payload: EntryPayload::Blank,
                },
                Entry {
                    log_id: log_id(3, 11),
                    payload: EntryPayload::Membership(membership),
                },
                Entry {
                    log_id: log_id(3, 12),
                    payload: EntryPayload::Normal(MetadataRecords(vec![Bytes::from_static(
                        b"\x01record",
                    )])),
                },
            ],
            leader_commit: Some(log_id(2, 9)),
        };
        let decoded = decode_append_entries(encode_append_entries(&request).unwrap()).unwrap();
        assert_eq!(decoded.vote, request.vote);
        assert_eq!(decoded.prev_log_id, request.prev_log_id);
        assert_eq!(decoded.leader_commit, request.leader_commit);
        assert_eq!(decoded.entries, request.entries);

        let mut damaged = encode_append_entries(&request).unwrap().to_vec();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        assert!(decode_append_entries(Bytes::from(damaged)).is_err());
        assert!(decode_append_entries(Bytes::from_static(&[0, 0, 0, 9, b'{'])).is_err());
    }
}
