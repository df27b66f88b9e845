//! Operating a pipeline: the durable status records the sink writes
//! ([`status_log`]), the topics of either backend seen one way ([`topics`]),
//! reading dead letters ([`letters`]), re-sending them ([`redrive`]) and the
//! `status` report ([`report`]). The CLI commands are thin layers over these.

pub mod letters;
pub mod redrive;
pub mod report;
pub mod status_log;
pub mod topics;

/// Now, epoch milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Epoch milliseconds as `2026-01-01T00:00:00.123Z`.
pub fn format_ms(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
            ))
            .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// `2026-01-01T00:00:00Z` or an age like `90m` (that long ago) → epoch milliseconds.
pub fn parse_time(text: &str) -> Result<i64, String> {
    if let Ok(age) = crate::config::units::parse_duration(text) {
        return Ok(now_ms().saturating_sub(age.as_millis() as i64));
    }
    time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|_| format!("{text:?} is neither an RFC 3339 time (2026-01-01T00:00:00Z) nor an age (2h)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip() {
        assert_eq!(format_ms(1_767_225_600_123), "2026-01-01T00:00:00.123Z");
        assert_eq!(parse_time("2026-01-01T00:00:00Z"), Ok(1_767_225_600_000));
        let hour_ago = parse_time("1h").expect("age");
        assert!((now_ms() - hour_ago - 3_600_000).abs() < 5_000);
        assert!(parse_time("yesterday").is_err());
    }
}
