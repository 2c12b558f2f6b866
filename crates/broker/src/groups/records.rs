//! The record format of the internal `__consumer_offsets` topic, byte for byte Kafka's own, so that
//! tools reading that topic understand it: committed offsets under an `OffsetCommitKey` (version 1:
//! group, topic, partition) with an `OffsetCommitValue` (written at version 3: offset, leader epoch,
//! metadata, commit timestamp), group state under a `GroupMetadataKey` (version 2: group) with a
//! `GroupMetadataValue` (written at version 3). A null value is a tombstone. Also the choice of the
//! partition that holds a group's records (`abs(groupId.hashCode) % partitions`, as Kafka computes it).

use bytes::Bytes;
use strom_protocol::codec::{
    get_bytes, get_i16, get_i32, get_i64, get_nullable_string, get_string, DecodeError, Encoder,
};

/// Key versions 0 and 1 name a committed offset; version 2 names a group's metadata.
const OFFSET_KEY_VERSION: i16 = 1;
const GROUP_KEY_VERSION: i16 = 2;
const OFFSET_VALUE_VERSION: i16 = 3;
const GROUP_VALUE_VERSION: i16 = 3;

/// Why a `__consumer_offsets` record could not be understood.
#[derive(Debug, thiserror::Error)]
pub enum OffsetsRecordError {
    #[error("malformed record: {0}")]
    Malformed(#[from] DecodeError),
    #[error("unknown key version {0}")]
    UnknownKeyVersion(i16),
    #[error("unknown value version {0}")]
    UnknownValueVersion(i16),
}

/// The key of a `__consumer_offsets` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OffsetsKey {
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group {
        group: String,
    },
}

impl OffsetsKey {
    pub fn encode(&self) -> Bytes {
        let mut out = Encoder::new();
        match self {
            OffsetsKey::Offset {
                group,
                topic,
                partition,
            } => {
                out.put_i16(OFFSET_KEY_VERSION);
                out.put_string(group, false);
                out.put_string(topic, false);
                out.put_i32(*partition);
            }
            OffsetsKey::Group { group } => {
                out.put_i16(GROUP_KEY_VERSION);
                out.put_string(group, false);
            }
        }
        out.into_bytes()
    }

    pub fn decode(mut key: Bytes) -> Result<Self, OffsetsRecordError> {
        let version = get_i16(&mut key)?;
        match version {
            0 | 1 => Ok(OffsetsKey::Offset {
                group: get_string(&mut key, false)?,
                topic: get_string(&mut key, false)?,
                partition: get_i32(&mut key)?,
            }),
            2 => Ok(OffsetsKey::Group {
                group: get_string(&mut key, false)?,
            }),
            other => Err(OffsetsRecordError::UnknownKeyVersion(other)),
        }
    }
}

/// A committed offset of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

impl CommittedOffset {
    pub fn encode(&self) -> Bytes {
        let mut out = Encoder::new();
        out.put_i16(OFFSET_VALUE_VERSION);
        out.put_i64(self.offset);
        out.put_i32(self.leader_epoch);
        out.put_string(&self.metadata, false);
        out.put_i64(self.commit_timestamp_ms);
        out.into_bytes()
    }

    /// Decodes value versions 0 to 3 (older versions have no leader epoch; v1 carries an expire
    /// timestamp that is ignored, as Kafka does since KIP-211).
    pub fn decode(mut value: Bytes) -> Result<Self, OffsetsRecordError> {
        let version = get_i16(&mut value)?;
        if !(0..=OFFSET_VALUE_VERSION).contains(&version) {
            return Err(OffsetsRecordError::UnknownValueVersion(version));
        }
        let offset = get_i64(&mut value)?;
        let leader_epoch = if version >= 3 {
            get_i32(&mut value)?
        } else {
            -1
        };
        let metadata = get_string(&mut value, false)?;
        let commit_timestamp_ms = get_i64(&mut value)?;
        Ok(CommittedOffset {
            offset,
            leader_epoch,
            metadata,
            commit_timestamp_ms,
        })
    }
}

/// One member as stored in a `GroupMetadataValue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// A group's state as stored in a `GroupMetadataValue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredGroup {
    pub protocol_type: String,
    pub generation_id: i32,
    pub protocol_name: Option<String>,
    pub leader_id: Option<String>,
    pub current_state_timestamp_ms: i64,
    pub members: Vec<StoredMember>,
}

