//! Admission control: bounds on what the network can make the broker hold.
//!
//! - [`ConnectionLimits`]: `max.connections` and `max.connections.per.ip` (with
//!   `max.connections.per.ip.overrides`), as Kafka applies them. While `max.connections`
//!   connections are open the accept loop stops accepting, so new connections wait in the
//!   listener's backlog until one closes. A connection from an address that already has its
//!   maximum is accepted and closed at once, with a (rate-limited) log line.
//! - [`RequestBudget`]: `queued.max.request.bytes`, the bytes of request frames held in memory
//!   across all connections. A connection reserves a frame's size before it reads the frame's
//!   body and gives it back once the request no longer needs the frame (a Produce request once
//!   handled, any other once decoded, as in Kafka); while the budget is spent,
//!   connections wait without reading their sockets, so TCP flow control pushes back on the
//!   clients. Nothing fails: the wait ends when other requests are done.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::BrokerConfig;
use crate::log_limit::LogRateLimiter;

/// `max.connections` and the per-address limits, with the count of open connections per address.
#[derive(Debug)]
pub struct ConnectionLimits {
    /// One permit per connection that may still be opened (`max.connections`).
    free_slots: Arc<Semaphore>,
    max_connections: usize,
    max_per_ip: u32,
    per_ip_overrides: BTreeMap<IpAddr, u32>,
    open_per_ip: Mutex<HashMap<IpAddr, u32>>,
    /// Rate limit of "rejected connection" lines: a client can provoke one per connect.
    rejected_lines: LogRateLimiter,
    /// Rate limit of "max.connections reached" lines.
    full_lines: LogRateLimiter,
}

/// One admitted connection: holds its place under `max.connections` and in its address's count
/// until dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
    _slot: OwnedSemaphorePermit,
}

impl ConnectionLimits {
    pub fn from_config(config: &BrokerConfig) -> Arc<ConnectionLimits> {
        let non_negative = |count: i32| u32::try_from(count).unwrap_or(0);
        let max_connections = non_negative(config.max_connections) as usize;
        Arc::new(ConnectionLimits {
            free_slots: Arc::new(Semaphore::new(max_connections.min(Semaphore::MAX_PERMITS))),
            max_connections,
            max_per_ip: non_negative(config.max_connections_per_ip),
            per_ip_overrides: config
                .max_connections_per_ip_overrides
                .iter()
                .map(|(ip, count)| (*ip, non_negative(*count)))
                .collect(),
            open_per_ip: Mutex::new(HashMap::new()),
            rejected_lines: LogRateLimiter::for_peer_events(),
            full_lines: LogRateLimiter::for_peer_events(),
        })
    }

    /// Waits until fewer than `max.connections` connections are open and reserves a place for
    /// the next one. Cancel-safe: dropping the future gives nothing up.
    pub async fn wait_for_free_slot(&self) -> OwnedSemaphorePermit {
        let free_slots = self.free_slots.clone();
        if let Ok(slot) = free_slots.clone().try_acquire_owned() {
            return slot;
        }
        let verdict = self.full_lines.check(Instant::now());
        report_suppressed_full(verdict.suppressed_before);
        if verdict.write {
            tracing::warn!(
                max_connections = self.max_connections,
                "max.connections reached: new connections wait in the listen backlog until one closes"
            );
        }
        match free_slots.acquire_owned().await {
            Ok(slot) => slot,
            // The semaphore is never closed; should that change, stop accepting for good.
            Err(_) => std::future::pending().await,
        }
    }

