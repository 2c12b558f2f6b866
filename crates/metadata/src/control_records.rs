//! Quorum control records: records of the metadata log that belong to the replication protocol
//! rather than to the metadata image, like the control records KRaft keeps in `__cluster_metadata`
//! (`LeaderChangeMessage`, `VotersRecord`). The metadata state skips them; the quorum
//! implementation reads them back to rebuild its own state (who the voters are) from the log and
//! from snapshots.
//!
//! # Encoding
//!
//! A metadata record always starts with the `MetadataRecordSerde` frame version, a uvarint that is
//! 1 (see [`crate::records`]), so its first byte is never 0. A control record is the byte
//! [`CONTROL_RECORD_MARKER`] (0) followed by a JSON document tagged by `type`:
//!
//! * `{"type":"LeaderChange"}` — the entry a newly elected leader writes first in its epoch (Raft's
//!   blank entry; KRaft writes a `LeaderChangeMessage` there). It carries nothing else.
//! * `{"type":"Voters","offset":O,"epoch":E,"configs":[[1,2,3]],"nodes":[{"id":1,"address":"host:port"},...]}` —
//!   the membership from the entry at offset `O` (written in epoch `E`) on: `configs` is one voter
//!   list, or two while a change is in flight (joint consensus: both majorities are needed);
//!   `nodes` maps every member, voters and observers (learners) alike, to its address. Snapshots
//!   begin with the `Voters` record in force at their end offset.
//!
//! Entries that hold control records hold nothing else.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// First byte of every control record; never the first byte of a metadata record.
pub const CONTROL_RECORD_MARKER: u8 = 0;

/// A record of the replication protocol kept in the metadata log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ControlRecord {
    /// The first entry of a new leader's epoch.
    LeaderChange,
    /// The voter set from the entry that holds this record on.
    Voters(VoterSet),
}

/// A membership of the metadata quorum.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VoterSet {
    /// Offset of the entry that introduced this membership.
    pub offset: i64,
    /// Epoch of that entry.
    pub epoch: i32,
    /// The voter lists whose majorities must all agree: one, or two during a change.
    pub configs: Vec<Vec<i32>>,
    /// Every member, voter or observer, by id.
    pub nodes: Vec<QuorumMember>,
}

/// A member of the quorum and the address its peers reach it at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumMember {
    pub id: i32,
    pub address: String,
}

/// Why a control record could not be read.
#[derive(Debug, thiserror::Error)]
#[error("invalid quorum control record: {0}")]
pub struct ControlRecordError(#[from] serde_json::Error);

/// Whether `record` is a control record (to be skipped by the metadata state).
pub fn is_control_record(record: &[u8]) -> bool {
    record.first() == Some(&CONTROL_RECORD_MARKER)
}

impl ControlRecord {
    /// The record's bytes as stored in a log entry or snapshot.
    pub fn encode(&self) -> Bytes {
        let mut out = vec![CONTROL_RECORD_MARKER];
        // Serializing these plain structs to a Vec cannot fail.
        if let Err(error) = serde_json::to_writer(&mut out, self) {
            unreachable!("control record serialization failed: {error}");
        }
        Bytes::from(out)
    }

    /// Reads `record` if it is a control record; `None` for a metadata record.
    pub fn decode(record: &[u8]) -> Option<Result<Self, ControlRecordError>> {
        let json = record.strip_prefix(&[CONTROL_RECORD_MARKER])?;
        Some(serde_json::from_slice(json).map_err(ControlRecordError))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::LogEntry;
    use crate::records::{serialize_record, MetadataRecord, TopicRecord};
    use crate::snapshot::SnapshotId;
    use crate::state::MetadataState;

    #[test]
    fn control_records_round_trip_and_are_told_apart_from_metadata_records() {
        let voters = ControlRecord::Voters(VoterSet {
            offset: 0,
            epoch: 0,
            configs: vec![vec![1, 2, 3]],
            nodes: [(1, "a:1"), (2, "b:2"), (3, "c:3")]
                .map(|(id, address)| QuorumMember {
                    id,
                    address: address.into(),
                })
                .to_vec(),
        });
        for record in [ControlRecord::LeaderChange, voters] {
            let bytes = record.encode();
            assert!(is_control_record(&bytes));
            assert_eq!(ControlRecord::decode(&bytes).unwrap().unwrap(), record);
        }
        let topic = serialize_record(&MetadataRecord::Topic(TopicRecord::default())).unwrap();
        assert!(!is_control_record(&topic));
        assert!(ControlRecord::decode(&topic).is_none());
        assert!(ControlRecord::decode(&[CONTROL_RECORD_MARKER, b'{'])
            .unwrap()
            .is_err());
    }

    #[test]
    fn the_metadata_state_skips_control_records() {
        let state = MetadataState::new("cluster".into());
        let topic = MetadataRecord::Topic(TopicRecord {
            name: "t".into(),
            topic_id: [1; 16],
        });
        let entries = [
            vec![ControlRecord::LeaderChange.encode()],
            vec![ControlRecord::Voters(VoterSet::default()).encode()],
            vec![serialize_record(&topic).unwrap()],
        ];
        for (offset, records) in entries.into_iter().enumerate() {
            let entry = LogEntry {
                offset: offset as i64,
                epoch: 1,
                records,
            };
            state.apply(&entry).unwrap();
        }
        let image = state.image();
        assert_eq!(image.last_offset, 2);
        assert_eq!(image.topics.keys().collect::<Vec<_>>(), vec!["t"]);

        let snapshot = [
            ControlRecord::Voters(VoterSet::default()).encode(),
            serialize_record(&topic).unwrap(),
        ];
        let id = SnapshotId {
            end_offset: 3,
            epoch: 1,
        };
        state.install_snapshot(id, &snapshot).unwrap();
        assert_eq!(state.image().topics.len(), 1);
    }
}
