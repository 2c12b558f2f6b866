//! The metadata publisher: the only place where committed metadata takes effect on this broker,
//! whichever controller committed it. For each new image from the metadata state it brings the
//! partition logs in line (opening logs of new partitions, deleting those of deleted topics,
//! applying changed configs), removes committed offsets of deleted topics, tells the group
//! coordinator which offsets partitions this broker leads, and publishes the image to request
//! handlers ([`Broker::image`]); then the replica fetchers follow the new leaderships
//! ([`replication::on_image`]). Effects run on the blocking pool, one image at a time, in order.

use std::sync::Arc;

use strom_metadata::MetadataImage;
use tokio::sync::watch;

use crate::groups::{self, OffsetsTopic, OFFSETS_TOPIC};
use crate::replication;
use crate::state::{now_ms, Broker};

/// Applies `image` on top of `previous` (what was published before) and publishes it.
pub fn apply(broker: &Arc<Broker>, previous: &MetadataImage, image: Arc<MetadataImage>) {
    broker.partitions.sync_with_image(&image);
    let changes = image.topic_changes_since(previous);
    let deleted: Vec<String> = changes
        .deleted
        .iter()
        .map(|topic| topic.name.clone())
        .filter(|name| name != OFFSETS_TOPIC)
        .collect();
    groups::follow_leadership(broker, &image);
    replication::on_image(broker, &image);
    broker.publish(image);
    if !deleted.is_empty() {
        broker
            .groups
            .remove_topic_offsets(&deleted, now_ms(), &OffsetsTopic::new(broker));
    }
}

/// Applies the current image now (at start, before the broker serves requests).
pub async fn apply_current(broker: &Arc<Broker>, image: Arc<MetadataImage>) {
    let previous = broker.image();
    let broker_for_task = broker.clone();
    let work = tokio::task::spawn_blocking(move || apply(&broker_for_task, &previous, image));
    if let Err(error) = work.await {
        tracing::error!(%error, "applying metadata failed");
    }
}

/// Applies every new image from `images` until shutdown.
pub async fn run(
    broker: Arc<Broker>,
    mut images: watch::Receiver<Arc<MetadataImage>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            changed = images.changed() => if changed.is_err() { return },
        }
        let image = images.borrow_and_update().clone();
        if image.version == broker.image().version
            && image.last_offset == broker.image().last_offset
        {
            continue;
        }
        apply_current(&broker, image).await;
    }
}
