//! One partition's next state, as Kafka's `PartitionChangeBuilder` computes it: the caller states
//! the target ISR (and, for reassignments, the target replicas and the replicas being added and
//! removed) and the kind of election; the builder completes a reassignment whose target replicas
//! are all in the ISR (the removed replicas leave), elects a leader and returns the
//! `PartitionChangeRecord` that gets there, or nothing when nothing would change. Whichever operation changes a partition (AlterPartition, brokers
//! leaving or arriving, ElectLeaders, reassignments) goes through it, so the rules of leader
//! election live in one place.

use strom_protocol::codec::Uuid;

use crate::image::{PartitionImage, NO_LEADER_CHANGE};
use crate::leadership::NO_LEADER;
use crate::records::PartitionChangeRecord;

/// How a new leader may be chosen (Kafka's `PartitionChangeBuilder.Election`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Election {
    /// The first replica if it is in the ISR and acceptable, else as `Online`.
    Preferred,
    /// Keep the current leader if it is in the ISR and acceptable, else the first such replica.
    Online,
    /// As `Online`, and when no in-sync replica can lead, any acceptable replica: the ISR becomes
    /// that leader alone (records the old ISR had may be lost).
    Unclean,
}

/// A change of one partition being built.
#[derive(Debug, Clone)]
pub struct PartitionChange<'a> {
    topic_id: Uuid,
    partition_id: i32,
    current: &'a PartitionImage,
    target_isr: Vec<i32>,
    target_replicas: Vec<i32>,
    target_adding: Vec<i32>,
    target_removing: Vec<i32>,
    election: Election,
}

impl<'a> PartitionChange<'a> {
    /// A change of `current` that, unless told otherwise, keeps its ISR and replicas.
    pub fn new(topic_id: Uuid, partition_id: i32, current: &'a PartitionImage) -> Self {
        Self {
            topic_id,
            partition_id,
            current,
            target_isr: current.isr.clone(),
            target_replicas: current.replicas.clone(),
            target_adding: current.adding_replicas.clone(),
            target_removing: current.removing_replicas.clone(),
            election: Election::Online,
        }
    }

    /// The ISR the partition should have (before any unclean election).
    pub fn target_isr(mut self, isr: Vec<i32>) -> Self {
        self.target_isr = isr;
        self
    }

    /// The replicas the partition should have, and those of them an ongoing reassignment adds
    /// and removes (empty lists: no reassignment).
    pub fn target_replicas(
        mut self,
        replicas: Vec<i32>,
        adding: Vec<i32>,
        removing: Vec<i32>,
    ) -> Self {
        self.target_replicas = replicas;
        self.target_adding = adding;
        self.target_removing = removing;
        self
    }

    /// The kind of election to run.
    pub fn election(mut self, election: Election) -> Self {
        self.election = election;
        self
    }

    /// Elects a leader among the target replicas with `acceptable` (Kafka's
    /// `isAcceptableLeader`: registered, unfenced, not shutting down) and returns the record
    /// that brings the partition to its target, or `None` when that is where it already is.
    pub fn build(mut self, acceptable: impl Fn(i32) -> bool) -> Option<PartitionChangeRecord> {
        let mut record = PartitionChangeRecord {
            partition_id: self.partition_id,
            topic_id: self.topic_id,
            leader: NO_LEADER_CHANGE,
            ..Default::default()
        };
        self.complete_reassignment_if_possible();
        let (leader, unclean) = self.elect(&acceptable);
        if leader != self.current.leader {
            record.leader = leader;
            if unclean {
                tracing::info!(
                    partition = self.partition_id,
                    leader,
                    "unclean leader election: the ISR becomes the new leader alone"
                );
                self.target_isr = vec![leader];
            }
        }
        // Replicas that leave bump the leader epoch (their fetches must be fenced).
        if record.leader == NO_LEADER_CHANGE
            && !self
                .current
                .replicas
                .iter()
                .all(|r| self.target_replicas.contains(r))
        {
            record.leader = self.current.leader;
        }
        if !self.target_isr.is_empty() && self.target_isr != self.current.isr {
            record.isr = Some(self.target_isr);
        }
        if !self.target_replicas.is_empty() && self.target_replicas != self.current.replicas {
            record.replicas = Some(self.target_replicas);
        }
        if self.target_adding != self.current.adding_replicas {
            record.adding_replicas = Some(self.target_adding);
        }
        if self.target_removing != self.current.removing_replicas {
            record.removing_replicas = Some(self.target_removing);
        }
        let unchanged = record.leader == NO_LEADER_CHANGE
            && record.isr.is_none()
            && record.replicas.is_none()
            && record.adding_replicas.is_none()
            && record.removing_replicas.is_none();
        (!unchanged).then_some(record)
    }

