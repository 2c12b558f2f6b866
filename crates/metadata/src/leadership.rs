//! Partition leadership as brokers come and go: the partition changes the controller commits when
//! a broker is fenced or shuts down (it leaves every ISR it is in, unless it is the last member,
//! and its leaderships move to another live in-sync replica) and when a broker becomes live again
//! (leaderless partitions get a leader: an in-sync replica). Kafka's controller does the same
//! (`ReplicationControlManager.generateLeaderAndIsrUpdates`). A partition of a topic with
//! `unclean.leader.election.enable` that has no live in-sync replica gets a live replica from
//! outside the ISR as leader, and the ISR becomes that leader alone; otherwise it stays without a
//! leader until an in-sync replica returns.

use crate::image::{MetadataImage, TopicImage};
use crate::partition_change::{Election, PartitionChange};
use crate::records::PartitionChangeRecord;

/// `PartitionChangeRecord.leader` / `PartitionImage.leader` of a partition without a leader.
pub const NO_LEADER: i32 = -1;

/// Whether `broker` can lead partitions: registered, unfenced, not shutting down.
pub fn is_live(image: &MetadataImage, broker: i32) -> bool {
    image
        .brokers
        .get(&broker)
        .is_some_and(|b| !b.fenced && !b.in_controlled_shutdown)
}

/// The election a partition of `topic` gets when its leader must change.
fn election(topic: &TopicImage, unclean: &dyn Fn(&TopicImage) -> bool) -> Election {
    if unclean(topic) {
        Election::Unclean
    } else {
        Election::Online
    }
}

/// Changes that take `leaving` out of leadership and out of the ISRs, for every partition it
/// replicates. `leaving` is treated as not live whatever the image says. `unclean` says whether a
/// topic allows unclean leader election.
pub fn changes_for_leaving_broker(
    image: &MetadataImage,
    leaving: i32,
    unclean: &dyn Fn(&TopicImage) -> bool,
) -> Vec<PartitionChangeRecord> {
    let acceptable = |broker: i32| broker != leaving && is_live(image, broker);
    let mut changes = Vec::new();
    for topic in image.topics.values() {
        for (&partition_id, partition) in &topic.partitions {
            if !partition.replicas.contains(&leaving) {
                continue;
            }
            let shrunk: Vec<i32> = partition
                .isr
                .iter()
                .copied()
                .filter(|b| *b != leaving)
                .collect();
            // The last in-sync replica stays in the ISR: it holds every committed record.
            let isr = if shrunk.is_empty() {
                partition.isr.clone()
            } else {
                shrunk
            };
            changes.extend(
                PartitionChange::new(topic.id, partition_id, partition)
                    .target_isr(isr)
                    .election(election(topic, unclean))
                    .build(acceptable),
            );
        }
    }
    changes
}

/// Changes that give a leader to partitions that have none, now that `arriving` is live (an
/// in-sync replica in replica order, or, where the topic allows it and no in-sync replica is
/// live, any live replica).
pub fn changes_for_arriving_broker(
    image: &MetadataImage,
    arriving: i32,
    unclean: &dyn Fn(&TopicImage) -> bool,
) -> Vec<PartitionChangeRecord> {
    let acceptable = |broker: i32| broker == arriving || is_live(image, broker);
    leaderless_changes(image, acceptable, unclean)
}

/// Unclean elections for the leaderless partitions of topics that allow them (Kafka's periodic
/// `maybeElectUncleanLeaders`): what enabling `unclean.leader.election.enable` dynamically does
/// to partitions that already lost every in-sync replica.
pub fn unclean_elections(
    image: &MetadataImage,
    unclean: &dyn Fn(&TopicImage) -> bool,
) -> Vec<PartitionChangeRecord> {
    leaderless_changes(image, |broker| is_live(image, broker), unclean)
}

fn leaderless_changes(
    image: &MetadataImage,
    acceptable: impl Fn(i32) -> bool,
    unclean: &dyn Fn(&TopicImage) -> bool,
) -> Vec<PartitionChangeRecord> {
    let mut changes = Vec::new();
    for topic in image.topics.values() {
        for (&partition_id, partition) in &topic.partitions {
            if partition.leader != NO_LEADER {
                continue;
            }
            changes.extend(
                PartitionChange::new(topic.id, partition_id, partition)
                    .election(election(topic, unclean))
                    .build(&acceptable),
            );
        }
    }
    changes
}