    /// Admits a connection from `peer_ip` into `slot` (from
    /// [`ConnectionLimits::wait_for_free_slot`]), or refuses it with a log line when that
    /// address already has its maximum of connections (the slot is then released).
    pub fn admit(
        self: &Arc<Self>,
        slot: OwnedSemaphorePermit,
        peer_ip: IpAddr,
    ) -> Option<ConnectionSlot> {
        let ip = peer_ip.to_canonical();
        let max = self
            .per_ip_overrides
            .get(&ip)
            .copied()
            .unwrap_or(self.max_per_ip);
        {
            let mut open = self.open_per_ip.lock().unwrap_or_else(|p| p.into_inner());
            let count = open.entry(ip).or_insert(0);
            if *count < max {
                *count += 1;
                return Some(ConnectionSlot {
                    limits: self.clone(),
                    ip,
                    _slot: slot,
                });
            }
            if *count == 0 {
                open.remove(&ip);
            }
        }
        let verdict = self.rejected_lines.check(Instant::now());
        report_suppressed_rejections(verdict.suppressed_before);
        if verdict.write {
            tracing::info!(
                "rejected connection from {ip}: address already has the configured maximum of {max} connections"
            );
        }
        None
    }

    /// Writes one summary line for each kind of line suppressed in a window that has ended.
    pub fn report_suppressed(&self, now: Instant) {
        report_suppressed_rejections(self.rejected_lines.take_suppressed(now));
        report_suppressed_full(self.full_lines.take_suppressed(now));
    }

    /// Open connections from `ip` (canonical form).
    #[cfg(test)]
    fn open_from(&self, ip: IpAddr) -> u32 {
        let open = self.open_per_ip.lock().unwrap_or_else(|p| p.into_inner());
        open.get(&ip).copied().unwrap_or(0)
    }
}

/// Writes the summary of `suppressed` "rejected connection" lines, if there were any.
fn report_suppressed_rejections(suppressed: u64) {
    if suppressed > 0 {
        tracing::info!(
            suppressed,
            "suppressed {suppressed} similar 'rejected connection' lines"
        );
    }
}

