//! Serde helpers for human-friendly units in config files: `30s`, `5m`, `1 MB`.

use std::time::Duration;

use serde::{de, Deserialize, Deserializer};

/// Deserializes a humantime duration string (`500ms`, `30s`, `5m`, `1h 30m`).
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text).map_err(de::Error::custom)
}

/// Like [`duration`], for optional fields.
pub fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|t| parse_duration(&t).map_err(de::Error::custom))
        .transpose()
}

/// Parses a humantime duration, with an error that quotes the input.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration like 500ms, 30s or 5m ({e})"))
}

/// Deserializes a byte size (`1 MB`, `64 MiB`, `900000`).
pub fn byte_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Number(n) => Ok(n),
        Raw::Text(t) => parse_byte_size(&t).map_err(de::Error::custom),
    }
}

/// Like [`byte_size`], for optional fields.
pub fn opt_byte_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    byte_size(d).map(Some)
}

/// Parses a byte size string.
pub fn parse_byte_size(text: &str) -> Result<u64, String> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("{text:?} is not a size like 1 MB or 64 MiB ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("soon").expect_err("bad").contains("soon"));
        assert_eq!(parse_byte_size("1 MB"), Ok(1_000_000));
        assert_eq!(parse_byte_size("64 MiB"), Ok(64 * 1024 * 1024));
        assert!(parse_byte_size("lots").is_err());
    }
}
