//! The test-only inspection and control API under `/_emulator/`.

use std::collections::{BTreeMap, HashMap};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::cloudwatch::api::AppState;
use crate::cloudwatch::config::CloudWatchFault;
use crate::cloudwatch::state::{CloudWatchState, StoredEvent};
use crate::control::queue_faults;
use crate::lock;

/// Stored events of the selected group and stream (any when absent), in arrival order.
fn selected<'a>(
    groups: &'a BTreeMap<String, crate::cloudwatch::state::LogGroup>,
    query: &HashMap<String, String>,
) -> Vec<(&'a str, &'a str, &'a StoredEvent)> {
    let (group, stream) = (query.get("group"), query.get("stream"));
    let mut events: Vec<(&str, &str, &StoredEvent)> = groups
        .iter()
        .filter(|(name, _)| group.is_none_or(|g| g == *name))
        .flat_map(|(g, log_group)| {
            log_group
                .streams
                .iter()
                .filter(|(name, _)| stream.is_none_or(|s| s == *name))
                .flat_map(move |(s, log_stream)| log_stream.events.iter().map(move |e| (g.as_str(), s.as_str(), e)))
        })
        .collect();
    events.sort_by_key(|(_, _, e)| e.seq);
    events
}

fn param(query: &HashMap<String, String>, key: &str, default: usize) -> usize {
    query.get(key).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `GET /_emulator/events?group=G&stream=S&from=I&limit=N`: stored events, in arrival order.
pub async fn events(State(state): State<AppState>, Query(query): Query<HashMap<String, String>>) -> Response {
    let groups = lock(&state.groups);
    let all = selected(&groups, &query);
    let listed: Vec<Value> = all
        .iter()
        .skip(param(&query, "from", 0))
        .take(param(&query, "limit", usize::MAX))
        .map(|(g, s, e)| {
            json!({
                "group": g,
                "stream": s,
                "timestamp": e.timestamp,
                "message": e.message,
                "ingestionTime": e.ingestion_time,
                "eventId": e.event_id,
            })
        })
        .collect();
    axum::Json(json!({"total": all.len(), "events": listed})).into_response()
}

/// The id a stored message carries: OCSF `metadata.uid`, else Open Audit Events `UID`.
fn uid_of(message: &str) -> Option<String> {
    let value: Value = serde_json::from_str(message).ok()?;
    value["metadata"]["uid"]
        .as_str()
        .or_else(|| value["UID"].as_str())
        .map(str::to_string)
}

/// `GET /_emulator/messages?group=G&stream=S`: how often each uid and each
/// distinct message was stored.
pub async fn messages(State(state): State<AppState>, Query(query): Query<HashMap<String, String>>) -> Response {
    let groups = lock(&state.groups);
    let all = selected(&groups, &query);
    let mut uids: BTreeMap<String, u64> = BTreeMap::new();
    let mut texts: HashMap<&str, u64> = HashMap::new();
    let mut without_uid = 0u64;
    for (_, _, e) in &all {
        *texts.entry(e.message.as_str()).or_default() += 1;
        match uid_of(&e.message) {
            Some(uid) => *uids.entry(uid).or_default() += 1,
            None => without_uid += 1,
        }
    }
    axum::Json(json!({
        "stored": all.len(),
        "distinct_messages": texts.len(),
        "messages_stored_more_than_once": texts.values().filter(|n| **n > 1).count(),
        "uids": uids,
        "uids_stored_more_than_once": uids.values().filter(|n| **n > 1).count(),
        "without_uid": without_uid,
    }))
    .into_response()
}

/// `GET /_emulator/stats`.
pub async fn stats(State(state): State<AppState>) -> Response {
    let mut stats = serde_json::to_value(lock(&state.stats).clone()).unwrap_or_else(|_| json!({}));
    stats["log_groups"] = json!(lock(&state.groups).len());
    stats["clock_offset_ms"] = json!(state.clock_offset());
    axum::Json(stats).into_response()
}

/// `POST /_emulator/faults?count=N` (N ≤ 10,000) with a fault as JSON.
pub async fn add_fault(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    queue_faults(&query, &body, |fault: CloudWatchFault, n| state.push_fault(fault, n))
}

/// `POST /_emulator/clock` with `{"offset_ms": N}`: the emulator's clock (for
/// the age rules) runs N ms ahead of the real one (behind when negative).
pub async fn clock(State(state): State<AppState>, body: Bytes) -> Response {
    match serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["offset_ms"].as_i64())
    {
        Some(offset) => {
            state.set_clock_offset(offset);
            axum::Json(json!({"offset_ms": offset, "now_ms": state.now_ms()})).into_response()
        }
        None => (StatusCode::BAD_REQUEST, "expected {\"offset_ms\": <integer>}").into_response(),
    }
}

/// `POST /_emulator/reset`: forget groups, events, counters, faults; the clock too.
pub async fn reset(State(state): State<AppState>) -> Response {
    match CloudWatchState::reset(&state) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")).into_response(),
    }
}
