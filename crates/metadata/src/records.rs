//! Metadata record types and their serialized form in the metadata log.
//!
//! Each record is framed as Kafka's `MetadataRecordSerde` frames it: uvarint frame version (1),
//! uvarint API key (the record type), uvarint record version, then the record itself in the
//! flexible-version encoding of its schema.

use bytes::Bytes;
use strom_protocol::codec::{get_uvarint, DecodeError, Encoder};

pub use strom_protocol::metadata_records::{
    metadata_record_max_version, register_broker_record::BrokerEndpoint,
    BrokerRegistrationChangeRecord, ConfigRecord, FeatureLevelRecord, FenceBrokerRecord,
    MetadataRecord, PartitionChangeRecord, PartitionRecord, ProducerIdsRecord,
    RegisterBrokerRecord, RemoveTopicRecord, TopicRecord, UnfenceBrokerRecord,
};

/// The `MetadataRecordSerde` frame version Kafka writes.
const FRAME_VERSION: u32 = 1;

/// Why a serialized metadata record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("unsupported metadata record frame version {0}")]
    FrameVersion(u32),
    #[error("metadata record API key {0} is out of range")]
    ApiKeyOutOfRange(u32),
    #[error("unknown metadata record type {0}")]
    UnknownType(i16),
    #[error("metadata record version {version} of type {api_key} is out of range")]
    VersionOutOfRange { api_key: i16, version: u32 },
    #[error("decoding metadata record of type {api_key}: {source}")]
    Decode { api_key: i16, source: DecodeError },
    #[error("{0} trailing bytes after metadata record of type {1}")]
    TrailingBytes(usize, i16),
}

/// Serializes one record at the newest version of its schema.
pub fn serialize_record(record: &MetadataRecord) -> Result<Bytes, RecordError> {
    let api_key = record.api_key();
    let version = metadata_record_max_version(api_key).ok_or(RecordError::UnknownType(api_key))?;
    let mut out = Encoder::new();
    out.put_uvarint(FRAME_VERSION);
    out.put_uvarint(api_key as u32);
    out.put_uvarint(version as u32);
    record.encode(&mut out, version);
    Ok(out.into_bytes())
}

/// Reads one serialized record, which must span all of `data`.
pub fn deserialize_record(mut data: Bytes) -> Result<MetadataRecord, RecordError> {
    let header = |data: &mut Bytes| {
        get_uvarint(data).map_err(|source| RecordError::Decode {
            api_key: -1,
            source,
        })
    };
    let frame_version = header(&mut data)?;
    if frame_version != FRAME_VERSION {
        return Err(RecordError::FrameVersion(frame_version));
    }
    let raw_key = header(&mut data)?;
    let api_key = i16::try_from(raw_key).map_err(|_| RecordError::ApiKeyOutOfRange(raw_key))?;
    let raw_version = header(&mut data)?;
    let version = i16::try_from(raw_version).map_err(|_| RecordError::VersionOutOfRange {
        api_key,
        version: raw_version,
    })?;
    let record = MetadataRecord::decode(api_key, version, &mut data)
        .map_err(|source| RecordError::Decode { api_key, source })?;
    if !data.is_empty() {
        return Err(RecordError::TrailingBytes(data.len(), api_key));
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_record_bytes_match_kafka() {
        let record = MetadataRecord::Topic(TopicRecord {
            name: "foo".into(),
            topic_id: [0xab; 16],
        });
        let bytes = serialize_record(&record).unwrap();
        // frame version 1, api key 2, version 0, compact string "foo", uuid, no tagged fields.
        let mut expected = vec![1, 2, 0, 4, b'f', b'o', b'o'];
        expected.extend([0xab; 16]);
        expected.push(0);
        assert_eq!(bytes.as_ref(), expected.as_slice());
    }

    #[test]
    fn rejects_unknown_frame_version_and_trailing_bytes() {
        let record = MetadataRecord::Topic(TopicRecord::default());
        let mut bytes = serialize_record(&record).unwrap().to_vec();
        bytes.push(0);
        assert!(matches!(
            deserialize_record(Bytes::from(bytes.clone())),
            Err(RecordError::TrailingBytes(1, 2))
        ));
        bytes[0] = 2;
        assert!(matches!(
            deserialize_record(Bytes::from(bytes)),
            Err(RecordError::FrameVersion(2))
        ));
    }

    #[test]
    fn records_round_trip_with_kafka_framing() {
        let records = [
            MetadataRecord::Topic(TopicRecord {
                name: "orders".into(),
                topic_id: [7; 16],
            }),
            MetadataRecord::Partition(PartitionRecord {
                partition_id: 3,
                topic_id: [7; 16],
                replicas: vec![1, 2],
                isr: vec![2, 1],
                leader: 1,
                leader_epoch: 0,
                partition_epoch: 0,
                ..Default::default()
            }),
            MetadataRecord::Config(ConfigRecord {
                resource_type: 2,
                resource_name: "orders".into(),
                name: "retention.ms".into(),
                value: None,
            }),
        ];
        for record in records {
            let bytes = serialize_record(&record).unwrap();
            assert_eq!(bytes[0], 1, "frame version");
            assert_eq!(i16::from(bytes[1]), record.api_key());
            assert_eq!(deserialize_record(bytes).unwrap(), record);
        }
    }
}
