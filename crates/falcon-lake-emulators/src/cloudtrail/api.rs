//! The emulated `POST /PutAuditEvents` (restJson1, SigV4), per the spec's §14 checklist.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::cloudtrail::config::CloudTrailFault;
use crate::cloudtrail::schema::{check_event_data, is_audit_event_id, is_external_id};
use crate::cloudtrail::state::{Channel, CloudTrailState, StoredRecord};
use crate::lock;
use crate::sigv4::{verify, SignedRequest};

/// Shared handler state.
pub type AppState = Arc<CloudTrailState>;

/// Largest request body accepted ("up to 1 MB", read as 2^20 bytes).
pub const MAX_BODY: usize = 1_048_576;
/// The signing name of the service.
const SERVICE: &str = "cloudtrail-data";

/// An error in AWS's restJson1 wire format: status, `X-Amzn-Errortype`, `{"message"}`.
pub fn aws_error(status: StatusCode, code: &str, message: &str) -> Response {
    let mut response = (status, axum::Json(json!({"message": message}))).into_response();
    if let Ok(value) = HeaderValue::from_str(code) {
        response.headers_mut().insert("x-amzn-errortype", value);
    }
    request_id(&mut response);
    response
}

fn request_id(response: &mut Response) {
    response
        .headers_mut()
        .insert("x-amzn-requestid", crate::aws::request_id());
}

fn validation(message: &str) -> Response {
    aws_error(
        StatusCode::BAD_REQUEST,
        "ValidationException",
        &format!("1 validation error detected: {message}"),
    )
}

/// `POST /PutAuditEvents`.
pub async fn put_audit_events(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    lock(&state.stats).requests += 1;
    if state.config.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(state.config.latency_ms)).await;
    }
    let response = match handle(&state, &method, &uri, query.as_deref().unwrap_or(""), &headers, &body).await {
        Ok(response) | Err(response) => response,
    };
    if let Some(code) = response.headers().get("x-amzn-errortype").and_then(|v| v.to_str().ok()) {
        state.count_code(code);
    }
    response
}

async fn handle(
    state: &CloudTrailState,
    method: &Method,
    uri: &Uri,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, Response> {
    request_faults(state)?;
    let region = authenticate(state, method, uri, query, headers, body)?;
    if !state.admit() {
        lock(&state.stats).throttled_requests += 1;
        let mut response = aws_error(StatusCode::BAD_REQUEST, "ThrottlingException", "Rate exceeded");
        if let Some(ms) = state.config.retry_after_ms {
            if let Ok(value) = HeaderValue::from_str(&ms.to_string()) {
                response.headers_mut().insert("x-amz-retry-after", value);
            }
        }
        return Err(response);
    }
    let params: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let channel = authorize(state, headers, &params, &region)?;
    let events = parse_events(body)?;
    let account = caller_account(state, headers);
    let (successful, failed) = store_events(state, channel, &region, &events, &account);
    let reply = json!({"successful": successful, "failed": failed});
    post_store_faults(state).await?;
    let mut response = (StatusCode::OK, axum::Json(reply)).into_response();
    request_id(&mut response);
    Ok(response)
}

/// Queued or random whole-request failures decided before anything is stored.
fn request_faults(state: &CloudTrailState) -> Result<(), Response> {
    if let Some(CloudTrailFault::Exception { code, status }) =
        state.take_fault(|f| matches!(f, CloudTrailFault::Exception { .. }))
    {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
        if code == "ThrottlingException" {
            lock(&state.stats).throttled_requests += 1;
        }
        return Err(aws_error(status, &code, &format!("{code} (injected by the emulator)")));
    }
    let rates = state.config.request_failures;
    if state.chance(rates.http500) {
        return Err(aws_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalFailure",
            "We encountered an internal error. Please try again.",
        ));
    }
    if state.chance(rates.http503) {
        return Err(aws_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "Service is unavailable. Please try again.",
        ));
    }
    Ok(())
}

/// Malformed or slow answers happen after the events are stored, as when a
/// reply is lost: the client retries and CloudTrail stores the events again.
async fn post_store_faults(state: &CloudTrailState) -> Result<(), Response> {
    let queued = state.take_fault(|f| matches!(f, CloudTrailFault::MalformedBody | CloudTrailFault::Slow { .. }));
    let rates = state.config.request_failures;
    let malformed = matches!(queued, Some(CloudTrailFault::MalformedBody)) || state.chance(rates.malformed);
    if malformed {
        let mut response = (
            StatusCode::OK,
            [("content-type", "application/json")],
            "{\"successful\":[{\"id\":",
        )
            .into_response();
        request_id(&mut response);
        return Err(response);
    }
    let slow = match queued {
        Some(CloudTrailFault::Slow { millis }) => Some(Duration::from_millis(millis)),
        _ if state.chance(rates.slow) => Some(state.slow_delay()),
        _ => None,
    };
    if let Some(delay) = slow {
        tokio::time::sleep(delay).await;
    }
    Ok(())
}

