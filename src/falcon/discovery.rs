//! Stream discovery: `GET /sensors/entities/datafeed/v2?appId=…`, one resource per partition.

use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;
use url::Url;

use crate::falcon::auth::endpoint;
use crate::falcon::cloud::registrable_domain;
use crate::falcon::error::{envelope_message, rate_limit_wait, FalconError};
use crate::secret::Secret;

/// One discovered stream: a partition's feed and how to keep its session alive.
#[derive(Debug, Clone)]
pub struct StreamResource {
    /// Partition number (last path segment of the feed URL).
    pub partition: u32,
    /// `dataFeedURL`, used exactly as returned.
    pub feed_url: Url,
    /// `sessionToken.token`, sent as `Authorization: Token …` on the feed.
    pub session_token: Secret,
    /// `refreshActiveSessionURL`, POSTed as returned.
    pub refresh_url: Url,
    /// `refreshActiveSessionInterval`.
    pub refresh_interval: Duration,
}

#[derive(Deserialize)]
struct Reply {
    resources: Option<Vec<RawResource>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawResource {
    #[serde(rename = "dataFeedURL")]
    data_feed_url: String,
    session_token: RawSessionToken,
    #[serde(rename = "refreshActiveSessionURL")]
    refresh_active_session_url: String,
    #[serde(default = "default_interval")]
    refresh_active_session_interval: u64,
}

#[derive(Deserialize)]
struct RawSessionToken {
    token: String,
}

fn default_interval() -> u64 {
    1800
}

/// What discovery needs besides the HTTP client.
#[derive(Debug, Clone)]
pub struct DiscoveryRequest<'a> {
    /// API base URL.
    pub base: &'a Url,
    /// Bearer token.
    pub bearer: &'a Secret,
    /// Stream appId.
    pub app_id: &'a str,
    /// Permit plain http to non-loopback hosts.
    pub allow_insecure_http: bool,
    /// Wait after a 429 without a usable retry time.
    pub rate_limit_wait: Duration,
}

/// Lists the streams available to `app_id`. An empty list means another live (or
/// lingering) session holds the appId; the caller backs off and asks again.
pub async fn discover(http: &reqwest::Client, req: &DiscoveryRequest<'_>) -> Result<Vec<StreamResource>, FalconError> {
    let mut url = endpoint(req.base, "sensors/entities/datafeed/v2");
    url.query_pairs_mut()
        .append_pair("appId", req.app_id)
        .append_pair("format", "json");
    let response = http
        .get(url)
        .header(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {}", req.bearer.expose()),
        )
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| FalconError::transport("stream discovery", &e))?;
    let status = response.status();
    if status == StatusCode::TOO_MANY_REQUESTS {
        let wait = rate_limit_wait(response.headers(), req.rate_limit_wait);
        return Err(FalconError::RateLimited {
            what: "stream discovery",
            wait,
        });
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| FalconError::transport("stream discovery", &e))?;
    match status.as_u16() {
        200 => parse_reply(&body, req),
        401 => Err(FalconError::Unauthorized {
            what: "stream discovery",
            message: envelope_message(&body),
        }),
        403 => Err(FalconError::Forbidden {
            what: "stream discovery",
            message: envelope_message(&body),
        }),
        code => Err(FalconError::Transient {
            what: "stream discovery",
            message: format!("HTTP {code}: {}", envelope_message(&body)),
        }),
    }
}

fn parse_reply(body: &[u8], req: &DiscoveryRequest<'_>) -> Result<Vec<StreamResource>, FalconError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(FalconError::Transient {
            what: "stream discovery",
            message: "HTTP 200 with an empty body".into(),
        });
    }
    let reply: Reply = serde_json::from_slice(body).map_err(|e| FalconError::Transient {
        what: "stream discovery",
        message: format!("HTTP 200 with an unreadable body: {e}"),
    })?;
    let Some(resources) = reply.resources else {
        return Err(FalconError::Transient {
            what: "stream discovery",
            message: format!(
                "reply has no resources ({}); a token used against the wrong cloud looks like this: check falcon.cloud",
                envelope_message(body)
            ),
        });
    };
    resources.into_iter().map(|r| resource(r, req)).collect()
}

