//! The emulated CrowdStrike endpoints: token, revoke, discovery, refresh.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::falcon::config::{ControlFault, RegionMode};
use crate::falcon::state::{bump, EmulatorState, TokenInfo};

/// Shared handler state.
pub type AppState = Arc<EmulatorState>;

/// `powered_by` of the token service.
const CSAM: &str = "csam";
/// `powered_by` of the API gateway.
const GATEWAY: &str = "crowdstrike-api-gateway";
/// `powered_by` of the streaming API.
const FALCON_HOSE: &str = "FalconHose";

/// The `meta` block of every CrowdStrike reply.
pub fn meta(powered_by: &str) -> Value {
    json!({"query_time": 0.001, "powered_by": powered_by, "trace_id": uuid::Uuid::new_v4().to_string()})
}

/// A CrowdStrike error envelope reply.
pub fn error_reply(status: StatusCode, powered_by: &str, message: &str) -> Response {
    let body = json!({"meta": meta(powered_by), "errors": [{"code": status.as_u16(), "message": message}]});
    let mut response = (status, axum::Json(body)).into_response();
    trace_header(response.headers_mut());
    response
}

fn trace_header(headers: &mut HeaderMap) {
    if let Ok(value) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        headers.insert("x-cs-traceid", value);
    }
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// 401 with the public message and the low bad-bearer rate limit headers.
pub fn unauthorized() -> Response {
    let mut response = error_reply(StatusCode::UNAUTHORIZED, GATEWAY, "access denied, invalid bearer token");
    set(response.headers_mut(), "x-ratelimit-limit", "15");
    set(response.headers_mut(), "x-ratelimit-remaining", "14");
    set(response.headers_mut(), "server", "nginx");
    response
}

/// 429 with `X-RateLimit-RetryAfter` as an epoch second.
pub fn rate_limited(retry_after: Duration) -> Response {
    let at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        + retry_after.as_secs().max(1);
    let mut response = error_reply(StatusCode::TOO_MANY_REQUESTS, GATEWAY, "API rate limit exceeded.");
    set(response.headers_mut(), "x-ratelimit-retryafter", &at.to_string());
    set(response.headers_mut(), "x-ratelimit-limit", "6000");
    set(response.headers_mut(), "x-ratelimit-remaining", "0");
    response
}

/// Path parameters of a route, empty when it has none (the same handlers serve
/// `/…` and `/_region/{region}/…`).
#[derive(Debug, Default)]
pub struct Params(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let params = Path::<HashMap<String, String>>::from_request_parts(parts, state).await;
        Ok(Params(params.map(|p| p.0).unwrap_or_default()))
    }
}

/// The cloud a request addresses: `/_region/<r>/…`, else the emulator's own.
pub fn region_of(state: &EmulatorState, path: &HashMap<String, String>) -> String {
    path.get("region")
        .cloned()
        .unwrap_or_else(|| state.config.region.clone())
}

/// `http[s]://<host>[/_region/<r>]`: where this request reached us.
pub fn origin(headers: &HeaderMap, region: &str, state: &EmulatorState) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let scheme = if state.config.tls.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    if region == state.config.region {
        format!("{scheme}://{host}")
    } else {
        format!("{scheme}://{host}/_region/{region}")
    }
}

/// Checks `Authorization: Bearer …` (scheme case-insensitive) for `region`.
pub fn bearer(
    state: &EmulatorState,
    headers: &HeaderMap,
    region: &str,
    client: &SocketAddr,
) -> Result<TokenInfo, Response> {
    let token = authorization(headers, "bearer").and_then(|t| state.token(&t));
    match token {
        Some(info) if info.region == region => Ok(info),
        _ => {
            bump(&state.stats.unauthorized);
            if state.config.rate_limits && !state.within_rate(&format!("bad-bearer:{}", client.ip()), 15) {
                bump(&state.stats.rate_limited);
                return Err(rate_limited(Duration::from_secs(60)));
            }
            Err(unauthorized())
        }
    }
}

/// The credential of `Authorization: <scheme> <credential>`, scheme case-insensitive.
pub fn authorization(headers: &HeaderMap, scheme: &str) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (given, credential) = value.split_once(' ')?;
    given
        .eq_ignore_ascii_case(scheme)
        .then(|| credential.trim().to_string())
}

