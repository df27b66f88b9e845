//! `PutLogEvents` as the specification describes it (§1.2, §1.3, §1.11 items
//! 4–5): shape, the stream, 10,000 events and 1,048,576 bytes (messages plus
//! 26 bytes each), chronological order (else 400, nothing stored), too old
//! (> 14 days), expired (before the group's retention) and too new (> 2 hours
//! ahead) refused while the rest is stored, at most 24 hours between the
//! valid events (else 400, nothing stored), and `rejectedLogEventsInfo` only
//! when something was refused. The sequence token is ignored.

use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::cloudwatch::api::{group_name, stream_name, ApiError};
use crate::cloudwatch::config::CloudWatchFault;
use crate::cloudwatch::state::{CloudWatchState, StoredEvent};
use crate::cloudwatch::validate::Violations;
use crate::lock;

/// Most events per request.
pub const MAX_EVENTS: usize = 10_000;
/// Largest request, counted as messages' UTF-8 bytes plus 26 per event.
pub const MAX_BATCH_BYTES: usize = 1_048_576;
/// Bytes counted per event on top of its message.
pub const EVENT_OVERHEAD: usize = 26;
/// Largest event.
pub const MAX_EVENT_BYTES: usize = 1_048_576;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// One event of the request.
struct Incoming {
    timestamp: i64,
    message: String,
}

/// Where the refused events of a sorted batch are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rejected {
    /// Events before this index are more than 14 days old (exclusive end).
    pub too_old_end: usize,
    /// Events before this index precede the retention period (exclusive end).
    pub expired_end: usize,
    /// Events from this index on are more than 2 hours ahead (inclusive start).
    pub too_new_start: usize,
}

/// Classifies a chronologically sorted batch of `timestamps` at `now`. The
/// refused events form a prefix (old) and a suffix (new) of the batch; the
/// end indices count the leading events, the start index is the first new one.
pub fn classify(timestamps: &[i64], now: i64, retention_days: Option<u32>) -> Rejected {
    let too_old_end = timestamps.partition_point(|&t| t < now - 14 * DAY_MS);
    let expired_end = retention_days
        .map(|days| timestamps.partition_point(|&t| t < now - i64::from(days) * DAY_MS))
        .unwrap_or(0);
    let too_new_start = timestamps.partition_point(|&t| t <= now + 2 * HOUR_MS);
    Rejected {
        too_old_end,
        expired_end,
        too_new_start,
    }
}

fn parse_events(body: &Map<String, Value>, v: &mut Violations) -> Vec<Incoming> {
    let list = match body.get("logEvents") {
        Some(Value::Array(list)) => list,
        other => {
            v.push(other, "logEvents", "Member must not be null");
            return Vec::new();
        }
    };
    if list.is_empty() {
        v.push(
            body.get("logEvents"),
            "logEvents",
            "Member must have length greater than or equal to 1",
        );
    }
    if list.len() > MAX_EVENTS {
        v.push(
            Some(&json!(format!("[{} events]", list.len()))),
            "logEvents",
            &format!("Member must have length less than or equal to {MAX_EVENTS}"),
        );
        return Vec::new();
    }
    let mut events = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let path = |field: &str| format!("logEvents.{}.member.{field}", i + 1);
        let timestamp = item.get("timestamp").and_then(Value::as_i64);
        match timestamp {
            None => v.push(item.get("timestamp"), &path("timestamp"), "Member must not be null"),
            Some(t) if t < 0 => v.push(
                item.get("timestamp"),
                &path("timestamp"),
                "Member must have value greater than or equal to 0",
            ),
            Some(_) => {}
        }
        let message = item.get("message").and_then(Value::as_str);
        match message {
            None => v.push(item.get("message"), &path("message"), "Member must not be null"),
            Some("") => v.push(
                item.get("message"),
                &path("message"),
                "Member must have length greater than or equal to 1",
            ),
            Some(_) => {}
        }
        if let (Some(timestamp), Some(message)) = (timestamp, message) {
            events.push(Incoming {
                timestamp,
                message: message.to_string(),
            });
        }
    }
    events
}

