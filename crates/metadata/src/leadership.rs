//! Partition leadership as brokers come and go: the partition changes the controller commits when
//! a broker is fenced or shuts down (it leaves every ISR it is in, unless it is the last member,
//! and its leaderships move to another live in-sync replica) and when a broker becomes live again
//! (leaderless partitions get a leader: an in-sync replica). Kafka's controller does the same
//! (`ReplicationControlManager.generateLeaderAndIsrUpdates`). A partition of a topic with
//! `unclean.leader.election.enable` that has no live in-sync replica gets a live replica from
//! outside the ISR as leader, and the ISR becomes that leader alone; otherwise it stays without a
//! leader until an in-sync replica returns. Also the automatic preferred leader balancing
//! ([`preferred_leader_rebalance`]).

use std::collections::BTreeMap;

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

/// The partitions a broker is the preferred replica of: how many, and those another leads.
type PreferredShare<'a> = (usize, Vec<(&'a TopicImage, i32)>);

/// Automatic preferred leader balancing (Kafka's `auto.leader.rebalance.enable`, the check its
/// controller runs every `leader.imbalance.check.interval.seconds`): for each broker, the share
/// of the partitions it is the preferred replica (first replica) of that another broker leads;
/// where that share exceeds `percentage` %, those partitions get their preferred replica back as
/// leader, each only if the preferred replica is live and in the ISR.
pub fn preferred_leader_rebalance(
    image: &MetadataImage,
    percentage: i32,
) -> Vec<PartitionChangeRecord> {
    // Per preferred replica: how many partitions it is preferred for, and the imbalanced ones.
    let mut per_broker: BTreeMap<i32, PreferredShare<'_>> = BTreeMap::new();
    for topic in image.topics.values() {
        for (&partition_id, partition) in &topic.partitions {
            let Some(&preferred) = partition.replicas.first() else {
                continue;
            };
            let entry = per_broker.entry(preferred).or_default();
            entry.0 += 1;
            if partition.leader != preferred {
                entry.1.push((topic, partition_id));
            }
        }
    }
    let threshold = i64::from(percentage);
    let mut changes = Vec::new();
    for (preferred, (total, imbalanced)) in per_broker {
        let over = i64::try_from(imbalanced.len() * 100).unwrap_or(i64::MAX)
            > threshold.saturating_mul(i64::try_from(total).unwrap_or(i64::MAX));
        if imbalanced.is_empty() || !over || !is_live(image, preferred) {
            continue;
        }
        for (topic, partition_id) in imbalanced {
            let Some(partition) = topic.partitions.get(&partition_id) else {
                continue;
            };
            if !partition.isr.contains(&preferred) {
                continue;
            }
            changes.extend(
                PartitionChange::new(topic.id, partition_id, partition)
                    .election(Election::Preferred)
                    .build(|broker| is_live(image, broker)),
            );
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::image::{BrokerRegistration, PartitionImage};

    fn broker(id: i32, fenced: bool) -> BrokerRegistration {
        BrokerRegistration {
            id,
            epoch: 0,
            incarnation_id: [0; 16],
            host: "h".into(),
            port: 9092,
            listeners: Vec::new(),
            rack: None,
            fenced,
            in_controlled_shutdown: false,
        }
    }

    /// An image with brokers 1..=3 (those in `fenced` fenced) and topic "t" whose partitions
    /// have the given (replicas, isr, leader).
    fn image(fenced: &[i32], partitions: &[(&[i32], &[i32], i32)]) -> MetadataImage {
        let mut image = MetadataImage::empty("c".into());
        for id in 1..=3 {
            image.brokers.insert(id, broker(id, fenced.contains(&id)));
        }
        let partitions: BTreeMap<i32, PartitionImage> = partitions
            .iter()
            .enumerate()
            .map(|(i, (replicas, isr, leader))| {
                let partition = PartitionImage {
                    replicas: replicas.to_vec(),
                    isr: isr.to_vec(),
                    leader: *leader,
                    leader_epoch: 0,
                    partition_epoch: 0,
                    ..PartitionImage::default()
                };
                (i32::try_from(i).unwrap(), partition)
            })
            .collect();
        image.topics.insert(
            "t".into(),
            Arc::new(TopicImage {
                name: "t".into(),
                id: [1; 16],
                partitions,
                configs: BTreeMap::new(),
            }),
        );
        image
    }

    fn moved(changes: &[PartitionChangeRecord]) -> Vec<(i32, i32)> {
        changes.iter().map(|c| (c.partition_id, c.leader)).collect()
    }

    #[test]
    fn a_broker_over_the_imbalance_percentage_gets_its_preferred_leaderships_back() {
        // Broker 1 is preferred for partitions 0 and 1 and leads neither: 100 % imbalance.
        let all: &[i32] = &[1, 2, 3];
        let image = image(
            &[],
            &[(all, all, 2), (&[1, 3, 2], all, 3), (&[2, 3, 1], all, 2)],
        );
        assert_eq!(
            moved(&preferred_leader_rebalance(&image, 10)),
            [(0, 1), (1, 1)]
        );
        // 100 % is never exceeded.
        assert!(preferred_leader_rebalance(&image, 100).is_empty());
    }

    #[test]
    fn an_imbalance_at_or_under_the_percentage_is_left_alone() {
        // Broker 1 is preferred for four partitions and leads three: 25 % imbalance.
        let all: &[i32] = &[1, 2, 3];
        let image = image(
            &[],
            &[(all, all, 1), (all, all, 1), (all, all, 1), (all, all, 2)],
        );
        assert!(preferred_leader_rebalance(&image, 25).is_empty());
        assert_eq!(moved(&preferred_leader_rebalance(&image, 24)), [(3, 1)]);
    }

    #[test]
    fn only_a_live_in_sync_preferred_replica_takes_leadership() {
        let all: &[i32] = &[1, 2, 3];
        let out_of_sync = image(&[], &[(all, &[2, 3], 2), (all, all, 3)]);
        assert_eq!(
            moved(&preferred_leader_rebalance(&out_of_sync, 0)),
            [(1, 1)]
        );
        let fenced = image(&[1], &[(all, &[2, 3], 2), (all, all, 3)]);
        assert!(preferred_leader_rebalance(&fenced, 0).is_empty());
    }
}
