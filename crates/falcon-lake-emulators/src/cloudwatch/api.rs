//! The emulated CloudWatch Logs API (awsJson1.1, SigV4 with service `logs`):
//! `POST /` with `X-Amz-Target: Logs_20140328.<Operation>`, per the
//! specification's checklist (§1.11). Errors are `{"__type","message"}` with
//! the JSON 1.1 content type and an `x-amzn-RequestId` on every answer.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use crate::cloudwatch::config::CloudWatchFault;
use crate::cloudwatch::state::{CloudWatchState, LogGroup, LogStream};
use crate::cloudwatch::validate::{
    group_char, group_from_identifier, stream_char, Violations, GROUP_PATTERN, STREAM_PATTERN,
};
use crate::cloudwatch::{put, read};
use crate::lock;
use crate::sigv4::{verify, SignedRequest};

/// Shared handler state.
pub type AppState = Arc<CloudWatchState>;

/// The JSON 1.1 content type.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
/// The target prefix of every operation.
const TARGET_PREFIX: &str = "Logs_20140328.";
/// The signing name of the service.
const SERVICE: &str = "logs";

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// `__type`.
    pub code: String,
    /// `message`.
    pub message: String,
    /// `x-amz-retry-after` (ms), on throttling answers.
    pub retry_after_ms: Option<u64>,
}

impl ApiError {
    /// A 400 with `code`.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: code.to_string(),
            message: message.into(),
            retry_after_ms: None,
        }
    }

    /// `InvalidParameterException`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new("InvalidParameterException", message)
    }

    /// `ResourceNotFoundException` for a group.
    pub fn no_group() -> Self {
        Self::new("ResourceNotFoundException", "The specified log group does not exist.")
    }

    /// `ResourceNotFoundException` for a stream.
    pub fn no_stream() -> Self {
        Self::new("ResourceNotFoundException", "The specified log stream does not exist.")
    }

    fn into_response(self) -> Response {
        let mut response = json_response(self.status, &json!({"__type": self.code, "message": self.message}));
        if let Some(value) = self
            .retry_after_ms
            .and_then(|ms| HeaderValue::from_str(&ms.to_string()).ok())
        {
            response.headers_mut().insert("x-amz-retry-after", value);
        }
        response
    }
}

/// A JSON 1.1 answer with a request id.
pub fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static(CONTENT_TYPE));
    headers.insert("x-amzn-requestid", crate::aws::request_id());
    response
}

/// `POST /`.
pub async fn handle(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if state.config.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(state.config.latency_ms)).await;
    }
    let signed = SignedRequest {
        method: method.as_str(),
        path: uri.path(),
        query: query.as_deref().unwrap_or(""),
        headers: &headers,
        body: &body,
    };
    let result = match answer(&state, &signed).await {
        Ok(reply) => Ok(reply),
        Err(e) => {
            state.count_code(&e.code);
            Err(e)
        }
    };
    match result {
        Ok(reply) => json_response(StatusCode::OK, &reply),
        Err(e) => e.into_response(),
    }
}

/// The operation named by `X-Amz-Target`.
fn operation(headers: &HeaderMap) -> Result<&str, ApiError> {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::new("UnknownOperationException", "Missing X-Amz-Target header"))?;
    target
        .strip_prefix(TARGET_PREFIX)
        .ok_or_else(|| ApiError::new("UnknownOperationException", format!("Unknown target {target}")))
}