fn resource(raw: RawResource, req: &DiscoveryRequest<'_>) -> Result<StreamResource, FalconError> {
    let feed_url = checked_url(&raw.data_feed_url, "dataFeedURL", req)?;
    let refresh_url = checked_url(&raw.refresh_active_session_url, "refreshActiveSessionURL", req)?;
    let partition = partition_of(&feed_url).ok_or_else(|| FalconError::Transient {
        what: "stream discovery",
        message: format!("dataFeedURL {feed_url} does not end in a partition number"),
    })?;
    Ok(StreamResource {
        partition,
        feed_url,
        session_token: Secret::new(raw.session_token.token),
        refresh_url,
        refresh_interval: Duration::from_secs(raw.refresh_active_session_interval.max(1)),
    })
}

/// Parses a URL from discovery and checks it stays within the API's domain (or
/// its exact origin, for loopback), as Elastic's client does: a session token
/// must never be sent elsewhere.
fn checked_url(text: &str, field: &str, req: &DiscoveryRequest<'_>) -> Result<Url, FalconError> {
    let url = Url::parse(text).map_err(|e| FalconError::Transient {
        what: "stream discovery",
        message: format!("{field} {text:?} is not a URL: {e}"),
    })?;
    let same_origin = url.origin() == req.base.origin();
    let same_domain = match (url.host_str(), req.base.host_str()) {
        (Some(a), Some(b)) => !crate::net::is_loopback(&url) && registrable_domain(a) == registrable_domain(b),
        _ => false,
    };
    if !(same_origin || same_domain) {
        return Err(FalconError::Fatal(format!(
            "discovery returned {field} {url}, outside the API's domain {}; refusing to use it",
            req.base.host_str().unwrap_or_default()
        )));
    }
    crate::net::check_transport(&url, req.allow_insecure_http, field).map_err(|e| FalconError::Fatal(e.to_string()))?;
    Ok(url)
}

/// The partition number: the last path segment.
pub fn partition_of(url: &Url) -> Option<u32> {
    url.path_segments()?.rev().find(|s| !s.is_empty())?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(base: &Url) -> DiscoveryRequest<'_> {
        static TOKEN: std::sync::OnceLock<Secret> = std::sync::OnceLock::new();
        DiscoveryRequest {
            base,
            bearer: TOKEN.get_or_init(|| Secret::new("t")),
            app_id: "app",
            allow_insecure_http: false,
            rate_limit_wait: Duration::from_secs(60),
        }
    }

    fn body(feed: &str, refresh: &str) -> Vec<u8> {
        serde_json::json!({"resources": [{"dataFeedURL": feed, "sessionToken": {"token": "s", "expiration": "x"},
            "refreshActiveSessionURL": refresh, "refreshActiveSessionInterval": 1800}], "meta": {}})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn accepts_same_domain_urls() {
        let base = Url::parse("https://api.crowdstrike.com").expect("url");
        let out = parse_reply(
            &body(
                "https://firehose.crowdstrike.com/sensors/entities/datafeed/v1/3?appId=app",
                "https://api.crowdstrike.com/sensors/entities/datafeed-actions/v1/3?appId=app&action_name=refresh_active_stream_session",
            ),
            &req(&base),
        )
        .expect("valid");
        assert_eq!(out[0].partition, 3);
        assert_eq!(out[0].refresh_interval, Duration::from_secs(1800));
    }

    #[test]
    fn refuses_foreign_urls() {
        let base = Url::parse("https://api.crowdstrike.com").expect("url");
        let err = parse_reply(
            &body("https://evil.example/x/0", "https://api.crowdstrike.com/r/0"),
            &req(&base),
        )
        .expect_err("foreign");
        assert!(matches!(err, FalconError::Fatal(_)), "{err}");
        let local = Url::parse("http://127.0.0.1:9000").expect("url");
        let err = parse_reply(
            &body("http://127.0.0.1:9001/x/0", "http://127.0.0.1:9000/r/0"),
            &req(&local),
        )
        .expect_err("other port");
        assert!(matches!(err, FalconError::Fatal(_)), "{err}");
    }

    #[test]
    fn odd_replies_are_transient() {
        let base = Url::parse("https://api.crowdstrike.com").expect("url");
        for body in [
            &b""[..],
            b"  ",
            br#"{"errors":[{"code":401,"message":"access denied"}]}"#,
            b"<html>",
        ] {
            assert!(matches!(
                parse_reply(body, &req(&base)),
                Err(FalconError::Transient { .. })
            ));
        }
        assert!(parse_reply(br#"{"resources":[],"meta":{}}"#, &req(&base))
            .expect("ok")
            .is_empty());
    }
}
