//! When a voter starts an election: Kafka's KRaft timers, driven by this module because openraft
//! 0.9's own election timer (switched off in [`super::RaftQuorum::open`]) waits a whole leader
//! lease *plus* a random election timeout after the last heartbeat (3-4 s with Kafka's defaults).
//!
//! [`Elector::decide`] is the state machine, run every half heartbeat by [`run`]:
//!
//! - a follower that has heard nothing from its leader for `controller.quorum.fetch.timeout.ms`
//!   starts an election (Kafka's fetch timer; the followers take turns, see below);
//! - a follower that misses three heartbeats asks the transport whether the leader's process is
//!   still there ([`RaftTransport::probe`]); when its controller port refuses connections (the
//!   process died: `kill -9`, a crash, OOM) the leader is *gone*, and the follower starts an election
//!   half a heartbeat after the other voters' leader lease has passed, without waiting for the
//!   fetch timeout. Voters rank themselves by id (the gone leader left out) and the n-th waits
//!   n × 5 heartbeats more, so that survivors do not split the vote, nor depose a leader just
//!   elected whose first append is slow to arrive on a loaded machine;
//! - a voter that knows no leader (just started, or voted for a candidate that did not win) starts
//!   one after a random time in [E, 2E) of `controller.quorum.election.timeout.ms` (Kafka's
//!   unattached/voted timer), the only voter at once;
//! - a candidate that has not won after a random time in [E, 2E) starts a new election; one that
//!   can no longer win (enough voters refused or could not be asked) backs off for Kafka's binary
//!   exponential backoff (a random multiple of one heartbeat below 2^retries heartbeats, at most E)
//!   and tries again.
//!
//! The lease itself is openraft's: a voter that heard from a leader within the lease refuses to
//! vote, so a voter that merely lost touch with a healthy leader cannot depose it.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use openraft::{BasicNode, Raft, RaftMetrics, ServerState};
use tokio::sync::watch;

use super::convert::kafka_node_id;
use super::network::{RaftTransport, Reachability};
use super::TypeConfig;

/// Heartbeats missed before a follower asks whether its leader's process is still there.
const PROBE_AFTER_HEARTBEATS: u32 = 3;
/// Heartbeats between the elections of two voters of consecutive rank after their leader is gone:
/// the first one's election normally takes a few milliseconds, this is for when it cannot run.
const RANK_STEP_HEARTBEATS: u32 = 5;
/// A tick this many heartbeats late means this process was frozen (SIGSTOP, a VM pause): what
/// it has not heard meanwhile is still waiting in its sockets, so silence is counted afresh.
const FROZEN_HEARTBEATS: u32 = 5;

/// The timings the elector works with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timers {
    /// How often the leader sends heartbeats.
    pub heartbeat: Duration,
    /// `controller.quorum.election.timeout.ms`.
    pub election_timeout: Duration,
    /// `controller.quorum.fetch.timeout.ms`.
    pub fetch_timeout: Duration,
    /// How long a voter refuses to vote after hearing from a leader (openraft's leader lease).
    pub lease: Duration,
}

/// What this node has observed of replication and elections, recorded by the network layer and
/// read by the elector and by the quorum's status.
#[derive(Debug, Default)]
pub(crate) struct Liveness {
    inner: Mutex<Observed>,
    metrics: OnceLock<watch::Receiver<RaftMetrics<u64, BasicNode>>>,
}

#[derive(Debug, Default)]
struct Observed {
    /// When this node last accepted replication from a leader.
    contact: Option<Instant>,
    /// While leading: the term, and per member what it last acknowledged.
    acks: (u64, HashMap<u64, Acks>),
    /// This node's vote requests of a term that were refused or could not be delivered.
    refusals: (u64, BTreeSet<u64>),
}

/// When a member last acknowledged replication, and last was caught up (ms since the epoch).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Acks {
    pub last_fetch_ms: Option<i64>,
    pub last_caught_up_ms: Option<i64>,
}

impl Liveness {
    fn lock(&self) -> std::sync::MutexGuard<'_, Observed> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Gives the recorders access to this node's metrics (once its Raft node exists).
    pub(crate) fn set_metrics(&self, metrics: watch::Receiver<RaftMetrics<u64, BasicNode>>) {
        let _ = self.metrics.set(metrics);
    }