impl StoredGroup {
    pub fn encode(&self) -> Bytes {
        let mut out = Encoder::new();
        out.put_i16(GROUP_VALUE_VERSION);
        out.put_string(&self.protocol_type, false);
        out.put_i32(self.generation_id);
        out.put_nullable_string(self.protocol_name.as_deref(), false);
        out.put_nullable_string(self.leader_id.as_deref(), false);
        out.put_i64(self.current_state_timestamp_ms);
        out.put_array_len(Some(self.members.len()), false);
        for member in &self.members {
            out.put_string(&member.member_id, false);
            out.put_nullable_string(member.group_instance_id.as_deref(), false);
            out.put_string(&member.client_id, false);
            out.put_string(&member.client_host, false);
            out.put_i32(member.rebalance_timeout_ms);
            out.put_i32(member.session_timeout_ms);
            out.put_bytes(&member.subscription, false);
            out.put_bytes(&member.assignment, false);
        }
        out.into_bytes()
    }

    /// Decodes value versions 0 to 3 (the non-flexible ones).
    pub fn decode(mut value: Bytes) -> Result<Self, OffsetsRecordError> {
        let version = get_i16(&mut value)?;
        if !(0..=GROUP_VALUE_VERSION).contains(&version) {
            return Err(OffsetsRecordError::UnknownValueVersion(version));
        }
        let protocol_type = get_string(&mut value, false)?;
        let generation_id = get_i32(&mut value)?;
        let protocol_name = get_nullable_string(&mut value, false)?;
        let leader_id = get_nullable_string(&mut value, false)?;
        let current_state_timestamp_ms = if version >= 2 {
            get_i64(&mut value)?
        } else {
            -1
        };
        let count = get_i32(&mut value)?;
        let mut members = Vec::new();
        for _ in 0..count.max(0) {
            let member_id = get_string(&mut value, false)?;
            let group_instance_id = if version >= 3 {
                get_nullable_string(&mut value, false)?
            } else {
                None
            };
            let client_id = get_string(&mut value, false)?;
            let client_host = get_string(&mut value, false)?;
            let session_or_rebalance = get_i32(&mut value)?;
            let (rebalance_timeout_ms, session_timeout_ms) = if version >= 1 {
                (session_or_rebalance, get_i32(&mut value)?)
            } else {
                (session_or_rebalance, session_or_rebalance)
            };
            members.push(StoredMember {
                member_id,
                group_instance_id,
                client_id,
                client_host,
                rebalance_timeout_ms,
                session_timeout_ms,
                subscription: get_bytes(&mut value, false)?,
                assignment: get_bytes(&mut value, false)?,
            });
        }
        Ok(StoredGroup {
            protocol_type,
            generation_id,
            protocol_name,
            leader_id,
            current_state_timestamp_ms,
            members,
        })
    }
}

/// Java's `String.hashCode` (over UTF-16 code units), which Kafka uses to place a group.
fn java_string_hash(text: &str) -> i32 {
    text.encode_utf16().fold(0i32, |hash, unit| {
        hash.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// The `__consumer_offsets` partition holding `group_id`'s records: Kafka's
/// `Utils.abs(groupId.hashCode) % partitions`, where `Utils.abs` masks the sign bit.
pub fn partition_for_group(group_id: &str, partitions: i32) -> i32 {
    (java_string_hash(group_id) & 0x7fff_ffff) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_partition_matches_kafka() {
        // Well-known Java values: "hello".hashCode() == 99162322, "polygenelubricants" hashes to
        // Integer.MIN_VALUE, whose masked absolute value is 0.
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(partition_for_group("hello", 50), 99_162_322 % 50);
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(partition_for_group("polygenelubricants", 50), 0);
        assert_eq!(partition_for_group("", 50), 0);
    }

    #[test]
    fn offset_records_round_trip() {
        let key = OffsetsKey::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 7,
        };
        assert_eq!(OffsetsKey::decode(key.encode()).unwrap(), key);
        let value = CommittedOffset {
            offset: 42,
            leader_epoch: 3,
            metadata: "meta".into(),
            commit_timestamp_ms: 1_700_000_000_000,
        };
        let encoded = value.encode();
        assert_eq!(&encoded[..2], &[0, 3]);
        assert_eq!(CommittedOffset::decode(encoded).unwrap(), value);
    }

    #[test]
    fn group_records_round_trip() {
        let key = OffsetsKey::Group { group: "g".into() };
        assert_eq!(&key.encode()[..2], &[0, 2]);
        assert_eq!(OffsetsKey::decode(key.encode()).unwrap(), key);
        let value = StoredGroup {
            protocol_type: "consumer".into(),
            generation_id: 4,
            protocol_name: Some("range".into()),
            leader_id: Some("m1".into()),
            current_state_timestamp_ms: 5,
            members: vec![StoredMember {
                member_id: "m1".into(),
                group_instance_id: Some("i1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 45_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        assert_eq!(StoredGroup::decode(value.encode()).unwrap(), value);
    }

    #[test]
    fn unknown_versions_are_reported() {
        let mut out = Encoder::new();
        out.put_i16(9);
        assert!(matches!(
            OffsetsKey::decode(out.into_bytes()),
            Err(OffsetsRecordError::UnknownKeyVersion(9))
        ));
    }
}
