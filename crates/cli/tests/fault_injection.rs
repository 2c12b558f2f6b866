//! Fault injection with a checker (Jepsen style; see `chaos/mod.rs`): idempotent `acks=all`
//! producers write to a replication-factor-3 topic on three real `strom` processes while a
//! nemesis kills, pauses and cuts off partition leaders; afterwards every partition is read back
//! and no acknowledged record may be lost, duplicated, reordered or rewritten, and each broker
//! that came back must serve every record. The checker's own analysis is unit-tested on
//! synthetic histories in `chaos/history.rs` (run with this binary).
//!
//! The network faults need root (network namespaces, iproute2's `ip`); without them the run
//! says so and goes on with the process faults only.
//!
//! `scripts/soak --duration SECS` runs the same scenario for longer, in release mode.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod chaos;
mod common;

use std::time::Duration;

use chaos::{Faults, Scenario};

/// The harness itself: the same run without a nemesis must come out clean (a few seconds of
/// writes, the final read, every count zero), so a failure of the run with faults is not the
/// harness's own.
#[test]
fn without_faults_the_checker_finds_nothing() {
    let mut scenario = Scenario::from_env(Duration::from_secs(5));
    scenario.duration = Duration::from_secs(5); // whatever STROM_CHAOS_SECS says
    scenario.faults = Faults::None;
    let counts = chaos::run(&scenario);
    assert!(counts.is_clean(), "the checker found anomalies:\n{counts}");
    assert!(counts.acknowledged > 0 && counts.final_records >= counts.acknowledged);
}

/// The run for CI: about 35 s of faults (every fault kind at least once), then the checks;
/// about a minute in all.
#[test]
fn no_acknowledged_record_is_lost_while_leaders_fail() {
    let counts = chaos::run(&Scenario::from_env(Duration::from_secs(35)));
    assert!(counts.is_clean(), "the checker found anomalies:\n{counts}");
}

/// The soak: `scripts/soak --duration SECS` (STROM_CHAOS_SECS) in release mode.
#[test]
#[ignore = "long: run it with scripts/soak --duration SECS"]
fn soak() {
    let counts = chaos::run(&Scenario::from_env(Duration::from_secs(600)));
    assert!(counts.is_clean(), "the checker found anomalies:\n{counts}");
}

/// Every node killed at once and started again must still serve every acknowledged record.
/// Replication factor 1, so that no replication is involved: each partition lives on one node,
/// which leads it again once back. (Before main's 4254801 a restarted node set its own logs
/// aside, its first metadata image being empty until Raft had caught up: 731 of 2210
/// acknowledged records lost here, 1575 of 2316 with replication factor 3.) Clean in three runs
/// on main 50f60ea; a restarted node that became the Raft leader before replaying its log could
/// still act on an empty image until the active controller waited for its own term's entry.
#[test]
fn a_cluster_restarted_at_once_keeps_every_acknowledged_record() {
    let mut scenario = Scenario::from_env(Duration::from_secs(3));
    scenario.duration = Duration::from_secs(3); // whatever STROM_CHAOS_SECS says
    scenario.faults = Faults::RestartAll;
    scenario.replication_factor = 1;
    let counts = chaos::run(&scenario);
    assert!(counts.is_clean(), "the checker found anomalies:\n{counts}");
}
