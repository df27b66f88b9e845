//! The test-only inspection and control API under `/_emulator/`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::cloudtrail::api::AppState;
use crate::cloudtrail::config::CloudTrailFault;
use crate::control::queue_faults;
use crate::lock;

fn param<T: std::str::FromStr>(query: &HashMap<String, String>, key: &str, default: T) -> T {
    query.get(key).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `GET /_emulator/events?channel=ARN&from=I&limit=N`: stored records with the id they were sent with.
pub async fn events(State(state): State<AppState>, Query(query): Query<HashMap<String, String>>) -> Response {
    let store = lock(&state.store);
    let channel = query.get("channel");
    let selected: Vec<Value> = store
        .records
        .iter()
        .filter(|r| channel.is_none_or(|c| r.record["metadata"]["channelARN"].as_str() == Some(c.as_str())))
        .skip(param(&query, "from", 0))
        .take(param(&query, "limit", usize::MAX))
        .map(|r| json!({"id": r.id, "callerAccountId": r.caller_account, "record": r.record}))
        .collect();
    axum::Json(json!({"total": store.records.len(), "events": selected})).into_response()
}

/// `GET /_emulator/ids?channel=ARN`: every id stored and how often.
pub async fn ids(State(state): State<AppState>, Query(query): Query<HashMap<String, String>>) -> Response {
    let store = lock(&state.store);
    let channel = query.get("channel");
    let ids: serde_json::Map<String, Value> = store
        .ids
        .iter()
        .filter(|((c, _), _)| channel.is_none_or(|wanted| c == wanted))
        .map(|((_, id), n)| (id.clone(), json!(n)))
        .collect();
    axum::Json(json!({"ids": ids})).into_response()
}

/// `GET /_emulator/stats`: request and event counts, error codes, duplicates.
pub async fn stats(State(state): State<AppState>) -> Response {
    let (stored, unique, duplicates) = {
        let store = lock(&state.store);
        let duplicates = store.ids.values().filter(|n| **n > 1).count();
        (store.records.len(), store.ids.len(), duplicates)
    };
    let stats = lock(&state.stats);
    axum::Json(json!({
        "requests": stats.requests,
        "throttled_requests": stats.throttled_requests,
        "accepted_events": stats.accepted_events,
        "failed_events": stats.failed_events,
        "stored_events": stored,
        "unique_ids": unique,
        "duplicate_ids": duplicates,
        "codes": stats.codes,
    }))
    .into_response()
}

/// `POST /_emulator/faults?count=N` (N ≤ 10,000) with a fault as JSON.
pub async fn add_fault(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    queue_faults(&query, &body, |fault: CloudTrailFault, n| state.push_fault(fault, n))
}

/// `POST /_emulator/reset`: forget stored events, counters and queued faults.
pub async fn reset(State(state): State<AppState>) -> StatusCode {
    state.reset();
    StatusCode::NO_CONTENT
}