/// Writes the summary of `suppressed` "max.connections reached" warnings, if there were any.
fn report_suppressed_full(suppressed: u64) {
    if suppressed > 0 {
        tracing::warn!(
            suppressed,
            "suppressed {suppressed} similar 'max.connections reached' warnings"
        );
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self
            .limits
            .open_per_ip
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// The budget of request bytes in memory (`queued.max.request.bytes`); unbounded if not positive.
#[derive(Debug, Clone)]
pub struct RequestBudget {
    /// One permit per byte; `None` when unbounded.
    bytes: Option<Arc<Semaphore>>,
    /// The whole budget in bytes.
    total: usize,
}

/// A frame's share of the [`RequestBudget`], given back when dropped.
#[derive(Debug)]
pub struct RequestPermit {
    _bytes: Option<OwnedSemaphorePermit>,
}

impl RequestBudget {
    pub fn from_config(config: &BrokerConfig) -> RequestBudget {
        match usize::try_from(config.queued_max_request_bytes) {
            Ok(total) if total > 0 => {
                let total = total.min(Semaphore::MAX_PERMITS);
                RequestBudget {
                    bytes: Some(Arc::new(Semaphore::new(total))),
                    total,
                }
            }
            _ => RequestBudget {
                bytes: None,
                total: usize::MAX,
            },
        }
    }

    /// Waits until `frame_size` bytes of the budget are free and takes them. Waiters are served
    /// in order, so a large frame is not starved by small ones. Configuration validation keeps
    /// every admissible frame within the budget; a larger one would take the whole budget
    /// rather than wait forever. Cancel-safe.
    pub async fn reserve(&self, frame_size: usize) -> RequestPermit {
        let Some(bytes) = &self.bytes else {
            return RequestPermit { _bytes: None };
        };
        let wanted = u32::try_from(frame_size.min(self.total)).unwrap_or(u32::MAX);
        RequestPermit {
            // Only a closed semaphore fails, and this one is never closed.
            _bytes: bytes.clone().acquire_many_owned(wanted).await.ok(),
        }
    }

    /// Bytes of the budget not reserved right now.
    #[cfg(test)]
    fn available(&self) -> usize {
        self.bytes
            .as_ref()
            .map_or(usize::MAX, |bytes| bytes.available_permits())
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use super::*;

    fn config(settings: &[(&str, &str)]) -> BrokerConfig {
        let mut config = BrokerConfig::default();
        for (key, value) in settings {
            config.apply_override(key, value).unwrap();
        }
        config.validate().unwrap();
        config
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    #[tokio::test]
    async fn per_ip_limit_with_overrides_counts_open_connections() {
        let limits = ConnectionLimits::from_config(&config(&[
            ("max.connections.per.ip", "2"),
            ("max.connections.per.ip.overrides", "10.0.0.9:3,10.0.0.8:0"),
        ]));
        let mut admitted = Vec::new();
        for _ in 0..2 {
            let slot = limits.wait_for_free_slot().await;
            admitted.push(limits.admit(slot, ip(1)).expect("under the limit"));
        }
        let slot = limits.wait_for_free_slot().await;
        assert!(limits.admit(slot, ip(1)).is_none(), "third from 10.0.0.1");
        assert_eq!(limits.open_from(ip(1)), 2);
        for _ in 0..3 {
            let slot = limits.wait_for_free_slot().await;
            admitted.push(limits.admit(slot, ip(9)).expect("override allows 3"));
        }
        let slot = limits.wait_for_free_slot().await;
        assert!(limits.admit(slot, ip(9)).is_none(), "fourth from 10.0.0.9");
        let slot = limits.wait_for_free_slot().await;
        assert!(limits.admit(slot, ip(8)).is_none(), "override of 0");
        assert_eq!(limits.open_from(ip(8)), 0);

        // IPv4-mapped IPv6 addresses count as their IPv4 address.
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped());
        let slot = limits.wait_for_free_slot().await;
        assert!(limits.admit(slot, mapped).is_none());

        admitted.remove(0);
        assert_eq!(limits.open_from(ip(1)), 1);
        let slot = limits.wait_for_free_slot().await;
        admitted.push(limits.admit(slot, mapped).expect("a place was freed"));
        drop(admitted);
        assert_eq!(limits.open_from(ip(1)), 0);
        assert_eq!(limits.open_from(ip(9)), 0);
    }

    #[tokio::test]
    async fn max_connections_makes_the_next_connection_wait_for_a_free_slot() {
        let limits = ConnectionLimits::from_config(&config(&[("max.connections", "2")]));
        let first = limits.admit(limits.wait_for_free_slot().await, ip(1));
        let _second = limits.admit(limits.wait_for_free_slot().await, ip(2));
        let waiting = tokio::spawn({
            let limits = limits.clone();
            async move { limits.wait_for_free_slot().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "a third connection must wait");
        drop(first);
        let slot = tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("a slot is free after a close")
            .unwrap();
        assert!(limits.admit(slot, ip(3)).is_some());
    }

    #[tokio::test]
    async fn request_budget_holds_frames_until_released_and_clamps_huge_ones() {
        let mib = 1024 * 1024;
        let budget = RequestBudget::from_config(&config(&[
            ("socket.request.max.bytes", "1048576"),
            ("queued.max.request.bytes", "2097152"),
        ]));
        let first = budget.reserve(mib).await;
        let second = budget.reserve(mib).await;
        assert_eq!(budget.available(), 0);
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.reserve(100).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "an exhausted budget makes frames wait"
        );
        drop(first);
        let third = tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("released bytes admit the waiting frame")
            .unwrap();
        assert_eq!(budget.available(), mib - 100);
        drop((second, third));
        assert_eq!(budget.available(), 2 * mib);

        // A frame larger than the whole budget takes all of it instead of waiting forever.
        let huge = tokio::time::timeout(Duration::from_secs(10), budget.reserve(10 * mib))
            .await
            .expect("clamped to the budget");
        assert_eq!(budget.available(), 0);
        drop(huge);
        assert_eq!(budget.available(), 2 * mib);
    }

    #[tokio::test]
    async fn unbounded_budget_never_waits() {
        let budget = RequestBudget::from_config(&config(&[("queued.max.request.bytes", "-1")]));
        let mut permits = Vec::new();
        for _ in 0..100 {
            permits.push(budget.reserve(100 * 1024 * 1024).await);
        }
        assert_eq!(permits.len(), 100);
    }
}
