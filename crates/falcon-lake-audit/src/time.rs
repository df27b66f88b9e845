//! Timestamps: Falcon's epoch numbers in and CloudTrail's `eventTime` text out.
//!
//! Falcon sends seconds or milliseconds depending on the era of the event (and
//! finer units in some detection types), so the unit is decided by magnitude.

/// Largest epoch second accepted: 9999-12-31T23:59:59Z.
const MAX_EPOCH_SECONDS: i64 = 253_402_300_799;

/// Converts a Falcon epoch number of unknown unit to whole epoch seconds.
///
/// Values below 10^11 are seconds (that is the year 5138 in seconds, but only
/// 1973 in milliseconds), below 10^14 milliseconds, below 10^17 microseconds,
/// otherwise nanoseconds. Returns `None` for negative or out-of-range values.
pub fn epoch_seconds_from_any_unit(value: i64) -> Option<i64> {
    if value < 0 {
        return None;
    }
    let seconds = match value {
        v if v < 100_000_000_000 => v,
        v if v < 100_000_000_000_000 => v / 1_000,
        v if v < 100_000_000_000_000_000 => v / 1_000_000,
        v => v / 1_000_000_000,
    };
    (seconds <= MAX_EPOCH_SECONDS).then_some(seconds)
}

/// Converts a Falcon epoch number of unknown unit to epoch milliseconds, by the
/// same magnitude rule as [`epoch_seconds_from_any_unit`].
pub fn epoch_millis_from_any_unit(value: i64) -> Option<i64> {
    if value < 0 {
        return None;
    }
    let millis = match value {
        v if v < 100_000_000_000 => v * 1_000,
        v if v < 100_000_000_000_000 => v,
        v if v < 100_000_000_000_000_000 => v / 1_000,
        v => v / 1_000_000,
    };
    (millis <= MAX_EPOCH_SECONDS * 1_000 + 999).then_some(millis)
}

/// Formats epoch seconds as CloudTrail's `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_event_time(epoch_seconds: i64) -> String {
    EventTime::new(epoch_seconds).as_str().to_string()
}

/// CloudTrail's `eventTime` text, formatted without allocating (the mapper
/// writes one per event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventTime([u8; 20]);

impl EventTime {
    /// `epoch_seconds` as `YYYY-MM-DDTHH:MM:SSZ`, clamped to the years 1970–9999
    /// that the format can spell.
    pub fn new(epoch_seconds: i64) -> Self {
        let seconds = epoch_seconds.clamp(0, MAX_EPOCH_SECONDS);
        let (year, month, day) = civil_from_days(seconds / 86_400);
        let of_day = seconds % 86_400;
        let mut text = *b"0000-00-00T00:00:00Z";
        let mut put = |at: usize, width: usize, mut value: i64| {
            for i in (at..at + width).rev() {
                text[i] = b'0' + (value % 10) as u8;
                value /= 10;
            }
        };
        put(0, 4, year);
        put(5, 2, month);
        put(8, 2, day);
        put(11, 2, of_day / 3600);
        put(14, 2, (of_day / 60) % 60);
        put(17, 2, of_day % 60);
        Self(text)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits and separators are ever written.
        std::str::from_utf8(&self.0).unwrap_or("1970-01-01T00:00:00Z")
    }
}

/// Parses CloudTrail's `eventTime` (`YYYY-MM-DDTHH:MM:SS`, optional `Z`) into
/// epoch seconds; fractional seconds and offsets are rejected.
pub fn parse_event_time(text: &str) -> Option<i64> {
    let text = text.strip_suffix('Z').unwrap_or(text);
    let bytes = text.as_bytes();
    // ASCII first: the byte-index slicing below must never split a character.
    if !text.is_ascii()
        || bytes.len() != 19
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || bytes[10] != b'T'
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = &text[range];
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())
            .flatten()
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let valid = (1..=12).contains(&month)
        && day >= 1
        && day <= days_in_month(year, month)
        && hour < 24
        && minute < 60
        && second < 60;
    valid.then(|| days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to (y, m, d).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Inverse of [`civil_from_days`].
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_decided_by_magnitude() {
        assert_eq!(epoch_seconds_from_any_unit(1_700_000_000), Some(1_700_000_000));
        assert_eq!(epoch_seconds_from_any_unit(1_700_000_000_123), Some(1_700_000_000));
        assert_eq!(epoch_seconds_from_any_unit(1_700_000_000_123_456), Some(1_700_000_000));
        assert_eq!(
            epoch_seconds_from_any_unit(1_700_000_000_123_456_789),
            Some(1_700_000_000)
        );
        assert_eq!(epoch_seconds_from_any_unit(-1), None);
        assert_eq!(epoch_millis_from_any_unit(1_700_000_000), Some(1_700_000_000_000));
        assert_eq!(epoch_millis_from_any_unit(1_700_000_000_123), Some(1_700_000_000_123));
        assert_eq!(
            epoch_millis_from_any_unit(1_700_000_000_123_456),
            Some(1_700_000_000_123)
        );
        assert_eq!(
            epoch_millis_from_any_unit(1_700_000_000_123_456_789),
            Some(1_700_000_000_123)
        );
        assert_eq!(epoch_millis_from_any_unit(-1), None);
    }

    #[test]
    fn formats_and_parses() {
        assert_eq!(format_event_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_event_time(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(format_event_time(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_event_time(MAX_EPOCH_SECONDS), "9999-12-31T23:59:59Z");
        assert_eq!(
            format_event_time(-5),
            "1970-01-01T00:00:00Z",
            "clamped to what the format spells"
        );
        for secs in [0, 951_782_400, 1_700_000_000, 4_102_444_799, MAX_EPOCH_SECONDS] {
            assert_eq!(parse_event_time(&format_event_time(secs)), Some(secs));
        }
        assert_eq!(parse_event_time("2023-11-14T22:13:20"), Some(1_700_000_000));
    }

    #[test]
    fn rejects_other_time_forms() {
        for bad in [
            "2023-11-14T22:13:20.5Z",
            "2023-11-14T22:13:20+01:00",
            "2023-11-14 22:13:20Z",
            "2023-02-29T00:00:00Z",
            "2023-13-01T00:00:00Z",
            "2023-11-14T24:00:00Z",
            "",
            "２０２３-11-14T22:13:20Z",
            "2023-11-1\u{e9}T22:13:2",
        ] {
            assert_eq!(parse_event_time(bad), None, "{bad}");
        }
    }
}
