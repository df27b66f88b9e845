//! The record key contract between the Falcon source and everything downstream.
//!
//! A raw Falcon event is written to the topic unchanged, so what the source knows
//! that the event does not (the Falcon partition it came from) travels in the
//! record key. The key also repeats the Falcon offset so that the source can
//! recover its cursor from the topic without parsing values.
//!
//! Wire form: ASCII `<partition>_<offset>`, both unsigned decimal, e.g. `0_1001`
//! (the shape of the existing gateway's `UID`, so operators recognise it).

use std::fmt;

/// Where a raw Falcon event came from: its Event Streams partition and offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceKey {
    /// Falcon partition (last path segment of the feed URL).
    pub partition: u32,
    /// `metadata.offset` of the event within that partition.
    pub offset: u64,
}

/// Why a record key could not be read as a [`SourceKey`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError(String);

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeyError {}

impl SourceKey {
    /// Builds a key for one event.
    pub fn new(partition: u32, offset: u64) -> Self {
        Self { partition, offset }
    }

    /// Encodes the key as the bytes stored in the record key.
    pub fn encode(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }

    /// Decodes a record key written by [`SourceKey::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, KeyError> {
        let text = std::str::from_utf8(bytes).map_err(|_| KeyError("record key is not UTF-8".to_string()))?;
        let (partition, offset) = text
            .split_once('_')
            .ok_or_else(|| KeyError(format!("record key {text:?} is not of the form <partition>_<offset>")))?;
        let partition = parse_decimal(partition)
            .and_then(|p| u32::try_from(p).ok())
            .ok_or_else(|| KeyError(format!("record key {text:?}: bad partition")))?;
        let offset = parse_decimal(offset).ok_or_else(|| KeyError(format!("record key {text:?}: bad offset")))?;
        Ok(Self { partition, offset })
    }
}

/// Strict unsigned decimal: no sign, no spaces, no empty string.
fn parse_decimal(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

impl fmt::Display for SourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.partition, self.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let key = SourceKey::new(3, 18_446_744_073_709_551_615);
        assert_eq!(SourceKey::decode(&key.encode()), Ok(key));
        assert_eq!(key.to_string(), "3_18446744073709551615");
    }

    #[test]
    fn rejects_malformed_keys() {
        for bad in [
            &b""[..],
            b"0",
            b"_1",
            b"0_",
            b"a_1",
            b"0_-1",
            b"0_1_2",
            b"4294967296_1",
            b"\xff_1",
        ] {
            assert!(SourceKey::decode(bad).is_err(), "{bad:?} accepted");
        }
    }
}
