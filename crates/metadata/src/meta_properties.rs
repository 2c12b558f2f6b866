//! `meta.properties`, written once in the metadata directory like Kafka's: the cluster id and this
//! node's id, so that a directory of another cluster or node is refused at start; and the Kafka-style
//! random ids (`Uuid.randomUuid`, printed in URL-safe base64) used for clusters, topics and
//! incarnations.

use std::collections::BTreeMap;
use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use strom_protocol::codec::Uuid;

use crate::error::MetadataError;

const META_PROPERTIES: &str = "meta.properties";

/// Reads `meta.properties` (cluster id, node id) or writes it for a new cluster; returns the
/// cluster id.
pub fn load_or_create_meta_properties(
    dir: &Path,
    node_id: i32,
    cluster_id_if_new: Option<String>,
) -> Result<String, MetadataError> {
    let path = dir.join(META_PROPERTIES);
    let storage = |context: &str, e: std::io::Error| {
        MetadataError::storage(&format!("{context} {}", path.display()), e)
    };
    match fs::read_to_string(&path) {
        Ok(text) => {
            let properties: BTreeMap<&str, &str> = text
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty() && !line.starts_with('#'))
                .filter_map(|line| line.split_once('='))
                .map(|(k, v)| (k.trim(), v.trim()))
                .collect();
            let cluster_id = properties.get("cluster.id").ok_or_else(|| {
                MetadataError::storage(
                    &format!("reading {}", path.display()),
                    "no cluster.id property",
                )
            })?;
            if let Some(stored) = properties.get("node.id") {
                if *stored != node_id.to_string() {
                    return Err(MetadataError::storage(
                        &format!("reading {}", path.display()),
                        format!("node.id {stored} doesn't match the configured node id {node_id}"),
                    ));
                }
            }
            Ok((*cluster_id).to_owned())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let cluster_id = cluster_id_if_new.unwrap_or_else(|| base64url(&random_uuid()));
            let contents = format!(
                "#\n#Written by strom\ncluster.id={cluster_id}\ndirectory.id={}\nnode.id={node_id}\nversion=1\n",
                base64url(&random_uuid())
            );
            let tmp = dir.join(format!("{META_PROPERTIES}.tmp"));
            fs::write(&tmp, contents)
                .and_then(|()| fs::File::open(&tmp)?.sync_all())
                .and_then(|()| fs::rename(&tmp, &path))
                .and_then(|()| fs::File::open(dir)?.sync_all())
                .map_err(|e| storage("writing", e))?;
            Ok(cluster_id)
        }
        Err(e) => Err(storage("reading", e)),
    }
}

/// A random version-4 UUID usable as a Kafka id: never all-zero or the reserved metadata topic id,
/// and its base64 form never starts with '-' (Kafka's `Uuid.randomUuid` rules).
pub fn random_uuid() -> Uuid {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    loop {
        let mut bytes = [0u8; 16];
        for half in bytes.chunks_mut(8) {
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            hasher.write_u128(nanos);
            hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
            hasher.write_u32(std::process::id());
            half.copy_from_slice(&hasher.finish().to_be_bytes());
        }
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        let reserved = bytes == [0; 16] || bytes == METADATA_TOPIC_ID;
        if !reserved && !base64url(&bytes).starts_with('-') {
            return bytes;
        }
    }
}

/// Kafka's `Uuid.METADATA_TOPIC_ID` (0...01), reserved for the metadata topic.
const METADATA_TOPIC_ID: Uuid = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// URL-safe base64 without padding, as Kafka prints UUIDs (22 characters for 16 bytes).
pub fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 0x3f) as usize]));
        }
    }
    out
}
