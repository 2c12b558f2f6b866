//! Kafka's purgatory, per partition: where requests wait for a partition's high watermark.
//!
//! - **Delayed produce**: a produce with `acks=all` answers once the high watermark of each
//!   partition it appended to has passed its last offset, or with REQUEST_TIMED_OUT when the
//!   request's `timeout_ms` runs out first ([`await_high_watermark`]). On a single node the
//!   owner advances the high watermark inside the append, so this returns at once; with
//!   replication it waits for the followers.
//! - **Delayed fetch**: a fetch that found fewer than `min_bytes` waits until the high watermark
//!   of one of *its* partitions moves, then reads again, until `max_wait_ms`
//!   ([`HighWatermarkWatchers`]).
//!
//! Waiters subscribe to the partition owners' `watch` channels ([`Partition::subscribe`]): an
//! append wakes only the requests waiting on that partition, never every waiting request. An
//! owner also wakes its waiters when it goes offline or is removed, so they look again and
//! answer with the partition's error. There is no central waiter list to purge: a waiter that
//! returns drops its receivers.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::partitions::{Partition, PartitionError, Published, Role};

/// Why a delayed fetch stopped waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// The high watermark of a watched partition moved (or the partition went offline or away).
    Changed,
    /// The deadline passed first.
    Expired,
}

/// The high watermarks (a follower's fetch: the log ends) a delayed fetch waits on.
#[derive(Default)]
pub struct HighWatermarkWatchers {
    receivers: Vec<watch::Receiver<Published>>,
    log_ends: Vec<watch::Receiver<i64>>,
}

impl HighWatermarkWatchers {
    /// Watches `partition` from now on: any later move of its high watermark wakes
    /// [`HighWatermarkWatchers::wait`].
    pub fn watch(&mut self, partition: &Partition) {
        self.receivers.push(partition.subscribe());
    }

    /// Watches `partition`'s log end from now on (a follower's fetch waits for new records, not
    /// for the high watermark it is itself holding back).
    pub fn watch_log_end(&mut self, partition: &Partition) {
        self.log_ends.push(partition.subscribe_log_end());
    }

    pub fn is_empty(&self) -> bool {
        self.receivers.is_empty() && self.log_ends.is_empty()
    }

    /// Waits until one watched partition changes since it was watched (or since the last wake),
    /// or until `deadline`.
    pub async fn wait(&mut self, deadline: Instant) -> Wake {
        let high_watermarks = self.receivers.iter_mut().map(|receiver| {
            Box::pin(async move {
                // An error means the owner is gone: also a reason to look again.
                let _ = receiver.changed().await;
            }) as Pin<Box<dyn Future<Output = ()> + Send + '_>>
        });
        let log_ends = self.log_ends.iter_mut().map(|receiver| {
            Box::pin(async move {
                let _ = receiver.changed().await;
            }) as Pin<Box<dyn Future<Output = ()> + Send + '_>>
        });
        let mut changes: Vec<Pin<Box<dyn Future<Output = ()> + Send + '_>>> =
            high_watermarks.chain(log_ends).collect();
        let any_change = std::future::poll_fn(|cx| {
            for change in &mut changes {
                if change.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(());
                }
            }
            Poll::Pending
        });
        match tokio::time::timeout_at(deadline, any_change).await {
            Ok(()) => Wake::Changed,
            Err(_) => Wake::Expired,
        }
    }
}

/// Delayed produce: waits until `partition`'s high watermark reaches `offset` (the appended
/// records' last offset + 1) or `deadline` passes (REQUEST_TIMED_OUT, as Kafka's
/// `DelayedProduce` expires). A partition that goes offline or loses leadership meanwhile
/// answers with that error.
pub async fn await_high_watermark(
    partition: &Partition,
    offset: i64,
    deadline: Instant,
) -> Result<(), PartitionError> {
    let mut receiver = partition.subscribe();
    // The common case on one node: committed by the append itself, no timer needed.
    if partition.role() == Role::Leader && receiver.borrow_and_update().high_watermark >= offset {
        return Ok(());
    }
    let reached = async {
        loop {
            match partition.role() {
                Role::Offline => return Err(PartitionError::Offline(partition.name())),
                Role::Follower => return Err(PartitionError::NotLeader(partition.name())),
                Role::Leader => {}
            }
            if receiver.borrow_and_update().high_watermark >= offset {
                return Ok(());
            }
            if receiver.changed().await.is_err() {
                return Err(PartitionError::NotLeader(partition.name()));
            }
        }
    };
    tokio::time::timeout_at(deadline, reached)
        .await
        .unwrap_or_else(|_| Err(PartitionError::ReplicationTimedOut(partition.name())))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use strom_protocol::ErrorCode;

    use super::*;
    use crate::config::BrokerConfig;
    use crate::partitions::tests::{image_with_topic, one_record};
    use crate::partitions::PartitionRegistry;

    /// A partition `t-0` led by this broker, in a registry over a new temporary directory.
    fn partition() -> (tempfile::TempDir, Arc<Partition>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let registry = PartitionRegistry::new(dir.path(), &BrokerConfig::default());
        registry.sync_with_image(&image_with_topic("t", [1; 16]));
        let partition = registry.get("t", 0).expect("t-0");
        (dir, partition)
    }

    /// Appends a record without moving the high watermark, as a leader whose followers have not
    /// fetched it yet would.
    fn append_uncommitted(partition: &Partition) {
        partition
            .log_for_test()
            .append(&one_record(), 0, 0)
            .expect("append");
    }

    #[tokio::test]
    async fn a_delayed_produce_times_out_when_the_high_watermark_stays_behind() {
        let (_dir, partition) = partition();
        append_uncommitted(&partition);
        let deadline = Instant::now() + Duration::from_millis(20);
        let error = await_high_watermark(&partition, 1, deadline)
            .await
            .expect_err("the high watermark never reaches 1");
        assert_eq!(error.error_code(), ErrorCode::RequestTimedOut.code());
    }

    #[tokio::test]
    async fn a_delayed_produce_completes_when_the_high_watermark_passes_its_records() {
        let (_dir, partition) = partition();
        append_uncommitted(&partition);
        let waiter = tokio::spawn({
            let partition = Arc::clone(&partition);
            async move {
                let deadline = Instant::now() + Duration::from_secs(60);
                await_high_watermark(&partition, 1, deadline).await
            }
        });
        // The next leader append commits both records: the high watermark moves to 2.
        tokio::task::spawn_blocking({
            let partition = Arc::clone(&partition);
            move || partition.append_as_leader(&one_record(), 0)
        })
        .await
        .expect("append task")
        .expect("append");
        waiter
            .await
            .expect("waiter task")
            .expect("committed before the deadline");
    }
}
