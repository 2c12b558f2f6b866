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
use strom_protocol::ErrorCode;

use crate::error::MetadataError;

const META_PROPERTIES: &str = "meta.properties";

/// What `meta.properties` records about a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaProperties {
    pub cluster_id: String,
    pub node_id: Option<i32>,
    pub directory_id: Option<String>,
}

/// Reads `meta.properties` in `dir`; `None` if the directory is not formatted.
pub fn read_meta_properties(dir: &Path) -> Result<Option<MetaProperties>, MetadataError> {
    let path = dir.join(META_PROPERTIES);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(MetadataError::storage(
                &format!("reading {}", path.display()),
                e,
            ))
        }
    };
    let properties: BTreeMap<&str, &str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    let invalid =
        |what: String| MetadataError::storage(&format!("reading {}", path.display()), what);
    let cluster_id = properties
        .get("cluster.id")
        .ok_or_else(|| invalid("no cluster.id property".into()))?;
    let node_id = match properties.get("node.id") {
        Some(text) => Some(
            text.parse()
                .map_err(|_| invalid(format!("node.id {text} is not a number")))?,
        ),
        None => None,
    };
    Ok(Some(MetaProperties {
        cluster_id: (*cluster_id).to_owned(),
        node_id,
        directory_id: properties.get("directory.id").map(|s| (*s).to_owned()),
    }))
}

/// Checks a cluster id the way `kafka-storage format -t` does: 16 bytes in URL-safe base64.
pub fn validate_cluster_id(cluster_id: &str) -> Result<(), String> {
    let valid = cluster_id.len() == 22
        && cluster_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "Cluster ID string {cluster_id} does not appear to be a valid UUID: a cluster id is \
             22 characters of URL-safe base64 (see `strom storage random-uuid`)"
        ))
    }
}

/// Formats `dir` for node `node_id` of cluster `cluster_id` (`kafka-storage format`): writes
/// `meta.properties`. A directory already formatted for the same cluster and node is left alone
/// when `ignore_formatted`; otherwise formatting an already formatted directory is an error.
pub fn format_directory(
    dir: &Path,
    cluster_id: &str,
    node_id: i32,
    ignore_formatted: bool,
) -> Result<bool, MetadataError> {
    validate_cluster_id(cluster_id).map_err(|e| MetadataError::of(ErrorCode::InvalidRequest, e))?;
    if let Some(existing) = read_meta_properties(dir)? {
        let same = existing.cluster_id == cluster_id && existing.node_id == Some(node_id);
        if ignore_formatted && same {
            return Ok(false);
        }
        return Err(MetadataError::storage(
            &format!("formatting {}", dir.display()),
            format!(
                "the directory is already formatted (cluster.id={}, node.id={}); use \
                 --ignore-formatted to skip directories formatted for this node",
                existing.cluster_id,
                existing
                    .node_id
                    .map_or_else(|| "none".into(), |id| id.to_string())
            ),
        ));
    }
    write_meta_properties(dir, cluster_id, node_id)?;
    Ok(true)
}

fn write_meta_properties(dir: &Path, cluster_id: &str, node_id: i32) -> Result<(), MetadataError> {
    let path = dir.join(META_PROPERTIES);
    let contents = format!(
        "#\n#Written by strom\ncluster.id={cluster_id}\ndirectory.id={}\nnode.id={node_id}\nversion=1\n",
        base64url(&random_uuid())
    );
    let tmp = dir.join(format!("{META_PROPERTIES}.tmp"));
    fs::create_dir_all(dir)
        .and_then(|()| fs::write(&tmp, contents))
        .and_then(|()| fs::File::open(&tmp)?.sync_all())
        .and_then(|()| fs::rename(&tmp, &path))
        .and_then(|()| fs::File::open(dir)?.sync_all())
        .map_err(|e| MetadataError::storage(&format!("writing {}", path.display()), e))
}

/// Reads `meta.properties` (cluster id, node id) or, when `cluster_id_if_new` allows it, formats
/// the directory for a new cluster (the zero-config single node formats itself on first start);
/// returns the cluster id. A directory of another node, or of another cluster than
/// `cluster_id_if_new` names, is refused with a message saying so.
pub fn load_or_create_meta_properties(
    dir: &Path,
    node_id: i32,
    cluster_id_if_new: Option<String>,
) -> Result<String, MetadataError> {
    let path = dir.join(META_PROPERTIES);
    match read_meta_properties(dir)? {
        Some(existing) => {
            if let Some(stored) = existing.node_id.filter(|stored| *stored != node_id) {
                return Err(MetadataError::storage(
                    &format!("reading {}", path.display()),
                    format!(
                        "the directory belongs to node.id {stored}, not to the configured node id {node_id}"
                    ),
                ));
            }
            Ok(existing.cluster_id)
        }
        None => {
            let cluster_id = cluster_id_if_new.unwrap_or_else(|| base64url(&random_uuid()));
            write_meta_properties(dir, &cluster_id, node_id)?;
            Ok(cluster_id)
        }
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
