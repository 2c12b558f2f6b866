//! The nemesis: one fault at a time against a running [`StromCluster`], every few seconds, for
//! the run's duration, each healed before the next:
//!
//! - **kill**: SIGKILL the leader of a random partition, restart it 1 s to one session timeout
//!   later (same data directory);
//! - **kill controller**: the same for the active controller (the Raft leader of the metadata
//!   quorum), which a partition leader is only by chance;
//! - **short pause**: SIGSTOP a partition leader for a third to a half of
//!   `broker.session.timeout.ms` (it stays registered and keeps its leaderships), then SIGCONT;
//! - **long pause**: SIGSTOP it for 1.5 to 2 session timeouts (it is fenced, its leaderships
//!   move; it comes back a zombie with a stale image until it catches up), then SIGCONT;
//! - **isolate**: cut a partition leader off from the other nodes, not from the clients, for 1.5
//!   to 2 session timeouts (the old leader goes on taking requests it can no longer replicate);
//! - **cut off**: cut it off from everyone, clients too, for as long.
//!
//! The network faults need a [`crate::common::netns::Lan`]; without one they are left out (the
//! run says so). Kinds are taken in a shuffled rotation so that every kind comes up in a short
//! run; targets and durations come from a seeded generator whose seed the run prints.

use std::fmt;
use std::time::{Duration, Instant};

use crate::common::StromCluster;

/// A fault kind; see the module doc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Kill,
    KillController,
    ShortPause,
    LongPause,
    Isolate,
    CutOff,
}

impl Fault {
    fn needs_lan(self) -> bool {
        matches!(self, Fault::Isolate | Fault::CutOff)
    }
}

/// One fault as it happened.
#[derive(Clone, Debug)]
pub struct Event {
    /// When it started, from the start of the nemesis.
    pub at: Duration,
    pub fault: Fault,
    /// The node id it hit.
    pub node: i32,
    /// How long it lasted.
    pub held: Duration,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "t+{:.1}s {:?} node {} for {:.1}s",
            self.at.as_secs_f64(),
            self.fault,
            self.node,
            self.held.as_secs_f64()
        )
    }
}

/// A small seeded generator (xorshift64*), so that a run's choices can be replayed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n).expect("fits u64")).expect("below n")
    }

    /// A duration between `low` and `high`.
    pub fn between(&mut self, low: Duration, high: Duration) -> Duration {
        let span = u64::try_from((high - low).as_millis()).unwrap_or(0).max(1);
        low + Duration::from_millis(self.next() % span)
    }
}

/// Faults a cluster; see the module doc.
pub struct Nemesis {
    rng: Rng,
    session: Duration,
    kinds: Vec<Fault>,
    rotation: Vec<Fault>,
    pub events: Vec<Event>,
}

impl Nemesis {
    /// A nemesis for a cluster whose brokers use `session` as `broker.session.timeout.ms`;
    /// `with_lan` says whether the network faults can be used.
    pub fn new(seed: u64, session: Duration, with_lan: bool) -> Nemesis {
        let kinds = [
            Fault::Kill,
            Fault::KillController,
            Fault::ShortPause,
            Fault::LongPause,
            Fault::Isolate,
            Fault::CutOff,
        ]
        .into_iter()
        .filter(|fault| with_lan || !fault.needs_lan())
        .collect();
        Nemesis {
            rng: Rng::new(seed),
            session,
            kinds,
            rotation: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Injects faults one at a time, each healed before the next, with a quiet spell of 1 to 3
    /// seconds before each, until `duration` has passed; `leader_of_some_partition` names a
    /// current partition leader (a node id) when it can be learned.
    pub fn run(
        &mut self,
        cluster: &mut StromCluster,
        duration: Duration,
        mut leader_of_some_partition: impl FnMut(&mut Rng) -> Option<i32>,
    ) {
        let started = Instant::now();
        loop {
            let quiet = self
                .rng
                .between(Duration::from_secs(1), Duration::from_secs(3));
            std::thread::sleep(quiet);
            if started.elapsed() >= duration {
                return;
            }
            let fault = self.next_fault();
            let target = if fault == Fault::KillController {
                active_controller(cluster)
            } else {
                leader_of_some_partition(&mut self.rng)
            };
            let node = target.unwrap_or_else(|| {
                i32::try_from(self.rng.below(cluster.nodes.len()) + 1).expect("small")
            });
            let at = started.elapsed();
            let held = self.inject(cluster, fault, node);
            let event = Event {
                at,
                fault,
                node,
                held,
            };
            eprintln!("nemesis: {event}");
            self.events.push(event);
        }
    }

    fn next_fault(&mut self) -> Fault {
        if self.rotation.is_empty() {
            self.rotation = self.kinds.clone();
            // Fisher-Yates.
            for i in (1..self.rotation.len()).rev() {
                let j = self.rng.below(i + 1);
                self.rotation.swap(i, j);
            }
        }
        self.rotation.pop().expect("at least one fault kind")
    }

    /// Injects `fault` on node id `node`, holds it, heals it; returns how long it held.
    fn inject(&mut self, cluster: &mut StromCluster, fault: Fault, node: i32) -> Duration {
        let index = usize::try_from(node - 1).expect("node ids start at 1");
        let session = self.session;
        let hold = match fault {
            Fault::Kill | Fault::KillController => {
                self.rng.between(Duration::from_secs(1), session)
            }
            Fault::ShortPause => self.rng.between(session / 3, session / 2),
            Fault::LongPause | Fault::Isolate | Fault::CutOff => {
                self.rng.between(session * 3 / 2, session * 2)
            }
        };
        let started = Instant::now();
        match fault {
            Fault::Kill | Fault::KillController => {
                cluster.nodes[index].kill_9();
                std::thread::sleep(hold);
                cluster.nodes[index].start_again();
            }
            Fault::ShortPause | Fault::LongPause => {
                cluster.nodes[index].pause();
                std::thread::sleep(hold);
                cluster.nodes[index].resume();
            }
            Fault::Isolate | Fault::CutOff => {
                let lan = cluster.lan.as_mut().expect("network faults need a Lan");
                let cut = if fault == Fault::Isolate {
                    lan.isolate_from_peers(index)
                } else {
                    lan.cut_off(index)
                };
                cut.unwrap_or_else(|e| panic!("{fault:?} node {node}: {e}"));
                std::thread::sleep(hold);
                lan.heal()
                    .unwrap_or_else(|e| panic!("healing the network: {e}"));
            }
        }
        started.elapsed()
    }
}

/// The node id of the active controller, as the first node that answers says.
fn active_controller(cluster: &StromCluster) -> Option<i32> {
    cluster
        .nodes
        .iter()
        .find_map(|node| node.metadata())
        .map(|metadata| metadata.controller_id)
        .filter(|id| *id > 0)
}