async fn answer(state: &CloudWatchState, request: &SignedRequest<'_>) -> Result<Value, ApiError> {
    let operation = operation(request.headers)?.to_string();
    let content_type = request.headers.get("content-type").and_then(|v| v.to_str().ok());
    if content_type != Some(CONTENT_TYPE) {
        return Err(ApiError::new(
            "SerializationException",
            format!("expected content type {CONTENT_TYPE}, got {content_type:?}"),
        ));
    }
    let region = authenticate(state, request)?;
    state.count_request(&operation);
    injected(state, &operation, &region)?;
    let body: Value = serde_json::from_slice(request.body)
        .map_err(|e| ApiError::new("SerializationException", format!("the request body is not JSON: {e}")))?;
    let body = body
        .as_object()
        .ok_or_else(|| ApiError::new("SerializationException", "the request body is not a JSON object"))?;
    match operation.as_str() {
        "PutLogEvents" => put::put_log_events(state, body).await,
        "CreateLogGroup" => create_log_group(state, body),
        "CreateLogStream" => create_log_stream(state, body),
        "DescribeLogGroups" => describe_log_groups(state, body, &region),
        "DescribeLogStreams" => describe_log_streams(state, body, &region),
        "PutRetentionPolicy" => put_retention_policy(state, body),
        "GetLogEvents" => read::get_log_events(state, body),
        "FilterLogEvents" => read::filter_log_events(state, body),
        other => Err(ApiError::new(
            "UnknownOperationException",
            format!("The operation {other} is not supported by this emulator"),
        )),
    }
}

/// Verifies SigV4; returns the region of the credential scope.
fn authenticate(state: &CloudWatchState, request: &SignedRequest<'_>) -> Result<String, ApiError> {
    if state.config.no_sigv4 {
        return Ok("us-east-1".to_string());
    }
    let keys = std::collections::HashMap::from([(
        state.config.access_key_id.clone(),
        state.config.secret_access_key.clone(),
    )]);
    verify(request, SERVICE, &keys, SystemTime::now())
        .map(|caller| caller.region)
        .map_err(|e| ApiError::new(e.code, e.message))
}

/// Queued faults and denied actions, decided before the operation runs.
fn injected(state: &CloudWatchState, operation: &str, region: &str) -> Result<(), ApiError> {
    let queued = state.take_fault(operation, |f| !matches!(f, CloudWatchFault::Slow { .. }));
    match queued {
        Some(CloudWatchFault::Exception { code, status, .. }) => {
            if code == "ThrottlingException" {
                lock(&state.stats).throttled_requests += 1;
            }
            let message = if code == "ThrottlingException" {
                "Rate exceeded".to_string()
            } else {
                format!("{code} (injected by the emulator)")
            };
            return Err(ApiError {
                status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                code,
                message,
                retry_after_ms: None,
            });
        }
        Some(CloudWatchFault::AccessDenied { .. }) => return Err(access_denied(state, operation, region)),
        _ => {}
    }
    if state.is_denied(&format!("logs:{operation}")) {
        return Err(access_denied(state, operation, region));
    }
    Ok(())
}

fn access_denied(state: &CloudWatchState, operation: &str, region: &str) -> ApiError {
    let account = &state.config.account_id;
    ApiError::new(
        "AccessDeniedException",
        format!(
            "User: arn:aws:sts::{account}:assumed-role/falcon-lake/emulator is not authorized to perform: logs:{operation} on resource: arn:aws:logs:{region}:{account}:log-group:* because no identity-based policy allows the logs:{operation} action"
        ),
    )
}

/// `logGroupName`, checked.
pub fn group_name<'a>(v: &mut Violations, body: &'a Map<String, Value>) -> Option<&'a str> {
    v.string(body, "logGroupName", (1, 512), Some((GROUP_PATTERN, group_char)))
}

/// `logStreamName`, checked.
pub fn stream_name<'a>(v: &mut Violations, body: &'a Map<String, Value>) -> Option<&'a str> {
    v.string(body, "logStreamName", (1, 512), Some((STREAM_PATTERN, stream_char)))
}

/// The group of a read request: exactly one of `logGroupName` and `logGroupIdentifier`.
pub fn read_group(v: &mut Violations, body: &Map<String, Value>) -> Result<Option<String>, ApiError> {
    let name = v.optional_string(body, "logGroupName", (1, 512), Some((GROUP_PATTERN, group_char)));
    let identifier = v.optional_string(body, "logGroupIdentifier", (1, 2048), None);
    match (name, identifier) {
        (Some(_), Some(_)) => Err(ApiError::invalid(
            "LogGroup name and LogGroup identifier are mutually exclusive parameters.",
        )),
        (None, None) if body.get("logGroupName").is_none() && body.get("logGroupIdentifier").is_none() => Err(
            ApiError::invalid("Either LogGroup name or LogGroup identifier must be specified."),
        ),
        (Some(name), None) => Ok(Some(name.to_string())),
        (None, Some(identifier)) => Ok(Some(group_from_identifier(identifier).to_string())),
        (None, None) => Ok(None),
    }
}

