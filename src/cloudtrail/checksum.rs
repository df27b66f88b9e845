//! `eventDataChecksum`: base64 (standard, padded) of SHA-256 over the exact bytes of `eventData`.

use base64::Engine;
use sha2::{Digest, Sha256};

/// The checksum CloudTrail verifies for one `eventData` string.
pub fn event_data_checksum(event_data: &str) -> String {
    let mut out = String::with_capacity(44);
    push_event_data_checksum(&mut out, event_data);
    out
}

/// Appends [`event_data_checksum`] to `out`: the request body is written in
/// place, without a string per event.
pub fn push_event_data_checksum(out: &mut String, event_data: &str) {
    base64::engine::general_purpose::STANDARD.encode_string(Sha256::digest(event_data.as_bytes()), out);
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
