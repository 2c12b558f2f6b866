//! ApiVersions (key 18): tells the client which APIs and versions this broker serves.
//!
//! An unsupported ApiVersions version never reaches this handler: the connection answers it with
//! UNSUPPORTED_VERSION and a v0 body built from [`supported_api_keys`] (KIP-511).

use strom_protocol::messages::api_versions_request::ApiVersionsRequest;
use strom_protocol::messages::api_versions_response::{ApiVersion, ApiVersionsResponse};
use strom_protocol::ErrorCode;

use super::served_apis;

/// Every served API and its version range, as the response lists them.
pub fn supported_api_keys() -> Vec<ApiVersion> {
    served_apis()
        .map(|(api_key, min_version, max_version)| ApiVersion {
            api_key,
            min_version,
            max_version,
        })
        .collect()
}

pub fn handle(_request: ApiVersionsRequest, _version: i16) -> ApiVersionsResponse {
    ApiVersionsResponse {
        error_code: ErrorCode::None.code(),
        api_keys: supported_api_keys(),
        ..Default::default()
    }
}