/// `POST /oauth2/token`.
pub async fn token(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Params(path): Params,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let region = region_of(&state, &path);
    if let Some(fault) = state.take_fault(|f| {
        matches!(
            f,
            ControlFault::TokenRateLimited { .. } | ControlFault::TokenStatus { .. }
        )
    }) {
        bump(&state.stats.token_failures);
        return match fault {
            ControlFault::TokenRateLimited { retry_after_secs } => {
                bump(&state.stats.rate_limited);
                rate_limited(Duration::from_secs(retry_after_secs))
            }
            ControlFault::TokenStatus { status } => status_reply(status, CSAM),
            _ => unreachable_fault(),
        };
    }
    if state.config.rate_limits && !state.within_rate(&format!("token:{}", client.ip()), 300) {
        bump(&state.stats.rate_limited);
        return rate_limited(Duration::from_secs(60));
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    if let Err(response) = check_credentials(&state, &form) {
        bump(&state.stats.token_failures);
        return response;
    }
    let home = state.config.home_region.clone().unwrap_or_else(|| region.clone());
    if home != region && state.config.region_mode == RegionMode::Redirect {
        let location = format!("{}/oauth2/token", origin(&headers, &home, &state));
        let mut response = StatusCode::PERMANENT_REDIRECT.into_response();
        set(response.headers_mut(), "location", &location);
        set(response.headers_mut(), "x-cs-region", &home);
        trace_header(response.headers_mut());
        return response;
    }
    let access_token = state.issue_token(&home);
    let body = json!({"access_token": access_token, "expires_in": state.config.token_ttl, "token_type": "bearer"});
    let mut response = (StatusCode::CREATED, axum::Json(body)).into_response();
    let h = response.headers_mut();
    set(h, "x-cs-region", &home);
    set(h, "x-ratelimit-limit", "300");
    set(h, "x-ratelimit-remaining", "299");
    trace_header(h);
    response
}

fn unreachable_fault() -> Response {
    error_reply(StatusCode::INTERNAL_SERVER_ERROR, CSAM, "emulator fault handling error")
}

fn status_reply(status: u16, powered_by: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    error_reply(status, powered_by, status.canonical_reason().unwrap_or("error"))
}

fn check_credentials(state: &EmulatorState, form: &HashMap<String, String>) -> Result<(), Response> {
    let id = form.get("client_id").map(String::as_str).unwrap_or("");
    let secret = form.get("client_secret").map(String::as_str).unwrap_or("");
    let bad_id = || {
        error_reply(
            StatusCode::BAD_REQUEST,
            CSAM,
            &format!("Failed to generate access token for clientID={id}."),
        )
    };
    if state.config.strict_credentials {
        let id_ok = id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit());
        let secret_ok = secret.len() == 40 && secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !id_ok || !secret_ok {
            return Err(bad_id());
        }
    }
    if id.is_empty() || id != state.config.client_id {
        return Err(bad_id());
    }
    if secret != state.config.client_secret {
        return Err(error_reply(
            StatusCode::FORBIDDEN,
            CSAM,
            "Failed to issue access token - Client authentication failed.",
        ));
    }
    Ok(())
}

/// `POST /oauth2/revoke` (Basic client auth, form `token`).
pub async fn revoke(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let basic = authorization(&headers, "basic").and_then(|b| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(b)
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
    });
    let expected = format!("{}:{}", state.config.client_id, state.config.client_secret);
    if basic.as_deref() != Some(expected.as_str()) {
        return error_reply(StatusCode::FORBIDDEN, CSAM, "access denied, authorization failed");
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    if let Some(token) = form.get("token") {
        state.revoke_token(token);
    }
    (StatusCode::OK, axum::Json(json!({"meta": meta(CSAM), "errors": []}))).into_response()
}

