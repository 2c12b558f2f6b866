//! Rebuilding the groups of one `__consumer_offsets` partition from its records, in log order
//! (Kafka's `GroupMetadataManager.doLoadGroupsAndOffsets`): the last record of a key wins and a
//! null value deletes it. Groups with stored metadata come back with their members and
//! offsets; groups that only have offsets come back Empty; deleted groups stay deleted unless
//! offsets were committed after their tombstone. The coordinator installs the result once the
//! whole partition has been read ([`super::GroupCoordinator::finish_load`]).

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

use super::group::Group;
use super::records::{CommittedOffset, OffsetsKey, StoredGroup};

/// The groups and offsets of one partition, as far as its records have been replayed.
#[derive(Debug, Default)]
pub struct LoadedPartition {
    offsets: HashMap<String, BTreeMap<(String, i32), CommittedOffset>>,
    /// The last metadata record of each group; `None` for a tombstone.
    groups: HashMap<String, Option<StoredGroup>>,
    /// Records whose key or value could not be decoded.
    skipped: usize,
}

impl LoadedPartition {
    /// Applies the next record of the partition.
    pub fn replay(&mut self, key: Bytes, value: Option<Bytes>) {
        let Ok(key) = OffsetsKey::decode(key) else {
            self.skipped += 1;
            return;
        };
        match key {
            OffsetsKey::Offset {
                group,
                topic,
                partition,
            } => match value.map(CommittedOffset::decode) {
                Some(Ok(offset)) => {
                    self.offsets
                        .entry(group)
                        .or_default()
                        .insert((topic, partition), offset);
                }
                Some(Err(_)) => self.skipped += 1,
                None => {
                    if let Some(offsets) = self.offsets.get_mut(&group) {
                        offsets.remove(&(topic, partition));
                    }
                }
            },
            OffsetsKey::Group { group } => match value.map(StoredGroup::decode) {
                Some(Ok(stored)) => {
                    self.groups.insert(group, Some(stored));
                }
                Some(Err(_)) => self.skipped += 1,
                None => {
                    self.groups.insert(group, None);
                }
            },
        }
    }

    /// How many records could not be decoded (and were skipped).
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// The groups as of the end of the replayed records: members and generation restored from
    /// the last metadata record (a group with members comes back Stable, its members' sessions
    /// starting at `now_ms`), offsets attached.
    pub fn into_groups(self, now_ms: i64) -> Vec<Group> {
        let LoadedPartition {
            mut offsets,
            groups,
            skipped: _,
        } = self;
        let mut loaded = Vec::new();
        for (group_id, stored) in groups {
            let Some(stored) = stored else {
                continue;
            };
            let mut group = Group::new(&group_id, now_ms);
            group.restore(stored, now_ms);
            group.offsets = offsets.remove(&group_id).unwrap_or_default();
            loaded.push(group);
        }
        // Groups that only store offsets (or whose metadata was deleted before new commits).
        for (group_id, offsets) in offsets {
            if offsets.is_empty() {
                continue;
            }
            let mut group = Group::new(&group_id, now_ms);
            group.offsets = offsets;
            loaded.push(group);
        }
        loaded
    }
}