fn create_log_group(state: &CloudWatchState, body: &Map<String, Value>) -> Result<Value, ApiError> {
    let mut v = Violations::default();
    let name = group_name(&mut v, body);
    v.finish()?;
    let name = name.unwrap_or_default();
    if name.starts_with("aws/") {
        return Err(ApiError::invalid(
            "Log group names starting with aws/ are reserved for AWS.",
        ));
    }
    let mut groups = lock(&state.groups);
    if groups.contains_key(name) {
        return Err(ApiError::new(
            "ResourceAlreadyExistsException",
            "The specified log group already exists",
        ));
    }
    groups.insert(
        name.to_string(),
        LogGroup {
            creation_time: state.now_ms(),
            ..LogGroup::default()
        },
    );
    Ok(json!({}))
}

fn create_log_stream(state: &CloudWatchState, body: &Map<String, Value>) -> Result<Value, ApiError> {
    let mut v = Violations::default();
    let (group, stream) = (group_name(&mut v, body), stream_name(&mut v, body));
    v.finish()?;
    let (group, stream) = (group.unwrap_or_default(), stream.unwrap_or_default());
    let mut groups = lock(&state.groups);
    let group = groups.get_mut(group).ok_or_else(ApiError::no_group)?;
    if group.streams.contains_key(stream) {
        return Err(ApiError::new(
            "ResourceAlreadyExistsException",
            "The specified log stream already exists",
        ));
    }
    group.streams.insert(
        stream.to_string(),
        LogStream {
            creation_time: state.now_ms(),
            ..LogStream::default()
        },
    );
    Ok(json!({}))
}

/// The retention periods the service accepts, in days.
const RETENTION_DAYS: [u32; 22] = [
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
];

fn put_retention_policy(state: &CloudWatchState, body: &Map<String, Value>) -> Result<Value, ApiError> {
    let mut v = Violations::default();
    let group = group_name(&mut v, body);
    let days = body.get("retentionInDays").and_then(Value::as_u64);
    if days.is_none() {
        v.push(
            body.get("retentionInDays"),
            "retentionInDays",
            "Member must not be null",
        );
    }
    v.finish()?;
    let days = days.and_then(|d| u32::try_from(d).ok()).unwrap_or(0);
    if !RETENTION_DAYS.contains(&days) {
        return Err(ApiError::invalid(format!(
            "1 validation error detected: Value '{days}' at 'retentionInDays' failed to satisfy constraint: Member must satisfy enum value set: {RETENTION_DAYS:?}"
        )));
    }
    let mut groups = lock(&state.groups);
    let group = groups
        .get_mut(group.unwrap_or_default())
        .ok_or_else(ApiError::no_group)?;
    group.retention_days = Some(days);
    Ok(json!({}))
}

/// A page of `items` after the opaque `nextToken` (an index we issued).
fn page<T>(items: Vec<T>, body: &Map<String, Value>, limit: usize) -> Result<(Vec<T>, Option<String>), ApiError> {
    let start = match body.get("nextToken").and_then(Value::as_str) {
        None => 0,
        Some(token) => token
            .strip_prefix("p/")
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n <= items.len())
            .ok_or_else(|| ApiError::invalid("The specified nextToken is invalid."))?,
    };
    let end = (start + limit).min(items.len());
    let next = (end < items.len()).then(|| format!("p/{end}"));
    Ok((items.into_iter().skip(start).take(end - start).collect(), next))
}

