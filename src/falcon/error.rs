//! What can go wrong talking to Falcon, classified by what the client does next.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;
use serde::Deserialize;

/// An error from the Falcon API, classified for the reconnect loop.
#[derive(Debug, thiserror::Error)]
pub enum FalconError {
    /// 400/403 on the token endpoint: the credentials are wrong or not allowed.
    #[error(
        "Falcon rejected the API client credentials (HTTP {status}: {message}); check falcon.client_id and \
         falcon.client_secret, that the API client has the \"Event streams: Read\" scope, and any IP allow-list"
    )]
    CredentialsRejected {
        /// HTTP status.
        status: u16,
        /// Falcon's message (never contains the secret).
        message: String,
    },
    /// 429: wait before the next request.
    #[error("Falcon rate limit reached at {what} (HTTP 429); waiting {wait:?} before retrying")]
    RateLimited {
        /// The endpoint.
        what: &'static str,
        /// How long to wait.
        wait: Duration,
    },
    /// 401: the bearer token or session is no longer valid; authenticate again.
    #[error("{what} answered HTTP 401 ({message}); authenticating again")]
    Unauthorized {
        /// The endpoint.
        what: &'static str,
        /// Falcon's message.
        message: String,
    },
    /// 403 on an API call: the API client lacks a scope.
    #[error("{what} answered HTTP 403 ({message}); the API client needs the \"Event streams: Read\" scope")]
    Forbidden {
        /// The endpoint.
        what: &'static str,
        /// Falcon's message.
        message: String,
    },
    /// Anything worth retrying after a back-off: 5xx, network errors, odd bodies.
    #[error("{what}: {message}")]
    Transient {
        /// The endpoint or step.
        what: &'static str,
        /// What happened.
        message: String,
    },
    /// Misconfiguration the client cannot recover from.
    #[error("{0}")]
    Fatal(String),
}

impl FalconError {
    /// A transient error from a transport failure. `reqwest` errors carry the URL,
    /// which never holds a secret (credentials travel in bodies and headers).
    pub fn transport(what: &'static str, err: &reqwest::Error) -> Self {
        let kind = if err.is_timeout() {
            "timed out"
        } else if err.is_connect() {
            "could not connect"
        } else {
            "request failed"
        };
        FalconError::Transient {
            what,
            message: format!("{kind}: {}", error_chain(err)),
        }
    }
}

/// An error and its causes on one line.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The first message of a CrowdStrike error envelope, or the start of the body.
pub fn envelope_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Envelope {
        #[serde(default)]
        errors: Vec<ErrorEntry>,
    }
    #[derive(Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<Envelope>(body) {
        Ok(e) if !e.errors.is_empty() => e.errors[0].message.clone(),
        _ => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            let cut = falcon_lake_audit::json::truncate_to(text, 200);
            if cut.is_empty() {
                "empty body".to_string()
            } else {
                cut.to_string()
            }
        }
    }
}

/// How long to wait after a 429. `X-Ratelimit-RetryAfter` is an absolute epoch
/// second in CrowdStrike's APIs; a value that is not a plausible epoch (within
/// an hour of now) or no header at all means waiting `min_wait`.
pub fn rate_limit_wait(headers: &HeaderMap, min_wait: Duration) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    retry_after_at(headers, min_wait, now)
}

/// [`rate_limit_wait`] with an explicit clock, for tests.
pub fn retry_after_at(headers: &HeaderMap, min_wait: Duration, now_epoch: u64) -> Duration {
    let value = headers
        .get("x-ratelimit-retryafter")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match value {
        Some(epoch) if epoch + 60 >= now_epoch && epoch <= now_epoch + 3600 => {
            Duration::from_secs(epoch.saturating_sub(now_epoch).max(1))
        }
        _ => min_wait,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("X-RateLimit-RetryAfter", value.parse().expect("header"));
        h
    }

    #[test]
    fn retry_after_is_an_epoch_second() {
        let now = 1_700_000_000;
        let min = Duration::from_secs(60);
        assert_eq!(retry_after_at(&headers("1700000005"), min, now), Duration::from_secs(5));
        assert_eq!(retry_after_at(&headers("1700000000"), min, now), Duration::from_secs(1));
        assert_eq!(retry_after_at(&headers("5"), min, now), min);
        assert_eq!(retry_after_at(&headers("1800000000"), min, now), min);
        assert_eq!(retry_after_at(&headers("soon"), min, now), min);
        assert_eq!(retry_after_at(&HeaderMap::new(), min, now), min);
    }

    #[test]
    fn envelope_messages() {
        let body = br#"{"meta":{},"errors":[{"code":401,"message":"access denied, invalid bearer token"}]}"#;
        assert_eq!(envelope_message(body), "access denied, invalid bearer token");
        assert_eq!(envelope_message(b"Bad Request"), "Bad Request");
        assert_eq!(envelope_message(b""), "empty body");
    }
}