    /// Ends an ongoing reassignment once every target replica is in the ISR (Kafka's
    /// `PartitionReassignmentReplicas.maybeCompleteReassignment`): the removed replicas leave the
    /// replicas and the ISR, unless that would leave either empty.
    fn complete_reassignment_if_possible(&mut self) {
        if self.target_adding.is_empty() && self.target_removing.is_empty() {
            return;
        }
        let removing = &self.target_removing;
        let isr: Vec<i32> = self
            .target_isr
            .iter()
            .copied()
            .filter(|r| !removing.contains(r))
            .collect();
        let replicas: Vec<i32> = self
            .target_replicas
            .iter()
            .copied()
            .filter(|r| !removing.contains(r))
            .collect();
        if isr.is_empty() || replicas.is_empty() || !replicas.iter().all(|r| isr.contains(r)) {
            return;
        }
        self.target_isr = isr;
        self.target_replicas = replicas;
        self.target_adding.clear();
        self.target_removing.clear();
    }

    /// The leader after the election and whether it was chosen from outside the ISR.
    fn elect(&self, acceptable: &impl Fn(i32) -> bool) -> (i32, bool) {
        let valid = |replica: i32| self.target_isr.contains(&replica) && acceptable(replica);
        if self.election == Election::Preferred {
            if let Some(&preferred) = self.target_replicas.first() {
                if valid(preferred) {
                    return (preferred, false);
                }
            }
        }
        if valid(self.current.leader) {
            return (self.current.leader, false);
        }
        if let Some(&leader) = self.target_replicas.iter().find(|r| valid(**r)) {
            return (leader, false);
        }
        if self.election == Election::Unclean {
            if let Some(&leader) = self.target_replicas.iter().find(|r| acceptable(**r)) {
                return (leader, true);
            }
        }
        (NO_LEADER, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(replicas: &[i32], isr: &[i32], leader: i32) -> PartitionImage {
        PartitionImage {
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            leader,
            leader_epoch: 3,
            partition_epoch: 7,
            ..PartitionImage::default()
        }
    }

    #[test]
    fn an_unchanged_partition_needs_no_record() {
        let current = partition(&[1, 2, 3], &[1, 2, 3], 1);
        assert_eq!(
            PartitionChange::new([1; 16], 0, &current).build(|_| true),
            None
        );
        let same = PartitionChange::new([1; 16], 0, &current).target_isr(vec![1, 2, 3]);
        assert_eq!(same.build(|_| true), None);
    }

    #[test]
    fn an_isr_change_keeps_an_acceptable_in_sync_leader() {
        let current = partition(&[1, 2, 3], &[1, 2, 3], 2);
        let record = PartitionChange::new([1; 16], 4, &current)
            .target_isr(vec![1, 2])
            .build(|_| true)
            .unwrap();
        assert_eq!(record.partition_id, 4);
        assert_eq!(record.isr, Some(vec![1, 2]));
        assert_eq!(record.leader, NO_LEADER_CHANGE);
        assert_eq!(record.replicas, None);
    }

    #[test]
    fn a_leader_that_leaves_the_isr_is_replaced_in_replica_order() {
        let current = partition(&[1, 2, 3], &[1, 2, 3], 1);
        let record = PartitionChange::new([1; 16], 0, &current)
            .target_isr(vec![3, 2])
            .build(|_| true)
            .unwrap();
        assert_eq!(record.leader, 2);
        assert_eq!(record.isr, Some(vec![3, 2]));
    }

    #[test]
    fn preferred_election_moves_leadership_to_the_first_replica_only_if_it_can_lead() {
        let current = partition(&[1, 2, 3], &[1, 2, 3], 2);
        let preferred = PartitionChange::new([1; 16], 0, &current).election(Election::Preferred);
        assert_eq!(preferred.clone().build(|_| true).unwrap().leader, 1);
        assert_eq!(preferred.build(|b| b != 1), None);
        let out_of_sync = partition(&[1, 2, 3], &[2, 3], 2);
        let preferred =
            PartitionChange::new([1; 16], 0, &out_of_sync).election(Election::Preferred);
        assert_eq!(preferred.build(|_| true), None);
    }

    #[test]
    fn unclean_election_only_when_no_in_sync_replica_can_lead() {
        let current = partition(&[1, 2, 3], &[1], NO_LEADER);
        let online = PartitionChange::new([1; 16], 0, &current);
        assert_eq!(online.clone().build(|b| b != 1), None);
        let unclean = online.election(Election::Unclean);
        let record = unclean.clone().build(|b| b != 1).unwrap();
        assert_eq!((record.leader, record.isr), (2, Some(vec![2])));
        // An in-sync replica that can lead is always preferred to an unclean election.
        let record = unclean.build(|_| true).unwrap();
        assert_eq!((record.leader, record.isr), (1, None));
    }

    fn reassigning(
        replicas: &[i32],
        isr: &[i32],
        leader: i32,
        adding: &[i32],
        removing: &[i32],
    ) -> PartitionImage {
        PartitionImage {
            adding_replicas: adding.to_vec(),
            removing_replicas: removing.to_vec(),
            ..partition(replicas, isr, leader)
        }
    }

    #[test]
    fn a_reassignment_completes_once_every_target_replica_is_in_sync() {
        // [1, 2, 3] -> [1, 2, 4]: replicas [1, 2, 4, 3], adding [4], removing [3].
        let current = reassigning(&[1, 2, 4, 3], &[1, 2, 3], 1, &[4], &[3]);
        // Without 4 in the ISR nothing changes.
        assert_eq!(
            PartitionChange::new([1; 16], 0, &current).build(|_| true),
            None
        );
        let record = PartitionChange::new([1; 16], 0, &current)
            .target_isr(vec![1, 2, 3, 4])
            .build(|_| true)
            .unwrap();
        assert_eq!(record.replicas, Some(vec![1, 2, 4]));
        assert_eq!(record.isr, Some(vec![1, 2, 4]));
        assert_eq!(record.adding_replicas, Some(vec![]));
        assert_eq!(record.removing_replicas, Some(vec![]));
        assert_eq!(record.leader, 1, "a replica leaving bumps the leader epoch");
    }

    #[test]
    fn a_completed_reassignment_moves_leadership_off_a_removed_leader() {
        // [1, 2] -> [3]: replicas [3, 1, 2], adding [3], removing [1, 2]; 1 leads.
        let current = reassigning(&[3, 1, 2], &[1, 2], 1, &[3], &[1, 2]);
        let record = PartitionChange::new([1; 16], 0, &current)
            .target_isr(vec![1, 2, 3])
            .build(|_| true)
            .unwrap();
        assert_eq!(
            (record.leader, record.isr, record.replicas),
            (3, Some(vec![3]), Some(vec![3]))
        );
    }

    #[test]
    fn starting_a_reassignment_records_the_union_and_the_sets() {
        let current = partition(&[1, 2, 3], &[1, 2, 3], 1);
        let record = PartitionChange::new([1; 16], 0, &current)
            .target_replicas(vec![1, 2, 4, 3], vec![4], vec![3])
            .build(|_| true)
            .unwrap();
        assert_eq!(record.replicas, Some(vec![1, 2, 4, 3]));
        assert_eq!(record.adding_replicas, Some(vec![4]));
        assert_eq!(record.removing_replicas, Some(vec![3]));
        assert_eq!((record.leader, record.isr), (NO_LEADER_CHANGE, None));
        // A reordering alone completes at once.
        let record = PartitionChange::new([1; 16], 0, &current)
            .target_replicas(vec![3, 2, 1], vec![], vec![])
            .build(|_| true)
            .unwrap();
        assert_eq!(
            (record.replicas, record.leader),
            (Some(vec![3, 2, 1]), NO_LEADER_CHANGE)
        );
    }
}
