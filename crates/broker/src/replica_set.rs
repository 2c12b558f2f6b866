//! A leader's view of its partition's replicas (Kafka's ISR state and remote `Replica`s): which
//! replicas are in sync, how far each follower has fetched, and so where the high watermark may
//! go and when the in-sync replica set (ISR) should change.
//!
//! - Each follower fetch reports the follower's log end offset (its fetch offset). A follower is
//!   *caught up* when it fetched at the leader's log end, and stays so for
//!   `replica.lag.time.max.ms` after the last fetch that reached what the leader had at the
//!   previous one (Kafka's `lastCaughtUpTimeMs` rule).
//! - The high watermark is the smallest log end offset of the *maximal* ISR: the committed ISR
//!   plus the members of a change in flight, so that neither a pending shrink nor a pending
//!   expansion lets it pass a replica that may still count (Kafka's `maximalIsr`). A follower
//!   whose log end this leader has not heard of yet holds it back.
//! - A change of the ISR goes through the controller (AlterPartition) and takes effect only once
//!   committed; one change at a time. Shrink: an in-sync follower not caught up for
//!   `replica.lag.time.max.ms`. Expand: a replica outside the ISR whose log end reached the high
//!   watermark and the start of this leader's epoch, on a live broker.
//!
//! The owner ([`crate::partitions::Partition`]) holds one `ReplicaSet` under a mutex, taken after
//! the log's lock.

use std::collections::HashMap;

use strom_metadata::PartitionImage;

/// What the leader knows of one follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FollowerProgress {
    /// The follower's log end offset (its last fetch offset); -1 until it fetches from this leader.
    log_end_offset: i64,
    /// When the follower was last known to be caught up.
    last_caught_up_ms: i64,
    /// The leader's log end offset at the follower's previous fetch, and when that was.
    last_fetch_leader_log_end: i64,
    last_fetch_ms: i64,
}

/// An ISR change to propose to the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrChange {
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<i32>,
}

/// The replica state of a partition as its leader keeps it.
#[derive(Debug, Clone)]
pub struct ReplicaSet {
    node_id: i32,
    replicas: Vec<i32>,
    /// The committed ISR.
    isr: Vec<i32>,
    leader_epoch: i32,
    partition_epoch: i32,
    /// The ISR of an AlterPartition in flight.
    pending: Option<Vec<i32>>,
    /// No change is proposed before this time (after a refused or failed one).
    retry_after_ms: i64,
    followers: HashMap<i32, FollowerProgress>,
    /// This broker's log end offset when it became leader: a follower joins the ISR only once it
    /// has everything written before this leader's epoch.
    leader_epoch_start_offset: i64,
}

impl ReplicaSet {
    /// The state of a partition this broker leads from now on (per `image`), with its log ending
    /// at `log_end_offset`. In-sync followers count as caught up now (so none is dropped at once)
    /// and their log ends are unknown until they fetch.
    pub fn new(node_id: i32, image: &PartitionImage, log_end_offset: i64, now_ms: i64) -> Self {
        let followers = image
            .replicas
            .iter()
            .filter(|&&replica| replica != node_id)
            .map(|&replica| {
                let in_sync = image.isr.contains(&replica);
                let progress = FollowerProgress {
                    log_end_offset: -1,
                    last_caught_up_ms: if in_sync { now_ms } else { 0 },
                    last_fetch_leader_log_end: -1,
                    last_fetch_ms: 0,
                };
                (replica, progress)
            })
            .collect();
        Self {
            node_id,
            replicas: image.replicas.clone(),
            isr: image.isr.clone(),
            leader_epoch: image.leader_epoch,
            partition_epoch: image.partition_epoch,
            pending: None,
            retry_after_ms: 0,
            followers,
            leader_epoch_start_offset: log_end_offset,
        }
    }

    /// Applies a committed change of the same leadership (same leader epoch): the new ISR,
    /// replicas and partition epoch replace the old, and a change in flight is settled by it.
    pub fn apply_committed(&mut self, image: &PartitionImage, now_ms: i64) {
        // An image older than a change the controller already answered for is ignored: going
        // back to its ISR could let the high watermark pass a member the newer ISR has.
        if image.partition_epoch <= self.partition_epoch {
            return;
        }
        self.replicas = image.replicas.clone();
        self.isr = image.isr.clone();
        self.partition_epoch = image.partition_epoch;
        self.pending = None;
        let node_id = self.node_id;
        self.followers
            .retain(|replica, _| image.replicas.contains(replica));
        for &replica in image.replicas.iter().filter(|&&r| r != node_id) {
            self.followers.entry(replica).or_insert(FollowerProgress {
                log_end_offset: -1,
                last_caught_up_ms: now_ms,
                last_fetch_leader_log_end: -1,
                last_fetch_ms: 0,
            });
        }
    }

    /// The committed ISR.
    pub fn isr(&self) -> &[i32] {
        &self.isr
    }

    pub fn is_replica(&self, replica: i32) -> bool {
        self.replicas.contains(&replica)
    }

