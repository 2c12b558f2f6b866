//! One partition's next state, as Kafka's `PartitionChangeBuilder` computes it: the caller states
//! the target ISR (and, for reassignments, the target replicas) and the kind of election; the
//! builder elects a leader and returns the `PartitionChangeRecord` that gets there, or nothing
//! when nothing would change. Whichever operation changes a partition (AlterPartition, brokers
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
            election: Election::Online,
        }
    }

    /// The ISR the partition should have (before any unclean election).
    pub fn target_isr(mut self, isr: Vec<i32>) -> Self {
        self.target_isr = isr;
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
        if !self.target_isr.is_empty() && self.target_isr != self.current.isr {
            record.isr = Some(self.target_isr);
        }
        if !self.target_replicas.is_empty() && self.target_replicas != self.current.replicas {
            record.replicas = Some(self.target_replicas);
        }
        let unchanged =
            record.leader == NO_LEADER_CHANGE && record.isr.is_none() && record.replicas.is_none();
        (!unchanged).then_some(record)
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
}
