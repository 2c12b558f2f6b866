//! Guard rails against what the network can do to a broker: the request memory budget
//! (`queued.max.request.bytes`) keeps many concurrent large frames from multiplying the broker's
//! memory, `max.connections` / `max.connections.per.ip` bound the connections, and a flood of bad
//! frames yields a bounded number of log lines. Each test then checks the broker still serves.

// Test code. (clippy.toml's allow-*-in-tests does not reach integration-test helpers.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::raw::{connect, expect_response, next_outcome, request_frame, Outcome};
use common::{StromProcess, WAIT_DEADLINE};

const PRODUCE: i16 = 0;
const API_VERSIONS: i16 = 18;
const MIB: usize = 1024 * 1024;

/// A resident-memory figure from `/proc/<pid>/status` (`VmRSS`, `VmHWM`, ...), in KiB.
fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// A classic (non-flexible) string.
fn put_string(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&i16::try_from(text.len()).expect("fits").to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// A complete, decodable Produce v3 frame (acks=1) for partition 0 of `topic` whose records
/// field holds `records_len` bytes that are no valid batch: the broker must read and decode the
/// whole frame before it can refuse it.
fn big_produce_frame(topic: &str, records_len: usize, correlation_id: i32) -> Vec<u8> {
    let mut body = Vec::with_capacity(records_len + 64);
    body.extend_from_slice(&(-1i16).to_be_bytes()); // transactional id: null
    body.extend_from_slice(&1i16.to_be_bytes()); // acks
    body.extend_from_slice(&10_000i32.to_be_bytes()); // timeout
    body.extend_from_slice(&1i32.to_be_bytes()); // one topic
    put_string(&mut body, topic);
    body.extend_from_slice(&1i32.to_be_bytes()); // one partition
    body.extend_from_slice(&0i32.to_be_bytes()); // partition 0
    body.extend_from_slice(&i32::try_from(records_len).expect("fits").to_be_bytes());
    body.resize(body.len() + records_len, 0x5a);
    request_frame(PRODUCE, 3, correlation_id, false, &body)
}

/// Lets senders finish their frames together: each sender arrives with all but the last byte of
/// its frame written, and the gate opens once every sender has arrived, or once no sender has
/// arrived for [`Gate::STALL`] (the rest are being held back by the broker).
struct Gate {
    /// Senders arrived, and whether the gate is open.
    state: std::sync::Mutex<(usize, bool)>,
    changed: std::sync::Condvar,
}

impl Gate {
    const STALL: Duration = Duration::from_secs(1);

    fn new() -> Gate {
        Gate {
            state: std::sync::Mutex::new((0, false)),
            changed: std::sync::Condvar::new(),
        }
    }

    fn arrive_and_wait(&self) {
        let mut state = self.state.lock().expect("gate");
        state.0 += 1;
        self.changed.notify_all();
        while !state.1 {
            state = self.changed.wait(state).expect("gate");
        }
    }

    /// Opens the gate when all `expected` senders arrived or arrivals stalled; returns how many
    /// had arrived by then.
    fn open_when_settled(&self, expected: usize) -> usize {
        let mut state = self.state.lock().expect("gate");
        while state.0 < expected {
            let (next, wait) = self.changed.wait_timeout(state, Gate::STALL).expect("gate");
            state = next;
            if wait.timed_out() {
                break;
            }
        }
        state.1 = true;
        self.changed.notify_all();
        state.0
    }
}

/// Twenty connections each send a complete 16 MiB Produce frame, all finishing at the same
/// moment (the worst case: every frame fully buffered before any is handled). With a 64 MiB
/// `queued.max.request.bytes`, at most 64 MiB of request frames are in memory at once: the other
/// connections are simply not read until budget is free. The broker's peak resident set
/// (`VmHWM`) must stay far below the 320 MiB all frames together would take.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_memory_budget_bounds_resident_memory_under_concurrent_big_frames() {
    const CONNECTIONS: usize = 20;
    const RECORDS_LEN: usize = 16 * MIB;
    const BUDGET: usize = 64 * MIB;
    let budget = BUDGET.to_string();
    let max_frame = (32 * MIB).to_string();
    let mut broker = StromProcess::start(&[
        ("queued.max.request.bytes", &budget),
        ("socket.request.max.bytes", &max_frame),
    ]);
    let pid = broker.pid();
    let rss_at_start = proc_status_kib(pid, "VmRSS");

    let frame = big_produce_frame("memory-flood", RECORDS_LEN, 7);
    let (head, last_byte) = frame.split_at(frame.len() - 1);
    let gate = Gate::new();
    let (arrived_together, failures) = std::thread::scope(|scope| {
        let senders: Vec<_> = (0..CONNECTIONS)
            .map(|_| {
                let (broker, gate) = (&broker, &gate);
                scope.spawn(move || -> Result<(), String> {
                    let mut stream = connect(broker);
                    stream
                        .set_write_timeout(Some(WAIT_DEADLINE))
                        .map_err(|e| format!("set write timeout: {e}"))?;
                    stream
                        .write_all(head)
                        .map_err(|e| format!("write frame: {e}"))?;
                    gate.arrive_and_wait();
                    stream
                        .write_all(last_byte)
                        .map_err(|e| format!("write last byte: {e}"))?;
                    match next_outcome(&mut stream)? {
                        Outcome::Response(body) if body[0..4] == 7i32.to_be_bytes() => Ok(()),
                        other => Err(format!("expected a Produce response, got {other:?}")),
                    }
                })
            })
            .collect();
        let arrived_together = gate.open_when_settled(CONNECTIONS);
        let failures: Vec<String> = senders
            .into_iter()
            .filter_map(|sender| sender.join().expect("sender thread").err())
            .collect();
        (arrived_together, failures)
    });
    assert!(
        failures.is_empty(),
        "{} of {CONNECTIONS} big produce requests failed, first: {:?}\n--- broker log ---\n{}",
        failures.len(),
        failures.first(),
        broker.log_contents()
    );

    let peak = proc_status_kib(pid, "VmHWM");
    let frames_total_kib = (CONNECTIONS * RECORDS_LEN / 1024) as u64;
    eprintln!(
        "broker RSS at start {rss_at_start} KiB, peak {peak} KiB while {CONNECTIONS} connections \
         sent {frames_total_kib} KiB of produce frames ({arrived_together} fully buffered at once) \
         with a {BUDGET}-byte request budget"
    );
    // The budget, plus what the allocator keeps of freed frames. Measured for this load: 70-110
    // MiB above the start when requests ran on the workers, 150-170 MiB since their disk work
    // hands the worker's core to another thread (more threads, so more glibc arenas keeping freed
    // 16 MiB frames — the likely cause, not proven); without the budget, 320 MiB. Bound: 3.5 x the
    // budget, still well under the unbounded figure.
    let bound_kib = rss_at_start + (7 * BUDGET / 2 / 1024) as u64;
    assert!(
        peak < bound_kib,
        "broker peak RSS {peak} KiB exceeds {bound_kib} KiB (start {rss_at_start} KiB, \
         {CONNECTIONS} frames of {RECORDS_LEN} bytes, budget {BUDGET})"
    );
    broker.assert_serves_rdkafka("after-memory-flood").await;
}