    /// The committed ISR plus the members a change in flight would add.
    fn maximal_isr(&self) -> impl Iterator<Item = i32> + '_ {
        let added = self
            .pending
            .iter()
            .flatten()
            .filter(|replica| !self.isr.contains(replica));
        self.isr.iter().chain(added).copied()
    }

    /// The offset every replica of the maximal ISR has reached, given the leader's log end: where
    /// the high watermark may go (the caller never moves it back).
    pub fn high_watermark_bound(&self, leader_log_end: i64) -> i64 {
        self.maximal_isr()
            .map(|replica| {
                if replica == self.node_id {
                    leader_log_end
                } else {
                    self.followers
                        .get(&replica)
                        .map_or(-1, |progress| progress.log_end_offset)
                }
            })
            .min()
            .unwrap_or(leader_log_end)
    }

    /// Records a fetch of `replica` at `fetch_offset` (its log end) while the leader's log ends at
    /// `leader_log_end`.
    pub fn record_fetch(
        &mut self,
        replica: i32,
        fetch_offset: i64,
        leader_log_end: i64,
        now_ms: i64,
    ) {
        let Some(progress) = self.followers.get_mut(&replica) else {
            return;
        };
        if fetch_offset >= leader_log_end {
            progress.last_caught_up_ms = progress.last_caught_up_ms.max(now_ms);
        } else if fetch_offset >= progress.last_fetch_leader_log_end {
            progress.last_caught_up_ms = progress.last_caught_up_ms.max(progress.last_fetch_ms);
        }
        progress.log_end_offset = fetch_offset;
        progress.last_fetch_leader_log_end = leader_log_end;
        progress.last_fetch_ms = now_ms;
    }

    /// The ISR with `replica` added, when it is outside the ISR, has reached the high watermark
    /// and the start of this leader's epoch, is `eligible` (a live broker), and no change is in
    /// flight.
    pub fn expansion_for(
        &self,
        replica: i32,
        high_watermark: i64,
        eligible: bool,
        now_ms: i64,
    ) -> Option<IsrChange> {
        if self.pending.is_some() || self.isr.contains(&replica) || !eligible {
            return None;
        }
        if now_ms < self.retry_after_ms {
            return None;
        }
        let progress = self.followers.get(&replica)?;
        let caught_up = progress.log_end_offset >= high_watermark
            && progress.log_end_offset >= self.leader_epoch_start_offset;
        if !caught_up {
            return None;
        }
        let mut new_isr = self.isr.clone();
        new_isr.push(replica);
        Some(self.change_to(new_isr))
    }

    /// The ISR without the followers that have not been caught up for `max_lag_ms` (the leader
    /// always stays), when there are any and no change is in flight.
    pub fn shrink_for_lag(
        &self,
        leader_log_end: i64,
        now_ms: i64,
        max_lag_ms: i64,
    ) -> Option<IsrChange> {
        if self.pending.is_some() || now_ms < self.retry_after_ms {
            return None;
        }
        let lagging = |replica: &i32| {
            *replica != self.node_id
                && self.followers.get(replica).is_none_or(|progress| {
                    progress.log_end_offset != leader_log_end
                        && now_ms - progress.last_caught_up_ms > max_lag_ms
                })
        };
        if !self.isr.iter().any(lagging) {
            return None;
        }
        let new_isr: Vec<i32> = self.isr.iter().copied().filter(|r| !lagging(r)).collect();
        Some(self.change_to(new_isr))
    }

    fn change_to(&self, new_isr: Vec<i32>) -> IsrChange {
        IsrChange {
            leader_epoch: self.leader_epoch,
            partition_epoch: self.partition_epoch,
            new_isr,
        }
    }

    /// Marks `change` as in flight (the maximal ISR now includes its members).
    pub fn begin(&mut self, change: &IsrChange) -> bool {
        if self.pending.is_some()
            || change.partition_epoch != self.partition_epoch
            || change.leader_epoch != self.leader_epoch
        {
            return false;
        }
        self.pending = Some(change.new_isr.clone());
        true
    }

    /// Settles the change in flight: with the committed ISR and partition epoch the controller
    /// answered, or (`None`) refused or failed, which leaves the committed ISR as it was and
    /// holds the next proposal back for `retry_backoff_ms`.
    pub fn complete(
        &mut self,
        committed: Option<(Vec<i32>, i32)>,
        now_ms: i64,
        retry_backoff_ms: i64,
    ) {
        self.pending = None;
        match committed {
            Some((isr, partition_epoch)) => {
                if partition_epoch > self.partition_epoch {
                    self.isr = isr;
                    self.partition_epoch = partition_epoch;
                }
            }
            None => self.retry_after_ms = now_ms + retry_backoff_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(replicas: &[i32], isr: &[i32]) -> PartitionImage {
        PartitionImage {
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            leader: 1,
            leader_epoch: 3,
            partition_epoch: 7,
            ..PartitionImage::default()
        }
    }

    #[test]
    fn the_high_watermark_waits_for_every_in_sync_follower() {
        let mut set = ReplicaSet::new(1, &image(&[1, 2, 3], &[1, 2, 3]), 10, 0);
        assert_eq!(
            set.high_watermark_bound(10),
            -1,
            "followers not heard of yet"
        );
        set.record_fetch(2, 10, 10, 1);
        assert_eq!(set.high_watermark_bound(10), -1);
        set.record_fetch(3, 8, 10, 1);
        assert_eq!(set.high_watermark_bound(10), 8);
        set.record_fetch(3, 10, 10, 2);
        assert_eq!(set.high_watermark_bound(12), 10);
    }

    #[test]
    fn a_single_replica_commits_its_own_log_end() {
        let set = ReplicaSet::new(1, &image(&[1], &[1]), 5, 0);
        assert_eq!(set.high_watermark_bound(6), 6);
    }

    #[test]
    fn a_lagging_follower_is_dropped_after_the_max_lag() {
        let mut set = ReplicaSet::new(1, &image(&[1, 2, 3], &[1, 2, 3]), 10, 0);
        set.record_fetch(2, 10, 10, 100);
        set.record_fetch(3, 4, 10, 100);
        assert_eq!(set.shrink_for_lag(10, 500, 1000), None);
        set.record_fetch(2, 10, 10, 1200);
        let change = set.shrink_for_lag(10, 1200, 1000).expect("3 lags");
        assert_eq!(change.new_isr, vec![1, 2]);
        assert_eq!((change.leader_epoch, change.partition_epoch), (3, 7));
    }

    #[test]
    fn a_follower_that_keeps_up_with_the_previous_fetch_stays_caught_up() {
        let mut set = ReplicaSet::new(1, &image(&[1, 2], &[1, 2]), 10, 0);
        // Fetches lag the leader's end, but each reaches what the leader had at the last one.
        set.record_fetch(2, 10, 20, 900);
        set.record_fetch(2, 20, 30, 1800);
        set.record_fetch(2, 30, 40, 2700);
        assert_eq!(set.shrink_for_lag(40, 2700, 1000), None);
    }

    #[test]
    fn a_pending_expansion_counts_for_the_high_watermark_and_blocks_other_changes() {
        let mut set = ReplicaSet::new(1, &image(&[1, 2, 3], &[1, 2]), 10, 0);
        set.record_fetch(2, 10, 10, 1);
        assert_eq!(set.expansion_for(3, 10, true, 1), None, "3 never fetched");
        set.record_fetch(3, 10, 10, 1);
        assert_eq!(
            set.expansion_for(3, 10, false, 1),
            None,
            "ineligible broker"
        );
        let change = set.expansion_for(3, 10, true, 1).expect("3 caught up");
        assert_eq!(change.new_isr, vec![1, 2, 3]);
        assert!(set.begin(&change));
        set.record_fetch(3, 9, 12, 2);
        assert_eq!(set.high_watermark_bound(12), 9, "3 counts while pending");
        assert_eq!(
            set.shrink_for_lag(12, 1_000_000, 10),
            None,
            "one change at a time"
        );
        set.complete(Some((vec![1, 2, 3], 8)), 3, 1000);
        assert_eq!(set.isr(), &[1, 2, 3]);
    }

    #[test]
    fn a_refused_change_leaves_the_committed_isr() {
        let mut set = ReplicaSet::new(1, &image(&[1, 2], &[1, 2]), 10, 0);
        let change = set
            .shrink_for_lag(10, 100_000, 10)
            .expect("2 never fetched");
        assert!(set.begin(&change));
        set.complete(None, 100_000, 1000);
        assert_eq!(set.isr(), &[1, 2]);
        assert_eq!(set.shrink_for_lag(10, 100_500, 10), None, "backing off");
        assert!(
            set.shrink_for_lag(10, 101_000, 10).is_some(),
            "may try again"
        );
    }

    #[test]
    fn an_older_image_does_not_undo_an_answered_change() {
        let mut set = ReplicaSet::new(1, &image(&[1, 2, 3], &[1, 2]), 10, 0);
        set.record_fetch(3, 10, 10, 1);
        let change = set.expansion_for(3, 10, true, 1).expect("3 caught up");
        assert!(set.begin(&change));
        set.complete(Some((vec![1, 2, 3], 8)), 2, 1000);
        set.apply_committed(&image(&[1, 2, 3], &[1, 2]), 3);
        assert_eq!(set.isr(), &[1, 2, 3]);
        let mut newer = image(&[1, 2, 3], &[1, 3]);
        newer.partition_epoch = 9;
        set.apply_committed(&newer, 4);
        assert_eq!(set.isr(), &[1, 3]);
    }

    #[test]
    fn expansion_needs_the_start_of_the_leaders_epoch() {
        let mut set = ReplicaSet::new(1, &image(&[1, 2], &[1]), 50, 0);
        set.record_fetch(2, 40, 50, 1);
        assert_eq!(set.expansion_for(2, 30, true, 2), None);
        set.record_fetch(2, 50, 50, 2);
        assert!(set.expansion_for(2, 30, true, 2).is_some());
    }
}