/// `GET /sensors/entities/datafeed/v2?appId=…`.
pub async fn discover(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Params(path): Params,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let region = region_of(&state, &path);
    if let Err(response) = bearer(&state, &headers, &region, &client) {
        return response;
    }
    let app_id = query.get("appId").map(String::as_str).unwrap_or("");
    if let Err(message) = check_app_id(app_id, state.config.strict_app_id) {
        return error_reply(StatusCode::BAD_REQUEST, FALCON_HOSE, &message);
    }
    if !matches!(
        query.get("format").map(String::as_str),
        None | Some("json") | Some("flatjson")
    ) {
        return error_reply(StatusCode::BAD_REQUEST, FALCON_HOSE, "format must be json or flatjson");
    }
    if let Some(fault) = state.take_fault(|f| {
        matches!(
            f,
            ControlFault::DiscoveryStatus { .. } | ControlFault::DiscoveryEmptyBody
        )
    }) {
        return match fault {
            ControlFault::DiscoveryStatus { status } => status_reply(status, FALCON_HOSE),
            _ => (StatusCode::OK, "").into_response(),
        };
    }
    if state.app_id_held(app_id) {
        bump(&state.stats.discoveries_empty);
        return (
            StatusCode::OK,
            axum::Json(json!({"meta": meta(FALCON_HOSE), "resources": []})),
        )
            .into_response();
    }
    let base = origin(&headers, &region, &state);
    let interval = state.config.refresh_interval;
    let expiration = rfc3339_nanos(SystemTime::now() + Duration::from_secs(interval));
    let resources: Vec<Value> = state
        .new_sessions(app_id, &region)
        .into_iter()
        .map(|s| {
            let app = url::form_urlencoded::byte_serialize(app_id.as_bytes()).collect::<String>();
            json!({
                "dataFeedURL": format!("{base}/sensors/entities/datafeed/v1/{}?appId={app}", s.partition),
                "sessionToken": {"token": s.token, "expiration": expiration},
                "refreshActiveSessionURL": format!(
                    "{base}/sensors/entities/datafeed-actions/v1/{}?appId={app}&action_name=refresh_active_stream_session",
                    s.partition
                ),
                "refreshActiveSessionInterval": interval,
            })
        })
        .collect();
    bump(&state.stats.discoveries);
    (
        StatusCode::OK,
        axum::Json(json!({"meta": meta(FALCON_HOSE), "resources": resources})),
    )
        .into_response()
}

fn check_app_id(app_id: &str, strict: bool) -> Result<(), String> {
    if app_id.is_empty() {
        return Err("appId is required".to_string());
    }
    let allowed = |b: u8| b.is_ascii_alphanumeric() || (!strict && b"._-".contains(&b));
    if app_id.len() > 32 || !app_id.bytes().all(allowed) {
        return Err(format!(
            "appId {app_id:?} is invalid: at most 32 alphanumeric characters"
        ));
    }
    Ok(())
}

/// `POST /sensors/entities/datafeed-actions/v1/{partition}?action_name=…&appId=…`.
pub async fn refresh(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Params(path): Params,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let region = region_of(&state, &path);
    if let Err(response) = bearer(&state, &headers, &region, &client) {
        return response;
    }
    if query.get("action_name").map(String::as_str) != Some("refresh_active_stream_session") {
        return error_reply(
            StatusCode::BAD_REQUEST,
            FALCON_HOSE,
            "action_name must be refresh_active_stream_session",
        );
    }
    if let Some(ControlFault::RefreshStatus { status }) =
        state.take_fault(|f| matches!(f, ControlFault::RefreshStatus { .. }))
    {
        return status_reply(status, FALCON_HOSE);
    }
    let partition = path.get("partition").and_then(|p| p.parse::<u32>().ok());
    let app_id = query.get("appId").map(String::as_str).unwrap_or("");
    match partition {
        Some(p) if state.refresh_session(app_id, p) => {
            bump(&state.stats.refreshes);
            (
                StatusCode::OK,
                axum::Json(json!({"meta": meta(FALCON_HOSE), "errors": []})),
            )
                .into_response()
        }
        _ => {
            bump(&state.stats.refresh_not_found);
            error_reply(StatusCode::NOT_FOUND, FALCON_HOSE, "stream session not found")
        }
    }
}

/// RFC 3339 UTC with nanoseconds, like `sessionToken.expiration`.
pub fn rfc3339_nanos(at: SystemTime) -> String {
    let d = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let date = crate::time::format_utc(d.as_secs() as i64);
    format!("{}.{:09}Z", date.trim_end_matches('Z'), d.subsec_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_id_rules() {
        assert!(check_app_id("fig-default-app-id", false).is_ok());
        assert!(check_app_id("fig-default-app-id", true).is_err());
        assert!(check_app_id("", false).is_err());
        assert!(check_app_id(&"a".repeat(33), false).is_err());
        assert!(check_app_id("has space", false).is_err());
    }

    #[test]
    fn expiration_has_nanoseconds() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 5);
        assert_eq!(rfc3339_nanos(t), "2023-11-14T22:13:20.000000005Z");
    }
}