/// Sends ApiVersions v0 on `stream` and says whether it was answered (`false`: closed).
fn api_versions_answered(stream: &mut TcpStream, correlation_id: i32) -> bool {
    if stream
        .write_all(&request_frame(API_VERSIONS, 0, correlation_id, false, &[]))
        .is_err()
    {
        return false;
    }
    match next_outcome(stream) {
        Ok(Outcome::Response(body)) => {
            assert_eq!(body[0..4], correlation_id.to_be_bytes());
            true
        }
        Ok(Outcome::Closed) => false,
        Err(error) => panic!("ApiVersions neither answered nor closed: {error}"),
    }
}

/// A new connection whose ApiVersions is answered, retrying (bounded) while the broker still
/// counts a connection the test has just closed.
fn connect_served(broker: &StromProcess, correlation_id: i32) -> TcpStream {
    let until = Instant::now() + WAIT_DEADLINE;
    loop {
        let mut stream = connect(broker);
        if api_versions_answered(&mut stream, correlation_id) {
            return stream;
        }
        assert!(
            Instant::now() < until,
            "no connection was served within {WAIT_DEADLINE:?}\n--- broker log ---\n{}",
            broker.log_contents()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// With `max.connections=3`, a fourth connection is not served while three are open (as in
/// Kafka, the broker stops accepting; the connection waits in the listen backlog) and is served
/// as soon as one of the three closes.
#[tokio::test]
async fn max_connections_holds_back_the_next_connection_until_one_closes() {
    let mut broker = StromProcess::start(&[("max.connections", "3")]);
    let mut open: Vec<TcpStream> = (1..=3)
        .map(|correlation_id| {
            let mut stream = connect(&broker);
            assert!(api_versions_answered(&mut stream, correlation_id));
            stream
        })
        .collect();

    let mut extra = connect(&broker);
    extra
        .write_all(&request_frame(API_VERSIONS, 0, 4, false, &[]))
        .expect("write ApiVersions on the fourth connection");
    let mut first_byte = [0u8; 1];
    let held_back = common::raw::read_exact_until(
        &mut extra,
        &mut first_byte,
        Instant::now() + Duration::from_millis(500),
    );
    assert!(
        held_back.is_err(),
        "the fourth connection must be neither served nor closed while three are open, got {held_back:?}"
    );

    drop(open.remove(0));
    let answer = expect_response(&mut extra, &broker, 4);
    assert!(!answer.is_empty());
    assert!(
        broker.log_contents().contains("max.connections reached"),
        "--- broker log ---\n{}",
        broker.log_contents()
    );
    // The three open connections are still served.
    for (stream, correlation_id) in open.iter_mut().zip(5..) {
        assert!(api_versions_answered(stream, correlation_id));
    }
    broker.assert_running();
}

/// With `max.connections.per.ip=1` and an override of 3 for 127.0.0.1, a fourth connection from
/// 127.0.0.1 is closed at once (Kafka's behaviour), and after one of the three closes a new
/// connection is served.
#[tokio::test]
async fn max_connections_per_ip_closes_the_connection_over_the_limit() {
    let mut broker = StromProcess::start(&[
        ("max.connections.per.ip", "1"),
        ("max.connections.per.ip.overrides", "127.0.0.1:3"),
    ]);
    let mut open: Vec<TcpStream> = (1..=3)
        .map(|correlation_id| {
            let mut stream = connect(&broker);
            assert!(api_versions_answered(&mut stream, correlation_id));
            stream
        })
        .collect();

    let mut extra = connect(&broker);
    assert!(
        !api_versions_answered(&mut extra, 4),
        "a fourth connection from 127.0.0.1 must be closed\n--- broker log ---\n{}",
        broker.log_contents()
    );
    broker.wait_until("the rejection is logged", WAIT_DEADLINE, || {
        broker.log_contents().contains(
            "rejected connection from 127.0.0.1: address already has the configured maximum of 3",
        )
    });

    drop(open.remove(0));
    open.push(connect_served(&broker, 5));
    for (stream, correlation_id) in open.iter_mut().zip(6..) {
        assert!(api_versions_answered(stream, correlation_id));
    }
    broker.assert_running();
}

/// Two thousand bad frames (half with an impossible size, half for an unknown API), each
/// closing its connection, produce a handful of "closing connection" warnings and summary lines
/// that account for every one of them, instead of 2,000 lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bad_frames_writes_few_log_lines() {
    const BAD_FRAMES: usize = 2000;
    const SENDERS: usize = 4;
    let mut broker = StromProcess::start(&[]);
    std::thread::scope(|scope| {
        for sender in 0..SENDERS {
            let broker = &broker;
            scope.spawn(move || {
                for index in (sender..BAD_FRAMES).step_by(SENDERS) {
                    let frame = if index % 2 == 0 {
                        1i32.to_be_bytes().to_vec() // smaller than any request header
                    } else {
                        request_frame(9999, 0, 1, false, &[])
                    };
                    let mut stream = connect(broker);
                    // The broker may close before all bytes are written; what counts is that it closes.
                    let _ = stream.write_all(&frame);
                    match next_outcome(&mut stream) {
                        Ok(Outcome::Closed) => {}
                        other => panic!(
                            "bad frame {index}: expected a close, got {other:?}\n--- broker log ---\n{}",
                            broker.log_contents()
                        ),
                    }
                }
            });
        }
    });

    // Every bad frame is either written as a line or counted in a summary line, which appears
    // once its rate-limit window has ended.
    let tally = |log: &str| {
        let mut written = 0u64;
        let mut suppressed = 0u64;
        for line in log
            .lines()
            .filter(|line| line.contains("closing connection"))
        {
            match line.split("suppressed=").nth(1) {
                Some(count) => {
                    suppressed += count
                        .split_whitespace()
                        .next()
                        .and_then(|count| count.parse::<u64>().ok())
                        .unwrap_or_else(|| panic!("summary line without a count: {line}"));
                }
                None => written += 1,
            }
        }
        (written, suppressed)
    };
    broker.wait_until(
        "summaries account for every bad frame",
        Duration::from_secs(60),
        || {
            let (written, suppressed) = tally(&broker.log_contents());
            written + suppressed >= BAD_FRAMES as u64
        },
    );
    let log = broker.log_contents();
    let (written, suppressed) = tally(&log);
    let lines = log.lines().count();
    eprintln!(
        "{BAD_FRAMES} bad frames: {written} warnings written, {suppressed} suppressed, {lines} log lines in all"
    );
    assert_eq!(written + suppressed, BAD_FRAMES as u64, "{log}");
    assert!(
        lines < BAD_FRAMES / 10,
        "{lines} log lines for {BAD_FRAMES} bad frames\n--- broker log ---\n{log}"
    );
    broker.assert_serves_rdkafka("after-bad-frames").await;
}
