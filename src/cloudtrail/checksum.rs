//! `eventDataChecksum`: base64 (standard, padded) of SHA-256 over the exact bytes of `eventData`.

use base64::Engine;
use sha2::{Digest, Sha256};

/// The checksum CloudTrail verifies for one `eventData` string.
pub fn event_data_checksum(event_data: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(event_data.as_bytes()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_the_documented_test_vector() {
        assert_eq!(
            super::event_data_checksum("{}"),
            "RBNvo1WzZ4oRRq0W9+hknpT7T8If536DEMBg9hyq/4o="
        );
    }
}
