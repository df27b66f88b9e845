//! Request building for `PutLogEvents`: each event's timestamp and size, the
//! events CloudWatch would refuse (over 1 MB, older than 14 days or than the
//! group's retention, more than 2 hours ahead) dead-lettered before sending,
//! and batches sorted by timestamp and cut where they would span more than
//! 24 hours.
//!
//! The timestamp of an event is, in order: the module's own event time (OCSF
//! `time`, epoch milliseconds; Open Audit Events `eventTime`), the time of the
//! raw record it came from, the current time. So CloudWatch's age rules apply
//! to when the action happened, and Logs Insights sorts by it.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use crate::publish::{BatchLimits, Prepared, Refusal, Submitted};

/// Most events per request.
pub const MAX_EVENTS: usize = 10_000;
/// Largest request: the sum of the messages' UTF-8 bytes plus 26 per event.
pub const MAX_BATCH_BYTES: usize = 1_048_576;
/// What CloudWatch counts per event on top of its message.
pub const EVENT_OVERHEAD: usize = 26;
/// Longest time span of one request.
pub const MAX_SPAN_MS: i64 = 24 * 3_600_000;
/// Oldest event CloudWatch accepts.
pub const MAX_AGE_MS: i64 = 14 * 24 * 3_600_000;
/// Furthest-ahead event CloudWatch accepts.
pub const MAX_AHEAD_MS: i64 = 2 * 3_600_000;
/// Events this close to an age limit are refused already: they may wait in a
/// batch or a retry before CloudWatch sees them.
const AGE_MARGIN_MS: i64 = 5 * 60_000;

/// The service's limits as the publisher counts them.
pub const LIMITS: BatchLimits = BatchLimits {
    max_events: MAX_EVENTS,
    max_bytes: MAX_BATCH_BYTES,
    overhead_bytes: 0,
};

/// What the request builder knows about the log group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupRules {
    /// The group's retention, when known.
    pub retention_days: Option<u32>,
}

/// The current time, epoch ms.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as i64
}

/// The event fields a timestamp can come from.
#[derive(Deserialize)]
struct TimeFields<'a> {
    #[serde(default)]
    time: Option<serde_json::Value>,
    #[serde(default, rename = "eventTime", borrow)]
    event_time: Option<Cow<'a, str>>,
}

/// The event's own time, epoch ms: OCSF `time`, else `eventTime` (RFC 3339, UTC).
pub fn event_time_ms(message: &str) -> Option<i64> {
    let fields: TimeFields<'_> = serde_json::from_str(message).ok()?;
    if let Some(ms) = fields.time.as_ref().and_then(serde_json::Value::as_i64) {
        return (ms >= 0).then_some(ms);
    }
    let text = fields.event_time?;
    crate::audit::time::parse_event_time(&text).map(|secs| secs.saturating_mul(1000))
}

fn describe(ms: i64) -> String {
    crate::audit::time::format_event_time(ms.div_euclid(1000))
}

/// Checks and sizes one event at `now` (epoch ms).
pub fn prepare(event: Submitted<'_>, rules: GroupRules, now: i64) -> Result<Prepared, Refusal> {
    let dead = |code: &str, message: String| Refusal::DeadLetter {
        code: code.to_string(),
        message,
        body: None,
    };
    let message = event.event_data;
    if message.is_empty() {
        return Err(dead(
            "EmptyMessage",
            "CloudWatch Logs refuses empty messages".to_string(),
        ));
    }
    let size = message.len() + EVENT_OVERHEAD;
    if size > MAX_BATCH_BYTES {
        return Err(dead(
            "EventTooLarge",
            format!(
                "the event is {} bytes; CloudWatch Logs takes events up to 1 MB ({} bytes with its {EVENT_OVERHEAD}-byte overhead)",
                message.len(),
                MAX_BATCH_BYTES
            ),
        ));
    }
    let timestamp = event_time_ms(message).or(event.record_time_ms).unwrap_or(now);
    if timestamp < now - MAX_AGE_MS + AGE_MARGIN_MS {
        return Err(dead(
            "TooOld",
            format!(
                "the event time {} is more than 14 days ago; CloudWatch Logs refuses such events",
                describe(timestamp)
            ),
        ));
    }
    if let Some(days) = rules.retention_days {
        let retention_ms = i64::from(days) * 24 * 3_600_000;
        if timestamp < now - retention_ms + AGE_MARGIN_MS {
            return Err(dead(
                "Expired",
                format!(
                    "the event time {} is older than the log group's retention of {days} days",
                    describe(timestamp)
                ),
            ));
        }
    }
    if timestamp > now + MAX_AHEAD_MS {
        return Err(dead(
            "TooNew",
            format!(
                "the event time {} is more than 2 hours ahead; CloudWatch Logs refuses such events (check the clocks)",
                describe(timestamp)
            ),
        ));
    }
    Ok(Prepared {
        id: event.id.to_string(),
        body: message.to_string(),
        timestamp_ms: timestamp,
        wire_bytes: size,
    })
}