fn describe_log_groups(state: &CloudWatchState, body: &Map<String, Value>, region: &str) -> Result<Value, ApiError> {
    let mut v = Violations::default();
    let prefix = v.optional_string(body, "logGroupNamePrefix", (1, 512), Some((GROUP_PATTERN, group_char)));
    let limit = v.optional_int(body, "limit", 1, 50).unwrap_or(50);
    v.finish()?;
    let groups = lock(&state.groups);
    let listed: Vec<Value> = groups
        .iter()
        .filter(|(name, _)| prefix.is_none_or(|p| name.starts_with(p)))
        .map(|(name, group)| {
            let arn = state.group_arn(region, name);
            let mut entry = json!({
                "logGroupName": name,
                "creationTime": group.creation_time,
                "metricFilterCount": 0,
                "arn": format!("{arn}:*"),
                "logGroupArn": arn,
                "storedBytes": 0,
            });
            if let Some(days) = group.retention_days {
                entry["retentionInDays"] = json!(days);
            }
            entry
        })
        .collect();
    let (listed, next) = page(listed, body, limit as usize)?;
    let mut reply = json!({"logGroups": listed});
    if let Some(next) = next {
        reply["nextToken"] = json!(next);
    }
    Ok(reply)
}

fn describe_log_streams(state: &CloudWatchState, body: &Map<String, Value>, region: &str) -> Result<Value, ApiError> {
    let mut v = Violations::default();
    let group = read_group(&mut v, body);
    let prefix = v.optional_string(
        body,
        "logStreamNamePrefix",
        (1, 512),
        Some((STREAM_PATTERN, stream_char)),
    );
    let order_by = v
        .optional_string(body, "orderBy", (1, 64), None)
        .unwrap_or("LogStreamName");
    let descending = v.optional_bool(body, "descending").unwrap_or(false);
    let limit = v.optional_int(body, "limit", 1, 50).unwrap_or(50);
    v.finish()?;
    let group_name = group?.unwrap_or_default();
    if !["LogStreamName", "LastEventTime"].contains(&order_by) {
        return Err(ApiError::invalid(format!(
            "1 validation error detected: Value '{order_by}' at 'orderBy' failed to satisfy constraint: Member must satisfy enum value set: [LogStreamName, LastEventTime]"
        )));
    }
    if order_by == "LastEventTime" && prefix.is_some() {
        return Err(ApiError::invalid(
            "Cannot order by LastEventTime with a logStreamNamePrefix.",
        ));
    }
    let groups = lock(&state.groups);
    let group = groups.get(&group_name).ok_or_else(ApiError::no_group)?;
    let mut streams: Vec<(&String, &LogStream)> = group
        .streams
        .iter()
        .filter(|(name, _)| prefix.is_none_or(|p| name.starts_with(p)))
        .collect();
    if order_by == "LastEventTime" {
        streams.sort_by_key(|(name, s)| (s.events.iter().map(|e| e.timestamp).max(), (*name).clone()));
    }
    if descending {
        streams.reverse();
    }
    let arn = state.group_arn(region, &group_name);
    let listed: Vec<Value> = streams
        .into_iter()
        .map(|(name, stream)| {
            let mut entry = json!({
                "logStreamName": name,
                "creationTime": stream.creation_time,
                "arn": format!("{arn}:log-stream:{name}"),
                "storedBytes": 0,
            });
            if let Some(first) = stream.events.iter().map(|e| e.timestamp).min() {
                entry["firstEventTimestamp"] = json!(first);
            }
            if let Some(last) = stream.events.iter().map(|e| e.timestamp).max() {
                entry["lastEventTimestamp"] = json!(last);
            }
            if let Some(ingested) = stream.last_ingestion_time {
                entry["lastIngestionTime"] = json!(ingested);
                entry["uploadSequenceToken"] = json!(format!("{:056}", stream.events.len()));
            }
            entry
        })
        .collect();
    let (listed, next) = page(listed, body, limit as usize)?;
    let mut reply = json!({"logStreams": listed});
    if let Some(next) = next {
        reply["nextToken"] = json!(next);
    }
    Ok(reply)
}