/// Verifies SigV4; returns the region of the credential scope.
fn authenticate(
    state: &CloudTrailState,
    method: &Method,
    uri: &Uri,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, Response> {
    if state.config.no_sigv4 {
        return Ok(state.channels.first().map(|c| c.arn.region.clone()).unwrap_or_default());
    }
    let request = SignedRequest {
        method: method.as_str(),
        path: uri.path(),
        query,
        headers,
        body,
    };
    verify(&request, SERVICE, &state.keys, SystemTime::now())
        .map(|caller| caller.region)
        .map_err(|e| aws_error(StatusCode::FORBIDDEN, e.code, &e.message))
}

/// The account of the access key that signed the request.
fn caller_account(state: &CloudTrailState, headers: &HeaderMap) -> String {
    let access_key = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split("Credential=").nth(1))
        .and_then(|v| v.split('/').next())
        .unwrap_or(&state.config.access_key_id);
    state.accounts.get(access_key).cloned().unwrap_or_default()
}

/// Channel, region and permission checks.
fn authorize<'a>(
    state: &'a CloudTrailState,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
    region: &str,
) -> Result<&'a Channel, Response> {
    let arn = params.get("channelArn").map(String::as_str).unwrap_or("");
    if arn.is_empty() {
        return Err(validation(
            "Value null at 'channelArn' failed to satisfy constraint: Member must not be null",
        ));
    }
    if !arn.starts_with("arn:") || arn.parse::<crate::cloudtrail::arn::ChannelArn>().is_err() {
        return Err(aws_error(
            StatusCode::BAD_REQUEST,
            "InvalidChannelARN",
            &format!("The specified channel ARN {arn} is not a valid channel ARN."),
        ));
    }
    let channel = state.channel(arn).ok_or_else(|| {
        aws_error(
            StatusCode::BAD_REQUEST,
            "ChannelNotFound",
            &format!("The channel {arn} could not be found."),
        )
    })?;
    if let Some(external) = params.get("externalId") {
        if !is_external_id(external) {
            return Err(validation("Value at 'externalId' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[\\w+=,.@:\\/-]*$"));
        }
    }
    if state.config.unsupported_regions.iter().any(|r| r == region) || channel.arn.region != region {
        return Err(aws_error(
            StatusCode::BAD_REQUEST,
            "UnsupportedOperationException",
            &format!("The operation is not supported in region {region}."),
        ));
    }
    let account = caller_account(state, headers);
    let allowed = account == channel.arn.account || channel.allowed_accounts.contains(&account);
    let external_ok = channel
        .external_id
        .as_ref()
        .is_none_or(|required| params.get("externalId") == Some(required));
    if !allowed || !external_ok {
        return Err(aws_error(
            StatusCode::BAD_REQUEST,
            "ChannelInsufficientPermission",
            "The caller's account ID must be the same as the channel owner's account ID.",
        ));
    }
    if channel.destination != "ActivityAuditLog" {
        return Err(aws_error(
            StatusCode::BAD_REQUEST,
            "ChannelUnsupportedSchema",
            "The schema type of the event is not supported.",
        ));
    }
    Ok(channel)
}

/// One entry of `auditEvents`.
struct AuditEntry {
    id: String,
    event_data: String,
    checksum: Option<String>,
}

fn parse_events(body: &[u8]) -> Result<Vec<AuditEntry>, Response> {
    if body.len() > MAX_BODY {
        return Err(validation(&format!(
            "the request body is {} bytes; the limit is {MAX_BODY}",
            body.len()
        )));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        aws_error(
            StatusCode::BAD_REQUEST,
            "SerializationException",
            &format!("the request body is not JSON: {e}"),
        )
    })?;
    let list = value.get("auditEvents").and_then(Value::as_array).ok_or_else(|| {
        validation("Value null at 'auditEvents' failed to satisfy constraint: Member must not be null")
    })?;
    if list.is_empty() || list.len() > 100 {
        return Err(validation(&format!(
            "Value at 'auditEvents' failed to satisfy constraint: Member must have length between 1 and 100 (got {})",
            list.len()
        )));
    }
    let mut entries = Vec::with_capacity(list.len());
    let mut seen = HashSet::new();
    for (i, item) in list.iter().enumerate() {
        let text = |field: &str| item.get(field).and_then(Value::as_str).map(str::to_string);
        let member = i + 1;
        let id = text("id").ok_or_else(|| {
            validation(&format!(
                "Value null at 'auditEvents.{member}.member.id' failed to satisfy constraint: Member must not be null"
            ))
        })?;
        if !is_audit_event_id(&id) {
            return Err(validation(&format!(
                "Value '{id}' at 'auditEvents.{member}.member.id' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[-_A-Za-z0-9]+$ and have length between 1 and 128"
            )));
        }
        let event_data = text("eventData").ok_or_else(|| {
            validation(&format!("Value null at 'auditEvents.{member}.member.eventData' failed to satisfy constraint: Member must not be null"))
        })?;
        if !seen.insert(id.clone()) {
            return Err(aws_error(
                StatusCode::BAD_REQUEST,
                "DuplicatedAuditEventId",
                &format!("Two or more entries in the request have the same event ID {id}."),
            ));
        }
        entries.push(AuditEntry {
            id,
            event_data,
            checksum: text("eventDataChecksum"),
        });
    }
    Ok(entries)
}

