//! Replica placement: which brokers hold the replicas of new partitions, leader first. Like
//! Kafka's rack-aware assignment, brokers are interleaved across racks (one broker of each rack in
//! turn), each partition starts one position further along that list, so leaders spread evenly,
//! and followers are taken from the positions after the leader, preferring racks the partition does
//! not use yet, so that with at least as many racks as replicas every replica sits in its own rack.
//! A shift that grows once per full round varies the followers of partitions that share a leader.
//!
//! Only brokers that can take new replicas (registered, unfenced, not shutting down) are candidates;
//! the caller chooses them.

use std::collections::BTreeMap;

/// A broker that can hold replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: i32,
    pub rack: Option<String>,
}

/// Why replicas could not be placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("no broker can take new replicas (all are fenced, shutting down or unregistered)")]
    NoBrokers,
    #[error(
        "The target replication factor of {replication_factor} cannot be reached because only \
         {available} broker(s) are available."
    )]
    TooFewBrokers {
        replication_factor: usize,
        available: usize,
    },
}

/// Brokers in rack-alternating order: one broker of each rack in turn (racks by name, brokers by
/// id; brokers without a rack form one rack of their own).
fn rack_alternating(candidates: &[Candidate]) -> Vec<Candidate> {
    let mut by_rack: BTreeMap<Option<&str>, Vec<&Candidate>> = BTreeMap::new();
    for candidate in candidates {
        by_rack
            .entry(candidate.rack.as_deref())
            .or_default()
            .push(candidate);
    }
    for brokers in by_rack.values_mut() {
        brokers.sort_by_key(|c| c.id);
    }
    let longest = by_rack.values().map(Vec::len).max().unwrap_or(0);
    let mut ordered = Vec::with_capacity(candidates.len());
    for round in 0..longest {
        for brokers in by_rack.values() {
            if let Some(candidate) = brokers.get(round) {
                ordered.push((*candidate).clone());
            }
        }
    }
    ordered
}

/// Replica lists (leader first) for `count` new partitions of `replication_factor` replicas each,
/// the first of which is the `first_index`-th partition of its topic; `rotation` offsets where the
/// topic starts so that different topics put their first leader on different brokers.
pub fn place_replicas(
    candidates: &[Candidate],
    first_index: usize,
    count: usize,
    replication_factor: usize,
    rotation: usize,
) -> Result<Vec<Vec<i32>>, PlacementError> {
    if candidates.is_empty() {
        return Err(PlacementError::NoBrokers);
    }
    if replication_factor > candidates.len() {
        return Err(PlacementError::TooFewBrokers {
            replication_factor,
            available: candidates.len(),
        });
    }
    let brokers = rack_alternating(candidates);
    let n = brokers.len();
    let rack_count = {
        let mut racks: Vec<Option<&str>> = brokers.iter().map(|b| b.rack.as_deref()).collect();
        racks.sort_unstable();
        racks.dedup();
        racks.len()
    };
    let mut placements = Vec::with_capacity(count);
    for partition in first_index..first_index + count {
        let leader_position = (rotation + partition) % n;
        let shift = 1 + (partition / n) % n.saturating_sub(1).max(1);
        let mut replicas = vec![leader_position];
        let mut offset = shift;
        // Prefer unused racks first; once every rack holds a replica, any unused broker will do.
        while replicas.len() < replication_factor {
            let used_racks: Vec<Option<&str>> = replicas
                .iter()
                .map(|&p| brokers[p].rack.as_deref())
                .collect();
            let rack_free = |position: usize| {
                used_racks.len() >= rack_count
                    || !used_racks.contains(&brokers[position].rack.as_deref())
            };
            let next = (0..n)
                .map(|step| (leader_position + offset + step) % n)
                .find(|&p| !replicas.contains(&p) && rack_free(p))
                .or_else(|| {
                    (0..n)
                        .map(|step| (leader_position + offset + step) % n)
                        .find(|p| !replicas.contains(p))
                });
            let Some(next) = next else { break };
            replicas.push(next);
            offset += 1;
        }
        placements.push(replicas.into_iter().map(|p| brokers[p].id).collect());
    }
    Ok(placements)
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use proptest::prelude::*;

    use super::*;

    fn candidates(racks: &[Option<&str>]) -> Vec<Candidate> {
        racks
            .iter()
            .enumerate()
            .map(|(i, rack)| Candidate {
                id: i as i32 + 1,
                rack: rack.map(str::to_owned),
            })
            .collect()
    }

    #[test]
    fn single_broker_and_errors() {
        let one = candidates(&[None]);
        assert_eq!(place_replicas(&one, 0, 3, 1, 0), Ok(vec![vec![1]; 3]));
        assert_eq!(
            place_replicas(&one, 0, 1, 2, 0),
            Err(PlacementError::TooFewBrokers {
                replication_factor: 2,
                available: 1
            })
        );
        assert_eq!(
            place_replicas(&[], 0, 1, 1, 0),
            Err(PlacementError::NoBrokers)
        );
    }

    #[test]
    fn replicas_land_in_distinct_racks_when_there_are_enough() {
        let brokers = candidates(&[
            Some("a"),
            Some("a"),
            Some("b"),
            Some("b"),
            Some("c"),
            Some("c"),
        ]);
        let rack_of: HashMap<i32, &str> = brokers
            .iter()
            .map(|b| (b.id, b.rack.as_deref().unwrap_or("")))
            .collect();
        for replicas in place_replicas(&brokers, 0, 12, 3, 0).unwrap() {
            let racks: HashSet<&str> = replicas.iter().map(|id| rack_of[id]).collect();
            assert_eq!(racks.len(), 3, "{replicas:?}");
        }
    }

    proptest! {
        #[test]
        fn every_placement_is_valid_and_leaders_spread_evenly(
            racks in proptest::collection::vec(proptest::option::of(0..3u8), 1..8),
            partitions in 1..40usize,
            rf_seed in 0..8usize,
            rotation in 0..10usize,
        ) {
            let names = ["r0", "r1", "r2"];
            let brokers = candidates(
                &racks.iter().map(|r| r.map(|i| names[i as usize])).collect::<Vec<_>>(),
            );
            let rf = 1 + rf_seed % brokers.len();
            let placements = place_replicas(&brokers, 0, partitions, rf, rotation).unwrap();
            prop_assert_eq!(placements.len(), partitions);
            let mut leaders: HashMap<i32, usize> = HashMap::new();
            for replicas in &placements {
                prop_assert_eq!(replicas.len(), rf);
                let distinct: HashSet<_> = replicas.iter().collect();
                prop_assert_eq!(distinct.len(), rf, "a broker twice in {:?}", replicas);
                *leaders.entry(replicas[0]).or_default() += 1;
            }
            // Leaders rotate over all brokers: counts differ by at most one.
            let most = leaders.values().max().copied().unwrap_or(0);
            let least = if leaders.len() < brokers.len() { 0 } else { leaders.values().min().copied().unwrap_or(0) };
            prop_assert!(most - least <= 1, "leaders {:?}", leaders);
        }
    }
}