    /// The index of the last entry in this node's log, if any.
    pub(crate) fn last_log_index(&self) -> Option<u64> {
        self.metrics.get().and_then(|m| m.borrow().last_log_index)
    }

    /// This node accepted an append or a snapshot chunk from a leader.
    pub(crate) fn record_contact(&self) {
        self.lock().contact = Some(Instant::now());
    }

    fn contact(&self) -> Option<Instant> {
        self.lock().contact
    }

    /// Member `target` answered this node's append of `term`, sent at `sent_ms` when this node's
    /// log ended at `leader_last`: `matched` is the last index it is now known to hold (`None` if
    /// the answer says nothing about that: a conflict).
    pub(crate) fn record_ack(
        &self,
        term: u64,
        target: u64,
        sent_ms: i64,
        matched: Option<Option<u64>>,
        leader_last: Option<u64>,
    ) {
        let now = crate::quorum::now_ms();
        let mut observed = self.lock();
        if observed.acks.0 != term {
            observed.acks = (term, HashMap::new());
        }
        let acks = observed.acks.1.entry(target).or_default();
        acks.last_fetch_ms = Some(now);
        if matched.is_some_and(|matched| matched >= leader_last) {
            acks.last_caught_up_ms = Some(sent_ms);
        }
    }

    /// What each member last acknowledged while this node led in `term`.
    pub(crate) fn acks(&self, term: u64) -> HashMap<u64, Acks> {
        let observed = self.lock();
        if observed.acks.0 == term {
            observed.acks.1.clone()
        } else {
            HashMap::new()
        }
    }

    /// Member `target` refused this node's vote request for `term`, or could not be asked.
    pub(crate) fn record_refusal(&self, term: u64, target: u64) {
        let mut observed = self.lock();
        if observed.refusals.0 != term {
            observed.refusals = (term, BTreeSet::new());
        }
        observed.refusals.1.insert(target);
    }

    fn refusals(&self, term: u64) -> usize {
        let observed = self.lock();
        if observed.refusals.0 == term {
            observed.refusals.1.len()
        } else {
            0
        }
    }
}

/// What a node is in the quorum, as far as elections go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Leader,
    Candidate,
    Follower,
    /// Learners (observers) and stopping nodes never start elections.
    NoVote,
}

/// The part of the Raft metrics the elector looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
struct View {
    role: Role,
    term: u64,
    /// The leader of `term`, once it is established.
    leader: Option<u64>,
    /// Voter ids, in order.
    voters: Vec<u64>,
}

impl View {
    fn of(metrics: &RaftMetrics<u64, BasicNode>) -> View {
        let voters: Vec<u64> = metrics.membership_config.membership().voter_ids().collect();
        let role = match metrics.state {
            _ if !voters.contains(&metrics.id) => Role::NoVote,
            ServerState::Leader => Role::Leader,
            ServerState::Candidate => Role::Candidate,
            ServerState::Follower => Role::Follower,
            ServerState::Learner | ServerState::Shutdown => Role::NoVote,
        };
        View {
            role,
            term: metrics.current_term,
            leader: metrics.current_leader,
            voters,
        }
    }
}

/// What the elector wants done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// Ask whether the leader's process is still there.
    Probe(u64),
    /// Start an election.
    Elect,
}

/// This node's own election in progress.
#[derive(Debug, Clone, Copy)]
struct Election {
    term: u64,
    started: Instant,
    timeout: Duration,
    backoff_until: Option<Instant>,
}

/// The election state machine of one voter (see the module doc).
#[derive(Debug)]
struct Elector {
    id: u64,
    timers: Timers,
    rng: u64,
    /// The term last seen, and since when.
    term: u64,
    term_since: Instant,
    /// How long a voter without a leader waits in the current term.
    unattached_timeout: Duration,
    election: Option<Election>,
    /// Elections started since a leader was last known (for the backoff).
    retries: u32,
    /// The leader of the current term whose process is gone.
    gone_leader: Option<u64>,
    last_probe: Option<Instant>,
}