fn check_sizes(events: &[Incoming]) -> Result<(), ApiError> {
    if let Some((i, e)) = events
        .iter()
        .enumerate()
        .find(|(_, e)| e.message.len() + EVENT_OVERHEAD > MAX_EVENT_BYTES)
    {
        return Err(ApiError::invalid(format!(
            "Log event too large: event {} is {} bytes, exceeding the limit of {MAX_EVENT_BYTES} bytes",
            i,
            e.message.len() + EVENT_OVERHEAD
        )));
    }
    let total: usize = events.iter().map(|e| e.message.len() + EVENT_OVERHEAD).sum();
    if total > MAX_BATCH_BYTES {
        return Err(ApiError::invalid(format!(
            "Upload too large: {total} bytes exceeds limit of {MAX_BATCH_BYTES}"
        )));
    }
    if events.windows(2).any(|w| w[1].timestamp < w[0].timestamp) {
        return Err(ApiError::invalid(
            "Log events in a single PutLogEvents request must be in chronological order.",
        ));
    }
    Ok(())
}

/// Random failures decided before anything is stored, and the throttle.
fn before_storing(state: &CloudWatchState) -> Result<(), ApiError> {
    let rates = state.config.request_failures;
    let throttled = !state.admit() || state.chance(rates.throttle);
    if throttled {
        lock(&state.stats).throttled_requests += 1;
        let mut error = ApiError::new("ThrottlingException", "Rate exceeded");
        error.retry_after_ms = state.config.retry_after_ms;
        return Err(error);
    }
    if state.chance(rates.http500) {
        let mut error = ApiError::new(
            "InternalFailure",
            "The request processing has failed because of an unknown error, exception or failure.",
        );
        error.status = axum::http::StatusCode::INTERNAL_SERVER_ERROR;
        return Err(error);
    }
    if state.chance(rates.http503) {
        let mut error = ApiError::new(
            "ServiceUnavailableException",
            "The service cannot complete the request.",
        );
        error.status = axum::http::StatusCode::SERVICE_UNAVAILABLE;
        return Err(error);
    }
    Ok(())
}

/// `PutLogEvents`.
pub async fn put_log_events(state: &CloudWatchState, body: &Map<String, Value>) -> Result<Value, ApiError> {
    let mut v = Violations::default();
    let group = group_name(&mut v, body).unwrap_or_default().to_string();
    let stream = stream_name(&mut v, body).unwrap_or_default().to_string();
    let events = parse_events(body, &mut v);
    v.finish()?;
    before_storing(state)?;
    check_sizes(&events)?;
    let now = state.now_ms();
    let (rejected, count) = {
        let mut groups = lock(&state.groups);
        let log_group = groups.get_mut(&group).ok_or_else(ApiError::no_group)?;
        let retention = log_group.retention_days;
        let log_stream = log_group.streams.get_mut(&stream).ok_or_else(ApiError::no_stream)?;
        let timestamps: Vec<i64> = events.iter().map(|e| e.timestamp).collect();
        let rejected = classify(&timestamps, now, retention);
        let first_valid = rejected.too_old_end.max(rejected.expired_end);
        let valid = events
            .get(first_valid..rejected.too_new_start.max(first_valid))
            .unwrap_or_default();
        if let (Some(first), Some(last)) = (valid.first(), valid.last()) {
            if last.timestamp - first.timestamp > DAY_MS {
                return Err(ApiError::invalid(
                    "The batch of log events in a single PutLogEvents request cannot span more than 24 hours.",
                ));
            }
        }
        for event in valid {
            let seq = state.next_seq();
            log_stream.events.push(StoredEvent {
                timestamp: event.timestamp,
                message: event.message.clone(),
                ingestion_time: now,
                event_id: format!("{:020}{:036}", seq, event.timestamp.unsigned_abs()),
                seq,
            });
        }
        if !valid.is_empty() {
            log_stream.last_ingestion_time = Some(now);
        }
        (rejected, valid.len())
    };
    count_rejected(state, rejected, events.len(), count);
    if let Some(CloudWatchFault::Slow { millis }) =
        state.take_fault("PutLogEvents", |f| matches!(f, CloudWatchFault::Slow { .. }))
    {
        tokio::time::sleep(Duration::from_millis(millis)).await;
    } else if state.chance(state.config.request_failures.slow) {
        tokio::time::sleep(Duration::from_millis(state.config.slow_ms)).await;
    }
    Ok(reply(rejected, events.len(), state.next_seq()))
}