/// Sorts a batch by timestamp (stable: equal times keep their order) and cuts
/// it wherever a request would span more than 24 hours.
pub fn plan(events: &[&Prepared]) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..events.len()).collect();
    order.sort_by_key(|&i| events[i].timestamp_ms);
    let mut requests: Vec<Vec<usize>> = Vec::new();
    let mut first = i64::MIN;
    for index in order {
        let ts = events[index].timestamp_ms;
        match requests.last_mut() {
            Some(current) if ts - first <= MAX_SPAN_MS => current.push(index),
            _ => {
                first = ts;
                requests.push(vec![index]);
            }
        }
    }
    requests
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;
    const HOUR: i64 = 3_600_000;
    const NO_RULES: GroupRules = GroupRules { retention_days: None };

    fn submitted(message: &str, record_time_ms: Option<i64>) -> Submitted<'_> {
        Submitted {
            id: "k",
            event_data: message,
            record_time_ms,
        }
    }

    fn code(result: Result<Prepared, Refusal>) -> String {
        match result {
            Ok(p) => format!("ok {}", p.timestamp_ms),
            Err(Refusal::DeadLetter { code, .. }) => code,
            Err(other) => format!("{other:?}"),
        }
    }

    #[test]
    fn timestamps_come_from_the_event_then_the_record_then_now() {
        let ocsf = format!("{{\"class_uid\":3002,\"time\":{}}}", NOW - HOUR);
        assert_eq!(
            code(prepare(submitted(&ocsf, Some(1)), NO_RULES, NOW)),
            format!("ok {}", NOW - HOUR)
        );
        let oae = "{\"eventTime\":\"2027-01-15T08:00:00Z\",\"UID\":\"x\"}";
        assert_eq!(event_time_ms(oae), Some(1_800_000_000_000));
        assert_eq!(
            event_time_ms("{\"time\":\"not a number\",\"eventTime\":\"1970-01-01T00:00:01Z\"}"),
            Some(1000)
        );
        assert_eq!(
            code(prepare(submitted("plain text", Some(NOW - 2 * HOUR)), NO_RULES, NOW)),
            format!("ok {}", NOW - 2 * HOUR)
        );
        assert_eq!(
            code(prepare(submitted("plain text", None), NO_RULES, NOW)),
            format!("ok {NOW}")
        );
    }

    #[test]
    fn refuses_what_cloudwatch_would_refuse() {
        let at = |ms: i64| format!("{{\"time\":{ms}}}");
        assert_eq!(
            code(prepare(submitted(&at(NOW - 15 * 24 * HOUR), None), NO_RULES, NOW)),
            "TooOld"
        );
        assert_eq!(
            code(prepare(submitted(&at(NOW + 3 * HOUR), None), NO_RULES, NOW)),
            "TooNew"
        );
        let week = GroupRules {
            retention_days: Some(7),
        };
        assert_eq!(
            code(prepare(submitted(&at(NOW - 8 * 24 * HOUR), None), week, NOW)),
            "Expired"
        );
        assert!(code(prepare(submitted(&at(NOW - 6 * 24 * HOUR), None), week, NOW)).starts_with("ok"));
        assert_eq!(code(prepare(submitted("", None), NO_RULES, NOW)), "EmptyMessage");
        let big = "x".repeat(MAX_BATCH_BYTES - EVENT_OVERHEAD + 1);
        assert_eq!(code(prepare(submitted(&big, None), NO_RULES, NOW)), "EventTooLarge");
        let fits = "x".repeat(MAX_BATCH_BYTES - EVENT_OVERHEAD);
        assert!(code(prepare(submitted(&fits, None), NO_RULES, NOW)).starts_with("ok"));
    }

    fn at(ms: i64) -> Prepared {
        Prepared {
            id: ms.to_string(),
            body: "m".to_string(),
            timestamp_ms: ms,
            wire_bytes: 27,
        }
    }

    #[test]
    fn sorts_and_cuts_at_24_hours() {
        let events = [
            at(5 * HOUR),
            at(0),
            at(30 * HOUR),
            at(24 * HOUR),
            at(24 * HOUR + 1),
            at(0),
        ];
        let refs: Vec<&Prepared> = events.iter().collect();
        let requests = plan(&refs);
        assert_eq!(requests, vec![vec![1, 5, 0, 3], vec![4, 2]]);
        for request in &requests {
            let times: Vec<i64> = request.iter().map(|&i| events[i].timestamp_ms).collect();
            assert!(times.windows(2).all(|w| w[0] <= w[1]), "sorted: {times:?}");
            assert!(times[times.len() - 1] - times[0] <= MAX_SPAN_MS);
        }
    }
}
