//! ApiVersions answers of the SC and the SPU (protocol spec §1.4).

use fluvio_protocol::link::versions::{ApiVersionKey, ApiVersionsResponse, PlatformVersion};
use fluvio_protocol::link::ErrorCode;

/// The platform the SC claims: the release that shipped the 0.50.1 crates.
pub const PLATFORM_VERSION: (u64, u64, u64) = (0, 18, 1);

/// The SC's table: the object APIs; it does not list ApiVersions itself.
pub(crate) fn sc() -> ApiVersionsResponse {
    let (major, minor, patch) = PLATFORM_VERSION;
    ApiVersionsResponse {
        error_code: ErrorCode::None,
        api_keys: keys(&[
            (1001, 9, 19),
            (1002, 1, 19),
            (1003, 15, 19),
            (1004, 15, 19),
            (1005, 14, 19),
            (1006, 1, 19),
        ]),
        platform_version: PlatformVersion::from(semver::Version::new(major, minor, patch)),
    }
}

/// The SPU's table. Like the real SPU it leaves the consumer-offset APIs
/// (1006–1008) out, caps StreamFetch at 15 for a client that sends no
/// version, and reports platform "0.0.0".
pub(crate) fn spu(client_version: &str) -> ApiVersionsResponse {
    let stream_fetch_max = if client_version.is_empty() { 15 } else { 25 };
    ApiVersionsResponse {
        error_code: ErrorCode::None,
        api_keys: keys(&[
            (0, 0, 25),
            (1, 0, 25),
            (1002, 25, 25),
            (1003, 0, stream_fetch_max),
            (1005, 0, 0),
        ]),
        platform_version: PlatformVersion::default(),
    }
}

fn keys(table: &[(i16, i16, i16)]) -> Vec<ApiVersionKey> {
    table
        .iter()
        .map(|&(api_key, min_version, max_version)| ApiVersionKey {
            api_key,
            min_version,
            max_version,
        })
        .collect()
}