fn count_rejected(state: &CloudWatchState, rejected: Rejected, total: usize, stored: usize) {
    let mut stats = lock(&state.stats);
    stats.stored_events += stored as u64;
    stats.too_old_events += rejected.too_old_end as u64;
    stats.expired_events += rejected.expired_end.saturating_sub(rejected.too_old_end) as u64;
    stats.too_new_events += total.saturating_sub(rejected.too_new_start) as u64;
}

fn reply(rejected: Rejected, total: usize, token: u64) -> Value {
    let mut info = Map::new();
    if rejected.too_new_start < total {
        info.insert("tooNewLogEventStartIndex".to_string(), json!(rejected.too_new_start));
    }
    if rejected.too_old_end > 0 {
        info.insert("tooOldLogEventEndIndex".to_string(), json!(rejected.too_old_end));
    }
    if rejected.expired_end > 0 {
        info.insert("expiredLogEventEndIndex".to_string(), json!(rejected.expired_end));
    }
    let mut reply = json!({"nextSequenceToken": format!("{token:056}")});
    if !info.is_empty() {
        reply["rejectedLogEventsInfo"] = Value::Object(info);
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn rejects_form_a_prefix_and_a_suffix() {
        let batch = [
            NOW - 20 * DAY_MS,
            NOW - 15 * DAY_MS,
            NOW - 10 * DAY_MS,
            NOW - HOUR_MS,
            NOW,
            NOW + 2 * HOUR_MS,
            NOW + 3 * HOUR_MS,
        ];
        assert_eq!(
            classify(&batch, NOW, None),
            Rejected {
                too_old_end: 2,
                expired_end: 0,
                too_new_start: 6
            }
        );
        assert_eq!(classify(&batch, NOW, Some(7)).expired_end, 3, "older than a week");
        assert_eq!(classify(&batch, NOW, Some(18)).expired_end, 1);
        let nothing = classify(&[NOW], NOW, None);
        assert_eq!(reply(nothing, 1, 1).get("rejectedLogEventsInfo"), None);
        let info = &reply(classify(&batch, NOW, Some(7)), batch.len(), 1)["rejectedLogEventsInfo"];
        assert_eq!(
            info,
            &json!({"tooOldLogEventEndIndex": 2, "expiredLogEventEndIndex": 3, "tooNewLogEventStartIndex": 6})
        );
    }

    #[test]
    fn sizes_and_order() {
        let event = |timestamp: i64, len: usize| Incoming {
            timestamp,
            message: "x".repeat(len),
        };
        assert!(
            check_sizes(&[event(1, 10), event(1, 10), event(2, 10)]).is_ok(),
            "equal timestamps are in order"
        );
        let unordered = check_sizes(&[event(2, 10), event(1, 10)]).expect_err("order");
        assert!(unordered.message.contains("chronological order"));
        let fits = MAX_BATCH_BYTES / 2 - EVENT_OVERHEAD;
        assert!(
            check_sizes(&[event(1, fits), event(1, fits)]).is_ok(),
            "exactly 1,048,576 bytes"
        );
        assert!(check_sizes(&[event(1, fits), event(1, fits + 1)]).is_err());
        assert!(check_sizes(&[event(1, MAX_EVENT_BYTES)])
            .expect_err("big")
            .message
            .contains("too large"));
    }
}
