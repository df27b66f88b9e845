//! The test-only control API under `/_emulator/`: inject faults, expire sessions
//! and tokens, append and list events, read counters. Kept apart from the
//! emulated paths so nothing real ever depends on it.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::control::{count, queue_faults, MAX_GENERATE};
use crate::falcon::api::AppState;
use crate::falcon::config::ControlFault;

fn number<T: std::str::FromStr>(query: &HashMap<String, String>, key: &str, default: T) -> T {
    query.get(key).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `POST /_emulator/faults?count=N` (N ≤ 10,000) with a [`ControlFault`] as JSON.
pub async fn add_fault(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    queue_faults(&query, &body, |fault: ControlFault, n| state.push_fault(fault, n))
}

/// `POST /_emulator/sessions/expire`: every session ends now.
pub async fn expire_sessions(State(state): State<AppState>) -> StatusCode {
    state.expire_sessions();
    StatusCode::NO_CONTENT
}

/// `POST /_emulator/tokens/expire`: every bearer token stops working now.
pub async fn expire_tokens(State(state): State<AppState>) -> StatusCode {
    state.expire_tokens();
    StatusCode::NO_CONTENT
}

/// `POST /_emulator/events/generate?count=N` (N ≤ 100,000).
pub async fn generate(State(state): State<AppState>, Query(query): Query<HashMap<String, String>>) -> Response {
    match count(&query, "count", 1, MAX_GENERATE) {
        Ok(count) => {
            state.append_generated(count);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(refused) => refused,
    }
}

/// `POST /_emulator/events?partition=P[&raw=true]` with JSONL events; with
/// `raw=true` each line is served verbatim, event or not.
pub async fn append(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let partition = number(&query, "partition", 0u32);
    let text = String::from_utf8_lossy(&body);
    if number(&query, "raw", false) {
        for line in text.lines() {
            if let Err(e) = state.append_raw(partition, line) {
                return (StatusCode::BAD_REQUEST, e).into_response();
            }
        }
        return StatusCode::NO_CONTENT.into_response();
    }
    let mut offsets = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match state.append_line(partition, line) {
            Ok(offset) => offsets.push(offset),
            Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
        }
    }
    axum::Json(json!({"offsets": offsets})).into_response()
}

/// `GET /_emulator/events?partition=P&from=I&limit=N`: the log as served.
pub async fn list(State(state): State<AppState>, Query(query): Query<HashMap<String, String>>) -> Response {
    let partition = number(&query, "partition", 0usize);
    let Some(log) = state.partitions.get(partition) else {
        return (StatusCode::NOT_FOUND, "no such partition").into_response();
    };
    let events: Vec<Value> = log
        .read(number(&query, "from", 0), number(&query, "limit", 1_000))
        .into_iter()
        .map(|e| json!({"offset": e.offset, "line": String::from_utf8_lossy(&e.line)}))
        .collect();
    axum::Json(json!({"partition": partition, "total": log.len(), "events": events})).into_response()
}

/// `GET /_emulator/stats`.
pub async fn stats(State(state): State<AppState>) -> Response {
    let mut stats = serde_json::to_value(&state.stats).unwrap_or_else(|_| json!({}));
    let lengths: Vec<usize> = state.partitions.iter().map(|p| p.len()).collect();
    stats["partition_lengths"] = json!(lengths);
    stats["feeds_open"] = json!(state.stats.feeds_open.load(Ordering::Relaxed));
    axum::Json(stats).into_response()
}