impl Elector {
    fn new(id: u64, timers: Timers, now: Instant) -> Elector {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::from(d.subsec_nanos()));
        let mut elector = Elector {
            id,
            timers,
            rng: (nanos ^ id.rotate_left(32)) | 1,
            term: 0,
            term_since: now,
            unattached_timeout: timers.election_timeout,
            election: None,
            retries: 0,
            gone_leader: None,
            last_probe: None,
        };
        elector.unattached_timeout = elector.random_election_timeout();
        elector
    }

    /// xorshift64: jitter, not secrets.
    fn next_random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// A random duration in `[0, bound)`.
    fn random_below(&mut self, bound: Duration) -> Duration {
        let nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.next_random() % nanos)
    }

    /// Kafka's `electionTimeoutMs + random(electionTimeoutMs)`.
    fn random_election_timeout(&mut self) -> Duration {
        self.timers.election_timeout + self.random_below(self.timers.election_timeout)
    }

    /// Kafka's binary exponential election backoff: a random number of base steps below
    /// 2^retries, at most the election timeout.
    fn backoff(&mut self) -> Duration {
        let steps = 2u32 << self.retries.clamp(1, 20).saturating_sub(1);
        let step = self.timers.heartbeat;
        let chosen = u32::try_from(self.next_random() % u64::from(steps)).unwrap_or(0);
        (step * chosen).min(self.timers.election_timeout)
    }

    fn decide(
        &mut self,
        view: &View,
        now: Instant,
        contact: Option<Instant>,
        refusals: usize,
    ) -> Option<Action> {
        if view.term != self.term {
            self.term = view.term;
            self.term_since = now;
            self.gone_leader = None;
            self.unattached_timeout = self.random_election_timeout();
        }
        let heard = contact.map_or(self.term_since, |at| at.max(self.term_since));
        let silence = now.saturating_duration_since(heard);
        match view.role {
            Role::Leader | Role::NoVote => {
                self.election = None;
                self.retries = 0;
                None
            }
            Role::Candidate => {
                let term_since = self.term_since;
                let timeout = self.random_election_timeout();
                let backoff = self.backoff();
                let election = self
                    .election
                    .filter(|e| e.term == view.term)
                    // An election this elector did not start (openraft's bootstrap).
                    .unwrap_or(Election {
                        term: view.term,
                        started: term_since,
                        timeout,
                        backoff_until: None,
                    });
                let majority = view.voters.len() / 2 + 1;
                let lost = view.voters.len().saturating_sub(refusals) < majority;
                let election = Election {
                    backoff_until: election
                        .backoff_until
                        .or_else(|| lost.then(|| now + backoff)),
                    ..election
                };
                self.election = Some(election);
                let due = election.backoff_until.is_some_and(|at| now >= at)
                    || now.saturating_duration_since(election.started) >= election.timeout;
                due.then_some(Action::Elect)
            }
            Role::Follower => {
                self.election = None;
                let leader = match view.leader {
                    Some(leader) if leader != self.id => leader,
                    // The only voter has nobody to wait for.
                    _ if view.voters == [self.id] => return Some(Action::Elect),
                    // No leader known in this term: wait as Kafka's unattached/voted states do.
                    _ => return (silence >= self.unattached_timeout).then_some(Action::Elect),
                };
                self.retries = 0;
                // The followers heard the leader last at about the same time: they take turns.
                let rank = view
                    .voters
                    .iter()
                    .filter(|id| **id != leader)
                    .position(|id| *id == self.id)
                    .unwrap_or(0);
                let turn = self.timers.heartbeat
                    * RANK_STEP_HEARTBEATS.saturating_mul(u32::try_from(rank).unwrap_or(u32::MAX));
                if silence >= self.timers.fetch_timeout + turn {
                    return Some(Action::Elect);
                }
                if self.gone_leader == Some(leader) {
                    // Half a heartbeat past the lease: the others heard the leader last a little
                    // later than this node did.
                    let wait = self.timers.lease + self.timers.heartbeat / 2 + turn;
                    return (silence >= wait).then_some(Action::Elect);
                }
                let probe_due = self
                    .last_probe
                    .is_none_or(|at| now.saturating_duration_since(at) >= self.timers.heartbeat);
                (silence >= self.timers.heartbeat * PROBE_AFTER_HEARTBEATS && probe_due)
                    .then_some(Action::Probe(leader))
            }
        }
    }

    /// This process was frozen until `now`: the leader's appends of that time are about to be
    /// read, so silence counts from now (a thawed voter does not depose a healthy leader).
    fn thawed(&mut self, now: Instant) {
        self.term_since = now;
        self.gone_leader = None;
        self.last_probe = None;
    }

    /// The leader of `term` was probed at `now`.
    fn probed(&mut self, leader: u64, term: u64, reachability: Reachability, now: Instant) {
        self.last_probe = Some(now);
        if reachability == Reachability::Refused && term == self.term {
            if self.gone_leader != Some(leader) {
                tracing::info!(
                    leader = kafka_node_id(leader),
                    "the active controller's process is gone (its controller port refuses \
                     connections); electing a new one once its lease has passed"
                );
            }
            self.gone_leader = Some(leader);
        }
    }

    /// This node started an election at `now` (for the term after `term`).
    fn elected(&mut self, term: u64, now: Instant) {
        self.retries = self.retries.saturating_add(1);
        self.gone_leader = None;
        let timeout = self.random_election_timeout();
        self.election = Some(Election {
            term: term + 1,
            started: now,
            timeout,
            backoff_until: None,
        });
    }
}

