//! Rate limiting for log lines that remote peers can provoke (a bad frame, a refused connection):
//! without it, a fuzzer or a misbehaving client writes one line per bad request and fills the
//! disk with the broker's log.
//!
//! A [`LogRateLimiter`] counts one kind of line in fixed windows: the first `burst` lines of a
//! window are written, the rest are counted as suppressed. Once the window has ended, the count
//! is handed out exactly once, either to the next line of that kind ([`LogRateLimiter::check`])
//! or to a periodic [`LogRateLimiter::take_suppressed`], so that the caller can write a single
//! "suppressed K similar warnings" line.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Counts lines of one kind and decides which of them are written.
#[derive(Debug)]
pub struct LogRateLimiter {
    burst: u32,
    window: Duration,
    state: Mutex<WindowState>,
}

#[derive(Debug, Default)]
struct WindowState {
    /// When the current window began; `None` before the first line and after a window ended
    /// with its suppressed lines reported.
    started: Option<Instant>,
    /// Lines written in the current window.
    written: u32,
    /// Lines suppressed in the current window.
    suppressed: u64,
}

/// What to do with one line, see [`LogRateLimiter::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Whether to write this line.
    pub write: bool,
    /// Lines suppressed in the window that ended before this one, to be reported now (0: none).
    pub suppressed_before: u64,
}

/// Lines of one kind a peer can provoke that are written per [`PEER_EVENT_WINDOW`].
pub const PEER_EVENT_BURST: u32 = 10;
/// The window of [`PEER_EVENT_BURST`]: at most one line per second on average, per kind.
pub const PEER_EVENT_WINDOW: Duration = Duration::from_secs(10);

impl LogRateLimiter {
    /// The limiter for lines remote peers can provoke: [`PEER_EVENT_BURST`] per
    /// [`PEER_EVENT_WINDOW`].
    pub fn for_peer_events() -> LogRateLimiter {
        LogRateLimiter::new(PEER_EVENT_BURST, PEER_EVENT_WINDOW)
    }

    /// Writes at most `burst` lines per `window`.
    pub fn new(burst: u32, window: Duration) -> LogRateLimiter {
        LogRateLimiter {
            burst,
            window,
            state: Mutex::new(WindowState::default()),
        }
    }

    /// Counts one line at `now` and says whether to write it.
    pub fn check(&self, now: Instant) -> Verdict {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let suppressed_before = self.end_window_if_over(&mut state, now);
        state.started.get_or_insert(now);
        let write = state.written < self.burst;
        if write {
            state.written += 1;
        } else {
            state.suppressed += 1;
        }
        Verdict {
            write,
            suppressed_before,
        }
    }

    /// The number of lines suppressed in a window that has ended by `now` and was not reported
    /// yet (0 if none); each suppressed line is reported once.
    pub fn take_suppressed(&self, now: Instant) -> u64 {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.end_window_if_over(&mut state, now)
    }

    /// Closes the current window if it is over, returning its suppressed count.
    fn end_window_if_over(&self, state: &mut WindowState, now: Instant) -> u64 {
        match state.started {
            Some(started) if now.saturating_duration_since(started) >= self.window => {
                let suppressed = state.suppressed;
                *state = WindowState::default();
                suppressed
            }
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(10);

    fn written(limiter: &LogRateLimiter, now: Instant, lines: usize) -> usize {
        (0..lines).filter(|_| limiter.check(now).write).count()
    }

    #[test]
    fn writes_a_burst_per_window_and_reports_the_rest_once() {
        let limiter = LogRateLimiter::new(3, WINDOW);
        let start = Instant::now();
        assert_eq!(written(&limiter, start, 1000), 3);
        // Still inside the window: more lines are suppressed, nothing is reported yet.
        assert_eq!(written(&limiter, start + WINDOW / 2, 500), 0);
        assert_eq!(limiter.take_suppressed(start + WINDOW / 2), 0);
        // The window has ended: its 1,497 suppressed lines are reported once.
        assert_eq!(limiter.take_suppressed(start + WINDOW), 1497);
        assert_eq!(limiter.take_suppressed(start + WINDOW * 5), 0);
        // A new window starts with the next line, with a fresh burst.
        let later = start + WINDOW * 6;
        assert_eq!(written(&limiter, later, 10), 3);
        assert_eq!(limiter.take_suppressed(later + WINDOW), 7);
    }

    #[test]
    fn the_first_line_after_a_window_carries_its_suppressed_count() {
        let limiter = LogRateLimiter::new(2, WINDOW);
        let start = Instant::now();
        assert_eq!(written(&limiter, start, 5), 2);
        let next = limiter.check(start + WINDOW + Duration::from_millis(1));
        assert_eq!(
            next,
            Verdict {
                write: true,
                suppressed_before: 3
            }
        );
        // Reported with that line, so not again.
        assert_eq!(limiter.take_suppressed(start + WINDOW * 3), 0);
    }

    #[test]
    fn a_quiet_kind_writes_every_line() {
        let limiter = LogRateLimiter::new(1, WINDOW);
        let start = Instant::now();
        for step in 0..5 {
            let verdict = limiter.check(start + WINDOW * step);
            assert_eq!(
                verdict,
                Verdict {
                    write: true,
                    suppressed_before: 0
                }
            );
        }
    }

    #[test]
    fn shared_between_threads() {
        let limiter = LogRateLimiter::new(10, WINDOW);
        let now = Instant::now();
        let total: usize = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| written(&limiter, now, 1000)))
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).sum()
        });
        assert_eq!(total, 10);
        assert_eq!(limiter.take_suppressed(now + WINDOW), 3990);
    }
}
