//! Partition leadership as brokers come and go: the partition changes the controller commits when
//! a broker is fenced or shuts down (it leaves every ISR it is in, unless it is the last member,
//! and its leaderships move to another live in-sync replica, or the partition is left without a
//! leader) and when a broker becomes live again (leaderless partitions whose ISR names it get it as
//! leader). Kafka's controller does the same; unclean election (a leader from outside the ISR) is
//! never done here.

use crate::image::{MetadataImage, NO_LEADER_CHANGE};
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

/// Changes that take `leaving` out of leadership and out of the ISRs, for every partition it
/// replicates. `leaving` is treated as not live whatever the image says.
pub fn changes_for_leaving_broker(
    image: &MetadataImage,
    leaving: i32,
) -> Vec<PartitionChangeRecord> {
    let live = |broker: i32| broker != leaving && is_live(image, broker);
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
            let leader = if partition.leader == leaving || !live(partition.leader) {
                isr.iter().copied().find(|b| live(*b)).unwrap_or(NO_LEADER)
            } else {
                partition.leader
            };
            let isr_changed = isr != partition.isr;
            let leader_changed = leader != partition.leader;
            if isr_changed || leader_changed {
                changes.push(PartitionChangeRecord {
                    partition_id,
                    topic_id: topic.id,
                    isr: isr_changed.then_some(isr),
                    leader: if leader_changed {
                        leader
                    } else {
                        NO_LEADER_CHANGE
                    },
                    ..Default::default()
                });
            }
        }
    }
    changes
}

/// Changes that give a leader to partitions that have none and whose ISR names `arriving`,
/// which has just become live (preferring the first live ISR member in replica order).
pub fn changes_for_arriving_broker(
    image: &MetadataImage,
    arriving: i32,
) -> Vec<PartitionChangeRecord> {
    let live = |broker: i32| broker == arriving || is_live(image, broker);
    let mut changes = Vec::new();
    for topic in image.topics.values() {
        for (&partition_id, partition) in &topic.partitions {
            if partition.leader != NO_LEADER || !partition.isr.contains(&arriving) {
                continue;
            }
            let leader = partition
                .replicas
                .iter()
                .copied()
                .find(|b| partition.isr.contains(b) && live(*b))
                .unwrap_or(arriving);
            changes.push(PartitionChangeRecord {
                partition_id,
                topic_id: topic.id,
                leader,
                ..Default::default()
            });
        }
    }
    changes
}