/// Runs the elector of node `id` until its Raft node stops.
pub(crate) async fn run(
    raft: Raft<TypeConfig>,
    id: u64,
    liveness: std::sync::Arc<Liveness>,
    transport: std::sync::Arc<dyn RaftTransport>,
    timers: Timers,
) {
    let mut metrics = raft.metrics();
    let mut elector = Elector::new(id, timers, Instant::now());
    let mut tick = tokio::time::interval((timers.heartbeat / 2).max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_tick = Instant::now();
    loop {
        tick.tick().await;
        let now = Instant::now();
        if now.saturating_duration_since(last_tick) > timers.heartbeat * FROZEN_HEARTBEATS {
            elector.thawed(now);
        }
        last_tick = now;
        let view = {
            let current = metrics.borrow_and_update();
            if current.running_state.is_err() || current.state == ServerState::Shutdown {
                return;
            }
            View::of(&current)
        };
        let refusals = liveness.refusals(view.term);
        match elector.decide(&view, now, liveness.contact(), refusals) {
            None => {}
            Some(Action::Probe(leader)) => {
                let reachability = transport
                    .probe(kafka_node_id(leader), timers.heartbeat)
                    .await;
                elector.probed(leader, view.term, reachability, Instant::now());
            }
            Some(Action::Elect) => {
                tracing::info!(
                    node_id = kafka_node_id(id),
                    term = view.term + 1,
                    "starting a metadata quorum election"
                );
                if raft.trigger().elect().await.is_err() {
                    return;
                }
                elector.elected(view.term, Instant::now());
            }
        }
        if metrics.has_changed().is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timers() -> Timers {
        Timers {
            heartbeat: Duration::from_millis(100),
            election_timeout: Duration::from_millis(1000),
            fetch_timeout: Duration::from_millis(2000),
            lease: Duration::from_millis(500),
        }
    }

    fn follower(id_of_leader: u64, term: u64) -> View {
        View {
            role: Role::Follower,
            term,
            leader: Some(id_of_leader),
            voters: vec![1, 2, 3],
        }
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_follower_elects_after_the_fetch_timeout_when_the_leader_is_silent_but_there() {
        let start = Instant::now();
        let mut elector = Elector::new(2, timers(), start);
        let view = follower(1, 5);
        assert_eq!(elector.decide(&view, start, Some(start), 0), None);
        // Three heartbeats missed: probe; the leader's process answers.
        let at = start + 300 * MS;
        assert_eq!(
            elector.decide(&view, at, Some(start), 0),
            Some(Action::Probe(1))
        );
        elector.probed(1, 5, Reachability::Reachable, at);
        assert_eq!(elector.decide(&view, at + 50 * MS, Some(start), 0), None);
        assert_eq!(
            elector.decide(&view, start + 1999 * MS, Some(start), 0),
            Some(Action::Probe(1))
        );
        elector.probed(1, 5, Reachability::Unknown, start + 1999 * MS);
        assert_eq!(
            elector.decide(&view, start + 2000 * MS, Some(start), 0),
            Some(Action::Elect)
        );
    }

    #[test]
    fn followers_of_a_silent_leader_take_turns() {
        let start = Instant::now();
        let mut third = Elector::new(3, timers(), start);
        let view = follower(1, 5);
        third.decide(&view, start, Some(start), 0);
        // Node 3 ranks second after node 1's followers: five heartbeats after node 2.
        assert_ne!(
            third.decide(&view, start + 2499 * MS, Some(start), 0),
            Some(Action::Elect)
        );
        assert_eq!(
            third.decide(&view, start + 2500 * MS, Some(start), 0),
            Some(Action::Elect)
        );
    }

    #[test]
    fn a_thawed_follower_gives_its_leader_a_fresh_fetch_timeout() {
        let start = Instant::now();
        let mut elector = Elector::new(2, timers(), start);
        let view = follower(1, 5);
        elector.decide(&view, start, Some(start), 0);
        let thawed_at = start + 5000 * MS;
        elector.thawed(thawed_at);
        assert_eq!(elector.decide(&view, thawed_at, Some(start), 0), None);
        assert_eq!(
            elector.decide(&view, thawed_at + 2000 * MS, Some(start), 0),
            Some(Action::Elect)
        );
    }

    #[test]
    fn a_gone_leader_is_replaced_after_the_lease_in_rank_order() {
        let start = Instant::now();
        let mut second = Elector::new(2, timers(), start);
        let mut third = Elector::new(3, timers(), start);
        let view = follower(1, 5);
        for elector in [&mut second, &mut third] {
            elector.decide(&view, start, Some(start), 0);
            elector.probed(1, 5, Reachability::Refused, start + 300 * MS);
        }
        // Node 2 ranks first once node 1 is left out: it goes half a heartbeat after the lease.
        assert_eq!(second.decide(&view, start + 549 * MS, Some(start), 0), None);
        assert_eq!(
            second.decide(&view, start + 550 * MS, Some(start), 0),
            Some(Action::Elect)
        );
        // Node 3 waits five heartbeats more.
        assert_eq!(third.decide(&view, start + 1049 * MS, Some(start), 0), None);
        assert_eq!(
            third.decide(&view, start + 1050 * MS, Some(start), 0),
            Some(Action::Elect)
        );
    }

    #[test]
    fn a_candidate_that_cannot_win_backs_off_and_tries_again() {
        let start = Instant::now();
        let mut elector = Elector::new(2, timers(), start);
        elector.decide(&follower(1, 5), start, Some(start), 0);
        elector.elected(5, start);
        let candidate = View {
            role: Role::Candidate,
            term: 6,
            leader: None,
            voters: vec![1, 2, 3],
        };
        // One refusal of three voters: it can still win.
        assert_eq!(elector.decide(&candidate, start + MS, None, 1), None);
        // Both others refused: a backoff of at most the election timeout, then a new election.
        let mut elected_at = None;
        for step in 2..=1100 {
            if elector.decide(&candidate, start + step * MS, None, 2) == Some(Action::Elect) {
                elected_at = Some(step);
                break;
            }
        }
        assert!(elected_at.is_some_and(|ms| ms <= 1002), "{elected_at:?}");
    }

    #[test]
    fn a_candidate_without_answers_tries_again_after_its_election_timeout() {
        let start = Instant::now();
        let mut elector = Elector::new(2, timers(), start);
        let candidate = View {
            role: Role::Candidate,
            term: 1,
            leader: None,
            voters: vec![1, 2, 3],
        };
        assert_eq!(elector.decide(&candidate, start, None, 0), None);
        assert_eq!(elector.decide(&candidate, start + 999 * MS, None, 0), None);
        assert_eq!(
            elector.decide(&candidate, start + 2000 * MS, None, 0),
            Some(Action::Elect)
        );
    }

    #[test]
    fn a_voter_without_a_leader_waits_a_random_election_timeout() {
        let start = Instant::now();
        let mut elector = Elector::new(3, timers(), start);
        let unattached = View {
            role: Role::Follower,
            term: 2,
            leader: None,
            voters: vec![1, 2, 3],
        };
        assert_eq!(elector.decide(&unattached, start, None, 0), None);
        assert_eq!(elector.decide(&unattached, start + 999 * MS, None, 0), None);
        assert_eq!(
            elector.decide(&unattached, start + 2000 * MS, None, 0),
            Some(Action::Elect)
        );
        // The only voter elects itself at once.
        let alone = View {
            voters: vec![3],
            ..unattached.clone()
        };
        assert_eq!(elector.decide(&alone, start, None, 0), Some(Action::Elect));
        // Leaders and observers never elect.
        for role in [Role::Leader, Role::NoVote] {
            let view = View {
                role,
                ..unattached.clone()
            };
            assert_eq!(elector.decide(&view, start + 9000 * MS, None, 0), None);
        }
    }
}
