//! Translations between openraft's values and the metadata log's: node ids (Kafka's `i32`,
//! openraft's `u64`), terms and epochs, log ids and (offset, epoch), entries and [`LogEntry`]s
//! (blank and membership entries as control records), memberships and [`VoterSet`]s, votes and the
//! [`QuorumState`] file.

use std::collections::{BTreeMap, BTreeSet};

use openraft::{BasicNode, CommittedLeaderId, EntryPayload, LeaderId};

use super::{Entry, LogId, Membership, MetadataRecords, StoredMembership, Vote};
use crate::control_records::{ControlRecord, QuorumMember, VoterSet};
use crate::log::LogEntry;
use crate::quorum_state::QuorumState;

/// A value that does not fit the other side's type, or a control record that does not read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ConvertError(String);

/// openraft's id of Kafka node `id` (Kafka node ids are never negative).
pub(crate) fn raft_node_id(id: i32) -> Result<u64, ConvertError> {
    u64::try_from(id).map_err(|_| ConvertError(format!("node id {id} is negative")))
}

/// Kafka's id of openraft node `id`; every id openraft sees came from [`raft_node_id`].
pub(crate) fn kafka_node_id(id: u64) -> i32 {
    i32::try_from(id).unwrap_or(i32::MAX)
}

/// Kafka's leader epoch of Raft term `term`.
pub(crate) fn epoch(term: u64) -> Result<i32, ConvertError> {
    i32::try_from(term).map_err(|_| ConvertError(format!("term {term} exceeds the largest epoch")))
}

/// The metadata log offset of Raft log index `index`.
pub(crate) fn offset(index: u64) -> Result<i64, ConvertError> {
    i64::try_from(index).map_err(|_| ConvertError(format!("log index {index} exceeds i64")))
}

/// The Raft log id of the entry at `offset` written in `epoch` (both never negative in a log).
pub(crate) fn log_id(epoch: i32, offset: i64) -> LogId {
    LogId::new(
        CommittedLeaderId::new(u64::try_from(epoch).unwrap_or(0), 0),
        u64::try_from(offset).unwrap_or(0),
    )
}

/// The metadata log entry that stores `entry`.
pub(crate) fn log_entry(entry: &Entry) -> Result<LogEntry, ConvertError> {
    let records = match &entry.payload {
        EntryPayload::Normal(records) => records.0.clone(),
        EntryPayload::Blank => vec![ControlRecord::LeaderChange.encode()],
        EntryPayload::Membership(membership) => {
            vec![ControlRecord::Voters(voter_set(Some(&entry.log_id), membership)?).encode()]
        }
    };
    Ok(LogEntry {
        offset: offset(entry.log_id.index)?,
        epoch: epoch(entry.log_id.leader_id.term)?,
        records,
    })
}

/// The Raft entry a metadata log entry stores.
pub(crate) fn raft_entry(entry: &LogEntry) -> Result<Entry, ConvertError> {
    let payload = match entry.records.first().and_then(|r| ControlRecord::decode(r)) {
        None => EntryPayload::Normal(MetadataRecords(entry.records.clone())),
        Some(Ok(ControlRecord::LeaderChange)) => EntryPayload::Blank,
        Some(Ok(ControlRecord::Voters(voters))) => EntryPayload::Membership(membership(&voters)?),
        Some(Err(error)) => {
            return Err(ConvertError(format!(
                "metadata log entry at offset {}: {error}",
                entry.offset
            )))
        }
    };
    Ok(Entry {
        log_id: log_id(entry.epoch, entry.offset),
        payload,
    })
}

/// The control-record form of `membership`, introduced by the entry `log_id` (none for the
/// membership of a node that never joined).
pub(crate) fn voter_set(
    log_id: Option<&LogId>,
    membership: &Membership,
) -> Result<VoterSet, ConvertError> {
    let ids = |ids: &BTreeSet<u64>| ids.iter().map(|id| kafka_node_id(*id)).collect();
    Ok(VoterSet {
        offset: log_id.map_or(Ok(-1), |id| offset(id.index))?,
        epoch: log_id.map_or(Ok(0), |id| epoch(id.leader_id.term))?,
        configs: membership.get_joint_config().iter().map(ids).collect(),
        nodes: membership
            .nodes()
            .map(|(id, node)| QuorumMember {
                id: kafka_node_id(*id),
                address: node.addr.clone(),
            })
            .collect(),
    })
}