/// Checks each event and stores the good ones; returns (`successful`, `failed`).
fn store_events(
    state: &CloudTrailState,
    channel: &Channel,
    region: &str,
    events: &[AuditEntry],
    account: &str,
) -> (Vec<Value>, Vec<Value>) {
    let mut successful = Vec::new();
    let mut failed = Vec::new();
    for entry in events {
        match check_event(state, channel, entry) {
            Ok(data) => {
                let event_id = uuid::Uuid::new_v4().to_string();
                store(state, channel, region, &event_id, &entry.id, data, account);
                successful.push(json!({"id": entry.id, "eventID": event_id}));
            }
            Err((code, message)) => {
                state.count_code(code);
                failed.push(json!({"id": entry.id, "errorCode": code, "errorMessage": message}));
            }
        }
    }
    let mut stats = lock(&state.stats);
    stats.accepted_events += successful.len() as u64;
    stats.failed_events += failed.len() as u64;
    (successful, failed)
}

type EventError = (&'static str, String);

fn check_event(state: &CloudTrailState, channel: &Channel, entry: &AuditEntry) -> Result<Value, EventError> {
    if state.config.not_subscribed {
        return Err((
            "AccountNotSubscribed",
            "The account is not subscribed to CloudTrail Lake.".to_string(),
        ));
    }
    if let Some(checksum) = &entry.checksum {
        if *checksum != event_data_checksum(&entry.event_data) {
            return Err((
                "InvalidChecksum",
                "The checksum does not match the event data.".to_string(),
            ));
        }
    }
    let data = check_event_data(&entry.event_data, state.config.strict_fields)?;
    if data["recipientAccountId"].as_str() != Some(channel.arn.account.as_str()) {
        return Err((
            "InvalidRecipient",
            "recipientAccountId must be the account ID that owns the channel.".to_string(),
        ));
    }
    let source = data["eventSource"].as_str().unwrap_or_default();
    if !channel.event_sources.is_empty() && !channel.event_sources.iter().any(|s| s == source) {
        return Err((
            "InvalidEventSource",
            format!("eventSource {source:?} is not accepted by this channel."),
        ));
    }
    if let Some(CloudTrailFault::EventCode { code }) =
        state.take_fault(|f| matches!(f, CloudTrailFault::EventCode { .. }))
    {
        return Err((static_code(&code), format!("{code} (injected by the emulator)")));
    }
    let rates = state.config.event_failures;
    if state.chance(rates.throttling) {
        return Err(("Throttling", "Rate exceeded for this event; retry it.".to_string()));
    }
    if state.chance(rates.internal) {
        return Err((
            "InternalFailure",
            "An internal failure occurred; retry the event.".to_string(),
        ));
    }
    Ok(data)
}

/// The static spelling of an injected per-event code.
fn static_code(code: &str) -> &'static str {
    const KNOWN: [&str; 10] = [
        "Throttling",
        "InternalFailure",
        "InvalidData",
        "FieldTooLong",
        "FieldNotFound",
        "InvalidChecksum",
        "InvalidRecipient",
        "InvalidEventSource",
        "AccountNotSubscribed",
        "Unknown",
    ];
    KNOWN.iter().find(|k| **k == code).copied().unwrap_or("Unknown")
}

/// Stores CloudTrail's wrapper around the producer's object (spec §9).
fn store(
    state: &CloudTrailState,
    channel: &Channel,
    region: &str,
    event_id: &str,
    id: &str,
    data: Value,
    account: &str,
) {
    let now = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let ingestion = crate::time::format_utc(now);
    let record = json!({
        "eventVersion": "1.0",
        "eventCategory": "ActivityAuditLog",
        "eventType": "ActivityLog",
        "eventID": event_id,
        "eventTime": data["eventTime"],
        "awsRegion": region,
        "recipientAccountId": data["recipientAccountId"],
        "metadata": {"ingestionTime": ingestion.trim_end_matches('Z'), "channelARN": channel.arn.arn},
        "eventData": data,
    });
    let mut store = lock(&state.store);
    *store.ids.entry((channel.arn.arn.clone(), id.to_string())).or_default() += 1;
    store.records.push(StoredRecord {
        id: id.to_string(),
        caller_account: account.to_string(),
        record,
    });
}

/// `eventDataChecksum` as the service computes it: base64 of SHA-256 over the
/// exact `eventData` bytes.
fn event_data_checksum(event_data: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(event_data.as_bytes()))
}
