//! The generated error code enum agrees with itself and with Kafka's well-known codes.

// Test code. (clippy.toml's allow-*-in-tests does not reach integration-test helpers.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use strom_protocol::ErrorCode;

#[test]
fn every_code_round_trips_and_is_unique() {
    for error in ErrorCode::ALL {
        assert_eq!(ErrorCode::from_code(error.code()), Some(error));
        assert_eq!(i16::from(error), error.code());
    }
    let mut codes: Vec<i16> = ErrorCode::ALL.iter().map(|e| e.code()).collect();
    codes.dedup();
    assert_eq!(
        codes.len(),
        ErrorCode::ALL.len(),
        "codes are sorted and unique"
    );
    assert_eq!(ErrorCode::from_code(i16::MAX), None);
}

#[test]
fn well_known_codes_and_names() {
    assert_eq!(ErrorCode::None.code(), 0);
    assert_eq!(ErrorCode::UnknownServerError.code(), -1);
    assert_eq!(ErrorCode::NotEnoughReplicas.code(), 19);
    assert_eq!(ErrorCode::InvalidConfig.code(), 40);
    assert_eq!(ErrorCode::InvalidRequest.code(), 42);
    assert_eq!(
        ErrorCode::from_code(3),
        Some(ErrorCode::UnknownTopicOrPartition)
    );
    assert_eq!(ErrorCode::NotEnoughReplicas.name(), "NOT_ENOUGH_REPLICAS");
    assert_eq!(
        ErrorCode::NotEnoughReplicas.to_string(),
        "NOT_ENOUGH_REPLICAS (19)"
    );
}