/// The membership a control record describes.
pub(crate) fn membership(voters: &VoterSet) -> Result<Membership, ConvertError> {
    let configs = voters
        .configs
        .iter()
        .map(|config| config.iter().map(|id| raft_node_id(*id)).collect())
        .collect::<Result<Vec<BTreeSet<u64>>, _>>()?;
    let nodes = voters
        .nodes
        .iter()
        .map(|member| {
            let node = BasicNode {
                addr: member.address.clone(),
            };
            raft_node_id(member.id).map(|id| (id, node))
        })
        .collect::<Result<BTreeMap<u64, BasicNode>, _>>()?;
    Ok(Membership::new(configs, nodes))
}

/// The membership a control record describes, with the log id of the entry that introduced it.
pub(crate) fn stored_membership(voters: &VoterSet) -> Result<StoredMembership, ConvertError> {
    let introduced_by = (voters.offset >= 0).then(|| log_id(voters.epoch, voters.offset));
    Ok(StoredMembership::new(introduced_by, membership(voters)?))
}

/// The quorum-state file's form of `vote`: the epoch, whom this node voted for, and the leader once
/// the vote is committed (a quorum granted it). `data_version` is kept as read.
pub(crate) fn quorum_state(vote: &Vote, data_version: i32) -> Result<QuorumState, ConvertError> {
    let voted_id = vote.leader_id.voted_for.map_or(-1, kafka_node_id);
    Ok(QuorumState {
        epoch: epoch(vote.leader_id.term)?,
        voted_id,
        leader_id: if vote.committed { voted_id } else { -1 },
        data_version,
    })
}

/// The vote the quorum-state file holds (`None` for a node that never voted).
pub(crate) fn vote(state: &QuorumState) -> Option<Vote> {
    let candidate = if state.leader_id >= 0 {
        state.leader_id
    } else {
        state.voted_id
    };
    if state.epoch <= 0 && candidate < 0 {
        return None;
    }
    Some(Vote {
        leader_id: LeaderId {
            term: u64::try_from(state.epoch).unwrap_or(0),
            voted_for: u64::try_from(candidate).ok(),
        },
        committed: state.leader_id >= 0,
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn entries_round_trip_through_the_metadata_log_form() {
        let membership = Membership::new(
            vec![BTreeSet::from([1, 2, 3])],
            BTreeMap::from([
                (1, BasicNode::new("a:1")),
                (2, BasicNode::new("b:2")),
                (3, BasicNode::new("c:3")),
                (4, BasicNode::new("d:4")),
            ]),
        );
        let entries = [
            EntryPayload::Blank,
            EntryPayload::Membership(membership),
            EntryPayload::Normal(MetadataRecords(vec![Bytes::from_static(b"\x01abc")])),
            EntryPayload::Normal(MetadataRecords(vec![])),
        ];
        for (index, payload) in entries.into_iter().enumerate() {
            let entry = Entry {
                log_id: log_id(7, index as i64),
                payload,
            };
            let stored = log_entry(&entry).unwrap();
            assert_eq!((stored.offset, stored.epoch), (index as i64, 7));
            assert_eq!(raft_entry(&stored).unwrap(), entry);
        }
    }

    #[test]
    fn votes_round_trip_through_the_quorum_state_file() {
        assert_eq!(vote(&QuorumState::initial()), None);
        for committed in [false, true] {
            let vote_for_2 = Vote {
                leader_id: LeaderId {
                    term: 5,
                    voted_for: Some(2),
                },
                committed,
            };
            let state = quorum_state(&vote_for_2, 0).unwrap();
            assert_eq!(state.leader_id, if committed { 2 } else { -1 });
            assert_eq!(vote(&state), Some(vote_for_2));
        }
    }
}
