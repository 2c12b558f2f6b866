//! The authorized-operations bit fields of Metadata, DescribeCluster and DescribeGroups. This
//! broker has no authorizer, so everything is allowed; Kafka then reports, for a resource, every
//! operation its resource type supports (`AclEntry.supportedOperations`), one bit per
//! `AclOperation` code (`Utils.to32BitField`).

/// `AclOperation` codes.
const READ: u8 = 3;
const WRITE: u8 = 4;
const CREATE: u8 = 5;
const DELETE: u8 = 6;
const ALTER: u8 = 7;
const DESCRIBE: u8 = 8;
const CLUSTER_ACTION: u8 = 9;
const DESCRIBE_CONFIGS: u8 = 10;
const ALTER_CONFIGS: u8 = 11;
const IDEMPOTENT_WRITE: u8 = 12;

/// The schema default of every authorized-operations field: the client did not ask.
pub const NOT_REQUESTED: i32 = i32::MIN;

/// The operations a topic supports.
pub const TOPIC: i32 = bit_field(&[
    READ,
    WRITE,
    CREATE,
    DELETE,
    ALTER,
    DESCRIBE,
    DESCRIBE_CONFIGS,
    ALTER_CONFIGS,
]);

/// The operations the cluster supports.
pub const CLUSTER: i32 = bit_field(&[
    CREATE,
    ALTER,
    DESCRIBE,
    CLUSTER_ACTION,
    DESCRIBE_CONFIGS,
    ALTER_CONFIGS,
    IDEMPOTENT_WRITE,
]);

/// The operations a group supports (Kafka 4.0 added the group configs).
pub const GROUP: i32 = bit_field(&[READ, DELETE, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS]);

const fn bit_field(operations: &[u8]) -> i32 {
    let mut field = 0;
    let mut i = 0;
    while i < operations.len() {
        field |= 1 << operations[i];
        i += 1;
    }
    field
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_fields_match_kafka() {
        assert_eq!(TOPIC, 3576);
        assert_eq!(CLUSTER, 8096);
        assert_eq!(GROUP, 3400);
    }
}
